//! A `nino collect` folder's `manifest.json`: `Manifest::parse`, then what `nino collect` and
//! `nino meta-train` ask of one (the cross product's items, the state count, a comparison of settings). A
//! manifest read back writes and reads back equal; a refusal is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_host::io::collection::Manifest;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Manifest::parse(text, Path::new("manifest.json")) {
        Ok(m) => {
            let c = &m.config;
            let _ = (c.len(), c.n_states(), c.is_empty(), c.difference(c));
            for e in &m.trajectories {
                let _ = c.item(e.index);
            }
            for i in 0..c.len().min(64) {
                assert!(c.item(i).is_some(), "item {i} of {} missing", c.len());
            }
            assert!(c.item(c.len()).is_none());
            let again = serde_json::to_string(&m).expect("a manifest read back serialises");
            let back = Manifest::parse(&again, Path::new("manifest.json")).expect("and reads back");
            // NaN learning rates or losses compare unequal; compare the text instead.
            assert_eq!(serde_json::to_string(&back).unwrap(), again, "a manifest does not round-trip");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "a refusal of more than one line: {msg:?}");
        }
    }
});
