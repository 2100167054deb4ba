//! Gradient checks: every parameter of every variant (MLP, GRU, LSTM head; with and without centrality)
//! against central finite differences, on a tiny conv net and a tiny MLP.

extern crate std;

use super::*;
use crate::arch::{Arch, InputShape};
use crate::graph::EdgeType;
use crate::ops::Portable;
use crate::rng::SplitMix64;
use std::vec;
use std::vec::Vec;

fn cfg(head: Head, centrality: bool) -> Config {
    Config {
        hid: 4,
        layers: 3,
        ctx: 3,
        lpe: 3,
        seq_len: 4,
        wte_pos_enc: false,
        upd_scale: 0.7,
        head,
        centrality,
        ..Config::default()
    }
}

fn uniform(r: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (2.0 * r.unit() - 1.0) * scale).collect()
}

struct Data {
    graph: NeuralGraph,
    attr: Vec<f32>,
    lpe: Vec<f32>,
    cent: Vec<f32>,
}

fn data(arch: &Arch, c: &Config, seed: u64) -> Data {
    let graph = NeuralGraph::new(arch);
    let (e, n, f) = (graph.num_edges(), graph.num_nodes(), graph.feat_slots());
    let mut r = SplitMix64::new(seed);
    let attr = uniform(&mut r, e * f * c.ctx, 1.5);
    let lpe = uniform(&mut r, n * c.lpe, 0.5);
    let cent = if c.centrality { (0..n).map(|_| r.unit()).collect() } else { vec![] };
    Data { graph, attr, lpe, cent }
}

fn sample(d: &Data) -> Sample<'_> {
    Sample { graph: &d.graph, attr: &d.attr, lpe: &d.lpe, centrality: &d.cent }
}

/// `L = sum w * pred` (smooth, so finite differences are exact up to rounding) and its gradient.
fn linear_loss(lay: &Layout, p: &[f32], d: &Data, w: &[f32]) -> (f64, Vec<f32>) {
    let mut scratch = vec![0.0; scratch_len(&lay.cfg, &d.graph)];
    let mut grad = vec![0.0; lay.len];
    let mut value = 0.0f64;
    let hz = lay.cfg.seq_len;
    backprop(Compute::portable(&Portable), lay, p, &sample(d), hz, &mut scratch, &mut grad, &mut |pred, dpred| {
        value = pred.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        dpred.copy_from_slice(w);
    })
    .unwrap();
    (value, grad)
}

fn check_variant(arch: &Arch, head: Head, centrality: bool) {
    check_depth(arch, head, centrality, 3);
}

