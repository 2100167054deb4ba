//! Checkpoints of `nino train`: everything a killed run needs to continue bit-identically, in one
//! safetensors file.
//!
//! One file, written with [`write_atomic`] (temporary file, fsync, rename), so a crash leaves the previous
//! checkpoint or the new one, never half of one or a mix of two. Every number that must come back
//! exactly is a tensor in its own type (f32 as F32, f64 as F64); the settings and integer counters are
//! JSON in the safetensors metadata:
//!
//! | tensor | dtype, shape | contents |
//! |---|---|---|
//! | `params`, `adam.m`, `adam.v` | F32 `[P]` | parameters (PyTorch order), Adam's first and second moments |
//! | `loop` | F64 `[5]` | training-loss sum since the last evaluation; train, eval, nowcast and wall seconds |
//! | `rows` | F64 `[n, 7]` | the evaluation rows in the metrics file's columns (NaN train loss: none) |
//! | `nino.history` | F32 `[c, P]` | NiNo's context states of the current window (`--nino` only) |
//! | `nino.loss_sum` | F64 `[1]` | the running sum of the rollback baseline |
//! | `nino.events` | F64 `[e, 7]` | per nowcast: step, k, baseline, probe, verdict (0 keep, 1 non-finite, 2 loss rose, 3 worse later, 4 retired), retried, the deferred verdict's probe |
//!
//! Metadata: `format` (`nino-checkpoint/1`), `config` (the run's settings: flag to value), `state` (step,
//! loss count, sampler epoch, nowcasts, rollbacks, steps to target, Adam's step count, NiNo counters) and
//! `crc32`, a checksum over all of it, so a flipped byte is caught as well as a truncated file.

use crate::io::atomic::write_atomic;
use crate::io::tensor_file::{self, f32_bytes, f64_bytes};
use crate::nowcast::hook::{NinoState, NowcastEvent};
use crate::training::metrics::EvalRow;
use crate::training::trainer::LoopState;
use nino_core::rollback::Verdict;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `format` metadata value of the checkpoints this version writes and reads.
pub const FORMAT: &str = "nino-checkpoint/2";

/// Why a checkpoint cannot be read or used; every message is one line and names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be read.
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file cannot be written.
    #[error("cannot write checkpoint {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a complete, intact checkpoint.
    #[error("checkpoint {path} is truncated or corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A valid safetensors file, but not a checkpoint of this format.
    #[error("{path} is not a nino checkpoint (metadata `format` is {found}, expected `{FORMAT}`)")]
    NotCheckpoint {
        /// The file.
        path: PathBuf,
        /// The `format` found, or `missing`.
        found: String,
    },
    /// NaN or infinity where training state must be finite.
    #[error("checkpoint {path} holds a non-finite value ({value}) in `{tensor}` at index {index}: refusing to resume")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: &'static str,
        /// First bad index.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The checkpoint was written by a run with other settings.
    #[error(
        "checkpoint {path} was written by another run: {key} is {there} there but {here} here \
         (resume with the flags of the run that wrote it)"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The setting (a flag name).
        key: String,
        /// Its value in the checkpoint.
        there: String,
        /// Its value on this command line.
        here: String,
    },
}

/// The settings that decide a run's results, as (flag, value) pairs in a fixed order; a run may only
/// resume a checkpoint whose settings are the same.
#[derive(Clone, Debug, Default)]
pub struct RecordedSettings(pub Vec<(String, String)>);

impl RecordedSettings {
    /// Adds a setting.
    pub fn push(&mut self, key: &str, value: impl ToString) {
        self.0.push((key.to_string(), value.to_string()));
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first setting that differs between the checkpoint's (`self`) and this run's (`here`).
    pub fn check(&self, here: &RecordedSettings, path: &Path) -> Result<(), CheckpointError> {
        let keys = here.0.iter().map(|(k, _)| k).chain(self.0.iter().map(|(k, _)| k));
        for key in keys {
            let (there, now) = (self.get(key), here.get(key));
            if there != now {
                return Err(CheckpointError::Mismatch {
                    path: path.to_path_buf(),
                    // The checkpoint's side comes from the file: escaped to stay on one line.
                    key: key.escape_debug().to_string(),
                    there: there.unwrap_or("unset").escape_debug().to_string(),
                    here: now.unwrap_or("unset").escape_debug().to_string(),
                });
            }
        }
        Ok(())
    }

    /// The settings as a JSON object (flag to value), as checkpoints and experiment runs store them.
    pub fn to_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> =
            self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        serde_json::Value::Object(map).to_string()
    }

