//! NiNo weights from arbitrary safetensors bytes: load, bind, round to f16, bind again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_fuzz::weights::WeightSet;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // A path with no JSON beside it: `model_args` must come from the header metadata.
    let path = Path::new("/nonexistent/nino-fuzz/weights.safetensors");
    let Ok(set) = WeightSet::from_bytes(data, path) else { return };
    // `from_bytes` validated every key the model reads, so binding cannot fail any more.
    assert!(set.bind().is_ok(), "a loaded weight set must bind");
    if let Ok(half) = set.to_f16() {
        assert!(half.bind().is_ok(), "the f16 copy must bind like the f32 one");
        assert_eq!(half.num_values(), set.num_values());
    }
});
