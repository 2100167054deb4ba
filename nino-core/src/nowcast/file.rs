//! NiNo weight files (safetensors) read in place from caller bytes, and the packed weight layout a caller
//! without an allocator keeps them in.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header mapping every tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (plus an optional `__metadata__` map of strings, where
//! `model_args` lives), then the tensor bytes. [`WeightFile`] parses the header on demand with
//! serde-json-core, copying and allocating nothing; every offset, size and nesting depth a file claims is
//! checked against the bytes present before it is used.
//!
//! [`pack`] copies the tensors a model reads into one caller buffer, f32 or f16, in the order
//! [`NinoWeights::bind`] asks for them, and [`bind_packed`] binds a model over that buffer again, so the
//! file bytes can be released once the weights are packed.

use crate::error::{Error, check_len};
use crate::nowcast::weights::{Config, Head, NinoWeights, WeightElem};
use core::fmt;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Most dimensions of a tensor in a weight file (NiNo's have one or two).
pub const MAX_DIMS: usize = 8;

/// Deepest `[`/`{` nesting a header may have: a valid header nests 3 deep (the map, a tensor's entry, its
/// shape), and serde-json-core recurses once per level while it skips a value.
pub const MAX_DEPTH: usize = 8;

/// Longest `model_args` JSON, after unescaping, that [`WeightFile::model_args`] reads.
pub const MAX_MODEL_ARGS: usize = 1024;

/// Element type of a tensor in the file; only the floats can be weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dtype {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// Any other safetensors dtype, with its bytes per value (a file may hold tensors the model ignores).
    Other(usize),
}

impl Dtype {
    /// The dtype of a safetensors name, if it is one.
    pub fn from_name(name: &str) -> Option<Dtype> {
        Some(match name {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::Bf16,
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => Dtype::Other(1),
            "I16" | "U16" => Dtype::Other(2),
            "I32" | "U32" => Dtype::Other(4),
            "F64" | "I64" | "U64" => Dtype::Other(8),
            _ => return None,
        })
    }

    /// Bytes of one value.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::Other(s) => s,
        }
    }
}

