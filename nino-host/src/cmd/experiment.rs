//! `nino experiment`: its flags, resolved into an [`ExperimentPlan`] that [`run_experiment`] carries out.

use crate::cmd::train::{EvalArgs, NetArgs, Plan, ProbeArg, VerdictArg, resolve};
use crate::experiment::arm::{Arm, ArmError, Method, parse_arms};
use crate::experiment::preset::Preset;
use crate::experiment::seed_loop::{ExperimentPlan, run_experiment};
use crate::experiment::table::render_document;
use crate::run::settings::{ProbeSource, RunSpec};
use anyhow::bail;
use nino_core::Task;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Default NiNo weights, looked up from the current directory upwards and in the source checkout.
pub const DEFAULT_NINO: &str = "fixtures/weights/nino_no_posw.safetensors";
/// Default WNN+ weights (the MLP baseline of the paper).
pub const DEFAULT_WNN: &str = "fixtures/weights/nino_mlp.safetensors";

/// A parsed `--runs` list (a newtype, so clap takes it as one value).
#[derive(Clone, Debug, PartialEq)]
pub struct ArmList(pub Vec<Arm>);

/// Parses `--runs`, naming the flag where the list as a whole is wrong.
fn parse_run_list(s: &str) -> Result<ArmList, String> {
    parse_arms(s).map(ArmList).map_err(|e| match e {
        ArmError::Empty => "--runs is empty".to_string(),
        ArmError::Twice(name) => format!("--runs lists `{name}` twice"),
        e => e.to_string(),
    })
}

/// A named set of configurations, one per table of the project's issues (`--preset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    /// Adam vs Adam+NiNo with the default period, the reference's static 1000 (the main job).
    Main,
    /// NiNo with static period 1000 vs the dynamic period, and the fork's periods.
    StaticVsDynamic,
    /// Adam, NiNo static 1000 and NiNo dynamic: wall time to target with every NiNo cost counted.
    WallTime,
    /// NiNo with static periods 100, 500 (both guarded by the deferred verdict), 1000 vs the dynamic period.
    Periods,
    /// Adam, Adam+NiNo (static 1000) and Adam+WNN+ (static 1000).
    NinoVsWnn,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Preset {
        match p {
            PresetArg::Main => Preset::Main,
            PresetArg::StaticVsDynamic => Preset::StaticVsDynamic,
            PresetArg::WallTime => Preset::WallTime,
            PresetArg::Periods => Preset::Periods,
            PresetArg::NinoVsWnn => Preset::NinoVsWnn,
        }
    }
}

const AFTER_HELP: &str = "\
Presets (--preset), as --runs lists:
  main               adam,nino:1000
  static-vs-dynamic  nino:1000,nino:dynamic,nino:fork
  wall-time          adam,nino:1000,nino:dynamic
  periods            nino:100+deferred,nino:500+deferred,nino:1000,nino:dynamic+rollback
  nino-vs-wnn        adam,nino:1000,wnn:1000

A run is `adam`, `nino:PERIOD` or `wnn:PERIOD` (PERIOD: steps, `dynamic`, `fork`), optionally followed by
`+rollback` (ratio 10) or `+rollback:RATIO`, and by `+deferred`: rollback with the deferred verdict and the
held-out probe, the guard for static periods under 1000, which without it drift into a collapse (FM-16 and
FM-32 at period 100 end at 23-78% accuracy). Every configuration runs once per seed on the same data
(loaded once), under the `nino train` protocol. --steps also sizes NiNo's horizon schedule; --adam-steps N
lets `adam` runs go on to N steps (the main job: 20,000) while NiNo's runs keep that schedule.

A run may end in `@MODEL` to use NiNo weights named by `--model MODEL=FILE` instead of --nino, so two models
run on the same seeds (`nino:dynamic+rollback,nino:dynamic+rollback@pp --model pp=pp.safetensors`).

