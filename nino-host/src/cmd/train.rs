//! `nino train`: train a target network with Adam, optionally with NiNo nowcasts.

use crate::io::data::DEFAULT_FASHION_MNIST_DIR;
use crate::io::data::load_data;
use crate::nowcast::hook::{Fault, PeriodChoice};
use crate::run::runner::run_training_with;
use crate::run::settings::{NinoSpec, Persistence, ProbeSource, RunSpec, VerdictTiming};
use crate::training::metrics::FineEval;
use crate::training::metrics::{MetricsLog, check_writable_dir};
use anyhow::bail;
use nino_core::{Arch, InputShape, Task};
use std::io::IsTerminal;
use std::path::PathBuf;

/// The horizon rule on the command line (`--horizon`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HorizonArg {
    /// The reference: the k schedule indexed by the nowcast count, sized by the nowcasts planned.
    Counter,
    /// The reference curve read at the training fraction step / --steps.
    Fraction,
}

impl HorizonArg {
    /// The core's rule.
    pub fn rule(self) -> nino_core::period::Horizon {
        match self {
            HorizonArg::Counter => nino_core::period::Horizon::Counter,
            HorizonArg::Fraction => nino_core::period::Horizon::Fraction,
        }
    }
}

/// Where the rollback's probe batch comes from (`--probe`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeArg {
    /// The first training examples, judged against the window's mean training loss (no extra cost).
    #[default]
    Train,
    /// The first held-out examples (past the protocol's cut, never trained on), judged against their
    /// own loss just before the nowcast: catches a nowcast that fits the training data but generalises
    /// worse, for one more probe loss per nowcast.
    Heldout,
}

impl From<ProbeArg> for ProbeSource {
    fn from(p: ProbeArg) -> ProbeSource {
        match p {
            ProbeArg::Train => ProbeSource::Train,
            ProbeArg::Heldout => ProbeSource::Heldout,
        }
    }
}

/// When the rollback judges a nowcast (`--verdict`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictArg {
    /// Right after the nowcast, on one probe loss: catches a broken nowcast (NaN, a divergence).
    #[default]
    Immediate,
    /// Also at the next recorded state, once Adam has run on: undoes a nowcast (and Adam's steps since)
    /// that left the probe loss above `--verdict-ratio` times its value before, and stops nowcasting after
    /// `--patience` such nowcasts in a row. Keeps the parameters and Adam's moments meanwhile (3P floats).
    Deferred,
}

impl From<VerdictArg> for VerdictTiming {
    fn from(v: VerdictArg) -> VerdictTiming {
        match v {
            VerdictArg::Immediate => VerdictTiming::Immediate,
            VerdictArg::Deferred => VerdictTiming::Deferred,
        }
    }
}

/// A built-in task of the reference protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskName {
    /// FM-16: conv 16,32,32 on Fashion-MNIST (14,378 params), target 89.5%.
    Fm16,
    /// FM-32: conv 32,64,64 on Fashion-MNIST (56,394 params), target 90.5%.
    Fm32,
    /// The reference's debug task: conv 4,6,6 on Fashion-MNIST (662 params), target 70%.
    Debug,
    /// C10-16: conv 16,32,32 on CIFAR-10 (14,666 params), lr 0.003, target 66.0%; needs --data.
    #[value(name = "c10-16")]
    C10_16,
    /// C10-32: conv 32,64,64 on CIFAR-10 (56,970 params), lr 0.003, target 72.5%; needs --data.
    #[value(name = "c10-32")]
    C10_32,
    /// C100-32: conv 32,64,64 on CIFAR-100's fine labels (62,820 params), lr 0.003, target 39.0%; needs --data.
    #[value(name = "c100-32")]
    C100_32,
}

impl TaskName {
    /// The core's task.
    pub fn task(self) -> Task {
        match self {
            TaskName::Fm16 => Task::Fm16,
            TaskName::Fm32 => Task::Fm32,
            TaskName::Debug => Task::Debug,
            TaskName::C10_16 => Task::C10_16,
            TaskName::C10_32 => Task::C10_32,
            TaskName::C100_32 => Task::C100_32,
        }
    }
}