/// One tensor of a [`WeightFile`], borrowed from the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Element type.
    pub dtype: Dtype,
    shape: [usize; MAX_DIMS],
    ndim: usize,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.ndim]
    }

    /// The raw little-endian bytes.
    pub const fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Writes the values into `out` as f32 (exact for every float dtype); `out` must have one slot a value.
    pub fn read_f32(&self, out: &mut [f32]) -> Result<(), Error> {
        let s = self.dtype.size();
        check_len("tensor values", out.len(), self.data.len() / s)?;
        let chunks = self.data.chunks_exact(s);
        match self.dtype {
            Dtype::F32 => chunks.zip(out).for_each(|(b, o)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Dtype::F16 => chunks.zip(out).for_each(|(b, o)| *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::Bf16 => chunks.zip(out).for_each(|(b, o)| *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::Other(_) => return Err(Error::InvalidArgument("weight file: tensor is not F32, F16 or BF16")),
        }
        Ok(())
    }
}

/// A safetensors file whose header has been checked, borrowed from the caller's bytes.
#[derive(Clone, Copy, Debug)]
pub struct WeightFile<'a> {
    header: &'a [u8],
    data: &'a [u8],
}

/// The error every malformed header maps to (serde-json-core's own errors carry no more than this).
const MALFORMED: Error = Error::InvalidArgument("weight file: malformed safetensors header");

impl<'a> WeightFile<'a> {
    /// Checks the framing, the header's nesting depth and every tensor entry (known dtype, at most
    /// [`MAX_DIMS`] dimensions, data offsets inside the file and matching dtype times shape).
    pub fn parse(bytes: &'a [u8]) -> Result<WeightFile<'a>, Error> {
        let (len, rest) =
            bytes.split_first_chunk::<8>().ok_or(Error::InvalidArgument("weight file: shorter than 8 bytes"))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| MALFORMED)?;
        if len > rest.len() {
            return Err(Error::InvalidArgument("weight file: header length past the end of the file"));
        }
        let (header, data) = rest.split_at(len);
        check_depth(header)?;
        let file = WeightFile { header, data };
        file.visit(Visit::All)?;
        Ok(file)
    }

    /// The tensor called `name`, if the file has one.
    pub fn tensor(&self, name: &str) -> Result<Option<TensorView<'a>>, Error> {
        match self.visit(Visit::Tensor(name))? {
            Found::Tensor(t) => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// The `model_args` JSON of the header's `__metadata__`, unescaped into `buf`, if the file has one.
    pub fn model_args<'b>(&self, buf: &'b mut [u8]) -> Result<Option<&'b str>, Error> {
        let Found::ModelArgs(escaped) = self.visit(Visit::ModelArgs)? else { return Ok(None) };
        let too_long = Error::InvalidArgument("weight file: model_args longer than the buffer");
        let mut n = 0;
        let mut char_buf = [0u8; 4];
        for fragment in serde_json_core::str::EscapedStr(escaped).fragments() {
            let bytes = match fragment.map_err(|_| MALFORMED)? {
                serde_json_core::str::EscapedStringFragment::NotEscaped(s) => s.as_bytes(),
                serde_json_core::str::EscapedStringFragment::Escaped(c) => c.encode_utf8(&mut char_buf).as_bytes(),
            };
            let end = n + bytes.len();
            buf.get_mut(n..end).ok_or(too_long)?.copy_from_slice(bytes);
            n = end;
        }
        // Unescaping a valid `str` fragment by fragment keeps it valid UTF-8.
        core::str::from_utf8(&buf[..n]).map(Some).map_err(|_| MALFORMED)
    }

    fn visit(&self, what: Visit<'_>) -> Result<Found<'a>, Error> {
        let mut de = serde_json_core::de::Deserializer::new(self.header, None);
        let found = (&mut de).deserialize_map(HeaderVisitor { what, data: self.data }).map_err(|_| MALFORMED)?;
        // safetensors pads the header with spaces; anything else after the JSON is malformed.
        de.end().map_err(|_| MALFORMED)?;
        found
    }
}

/// Rejects headers nested deeper than [`MAX_DEPTH`] before serde-json-core recurses into them.
fn check_depth(header: &[u8]) -> Result<(), Error> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for &b in header {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Error::InvalidArgument("weight file: header nested too deeply"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// What one pass over the header looks for.
#[derive(Clone, Copy)]
enum Visit<'n> {
    /// Check every entry.
    All,
    /// One tensor by name (the first entry of that name).
    Tensor(&'n str),
    /// `__metadata__.model_args`, still escaped.
    ModelArgs,
}

/// What one pass found; a malformed entry of the kind looked for is an `Err` inside the `Ok` of serde.
enum Found<'a> {
    Nothing,
    Tensor(TensorView<'a>),
    ModelArgs(&'a str),
}

const METADATA: &str = "__metadata__";

struct HeaderVisitor<'n, 'a> {
    what: Visit<'n>,
    data: &'a [u8],
}

impl<'de> Visitor<'de> for HeaderVisitor<'_, 'de> {
    type Value = Result<Found<'de>, Error>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found::Nothing;
        while let Some(key) = map.next_key::<&'de str>()? {
            if key == METADATA && matches!(self.what, Visit::All) {
                // Checked like the tensors: a map of strings.
                map.next_value::<Metadata<'de>>()?;
                continue;
            }
            let wanted = matches!(found, Found::Nothing)
                && match self.what {
                    Visit::All => key != METADATA,
                    Visit::Tensor(name) => key == name && key != METADATA,
                    Visit::ModelArgs => key == METADATA,
                };
            if !wanted {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if let Visit::ModelArgs = self.what {
                if let Some(args) = map.next_value::<Metadata<'de>>()?.model_args {
                    found = Found::ModelArgs(args);
                }
                continue;
            }
            let raw = map.next_value::<RawEntry<'de>>()?;
            match raw.view(self.data) {
                Ok(view) if matches!(self.what, Visit::Tensor(_)) => found = Found::Tensor(view),
                Ok(_) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(found))
    }
}

/// A tensor's entry as the header states it.
#[derive(serde::Deserialize)]
struct RawEntry<'a> {
    dtype: &'a str,
    shape: Shape,
    data_offsets: [usize; 2],
}

impl RawEntry<'_> {
    /// Checks the entry against the data section and borrows its bytes.
    fn view<'d>(&self, data: &'d [u8]) -> Result<TensorView<'d>, Error> {
        let dtype = Dtype::from_name(self.dtype).ok_or(Error::InvalidArgument("weight file: unknown dtype"))?;
        let [begin, end] = self.data_offsets;
        let bytes = data.get(begin..end).ok_or(Error::InvalidArgument("weight file: data offsets outside the file"))?;
        let values = self.shape.dims[..self.shape.ndim].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if values.and_then(|v| v.checked_mul(dtype.size())) != Some(bytes.len()) {
            return Err(Error::InvalidArgument("weight file: data offsets do not match dtype and shape"));
        }
        Ok(TensorView { dtype, shape: self.shape.dims, ndim: self.shape.ndim, data: bytes })
    }
}

