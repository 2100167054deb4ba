//! One training run from checked settings: the shared body of `nino train` and `nino experiment`.
//!
//! The data is loaded by the caller ([`load_data`]) so an experiment reads it once for all its runs;
//! [`run_training`] builds the network, the engine and the optional NiNo hook, trains, and returns the
//! report with its [`Summary`].

use crate::checkpoint::{Checkpoint, RunConfig};
use crate::data::{Normalization, Splits, load_splits};
use crate::engine::{AdamConfig, Engine, init_params};
use crate::fsutil::write_atomic;
use crate::metrics::{MetricsLog, Summary, eval_schedule};
use crate::nino_hook::{Baseline, Fault, NinoHook, NinoHookConfig, NinoState, NowcastEvent, PeriodChoice};
use crate::nowcaster::Nowcaster;
use crate::train::{
    Checkpointing, FineEval, HookError, LoopState, NoHook, StepHook, TrainConfig, TrainError, TrainReport,
    train_resumable,
};
use crate::weights::WeightSet;
use anyhow::{Context, anyhow, bail};
use nino_core::period::Horizon;
use nino_core::rollback::{Patience, Rule};
use nino_core::{Arch, Task};
use std::path::{Path, PathBuf};

/// Examples in the fixed probe batch a rollback judges a nowcast by.
pub const PROBE_EXAMPLES: usize = 512;

/// Where the rollback's probe batch comes from (`--probe`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeSource {
    /// The first training examples, judged against the window's mean training loss (no extra cost).
    #[default]
    Train,
    /// The first held-out examples (past the protocol's cut, never trained on), judged against their
    /// own loss just before the nowcast: catches a nowcast that fits the training data but generalises
    /// worse, for one more probe loss per nowcast.
    Heldout,
}

/// When the rollback judges a nowcast (`--verdict`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictTiming {
    /// Right after the nowcast, on one probe loss: catches a broken nowcast (NaN, a divergence).
    #[default]
    Immediate,
    /// Also at the next recorded state, once Adam has run on: undoes a nowcast (and Adam's steps since)
    /// that left the probe loss above `--verdict-ratio` times its value before, and stops nowcasting after
    /// `--patience` such nowcasts in a row. Keeps the parameters and Adam's moments meanwhile (3P floats).
    Deferred,
}

/// How a run nowcasts with NiNo (or WNN+, whichever the weights hold).
#[derive(Clone, Debug, PartialEq)]
pub struct NinoSpec {
    /// The safetensors weights (`nino_no_posw` for NiNo, `nino_mlp` for WNN+).
    pub weights: PathBuf,
    /// Nowcast period.
    pub period: PeriodChoice,
    /// Horizon rule; `None` takes the period's default.
    pub horizon: Option<Horizon>,
    /// Store the weights as f16.
    pub f16: bool,
    /// Roll back a nowcast whose probe loss exceeds this ratio of the baseline plus `slack`.
    pub rollback: Option<f32>,
    /// Absolute slack of the rollback threshold (0.1 by default).
    pub slack: f32,
    /// The probe batch, and with it the baseline.
    pub probe: ProbeSource,
    /// After a rollback, retry once with a quarter of the horizon.
    pub retry: bool,
    /// When the rollback judges a nowcast.
    pub verdict: VerdictTiming,
    /// Deferred undos in a row after which nowcasting stops (0: never).
    pub patience: usize,
    /// The deferred verdict undoes a nowcast whose probe loss at the next state exceeds this ratio of
    /// its value before the nowcast.
    pub verdict_ratio: f32,
    /// Node features from a file (`FILE` with tensor `lpe`, or `FILE:TENSOR`) instead of our own LPE.
    pub lpe: Option<PathBuf>,
    /// Deliberate corruption of every nowcast (failure-injection tests).
    pub fault: Option<Fault>,
}