const AFTER_HELP: &str = "\
Protocol (docs/spec.md §6): the first n - n/12 training images (55,000 of Fashion-MNIST's
60,000, 45,834 of CIFAR's 50,000), batches of 128 reshuffled every epoch (epoch e seeded by seed + e,
with our own RNG, so the batches differ from PyTorch's), Adam (betas 0.9/0.999, eps 1e-8, no weight
decay), the complete test split for accuracy. Tasks normalise with the reference's constants
(Fashion-MNIST: mean 0.1307 / std 0.3081; CIFAR: one mean and std per colour channel); --arch runs use
the mean and std of their training images. Training stops at the first evaluation reaching the target.

CIFAR tasks (c10-16, c10-32, c100-32) read the official binary version: --data DIR holding
data_batch_1.bin .. data_batch_5.bin and test_batch.bin (CIFAR-10) or train.bin and test.bin
(CIFAR-100), plain or gzipped, in DIR or in the extracted cifar-10-batches-bin / cifar-100-binary
folder inside it (docs/cifar.md).

Checkpoints: with --checkpoint FILE the run saves everything it needs to continue (parameters, Adam's
state, the batch order's position, the evaluations so far, timings, NiNo's history and schedule) at
every evaluation, atomically. If it is killed, the same command with --resume FILE continues it, and
the result is bit-for-bit the one an uninterrupted run gives; --resume refuses a checkpoint of other
settings, a damaged one, or one holding NaNs, and then changes no file.

Examples:
  nino train --task fm16
  nino train --task debug --data fixtures/fashion-mnist-mini --steps 500 --eval-every 50
  nino train --task c10-16 --data ~/data/cifar --nino fixtures/weights/nino_no_posw.safetensors
  nino train --data DIR --arch mlp:32 --target 85 --metrics run.csv --summary-json run.json
  nino train --task fm16 --metrics fm16.csv --checkpoint fm16.ckpt     # killed? then:
  nino train --task fm16 --metrics fm16.csv --resume fm16.ckpt";

/// The network, its data and its target: shared by `nino train` and `nino experiment`.
#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// Built-in task (reference settings: lr 0.006 on Fashion-MNIST and 0.003 on CIFAR, batch 128, at most
    /// 10,000 steps).
    #[arg(long, value_enum, required_unless_present = "arch", conflicts_with = "arch")]
    pub task: Option<TaskName>,

    /// Target network for --data runs: `conv:W1,W2,...` (3x3 convs, GAP, linear) or `mlp:W1,...`.
    #[arg(long, value_name = "SPEC")]
    pub arch: Option<String>,

    /// Directory with the four IDX files (train-images-idx3-ubyte[.gz], ...), or for a CIFAR task the
    /// binary CIFAR files (or the cifar-10-batches-bin / cifar-100-binary folder).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_FASHION_MNIST_DIR)]
    pub data: PathBuf,

    /// Stop at this test accuracy, as a fraction (0.895) or a percentage (89.5) [default: the task's].
    #[arg(long, value_name = "ACC")]
    pub target: Option<f32>,
}

/// When the test set is evaluated: shared by `nino train` and `nino experiment`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Evaluate the test set every N steps and after the last one (the reference evaluated after every
    /// step, so steps to target are rounded up to a multiple of N).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub eval_every: u64,

    /// Also evaluate every N steps once an evaluation has come within --eval-fine-margin of the target:
    /// the reference's per-step resolution where it decides steps to target, at a fraction of its cost.
    #[arg(long, value_name = "N")]
    pub eval_fine: Option<u64>,

    /// How far below the target, in accuracy points, the --eval-fine evaluations start.
    #[arg(long, value_name = "POINTS", default_value_t = 0.5, requires = "eval_fine")]
    pub eval_fine_margin: f32,
}

impl EvalArgs {
    /// The checked `--eval-fine` schedule for a run aiming at `target`, `None` when it is off.
    pub fn fine(&self, target: Option<f32>) -> anyhow::Result<Option<FineEval>> {
        if self.eval_every == 0 {
            bail!("--eval-every must be at least 1");
        }
        let Some(every) = self.eval_fine else { return Ok(None) };
        if target.is_none() {
            bail!("--eval-fine evaluates more often near the target, and this run has none: give --target");
        }
        if every == 0 {
            bail!("--eval-fine must be at least 1");
        }
        if !(self.eval_fine_margin >= 0.0 && self.eval_fine_margin <= 100.0) {
            bail!("--eval-fine-margin must be between 0 and 100 points, not {}", self.eval_fine_margin);
        }
        Ok(Some(FineEval { every, margin: self.eval_fine_margin / 100.0 }))
    }
}