/// A shape of at most [`MAX_DIMS`] dimensions, read without allocating.
struct Shape {
    dims: [usize; MAX_DIMS],
    ndim: usize,
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tensor shape of at most 8 dimensions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut s = Shape { dims: [0; MAX_DIMS], ndim: 0 };
                while let Some(d) = seq.next_element::<usize>()? {
                    *s.dims.get_mut(s.ndim).ok_or_else(|| de::Error::invalid_length(MAX_DIMS + 1, &self))? = d;
                    s.ndim += 1;
                }
                Ok(s)
            }
        }
        d.deserialize_seq(ShapeVisitor)
    }
}

/// The `__metadata__` map: `model_args` kept (escaped), every other entry skipped.
struct Metadata<'a> {
    model_args: Option<&'a str>,
}

impl<'de> serde::Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Metadata<'de>, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = Metadata<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata<'de>, A::Error> {
                let mut m = Metadata { model_args: None };
                while let Some(key) = map.next_key::<&'de str>()? {
                    let value = map.next_value::<serde_json_core::str::EscapedStr<'de>>()?;
                    if key == "model_args" && m.model_args.is_none() {
                        m.model_args = Some(value.0);
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(MetaVisitor)
    }
}

/// A weight storage type that f32 values can be written to (the storages [`WeightElem`] reads back).
pub trait StoreElem: WeightElem {
    /// `x` rounded to this storage.
    fn from_f32(x: f32) -> Self;
}

impl StoreElem for f32 {
    #[inline]
    fn from_f32(x: f32) -> f32 {
        x
    }
}

impl StoreElem for half::f16 {
    #[inline]
    fn from_f32(x: f32) -> half::f16 {
        half::f16::from_f32(x)
    }
}

/// Checks that [`pack`] and [`bind_packed`] can lay out `config`'s model: the word positional table
/// (`wte_pos_enc`, whose one used row [`crate::plan::weight_values`] counts) and the NiNo++ variants
/// (recurrent heads, centrality, run by [`crate::nowcast::meta`]) are not packed.
pub fn check_packable(config: &Config) -> Result<(), Error> {
    config.validate()?;
    if config.gnn && config.wte_pos_enc {
        return Err(Error::InvalidArgument("packed weights: models with wte_pos_enc are not supported"));
    }
    if config.head != Head::Mlp || config.centrality {
        return Err(Error::InvalidArgument(
            "packed weights: NiNo++ variants (GRU/LSTM head, centrality) are not supported",
        ));
    }
    Ok(())
}

/// Copies the tensors `config`'s model reads from `file` into `out` ([`crate::plan::weight_values`] values),
/// rounded to `W`, in the order [`NinoWeights::bind`] asks for them; every key, shape and dtype is checked,
/// and a value that is not finite in `W` is an error.
pub fn pack<W: StoreElem>(config: &Config, file: &WeightFile<'_>, out: &mut [W]) -> Result<(), Error> {
    check_packable(config)?;
    check_len("packed weights", out.len(), crate::plan::weight_values(config))?;
    let mut rest = out;
    let mut err = None;
    let bound = NinoWeights::bind(*config, |name, shape| {
        fill_next(file, name, shape, &mut rest).map_err(|e| err = Some(e)).ok()
    });
    match (bound, err) {
        (Ok(_), _) if rest.is_empty() => Ok(()),
        (Ok(_), _) => Err(Error::InvalidArgument("packed weights: fewer values than planned")),
        (Err(_), Some(e)) | (Err(e), None) => Err(e),
    }
}

/// Copies tensor `name` of `file`, which must have `shape`, into the front of `rest` and returns that part.
fn fill_next<'a, W: StoreElem>(
    file: &WeightFile<'_>,
    name: &str,
    shape: &[usize],
    rest: &mut &'a mut [W],
) -> Result<&'a [W], Error> {
    let t = file.tensor(name)?.ok_or(Error::InvalidArgument("weight file: a tensor the model reads is missing"))?;
    if t.shape() != shape {
        return Err(Error::InvalidArgument("weight file: a tensor the model reads has the wrong shape"));
    }
    let s = t.dtype.size();
    let (head, tail) = core::mem::take(rest)
        .split_at_mut_checked(t.bytes().len() / s)
        .ok_or(Error::InvalidArgument("packed weights: more values than planned"))?;
    *rest = tail;
    // Converted through a small f32 staging buffer, so that f16 storage needs no f32 copy of a tensor.
    let mut staged = [0.0f32; 256];
    for (dst, src) in head.chunks_mut(staged.len()).zip(t.bytes().chunks(staged.len() * s)) {
        let stage = &mut staged[..dst.len()];
        TensorView { data: src, ..t }.read_f32(stage)?;
        for (d, &x) in dst.iter_mut().zip(stage.iter()) {
            *d = W::from_f32(x);
            if !d.to_f32().is_finite() {
                return Err(Error::NonFinite("weights (in the chosen storage)"));
            }
        }
    }
    Ok(head)
}

