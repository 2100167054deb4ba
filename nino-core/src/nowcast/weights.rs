//! NiNo model configuration and weights borrowed from caller memory, stored as f32 or f16.

use crate::error::Error;
use core::fmt::Write;
use heapless::{String, Vec};

/// Most message-passing layers a model may have (the published ones have 3).
pub const MAX_GNN_LAYERS: usize = 8;

/// A storage type for weights; all math is done in f32 after conversion.
pub trait WeightElem: Copy + Send + Sync + 'static {
    /// The value as f32.
    fn to_f32(self) -> f32;
    /// The slice itself when the storage already is f32, so no staging copy is needed.
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]>;
}

impl WeightElem for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn as_f32_slice(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
}

impl WeightElem for half::f16 {
    #[inline]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    #[inline]
    fn as_f32_slice(_: &[Self]) -> Option<&[f32]> {
        None
    }
}

/// The direct-multi-step head that turns final edge features into per-horizon deltas (spec 4.3 step 5, 9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Head {
    /// The reference: `Linear(H, H)`, SiLU, `Linear(H, Fm*S)` (`edge_out.fc.0`, `edge_out.fc.2`).
    Mlp,
    /// NiNo++: a GRU over each edge's `c` history steps from `h0 = Ee`, then `Linear(H, Fm*S)`.
    Gru,
    /// NiNo++: an LSTM over each edge's `c` history steps from `h0 = Ee, c0 = 0`, then `Linear(H, Fm*S)`.
    Lstm,
}

impl Head {
    /// Gates of the recurrent cell (PyTorch's layouts: GRU r, z, n; LSTM i, f, g, o); 0 for the MLP.
    pub const fn gates(self) -> usize {
        match self {
            Head::Mlp => 0,
            Head::Gru => 3,
            Head::Lstm => 4,
        }
    }

    /// The name used in `model_args` (`"mlp"`, `"gru"`, `"lstm"`).
    pub const fn name(self) -> &'static str {
        match self {
            Head::Mlp => "mlp",
            Head::Gru => "gru",
            Head::Lstm => "lstm",
        }
    }
}

/// Constructor options of a NiNo checkpoint (spec 4.1), with the reference defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Hidden width `H`.
    pub hid: usize,
    /// Message-passing layers.
    pub layers: usize,
    /// Context states `c`.
    pub ctx: usize,
    /// Width of the node positional features (input of `node_proj`).
    pub lpe: usize,
    /// Horizons the DMS head emits (`S`).
    pub seq_len: usize,
    /// Edge feature slots the model was built for (`Fm`).
    pub max_feat_size: usize,
    /// Rows of the edge-type embedding (0: none).
    pub edge_types: usize,
    /// True for the GNN, false for WNN+ (`nino_mlp`).
    pub gnn: bool,
    /// Whether the word positional table exists (only its row 0 matters for vision).
    pub wte_pos_enc: bool,
    /// Rows of the word positional table minus one.
    pub vocab_size: usize,
    /// Multiplier of the predicted delta.
    pub upd_scale: f32,
    /// The DMS head (NiNo++ adds GRU and LSTM heads; `model_args.head`).
    pub head: Head,
    /// Whether eigenvector centrality is a node feature through its own `cent_proj` (NiNo++ `V0*`).
    pub centrality: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hid: 128,
            layers: 3,
            ctx: 5,
            lpe: 8,
            seq_len: 40,
            max_feat_size: 9,
            edge_types: 15,
            gnn: true,
            wte_pos_enc: true,
            vocab_size: 50257,
            upd_scale: 1.0,
            head: Head::Mlp,
            centrality: false,
        }
    }
}

#[derive(serde::Deserialize)]
struct RawArgs<'a> {
    hid: Option<usize>,
    layers: Option<usize>,
    ctx: Option<usize>,
    lpe: Option<usize>,
    seq_len: Option<usize>,
    max_feat_size: Option<usize>,
    edge_types: Option<usize>,
    gnn: Option<bool>,
    wte_pos_enc: Option<bool>,
    vocab_size: Option<usize>,
    upd_scale: Option<f32>,
    dms: Option<bool>,
    improved_graph: Option<bool>,
    residual: Option<bool>,
    final_edge_update: Option<bool>,
    towers: Option<usize>,
    input_layer: Option<&'a str>,
    act_name: Option<&'a str>,
    scale_method: Option<&'a str>,
    head: Option<&'a str>,
    centrality: Option<bool>,
}

