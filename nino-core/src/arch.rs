//! Target-network architectures (the reference `Net` family and MLPs) and their flat parameter layout.
//!
//! Parameters live in one flat `f32` vector in PyTorch `named_parameters()` order: for every layer its
//! weight (`[out, in, kh, kw]` for convs, `[out, in]` for linears, row-major), then its bias.

use crate::error::ArchError;
use heapless::Vec;

/// Most layers (classifier included) an [`Arch`] can hold.
pub const MAX_LAYERS: usize = 8;

/// Most parameters, neural-graph nodes, neural-graph edges and values of one example's input or any layer's
/// output an [`Arch`] may have: the graph's edge index is `u32`, and every size derived from an arch then
/// fits a `usize`. Specs and input shapes come from users and file headers, so this is checked, not assumed.
pub const MAX_SIZE: usize = u32::MAX as usize;

/// `a * b * c`, or [`ArchError::TooLarge`] when it exceeds [`MAX_SIZE`].
fn size3(a: usize, b: usize, c: usize) -> Result<usize, ArchError> {
    a.checked_mul(b).and_then(|x| x.checked_mul(c)).filter(|&x| x <= MAX_SIZE).ok_or(ArchError::TooLarge)
}

/// `a + b`, or [`ArchError::TooLarge`] when it exceeds [`MAX_SIZE`].
fn sum(a: usize, b: usize) -> Result<usize, ArchError> {
    a.checked_add(b).filter(|&x| x <= MAX_SIZE).ok_or(ArchError::TooLarge)
}

/// Checks that the neural graph of `layers` (after `inputs` input nodes) has at most [`MAX_SIZE`] nodes and
/// edges in all (the layout in [`crate::graph`]: one bias node and `n_out` nodes per layer, `n_in * n_out`
/// weight edges and `n_out` bias edges per layer, one self-loop per node).
fn check_graph(inputs: usize, layers: &[Layer]) -> Result<(), ArchError> {
    let (mut nodes, mut edges) = (inputs, 0);
    for l in layers {
        nodes = sum(nodes, sum(l.n_out, 1)?)?;
        edges = sum(edges, sum(size3(l.n_in, l.n_out, 1)?, l.n_out)?)?;
    }
    sum(edges, nodes).map(|_| ())
}

/// Shape of one input example, channels first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InputShape {
    /// Colour channels (1 for Fashion-MNIST).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl InputShape {
    /// Fashion-MNIST and MNIST: one 28x28 channel.
    pub const FASHION_MNIST: InputShape = InputShape { channels: 1, height: 28, width: 28 };

    /// CIFAR-10 and CIFAR-100: three 32x32 channels (red, green, blue).
    pub const CIFAR: InputShape = InputShape { channels: 3, height: 32, width: 32 };

    /// Values per example.
    pub const fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True when the shape holds no pixel.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which reference family an [`Arch`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Family {
    /// `Net(conv=True)`: 3x3 convs (first stride 2 unpadded, then stride 1 'same'), ReLU, GAP, linear.
    Conv,
    /// `Net(conv=False)`: flatten, (linear, ReLU) per hidden width, linear.
    Mlp,
}

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LayerKind {
    /// 2-D convolution with a square `kernel`, `stride` and symmetric zero `pad`.
    Conv {
        /// Kernel side.
        kernel: usize,
        /// Stride in both directions.
        stride: usize,
        /// Zero padding on each side.
        pad: usize,
    },
    /// Fully connected layer.
    Linear,
}

/// One parameterised layer and where its tensors sit in the flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layer {
    /// Conv or linear.
    pub kind: LayerKind,
    /// Input neurons (channels for a conv, features for a linear).
    pub n_in: usize,
    /// Output neurons.
    pub n_out: usize,
    /// Input spatial size `(h, w)`; `(1, 1)` for a linear.
    pub in_hw: (usize, usize),
    /// Output spatial size `(h, w)`; `(1, 1)` for a linear.
    pub out_hw: (usize, usize),
    /// Whether a ReLU follows.
    pub relu: bool,
    /// Whether global average pooling (then flatten) precedes this layer.
    pub gap_before: bool,
    /// Index of the module in the reference `Sequential` (`fc.{module}.weight`).
    pub module: usize,
    /// Offset of the weight in the flat parameter vector.
    pub weight_offset: usize,
    /// Offset of the bias in the flat parameter vector.
    pub bias_offset: usize,
}

