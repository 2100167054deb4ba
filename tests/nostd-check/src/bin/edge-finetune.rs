//! An embedded fine-tuning loop: nino-core in a `no_std`, `no_main` binary with no allocator, training the
//! `debug` network (conv 4,6,6; 662 parameters) on the bundled Fashion-MNIST subset with Adam plus NiNo
//! nowcasts and rollback, every buffer a `static` sized by the core's memory plan.
//!
//! The NiNo weights are the published `nino_no_posw`, stored as f16 (1.1 MB instead of 2.2 MB) and widened
//! to f32 one matrix at a time; the node features are the build-time spectral table. The same run is made
//! with Adam alone for comparison. Exit status 0 when the NiNo run ends at or above [`TARGET`] test
//! accuracy; see `Fail` for the others.
#![no_std]
#![no_main]
// `&mut *(&raw mut BUF)` is how edition 2024 borrows a `static mut` (a plain `&mut BUF` is denied by
// `static_mut_refs`); clippy's `deref_addrof` would suggest exactly that denied form.
#![allow(clippy::deref_addrof)]

#[path = "../rt.rs"]
mod rt;

use half::f16;
use nino_core::adam::{AdamConfig, adam_step};
use nino_core::nowcast::{self, Backend, Config, NinoWeights};
use nino_core::ops::Portable;
use nino_core::period::{Action, Period, Timeline};
use nino_core::plan::{NowcastPlan, TrainPlan, WeightStorage};
use nino_core::rng::SplitMix64;
use nino_core::rollback::{Rule, Snapshot};
use nino_core::{NeuralGraph, Task, init, net, spectral};
use rt::println;

mod weights_index {
    include!(concat!(env!("OUT_DIR"), "/nino_weights_index.rs"));
}

/// Storage aligned for a reinterpretation of its bytes as wider values.
#[repr(C, align(4))]
struct Aligned<B: ?Sized>(B);

static WEIGHT_BYTES: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/nino_weights.f16")));
static MODEL_ARGS: &str = include_str!("../../../../fixtures/weights/nino_no_posw.json");
static TRAIN_IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/train-images-idx3-ubyte.bin"));
static TRAIN_LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/train-labels-idx1-ubyte.bin"));
static TEST_IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/t10k-images-idx3-ubyte.bin"));
static TEST_LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/t10k-labels-idx1-ubyte.bin"));

const PIXELS: usize = 784;
const BATCH: usize = 64;
const STEPS: u64 = 600;
const EVAL_EVERY: u64 = 50;
/// NiNo every 100 steps: context states every 20.
const PERIOD: usize = 100;
const SEED: u64 = 1000;
const LR: f32 = 0.006;
/// The `debug` task's target: the stated accuracy of this example, on the 1,000 bundled test images.
const TARGET: f32 = 0.70;
/// Examples of the fixed batch whose loss judges a nowcast (the first training images): one batch, so the
/// training buffers serve it.
const PROBE: usize = BATCH;

// Capacities of the static buffers, the figures `nino plan --task debug --batch 64` prints; `run` checks
// the core's plan against them before touching anything.
const P: usize = 662;
const TRAIN_ACTS: usize = 174_080;
const TRAIN_SCRATCH: usize = 715_756;
const CTX: usize = 5;
const NODES: usize = 31;
const LPE: usize = 8;
const NOWCAST_SCRATCH: usize = 148_508;
const TRAIN_N: usize = 6_000;

static mut PARAMS: [f32; P] = [0.0; P];
static mut GRAD: [f32; P] = [0.0; P];
static mut MOM1: [f32; P] = [0.0; P];
static mut MOM2: [f32; P] = [0.0; P];
static mut X: [f32; BATCH * PIXELS] = [0.0; BATCH * PIXELS];
static mut Y: [u32; BATCH] = [0; BATCH];
static mut X_PROBE: [f32; PROBE * PIXELS] = [0.0; PROBE * PIXELS];
static mut Y_PROBE: [u32; PROBE] = [0; PROBE];
static mut ACTS: [f32; TRAIN_ACTS] = [0.0; TRAIN_ACTS];
static mut SCRATCH: [f32; TRAIN_SCRATCH] = [0.0; TRAIN_SCRATCH];
static mut HISTORY: [f32; CTX * P] = [0.0; CTX * P];
static mut PREDICTED: [f32; P] = [0.0; P];
static mut SNAPSHOT: [f32; P] = [0.0; P];
static mut NODE_FEATURES: [f32; NODES * LPE] = [0.0; NODES * LPE];
static mut NOWCAST_WORK: [f32; NOWCAST_SCRATCH] = [0.0; NOWCAST_SCRATCH];
static mut ORDER: [u16; TRAIN_N] = [0; TRAIN_N];

