//! The nowcaster of the C ABI: its memory plan, and one nowcaster living in one block of caller memory
//! (its state, the packed weights, the context history, the node features, the scratch and the rollback
//! snapshot, in that order, each aligned to [`NINO_ALIGN`]).

use super::{
    NINO_E_ALIGN, NINO_E_ARCH, NINO_E_BUFFER_SIZE, NINO_E_HANDLE, NINO_E_HISTORY, NINO_E_HORIZON,
    NINO_E_INVALID_ARGUMENT, NINO_E_MODEL_ARGS, NINO_E_NO_SNAPSHOT, NINO_E_NODE_FEATURES, NINO_E_NON_FINITE,
    NINO_E_UNSUPPORTED, NINO_E_WEIGHTS, Status, c_str, check_disjoint, check_ptr, code, read, slice, slice_mut, span,
    status, write,
};
use crate::arch::{Arch, InputShape};
use crate::graph::NeuralGraph;
use crate::nowcast::file::{self, StoreElem, WeightFile};
use crate::nowcast::{self, Backend, Config};
use crate::ops::Portable;
use crate::plan::{NowcastPlan, WeightStorage};
use crate::rollback::Snapshot;
use crate::spectral;
use core::ffi::{c_char, c_void};

/// Alignment the nowcaster's memory block must have.
pub const NINO_ALIGN: usize = 16;
/// Weights stored as f32 (exact).
pub const NINO_STORAGE_F32: i32 = 0;
/// Weights stored as f16 (half the memory; the math stays f32).
pub const NINO_STORAGE_F16: i32 = 1;
/// Longest architecture string (`"conv:16,32,32"`), in bytes before its NUL.
pub const NINO_MAX_ARCH_SPEC: usize = 256;
/// Longest `model_args` JSON, in bytes before its NUL (or after unescaping, when read from the file).
pub const NINO_MAX_MODEL_ARGS: usize = 1024;

const _: () = assert!(NINO_MAX_MODEL_ARGS == file::MAX_MODEL_ARGS);
const _: () = assert!(align_of::<State>() <= NINO_ALIGN && NINO_ALIGN.is_power_of_two());

/// What a nowcaster is built from: the target network, the NiNo weight file and the weight storage.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NinoModel {
    /// The architecture, NUL-terminated (`"conv:4,6,6"`, `"mlp:32"`).
    pub arch: *const c_char,
    /// Input channels of one example.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Classes (width of the classifier).
    pub classes: usize,
    /// The NiNo weight file (safetensors), as read from disk; only needed during `nino_nowcaster_init`.
    pub weights: *const u8,
    /// Bytes of `weights`.
    pub weights_len: usize,
    /// The model's `model_args` JSON, NUL-terminated; null to read it from the file's metadata.
    pub model_args: *const c_char,
    /// `NINO_STORAGE_F32` or `NINO_STORAGE_F16`.
    pub storage: i32,
}

/// The memory plan of one nowcaster: every buffer in bytes, and the model's sizes the caller's own
/// buffers follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NinoPlan {
    /// Parameters `P` of the target network: the length of every parameter buffer.
    pub params: usize,
    /// Context states `c` a nowcast reads.
    pub ctx: usize,
    /// Largest horizon `k` (`S`).
    pub seq_len: usize,
    /// Nodes of the neural graph.
    pub nodes: usize,
    /// Node feature columns (LPE); 0 when the model reads none.
    pub node_feature_width: usize,
    /// The nowcaster's own state.
    pub state_bytes: usize,
    /// The weights in the chosen storage.
    pub weight_bytes: usize,
    /// The context history, `ctx * params` floats.
    pub history_bytes: usize,
    /// The node features, `nodes * node_feature_width` floats.
    pub node_feature_bytes: usize,
    /// Scratch of one nowcast.
    pub scratch_bytes: usize,
    /// The rollback snapshot, `params` floats.
    pub rollback_bytes: usize,
    /// All of it with alignment padding: the least `mem_len` of `nino_nowcaster_init`.
    pub total_bytes: usize,
    /// Alignment the block must have (`NINO_ALIGN`).
    pub align: usize,
}

