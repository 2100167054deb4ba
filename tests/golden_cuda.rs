//! The CUDA kernels and the code that launches them against nino-core and the reference's golden
//! fixtures, on two devices: the host shim (`NINO_SHIM_LIB`, built by `nino-cuda/shim/build.sh`;
//! `scripts/cuda-ci.sh` does both), and a real GPU (the `gpu_*` tests, every golden fixture). A test whose
//! device is missing prints one `SKIP:` line; `NINO_REQUIRE_SHIM=1` (CI) and `NINO_REQUIRE_GPU=1`
//! (`scripts/gpu-check.sh`) turn that into a failure. A GPU that is present but broken always fails.
//!
//! Tolerances, and why:
//! - Against the fixtures, the bounds of `golden_nino.rs` and `golden_train.rs`, which nino-core meets:
//!   intermediates 1e-5 and predictions 1e-4 relative to the largest reference value; logits 1e-5, the
//!   loss 1e-6, gradients 1e-5 relative (+1e-8), Adam steps as `three_adam_steps_match_pytorch`.
//! - Against nino-core (same f32 formulas, same operation order inside each dot product but sums taken
//!   in another order, and the GPU's f16 rounding where stated): see each test; every bound is a few
//!   times the measured difference and far below the effect of a wrong index or a lost barrier.
//! - Adam, GAP and the loss follow nino-core operation for operation: bit for bit where the inputs agree.
//!
//! Comparisons are NaN-aware: a NaN anywhere fails.

use nino_core::adam::{AdamConfig, adam_step};
use nino_core::nowcast::{self, Backend};
use nino_core::ops::Portable;
use nino_core::{Arch, InputShape, NeuralGraph, net};
use nino_cuda::nowcast::NodeStates;
use nino_cuda::{Device, Gpu, GpuStatus, Nowcaster, Precision, Shim, Trainer};
use nino_host::io::weights::WeightSet;
use nino_tests::{Fixture, fixture_path, train_case as case, update_error};
use std::io::Write;

/// The shim, or `None` after printing why this test checks nothing.
fn shim(test: &str) -> Option<Shim> {
    match Shim::from_env() {
        Some(s) => Some(s.expect("NINO_SHIM_LIB names a loadable shim library")),
        None if std::env::var_os("NINO_REQUIRE_SHIM").is_some_and(|v| v == "1") => {
            panic!("NINO_REQUIRE_SHIM=1 but NINO_SHIM_LIB is not set")
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIP: {test}: NINO_SHIM_LIB not set (scripts/cuda-ci.sh); nothing checked"
            );
            None
        }
    }
}

/// GPU 0, or `None` after printing why this test checks nothing (only an absent GPU may be skipped).
fn gpu(test: &str) -> Option<Gpu> {
    let status = nino_cuda::probe();
    if status.may_skip() && std::env::var_os("NINO_REQUIRE_GPU").is_none_or(|v| v != "1") {
        let _ = writeln!(std::io::stderr(), "SKIP: {test}: no GPU ({status}); nothing checked");
        return None;
    }
    let GpuStatus::Available { .. } = status else { panic!("{test}: GPU required or present but unusable: {status}") };
    Some(Gpu::new().expect("GPU 0 with nino's kernels"))
}

/// `max |got - want|` and `max |want|`; NaN or a length mismatch fails outright.
fn diff(what: &str, got: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (mut d, mut m) = (0.0f32, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(!g.is_nan() && !w.is_nan(), "{what}: NaN at {i} (got {g}, want {w})");
        let e = (g - w).abs();
        if e > d {
            d = e;
        }
        if w.abs() > m {
            m = w.abs();
        }
    }
    (d, m)
}

/// Asserts `max |got - want| <= rel * max |want| + abs` (NaN-aware) and prints the relative figure.
fn close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    let (d, m) = diff(what, got, want);
    eprintln!("{what}: max |diff| {d:.3e} = {:.2e} x max |ref| {m:.3e}", d / m.max(f32::MIN_POSITIVE));
    assert!(d <= rel * m + abs, "{what}: max |diff| = {d:e} > {rel:e} * max |ref| ({m:e}) + {abs:e}");
}

