//! Meta-training throughput: graphs per second of `MetaTrainer::update` for each head (MLP, GRU, LSTM) on
//! FM-16 and FM-32 graphs, on every core, beside the FLOPs of one graph (forward and backward) and the
//! cores' f32 peak. The baseline in the same run is the same update with the core's portable elementwise
//! kernels (`meta_kernels::force_portable`), and the last column the same update at `--precision bf16`;
//! comparing with an older build is `scripts/bench-meta-train.sh`.
//!
//! Run: `cargo bench -p nino-host --bench meta_train` (`NINO_BENCH_UPDATES` updates per row, default 6,
//! after one warm-up update). The trajectories are synthetic (a random walk from the initial weights): the
//! cost does not depend on the values.

use nino_core::Task;
use nino_core::nowcast::{Config, Head};
use nino_host::io::model_file::MetaModel;
use nino_host::kernels::meta as meta_kernels;
use nino_host::meta::train::{MetaData, MetaTrainConfig, MetaTrainer, Precision, random_walk};
use std::time::Instant;

/// The cores' f32 peak in GFLOP/s, assuming two FMA units per core at the clock /proc/cpuinfo reports.
fn peak_gflops() -> (f64, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    #[cfg(target_arch = "x86_64")]
    let (lanes, isa) = if std::arch::is_x86_feature_detected!("avx512f") {
        (16.0, "AVX-512")
    } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        (8.0, "AVX2+FMA")
    } else {
        (4.0, "SSE")
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (lanes, isa) = (4.0, "128-bit");
    // Two FMA pipes, each `lanes` floats, two FLOPs per FMA.
    let peak = cores * mhz / 1e3 * lanes * 2.0 * 2.0;
    (peak, format!("{cores} cores x {mhz:.0} MHz x {isa} ({lanes} lanes) x 2 FMA units x 2"))
}

fn main() {
    let updates: u64 = std::env::var("NINO_BENCH_UPDATES").ok().and_then(|s| s.parse().ok()).unwrap_or(6).max(1);
    let (peak, how) = peak_gflops();
    println!("meta-training throughput, {updates} updates of 16 graphs per row after one warm-up update");
    println!("f32 peak of this machine: {peak:.0} GFLOP/s ({how})");
    for task in [Task::Fm16, Task::Fm32] {
        let arch = task.arch();
        let spec = task.spec();
        for head in [Head::Mlp, Head::Gru, Head::Lstm] {
            let cfg = Config { wte_pos_enc: false, head, ..Config::default() };
            // 301 states 20 steps apart (6,000 steps): enough for the reference's 200-step windows.
            let trajs = (0..4).map(|s| random_walk(&arch, spec, 301, s)).collect();
            let data = MetaData::from_trajectories(trajs, 20, &cfg).expect("synthetic data");
            let model = MetaModel::init(&cfg, 0).expect("model");
            let flops = data.graph_flops(&model.layout, 0).expect("flop count") as f64;
            let mut row = Vec::new();
            for (portable, precision) in [(true, Precision::F32), (false, Precision::F32), (false, Precision::Bf16)] {
                meta_kernels::force_portable(portable);
                let mc = MetaTrainConfig { steps: updates + 1, precision, ..MetaTrainConfig::default() };
                let mut tr = MetaTrainer::new(model.clone(), mc);
                let t0 = Instant::now();
                tr.update(&data, 0.0, t0).expect("warm-up update");
                let t = Instant::now();
                for _ in 0..updates {
                    tr.update(&data, 0.0, t).expect("update");
                }
                let gps = (updates * 16) as f64 / t.elapsed().as_secs_f64();
                row.push(gps);
            }
            meta_kernels::force_portable(false);
            let (base, fast, bf16) = (row[0], row[1], row[2]);
            println!(
                "{:5} {:4} head: {:6.2} graphs/s ({:.2}x the portable kernels' {:.2}) | {:.2} GFLOP per graph | \
                 {:.0} GFLOP/s, {:.0}% of peak | --precision bf16: {:.2} graphs/s ({:.2}x)",
                task.name(),
                head.name(),
                fast,
                fast / base,
                base,
                flops / 1e9,
                fast * flops / 1e9,
                100.0 * fast * flops / 1e9 / peak,
                bf16,
                bf16 / fast
            );
        }
    }
}
