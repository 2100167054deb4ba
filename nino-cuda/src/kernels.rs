//! The CUDA C sources, their committed PTX and the kernels each one holds: what the runtime loads and
//! what `examples/ptxgen.rs` regenerates and checks.

/// One CUDA C source file (one concern) and the PTX NVRTC made of it.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// File stem: `kernels/{name}.cu` and `ptx/{name}.ptx`.
    pub name: &'static str,
    /// The CUDA C source.
    pub source: &'static str,
    /// The committed PTX (`compute_80`), loaded by [`crate::gpu::Gpu`].
    pub ptx: &'static str,
    /// Kernels the file defines, in source order.
    pub kernels: &'static [Kernel],
}

/// Headers the sources include, by include name: passed to NVRTC in memory so PTX depends on nothing else.
pub const HEADERS: [(&str, &str); 2] =
    [("common.cuh", include_str!("../kernels/common.cuh")), ("nowcast.cuh", include_str!("../kernels/nowcast.cuh"))];

macro_rules! module {
    ($name:literal, [$($k:ident),* $(,)?]) => {
        Module {
            name: $name,
            source: include_str!(concat!("../kernels/", $name, ".cu")),
            ptx: include_str!(concat!("../ptx/", $name, ".ptx")),
            kernels: &[$(Kernel::$k),*],
        }
    };
}

/// Every kernel file; a kernel's module is its index here.
pub const MODULES: [Module; 6] = [
    module!("adam", [Adam]),
    module!("nowcast_edge", [HeadF32, HeadF16]),
    module!("nowcast_node", [NodeInitF32, NodeInitF16, LayerF32, LayerF16]),
    module!("nowcast_scale", [TensorStats]),
    module!("train_conv", [ConvFwd, ConvBwdW, ConvBwdX]),
    module!("train_dense", [LinearFwd, LinearBwdW, LinearBwdX, GapFwd, GapBwd, Xent]),
];

/// Every kernel nino launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// One Adam step over the flat parameters (`adam.cu`).
    Adam,
    /// DMS head, residual, unscaling and scatter, f32 weights (`nowcast_edge.cu`).
    HeadF32,
    /// The same with f16 weights.
    HeadF16,
    /// Node projection and layer 0's `[U | V]`, f32 weights (`nowcast_node.cu`).
    NodeInitF32,
    /// The same with f16 weights.
    NodeInitF16,
    /// One message-passing layer, f32 weights (`nowcast_node.cu`).
    LayerF32,
    /// The same with f16 weights.
    LayerF16,
    /// Per-tensor mean and sd of the history (`nowcast_scale.cu`).
    TensorStats,
    /// Conv forward with ReLU (`train_conv.cu`).
    ConvFwd,
    /// Conv weight and bias gradients.
    ConvBwdW,
    /// Conv input gradient with the ReLU below undone.
    ConvBwdX,
    /// Linear forward with ReLU (`train_dense.cu`).
    LinearFwd,
    /// Linear weight and bias gradients.
    LinearBwdW,
    /// Linear input gradient with the ReLU below undone.
    LinearBwdX,
    /// Global average pooling.
    GapFwd,
    /// Its gradient with the ReLU below undone.
    GapBwd,
    /// Softmax cross-entropy, its gradient, loss sum and hits.
    Xent,
}

impl Kernel {
    /// Every kernel, in [`MODULES`] order.
    pub const ALL: [Kernel; 17] = [
        Kernel::Adam,
        Kernel::HeadF32,
        Kernel::HeadF16,
        Kernel::NodeInitF32,
        Kernel::NodeInitF16,
        Kernel::LayerF32,
        Kernel::LayerF16,
        Kernel::TensorStats,
        Kernel::ConvFwd,
        Kernel::ConvBwdW,
        Kernel::ConvBwdX,
        Kernel::LinearFwd,
        Kernel::LinearBwdW,
        Kernel::LinearBwdX,
        Kernel::GapFwd,
        Kernel::GapBwd,
        Kernel::Xent,
    ];