/// Bit-for-bit equality, NaN-aware (a NaN is never equal).
fn same(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g == w && !g.is_nan(), "{what}: element {i}: {g:e} vs {w:e}");
    }
}

fn graph(spec: &str) -> NeuralGraph {
    NeuralGraph::new(&Arch::parse(spec, InputShape::FASHION_MNIST, 10).unwrap())
}

/// The published GNN and its folded buffer.
fn published() -> (WeightSet<f32>, Vec<f32>) {
    let w = WeightSet::<f32>::load(fixture_path("weights/nino_no_posw.safetensors")).unwrap();
    let buf = folded(&w);
    (w, buf)
}

fn folded(w: &WeightSet<f32>) -> Vec<f32> {
    let b = w.bind().unwrap();
    let nowcast::ModelWeights::Gnn(g) = &b.model else { panic!("not a GNN") };
    let mut buf = vec![0.0; nowcast::folded_len(&w.config)];
    nowcast::fold_gnn(g, &w.config, &mut buf).unwrap();
    buf
}

/// nino-core's folded nowcast with its own portable kernels, and its node states.
fn core_folded(
    w: &WeightSet<f32>,
    buf: &[f32],
    g: &NeuralGraph,
    history: &[f32],
    lpe: &[f32],
    k: usize,
) -> (Vec<f32>, NodeStates) {
    let m = nowcast::FoldedGnn::new(&w.config, buf).unwrap();
    let mut scratch = vec![0.0; nowcast::folded_scratch_len(g, &w.config)];
    let mut out = vec![0.0; g.arch().param_count()];
    let mut st = NodeStates { node_proj: Vec::new(), conv: Vec::new(), edge_out: None };
    let mut obs = |s: nowcast::Stage, v: &[f32]| match s {
        nowcast::Stage::NodeProj => st.node_proj = v.to_vec(),
        nowcast::Stage::Conv(_) => st.conv.push(v.to_vec()),
        _ => {}
    };
    nowcast::nowcast_folded(Backend::new(&Portable), &m, g, history, lpe, k, &mut scratch, &mut out, &mut obs).unwrap();
    (out, st)
}

const PRED_REL: f32 = 1e-4;
const MID_REL: f32 = 1e-5;

/// f32 kernels against nino-core's folded path and the reference, on the debug net and FM-16, every
/// fixture horizon. Node features and the edge outputs of the kernels are compared too.
///
/// Against nino-core (its portable kernels), measured on both nets and all three horizons: node
/// projection within 1.1e-7 of its largest value, layer outputs within 3e-7, predictions within 2.8e-7.
/// Sums of up to 128 products and of a node's messages are taken in another order (nino-core's GEMM
/// blocks them, and splits the edges in two halves; the kernels chain fmaf in order) and differ by a few
/// ulps, which stay that size through two layers. Bounds: 2e-6 (7x the largest measured), where a wrong
/// index or a missing barrier gives 1e-2 and more (nino-cuda/README.md, mutations).
fn nino_step_matches_core_and_reference<D: Device>(dev: &D, name: &str, spec: &str) {
    let (w, buf) = published();
    let m = nowcast::FoldedGnn::new(&w.config, &buf).unwrap();
    let fx = Fixture::load("golden", name);
    let g = graph(spec);
    let (history, lpe) = (fx.f32("history"), fx.f32("lpe8"));
    let mut nc = Nowcaster::new(dev, &m, &g, &lpe, Precision::F32).unwrap();
    nc.keep_edge_outputs().unwrap();
    // fm32 and mlp_fm hold no intermediate tensors.
    let mids = fx.names().contains(&"nino_no_posw.node_proj_x".to_string());
    for k in [1, 5, 40] {
        let what = |t: &str| format!("{name} k{k} {t}");
        let mut out = vec![0.0; g.arch().param_count()];
        nc.nowcast_host(&history, k, &mut out).unwrap();
        let st = nc.node_states().unwrap();
        let (core, cst) = core_folded(&w, &buf, &g, &history, &lpe, k);
        close(&what("pred_params vs core"), &out, &core, 2e-6, 0.0);
        close(
            &what("pred_params vs reference"),
            &out,
            &fx.f32(&format!("nino_no_posw.pred_params_k{k}")),
            PRED_REL,
            0.0,
        );
        let eo = st.edge_out.as_ref().unwrap();
        close(
            &what("edge_attr_out vs reference"),
            eo,
            &fx.f32(&format!("nino_no_posw.edge_attr_out_k{k}")),
            PRED_REL,
            0.0,
        );
        close(&what("node_proj vs core"), &st.node_proj, &cst.node_proj, 2e-6, 0.0);
        if mids {
            close(&what("node_proj vs reference"), &st.node_proj, &fx.f32("nino_no_posw.node_proj_x"), MID_REL, 0.0);
        }
        assert_eq!(st.conv.len(), 2);
        for (l, (ours, core)) in st.conv.iter().zip(&cst.conv).enumerate() {
            close(&what(&format!("conv{l}_x vs core")), ours, core, 2e-6, 0.0);
            if !mids {
                continue;
            }
            close(
                &what(&format!("conv{l}_x vs reference")),
                ours,
                &fx.f32(&format!("nino_no_posw.conv{l}_x")),
                MID_REL,
                0.0,
            );
        }
    }
}

