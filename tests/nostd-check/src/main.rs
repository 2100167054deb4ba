//! The no_std / no-alloc proof: nino-core linked into a binary that has neither `std` nor a global
//! allocator, calling the core's public API on static buffers. Exit status 0 means every result matched
//! the reference fixture; any other status names the first check that failed (see `Fail`).
//!
//! Expected values are copied from `fixtures/golden/*.json` and `debug.safetensors` (made by the reference
//! PyTorch implementation), or worked out by hand for the matrix product, never computed by nino.
#![no_std]
#![no_main]
// `&mut *(&raw mut BUF)` is how edition 2024 borrows a `static mut` (a plain `&mut BUF` is denied by
// `static_mut_refs`); clippy's `deref_addrof` would suggest exactly that denied form.
#![allow(clippy::deref_addrof)]

use nino_core::adam::{AdamConfig, adam_step};
use nino_core::nowcast::{Config, TensorScale, scale};
use nino_core::ops::{Gemm, MatRef, Portable};
use nino_core::{Arch, ArchError, InputShape, NeuralGraph, Task, net, spectral};
use rt::Buf;

mod rt;

/// Edges of the `debug` task's graph (`num_edges` in `fixtures/golden/debug.json`).
const DEBUG_EDGES: usize = 181;

/// Edge list buffers for the `debug` graph: static, so nothing sits on the stack or in a heap.
static mut SRC: [u32; DEBUG_EDGES] = [0; DEBUG_EDGES];
static mut DST: [u32; DEBUG_EDGES] = [0; DEBUG_EDGES];
static mut KIND: [u8; DEBUG_EDGES] = [0; DEBUG_EDGES];
/// Output of the matrix-product check.
static mut C: [f32; 6] = [0.0; 6];

/// `fixtures/golden/debug.safetensors`: tensors of the reference PyTorch implementation for the `debug` task.
static DEBUG_FIXTURE: &[u8] = include_bytes!("../../../fixtures/golden/debug.safetensors");
/// Parameters of the `debug` net (`n_params` in `debug.json`).
const P: usize = 662;
/// Examples in the fixture's batch, and values per example (28x28x1).
const BATCH: usize = 8;
const PIXELS: usize = 784;
/// Buffers of the training check, sized with room to spare; the code checks the core's stated needs fit.
static mut PARAMS: [f32; P] = [0.0; P];
static mut GRAD: [f32; P] = [0.0; P];
static mut WANT: [f32; P] = [0.0; P];
static mut MOM1: [f32; P] = [0.0; P];
static mut MOM2: [f32; P] = [0.0; P];
static mut X: [f32; BATCH * PIXELS] = [0.0; BATCH * PIXELS];
static mut Y: [u32; BATCH] = [0; BATCH];
static mut ACTS: [f32; 1 << 16] = [0.0; 1 << 16];
static mut SCRATCH: [f32; 1 << 18] = [0.0; 1 << 18];
/// Context states of the nowcast check (`ctx` in `debug.json`).
const CTX: usize = 5;
static mut HISTORY: [f32; CTX * P] = [0.0; CTX * P];
static mut SCALED: [f32; CTX * P] = [0.0; CTX * P];
static mut SCALED_REF: [f32; CTX * P] = [0.0; CTX * P];

/// Which check failed; the value is the process exit status.
#[derive(Clone, Copy)]
#[repr(i32)]
enum Fail {
    TaskArch = 10,
    ParamCount = 11,
    TensorNames = 12,
    GraphSize = 13,
    EdgeDict = 14,
    WriteEdges = 15,
    EdgeChecksum = 16,
    ParseMlp = 20,
    ParseError = 21,
    Gemm = 30,
    GemmTransposed = 31,
    GemmShapeError = 32,
    Fixture = 40,
    BufferTooSmall = 41,
    Loss = 42,
    Gradient = 43,
    Adam = 44,
    Spectral = 50,
    NowcastConfig = 60,
    NowcastScales = 61,
    NowcastScaled = 62,
}

