//! One NiNo step (scaling, edge features, GNN forward, gather, unscaling; LPE cached) on FM-16 and FM-32,
//! median of N runs after warm-up, beside the PyTorch figure of `BASELINE.md` as a ratio.
//!
//! Run: `cargo bench -p nino-host --bench nino_step` (set `NINO_BENCH_RUNS` to change N).

use nino_core::Task;
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

fn median_ms(nc: &mut Nowcaster, h: &[f32], out: &mut [f32], runs: usize) -> f64 {
    for _ in 0..5 {
        nc.nowcast(h, 40, out).expect("nowcast");
    }
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            nc.nowcast(h, 40, out).expect("nowcast");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
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
        for f16 in [false, true] {
            let mut nc = Nowcaster::new(w.clone(), &arch, None, f16).expect("nowcaster");
            let ms = median_ms(&mut nc, &h, &mut out, runs);
            let storage = if f16 { "f16" } else { "f32" };
            match pt {
                Some((lo, hi)) => println!(
                    "{:5} {storage} weights: {ms:7.3} ms | PyTorch {lo}-{hi} ms | speed-up {:.1}x-{:.1}x",
                    task.name(),
                    lo / ms,
                    hi / ms
                ),
                None => println!("{:5} {storage} weights: {ms:7.3} ms | PyTorch n/a", task.name()),
            }
        }
    }
}
