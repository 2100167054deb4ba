//! Per-evaluation metrics (CSV or JSON lines) and the run summary.
//!
//! Accuracies are fractions in [0, 1] in every file; the human table prints percentages. Times are
//! seconds since the start of training, cumulative, measured apart: optimizer steps (`train_seconds`),
//! test-set evaluations (`eval_seconds`), and everything together (`wall_seconds`).

use crate::io::atomic::write_atomic;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One evaluation of the test set, a row of the metrics file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalRow {
    /// Training steps done (1-based step count; nowcasts counted as steps).
    pub step: u64,
    /// Mean training-batch loss of the optimizer steps since the previous evaluation (`None` if none).
    pub train_loss: Option<f32>,
    /// Mean cross-entropy on the test set.
    pub test_loss: f32,
    /// Fraction of test examples classified correctly.
    pub test_accuracy: f32,
    /// Cumulative time in optimizer steps (batch gathering, forward, backward, update).
    pub train_seconds: f64,
    /// Cumulative time in test-set evaluations.
    pub eval_seconds: f64,
    /// Time since training started.
    pub wall_seconds: f64,
}

/// File format of `--metrics`, chosen by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsFormat {
    /// `.csv`: a header line, then one row per evaluation (an empty `train_loss` means none).
    Csv,
    /// `.jsonl`: one JSON object per evaluation and line.
    JsonLines,
}

/// Why a metrics or summary file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The extension is neither `.csv` nor `.jsonl`.
    #[error("metrics file {0} must end in .csv or .jsonl")]
    UnknownFormat(PathBuf),
    /// The directory the file would go into does not exist.
    #[error("cannot write {0}: its directory does not exist")]
    NoDirectory(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl MetricsFormat {
    /// Picks the format from `path`'s extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<MetricsFormat, MetricsError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(MetricsFormat::Csv),
            Some("jsonl") => Ok(MetricsFormat::JsonLines),
            _ => Err(MetricsError::UnknownFormat(path.to_path_buf())),
        }
    }
}

/// Fails early, before a long run, when `path`'s directory does not exist.
pub fn check_writable_dir(path: &Path) -> Result<(), MetricsError> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => Err(MetricsError::NoDirectory(path.to_path_buf())),
        _ => Ok(()),
    }
}

/// A verdict's name, one of [`nino_core::rollback::Verdict::name`]'s (an alias, so that serde reads it
/// with [`verdict_name`] instead of borrowing from the input).
pub type VerdictName = &'static str;

/// A verdict's name read back from a summary: one of [`nino_core::rollback::Verdict::name`]'s.
fn verdict_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    use nino_core::rollback::Verdict;
    let s = <String as serde::Deserialize>::deserialize(d)?;
    [Verdict::Keep, Verdict::NonFinite, Verdict::LossRose, Verdict::WorseLater, Verdict::Retired]
        .into_iter()
        .map(Verdict::name)
        .find(|n| *n == s)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown verdict `{s}`")))
}

/// Reads back a metrics CSV written by [`MetricsLog`] (`--resume` of an experiment reuses finished runs).
pub fn parse_csv_rows(text: &str) -> Result<Vec<EvalRow>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err("not a nino metrics CSV (unexpected header)".into());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let bad = || format!("line {}: `{line}` is not a metrics row", i + 2);
            if f.len() != 7 {
                return Err(bad());
            }
            let num = |x: &str| x.parse::<f64>().ok().filter(|v| v.is_finite());
            let train_loss = match f[1] {
                "" => None,
                x => Some(num(x).ok_or_else(bad)? as f32),
            };
            Ok(EvalRow {
                step: f[0].parse().map_err(|_| bad())?,
                train_loss,
                test_loss: num(f[2]).ok_or_else(bad)? as f32,
                test_accuracy: num(f[3]).ok_or_else(bad)? as f32,
                train_seconds: num(f[4]).ok_or_else(bad)?,
                eval_seconds: num(f[5]).ok_or_else(bad)?,
                wall_seconds: num(f[6]).ok_or_else(bad)?,
            })
        })
        .collect()
}

/// The CSV header line, without newline.
pub const CSV_HEADER: &str = "step,train_loss,test_loss,test_accuracy,train_seconds,eval_seconds,wall_seconds";