impl Layer {
    /// Kernel taps per weight edge (`kh*kw`, 1 for a linear).
    pub const fn taps(&self) -> usize {
        match self.kind {
            LayerKind::Conv { kernel, .. } => kernel * kernel,
            LayerKind::Linear => 1,
        }
    }

    /// Number of weight values.
    pub const fn weight_len(&self) -> usize {
        self.n_in * self.n_out * self.taps()
    }

    /// Values of this layer's output per example.
    pub const fn out_len(&self) -> usize {
        self.n_out * self.out_hw.0 * self.out_hw.1
    }

    /// Values of this layer's input per example (after pooling, if any).
    pub const fn in_len(&self) -> usize {
        self.n_in * self.in_hw.0 * self.in_hw.1
    }
}

/// One parameter tensor of the flat vector, in `named_parameters()` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ParamTensor {
    /// Index of the layer it belongs to.
    pub layer: usize,
    /// True for the bias, false for the weight.
    pub is_bias: bool,
    /// Offset in the flat vector.
    pub offset: usize,
    /// Number of values.
    pub len: usize,
    /// Shape; only the first `ndim` entries are meaningful.
    pub shape: [usize; 4],
    /// Number of dimensions (1, 2 or 4).
    pub ndim: usize,
    /// Reference module index (`fc.{module}`).
    pub module: usize,
}

impl ParamTensor {
    /// The meaningful part of [`ParamTensor::shape`].
    pub fn dims(&self) -> &[usize] {
        &self.shape[..self.ndim]
    }

    /// Writes the PyTorch name (`fc.2.weight`) into `w`.
    pub fn write_name(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        write!(w, "fc.{}.{}", self.module, if self.is_bias { "bias" } else { "weight" })
    }
}

/// A target network: family, input shape, classes and its layers with their parameter offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Arch {
    /// Reference family.
    pub family: Family,
    /// Input shape of one example.
    pub input: InputShape,
    /// Number of classes (width of the classifier).
    pub classes: usize,
    layers: Vec<Layer, MAX_LAYERS>,
    params: usize,
}

/// The dataset a built-in task trains and tests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DatasetKind {
    /// Fashion-MNIST: 28x28 grey images, 10 classes, IDX files.
    FashionMnist,
    /// CIFAR-10: 32x32 colour images, 10 classes, the official binary batches.
    Cifar10,
    /// CIFAR-100: 32x32 colour images, 100 fine classes, the official binary files.
    Cifar100,
}

impl DatasetKind {
    /// Human-readable name (`Fashion-MNIST`, `CIFAR-10`, `CIFAR-100`).
    pub const fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Cifar10 => "CIFAR-10",
            DatasetKind::Cifar100 => "CIFAR-100",
        }
    }

    /// Shape of one image.
    pub const fn input(self) -> InputShape {
        match self {
            DatasetKind::FashionMnist => InputShape::FASHION_MNIST,
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => InputShape::CIFAR,
        }
    }

    /// Number of classes (CIFAR-100: the fine labels).
    pub const fn classes(self) -> usize {
        match self {
            DatasetKind::FashionMnist | DatasetKind::Cifar10 => 10,
            DatasetKind::Cifar100 => 100,
        }
    }
}

/// Built-in tasks of the reference protocol, with their settings (docs/spec.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Task {
    /// FM-16: conv 16,32,32 on Fashion-MNIST, target 89.5%.
    Fm16,
    /// FM-32: conv 32,64,64 on Fashion-MNIST, target 90.5%.
    Fm32,
    /// The reference `debug` task: conv 4,6,6, target 70%.
    Debug,
    /// C10-16: conv 16,32,32 on CIFAR-10, target 66.0%.
    C10_16,
    /// C10-32: conv 32,64,64 on CIFAR-10, target 72.5%.
    C10_32,
    /// C100-32: conv 32,64,64 on CIFAR-100 (fine labels), target 39.0%.
    C100_32,
}

