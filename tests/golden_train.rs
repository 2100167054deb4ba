//! Golden tests of the training path: logits, loss, full gradient and three Adam steps of the four
//! golden target networks at `history[4]`, against the reference PyTorch outputs in `fixtures/golden`.

use nino_core::adam::{AdamConfig, adam_step};
use nino_core::net;
use nino_core::ops::gemm::Portable;
use nino_host::training::engine::Engine;
use nino_tests::{GOLDEN, assert_close, nan_max, train_case as case};

#[test]
fn logits_loss_and_gradient_match_pytorch() {
    for (name, spec) in GOLDEN {
        let c = case(name, spec);
        let n = c.y.len();
        let mut acts = vec![0.0; net::activation_len(&c.arch, n)];
        let mut scratch = vec![0.0; net::scratch_len(&c.arch, n)];
        let logits = net::forward(&c.arch, &c.params, &c.x, &mut acts, &mut scratch, &Portable).unwrap().to_vec();
        // f32 forward through at most 4 layers with a different summation order (im2col GEMM against
        // MKL-DNN's direct conv): a few ulps of the largest logit; 1e-5 relative leaves 10x margin.
        assert_close(&format!("{name} logits"), &logits, &c.fx.f32("batch_logits"), 1e-5, 1e-6);
        let mut grad = vec![0.0; c.arch.param_count()];
        let loss =
            net::loss_and_grad(&c.arch, &c.params, &c.x, &c.y, &mut acts, &mut scratch, &mut grad, &Portable).unwrap();
        // The mean of 8 cross-entropies of O(1): 1e-6 absolute is ~10 ulps.
        assert_close(&format!("{name} loss"), &[loss], &c.fx.f32("batch_loss"), 1e-6, 1e-6);
        // Gradients sum hundreds to thousands of products (a 3x3 conv weight over 8*169 pixels) whose
        // terms cancel; relative to the largest gradient entry, 1e-5 allows for the different order.
        let want = c.fx.f32("batch_grad");
        assert_close(&format!("{name} grad"), &grad, &want, 1e-5, 1e-8);
        // The host engine (threads, chunks, gemm crate) must agree with the reference just as well.
        let mut e = Engine::new(c.arch.clone(), c.params.clone(), AdamConfig::new(c.lr), 8).unwrap();
        let l2 = e.gradient(&c.x, &c.y).unwrap();
        assert_close(&format!("{name} engine loss"), &[l2], &c.fx.f32("batch_loss"), 1e-6, 1e-6);
        assert_close(&format!("{name} engine grad"), e.last_grad(), &want, 1e-5, 1e-8);
    }
}

#[test]
fn three_adam_steps_match_pytorch() {
    for (name, spec) in GOLDEN {
        let c = case(name, spec);
        let mut e = Engine::new(c.arch.clone(), c.params.clone(), AdamConfig::new(c.lr), 8).unwrap();
        for s in 1..=3 {
            e.train_step(&c.x, &c.y).unwrap();
            let want = c.fx.f32(&format!("adam_params_step{s}"));
            // Adam moves a parameter by lr * m_hat / (sqrt(v_hat) + eps), whose size is ~lr whatever the
            // gradient's size. Where the reference gradient is well above eps (|g| >= 1e-6) that ratio is
            // well conditioned and our gradient's ~1e-5 relative error moves it by ~lr * 1e-5 per step, so
            // 2e-6 per step (plus ulps of parameters of O(1)) is tight. Where the reference left a parameter
            // exactly unchanged (a zero gradient: 99.7% of the small-gradient entries, dead ReLU paths), ours
            // must be unchanged too, bit for bit. The few left (|g| < 1e-6 but moved; FM-32 has entries of
            // 1e-9, at the level of summation noise) are decided by rounding: only Adam's step bound holds,
            // |change| <= lr per step, so the difference is at most lr * s, and they are counted so the
            // bound cannot silently cover the bulk again.
            let ref_grad = c.fx.f32("batch_grad");
            let (mut strict, mut loose, mut n_loose, mut moved) = (0f32, 0f32, 0usize, 0usize);
            for (((got, w), g), p0) in e.params().iter().zip(&want).zip(&ref_grad).zip(&c.params) {
                let d = (got - w).abs();
                assert!(d.is_finite(), "{name} adam step {s}: NaN or infinite parameter");
                if g.abs() >= 1e-6 {
                    strict = nan_max(strict, d);
                } else if w == p0 {
                    if got != p0 {
                        moved += 1;
                    }
                } else {
                    loose = nan_max(loose, d);
                    n_loose += 1;
                }
            }
            let sf = s as f32;
            assert!(strict <= 2e-6 * sf + 1e-6, "{name} adam step {s}: max |diff| where |g| >= 1e-6 is {strict:e}");
            assert_eq!(moved, 0, "{name} adam step {s}: parameters the reference left unchanged moved");
            assert!(loose <= c.lr * sf, "{name} adam step {s}: max |diff| where |g| < 1e-6 is {loose:e}");
            assert!(n_loose * 100 <= c.params.len(), "{name} adam step {s}: {n_loose} loosely checked parameters");
        }
        assert_eq!(e.adam_step_count(), 3);
    }
}

#[test]
fn adam_on_the_reference_gradient_matches_pytorch_step_one() {
    // Isolates the optimizer: feed the reference's own gradient, so only Adam's arithmetic differs.
    for (name, spec) in GOLDEN {
        let c = case(name, spec);
        let mut p = c.params.clone();
        let g = c.fx.f32("batch_grad");
        let (mut m, mut v, mut t) = (vec![0.0; p.len()], vec![0.0; p.len()], 0);
        adam_step(&AdamConfig::new(c.lr), &mut p, &g, &mut m, &mut v, &mut t).unwrap();
        // Same gradient, same op order as torch: a few ulps of the parameters (|p| < ~2).
        assert_close(&format!("{name} adam(ref grad)"), &p, &c.fx.f32("adam_params_step1"), 0.0, 1e-6);
    }
}
