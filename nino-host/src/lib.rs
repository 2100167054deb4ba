//! nino-host: drives `nino-core` on a machine with std (data, weights, training, experiments).
#![warn(missing_docs)]
