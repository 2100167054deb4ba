//! The `nino` subcommands, one module each.

pub mod collect;
pub mod experiment;
pub mod meta_eval;
pub mod meta_train;
pub mod net_spec;
pub mod nowcast;
pub mod plan;
pub mod spectrum;
pub mod train;
