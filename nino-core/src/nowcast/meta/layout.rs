//! The trainable NiNo as one flat f32 vector: which state-dict tensors a [`Config`] has, in a fixed order,
//! and where each one lives, so weights, gradients and optimizer moments share one layout.

use crate::error::Error;
use crate::nowcast::weights::{Config, Head};
use core::fmt::Write;
use heapless::String;

/// A state-dict key.
pub type Key = String<64>;

/// One tensor of the layout: a weight `[rows, cols]` or a bias `[rows]` (`cols == 0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSlot {
    /// State-dict key (the reference's names; NiNo++ modules as in docs/spec.md §9.2 and 9.3).
    pub key: Key,
    /// Rows (the output width of a Linear).
    pub rows: usize,
    /// Columns; 0 marks a 1-D bias.
    pub cols: usize,
    /// Offset in the flat vector.
    pub offset: usize,
}

impl TensorSlot {
    /// Values in the tensor.
    pub const fn len(&self) -> usize {
        if self.cols == 0 { self.rows } else { self.rows * self.cols }
    }

    /// Whether the tensor is empty.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's shape, as safetensors stores it.
    pub fn shape(&self) -> ([usize; 2], usize) {
        if self.cols == 0 { ([self.rows, 0], 1) } else { ([self.rows, self.cols], 2) }
    }
}

/// Offsets of one Linear's weight `[rows, cols]` and bias `[rows]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinSlot {
    /// Offset of the weight.
    pub w: usize,
    /// Offset of the bias.
    pub b: usize,
    /// Output width.
    pub rows: usize,
    /// Input width.
    pub cols: usize,
}

/// Offsets of one message-passing layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvSlots {
    /// `edge_encoder`: `H -> 2H` (scale | shift).
    pub encoder: LinSlot,
    /// `pre_nns.0.0`: `2H -> H` on `[x_target | x_source]`.
    pub pre: LinSlot,
    /// `post_nns.0.0`: `2H -> H` on `[x | agg]`.
    pub post: LinSlot,
    /// `lin`: `H -> H`.
    pub lin: LinSlot,
}

/// Offsets of one edge update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeUpdateSlots {
    /// `lin_e`.
    pub lin_e: LinSlot,
    /// `lin_s`.
    pub lin_s: LinSlot,
    /// `lin_t`.
    pub lin_t: LinSlot,
    /// `lin1`.
    pub lin1: LinSlot,
}

/// Offsets of a recurrent head's cell (PyTorch `nn.GRU`/`nn.LSTM` layer 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellSlots {
    /// `weight_ih_l0 [G*H, Fm]` with `bias_ih_l0`.
    pub ih: LinSlot,
    /// `weight_hh_l0 [G*H, H]` with `bias_hh_l0`.
    pub hh: LinSlot,
}

/// Where every module of a trainable NiNo lives in the flat vector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    /// The model's options.
    pub cfg: Config,
    /// `layer_embed.weight [edge_types, H]`, as a weight-only slot (`b` unused).
    pub embed: Option<LinSlot>,
    /// `node_proj.fc.0`: `lpe -> H`.
    pub node_proj: LinSlot,
    /// `cent_proj.fc.0`: `1 -> H` (NiNo++ `V0*`).
    pub cent_proj: Option<LinSlot>,
    /// `edge_proj.fc.0`: `Fm*c -> H`.
    pub edge_proj: LinSlot,
    /// Message-passing layers (all `layers` of them are stored; the last one's output is unused, quirk Q1).
    pub convs: [ConvSlots; crate::nowcast::weights::MAX_GNN_LAYERS],
    /// Edge updates after layers `0..layers-1`.
    pub edge_updates: [EdgeUpdateSlots; crate::nowcast::weights::MAX_GNN_LAYERS],
    /// MLP head hidden layer (`edge_out.fc.0`), MLP head only.
    pub head_hidden: Option<LinSlot>,
    /// Recurrent cell, GRU and LSTM heads only.
    pub cell: Option<CellSlots>,
    /// Output layer `H -> Fm*S` (`edge_out.fc.2` for the MLP head, `edge_out.fc` for recurrent ones).
    pub head_out: LinSlot,
    /// Total values.
    pub len: usize,
}

struct Builder<'f> {
    at: usize,
    visit: &'f mut dyn FnMut(TensorSlot) -> Result<(), Error>,
}

