//! The seed loop: every arm once per seed on data loaded once, under the `nino train` protocol, with the
//! outputs rewritten after every run so that an interrupted experiment keeps its finished runs.

use crate::experiment::arm::{Arm, Method};
use crate::experiment::plots::accuracy_plot;
use crate::experiment::table::{ConfigResult, SeedResult, Setup, render_document};
use crate::io::atomic::write_atomic;
use crate::io::data::{DataError, load_data};
use crate::io::plot::{PlotError, write_png};
use crate::nowcast::hook::PeriodChoice;
use crate::run::checkpoint::RecordedSettings;
use crate::run::runner::{RunError, run_training};
use crate::run::settings::{NinoSpec, ProbeSource, RunSpec, VerdictTiming, recorded_settings};
use crate::training::metrics::{MetricsError, Summary, parse_csv_rows};
use nino_core::Task;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why an experiment stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The output folder could not be created.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// One run failed.
    #[error("run {arm} seed {seed}")]
    Run {
        /// The arm's name.
        arm: String,
        /// The seed.
        seed: u64,
        /// Why.
        source: Box<RunError>,
    },
    /// A run's summary could not be written.
    #[error(transparent)]
    Summary(#[from] MetricsError),
    /// `table.md` or `results.json` could not be written.
    #[error("writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The results could not be serialised.
    #[error("serialising the results")]
    Json(#[source] serde_json::Error),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// A finished run kept for `resume` cannot be read back.
    #[error("{}: {why} (remove the run's files to redo it)", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A finished run was made with other settings than this experiment's.
    #[error(
        "{} was run with {key} = {there}, this experiment has {here}: use another output folder, or remove the run",
        path.display()
    )]
    OtherSettings {
        /// The run's settings file.
        path: PathBuf,
        /// The first setting that differs.
        key: String,
        /// The run's value.
        there: String,
        /// This experiment's.
        here: String,
    },
}

/// A checked experiment: the arms, the network and data, the settings every run shares, and where the
/// outputs go. The command line builds it from its flags.
#[derive(Clone, Debug)]
pub struct ExperimentPlan {
    /// The first line of `table.md`.
    pub title: String,
    /// The arms, in table order.
    pub arms: Vec<Arm>,
    /// The weights of each arm (`None` for Adam), found before anything runs.
    pub weights: Vec<Option<PathBuf>>,
    /// What every run shares: network, data, target, Adam's settings, step limit, evaluation, progress
    /// bars. Each run sets its own seed, nowcasts and metrics file, and `adam` runs their own step limit.
    pub base: RunSpec,
    /// Most steps of an `adam` run, when other than `base.steps`.
    pub adam_steps: Option<u64>,
    /// Seeds; every arm runs once per seed.
    pub seeds: Vec<u64>,
    /// The seeds of `seeds` kept for confirmation (run after the others, reported apart).
    pub confirm_seeds: Vec<u64>,
    /// Reuse the finished runs in `out/runs/` whose recorded settings are this experiment's.
    pub resume: bool,
    /// With `resume`, also reuse finished runs that carry no settings record (written by builds before
    /// runs recorded them), trusting that they were made with this experiment's settings.
    pub adopt: bool,
    /// With `resume`, run nothing: report only the seeds where every arm has a finished run.
    pub report_only: bool,
    /// Absolute slack of the rollback threshold of rollback arms.
    pub rollback_slack: f32,
    /// The probe batch of rollback arms; `None`: held-out for the deferred verdict, training otherwise.
    pub probe: Option<ProbeSource>,
    /// After a rollback, retry once with a quarter of the horizon.
    pub retry: bool,
    /// How `+rollback` arms judge a nowcast (`+deferred` arms always take the deferred verdict).
    pub verdict: VerdictTiming,
    /// Deferred undos in a row after which a run stops nowcasting.
    pub patience: usize,
    /// The deferred verdict's ratio.
    pub verdict_ratio: f32,
    /// Output folder.
    pub out: PathBuf,
    /// The command line, for the table's header.
    pub command: String,
}

/// What an experiment produced: what its table states, and every configuration's runs.
#[derive(Clone, Debug)]
pub struct ExperimentReport {
    /// The table's header facts.
    pub setup: Setup,
    /// Every arm's runs.
    pub configs: Vec<ConfigResult>,
}

