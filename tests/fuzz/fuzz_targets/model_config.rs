//! A checkpoint's `model_args` JSON (header metadata or the JSON file beside the weights), then binding a
//! model of that configuration to tensors that exist only when they are small.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_core::nowcast::{Config, NinoWeights};

static ZEROS: [f32; 4096] = [0.0; 4096];

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::from_json(json) else { return };
    assert!(config.validate().is_ok(), "from_json returned a config that does not validate: {config:?}");
    // Every tensor the configuration asks for, as long as its claimed size fits the buffer.
    let _ = NinoWeights::bind(config, |_, shape| {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        ZEROS.get(..n)
    });
    // And nothing at all.
    assert!(NinoWeights::<f32>::bind(config, |_, _| None).is_err());
});