/// Largest `hid`, `ctx`, `lpe`, `seq_len`, `max_feat_size`, `edge_types` and `vocab_size` a `model_args` may
/// give (the published models' largest is `vocab_size` 50257). With it, every tensor shape of every model
/// variant (at most three sizes and a gate count multiplied, summed over fewer than 200 tensors) fits a 64-bit
/// `usize`; [`Config::validate`] also checks each tensor's size on any target.
pub const MAX_DIM: usize = 1 << 20;

/// Most `[` and `{` a `model_args` JSON may hold. serde-json-core skips an unknown field's value by
/// recursing once per nesting level, so without a bound a file of `[[[[...` overflows the stack; the number
/// of openers bounds the depth whatever the strings around them (the published `model_args` have one).
pub const MAX_JSON_OPENERS: usize = 64;

impl Config {
    /// Parses a checkpoint's `model_args` JSON over the defaults, rejecting options this port does not run.
    pub fn from_json(json: &str) -> Result<Config, Error> {
        if json.bytes().filter(|b| matches!(b, b'[' | b'{')).count() > MAX_JSON_OPENERS {
            return Err(Error::InvalidArgument("model_args: more than 64 '[' or '{' (too deeply nested)"));
        }
        let (r, _): (RawArgs<'_>, usize) =
            serde_json_core::from_str(json).map_err(|_| Error::InvalidArgument("model_args: malformed JSON"))?;
        let d = Config::default();
        let unsupported = |ok: bool, what| if ok { Ok(()) } else { Err(Error::InvalidArgument(what)) };
        unsupported(r.dms.unwrap_or(true), "model_args: only dms=true is supported")?;
        unsupported(r.improved_graph.unwrap_or(true), "model_args: only improved_graph=true is supported")?;
        unsupported(r.residual.unwrap_or(true), "model_args: only residual=true is supported")?;
        unsupported(!r.final_edge_update.unwrap_or(false), "model_args: final_edge_update=true is not supported")?;
        unsupported(r.towers.unwrap_or(1) == 1, "model_args: only towers=1 is supported")?;
        unsupported(r.input_layer.unwrap_or("linear") == "linear", "model_args: only input_layer='linear'")?;
        unsupported(r.act_name.unwrap_or("silu") == "silu", "model_args: only act_name='silu' is supported")?;
        unsupported(r.scale_method.unwrap_or("std") == "std", "model_args: only scale_method='std'")?;
        let head = match r.head.unwrap_or("mlp") {
            "mlp" => Head::Mlp,
            "gru" => Head::Gru,
            "lstm" => Head::Lstm,
            _ => return Err(Error::InvalidArgument("model_args: head must be 'mlp', 'gru' or 'lstm'")),
        };
        let c = Config {
            hid: r.hid.unwrap_or(d.hid),
            layers: r.layers.unwrap_or(d.layers),
            ctx: r.ctx.unwrap_or(d.ctx),
            lpe: r.lpe.unwrap_or(d.lpe),
            seq_len: r.seq_len.unwrap_or(d.seq_len),
            max_feat_size: r.max_feat_size.unwrap_or(d.max_feat_size),
            edge_types: r.edge_types.unwrap_or(d.edge_types),
            gnn: r.gnn.unwrap_or(d.gnn),
            wte_pos_enc: r.wte_pos_enc.unwrap_or(d.wte_pos_enc),
            vocab_size: r.vocab_size.unwrap_or(d.vocab_size),
            upd_scale: r.upd_scale.unwrap_or(d.upd_scale),
            head,
            centrality: r.centrality.unwrap_or(d.centrality),
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks that the sizes describe a model this port can run.
    pub fn validate(&self) -> Result<(), Error> {
        if self.hid == 0 || self.ctx == 0 || self.seq_len == 0 || self.max_feat_size == 0 {
            return Err(Error::InvalidArgument("model_args: hid, ctx, seq_len, max_feat_size must be positive"));
        }
        if self.layers == 0 || self.layers > MAX_GNN_LAYERS {
            return Err(Error::InvalidArgument("model_args: layers must be in 1..=8"));
        }
        if self.gnn && self.lpe == 0 && !self.wte_pos_enc {
            return Err(Error::InvalidArgument("model_args: a GNN needs lpe > 0 or wte_pos_enc"));
        }
        if !self.gnn && (self.head != Head::Mlp || self.centrality) {
            return Err(Error::InvalidArgument("model_args: recurrent heads and centrality need the GNN (gnn=true)"));
        }
        if !self.upd_scale.is_finite() {
            return Err(Error::NonFinite("model_args.upd_scale"));
        }
        // Sizes come from a file, and every shape below is computed before any tensor is looked up.
        let dims = [self.hid, self.ctx, self.lpe, self.seq_len, self.max_feat_size, self.edge_types, self.vocab_size];
        if dims.iter().any(|&d| d > MAX_DIM) {
            return Err(Error::InvalidArgument("model_args: sizes must be at most 2^20"));
        }
        let (h, fm) = (self.hid, self.max_feat_size);
        let shapes = [
            (Some(self.edge_types), h),
            (self.vocab_size.checked_add(1), h),
            (Some(self.lpe), h),
            (fm.checked_mul(self.ctx), h),
            (h.checked_mul(2), h),
            (fm.checked_mul(self.seq_len), h),
            (h.checked_mul(Head::Lstm.gates()), h),
            (h.checked_mul(Head::Lstm.gates()), fm),
        ];
        if !shapes.iter().all(|&(rows, cols)| rows.and_then(|r| r.checked_mul(cols)).is_some()) {
            return Err(Error::InvalidArgument("model_args: a tensor's size overflows usize"));
        }
        Ok(())
    }

    /// Whether the GNN has a `node_proj` (spec 4.1: when `lpe > 0` or without `wte_pos_enc`).
    pub const fn has_node_proj(&self) -> bool {
        self.lpe > 0 || !self.wte_pos_enc
    }
}

/// One borrowed `Linear(cols -> rows)`: weight `[rows, cols]` row-major and bias `[rows]`.
#[derive(Clone, Copy, Debug)]
pub struct Lin<'a, W> {
    /// Weight, `[rows, cols]`.
    pub w: &'a [W],
    /// Bias, `[rows]`.
    pub b: &'a [W],
    /// Output width.
    pub rows: usize,
    /// Input width.
    pub cols: usize,
}

/// Weights of one message-passing layer (`gnn.convs.{l}`).
#[derive(Clone, Copy, Debug)]
pub struct ConvWeights<'a, W> {
    /// Edge features to (scale, shift), `H -> 2H`.
    pub edge_encoder: Lin<'a, W>,
    /// Message network on `[x_target | x_source]`, `2H -> H`.
    pub pre: Lin<'a, W>,
    /// Node update on `[x | agg]`, `2H -> H`.
    pub post: Lin<'a, W>,
    /// Node output linear, `H -> H`.
    pub lin: Lin<'a, W>,
}

/// Weights of one edge update (`gnn.edge_update.{m}`).
#[derive(Clone, Copy, Debug)]
pub struct EdgeUpdateWeights<'a, W> {
    /// Edge term.
    pub lin_e: Lin<'a, W>,
    /// Source-node term.
    pub lin_s: Lin<'a, W>,
    /// Target-node term.
    pub lin_t: Lin<'a, W>,
    /// Edge output linear.
    pub lin1: Lin<'a, W>,
}