/// Arguments of `nino train`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct TrainArgs {
    /// Which network and data.
    #[command(flatten)]
    pub net: NetArgs,

    /// Adam learning rate [default: the task's, 0.006 or 0.003 on CIFAR].
    #[arg(long)]
    pub lr: Option<f32>,

    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,

    /// Most training steps.
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,

    /// Seed of the initial weights and of the batch order.
    #[arg(long, default_value_t = 1000)]
    pub seed: u64,

    /// When to evaluate.
    #[command(flatten)]
    pub eval: EvalArgs,

    /// Write one row per evaluation to FILE: CSV (`.csv`) or JSON lines (`.jsonl`).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,

    /// Write the run summary to FILE as one JSON object.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Nowcast with these NiNo weights (e.g. fixtures/weights/nino_no_posw.safetensors; nino_mlp for WNN+).
    #[arg(long, value_name = "FILE")]
    pub nino: Option<PathBuf>,

    /// Nowcast period: steps (1000, the default, is the reference's: no other rule has yet beaten it on fresh
    /// seeds of both FM-16 and FM-32), `dynamic` (NiNo++: 500 growing x1.075 per nowcast up to 1500), `fork`
    /// (200, 200, 400, 400, ..., 1000; with --rollback the FM-16 winner), `geometric:FIRST,GROWTH,MAX`, or
    /// `progress` (200 growing x1.5 up to 1000 while the held-out loss falls, the cap growing x1.5 up to
    /// 4000 with each window where it did not; reads the --probe heldout batch) or
    /// `progress:FIRST,GROWTH,CAP,MAX`.
    #[arg(long, value_name = "P", default_value = "1000", requires = "nino")]
    pub period: PeriodChoice,

    /// Horizon rule: `counter` (the reference: the k schedule indexed by the nowcast count, the default for
    /// a static period) or `fraction` (the same curve read at step / --steps, the default for the others).
    #[arg(long, value_enum, requires = "nino")]
    pub horizon: Option<HorizonArg>,

    /// Store the NiNo weights as f16 (math stays f32).
    #[arg(long, requires = "nino")]
    pub f16: bool,

    /// Undo a nowcast whose probe loss exceeds RATIO x the baseline + --rollback-slack, or that produced
    /// a non-finite parameter (off: every nowcast is kept, as in the reference). The baseline is the
    /// window's mean training loss (--probe train) or the probe's loss before the nowcast (--probe heldout).
    /// A bare --rollback is 10: useful nowcasts were measured at up to 5.7x, broken ones from 15x.
    #[arg(long, value_name = "RATIO", num_args = 0..=1, default_missing_value = "10", requires = "nino")]
    pub rollback: Option<f32>,

    /// Absolute slack of the rollback threshold.
    #[arg(long, value_name = "LOSS", default_value_t = nino_core::rollback::DEFAULT_MAX_INCREASE, requires = "rollback")]
    pub rollback_slack: f32,

    /// The rollback's probe batch: the first 512 training images (`train`), or the first 512 of the
    /// training images the protocol holds out (`heldout`, images 55,001-55,512 of Fashion-MNIST), judged
    /// against their own loss before the nowcast, so that a nowcast that generalises worse is undone.
    #[arg(long, value_enum, default_value_t = ProbeArg::Train, requires = "rollback")]
    pub probe: ProbeArg,

    /// Node features for the NiNo GNN from FILE (tensor `lpe` [N, 8]) or FILE:TENSOR (e.g.
    /// fixtures/golden/fm16.safetensors:lpe8) instead of nino's own deterministic LPE.
    #[arg(long, value_name = "FILE[:TENSOR]", requires = "nino")]
    pub lpe: Option<PathBuf>,

    /// After a rollback, retry once with a quarter of the horizon.
    #[arg(long, requires = "rollback")]
    pub retry: bool,

    /// When the rollback judges a nowcast: `immediate` (right after it, on one probe loss), or `deferred`
    /// (also at the next recorded state, after Adam has run on: a nowcast that left the probe loss above
    /// --verdict-ratio times its value before is undone with Adam's steps since; best with --probe heldout).
    #[arg(long, value_enum, default_value_t = VerdictArg::Immediate, requires = "rollback")]
    pub verdict: VerdictArg,

    /// With --verdict deferred: stop nowcasting for the run after this many nowcasts in a row undone
    /// (0: never stop).
    #[arg(long, value_name = "N", default_value_t = nino_core::rollback::DEFAULT_PATIENCE, requires = "rollback")]
    pub patience: usize,

    /// With --verdict deferred: undo a nowcast whose probe loss at the next recorded state exceeds RATIO x
    /// its value just before the nowcast.
    #[arg(long, value_name = "RATIO", default_value_t = nino_core::rollback::DEFAULT_LATER.max_ratio, requires = "rollback")]
    pub verdict_ratio: f32,

    /// Corrupt every nowcast (`scale:100` or `nan`), to test rollback.
    #[arg(long, value_name = "FAULT", hide = true, requires = "nino")]
    pub inject_fault: Option<String>,

    /// Save a checkpoint to FILE (safetensors, replaced atomically) at every evaluation and after the last
    /// step, so that a killed run can continue with --resume FILE. An existing FILE is never overwritten
    /// by a fresh run: resume it, or remove it.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Save the checkpoint every N steps instead of at every evaluation.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,

    /// Continue the run saved in checkpoint FILE, with the same flags as the run that wrote it (it is
    /// refused otherwise); the metrics file gets every row, the result is the uninterrupted run's.
    /// Checkpoints keep going to FILE unless --checkpoint names another file.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,

    /// Write the final parameters to FILE (safetensors, tensor `params` [P] in PyTorch order).
    #[arg(long, value_name = "FILE")]
    pub save_params: Option<PathBuf>,

    /// Stop right after the checkpoint of step STEP, as if killed (to test --resume).
    #[arg(long, value_name = "STEP", hide = true)]
    pub stop_after: Option<u64>,

    /// Do not draw the progress bar (it is never drawn when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// Where to train: `cpu`, or `cuda` (GPU 0 through nino-cuda: parameters, Adam and NiNo stay on the
    /// device; fails in one line where there is no usable GPU).
    #[arg(long, value_enum, default_value_t = super::gpu::DeviceArg::Cpu)]
    pub device: super::gpu::DeviceArg,
}