/// f16 storage of the folded weights: every folded value rounded once (unit roundoff 4.9e-4), the math in
/// f32. Held to the bound nino-core's own f16 path meets (`f16_weights_keep_the_predicted_update`):
/// relative L2 error of the predicted update <= 3e-3 and cosine >= 0.99999 against the reference.
fn nino_step_with_f16_weights_keeps_the_update<D: Device>(dev: &D, name: &str, spec: &str) {
    let (w, buf) = published();
    let m = nowcast::FoldedGnn::new(&w.config, &buf).unwrap();
    let fx = Fixture::load("golden", name);
    let g = graph(spec);
    let (history, lpe) = (fx.f32("history"), fx.f32("lpe8"));
    let p = g.arch().param_count();
    let mut nc = Nowcaster::new(dev, &m, &g, &lpe, Precision::F16).unwrap();
    for k in [1, 40] {
        let mut out = vec![0.0; p];
        nc.nowcast_host(&history, k, &mut out).unwrap();
        let want = fx.f32(&format!("nino_no_posw.pred_params_k{k}"));
        let (rel, cos) = update_error(&out, &want, &history[4 * p..]);
        eprintln!("f16 {name} k={k}: relative update error {rel:.2e}, cosine {cos:.7}");
        assert!(rel <= 3e-3 && cos >= 0.99999, "{name} k={k}: rel {rel:e}, cos {cos}");
    }
}

/// A non-finite history or a horizon outside 1..=S is refused as nino-core refuses it, and the
/// parameters on the device are left alone.
#[test]
fn nino_step_refuses_bad_inputs_debug() {
    on_shim("nino_step_refuses_bad_inputs_debug", refuses_bad_history);
}

fn refuses_bad_history<D: Device>(dev: &D) {
    let (w, buf) = published();
    let m = nowcast::FoldedGnn::new(&w.config, &buf).unwrap();
    let fx = Fixture::load("golden", "debug");
    let g = graph("conv:4,6,6");
    let p = g.arch().param_count();
    let mut nc = Nowcaster::new(dev, &m, &g, &fx.f32("lpe8"), Precision::F32).unwrap();
    let mut history = fx.f32("history");
    let mut params = dev.upload_new(&vec![7.0f32; p]).unwrap();
    let hist = dev.upload_new(&history).unwrap();
    for k in [0, 41] {
        let e = nc.nowcast(&hist, k, &mut params).unwrap_err();
        assert!(e.to_string().contains("horizon"), "{e}");
    }
    history[3 * p + 5] = f32::NAN;
    let hist = dev.upload_new(&history).unwrap();
    let e = nc.nowcast(&hist, 1, &mut params).unwrap_err();
    assert!(e.to_string().contains("parameter history"), "{e}");
    assert!(dev.download_vec(&params).unwrap().iter().all(|&v| v == 7.0));
    assert!(Nowcaster::new(dev, &m, &g, &[0.0; 3], Precision::F32).is_err(), "lpe of the wrong size");
}

