//! `nino experiment`: several training configurations over several seeds on data loaded once, with a
//! markdown table, a JSON file of every summary and PNG accuracy plots.

use crate::cmd::train::{EvalArgs, NetArgs, Plan, resolve};
use crate::fsutil::write_atomic;
use crate::metrics::{EvalRow, Summary, eval_schedule};
use crate::nino_hook::PeriodChoice;
use crate::plot::{LinePlot, Series, write_png};
use crate::run::{NinoSpec, ProbeSource, RunSpec, VerdictTiming, load_data, run_training};
use crate::train::FineEval;
use anyhow::{Context, bail};
use nino_core::Task;
use nino_core::period::Period;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Default NiNo weights, looked up from the current directory upwards and in the source checkout.
pub const DEFAULT_NINO: &str = "fixtures/weights/nino_no_posw.safetensors";
/// Default WNN+ weights (the MLP baseline of the paper).
pub const DEFAULT_WNN: &str = "fixtures/weights/nino_mlp.safetensors";
/// Rollback ratio of a bare `+rollback` (the `nino train --rollback` default).
pub const DEFAULT_ROLLBACK: f32 = nino_core::rollback::DEFAULT_MAX_RATIO;

/// Which nowcaster a configuration uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Plain Adam.
    Adam,
    /// Adam with NiNo nowcasts (`--nino` weights).
    Nino,
    /// Adam with WNN+ nowcasts (`--wnn` weights).
    Wnn,
}

/// One configuration of an experiment: `adam`, `nino:PERIOD` or `wnn:PERIOD`, optionally `+rollback[:R]`
/// and `+deferred`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The nowcaster.
    pub method: Method,
    /// Nowcast period (`None` for Adam).
    pub period: Option<PeriodChoice>,
    /// Rollback ratio, if rollback is on.
    pub rollback: Option<f32>,
    /// This run's rollback also takes the deferred verdict, whatever `--verdict` says: the guard that
    /// keeps short static periods from wrecking training.
    pub deferred: bool,
}

impl RunConfig {
    fn period_name(&self) -> String {
        match &self.period {
            Some(p) if *p == PeriodChoice::DYNAMIC => "dynamic".into(),
            Some(p) if *p == PeriodChoice::PROGRESS => "progress".into(),
            Some(p) => p.to_string(),
            None => String::new(),
        }
    }

    /// The canonical `--runs` spelling (`nino:dynamic+rollback`, `nino:100+deferred`).
    pub fn name(&self) -> String {
        let mut s = match self.method {
            Method::Adam => "adam".to_string(),
            Method::Nino => format!("nino:{}", self.period_name()),
            Method::Wnn => format!("wnn:{}", self.period_name()),
        };
        match self.rollback {
            Some(r) if r == DEFAULT_ROLLBACK && self.deferred => {}
            Some(r) if r == DEFAULT_ROLLBACK => s.push_str("+rollback"),
            Some(r) => {
                let _ = write!(s, "+rollback:{r}");
            }
            None => {}
        }
        if self.deferred {
            s.push_str("+deferred");
        }
        s
    }

    /// How this run's rollback judges a nowcast, given the experiment's `--verdict` for `+rollback` runs.
    fn verdict(&self, default: VerdictTiming) -> VerdictTiming {
        match self.rollback {
            Some(_) if self.deferred => VerdictTiming::Deferred,
            Some(_) => default,
            None => VerdictTiming::Immediate,
        }
    }

    /// A name safe in file names (`nino-dynamic-rollback`).
    pub fn file_stem(&self) -> String {
        self.name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect()
    }

    /// The label in tables and legends (`Adam+NiNo (dynamic, rollback)`).
    pub fn label(&self) -> String {
        let head = match self.method {
            Method::Adam => return "Adam".into(),
            Method::Nino => "Adam+NiNo",
            Method::Wnn => "Adam+WNN+",
        };
        let period = match &self.period {
            Some(PeriodChoice(Period::Static(p))) => format!("static {p}"),
            _ => self.period_name(),
        };
        let deferred = if self.deferred { ", deferred verdict" } else { "" };
        match self.rollback {
            Some(r) if r == DEFAULT_ROLLBACK => format!("{head} ({period}, rollback{deferred})"),
            Some(r) => format!("{head} ({period}, rollback {r}{deferred})"),
            None => format!("{head} ({period})"),
        }
    }
}