/// [`check_variant`] at `layers` message-passing layers (the head reads `E_0` itself at one).
fn check_depth(arch: &Arch, head: Head, centrality: bool, layers: usize) {
    let c = Config { layers, ..cfg(head, centrality) };
    let lay = Layout::new(&c).unwrap();
    let d = data(arch, &c, 7);
    let mut r = SplitMix64::new(11);
    let p = uniform(&mut r, lay.len, 0.6);
    let outs = d.graph.num_edges() * d.graph.feat_slots() * c.seq_len;
    let w = uniform(&mut r, outs, 1.0);
    let (_, grad) = linear_loss(&lay, &p, &d, &w);

    // Every parameter: central differences in f32 with h = 1e-2. The loss is smooth (SiLU, sigmoid, tanh),
    // so the truncation error is O(h^2) ~ 1e-4 times third derivatives of order one; rounding of a loss of
    // a few hundred terms in f32 adds ~ 1e-6 / h. Measured over every variant below: at most 1.9e-4 (at
    // |g| = 0.93; 1.6e-4 at |g| = 0.075). The bound, 4e-4 + 0.1% of |g|, sits 3-7x above that noise, while
    // a wrong term (a missing factor, a transposed block, a dropped path) is off by O(gradient).
    let h = 1e-2f32;
    let mut q = p.clone();
    let mut worst = (0.0f32, 0usize);
    for i in 0..lay.len {
        q[i] = p[i] + h;
        let up = linear_loss(&lay, &q, &d, &w).0;
        q[i] = p[i] - h;
        let down = linear_loss(&lay, &q, &d, &w).0;
        q[i] = p[i];
        let fd = ((up - down) / (2.0 * f64::from(h))) as f32;
        let err = (fd - grad[i]).abs() - (4e-4 + 1e-3 * grad[i].abs());
        // A NaN error is the worst of all (a plain `>` would skip it).
        if err.is_nan() || err > worst.0 {
            worst = (err, i);
        }
    }
    let mut name = Key::new();
    let _ = Layout::visit(&c, &mut |t| {
        if (t.offset..t.offset + t.len()).contains(&worst.1) {
            name = t.key.clone();
        }
        Ok(())
    });
    assert!(
        worst.0 <= 0.0,
        "{head:?} centrality={centrality}: gradient of {name} (index {}) off by {}",
        worst.1,
        worst.0
    );

    // Every tensor gets a gradient, except the last message-passing layer, which nothing reads (quirk Q1),
    // and with one layer the node projections that only it would read.
    Layout::visit(&c, &mut |t| {
        let norm: f32 = grad[t.offset..t.offset + t.len()].iter().map(|g| g * g).sum();
        assert!(norm.is_finite(), "{}: gradient norm {norm}", t.key);
        let mut last = Key::new();
        let _ = write!(last, "gnn.convs.{}.", layers - 1);
        // With one layer nothing reads the node features either.
        let nodes = t.key.starts_with("node_proj.") || t.key.starts_with("cent_proj.");
        let unused = t.key.starts_with(last.as_str()) || (layers == 1 && nodes);
        // layer_embed rows of edge types the graph lacks stay zero; the tensor as a whole must not.
        assert_eq!(norm == 0.0, unused, "{}: gradient norm {norm}", t.key);
        Ok(())
    })
    .unwrap();
}

use core::fmt::Write;
use layout::Key;

fn tiny_conv() -> Arch {
    Arch::parse("conv:2,3", InputShape { channels: 1, height: 7, width: 7 }, 2).unwrap()
}

fn tiny_mlp() -> Arch {
    Arch::parse("mlp:3", InputShape { channels: 1, height: 2, width: 2 }, 2).unwrap()
}

#[test]
fn mlp_head_gradients_match_finite_differences() {
    check_variant(&tiny_conv(), Head::Mlp, false);
    check_variant(&tiny_mlp(), Head::Mlp, false);
}

/// One and two layers: the head then reads the input projection's `E_0`, or the first edge update's output,
/// through the composed linears of `fold`.
#[test]
fn shallow_models_gradients_match_finite_differences() {
    for layers in [1, 2] {
        check_depth(&tiny_conv(), Head::Mlp, true, layers);
        check_depth(&tiny_conv(), Head::Lstm, false, layers);
    }
}

#[test]
fn centrality_gradients_match_finite_differences() {
    check_variant(&tiny_conv(), Head::Mlp, true);
}

#[test]
fn gru_head_gradients_match_finite_differences() {
    check_variant(&tiny_conv(), Head::Gru, false);
    check_variant(&tiny_mlp(), Head::Gru, true);
}

#[test]
fn lstm_head_gradients_match_finite_differences() {
    check_variant(&tiny_conv(), Head::Lstm, true);
    check_variant(&tiny_mlp(), Head::Lstm, false);
}

/// A model of `head` on the tiny conv net with random parameters and random targets for every slot.
fn l1_case(head: Head, centrality: bool) -> (Config, Layout, Data, Vec<f32>, Vec<f32>) {
    let c = cfg(head, centrality);
    let lay = Layout::new(&c).unwrap();
    let d = data(&tiny_conv(), &c, 3);
    let mut r = SplitMix64::new(5);
    let p = uniform(&mut r, lay.len, 0.6);
    let target = uniform(&mut r, d.graph.num_edges() * d.graph.feat_slots() * c.seq_len, 1.0);
    (c, lay, d, p, target)
}