/// Why the example failed; the value is the process exit status.
#[derive(Clone, Copy, Debug)]
#[repr(i32)]
enum Fail {
    Plan = 10,
    Data = 11,
    Weights = 20,
    Spectral = 21,
    Training = 30,
    Nowcast = 31,
    NoNowcast = 32,
    BelowTarget = 40,
}

/// The mutable state of one run, borrowed from the statics.
struct Buffers {
    params: &'static mut [f32],
    grad: &'static mut [f32],
    m: &'static mut [f32],
    v: &'static mut [f32],
    x: &'static mut [f32],
    y: &'static mut [u32],
    x_probe: &'static mut [f32],
    y_probe: &'static mut [u32],
    acts: &'static mut [f32],
    scratch: &'static mut [f32],
    history: &'static mut [f32],
    predicted: &'static mut [f32],
    snapshot: &'static mut [f32],
    lpe: &'static mut [f32],
    nowcast: &'static mut [f32],
    order: &'static mut [u16],
}

/// Takes the statics; called once, from `main`.
fn buffers() -> Buffers {
    // SAFETY: single-threaded, and this is the only place that takes references to the statics.
    unsafe {
        Buffers {
            params: &mut *(&raw mut PARAMS),
            grad: &mut *(&raw mut GRAD),
            m: &mut *(&raw mut MOM1),
            v: &mut *(&raw mut MOM2),
            x: &mut *(&raw mut X),
            y: &mut *(&raw mut Y),
            x_probe: &mut *(&raw mut X_PROBE),
            y_probe: &mut *(&raw mut Y_PROBE),
            acts: &mut *(&raw mut ACTS),
            scratch: &mut *(&raw mut SCRATCH),
            history: &mut *(&raw mut HISTORY),
            predicted: &mut *(&raw mut PREDICTED),
            snapshot: &mut *(&raw mut SNAPSHOT),
            lpe: &mut *(&raw mut NODE_FEATURES),
            nowcast: &mut *(&raw mut NOWCAST_WORK),
            order: &mut *(&raw mut ORDER),
        }
    }
}

/// The weight blob as f16 values.
fn weight_values() -> &'static [f16] {
    let bytes = &WEIGHT_BYTES.0;
    // SAFETY: `f16` is a `u16` in memory, the bytes are 4-aligned (`Aligned`), little-endian f16 written by
    // build.rs for this little-endian host, and the length is rounded down to whole values.
    unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<f16>(), bytes.len() / 2) }
}

/// Binds the published GNN over the f16 blob, by the index build.rs wrote.
fn nino_weights() -> Result<NinoWeights<'static, f16>, Fail> {
    let cfg = Config::from_json(MODEL_ARGS).map_err(|_| Fail::Weights)?;
    let all = weight_values();
    if all.len() != weights_index::VALUES {
        return Err(Fail::Weights);
    }
    NinoWeights::bind(cfg, |name, shape| {
        let (_, dims, offset) = weights_index::TENSORS.iter().find(|(n, _, _)| *n == name)?;
        let len: usize = dims.iter().product();
        (*dims == shape).then(|| all.get(*offset..offset + len)).flatten()
    })
    .map_err(|_| Fail::Weights)
}

/// Normalises pixels as the reference does (`ToTensor` then `Normalize(0.1307, 0.3081)`).
fn pixel(p: u8) -> f32 {
    (p as f32 / 255.0 - 0.1307) / 0.3081
}

/// Copies examples `idx` of a split into `x`, `y`.
fn gather(images: &[u8], labels: &[u8], idx: impl Iterator<Item = usize>, x: &mut [f32], y: &mut [u32]) {
    for ((i, xr), yr) in idx.zip(x.chunks_exact_mut(PIXELS)).zip(y.iter_mut()) {
        xr.iter_mut().zip(&images[i * PIXELS..(i + 1) * PIXELS]).for_each(|(d, &p)| *d = pixel(p));
        *yr = labels[i] as u32;
    }
}

