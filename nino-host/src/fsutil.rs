//! Crash-safe file writes: temporary file, fsync, rename.
