//! Training-step and evaluation timings of the host engine beside the PyTorch figures of BASELINE.md.
//!
//! Run with `cargo bench -p nino-host --bench train_step`. Synthetic data (the cost does not depend on
//! the values); median of the timed runs after warm-up. Set `NINO_BENCH_RUNS` to change the run count.

use nino_core::{Arch, Task};
use nino_host::engine::{AdamConfig, Engine, init_params};
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

fn main() {
    let runs: usize = std::env::var("NINO_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let batch = 128;
    // PyTorch 2 threads on this machine, from BASELINE.md; None where it has no figure.
    let rows: [(Task, Option<f64>, Option<f64>); 2] = [(Task::Fm16, Some(16.8), None), (Task::Fm32, None, None)];
    println!("{:<34} {:>10} {:>12} {:>16}", "benchmark", "ours ms", "PyTorch ms", "PyTorch / ours");
    let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    for (task, torch_step, torch_eval) in rows {
        let arch = task.arch();
        let mut e = Engine::new(arch.clone(), init_params(&arch, 1000), AdamConfig::new(task.lr()), batch).unwrap();
        let (x, y) = data(&arch, batch);
        for _ in 0..5 {
            e.train_step(&x, &y).unwrap();
        }
        let step = median_ms(runs, || {
            e.train_step(&x, &y).unwrap();
        });
        let ratio = torch_step.map_or("n/a".to_string(), |t| format!("{:.2}", t / step));
        println!(
            "{:<34} {:>10.2} {:>12} {:>16}",
            format!("{} train step, batch 128", task.name()),
            step,
            fmt(torch_step),
            ratio
        );
        let (tx, ty) = data(&arch, 10_000);
        e.evaluate(&tx, &ty).unwrap();
        let eval = median_ms(runs.div_ceil(10).max(3), || {
            e.evaluate(&tx, &ty).unwrap();
        });
        let ratio = torch_eval.map_or("n/a".to_string(), |t: f64| format!("{:.2}", t / eval));
        println!(
            "{:<34} {:>10.2} {:>12} {:>16}",
            format!("{} evaluate 10,000 images", task.name()),
            eval,
            fmt(torch_eval),
            ratio
        );
    }
    println!("PyTorch figures: BASELINE.md (FM-16 Adam step 16.8 ms, 2 threads). It has no FM-32 step time");
    println!("(its FM-32 runs shared the cores) and no evaluation time: those are n/a, not invented.");
}