/// Weights of the NiNo GNN (`gnn = true`).
#[derive(Clone, Debug)]
pub struct GnnWeights<'a, W> {
    /// Edge-type embedding `[T, H]`, if the model has one.
    pub layer_embed: Option<&'a [W]>,
    /// Row 0 of the word positional table (added to every node of a CNN/MLP graph), if present.
    pub wte_row0: Option<&'a [W]>,
    /// LPE to node features.
    pub node_proj: Option<Lin<'a, W>>,
    /// History features to edge features, `Fm*c -> H`.
    pub edge_proj: Lin<'a, W>,
    /// Message-passing layers.
    pub convs: Vec<ConvWeights<'a, W>, MAX_GNN_LAYERS>,
    /// Edge updates (one fewer than the layers).
    pub edge_updates: Vec<EdgeUpdateWeights<'a, W>, MAX_GNN_LAYERS>,
    /// DMS head hidden layer, `H -> H`.
    pub head_hidden: Lin<'a, W>,
    /// DMS head output, `H -> Fm*S`.
    pub head_out: Lin<'a, W>,
}

/// Weights of WNN+ (`gnn = false`).
#[derive(Clone, Debug)]
pub struct WnnWeights<'a, W> {
    /// Edge-type embedding `[T, H]`, if the model has one.
    pub layer_embed: Option<&'a [W]>,
    /// One slot's `c` values to `H`.
    pub edge_proj: Lin<'a, W>,
    /// The three hidden layers `edge_mlp.fc.{0,2,4}`.
    pub hidden: [Lin<'a, W>; 3],
    /// Output, `H -> S` (`edge_mlp.fc.6`).
    pub out: Lin<'a, W>,
}

