//! `nino meta-train`: trains a NiNo (the reference model or a NiNo++ variant) on trajectories collected
//! with `nino collect`.

use crate::io::atomic::write_atomic;
use crate::io::model_file::MetaModel;
use crate::io::plot::{LinePlot, Series, write_png};
use crate::io::weights::WeightSet;
use crate::meta::train::{
    CheckpointProblem, MetaData, MetaTrainConfig, MetaTrainError, MetaTrainer, Precision, WindowStarts,
    fixed_sample_loss, parse_head,
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
one FM-16 graph costs about 1.5 GFLOP with the MLP head and 5.7 with the LSTM head (forward and backward),
so plan on about 0.2 s and 0.8 s per update on 2 cores.

Variants (NiNo++): --head gru|lstm reads each edge's history as a sequence (PyTorch gate layouts, h0 = the
GNN's edge features); --centrality adds eigenvector centrality (times sqrt(N)) through cent_proj;
--lpe K sets the LPE count (`nino spectrum` prints the elbow's choice). --init copies every tensor of a
published checkpoint with the same key and shape (node_proj's first K columns when K < 8, and the MLP
head's output layer for a recurrent head's) and initialises the rest as the reference does, except
cent_proj, which starts at zero so that the model starts as the checkpoint's function. --fresh-lr gives the
tensors --init did not supply their own peak rate, so a fresh cell learns while the copied GNN is fine-tuned.

Output: --out (safetensors with model_args in its metadata: what `nino train --nino` and `nino nowcast`
load), a checkpoint every --checkpoint-every updates (resume with --resume), the loss curve as CSV and PNG,
and with --val the model at the lowest validation L1 so far (--best), since a long run can overfit.

Example:
  nino collect --out runs/traj --task fm16 --seeds 1..8 --steps 3000
  nino meta-train --data runs/traj --head lstm --lpe 5 --centrality \\
      --init fixtures/weights/nino_no_posw.safetensors --steps 500 --out nino_pp.safetensors";

/// Arguments of `nino meta-train`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct MetaTrainArgs {
    /// Collection folders written by `nino collect` (manifest.json and shards): repeat the flag or separate
    /// them with commas; they must store states equally often.
    #[arg(long, value_name = "DIR", value_delimiter = ',', required = true)]
    pub data: Vec<PathBuf>,
    /// Validation collections, never trained on: their masked L1 on fixed windows is measured every
    /// --val-every updates and written to the loss curve.
    #[arg(long, value_name = "DIR", value_delimiter = ',')]
    pub val: Vec<PathBuf>,
    /// Updates between validation measurements.
    #[arg(long, default_value_t = 100)]
    pub val_every: u64,
    /// Batches of fixed validation windows (each --batch x --windows graphs).
    #[arg(long, default_value_t = 4)]
    pub val_batches: usize,
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
    /// Peak learning rate of the tensors --init did not supply (a fresh recurrent cell, cent_proj), so they
    /// learn while the copied ones are fine-tuned at --lr [default: --lr]
    #[arg(long, value_name = "LR", requires = "init")]
    pub fresh_lr: Option<f32>,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f32,
    /// Gradient-norm clip.
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Optimizer steps between context states of a window: `200` (the reference), or a range `100-300`
    /// from which each example draws its spacing (multiples of the collection's state interval).
    #[arg(long, default_value = "200", value_parser = parse_spacing)]
    pub spacing: (u64, u64),
    /// How late a window may start: `widest` bounds every example's start by a window's span at the widest
    /// spacing (the reference's rule), `drawn` by its span at the spacing the example drew, so that short
    /// spacings also sample the later part of each trajectory.
    #[arg(long, value_name = "widest|drawn", default_value = "widest")]
    pub window_starts: WindowStarts,
    /// Precision of the training products: `f32`, or `bf16` (products of hidden activations on bfloat16
    /// operands with f32 sums, the CPU counterpart of the reference's fp16 autocast: twice the multiply-adds
    /// on CPUs with AVX-512 BF16, emulated and slower elsewhere). Validation is f32 either way.
    #[arg(long, value_name = "f32|bf16", default_value = "f32")]
    pub precision: Precision,
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
    /// With --val, the model at the lowest validation L1 measured so far [default: OUT with
    /// `.best.safetensors`], so that a run that overfits keeps its best point.
    #[arg(long, value_name = "FILE", requires = "val")]
    pub best: Option<PathBuf>,
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

/// Parses `--spacing`: `S` or `LO-HI` (steps, `1 <= LO <= HI`).
pub fn parse_spacing(s: &str) -> Result<(u64, u64), String> {
    let num = |t: &str| t.trim().parse::<u64>().map_err(|_| format!("bad spacing `{s}`: expected STEPS or LO-HI"));
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if lo == 0 || hi < lo {
        return Err(format!("bad spacing `{s}`: need 1 <= LO <= HI"));
    }
    Ok((lo, hi))
}

/// The canonical folders of `dirs` joined by commas: the key a checkpoint records its data under.
pub fn data_key(dirs: &[PathBuf], flag: &str) -> anyhow::Result<(Vec<PathBuf>, String)> {
    let canon: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize().with_context(|| format!("{flag} {}", d.display())))
        .collect::<Result<_, _>>()?;
    let key = canon.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(",");
    Ok((canon, key))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    p.with_file_name(format!("{stem}{suffix}"))
}

/// Seed of the fixed validation windows: every run and `nino meta-eval` score models on the same ones.
pub const VAL_SEED: u64 = 0x7A1;

/// Whether two paths name the same folder (compared canonically where both exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
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
    if a.fresh_lr.is_some_and(|f| !(f.is_finite() && f > 0.0)) || !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr and --fresh-lr must be positive numbers");
    }
    // The model --init gives, and which of its tensors start fresh; a resumed run needs them only to check
    // its fresh ranges.
    let init = match &a.init {
        Some(p) if !a.resume || a.fresh_lr.is_some() => {
            let w = WeightSet::load(p)?;
            let (m, copied) = MetaModel::init_from(&cfg, a.seed, &w)?;
            eprintln!("init: {} of {} tensors from {}", copied.len(), m.slots()?.len(), p.display());
            let fresh = if a.fresh_lr.is_some() { m.fresh_ranges(&copied)? } else { Vec::new() };
            Some((m, fresh))
        }
        _ => None,
    };
    let mc = MetaTrainConfig {
        fresh_lr: a.fresh_lr,
        fresh: init.as_ref().map(|i| i.1.clone()).unwrap_or_default(),
        steps: a.steps,
        batch: a.batch,
        windows: a.windows,
        lr: a.lr,
        weight_decay: a.weight_decay,
        clip: a.clip,
        spacing: a.spacing.0,
        spacing_max: a.spacing.1,
        seed: a.seed,
        starts: a.window_starts,
        precision: a.precision,
    };
    let ckpt = a.checkpoint.clone().unwrap_or_else(|| with_suffix(&a.out, ".ckpt.safetensors"));
    let csv = a.loss_csv.clone().unwrap_or_else(|| with_suffix(&a.out, ".loss.csv"));
    let png = csv.with_extension("png");
    let best_path = a.best.clone().unwrap_or_else(|| with_suffix(&a.out, ".best.safetensors"));
    let (data_dirs, data_key) = data_key(&a.data, "--data")?;
    if let Some(d) = a.val.iter().find(|v| a.data.iter().any(|t| same_dir(t, v))) {
        bail!("--val {} is also a training folder: validation data must never be trained on", d.display());
    }
    if a.val_every == 0 || a.val_batches == 0 {
        bail!("--val-every and --val-batches must be at least 1");
    }

    let mut tr = if a.resume {
        let bytes = std::fs::read(&ckpt).with_context(|| format!("--resume: cannot read {}", ckpt.display()))?;
        MetaTrainer::from_checkpoint(&bytes, &cfg, &mc, &data_key)
            .map_err(checkpoint_problem)
            .with_context(|| format!("{}", ckpt.display()))?
    } else {
        if ckpt.exists() {
            bail!("{} exists: continue it with --resume, or remove it", ckpt.display());
        }
        let model = match init {
            Some((m, _)) => m,
            None => MetaModel::init(&cfg, a.seed)?,
        };
        MetaTrainer::new(model, mc)
    };
    let too_short = |e: MetaTrainError| match e {
        MetaTrainError::TooShort { index, states, spacing, need } => anyhow::anyhow!(
            "trajectory {index} has {states} states; windows of spacing {spacing} need more than {need} (collect \
             longer runs or lower --spacing)"
        ),
        e => e.into(),
    };
    let data = MetaData::load_dirs(&data_dirs, &cfg)?;
    data.check_lengths(&cfg, &tr.cfg).map_err(too_short)?;
    let val = if a.val.is_empty() {
        None
    } else {
        let v = MetaData::load_dirs(&a.val, &cfg)?;
        v.check_lengths(&cfg, &tr.cfg).map_err(too_short)?;
        Some(v)
    };
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
    let val_before = match &val {
        Some(v) => Some(fixed_sample_loss(&tr.model, v, &tr.cfg, VAL_SEED, a.val_batches)?),
        None => None,
    };
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
    // The lowest validation L1 of this run so far (a resumed run's rows hold the earlier measurements).
    let mut best = tr.rows.iter().filter_map(|r| r.val_loss.map(|v| (r.step, v))).min_by(|x, y| x.1.total_cmp(&y.1));
    while tr.step < a.steps {
        let row = tr.update(&data, before, started)?;
        pb.set_message(format!("loss {:.4}", row.loss));
        pb.set_position(tr.step);
        if let Some(v) = &val
            && (tr.step % a.val_every == 0 || tr.step == a.steps)
        {
            let l = fixed_sample_loss(&tr.model, v, &tr.cfg, VAL_SEED, a.val_batches)?;
            if let Some(r) = tr.rows.last_mut() {
                r.val_loss = Some(l);
            }
            let line = format!("update {}: validation masked L1 {l:.5}", tr.step);
            // A hidden bar drops what it prints: a run logged to a file still reports its validation.
            if pb.is_hidden() {
                eprintln!("{line}")
            } else {
                pb.println(line)
            }
            if best.is_none_or(|(_, b)| l < b) {
                best = Some((tr.step, l));
                let meta = format!("{{\"steps\": {}, \"val_l1\": {l}, \"data\": {:?}}}", tr.step, data_key);
                tr.model.save(&best_path, &[("meta_train", meta)])?;
            }
        }
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
    if let (Some(b), Some(v)) = (val_before, &val) {
        let after = fixed_sample_loss(&tr.model, v, &tr.cfg, VAL_SEED, a.val_batches)?;
        println!("validation masked L1 ({} trajectories): {b:.5} before this session, {after:.5} after", v.len());
        if let Some((step, l)) = best {
            println!("lowest validation masked L1 {l:.5}, at update {step}: {}", best_path.display());
        }
    }
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

/// Updates in the trailing mean of the plotted training loss: one batch of 16 graphs is too noisy to read
/// (its loss spans about 0.2-0.6 on FM-16 data while the validation moves in the third decimal).
const SMOOTH: usize = 50;

/// The loss curve as CSV and PNG, both atomically; with validation measurements, also `*.val.png`, the
/// validation curve on its own scale, where a rise (overfitting) is visible.
fn write_curve(tr: &MetaTrainer, csv: &Path, png: &Path) -> anyhow::Result<()> {
    let mut s = String::from("step,loss,lr,grad_norm,seconds,val_loss\n");
    for r in &tr.rows {
        let val = r.val_loss.map_or(String::new(), |v| v.to_string());
        s.push_str(&format!("{},{},{},{},{:.3},{val}\n", r.step, r.loss, r.lr, r.grad_norm, r.seconds));
    }
    write_atomic(csv, s.as_bytes()).with_context(|| format!("cannot write {}", csv.display()))?;
    let losses: Vec<f64> = tr.rows.iter().map(|r| r.loss).collect();
    let smooth = trailing_mean(&losses, SMOOTH);
    let val: Vec<(f64, f64)> = tr.rows.iter().filter_map(|r| Some((r.step as f64, r.val_loss?))).collect();
    let val_series = || Series { label: "validation windows".into(), main: val.clone(), faint: vec![] };
    let head = tr.model.layout.cfg.head.name();
    let plot = LinePlot {
        title: "Meta-training loss".into(),
        x_label: "update".into(),
        y_label: "masked L1 loss (scaled parameters)".into(),
        series: std::iter::once(Series {
            label: format!("{head} head, training batches (mean of the last {SMOOTH} updates)"),
            main: tr.rows.iter().zip(smooth).map(|(r, m)| (r.step as f64, m)).collect(),
            faint: vec![],
        })
        .chain((!val.is_empty()).then(val_series))
        .collect(),
        target: None,
        marker: None,
    };
    write_png(png, &plot)?;
    if !val.is_empty() {
        let plot =
            LinePlot { title: format!("Validation masked L1 ({head} head)"), series: vec![val_series()], ..plot };
        write_png(&png.with_extension("val.png"), &plot)?;
    }
    Ok(())
}

/// `out[i]` = mean of `v[i + 1 - w ..= i]` (fewer at the start): the curve a reader can follow.
fn trailing_mean(v: &[f64], w: usize) -> Vec<f64> {
    let w = w.max(1);
    let mut sum = 0.0;
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            sum += x;
            if i >= w {
                sum -= v[i - w];
            }
            sum / (i + 1).min(w) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::trailing_mean;

    #[test]
    fn trailing_mean_averages_the_last_w_values() {
        let v = [4.0, 2.0, 6.0, 0.0, 10.0];
        // (4), (4+2)/2, (4+2+6)/3, (2+6+0)/3, (6+0+10)/3
        assert_eq!(trailing_mean(&v, 3), [4.0, 3.0, 4.0, 8.0 / 3.0, 16.0 / 3.0]);
        assert_eq!(trailing_mean(&v, 1), v);
        assert_eq!(trailing_mean(&v, 0), v, "a zero window is one value");
        assert!(trailing_mean(&[], 5).is_empty());
    }
}
