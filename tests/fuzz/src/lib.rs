//! The parsers under fuzz, compiled from nino-host's own source files.
//!
//! Depending on `nino-host` would instrument and build everything it links (plotters, gemm, nalgebra, clap,
//! rayon): 12 CPU-minutes, against 6 for the few crates these modules use (measured on the 2-core machine).
//! They are leaves of nino-host's `io` layer (no `crate::` paths; `weights` reaches `tensor_file` as
//! `super::tensor_file` and `data` reaches `cifar` as `super::cifar`, and this crate's root is their parent
//! here too), so they compile here unchanged; if one grows a dependency on the rest of the host, this build
//! fails and says so.

#[path = "../../../nino-host/src/io/cifar.rs"]
pub mod cifar;
#[path = "../../../nino-host/src/io/data.rs"]
pub mod data;
#[path = "../../../nino-host/src/io/tensor_file.rs"]
pub mod tensor_file;
#[path = "../../../nino-host/src/io/weights.rs"]
pub mod weights;
