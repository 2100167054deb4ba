//! `--device cuda` of `nino train` and `nino nowcast`: the same commands on nino-cuda's kernels, with the
//! target network's parameters, Adam's state, NiNo's history and its nowcasts in GPU memory. Where no
//! usable GPU or driver is present, one line says so and the command fails.

use crate::io::data::{check_task_data, load_data};
use crate::io::weights::WeightSet;
use crate::run::runner::read_lpe;
use crate::training::engine::init_params;
use crate::training::metrics::{Evaluation, MetricsLog};
use crate::training::trainer::{Batch, HookAction, HookError, Model, StepHook, TrainConfig};
use anyhow::{Context, bail};
use nino_core::adam::AdamConfig;
use nino_core::nowcast::{self, FoldedGnn};
use nino_core::period::{Action, Timeline};
use nino_core::{Arch, NeuralGraph};
use nino_cuda::{CudaError, Device, Gpu, Precision};

/// Where `nino train` and `nino nowcast` compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// This machine's CPU cores.
    #[default]
    Cpu,
    /// CUDA GPU 0 (nino-cuda's kernels; needs an NVIDIA driver for CUDA 12.9 or newer).
    Cuda,
}

/// GPU 0 with nino's kernels, or a one-line error saying why there is none.
pub fn open() -> anyhow::Result<Gpu> {
    Gpu::new().map_err(|e| anyhow::anyhow!("--device cuda: {e}"))
}

/// The folded GNN of `weights` and the node features it reads (`lpe`, or computed for `arch`).
fn folded(weights: &WeightSet<f32>, arch: &Arch, lpe: Option<Vec<f32>>) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let cfg = weights.config;
    if weights.is_meta() || !cfg.gnn {
        bail!("--device cuda runs the folded NiNo GNN (e.g. nino_no_posw); these weights need --device cpu");
    }
    let b = weights.bind()?;
    let nowcast::ModelWeights::Gnn(g) = &b.model else { bail!("--device cuda needs GNN weights") };
    let mut buf = vec![0.0; nowcast::folded_len(&cfg)];
    nowcast::fold_gnn(g, &cfg, &mut buf)?;
    let lpe = match (cfg.has_node_proj(), lpe) {
        (false, _) => Vec::new(),
        (true, Some(l)) => l,
        (true, None) => crate::kernels::spectral::lpe(arch, cfg.lpe)?,
    };
    Ok((buf, lpe))
}

/// A GPU nowcaster for `arch` (weights folded once, then uploaded; f16 storage when `f16`).
pub fn nowcaster(
    gpu: &Gpu,
    weights: &WeightSet<f32>,
    arch: &Arch,
    lpe: Option<Vec<f32>>,
    f16: bool,
) -> anyhow::Result<nino_cuda::Nowcaster<Gpu>> {
    let (buf, lpe) = folded(weights, arch, lpe)?;
    let m = FoldedGnn::new(&weights.config, &buf)?;
    let precision = if f16 { Precision::F16 } else { Precision::F32 };
    Ok(nino_cuda::Nowcaster::new(gpu, &m, &NeuralGraph::new(arch), &lpe, precision)?)
}

/// `nino nowcast --device cuda`: one prediction on the GPU into `out`.
pub fn nowcast(
    weights: &WeightSet<f32>,
    arch: &Arch,
    lpe: Option<Vec<f32>>,
    f16: bool,
    history: &[f32],
    k: usize,
    out: &mut [f32],
) -> anyhow::Result<()> {
    let gpu = open()?;
    nowcaster(&gpu, weights, arch, lpe, f16)?.nowcast_host(history, k, out)?;
    Ok(())
}

/// The GPU trainer as the training loop's [`Model`]; keeps the last GPU error, which the loop's
/// `nino_core::Error` cannot carry.
struct GpuModel {
    trainer: nino_cuda::Trainer<Gpu>,
    error: Option<String>,
}

impl GpuModel {
    fn keep(&mut self, e: CudaError) -> nino_core::Error {
        match e {
            CudaError::Core(c) => c,
            other => {
                self.error = Some(other.to_string());
                nino_core::Error::InvalidArgument("the GPU failed")
            }
        }
    }
}

impl Model for GpuModel {
    fn train_step(&mut self, x: &[f32], y: &[u32]) -> Result<f32, nino_core::Error> {
        self.trainer.train_step(x, y).map_err(|e| self.keep(e))
    }

    fn evaluate(&mut self, x: &[f32], y: &[u32]) -> Result<Evaluation, nino_core::Error> {
        let r = self.trainer.evaluate(x, y).map_err(|e| self.keep(e))?;
        Ok(Evaluation { loss: r.loss, correct: r.correct, total: r.total })
    }
}

/// NiNo on the GPU: the reference timeline (record every period/ctx steps, nowcast at the period),
/// with the window's states and the nowcast in device memory.
struct GpuNino {
    timeline: Timeline<'static>,
    nowcaster: nino_cuda::Nowcaster<Gpu>,
    history: <Gpu as Device>::Buf<f32>,
    gpu: Gpu,
}

impl GpuNino {
    /// Copies the current parameters into context slot `slot`.
    fn record(&mut self, model: &GpuModel, slot: usize) -> Result<(), CudaError> {
        let p = self.nowcaster.num_params();
        self.gpu.copy(model.trainer.params_buf(), 0, &mut self.history, slot * p, p)
    }
}

