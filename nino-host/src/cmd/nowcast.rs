//! `nino nowcast`: one NiNo prediction for a parameter history recorded elsewhere.

use crate::io::tensor_file::{f32_tensors_to_bytes, read_f32_tensor};
use crate::io::weights::WeightSet;
use crate::nowcast::nowcaster::Nowcaster;
use anyhow::{Context, bail};
use nino_core::{Arch, InputShape};
use std::collections::HashMap;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
The history file holds one f32 tensor `history` of shape [ctx, P]: ctx (5 for the published models)
flat parameter vectors in PyTorch `named_parameters()` order, OLDEST FIRST, recorded every period/ctx
steps (200 for period 1000). The output holds one f32 tensor `params` [P]: the predicted parameters k
context spacings (k*200 steps) after the newest state. K is 1..=40; the reference schedule starts at 40
and ends at 1.

GNN checkpoints (nino_no_posw) need Laplacian positional features; they are computed for the arch
unless --lpe FILE gives a tensor `lpe` [N, 8]. WNN+ checkpoints (nino_mlp*) need none.

Example:
  nino nowcast --weights fixtures/weights/nino_no_posw.safetensors --arch conv:16,32,32 \\
      --history states.safetensors --k 40 --out predicted.safetensors";

/// Arguments of `nino nowcast`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct NowcastArgs {
    /// NiNo weights (safetensors with `model_args` in its metadata or in a .json beside it).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Target network: `conv:W1,W2,...` (3x3 convs, GAP, linear) or `mlp:W1,...`.
    #[arg(long, value_name = "SPEC")]
    pub arch: String,
    /// Input image shape of the target network, `CxHxW`.
    #[arg(long, value_name = "CxHxW", default_value = "1x28x28")]
    pub input: String,
    /// Classes of the target network.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// History file: tensor `history` [ctx, P], oldest state first.
    #[arg(long, value_name = "FILE")]
    pub history: PathBuf,
    /// Horizon in context spacings, 1..=40.
    #[arg(long)]
    pub k: usize,
    /// Output file (written atomically): tensor `params` [P].
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Node features: tensor `lpe` [N, 8]; computed for the arch when absent.
    #[arg(long, value_name = "FILE")]
    pub lpe: Option<PathBuf>,
    /// Store the weights as f16 (math stays f32): half the memory, ~5e-4 relative change in the update.
    #[arg(long)]
    pub f16: bool,
    /// Where to compute: `cpu`, or `cuda` (GPU 0 through nino-cuda, the folded GNN only; fails in one line
    /// where there is no usable GPU).
    #[arg(long, value_enum, default_value_t = super::gpu::DeviceArg::Cpu)]
    pub device: super::gpu::DeviceArg,
}

pub(crate) fn parse_input(s: &str) -> anyhow::Result<InputShape> {
    let d: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--input `{s}`: expected CxHxW, e.g. 1x28x28"))?;
    match d[..] {
        [channels, height, width] => Ok(InputShape { channels, height, width }),
        _ => bail!("--input `{s}`: expected CxHxW, e.g. 1x28x28"),
    }
}

/// Runs `nino nowcast`.
pub fn run(args: &NowcastArgs) -> anyhow::Result<()> {
    let arch = Arch::parse(&args.arch, parse_input(&args.input)?, args.classes)
        .map_err(|e| anyhow::anyhow!("--arch `{}`: {e}", args.arch))?;
    let p = arch.param_count();
    let weights = WeightSet::load(&args.weights)?;
    let cfg = weights.config;
    let (shape, history) = read_f32_tensor(&args.history, "history")?;
    if shape != [cfg.ctx, p] {
        bail!(
            "{}: `history` has shape {shape:?}, expected [{}, {p}] ({} states of the {} parameters of {})",
            args.history.display(),
            cfg.ctx,
            cfg.ctx,
            p,
            args.arch
        );
    }
    if args.k == 0 || args.k > cfg.seq_len {
        bail!("--k {} is outside 1..={}", args.k, cfg.seq_len);
    }
    let lpe = match &args.lpe {
        Some(f) => {
            let (shape, v) = read_f32_tensor(f, "lpe")?;
            let n = nino_core::NeuralGraph::new(&arch).num_nodes();
            if shape != [n, cfg.lpe] {
                bail!("{}: `lpe` has shape {shape:?}, expected [{n}, {}]", f.display(), cfg.lpe);
            }
            Some(v)
        }
        None => None,
    };
    let mut out = vec![0.0f32; p];
    match args.device {
        super::gpu::DeviceArg::Cpu => {
            Nowcaster::new(weights, &arch, lpe, args.f16)?.nowcast(&history, args.k, &mut out)?
        }
        super::gpu::DeviceArg::Cuda => super::gpu::nowcast(&weights, &arch, lpe, args.f16, &history, args.k, &mut out)?,
    }
    let meta = HashMap::from([
        ("arch".to_string(), args.arch.clone()),
        ("k".to_string(), args.k.to_string()),
        ("weights".to_string(), args.weights.display().to_string()),
    ]);
    let file = f32_tensors_to_bytes(&[("params", vec![p], &out)], Some(meta))?;
    crate::io::atomic::write_atomic(&args.out, &file)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("nowcast k={} of {} parameters written to {}", args.k, p, args.out.display());
    Ok(())
}