/// A nowcaster: an opaque handle to the start of its caller-owned memory block.
#[repr(C)]
pub struct NinoNowcaster {
    _opaque: [u8; 0],
}

/// Marks an initialised block ("ninowcst").
const MAGIC: u64 = 0x6e69_6e6f_7763_7374;

/// One buffer of the block: offset in bytes and length in values.
#[derive(Clone, Copy, Debug)]
struct Region {
    offset: usize,
    len: usize,
}

impl Region {
    /// Bytes of its values at `size` bytes each.
    const fn bytes(self, size: usize) -> usize {
        self.len * size
    }
}

/// Where every buffer sits in the block.
#[derive(Clone, Copy, Debug)]
struct Layout {
    weights: Region,
    history: Region,
    lpe: Region,
    scratch: Region,
    rollback: Region,
    total: usize,
}

impl Layout {
    /// Lays out `plan` with weights of `storage`, every buffer aligned to [`NINO_ALIGN`].
    fn new(plan: &NowcastPlan, storage: WeightStorage) -> Result<Layout, i32> {
        let align = |x: usize| x.checked_next_multiple_of(NINO_ALIGN).ok_or(NINO_E_UNSUPPORTED);
        let mut at = align(size_of::<State>())?;
        let mut region = |len: usize, size: usize| -> Result<Region, i32> {
            let r = Region { offset: at, len };
            at = align(len.checked_mul(size).and_then(|b| b.checked_add(at)).ok_or(NINO_E_UNSUPPORTED)?)?;
            Ok(r)
        };
        let f32s = size_of::<f32>();
        let weights = region(plan.weights, storage.bytes_per_value())?;
        let history = region(plan.history, f32s)?;
        let lpe = region(plan.node_features, f32s)?;
        let scratch = region(plan.nowcast_scratch(), f32s)?;
        let rollback = region(plan.rollback, f32s)?;
        if at > isize::MAX as usize {
            return Err(NINO_E_UNSUPPORTED);
        }
        Ok(Layout { weights, history, lpe, scratch, rollback, total: at })
    }
}

/// The nowcaster's state, at the start of its block (`repr(C)`: the magic word comes first whatever the rest).
#[repr(C)]
#[derive(Debug)]
struct State {
    magic: u64,
    graph: NeuralGraph,
    config: Config,
    storage: WeightStorage,
    layout: Layout,
    /// States recorded so far, up to `ctx`.
    recorded: usize,
    /// Whether the rollback buffer holds a snapshot.
    saved: bool,
}

/// A model opened from its description: the architecture's graph, the config and the storage.
struct Opened {
    graph: NeuralGraph,
    config: Config,
    storage: WeightStorage,
    plan: NowcastPlan,
    layout: Layout,
}

/// Reads and checks a [`NinoModel`] (not the weights' values: [`nino_nowcaster_init`] packs those).
///
/// # Safety
/// The pointers of `model` are null or valid as `nino.h` states.
unsafe fn open(model: &NinoModel) -> Result<(Opened, WeightFile<'_>), i32> {
    let storage = match model.storage {
        NINO_STORAGE_F32 => WeightStorage::F32,
        NINO_STORAGE_F16 => WeightStorage::F16,
        _ => return Err(NINO_E_INVALID_ARGUMENT),
    };
    // SAFETY: the caller's contract on `model.arch`.
    let spec = unsafe { c_str(model.arch, NINO_MAX_ARCH_SPEC, NINO_E_ARCH) }?;
    let input = InputShape { channels: model.channels, height: model.height, width: model.width };
    let arch = Arch::parse(spec, input, model.classes).map_err(|_| NINO_E_ARCH)?;
    // SAFETY: the caller's contract on `model.weights`.
    let bytes = unsafe { slice(model.weights, model.weights_len) }?;
    let weights = WeightFile::parse(bytes).map_err(|e| code(e, NINO_E_WEIGHTS))?;
    let mut buf = [0u8; NINO_MAX_MODEL_ARGS];
    let json = if model.model_args.is_null() {
        let found = weights.model_args(&mut buf).map_err(|e| code(e, NINO_E_WEIGHTS))?;
        found.ok_or(NINO_E_MODEL_ARGS)?
    } else {
        // SAFETY: the caller's contract on `model.model_args`.
        unsafe { c_str(model.model_args, NINO_MAX_MODEL_ARGS, NINO_E_MODEL_ARGS) }?
    };
    let config = Config::from_json(json.trim()).map_err(|e| code(e, NINO_E_MODEL_ARGS))?;
    file::check_packable(&config).map_err(|_| NINO_E_UNSUPPORTED)?;
    let graph = NeuralGraph::new(&arch);
    nowcast::check_fits(&graph, &config).map_err(|_| NINO_E_UNSUPPORTED)?;
    check_size(&graph, &config)?;
    let plan = NowcastPlan::new(&graph, &config);
    let layout = Layout::new(&plan, storage)?;
    Ok((Opened { graph, config, storage, plan, layout }, weights))
}

