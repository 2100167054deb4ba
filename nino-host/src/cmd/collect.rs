//! `nino collect`: train many target networks with Adam and record their parameter trajectories as a
//! dataset for meta-training.

use crate::cmd::train::TaskName;
use crate::io::collection::{StateDtype, format_seeds, parse_seeds};
use crate::io::data::DEFAULT_FASHION_MNIST_DIR;
use crate::io::data::load_data;
use crate::meta::collect::{CollectError, CollectSpec, Setting, TrajectoryError, check, collect};
use nino_core::Task;
use std::io::IsTerminal;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
One trajectory per combination of --arch, --lr and --seeds (archs outermost, seeds innermost), each
trained with Adam (betas 0.9/0.999, eps 1e-8, no weight decay) on the batches `nino train --seed S`
draws, so a trajectory ends at the parameters `nino train` reaches with the same flags.

Files in --out: traj-XXXXX.safetensors per trajectory (XXXXX: its index), with tensor `states`
[n_states, P] (state 0 = the initial parameters, then one every --every steps; f16 unless --f32) and
tensor `metrics` [n_states, 2] f32 (mean training loss of the steps since the previous state, and the
step), and manifest.json (the settings and every finished trajectory with its size and CRC-32). Each
file is written atomically, a shard before the manifest that lists it.

Killed? Run the same command again: finished trajectories are kept, the one in progress is redone,
none is duplicated. A folder collected with other settings is refused with the setting that differs.
A listed shard that is missing or has the wrong size is refused too (restore it, or delete its entry
from manifest.json to redo it).

Examples:
  nino collect --out fm16-traj --task fm16 --seeds 1-300 --steps 10000
  nino collect --out mix --task fm16 --arch 'conv:16,32,32;conv:8,16,16;mlp:32' --lr 0.006,0.003 --seeds 1-10
  nino collect --out c --data DIR --arch conv:16,32,32 --arch mlp:64 --seeds 1,2,3 --f32
  nino collect --out tiny --task debug --data fixtures/fashion-mnist-mini --seeds 1-4 --steps 200 --every 5";

/// Arguments of `nino collect`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct CollectArgs {
    /// The dataset folder to write (created if missing); a collection already there is continued.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Built-in task: its net (unless --arch is given), lr (unless --lr is given), its dataset's files and
    /// the reference's normalisation of that dataset.
    #[arg(long, value_enum, required_unless_present = "archs")]
    pub task: Option<TaskName>,

    /// Target networks: `conv:W1,W2,...` (the reference `Net`: 3x3 convs, GAP, linear) or `mlp:W1,...`;
    /// repeat the flag or separate specs with `;`. Without --task, the inputs are normalised with the
    /// training images' own mean and std.
    #[arg(long = "arch", visible_alias = "archs", value_name = "SPEC", value_delimiter = ';')]
    pub archs: Vec<String>,

    /// Directory with the four IDX files (train-images-idx3-ubyte[.gz], ...), or for a CIFAR task the
    /// binary CIFAR files (or the cifar-10-batches-bin / cifar-100-binary folder).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_FASHION_MNIST_DIR)]
    pub data: PathBuf,

    /// Adam learning rates, comma-separated [default: the task's, 0.006 or 0.003 on CIFAR].
    #[arg(long = "lr", visible_alias = "lrs", value_name = "LR,...", value_delimiter = ',')]
    pub lrs: Vec<f32>,

    /// Seeds of the initial weights and the batch order: values and inclusive ranges, `1-300` or `1,2,7-9`.
    #[arg(long, value_name = "LIST", default_value = "1000", value_parser = parse_seeds)]
    pub seeds: Seeds,

    /// Adam steps per trajectory (a multiple of --every).
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,

    /// Store a state every K steps (the reference's meta-dataset: 4).
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub every: u64,

    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,

    /// Store the states as f32 (exact, twice the size) instead of f16 (the reference's meta-dataset).
    #[arg(long)]
    pub f32: bool,

    /// Do not draw the progress bars (they are never drawn when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// The parsed `--seeds` list.
pub type Seeds = Vec<u64>;

/// The flag that sets a collection's setting.
fn flag(s: Setting) -> &'static str {
    match s {
        Setting::Every => "--every",
        Setting::Steps => "--steps",
        Setting::Batch => "--batch",
        Setting::Lr => "--lr",
        Setting::Arch => "--arch",
        Setting::Seeds => "--seeds",
        Setting::Out => "--out",
    }
}

/// A collection error as the command line words it: settings by their flags.
fn collect_error(e: CollectError) -> anyhow::Error {
    match e {
        CollectError::Data(d) => super::data_error(d),
        e @ (CollectError::Settings(_) | CollectError::Arch(_) | CollectError::OtherSettings { .. }) => {
            anyhow::anyhow!(e.describe(flag))
        }
        CollectError::Trajectory { index, arch, lr, seed, source: TrajectoryError::Diverged { loss, step } } => {
            anyhow::anyhow!("the training loss became {loss} at step {step} (try a smaller --lr)")
                .context(format!("trajectory {index} ({arch}, lr {lr}, seed {seed})"))
        }
        e => e.into(),
    }
}

/// Runs `nino collect`.
pub fn run(args: &CollectArgs) -> anyhow::Result<()> {
    let task = args.task.map(TaskName::task);
    let archs = if args.archs.is_empty() {
        task.map(|t| vec![t.spec().to_string()]).unwrap_or_default()
    } else {
        args.archs.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    let lrs = if args.lrs.is_empty() { vec![task.map_or(Task::Fm16.lr(), Task::lr)] } else { args.lrs.clone() };
    let spec = CollectSpec {
        out: args.out.clone(),
        task,
        data_dir: args.data.clone(),
        archs,
        lrs,
        seeds: args.seeds.clone(),
        steps: args.steps,
        every: args.every,
        batch: args.batch,
        dtype: if args.f32 { StateDtype::F32 } else { StateDtype::F16 },
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        log: true,
    };
    check(&spec).map_err(|e| anyhow::anyhow!(e.describe(flag)))?;
    let splits = load_data(task, &args.data).map_err(super::data_error)?;
    let rep = collect(&spec, &splits).map_err(collect_error)?;
    println!(
        "{}: {} trajectories ({} new, {} already there), {:.1} MB; seeds {}",
        args.out.display(),
        rep.total,
        rep.new,
        rep.already,
        rep.bytes as f64 / 1e6,
        format_seeds(&spec.seeds)
    );
    Ok(())
}
