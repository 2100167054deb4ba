//! Golden tests (being written).
