//! One training run from checked settings: the shared body of `nino train` and `nino experiment`.
//!
//! The data is loaded by the caller ([`crate::io::data::load_data`]) so an experiment reads it once for all
//! its runs;
//! [`run_training`] builds the network, the engine and the optional NiNo hook, trains, and returns the
//! report with its [`Summary`].

use crate::io::atomic::write_atomic;
use crate::io::data::{BadArch, DataError, Splits, check_task_data};
use crate::io::tensor_file::{TensorFileError, f32_tensors_to_bytes, read_f32_tensor};
use crate::io::weights::{WeightSet, WeightsError};
use crate::nowcast::hook::{Baseline, NinoHook, NinoHookConfig, NinoState, NowcastEvent, RestoreError};
use crate::nowcast::nowcaster::{NowcastError, Nowcaster};
use crate::run::checkpoint::{Checkpoint, CheckpointError, RecordedSettings};
use crate::run::settings::{
    NinoSpec, PROBE_EXAMPLES, Persistence, ProbeSource, RunSpec, VerdictTiming, recorded_settings,
};
use crate::training::engine::{AdamConfig, Engine, init_params};
use crate::training::metrics::{MetricsError, MetricsLog, Summary, eval_schedule};
use crate::training::trainer::{
    Checkpointing, HookError, LoopState, NoHook, StepHook, TrainConfig, TrainError, TrainReport, train_resumable,
};
use nino_core::rollback::{Patience, Rule};
use nino_core::{Arch, Task};
use std::path::{Path, PathBuf};

