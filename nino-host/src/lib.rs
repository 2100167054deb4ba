//! nino-host: drives `nino-core` on a machine with std (data, weights, training, experiments).
#![warn(missing_docs)]

pub mod baseline;
pub mod checkpoint;
pub mod cmd;
pub mod collect;
pub mod data;
pub mod engine;
pub mod fsutil;
pub mod gemm;
pub mod gpu;
pub mod meta_kernels;
pub mod metatrain;
pub mod metrics;
pub mod nino_hook;
pub mod nowcaster;
pub mod paired;
pub mod plot;
pub mod run;
pub mod spectral;
pub mod train;
pub mod weights;