/// Refuses a model whose buffers could overflow `usize` before the core counts them: every buffer of the
/// plan is a sum of fewer than 64 terms, each at most `d^3` or `g * d` values (`d` the largest model size
/// or 9, the most feature slots of an edge; `g` the most edges, nodes or parameters) or `1024 * d` (WNN+'s
/// blocks); the bound below is 16 times that.
fn check_size(graph: &NeuralGraph, c: &Config) -> Status {
    let d = [c.hid, c.ctx, c.lpe, c.seq_len, c.max_feat_size, c.edge_types, 9].into_iter().max().unwrap_or(9) as u128;
    let g = graph.num_edges().max(graph.num_nodes()).max(graph.arch().param_count()) as u128;
    let values = 1024 * (d * d * d + g * d) + 16 * 1024 * d;
    if values.saturating_mul(size_of::<f32>() as u128) > isize::MAX as u128 {
        return Err(NINO_E_UNSUPPORTED);
    }
    Ok(())
}

impl Opened {
    /// The plan as the caller sees it.
    fn plan(&self) -> NinoPlan {
        let l = &self.layout;
        let f32s = size_of::<f32>();
        let (nodes, lpe) = (self.graph.num_nodes(), if self.plan.node_features > 0 { self.config.lpe } else { 0 });
        NinoPlan {
            params: self.graph.arch().param_count(),
            ctx: self.config.ctx,
            seq_len: self.config.seq_len,
            nodes,
            node_feature_width: lpe,
            state_bytes: size_of::<State>(),
            weight_bytes: l.weights.bytes(self.storage.bytes_per_value()),
            history_bytes: l.history.bytes(f32s),
            node_feature_bytes: l.lpe.bytes(f32s),
            scratch_bytes: l.scratch.bytes(f32s),
            rollback_bytes: l.rollback.bytes(f32s),
            total_bytes: l.total,
            align: NINO_ALIGN,
        }
    }
}

/// Fills `plan` with the memory plan of a nowcaster for `model` (the weight file's header and
/// `model_args` are read and checked; the tensors' values are not).
///
/// # Safety
/// `model` and `plan` are null or valid; the pointers inside `model` are null or valid as `nino.h` states.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_plan_query(model: *const NinoModel, plan: *mut NinoPlan) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let model = unsafe { read(model) }?;
        check_ptr(plan)?;
        // SAFETY: the caller's contract.
        let (opened, _) = unsafe { open(&model) }?;
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write(plan, opened.plan()) };
        Ok(())
    })())
}