/// Forward, loss and gradient of the training kernels against the reference (golden_train's bounds) and
/// nino-core's `net` (the same products summed in another order). Measured against nino-core: logits
/// within 2e-7 of the largest logit, gradients within 5e-7 of the largest entry (a conv weight's
/// gradient sums 8 x 169 products here), the mean loss within 5e-8. Bounds: 1e-6 for logits, 3e-6 for
/// gradients (5x), 1e-6 absolute for the loss (O(1)).
fn training_kernels_match_core_and_reference<D: Device>(dev: &D, name: &str, spec: &str) {
    let c = case(name, spec);
    let n = c.y.len();
    let mut tr = Trainer::new(dev, &c.arch, &c.params, AdamConfig::new(c.lr), n).unwrap();
    let logits = tr.logits(&c.x).unwrap();
    let mut acts = vec![0.0; net::activation_len(&c.arch, n)];
    let mut scratch = vec![0.0; net::scratch_len(&c.arch, n)];
    let core = net::forward(&c.arch, &c.params, &c.x, &mut acts, &mut scratch, &Portable).unwrap().to_vec();
    close(&format!("{name} logits vs core"), &logits, &core, 1e-6, 0.0);
    close(&format!("{name} logits vs reference"), &logits, &c.fx.f32("batch_logits"), 1e-5, 1e-6);
    let loss = tr.gradient(&c.x, &c.y).unwrap();
    let grad = tr.grad().unwrap();
    let mut cgrad = vec![0.0; c.arch.param_count()];
    let closs =
        net::loss_and_grad(&c.arch, &c.params, &c.x, &c.y, &mut acts, &mut scratch, &mut cgrad, &Portable).unwrap();
    close(&format!("{name} loss vs core"), &[loss], &[closs], 0.0, 1e-6);
    close(&format!("{name} loss vs reference"), &[loss], &c.fx.f32("batch_loss"), 1e-6, 1e-6);
    close(&format!("{name} grad vs core"), &grad, &cgrad, 3e-6, 1e-9);
    close(&format!("{name} grad vs reference"), &grad, &c.fx.f32("batch_grad"), 1e-5, 1e-8);
    let ev = tr.evaluate(&c.x, &c.y).unwrap();
    let (csum, ccorrect) = (
        closs * n as f32,
        net::evaluate(&c.arch, &c.params, &c.x, &c.y, &mut acts, &mut scratch, &Portable).unwrap().1,
    );
    assert_eq!((ev.correct, ev.total), (ccorrect, n), "{name}: accuracy");
    close(&format!("{name} eval loss"), &[ev.loss * n as f32], &[csum], 0.0, 1e-5);
}

/// Three Adam steps against the reference (golden_train's criterion), and the Adam kernel against
/// nino-core's adam_step fed the same gradient: bit for bit (same f32 operations in the same order, no
/// contraction, IEEE division and square root on both sides).
fn adam_steps_match_core_bit_for_bit_and_the_reference<D: Device>(dev: &D, name: &str, spec: &str) {
    let c = case(name, spec);
    let cfg = AdamConfig::new(c.lr);
    let mut tr = Trainer::new(dev, &c.arch, &c.params, cfg, c.y.len()).unwrap();
    let n = c.arch.param_count();
    let (mut p, mut m, mut v, mut t) = (c.params.clone(), vec![0.0; n], vec![0.0; n], 0u64);
    for s in 1..=3 {
        // The step's own gradient (the kernels are deterministic, so recomputing it gives these bits).
        tr.gradient(&c.x, &c.y).unwrap();
        let g = tr.grad().unwrap();
        tr.train_step(&c.x, &c.y).unwrap();
        adam_step(&cfg, &mut p, &g, &mut m, &mut v, &mut t).unwrap();
        let got = tr.params().unwrap();
        same(&format!("{name} adam step {s} vs core"), &got, &p);
        let (gm, gv) = tr.adam_moments().unwrap();
        same(&format!("{name} adam m {s}"), &gm, &m);
        same(&format!("{name} adam v {s}"), &gv, &v);
        c.check_adam_step(name, s, &got);
    }
    assert_eq!(tr.step_count(), 3);
}

/// A label outside the classes is refused, as nino-core refuses it.
#[test]
fn training_refuses_bad_labels_debug() {
    on_shim("training_refuses_bad_labels_debug", refuses_bad_labels);
}