/// Renders all rows in `format`.
pub fn render_rows(rows: &[EvalRow], format: MetricsFormat) -> String {
    let mut s = String::new();
    match format {
        MetricsFormat::Csv => {
            s.push_str(CSV_HEADER);
            s.push('\n');
            for r in rows {
                let tl = r.train_loss.map(|v| v.to_string()).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "{},{},{},{},{:.6},{:.6},{:.6}",
                    r.step, tl, r.test_loss, r.test_accuracy, r.train_seconds, r.eval_seconds, r.wall_seconds
                );
            }
        }
        MetricsFormat::JsonLines => {
            for r in rows {
                // Serialising a plain struct of numbers cannot fail; NaN becomes null.
                s.push_str(&serde_json::to_string(r).unwrap_or_default());
                s.push('\n');
            }
        }
    }
    s
}

/// A metrics file that is rewritten, atomically and complete, after every evaluation.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    format: MetricsFormat,
    rows: Vec<EvalRow>,
}

impl MetricsLog {
    /// A log for `path`, format from its extension; checks the directory exists, writes nothing yet.
    pub fn new(path: &Path) -> Result<MetricsLog, MetricsError> {
        let format = MetricsFormat::from_path(path)?;
        check_writable_dir(path)?;
        Ok(MetricsLog { path: path.to_path_buf(), format, rows: Vec::new() })
    }

    /// Appends a row and rewrites the file.
    pub fn push(&mut self, row: EvalRow) -> Result<(), MetricsError> {
        self.rows.push(row);
        write_atomic(&self.path, render_rows(&self.rows, self.format).as_bytes())
            .map_err(|source| MetricsError::Io { path: self.path.clone(), source })
    }

    /// Starts from the rows of a resumed run and rewrites the file with them, so it never holds rows a
    /// killed run wrote after its last checkpoint (they come again, identical, as training continues).
    pub fn resume(&mut self, rows: Vec<EvalRow>) -> Result<(), MetricsError> {
        self.rows = rows;
        write_atomic(&self.path, render_rows(&self.rows, self.format).as_bytes())
            .map_err(|source| MetricsError::Io { path: self.path.clone(), source })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The run summary (`--summary-json`): one JSON object, the protocol's headline numbers.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Built-in task name, or `None` for `--data/--arch` runs.
    pub task: Option<String>,
    /// Arch spec (`conv:16,32,32`).
    pub arch: String,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
    /// Adam learning rate.
    pub lr: f32,
    /// Batch size.
    pub batch: usize,
    /// Steps between evaluations (the reference evaluated after every step).
    pub eval_every: u64,
    /// The denser evaluations near the target (`--eval-fine`), if any.
    pub eval_fine: Option<FineEval>,
    /// Target test accuracy (fraction), if any.
    pub target: Option<f32>,
    /// Step of the first evaluation at or above the target, `None` if never reached.
    pub steps_to_target: Option<u64>,
    /// Test accuracy at the last evaluation.
    pub final_accuracy: f32,
    /// Best test accuracy of any evaluation.
    pub best_accuracy: f32,
    /// Steps done (nowcasts counted).
    pub steps_run: u64,
    /// Time in optimizer steps.
    pub train_seconds: f64,
    /// Time in evaluations.
    pub eval_seconds: f64,
    /// Wall time of the training loop.
    pub wall_seconds: f64,
    /// NiNo nowcasts done (0 without NiNo).
    pub nowcasts: u64,
    /// Time in nowcasts.
    pub nowcast_seconds: f64,
    /// Nowcasts that were undone (0 without NiNo).
    pub rollbacks: u64,
    /// Every nowcast with its rollback losses, so a rollback can be explained from the summary alone.
    pub events: Vec<NowcastRecord>,
}

/// One nowcast in the summary: what it did to the probe loss and what the rollback rule decided.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct NowcastRecord {
    /// 1-based step of the nowcast.
    pub step: u64,
    /// Horizon used (the retry's, if one was made).
    pub k: usize,
    /// What the probe loss was judged against (`null` when rollback is off).
    pub baseline: Option<f32>,
    /// Probe loss right after the nowcast (`null` when rollback is off or it was not finite).
    pub probe: Option<f32>,
    /// `probe / baseline`, the number `--rollback RATIO` bounds.
    pub ratio: Option<f32>,
    /// Probe loss at the deferred verdict (`null` when none was taken).
    pub later: Option<f32>,
    /// The rule's decision ([`nino_core::rollback::Verdict::name`]).
    #[serde(deserialize_with = "verdict_name")]
    pub verdict: VerdictName,
    /// Whether a retry with a quarter of the horizon was made.
    pub retried: bool,
}

