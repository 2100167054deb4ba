//! Training ops: forward and backward of every layer the reference nets use, over caller slices.

pub mod act;
pub mod conv;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod pool;

pub use gemm::{Gemm, MatRef, Portable, PortableBf16, round_bf16};
