//! One NiNo step (scaling, edge features, GNN forward, gather, unscaling; LPE cached) on FM-16 and FM-32,
//! median of N runs after warm-up, beside the PyTorch figure of `docs/results/pytorch-baseline.md` as a ratio.
//!
//! Run: `cargo bench -p nino-host --bench nino_step` (set `NINO_BENCH_RUNS` to change N). With
//! `NINO_TORCH_PYTHON` set (a Python with torch) it also scales the reference's figure by PyTorch's speed
//! measured in the same run, since the machine's speed drifts.

use nino_core::NeuralGraph;
use nino_core::Task;
use nino_core::nowcast;
use nino_host::io::weights::WeightSet;
use nino_host::nowcast::nowcaster::Nowcaster;
use nino_host::training::torch_baseline::TorchTimes;
use safetensors::SafeTensors;
use std::path::PathBuf;
use std::time::Instant;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(rel)
}

fn history(task: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(&format!("golden/{task}.safetensors"))).expect("golden fixture");
    let st = SafeTensors::deserialize(&bytes).expect("fixture parses");
    let t = st.tensor("history").expect("history tensor");
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// CPU seconds (user + system, all threads) this process has used, from /proc (Linux); 0 elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 (utime, stime) in clock ticks of 1/100 s; `after` starts at field 3.
    if f.len() > 13 { (f[11] + f[12]) / 100.0 } else { 0.0 }
}

/// (median, minimum, CPU time per run) in ms: other jobs share the cores, so the minimum and the CPU
/// time are the figures least inflated by them.
fn median_ms(mut step: impl FnMut(), runs: usize) -> (f64, f64, f64) {
    for _ in 0..5 {
        step();
    }
    let cpu0 = cpu_seconds();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            step();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (cpu_seconds() - cpu0) * 1e3 / runs as f64;
    t.sort_by(f64::total_cmp);
    (t[runs / 2], t[0], cpu)
}

/// PyTorch's FM-16 Adam step in docs/results/pytorch-baseline.md's Adam + NiNo run, where the NiNo step took 14.3-21.3 ms.
const BASELINE_TORCH_STEP_MS: f64 = 17.0;

fn main() {
    let runs: usize = std::env::var("NINO_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(51).max(1);
    let w = WeightSet::load(fixture("weights/nino_no_posw.safetensors")).expect("weights");
    // A profiling aid: `NINO_BENCH_PROFILE=N` only runs N FM-16 nowcasts of the Nowcaster, nothing else.
    if let Some(n) = std::env::var("NINO_BENCH_PROFILE").ok().and_then(|s| s.parse::<usize>().ok()) {
        let arch = Task::Fm16.arch();
        let (h, mut out) = (history("fm16"), vec![0.0; arch.param_count()]);
        let mut nc = Nowcaster::new(w, &arch, None, false).expect("nowcaster");
        (0..n).for_each(|_| nc.nowcast(&h, 40, &mut out).expect("nowcast"));
        return;
    }
    // PyTorch, 2 threads, same machine kind (docs/results/pytorch-baseline.md): FM-16 14.3-21.3 ms per NiNo step; FM-32 not measured.
    let baseline = [(Task::Fm16, Some((14.3, 21.3))), (Task::Fm32, None)];
    println!("one NiNo step (nino_no_posw, k = 40), median of {runs} after 5 warm-up runs");
    // The machine's speed drifts: PyTorch's FM-16 training step, timed now and in docs/results/pytorch-baseline.md's NiNo run
    // (17.0 ms), scales the reference's NiNo step to this machine's current speed.
    // PyTorch's two threads collapse when other jobs hold a core, so that scaling is only meaningful on idle cores.
    let before = nino_host::training::torch_baseline::torch_times(Task::Fm16, runs, false);
    let mut speed = None;
    for (task, pt) in baseline {
        let arch = task.arch();
        let h = history(task.name());
        let mut out = vec![0.0; arch.param_count()];
        let h = &h;
        // The unfused forward (the path before folding) with the same host kernels, as the in-run baseline.
        let lpe = nino_host::kernels::spectral::lpe(&arch, w.config.lpe).expect("lpe");
        let graph = NeuralGraph::new(&arch);
        let bound = w.bind().expect("bind");
        let mut scratch = vec![0.0; nowcast::scratch_len(&graph, &w.config)];
        let be = nino_host::kernels::backend::host_backend();
        let unfused = median_ms(
            || nowcast::nowcast(be, &bound, &graph, h, &lpe, 40, &mut scratch, &mut out).expect("nowcast"),
            runs,
        );
        let mut rows = vec![("f32 unfused (before folding)", unfused)];
        // The folded model on one thread (single-threaded GEMM, edge halves in turn): what the threads add.
        let mut one = Nowcaster::new(w.clone(), &arch, None, false)
            .expect("nowcaster")
            .with_kernels(Box::new(nino_host::kernels::gemm::HostGemm), nino_host::kernels::simd::fast_silu)
            .with_parallel(&nowcast::Sequential);
        rows.push(("f32 folded, one thread", median_ms(|| one.nowcast(h, 40, &mut out).expect("nowcast"), runs)));
        for f16 in [false, true] {
            let mut nc = Nowcaster::new(w.clone(), &arch, None, f16).expect("nowcaster");
            let r = median_ms(|| nc.nowcast(h, 40, &mut out).expect("nowcast"), runs);
            rows.push((if f16 { "f16 folded (Nowcaster)" } else { "f32 folded (Nowcaster)" }, r));
        }
        if speed.is_none() {
            let now =
                TorchTimes::mean(before, nino_host::training::torch_baseline::torch_times(Task::Fm16, runs, false));
            speed = Some(now.map(|t| t.step_ms / BASELINE_TORCH_STEP_MS));
        }
        let slow = speed.flatten();
        for (what, (ms, min, cpu)) in rows {
            let vs = format!("{:.2}x vs unfused (min {:.2}x)", unfused.0 / ms, unfused.1 / min);
            match pt {
                Some((lo, hi)) => println!(
                    "{:5} {what:28}: median {ms:7.3} ms (min {min:7.3}, CPU {cpu:7.3}) | {vs} | PyTorch/ours {lo}-{hi} ms: \
                     median {:.1}x-{:.1}x, min {:.1}x-{:.1}x",
                    task.name(),
                    lo / ms,
                    hi / ms,
                    lo / min,
                    hi / min
                ),
                None => println!(
                    "{:5} {what:28}: median {ms:7.3} ms (min {min:7.3}, CPU {cpu:7.3}) | {vs} | PyTorch/ours n/a",
                    task.name()
                ),
            }
            if let (Some((lo, hi)), Some(f)) = (pt, slow) {
                println!(
                    "{:5} {:28}  reference scaled to now (x{f:.2}): {:.1}-{:.1} ms, PyTorch/ours median {:.1}x-{:.1}x",
                    "",
                    "",
                    lo * f,
                    hi * f,
                    lo * f / ms,
                    hi * f / ms
                );
            }
        }
    }
}
