//! Times the NiNo step (FM-16, horizon 40, published `nino_no_posw`) and the training step (FM-16, batch
//! 128, Adam) on GPU 0, beside this machine's CPU path in the same run: what `scripts/gpu-check.sh`
//! prints. Exits with one line where there is no usable GPU. `NINO_FIXTURES` overrides the fixtures folder.

use anyhow::Context;
use nino_core::Task;
use nino_core::adam::AdamConfig;
use nino_cuda::Device;
use nino_host::io::tensor_file::f32_tensor_from_bytes;
use nino_host::io::weights::WeightSet;
use nino_host::nowcast::nowcaster::Nowcaster;
use nino_host::training::engine::Engine;
use std::path::PathBuf;
use std::time::Instant;

fn fixtures() -> PathBuf {
    std::env::var_os("NINO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
}

/// Seconds per call of `f`, after `warm` untimed calls, over `n` timed ones.
fn per_call(warm: usize, n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..warm {
        f()?;
    }
    let t = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / n as f64)
}

fn main() -> anyhow::Result<()> {
    let gpu = nino_host::cmd::gpu::open()?;
    println!("GPU: {}", gpu.status());
    let dir = fixtures();
    let weights = WeightSet::load(dir.join("weights/nino_no_posw.safetensors")).context("published weights")?;
    let path = dir.join("golden/fm16.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let (_, history) = f32_tensor_from_bytes(&bytes, "history", &path)?;
    let (_, lpe) = f32_tensor_from_bytes(&bytes, "lpe8", &path)?;
    let (_, x8) = f32_tensor_from_bytes(&bytes, "batch_x", &path)?;
    let arch = Task::Fm16.arch();
    let p = arch.param_count();

    let mut nc = nino_host::cmd::gpu::nowcaster(&gpu, &weights, &arch, Some(lpe.clone()), false)?;
    let hist = gpu.upload_new(&history)?;
    let mut params = gpu.alloc(p)?;
    // Each nowcast ends by reading its error flag, so it is timed to completion.
    let gpu_step = per_call(10, 200, || Ok(nc.nowcast(&hist, 40, &mut params)?))?;
    let mut cpu = Nowcaster::new(weights, &arch, Some(lpe), false)?;
    let mut out = vec![0.0f32; p];
    let cpu_step = per_call(2, 20, || Ok(cpu.nowcast(&history, 40, &mut out)?))?;
    println!(
        "NiNo step, FM-16 (E = 2057, N = 95), k = 40: GPU {:.3} ms, CPU {:.3} ms ({:.1}x)",
        gpu_step * 1e3,
        cpu_step * 1e3,
        cpu_step / gpu_step
    );

    // Batch 128: the fixture's 8 test images, 16 times over, with arbitrary labels.
    let x: Vec<f32> = x8.iter().cycle().take(128 * 784).copied().collect();
    let y: Vec<u32> = (0..128u32).map(|i| (i * 7) % 10).collect();
    let init = history[4 * p..].to_vec();
    let mut tr = nino_cuda::Trainer::new(&gpu, &arch, &init, AdamConfig::new(0.006), 128)?;
    // Each step returns its loss, so it is timed to completion.
    let gpu_train = per_call(10, 200, || Ok(tr.train_step(&x, &y).map(|_| ())?))?;
    let mut engine = Engine::new(arch, init, AdamConfig::new(0.006), 128)?;
    let cpu_train = per_call(2, 20, || Ok(engine.train_step(&x, &y).map(|_| ())?))?;
    println!(
        "training step, FM-16, batch 128, Adam: GPU {:.3} ms, CPU {:.3} ms ({:.1}x)",
        gpu_train * 1e3,
        cpu_train * 1e3,
        cpu_train / gpu_train
    );
    Ok(())
}
