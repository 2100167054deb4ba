//! How much better than a NiNo model any nowcaster could be on a task: trains one Adam run to each `--starts`
//! step, continues it `--branches` times on different batch orders, and prints, per horizon, each model's
//! masked L1 on the continuations beside the two bounds on the best possible L1 of `nino_host::meta::floor`.
//! One JSON file per start lands in `--out`; a start whose file is there (with the same settings) is not
//! trained again, so a stopped run resumes.
//!
//! ```sh
//! cargo run --release -p nino-host --example noise_floor -- --out ../runs/floor \
//!     --weights fixtures/weights/nino_no_posw.safetensors --starts 1000,2000,3000
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use nino_host::cmd::train::TaskName;
use nino_host::io::atomic::write_atomic;
use nino_host::io::data::{DEFAULT_FASHION_MNIST_DIR, load_data};
use nino_host::io::model_file::MetaModel;
use nino_host::io::plot::{LinePlot, Series, write_png};
use nino_host::io::weights::WeightSet;
use nino_host::meta::floor::{Bounds, BranchSpec, branches};
use nino_host::meta::train::{HorizonL1, MetaData};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;

/// The L1 of nowcasts against the best any nowcaster could do (branches of one Adam run).
#[derive(Parser)]
struct Args {
    /// Folder for one `start-STEP.json` per start (kept: a rerun skips the starts already there).
    #[arg(long)]
    out: PathBuf,
    /// Models to score (NiNo files: the published one or `nino meta-train` outputs); repeat the flag.
    #[arg(long = "weights", required = true)]
    weights: Vec<PathBuf>,
    /// Task whose net, learning rate and data train the branches.
    #[arg(long, value_enum, default_value = "fm16")]
    task: TaskName,
    /// Folder of the task's IDX files.
    #[arg(long, default_value = DEFAULT_FASHION_MNIST_DIR)]
    data: PathBuf,
    /// Seed of the shared run (initial weights and batch order up to the start).
    #[arg(long, default_value_t = 9501)]
    seed: u64,
    /// Steps whose state the branches share (each is the last of a nowcast's context), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,3000")]
    starts: Vec<u64>,
    /// Continuations per start.
    #[arg(long, default_value_t = 8)]
    branches: usize,
    /// Steps between stored states (static 1000 records every 200).
    #[arg(long, default_value_t = 200)]
    spacing: u64,
    /// Horizons after the start (at most the models' `seq_len`).
    #[arg(long, default_value_t = 40)]
    horizons: usize,
    /// Horizons whose mean L1 the summary gives (static 1000's first five nowcasts read 40, 33, 26, 21, 16).
    #[arg(long, value_delimiter = ',', default_value = "40,33,26,21,16")]
    report: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let models = a
        .weights
        .iter()
        .map(|p| {
            let w = WeightSet::load(p).with_context(|| format!("--weights {}", p.display()))?;
            Ok((p.display().to_string(), MetaModel::from_weights(&w).with_context(|| p.display().to_string())?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ctx = models[0].1.layout.cfg.ctx;
    if models.iter().any(|(_, m)| m.layout.cfg.ctx != ctx || m.layout.cfg.seq_len < a.horizons) {
        bail!("every model must read {ctx} context states and emit at least --horizons {} horizons", a.horizons);
    }
    let task = a.task.task();
    let (arch, spec_text) = (task.arch(), task.spec().to_string());
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut splits = None;
    let mut pooled: Vec<(String, HorizonL1)> = Vec::new();
    for &start in &a.starts {
        let spec = BranchSpec {
            lr: task.lr(),
            batch: 128,
            seed: a.seed,
            start,
            spacing: a.spacing,
            ctx,
            horizons: a.horizons,
            branches: a.branches,
        };
        let settings = json!({"task": spec_text, "seed": a.seed, "start": start, "spacing": a.spacing, "ctx": ctx,
            "horizons": a.horizons, "branches": a.branches, "lr": spec.lr, "batch": spec.batch});
        let file = a.out.join(format!("start-{start}.json"));
        let done: Option<Value> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let complete = |d: &Value| {
            ["others", "all", "last", "linear"].iter().all(|k| d[*k].is_object())
                && d["models"].as_array().is_some_and(|m| m.iter().all(|m| m["stretched"].is_array()))
        };
        let doc = match done.filter(|d| d["settings"] == settings && same_models(d, &models) && complete(d)) {
            Some(d) => {
                eprintln!("start {start}: kept {}", file.display());
                d
            }
            None => {
                let data = match &splits {
                    Some(d) => d,
                    None => splits.insert(load_data(Some(task), &a.data).map_err(anyhow::Error::from)?),
                };
                let pb = ProgressBar::new(spec.total_steps())
                    .with_style(ProgressStyle::with_template("start {msg} [{bar:40}] {pos}/{len} steps, {eta} left")?);
                pb.set_message(start.to_string());
                // Without a terminal the bar is hidden: a line per branch finished says how far it is.
                let (logged, per_branch) = (!std::io::stderr().is_terminal(), a.horizons as u64 * a.spacing);
                let trajs = branches(&arch, &spec_text, &spec, data, |n| {
                    pb.set_position(n);
                    if logged && n > start && (n - start).is_multiple_of(per_branch) {
                        eprintln!("start {start}: branch {}/{} done", (n - start) / per_branch, a.branches);
                    }
                })?;
                pb.finish_and_clear();
                let mut rows = Vec::new();
                let (mut bounds, mut last) = (None, None);
                for (name, model) in &models {
                    let md = MetaData::from_trajectories(trajs.clone(), a.spacing, &model.layout.cfg)?;
                    let b = match &bounds {
                        Some(b) => b,
                        None => bounds.insert(Bounds::new(&model.layout.cfg, &md)?),
                    };
                    let f = b.score(model, &md)?;
                    let stretched: Vec<Value> = f
                        .stretched
                        .iter()
                        .map(|(a, h)| json!({"factor": a, "sums": h.sums, "counts": h.counts}))
                        .collect();
                    rows.push(json!({"weights": name, "sums": f.model.sums, "counts": f.model.counts,
                        "cosine": f.cosine, "stretched": stretched}));
                    last = Some(f);
                }
                let f = last.expect("at least one model");
                let row = |h: &HorizonL1| json!({"sums": h.sums, "counts": h.counts});
                let d = json!({"settings": settings, "models": rows, "others": row(&f.others),
                    "all": row(&f.all), "last": row(&f.last), "linear": row(&f.linear)});
                write_atomic(&file, format!("{}\n", serde_json::to_string_pretty(&d)?).as_bytes())
                    .with_context(|| format!("writing {}", file.display()))?;
                d
            }
        };
        let rows = table_rows(&doc)?;
        println!("\nstart {start} ({} branches, spacing {}):", a.branches, a.spacing);
        print_table(&rows, &a.report);
        for m in doc["models"].as_array().into_iter().flatten() {
            let c: Vec<Option<f64>> = serde_json::from_value(m["cosine"].clone()).unwrap_or_default();
            println!("cosine of the move with the best move, {}: {}", m["weights"], cosine_cells(&c));
        }
        for (name, h) in rows {
            match pooled.iter_mut().find(|(n, _)| *n == name) {
                Some((_, p)) => p.add(&h),
                None => pooled.push((name, h)),
            }
        }
    }
    println!("\nall starts pooled:");
    print_table(&pooled, &a.report);
    let png = a.out.join("floor.png");
    write_png(&png, &plot(&pooled, a.seed)).with_context(|| format!("writing {}", png.display()))?;
    println!("plot: {}", png.display());
    Ok(())
}

/// L1 against horizon for the models, no change and the bounds (the repeated step would squash the others'
/// scale, and the stretched moves crowd the models).
fn plot(rows: &[(String, HorizonL1)], seed: u64) -> LinePlot {
    let series = rows
        .iter()
        .filter(|(name, _)| !name.starts_with("the last step") && !name.starts_with("first model's move"))
        .map(|(name, h)| {
            let label = std::path::Path::new(name).file_stem().map_or(name.clone(), |s| s.to_string_lossy().into());
            let main = h.means().iter().enumerate().filter_map(|(i, m)| m.map(|v| ((i + 1) as f64, v))).collect();
            Series { label, main, faint: Vec::new() }
        })
        .collect();
    LinePlot {
        title: format!("masked L1 on branches of seed {seed}'s run, all starts pooled"),
        x_label: "horizon k (states after the start)".into(),
        y_label: "masked L1 (model units)".into(),
        series,
        ..LinePlot::default()
    }
}

/// Whether a kept file scored the same models, in the same order.
fn same_models(doc: &Value, models: &[(String, MetaModel)]) -> bool {
    let kept: Vec<&str> =
        doc["models"].as_array().into_iter().flatten().filter_map(|m| m["weights"].as_str()).collect();
    kept == models.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
}

/// One start's rows: each model, then the two bounds.
fn table_rows(doc: &Value) -> anyhow::Result<Vec<(String, HorizonL1)>> {
    let read = |v: &Value| -> anyhow::Result<HorizonL1> {
        let sums = serde_json::from_value(v["sums"].clone()).context("a row's sums")?;
        let counts = serde_json::from_value(v["counts"].clone()).context("a row's counts")?;
        Ok(HorizonL1 { sums, counts })
    };
    let mut rows = Vec::new();
    let models = doc["models"].as_array().context("no models")?;
    for m in models {
        rows.push((m["weights"].as_str().unwrap_or("?").to_string(), read(m)?));
    }
    // The first model's move, stretched: whether its error is the length of the move.
    for st in models.first().and_then(|m| m["stretched"].as_array()).into_iter().flatten() {
        rows.push((format!("first model's move x {}", st["factor"]), read(st)?));
    }
    rows.push(("no change (the last context state)".into(), read(&doc["last"])?));
    rows.push(("the last step repeated".into(), read(&doc["linear"])?));
    rows.push(("median of the other branches (floor <=)".into(), read(&doc["others"])?));
    rows.push(("median of all branches (floor >=)".into(), read(&doc["all"])?));
    Ok(rows)
}

/// The cosines at the horizons the tables show.
fn cosine_cells(c: &[Option<f64>]) -> String {
    let cell = |k: usize| c.get(k - 1).copied().flatten().map_or("-".to_string(), |v| format!("{v:.3}"));
    TABLE_KS.iter().map(|&k| format!("k={k} {}", cell(k))).collect::<Vec<_>>().join(", ")
}

/// Horizons the tables show.
const TABLE_KS: [usize; 8] = [1, 5, 10, 16, 21, 26, 33, 40];

/// Rows of mean L1 at a few horizons and at the `report` horizons' mean.
fn print_table(rows: &[(String, HorizonL1)], report: &[usize]) {
    let ks = TABLE_KS;
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.5}"));
    print!("| row |");
    ks.iter().for_each(|k| print!(" k = {k} |"));
    println!(" mean at k = {report:?} |");
    for (name, h) in rows {
        let means = h.means();
        print!("| {name} |");
        ks.iter().for_each(|&k| print!(" {} |", cell(means.get(k - 1).copied().flatten())));
        println!(" {} |", cell(h.mean_at(report)));
    }
}
