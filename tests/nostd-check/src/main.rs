//! The no_std / no-alloc proof: nino-core linked into a binary that has neither `std` nor a global
//! allocator, calling the core's public API on static buffers. Exit status 0 means every result matched
//! the reference fixture; any other status names the first check that failed (see `Fail`).
//!
//! Expected values are copied from `fixtures/golden/*.json` and `debug.safetensors` (made by the reference
//! PyTorch implementation), or worked out by hand for the matrix product, never computed by nino.
#![no_std]
#![no_main]

use core::fmt::Write;
use nino_core::ops::{Gemm, MatRef, Portable};
use nino_core::{Arch, ArchError, InputShape, NeuralGraph, Task};

/// Edges of the `debug` task's graph (`num_edges` in `fixtures/golden/debug.json`).
const DEBUG_EDGES: usize = 181;

/// Edge list buffers for the `debug` graph: static, so nothing sits on the stack or in a heap.
static mut SRC: [u32; DEBUG_EDGES] = [0; DEBUG_EDGES];
static mut DST: [u32; DEBUG_EDGES] = [0; DEBUG_EDGES];
static mut KIND: [u8; DEBUG_EDGES] = [0; DEBUG_EDGES];
/// Output of the matrix-product check.
static mut C: [f32; 6] = [0.0; 6];

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
}

/// (params, nodes, edges) of each conv task, from `fixtures/golden/<task>.json`.
const TASKS: [(Task, usize, usize, usize); 3] =
    [(Task::Debug, 662, 31, 181), (Task::Fm16, 14_378, 95, 2_057), (Task::Fm32, 56_394, 175, 7_161)];

/// `edge_dict` of `fixtures/golden/debug.json`: the edge range of every parameter tensor.
const DEBUG_EDGE_DICT: [(usize, usize); 8] =
    [(0, 4), (4, 8), (8, 32), (32, 38), (38, 74), (74, 80), (80, 140), (140, 150)];

/// A fixed-capacity `core::fmt::Write` sink, since there is no `String` here.
struct Buf {
    bytes: [u8; 32],
    len: usize,
}

impl Buf {
    const fn new() -> Self {
        Buf { bytes: [0; 32], len: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn check(ok: bool, fail: Fail) -> Result<(), Fail> {
    if ok { Ok(()) } else { Err(fail) }
}

/// Architectures, parameter layout and neural-graph sizes of the built-in tasks.
fn check_tasks() -> Result<(), Fail> {
    for (task, params, nodes, edges) in TASKS {
        let from_spec = Arch::parse(task.spec(), InputShape::FASHION_MNIST, 10).map_err(|_| Fail::TaskArch)?;
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
    let (mut first, mut last) = (Buf::new(), Buf::new());
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

fn run() -> Result<(), Fail> {
    check_tasks()?;
    check_debug_graph()?;
    check_parse()?;
    check_gemm()?;
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

unsafe extern "C" {
    /// glibc's `abort`: ends the process with SIGABRT.
    fn abort() -> !;
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: `abort` takes no arguments and never returns.
    unsafe { abort() }
}

/// A logger that drops every frame: defmt needs one in any binary that keeps a log call, and this check
/// only proves that the defmt build links, not what it prints.
#[cfg(feature = "defmt")]
mod noop_logger {
    #[defmt::global_logger]
    struct NoopLogger;

    // SAFETY: nothing is shared, so there is no critical section to guard.
    unsafe impl defmt::Logger for NoopLogger {
        fn acquire() {}
        unsafe fn flush() {}
        unsafe fn release() {}
        unsafe fn write(_bytes: &[u8]) {}
    }

    defmt::timestamp!("{=u32}", 0);
}
