//! `nino meta-eval`: the masked L1 of NiNo models on the same fixed windows of a collection, so a
//! meta-trained model and the published one compare on equal terms.

use crate::cmd::meta_train::{VAL_SEED, data_key, parse_spacing};
use crate::io::model_file::MetaModel;
use crate::io::weights::WeightSet;
use crate::meta::train::{MetaData, MetaTrainConfig, fixed_sample_loss};
use anyhow::{Context, bail};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
The windows are drawn exactly as `nino meta-train --val` draws its validation windows (same seed, batch,
windows per example and spacing), so the figures printed here are the ones in a run's loss curve.
Models with the same context length and horizon count see identical windows.

Examples:
  nino meta-eval --data runs/meta/val --weights fixtures/weights/nino_no_posw.safetensors --weights pp.safetensors
  nino meta-eval --data runs/meta/val --weights pp.safetensors --batches 16 --json val.json";

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
        ..MetaTrainConfig::default()
    };
    let mut results = Vec::new();
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
        results.push(serde_json::json!({"weights": path.display().to_string(), "masked_l1": loss}));
    }
    if let Some(out) = &a.json {
        let doc = serde_json::json!({
            "data": key, "batches": a.batches, "batch": a.batch, "windows": a.windows,
            "spacing": [a.spacing.0, a.spacing.1], "seed": VAL_SEED, "models": results,
        });
        let mut text = serde_json::to_string_pretty(&doc)?;
        text.push('\n');
        crate::io::atomic::write_atomic(out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
