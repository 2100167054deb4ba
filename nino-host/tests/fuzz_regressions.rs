//! Regression tests for the parsers fuzzed in `tests/fuzz` (see its README): every input that crashed a fuzz
//! target, and the nastiest hand-made edge cases, must give a clear error, not a panic, an overflow, a huge
//! allocation or a stack overflow. Crash inputs are inline, byte for byte.

use nino_core::nowcast::Config;
use nino_core::{Arch, ArchError, InputShape};
use nino_host::io::collection::Manifest;
use nino_host::io::data::{IdxParseError, maybe_gunzip, parse_idx_images, parse_idx_labels};
use nino_host::io::tensor_file::f32_tensor_from_bytes;
use nino_host::io::weights::{WeightSet, WeightsError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A path with no JSON beside it, as the fuzz target uses: `model_args` must come from the header.
const PATH: &str = "/nonexistent/nino-fuzz/weights.safetensors";

fn load(bytes: &[u8]) -> Result<WeightSet<f32>, WeightsError> {
    WeightSet::from_bytes(bytes, Path::new(PATH))
}

/// A safetensors image from a literal JSON header (padded with spaces to 8 bytes) and its data.
fn raw(header: impl AsRef<[u8]>, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_ref().to_vec();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// `data_offsets` entries for consecutive f32 tensors of `lens` values: the header entries and the data.
fn f32_tensors(entries: &[(&str, &[usize])], meta: Option<&str>) -> Vec<u8> {
    let mut parts = Vec::new();
    if let Some(m) = meta {
        parts.push(format!(r#""__metadata__":{{"model_args":{}}}"#, serde_json::to_string(m).unwrap()));
    }
    let mut at = 0;
    for (name, shape) in entries {
        let n: usize = shape.iter().product();
        parts.push(format!(r#""{name}":{{"dtype":"F32","shape":{shape:?},"data_offsets":[{at},{}]}}"#, at + 4 * n));
        at += 4 * n;
    }
    raw(format!("{{{}}}", parts.join(",")), &vec![0u8; at])
}

/// The smallest WNN+ (hid 2, no edge-type embedding, 3 horizons): its tensors and `model_args`.
const WNN_ARGS: &str = r#"{"gnn": false, "hid": 2, "edge_types": 0, "seq_len": 3}"#;
const WNN: [(&str, &[usize]); 10] = [
    ("edge_proj.fc.0.weight", &[2, 5]),
    ("edge_proj.fc.0.bias", &[2]),
    ("edge_mlp.fc.0.weight", &[2, 2]),
    ("edge_mlp.fc.0.bias", &[2]),
    ("edge_mlp.fc.2.weight", &[2, 2]),
    ("edge_mlp.fc.2.bias", &[2]),
    ("edge_mlp.fc.4.weight", &[2, 2]),
    ("edge_mlp.fc.4.bias", &[2]),
    ("edge_mlp.fc.6.weight", &[3, 2]),
    ("edge_mlp.fc.6.bias", &[3]),
];

fn format_error(r: Result<WeightSet<f32>, WeightsError>) -> String {
    match r {
        Err(e @ WeightsError::Format { .. }) => e.to_string(),
        other => panic!("expected a format error, got {other:?}"),
    }
}

fn model_args_error(r: Result<WeightSet<f32>, WeightsError>) -> String {
    match r {
        Err(e @ WeightsError::ModelArgs { .. }) => e.to_string(),
        other => panic!("expected a model_args error, got {other:?}"),
    }
}

// ---- Inputs that crashed a fuzz target ----

/// `arch_spec` crash-6e297716668992ebe78c8a6b315b9f8133c32300 (22 bytes): `conv:4` on an input shape of
/// three huge sizes panicked with "attempt to multiply with overflow" in `Layer::weight_len`.
#[test]
fn crash_arch_spec_huge_input_shape_is_too_large() {
    let input = b"\x01\x00\x00\x80\x02\x00\x00\x80\x03\x00\x00\x80\x0a\x00\x00\x00conv:4";
    // The target's decoding (tests/fuzz/fuzz_targets/arch_spec.rs): top bit set -> v * 0x9E3779B97F4A7C15.
    let size = |i: usize| {
        let v = u32::from_le_bytes(input[4 * i..4 * i + 4].try_into().unwrap());
        assert!(v & 0x8000_0000 != 0);
        (v as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    };
    let shape = InputShape { channels: size(0), height: size(1), width: size(2) };
    assert_eq!(shape.channels, 0x5ddc_b7c3_ff4a_7c15);
    let spec = std::str::from_utf8(&input[16..]).unwrap();
    assert_eq!(Arch::parse(spec, shape, 10), Err(ArchError::TooLarge));
    assert_eq!(Arch::parse("mlp:", shape, 10), Err(ArchError::TooLarge));
    assert!(ArchError::TooLarge.to_string().contains("too large"));
}

/// Widths whose weights or graph overflow: once an overflow panic, now `TooLarge`.
#[test]
fn crash_arch_spec_huge_widths_are_too_large() {
    let fm = InputShape::FASHION_MNIST;
    assert_eq!(Arch::parse("mlp:18446744073709551615", fm, 10), Err(ArchError::TooLarge));
    assert_eq!(Arch::parse("conv:65536,65536", fm, 10), Err(ArchError::TooLarge));
    assert_eq!(Arch::parse("mlp:1", fm, usize::MAX), Err(ArchError::TooLarge));
    assert_eq!(Arch::parse("mlp:18446744073709551616", fm, 10), Err(ArchError::BadWidth));
    // Still fine just below the bound.
    assert_eq!(Arch::parse("mlp:4096,4096", fm, 10).map(|a| a.param_count()), Ok(785 * 4096 + 4097 * 4096 + 4097 * 10));
}

/// `model_args` `{"vocab_size": 18446744073709551615}` (found by a targeted input to the `model_config`
/// target): `vocab_size + 1` overflowed while binding, before any tensor was looked up.
#[test]
fn crash_model_args_vocab_size_overflow_is_an_error() {
    let json = r#"{"vocab_size": 18446744073709551615}"#;
    assert!(Config::from_json(json).is_err());
    let e = model_args_error(load(&f32_tensors(&[("layer_embed.weight", &[15, 128])], Some(json))));
    assert!(e.contains("at most 2^20"), "{e}");
}

/// `model_args` nested 100,000 deep in an unknown field overflowed the stack (serde-json-core skips an
/// unknown value by recursing once per level): an abort, not even a panic.
#[test]
fn crash_model_args_deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let json = format!(r#"{{"extra": {}{}, "gnn": false}}"#, "[".repeat(depth), "]".repeat(depth));
    assert!(Config::from_json(&json).is_err());
    let e = model_args_error(load(&f32_tensors(&WNN, Some(&json))));
    assert!(e.contains("too deeply nested"), "{}", &e[e.len() - 200..]);
}

// ---- Safetensors edge cases ----

#[test]
fn tiny_valid_weights_load_so_the_cases_below_fail_for_their_own_reason() {
    let w = load(&f32_tensors(&WNN, Some(WNN_ARGS))).unwrap();
    assert_eq!(w.config.hid, 2);
    assert!(w.bind().is_ok() && w.to_f16().unwrap().bind().is_ok());
}

#[test]
fn safetensors_header_length_past_the_file_or_past_u64_is_a_format_error() {
    let good = f32_tensors(&WNN, Some(WNN_ARGS));
    for claimed in [good.len() as u64, u64::MAX, u64::MAX - 7, 1 << 40] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&claimed.to_le_bytes());
        format_error(load(&bad));
    }
    for cut in [0, 7, 8, 9, good.len() - 1] {
        format_error(load(&good[..cut]));
    }
}

#[test]
fn safetensors_non_utf8_or_non_json_header_is_a_format_error() {
    format_error(load(&raw(b"{\"a\xff\":{}}", &[])));
    let mut bad = raw(r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
    assert_eq!(bad[10], b'x');
    bad[10] = 0xc3; // a lone UTF-8 lead byte as the key
    format_error(load(&bad));
    format_error(load(&raw("[1, 2, 3]", &[])));
    format_error(load(&raw("[".repeat(100_000), &[])));
}

#[test]
fn safetensors_overlapping_or_gapped_offsets_are_a_format_error() {
    let overlap = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#;
    format_error(load(&raw(overlap, &[0; 16])));
    let gap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    format_error(load(&raw(gap, &[0; 12])));
    let backwards = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#;
    format_error(load(&raw(backwards, &[0; 4])));
}

#[test]
fn safetensors_shape_that_disagrees_with_its_bytes_is_a_format_error() {
    // Dtype mismatch: four bytes of data claimed as two F32 values, then as three F16 values.
    format_error(load(&raw(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4])));
    format_error(load(&raw(r#"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}"#, &[0; 4])));
    // A claimed shape of 2^64 values (overflowing usize) backed by 8 bytes.
    let huge = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
    format_error(load(&raw(huge, &[0; 8])));
    let huge = r#"{"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}}"#;
    format_error(load(&raw(huge, &[0; 8])));
}

#[test]
fn safetensors_metadata_that_is_not_a_string_map_is_a_format_error() {
    format_error(load(&raw(r#"{"__metadata__":{"model_args":{"hid":2}}}"#, &[])));
    format_error(load(&raw(r#"{"__metadata__":[1]}"#, &[])));
}

#[test]
fn model_args_that_are_not_json_or_sizes_of_zero_are_named() {
    let e = model_args_error(load(&f32_tensors(&WNN, Some("{\"hid\": 2"))));
    assert!(e.contains("malformed JSON"), "{e}");
    let e = model_args_error(load(&f32_tensors(&WNN, Some(r#"{"gnn": false, "hid": 0}"#))));
    assert!(e.contains("must be positive"), "{e}");
}

#[test]
fn wrong_dtype_and_non_finite_values_are_named() {
    let mut bytes = f32_tensors(&WNN, Some(WNN_ARGS));
    let at = bytes.len() - 4; // the last value of edge_mlp.fc.6.bias
    bytes[at..].copy_from_slice(&f32::INFINITY.to_le_bytes());
    assert!(matches!(load(&bytes), Err(WeightsError::NonFinite { key, count: 1, .. }) if key == "edge_mlp.fc.6.bias"));
    let header = String::from_utf8(f32_tensors(&WNN, Some(WNN_ARGS))).unwrap();
    let i32_bias = header.replacen(r#""dtype":"F32","shape":[3]"#, r#""dtype":"I32","shape":[3]"#, 1);
    assert_ne!(i32_bias, header);
    assert!(matches!(load(i32_bias.as_bytes()), Err(WeightsError::Dtype { key, .. }) if key == "edge_mlp.fc.6.bias"));
}

#[test]
fn a_single_tensor_of_the_wrong_dtype_or_name_is_named() {
    let p = PathBuf::from("history.safetensors");
    let f16 = raw(r#"{"history":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}}"#, &[0; 12]);
    let e = f32_tensor_from_bytes(&f16, "history", &p).unwrap_err().to_string();
    assert!(e.contains("expected F32"), "{e}");
    let e = f32_tensor_from_bytes(&f16, "lpe", &p).unwrap_err().to_string();
    assert!(e.contains("no tensor `lpe`") && e.contains("history"), "{e}");
    let ok = raw(r#"{"lpe":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]}}"#, &[0, 0, 128, 63, 0, 0, 0, 64]);
    assert_eq!(f32_tensor_from_bytes(&ok, "lpe", &p).unwrap(), (vec![2, 1], vec![1.0, 2.0]));
    assert!(f32_tensor_from_bytes(&ok[..ok.len() - 1], "lpe", &p).is_err());
}

// ---- IDX edge cases ----

fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(body);
    b
}

#[test]
fn idx_header_claiming_4g_images_is_rejected_against_the_real_length() {
    let claimed = idx(0x803, &[u32::MAX, 28, 28], &[7; 784]);
    assert_eq!(parse_idx_images(&claimed), Err(IdxParseError::Truncated(16 + u32::MAX as usize * 784, 800)));
    let labels = idx(0x801, &[u32::MAX], &[1, 2, 3]);
    assert_eq!(parse_idx_labels(&labels), Err(IdxParseError::Truncated(8 + u32::MAX as usize, 11)));
}

#[test]
fn idx_dims_whose_product_overflows_are_truncated_not_wrapped() {
    // 2^32-1 cubed overflows u64: a wrapped product could have claimed fewer bytes than are present.
    let bytes = idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[0; 64]);
    assert!(matches!(parse_idx_images(&bytes), Err(IdxParseError::Truncated(_, 80))));
    // 2^16 * 2^24 * 2^24 wraps to 0 in 64 bits.
    let bytes = idx(0x803, &[1 << 16, 1 << 24, 1 << 24], &[]);
    assert!(matches!(parse_idx_images(&bytes), Err(IdxParseError::Truncated(_, 16))));
}

#[test]
fn idx_short_headers_and_swapped_magics_are_errors() {
    assert_eq!(parse_idx_images(&[0, 0, 8, 3, 0, 0]), Err(IdxParseError::Truncated(16, 6)));
    assert_eq!(parse_idx_images(&[]), Err(IdxParseError::Truncated(16, 0)));
    assert_eq!(parse_idx_labels(&[0, 0, 8]), Err(IdxParseError::Truncated(8, 3)));
    assert_eq!(parse_idx_images(&idx(0x801, &[1], &[5])), Err(IdxParseError::BadMagic(0x801)));
    assert_eq!(parse_idx_labels(&idx(0x803, &[0, 0, 0], &[])), Err(IdxParseError::BadMagic(0x803)));
    // Empty but well-formed: parsed, and rejected later by the loader as an empty dataset.
    assert_eq!(parse_idx_labels(&idx(0x801, &[0], &[])), Ok(vec![]));
}

#[test]
fn idx_truncated_or_corrupt_gzip_is_an_io_error() {
    let body = idx(0x801, &[3], &[1, 2, 3]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(maybe_gunzip(gz.clone()).unwrap(), body);
    assert!(maybe_gunzip(gz[..gz.len() / 2].to_vec()).is_err());
    let mut corrupt = gz.clone();
    let at = corrupt.len() - 6; // inside the CRC-32 trailer
    corrupt[at] ^= 0xff;
    assert!(maybe_gunzip(corrupt).is_err());
    assert!(maybe_gunzip(vec![0x1f, 0x8b]).is_err());
}

// ---- The committed seed corpora stay meaningful (a seed that no longer parses tests nothing) ----

fn seed(target: &str, name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds").join(target).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn weight_seeds_load_and_header_only_seeds_are_truncated() {
    for name in ["wnn_hid2_f32", "wnn_hid2_f16", "gnn_hid2_f32", "gnn_hid2_bf16"] {
        let w = load(&seed("safetensors_weights", name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(w.config.hid, 2, "{name}");
    }
    for name in ["nino_mlp_header_only", "nino_no_posw_header_only"] {
        format_error(load(&seed("safetensors_weights", name)));
    }
    let p = Path::new("seed");
    assert_eq!(f32_tensor_from_bytes(&seed("safetensors_tensor", "history_5x7_f32"), "history", p).unwrap().0, [5, 7]);
    assert_eq!(f32_tensor_from_bytes(&seed("safetensors_tensor", "lpe_4x8_f32"), "lpe", p).unwrap().0, [4, 8]);
}

#[test]
fn idx_config_and_arch_seeds_parse() {
    for name in ["images_2x28x28", "images_2x28x28.gz"] {
        let im = parse_idx_images(&maybe_gunzip(seed("idx", name)).unwrap()).unwrap();
        assert_eq!((im.n, im.rows, im.cols), (2, 28, 28), "{name}");
    }
    assert_eq!(parse_idx_images(&seed("idx", "images_3x2x3")).unwrap().pixels.len(), 18);
    assert_eq!(parse_idx_labels(&seed("idx", "labels_10")).unwrap().len(), 10);
    assert_eq!(parse_idx_labels(&maybe_gunzip(seed("idx", "t10k-labels-idx1-ubyte.gz")).unwrap()).unwrap().len(), 1000);
    for name in ["nino_mlp", "nino_mlp_h32", "nino_no_posw", "wnn_hid2", "gnn_hid2", "every_option", "unknown_nested"] {
        let json = String::from_utf8(seed("model_config", name)).unwrap();
        Config::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, params) in [("fm16", 14_378), ("debug", 662), ("mlp", 109_386)] {
        let b = seed("arch_spec", name);
        let spec = std::str::from_utf8(&b[16..]).unwrap();
        assert_eq!(Arch::parse(spec, InputShape::FASHION_MNIST, 10).unwrap().param_count(), params, "{name}");
    }
}

/// `collection_manifest` (its first 20 s): serde quotes an unknown `dtype` back, newline and all, which made
/// the refusal two lines. The crash input was the seed manifest with `"dtype": "ffo\n_16"`.
#[test]
fn a_manifest_quoting_a_newline_is_refused_in_one_line() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/collection_manifest/manifest.json");
    let text = std::fs::read_to_string(seed).unwrap().replace(r#""dtype": "f16""#, r#""dtype": "ffo\n_16""#);
    assert!(text.contains(r"ffo\n_16"), "the seed changed: {text}");
    let msg = Manifest::parse(&text, Path::new("manifest.json")).unwrap_err().to_string();
    assert!(msg.contains(r"unknown variant `ffo\n_16`") && !msg.contains('\n'), "{msg:?}");
}
