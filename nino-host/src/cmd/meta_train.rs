//! `nino meta-train`: trains a NiNo (the reference model or a NiNo++ variant) on trajectories collected
//! with `nino collect`.

use crate::io::atomic::write_atomic;
use crate::io::model_file::MetaModel;
use crate::io::plot::{LinePlot, Series, write_png};
use crate::io::weights::WeightSet;
use crate::meta::train::{
    CheckpointProblem, MetaData, MetaTrainConfig, MetaTrainError, MetaTrainer, fixed_sample_loss, parse_head,
};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nino_core::nowcast::{Config, Head};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

const AFTER_HELP: &str = "\
The loss is the reference's (docs/spec.md §7.3): mean absolute error of the scaled parameters of
every horizon 1..=H, over the real parameter slots, pooled over a batch of B examples x 4 overlapping
windows (16 graphs); windows are spaced --spacing optimizer steps apart (200), with the LPE signs flipped
at random per example. AdamW (weight decay 1e-2), cosine learning rate from --lr to 1e-6, gradient norm
clipped to 5. The reference trains 20,000 steps on 300 FM-16 and 300 CIFAR-10 trajectories with a GPU;
one FM-16 graph costs about 2.5 GFLOP here (forward and backward), so plan on ~1 s per update on 2 cores.

Variants (NiNo++): --head gru|lstm reads each edge's history as a sequence (PyTorch gate layouts, h0 = the
GNN's edge features); --centrality adds eigenvector centrality (times sqrt(N)) through cent_proj;
--lpe K sets the LPE count (`nino spectrum` prints the elbow's choice). --init copies every tensor of a
published checkpoint with the same key and shape (node_proj's first K columns when K < 8, and the MLP
head's output layer for a recurrent head's) and initialises the rest as the reference does.

Output: --out (safetensors with model_args in its metadata: what `nino train --nino` and `nino nowcast`
load), a checkpoint every --checkpoint-every updates (resume with --resume), the loss curve as CSV and PNG.

Example:
  nino collect --out runs/traj --task fm16 --seeds 1..8 --steps 3000
  nino meta-train --data runs/traj --head lstm --lpe 5 --centrality \\
      --init fixtures/weights/nino_no_posw.safetensors --steps 500 --out nino_pp.safetensors";

/// Arguments of `nino meta-train`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct MetaTrainArgs {
    /// Collection folder written by `nino collect` (manifest.json and shards).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Model file to write (safetensors, atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Direct-multi-step head: `mlp` (the reference), `gru` or `lstm`.
    #[arg(long, default_value = "mlp", value_parser = parse_head)]
    pub head: Head,
    /// Context states the model reads (`c`).
    #[arg(long, default_value_t = 5)]
    pub ctx: usize,
    /// Horizons the model predicts (`S`, in context spacings).
    #[arg(long, default_value_t = 40)]
    pub hor: usize,
    /// LPE eigenvectors per node.
    #[arg(long, default_value_t = 8)]
    pub lpe: usize,
    /// Add eigenvector centrality as a node feature (NiNo++ `V0*`).
    #[arg(long)]
    pub centrality: bool,
    /// Hidden width.
    #[arg(long, default_value_t = 128)]
    pub hid: usize,
    /// Message-passing layers.
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Start from this checkpoint's tensors where they fit (e.g. fixtures/weights/nino_no_posw.safetensors).
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Updates.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Examples per batch (each gives --windows graphs).
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Overlapping windows per example.
    #[arg(long, default_value_t = 4)]
    pub windows: usize,
    /// Peak learning rate (cosine down to 1e-6).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f32,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f32,
    /// Gradient-norm clip.
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Optimizer steps between context states of a window.
    #[arg(long, default_value_t = 200)]
    pub spacing: u64,
    /// Seed of the initialisation and the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint file [default: OUT with `.ckpt.safetensors`].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Updates between checkpoints.
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: u64,
    /// Continue the run saved in the checkpoint (same settings).
    #[arg(long)]
    pub resume: bool,
    /// Loss curve CSV [default: OUT with `.loss.csv`]; a PNG is written beside it.
    #[arg(long, value_name = "FILE")]
    pub loss_csv: Option<PathBuf>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Stop after this update as if killed (tests of --resume).
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    p.with_file_name(format!("{stem}{suffix}"))
}

