//! Layer 7, experiments: several arms (Adam, NiNo periods, rollback, WNN+) over several seeds, with a
//! table, a JSON file of every summary and PNG plots.
//!
//! The run grammar ([`arm`]), named experiments ([`preset`]), the seed loop and its outputs
//! ([`seed_loop`]), the table with its medians and its comparison with Adam ([`table`]) and the plots
//! ([`plots`]). Uses [`crate::run`] and the layers below it.

pub mod arm;
pub mod paired;
pub mod plots;
pub mod preset;
pub mod seed_loop;
pub mod table;