/// Checked settings of a run, resolved from the task and the flags (shared with `nino experiment`).
pub(crate) struct Plan {
    pub(crate) task: Option<Task>,
    pub(crate) spec: String,
    pub(crate) target: Option<f32>,
    pub(crate) lr: f32,
}

/// Resolves the network, target and learning rate from `--task`/`--arch`, `--target` and `--lr`.
pub(crate) fn resolve(net: &NetArgs, lr: Option<f32>) -> anyhow::Result<Plan> {
    let (arch, target) = (net.arch.as_deref(), net.target);
    let task = net.task.map(TaskName::task);
    let spec = match (task, arch) {
        (Some(t), _) => t.spec().to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => bail!("pass --task NAME or --arch SPEC"),
    };
    // Syntax check now, before loading data; the real shapes are checked once the data is known.
    Arch::parse(&spec, InputShape { channels: 1, height: 64, width: 64 }, 10)
        .map_err(|e| anyhow::anyhow!("bad --arch `{spec}`: {e}"))?;
    let target = match target {
        Some(t) => {
            let f = if t > 1.0 { t / 100.0 } else { t };
            if !(f > 0.0 && f <= 1.0) {
                bail!("--target must be a fraction in (0, 1] or a percentage in (1, 100], got {t}");
            }
            Some(f)
        }
        None => task.map(Task::target),
    };
    let lr = lr.or(task.map(Task::lr)).unwrap_or(Task::Fm16.lr());
    if !(lr.is_finite() && lr > 0.0) {
        bail!("--lr must be a positive number, got {lr}");
    }
    Ok(Plan { task, spec, target, lr })
}

/// The resolved network and target, and the checked `--eval-fine` schedule for that target.
fn plan(args: &TrainArgs) -> anyhow::Result<(Plan, Option<FineEval>)> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let plan = resolve(&args.net, args.lr)?;
    let fine = args.eval.fine(plan.target)?;
    Ok((plan, fine))
}

