//! One NiNo step (scaling, edge features, GNN forward, gather, unscaling; LPE cached) on FM-16 and FM-32,
//! median of N runs after warm-up, beside the PyTorch figure of `BASELINE.md` as a ratio.
//!
//! Run: `cargo bench -p nino-host --bench nino_step` (set `NINO_BENCH_RUNS` to change N).

use nino_core::Task;
use nino_host::gemm::HostGemm;
use nino_host::nowcaster::Nowcaster;
use nino_host::weights::WeightSet;
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
fn median_ms(nc: &mut Nowcaster, h: &[f32], out: &mut [f32], runs: usize) -> (f64, f64, f64) {
    for _ in 0..5 {
        nc.nowcast(h, 40, out).expect("nowcast");
    }
    let cpu0 = cpu_seconds();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            nc.nowcast(h, 40, out).expect("nowcast");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (cpu_seconds() - cpu0) * 1e3 / runs as f64;
    t.sort_by(f64::total_cmp);
    (t[runs / 2], t[0], cpu)
}

fn main() {
    let runs: usize = std::env::var("NINO_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(51).max(1);
    let w = WeightSet::load(fixture("weights/nino_no_posw.safetensors")).expect("weights");
    // PyTorch, 2 threads, same machine kind (BASELINE.md): FM-16 14.3-21.3 ms per NiNo step; FM-32 not measured.
    let baseline = [(Task::Fm16, Some((14.3, 21.3))), (Task::Fm32, None)];
    println!("one NiNo step (nino_no_posw, k = 40), median of {runs} after 5 warm-up runs");
    for (task, pt) in baseline {
        let arch = task.arch();
        let h = history(task.name());
        let mut out = vec![0.0; arch.param_count()];
        for (f16, plain) in [(false, true), (false, false), (true, false)] {
            let mut nc = Nowcaster::new(w.clone(), &arch, None, f16).expect("nowcaster");
            if plain {
                nc = nc.with_kernels(Box::new(HostGemm), nino_core::nowcast::linear::silu_in_place);
            }
            let (ms, min, cpu) = median_ms(&mut nc, &h, &mut out, runs);
            let storage = match (f16, plain) {
                (_, true) => "f32, 1-thread gemm + libm SiLU",
                (false, false) => "f32",
                (true, false) => "f16",
            };
            match pt {
                Some((lo, hi)) => println!(
                    "{:5} {storage:31}: median {ms:7.3} ms (min {min:7.3}, CPU {cpu:7.3}) | PyTorch {lo}-{hi} ms | \
                     speed-up median {:.1}x-{:.1}x, min {:.1}x-{:.1}x",
                    task.name(),
                    lo / ms,
                    hi / ms,
                    lo / min,
                    hi / min
                ),
                None => println!(
                    "{:5} {storage:31}: median {ms:7.3} ms (min {min:7.3}, CPU {cpu:7.3}) | PyTorch n/a",
                    task.name()
                ),
            }
        }
    }
}
