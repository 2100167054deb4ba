//! The checked settings of one training run: the network and data, Adam's, NiNo's, and the files it writes.
//!
//! The command line resolves its flags into these (see `cmd/`); the library never sees a flag.

use crate::io::data::Splits;
use crate::nowcast::hook::{Fault, PeriodChoice};
use crate::run::checkpoint::RecordedSettings;
use crate::training::metrics::FineEval;
use nino_core::Task;
use nino_core::period::Horizon;
use std::path::{Path, PathBuf};

/// Examples in the fixed probe batch a rollback judges a nowcast by.
pub const PROBE_EXAMPLES: usize = 512;

/// Where the rollback's probe batch comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbeSource {
    /// The first training examples, judged against the window's mean training loss (no extra cost).
    #[default]
    Train,
    /// The first held-out examples (past the protocol's cut, never trained on), judged against their
    /// own loss just before the nowcast: catches a nowcast that fits the training data but generalises
    /// worse, for one more probe loss per nowcast.
    Heldout,
}

/// When the rollback judges a nowcast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerdictTiming {
    /// Right after the nowcast, on one probe loss: catches a broken nowcast (NaN, a divergence).
    #[default]
    Immediate,
    /// Also at the next recorded state, once Adam has run on: undoes a nowcast (and Adam's steps since)
    /// that left the probe loss above [`NinoSpec::verdict_ratio`] times its value before, and stops nowcasting
    /// after [`NinoSpec::patience`] such nowcasts in a row. Keeps the parameters and Adam's moments meanwhile (3P floats).
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
    /// Built-in task, or `None` for a run on an arch spec of the user's.
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

impl NinoSpec {
    /// The probe actually used: held-out for the progress period, which reads its loss, else `probe`.
    pub fn probe_source(&self) -> ProbeSource {
        if self.period.reads_progress() { ProbeSource::Heldout } else { self.probe }
    }
}

/// The settings of `spec` that decide its results: recorded in checkpoints, compared when resuming.
///
/// The keys are part of the checkpoint format (`nino-checkpoint/2`) and read like the `nino train` flags
/// they came from, so that a refused resume names the setting the user changed; they are data here, not
/// flags, and must not change or existing checkpoints stop resuming.
pub fn recorded_settings(spec: &RunSpec, arch_spec: &str, data: &Splits) -> RecordedSettings {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let mut c = RecordedSettings::default();
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
