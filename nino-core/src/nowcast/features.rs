//! Edge features from the scaled history (spec 2.4) and their inverse, edges back to parameters (spec 2.5).

use crate::arch::LayerKind;
use crate::error::{Error, check_len};
use crate::graph::{EdgeType, NeuralGraph};

/// Feature a self-loop carries in slot 0 for every state (written after scaling, itself unscaled).
pub const SELF_LOOP_FEATURE: f32 = 2.0;

/// Length of `edge_attr_in` (`[E, F*c]`) for `graph` and `c` context states.
pub fn edge_attr_len(graph: &NeuralGraph, c: usize) -> usize {
    graph.num_edges() * graph.feat_slots() * c
}

/// Length of the model's per-edge output (`[E, F]`).
pub fn edge_out_len(graph: &NeuralGraph) -> usize {
    graph.num_edges() * graph.feat_slots()
}

/// Visits every edge in order as `(edge, source, target, type)` without per-edge searching.
pub fn for_each_edge(graph: &NeuralGraph, f: impl FnMut(usize, usize, usize, EdgeType)) {
    for_each_edge_in(graph, 0..graph.num_edges(), f)
}

/// [`for_each_edge`] restricted to the edges numbered within `range`, visiting only those.
pub fn for_each_edge_in(
    graph: &NeuralGraph,
    range: core::ops::Range<usize>,
    mut f: impl FnMut(usize, usize, usize, EdgeType),
) {
    // The edges of one block numbered `start..start + len`, as block-local indices inside `range`.
    let local =
        |start: usize, len: usize| range.start.max(start) - start..range.end.min(start + len).max(start) - start;
    for (ln, l) in graph.layer_nodes().iter().zip(graph.arch().layers()) {
        let kind = match l.kind {
            LayerKind::Conv { .. } => EdgeType::Conv,
            LayerKind::Linear => EdgeType::Linear,
        };
        for j in local(ln.weight_edges, l.n_in * l.n_out) {
            f(ln.weight_edges + j, ln.in_base + j / l.n_out, ln.out_base + j % l.n_out, kind);
        }
        for o in local(ln.bias_edges, l.n_out) {
            f(ln.bias_edges + o, ln.bias_node, ln.out_base + o, EdgeType::Bias);
        }
    }
    let base = graph.num_param_edges();
    for v in local(base, graph.num_nodes()) {
        f(base + v, v, v, EdgeType::SelfLoop);
    }
}

/// Builds `edge_attr_in` (`[E, F*c]`, column `f*c + t`) from scaled states `[c][P]`, oldest first.
pub fn history_to_edge_attr(graph: &NeuralGraph, scaled: &[f32], c: usize, out: &mut [f32]) -> Result<(), Error> {
    if c == 0 {
        return Err(Error::InvalidArgument("history needs at least one state"));
    }
    let arch = graph.arch();
    let p = arch.param_count();
    check_len("scaled states", scaled.len(), c * p)?;
    check_len("edge_attr_in", out.len(), edge_attr_len(graph, c))?;
    let fc = graph.feat_slots() * c;
    out.fill(0.0);
    for (ln, l) in graph.layer_nodes().iter().zip(arch.layers()) {
        let taps = l.taps();
        for i in 0..l.n_in {
            for o in 0..l.n_out {
                let row = &mut out[(ln.weight_edges + i * l.n_out + o) * fc..][..fc];
                let base = l.weight_offset + (o * l.n_in + i) * taps;
                for f in 0..taps {
                    for t in 0..c {
                        row[f * c + t] = scaled[t * p + base + f];
                    }
                }
            }
        }
        for o in 0..l.n_out {
            let row = &mut out[(ln.bias_edges + o) * fc..][..fc];
            for t in 0..c {
                row[t] = scaled[t * p + l.bias_offset + o];
            }
        }
    }
    for v in 0..graph.num_nodes() {
        out[(graph.num_param_edges() + v) * fc..][..c].fill(SELF_LOOP_FEATURE);
    }
    Ok(())
}

/// Gathers per-edge outputs (`[E, F]`) back into a parameter vector `[P]`, dropping self-loops and padding.
pub fn edges_to_params(graph: &NeuralGraph, edges: &[f32], out: &mut [f32]) -> Result<(), Error> {
    let arch = graph.arch();
    check_len("edge outputs", edges.len(), edge_out_len(graph))?;
    check_len("params", out.len(), arch.param_count())?;
    let fs = graph.feat_slots();
    for (ln, l) in graph.layer_nodes().iter().zip(arch.layers()) {
        let taps = l.taps();
        for i in 0..l.n_in {
            for o in 0..l.n_out {
                let row = &edges[(ln.weight_edges + i * l.n_out + o) * fs..][..taps];
                out[l.weight_offset + (o * l.n_in + i) * taps..][..taps].copy_from_slice(row);
            }
        }
        for o in 0..l.n_out {
            out[l.bias_offset + o] = edges[(ln.bias_edges + o) * fs];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Task;

    #[test]
    fn edge_attr_round_trips_through_the_inverse() {
        let g = NeuralGraph::new(&Task::Debug.arch());
        let p = g.arch().param_count();
        let c = 2;
        let h: [f32; 2 * 662] = core::array::from_fn(|i| i as f32);
        let mut attr = [0.0; 181 * 9 * 2];
        history_to_edge_attr(&g, &h, c, &mut attr).unwrap();
        // Take the newest state (t = c-1) of every slot and map back: must equal history[1].
        let mut last = [0.0; 181 * 9];
        for e in 0..181 {
            for f in 0..9 {
                last[e * 9 + f] = attr[e * 18 + f * c + 1];
            }
        }
        let mut back = [0.0; 662];
        edges_to_params(&g, &last, &mut back).unwrap();
        assert!(back.iter().zip(&h[p..]).all(|(a, b)| a == b));
        // Self-loops: 2 in slot 0 for every t, 0 elsewhere.
        let sl = &attr[(g.num_param_edges()) * 18..][..18];
        assert_eq!(&sl[..2], &[2.0, 2.0]);
        assert!(sl[2..].iter().all(|&x| x == 0.0));
        let mut n = 0;
        for_each_edge(&g, |e, s, t, k| {
            assert_eq!(g.edge(e).unwrap(), crate::graph::Edge { src: s, dst: t, kind: k });
            n += 1;
        });
        assert_eq!(n, g.num_edges());
        // Any split into two ranges visits the same edges, in the same order, as the whole graph.
        for cut in [0, 1, 90, 175, 180, 181] {
            let mut seen = 0;
            for r in [0..cut, cut..181] {
                for_each_edge_in(&g, r.clone(), |e, s, t, k| {
                    assert!(r.contains(&e), "edge {e} outside {r:?}");
                    assert_eq!(e, seen, "cut {cut}");
                    assert_eq!(g.edge(e).unwrap(), crate::graph::Edge { src: s, dst: t, kind: k });
                    seen += 1;
                });
            }
            assert_eq!(seen, 181, "cut {cut}");
        }
    }
}
