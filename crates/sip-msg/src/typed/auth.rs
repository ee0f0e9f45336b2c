//! Authorization, Proxy-Authorization, WWW-Authenticate and Proxy-Authenticate values
//! (RFC 3261 §20.7, §20.27, §20.28, §20.44; RFC 7616 auth-params). (being written)