/// Writes table.md, results.json and both plots (after every run, so an interrupted experiment keeps its
/// finished runs).
fn write_outputs(out: &Path, title: &str, setup: &Setup, configs: &[ConfigResult]) -> Result<(), ExperimentError> {
    let table = render_document(title, setup, configs);
    let p = out.join("table.md");
    write_atomic(&p, table.as_bytes()).map_err(|source| ExperimentError::Write { path: p.clone(), source })?;
    // Serialised straight from the structs, so f32 fields read as in the per-run summaries (0.639, not
    // 0.6389999985694885).
    #[derive(Serialize)]
    struct Results<'a> {
        setup: &'a Setup,
        configurations: &'a [ConfigResult],
    }
    let p = out.join("results.json");
    let mut text =
        serde_json::to_string_pretty(&Results { setup, configurations: configs }).map_err(ExperimentError::Json)?;
    text.push('\n');
    write_atomic(&p, text.as_bytes()).map_err(|source| ExperimentError::Write { path: p.clone(), source })?;
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

/// Runs every arm of `plan` once per seed, writing the outputs after every run.
pub fn run_experiment(plan: &ExperimentPlan) -> Result<ExperimentReport, ExperimentError> {
    let runs_dir = plan.out.join("runs");
    std::fs::create_dir_all(&runs_dir)
        .map_err(|source| ExperimentError::CreateDir { path: runs_dir.clone(), source })?;

    let base = &plan.base;
    let data = load_data(base.task, &base.data_dir)?;
    let setup = Setup {
        command: plan.command.clone(),
        dataset: base.data_dir.display().to_string(),
        examples: (data.train.len(), data.test.len()),
        task: base.task.map_or("custom", Task::name).to_string(),
        arch: base.arch.clone(),
        eval_every: base.eval_every,
        eval_fine: base.eval_fine,
        steps: base.steps,
        adam_steps: plan.adam_steps.filter(|&a| a != base.steps),
        target: base.target,
        seeds: plan.seeds.clone(),
        confirm_seeds: plan.confirm_seeds.clone(),
    };
    let mut results: Vec<ConfigResult> =
        plan.arms.iter().map(|c| ConfigResult { name: c.name(), label: c.label(), runs: Vec::new() }).collect();
    let mut done = 0;
    // Tuning seeds first (each for every arm), confirmation seeds last: a confirmation is run once the
    // rest is known, and an interrupted one loses no tuning run.
    let order: Vec<u64> = plan
        .seeds
        .iter()
        .filter(|s| !plan.confirm_seeds.contains(s))
        .chain(plan.seeds.iter().filter(|s| plan.confirm_seeds.contains(s)))
        .copied()
        .collect();
    // Every run's settings and files, known before anything runs: with --resume, a finished run of other
    // settings is refused before the first run starts or any output is rewritten.
    let prepare = |seed: u64, ci: usize| {
        let cfg = &plan.arms[ci];
        let stem = format!("{}-seed{seed}", cfg.file_stem());
        let (metrics_csv, summary_json) = (runs_dir.join(format!("{stem}.csv")), runs_dir.join(format!("{stem}.json")));
        let verdict = cfg.verdict(plan.verdict);
        let steps = match cfg.method {
            Method::Adam => plan.adam_steps.unwrap_or(base.steps),
            _ => base.steps,
        };
        let spec = RunSpec {
            steps,
            seed,
            nino: plan.weights[ci].as_ref().map(|w| NinoSpec {
                weights: w.clone(),
                period: cfg.period.unwrap_or(PeriodChoice::REFERENCE),
                horizon: None,
                f16: false,
                rollback: cfg.rollback,
                slack: plan.rollback_slack,
                probe: plan.probe.unwrap_or(match verdict {
                    VerdictTiming::Deferred => ProbeSource::Heldout,
                    VerdictTiming::Immediate => ProbeSource::Train,
                }),
                retry: plan.retry,
                verdict,
                patience: plan.patience,
                verdict_ratio: plan.verdict_ratio,
                lpe: None,
                fault: None,
            }),
            metrics: Some(metrics_csv.clone()),
            announce: false,
            ..base.clone()
        };
        let settings_json = runs_dir.join(format!("{stem}.settings.json"));
        let settings = recorded_settings(&spec, &base.arch, &data);
        (spec, metrics_csv, summary_json, settings_json, settings)
    };
    let mut kept = std::collections::HashMap::new();
    if plan.resume {
        for &seed in &order {
            for ci in 0..plan.arms.len() {
                let (_, csv, summary, settings_json, settings) = prepare(seed, ci);
                if let Some(k) = kept_run(&summary, &csv, &settings_json, &settings, plan.adopt)? {
                    kept.insert((seed, ci), k);
                }
            }
        }
    }
    let (order, setup) = if plan.report_only {
        let complete: Vec<u64> =
            order.iter().copied().filter(|&s| (0..plan.arms.len()).all(|ci| kept.contains_key(&(s, ci)))).collect();
        for &seed in order.iter().filter(|s| !complete.contains(s)) {
            let missing: Vec<String> = (0..plan.arms.len())
                .filter(|&ci| !kept.contains_key(&(seed, ci)))
                .map(|ci| plan.arms[ci].name())
                .collect();
            eprintln!("seed {seed} left out: not finished by {}", missing.join(", "));
        }
        let setup = Setup {
            seeds: setup.seeds.iter().copied().filter(|s| complete.contains(s)).collect(),
            confirm_seeds: setup.confirm_seeds.iter().copied().filter(|s| complete.contains(s)).collect(),
            ..setup
        };
        (complete, setup)
    } else {
        (order, setup)
    };
    let total = plan.arms.len() * order.len();
    eprintln!(
        "experiment: {} x {} seeds on {} ({} training / {} test images), writing to {}",
        plan.arms.iter().map(Arm::name).collect::<Vec<_>>().join(", "),
        order.len(),
        base.data_dir.display(),
        data.train.len(),
        data.test.len(),
        plan.out.display()
    );

    for seed in order.iter().copied() {
        for (ci, cfg) in plan.arms.iter().enumerate() {
            done += 1;
            let (spec, metrics_csv, summary_json, settings_json, settings) = prepare(seed, ci);
            if let Some(kept) = kept.remove(&(seed, ci)) {
                eprintln!("[{done}/{total}] {}, seed {seed}: kept from {}", cfg.label(), summary_json.display());
                results[ci].runs.push(SeedResult { seed, metrics_csv, summary_json, ..kept });
                sort_runs(&mut results[ci], &plan.seeds);
                write_outputs(&plan.out, &plan.title, &setup, &results)?;
                continue;
            }
            eprintln!("[{done}/{total}] {}, seed {seed}", cfg.label());
            let o = run_training(&spec, &data).map_err(|e| ExperimentError::Run {
                arm: cfg.name(),
                seed,
                source: Box::new(e),
            })?;
            write_atomic(&settings_json, settings.to_json().as_bytes())
                .map_err(|source| ExperimentError::Write { path: settings_json.clone(), source })?;
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
            sort_runs(&mut results[ci], &plan.seeds);
            write_outputs(&plan.out, &plan.title, &setup, &results)?;
        }
    }
    Ok(ExperimentReport { setup, configs: results })
}

