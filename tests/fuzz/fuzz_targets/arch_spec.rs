//! An arch spec (`--arch`) with any input shape (`--input`, or an IDX header's rows and cols) and classes,
//! then the flat parameter layout and neural graph built from it.
//!
//! Input: channels, height, width and classes as four little-endian `u32`, then the spec as UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nino_core::{Arch, InputShape, NeuralGraph};

/// Small sizes when the top bit is clear (so that valid nets are reached), any `usize` when it is set.
fn size(v: u32) -> usize {
    if v & 0x8000_0000 != 0 { (v as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15) } else { (v % 64) as usize }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, spec)) = data.split_first_chunk::<16>() else { return };
    let Ok(spec) = std::str::from_utf8(spec) else { return };
    let v: Vec<usize> = head.chunks_exact(4).map(|b| size(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
    let shape = InputShape { channels: v[0], height: v[1], width: v[2] };
    let Ok(arch) = Arch::parse(spec, shape, v[3]) else { return };
    // The layout is contiguous and covers every parameter exactly once.
    let mut end = 0usize;
    for t in arch.tensors() {
        assert_eq!(t.offset, end);
        assert_eq!(t.dims().iter().product::<usize>(), t.len);
        end = t.offset + t.len;
    }
    assert_eq!(end, arch.param_count());
    // The canonical spec parses back to the same net.
    let mut canon = String::new();
    arch.write_spec(&mut canon).unwrap();
    assert_eq!(Arch::parse(&canon, shape, arch.classes).as_ref(), Ok(&arch));
    // The graph's sizes and its last edges are computable.
    let g = NeuralGraph::new(&arch);
    let e = g.num_edges();
    assert!(g.edge(e - 1).is_some() && g.edge(e).is_none());
    let _ = g.edge(g.num_param_edges().saturating_sub(1));
});