/// Builds a nowcaster in `mem` (`mem_len` bytes, at least the plan's `total_bytes`, aligned to
/// `NINO_ALIGN`): packs the weights from the file into it in the model's storage, copies the node
/// features (`node_features`, `nodes * node_feature_width` floats; null for the built-in table of the
/// architecture, or for a model that reads none) and stores the handle in `*out`. The weight file and
/// the node features may be released afterwards; `mem` belongs to the nowcaster until the caller stops
/// using the handle.
///
/// # Safety
/// Every pointer is null or valid for the lengths given; `mem` is not accessed by anything else while the
/// nowcaster is used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_nowcaster_init(
    model: *const NinoModel,
    node_features: *const f32,
    node_features_len: usize,
    mem: *mut c_void,
    mem_len: usize,
    out: *mut *mut NinoNowcaster,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let model = unsafe { read(model) }?;
        check_ptr(out)?;
        let base = mem.cast::<u8>();
        check_ptr(base)?;
        if !(base as usize).is_multiple_of(NINO_ALIGN) {
            return Err(NINO_E_ALIGN);
        }
        let block = span(base, mem_len)?;
        // SAFETY: the caller's contract.
        let (opened, weights) = unsafe { open(&model) }?;
        let layout = opened.layout;
        if mem_len < layout.total {
            return Err(NINO_E_BUFFER_SIZE);
        }
        let features = if node_features.is_null() {
            None
        } else {
            // SAFETY: the caller's contract.
            Some(unsafe { slice(node_features, node_features_len) }?)
        };
        // Both are read while the block is written, and the handle is written after it.
        check_disjoint(&[block, span(model.weights, model.weights_len)?])?;
        check_disjoint(&[block, span(out, 1)?])?;
        if let Some(f) = features {
            check_disjoint(&[block, span(f.as_ptr(), f.len())?])?;
        }
        // A block that held a nowcaster no longer does while it is rebuilt.
        // SAFETY: the block is aligned and holds at least the state (checked against the layout).
        unsafe { (&raw mut (*base.cast::<State>()).magic).write(0) };
        // SAFETY: the regions lie inside the block (`layout.total <= mem_len`) and are disjoint from the
        // state and from each other; nothing else accesses the block meanwhile (the contract).
        let lpe = unsafe { region_mut::<f32>(base, layout.lpe) };
        fill_node_features(&opened, features, lpe)?;
        match opened.storage {
            // SAFETY: as above.
            WeightStorage::F32 => pack(&opened.config, &weights, unsafe { region_mut::<f32>(base, layout.weights) })?,
            // SAFETY: as above.
            WeightStorage::F16 => {
                pack(&opened.config, &weights, unsafe { region_mut::<half::f16>(base, layout.weights) })?
            }
        }
        let state = State {
            magic: MAGIC,
            graph: opened.graph,
            config: opened.config,
            storage: opened.storage,
            layout,
            recorded: 0,
            saved: false,
        };
        // SAFETY: aligned (NINO_ALIGN >= align_of::<State>()), inside the block, disjoint from the regions.
        unsafe { base.cast::<State>().write(state) };
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write(out, base.cast::<NinoNowcaster>()) };
        Ok(())
    })())
}

/// Packs the weights into their region.
fn pack<W: StoreElem>(config: &Config, weights: &WeightFile<'_>, region: &mut [W]) -> Status {
    file::pack(config, weights, region).map_err(|e| code(e, NINO_E_WEIGHTS))
}

/// Copies the caller's node features, or the architecture's built-in table, into their region.
fn fill_node_features(opened: &Opened, given: Option<&[f32]>, out: &mut [f32]) -> Status {
    if out.is_empty() {
        // The model reads none: only "none given" is consistent.
        return match given {
            Some(g) if !g.is_empty() => Err(NINO_E_BUFFER_SIZE),
            _ => Ok(()),
        };
    }
    match given {
        Some(g) => {
            if g.len() != out.len() {
                return Err(NINO_E_BUFFER_SIZE);
            }
            if g.iter().any(|x| !x.is_finite()) {
                return Err(NINO_E_NON_FINITE);
            }
            out.copy_from_slice(g);
            Ok(())
        }
        None => {
            let table = spectral::builtin(opened.graph.arch()).ok_or(NINO_E_NODE_FEATURES)?;
            table.lpe_columns(opened.config.lpe, out).map_err(|_| NINO_E_NODE_FEATURES)
        }
    }
}

/// A region of the block as a mutable slice.
///
/// # Safety
/// The region lies inside the block, is aligned for `T`, and no other reference to it lives meanwhile.
unsafe fn region_mut<'a, T>(base: *mut u8, r: Region) -> &'a mut [T] {
    // SAFETY: the caller's contract.
    unsafe { core::slice::from_raw_parts_mut(base.add(r.offset).cast::<T>(), r.len) }
}