impl Task {
    /// Every built-in task.
    pub const ALL: [Task; 6] = [Task::Fm16, Task::Fm32, Task::Debug, Task::C10_16, Task::C10_32, Task::C100_32];

    /// Command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Task::Fm16 => "fm16",
            Task::Fm32 => "fm32",
            Task::Debug => "debug",
            Task::C10_16 => "c10-16",
            Task::C10_32 => "c10-32",
            Task::C100_32 => "c100-32",
        }
    }

    /// Arch spec string.
    pub const fn spec(self) -> &'static str {
        match self {
            Task::Fm16 | Task::C10_16 => "conv:16,32,32",
            Task::Fm32 | Task::C10_32 | Task::C100_32 => "conv:32,64,64",
            Task::Debug => "conv:4,6,6",
        }
    }

    /// The dataset the task trains and tests on.
    pub const fn dataset(self) -> DatasetKind {
        match self {
            Task::Fm16 | Task::Fm32 | Task::Debug => DatasetKind::FashionMnist,
            Task::C10_16 | Task::C10_32 => DatasetKind::Cifar10,
            Task::C100_32 => DatasetKind::Cifar100,
        }
    }

    /// Target test accuracy (fraction).
    pub const fn target(self) -> f32 {
        match self {
            Task::Fm16 => 0.895,
            Task::Fm32 => 0.905,
            Task::Debug => 0.70,
            Task::C10_16 => 0.66,
            Task::C10_32 => 0.725,
            Task::C100_32 => 0.39,
        }
    }

    /// Adam learning rate of the reference protocol: 0.006 on Fashion-MNIST, 0.003 on CIFAR.
    pub const fn lr(self) -> f32 {
        match self.dataset() {
            DatasetKind::FashionMnist => 0.006,
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => 0.003,
        }
    }

    /// Parses a command-line name.
    pub fn from_name(s: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// The task's architecture on its dataset's images and classes.
    pub fn arch(self) -> Arch {
        // The specs above are valid by construction.
        let data = self.dataset();
        match Arch::parse(self.spec(), data.input(), data.classes()) {
            Ok(a) => a,
            Err(_) => unreachable!("built-in spec parses"),
        }
    }
}

fn parse_widths(list: &str) -> Result<Vec<usize, MAX_LAYERS>, ArchError> {
    let mut out = Vec::new();
    let list = list.trim();
    if list.is_empty() {
        return Ok(out);
    }
    for part in list.split(',') {
        let w: usize = part.trim().parse().map_err(|_| ArchError::BadWidth)?;
        if w == 0 {
            return Err(ArchError::BadWidth);
        }
        out.push(w).map_err(|_| ArchError::TooManyLayers)?;
    }
    Ok(out)
}

