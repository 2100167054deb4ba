#![doc = include_str!("../README.md")]
#![no_std]
#![warn(missing_docs)]

mod fmt;

pub mod adam;
pub mod arch;
#[cfg(feature = "capi")]
pub mod capi;
pub mod error;
pub mod graph;
pub mod init;
pub mod net;
pub mod nowcast;
pub mod ops;
pub mod period;
pub mod plan;
pub mod rng;
pub mod rollback;
pub mod spectral;

pub use arch::{Arch, DatasetKind, Family, InputShape, Layer, LayerKind, ParamTensor, Task};
pub use error::{ArchError, Error};
pub use graph::{Edge, EdgeType, NeuralGraph};