impl Builder<'_> {
    fn tensor(
        &mut self,
        prefix: core::fmt::Arguments<'_>,
        suffix: &str,
        rows: usize,
        cols: usize,
    ) -> Result<usize, Error> {
        let mut key = Key::new();
        write!(key, "{prefix}{suffix}").map_err(|_| Error::InvalidArgument("layout: key too long"))?;
        let slot = TensorSlot { key, rows, cols, offset: self.at };
        self.at += slot.len();
        let offset = slot.offset;
        (self.visit)(slot)?;
        Ok(offset)
    }

    fn lin(&mut self, prefix: core::fmt::Arguments<'_>, rows: usize, cols: usize) -> Result<LinSlot, Error> {
        let w = self.tensor(prefix, ".weight", rows, cols)?;
        let b = self.tensor(prefix, ".bias", rows, 0)?;
        Ok(LinSlot { w, b, rows, cols })
    }
}

impl Layout {
    /// The layout of `cfg` (a GNN without the word positional table); `visit` sees every tensor in order.
    pub fn visit(cfg: &Config, visit: &mut dyn FnMut(TensorSlot) -> Result<(), Error>) -> Result<Layout, Error> {
        cfg.validate()?;
        if !cfg.gnn || cfg.wte_pos_enc || cfg.lpe == 0 {
            return Err(Error::InvalidArgument("trainable NiNo: a GNN with lpe > 0 and wte_pos_enc=false"));
        }
        let (h, fm, c, s) = (cfg.hid, cfg.max_feat_size, cfg.ctx, cfg.seq_len);
        let mut b = Builder { at: 0, visit };
        let embed = if cfg.edge_types > 0 {
            let w = b.tensor(format_args!("layer_embed"), ".weight", cfg.edge_types, h)?;
            Some(LinSlot { w, b: 0, rows: cfg.edge_types, cols: h })
        } else {
            None
        };
        let node_proj = b.lin(format_args!("node_proj.fc.0"), h, cfg.lpe)?;
        let cent_proj = if cfg.centrality { Some(b.lin(format_args!("cent_proj.fc.0"), h, 1)?) } else { None };
        let edge_proj = b.lin(format_args!("edge_proj.fc.0"), h, fm * c)?;
        let mut convs = [ConvSlots::default(); crate::nowcast::weights::MAX_GNN_LAYERS];
        for (l, conv) in convs.iter_mut().enumerate().take(cfg.layers) {
            *conv = ConvSlots {
                encoder: b.lin(format_args!("gnn.convs.{l}.edge_encoder"), 2 * h, h)?,
                pre: b.lin(format_args!("gnn.convs.{l}.pre_nns.0.0"), h, 2 * h)?,
                post: b.lin(format_args!("gnn.convs.{l}.post_nns.0.0"), h, 2 * h)?,
                lin: b.lin(format_args!("gnn.convs.{l}.lin"), h, h)?,
            };
        }
        let mut edge_updates = [EdgeUpdateSlots::default(); crate::nowcast::weights::MAX_GNN_LAYERS];
        for (m, upd) in edge_updates.iter_mut().enumerate().take(cfg.layers - 1) {
            *upd = EdgeUpdateSlots {
                lin_e: b.lin(format_args!("gnn.edge_update.{m}.lin_e"), h, h)?,
                lin_s: b.lin(format_args!("gnn.edge_update.{m}.lin_s"), h, h)?,
                lin_t: b.lin(format_args!("gnn.edge_update.{m}.lin_t"), h, h)?,
                lin1: b.lin(format_args!("gnn.edge_update.{m}.lin1"), h, h)?,
            };
        }
        let (head_hidden, cell, head_out) = match cfg.head {
            Head::Mlp => {
                let hidden = b.lin(format_args!("edge_out.fc.0"), h, h)?;
                (Some(hidden), None, b.lin(format_args!("edge_out.fc.2"), fm * s, h)?)
            }
            Head::Gru | Head::Lstm => {
                let g = cfg.head.gates() * h;
                let ih_w = b.tensor(format_args!("edge_out.rnn"), ".weight_ih_l0", g, fm)?;
                let hh_w = b.tensor(format_args!("edge_out.rnn"), ".weight_hh_l0", g, h)?;
                let ih_b = b.tensor(format_args!("edge_out.rnn"), ".bias_ih_l0", g, 0)?;
                let hh_b = b.tensor(format_args!("edge_out.rnn"), ".bias_hh_l0", g, 0)?;
                let cell = CellSlots {
                    ih: LinSlot { w: ih_w, b: ih_b, rows: g, cols: fm },
                    hh: LinSlot { w: hh_w, b: hh_b, rows: g, cols: h },
                };
                (None, Some(cell), b.lin(format_args!("edge_out.fc"), fm * s, h)?)
            }
        };
        Ok(Layout {
            cfg: *cfg,
            embed,
            node_proj,
            cent_proj,
            edge_proj,
            convs,
            edge_updates,
            head_hidden,
            cell,
            head_out,
            len: b.at,
        })
    }

    /// The layout of `cfg`.
    pub fn new(cfg: &Config) -> Result<Layout, Error> {
        Layout::visit(cfg, &mut |_| Ok(()))
    }
}