/// Test accuracy over the bundled test split, `BATCH` images at a time.
fn test_accuracy(b: &mut Buffers) -> Result<f32, Fail> {
    let arch = Task::Debug.arch();
    let n = TEST_LABELS.len();
    let mut correct = 0;
    for start in (0..n).step_by(BATCH) {
        let m = BATCH.min(n - start);
        gather(TEST_IMAGES, TEST_LABELS, start..start + m, b.x, b.y);
        let (x, y) = (&b.x[..m * PIXELS], &b.y[..m]);
        let (_, c) = net::evaluate(&arch, b.params, x, y, b.acts, b.scratch, &Portable).map_err(|_| Fail::Training)?;
        correct += c;
    }
    Ok(correct as f32 / n as f32)
}

/// What a run reports.
#[derive(Clone, Copy)]
struct Outcome {
    final_accuracy: f32,
    steps_to_target: Option<u64>,
    nowcasts: usize,
    rollbacks: usize,
}

/// One training run of `STEPS` steps from the same initial parameters, with NiNo when `nino` is given.
fn train(b: &mut Buffers, nino: Option<&NinoWeights<'_, f16>>) -> Result<Outcome, Fail> {
    let arch = Task::Debug.arch();
    let graph = NeuralGraph::new(&arch);
    init::init_params(&arch, SEED, b.params).map_err(|_| Fail::Training)?;
    b.m.fill(0.0);
    b.v.fill(0.0);
    let adam = AdamConfig::new(LR);
    let mut t = 0u64;
    let mut timeline = Timeline::new(Period::Static(PERIOD), CTX, STEPS as usize, 40).map_err(|_| Fail::Nowcast)?;
    let (mut recorded, mut nowcasts, mut rollbacks) = (0usize, 0usize, 0usize);
    let (mut loss_sum, mut loss_n) = (0.0f32, 0u32);
    let mut out = Outcome { final_accuracy: 0.0, steps_to_target: None, nowcasts: 0, rollbacks: 0 };
    let n = TRAIN_LABELS.len();
    let (mut epoch, mut cursor) = (0u64, n);
    for step in 1..=STEPS {
        let action = if nino.is_some() { timeline.next(step) } else { Action::Adam };
        if matches!(action, Action::Record | Action::Nowcast { .. }) {
            let row = recorded.min(CTX - 1);
            b.history[row * P..(row + 1) * P].copy_from_slice(b.params);
            recorded += 1;
        }
        if let (Action::Nowcast { k, .. }, Some(w)) = (action, nino) {
            let baseline = if loss_n > 0 { loss_sum / loss_n as f32 } else { f32::NAN };
            nowcast::nowcast(Backend::new(&Portable), w, &graph, b.history, b.lpe, k, b.nowcast, b.predicted)
                .map_err(|_| Fail::Nowcast)?;
            let mut snap = Snapshot::new(b.snapshot);
            snap.save(b.params).map_err(|_| Fail::Nowcast)?;
            b.params.copy_from_slice(b.predicted);
            let (probe_loss, _) = net::evaluate(&arch, b.params, b.x_probe, b.y_probe, b.acts, b.scratch, &Portable)
                .map_err(|_| Fail::Training)?;
            let verdict = Rule::default().judge(baseline, probe_loss / PROBE as f32, b.params);
            if verdict.rolls_back() {
                snap.restore(b.params).map_err(|_| Fail::Nowcast)?;
                rollbacks += 1;
            }
            nowcasts += 1;
            recorded = 0;
        } else {
            if matches!(action, Action::Record) {
                (loss_sum, loss_n) = (0.0, 0);
            }
            if cursor + BATCH > n {
                shuffle(b.order, SEED.wrapping_add(epoch));
                (epoch, cursor) = (epoch + 1, 0);
            }
            let idx = b.order[cursor..cursor + BATCH].iter().map(|&i| i as usize);
            gather(TRAIN_IMAGES, TRAIN_LABELS, idx, b.x, b.y);
            cursor += BATCH;
            let loss = net::loss_and_grad(&arch, b.params, b.x, b.y, b.acts, b.scratch, b.grad, &Portable)
                .map_err(|_| Fail::Training)?;
            if !loss.is_finite() {
                return Err(Fail::Training);
            }
            adam_step(&adam, b.params, b.grad, b.m, b.v, &mut t).map_err(|_| Fail::Training)?;
            (loss_sum, loss_n) = (loss_sum + loss, loss_n + 1);
        }
        if step % EVAL_EVERY == 0 {
            let acc = test_accuracy(b)?;
            if acc >= TARGET && out.steps_to_target.is_none() {
                out.steps_to_target = Some(step);
            }
            out.final_accuracy = acc;
            println!("  step {step:>4}: test accuracy {:5.1}%", 100.0 * acc);
        }
    }
    out.nowcasts = nowcasts;
    out.rollbacks = rollbacks;
    Ok(out)
}