    /// Reads [`RecordedSettings::to_json`] back; `None` if it is not such an object.
    pub fn from_json(s: &str) -> Option<RecordedSettings> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s).ok()?;
        let pairs = map.into_iter().map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect::<Option<Vec<_>>>()?;
        Some(RecordedSettings(pairs))
    }
}

/// Everything a checkpoint holds.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The settings of the run that wrote it.
    pub config: RecordedSettings,
    /// The training loop's state after the step.
    pub state: LoopState,
    /// Parameters, PyTorch order.
    pub params: Vec<f32>,
    /// Adam's first moments.
    pub adam_m: Vec<f32>,
    /// Adam's second moments.
    pub adam_v: Vec<f32>,
    /// Adam's step count.
    pub adam_t: u64,
    /// The NiNo hook's state (runs with `--nino`).
    pub nino: Option<NinoState>,
}

/// The integer counters kept as JSON metadata.
#[derive(Debug, Serialize, Deserialize)]
struct Counters {
    step: u64,
    loss_n: u64,
    sampler_epoch: u64,
    nowcasts: u64,
    rollbacks: u64,
    steps_to_target: Option<u64>,
    adam_t: u64,
    params: usize,
    rows: usize,
    nino: Option<NinoCounters>,
}

#[derive(Debug, Serialize, Deserialize)]
struct NinoCounters {
    ctx: usize,
    recorded: usize,
    loss_n: u64,
    events: usize,
}

const ROW_COLS: usize = 7;
const EVENT_COLS: usize = 7;

fn verdict_code(v: Verdict) -> f64 {
    match v {
        Verdict::Keep => 0.0,
        Verdict::NonFinite => 1.0,
        Verdict::LossRose => 2.0,
        Verdict::WorseLater => 3.0,
        Verdict::Retired => 4.0,
    }
}

fn verdict_from_code(code: f64) -> Option<Verdict> {
    [Verdict::Keep, Verdict::NonFinite, Verdict::LossRose, Verdict::WorseLater, Verdict::Retired]
        .into_iter()
        .find(|&v| verdict_code(v) == code)
}

/// CRC-32 of the metadata strings and of every tensor (name, dtype, shape, bytes) in name order.
fn checksum<'a>(meta: [&str; 3], tensors: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> u32 {
    let mut crc = flate2::Crc::new();
    for m in meta {
        crc.update(&(m.len() as u64).to_le_bytes());
        crc.update(m.as_bytes());
    }
    let mut ts: Vec<_> = tensors.into_iter().collect();
    ts.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape, data) in ts {
        crc.update(&(name.len() as u64).to_le_bytes());
        crc.update(name.as_bytes());
        crc.update(format!("{dtype:?}").as_bytes());
        for d in shape {
            crc.update(&(*d as u64).to_le_bytes());
        }
        crc.update(&(data.len() as u64).to_le_bytes());
        crc.update(data);
    }
    crc.sum()
}