/// The two model families.
// Borrowed views bound once per nowcast; boxing the larger one would need an allocator.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ModelWeights<'a, W> {
    /// Graph network (`nino_no_posw`).
    Gnn(GnnWeights<'a, W>),
    /// Per-parameter MLP (`nino_mlp`).
    Wnn(WnnWeights<'a, W>),
}

/// A configured NiNo model whose weights live in the caller's memory.
#[derive(Clone, Debug)]
pub struct NinoWeights<'a, W> {
    /// Options the weights were built with.
    pub config: Config,
    /// The weights.
    pub model: ModelWeights<'a, W>,
}

type Name = String<64>;

struct Binder<'a, 'g, W: 'a, G: FnMut(&str, &[usize]) -> Option<&'a [W]>> {
    get: &'g mut G,
}

impl<'a, W: WeightElem, G: FnMut(&str, &[usize]) -> Option<&'a [W]>> Binder<'a, '_, W, G> {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<&'a [W], Error> {
        let t = (self.get)(name, shape).ok_or(Error::InvalidArgument("weights: tensor missing or misshapen"))?;
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(t.len()) {
            return Err(Error::InvalidArgument("weights: tensor has the wrong number of values"));
        }
        Ok(t)
    }

    fn lin(&mut self, prefix: core::fmt::Arguments<'_>, rows: usize, cols: usize) -> Result<Lin<'a, W>, Error> {
        let mut w = Name::new();
        let mut b = Name::new();
        let too_long = |_| Error::InvalidArgument("weights: key too long");
        write!(w, "{prefix}.weight").map_err(too_long)?;
        write!(b, "{prefix}.bias").map_err(too_long)?;
        Ok(Lin { w: self.tensor(&w, &[rows, cols])?, b: self.tensor(&b, &[rows])?, rows, cols })
    }
}

