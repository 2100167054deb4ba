//! Same-run PyTorch baselines for the benchmarks: the machine's speed drifts (shared host), so a ratio
//! against a figure measured on another day says little; `scripts/torch_baseline.py` times PyTorch on the
//! same shapes right beside ours.

use nino_core::Task;
use std::process::{Command, Stdio};

/// The environment variable naming a Python interpreter that has torch.
pub const PYTHON_ENV: &str = "NINO_TORCH_PYTHON";

/// PyTorch medians from one run of the script.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TorchTimes {
    /// Adam training step at batch 128 (forward, backward, update), ms.
    pub step_ms: f64,
    /// Evaluating 10,000 test images, ms, when asked for.
    pub eval_ms: Option<f64>,
}

impl TorchTimes {
    /// The mean of two measurements (taken before and after ours); either alone if the other failed.
    pub fn mean(a: Option<TorchTimes>, b: Option<TorchTimes>) -> Option<TorchTimes> {
        let avg = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => Some((x + y) / 2.0),
            (x, y) => x.or(y),
        };
        match (a, b) {
            (Some(a), Some(b)) => {
                Some(TorchTimes { step_ms: (a.step_ms + b.step_ms) / 2.0, eval_ms: avg(a.eval_ms, b.eval_ms) })
            }
            (a, b) => a.or(b),
        }
    }
}

/// Whether a same-run baseline was asked for (`NINO_TORCH_PYTHON` is set).
pub fn enabled() -> bool {
    std::env::var_os(PYTHON_ENV).is_some()
}

/// Times PyTorch's `Net` for `task` with `scripts/torch_baseline.py`; `None` if not enabled or the
/// script fails (no torch, say), so a bench prints n/a rather than stopping.
pub fn torch_times(task: Task, runs: usize, eval: bool) -> Option<TorchTimes> {
    let python = std::env::var_os(PYTHON_ENV)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/torch_baseline.py");
    let mut cmd = Command::new(python);
    cmd.args([script, "--task", task.name(), "--runs", &runs.to_string()]);
    if eval {
        cmd.arg("--eval");
    }
    let out = cmd.stderr(Stdio::null()).output().ok().filter(|o| o.status.success())?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(TorchTimes { step_ms: v["step_ms"].as_f64()?, eval_ms: v["eval_ms"].as_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_keeps_what_was_measured() {
        let a = TorchTimes { step_ms: 10.0, eval_ms: Some(100.0) };
        let b = TorchTimes { step_ms: 20.0, eval_ms: None };
        assert_eq!(TorchTimes::mean(Some(a), Some(b)), Some(TorchTimes { step_ms: 15.0, eval_ms: Some(100.0) }));
        assert_eq!(TorchTimes::mean(None, Some(b)), Some(b));
        assert_eq!(TorchTimes::mean(None, None), None);
    }
}
