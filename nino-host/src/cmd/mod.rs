//! The `nino` subcommands, one module each.

pub mod nowcast;
pub mod train;
