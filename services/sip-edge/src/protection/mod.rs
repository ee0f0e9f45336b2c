//! Protection: placeholder, being written.