/// Binds `config`'s model over weights laid out by [`pack`].
pub fn bind_packed<'a, W: WeightElem>(config: &Config, packed: &'a [W]) -> Result<NinoWeights<'a, W>, Error> {
    check_packable(config)?;
    check_len("packed weights", packed.len(), crate::plan::weight_values(config))?;
    let mut rest = packed;
    NinoWeights::bind(*config, |_, shape| {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    /// A safetensors image of `(name, dtype, shape, bytes)` with an optional `__metadata__` JSON object.
    fn file(tensors: &[(&str, &str, &[usize], Vec<u8>)], metadata: Option<&str>) -> Vec<u8> {
        let mut header = String::from("{");
        if let Some(m) = metadata {
            header += &std::format!("\"__metadata__\":{m},");
        }
        let mut data = Vec::new();
        for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
            let (b, e) = (data.len(), data.len() + bytes.len());
            header += &std::format!(
                "{}\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{b},{e}]}}",
                if i > 0 { "," } else { "" }
            );
            data.extend_from_slice(bytes);
        }
        header += "}  ";
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_tensors_and_model_args() {
        let bytes = file(
            &[
                ("a", "F32", &[2], f32_bytes(&[1.5, -2.0])),
                ("b", "F16", &[1, 1], half::f16::from_f32(0.25).to_le_bytes().to_vec()),
                ("c", "BF16", &[1], half::bf16::from_f32(3.0).to_le_bytes().to_vec()),
                ("ids", "I64", &[1], 7i64.to_le_bytes().to_vec()),
            ],
            Some(r#"{"format":"pt","model_args":"{\"gnn\": false, \"note\": \"a\\\"b\"}"}"#),
        );
        let f = WeightFile::parse(&bytes).unwrap();
        let mut v = [0.0f32; 2];
        f.tensor("a").unwrap().unwrap().read_f32(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);
        let b = f.tensor("b").unwrap().unwrap();
        assert_eq!((b.dtype, b.shape()), (Dtype::F16, &[1, 1][..]));
        b.read_f32(&mut v[..1]).unwrap();
        assert_eq!(v[0], 0.25);
        f.tensor("c").unwrap().unwrap().read_f32(&mut v[..1]).unwrap();
        assert_eq!(v[0], 3.0);
        assert!(f.tensor("ids").unwrap().unwrap().read_f32(&mut v[..1]).is_err());
        assert!(f.tensor("missing").unwrap().is_none());
        assert!(f.tensor("__metadata__").unwrap().is_none());
        let mut buf = [0u8; 64];
        assert_eq!(f.model_args(&mut buf).unwrap(), Some(r#"{"gnn": false, "note": "a\"b"}"#));
        assert!(f.model_args(&mut [0u8; 8]).is_err());
        let plain = file(&[("a", "F32", &[1], f32_bytes(&[1.0]))], None);
        assert_eq!(WeightFile::parse(&plain).unwrap().model_args(&mut buf).unwrap(), None);
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = file(&[("a", "F32", &[2], f32_bytes(&[1.0, 2.0]))], None);
        assert!(WeightFile::parse(&good).is_ok());
        // Truncations anywhere: the length, the header, the data.
        for cut in [0, 4, 8, 20, good.len() - 1] {
            assert!(WeightFile::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let bad = |tensors: &[(&str, &str, &[usize], Vec<u8>)]| WeightFile::parse(&file(tensors, None)).is_err();
        assert!(bad(&[("a", "F33", &[1], f32_bytes(&[1.0]))]));
        assert!(bad(&[("a", "F32", &[3], f32_bytes(&[1.0, 2.0]))]));
        assert!(bad(&[("a", "F32", &[1, 1, 1, 1, 1, 1, 1, 1, 1], f32_bytes(&[1.0]))]));
        assert!(bad(&[("a", "F32", &[usize::MAX, 2], f32_bytes(&[1.0]))]));
        // A header length past the end, offsets past the end, trailing junk, deep nesting.
        let mut long = good.clone();
        long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(WeightFile::parse(&long).is_err());
        let raw = |h: &str| {
            let mut v = (h.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(h.as_bytes());
            v.extend_from_slice(&[0; 8]);
            WeightFile::parse(&v).map(|_| ())
        };
        assert!(raw(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#).is_ok());
        assert!(raw(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#).is_err());
        assert!(raw(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#).is_err());
        assert!(raw(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x"#).is_err());
        assert!(raw(r#"{"a":{"dtype":"F32","shape":[2]}}"#).is_err());
        assert!(raw(r#"[]"#).is_err());
        assert!(raw(r#"{"__metadata__":{"model_args":7}}"#).is_err());
        let deep = std::format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(raw(&deep).unwrap_err(), Error::InvalidArgument("weight file: header nested too deeply"));
        // Brackets inside strings do not count, escaped quotes do not end them.
        assert!(raw(r#"{"__metadata__":{"k":"[[[[[[[[[[\"[[[[["}}"#).is_ok());
    }

    /// A tiny WNN+ (hid 4) written to a file, packed in both storages and bound back.
    #[test]
    fn pack_and_bind_round_trip() {
        let cfg = Config::from_json(r#"{"gnn": false, "hid": 4}"#).unwrap();
        // Every key and shape the model reads, each tensor holding 0.125, 0.25, ... in file order.
        let ones = [0.5f32; 4096];
        let mut keys: Vec<(String, Vec<usize>)> = Vec::new();
        NinoWeights::bind(cfg, |name, shape| {
            keys.push((name.into(), shape.to_vec()));
            Some(&ones[..shape.iter().product()])
        })
        .unwrap();
        let mut next = 0.0f32;
        let tensors: Vec<(&str, &str, &[usize], Vec<u8>)> = keys
            .iter()
            .map(|(k, s)| {
                let v: Vec<f32> = (0..s.iter().product())
                    .map(|_| {
                        next += 0.125;
                        next
                    })
                    .collect();
                (k.as_str(), "F32", s.as_slice(), f32_bytes(&v))
            })
            .collect();
        let bytes = file(&tensors, None);
        let f = WeightFile::parse(&bytes).unwrap();
        let n = crate::plan::weight_values(&cfg);
        let mut packed = std::vec![0.0f32; n];
        pack(&cfg, &f, &mut packed).unwrap();
        // The file holds the tensors in bind order, so packing them is the identity on their values.
        assert!(packed.iter().enumerate().all(|(i, &x)| x == (i + 1) as f32 * 0.125));
        let mut half_packed = std::vec![half::f16::ZERO; n];
        pack(&cfg, &f, &mut half_packed).unwrap();
        assert!(half_packed.iter().zip(&packed).all(|(h, x)| (h.to_f32() - x).abs() <= x.abs() * 1e-3));
        let w = bind_packed(&cfg, &packed).unwrap();
        let crate::nowcast::ModelWeights::Wnn(wnn) = &w.model else { panic!("a WNN+") };
        assert_eq!(wnn.out.b.last(), packed.last());
        drop(w);
        assert!(bind_packed(&cfg, &packed[1..]).is_err());
        assert!(matches!(pack(&cfg, &f, &mut packed[1..]), Err(Error::BufferSize { .. })));
        // A missing tensor, a misshapen one, and a value f16 cannot hold.
        let missing = file(&tensors[1..], None);
        assert!(pack(&cfg, &WeightFile::parse(&missing).unwrap(), &mut packed).is_err());
        let mut reshaped = tensors.clone();
        let flat = [reshaped[0].2.iter().product::<usize>()];
        reshaped[0].2 = &flat;
        assert!(pack(&cfg, &WeightFile::parse(&file(&reshaped, None)).unwrap(), &mut packed).is_err());
        let mut huge = tensors.clone();
        huge[0].3 = f32_bytes(&std::vec![1e6; flat[0]]);
        let huge = file(&huge, None);
        assert!(pack(&cfg, &WeightFile::parse(&huge).unwrap(), &mut packed).is_ok());
        let overflow = pack(&cfg, &WeightFile::parse(&huge).unwrap(), &mut half_packed);
        assert_eq!(overflow, Err(Error::NonFinite("weights (in the chosen storage)")));
    }

    #[test]
    fn only_the_packable_models_are_packed() {
        assert!(check_packable(&Config { wte_pos_enc: false, ..Config::default() }).is_ok());
        assert!(check_packable(&Config::default()).is_err());
        assert!(check_packable(&Config { wte_pos_enc: false, head: Head::Lstm, ..Config::default() }).is_err());
    }
}