fn refuses_bad_labels<D: Device>(dev: &D) {
    let c = case("debug", "conv:4,6,6");
    let mut tr = Trainer::new(dev, &c.arch, &c.params, AdamConfig::new(c.lr), 8).unwrap();
    let mut y = c.y.clone();
    y[2] = 10;
    let e = tr.train_step(&c.x, &y).unwrap_err();
    assert!(e.to_string().contains("label out of range"), "{e}");
    assert!(tr.train_step(&c.x[..100], &c.y).is_err(), "partial example");
}

/// Runs `check` on the shim, if there is one.
fn on_shim(test: &str, check: impl FnOnce(&Shim)) {
    if let Some(dev) = shim(test) {
        check(&dev)
    }
}

/// The shim registers exactly the kernels the runtime launches (same names as the PTX, checked in
/// nino-cuda's unit tests), so no kernel goes untested through it.
#[test]
fn shim_registers_every_kernel() {
    on_shim("shim_registers_every_kernel", |d| {
        let mut got = d.kernel_names().unwrap();
        let mut want: Vec<String> = nino_cuda::kernels::Kernel::ALL.iter().map(|k| k.name().to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    });
}

#[test]
fn nino_step_debug() {
    on_shim("nino_step_debug", |d| nino_step_matches_core_and_reference(d, "debug", "conv:4,6,6"));
}

#[test]
fn nino_step_fm16() {
    on_shim("nino_step_fm16", |d| nino_step_matches_core_and_reference(d, "fm16", "conv:16,32,32"));
}

#[test]
fn nino_step_f16_debug() {
    on_shim("nino_step_f16_debug", |d| nino_step_with_f16_weights_keeps_the_update(d, "debug", "conv:4,6,6"));
}

#[test]
fn nino_step_f16_fm16() {
    on_shim("nino_step_f16_fm16", |d| nino_step_with_f16_weights_keeps_the_update(d, "fm16", "conv:16,32,32"));
}

#[test]
fn training_debug() {
    on_shim("training_debug", |d| training_kernels_match_core_and_reference(d, "debug", "conv:4,6,6"));
}

#[test]
fn training_fm16() {
    on_shim("training_fm16", |d| training_kernels_match_core_and_reference(d, "fm16", "conv:16,32,32"));
}

#[test]
fn training_mlp() {
    on_shim("training_mlp", |d| training_kernels_match_core_and_reference(d, "mlp_fm", "mlp:32"));
}

#[test]
fn adam_debug() {
    on_shim("adam_debug", |d| adam_steps_match_core_bit_for_bit_and_the_reference(d, "debug", "conv:4,6,6"));
}

#[test]
fn adam_fm16() {
    on_shim("adam_fm16", |d| adam_steps_match_core_bit_for_bit_and_the_reference(d, "fm16", "conv:16,32,32"));
}

#[test]
fn adam_mlp() {
    on_shim("adam_mlp", |d| adam_steps_match_core_bit_for_bit_and_the_reference(d, "mlp_fm", "mlp:32"));
}

/// Every golden fixture on a real GPU: the NiNo step (f32, and f16 storage), the training step and three
/// Adam steps, held to the shim's bounds. The GPU's expf/logf differ from libm's by up to 2 ulp, which the
/// bounds (set at 5-7x the measured accumulation-order differences) absorb; Adam stays bit for bit.
#[test]
fn gpu_parity_on_every_fixture() {
    let Some(dev) = gpu("gpu_parity_on_every_fixture") else { return };
    for (name, spec) in nino_tests::GOLDEN {
        nino_step_matches_core_and_reference(&dev, name, spec);
        training_kernels_match_core_and_reference(&dev, name, spec);
        adam_steps_match_core_bit_for_bit_and_the_reference(&dev, name, spec);
    }
    for (name, spec) in [("debug", "conv:4,6,6"), ("fm16", "conv:16,32,32")] {
        nino_step_with_f16_weights_keeps_the_update(&dev, name, spec);
    }
}

/// The refusals of the shim tests, on the GPU.
#[test]
fn gpu_refuses_bad_inputs() {
    let Some(dev) = gpu("gpu_refuses_bad_inputs") else { return };
    refuses_bad_history(&dev);
    refuses_bad_labels(&dev);
}