impl Arch {
    /// Parses `conv:16,32,32` or `mlp:32` (`mlp:` alone is a linear classifier).
    ///
    /// ```
    /// use nino_core::{Arch, ArchError, InputShape, Task};
    /// let fashion_mnist = InputShape { channels: 1, height: 28, width: 28 };
    /// let fm16 = Arch::parse("conv:16,32,32", fashion_mnist, 10).unwrap();
    /// assert_eq!(fm16.param_count(), 14_378);
    /// assert_eq!(fm16.param_count(), Task::Fm16.arch().param_count());
    /// assert_eq!(Arch::parse("mlp:32", fashion_mnist, 10).unwrap().param_count(), 784 * 32 + 32 + 32 * 10 + 10);
    /// assert!(matches!(Arch::parse("conv:16,x", fashion_mnist, 10), Err(ArchError::BadWidth)));
    /// ```
    pub fn parse(spec: &str, input: InputShape, classes: usize) -> Result<Arch, ArchError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(ArchError::Empty);
        }
        let (family, rest) = spec.split_once(':').ok_or(ArchError::UnknownFamily)?;
        let widths = parse_widths(rest)?;
        match family.trim() {
            f if f.eq_ignore_ascii_case("conv") => Arch::conv(&widths, input, classes),
            f if f.eq_ignore_ascii_case("mlp") => Arch::mlp(&widths, input, classes),
            _ => Err(ArchError::UnknownFamily),
        }
    }

    /// The reference `Net(hid, conv=True)`.
    pub fn conv(hidden: &[usize], input: InputShape, classes: usize) -> Result<Arch, ArchError> {
        if input.channels == 0 || input.height == 0 || input.width == 0 || classes == 0 {
            return Err(ArchError::ZeroSize);
        }
        if hidden.is_empty() {
            return Err(ArchError::NoLayers);
        }
        if hidden.len() + 1 > MAX_LAYERS {
            return Err(ArchError::TooManyLayers);
        }
        if hidden.contains(&0) {
            return Err(ArchError::BadWidth);
        }
        if input.height < 3 || input.width < 3 {
            return Err(ArchError::ImageTooSmall);
        }
        size3(input.channels, input.height, input.width)?;
        let mut layers = Vec::new();
        let mut off = 0;
        let mut n_in = input.channels;
        let mut hw = (input.height, input.width);
        for (i, &n_out) in hidden.iter().enumerate() {
            let (stride, pad) = if i == 0 { (2, 0) } else { (1, 1) };
            let out_hw = ((hw.0 + 2 * pad - 3) / stride + 1, (hw.1 + 2 * pad - 3) / stride + 1);
            size3(n_out, out_hw.0, out_hw.1)?;
            let weights = size3(n_in, n_out, 9)?;
            let mut l = Layer {
                kind: LayerKind::Conv { kernel: 3, stride, pad },
                n_in,
                n_out,
                in_hw: hw,
                out_hw,
                relu: true,
                gap_before: false,
                module: 2 * i,
                weight_offset: off,
                bias_offset: 0,
            };
            l.bias_offset = sum(off, weights)?;
            off = sum(l.bias_offset, n_out)?;
            let _ = layers.push(l);
            n_in = n_out;
            hw = out_hw;
        }
        let mut l = Layer {
            kind: LayerKind::Linear,
            n_in,
            n_out: classes,
            in_hw: (1, 1),
            out_hw: (1, 1),
            relu: false,
            gap_before: true,
            module: 2 * hidden.len() + 2,
            weight_offset: off,
            bias_offset: 0,
        };
        l.bias_offset = sum(off, size3(n_in, classes, 1)?)?;
        off = sum(l.bias_offset, classes)?;
        let _ = layers.push(l);
        check_graph(input.channels, &layers)?;
        Ok(Arch { family: Family::Conv, input, classes, layers, params: off })
    }

    /// The reference `Net(hid, conv=False)`.
    pub fn mlp(hidden: &[usize], input: InputShape, classes: usize) -> Result<Arch, ArchError> {
        // Not `input.is_empty()`: its product may overflow before `size3` below checks it.
        if input.channels == 0 || input.height == 0 || input.width == 0 || classes == 0 {
            return Err(ArchError::ZeroSize);
        }
        if hidden.len() + 1 > MAX_LAYERS {
            return Err(ArchError::TooManyLayers);
        }
        if hidden.contains(&0) {
            return Err(ArchError::BadWidth);
        }
        let mut layers = Vec::new();
        let mut off = 0;
        let mut n_in = size3(input.channels, input.height, input.width)?;
        let n = hidden.len() + 1;
        for i in 0..n {
            let last = i + 1 == n;
            let n_out = if last { classes } else { hidden[i] };
            let mut l = Layer {
                kind: LayerKind::Linear,
                n_in,
                n_out,
                in_hw: (1, 1),
                out_hw: (1, 1),
                relu: !last,
                gap_before: false,
                module: 2 * i,
                weight_offset: off,
                bias_offset: 0,
            };
            l.bias_offset = sum(off, size3(n_in, n_out, 1)?)?;
            off = sum(l.bias_offset, n_out)?;
            let _ = layers.push(l);
            n_in = n_out;
        }
        check_graph(input.len(), &layers)?;
        Ok(Arch { family: Family::Mlp, input, classes, layers, params: off })
    }

    /// The layers, classifier last.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Total number of parameters `P`.
    pub const fn param_count(&self) -> usize {
        self.params
    }

    /// Number of parameter tensors (two per layer).
    pub fn tensor_count(&self) -> usize {
        2 * self.layers.len()
    }

    /// Parameter tensor `j` in `named_parameters()` order.
    pub fn tensor(&self, j: usize) -> Option<ParamTensor> {
        let layer = j / 2;
        let l = self.layers.get(layer)?;
        let is_bias = j % 2 == 1;
        let (shape, ndim) = if is_bias {
            ([l.n_out, 0, 0, 0], 1)
        } else {
            match l.kind {
                LayerKind::Conv { kernel, .. } => ([l.n_out, l.n_in, kernel, kernel], 4),
                LayerKind::Linear => ([l.n_out, l.n_in, 0, 0], 2),
            }
        };
        Some(ParamTensor {
            layer,
            is_bias,
            offset: if is_bias { l.bias_offset } else { l.weight_offset },
            len: if is_bias { l.n_out } else { l.weight_len() },
            shape,
            ndim,
            module: l.module,
        })
    }

    /// All parameter tensors in `named_parameters()` order.
    pub fn tensors(&self) -> impl Iterator<Item = ParamTensor> + '_ {
        (0..self.tensor_count()).filter_map(|j| self.tensor(j))
    }

    /// Largest kernel area (`F` of the neural graph): 9 for 3x3 conv nets, 1 for MLPs.
    pub fn max_taps(&self) -> usize {
        self.layers.iter().map(Layer::taps).max().unwrap_or(1)
    }

    /// Writes the canonical spec string (`conv:16,32,32`) into `w`.
    pub fn write_spec(&self, w: &mut impl core::fmt::Write) -> core::fmt::Result {
        w.write_str(match self.family {
            Family::Conv => "conv:",
            Family::Mlp => "mlp:",
        })?;
        let hidden = &self.layers[..self.layers.len() - 1];
        for (i, l) in hidden.iter().enumerate() {
            if i > 0 {
                w.write_char(',')?;
            }
            write!(w, "{}", l.n_out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_task_sizes() {
        // Parameter counts from the reference's VISION_TASKS table (docs/spec.md §1.2).
        assert_eq!(Task::Fm16.arch().param_count(), 14_378);
        assert_eq!(Task::Fm32.arch().param_count(), 56_394);
        assert_eq!(Task::Debug.arch().param_count(), 662);
        let mlp = Arch::parse("mlp:32", InputShape::FASHION_MNIST, 10).unwrap();
        assert_eq!(mlp.param_count(), 25_450);
        let c10 = Arch::parse("conv:16,32,32", InputShape { channels: 3, height: 32, width: 32 }, 10);
        assert_eq!(c10.unwrap().param_count(), 14_666);
    }

    #[test]
    fn cifar_tasks_follow_the_reference_table() {
        // docs/spec.md §1.2: parameters, neural-graph nodes and edges (self-loops included), lr, target.
        let table = [
            (Task::C10_16, "c10-16", 14_666, 97, 2_091, 0.66, DatasetKind::Cifar10),
            (Task::C10_32, "c10-32", 56_970, 177, 7_227, 0.725, DatasetKind::Cifar10),
            (Task::C100_32, "c100-32", 62_820, 267, 13_167, 0.39, DatasetKind::Cifar100),
        ];
        for (task, name, params, nodes, edges, target, data) in table {
            let a = task.arch();
            let g = crate::graph::NeuralGraph::new(&a);
            assert_eq!((a.param_count(), g.num_nodes(), g.num_edges()), (params, nodes, edges), "{name}");
            assert_eq!((task.name(), task.target(), task.lr(), task.dataset()), (name, target, 0.003, data));
            assert_eq!((a.input, a.classes, a.layers()[0].out_hw), (InputShape::CIFAR, data.classes(), (15, 15)));
            assert_eq!(Task::from_name(&name.to_uppercase()), Some(task));
        }
        for t in [Task::Fm16, Task::Fm32, Task::Debug] {
            assert_eq!(
                (t.lr(), t.dataset(), t.arch().input),
                (0.006, DatasetKind::FashionMnist, InputShape::FASHION_MNIST)
            );
        }
        assert_eq!(DatasetKind::Cifar100.classes(), 100);
        assert_eq!(Task::from_name("c10"), None);
    }

    #[test]
    fn conv_spatial_sizes_and_modules() {
        let a = Task::Fm16.arch();
        let l = a.layers();
        assert_eq!(l[0].out_hw, (13, 13));
        assert_eq!(l[1].out_hw, (13, 13));
        assert_eq!(l[3].module, 8);
        assert!(l[3].gap_before);
        let names: [usize; 4] = [l[0].module, l[1].module, l[2].module, l[3].module];
        assert_eq!(names, [0, 2, 4, 8]);
    }

    #[test]
    fn bad_specs_are_errors() {
        let i = InputShape::FASHION_MNIST;
        assert_eq!(Arch::parse("", i, 10), Err(ArchError::Empty));
        assert_eq!(Arch::parse("resnet:3", i, 10), Err(ArchError::UnknownFamily));
        assert_eq!(Arch::parse("conv:16,x", i, 10), Err(ArchError::BadWidth));
        assert_eq!(Arch::parse("conv:0", i, 10), Err(ArchError::BadWidth));
        assert_eq!(Arch::parse("conv:", i, 10), Err(ArchError::NoLayers));
        assert_eq!(Arch::parse("conv16", i, 10), Err(ArchError::UnknownFamily));
        assert_eq!(Arch::parse("mlp:1,1,1,1,1,1,1,1", i, 10), Err(ArchError::TooManyLayers));
        let tiny = InputShape { channels: 1, height: 2, width: 2 };
        assert_eq!(Arch::parse("conv:4", tiny, 10), Err(ArchError::ImageTooSmall));
    }

    #[test]
    fn sizes_past_max_size_are_errors_not_overflows() {
        // A linear classifier on n inputs: n + 1 parameters, n + 2 nodes, n + 1 param edges + n + 2 self-loops.
        let row = |n| InputShape { channels: 1, height: 1, width: n };
        let n = (MAX_SIZE - 3) / 2;
        assert_eq!(Arch::mlp(&[], row(n), 1).map(|a| a.param_count()), Ok(n + 1));
        assert_eq!(Arch::mlp(&[], row(n + 1), 1), Err(ArchError::TooLarge));
        let huge = InputShape { channels: usize::MAX, height: usize::MAX, width: 3 };
        assert_eq!(Arch::parse("mlp:4", huge, 10), Err(ArchError::TooLarge));
        assert_eq!(Arch::parse("conv:4", huge, 10), Err(ArchError::TooLarge));
        let i = InputShape::FASHION_MNIST;
        assert_eq!(Arch::parse("mlp:18446744073709551615", i, 10), Err(ArchError::TooLarge));
        assert_eq!(Arch::parse("conv:65536,65536", i, 10), Err(ArchError::TooLarge));
        // Activations: a 65535 x 65535 image fits; its first conv outputs 32767^2 values per channel, so four
        // channels fit and five do not.
        let wide = InputShape { channels: 1, height: 65535, width: 65535 };
        assert_eq!(Arch::parse("conv:4", wide, 10).map(|a| a.layers()[0].out_hw), Ok((32767, 32767)));
        assert_eq!(Arch::parse("conv:5", wide, 10), Err(ArchError::TooLarge));
        assert_eq!(
            Arch::parse("conv:4", InputShape { channels: 1, height: 65536, width: 65536 }, 10),
            Err(ArchError::TooLarge)
        );
    }
}
