//! The neural graph as the int tables the NiNo kernels index (edges, slot-to-parameter map, tensors,
//! incoming-edge lists), derived from nino-core's own functions so there is one definition of the layout.

use crate::device::CudaError;
use nino_core::NeuralGraph;
use nino_core::nowcast::features;

/// The tables, concatenated into one int buffer, and where each starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphTables {
    /// All tables back to back.
    pub words: Vec<i32>,
    /// Start of `src` `[E]`, `dst` `[E]`, `kind` `[E]`, `param_of` `[E*F]`, `tensor_of` `[P]`, `in_ptr`
    /// `[N+1]`, `in_edges` `[E]` in `words`.
    pub offsets: [usize; 7],
    /// Parameter tensor boundaries `[T + 1]`.
    pub tensor_bounds: Vec<i32>,
}

/// `param_of` value of an empty slot.
pub const NO_PARAM: i32 = -1;
/// `param_of` value of a self-loop's slot 0 (it carries nino-core's `SELF_LOOP_FEATURE`).
pub const SELF_LOOP: i32 = -2;

fn int(what: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::Unsupported(format!("{what} ({v}) does not fit the kernels' int indices")))
}

/// Builds the tables of `graph`.
pub fn graph_tables(graph: &NeuralGraph) -> Result<GraphTables, CudaError> {
    let arch = graph.arch();
    let (e, n, f, p) = (graph.num_edges(), graph.num_nodes(), graph.feat_slots(), arch.param_count());
    int("edge slots", e * f)?;
    // Parameters are told apart by value through one call of nino-core's history_to_edge_attr: state
    // value p + 3 marks parameter p (0 stays an empty slot, 2 is the self-loop feature). Exact in f32
    // up to 2^24.
    if p + 3 >= 1 << 24 {
        return Err(CudaError::Unsupported(format!("{p} parameters (the tables are built for fewer than 2^24)")));
    }
    let marks: Vec<f32> = (0..p).map(|i| (i + 3) as f32).collect();
    let mut attr = vec![0.0f32; features::edge_attr_len(graph, 1)];
    features::history_to_edge_attr(graph, &marks, 1, &mut attr)?;
    let mut param_of = Vec::with_capacity(attr.len());
    for &v in &attr {
        param_of.push(if v == 0.0 {
            NO_PARAM
        } else if v == features::SELF_LOOP_FEATURE {
            SELF_LOOP
        } else {
            v as i32 - 3
        });
    }
    let (mut s, mut d, mut k) = (vec![0u32; e], vec![0u32; e], vec![0u8; e]);
    graph.write_edges(&mut s, &mut d, &mut k)?;
    let mut tensor_of = vec![0i32; p];
    let mut bounds = vec![0i32];
    for (ti, t) in arch.tensors().enumerate() {
        if t.offset != *bounds.last().unwrap_or(&0) as usize {
            return Err(CudaError::Unsupported("parameter tensors that are not contiguous".into()));
        }
        tensor_of[t.offset..t.offset + t.len].fill(ti as i32);
        bounds.push(int("parameters", t.offset + t.len)?);
    }
    let mut in_ptr = vec![0i32; n + 1];
    for &t in &d {
        in_ptr[t as usize + 1] += 1;
    }
    for v in 0..n {
        if in_ptr[v + 1] as usize != graph.in_degree(v) {
            return Err(CudaError::Unsupported(format!("node {v}: in-degree disagrees with the graph")));
        }
        in_ptr[v + 1] += in_ptr[v];
    }
    let mut fill = in_ptr.clone();
    let mut in_edges = vec![0i32; e];
    for (ei, &t) in d.iter().enumerate() {
        in_edges[fill[t as usize] as usize] = ei as i32;
        fill[t as usize] += 1;
    }
    let as_i32 = |v: &[u32]| v.iter().map(|&x| x as i32).collect::<Vec<i32>>();
    let parts: [Vec<i32>; 7] =
        [as_i32(&s), as_i32(&d), k.iter().map(|&x| x as i32).collect(), param_of, tensor_of, in_ptr, in_edges];
    let mut words = Vec::new();
    let mut offsets = [0usize; 7];
    for (o, part) in offsets.iter_mut().zip(&parts) {
        *o = words.len();
        words.extend_from_slice(part);
    }
    int("table size", words.len())?;
    Ok(GraphTables { words, offsets, tensor_bounds: bounds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nino_core::Task;

    #[test]
    fn tables_invert_the_edge_layout() {
        let g = NeuralGraph::new(&Task::Fm16.arch());
        let t = graph_tables(&g).unwrap();
        let (e, f, p) = (g.num_edges(), g.feat_slots(), g.arch().param_count());
        let param_of = &t.words[t.offsets[3]..t.offsets[3] + e * f];
        // Every parameter sits in exactly one slot; self-loops are the last N edges, slot 0.
        let mut seen = vec![0; p];
        for &v in param_of.iter().filter(|&&v| v >= 0) {
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1));
        assert_eq!(param_of.iter().filter(|&&v| v == SELF_LOOP).count(), g.num_nodes());
        assert_eq!(param_of[g.num_param_edges() * f], SELF_LOOP);
        // FM-16 worked example: edge 0 is conv weight (out 0, in 0), taps 0..9 at parameters 0..9.
        assert_eq!(&param_of[..9], &[0, 1, 2, 3, 4, 5, 6, 7, 8]);
        // Edge 16 is the first bias edge: slot 0 holds fc.0.bias[0] (offset 144), the rest is empty.
        assert_eq!(param_of[16 * f], 144);
        assert!(param_of[16 * f + 1..17 * f].iter().all(|&v| v == NO_PARAM));
        let (ptr, edges) = (&t.words[t.offsets[5]..t.offsets[6]], &t.words[t.offsets[6]..]);
        assert_eq!(ptr[g.num_nodes()] as usize, e);
        let dst = &t.words[t.offsets[1]..t.offsets[2]];
        for v in 0..g.num_nodes() {
            let list = &edges[ptr[v] as usize..ptr[v + 1] as usize];
            assert!(list.windows(2).all(|w| w[0] < w[1]), "node {v}: edge order");
            assert!(list.iter().all(|&ei| dst[ei as usize] as usize == v));
        }
        assert_eq!(*t.tensor_bounds.last().unwrap() as usize, p);
    }
}
