//! Where kernels run: the [`Device`] trait, with a CUDA GPU ([`crate::gpu::Gpu`]) and the host shim
//! ([`crate::shim::Shim`]) behind it, so the code that sequences the launches (the nowcaster and the
//! trainer) is the same code on both and is tested on machines without a GPU.

use crate::GpuStatus;
use crate::kernels::Kernel;

/// Why GPU work failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// No GPU to run on (no driver, no device, or an unusable one); the message is the probe's.
    #[error("no usable CUDA GPU: {0}")]
    NoGpu(GpuStatus),
    /// A CUDA driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// The host shim failed (missing library, unknown kernel).
    #[error("host shim: {0}")]
    Shim(String),
    /// The model or network is outside what the kernels implement.
    #[error("not supported on the GPU: {0}")]
    Unsupported(String),
    /// A copy outside a buffer (a caller's size error).
    #[error("{0}")]
    Range(String),
    /// The inputs were refused, as nino-core refuses them.
    #[error(transparent)]
    Core(#[from] nino_core::Error),
}

/// Element types of device buffers.
pub trait Elem:
    cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy + Default + Send + Sync + 'static
{
}
impl Elem for f32 {}
impl Elem for i32 {}
impl Elem for u16 {}

/// One kernel argument: a device address (buffer start plus an element offset, already in bytes), or a
/// scalar. Kernels read pointers as 64-bit values, as cuLaunchKernel passes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// A device address (0 for a null pointer).
    Ptr(u64),
    /// An `int`.
    I32(i32),
    /// A `float`.
    F32(f32),
}

/// A kernel launch: kernel, number of blocks, threads per block (always one dimension here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Which kernel.
    pub kernel: Kernel,
    /// Blocks.
    pub grid: u32,
    /// Threads per block.
    pub block: u32,
}

/// Blocks of `threads` threads covering `n` items, one thread each.
pub fn blocks_for(n: usize, threads: u32) -> u32 {
    n.div_ceil(threads as usize).max(1) as u32
}

/// A place where buffers live and kernels run, in stream order.
pub trait Device: Clone {
    /// A buffer of device memory.
    type Buf<T: Elem>;

    /// A zeroed buffer of `n` elements.
    fn alloc<T: Elem>(&self, n: usize) -> Result<Self::Buf<T>, CudaError>;
    /// Elements in `buf`.
    fn len<T: Elem>(&self, buf: &Self::Buf<T>) -> usize;
    /// Device address of element `offset` of `buf` (for kernel arguments).
    fn addr<T: Elem>(&self, buf: &Self::Buf<T>, offset: usize) -> u64;
    /// Copies `host` into `buf[offset..]`.
    fn upload<T: Elem>(&self, host: &[T], buf: &mut Self::Buf<T>, offset: usize) -> Result<(), CudaError>;
    /// Copies `buf[offset..offset + host.len()]` into `host`, waiting for the work before it.
    fn download<T: Elem>(&self, buf: &Self::Buf<T>, offset: usize, host: &mut [T]) -> Result<(), CudaError>;
    /// Copies `len` elements from `src[s..]` to `dst[d..]` on the device.
    fn copy<T: Elem>(
        &self,
        src: &Self::Buf<T>,
        s: usize,
        dst: &mut Self::Buf<T>,
        d: usize,
        len: usize,
    ) -> Result<(), CudaError>;
    /// Copies `len` elements within one buffer, from `s` to `d` (the ranges may overlap only if `d < s`).
    fn copy_within<T: Elem>(&self, buf: &mut Self::Buf<T>, s: usize, d: usize, len: usize) -> Result<(), CudaError>;
    /// Enqueues a kernel.
    fn launch(&self, launch: Launch, args: &[Arg]) -> Result<(), CudaError>;
    /// Waits for everything enqueued.
    fn sync(&self) -> Result<(), CudaError>;

    /// A buffer holding `host`.
    fn upload_new<T: Elem>(&self, host: &[T]) -> Result<Self::Buf<T>, CudaError> {
        let mut b = self.alloc(host.len())?;
        self.upload(host, &mut b, 0)?;
        Ok(b)
    }

    /// `buf` read back whole.
    fn download_vec<T: Elem>(&self, buf: &Self::Buf<T>) -> Result<Vec<T>, CudaError> {
        let mut v = vec![T::default(); self.len(buf)];
        self.download(buf, 0, &mut v)?;
        Ok(v)
    }

    /// [`Arg::Ptr`] to element `offset` of `buf`.
    fn ptr<T: Elem>(&self, buf: &Self::Buf<T>, offset: usize) -> Arg {
        Arg::Ptr(self.addr(buf, offset))
    }
}

/// Checks that `[offset, offset + n)` lies inside a buffer of `len` elements.
pub(crate) fn check_range(what: &str, len: usize, offset: usize, n: usize) -> Result<(), CudaError> {
    if offset.checked_add(n).is_none_or(|end| end > len) {
        return Err(CudaError::Range(format!(
            "{what}: elements {offset}..{} outside a buffer of {len}",
            offset.saturating_add(n)
        )));
    }
    Ok(())
}
