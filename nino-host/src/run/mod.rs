//! Layer 5, one training run: what `nino train` and each run of `nino experiment` do.
//!
//! Checked settings ([`settings`]), crash-safe checkpoints that resume bit for bit ([`checkpoint`]), and the
//! run itself: network, engine, optional NiNo hook, training, summary ([`runner`]). Uses the layers below.

pub mod checkpoint;
pub mod runner;
pub mod settings;
