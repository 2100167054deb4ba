//! Safetensors byte plumbing, written once: little-endian f32/f16 values to bytes and back, one f32 tensor
//! read from a file, and f32 tensors serialised with their metadata and written atomically.
//!
//! Every file format of the host (weights, model files, checkpoints, collection shards, nowcasts, saved
//! parameters) goes through here. A leaf module (no `crate::` or `super::` paths in code), so the fuzz targets compile it as is.

use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a tensor file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a safetensors file, or a truncated one.
    #[error("{} is not a valid safetensors file", path.display())]
    Format {
        /// File.
        path: PathBuf,
        /// Cause.
        source: SafeTensorError,
    },
    /// The file lacks the tensor asked for.
    #[error("{}: no tensor `{name}` (it holds: {holds})", path.display())]
    NoTensor {
        /// File.
        path: PathBuf,
        /// The tensor asked for.
        name: String,
        /// The tensors it holds, comma-separated.
        holds: String,
    },
    /// The tensor is not stored as F32.
    #[error("{}: tensor `{name}` is {dtype:?}, expected F32", path.display())]
    Dtype {
        /// File.
        path: PathBuf,
        /// Tensor.
        name: String,
        /// Its dtype.
        dtype: Dtype,
    },
    /// Tensors whose shapes disagree with their data could not be serialised.
    #[error("serialising tensors: {0}")]
    Serialize(#[from] SafeTensorError),
}

/// Little-endian bytes of f32 values (the safetensors layout).
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of f64 values.
pub fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values from little-endian bytes (a trailing partial value is ignored).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// f64 values from little-endian bytes (a trailing partial value is ignored).
pub fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()
}

/// f32 values from little-endian f16 bytes.
pub fn f16s_as_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

/// f32 values from little-endian bf16 bytes.
pub fn bf16s_as_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

/// Values of a floating-point tensor widened to f32, or `None` for a dtype other than F32, F16 or BF16.
pub fn floats_as_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(f32s(bytes)),
        Dtype::F16 => Some(f16s_as_f32(bytes)),
        Dtype::BF16 => Some(bf16s_as_f32(bytes)),
        _ => None,
    }
}

/// Reads the F32 tensor `name` (a parameter history, an LPE) from safetensors bytes, with its shape;
/// `path` names the file in errors. Kept apart from the file read so that it can be fuzzed.
pub fn f32_tensor_from_bytes(bytes: &[u8], name: &str, path: &Path) -> Result<(Vec<usize>, Vec<f32>), TensorFileError> {
    let st = SafeTensors::deserialize(bytes).map_err(|source| TensorFileError::Format { path: path.into(), source })?;
    let t = st.tensor(name).map_err(|_| TensorFileError::NoTensor {
        path: path.into(),
        name: name.into(),
        holds: st.names().join(", "),
    })?;
    if t.dtype() != Dtype::F32 {
        return Err(TensorFileError::Dtype { path: path.into(), name: name.into(), dtype: t.dtype() });
    }
    Ok((t.shape().to_vec(), f32s(t.data())))
}

/// Reads the f32 tensor `name` from a safetensors file, with its shape.
pub fn read_f32_tensor(path: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>), TensorFileError> {
    let bytes = std::fs::read(path).map_err(|source| TensorFileError::Read { path: path.into(), source })?;
    f32_tensor_from_bytes(&bytes, name, path)
}

/// Serialises f32 tensors `(name, shape, values)` with `meta` as the header metadata.
pub fn f32_tensors_to_bytes(
    tensors: &[(&str, Vec<usize>, &[f32])],
    meta: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, SafeTensorError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| f32_bytes(v)).collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.to_string(), v)))
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, meta)
}
