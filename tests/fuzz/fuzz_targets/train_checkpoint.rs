//! `nino train --resume`'s reader: `Checkpoint::from_bytes` on the bytes as they are (most changes fail the
//! CRC-32), then on the same bytes resealed with a fresh checksum, so the checks behind it (shapes, counters,
//! verdict codes, finite values) see every change too. A checkpoint read back must be whole and finite, and
//! write and read back again; a refusal is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_host::run::checkpoint::Checkpoint;
use std::path::Path;

fn check(bytes: &[u8]) {
    let path = Path::new("fuzz.ckpt");
    match Checkpoint::from_bytes(bytes, path) {
        Ok(c) => {
            let p = c.params.len();
            assert!(c.adam_m.len() == p && c.adam_v.len() == p, "moments of another length than the parameters");
            let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
            assert!(finite(&c.params) && finite(&c.adam_m) && finite(&c.adam_v), "a non-finite state was read");
            if let Some(n) = &c.nino {
                assert_eq!(n.history.len(), n.ctx * p, "history of another size than ctx x params");
                assert!(finite(&n.history));
            }
            let again = c.to_bytes().expect("a checkpoint read back serialises");
            assert!(Checkpoint::from_bytes(&again, path).is_ok(), "a checkpoint read back does not read again");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "a refusal of more than one line: {msg:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(resealed) = Checkpoint::reseal(data) {
        check(&resealed);
    }
});