/// Keeps a configuration's runs in the order of `--seeds`, whatever order they ran in.
fn sort_runs(c: &mut ConfigResult, seeds: &[u64]) {
    c.runs.sort_by_key(|r| seeds.iter().position(|s| *s == r.seed).unwrap_or(usize::MAX));
}

/// A finished run to reuse: its summary, metrics and settings files, when the settings are `here`'s
/// (or, with `adopt`, when it has none: its settings file is then written). `None`: not finished.
fn kept_run(
    summary: &Path,
    csv: &Path,
    settings: &Path,
    here: &RecordedSettings,
    adopt: bool,
) -> Result<Option<SeedResult>, ExperimentError> {
    if !summary.is_file() {
        return Ok(None);
    }
    let unreadable = |path: &Path, why: String| ExperimentError::Unreadable { path: path.to_path_buf(), why };
    match std::fs::read_to_string(settings) {
        Ok(text) => {
            let there = RecordedSettings::from_json(&text)
                .ok_or_else(|| unreadable(settings, "not a settings record".into()))?;
            if let Err(crate::run::checkpoint::CheckpointError::Mismatch { key, there, here, .. }) =
                there.check(here, settings)
            {
                return Err(ExperimentError::OtherSettings { path: settings.to_path_buf(), key, there, here });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && adopt => {
            write_atomic(settings, here.to_json().as_bytes())
                .map_err(|source| ExperimentError::Write { path: settings.to_path_buf(), source })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unreadable(settings, "missing: the run records no settings (pass --adopt to trust it)".into()));
        }
        Err(e) => return Err(unreadable(settings, e.to_string())),
    }
    let text = std::fs::read_to_string(summary).map_err(|e| unreadable(summary, e.to_string()))?;
    let s: Summary =
        serde_json::from_str(&text).map_err(|e| unreadable(summary, format!("not a run summary ({e})")))?;
    let rows = std::fs::read_to_string(csv)
        .map_err(|e| unreadable(csv, e.to_string()))
        .and_then(|t| parse_csv_rows(&t).map_err(|e| unreadable(csv, e)))?;
    let seconds_to_target = s.steps_to_target.map(|_| s.train_seconds + s.nowcast_seconds);
    Ok(Some(SeedResult {
        seed: s.seed,
        seconds_to_target,
        metrics_csv: csv.to_path_buf(),
        summary_json: summary.to_path_buf(),
        summary: s,
        rows,
    }))
}
