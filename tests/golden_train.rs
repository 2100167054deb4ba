//! Golden tests of the training path: logits, loss, full gradient and three Adam steps of the four
//! golden target networks at `history[4]`, against the reference PyTorch outputs in `fixtures/golden`.

use nino_core::adam::{AdamConfig, adam_step};
use nino_core::net;
use nino_core::ops::gemm::Portable;
use nino_host::training::engine::Engine;
use nino_tests::{GOLDEN, assert_close, train_case as case};

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
            c.check_adam_step(name, s, e.params());
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
