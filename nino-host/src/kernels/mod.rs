//! Layer 2, host compute: the fast kernels the core's math runs on here.
//!
//! Matrix products ([`gemm`]: AVX-512 tiles, the `gemm` crate, rows split over threads), vectorised SiLU
//! and per-edge loops ([`simd`]), the trainable model's elementwise kernels ([`meta`]), the nowcast backend that bundles them ([`backend`]), and the spectral
//! features of a neural graph ([`spectral`]: LPE, eigenvector centrality). Uses no other layer.

pub mod backend;
pub mod gemm;
pub mod meta;
pub mod simd;
pub mod spectral;
