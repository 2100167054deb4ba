//! `nino meta-eval`: the masked L1 of NiNo models on the same fixed windows of a collection, so a
//! meta-trained model and the published one compare on equal terms.

use crate::cmd::meta_train::{VAL_SEED, data_key, parse_spacing};
use crate::io::model_file::MetaModel;
use crate::io::weights::WeightSet;
use crate::meta::train::{
    HorizonL1, MetaData, MetaTrainConfig, WindowStarts, fixed_sample_by_horizon, fixed_sample_loss,
};
use anyhow::{Context, bail};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
The windows are drawn exactly as `nino meta-train --val` draws its validation windows (same seed, batch,
windows per example and spacing), so the figures printed here are the ones in a run's loss curve.
Models with the same context length and horizon count see identical windows. `--per-horizon` adds the
L1 at each horizon k (a nowcast reads one: at static 1000 over 10,000 steps k runs 40, 33, 26, 21, 16, ...),
since a lower pooled L1 may come from horizons no nowcast uses.

Examples:
  nino meta-eval --data runs/meta/val --weights fixtures/weights/nino_no_posw.safetensors --weights pp.safetensors
  nino meta-eval --data runs/meta/val --weights pp.safetensors --batches 16 --json val.json
  nino meta-eval --data runs/meta/val --weights a.safetensors --weights b.safetensors --per-horizon";

/// Arguments of `nino meta-eval`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct MetaEvalArgs {
    /// Collections to score on (repeat or separate with commas).
    #[arg(long, value_name = "DIR", value_delimiter = ',', required = true)]
    pub data: Vec<PathBuf>,
    /// Models to score (the published safetensors or `nino meta-train` outputs); repeat the flag.
    #[arg(long, value_name = "FILE", required = true)]
    pub weights: Vec<PathBuf>,
    /// Batches of fixed windows.
    #[arg(long, default_value_t = 4)]
    pub batches: usize,
    /// Examples per batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Overlapping windows per example.
    #[arg(long, default_value_t = 4)]
    pub windows: usize,
    /// Steps between context states: `200` or a range `LO-HI` (as `nino meta-train --spacing`).
    #[arg(long, default_value = "200", value_parser = parse_spacing)]
    pub spacing: (u64, u64),
    /// How late a window may start (as `nino meta-train --window-starts`).
    #[arg(long, value_name = "widest|drawn", default_value = "widest")]
    pub window_starts: WindowStarts,
    /// Also print (and write to --json) the masked L1 at each horizon k, with how many terms reached it.
    #[arg(long)]
    pub per_horizon: bool,
    /// Also print the mean of the per-horizon L1 at these horizons (`40,33,26,21,16`: static 1000's first five
    /// nowcasts), each horizon weighted equally, as a single figure to compare models on.
    #[arg(long, value_name = "K,...", value_delimiter = ',')]
    pub horizons: Vec<usize>,
    /// Also write the results as JSON (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs `nino meta-eval`.