impl<'a, W: WeightElem> NinoWeights<'a, W> {
    /// Binds the tensors of `config`'s model by state-dict key; `get(key, shape)` returns the tensor or
    /// `None` (the host reports which key was missing or misshapen before returning `None`).
    pub fn bind(
        config: Config,
        mut get: impl FnMut(&str, &[usize]) -> Option<&'a [W]>,
    ) -> Result<NinoWeights<'a, W>, Error> {
        config.validate()?;
        if config.head != Head::Mlp || config.centrality {
            return Err(Error::InvalidArgument(
                "weights: NiNo++ variants (GRU/LSTM head, centrality) run through nowcast::meta",
            ));
        }
        let h = config.hid;
        let mut b = Binder { get: &mut get };
        let layer_embed =
            if config.edge_types > 0 { Some(b.tensor("layer_embed.weight", &[config.edge_types, h])?) } else { None };
        let model = if config.gnn {
            let wte_row0 = if config.wte_pos_enc {
                Some(&b.tensor("wte_pos_enc_layer.weight", &[config.vocab_size + 1, h])?[..h])
            } else {
                None
            };
            let node_proj =
                if config.has_node_proj() { Some(b.lin(format_args!("node_proj.fc.0"), h, config.lpe)?) } else { None };
            let edge_proj = b.lin(format_args!("edge_proj.fc.0"), h, config.max_feat_size * config.ctx)?;
            let mut convs = Vec::new();
            for l in 0..config.layers {
                let c = ConvWeights {
                    edge_encoder: b.lin(format_args!("gnn.convs.{l}.edge_encoder"), 2 * h, h)?,
                    pre: b.lin(format_args!("gnn.convs.{l}.pre_nns.0.0"), h, 2 * h)?,
                    post: b.lin(format_args!("gnn.convs.{l}.post_nns.0.0"), h, 2 * h)?,
                    lin: b.lin(format_args!("gnn.convs.{l}.lin"), h, h)?,
                };
                let _ = convs.push(c);
            }
            let mut edge_updates = Vec::new();
            for m in 0..config.layers - 1 {
                let u = EdgeUpdateWeights {
                    lin_e: b.lin(format_args!("gnn.edge_update.{m}.lin_e"), h, h)?,
                    lin_s: b.lin(format_args!("gnn.edge_update.{m}.lin_s"), h, h)?,
                    lin_t: b.lin(format_args!("gnn.edge_update.{m}.lin_t"), h, h)?,
                    lin1: b.lin(format_args!("gnn.edge_update.{m}.lin1"), h, h)?,
                };
                let _ = edge_updates.push(u);
            }
            ModelWeights::Gnn(GnnWeights {
                layer_embed,
                wte_row0,
                node_proj,
                edge_proj,
                convs,
                edge_updates,
                head_hidden: b.lin(format_args!("edge_out.fc.0"), h, h)?,
                head_out: b.lin(format_args!("edge_out.fc.2"), config.max_feat_size * config.seq_len, h)?,
            })
        } else {
            ModelWeights::Wnn(WnnWeights {
                layer_embed,
                edge_proj: b.lin(format_args!("edge_proj.fc.0"), h, config.ctx)?,
                hidden: [
                    b.lin(format_args!("edge_mlp.fc.0"), h, h)?,
                    b.lin(format_args!("edge_mlp.fc.2"), h, h)?,
                    b.lin(format_args!("edge_mlp.fc.4"), h, h)?,
                ],
                out: b.lin(format_args!("edge_mlp.fc.6"), config.seq_len, h)?,
            })
        };
        Ok(NinoWeights { config, model })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_args_of_the_published_checkpoints() {
        let c = Config::from_json(r#"{"wte_pos_enc": false}"#).unwrap();
        assert!(c.gnn && !c.wte_pos_enc && c.hid == 128 && c.layers == 3);
        let c = Config::from_json(r#"{"gnn": false, "hid": 32}"#).unwrap();
        assert!(!c.gnn && c.hid == 32 && c.ctx == 5 && c.seq_len == 40);
        assert_eq!(Config::from_json("{}").unwrap(), Config::default());
        assert!(Config::from_json(r#"{"towers": 4}"#).is_err());
        assert!(Config::from_json(r#"{"hid": 0}"#).is_err());
        assert!(Config::from_json(r#"{"hid": "#).is_err());
        assert!(Config::from_json(r#"{"chunk_size": 1000000, "lpe": 8}"#).is_ok());
        let pp = Config::from_json(r#"{"wte_pos_enc": false, "lpe": 5, "head": "lstm", "centrality": true}"#).unwrap();
        assert!(pp.head == Head::Lstm && pp.centrality && pp.lpe == 5);
        assert!(Config::from_json(r#"{"head": "transformer"}"#).is_err());
        assert!(Config::from_json(r#"{"gnn": false, "head": "gru"}"#).is_err());
    }

    #[test]
    fn model_args_sizes_are_bounded_before_any_shape_is_computed() {
        let too_large = Err(Error::InvalidArgument("model_args: sizes must be at most 2^20"));
        assert_eq!(Config::from_json(r#"{"vocab_size": 18446744073709551615}"#), too_large);
        assert_eq!(Config::from_json(r#"{"hid": 9223372036854775808}"#), too_large);
        assert_eq!(Config::from_json(r#"{"max_feat_size": 1048577}"#), too_large);
        let c = Config::from_json(r#"{"hid": 1048576, "vocab_size": 1048576, "max_feat_size": 1048576}"#).unwrap();
        assert!(NinoWeights::<f32>::bind(c, |_, _| None).is_err());
    }

    #[test]
    fn model_args_nesting_is_bounded() {
        extern crate std;
        let nested = |depth: usize| {
            let mut s = std::string::String::from(r#"{"extra": "#);
            s.extend(core::iter::repeat_n('[', depth).chain(core::iter::repeat_n(']', depth)));
            s.push_str(r#", "hid": 8}"#);
            s
        };
        assert_eq!(Config::from_json(&nested(63)).map(|c| c.hid), Ok(8));
        assert!(matches!(Config::from_json(&nested(64)), Err(Error::InvalidArgument(m)) if m.contains("nested")));
        // Deep enough to overflow any stack if it were parsed.
        assert!(Config::from_json(&nested(1_000_000)).is_err());
    }

    #[test]
    fn bind_asks_for_every_key_with_its_shape() {
        let cfg = Config::from_json(r#"{"gnn": false, "hid": 4}"#).unwrap();
        let buf = [0.5f32; 256];
        let mut seen = 0;
        let w = NinoWeights::bind(cfg, |_, shape| {
            seen += 1;
            Some(&buf[..shape.iter().product()])
        })
        .unwrap();
        assert_eq!(seen, 11);
        assert!(matches!(w.model, ModelWeights::Wnn(_)));
        assert!(NinoWeights::<f32>::bind(cfg, |_, _| None).is_err());
    }
}
