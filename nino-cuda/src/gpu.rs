//! A CUDA GPU as a [`Device`], through cudarc: the committed PTX loaded once, one stream, raw device
//! addresses as kernel arguments (event tracking is off: everything runs on that one stream).

use crate::device::{Arg, CudaError, Device, Elem, Launch, check_range};
use crate::kernels::{Kernel, MODULES};
use crate::probe::{GpuStatus, describe, probe};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg, result,
};
use cudarc::nvrtc::Ptx;
use std::sync::Arc;

/// Device 0 with nino's kernels loaded; clones share the context and stream.
#[derive(Clone)]
pub struct Gpu {
    stream: Arc<CudaStream>,
    funcs: Arc<Vec<CudaFunction>>,
    status: GpuStatus,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.status)
    }
}

fn drv(what: &str) -> impl Fn(cudarc::driver::DriverError) -> CudaError + '_ {
    move |e| CudaError::Driver(format!("{what}: {}", describe(e)))
}

impl Gpu {
    /// Opens device 0 and loads every kernel; [`CudaError::NoGpu`] (the probe's one-line answer) where
    /// there is no usable GPU.
    pub fn new() -> Result<Gpu, CudaError> {
        let status = probe();
        if !status.is_available() {
            return Err(CudaError::NoGpu(status));
        }
        let ctx = CudaContext::new(0).map_err(drv("creating a context on device 0"))?;
        // SAFETY: every buffer and launch of this crate uses the one stream below, in order.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let mut modules = Vec::new();
        for m in MODULES {
            let what = format!("loading ptx/{}.ptx", m.name);
            modules.push(ctx.load_module(Ptx::from_src(m.ptx)).map_err(drv(&what))?);
        }
        let mut funcs = Vec::new();
        for k in Kernel::ALL {
            funcs.push(modules[k.module()].load_function(k.name()).map_err(drv(k.name()))?);
        }
        Ok(Gpu { stream, funcs: Arc::new(funcs), status })
    }

    /// What the probe found (name, driver, memory).
    pub fn status(&self) -> &GpuStatus {
        &self.status
    }
}

impl Device for Gpu {
    type Buf<T: Elem> = CudaSlice<T>;

    fn alloc<T: Elem>(&self, n: usize) -> Result<CudaSlice<T>, CudaError> {
        // cuMemAlloc refuses 0 bytes; an empty buffer is a 1-element one nobody reads.
        self.stream.alloc_zeros::<T>(n.max(1)).map_err(drv("allocating device memory"))
    }

    fn len<T: Elem>(&self, buf: &CudaSlice<T>) -> usize {
        buf.len()
    }

    fn addr<T: Elem>(&self, buf: &CudaSlice<T>, offset: usize) -> u64 {
        let (p, _sync) = buf.device_ptr(&self.stream);
        p + (offset * std::mem::size_of::<T>()) as u64
    }

    fn upload<T: Elem>(&self, host: &[T], buf: &mut CudaSlice<T>, offset: usize) -> Result<(), CudaError> {
        check_range("upload", buf.len(), offset, host.len())?;
        // SAFETY: in bounds of a live allocation of T on this stream; pageable sources are staged before
        // the call returns.
        unsafe { result::memcpy_htod_async(self.addr(buf, offset), host, self.stream.cu_stream()) }
            .map_err(drv("copying to the device"))
    }

    fn download<T: Elem>(&self, buf: &CudaSlice<T>, offset: usize, host: &mut [T]) -> Result<(), CudaError> {
        check_range("download", buf.len(), offset, host.len())?;
        // SAFETY: in bounds; the synchronisation below completes the copy before `host` is used.
        unsafe { result::memcpy_dtoh_async(host, self.addr(buf, offset), self.stream.cu_stream()) }
            .map_err(drv("copying from the device"))?;
        self.sync()
    }

    fn copy<T: Elem>(
        &self,
        src: &CudaSlice<T>,
        s: usize,
        dst: &mut CudaSlice<T>,
        d: usize,
        len: usize,
    ) -> Result<(), CudaError> {
        check_range("copy source", src.len(), s, len)?;
        check_range("copy destination", dst.len(), d, len)?;
        let bytes = len * std::mem::size_of::<T>();
        // SAFETY: both ranges lie in live allocations of T on this stream.
        unsafe { result::memcpy_dtod_async(self.addr(dst, d), self.addr(src, s), bytes, self.stream.cu_stream()) }
            .map_err(drv("copying on the device"))
    }

    fn copy_within<T: Elem>(&self, buf: &mut CudaSlice<T>, s: usize, d: usize, len: usize) -> Result<(), CudaError> {
        check_range("copy source", buf.len(), s, len)?;
        check_range("copy destination", buf.len(), d, len)?;
        if s.max(d) - s.min(d) < len {
            return Err(CudaError::Range(format!("copy_within: overlapping ranges {s} and {d} of {len}")));
        }
        let bytes = len * std::mem::size_of::<T>();
        // SAFETY: disjoint ranges of one live allocation of T on this stream.
        unsafe { result::memcpy_dtod_async(self.addr(buf, d), self.addr(buf, s), bytes, self.stream.cu_stream()) }
            .map_err(drv("copying on the device"))
    }

    fn launch(&self, launch: Launch, args: &[Arg]) -> Result<(), CudaError> {
        let mut b = self.stream.launch_builder(&self.funcs[launch.kernel.index()]);
        for a in args {
            match a {
                Arg::Ptr(p) => b.arg(p),
                Arg::I32(i) => b.arg(i),
                Arg::F32(f) => b.arg(f),
            };
        }
        let cfg = LaunchConfig { grid_dim: (launch.grid, 1, 1), block_dim: (launch.block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the arguments are the kernel's, in order and of its types (the same launch code runs, and
        // is tested, through the host shim, which checks the count); pointers are live device addresses.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(drv(launch.kernel.name()))
    }

    fn sync(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(drv("synchronising the stream"))
    }
}