#[test]
fn l1_loss_counts_the_mask_and_its_gradient_is_the_sign() {
    let (c, lay, d, p, target) = l1_case(Head::Mlp, false);
    let (e, f, s) = (d.graph.num_edges(), d.graph.feat_slots(), c.seq_len);
    let mut mask = vec![0u8; e * f * s];
    let mut n_mask = 0;
    crate::nowcast::features::for_each_edge(&d.graph, |ei, _, _, kind| {
        if kind != EdgeType::SelfLoop && ei % 2 == 0 {
            mask[ei * f * s..(ei + 1) * f * s].fill(1);
            n_mask += f * s;
        }
    });
    let mut scratch = vec![0.0; scratch_len(&c, &d.graph)];
    let mut pred = vec![0.0; e * f * s];
    predict(Compute::portable(&Portable), &lay, &p, &sample(&d), &mut scratch, &mut pred).unwrap();
    let want: f32 =
        pred.iter().zip(&target).zip(&mask).filter(|(_, m)| **m != 0).map(|((a, b), _)| (a - b).abs()).sum();
    let mut grad = vec![0.0; lay.len];
    let (loss, count) =
        loss_and_grad(Compute::portable(&Portable), &lay, &p, &sample(&d), &target, &mask, &mut scratch, &mut grad)
            .unwrap();
    assert_eq!(count, n_mask);
    assert!((loss - want).abs() <= 1e-4 * want, "{loss} vs {want}");
    // The L1 gradient is the linear-loss gradient with w = sign(pred - target) on the mask.
    let w: Vec<f32> =
        pred.iter().zip(&target).zip(&mask).map(|((a, b), m)| if *m == 0 { 0.0 } else { (a - b).signum() }).collect();
    let (_, want_grad) = linear_loss(&lay, &p, &d, &w);
    assert_eq!(grad, want_grad);
}

#[test]
fn windows_short_of_the_last_horizon_compute_only_the_reached_ones() {
    // Even edges count horizons 1-3, odd ones horizon 1, of S = 4: the head computes 3 horizons, and loss
    // and gradient must be those of the full model (every horizon computed, then masked).
    for (head, centrality) in [(Head::Mlp, false), (Head::Mlp, true), (Head::Gru, false), (Head::Lstm, true)] {
        let (c, lay, d, p, target) = l1_case(head, centrality);
        let (e, f, s) = (d.graph.num_edges(), d.graph.feat_slots(), c.seq_len);
        let mut mask = vec![0u8; e * f * s];
        crate::nowcast::features::for_each_edge(&d.graph, |ei, _, _, kind| {
            if kind != EdgeType::SelfLoop {
                let reach = if ei % 2 == 0 { 3 } else { 1 };
                mask[ei * f * s..(ei + 1) * f * s].chunks_exact_mut(s).for_each(|row| row[..reach].fill(1));
            }
        });
        assert_eq!(reached_horizons(&mask, s), 3);
        let mut scratch = vec![0.0; scratch_len(&c, &d.graph)];
        let mut pred = vec![0.0; e * f * s];
        predict(Compute::portable(&Portable), &lay, &p, &sample(&d), &mut scratch, &mut pred).unwrap();
        let (want, want_n) = masked_l1(&pred, &target, &mask, None);
        let w: Vec<f32> = pred
            .iter()
            .zip(&target)
            .zip(&mask)
            .map(|((a, b), m)| if *m == 0 { 0.0 } else { (a - b).signum() })
            .collect();
        let (_, want_grad) = linear_loss(&lay, &p, &d, &w);
        let mut grad = vec![0.0; lay.len];
        let (loss, n) =
            loss_and_grad(Compute::portable(&Portable), &lay, &p, &sample(&d), &target, &mask, &mut scratch, &mut grad)
                .unwrap();
        assert_eq!(n, want_n);
        assert!((loss - want).abs() <= 1e-5 * want, "{head:?}: loss {loss} vs {want}");
        for (i, (a, b)) in grad.iter().zip(&want_grad).enumerate() {
            // Same products in another GEMM shape: equal up to float reassociation.
            assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{head:?} centrality={centrality}: grad {i}: {a} vs {b}");
        }
    }
}

