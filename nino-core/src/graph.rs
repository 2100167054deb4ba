//! The neural graph of a target network, laid out exactly as the reference `NeuralGraph` builds it.
//!
//! Nodes: the input neurons, then for every layer one bias node followed by its output neurons.
//! Edges: per parameter tensor in `named_parameters()` order (weights source-major, `i*n_out + o`),
//! then one self-loop per node. Nothing is stored per edge: every index is computed from the arch.

use crate::arch::{Arch, Family, LayerKind, MAX_LAYERS};
use crate::error::{Error, check_len};
use core::ops::Range;
use heapless::Vec;

/// Edge types, numbered as the reference numbers them (rows of NiNo's `layer_embed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EdgeType {
    /// A linear weight (2-D tensor).
    Linear = 1,
    /// A bias (1-D tensor not named `*.weight`).
    Bias = 2,
    /// A conv weight (4-D tensor).
    Conv = 3,
    /// A node's self-loop.
    SelfLoop = 13,
}

impl EdgeType {
    /// Number of edge types the published NiNo embeds.
    pub const COUNT: usize = 15;

    /// Reference id, the row of `layer_embed`.
    pub const fn id(self) -> usize {
        self as usize
    }
}

/// One edge with what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Edge {
    /// Source node.
    pub src: usize,
    /// Target node.
    pub dst: usize,
    /// Edge type.
    pub kind: EdgeType,
}

/// Node and edge offsets of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LayerNodes {
    /// First input neuron of the layer.
    pub in_base: usize,
    /// The layer's bias node.
    pub bias_node: usize,
    /// First output neuron.
    pub out_base: usize,
    /// First edge of the weight tensor.
    pub weight_edges: usize,
    /// First edge of the bias tensor.
    pub bias_edges: usize,
}

/// The neural graph layout of an [`Arch`]; all sizes and indices are computed, none stored per edge.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NeuralGraph {
    arch: Arch,
    layers: Vec<LayerNodes, MAX_LAYERS>,
    nodes: usize,
    param_edges: usize,
}

impl NeuralGraph {
    /// Lays out the graph of `arch`.
    pub fn new(arch: &Arch) -> NeuralGraph {
        let mut layers = Vec::new();
        let mut in_base = 0;
        let mut next_node = match arch.family {
            Family::Conv => arch.input.channels,
            Family::Mlp => arch.input.len(),
        };
        let mut edge = 0;
        for l in arch.layers() {
            let bias_node = next_node;
            let out_base = bias_node + 1;
            let weight_edges = edge;
            let bias_edges = edge + l.n_in * l.n_out;
            edge = bias_edges + l.n_out;
            let _ = layers.push(LayerNodes { in_base, bias_node, out_base, weight_edges, bias_edges });
            in_base = out_base;
            next_node = out_base + l.n_out;
        }
        NeuralGraph { arch: arch.clone(), layers, nodes: next_node, param_edges: edge }
    }

    /// The architecture the graph describes.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Number of nodes `N`.
    pub const fn num_nodes(&self) -> usize {
        self.nodes
    }

    /// Number of edges `E`, self-loops included.
    pub const fn num_edges(&self) -> usize {
        self.param_edges + self.nodes
    }

    /// Number of edges that carry parameters (all but the self-loops).
    pub const fn num_param_edges(&self) -> usize {
        self.param_edges
    }

    /// Edge feature slots `F`: the largest kernel area, 1 for MLPs.
    pub fn feat_slots(&self) -> usize {
        self.arch.max_taps()
    }

    /// Node and edge offsets of every layer.
    pub fn layer_nodes(&self) -> &[LayerNodes] {
        &self.layers
    }

    /// Half-open edge range of parameter tensor `j` (the reference's `_edge_dict`).
    pub fn tensor_edges(&self, j: usize) -> Option<Range<usize>> {
        let ln = self.layers.get(j / 2)?;
        let l = self.arch.layers()[j / 2];
        Some(if j.is_multiple_of(2) { ln.weight_edges..ln.bias_edges } else { ln.bias_edges..ln.bias_edges + l.n_out })
    }

