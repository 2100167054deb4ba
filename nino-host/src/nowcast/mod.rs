//! Layer 4, NiNo on the host: predicting parameters ahead inside a training run.
//!
//! The nowcaster owns the weights, the graph features and the buffers of one network ([`nowcaster`]); the
//! hook applies it every period of Adam steps, with rollback and the deferred verdict ([`hook`]). Uses
//! [`crate::io`], [`crate::kernels`] and [`crate::training`].

pub mod hook;
pub mod nowcaster;
