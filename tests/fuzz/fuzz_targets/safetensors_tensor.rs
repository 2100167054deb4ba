//! One f32 tensor (`nino nowcast --history`, `--lpe`) from arbitrary safetensors bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_fuzz::tensor_file::f32_tensor_from_bytes;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    for name in ["history", "lpe"] {
        if let Ok((shape, values)) = f32_tensor_from_bytes(data, name, path) {
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(n, Some(values.len()), "shape {shape:?} disagrees with {} values", values.len());
        }
    }
});
