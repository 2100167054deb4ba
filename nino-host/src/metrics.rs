//! Per-evaluation metrics (CSV or JSON lines) and the run summary.