/// Checked settings of one training run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Built-in task, or `None` for an `--arch` run.
    pub task: Option<Task>,
    /// Arch spec (the task's, or the user's).
    pub arch: String,
    /// Where the data came from (for messages only).
    pub data_dir: PathBuf,
    /// Stop at this test accuracy (fraction).
    pub target: Option<f32>,
    /// Adam learning rate.
    pub lr: f32,
    /// Batch size.
    pub batch: usize,
    /// Most steps.
    pub steps: u64,
    /// Seed of the initial weights and the batch order.
    pub seed: u64,
    /// Steps between evaluations.
    pub eval_every: u64,
    /// Denser evaluations near the target.
    pub eval_fine: Option<FineEval>,
    /// NiNo nowcasts, or `None` for plain Adam.
    pub nino: Option<NinoSpec>,
    /// Per-evaluation metrics file (CSV or JSON lines), rewritten atomically.
    pub metrics: Option<PathBuf>,
    /// Draw the progress bar (it hides itself anyway when stderr is not a terminal).
    pub progress: bool,
    /// Print the one-line description of the run and of the nowcaster on stderr.
    pub announce: bool,
}

/// Crash safety of one run: where checkpoints go, what to resume from, where the final parameters go.
#[derive(Clone, Debug, Default)]
pub struct Persistence {
    /// Write a checkpoint here (atomically) every `checkpoint_every` steps and after the last step.
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints; `None`: at every evaluation.
    pub checkpoint_every: Option<u64>,
    /// Continue the run saved in this checkpoint (and keep checkpointing to it if `checkpoint` is unset).
    pub resume: Option<PathBuf>,
    /// Write the final parameters here (safetensors, tensor `params` `[P]`, PyTorch order).
    pub save_params: Option<PathBuf>,
    /// Stop right after the checkpoint of this step, as if killed (tests of resuming).
    pub stop_after: Option<u64>,
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

/// Loads the data for `task` (reference normalisation) or for an `--arch` run (the training images'
/// own mean and std).
pub fn load_data(task: Option<Task>, dir: &Path) -> anyhow::Result<Splits> {
    let norm = task.map(|_| Normalization::FASHION_MNIST);
    Ok(load_splits(dir, norm)?)
}

/// Refuses data a built-in task's network cannot read (another image shape, more classes).
pub fn check_task_data(task: Task, splits: &Splits, dir: &Path) -> anyhow::Result<()> {
    let (shape, arch) = (splits.train.shape, task.arch());
    if shape != arch.input || splits.classes > arch.classes {
        bail!(
            "task {} needs 28x28 one-channel images with labels 0..9, but {} has {}x{} images and {} classes",
            task.name(),
            dir.display(),
            shape.height,
            shape.width,
            splits.classes
        );
    }
    Ok(())
}

/// The network `spec` describes, checked against the data.
pub fn build_arch(spec: &RunSpec, splits: &Splits) -> anyhow::Result<Arch> {
    let shape = splits.train.shape;
    match spec.task {
        Some(t) => {
            check_task_data(t, splits, &spec.data_dir)?;
            Ok(t.arch())
        }
        None => Arch::parse(&spec.arch, shape, splits.classes).map_err(|e| {
            anyhow::anyhow!("bad --arch `{}` for {}x{} images: {e}", spec.arch, shape.height, shape.width)
        }),
    }
}

/// Reads node features from `FILE` (tensor `lpe`) or `FILE:TENSOR` (e.g. a golden fixture's `lpe8`).
pub fn read_lpe(arg: &Path) -> anyhow::Result<Vec<f32>> {
    let s = arg.to_string_lossy();
    let (file, name) = match s.rsplit_once(':') {
        Some((f, n)) if !n.is_empty() && !n.contains('/') => (Path::new(f), n),
        _ => (arg, "lpe"),
    };
    Ok(crate::cmd::nowcast::read_tensor(file, name)?.1)
}

impl NinoSpec {
    /// The probe actually used: held-out for the progress period, which reads its loss, else `probe`.
    pub fn probe_source(&self) -> ProbeSource {
        if self.period.reads_progress() { ProbeSource::Heldout } else { self.probe }
    }
}

/// The NiNo hook of `nino`, with the probe batch taken from the first training examples.
fn nino_hook(nino: &NinoSpec, spec: &RunSpec, arch: &Arch, splits: &Splits) -> anyhow::Result<NinoHook> {
    let path = &nino.weights;
    let weights = WeightSet::load(path).with_context(|| format!("loading NiNo weights {}", path.display()))?;
    let lpe = nino.lpe.as_deref().map(read_lpe).transpose()?;
    let nowcaster = Nowcaster::new(weights, arch, lpe, nino.f16).context("preparing the nowcaster")?;
    let rollback = match nino.rollback {
        Some(r) if !(r.is_finite() && r >= 1.0) => bail!("--rollback RATIO must be at least 1, got {r}"),
        Some(_) if !(nino.slack.is_finite() && nino.slack >= 0.0) => {
            bail!("--rollback-slack must be a finite number of at least 0, got {}", nino.slack)
        }
        Some(r) => Some(Rule { max_ratio: r, max_increase: nino.slack }),
        None => None,
    };
    let (source, baseline) = match nino.probe_source() {
        ProbeSource::Train => (&splits.train, Baseline::WindowLoss),
        ProbeSource::Heldout => (&splits.heldout, Baseline::ProbeBefore),
    };
    if (rollback.is_some() || nino.period.reads_progress()) && source.is_empty() {
        bail!(
            "--probe heldout needs training examples past the protocol's cut (so does the progress period, \
             which reads their loss), but {} has only {} training examples, all used for training",
            spec.data_dir.display(),
            splits.train_total
        );
    }
    let later = match nino.verdict {
        VerdictTiming::Deferred if rollback.is_none() => bail!("--verdict deferred needs --rollback"),
        VerdictTiming::Deferred if !(nino.verdict_ratio.is_finite() && nino.verdict_ratio > 0.0) => {
            bail!("--verdict-ratio must be a positive number, got {}", nino.verdict_ratio)
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
    NinoHook::new(nowcaster, cfg, (x, y)).context("preparing the nowcast schedule")
}

/// The settings of `spec` that decide its results: recorded in checkpoints, compared when resuming.
pub fn run_config(spec: &RunSpec, arch_spec: &str, data: &Splits) -> RunConfig {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let mut c = RunConfig::default();
    c.push("--task", spec.task.map_or("none", Task::name));
    c.push("--arch", arch_spec);
    c.push("--data", canon(&spec.data_dir));
    c.push("training images", data.train.len());
    c.push("test images", data.test.len());
    c.push("--lr", spec.lr);
    c.push("--batch", spec.batch);
    c.push("--steps", spec.steps);
    c.push("--seed", spec.seed);
    c.push("--eval-every", spec.eval_every);
    if let Some(f) = spec.eval_fine {
        // Only when set, so that checkpoints written before the flag existed still resume.
        c.push("--eval-fine", format!("{} within {}", f.every, f.margin));
    }
    c.push("--target", spec.target.map_or("none".to_string(), |t| t.to_string()));
    match &spec.nino {
        None => c.push("--nino", "none"),
        Some(n) => {
            c.push("--nino", canon(&n.weights));
            c.push("--period", n.period);
            c.push("--horizon", format!("{:?}", n.period.horizon(n.horizon)));
            c.push("--f16", n.f16);
            c.push("--rollback", n.rollback.map_or("off".to_string(), |r| r.to_string()));
            c.push("--retry", n.retry);
            c.push("--rollback-slack", n.slack);
            c.push("--probe", format!("{:?}", n.probe_source()));
            c.push("--verdict", format!("{:?}", n.verdict));
            c.push("--patience", n.patience);
            c.push("--verdict-ratio", n.verdict_ratio);
            c.push("--lpe", n.lpe.as_deref().map_or("none".to_string(), canon));
            c.push("--inject-fault", n.fault.map_or("none".to_string(), |f| format!("{f:?}")));
        }
    }
    c
}

/// Writes `params` as safetensors (tensor `params` `[P]`), atomically.
fn save_params(path: &Path, params: &[f32], arch_spec: &str, steps: u64) -> anyhow::Result<()> {
    let bytes: Vec<u8> = params.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![params.len()], &bytes)?;
    // One metadata entry, so the same parameters always give the same bytes (a map's order is random).
    let meta = std::collections::HashMap::from([(
        "nino".to_string(),
        serde_json::json!({ "arch": arch_spec, "steps": steps }).to_string(),
    )]);
    let file = safetensors::serialize([("params", view)], Some(meta))?;
    write_atomic(path, &file).with_context(|| format!("cannot write {}", path.display()))
}

/// Where and how often [`train_with`] checkpoints.
struct CheckpointPlan<'a> {
    path: &'a Path,
    every: u64,
    stop_after: Option<u64>,
    config: &'a RunConfig,
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
        Ok(())
    };
    let ck = Checkpointing { every: plan.every, stop_after: plan.stop_after, save: &mut save };
    train_resumable(engine, splits, cfg, hook, metrics, resume, Some(ck))
}