#[test]
fn reached_horizons_is_one_past_the_last_counted() {
    assert_eq!(reached_horizons(&[1, 0, 0, 0, 1, 1, 0, 0], 4), 2);
    assert_eq!(reached_horizons(&[0, 0, 0, 1], 4), 4);
    assert_eq!(reached_horizons(&[0; 8], 4), 1, "an empty mask still computes one horizon");
    assert_eq!(reached_horizons(&[], 4), 1);
}

#[test]
fn bad_inputs_are_errors() {
    let c = cfg(Head::Lstm, true);
    let lay = Layout::new(&c).unwrap();
    let d = data(&tiny_conv(), &c, 3);
    let p = vec![0.1; lay.len];
    let mut scratch = vec![0.0; scratch_len(&c, &d.graph)];
    let mut out = vec![0.0; d.graph.num_edges() * d.graph.feat_slots() * c.seq_len];
    let no_cent = Sample { centrality: &[], ..sample(&d) };
    assert!(predict(Compute::portable(&Portable), &lay, &p, &no_cent, &mut scratch, &mut out).is_err());
    assert!(predict(Compute::portable(&Portable), &lay, &p[1..], &sample(&d), &mut scratch, &mut out).is_err());
    let short = scratch.len() - 1;
    assert!(predict(Compute::portable(&Portable), &lay, &p, &sample(&d), &mut scratch[..short], &mut out).is_err());
    assert!(Layout::new(&Config { wte_pos_enc: true, ..c }).is_err());
    assert!(Layout::new(&Config { gnn: false, head: Head::Mlp, centrality: false, ..c }).is_err());
}

#[test]
fn layout_of_the_published_model_matches_its_parameter_count() {
    // nino_no_posw: 549,992 values (docs/spec.md §4.2).
    let c = Config { wte_pos_enc: false, ..Config::default() };
    assert_eq!(Layout::new(&c).unwrap().len, 549_992);
}

#[test]
fn window_scales_targets_with_the_inputs_statistics_and_masks_what_does_not_count() {
    let c = cfg(Head::Mlp, false);
    let arch = tiny_conv();
    let graph = NeuralGraph::new(&arch);
    let (p, e, f, s) = (arch.param_count(), graph.num_edges(), graph.feat_slots(), c.seq_len);
    let mut r = SplitMix64::new(1);
    let len = 2; // of S = 4 horizons
    let states = uniform(&mut r, (c.ctx + len) * p, 1.0);
    let mut scratch = vec![0.0; window::scratch_len(&c, &graph)];
    let (mut attr, mut target, mut mask) = (vec![0.0; e * f * c.ctx], vec![0.0; e * f * s], vec![0u8; e * f * s]);
    window::build(&c, &graph, &states, len, &mut scratch, &mut attr, &mut target, &mut mask).unwrap();
    // Inputs: exactly what the inference pipeline builds from the same c states.
    let mut scales = [crate::nowcast::scale::TensorScale::default(); crate::nowcast::MAX_TENSORS];
    let scales = &mut scales[..arch.tensor_count()];
    let x = &states[..c.ctx * p];
    crate::nowcast::scale::tensor_scales(&arch, x, c.ctx, scales).unwrap();
    let mut sx = vec![0.0; c.ctx * p];
    crate::nowcast::scale::scale_history(&arch, x, c.ctx, scales, &mut sx).unwrap();
    let mut want = vec![0.0; e * f * c.ctx];
    crate::nowcast::features::history_to_edge_attr(&graph, &sx, c.ctx, &mut want).unwrap();
    assert_eq!(attr, want);
    // Targets: the first parameter of the first tensor, target state j, scaled by the inputs' (mean, sd).
    let t0 = arch.tensor(0).unwrap();
    let (mean, sd) = (scales[0].mean, scales[0].sd + crate::nowcast::scale::SCALE_EPS);
    for j in 0..len {
        let y = (states[(c.ctx + j) * p + t0.offset] - mean) / sd;
        // Parameter 0 is conv weight [0, 0, 0, 0]: edge 0 (input 0 -> output 0), slot 0.
        assert_eq!(target[j], y);
        assert_eq!(mask[j], 1);
    }
    assert!(target[len..s].iter().all(|&v| v == 0.0) && mask[len..s].iter().all(|&m| m == 0));
    // Masked: every self-loop, and the padded slots 1..9 of every bias and linear edge (one value each).
    let mut counted = 0;
    crate::nowcast::features::for_each_edge(&graph, |ei, _, _, kind| {
        let row = &mask[ei * f * s..(ei + 1) * f * s];
        let real_slots = match kind {
            EdgeType::SelfLoop => 0,
            EdgeType::Bias | EdgeType::Linear => 1,
            EdgeType::Conv => f,
        };
        assert_eq!(row.iter().filter(|&&m| m == 1).count(), real_slots * len, "edge {ei} ({kind:?})");
        counted += real_slots;
    });
    assert_eq!(counted, p, "one real slot per parameter");
    assert!(window::build(&c, &graph, &states, 0, &mut scratch, &mut attr, &mut target, &mut mask).is_err());
}

