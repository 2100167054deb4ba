//! One training run from checked settings: the shared body of `nino train` and `nino experiment`.
//!
//! The data is loaded by the caller ([`load_data`]) so an experiment reads it once for all its runs;
//! [`run_training`] builds the network, the engine and the optional NiNo hook, trains, and returns the
//! report with its [`Summary`].

use crate::data::{Normalization, Splits, load_splits};
use crate::engine::{AdamConfig, Engine, init_params};
use crate::metrics::{MetricsLog, Summary};
use crate::nino_hook::{Fault, NinoHook, NinoHookConfig, PeriodChoice};
use crate::nowcaster::Nowcaster;
use crate::train::{NoHook, StepHook, TrainConfig, TrainReport, train};
use crate::weights::WeightSet;
use anyhow::{Context, bail};
use nino_core::rollback::Rule;
use nino_core::{Arch, Task};
use std::path::{Path, PathBuf};

/// Training examples in the fixed probe batch a rollback judges a nowcast by.
pub const PROBE_EXAMPLES: usize = 512;

/// How a run nowcasts with NiNo (or WNN+, whichever the weights hold).
#[derive(Clone, Debug, PartialEq)]
pub struct NinoSpec {
    /// The safetensors weights (`nino_no_posw` for NiNo, `nino_mlp` for WNN+).
    pub weights: PathBuf,
    /// Nowcast period.
    pub period: PeriodChoice,
    /// Store the weights as f16.
    pub f16: bool,
    /// Roll back a nowcast whose probe loss exceeds this ratio of the window's training loss (+ 0.1).
    pub rollback: Option<f32>,
    /// After a rollback, retry once with a quarter of the horizon.
    pub retry: bool,
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
    /// NiNo nowcasts, or `None` for plain Adam.
    pub nino: Option<NinoSpec>,
    /// Per-evaluation metrics file (CSV or JSON lines), rewritten atomically.
    pub metrics: Option<PathBuf>,
    /// Draw the progress bar (it hides itself anyway when stderr is not a terminal).
    pub progress: bool,
    /// Print the one-line description of the run and of the nowcaster on stderr.
    pub announce: bool,
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

/// The network `spec` describes, checked against the data.
pub fn build_arch(spec: &RunSpec, splits: &Splits) -> anyhow::Result<Arch> {
    let shape = splits.train.shape;
    match spec.task {
        Some(t) => {
            let arch = t.arch();
            if shape != arch.input || splits.classes > arch.classes {
                bail!(
                    "task {} needs 28x28 one-channel images with labels 0..9, but {} has {}x{} images and {} classes",
                    t.name(),
                    spec.data_dir.display(),
                    shape.height,
                    shape.width,
                    splits.classes
                );
            }
            Ok(arch)
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

/// The NiNo hook of `nino`, with the probe batch taken from the first training examples.
fn nino_hook(nino: &NinoSpec, spec: &RunSpec, arch: &Arch, splits: &Splits) -> anyhow::Result<NinoHook> {
    let path = &nino.weights;
    let weights = WeightSet::load(path).with_context(|| format!("loading NiNo weights {}", path.display()))?;
    let lpe = nino.lpe.as_deref().map(read_lpe).transpose()?;
    let nowcaster = Nowcaster::new(weights, arch, lpe, nino.f16).context("preparing the nowcaster")?;
    let rollback = match nino.rollback {
        Some(r) if !(r.is_finite() && r >= 1.0) => bail!("--rollback RATIO must be at least 1, got {r}"),
        Some(r) => Some(Rule { max_ratio: r, ..Rule::default() }),
        None => None,
    };
    let cfg = NinoHookConfig {
        period: nino.period.clone(),
        max_steps: spec.steps,
        rollback,
        retry: nino.retry,
        fault: nino.fault,
    };
    let n = PROBE_EXAMPLES.min(splits.train.len());
    let idx: Vec<u32> = (0..n as u32).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    splits.train.gather(&idx, &mut x, &mut y);
    if spec.announce {
        eprintln!(
            "nowcasting with {} ({}), period {}, rollback {}",
            path.display(),
            if nowcaster.config().gnn { "NiNo GNN" } else { "WNN+" },
            nino.period,
            rollback.map_or("off".to_string(), |r| format!(
                "at {}x the window's training loss + {}",
                r.max_ratio, r.max_increase
            )),
        );
    }
    NinoHook::new(nowcaster, cfg, (x, y)).context("preparing the nowcast schedule")
}

/// Trains one network as `spec` says on already loaded `data`.
pub fn run_training(spec: &RunSpec, data: &Splits) -> anyhow::Result<RunOutcome> {
    let mut metrics = spec.metrics.as_deref().map(MetricsLog::new).transpose()?;
    let arch = build_arch(spec, data)?;
    let mut arch_spec = String::new();
    arch.write_spec(&mut arch_spec).context("formatting the arch spec")?;

    let params = init_params(&arch, spec.seed);
    let adam = AdamConfig { lr: spec.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut engine = Engine::new(arch.clone(), params, adam, spec.batch).context("building the training engine")?;

    if spec.announce {
        eprintln!(
            "training {} ({arch_spec}, {} params) on {} of {} training images from {}, testing on {}; \
             batch {}, lr {}, seed {}, normalisation mean {:.4} std {:.4}; evaluating every {} steps",
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
            spec.eval_every,
        );
    }

    let cfg = TrainConfig {
        max_steps: spec.steps,
        eval_every: spec.eval_every,
        target: spec.target,
        batch: spec.batch,
        seed: spec.seed,
        progress: spec.progress,
    };
    let mut nino = spec.nino.as_ref().map(|n| nino_hook(n, spec, &arch, data)).transpose()?;
    let hook: &mut dyn StepHook<Engine> = match nino.as_mut() {
        Some(h) => h,
        None => &mut NoHook,
    };
    let rep = train(&mut engine, &data.train, &data.test, &cfg, hook, metrics.as_mut())?;

    let summary = Summary {
        task: spec.task.map(|t| t.name().to_string()),
        arch: arch_spec,
        seed: spec.seed,
        lr: spec.lr,
        batch: spec.batch,
        eval_every: spec.eval_every,
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
    };
    Ok(RunOutcome { summary, report: rep })
}