impl Checkpoint {
    /// The checkpoint as safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, safetensors::SafeTensorError> {
        let s = &self.state;
        let p = self.params.len();
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            ("params", Dtype::F32, vec![p], f32_bytes(&self.params)),
            ("adam.m", Dtype::F32, vec![self.adam_m.len()], f32_bytes(&self.adam_m)),
            ("adam.v", Dtype::F32, vec![self.adam_v.len()], f32_bytes(&self.adam_v)),
        ];
        let lp = [s.loss_sum, s.train_seconds, s.eval_seconds, s.nowcast_seconds, s.wall_seconds];
        tensors.push(("loop", Dtype::F64, vec![lp.len()], f64_bytes(&lp)));
        let rows: Vec<f64> = s
            .rows
            .iter()
            .flat_map(|r| {
                [
                    r.step as f64,
                    r.train_loss.map_or(f64::NAN, f64::from),
                    f64::from(r.test_loss),
                    f64::from(r.test_accuracy),
                    r.train_seconds,
                    r.eval_seconds,
                    r.wall_seconds,
                ]
            })
            .collect();
        tensors.push(("rows", Dtype::F64, vec![s.rows.len(), ROW_COLS], f64_bytes(&rows)));
        let nino = self.nino.as_ref().map(|n| {
            let events: Vec<f64> = n
                .events
                .iter()
                .flat_map(|e| {
                    [
                        e.step as f64,
                        e.k as f64,
                        f64::from(e.baseline),
                        f64::from(e.probe),
                        verdict_code(e.verdict),
                        f64::from(u8::from(e.retried)),
                        f64::from(e.later),
                    ]
                })
                .collect();
            tensors.push(("nino.history", Dtype::F32, vec![n.ctx, p], f32_bytes(&n.history)));
            tensors.push(("nino.loss_sum", Dtype::F64, vec![1], f64_bytes(&[n.loss_sum])));
            tensors.push(("nino.events", Dtype::F64, vec![n.events.len(), EVENT_COLS], f64_bytes(&events)));
            NinoCounters { ctx: n.ctx, recorded: n.recorded, loss_n: n.loss_n, events: n.events.len() }
        });
        let counters = Counters {
            step: s.step,
            loss_n: s.loss_n,
            sampler_epoch: s.sampler_epoch,
            nowcasts: s.nowcasts,
            rollbacks: s.rollbacks,
            steps_to_target: s.steps_to_target,
            adam_t: self.adam_t,
            params: p,
            rows: s.rows.len(),
            nino,
        };
        let config = self.config.to_json();
        let state = serde_json::to_string(&counters).map_err(safetensors::SafeTensorError::JsonError)?;
        let crc = checksum(
            [FORMAT, &config, &state],
            tensors.iter().map(|(n, d, s, b)| (*n, *d, s.as_slice(), b.as_slice())),
        );
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("config".to_string(), config),
            ("state".to_string(), state),
            ("crc32".to_string(), format!("{crc:08x}")),
        ]);
        let views = tensors
            .iter()
            .map(|(n, d, s, b)| Ok((*n, TensorView::new(*d, s.clone(), b)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        safetensors::serialize(views, Some(meta))
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self
            .to_bytes()
            .map_err(|e| CheckpointError::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
        write_atomic(path, &bytes).map_err(|source| CheckpointError::Write { path: path.to_path_buf(), source })
    }

    /// Reads and checks the checkpoint at `path` (format, checksum, shapes, finite training state).
    pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
        Checkpoint::from_bytes(&bytes, path)
    }

    /// Parses and checks checkpoint bytes; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt { path: path.to_path_buf(), reason };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let md = meta.metadata().clone().unwrap_or_default();
        match md.get("format") {
            Some(f) if f == FORMAT => {}
            found => {
                // Bytes from the file: escaped, so the message stays one line whatever they hold.
                let found = found.map_or("missing".to_string(), |f| format!("`{}`", f.escape_debug()));
                return Err(CheckpointError::NotCheckpoint { path: path.to_path_buf(), found });
            }
        }
        let field = |k: &str| md.get(k).ok_or_else(|| corrupt(format!("no `{k}` in its metadata")));
        let (config, state, crc) = (field("config")?, field("state")?, field("crc32")?);
        let list = st.tensors();
        let computed =
            checksum([FORMAT, config, state], list.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())));
        if format!("{computed:08x}") != *crc {
            return Err(corrupt(format!("checksum {computed:08x} does not match the stored {}", crc.escape_debug())));
        }
        let config = RecordedSettings::from_json(config).ok_or_else(|| corrupt("unreadable `config`".into()))?;
        let c: Counters = serde_json::from_str(state).map_err(|e| corrupt(format!("unreadable `state`: {e}")))?;
        let tensor = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>, CheckpointError> {
            let v = st.tensor(name).map_err(|_| corrupt(format!("no tensor `{name}`")))?;
            if v.dtype() != dtype || v.shape() != shape {
                return Err(corrupt(format!(
                    "tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
                    v.dtype(),
                    v.shape()
                )));
            }
            Ok(v.data().to_vec())
        };
        let f32s = |name: &str, shape: &[usize]| -> Result<Vec<f32>, CheckpointError> {
            let b = tensor(name, Dtype::F32, shape)?;
            Ok(tensor_file::f32s(&b))
        };
        let f64s = |name: &str, shape: &[usize]| -> Result<Vec<f64>, CheckpointError> {
            let b = tensor(name, Dtype::F64, shape)?;
            Ok(tensor_file::f64s(&b))
        };
        let p = c.params;
        let params = f32s("params", &[p])?;
        let adam_m = f32s("adam.m", &[p])?;
        let adam_v = f32s("adam.v", &[p])?;
        let lp = f64s("loop", &[5])?;
        let rows = f64s("rows", &[c.rows, ROW_COLS])?
            .chunks_exact(ROW_COLS)
            .map(|r| EvalRow {
                step: r[0] as u64,
                train_loss: (!r[1].is_nan()).then_some(r[1] as f32),
                test_loss: r[2] as f32,
                test_accuracy: r[3] as f32,
                train_seconds: r[4],
                eval_seconds: r[5],
                wall_seconds: r[6],
            })
            .collect();
        let nino = match &c.nino {
            None => None,
            Some(n) => {
                let events = f64s("nino.events", &[n.events, EVENT_COLS])?
                    .chunks_exact(EVENT_COLS)
                    .map(|e| {
                        let verdict = verdict_from_code(e[4]).ok_or_else(|| CheckpointError::Corrupt {
                            path: path.to_path_buf(),
                            reason: format!("unknown nowcast verdict code {} in `nino.events`", e[4]),
                        })?;
                        Ok(NowcastEvent {
                            step: e[0] as u64,
                            k: e[1] as usize,
                            baseline: e[2] as f32,
                            probe: e[3] as f32,
                            later: e[6] as f32,
                            verdict,
                            retried: e[5] != 0.0,
                        })
                    })
                    .collect::<Result<_, CheckpointError>>()?;
                Some(NinoState {
                    ctx: n.ctx,
                    history: f32s("nino.history", &[n.ctx, p])?,
                    recorded: n.recorded,
                    loss_sum: f64s("nino.loss_sum", &[1])?[0],
                    loss_n: n.loss_n,
                    events,
                })
            }
        };
        let ck = Checkpoint {
            config,
            state: LoopState {
                step: c.step,
                rows,
                loss_sum: lp[0],
                loss_n: c.loss_n,
                sampler_epoch: c.sampler_epoch,
                nowcasts: c.nowcasts,
                rollbacks: c.rollbacks,
                steps_to_target: c.steps_to_target,
                train_seconds: lp[1],
                eval_seconds: lp[2],
                nowcast_seconds: lp[3],
                wall_seconds: lp[4],
            },
            params,
            adam_m,
            adam_v,
            adam_t: c.adam_t,
            nino,
        };
        ck.check_finite(path)?;
        Ok(ck)
    }

    /// `bytes` (a safetensors file) with its `crc32` recomputed over its metadata and tensors; `None` if
    /// they do not parse as safetensors or lack the `config` or `state` metadata. For the fuzz target and
    /// corruption tests, which change a checkpoint on purpose and want the checks behind the checksum
    /// (shapes, counters, finite values) to see the change.
    pub fn reseal(bytes: &[u8]) -> Option<Vec<u8>> {
        let (_, meta) = SafeTensors::read_metadata(bytes).ok()?;
        let st = SafeTensors::deserialize(bytes).ok()?;
        let mut md = meta.metadata().clone()?;
        let list = st.tensors();
        let crc = checksum(
            [FORMAT, md.get("config")?.as_str(), md.get("state")?.as_str()],
            list.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
        );
        md.insert("crc32".to_string(), format!("{crc:08x}"));
        let views = list.iter().map(|(n, v)| (n.as_str(), v.clone()));
        safetensors::serialize(views, Some(md)).ok()
    }

    /// Refuses NaN or infinite parameters, moments or NiNo states.
    fn check_finite(&self, path: &Path) -> Result<(), CheckpointError> {
        let history = self.nino.as_ref().map_or(&[][..], |n| &n.history[..]);
        let named = [("params", &self.params[..]), ("adam.m", &self.adam_m), ("adam.v", &self.adam_v)];
        for (tensor, v) in named.into_iter().chain([("nino.history", history)]) {
            if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(CheckpointError::NonFinite { path: path.to_path_buf(), tensor, index, value });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(nino: bool) -> Checkpoint {
        let mut config = RecordedSettings::default();
        config.push("--task", "debug");
        config.push("--lr", 0.006f32);
        let row = |step: u64, train_loss| EvalRow {
            step,
            train_loss,
            test_loss: 0.1 + step as f32 * 1e-3,
            test_accuracy: 0.7,
            train_seconds: 1.0 / 3.0,
            eval_seconds: 0.25,
            wall_seconds: 2.0,
        };
        Checkpoint {
            config,
            state: LoopState {
                step: 25,
                rows: vec![row(0, None), row(20, Some(std::f32::consts::PI))],
                loss_sum: 0.1 + 0.2,
                loss_n: 5,
                sampler_epoch: 2,
                nowcasts: 1,
                rollbacks: 0,
                steps_to_target: None,
                train_seconds: 1.5,
                eval_seconds: 0.5,
                nowcast_seconds: 0.01,
                wall_seconds: 2.5,
            },
            params: vec![1.0, -2.5, 1e-30, 7.0],
            adam_m: vec![0.1; 4],
            adam_v: vec![0.2; 4],
            adam_t: 24,
            nino: nino.then(|| NinoState {
                ctx: 2,
                history: (0..8).map(|i| i as f32 / 7.0).collect(),
                recorded: 1,
                loss_sum: 1.0 / 3.0,
                loss_n: 3,
                events: vec![NowcastEvent {
                    step: 10,
                    k: 40,
                    baseline: 0.5,
                    probe: f32::NAN,
                    later: 0.25,
                    verdict: Verdict::LossRose,
                    retried: true,
                }],
            }),
        }
    }

    #[test]
    fn round_trips_exactly() {
        for nino in [false, true] {
            let ck = sample(nino);
            let back = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), Path::new("c")).unwrap();
            // NaN probe losses compare unequal; compare the rest field by field.
            assert_eq!(back.state, ck.state);
            assert_eq!((back.params, back.adam_m, back.adam_v, back.adam_t), (ck.params, ck.adam_m, ck.adam_v, 24));
            // The metadata's JSON object sorts the settings; they are the same set.
            assert!(back.config.check(&ck.config, Path::new("c")).is_ok() && back.config.0.len() == 2);
            if let (Some(a), Some(b)) = (&back.nino, &ck.nino) {
                assert_eq!((&a.history, a.recorded, a.loss_sum, a.loss_n), (&b.history, 1, b.loss_sum, 3));
                assert_eq!((a.events[0].k, a.events[0].verdict, a.events[0].retried), (40, Verdict::LossRose, true));
                assert!(a.events[0].probe.is_nan() && a.events[0].later == 0.25);
            } else {
                assert!(back.nino.is_none() && !nino);
            }
        }
    }

    #[test]
    fn damage_is_detected() {
        let bytes = sample(true).to_bytes().unwrap();
        let p = Path::new("ck.safetensors");
        for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
            let e = Checkpoint::from_bytes(&bytes[..cut], p).unwrap_err();
            assert!(matches!(e, CheckpointError::Corrupt { .. }), "cut {cut}: {e}");
        }
        // Every single flipped byte in the data section fails the checksum (or the header parse).
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        let e = Checkpoint::from_bytes(&flipped, p).unwrap_err().to_string();
        assert!(e.contains("checksum") && !e.contains('\n'), "{e}");
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert!(matches!(Checkpoint::from_bytes(&garbage, p), Err(CheckpointError::Corrupt { .. })));
        let other = safetensors::serialize([("x", TensorView::new(Dtype::F32, vec![1], &[0; 4]).unwrap())], None);
        let e = Checkpoint::from_bytes(&other.unwrap(), p).unwrap_err();
        assert!(matches!(e, CheckpointError::NotCheckpoint { .. }), "{e}");
    }

    /// The `train_checkpoint` fuzz target's seeds (tests/fuzz/seeds) are checkpoints this version reads;
    /// `NINO_WRITE_FUZZ_SEEDS=1` rewrites them from [`sample`].
    #[test]
    fn fuzz_seeds_are_readable_checkpoints() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/train_checkpoint");
        for (name, nino) in [("adam.safetensors", false), ("nino.safetensors", true)] {
            let path = dir.join(name);
            if std::env::var_os("NINO_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1") {
                std::fs::create_dir_all(&dir).unwrap();
                sample(nino).write(&path).unwrap();
            }
            let c = Checkpoint::read(&path).unwrap_or_else(|e| panic!("{e} (rewrite: NINO_WRITE_FUZZ_SEEDS=1)"));
            assert_eq!(c.nino.is_some(), nino);
        }
    }

    #[test]
    fn reseal_makes_a_changed_checkpoint_pass_the_checksum_only() {
        let bytes = sample(true).to_bytes().unwrap();
        let p = Path::new("c");
        assert_eq!(Checkpoint::reseal(&bytes).map(|b| Checkpoint::from_bytes(&b, p).is_ok()), Some(true));
        // NaN in Adam's first moment, written behind the checksum's back: the checksum fails; resealed, the
        // finite-value check still refuses it.
        let pos = bytes.windows(4).position(|w| w == 0.1f32.to_le_bytes()).unwrap();
        let mut nan = bytes.clone();
        nan[pos..pos + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Checkpoint::from_bytes(&nan, p).unwrap_err().to_string().contains("checksum"));
        let e = Checkpoint::from_bytes(&Checkpoint::reseal(&nan).unwrap(), p).unwrap_err();
        assert!(matches!(e, CheckpointError::NonFinite { tensor: "adam.m", index: 0, .. }), "{e}");
        assert!(Checkpoint::reseal(b"garbage").is_none());
    }

    #[test]
    fn non_finite_state_is_refused() {
        let mut ck = sample(true);
        ck.params[2] = f32::NAN;
        let e = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), Path::new("c")).unwrap_err();
        assert!(matches!(e, CheckpointError::NonFinite { tensor: "params", index: 2, .. }), "{e}");
        let mut ck = sample(true);
        if let Some(n) = ck.nino.as_mut() {
            n.history[5] = f32::INFINITY;
        }
        let e = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), Path::new("c")).unwrap_err();
        assert!(matches!(e, CheckpointError::NonFinite { tensor: "nino.history", index: 5, .. }), "{e}");
        // Adam's moments too: NaN there would turn every later step into NaN.
        let mut ck = sample(false);
        ck.adam_m[1] = f32::NAN;
        let e = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), Path::new("c")).unwrap_err();
        assert!(matches!(e, CheckpointError::NonFinite { tensor: "adam.m", index: 1, .. }), "{e}");
        let mut ck = sample(false);
        ck.adam_v[3] = f32::NEG_INFINITY;
        let e = Checkpoint::from_bytes(&ck.to_bytes().unwrap(), Path::new("c")).unwrap_err();
        assert!(matches!(e, CheckpointError::NonFinite { tensor: "adam.v", index: 3, .. }), "{e}");
    }

    #[test]
    fn config_mismatch_names_the_flag() {
        let there = sample(false).config;
        let mut here = RecordedSettings::default();
        here.push("--task", "debug");
        here.push("--lr", 0.01f32);
        assert!(there.check(&there, Path::new("c")).is_ok());
        let e = there.check(&here, Path::new("c")).unwrap_err().to_string();
        assert!(e.contains("--lr is 0.006 there but 0.01 here"), "{e}");
        here.0.pop();
        let e = there.check(&here, Path::new("c")).unwrap_err().to_string();
        assert!(e.contains("--lr is 0.006 there but unset here"), "{e}");
    }
}