/// Checks the checkpoint flags: where checkpoints go must exist, and a fresh run never overwrites a
/// checkpoint it was not told to resume.
fn persistence(args: &TrainArgs) -> anyhow::Result<Persistence> {
    if args.checkpoint_every.is_some() && args.checkpoint.is_none() && args.resume.is_none() {
        bail!("--checkpoint-every needs --checkpoint FILE (or --resume FILE)");
    }
    if args.checkpoint_every == Some(0) {
        bail!("--checkpoint-every must be at least 1");
    }
    if args.stop_after.is_some() && args.checkpoint.is_none() && args.resume.is_none() {
        bail!("--stop-after needs --checkpoint FILE (or --resume FILE)");
    }
    if let Some(ck) = &args.checkpoint {
        check_writable_dir(ck)?;
        let same = |r: &PathBuf| match (std::fs::canonicalize(r), std::fs::canonicalize(ck)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if ck.exists() && !args.resume.as_ref().is_some_and(same) {
            bail!(
                "checkpoint {} already exists: continue that run with --resume {0}, or remove it to start afresh",
                ck.display()
            );
        }
    }
    if let Some(p) = &args.save_params {
        check_writable_dir(p)?;
    }
    Ok(Persistence {
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
        resume: args.resume.clone(),
        save_params: args.save_params.clone(),
        stop_after: args.stop_after,
    })
}

fn parse_fault(s: &str) -> anyhow::Result<Fault> {
    if s == "nan" {
        return Ok(Fault::Nan);
    }
    match s.strip_prefix("scale:").map(str::parse::<f32>) {
        Some(Ok(f)) => Ok(Fault::Scale(f)),
        _ => bail!("bad --inject-fault `{s}`: expected `scale:FACTOR` or `nan`"),
    }
}

/// Flags `nino train --device cuda` does not implement (yet), refused in one line.
fn refuse_unsupported_on_gpu(args: &TrainArgs) -> anyhow::Result<()> {
    let unsupported = [
        ("--checkpoint", args.checkpoint.is_some()),
        ("--resume", args.resume.is_some()),
        ("--save-params", args.save_params.is_some()),
        ("--stop-after", args.stop_after.is_some()),
        ("--rollback", args.rollback.is_some()),
        ("--inject-fault", args.inject_fault.is_some()),
        ("--period progress", args.nino.is_some() && args.period.reads_progress()),
    ];
    for (flag, set) in unsupported {
        if set {
            bail!("{flag} is not supported with --device cuda yet (use --device cpu)");
        }
    }
    Ok(())
}

/// `nino train --device cuda`'s settings from the flags.
fn gpu_train(args: &TrainArgs) -> anyhow::Result<super::gpu::GpuTrain> {
    refuse_unsupported_on_gpu(args)?;
    let plan = resolve(&args.net, args.lr)?;
    let fine_eval = args.eval.fine(plan.target)?;
    Ok(super::gpu::GpuTrain {
        task: plan.task,
        spec: plan.spec,
        target: plan.target,
        lr: plan.lr,
        data: args.net.data.clone(),
        batch: args.batch,
        seed: args.seed,
        steps: args.steps,
        eval_every: args.eval.eval_every,
        fine_eval,
        metrics: args.metrics.clone(),
        nino: args.nino.as_ref().map(|w| super::gpu::GpuNinoSettings {
            weights: w.clone(),
            lpe: args.lpe.clone(),
            f16: args.f16,
            period: args.period.period(),
            horizon: args.period.horizon(args.horizon.map(|h| h.rule())),
        }),
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })
}

/// Runs `nino train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    if args.device == super::gpu::DeviceArg::Cuda {
        return super::gpu::train(&gpu_train(args)?);
    }
    let (plan, eval_fine) = plan(args)?;
    // Fail on a bad metrics or summary path before loading data and training.
    if let Some(p) = &args.metrics {
        MetricsLog::new(p)?;
    }
    if let Some(p) = &args.summary_json {
        check_writable_dir(p)?;
    }
    let files = persistence(args)?;
    let nino = match &args.nino {
        Some(weights) => Some(NinoSpec {
            weights: weights.clone(),
            period: args.period,
            horizon: args.horizon.map(HorizonArg::rule),
            f16: args.f16,
            rollback: args.rollback,
            slack: args.rollback_slack,
            probe: args.probe.into(),
            retry: args.retry,
            verdict: args.verdict.into(),
            patience: args.patience,
            verdict_ratio: args.verdict_ratio,
            lpe: args.lpe.clone(),
            fault: args.inject_fault.as_deref().map(parse_fault).transpose()?,
        }),
        None => None,
    };
    let spec = RunSpec {
        task: plan.task,
        arch: plan.spec,
        data_dir: args.net.data.clone(),
        target: plan.target,
        lr: plan.lr,
        batch: args.batch,
        steps: args.steps,
        seed: args.seed,
        eval_every: args.eval.eval_every,
        eval_fine,
        nino,
        metrics: args.metrics.clone(),
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        announce: true,
    };
    let splits = load_data(plan.task, &args.net.data).map_err(super::data_error)?;
    let out = run_training_with(&spec, &splits, &files).map_err(super::run_error)?;
    if out.report.interrupted {
        let ck = files.checkpoint.as_ref().or(files.resume.as_ref()).map_or(String::new(), |p| p.display().to_string());
        eprintln!("stopped after step {} (--stop-after); continue with --resume {ck}", out.report.steps_run);
        return Ok(());
    }
    print!("{}", out.summary.table());
    if let Some(p) = &args.summary_json {
        out.summary.write_json(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(argv: &[&str]) -> Result<TrainArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("train").chain(argv.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn task_defaults_follow_the_reference() {
        let a = parse(&["--task", "fm16"]).unwrap();
        assert_eq!((a.batch, a.steps, a.seed, a.eval.eval_every, a.eval.eval_fine), (128, 10_000, 1000, 100, None));
        assert_eq!(a.net.data, PathBuf::from(DEFAULT_FASHION_MNIST_DIR));
        let p = plan(&a).unwrap().0;
        assert_eq!((p.spec.as_str(), p.target, p.lr), ("conv:16,32,32", Some(0.895), 0.006));
        let p = plan(&parse(&["--task", "fm32", "--target", "91", "--lr", "0.001"]).unwrap()).unwrap().0;
        assert_eq!((p.target, p.lr), (Some(0.91), 0.001));
    }

    #[test]
    fn arch_runs_need_no_task_and_have_no_default_target() {
        let p = plan(&parse(&["--arch", "mlp:32", "--data", "x"]).unwrap()).unwrap().0;
        assert_eq!((p.task, p.target), (None, None));
        assert!(parse(&["--task", "fm16", "--arch", "mlp:32"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--task", "c10"]).is_err());
    }

    #[test]
    fn cifar_tasks_take_the_reference_settings() {
        for (name, spec, target) in
            [("c10-16", "conv:16,32,32", 0.66), ("c10-32", "conv:32,64,64", 0.725), ("c100-32", "conv:32,64,64", 0.39)]
        {
            let p = plan(&parse(&["--task", name, "--data", "d"]).unwrap()).unwrap().0;
            assert_eq!(
                (p.task.map(Task::name), p.spec.as_str(), p.target, p.lr),
                (Some(name), spec, Some(target), 0.003)
            );
            assert_eq!(parse(&["--task", name]).unwrap().batch, 128);
        }
    }

    #[test]
    fn bare_rollback_takes_the_core_defaults() {
        // `default_missing_value` is a string, so it is checked against the core's constants here.
        let a = parse(&["--task", "fm16", "--nino", "w", "--rollback"]).unwrap();
        assert_eq!(a.rollback, Some(nino_core::rollback::DEFAULT_MAX_RATIO));
        assert_eq!(a.rollback_slack, nino_core::rollback::DEFAULT_MAX_INCREASE);
        assert_eq!(ProbeSource::from(a.probe), ProbeSource::Train);
        assert_eq!(VerdictTiming::from(a.verdict), VerdictTiming::Immediate);
    }

    #[test]
    fn deferred_verdict_flags_need_rollback_and_take_the_core_defaults() {
        let a = parse(&["--task", "fm16", "--nino", "w", "--rollback", "--verdict", "deferred"]).unwrap();
        assert_eq!(VerdictTiming::from(a.verdict), VerdictTiming::Deferred);
        assert_eq!(a.patience, nino_core::rollback::DEFAULT_PATIENCE);
        assert_eq!(a.verdict_ratio, nino_core::rollback::DEFAULT_LATER.max_ratio);
        for flag in [&["--verdict", "deferred"][..], &["--patience", "3"], &["--verdict-ratio", "1.1"]] {
            let args: Vec<&str> = ["--task", "fm16", "--nino", "w"].iter().chain(flag).copied().collect();
            assert!(parse(&args).is_err(), "{flag:?} without --rollback");
        }
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for argv in [
            &["--arch", "conv:16,x"][..],
            &["--arch", "resnet:3"],
            &["--task", "fm16", "--batch", "0"],
            &["--task", "fm16", "--eval-every", "0"],
            &["--task", "fm16", "--target", "0"],
            &["--task", "fm16", "--target", "150"],
            &["--task", "fm16", "--lr=-1"],
            &["--task", "fm16", "--lr", "NaN"],
        ] {
            let e = plan(&parse(argv).unwrap()).err().unwrap_or_else(|| panic!("{argv:?} accepted"));
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}
