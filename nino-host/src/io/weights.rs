//! Loading NiNo weights from safetensors with clear errors.
//!
//! A [`WeightSet`] owns every tensor (f32, or f16 after [`WeightSet::to_f16`]) and the model's [`Config`];
//! [`WeightSet::bind`] lends them to the core as [`NinoWeights`]. Loading validates everything the model
//! will read (keys, shapes, dtypes, finiteness), so a bad file fails at load with the key it concerns.

use half::f16;
use nino_core::nowcast::meta::Layout;
use nino_core::nowcast::{Config, Head, NinoWeights, WeightElem};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::tensor_file::floats_as_f32;

/// Why a weights file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("cannot read weights file {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a safetensors file, truncated, or its header disagrees with its data.
    #[error("{path} is not a valid safetensors file (truncated, or a header that lies about sizes?): {source}")]
    Format {
        /// File.
        path: PathBuf,
        /// Cause.
        source: SafeTensorError,
    },
    /// Neither the header metadata nor a JSON file beside it holds `model_args`.
    #[error("{path}: no `model_args` in the safetensors metadata and no readable {json} beside it")]
    NoModelArgs {
        /// File.
        path: PathBuf,
        /// The JSON file looked for.
        json: PathBuf,
    },
    /// `model_args` does not describe a model this port runs.
    #[error("{path}: model_args {json}: {reason}")]
    ModelArgs {
        /// File.
        path: PathBuf,
        /// The JSON text.
        json: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor the model needs is absent.
    #[error("{path}: weight `{key}` is missing (expected shape {expected:?})")]
    MissingKey {
        /// File.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor has another shape than the model's configuration implies.
    #[error("{path}: weight `{key}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// File.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Shape in the file.
        got: Vec<usize>,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a dtype other than F32, F16 or BF16.
    #[error("{path}: weight `{key}` has dtype {dtype:?}, expected F32, F16 or BF16")]
    Dtype {
        /// File.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// Dtype in the file.
        dtype: Dtype,
    },
    /// A tensor holds NaN or infinite values (or overflows f16 on conversion).
    #[error("{path}: weight `{key}` holds {count} non-finite value(s)")]
    NonFinite {
        /// File.
        path: PathBuf,
        /// State-dict key.
        key: String,
        /// How many.
        count: usize,
    },
    /// The core refused the bound weights (should not happen after validation).
    #[error("{path}: {source}")]
    Core {
        /// File.
        path: PathBuf,
        /// Cause.
        source: nino_core::Error,
    },
}

#[derive(Clone, Debug)]
struct Tensor<W> {
    shape: Vec<usize>,
    dtype: Dtype,
    data: Vec<W>,
}

/// Owned NiNo weights and their configuration, in storage `W` (`f32` or `half::f16`).
#[derive(Clone, Debug)]
pub struct WeightSet<W> {
    /// The model's options (from `model_args`).
    pub config: Config,
    /// Where the weights came from (for messages).
    pub path: PathBuf,
    tensors: HashMap<String, Tensor<W>>,
}

impl WeightSet<f32> {
    /// Loads `path`; `model_args` comes from the header metadata, else from `<path stem>.json` beside it.
    pub fn load(path: impl AsRef<Path>) -> Result<WeightSet<f32>, WeightsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses a safetensors image; `path` names it in errors and locates the JSON fallback.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<WeightSet<f32>, WeightsError> {
        let format = |source| WeightsError::Format { path: path.into(), source };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format)?;
        let st = SafeTensors::deserialize(bytes).map_err(format)?;
        let json = match meta.metadata().as_ref().and_then(|m| m.get("model_args")) {
            Some(j) => j.clone(),
            None => {
                let json_path = path.with_extension("json");
                std::fs::read_to_string(&json_path)
                    .map_err(|_| WeightsError::NoModelArgs { path: path.into(), json: json_path })?
            }
        };
        let config = Config::from_json(json.trim()).map_err(|e| WeightsError::ModelArgs {
            path: path.into(),
            json: json.trim().to_string(),
            reason: e.to_string(),
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.iter() {
            let data = floats_as_f32(view.dtype(), view.data()).unwrap_or_default();
            let count = data.iter().filter(|x| !x.is_finite()).count();
            if count > 0 {
                return Err(WeightsError::NonFinite { path: path.into(), key: name.to_string(), count });
            }
            tensors.insert(name.to_string(), Tensor { shape: view.shape().to_vec(), dtype: view.dtype(), data });
        }
        let set = WeightSet { config, path: path.into(), tensors };
        set.check()?;
        Ok(set)
    }

    /// The same weights rounded to f16 storage (math stays f32); fails if a value overflows f16.
    pub fn to_f16(&self) -> Result<WeightSet<f16>, WeightsError> {
        let mut tensors = HashMap::new();
        for (k, t) in &self.tensors {
            let data: Vec<f16> = t.data.iter().map(|&x| f16::from_f32(x)).collect();
            let count = data.iter().filter(|x| !x.is_finite()).count();
            if count > 0 {
                return Err(WeightsError::NonFinite { path: self.path.clone(), key: k.clone(), count });
            }
            tensors.insert(k.clone(), Tensor { shape: t.shape.clone(), dtype: t.dtype, data });
        }
        Ok(WeightSet { config: self.config, path: self.path.clone(), tensors })
    }
}

impl<W: WeightElem> WeightSet<W> {
    /// Whether the model is a NiNo++ variant (GRU/LSTM head or centrality), which runs through the
    /// core's trainable path (`nowcast::meta`) instead of [`WeightSet::bind`].
    pub fn is_meta(&self) -> bool {
        self.config.head != Head::Mlp || self.config.centrality
    }

    /// One tensor by state-dict key: its shape and values.
    pub fn tensor(&self, key: &str) -> Option<(&[usize], &[W])> {
        self.tensors.get(key).map(|t| (t.shape.as_slice(), t.data.as_slice()))
    }

    /// Checks every key, shape and dtype the model reads, for the reference models and the variants.
    fn check(&self) -> Result<(), WeightsError> {
        if !self.is_meta() {
            return self.bind().map(|_| ());
        }
        let mut err = None;
        let visited = Layout::visit(&self.config, &mut |t| {
            let (want, nd) = t.shape();
            let found = match self.tensors.get(t.key.as_str()) {
                None => Err(WeightsError::MissingKey {
                    path: self.path.clone(),
                    key: t.key.to_string(),
                    expected: want[..nd].to_vec(),
                }),
                Some(x) if x.shape != want[..nd] => Err(WeightsError::Shape {
                    path: self.path.clone(),
                    key: t.key.to_string(),
                    got: x.shape.clone(),
                    expected: want[..nd].to_vec(),
                }),
                Some(_) => Ok(()),
            };
            found.map_err(|e| {
                err = Some(e);
                nino_core::Error::InvalidArgument("weights: tensor missing or misshapen")
            })
        });
        match (visited, err) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(e)) => Err(e),
            (Err(source), None) => Err(WeightsError::Core { path: self.path.clone(), source }),
        }
    }

    /// Lends the weights to the core model, checking every key, shape and dtype it asks for.
    pub fn bind(&self) -> Result<NinoWeights<'_, W>, WeightsError> {
        let mut err = None;
        let bound = NinoWeights::bind(self.config, |key, shape| {
            let found = match self.tensors.get(key) {
                None => {
                    Err(WeightsError::MissingKey { path: self.path.clone(), key: key.into(), expected: shape.to_vec() })
                }
                Some(t) if !matches!(t.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) => {
                    Err(WeightsError::Dtype { path: self.path.clone(), key: key.into(), dtype: t.dtype })
                }
                Some(t) if t.shape != shape => Err(WeightsError::Shape {
                    path: self.path.clone(),
                    key: key.into(),
                    got: t.shape.clone(),
                    expected: shape.to_vec(),
                }),
                Some(t) => Ok(t.data.as_slice()),
            };
            found.map_err(|e| err = Some(e)).ok()
        });
        match (bound, err) {
            (Ok(w), _) => Ok(w),
            (Err(_), Some(e)) => Err(e),
            (Err(source), None) => Err(WeightsError::Core { path: self.path.clone(), source }),
        }
    }

    /// Number of stored values over all tensors.
    pub fn num_values(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    const ARGS: &str = r#"{"gnn": false, "hid": 4}"#;

    /// A valid tiny WNN+ (hid 4) as (key, shape) pairs.
    fn keys() -> Vec<(&'static str, Vec<usize>)> {
        let mut v = vec![("layer_embed.weight", vec![15, 4]), ("edge_proj.fc.0.weight", vec![4, 5])];
        v.push(("edge_proj.fc.0.bias", vec![4]));
        for m in ["0", "2", "4"] {
            v.push((Box::leak(format!("edge_mlp.fc.{m}.weight").into_boxed_str()), vec![4, 4]));
            v.push((Box::leak(format!("edge_mlp.fc.{m}.bias").into_boxed_str()), vec![4]));
        }
        v.push(("edge_mlp.fc.6.weight", vec![40, 4]));
        v.push(("edge_mlp.fc.6.bias", vec![40]));
        v
    }

    fn build(edit: impl Fn(&str, &mut Vec<usize>, &mut Dtype, &mut Vec<u8>) -> bool, args: Option<&str>) -> Vec<u8> {
        let mut owned = Vec::new();
        for (k, s) in keys() {
            let n: usize = s.iter().product();
            let mut bytes: Vec<u8> = (0..n).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
            let (mut s, mut dt) = (s, Dtype::F32);
            if edit(k, &mut s, &mut dt, &mut bytes) {
                owned.push((k.to_string(), dt, s, bytes));
            }
        }
        let views: Vec<(String, TensorView<'_>)> =
            owned.iter().map(|(k, dt, s, b)| (k.clone(), TensorView::new(*dt, s.clone(), b).unwrap())).collect();
        let meta = args.map(|a| HashMap::from([("model_args".to_string(), a.to_string())]));
        safetensors::serialize(views, meta).unwrap()
    }

    fn load(bytes: &[u8]) -> Result<WeightSet<f32>, WeightsError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        std::fs::write(&p, bytes).unwrap();
        WeightSet::load(&p)
    }

    #[test]
    fn valid_file_loads_and_binds_in_both_storages() {
        let w = load(&build(|_, _, _, _| true, Some(ARGS))).unwrap();
        assert_eq!(w.config.hid, 4);
        assert!(w.bind().is_ok());
        assert!(w.to_f16().unwrap().bind().is_ok());
    }

    #[test]
    fn model_args_from_the_json_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, build(|_, _, _, _| true, None)).unwrap();
        assert!(matches!(WeightSet::load(&p), Err(WeightsError::NoModelArgs { .. })));
        std::fs::write(dir.path().join("m.json"), ARGS).unwrap();
        assert_eq!(WeightSet::load(&p).unwrap().config.hid, 4);
        std::fs::write(dir.path().join("m.json"), r#"{"towers": 4}"#).unwrap();
        assert!(matches!(WeightSet::load(&p), Err(WeightsError::ModelArgs { .. })));
    }

    #[test]
    fn missing_key_is_named() {
        let e = load(&build(|k, _, _, _| k != "edge_mlp.fc.2.bias", Some(ARGS))).unwrap_err();
        assert!(matches!(&e, WeightsError::MissingKey { key, .. } if key == "edge_mlp.fc.2.bias"), "{e}");
        assert!(e.to_string().contains("edge_mlp.fc.2.bias"));
    }

    #[test]
    fn wrong_shape_is_named() {
        let e = load(&build(
            |k, s, _, _| {
                if k == "edge_proj.fc.0.weight" {
                    *s = vec![5, 4];
                }
                true
            },
            Some(ARGS),
        ))
        .unwrap_err();
        assert!(matches!(&e, WeightsError::Shape { got, .. } if got == &[5, 4]), "{e}");
    }

    #[test]
    fn wrong_dtype_is_named() {
        let e = load(&build(
            |k, _, dt, _| {
                if k == "edge_mlp.fc.6.bias" {
                    *dt = Dtype::I32;
                }
                true
            },
            Some(ARGS),
        ))
        .unwrap_err();
        assert!(matches!(&e, WeightsError::Dtype { dtype: Dtype::I32, .. }), "{e}");
    }

    #[test]
    fn nan_weights_are_rejected() {
        let e = load(&build(
            |k, _, _, b| {
                if k == "edge_mlp.fc.4.weight" {
                    b[..4].copy_from_slice(&f32::NAN.to_le_bytes());
                }
                true
            },
            Some(ARGS),
        ))
        .unwrap_err();
        assert!(matches!(&e, WeightsError::NonFinite { count: 1, .. }), "{e}");
    }

    #[test]
    fn truncated_file_is_rejected() {
        let good = build(|_, _, _, _| true, Some(ARGS));
        for cut in [3, 20, good.len() - 1] {
            let e = load(&good[..cut]).unwrap_err();
            assert!(matches!(e, WeightsError::Format { .. }), "cut {cut}: {e}");
        }
    }

    #[test]
    fn header_that_lies_about_sizes_is_rejected() {
        let good = build(|_, _, _, _| true, Some(ARGS));
        let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        // Claim a header longer than the file.
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&((good.len() as u64) * 2).to_le_bytes());
        assert!(matches!(load(&bad), Err(WeightsError::Format { .. })));
        // Keep the length but make one tensor's shape disagree with its byte range.
        let header = String::from_utf8(good[8..8 + n].to_vec()).unwrap();
        let lied = header.replacen("[40,4]", "[41,4]", 1);
        assert_ne!(lied, header);
        let mut bad = good[..8].to_vec();
        bad.extend_from_slice(lied.as_bytes());
        bad.extend_from_slice(&good[8 + n..]);
        assert!(matches!(load(&bad), Err(WeightsError::Format { .. })));
    }

    #[test]
    fn f16_overflow_is_rejected() {
        let w = load(&build(
            |k, _, _, b| {
                if k == "edge_proj.fc.0.bias" {
                    b[..4].copy_from_slice(&1e6f32.to_le_bytes());
                }
                true
            },
            Some(ARGS),
        ))
        .unwrap();
        assert!(matches!(w.to_f16(), Err(WeightsError::NonFinite { .. })));
    }
}
