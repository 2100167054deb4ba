//! The parsers under fuzz, as nino-host builds them: its `io` readers under the short names the older
//! targets use (the checkpoint and collection targets import from `nino_host` directly).

pub use nino_host::io::{cifar, data, tensor_file, weights};
