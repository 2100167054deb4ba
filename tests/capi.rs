//! The C ABI called from Rust, for what the C program (`tests/capi/nino_capi_test.c`, the GNN on the debug
//! net) does not cover: the memory plan against the core's own, WNN+ (`nino_mlp`) on three nets against
//! their golden predictions, and models and archs whose sizes would overflow a `usize`.

use nino_core::capi::*;
use nino_core::nowcast::Config;
use nino_core::plan::{NowcastPlan, WeightStorage};
use nino_core::{Arch, InputShape, NeuralGraph};
use nino_tests::{Fixture, assert_close, fixture_path};
use std::ffi::{CString, c_void};
use std::ptr;

/// A `NinoModel` over owned strings and file bytes.
struct Model {
    arch: CString,
    args: Option<CString>,
    weights: Vec<u8>,
}

impl Model {
    fn new(arch: &str, weights: &str, args: Option<&str>) -> Model {
        let weights = std::fs::read(fixture_path(&format!("weights/{weights}.safetensors"))).unwrap();
        Model { arch: CString::new(arch).unwrap(), args: args.map(|a| CString::new(a).unwrap()), weights }
    }

    fn raw(&self, storage: i32) -> NinoModel {
        NinoModel {
            arch: self.arch.as_ptr(),
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
            weights: self.weights.as_ptr(),
            weights_len: self.weights.len(),
            model_args: self.args.as_ref().map_or(ptr::null(), |a| a.as_ptr()),
            storage,
        }
    }

    fn plan(&self, storage: i32) -> Result<NinoPlan, i32> {
        let mut plan = NinoPlan::default();
        // SAFETY: every pointer is valid for the call.
        match unsafe { nino_plan_query(&self.raw(storage), &mut plan) } {
            NINO_OK => Ok(plan),
            e => Err(e),
        }
    }
}

/// Sixteen bytes aligned to `NINO_ALIGN`.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Chunk([u8; 16]);

const _: () = assert!(align_of::<Chunk>() == NINO_ALIGN);

/// A nowcaster's memory block of at least `bytes`.
fn block(bytes: usize) -> Vec<Chunk> {
    vec![Chunk([0; 16]); bytes.div_ceil(16)]
}

#[test]
fn the_plan_is_the_cores_plan_laid_out() {
    for (weights, args) in [("nino_no_posw", None), ("nino_mlp", None), ("nino_mlp_h32", None)] {
        for spec in ["conv:4,6,6", "conv:16,32,32", "mlp:32", "conv:8"] {
            let m = Model::new(spec, weights, args);
            let arch = Arch::parse(spec, InputShape::FASHION_MNIST, 10).unwrap();
            let graph = NeuralGraph::new(&arch);
            let json = std::fs::read_to_string(fixture_path(&format!("weights/{weights}.json"))).unwrap();
            let core = NowcastPlan::new(&graph, &Config::from_json(&json).unwrap());
            for (storage, s) in [(NINO_STORAGE_F32, WeightStorage::F32), (NINO_STORAGE_F16, WeightStorage::F16)] {
                let p = m.plan(storage).unwrap();
                let what = format!("{spec} {weights} {s:?}");
                assert_eq!(p.params, arch.param_count(), "{what}");
                assert_eq!(p.weight_bytes, core.weights * s.bytes_per_value(), "{what}");
                assert_eq!(p.history_bytes, 4 * core.history, "{what}");
                assert_eq!(p.node_feature_bytes, 4 * core.node_features, "{what}");
                assert_eq!(p.node_feature_bytes, 4 * p.nodes * p.node_feature_width, "{what}");
                assert_eq!(p.scratch_bytes, 4 * core.nowcast_scratch(), "{what}");
                assert_eq!(p.rollback_bytes, 4 * core.rollback, "{what}");
                // The core's direct-path total plus the state, each of the six buffers padded to NINO_ALIGN.
                let padding = p.total_bytes - p.state_bytes - core.bytes(s);
                assert!(padding < 6 * NINO_ALIGN, "{what}: {padding} bytes of padding");
                assert_eq!((p.align, p.total_bytes % NINO_ALIGN), (NINO_ALIGN, 0), "{what}");
            }
        }
    }
}

