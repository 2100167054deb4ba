//! nino-cuda: GPU execution of nino through cudarc (driver loaded at run time).
//!
//! Today this crate only finds out whether a usable CUDA GPU is present ([`probe`]), without ever
//! panicking, so that hosts and tests can fall back to the CPU or skip visibly. The fused kernels come later.
#![warn(missing_docs)]

pub mod probe;

pub use cudarc;
pub use probe::{GpuStatus, REQUIRED_DRIVER_VERSION, probe};
