//! Shared helpers of the workspace-level integration tests: reading the golden fixtures.

use std::path::PathBuf;

/// Path of a file under the repository's `fixtures/` folder (`NINO_FIXTURES` names it instead, for test
/// binaries run in another checkout than the one they were built in: `scripts/gpu-check.sh`).
pub fn fixture_path(rel: &str) -> PathBuf {
    match std::env::var_os("NINO_FIXTURES") {
        Some(dir) => PathBuf::from(dir).join(rel),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures").join(rel),
    }
}

/// A loaded safetensors fixture with its JSON metadata.
pub struct Fixture {
    bytes: Vec<u8>,
    /// The `<name>.json` beside the tensors.
    pub meta: serde_json::Value,
}

impl Fixture {
    /// Loads `fixtures/<dir>/<name>.safetensors` and `<name>.json`.
    pub fn load(dir: &str, name: &str) -> Fixture {
        let bytes = std::fs::read(fixture_path(&format!("{dir}/{name}.safetensors")))
            .unwrap_or_else(|e| panic!("fixture {dir}/{name}: {e}"));
        let json = std::fs::read_to_string(fixture_path(&format!("{dir}/{name}.json"))).expect("fixture json");
        Fixture { bytes, meta: serde_json::from_str(&json).expect("fixture json parses") }
    }

    fn view(&self, name: &str) -> safetensors::tensor::TensorView<'_> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("fixture parses");
        st.tensor(name).unwrap_or_else(|e| panic!("tensor {name}: {e}"))
    }

    /// Tensor names present.
    pub fn names(&self) -> Vec<String> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("fixture parses");
        st.names().into_iter().map(|s| s.to_string()).collect()
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.view(name).shape().to_vec()
    }

    /// A float32 tensor, flattened row-major.
    pub fn f32(&self, name: &str) -> Vec<f32> {
        let v = self.view(name);
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name} dtype");
        v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// An int64 tensor, flattened row-major.
    pub fn i64(&self, name: &str) -> Vec<i64> {
        let v = self.view(name);
        assert_eq!(v.dtype(), safetensors::Dtype::I64, "{name} dtype");
        v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
    }
}

/// The larger of two values, NaN if either is NaN (`f32::max` returns the other operand and so would
/// hide a NaN from every comparison folded through it).
pub fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}

/// Largest absolute difference between two equally long slices; NaN if any difference is NaN.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, nan_max)
}

/// Largest absolute value of a slice; NaN if any value is NaN.
pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, nan_max)
}

/// Asserts `max |got - want| <= rel * max |want| + abs`, printing the figures on failure. Fails on any NaN
/// or infinity in either slice, and on empty slices (a comparison of nothing proves nothing).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    assert!(!want.is_empty(), "{what}: nothing to compare");
    assert!(got.iter().chain(want).all(|v| v.is_finite()), "{what}: NaN or infinity in the values compared");
    let d = max_abs_diff(got, want);
    let m = max_abs(want);
    assert!(d <= rel * m + abs, "{what}: max |diff| = {d:e} > {rel:e} * max |ref| ({m:e}) + {abs:e}");
}

/// The four golden target networks: fixture name and arch spec.
pub const GOLDEN: [(&str, &str); 4] =
    [("debug", "conv:4,6,6"), ("fm16", "conv:16,32,32"), ("fm32", "conv:32,64,64"), ("mlp_fm", "mlp:32")];

/// Relative L2 error of a predicted update `ours - last` against the reference's `want - last`, and the
/// cosine between the two updates (NaN predictions make both NaN, which fails any bound).
pub fn update_error(ours: &[f32], want: &[f32], last: &[f32]) -> (f64, f64) {
    let (mut dd, mut rr, mut oo, mut or) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for ((o, w), l) in ours.iter().zip(want).zip(last) {
        let (uo, uw) = ((o - l) as f64, (w - l) as f64);
        dd += (uo - uw) * (uo - uw);
        rr += uw * uw;
        oo += uo * uo;
        or += uo * uw;
    }
    ((dd / rr).sqrt(), or / (oo * rr).sqrt())
}

