//! Parse + print benchmark (being written).
fn main() {}