impl Summary {
    /// The summary as one pretty-printed JSON object, with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes [`Summary::to_json`] atomically to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), MetricsError> {
        write_atomic(path, self.to_json().as_bytes())
            .map_err(|source| MetricsError::Io { path: path.to_path_buf(), source })
    }

    /// A human-readable table of the summary.
    pub fn table(&self) -> String {
        let pct = |a: f32| format!("{:.2}%", 100.0 * a);
        let mut rows: Vec<(&str, String)> = vec![
            ("task", self.task.clone().unwrap_or_else(|| "-".into())),
            ("arch", self.arch.clone()),
            ("seed", self.seed.to_string()),
            ("lr / batch", format!("{} / {}", self.lr, self.batch)),
            ("evaluation", eval_schedule(self.eval_every, self.eval_fine)),
            ("target", self.target.map_or("-".into(), pct)),
            ("steps to target", self.steps_to_target.map_or("not reached".into(), |s| s.to_string())),
            ("final accuracy", pct(self.final_accuracy)),
            ("best accuracy", pct(self.best_accuracy)),
            ("steps run", self.steps_run.to_string()),
            ("train time", format!("{:.2} s", self.train_seconds)),
        ];
        if self.steps_run > 0 {
            let per = 1000.0 * self.train_seconds / (self.steps_run - self.nowcasts).max(1) as f64;
            rows.push(("per optimizer step", format!("{per:.2} ms")));
        }
        rows.push(("eval time", format!("{:.2} s", self.eval_seconds)));
        rows.push((
            "nowcasts",
            format!("{} ({:.2} s, {} rolled back)", self.nowcasts, self.nowcast_seconds, self.rollbacks),
        ));
        rows.push(("wall time", format!("{:.2} s", self.wall_seconds)));
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<w$}  {v}");
        }
        s
    }
}

/// The evaluation schedule as summaries and tables state it: `every 100 steps`, or `every 100 steps; every
/// step within 0.50 points of the target`.
pub fn eval_schedule(every: u64, fine: Option<FineEval>) -> String {
    let steps = |n: u64| if n == 1 { "every step".to_string() } else { format!("every {n} steps") };
    match fine {
        None => steps(every),
        Some(f) => format!("{}; {} within {:.2} points of the target", steps(every), steps(f.every), 100.0 * f.margin),
    }
}

/// Loss and accuracy of a network on a labelled set: what the engine and every model the loop trains return.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f32,
    /// Examples classified correctly.
    pub correct: usize,
    /// Examples evaluated.
    pub total: usize,
}

impl Evaluation {
    /// Fraction correct (0 for an empty set).
    pub fn accuracy(&self) -> f32 {
        if self.total == 0 { 0.0 } else { self.correct as f32 / self.total as f32 }
    }
}

/// Denser evaluation near the target, so steps to target come close to the reference's per-step
/// resolution (docs/spec.md §10 Q14) without paying for a test pass after every step.
///
/// Once any evaluation has reached `target - margin`, the test set is also evaluated every `every` steps
/// for the rest of the run. The switch is a function of the evaluations so far, so a resumed run makes it
/// at the same step.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FineEval {
    /// Steps between evaluations once near the target (at least 1).
    pub every: u64,
    /// How far below the target (a fraction: 0.005 is half a point) the dense evaluations start.
    pub margin: f32,
}

impl FineEval {
    /// Whether an evaluation at `accuracy` switches to dense evaluation for a run aiming at `target`.
    pub fn near(&self, accuracy: f32, target: f32) -> bool {
        accuracy >= target - self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, train_loss: Option<f32>) -> EvalRow {
        EvalRow {
            step,
            train_loss,
            test_loss: 0.5,
            test_accuracy: 0.875,
            train_seconds: 1.25,
            eval_seconds: 0.5,
            wall_seconds: 2.0,
        }
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(MetricsFormat::from_path(Path::new("a/m.csv")).unwrap(), MetricsFormat::Csv);
        assert_eq!(MetricsFormat::from_path(Path::new("m.JSONL")).unwrap(), MetricsFormat::JsonLines);
        assert!(matches!(MetricsFormat::from_path(Path::new("m.json")), Err(MetricsError::UnknownFormat(_))));
        assert!(MetricsFormat::from_path(Path::new("m")).is_err());
    }