/// Runs `nino meta-train`.
pub fn run(a: &MetaTrainArgs) -> anyhow::Result<()> {
    if a.steps == 0 || a.batch == 0 || a.windows == 0 || a.checkpoint_every == 0 {
        bail!("--steps, --batch, --windows and --checkpoint-every must be at least 1");
    }
    if !(a.lr > 0.0 && a.lr.is_finite() && a.clip > 0.0 && a.weight_decay >= 0.0) {
        bail!("--lr and --clip must be positive, --weight-decay non-negative");
    }
    let cfg = Config {
        hid: a.hid,
        layers: a.layers,
        ctx: a.ctx,
        lpe: a.lpe,
        seq_len: a.hor,
        wte_pos_enc: false,
        head: a.head,
        centrality: a.centrality,
        ..Config::default()
    };
    cfg.validate().map_err(|e| anyhow::anyhow!("model: {e}"))?;
    let mc = MetaTrainConfig {
        steps: a.steps,
        batch: a.batch,
        windows: a.windows,
        lr: a.lr,
        weight_decay: a.weight_decay,
        clip: a.clip,
        spacing: a.spacing,
        seed: a.seed,
    };
    let ckpt = a.checkpoint.clone().unwrap_or_else(|| with_suffix(&a.out, ".ckpt.safetensors"));
    let csv = a.loss_csv.clone().unwrap_or_else(|| with_suffix(&a.out, ".loss.csv"));
    let png = csv.with_extension("png");
    let data_dir = a.data.canonicalize().with_context(|| format!("--data {}", a.data.display()))?;
    let data_key = data_dir.display().to_string();

    let mut tr = if a.resume {
        let bytes = std::fs::read(&ckpt).with_context(|| format!("--resume: cannot read {}", ckpt.display()))?;
        MetaTrainer::from_checkpoint(&bytes, &cfg, &mc, &data_key)
            .map_err(checkpoint_problem)
            .with_context(|| format!("{}", ckpt.display()))?
    } else {
        if ckpt.exists() {
            bail!("{} exists: continue it with --resume, or remove it", ckpt.display());
        }
        let model = match &a.init {
            Some(p) => {
                let w = WeightSet::load(p)?;
                let (m, copied) = MetaModel::init_from(&cfg, a.seed, &w)?;
                eprintln!("init: {} of {} tensors from {}", copied.len(), m.slots()?.len(), p.display());
                m
            }
            None => MetaModel::init(&cfg, a.seed)?,
        };
        MetaTrainer::new(model, mc)
    };
    let data = MetaData::load(&data_dir, &cfg)?;
    data.check_lengths(&cfg, &tr.cfg).map_err(|e| match e {
        MetaTrainError::TooShort { index, states, spacing, need } => anyhow::anyhow!(
            "trajectory {index} has {states} states; windows of spacing {spacing} need more than {need} (collect \
             longer runs or lower --spacing)"
        ),
        e => e.into(),
    })?;
    eprintln!(
        "meta-train: {} trajectories ({}), {} parameters, head {}, lpe {}, centrality {}",
        data.len(),
        data.archs().join(", "),
        tr.model.params.len(),
        cfg.head.name(),
        cfg.lpe,
        if cfg.centrality { "on" } else { "off" }
    );

    // A fixed set of windows (seed independent of the sampler's) scores the model before and after.
    const EVAL_SEED: u64 = 0x5EED;
    let eval_before = fixed_sample_loss(&tr.model, &data, &tr.cfg, EVAL_SEED, 2)?;
    let pb = if a.no_progress || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let pb = ProgressBar::with_draw_target(Some(a.steps), ProgressDrawTarget::stderr());
        if let Ok(s) = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] update {pos}/{len} {msg} (eta {eta})")
        {
            pb.set_style(s.progress_chars("=> "));
        }
        pb
    };
    pb.set_position(tr.step);
    let before = tr.rows.last().map_or(0.0, |r| r.seconds);
    let started = Instant::now();
    let graphs_before = tr.step;
    while tr.step < a.steps {
        let row = tr.update(&data, before, started)?;
        pb.set_message(format!("loss {:.4}", row.loss));
        pb.set_position(tr.step);
        if tr.step % a.checkpoint_every == 0 || tr.step == a.steps {
            write_atomic(&ckpt, &tr.checkpoint_bytes(&data_key)?)
                .with_context(|| format!("cannot write {}", ckpt.display()))?;
            write_curve(&tr, &csv, &png)?;
        }
        if a.stop_after == Some(tr.step) {
            write_atomic(&ckpt, &tr.checkpoint_bytes(&data_key)?)?;
            bail!("stopped after update {} (--stop-after)", tr.step);
        }
    }
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let graphs = (tr.step - graphs_before) as f64 * (a.batch * a.windows) as f64;
    tr.model.save(&a.out, &[("meta_train", format!("{{\"steps\": {}, \"data\": {:?}}}", tr.step, data_key))])?;
    write_curve(&tr, &csv, &png)?;
    let eval_after = fixed_sample_loss(&tr.model, &data, &tr.cfg, EVAL_SEED, 2)?;
    println!(
        "loss on a fixed sample of windows: {eval_before:.5} before this session, {eval_after:.5} after; \
         {:.2} graphs/s ({} updates of {} graphs in {secs:.1} s); model {}",
        if secs > 0.0 { graphs / secs } else { 0.0 },
        tr.step - graphs_before,
        a.batch * a.windows,
        a.out.display()
    );
    Ok(())
}

/// A checkpoint of other settings, as the command line words it: the setting by its flag.
fn checkpoint_problem(p: CheckpointProblem) -> anyhow::Error {
    match p {
        CheckpointProblem::Setting { key, saved, here } => {
            anyhow::anyhow!("--{} is {saved} in the checkpoint but {here} here", key.replace('_', "-"))
        }
        p => p.into(),
    }
}

/// The loss curve as CSV and PNG, both atomically.
fn write_curve(tr: &MetaTrainer, csv: &Path, png: &Path) -> anyhow::Result<()> {
    let mut s = String::from("step,loss,lr,grad_norm,seconds\n");
    for r in &tr.rows {
        s.push_str(&format!("{},{},{},{},{:.3}\n", r.step, r.loss, r.lr, r.grad_norm, r.seconds));
    }
    write_atomic(csv, s.as_bytes()).with_context(|| format!("cannot write {}", csv.display()))?;
    let plot = LinePlot {
        title: "Meta-training loss".into(),
        x_label: "update".into(),
        y_label: "masked L1 loss (scaled parameters)".into(),
        series: vec![Series {
            label: format!("{} head", tr.model.layout.cfg.head.name()),
            main: tr.rows.iter().map(|r| (r.step as f64, r.loss)).collect(),
            faint: vec![],
        }],
        target: None,
        marker: None,
    };
    write_png(png, &plot)?;
    Ok(())
}
