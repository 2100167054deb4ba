//! nino-cuda: nino's NiNo step and training step as fused CUDA kernels, launched through cudarc.
//!
//! The kernels are CUDA C in `kernels/` (one file per concern), shipped as PTX that NVRTC generated once
//! (`ptx/`, [`kernels::MODULES`]), so a GPU machine needs only the driver. The code that sequences
//! launches ([`nowcast::Nowcaster`], [`train::Trainer`]) is generic over a [`Device`]: a CUDA GPU
//! ([`gpu::Gpu`]) or the host shim ([`shim::Shim`], the same sources compiled by g++), which is how all of
//! it is tested on machines without a GPU. [`probe`] says, without panicking, whether a GPU is there.
#![warn(missing_docs)]

pub mod device;
pub mod gpu;
pub mod kernels;
pub mod nowcast;
pub mod probe;
pub mod ptxgen;
pub mod shim;
pub mod tables;
pub mod train;

pub use cudarc;
pub use device::{Arg, CudaError, Device, Launch};
pub use gpu::Gpu;
pub use nowcast::{Nowcaster, Precision};
pub use probe::{GpuStatus, REQUIRED_DRIVER_VERSION, probe};
pub use shim::Shim;
pub use train::Trainer;