#[test]
fn masked_l1_counts_only_the_mask() {
    let (pred, target, mask) = ([1.0, -2.0, 0.5, 3.0], [0.0, 1.0, 0.5, 100.0], [1u8, 1, 1, 0]);
    let mut d = [9.0; 4];
    // |1 - 0| + |-2 - 1| + |0.5 - 0.5| = 4 over 3 masked entries; the unmasked 97 is ignored.
    assert_eq!(masked_l1(&pred, &target, &mask, Some(&mut d)), (4.0, 3));
    assert_eq!(d, [1.0, -1.0, 0.0, 0.0]);
    assert_eq!(masked_l1(&pred, &target, &mask, None), (4.0, 3));
}

#[test]
fn masked_l1_lanes_and_tail_match_the_plain_sum() {
    // 8 lanes x 2 + a tail of 5: every term is a small integer, so any order of summation is exact.
    let n = 21;
    let pred: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let target: Vec<f32> = (0..n).map(|i| (i % 4) as f32).collect();
    let mut mask: Vec<u8> = (0..n).map(|i| u8::from(i % 3 != 0)).collect();
    let mut pred_off = pred.clone();
    pred_off[3] = f32::NAN; // off the mask (i % 3 == 0): must not reach the loss
    pred_off[18] = f32::INFINITY;
    let (mut want, mut want_n, mut want_d) = (0.0f64, 0usize, vec![0.0f32; n]);
    for i in 0..n {
        if mask[i] != 0 {
            let r = f64::from(pred[i] - target[i]);
            want += r.abs();
            want_n += 1;
            want_d[i] = if r > 0.0 {
                1.0
            } else if r < 0.0 {
                -1.0
            } else {
                0.0
            };
        }
    }
    let mut d = vec![9.0f32; n];
    assert_eq!(masked_l1(&pred_off, &target, &mask, Some(&mut d)), (want as f32, want_n));
    assert_eq!(d, want_d);
    assert_eq!(masked_l1(&pred_off, &target, &mask, None), (want as f32, want_n));
    // A non-finite prediction on the mask does reach it (the caller rejects the non-finite loss).
    mask[3] = 1;
    assert!(masked_l1(&pred_off, &target, &mask, None).0.is_nan());
}

#[test]
fn masked_l1_by_horizon_splits_the_pooled_loss() {
    // Two rows of S = 3 horizons; the second row reaches only its first horizon.
    let pred = [1.0, 2.0, 3.0, -1.0, 5.0, f32::NAN];
    let target = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let mask = [1u8, 1, 1, 1, 0, 0];
    let (mut sums, mut counts) = ([0.0f64; 3], [0u64; 3]);
    masked_l1_by_horizon(&pred, &target, &mask, &mut sums, &mut counts).unwrap();
    assert_eq!((sums, counts), ([1.0 + 2.0, 2.0, 3.0], [2, 1, 1]));
    // Slot by slot it adds up to the pooled loss, and a second call accumulates.
    let (pooled, n) = masked_l1(&pred, &target, &mask, None);
    assert_eq!((sums.iter().sum::<f64>() as f32, counts.iter().sum::<u64>() as usize), (pooled, n));
    masked_l1_by_horizon(&pred, &target, &mask, &mut sums, &mut counts).unwrap();
    assert_eq!(counts, [4, 2, 2]);
}

