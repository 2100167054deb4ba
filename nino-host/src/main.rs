//! The `nino` command-line tool.
fn main() {}