/// (params, nodes, edges) of each conv task: the Fashion-MNIST ones from `fixtures/golden/<task>.json`, the
/// CIFAR ones from the reference's task table (docs/spec.md §1.2).
const TASKS: [(Task, usize, usize, usize); 6] = [
    (Task::Debug, 662, 31, 181),
    (Task::Fm16, 14_378, 95, 2_057),
    (Task::Fm32, 56_394, 175, 7_161),
    (Task::C10_16, 14_666, 97, 2_091),
    (Task::C10_32, 56_970, 177, 7_227),
    (Task::C100_32, 62_820, 267, 13_167),
];

/// `edge_dict` of `fixtures/golden/debug.json`: the edge range of every parameter tensor.
const DEBUG_EDGE_DICT: [(usize, usize); 8] =
    [(0, 4), (4, 8), (8, 32), (32, 38), (38, 74), (74, 80), (80, 140), (140, 150)];

fn check(ok: bool, fail: Fail) -> Result<(), Fail> {
    if ok { Ok(()) } else { Err(fail) }
}

/// Architectures, parameter layout and neural-graph sizes of the built-in tasks.
fn check_tasks() -> Result<(), Fail> {
    for (task, params, nodes, edges) in TASKS {
        let data = task.dataset();
        let from_spec = Arch::parse(task.spec(), data.input(), data.classes()).map_err(|_| Fail::TaskArch)?;
        let arch = task.arch();
        check(arch == from_spec, Fail::TaskArch)?;
        check(arch.param_count() == params, Fail::ParamCount)?;
        let graph = NeuralGraph::new(&arch);
        check(graph.num_nodes() == nodes && graph.num_edges() == edges, Fail::GraphSize)?;
        check(graph.feat_slots() == 9, Fail::GraphSize)?; // `max_feat_size` in the json: 3x3 kernels
    }
    Ok(())
}

/// The `debug` graph edge by edge, against `edge_dict`, `param_layout` and the `edge_index`/`edge_type`
/// tensors of `fixtures/golden/debug.safetensors`.
fn check_debug_graph() -> Result<(), Fail> {
    let arch = Task::Debug.arch();
    check(arch.tensor_count() == 8, Fail::TensorNames)?;
    let (mut first, mut last) = (Buf::<32>::new(), Buf::<32>::new());
    let t0 = arch.tensor(0).ok_or(Fail::TensorNames)?;
    let t6 = arch.tensor(6).ok_or(Fail::TensorNames)?;
    t0.write_name(&mut first).map_err(|_| Fail::TensorNames)?;
    t6.write_name(&mut last).map_err(|_| Fail::TensorNames)?;
    check(first.as_bytes() == b"fc.0.weight" && t0.dims() == [4, 1, 3, 3], Fail::TensorNames)?;
    check(last.as_bytes() == b"fc.8.weight" && t6.dims() == [10, 6], Fail::TensorNames)?;

    let graph = NeuralGraph::new(&arch);
    for (j, &(start, end)) in DEBUG_EDGE_DICT.iter().enumerate() {
        check(graph.tensor_edges(j) == Some(start..end), Fail::EdgeDict)?;
    }

    // SAFETY: `main` runs once on one thread and these are the only references to the buffers.
    let (src, dst, kind) = unsafe { (&mut *(&raw mut SRC), &mut *(&raw mut DST), &mut *(&raw mut KIND)) };
    graph.write_edges(src, dst, kind).map_err(|_| Fail::WriteEdges)?;
    check(graph.write_edges(&mut src[1..], dst, kind).is_err(), Fail::WriteEdges)?;

    // Position-weighted sums of the reference `edge_index` rows and plain sum of `edge_type`: any swapped,
    // shifted or mistyped edge changes them.
    let weighted = |v: &[u32]| v.iter().enumerate().map(|(i, &x)| i as u64 * x as u64).sum::<u64>();
    let kinds: u64 = kind.iter().map(|&k| k as u64).sum();
    check(weighted(src) == 246_920 && weighted(dst) == 331_436 && kinds == 707, Fail::EdgeChecksum)?;
    // Spot values: the first conv edges, the first linear edge, and the last self-loop.
    check(
        src[..6] == [0, 0, 0, 0, 1, 1] && dst[..6] == [2, 3, 4, 5, 2, 3] && kind[..6] == [3, 3, 3, 3, 2, 2],
        Fail::EdgeChecksum,
    )?;
    check((src[80], dst[80], kind[80]) == (14, 21, 1), Fail::EdgeChecksum)?;
    check((src[180], dst[180], kind[180]) == (30, 30, 13), Fail::EdgeChecksum)?;
    Ok(())
}