/// An initialised nowcaster: its state and the start of its block.
struct Handle<'a> {
    state: &'a mut State,
    base: *mut u8,
}

impl Handle<'_> {
    /// The nowcaster behind `nc`.
    ///
    /// # Safety
    /// `nc` is null or was stored by [`nino_nowcaster_init`] (or points to at least 8 readable bytes), and
    /// its block is not accessed by anything else meanwhile.
    unsafe fn open<'a>(nc: *mut NinoNowcaster) -> Result<Handle<'a>, i32> {
        let base = nc.cast::<u8>();
        check_ptr(base)?;
        if !(base as usize).is_multiple_of(NINO_ALIGN) {
            return Err(NINO_E_ALIGN);
        }
        let state = base.cast::<State>();
        // SAFETY: aligned and readable (the contract); `magic` is the first field, a plain `u64`.
        if unsafe { (&raw const (*state).magic).read() } != MAGIC {
            return Err(NINO_E_HANDLE);
        }
        // SAFETY: the magic says `nino_nowcaster_init` wrote a `State` here.
        let state = unsafe { &mut *state };
        Ok(Handle { state, base })
    }

    /// The block's byte range, which caller buffers must not overlap.
    fn block(&self) -> (usize, usize) {
        (self.base as usize, self.base as usize + self.state.layout.total)
    }

    /// The parameter count every parameter buffer must have.
    fn params(&self) -> usize {
        self.state.graph.arch().param_count()
    }

    /// A caller's parameter buffer, checked for length and for overlap with the block.
    ///
    /// # Safety
    /// As [`slice`].
    unsafe fn params_in<'b>(&self, p: *const f32, n: usize) -> Result<&'b [f32], i32> {
        // SAFETY: the caller's contract.
        let s = unsafe { slice(p, n) }?;
        check_disjoint(&[self.block(), span(p, n)?])?;
        if n != self.params() { Err(NINO_E_BUFFER_SIZE) } else { Ok(s) }
    }

    /// A caller's parameter buffer to write, checked for length and for overlap with the block.
    ///
    /// # Safety
    /// As [`slice_mut`].
    unsafe fn params_out<'b>(&self, p: *mut f32, n: usize) -> Result<&'b mut [f32], i32> {
        // SAFETY: the caller's contract.
        let s = unsafe { slice_mut(p, n) }?;
        check_disjoint(&[self.block(), span(p, n)?])?;
        if n != self.params() { Err(NINO_E_BUFFER_SIZE) } else { Ok(s) }
    }

    /// A region of the block.
    fn region<T>(&mut self, r: Region) -> &mut [T] {
        // SAFETY: `init` laid the regions out inside the block, aligned and disjoint from the state; the
        // `&mut self` receiver keeps two regions from being borrowed through one handle at once, except in
        // `nowcast`, which splits them itself.
        unsafe { region_mut(self.base, r) }
    }
}

/// Records `params` (`n` = the plan's `params` floats) as the newest context state; once `ctx` states are
/// held, the oldest is dropped.
///
/// # Safety
/// `nc` comes from `nino_nowcaster_init`; `params` is null or valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_nowcaster_record(nc: *mut NinoNowcaster, params: *const f32, n: usize) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let mut h = unsafe { Handle::open(nc) }?;
        // SAFETY: the caller's contract.
        let params = unsafe { h.params_in(params, n) }?;
        let (p, c, recorded) = (n, h.state.config.ctx, h.state.recorded);
        let layout = h.state.layout;
        let history = h.region::<f32>(layout.history);
        let row = if recorded == c {
            history.copy_within(p.., 0);
            c - 1
        } else {
            recorded
        };
        history[row * p..(row + 1) * p].copy_from_slice(params);
        h.state.recorded = (recorded + 1).min(c);
        Ok(())
    })())
}