impl std::str::FromStr for RunConfig {
    type Err = String;

    /// Parses one item of `--runs`.
    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let item = item.trim();
        let bad = |why: &str| format!("bad run `{item}`: {why}");
        let mut parts = item.split('+');
        let base = parts.next().unwrap_or_default();
        let (mut rollback, mut deferred) = (None, false);
        for suffix in parts {
            let ratio = match suffix {
                "deferred" if deferred => return Err(bad("`+deferred` is given twice")),
                "deferred" => {
                    deferred = true;
                    continue;
                }
                "rollback" => DEFAULT_ROLLBACK,
                r => match r.strip_prefix("rollback:").map(str::parse::<f32>) {
                    Some(Ok(x)) if x.is_finite() && x >= 1.0 => x,
                    Some(_) => return Err(bad("the rollback ratio must be a number of at least 1")),
                    None => return Err(bad("the suffixes are `+rollback`, `+rollback:RATIO` and `+deferred`")),
                },
            };
            if rollback.replace(ratio).is_some() {
                return Err(bad("`+rollback` is given twice"));
            }
        }
        if deferred {
            rollback = rollback.or(Some(DEFAULT_ROLLBACK));
        }
        let (method, period) = match base.split_once(':') {
            None if base == "adam" => (Method::Adam, None),
            Some(("nino", p)) => (Method::Nino, Some(p)),
            Some(("wnn", p)) => (Method::Wnn, Some(p)),
            _ => return Err(bad("expected `adam`, `nino:PERIOD` or `wnn:PERIOD`")),
        };
        if method == Method::Adam && rollback.is_some() {
            return Err(bad("plain Adam has no nowcast to roll back"));
        }
        let period = period.map(|p| p.parse::<PeriodChoice>().map_err(|e| bad(&e))).transpose()?;
        if let Some(PeriodChoice(Period::Static(0))) = period {
            return Err(bad("the period must be at least 1 step"));
        }
        Ok(RunConfig { method, period, rollback, deferred })
    }
}

/// Parses a comma list of configurations (`adam,nino:1000,nino:dynamic+rollback,wnn:1000`).
pub fn parse_runs(list: &str) -> Result<Vec<RunConfig>, String> {
    let runs: Vec<RunConfig> =
        list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Err("--runs is empty".into());
    }
    for (i, r) in runs.iter().enumerate() {
        if runs[..i].contains(r) {
            return Err(format!("--runs lists `{}` twice", r.name()));
        }
    }
    Ok(runs)
}

/// A parsed `--runs` list (a newtype, so clap takes it as one value).
#[derive(Clone, Debug, PartialEq)]
pub struct RunList(pub Vec<RunConfig>);

/// A named set of configurations, one per table of the project's issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Adam vs Adam+NiNo with the dynamic period and rollback (the main job).
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

impl Preset {
    /// The `--runs` list the preset stands for.
    pub fn runs(self) -> &'static str {
        match self {
            Preset::Main => "adam,nino:dynamic+rollback",
            Preset::StaticVsDynamic => "nino:1000,nino:dynamic,nino:fork",
            Preset::WallTime => "adam,nino:1000,nino:dynamic",
            Preset::Periods => "nino:100+deferred,nino:500+deferred,nino:1000,nino:dynamic+rollback",
            Preset::NinoVsWnn => "adam,nino:1000,wnn:1000",
        }
    }

    /// The name used on the command line and in the default output directory.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Main => "main",
            Preset::StaticVsDynamic => "static-vs-dynamic",
            Preset::WallTime => "wall-time",
            Preset::Periods => "periods",
            Preset::NinoVsWnn => "nino-vs-wnn",
        }
    }
}

const AFTER_HELP: &str = "\
Presets (--preset), as --runs lists:
  main               adam,nino:dynamic+rollback
  static-vs-dynamic  nino:1000,nino:dynamic,nino:fork
  wall-time          adam,nino:1000,nino:dynamic
  periods            nino:100+deferred,nino:500+deferred,nino:1000,nino:dynamic+rollback
  nino-vs-wnn        adam,nino:1000,wnn:1000

A run is `adam`, `nino:PERIOD` or `wnn:PERIOD` (PERIOD: steps, `dynamic`, `fork`), optionally followed by
`+rollback` (ratio 10) or `+rollback:RATIO`, and by `+deferred`: rollback with the deferred verdict and the
held-out probe, the guard for static periods under 1000, which without it drift into a collapse (FM-16 and
FM-32 at period 100 end at 23-78% accuracy). Every configuration runs once per seed on the same data
(loaded once), under the `nino train` protocol.