/// Spec parsing beyond the built-in tasks, including a rejected spec (an error value, not a panic).
fn check_parse() -> Result<(), Fail> {
    // `mlp_fm` in fixtures/golden: MLP 784-32-10.
    let mlp = Arch::parse("mlp:32", InputShape::FASHION_MNIST, 10).map_err(|_| Fail::ParseMlp)?;
    let graph = NeuralGraph::new(&mlp);
    check(mlp.param_count() == 25_450, Fail::ParseMlp)?;
    check(graph.num_nodes() == 828 && graph.num_edges() == 26_278 && graph.feat_slots() == 1, Fail::ParseMlp)?;
    let err = Arch::parse("rnn:8", InputShape::FASHION_MNIST, 10);
    #[cfg(feature = "defmt")]
    if let Err(e) = err {
        defmt::debug!("rejected spec as expected: {}", e);
    }
    check(err == Err(ArchError::UnknownFamily), Fail::ParseError)
}

/// The portable matrix product on hand-computed values.
fn check_gemm() -> Result<(), Fail> {
    static A: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
    static B: [f32; 6] = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3x2
    // SAFETY: `main` runs once on one thread and this is the only reference to `C`.
    let c = unsafe { &mut *(&raw mut C) };
    // [1 2 3; 4 5 6] * [7 8; 9 10; 11 12] = [58 64; 139 154].
    Portable
        .gemm(MatRef::row_major(&A, 2, 3), MatRef::row_major(&B, 3, 2), &mut c[..4], 2, 0.0)
        .map_err(|_| Fail::Gemm)?;
    check(c[..4] == [58.0, 64.0, 139.0, 154.0], Fail::Gemm)?;
    // c = 0.5 c + (top 2x2 corner of A^T A), through strided views: A^T restricted to two rows is
    // [1 4; 2 5], A restricted to two columns is [1 2; 4 5]; the product is [17 22; 22 29], and with
    // beta 0.5 on [58 64; 139 154] the result is [46 54; 91.5 106].
    let at = MatRef::transposed(&A, 2, 3);
    let a_left = MatRef { data: &A, rows: 2, cols: 2, rs: 3, cs: 1 };
    Portable.gemm(MatRef { rows: 2, ..at }, a_left, &mut c[..4], 2, 0.5).map_err(|_| Fail::GemmTransposed)?;
    check(c[..4] == [46.0, 54.0, 91.5, 106.0], Fail::GemmTransposed)?;
    // Mismatched inner dimensions are an error, not a panic.
    let bad = Portable.gemm(MatRef::row_major(&A, 2, 3), MatRef::row_major(&B, 2, 3), &mut c[..], 3, 0.0);
    check(bad.is_err(), Fail::GemmShapeError)
}