/// Records the fixture's history and nowcasts each `k` through the ABI, against the reference.
fn check_golden(fixture: &str, spec: &str, weights: &str, storage: i32, ks: &[usize]) {
    let fx = Fixture::load("golden", fixture);
    let m = Model::new(spec, weights, None);
    let plan = m.plan(storage).unwrap();
    let mut mem = block(plan.total_bytes);
    let lpe = fx.f32("lpe8");
    let (features, n_features) = if plan.node_feature_width > 0 { (lpe.as_ptr(), lpe.len()) } else { (ptr::null(), 0) };
    let mut nc = ptr::null_mut();
    let p = plan.params;
    let history = fx.f32("history");
    let mut out = vec![0.0f32; p];
    // SAFETY: every pointer is valid for the length given, and `mem` outlives the nowcaster.
    unsafe {
        let mem_ptr = mem.as_mut_ptr().cast::<c_void>();
        assert_eq!(
            nino_nowcaster_init(&m.raw(storage), features, n_features, mem_ptr, plan.total_bytes, &mut nc),
            NINO_OK
        );
        for row in history.chunks_exact(p) {
            assert_eq!(nino_nowcaster_record(nc, row.as_ptr(), p), NINO_OK);
        }
        for &k in ks {
            assert_eq!(nino_nowcaster_nowcast(nc, k, out.as_mut_ptr(), p), NINO_OK);
            // The acceptance bound of tests/golden_nino.rs for f32 weights.
            let want = fx.f32(&format!("{weights}.pred_params_k{k}"));
            assert_close(&format!("{fixture} {weights} k{k} through the C ABI"), &out, &want, 1e-4, 0.0);
        }
    }
}

#[test]
fn wnn_and_gnn_through_the_abi_match_the_reference() {
    check_golden("debug", "conv:4,6,6", "nino_mlp", NINO_STORAGE_F32, &[1, 5, 40]);
    // Larger nets, one horizon each. The GNN on the debug net is the C program's; on larger nets the core's
    // portable kernels take seconds (tests/golden_nino.rs holds the GNN to every fixture).
    check_golden("fm16", "conv:16,32,32", "nino_mlp", NINO_STORAGE_F32, &[40]);
    check_golden("mlp_fm", "mlp:32", "nino_mlp", NINO_STORAGE_F32, &[5]);
    check_golden("debug", "conv:4,6,6", "nino_no_posw", NINO_STORAGE_F32, &[5]);
}

#[test]
fn sizes_that_would_overflow_are_refused_not_computed() {
    // Model sizes up to the core's 2^20 each: their cubes overflow a 64-bit usize.
    for args in [
        r#"{"wte_pos_enc": false, "hid": 1048576, "max_feat_size": 1048576, "seq_len": 1048576}"#,
        r#"{"wte_pos_enc": false, "ctx": 1048576, "max_feat_size": 1048576, "hid": 1048576}"#,
        r#"{"gnn": false, "hid": 1048576, "seq_len": 1048576}"#,
    ] {
        assert_eq!(
            Model::new("conv:4,6,6", "nino_no_posw", Some(args)).plan(NINO_STORAGE_F32),
            Err(NINO_E_UNSUPPORTED)
        );
    }
    // The largest graphs an arch may have: planned (about a terabyte), without overflow.
    let huge = Model::new("mlp:30000,30000", "nino_no_posw", None).plan(NINO_STORAGE_F16).unwrap();
    assert!(huge.total_bytes > 1 << 40 && huge.params > 900_000_000, "{huge:?}");
    assert_eq!(Model::new("mlp:70000,70000", "nino_no_posw", None).plan(NINO_STORAGE_F16), Err(NINO_E_ARCH));
}

#[test]
fn nino_plus_plus_and_word_positions_are_refused() {
    let pp = Model::new("conv:4,6,6", "nino_pp_lstm_ec_lpe5", None);
    assert_eq!(pp.plan(NINO_STORAGE_F32), Err(NINO_E_UNSUPPORTED));
    let with_wte = Model::new("conv:4,6,6", "nino_no_posw", Some(r#"{"wte_pos_enc": true}"#));
    assert_eq!(with_wte.plan(NINO_STORAGE_F32), Err(NINO_E_UNSUPPORTED));
}

#[test]
fn a_model_that_cannot_nowcast_the_arch_is_refused_by_the_plan() {
    // Self-loops are edge type 13: an embedding of 13 rows lacks theirs.
    let short_embedding = r#"{"wte_pos_enc": false, "edge_types": 13}"#;
    assert_eq!(
        Model::new("mlp:32", "nino_no_posw", Some(short_embedding)).plan(NINO_STORAGE_F32),
        Err(NINO_E_UNSUPPORTED)
    );
    // Four feature slots hold an MLP's one, not a 3x3 conv's nine.
    let four_slots = r#"{"wte_pos_enc": false, "max_feat_size": 4}"#;
    assert_eq!(
        Model::new("conv:4,6,6", "nino_no_posw", Some(four_slots)).plan(NINO_STORAGE_F32),
        Err(NINO_E_UNSUPPORTED)
    );
    assert!(Model::new("mlp:32", "nino_no_posw", Some(four_slots)).plan(NINO_STORAGE_F32).is_ok());
}
