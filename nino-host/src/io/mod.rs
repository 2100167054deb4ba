//! Layer 1, files: every byte the host reads or writes, and nothing above it.
//!
//! Crash-safe writes ([`atomic`]), IDX and CIFAR datasets and their splits ([`data`], with the CIFAR binary
//! format in [`cifar`]), safetensors tensors
//! ([`tensor_file`], the one place that turns tensors into bytes), NiNo weights ([`weights`]) and model
//! files ([`model_file`]), the trajectory collection format ([`collection`]) and PNG line plots ([`plot`]).
//! Uses no other layer of the crate.

pub mod atomic;
pub mod cifar;
pub mod collection;
pub mod data;
pub mod model_file;
pub mod plot;
pub mod tensor_file;
pub mod weights;
