//! Starts the real components that integration tests cross a process boundary to reach
//! (nats-server, etcd; plain or over TLS with a [`tls::TestPki`]) on free loopback ports,
//! each in its own temporary directory, and stops them when the guard drops — also when a
//! test panics.

pub mod baresip;
pub mod etcd;
pub mod kamailio;
pub mod nats;
pub mod process;
pub mod sipp;
pub mod tls;