/// Trains one network as `spec` says on already loaded `data`.
pub fn run_training(spec: &RunSpec, data: &Splits) -> anyhow::Result<RunOutcome> {
    run_training_with(spec, data, &Persistence::default())
}

/// [`run_training`] with checkpoints, resuming and the final parameters as `files` says. A checkpoint
/// to resume is checked (intact, same settings, finite) before anything is written.
pub fn run_training_with(spec: &RunSpec, data: &Splits, files: &Persistence) -> anyhow::Result<RunOutcome> {
    let mut metrics = spec.metrics.as_deref().map(MetricsLog::new).transpose()?;
    let arch = build_arch(spec, data)?;
    let mut arch_spec = String::new();
    arch.write_spec(&mut arch_spec).context("formatting the arch spec")?;
    let config = run_config(spec, &arch_spec, data);
    let resume = match &files.resume {
        Some(path) => {
            let ck = Checkpoint::read(path)?;
            ck.config.check(&config, path)?;
            if ck.params.len() != arch.param_count() {
                bail!(
                    "checkpoint {} holds {} parameters, {arch_spec} has {}",
                    path.display(),
                    ck.params.len(),
                    arch.param_count()
                );
            }
            Some(ck)
        }
        None => None,
    };

    let params = resume.as_ref().map_or_else(|| init_params(&arch, spec.seed), |ck| ck.params.clone());
    let adam = AdamConfig { lr: spec.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut engine = Engine::new(arch.clone(), params, adam, spec.batch).context("building the training engine")?;
    if let Some(ck) = &resume {
        engine.set_adam_state(&ck.adam_m, &ck.adam_v, ck.adam_t).context("restoring Adam's state")?;
    }

    if spec.announce {
        eprintln!(
            "training {} ({arch_spec}, {} params) on {} of {} training images from {}, testing on {}; \
             batch {}, lr {}, seed {}, normalisation mean {:.4} std {:.4}; evaluating {}",
            spec.task.map_or("custom net", Task::name),
            arch.param_count(),
            data.train.len(),
            data.train_total,
            spec.data_dir.display(),
            data.test.len(),
            spec.batch,
            spec.lr,
            spec.seed,
            data.norm.mean,
            data.norm.std,
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
            hook.restore(ns, st.step).map_err(|e| anyhow!("checkpoint {}: {e}", resume_path.display()))?
        }
        (Some(_), None, Some(_)) | (None, Some(_), _) => {
            bail!("checkpoint {} and this command line disagree on --nino", resume_path.display())
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
    use crate::data::Dataset;
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
            norm: Normalization::FASHION_MNIST,
            classes: 10,
            train_total: 11,
        };
        let arch = Task::Debug.arch();
        let err = nino_hook(&nino, &spec, &arch, &splits).unwrap_err().to_string();
        assert!(err.contains("--probe heldout needs training examples past the protocol's cut"), "{err}");
        let progress =
            NinoSpec { period: PeriodChoice::PROGRESS, rollback: None, probe: ProbeSource::Train, ..nino.clone() };
        assert_eq!(progress.probe_source(), ProbeSource::Heldout);
        let err = nino_hook(&progress, &spec, &arch, &splits).unwrap_err().to_string();
        assert!(err.contains("so does the progress period"), "{err}");
        splits.heldout = dataset(3);
        assert!(nino_hook(&nino, &spec, &arch, &splits).is_ok());
        assert!(nino_hook(&progress, &spec, &arch, &splits).is_ok());
        let bad_slack = NinoSpec { slack: f32::NAN, ..nino };
        assert!(nino_hook(&bad_slack, &spec, &arch, &splits).unwrap_err().to_string().contains("--rollback-slack"));
    }
}