Paired protocol: every configuration runs on the same seeds, and table.md compares every two of them seed
by seed: B's steps to target minus A's, their median (and of B/A - 1), how many seeds each wins, and an
exact two-sided sign test. --confirm-seeds adds seeds that are run after the others and reported in their
own section, as seeds never used to choose a setting; the tuning section comes first. --resume reuses the
finished runs of the output folder (their settings are recorded beside each run and must match) and runs
the rest, so a killed experiment continues and a table is rebuilt without rerunning; --report-only runs
nothing and reports the seeds every configuration has finished.

Output in --out: table.md (median steps and wall time to target over the seeds, each seed's value, `>N`
for a target not reached in N steps, then the paired comparison), results.json (every run's summary),
accuracy_vs_steps.png, accuracy_vs_wall.png, and runs/NAME-seedS.{csv,json,settings.json} for each run. With an `adam` run, table.md ends with
every other configuration against Adam: steps and wall time to target side by side, and their ratios. Wall
time to target counts the optimizer steps and the whole NiNo hook (nowcasts, state recording, rollback
probes); evaluation time is excluded and reported apart.

Examples:
  nino experiment --preset main --task fm16 --adam-steps 20000
  nino experiment --task fm16 --runs nino:1000,nino:dynamic+rollback --seeds 1000-1004 --confirm-seeds 201-210 \\
      --eval-fine 10 --out results/schedules-fm16 --resume
  nino experiment --task debug --data fixtures/fashion-mnist-mini --steps 600 --seeds 1,2 --runs adam,nino:dynamic
  nino experiment --data DIR --arch mlp:32 --target 85 --runs adam,nino:1000,wnn:1000";

/// Arguments of `nino experiment`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ExperimentArgs {
    /// Which network and data.
    #[command(flatten)]
    pub net: NetArgs,

    /// Configurations to compare.
    #[arg(long, value_enum, default_value = "main")]
    pub preset: PresetArg,

    /// An explicit comma list of configurations instead of a preset (e.g. `adam,nino:1000,wnn:1000`).
    #[arg(long, value_name = "LIST", value_parser = parse_run_list)]
    pub runs: Option<ArmList>,

    /// Seeds; every configuration runs once per seed (values and ranges: `1000,2000` or `201-210`). With
    /// --confirm-seeds these are the tuning seeds.
    #[arg(long, value_name = "LIST", default_value = "1000,2000,3000", value_parser = seed_list)]
    pub seeds: Seeds,

    /// Confirmation seeds: run after the others and reported apart, as seeds never used to choose a setting.
    #[arg(long, value_name = "LIST", value_parser = seed_list)]
    pub confirm_seeds: Option<Seeds>,

    /// Reuse the finished runs in the output folder whose recorded settings are this experiment's; run the
    /// rest. An interrupted experiment continues, and tables are rebuilt without rerunning.
    #[arg(long)]
    pub resume: bool,

    /// With --resume, also reuse finished runs that record no settings (written by builds before runs
    /// recorded them), trusting that they were made with these flags.
    #[arg(long, requires = "resume")]
    pub adopt: bool,

    /// With --resume, run nothing: rebuild the tables from the finished runs, on the seeds where every
    /// configuration has finished (the others are named on stderr). For studies still running elsewhere.
    #[arg(long, requires = "resume")]
    pub report_only: bool,

    /// Named NiNo weights for `nino:...@NAME` arms (`NAME=FILE`; repeat the flag), so two models run side by
    /// side on the same seeds.
    #[arg(long = "model", value_name = "NAME=FILE", value_parser = named_model)]
    pub models: Vec<(String, PathBuf)>,

    /// Most training steps per run.
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,

    /// Most training steps of `adam` runs, so that Adam runs on to its target while NiNo's runs keep the
    /// nowcast schedule --steps plans [default: --steps].
    #[arg(long, value_name = "N")]
    pub adam_steps: Option<u64>,

    /// When to evaluate.
    #[command(flatten)]
    pub eval: EvalArgs,

    /// Adam learning rate [default: the task's, 0.006 or 0.003 on CIFAR].
    #[arg(long)]
    pub lr: Option<f32>,

    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,

    /// NiNo weights for `nino:` runs.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_NINO)]
    pub nino: PathBuf,

    /// Absolute slack of the rollback threshold of `+rollback` runs (as `nino train --rollback-slack`).
    #[arg(long, value_name = "LOSS", default_value_t = nino_core::rollback::DEFAULT_MAX_INCREASE)]
    pub rollback_slack: f32,

    /// The probe batch of rollback runs: `train` or `heldout` (as `nino train --probe`) [default: heldout
    /// for runs with the deferred verdict, train for the others].
    #[arg(long, value_enum)]
    pub probe: Option<ProbeArg>,

    /// After a rollback, retry once with a quarter of the horizon (as `nino train --retry`).
    #[arg(long)]
    pub retry: bool,

    /// When `+rollback` runs judge a nowcast: `immediate` or `deferred` (as `nino train --verdict`);
    /// `+deferred` runs take the deferred verdict whatever this says.
    #[arg(long, value_enum, default_value_t = VerdictArg::Immediate)]
    pub verdict: VerdictArg,

    /// Deferred undos in a row after which a run with the deferred verdict stops nowcasting (as `nino train
    /// --patience`).
    #[arg(long, value_name = "N", default_value_t = nino_core::rollback::DEFAULT_PATIENCE)]
    pub patience: usize,

    /// The deferred verdict's ratio (as `nino train --verdict-ratio`).
    #[arg(long, value_name = "RATIO", default_value_t = nino_core::rollback::DEFAULT_LATER.max_ratio)]
    pub verdict_ratio: f32,

    /// WNN+ weights for `wnn:` runs.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_WNN)]
    pub wnn: PathBuf,

    /// Output directory [default: results/PRESET-TASK, `custom` for --runs or --arch].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Do not draw progress bars (they are never drawn when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// A parsed seed list (a newtype for clap).
pub type Seeds = Vec<u64>;

fn seed_list(s: &str) -> Result<Seeds, String> {
    crate::io::collection::parse_seeds(s).map_err(|e| e.to_string())
}

fn named_model(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, f)) if !n.is_empty() && !f.is_empty() => Ok((n.to_string(), PathBuf::from(f))),
        _ => Err(format!("expected NAME=FILE, got `{s}`")),
    }
}

