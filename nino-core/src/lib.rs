//! nino-core: the `no_std`, allocation-free heart of nino.
//!
//! Everything here is a pure function over caller-owned slices: target-network architectures and their
//! flat parameter layout, training ops with backward passes, Adam, the neural graph, spectral features,
//! the NiNo nowcaster and its schedules. Sizes are computable up front so a caller can allocate once.
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

pub use arch::{Arch, Family, InputShape, Layer, LayerKind, ParamTensor, Task};
pub use error::{ArchError, Error};
pub use graph::{Edge, EdgeType, NeuralGraph};
