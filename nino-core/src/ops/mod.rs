//! Training ops: forward and backward of every layer the reference nets use, over caller slices.

pub mod gemm;

pub use gemm::{Gemm, MatRef, Portable};
