//! The training loop: batches, Adam steps, evaluation, stopping at the target.