Output in --out: table.md (median steps and wall time to target over the seeds, each seed's value, `>N`
for a target not reached in N steps), results.json (every run's summary), accuracy_vs_steps.png,
accuracy_vs_wall.png, and runs/NAME-seedS.{csv,json} for each run. Wall time to target counts the
optimizer steps and the whole NiNo hook (nowcasts, state recording, rollback probes); evaluation time is
excluded and reported apart.

Examples:
  nino experiment --preset main --task fm16
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
    pub preset: Preset,

    /// An explicit comma list of configurations instead of a preset (e.g. `adam,nino:1000,wnn:1000`).
    #[arg(long, value_name = "LIST", value_parser = |s: &str| parse_runs(s).map(RunList))]
    pub runs: Option<RunList>,

    /// Seeds; every configuration runs once per seed.
    #[arg(long, value_name = "S,S,...", value_delimiter = ',', default_value = "1000,2000,3000")]
    pub seeds: Vec<u64>,

    /// Most training steps per run.
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,

    /// When to evaluate.
    #[command(flatten)]
    pub eval: EvalArgs,

    /// Adam learning rate [default: the task's, 0.006].
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
    pub probe: Option<ProbeSource>,

    /// After a rollback, retry once with a quarter of the horizon (as `nino train --retry`).
    #[arg(long)]
    pub retry: bool,

    /// When `+rollback` runs judge a nowcast: `immediate` or `deferred` (as `nino train --verdict`);
    /// `+deferred` runs take the deferred verdict whatever this says.
    #[arg(long, value_enum, default_value_t = VerdictTiming::Immediate)]
    pub verdict: VerdictTiming,

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

/// One run's results as kept in `results.json`; `rows` feed the plots.
#[derive(Clone, Debug, Serialize)]
pub struct SeedResult {
    /// Seed.
    pub seed: u64,
    /// Optimizer + whole-NiNo-hook seconds up to the target (`None`: not reached).
    pub seconds_to_target: Option<f64>,
    /// The run's metrics CSV.
    pub metrics_csv: PathBuf,
    /// The run's summary JSON.
    pub summary_json: PathBuf,
    /// The run summary.
    pub summary: Summary,
    /// Every evaluation (in the CSV; not repeated in `results.json`).
    #[serde(skip)]
    pub rows: Vec<EvalRow>,
}

/// All seeds of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigResult {
    /// `--runs` spelling.
    pub name: String,
    /// Table and legend label.
    pub label: String,
    /// One entry per finished seed.
    pub runs: Vec<SeedResult>,
}

/// What the table's header line states.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// The command line that produced the results.
    pub command: String,
    /// Data directory.
    pub dataset: String,
    /// Training / test examples used.
    pub examples: (usize, usize),
    /// Task name or `custom`.
    pub task: String,
    /// Arch spec.
    pub arch: String,
    /// Steps between evaluations.
    pub eval_every: u64,
    /// Denser evaluations near the target.
    pub eval_fine: Option<FineEval>,
    /// Step limit.
    pub steps: u64,
    /// Target accuracy (fraction).
    pub target: Option<f32>,
    /// Seeds.
    pub seeds: Vec<u64>,
}

/// The median with `None` ordered after every value ("not reached" is slower than any time); `None` if
/// the median falls on a run that did not reach the target, or there is nothing.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    m.is_finite().then_some(m)
}

fn median_f32(values: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<Option<f64>> = values.map(|x| Some(f64::from(x))).collect();
    median(&v).unwrap_or(0.0) as f32
}

/// `a, b, c`, or one value when all seeds agree.
fn per_seed(values: &[String]) -> String {
    if values.windows(2).all(|w| w[0] == w[1]) {
        values.first().cloned().unwrap_or_default()
    } else {
        values.join(", ")
    }
}

