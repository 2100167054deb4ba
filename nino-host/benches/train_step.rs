//! Training-step and evaluation timings of the host engine beside the PyTorch figures of docs/results/pytorch-baseline.md.
//!
//! Run with `cargo bench -p nino-host --bench train_step`; with `NINO_TORCH_PYTHON=python-with-torch` it
//! also times PyTorch on the same shapes in the same run (`scripts/torch_baseline.py`). Synthetic data (the cost does not depend on
//! the values); median of the timed runs after warm-up. Set `NINO_BENCH_RUNS` to change the run count.

use nino_core::{Arch, Task};
use nino_host::training::engine::{AdamConfig, Engine, init_params};
use nino_host::training::torch_baseline::{self as baseline, TorchTimes};
use std::time::Instant;

/// Deterministic pseudo-random inputs in roughly the normalised Fashion-MNIST range, and labels.
fn data(arch: &Arch, n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let x = (0..n * arch.input.len()).map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 * 3.2 - 0.42).collect();
    let y = (0..n).map(|_| (next() % arch.classes as u64) as u32).collect();
    (x, y)
}

/// CPU time (user + system, all threads) this process has used, in ms; 0 where /proc is unavailable.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3, utime 14 and stime 15 (1-based).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    // /proc reports clock ticks of 1/100 s on Linux.
    if f.len() > 13 { (f[11] + f[12]) * 10.0 } else { 0.0 }
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// GFLOP/s of the host GEMM on the per-chunk shapes of the FM-16 step (4 images = 676 output pixels).
fn gemm_rates(runs: usize) {
    use nino_core::ops::gemm::{Gemm, MatRef};
    use nino_host::kernels::gemm::HostGemm;
    let shapes: [(&str, usize, usize, usize, bool, bool); 4] = [
        ("conv3 forward 676x288x32", 676, 288, 32, false, false),
        ("conv3 weight grad 288x676x32 (A^T)", 288, 676, 32, true, false),
        ("conv3 input grad 676x32x288 (B^T)", 676, 32, 288, false, true),
        ("conv2 forward 676x144x32", 676, 144, 32, false, false),
    ];
    for (what, m, k, n, ta, tb) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; m * n];
        let av = if ta { MatRef::transposed(&a, k, m) } else { MatRef::row_major(&a, m, k) };
        let bv = if tb { MatRef::transposed(&b, n, k) } else { MatRef::row_major(&b, k, n) };
        let ms = median_ms(runs * 4, || HostGemm.gemm(av, bv, &mut c, n, 0.0).unwrap());
        println!("{what:<40} {:>8.1} us {:>8.1} GFLOP/s (one thread)", ms * 1e3, 2.0 * (m * k * n) as f64 / ms / 1e6);
    }
}

fn main() {
    let runs: usize = std::env::var("NINO_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let skip_eval = std::env::var_os("NINO_BENCH_SKIP_EVAL").is_some();
    let batch = 128;
    gemm_rates(runs);
    // PyTorch 2 threads on this machine, from docs/results/pytorch-baseline.md; None where it has no figure.
    let rows: [(Task, Option<f64>); 2] = [(Task::Fm16, Some(16.8)), (Task::Fm32, None)];
    let same_run = baseline::enabled();
    println!(
        "{:<34} {:>10} {:>14} {:>10} {:>14} {:>10}",
        "benchmark", "ours ms", "baseline", "ratio", "PyTorch now", "ratio"
    );
    let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    let ratio = |t: Option<f64>, ours: f64| t.map_or("n/a".to_string(), |t| format!("{:.2}", t / ours));
    for (task, torch_step) in rows {
        let arch = task.arch();
        let mut e = Engine::new(arch.clone(), init_params(&arch, 1000), AdamConfig::new(task.lr()), batch).unwrap();
        let (x, y) = data(&arch, batch);
        for _ in 0..5 {
            e.train_step(&x, &y).unwrap();
        }
        // The machine's speed drifts (shared host): PyTorch runs right before and right after ours, and
        // the same-run figure is the mean of the two medians.
        let before = baseline::torch_times(task, runs, !skip_eval);
        let cpu0 = cpu_ms();
        let step = median_ms(runs, || {
            e.train_step(&x, &y).unwrap();
        });
        let cpu = (cpu_ms() - cpu0) / runs as f64;
        let mut eval = None;
        if !skip_eval {
            let (tx, ty) = data(&arch, 10_000);
            e.evaluate(&tx, &ty).unwrap();
            eval = Some(median_ms(runs.div_ceil(10).max(3), || {
                e.evaluate(&tx, &ty).unwrap();
            }));
        }
        let now = TorchTimes::mean(before, baseline::torch_times(task, runs, !skip_eval));
        let (now_step, now_eval) = (now.map(|t| t.step_ms), now.and_then(|t| t.eval_ms));
        println!(
            "{:<34} {:>10.2} {:>14} {:>10} {:>14} {:>10}",
            format!("{} train step, batch 128", task.name()),
            step,
            fmt(torch_step),
            ratio(torch_step, step),
            fmt(now_step),
            ratio(now_step, step)
        );
        println!("{:<34} {:>10.2}   (mean CPU ms per step, all threads; on idle cores wall is about half)", "", cpu);
        if let Some(eval) = eval {
            println!(
                "{:<34} {:>10.2} {:>14} {:>10} {:>14} {:>10}",
                format!("{} evaluate 10,000 images", task.name()),
                eval,
                "n/a",
                "n/a",
                fmt(now_eval),
                ratio(now_eval, eval)
            );
        }
    }
    println!(
        "docs/results/pytorch-baseline.md: FM-16 Adam step 16.8 ms (PyTorch, 2 threads, quiet machine); it has no FM-32 step time"
    );
    println!("and no evaluation time (n/a, not invented). Ratios are PyTorch / ours: above 1 means we are faster.");
    if same_run {
        println!("PyTorch now: scripts/torch_baseline.py run by $NINO_TORCH_PYTHON before and after ours (mean of the");
        println!("two medians), so both see the same machine load; n/a if that Python could not run it.");
    } else {
        println!(
            "Set NINO_TORCH_PYTHON to a Python with torch for a same-run PyTorch column (the machine's speed drifts)."
        );
    }
}
