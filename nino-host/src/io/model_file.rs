//! NiNo model files in the trainable layout (any variant: MLP, GRU or LSTM head, centrality): the file half
//! of [`MetaModel`], so that the nowcaster reads a meta-trained model without the meta-trainer.
//!
//! A model file is safetensors: one f32 tensor per state-dict key of [`Layout`], and `model_args` (JSON,
//! [`model_args_json`]) in the header metadata, the format `nino train --nino` loads.

use super::atomic::write_atomic;
use super::tensor_file::f32_tensors_to_bytes;
use super::weights::WeightSet;
use nino_core::nowcast::Config;
use nino_core::nowcast::meta::{self, Layout};
use safetensors::SafeTensorError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a model could not be laid out, read from weights or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The configuration has no layout (a size of zero, too many slots...).
    #[error("model: {0}")]
    Layout(nino_core::Error),
    /// The weights' configuration has no layout.
    #[error("{}: {error}", path.display())]
    Config {
        /// The weights file.
        path: PathBuf,
        /// What the core said.
        error: nino_core::Error,
    },
    /// The weights lack a tensor of the layout.
    #[error("{}: no tensor `{key}`", path.display())]
    NoTensor {
        /// The weights file.
        path: PathBuf,
        /// State-dict key.
        key: String,
    },
    /// A tensor has another shape than the layout's.
    #[error("{}: tensor `{key}` is {shape:?}, expected {expected:?}", path.display())]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape in the file.
        shape: Vec<usize>,
        /// Shape of the layout.
        expected: Vec<usize>,
    },
    /// The tensors could not be serialised.
    #[error(transparent)]
    Serialize(#[from] SafeTensorError),
    /// The file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// A trainable NiNo: its layout and its flat parameters.
#[derive(Clone, Debug)]
pub struct MetaModel {
    /// Where each tensor lives.
    pub layout: Layout,
    /// All parameters.
    pub params: Vec<f32>,
}

/// The JSON `model_args` that describes `cfg` to every loader (the published keys plus `head`, `centrality`).
pub fn model_args_json(cfg: &Config) -> String {
    serde_json::json!({
        "hid": cfg.hid, "layers": cfg.layers, "ctx": cfg.ctx, "lpe": cfg.lpe, "seq_len": cfg.seq_len,
        "max_feat_size": cfg.max_feat_size, "edge_types": cfg.edge_types, "gnn": true, "wte_pos_enc": false,
        "upd_scale": cfg.upd_scale, "head": cfg.head.name(), "centrality": cfg.centrality,
    })
    .to_string()
}

impl MetaModel {
    /// Every tensor of the layout.
    pub fn slots(&self) -> Result<Vec<meta::TensorSlot>, ModelFileError> {
        let mut v = Vec::new();
        Layout::visit(&self.layout.cfg, &mut |t| {
            v.push(t);
            Ok(())
        })
        .map_err(ModelFileError::Layout)?;
        Ok(v)
    }

    /// Reads a model in the layout of its own `model_args` (any variant; every tensor must be present).
    pub fn from_weights(w: &WeightSet<f32>) -> Result<MetaModel, ModelFileError> {
        let layout = Layout::new(&w.config).map_err(|error| ModelFileError::Config { path: w.path.clone(), error })?;
        let mut m = MetaModel { layout, params: vec![0.0; layout.len] };
        for t in m.slots()? {
            let (want, nd) = t.shape();
            let (shape, data) = w
                .tensor(&t.key)
                .ok_or_else(|| ModelFileError::NoTensor { path: w.path.clone(), key: t.key.to_string() })?;
            if *shape != want[..nd] {
                return Err(ModelFileError::Shape {
                    path: w.path.clone(),
                    key: t.key.to_string(),
                    shape: shape.to_vec(),
                    expected: want[..nd].to_vec(),
                });
            }
            m.params[t.offset..t.offset + t.len()].copy_from_slice(data);
        }
        Ok(m)
    }

    /// The model as safetensors bytes (f32 tensors by key, `model_args` and `extra` in the metadata).
    pub fn to_bytes(&self, extra: &[(&str, String)]) -> Result<Vec<u8>, ModelFileError> {
        let slots = self.slots()?;
        let tensors: Vec<(&str, Vec<usize>, &[f32])> = slots
            .iter()
            .map(|t| {
                let (s, nd) = t.shape();
                (t.key.as_str(), s[..nd].to_vec(), &self.params[t.offset..t.offset + t.len()])
            })
            .collect();
        let mut meta: HashMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        meta.insert("model_args".into(), model_args_json(&self.layout.cfg));
        Ok(f32_tensors_to_bytes(&tensors, Some(meta))?)
    }

    /// Writes [`MetaModel::to_bytes`] atomically: the format `nino train --nino` loads.
    pub fn save(&self, path: &Path, extra: &[(&str, String)]) -> Result<(), ModelFileError> {
        let bytes = self.to_bytes(extra)?;
        write_atomic(path, &bytes).map_err(|source| ModelFileError::Write { path: path.into(), source })
    }
}
