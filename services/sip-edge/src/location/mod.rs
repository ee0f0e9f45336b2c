//! Location service: placeholder, being written.
