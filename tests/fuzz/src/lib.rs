//! The parsers under fuzz, compiled from nino-host's own source files.
//!
//! Depending on `nino-host` would instrument and build everything it links (plotters, gemm, nalgebra, clap,
//! rayon): 12 CPU-minutes, against 6 for the few crates these two modules use (measured on the 2-core machine).
//! Both modules are leaves of nino-host (no `crate::` paths), so they compile here unchanged; if one grows
//! a dependency on the rest of the host, this build fails and says so.

#[path = "../../../nino-host/src/data.rs"]
pub mod data;
#[path = "../../../nino-host/src/weights.rs"]
pub mod weights;