/// Prints one run's line of the comparison.
fn report(label: &str, o: &Outcome) {
    let pct = 100.0 * TARGET;
    match o.steps_to_target {
        Some(s) => println!("{label} final {:5.1}%, {pct:.0}% first at step {s}", 100.0 * o.final_accuracy),
        None => println!("{label} final {:5.1}%, {pct:.0}% not reached", 100.0 * o.final_accuracy),
    }
    if o.nowcasts > 0 {
        println!("{label} {} nowcasts, {} rolled back", o.nowcasts, o.rollbacks);
    }
}

/// A fresh Fisher-Yates permutation of the training indices.
fn shuffle(order: &mut [u16], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u16;
    }
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// Checks the core's memory plan against the static capacities and prints it.
fn check_plan(cfg: &Config) -> Result<(), Fail> {
    let arch = Task::Debug.arch();
    let graph = NeuralGraph::new(&arch);
    let plan = NowcastPlan::new(&graph, cfg);
    let train = TrainPlan::new(&arch, BATCH);
    let fits = arch.param_count() == P
        && graph.num_nodes() == NODES
        && plan.history == CTX * P
        && plan.node_features == NODES * LPE
        && plan.nowcast_scratch() <= NOWCAST_SCRATCH
        && plan.rollback <= P
        && train.activations <= TRAIN_ACTS
        && train.scratch <= TRAIN_SCRATCH
        && TRAIN_LABELS.len() == TRAIN_N;
    println!(
        "memory plan (debug net, nino_no_posw): nowcaster {} bytes with f16 weights ({} with f32), training {} bytes at batch {BATCH}",
        plan.bytes(WeightStorage::F16),
        plan.bytes(WeightStorage::F32),
        train.bytes()
    );
    if fits { Ok(()) } else { Err(Fail::Plan) }
}

fn run() -> Result<(), Fail> {
    let w = nino_weights()?;
    check_plan(&w.config)?;
    if TRAIN_IMAGES.len() != TRAIN_N * PIXELS || TEST_IMAGES.len() != TEST_LABELS.len() * PIXELS {
        return Err(Fail::Data);
    }
    let mut b = buffers();
    let table = spectral::builtin(&Task::Debug.arch()).ok_or(Fail::Spectral)?;
    table.lpe_columns(LPE, b.lpe).map_err(|_| Fail::Spectral)?;
    gather(TRAIN_IMAGES, TRAIN_LABELS, 0..PROBE, b.x_probe, b.y_probe);

    println!("Adam alone, {STEPS} steps, batch {BATCH}, lr {LR}:");
    let adam = train(&mut b, None)?;
    println!("Adam + NiNo (nino_no_posw, f16 weights) every {PERIOD} steps, with rollback:");
    let nino = train(&mut b, Some(&w))?;
    report("Adam:       ", &adam);
    report("Adam + NiNo:", &nino);
    if nino.nowcasts == 0 {
        return Err(Fail::NoNowcast);
    }
    if nino.final_accuracy < TARGET {
        return Err(Fail::BelowTarget);
    }
    Ok(())
}

/// The C entry point: glibc's start files call it, so no `std` runtime is involved.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    match run() {
        Ok(()) => 0,
        Err(fail) => {
            println!("edge-finetune: failed: {fail:?}");
            fail as i32
        }
    }
}