/// Bytes of tensor `name` in a safetensors file (an 8-byte little-endian header length, a JSON header
/// mapping names to `data_offsets: [begin, end]` into the data that follows). Just enough parsing for a
/// trusted fixture, without an allocator.
fn tensor(file: &'static [u8], name: &str) -> Option<&'static [u8]> {
    let len = u64::from_le_bytes(file.get(..8)?.try_into().ok()?) as usize;
    let header = file.get(8..8 + len)?;
    let data = file.get(8 + len..)?;
    let key_at = (0..header.len()).find(|&i| {
        header[i] == b'"'
            && header[i + 1..].starts_with(name.as_bytes())
            && header[i + 1 + name.len()..].starts_with(b"\":")
    })?;
    let rest = &header[key_at..];
    const OFFSETS: &[u8] = b"\"data_offsets\":[";
    let at = (0..rest.len()).find(|&i| rest[i..].starts_with(OFFSETS))? + OFFSETS.len();
    let mut nums = [0usize; 2];
    let mut i = at;
    for n in &mut nums {
        while rest.get(i)?.is_ascii_whitespace() || rest[i] == b',' {
            i += 1;
        }
        let start = i;
        while rest.get(i)?.is_ascii_digit() {
            *n = *n * 10 + (rest[i] - b'0') as usize;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    data.get(nums[0]..nums[1])
}

/// Decodes a little-endian f32 tensor into `out`, which must have exactly its length.
fn read_f32(name: &str, out: &mut [f32]) -> Result<(), Fail> {
    let bytes = tensor(DEBUG_FIXTURE, name).ok_or(Fail::Fixture)?;
    check(bytes.len() == 4 * out.len(), Fail::Fixture)?;
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// The larger of two values, NaN if either is NaN (`f32::max` would drop it).
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}

/// Largest `|a - b|` and largest `|b|`; NaN if any value is NaN, so every `d <= tol` check fails on it.
fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    a.iter().zip(b).fold((0.0f32, 0.0f32), |(d, m), (x, y)| (nan_max(d, (x - y).abs()), nan_max(m, y.abs())))
}

/// Loss, gradient and one Adam step of the `debug` net at `history[4]` on the fixture batch, against
/// PyTorch; then the baked spectral table against numpy's eigenvalues and networkx's centrality.
/// The tolerances are those of the golden tests (`tests/golden_train.rs`, `tests/golden_spectral.rs`).
fn check_training_and_spectral() -> Result<(), Fail> {
    let arch = Task::Debug.arch();
    check(arch.param_count() == P, Fail::ParamCount)?;
    // SAFETY: `main` runs once on one thread and these are the only references to the buffers.
    let (params, grad, want, m, v, x, acts, scratch) = unsafe {
        (
            &mut *(&raw mut PARAMS),
            &mut *(&raw mut GRAD),
            &mut *(&raw mut WANT),
            &mut *(&raw mut MOM1),
            &mut *(&raw mut MOM2),
            &mut *(&raw mut X),
            &mut *(&raw mut ACTS),
            &mut *(&raw mut SCRATCH),
        )
    };
    // SAFETY: as above.
    let y = unsafe { &mut *(&raw mut Y) };

    let history = tensor(DEBUG_FIXTURE, "history").ok_or(Fail::Fixture)?;
    check(history.len() == 5 * P * 4, Fail::Fixture)?;
    for (o, b) in params.iter_mut().zip(history[4 * P * 4..].chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    read_f32("batch_x", x)?;
    let labels = tensor(DEBUG_FIXTURE, "batch_y").ok_or(Fail::Fixture)?; // int64
    check(labels.len() == 8 * BATCH, Fail::Fixture)?;
    for (o, b) in y.iter_mut().zip(labels.chunks_exact(8)) {
        *o = u32::try_from(i64::from_le_bytes(b.try_into().map_err(|_| Fail::Fixture)?)).map_err(|_| Fail::Fixture)?;
    }

    let (na, ns) = (net::activation_len(&arch, BATCH), net::scratch_len(&arch, BATCH));
    check(na <= acts.len() && ns <= scratch.len(), Fail::BufferTooSmall)?;
    let loss = net::loss_and_grad(&arch, params, x, y, &mut acts[..na], &mut scratch[..ns], grad, &Portable)
        .map_err(|_| Fail::Loss)?;
    let mut want_loss = [0.0f32];
    read_f32("batch_loss", &mut want_loss)?;
    // The mean of 8 cross-entropies of O(1): 1e-6 absolute is ~10 ulps.
    check((loss - want_loss[0]).abs() <= 1e-6, Fail::Loss)?;
    read_f32("batch_grad", want)?;
    // Sums of up to thousands of cancelling products in another order: 1e-5 of the largest entry.
    let (d, mx) = max_diff(grad, want);
    check(d <= 1e-5 * mx + 1e-8, Fail::Gradient)?;

    // One Adam step on the reference's own gradient isolates the optimizer: a few ulps of |p| < ~2.
    let mut t = 0;
    adam_step(&AdamConfig::new(Task::Debug.lr()), params, want, m, v, &mut t).map_err(|_| Fail::Adam)?;
    read_f32("adam_params_step1", want)?;
    check(t == 1 && max_diff(params, want).0 <= 1e-6, Fail::Adam)?;

    let table = spectral::builtin(&arch).ok_or(Fail::Spectral)?;
    check(table.nodes == 31 && table.eigenvalues.len() == 31 && table.centrality.len() == 31, Fail::Spectral)?;
    let mut ref31 = [0.0f32; 31];
    read_f32("laplacian_eigenvalues", &mut ref31)?;
    // Eigenvalues in [0, 2] from an f64 solve, rounded to f32 on both sides: about one ulp of 2.
    check(max_diff(table.eigenvalues, &ref31).0 <= 2.4e-7, Fail::Spectral)?;
    read_f32("eigenvector_centrality", &mut ref31)?;
    // The Perron vector is unique (non-negative, unit norm); entries below 1, solved in f64 and rounded to
    // f32 on both sides: the golden test's bound (`tests/golden_spectral.rs`, 1e-8 absolute).
    check(max_diff(table.centrality, &ref31).0 <= 1e-8, Fail::Spectral)
}

/// The nowcaster's first stage: its config parsed from `fixtures/weights/nino_mlp.json`, then the per-tensor
/// scales and the scaled history of the `debug` task against the reference's `nino_mlp.scales` and
/// `nino_mlp.scaled_states`, with the tolerances of `tests/golden_nino.rs` (the reference accumulates in f32).
fn check_nowcast_scaling() -> Result<(), Fail> {
    let cfg = Config::from_json(include_str!("../../../fixtures/weights/nino_mlp.json"));
    check(cfg.is_ok_and(|c| c.validate().is_ok()), Fail::NowcastConfig)?;

    let arch = Task::Debug.arch();
    // SAFETY: `main` runs once on one thread and these are the only references to the buffers.
    let (history, scaled, scaled_ref) =
        unsafe { (&mut *(&raw mut HISTORY), &mut *(&raw mut SCALED), &mut *(&raw mut SCALED_REF)) };
    read_f32("history", history)?;
    let mut scales = [TensorScale::default(); 8];
    scale::tensor_scales(&arch, history, CTX, &mut scales).map_err(|_| Fail::NowcastScales)?;
    let mut want = [0.0f32; 16]; // [8 tensors, (mean, std)]
    read_f32("nino_mlp.scales", &mut want)?;
    for (s, w) in scales.iter().zip(want.chunks_exact(2)) {
        // Per value: a mean can be tiny next to its std.
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs().max(1e-3);
        check(close(s.mean, w[0]) && close(s.sd, w[1]), Fail::NowcastScales)?;
    }
    scale::scale_history(&arch, history, CTX, &scales, scaled).map_err(|_| Fail::NowcastScaled)?;
    read_f32("nino_mlp.scaled_states", scaled_ref)?; // [P, CTX]; ours is [CTX, P]
    let mut d = 0.0f32;
    let mut mx = 0.0f32;
    for i in 0..P {
        for st in 0..CTX {
            let w = scaled_ref[i * CTX + st];
            d = nan_max(d, (scaled[st * P + i] - w).abs());
            mx = nan_max(mx, w.abs());
        }
    }
    // Values of a few units, divided by a std carrying ~1e-6 relative rounding: 1e-5 of the largest.
    check(d <= 1e-5 * mx, Fail::NowcastScaled)
}

fn run() -> Result<(), Fail> {
    check_tasks()?;
    check_debug_graph()?;
    check_parse()?;
    check_gemm()?;
    check_training_and_spectral()?;
    check_nowcast_scaling()?;
    Ok(())
}

/// The C entry point: glibc's start files call it, so no `std` runtime is involved.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    match run() {
        Ok(()) => {
            #[cfg(feature = "defmt")]
            defmt::info!("nostd-check: all checks passed");
            0
        }
        Err(fail) => {
            #[cfg(feature = "defmt")]
            defmt::error!("nostd-check: check {=i32} failed", fail as i32);
            fail as i32
        }
    }
}