#[test]
fn masked_l1_by_horizon_rejects_ragged_buffers() {
    let (p, m) = ([0.0f32; 6], [1u8; 6]);
    let (mut sums, mut counts) = ([0.0f64; 4], [0u64; 4]);
    assert!(masked_l1_by_horizon(&p, &p, &m, &mut sums, &mut counts).is_err(), "6 is not rows of 4");
    assert!(masked_l1_by_horizon(&p, &p[..5], &m, &mut sums[..3], &mut counts[..3]).is_err());
    assert!(masked_l1_by_horizon(&p, &p, &m[..3], &mut sums[..3], &mut counts[..3]).is_err());
    assert!(masked_l1_by_horizon(&p, &p, &m, &mut sums[..3], &mut counts[..2]).is_err());
    assert!(masked_l1_by_horizon(&p, &p, &m, &mut [], &mut []).is_err());
    assert_eq!(counts, [0; 4], "nothing is added on an error");
}

/// Records whether any product it runs reads an operand inside `forbidden` (address ranges), then runs
/// the product with bf16 operands.
struct Watch {
    forbidden: Vec<core::ops::Range<usize>>,
    seen: core::sync::atomic::AtomicBool,
    calls: core::sync::atomic::AtomicUsize,
}

impl crate::ops::Gemm for Watch {
    fn gemm(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], ldc: usize, beta: f32) -> Result<(), Error> {
        use core::sync::atomic::Ordering::Relaxed;
        for x in [a.data, b.data] {
            let r = x.as_ptr_range();
            let (lo, hi) = (r.start as usize, r.end as usize);
            if self.forbidden.iter().any(|f| lo < f.end && f.start < hi) {
                self.seen.store(true, Relaxed);
            }
        }
        self.calls.fetch_add(1, Relaxed);
        crate::ops::PortableBf16.gemm(a, b, c, ldc, beta)
    }
}

#[test]
fn mixed_precision_keeps_the_raw_inputs_at_full_precision() {
    use core::sync::atomic::Ordering::Relaxed;
    for (head, layers) in [(Head::Mlp, 3), (Head::Lstm, 3), (Head::Gru, 2), (Head::Mlp, 1), (Head::Lstm, 1)] {
        let c = Config { layers, ..cfg(head, true) };
        let lay = Layout::new(&c).unwrap();
        let d = data(&tiny_conv(), &c, 7);
        let p = uniform(&mut SplitMix64::new(11), lay.len, 0.6);
        let outs = d.graph.num_edges() * d.graph.feat_slots() * c.seq_len;
        let w = uniform(&mut SplitMix64::new(13), outs, 1.0);
        let range = |v: &[f32]| {
            let r = v.as_ptr_range();
            r.start as usize..r.end as usize
        };
        let watch = Watch {
            forbidden: vec![range(&d.attr), range(&d.lpe), range(&d.cent)],
            seen: false.into(),
            calls: 0.into(),
        };
        let run = |cx: Compute<'_>| {
            let mut scratch = vec![0.0; scratch_len(&c, &d.graph)];
            let mut grad = vec![0.0; lay.len];
            backprop(cx, &lay, &p, &sample(&d), c.seq_len, &mut scratch, &mut grad, &mut |_, dpred| {
                dpred.copy_from_slice(&w)
            })
            .unwrap();
            grad
        };
        let full = run(Compute::portable(&Portable));
        let mixed = run(Compute { lo: &watch, ..Compute::portable(&Portable) });
        assert!(watch.calls.load(Relaxed) > 0, "{head:?} x{layers}: no product ran in bf16");
        assert!(!watch.seen.load(Relaxed), "{head:?} x{layers}: a bf16 product read the history, LPE or centrality");
        // bf16 operands carry 8 significant bits: the gradient moves by about 2^-8 relative, not more.
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let diff: Vec<f32> = full.iter().zip(&mixed).map(|(a, b)| a - b).collect();
        let rel = norm(&diff) / norm(&full);
        assert!(rel > 1e-5 && rel < 2e-2, "{head:?} x{layers}: relative change {rel}");
    }
}
