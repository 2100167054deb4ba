//! Layer 3, training: Adam on a target network, evaluated and measured.
//!
//! The batched forward/backward engine ([`engine`]), the training loop with its step hooks and
//! checkpoint callback ([`trainer`]), evaluation rows, metrics files and run summaries ([`metrics`]), and
//! the PyTorch timing baseline of the benchmarks ([`torch_baseline`]). Uses [`crate::io`] and
//! [`crate::kernels`].

pub mod engine;
pub mod metrics;
pub mod torch_baseline;
pub mod trainer;