    #[test]
    fn csv_rows() {
        let s = render_rows(&[row(100, Some(0.75)), row(200, None)], MetricsFormat::Csv);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "100,0.75,0.5,0.875,1.250000,0.500000,2.000000");
        assert_eq!(lines[2], "200,,0.5,0.875,1.250000,0.500000,2.000000");
    }

    #[test]
    fn csv_rows_parse_back_and_garbage_is_refused() {
        let rows = [row(100, Some(0.75)), row(200, None)];
        let back = parse_csv_rows(&render_rows(&rows, MetricsFormat::Csv)).unwrap();
        assert_eq!(back, rows);
        for bad in [
            "",
            "step,x\n",
            "step,train_loss,test_loss,test_accuracy,train_seconds,eval_seconds,wall_seconds\n1,2\n",
            "step,train_loss,test_loss,test_accuracy,train_seconds,eval_seconds,wall_seconds\n1,,NaN,0.5,1,1,1\n",
        ] {
            assert!(parse_csv_rows(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jsonl_rows_parse_back() {
        let s = render_rows(&[row(100, Some(0.75)), row(200, None)], MetricsFormat::JsonLines);
        let v: Vec<serde_json::Value> = s.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["step"], 100);
        assert_eq!(v[0]["train_loss"], 0.75);
        assert!(v[1]["train_loss"].is_null());
        assert_eq!(v[1]["test_accuracy"], 0.875);
    }

    #[test]
    fn log_rewrites_the_whole_file_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let mut log = MetricsLog::new(&p).unwrap();
        log.push(row(1, None)).unwrap();
        log.push(row(2, Some(1.0))).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 3);
        assert!(matches!(MetricsLog::new(&dir.path().join("x/m.csv")), Err(MetricsError::NoDirectory(_))));
        let mut resumed = MetricsLog::new(&p).unwrap();
        resumed.resume(vec![row(1, None)]).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
        resumed.push(row(2, Some(1.0))).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 3);
    }

    #[test]
    fn summary_json_has_the_protocol_fields() {
        let s = Summary {
            task: Some("fm16".into()),
            arch: "conv:16,32,32".into(),
            seed: 1000,
            lr: 0.006,
            batch: 128,
            eval_every: 100,
            eval_fine: Some(FineEval { every: 10, margin: 0.005 }),
            target: Some(0.895),
            steps_to_target: None,
            final_accuracy: 0.88,
            best_accuracy: 0.89,
            steps_run: 10_000,
            train_seconds: 100.0,
            eval_seconds: 10.0,
            wall_seconds: 111.0,
            nowcasts: 0,
            nowcast_seconds: 0.0,
            rollbacks: 0,
            events: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        for k in [
            "task",
            "arch",
            "seed",
            "eval_every",
            "eval_fine",
            "target",
            "steps_to_target",
            "final_accuracy",
            "best_accuracy",
            "steps_run",
            "train_seconds",
            "eval_seconds",
            "nowcasts",
            "nowcast_seconds",
            "rollbacks",
            "events",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(v["steps_to_target"].is_null());
        assert_eq!(v["seed"], 1000);
        assert_eq!(v["eval_fine"]["every"], 10);
        let t = s.table();
        assert!(t.contains("not reached") && t.contains("88.00%") && t.contains("10.00 ms"), "{t}");
        assert!(t.contains("every 100 steps; every 10 steps within 0.50 points of the target"), "{t}");
    }

    #[test]
    fn evaluation_schedules_read_as_sentences() {
        assert_eq!(eval_schedule(1, None), "every step");
        assert_eq!(eval_schedule(100, None), "every 100 steps");
        let fine = |every| Some(FineEval { every, margin: 0.005 });
        assert_eq!(eval_schedule(100, fine(1)), "every 100 steps; every step within 0.50 points of the target");
    }
}