/// Stores how many context states are held (at most the plan's `ctx`) in `*count`.
///
/// # Safety
/// `nc` comes from `nino_nowcaster_init`; `count` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_nowcaster_recorded(nc: *mut NinoNowcaster, count: *mut usize) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let h = unsafe { Handle::open(nc) }?;
        check_ptr(count)?;
        check_disjoint(&[h.block(), span(count, 1)?])?;
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write(count, h.state.recorded) };
        Ok(())
    })())
}

/// Predicts the parameters `k` context spacings after the newest recorded state into `out` (`n` = the
/// plan's `params` floats), which is written only on success and may be the live parameters.
///
/// # Safety
/// `nc` comes from `nino_nowcaster_init`; `out` is null or valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_nowcaster_nowcast(nc: *mut NinoNowcaster, k: usize, out: *mut f32, n: usize) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let h = unsafe { Handle::open(nc) }?;
        // SAFETY: the caller's contract.
        let out = unsafe { h.params_out(out, n) }?;
        let s = &*h.state;
        if k == 0 || k > s.config.seq_len {
            return Err(NINO_E_HORIZON);
        }
        if s.recorded < s.config.ctx {
            return Err(NINO_E_HISTORY);
        }
        let l = s.layout;
        // SAFETY: the regions are disjoint from each other and from the state (`init`'s layout), and `h` is
        // the only handle to the block (the contract).
        let (history, lpe, scratch) = unsafe {
            (region_mut::<f32>(h.base, l.history), region_mut::<f32>(h.base, l.lpe), region_mut(h.base, l.scratch))
        };
        let history: &[f32] = history;
        let lpe: &[f32] = lpe;
        match s.storage {
            // SAFETY: as above.
            WeightStorage::F32 => {
                run::<f32>(s, unsafe { region_mut(h.base, l.weights) }, history, lpe, k, scratch, out)
            }
            // SAFETY: as above.
            WeightStorage::F16 => {
                run::<half::f16>(s, unsafe { region_mut(h.base, l.weights) }, history, lpe, k, scratch, out)
            }
        }
    })())
}

/// One nowcast over the packed weights.
fn run<W: StoreElem>(
    s: &State,
    weights: &[W],
    history: &[f32],
    lpe: &[f32],
    k: usize,
    scratch: &mut [f32],
    out: &mut [f32],
) -> Status {
    let w = file::bind_packed(&s.config, weights).map_err(|_| NINO_E_HANDLE)?;
    nowcast::nowcast(Backend::new(&Portable), &w, &s.graph, history, lpe, k, scratch, out)
        .map_err(|e| code(e, NINO_E_INVALID_ARGUMENT))
}

/// Saves `params` (`n` = the plan's `params` floats) as the rollback snapshot, replacing any earlier one.
///
/// # Safety
/// `nc` comes from `nino_nowcaster_init`; `params` is null or valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_nowcaster_save(nc: *mut NinoNowcaster, params: *const f32, n: usize) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let mut h = unsafe { Handle::open(nc) }?;
        // SAFETY: the caller's contract.
        let params = unsafe { h.params_in(params, n) }?;
        let (r, saved) = (h.state.layout.rollback, h.state.saved);
        Snapshot::reopen(h.region(r), saved).save(params).map_err(|e| code(e, NINO_E_INVALID_ARGUMENT))?;
        h.state.saved = true;
        Ok(())
    })())
}

/// Writes the rollback snapshot back into `params` (`n` = the plan's `params` floats); the snapshot stays.
///
/// # Safety
/// `nc` comes from `nino_nowcaster_init`; `params` is null or valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_nowcaster_restore(nc: *mut NinoNowcaster, params: *mut f32, n: usize) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let mut h = unsafe { Handle::open(nc) }?;
        // SAFETY: the caller's contract.
        let params = unsafe { h.params_out(params, n) }?;
        let (r, saved) = (h.state.layout.rollback, h.state.saved);
        if !saved {
            return Err(NINO_E_NO_SNAPSHOT);
        }
        Snapshot::reopen(h.region(r), saved).restore(params).map_err(|e| code(e, NINO_E_NO_SNAPSHOT))
    })())
}