/// A golden target network at `history[4]` with the fixture's batch: what the training-step tests start from.
pub struct TrainCase {
    /// The network.
    pub arch: nino_core::Arch,
    /// Its fixture.
    pub fx: Fixture,
    /// Parameters at `history[4]`.
    pub params: Vec<f32>,
    /// `batch_x`.
    pub x: Vec<f32>,
    /// `batch_y`.
    pub y: Vec<u32>,
    /// The fixture's Adam learning rate.
    pub lr: f32,
}

impl TrainCase {
    /// Checks parameters after Adam step `s` against the reference's `adam_params_step{s}`, so the golden
    /// training tests of every device share one criterion.
    ///
    /// Adam moves a parameter by lr * m_hat / (sqrt(v_hat) + eps), whose size is ~lr whatever the
    /// gradient's size. Where the reference gradient is well above eps (|g| >= 1e-6) that ratio is well
    /// conditioned and our gradient's ~1e-5 relative error moves it by ~lr * 1e-5 per step, so 2e-6 per step
    /// (plus ulps of parameters of O(1)) is tight. Where the reference left a parameter exactly unchanged (a
    /// zero gradient: 99.7% of the small-gradient entries, dead ReLU paths), ours must be unchanged too, bit
    /// for bit. The few left (|g| < 1e-6 but moved; FM-32 has entries of 1e-9, at the level of summation
    /// noise) are decided by rounding: only Adam's step bound holds, |change| <= lr per step, so the
    /// difference is at most lr * s; they are counted, so that bound cannot silently cover the bulk again.
    pub fn check_adam_step(&self, what: &str, s: usize, got: &[f32]) {
        let want = self.fx.f32(&format!("adam_params_step{s}"));
        let ref_grad = self.fx.f32("batch_grad");
        assert!(got.len() == want.len() && want.len() == self.params.len(), "{what} adam step {s}: length");
        let (mut strict, mut loose, mut n_loose, mut moved) = (0f32, 0f32, 0usize, 0usize);
        for (((got, w), g), p0) in got.iter().zip(&want).zip(&ref_grad).zip(&self.params) {
            let d = (got - w).abs();
            assert!(d.is_finite(), "{what} adam step {s}: NaN or infinite parameter");
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
        eprintln!(
            "{what} adam step {s}: max |diff| {strict:.2e} (|g| >= 1e-6), {loose:.2e} ({n_loose} moved with |g| < 1e-6)"
        );
        assert!(strict <= 2e-6 * sf + 1e-6, "{what} adam step {s}: max |diff| where |g| >= 1e-6 is {strict:e}");
        assert_eq!(moved, 0, "{what} adam step {s}: parameters the reference left unchanged moved");
        assert!(loose <= self.lr * sf, "{what} adam step {s}: max |diff| where |g| < 1e-6 is {loose:e}");
        assert!(n_loose * 100 <= self.params.len(), "{what} adam step {s}: {n_loose} loosely checked parameters");
    }
}

/// Loads the training case of golden network `name` (`spec` its arch).
pub fn train_case(name: &str, spec: &str) -> TrainCase {
    let fx = Fixture::load("golden", name);
    let arch = nino_core::Arch::parse(spec, nino_core::InputShape::FASHION_MNIST, 10).expect("golden spec parses");
    let p = arch.param_count();
    let hist = fx.f32("history");
    assert_eq!(hist.len(), 5 * p, "{name}: history is [5, P]");
    let params = hist[4 * p..].to_vec();
    let y = fx.i64("batch_y").into_iter().map(|c| u32::try_from(c).expect("label")).collect();
    let lr = fx.meta["lr"].as_f64().expect("lr in fixture json") as f32;
    TrainCase { x: fx.f32("batch_x"), y, params, arch, fx, lr }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "NaN or infinity")]
    fn a_nan_output_fails_the_comparison() {
        assert_close("nan", &[1.0, f32::NAN], &[1.0, 2.0], 1e-3, 1e-3);
    }

    #[test]
    fn nan_max_keeps_nan() {
        assert!(max_abs_diff(&[0.0, f32::NAN, 5.0], &[0.0, 0.0, 0.0]).is_nan());
        assert!(max_abs(&[f32::NAN, 1.0]).is_nan());
        assert_eq!(max_abs_diff(&[1.0, -2.0], &[1.5, -2.0]), 0.5);
    }
}
