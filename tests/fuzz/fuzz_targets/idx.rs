//! IDX images and labels from arbitrary (possibly gzipped) bytes, then normalised into a dataset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_fuzz::data::{Dataset, Normalization, maybe_gunzip, parse_idx_images, parse_idx_labels};

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = maybe_gunzip(data.to_vec()) else { return };
    let labels = parse_idx_labels(&bytes);
    if let Ok(l) = &labels {
        assert!(l.len() + 8 <= bytes.len());
    }
    if let Ok(im) = parse_idx_images(&bytes) {
        assert_eq!(im.pixels.len(), im.n * im.rows * im.cols);
        assert!(im.pixels.len() + 16 <= bytes.len());
        let norm = Normalization::from_pixels(&im.pixels);
        assert!(norm.mean.is_finite() && norm.std.is_finite() && norm.std > 0.0);
        let ds = Dataset::from_idx(&im, labels.as_deref().unwrap_or(&[]), norm);
        assert_eq!(ds.images.len(), im.pixels.len());
    }
});
