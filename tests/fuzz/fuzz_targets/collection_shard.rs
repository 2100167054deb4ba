//! A `nino collect` trajectory shard: `Trajectory::from_bytes` (what `nino meta-train` reads for every
//! trajectory after the manifest's size and CRC-32 check). A shard read back holds `n_states` states of
//! `params` values and two metrics per state, and every state is addressable; a refusal is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_host::io::collection::Trajectory;

fuzz_target!(|data: &[u8]| {
    match Trajectory::from_bytes(data) {
        Ok(t) => {
            assert_eq!(t.states.len(), t.n_states * t.params, "states of another size than the metadata's");
            assert_eq!(t.metrics.len(), 2 * t.n_states, "metrics of another size than the metadata's");
            assert!(t.n_states >= 1);
            let last = t.n_states - 1;
            assert_eq!(t.state(last).len(), t.params);
            let _ = (t.train_loss(last), t.step(last));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "a refusal of more than one line: {msg:?}");
        }
    }
});