pub fn run(a: &MetaEvalArgs) -> anyhow::Result<()> {
    if a.batches == 0 || a.batch == 0 || a.windows == 0 {
        bail!("--batches, --batch and --windows must be at least 1");
    }
    let (dirs, key) = data_key(&a.data, "--data")?;
    let mc = MetaTrainConfig {
        batch: a.batch,
        windows: a.windows,
        spacing: a.spacing.0,
        spacing_max: a.spacing.1,
        starts: a.window_starts,
        ..MetaTrainConfig::default()
    };
    let mut results = Vec::new();
    let mut horizons = Vec::new();
    for path in &a.weights {
        let w = WeightSet::load(path).with_context(|| format!("--weights {}", path.display()))?;
        let model = MetaModel::from_weights(&w).with_context(|| format!("{}", path.display()))?;
        let cfg = model.layout.cfg;
        let data = MetaData::load_dirs(&dirs, &cfg)?;
        data.check_lengths(&cfg, &mc)?;
        let loss = fixed_sample_loss(&model, &data, &mc, VAL_SEED, a.batches)?;
        println!(
            "{}: masked L1 {loss:.5} ({} trajectories, {} graphs)",
            path.display(),
            data.len(),
            a.batches * a.batch * a.windows
        );
        let mut row = serde_json::json!({"weights": path.display().to_string(), "masked_l1": loss});
        if a.per_horizon || !a.horizons.is_empty() {
            let h = fixed_sample_by_horizon(&model, &data, &mc, VAL_SEED, a.batches)?;
            if !a.horizons.is_empty() {
                let Some(at) = h.mean_at(&a.horizons) else {
                    bail!(
                        "--horizons {:?}: each must be in 1..={} and reached by some window (see --per-horizon)",
                        a.horizons,
                        h.counts.len()
                    );
                };
                println!("{}: masked L1 at horizons {:?}: {at:.5}", path.display(), a.horizons);
                row["horizons"] = serde_json::json!({"k": a.horizons, "l1": at});
            }
            if a.per_horizon {
                row["by_horizon"] = serde_json::json!({"l1": h.means(), "count": h.counts});
                horizons.push((path.display().to_string(), h));
            }
        }
        results.push(row);
    }
    if a.per_horizon {
        print!("{}", horizon_table(&horizons));
    }
    if let Some(out) = &a.json {
        let doc = serde_json::json!({
            "data": key, "batches": a.batches, "batch": a.batch, "windows": a.windows,
            "spacing": [a.spacing.0, a.spacing.1], "window_starts": a.window_starts.name(), "seed": VAL_SEED,
            "models": results,
        });
        let mut text = serde_json::to_string_pretty(&doc)?;
        text.push('\n');
        crate::io::atomic::write_atomic(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// The per-horizon table of `nino meta-eval --per-horizon`: one row per horizon some window reached, one L1
/// column per model, and the term count (one column when every model saw the same windows).
fn horizon_table(models: &[(String, HorizonL1)]) -> String {
    use std::fmt::Write;
    let same = models.windows(2).all(|m| m[0].1.counts == m[1].1.counts);
    let mut t = String::from("\nmasked L1 by horizon k\n| k |");
    for (i, (name, _)) in models.iter().enumerate() {
        let short = std::path::Path::new(name).file_stem().map_or(name.clone(), |s| s.to_string_lossy().into());
        let _ = write!(t, " {} ({short}) |{}", i + 1, if same { "" } else { " terms |" });
    }
    if same {
        t.push_str(" terms |");
    }
    t.push('\n');
    let rows = models.iter().map(|m| m.1.counts.len()).max().unwrap_or(0);
    let means: Vec<Vec<Option<f64>>> = models.iter().map(|m| m.1.means()).collect();
    for k in 0..rows {
        if models.iter().all(|m| m.1.counts.get(k).copied().unwrap_or(0) == 0) {
            continue;
        }
        let _ = write!(t, "| {} |", k + 1);
        for ((_, HorizonL1 { counts, .. }), l1) in models.iter().zip(&means) {
            match l1.get(k).copied().flatten() {
                Some(v) => {
                    let _ = write!(t, " {v:.5} |");
                }
                None => t.push_str(" - |"),
            }
            if !same {
                let _ = write!(t, " {} |", counts.get(k).copied().unwrap_or(0));
            }
        }
        if same {
            let _ = write!(t, " {} |", models[0].1.counts[k]);
        }
        t.push('\n');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::{HorizonL1, horizon_table};

    #[test]
    fn horizon_table_skips_unreached_horizons_and_shares_equal_counts() {
        let h = |sums: [f64; 3], counts: [u64; 3]| HorizonL1 { sums: sums.into(), counts: counts.into() };
        let a = ("runs/a.safetensors".to_string(), h([1.0, 1.0, 0.0], [4, 2, 0]));
        let b = ("b.safetensors".to_string(), h([0.5, 0.0, 0.0], [4, 0, 0]));
        let same = horizon_table(&[a.clone(), (b.0.clone(), h([0.5, 2.0, 0.0], [4, 2, 0]))]);
        assert_eq!(
            same,
            "\nmasked L1 by horizon k\n| k | 1 (a) | 2 (b) | terms |\n| 1 | 0.25000 | 0.12500 | 4 |\n| 2 | 0.50000 | 1.00000 | 2 |\n"
        );
        let apart = horizon_table(&[a, b]);
        assert_eq!(
            apart,
            "\nmasked L1 by horizon k\n| k | 1 (a) | terms | 2 (b) | terms |\n| 1 | 0.25000 | 4 | 0.12500 | 4 |\n| 2 | 0.50000 | 2 | - | 0 |\n"
        );
    }
}
