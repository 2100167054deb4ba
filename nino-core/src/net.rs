//! Whole-network forward, backward and evaluation of an `Arch` over caller-provided buffers.
