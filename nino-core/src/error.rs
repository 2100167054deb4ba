//! Error enums of the core: every fallible core function returns one of these instead of panicking.

use core::fmt;

/// Why an architecture spec string or shape was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ArchError {
    /// The spec was empty.
    Empty,
    /// The family before ':' is neither `conv` nor `mlp`.
    UnknownFamily,
    /// A width was not a positive integer.
    BadWidth,
    /// More layers than [`crate::arch::MAX_LAYERS`].
    TooManyLayers,
    /// A conv net needs at least one conv layer.
    NoLayers,
    /// The input image is too small for the first strided conv.
    ImageTooSmall,
    /// Zero channels, classes or pixels.
    ZeroSize,
    /// The parameters, the neural graph's nodes or edges, or one example's activations exceed
    /// [`crate::arch::MAX_SIZE`].
    TooLarge,
}

impl fmt::Display for ArchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ArchError::Empty => "empty arch spec (expected e.g. `conv:16,32,32` or `mlp:32`)",
            ArchError::UnknownFamily => "unknown arch family (expected `conv:` or `mlp:`)",
            ArchError::BadWidth => "layer widths must be positive integers separated by commas",
            ArchError::TooManyLayers => "too many layers in arch spec",
            ArchError::NoLayers => "a conv arch needs at least one conv width",
            ArchError::ImageTooSmall => "input image too small for a 3x3 stride-2 conv",
            ArchError::ZeroSize => "input channels, image size and classes must be positive",
            ArchError::TooLarge => {
                "arch too large: its parameters, graph nodes, graph edges or one example's activations exceed 2^32 - 1"
            }
        };
        f.write_str(s)
    }
}

impl core::error::Error for ArchError {}

/// Why a core computation refused its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// A caller-provided buffer has the wrong length.
    BufferSize {
        /// Which buffer (a static name).
        what: &'static str,
        /// Length required.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// An argument is out of its valid range (a zero batch, k outside 1..=S, ...).
    InvalidArgument(&'static str),
    /// A value that must be finite is NaN or infinite.
    NonFinite(&'static str),
    /// The architecture is not supported by this operation.
    Arch(ArchError),
}

impl From<ArchError> for Error {
    fn from(e: ArchError) -> Self {
        Error::Arch(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferSize { what, expected, got } => {
                write!(f, "buffer `{what}` has length {got}, expected {expected}")
            }
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Error::NonFinite(s) => write!(f, "non-finite values in {s}"),
            Error::Arch(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for Error {}

/// Checks a caller buffer's length; the one place that builds [`Error::BufferSize`].
#[inline]
pub fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), Error> {
    if got == expected { Ok(()) } else { Err(Error::BufferSize { what, expected, got }) }
}