/// Renders `table.md`.
pub fn render_table(title: &str, setup: &Setup, configs: &[ConfigResult]) -> String {
    let pct = |a: f32| format!("{:.2}%", 100.0 * a);
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(
        s,
        "Dataset `{}` (task {}, `{}`; {} training / {} test images); evaluation {}; at most {} \
         steps; target {}; seeds {}.",
        setup.dataset,
        setup.task,
        setup.arch,
        setup.examples.0,
        setup.examples.1,
        eval_schedule(setup.eval_every, setup.eval_fine),
        setup.steps,
        setup.target.map_or("none".into(), pct),
        setup.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
    );
    let _ = writeln!(s, "Command: `{}`\n", setup.command);
    s.push_str(
        "| configuration | steps to target (median) | per seed | wall s to target (median) | per seed | \
         nowcasts | rollbacks | final acc (median) | best acc (median) | eval s (median) |\n",
    );
    s.push_str("|---|---:|---|---:|---|---:|---:|---:|---:|---:|\n");
    for c in configs {
        let runs = &c.runs;
        let steps: Vec<Option<f64>> = runs.iter().map(|r| r.summary.steps_to_target.map(|x| x as f64)).collect();
        let steps_med = match median(&steps) {
            Some(m) => format!("{m:.0}"),
            None if runs.is_empty() => "-".into(),
            None => format!(">{}", setup.steps),
        };
        let steps_seed: Vec<String> = runs
            .iter()
            .map(|r| r.summary.steps_to_target.map_or(format!(">{}", r.summary.steps_run), |x| x.to_string()))
            .collect();
        let wall: Vec<Option<f64>> = runs.iter().map(|r| r.seconds_to_target).collect();
        let wall_med = match median(&wall) {
            Some(m) => format!("{m:.2}"),
            None if runs.is_empty() => "-".into(),
            None => "not reached".into(),
        };
        let wall_seed: Vec<String> = runs
            .iter()
            .map(|r| match r.seconds_to_target {
                Some(w) => format!("{w:.2}"),
                None => format!(">{:.2}", r.summary.train_seconds + r.summary.nowcast_seconds),
            })
            .collect();
        let nowcasts: Vec<String> = runs.iter().map(|r| r.summary.nowcasts.to_string()).collect();
        let rollbacks: Vec<String> = runs.iter().map(|r| r.summary.rollbacks.to_string()).collect();
        let eval: Vec<Option<f64>> = runs.iter().map(|r| Some(r.summary.eval_seconds)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.label,
            steps_med,
            steps_seed.join(", "),
            wall_med,
            wall_seed.join(", "),
            per_seed(&nowcasts),
            per_seed(&rollbacks),
            pct(median_f32(runs.iter().map(|r| r.summary.final_accuracy))),
            pct(median_f32(runs.iter().map(|r| r.summary.best_accuracy))),
            median(&eval).map_or("-".into(), |e| format!("{e:.2}")),
        );
    }
    let resolution = match setup.eval_fine {
        None => "Steps to target are multiples of the evaluation interval.".to_string(),
        Some(f) => {
            let grid = if f.every == 1 { "exact".to_string() } else { format!("multiples of {}", f.every) };
            format!("Steps to target are {grid} once an evaluation was within the margin of the target.")
        }
    };
    let _ = writeln!(
        s,
        "\n`>N`: the target was not reached in N steps (or, for wall time, in that many seconds). A run that \
         did not reach the target counts as slower than any that did, so a median of `>N` means at least half \
         the seeds did not reach it. {resolution} Wall time to target counts the optimizer steps and the whole \
         NiNo hook (nowcasts, state recording, rollback probes); evaluation is excluded and shown apart (eval s)."
    );
    s
}

