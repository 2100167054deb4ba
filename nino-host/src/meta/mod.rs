//! Layer 6, meta-training: making NiNo itself.
//!
//! Recording Adam trajectories of many networks as a dataset ([`collect`]) and training a NiNo (reference
//! or NiNo++) on them ([`train`]). Uses [`crate::io`], [`crate::kernels`] and [`crate::training`].

pub mod collect;
pub mod floor;
pub mod train;