    /// Edge `e`, or `None` past the end.
    pub fn edge(&self, e: usize) -> Option<Edge> {
        if e >= self.param_edges {
            let v = e - self.param_edges;
            return (v < self.nodes).then_some(Edge { src: v, dst: v, kind: EdgeType::SelfLoop });
        }
        let li = self.layers.iter().rposition(|ln| ln.weight_edges <= e)?;
        let ln = self.layers[li];
        let l = self.arch.layers()[li];
        if e >= ln.bias_edges {
            let o = e - ln.bias_edges;
            return Some(Edge { src: ln.bias_node, dst: ln.out_base + o, kind: EdgeType::Bias });
        }
        let local = e - ln.weight_edges;
        let kind = match l.kind {
            LayerKind::Conv { .. } => EdgeType::Conv,
            LayerKind::Linear => EdgeType::Linear,
        };
        Some(Edge { src: ln.in_base + local / l.n_out, dst: ln.out_base + local % l.n_out, kind })
    }

    /// All edges in order.
    pub fn edges(&self) -> impl Iterator<Item = Edge> + '_ {
        (0..self.num_edges()).filter_map(|e| self.edge(e))
    }

    /// Fills `src`, `dst` (the reference `edge_index` rows) and `kind` (reference type ids); each of length `E`.
    pub fn write_edges(&self, src: &mut [u32], dst: &mut [u32], kind: &mut [u8]) -> Result<(), Error> {
        let e = self.num_edges();
        check_len("src", src.len(), e)?;
        check_len("dst", dst.len(), e)?;
        check_len("kind", kind.len(), e)?;
        for (i, edge) in self.edges().enumerate() {
            src[i] = edge.src as u32;
            dst[i] = edge.dst as u32;
            kind[i] = edge.kind.id() as u8;
        }
        Ok(())
    }

    /// Number of incoming edges of every node (self-loop included): the mean-aggregation divisor.
    pub fn in_degree(&self, v: usize) -> usize {
        if v >= self.nodes {
            return 0;
        }
        for (ln, l) in self.layers.iter().zip(self.arch.layers()) {
            if v >= ln.out_base && v < ln.out_base + l.n_out {
                return l.n_in + 2;
            }
        }
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{InputShape, Task};

    #[test]
    fn reference_sizes() {
        // N and E from docs/spec.md §1.2.
        for (spec, n, e) in [
            ("conv:16,32,32", 95, 2057),
            ("conv:32,64,64", 175, 7161),
            ("conv:4,6,6", 31, 181),
            ("mlp:32", 828, 26_278),
        ] {
            let a = Arch::parse(spec, InputShape::FASHION_MNIST, 10).unwrap();
            let g = NeuralGraph::new(&a);
            assert_eq!((g.num_nodes(), g.num_edges()), (n, e), "{spec}");
        }
    }

    #[test]
    fn fm16_worked_example() {
        // The worked example and edge ranges of docs/spec.md §2.1-2.2.
        let g = NeuralGraph::new(&Task::Fm16.arch());
        assert_eq!(g.edge(0).unwrap(), Edge { src: 0, dst: 2, kind: EdgeType::Conv });
        assert_eq!(g.edge(16).unwrap(), Edge { src: 1, dst: 2, kind: EdgeType::Bias });
        assert_eq!(g.edge(32).unwrap(), Edge { src: 2, dst: 19, kind: EdgeType::Conv });
        assert_eq!(g.edge(1632).unwrap(), Edge { src: 52, dst: 85, kind: EdgeType::Linear });
        assert_eq!(g.edge(1962).unwrap(), Edge { src: 0, dst: 0, kind: EdgeType::SelfLoop });
        let ranges = [0..16, 16..32, 32..544, 544..576, 576..1600, 1600..1632, 1632..1952, 1952..1962];
        for (j, r) in ranges.into_iter().enumerate() {
            assert_eq!(g.tensor_edges(j).unwrap(), r);
        }
        assert_eq!(g.edge(2057), None);
        let indeg: usize = (0..g.num_nodes()).map(|v| g.in_degree(v)).sum();
        assert_eq!(indeg, g.num_edges());
    }
}