/// Finds a relative fixture path in the current directory, its parents, or the source checkout.
pub fn resolve_fixture(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    if path.is_absolute() {
        return None;
    }
    let cwd = std::env::current_dir().ok();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    cwd.iter().flat_map(|d| d.ancestors()).chain([repo.as_path()]).map(|d| d.join(path)).find(|p| p.is_file())
}

/// Quotes an argument for the shell only where needed.
fn shell_word(a: &str) -> String {
    let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:,=+@%".contains(c));
    if plain { a.to_string() } else { format!("'{}'", a.replace('\'', r"'\''")) }
}

/// Runs `nino experiment`.
pub fn run(args: &ExperimentArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let confirm = args.confirm_seeds.clone().unwrap_or_default();
    let seeds: Vec<u64> = args.seeds.iter().chain(&confirm).copied().collect();
    if args.seeds.is_empty() {
        bail!("--seeds needs at least one seed");
    }
    if let Some(s) = seeds.iter().enumerate().find(|(i, s)| seeds[..*i].contains(s)) {
        bail!("seed {} is listed twice (--seeds and --confirm-seeds name each seed once)", s.1);
    }
    if let Some((n, _)) = args.models.iter().enumerate().find(|(i, (n, _))| args.models[..*i].iter().any(|m| &m.0 == n))
    {
        bail!("--model names `{}` twice", args.models[n].0);
    }
    if args.adam_steps == Some(0) {
        bail!("--adam-steps must be at least 1");
    }
    let Plan { task, spec: arch, target, lr } = resolve(&args.net, args.lr)?;
    let eval_fine = args.eval.fine(target)?;
    let preset = Preset::from(args.preset);
    let (arms, title) = match &args.runs {
        Some(r) => (r.0.clone(), "nino experiment (custom runs)".to_string()),
        None => (parse_arms(preset.runs())?, format!("nino experiment: {}", preset.name())),
    };
    let weights = |a: &Arm| -> anyhow::Result<Option<PathBuf>> {
        let (p, flag) = match (a.method, &a.model) {
            (Method::Adam, _) => return Ok(None),
            (_, Some(name)) => match args.models.iter().find(|(n, _)| n == name) {
                Some((_, f)) => (f, "--model"),
                None => bail!("run `{}` names model `{name}`, which no --model {name}=FILE gives", a.name()),
            },
            (Method::Nino, None) => (&args.nino, "--nino"),
            (Method::Wnn, None) => (&args.wnn, "--wnn"),
        };
        let m = a.method;
        match resolve_fixture(p) {
            Some(found) => Ok(Some(found)),
            None => bail!(
                "{} weights {} not found (looked from the current directory upwards and in the source checkout); pass {flag} FILE",
                if m == Method::Nino { "NiNo" } else { "WNN+" },
                p.display()
            ),
        }
    };
    let weight_paths: Vec<Option<PathBuf>> = arms.iter().map(weights).collect::<Result<_, _>>()?;

    let task_name = task.map_or("custom", Task::name).to_string();
    let out = args.out.clone().unwrap_or_else(|| {
        let preset = if args.runs.is_some() { "custom" } else { preset.name() };
        PathBuf::from("results").join(format!("{preset}-{task_name}"))
    });
    let command = std::iter::once("nino".to_string())
        .chain(std::env::args_os().skip(1).map(|a| shell_word(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ");
    let plan = ExperimentPlan {
        title,
        arms,
        weights: weight_paths,
        base: RunSpec {
            task,
            arch,
            data_dir: args.net.data.clone(),
            target,
            lr,
            batch: args.batch,
            steps: args.steps,
            seed: 0,
            eval_every: args.eval.eval_every,
            eval_fine,
            nino: None,
            metrics: None,
            progress: !args.no_progress && std::io::stderr().is_terminal(),
            announce: false,
        },
        adam_steps: args.adam_steps,
        seeds,
        confirm_seeds: confirm,
        resume: args.resume,
        adopt: args.adopt,
        report_only: args.report_only,
        rollback_slack: args.rollback_slack,
        probe: args.probe.map(ProbeSource::from),
        retry: args.retry,
        verdict: args.verdict.into(),
        patience: args.patience,
        verdict_ratio: args.verdict_ratio,
        out: out.clone(),
        command,
    };
    let report = run_experiment(&plan).map_err(super::experiment_error)?;
    print!("{}", render_document(&plan.title, &report.setup, &report.configs));
    println!(
        "\nwrote {0}/table.md, {0}/results.json, {0}/accuracy_vs_steps.png, {0}/accuracy_vs_wall.png",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("--runs"), "--runs");
        assert_eq!(shell_word("adam,nino:1000+rollback"), "adam,nino:1000+rollback");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn every_preset_flag_names_its_preset() {
        for p in PresetArg::value_variants() {
            let name = p.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(Preset::from(*p).name(), name);
        }
        assert_eq!(PresetArg::value_variants().len(), Preset::ALL.len());
    }

    #[test]
    fn run_list_errors_name_the_flag() {
        assert_eq!(parse_run_list(",").unwrap_err(), "--runs is empty");
        assert_eq!(parse_run_list("adam,adam").unwrap_err(), "--runs lists `adam` twice");
        assert!(parse_run_list("sgd").unwrap_err().starts_with("bad run `sgd`"));
    }
}