    /// The `extern "C"` name in the source and the PTX.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Adam => "nino_adam",
            Kernel::HeadF32 => "nino_head_f32",
            Kernel::HeadF16 => "nino_head_f16",
            Kernel::NodeInitF32 => "nino_node_init_f32",
            Kernel::NodeInitF16 => "nino_node_init_f16",
            Kernel::LayerF32 => "nino_layer_f32",
            Kernel::LayerF16 => "nino_layer_f16",
            Kernel::TensorStats => "nino_tensor_stats",
            Kernel::ConvFwd => "nino_conv_fwd",
            Kernel::ConvBwdW => "nino_conv_bwd_w",
            Kernel::ConvBwdX => "nino_conv_bwd_x",
            Kernel::LinearFwd => "nino_linear_fwd",
            Kernel::LinearBwdW => "nino_linear_bwd_w",
            Kernel::LinearBwdX => "nino_linear_bwd_x",
            Kernel::GapFwd => "nino_gap_fwd",
            Kernel::GapBwd => "nino_gap_bwd",
            Kernel::Xent => "nino_xent",
        }
    }

    /// Position in [`Kernel::ALL`], to index per-kernel tables.
    pub fn index(self) -> usize {
        Kernel::ALL.iter().position(|&k| k == self).unwrap_or(0)
    }

    /// The module (index into [`MODULES`]) that defines it.
    pub fn module(self) -> usize {
        MODULES.iter().position(|m| m.kernels.contains(&self)).unwrap_or(0)
    }
}

/// Threads per block of every kernel (`NT` in `common.cuh`).
pub const THREADS: u32 = 128;
/// Widest hidden layer and first-layer edge input the NiNo kernels hold (`HMAX`).
pub const HMAX: usize = 128;
/// Edges per tile of the NiNo edge kernels (`ROWS`).
pub const ROWS: usize = 16;
/// Most message-passing layers the NiNo kernels chain (`MAXL`).
pub const MAXL: usize = 4;

/// Error bits the kernels raise (`FLAG_*` in `common.cuh`).
pub mod flag {
    /// A non-finite value in the parameter history.
    pub const HISTORY: i32 = 1;
    /// A non-finite per-tensor mean or standard deviation.
    pub const SCALES: i32 = 2;
    /// A non-finite predicted parameter.
    pub const PREDICTION: i32 = 4;
    /// A label outside the classes.
    pub const LABEL: i32 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NINO_KERNEL name(` lines of a source, in order.
    fn declared(src: &str) -> Vec<&str> {
        src.lines().filter_map(|l| l.strip_prefix("NINO_KERNEL ")).filter_map(|l| l.split('(').next()).collect()
    }

    #[test]
    fn the_table_matches_the_sources_and_the_ptx() {
        let mut all = Vec::new();
        for m in MODULES {
            let names: Vec<&str> = m.kernels.iter().map(|k| k.name()).collect();
            assert_eq!(declared(m.source), names, "{}", m.name);
            for k in m.kernels {
                assert!(m.ptx.contains(&format!(".entry {}(", k.name())), "{} not in ptx/{}.ptx", k.name(), m.name);
                assert_eq!(MODULES[k.module()].name, m.name);
            }
            all.extend_from_slice(m.kernels);
        }
        assert_eq!(all, Kernel::ALL);
        for (i, k) in Kernel::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn constants_match_common_cuh() {
        let common = HEADERS[0].1;
        for (name, v) in [("NT", THREADS as usize), ("HMAX", HMAX), ("ROWS", ROWS), ("MAXL", MAXL)] {
            assert!(common.contains(&format!("#define {name} {v}\n")), "{name}");
        }
        for (name, v) in [
            ("FLAG_HISTORY", flag::HISTORY),
            ("FLAG_SCALES", flag::SCALES),
            ("FLAG_PREDICTION", flag::PREDICTION),
            ("FLAG_LABEL", flag::LABEL),
        ] {
            assert!(common.contains(&format!("#define {name} {v}\n")), "{name}");
        }
    }
}