/// The seed whose run is the median by steps to target (ties broken by best accuracy).
fn median_index(runs: &[SeedResult]) -> usize {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|&a, &b| {
        let key = |r: &SeedResult| r.summary.steps_to_target.unwrap_or(u64::MAX);
        key(&runs[a]).cmp(&key(&runs[b])).then(runs[b].summary.best_accuracy.total_cmp(&runs[a].summary.best_accuracy))
    });
    idx.get(runs.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// Accuracy curves against `x` (steps or wall seconds) for every configuration with a finished run.
fn accuracy_plot(setup: &Setup, configs: &[ConfigResult], x: fn(&EvalRow) -> f64, x_label: &str) -> LinePlot {
    let curve = |r: &SeedResult| r.rows.iter().map(|row| (x(row), 100.0 * f64::from(row.test_accuracy))).collect();
    let series = configs
        .iter()
        .filter(|c| !c.runs.is_empty())
        .map(|c| {
            let m = median_index(&c.runs);
            let seeds = if c.runs.len() > 1 { format!(", median of {} seeds", c.runs.len()) } else { String::new() };
            Series {
                label: format!("{} (seed {}{seeds})", c.label, c.runs[m].seed),
                main: curve(&c.runs[m]),
                faint: c.runs.iter().enumerate().filter(|(i, _)| *i != m).map(|(_, r)| curve(r)).collect(),
            }
        })
        .collect();
    LinePlot {
        title: format!("{} ({}) test accuracy", setup.task, setup.arch),
        x_label: x_label.into(),
        y_label: "test accuracy (%)".into(),
        series,
        target: setup.target.map(|t| (100.0 * f64::from(t), format!("target {:.2}%", 100.0 * t))),
        marker: None,
    }
}

/// Quotes an argument for the shell only where needed.
fn shell_word(a: &str) -> String {
    let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:,=+@%".contains(c));
    if plain { a.to_string() } else { format!("'{}'", a.replace('\'', r"'\''")) }
}

/// Writes table.md, results.json and both plots (after every run, so an interrupted experiment keeps its
/// finished runs).
fn write_outputs(out: &Path, title: &str, setup: &Setup, configs: &[ConfigResult]) -> anyhow::Result<()> {
    let table = render_table(title, setup, configs);
    let p = out.join("table.md");
    write_atomic(&p, table.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    // Serialised straight from the structs, so f32 fields read as in the per-run summaries (0.639, not
    // 0.6389999985694885).
    #[derive(Serialize)]
    struct Results<'a> {
        setup: &'a Setup,
        configurations: &'a [ConfigResult],
    }
    let p = out.join("results.json");
    let mut text =
        serde_json::to_string_pretty(&Results { setup, configurations: configs }).context("serialising the results")?;
    text.push('\n');
    write_atomic(&p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    if configs.iter().any(|c| c.runs.iter().any(|r| !r.rows.is_empty())) {
        let steps = accuracy_plot(setup, configs, |r| r.step as f64, "training steps (nowcasts counted)");
        write_png(&out.join("accuracy_vs_steps.png"), &steps)?;
        let wall = accuracy_plot(
            setup,
            configs,
            |r| r.wall_seconds - r.eval_seconds,
            "wall time excluding evaluation (s): steps + every NiNo cost",
        );
        write_png(&out.join("accuracy_vs_wall.png"), &wall)?;
    }
    Ok(())
}

/// Runs `nino experiment`.
pub fn run(args: &ExperimentArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.seeds.is_empty() {
        bail!("--seeds needs at least one seed");
    }
    if let Some(s) = args.seeds.iter().enumerate().find(|(i, s)| args.seeds[..*i].contains(s)) {
        bail!("--seeds lists {} twice", s.1);
    }
    let Plan { task, spec: arch, target, lr } = resolve(&args.net, args.lr)?;
    let eval_fine = args.eval.fine(target)?;
    let (configs, title) = match &args.runs {
        Some(r) => (r.0.clone(), "nino experiment (custom runs)".to_string()),
        None => (
            parse_runs(args.preset.runs()).map_err(anyhow::Error::msg)?,
            format!("nino experiment: {}", args.preset.name()),
        ),
    };
    let weights = |m: Method| -> anyhow::Result<Option<PathBuf>> {
        let (p, flag) = match m {
            Method::Adam => return Ok(None),
            Method::Nino => (&args.nino, "--nino"),
            Method::Wnn => (&args.wnn, "--wnn"),
        };
        match resolve_fixture(p) {
            Some(found) => Ok(Some(found)),
            None => bail!(
                "{} weights {} not found (looked from the current directory upwards and in the source checkout); pass {flag} FILE",
                if m == Method::Nino { "NiNo" } else { "WNN+" },
                p.display()
            ),
        }
    };
    let weight_paths: Vec<Option<PathBuf>> = configs.iter().map(|c| weights(c.method)).collect::<Result<_, _>>()?;

    let task_name = task.map_or("custom", Task::name).to_string();
    let out = args.out.clone().unwrap_or_else(|| {
        let preset = if args.runs.is_some() { "custom" } else { args.preset.name() };
        PathBuf::from("results").join(format!("{preset}-{task_name}"))
    });
    let runs_dir = out.join("runs");
    std::fs::create_dir_all(&runs_dir).with_context(|| format!("creating {}", runs_dir.display()))?;

    let data = load_data(task, &args.net.data)?;
    let command = std::iter::once("nino".to_string())
        .chain(std::env::args_os().skip(1).map(|a| shell_word(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ");
    let setup = Setup {
        command,
        dataset: args.net.data.display().to_string(),
        examples: (data.train.len(), data.test.len()),
        task: task_name,
        arch: arch.clone(),
        eval_every: args.eval.eval_every,
        eval_fine,
        steps: args.steps,
        target,
        seeds: args.seeds.clone(),
    };
    eprintln!(
        "experiment: {} x {} seeds on {} ({} training / {} test images), writing to {}",
        configs.iter().map(RunConfig::name).collect::<Vec<_>>().join(", "),
        args.seeds.len(),
        args.net.data.display(),
        data.train.len(),
        data.test.len(),
        out.display()
    );

    let mut results: Vec<ConfigResult> =
        configs.iter().map(|c| ConfigResult { name: c.name(), label: c.label(), runs: Vec::new() }).collect();
    let total = configs.len() * args.seeds.len();
    let mut done = 0;
    for (ci, cfg) in configs.iter().enumerate() {
        for &seed in &args.seeds {
            done += 1;
            let stem = format!("{}-seed{seed}", cfg.file_stem());
            let (metrics_csv, summary_json) =
                (runs_dir.join(format!("{stem}.csv")), runs_dir.join(format!("{stem}.json")));
            let verdict = cfg.verdict(args.verdict);
            let spec = RunSpec {
                task,
                arch: arch.clone(),
                data_dir: args.net.data.clone(),
                target,
                lr,
                batch: args.batch,
                steps: args.steps,
                seed,
                eval_every: args.eval.eval_every,
                eval_fine,
                nino: weight_paths[ci].as_ref().map(|w| NinoSpec {
                    weights: w.clone(),
                    period: cfg.period.unwrap_or(PeriodChoice::REFERENCE),
                    horizon: None,
                    f16: false,
                    rollback: cfg.rollback,
                    slack: args.rollback_slack,
                    probe: args.probe.unwrap_or(match verdict {
                        VerdictTiming::Deferred => ProbeSource::Heldout,
                        VerdictTiming::Immediate => ProbeSource::Train,
                    }),
                    retry: args.retry,
                    verdict,
                    patience: args.patience,
                    verdict_ratio: args.verdict_ratio,
                    lpe: None,
                    fault: None,
                }),
                metrics: Some(metrics_csv.clone()),
                progress: !args.no_progress && std::io::stderr().is_terminal(),
                announce: false,
            };
            eprintln!("[{done}/{total}] {}, seed {seed}", cfg.label());
            let o = run_training(&spec, &data).with_context(|| format!("run {} seed {seed}", cfg.name()))?;
            o.summary.write_json(&summary_json)?;
            let seconds_to_target = o.seconds_to_target();
            eprintln!(
                "[{done}/{total}] {}, seed {seed}: {}; final accuracy {:.2}%, {} nowcasts, {} rolled back",
                cfg.label(),
                match (o.summary.steps_to_target, seconds_to_target) {
                    (Some(s), Some(w)) => format!("target at step {s} ({w:.2} s)"),
                    _ => format!("target not reached in {} steps", o.summary.steps_run),
                },
                100.0 * o.summary.final_accuracy,
                o.summary.nowcasts,
                o.summary.rollbacks,
            );
            results[ci].runs.push(SeedResult {
                seed,
                seconds_to_target,
                metrics_csv,
                summary_json,
                summary: o.summary,
                rows: o.report.rows,
            });
            write_outputs(&out, &title, &setup, &results)?;
        }
    }
    print!("{}", render_table(&title, &setup, &results));
    println!(
        "\nwrote {0}/table.md, {0}/results.json, {0}/accuracy_vs_steps.png, {0}/accuracy_vs_wall.png",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lists_parse_to_canonical_names() {
        let r = parse_runs("adam, nino:1000,nino:dynamic,nino:fork,wnn:1000,nino:dynamic+rollback,nino:500+rollback:2")
            .unwrap();
        let names: Vec<String> = r.iter().map(RunConfig::name).collect();
        assert_eq!(
            names,
            [
                "adam",
                "nino:1000",
                "nino:dynamic",
                "nino:fork",
                "wnn:1000",
                "nino:dynamic+rollback",
                "nino:500+rollback:2"
            ]
        );
        assert_eq!(r[0], RunConfig { method: Method::Adam, period: None, rollback: None, deferred: false });
        assert_eq!(r[2].period, Some(PeriodChoice::DYNAMIC));
        assert_eq!(r[5].rollback, Some(DEFAULT_ROLLBACK));
        assert_eq!(r[4].method, Method::Wnn);
        assert_eq!(r[5].label(), "Adam+NiNo (dynamic, rollback)");
        assert_eq!(r[1].label(), "Adam+NiNo (static 1000)");
        assert_eq!(r[4].label(), "Adam+WNN+ (static 1000)");
        assert_eq!(r[5].file_stem(), "nino-dynamic-rollback");
        // Every name parses back to the same configuration.
        for c in &r {
            assert_eq!(&c.name().parse::<RunConfig>().unwrap(), c);
        }
    }

    #[test]
    fn deferred_runs_imply_rollback_and_name_themselves_once() {
        let r = parse_runs("nino:100+deferred,nino:500+rollback:3+deferred,wnn:1000+deferred+rollback").unwrap();
        assert_eq!(r[0].rollback, Some(DEFAULT_ROLLBACK));
        assert!(r.iter().all(|c| c.deferred));
        assert_eq!(r[1].rollback, Some(3.0));
        let names: Vec<String> = r.iter().map(RunConfig::name).collect();
        assert_eq!(names, ["nino:100+deferred", "nino:500+rollback:3+deferred", "wnn:1000+deferred"]);
        assert_eq!(r[0].label(), "Adam+NiNo (static 100, rollback, deferred verdict)");
        assert_eq!(r[1].label(), "Adam+NiNo (static 500, rollback 3, deferred verdict)");
        assert_eq!(r[0].file_stem(), "nino-100-deferred");
        for c in &r {
            assert_eq!(&c.name().parse::<RunConfig>().unwrap(), c);
        }
        assert!(r.iter().all(|c| c.verdict(VerdictTiming::Immediate) == VerdictTiming::Deferred));
        let plain = parse_runs("adam,nino:100,nino:100+rollback").unwrap();
        let verdicts: Vec<VerdictTiming> = plain.iter().map(|c| c.verdict(VerdictTiming::Deferred)).collect();
        assert_eq!(verdicts, [VerdictTiming::Immediate, VerdictTiming::Immediate, VerdictTiming::Deferred]);
        // Without `+deferred` a rollback is the plain one, so `+rollback+deferred` and `+rollback` differ.
        assert_ne!(parse_runs("nino:100+rollback").unwrap(), parse_runs("nino:100+rollback+deferred").unwrap());
    }

    #[test]
    fn bad_run_lists_are_one_line_errors() {
        for bad in [
            "",
            "sgd",
            "nino",
            "nino:",
            "nino:often",
            "nino:0",
            "adam+rollback",
            "nino:1000+retry",
            "nino:1000+rollback:0.5",
            "nino:1000+deferred+deferred",
            "nino:1000+rollback+rollback:3",
            "adam+deferred",
            "nino:1000+defered",
            "adam,adam",
        ] {
            let e = parse_runs(bad).err().unwrap_or_else(|| panic!("`{bad}` accepted"));
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
    }

    #[test]
    fn every_preset_parses() {
        for p in [Preset::Main, Preset::StaticVsDynamic, Preset::WallTime, Preset::Periods, Preset::NinoVsWnn] {
            assert!(parse_runs(p.runs()).is_ok(), "{}", p.name());
        }
        assert_eq!(parse_runs(Preset::Main.runs()).unwrap()[1].rollback, Some(nino_core::rollback::DEFAULT_MAX_RATIO));
        // Table (c): the short static periods run guarded; static 1000 stays the reference.
        let periods = parse_runs(Preset::Periods.runs()).unwrap();
        let guarded: Vec<bool> = periods.iter().map(|c| c.deferred).collect();
        assert_eq!(guarded, [true, true, false, false]);
        assert_eq!(periods[2].rollback, None);
    }

    #[test]
    fn median_orders_not_reached_last() {
        assert_eq!(median(&[Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(3.0), None, Some(1.0)]), Some(3.0));
        assert_eq!(median(&[None, None, Some(1.0)]), None);
        assert_eq!(median(&[Some(1.0), Some(2.0)]), Some(1.5));
        assert_eq!(median(&[Some(1.0), None]), None);
        assert_eq!(median(&[]), None);
    }

    fn seed_result(seed: u64, steps_to_target: Option<u64>, nowcasts: u64) -> SeedResult {
        let summary = Summary {
            task: Some("debug".into()),
            arch: "conv:4,6,6".into(),
            seed,
            lr: 0.006,
            batch: 128,
            eval_every: 100,
            eval_fine: None,
            target: Some(0.7),
            steps_to_target,
            final_accuracy: 0.7125,
            best_accuracy: 0.72,
            steps_run: steps_to_target.unwrap_or(1000),
            train_seconds: 4.0,
            eval_seconds: 0.5,
            wall_seconds: 5.0,
            nowcasts,
            nowcast_seconds: 0.25,
            rollbacks: 0,
            events: vec![],
        };
        SeedResult {
            seed,
            seconds_to_target: steps_to_target.map(|_| 4.25),
            metrics_csv: PathBuf::from("m.csv"),
            summary_json: PathBuf::from("s.json"),
            summary,
            rows: Vec::new(),
        }
    }

    fn setup() -> Setup {
        Setup {
            command: "nino experiment --task debug".into(),
            dataset: "fixtures/fashion-mnist-mini".into(),
            examples: (5500, 1000),
            task: "debug".into(),
            arch: "conv:4,6,6".into(),
            eval_every: 100,
            eval_fine: None,
            steps: 1000,
            target: Some(0.7),
            seeds: vec![1, 2, 3],
        }
    }

    #[test]
    fn table_shows_medians_seeds_and_not_reached_honestly() {
        let configs = vec![
            ConfigResult {
                name: "adam".into(),
                label: "Adam".into(),
                runs: vec![seed_result(1, Some(600), 0), seed_result(2, None, 0), seed_result(3, Some(400), 0)],
            },
            ConfigResult {
                name: "nino:1000".into(),
                label: "Adam+NiNo (static 1000)".into(),
                runs: vec![seed_result(1, None, 1), seed_result(2, None, 1), seed_result(3, Some(300), 2)],
            },
        ];
        let t = render_table("t", &setup(), &configs);
        let lines: Vec<&str> = t.lines().collect();
        assert!(t.contains("evaluation every 100 steps; at most 1000 steps; target 70.00%; seeds 1, 2, 3"), "{t}");
        assert!(t.contains("Command: `nino experiment --task debug`"), "{t}");
        assert!(t.contains("multiples of the evaluation interval"), "{t}");
        let fine = Setup { eval_fine: Some(FineEval { every: 10, margin: 0.005 }), ..setup() };
        let t = render_table("t", &fine, &configs);
        assert!(
            t.contains("evaluation every 100 steps; every 10 steps within 0.50 points of the target; at most"),
            "{t}"
        );
        assert!(t.contains("multiples of 10 once an evaluation was within the margin of the target."), "{t}");
        let exact = Setup { eval_fine: Some(FineEval { every: 1, margin: 0.005 }), ..setup() };
        let t = render_table("t", &exact, &configs);
        assert!(t.contains("evaluation every 100 steps; every step within 0.50 points of the target; at"), "{t}");
        assert!(t.contains("Steps to target are exact once an evaluation was within the margin"), "{t}");
        let adam = lines.iter().find(|l| l.starts_with("| Adam |")).unwrap();
        let cells: Vec<&str> = adam.split('|').map(str::trim).collect();
        assert_eq!(&cells[1..8], ["Adam", "600", "600, >1000, 400", "4.25", "4.25, >4.25, 4.25", "0", "0"]);
        assert_eq!(&cells[8..11], ["71.25%", "72.00%", "0.50"]);
        let nino = lines.iter().find(|l| l.starts_with("| Adam+NiNo")).unwrap();
        let cells: Vec<&str> = nino.split('|').map(str::trim).collect();
        assert_eq!(&cells[2..7], [">1000", ">1000, >1000, 300", "not reached", ">4.25, >4.25, 4.25", "1, 1, 2"]);
        assert_eq!(lines.iter().filter(|l| l.starts_with("| ")).count(), 3, "header and two rows: {t}");
    }

    #[test]
    fn median_seed_is_the_middle_run() {
        let runs = vec![seed_result(1, Some(600), 0), seed_result(2, None, 0), seed_result(3, Some(400), 0)];
        assert_eq!(runs[median_index(&runs)].seed, 1);
        assert_eq!(median_index(&runs[..1]), 0);
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("--runs"), "--runs");
        assert_eq!(shell_word("adam,nino:1000+rollback"), "adam,nino:1000+rollback");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