impl StepHook<GpuModel> for GpuNino {
    fn before_step(&mut self, step: u64, _batch: Batch<'_>, model: &mut GpuModel) -> Result<HookAction, HookError> {
        let ctx = self.nowcaster.config().ctx;
        match self.timeline.next(step) {
            Action::Adam => Ok(HookAction::Step),
            Action::Record => {
                self.record(model, self.timeline.recorded() - 1)?;
                Ok(HookAction::Step)
            }
            Action::Nowcast { k, .. } => {
                self.record(model, ctx - 1)?;
                self.nowcaster.nowcast(&self.history, k, model.trainer.params_buf_mut())?;
                Ok(HookAction::Nowcast { rolled_back: false })
            }
        }
    }
}

/// `nino train --device cuda`, its flags resolved by `cmd::train` (which refuses the ones the GPU path
/// does not implement).
pub struct GpuTrain {
    /// Built-in task, or `None` for an `--arch` run.
    pub task: Option<nino_core::Task>,
    /// Arch spec.
    pub spec: String,
    /// Target accuracy.
    pub target: Option<f32>,
    /// Adam's learning rate.
    pub lr: f32,
    /// The dataset folder.
    pub data: std::path::PathBuf,
    /// Batch size.
    pub batch: usize,
    /// Seed of the weights and the batch order.
    pub seed: u64,
    /// Most steps.
    pub steps: u64,
    /// Steps between evaluations.
    pub eval_every: u64,
    /// Denser evaluations near the target.
    pub fine_eval: Option<crate::training::metrics::FineEval>,
    /// Metrics CSV.
    pub metrics: Option<std::path::PathBuf>,
    /// NiNo weights, LPE file, f16 storage, period and horizon rule, when nowcasting.
    pub nino: Option<GpuNinoSettings>,
    /// Draw progress bars.
    pub progress: bool,
}

/// The NiNo half of [`GpuTrain`].
pub struct GpuNinoSettings {
    /// Weights file.
    pub weights: std::path::PathBuf,
    /// Node features file (`--lpe`).
    pub lpe: Option<std::path::PathBuf>,
    /// Store the weights as f16.
    pub f16: bool,
    /// The nowcast period.
    pub period: nino_core::period::Period<'static>,
    /// The horizon rule.
    pub horizon: nino_core::period::Horizon,
}

/// Runs `nino train --device cuda`.
pub fn train(args: &GpuTrain) -> anyhow::Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let mut metrics = args.metrics.as_deref().map(MetricsLog::new).transpose()?;
    let gpu = open()?;
    let splits = load_data(args.task, &args.data)?;
    let arch = match args.task {
        Some(t) => {
            check_task_data(t, &splits, &args.data)?;
            t.arch()
        }
        None => Arch::parse(&args.spec, splits.train.shape, splits.classes)
            .map_err(|e| anyhow::anyhow!("bad --arch `{}`: {e}", args.spec))?,
    };
    let adam = AdamConfig::new(args.lr);
    let trainer = nino_cuda::Trainer::new(&gpu, &arch, &init_params(&arch, args.seed), adam, args.batch)?;
    let mut model = GpuModel { trainer, error: None };
    let mut hook = match &args.nino {
        Some(n) => {
            let path = &n.weights;
            let weights = WeightSet::load(path).with_context(|| format!("loading NiNo weights {}", path.display()))?;
            let lpe = n.lpe.as_deref().map(read_lpe).transpose()?;
            let nowcaster = nowcaster(&gpu, &weights, &arch, lpe, n.f16)?;
            let cfg = *nowcaster.config();
            let timeline = Timeline::new(n.period, cfg.ctx, args.steps as usize, cfg.seq_len)?.with_horizon(n.horizon);
            let history = gpu.alloc(cfg.ctx * arch.param_count())?;
            Some(GpuNino { timeline, nowcaster, history, gpu: gpu.clone() })
        }
        None => None,
    };
    eprintln!(
        "training {} ({} params) on {} ({} training images, batch {}, lr {}, seed {}){}",
        args.spec,
        arch.param_count(),
        gpu.status(),
        splits.train.len(),
        args.batch,
        args.lr,
        args.seed,
        if hook.is_some() {
            format!(
                ", nowcasting with {} on the GPU",
                args.nino.as_ref().map_or(String::new(), |n| n.weights.display().to_string())
            )
        } else {
            String::new()
        }
    );
    let cfg = TrainConfig {
        max_steps: args.steps,
        eval_every: args.eval_every,
        target: args.target,
        fine_eval: args.fine_eval,
        batch: args.batch,
        seed: args.seed,
        progress: args.progress,
    };
    let report = match hook.as_mut() {
        Some(h) => crate::training::trainer::train(&mut model, &splits.train, &splits.test, &cfg, h, metrics.as_mut()),
        None => crate::training::trainer::train(
            &mut model,
            &splits.train,
            &splits.test,
            &cfg,
            &mut crate::training::trainer::NoHook,
            metrics.as_mut(),
        ),
    };
    let report = match (report, model.error.take()) {
        (Err(_), Some(gpu_error)) => bail!("{gpu_error}"),
        (r, _) => r?,
    };
    println!(
        "device cuda: {} steps ({} nowcasts), final accuracy {:.2}%, best {:.2}%, steps to target {}, {:.1} s \
         (train {:.1} s, eval {:.1} s, nowcast {:.1} s)",
        report.steps_run,
        report.nowcasts,
        100.0 * report.final_accuracy(),
        100.0 * report.best_accuracy(),
        report.steps_to_target.map_or("not reached".to_string(), |s| s.to_string()),
        report.wall_seconds,
        report.train_seconds,
        report.eval_seconds,
        report.nowcast_seconds
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a GPU the error is one line and says why; with one, opening works.
    #[test]
    fn no_gpu_is_one_line() {
        match open() {
            Ok(g) => eprintln!("GPU present: {}", g.status()),
            Err(e) => {
                let s = format!("{e:#}");
                assert!(!s.contains('\n') && s.starts_with("--device cuda: "), "{s}");
            }
        }
    }
}
