//! Shared helpers of the workspace-level integration tests: reading the golden fixtures.

use std::path::PathBuf;

/// Path of a file under the repository's `fixtures/` folder.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures").join(rel)
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

/// Largest absolute difference between two equally long slices; NaN when any difference is NaN (`f32::max`
/// would drop it, and a NaN prediction would pass every bound).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, |m, d| if d > m || d.is_nan() { d } else { m })
}

/// Largest absolute value of a slice.
pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

/// Asserts `max |got - want| <= rel * max |want| + abs`, printing the figures on failure; fails on any NaN.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    let d = max_abs_diff(got, want);
    let m = max_abs(want);
    assert!(d <= rel * m + abs, "{what}: max |diff| = {d:e} > {rel:e} * max |ref| ({m:e}) + {abs:e}");
}

/// The four golden target networks: fixture name and arch spec.
pub const GOLDEN: [(&str, &str); 4] =
    [("debug", "conv:4,6,6"), ("fm16", "conv:16,32,32"), ("fm32", "conv:32,64,64"), ("mlp_fm", "mlp:32")];

#[cfg(test)]
mod tests {
    #[test]
    fn a_nan_difference_fails_the_comparison() {
        assert!(super::max_abs_diff(&[1.0, f32::NAN, 2.0], &[1.0, 1.0, 1.0]).is_nan());
        assert!(
            std::panic::catch_unwind(|| super::assert_close("nan", &[f32::NAN, 1.0], &[1.0, 1.0], 1.0, 1.0)).is_err()
        );
        assert_eq!(super::max_abs_diff(&[1.0, 3.0], &[1.0, 1.5]), 1.5);
    }
}