/// Why a run could not start, resume or finish. Settings are named as settings; the command line words
/// the ones that came from its flags (`cmd::flag_error`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data does not fit the task.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The arch spec does not parse or does not fit the images.
    #[error(transparent)]
    Arch(#[from] BadArch),
    /// The network could not be written as a spec (never for a parsed one).
    #[error("formatting the arch spec")]
    ArchSpec(#[source] std::fmt::Error),
    /// The NiNo weights are unusable.
    #[error("loading NiNo weights {}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// Why.
        source: WeightsError,
    },
    /// The node-feature file is unusable.
    #[error(transparent)]
    Lpe(#[from] TensorFileError),
    /// The nowcaster could not be built for this network.
    #[error("preparing the nowcaster")]
    Nowcaster(#[source] NowcastError),
    /// The nowcast schedule could not be built.
    #[error("preparing the nowcast schedule")]
    Schedule(#[source] NowcastError),
    /// The rollback ratio is below 1 or not a number.
    #[error("the rollback ratio must be at least 1, got {0}")]
    RollbackRatio(f32),
    /// The rollback slack is negative or not a number.
    #[error("the rollback slack must be a finite number of at least 0, got {0}")]
    RollbackSlack(f32),
    /// The held-out probe (or the progress period) needs examples the data does not have.
    #[error(
        "the held-out probe needs training examples past the protocol's cut (so does the progress period, \
         which reads their loss), but {} has only {total} training examples, all used for training",
        dir.display()
    )]
    NoHeldout {
        /// The data directory.
        dir: PathBuf,
        /// Training examples in its files.
        total: usize,
    },
    /// The deferred verdict is asked for without a rollback.
    #[error("the deferred verdict needs a rollback ratio")]
    DeferredWithoutRollback,
    /// The deferred verdict's ratio is not positive.
    #[error("the deferred verdict's ratio must be a positive number, got {0}")]
    VerdictRatio(f32),
    /// The metrics file cannot be written.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The checkpoint to resume is unusable or of other settings.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint holds another number of parameters than the network.
    #[error("checkpoint {} holds {holds} parameters, {arch} has {expected}", path.display())]
    CheckpointSize {
        /// The checkpoint.
        path: PathBuf,
        /// Parameters it holds.
        holds: usize,
        /// The network's spec.
        arch: String,
        /// The network's parameters.
        expected: usize,
    },
    /// The checkpoint and this run disagree on whether NiNo nowcasts.
    #[error("checkpoint {} and this run disagree on whether NiNo nowcasts", path.display())]
    NinoMismatch {
        /// The checkpoint.
        path: PathBuf,
    },
    /// The checkpoint's NiNo state does not continue this run.
    #[error("checkpoint {}: {error}", path.display())]
    Restore {
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        error: RestoreError,
    },
    /// The engine refused the network or the batch size.
    #[error("building the training engine")]
    Engine(#[source] nino_core::Error),
    /// The checkpoint's Adam moments do not fit.
    #[error("restoring Adam's state")]
    AdamState(#[source] nino_core::Error),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The final parameters could not be serialised.
    #[error(transparent)]
    Serialize(#[from] safetensors::SafeTensorError),
    /// The final parameters could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What [`run_training`] produced.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The headline numbers.
    pub summary: Summary,
    /// Every evaluation and the timings.
    pub report: TrainReport,
}

impl RunOutcome {
    /// Wall time to the target with every NiNo cost counted (optimizer steps + the whole nowcast hook;
    /// evaluations excluded): `None` if the target was not reached. Training stops at the target, so the
    /// report's totals are the totals up to it.
    pub fn seconds_to_target(&self) -> Option<f64> {
        self.report.steps_to_target.map(|_| self.report.train_seconds + self.report.nowcast_seconds)
    }
}

/// The network `spec` describes, checked against the data.
pub fn build_arch(spec: &RunSpec, splits: &Splits) -> Result<Arch, RunError> {
    match spec.task {
        Some(t) => {
            check_task_data(t, splits, &spec.data_dir)?;
            Ok(t.arch())
        }
        None => Ok(splits.arch(&spec.arch)?),
    }
}

/// Reads node features from `FILE` (tensor `lpe`) or `FILE:TENSOR` (e.g. a golden fixture's `lpe8`).
pub fn read_lpe(arg: &Path) -> Result<Vec<f32>, TensorFileError> {
    let s = arg.to_string_lossy();
    let (file, name) = match s.rsplit_once(':') {
        Some((f, n)) if !n.is_empty() && !n.contains('/') => (Path::new(f), n),
        _ => (arg, "lpe"),
    };
    Ok(read_f32_tensor(file, name)?.1)
}

/// The NiNo hook of `nino`, with the probe batch taken from the first training examples.
fn nino_hook(nino: &NinoSpec, spec: &RunSpec, arch: &Arch, splits: &Splits) -> Result<NinoHook, RunError> {
    let path = &nino.weights;
    let weights = WeightSet::load(path).map_err(|source| RunError::Weights { path: path.clone(), source })?;
    let lpe = nino.lpe.as_deref().map(read_lpe).transpose()?;
    let nowcaster = Nowcaster::new(weights, arch, lpe, nino.f16).map_err(RunError::Nowcaster)?;
    let rollback = match nino.rollback {
        Some(r) if !(r.is_finite() && r >= 1.0) => return Err(RunError::RollbackRatio(r)),
        Some(_) if !(nino.slack.is_finite() && nino.slack >= 0.0) => return Err(RunError::RollbackSlack(nino.slack)),
        Some(r) => Some(Rule { max_ratio: r, max_increase: nino.slack }),
        None => None,
    };
    let (source, baseline) = match nino.probe_source() {
        ProbeSource::Train => (&splits.train, Baseline::WindowLoss),
        ProbeSource::Heldout => (&splits.heldout, Baseline::ProbeBefore),
    };
    if (rollback.is_some() || nino.period.reads_progress()) && source.is_empty() {
        return Err(RunError::NoHeldout { dir: spec.data_dir.clone(), total: splits.train_total });
    }
    let later = match nino.verdict {
        VerdictTiming::Deferred if rollback.is_none() => return Err(RunError::DeferredWithoutRollback),
        VerdictTiming::Deferred if !(nino.verdict_ratio.is_finite() && nino.verdict_ratio > 0.0) => {
            return Err(RunError::VerdictRatio(nino.verdict_ratio));
        }
        VerdictTiming::Deferred => Some(Rule { max_ratio: nino.verdict_ratio, max_increase: 0.0 }),
        VerdictTiming::Immediate => None,
    };
    let cfg = NinoHookConfig {
        period: nino.period,
        horizon: nino.horizon,
        max_steps: spec.steps,
        rollback,
        baseline,
        retry: nino.retry,
        later,
        patience: Patience(nino.patience),
        fault: nino.fault,
    };
    let n = PROBE_EXAMPLES.min(source.len());
    let idx: Vec<u32> = (0..n as u32).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    source.gather(&idx, &mut x, &mut y);
    if spec.announce {
        eprintln!(
            "nowcasting with {} ({}), period {}, horizon {:?}, rollback {}",
            path.display(),
            if nowcaster.config().gnn { "NiNo GNN" } else { "WNN+" },
            nino.period,
            nino.period.horizon(nino.horizon),
            rollback.map_or("off".to_string(), |r| format!(
                "at {}x {baseline} + {} ({:?} probe){}",
                r.max_ratio,
                r.max_increase,
                nino.probe_source(),
                match later {
                    Some(l) => format!(
                        ", and deferred to the next recorded state at {}x the probe's loss before + {}, patience {}",
                        l.max_ratio, l.max_increase, nino.patience
                    ),
                    None => String::new(),
                }
            )),
        );
    }
    NinoHook::new(nowcaster, cfg, (x, y)).map_err(RunError::Schedule)
}

/// Writes `params` as safetensors (tensor `params` `[P]`), atomically.
fn save_params(path: &Path, params: &[f32], arch_spec: &str, steps: u64) -> Result<(), RunError> {
    // One metadata entry, so the same parameters always give the same bytes (a map's order is random).
    let meta = std::collections::HashMap::from([(
        "nino".to_string(),
        serde_json::json!({ "arch": arch_spec, "steps": steps }).to_string(),
    )]);
    let file = f32_tensors_to_bytes(&[("params", vec![params.len()], params)], Some(meta))?;
    write_atomic(path, &file).map_err(|source| RunError::Write { path: path.into(), source })
}

/// Where and how often [`train_with`] checkpoints.
struct CheckpointPlan<'a> {
    path: &'a Path,
    every: u64,
    stop_after: Option<u64>,
    config: &'a RecordedSettings,
}

/// Trains with hook `H`, writing checkpoints with the hook's state as `nino_state` extracts it.
fn train_with<H: StepHook<Engine>>(
    engine: &mut Engine,
    data: &Splits,
    cfg: &TrainConfig,
    hook: &mut H,
    metrics: Option<&mut MetricsLog>,
    resume: Option<LoopState>,
    plan: Option<CheckpointPlan<'_>>,
    nino_state: impl Fn(&H) -> Option<NinoState>,
) -> Result<TrainReport, TrainError> {
    let splits = (&data.train, &data.test);
    let Some(plan) = plan else {
        return train_resumable(engine, splits, cfg, hook, metrics, resume, None);
    };
    let mut save = |state: &LoopState, e: &Engine, h: &H| -> Result<(), HookError> {
        let (m, v) = e.adam_moments();
        let ck = Checkpoint {
            config: plan.config.clone(),
            state: state.clone(),
            params: e.params().to_vec(),
            adam_m: m.to_vec(),
            adam_v: v.to_vec(),
            adam_t: e.adam_step_count(),
            nino: nino_state(h),
        };
        ck.write(plan.path)?;
        crate::io::atomic::hold_for_kill("NINO_TEST_HOLD_AFTER_CHECKPOINT", state.step);
        Ok(())
    };
    let ck = Checkpointing { every: plan.every, stop_after: plan.stop_after, save: &mut save };
    train_resumable(engine, splits, cfg, hook, metrics, resume, Some(ck))
}

/// Trains one network as `spec` says on already loaded `data`.
pub fn run_training(spec: &RunSpec, data: &Splits) -> Result<RunOutcome, RunError> {
    run_training_with(spec, data, &Persistence::default())
}

/// [`run_training`] with checkpoints, resuming and the final parameters as `files` says. A checkpoint
/// to resume is checked (intact, same settings, finite) before anything is written.
pub fn run_training_with(spec: &RunSpec, data: &Splits, files: &Persistence) -> Result<RunOutcome, RunError> {
    let mut metrics = spec.metrics.as_deref().map(MetricsLog::new).transpose()?;
    let arch = build_arch(spec, data)?;
    let mut arch_spec = String::new();
    arch.write_spec(&mut arch_spec).map_err(RunError::ArchSpec)?;
    let config = recorded_settings(spec, &arch_spec, data);
    let resume = match &files.resume {
        Some(path) => {
            let ck = Checkpoint::read(path)?;
            ck.config.check(&config, path)?;
            if ck.params.len() != arch.param_count() {
                return Err(RunError::CheckpointSize {
                    path: path.clone(),
                    holds: ck.params.len(),
                    arch: arch_spec,
                    expected: arch.param_count(),
                });
            }
            Some(ck)
        }
        None => None,
    };

    let params = resume.as_ref().map_or_else(|| init_params(&arch, spec.seed), |ck| ck.params.clone());
    let adam = AdamConfig { lr: spec.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut engine = Engine::new(arch.clone(), params, adam, spec.batch).map_err(RunError::Engine)?;
    if let Some(ck) = &resume {
        engine.set_adam_state(&ck.adam_m, &ck.adam_v, ck.adam_t).map_err(RunError::AdamState)?;
    }

    if spec.announce {
        eprintln!(
            "training {} ({arch_spec}, {} params) on {} of {} training images from {}, testing on {}; \
             batch {}, lr {}, seed {}, normalisation {}; evaluating {}",
            spec.task.map_or("custom net", Task::name),
            arch.param_count(),
            data.train.len(),
            data.train_total,
            spec.data_dir.display(),
            data.test.len(),
            spec.batch,
            spec.lr,
            spec.seed,
            crate::io::data::describe_norm(&data.norm),
            eval_schedule(spec.eval_every, spec.eval_fine),
        );
    }

    let cfg = TrainConfig {
        max_steps: spec.steps,
        eval_every: spec.eval_every,
        target: spec.target,
        fine_eval: spec.eval_fine,
        batch: spec.batch,
        seed: spec.seed,
        progress: spec.progress,
    };
    let mut nino = spec.nino.as_ref().map(|n| nino_hook(n, spec, &arch, data)).transpose()?;
    let (state, nino_state) = match resume {
        Some(ck) => (Some(ck.state), ck.nino),
        None => (None, None),
    };
    let resume_path = files.resume.as_deref().unwrap_or(Path::new(""));
    match (nino.as_mut(), nino_state, &state) {
        (Some(hook), Some(ns), Some(st)) => {
            hook.restore(ns, st.step).map_err(|error| RunError::Restore { path: resume_path.to_path_buf(), error })?
        }
        (Some(_), None, Some(_)) | (None, Some(_), _) => {
            return Err(RunError::NinoMismatch { path: resume_path.to_path_buf() });
        }
        _ => {}
    }
    if let Some(st) = &state {
        if let Some(m) = metrics.as_mut() {
            m.resume(st.rows.clone())?;
        }
        if spec.announce {
            eprintln!(
                "resuming from {} after step {} ({} evaluations, {} nowcasts)",
                resume_path.display(),
                st.step,
                st.rows.len(),
                st.nowcasts
            );
        }
    }
    let plan = files.checkpoint.as_deref().or(files.resume.as_deref()).map(|path| CheckpointPlan {
        path,
        every: files.checkpoint_every.unwrap_or(spec.eval_every),
        stop_after: files.stop_after,
        config: &config,
    });
    let rep = match nino.as_mut() {
        Some(h) => train_with(&mut engine, data, &cfg, h, metrics.as_mut(), state, plan, |h| Some(h.state()))?,
        None => train_with(&mut engine, data, &cfg, &mut NoHook, metrics.as_mut(), state, plan, |_| None)?,
    };
    if let Some(path) = &files.save_params
        && !rep.interrupted
    {
        save_params(path, engine.params(), &arch_spec, rep.steps_run)?;
    }

    let summary = Summary {
        task: spec.task.map(|t| t.name().to_string()),
        arch: arch_spec,
        seed: spec.seed,
        lr: spec.lr,
        batch: spec.batch,
        eval_every: spec.eval_every,
        eval_fine: spec.eval_fine,
        target: spec.target,
        steps_to_target: rep.steps_to_target,
        final_accuracy: rep.final_accuracy(),
        best_accuracy: rep.best_accuracy(),
        steps_run: rep.steps_run,
        train_seconds: rep.train_seconds,
        eval_seconds: rep.eval_seconds,
        wall_seconds: rep.wall_seconds,
        nowcasts: rep.nowcasts,
        nowcast_seconds: rep.nowcast_seconds,
        rollbacks: rep.rollbacks,
        events: nino.as_ref().map_or_else(Vec::new, |h| h.events.iter().map(NowcastEvent::record).collect()),
    };
    Ok(RunOutcome { summary, report: rep })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::data::{Dataset, Normalization};
    use crate::nowcast::hook::PeriodChoice;
    use nino_core::InputShape;

    fn dataset(n: usize) -> Dataset {
        let shape = InputShape { channels: 1, height: 28, width: 28 };
        Dataset { shape, images: vec![0.0; n * shape.len()], labels: vec![0; n] }
    }

    #[test]
    fn heldout_probe_needs_heldout_examples() {
        let weights = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/weights/nino_mlp_h32.safetensors");
        let nino = NinoSpec {
            weights: weights.into(),
            period: PeriodChoice::fixed(100),
            horizon: None,
            f16: false,
            rollback: Some(1.5),
            slack: 0.1,
            probe: ProbeSource::Heldout,
            retry: false,
            verdict: VerdictTiming::Immediate,
            patience: 2,
            verdict_ratio: 1.0,
            lpe: None,
            fault: None,
        };
        let spec = RunSpec {
            task: Some(Task::Debug),
            arch: Task::Debug.spec().into(),
            data_dir: "some/dir".into(),
            target: None,
            lr: 0.006,
            batch: 4,
            steps: 1000,
            seed: 1,
            eval_every: 100,
            eval_fine: None,
            nino: Some(nino.clone()),
            metrics: None,
            progress: false,
            announce: false,
        };
        let mut splits = Splits {
            train: dataset(11),
            test: dataset(2),
            heldout: dataset(0),
            norm: vec![Normalization::FASHION_MNIST],
            classes: 10,
            train_total: 11,
        };
        let arch = Task::Debug.arch();
        // The library names the setting; `cmd::flag_error` words it as the flag (tested there).
        let err = nino_hook(&nino, &spec, &arch, &splits).unwrap_err();
        assert!(matches!(err, RunError::NoHeldout { total: 11, .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("the held-out probe needs training examples past the protocol's cut"), "{err}");
        let progress =
            NinoSpec { period: PeriodChoice::PROGRESS, rollback: None, probe: ProbeSource::Train, ..nino.clone() };
        assert_eq!(progress.probe_source(), ProbeSource::Heldout);
        let err = nino_hook(&progress, &spec, &arch, &splits).unwrap_err().to_string();
        assert!(err.contains("so does the progress period"), "{err}");
        splits.heldout = dataset(3);
        assert!(nino_hook(&nino, &spec, &arch, &splits).is_ok());
        assert!(nino_hook(&progress, &spec, &arch, &splits).is_ok());
        let bad_slack = NinoSpec { slack: f32::NAN, ..nino };
        let err = nino_hook(&bad_slack, &spec, &arch, &splits).unwrap_err();
        assert!(matches!(err, RunError::RollbackSlack(s) if s.is_nan()), "{err}");
        assert!(err.to_string().contains("rollback slack"), "{err}");
    }
}
