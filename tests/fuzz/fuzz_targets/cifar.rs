//! CIFAR-10 and CIFAR-100 binary records from arbitrary (possibly gzipped) bytes, then normalised per channel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_fuzz::cifar::{Cifar, RECORD_PIXELS, parse_records};
use nino_fuzz::data::{Dataset, Normalization, maybe_gunzip};

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = maybe_gunzip(data.to_vec()) else { return };
    for format in [Cifar::Ten, Cifar::Hundred] {
        let Ok(r) = parse_records(format, &bytes) else { continue };
        assert_eq!(r.len() * format.record_len(), bytes.len());
        assert_eq!(r.pixels.len(), r.len() * RECORD_PIXELS);
        assert!(r.labels.iter().all(|&l| usize::from(l) < format.classes()));
        let ds = Dataset::from_cifar(&r, &Normalization::CIFAR);
        assert_eq!((ds.images.len(), ds.len()), (r.pixels.len(), r.len()));
        assert!(ds.images.iter().all(|x| x.is_finite()));
    }
});
