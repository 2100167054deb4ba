//! The host shim as a [`Device`]: the same CUDA C sources compiled by g++ (`shim/build.sh`) into a shared
//! library whose kernels run with one host thread per CUDA thread. Buffers are host memory, launches are
//! synchronous. This is how the kernels and the launch code are tested where there is no GPU.

use crate::device::{Arg, CudaError, Device, Elem, Launch, check_range};
use std::ffi::{CString, c_char, c_int, c_uint, c_void};
use std::path::Path;
use std::sync::Arc;

type LaunchFn = unsafe extern "C" fn(*const c_char, c_int, *const c_uint, *const c_uint, *mut *mut c_void) -> c_int;

/// The loaded shim library; clones share it.
#[derive(Clone)]
pub struct Shim {
    lib: Arc<libloading::Library>,
    launch: LaunchFn,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shim")
    }
}

/// Environment variable naming the shim library the tests load.
pub const SHIM_ENV: &str = "NINO_SHIM_LIB";

impl Shim {
    /// Loads a library built by `nino-cuda/shim/build.sh`.
    pub fn load(path: &Path) -> Result<Shim, CudaError> {
        // SAFETY: the library is our own kernels and launcher; loading runs only C++ static initialisers.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| CudaError::Shim(format!("loading {}: {e}", path.display())))?;
        // SAFETY: the symbol is `nino_shim_launch` of shim.cpp, whose signature LaunchFn restates.
        let launch = unsafe { lib.get::<LaunchFn>(b"nino_shim_launch\0") }
            .map(|s| *s)
            .map_err(|e| CudaError::Shim(format!("{}: {e}", path.display())))?;
        Ok(Shim { lib: Arc::new(lib), launch })
    }

    /// The library [`SHIM_ENV`] names, `None` when it is unset.
    pub fn from_env() -> Option<Result<Shim, CudaError>> {
        std::env::var_os(SHIM_ENV).map(|p| Shim::load(Path::new(&p)))
    }

    /// The kernels the library registered, by name: the shim's view of `kernels/*.cu`, which must match
    /// [`crate::kernels::Kernel::ALL`].
    pub fn kernel_names(&self) -> Result<Vec<String>, CudaError> {
        let sym = |e: libloading::Error| CudaError::Shim(e.to_string());
        // SAFETY: both symbols are shim.cpp's, with these signatures; names are static NUL-terminated strings.
        unsafe {
            let count = self.lib.get::<unsafe extern "C" fn() -> c_int>(b"nino_shim_kernel_count\0").map_err(sym)?;
            let name = self
                .lib
                .get::<unsafe extern "C" fn(c_int) -> *const c_char>(b"nino_shim_kernel_name\0")
                .map_err(sym)?;
            Ok((0..count()).map(|i| std::ffi::CStr::from_ptr(name(i)).to_string_lossy().into_owned()).collect())
        }
    }
}

/// A host allocation the kernels write through raw pointers (never through a Rust reference).
pub struct ShimBuf<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: a plain owned allocation; the shim's threads use it only during a launch, which is synchronous.
unsafe impl<T: Send> Send for ShimBuf<T> {}
// SAFETY: shared access only reads through `download`, and launches are synchronous.
unsafe impl<T: Sync> Sync for ShimBuf<T> {}

impl<T> Drop for ShimBuf<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice of exactly `len` elements.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

impl Device for Shim {
    type Buf<T: Elem> = ShimBuf<T>;

    fn alloc<T: Elem>(&self, n: usize) -> Result<ShimBuf<T>, CudaError> {
        let b: Box<[T]> = vec![T::default(); n].into_boxed_slice();
        Ok(ShimBuf { len: n, ptr: Box::into_raw(b) as *mut T })
    }

    fn len<T: Elem>(&self, buf: &ShimBuf<T>) -> usize {
        buf.len
    }

    fn addr<T: Elem>(&self, buf: &ShimBuf<T>, offset: usize) -> u64 {
        buf.ptr.wrapping_add(offset) as u64
    }

    fn upload<T: Elem>(&self, host: &[T], buf: &mut ShimBuf<T>, offset: usize) -> Result<(), CudaError> {
        check_range("upload", buf.len, offset, host.len())?;
        // SAFETY: in bounds (checked), and no kernel runs concurrently.
        unsafe { std::ptr::copy_nonoverlapping(host.as_ptr(), buf.ptr.add(offset), host.len()) };
        Ok(())
    }

    fn download<T: Elem>(&self, buf: &ShimBuf<T>, offset: usize, host: &mut [T]) -> Result<(), CudaError> {
        check_range("download", buf.len, offset, host.len())?;
        // SAFETY: as in `upload`.
        unsafe { std::ptr::copy_nonoverlapping(buf.ptr.add(offset), host.as_mut_ptr(), host.len()) };
        Ok(())
    }

    fn copy<T: Elem>(
        &self,
        src: &ShimBuf<T>,
        s: usize,
        dst: &mut ShimBuf<T>,
        d: usize,
        len: usize,
    ) -> Result<(), CudaError> {
        check_range("copy source", src.len, s, len)?;
        check_range("copy destination", dst.len, d, len)?;
        // SAFETY: both ranges in bounds; distinct buffers (one borrowed shared, one exclusive).
        unsafe { std::ptr::copy_nonoverlapping(src.ptr.add(s), dst.ptr.add(d), len) };
        Ok(())
    }

    fn copy_within<T: Elem>(&self, buf: &mut ShimBuf<T>, s: usize, d: usize, len: usize) -> Result<(), CudaError> {
        check_range("copy source", buf.len, s, len)?;
        check_range("copy destination", buf.len, d, len)?;
        // SAFETY: both ranges in bounds; `copy` handles overlap.
        unsafe { std::ptr::copy(buf.ptr.add(s), buf.ptr.add(d), len) };
        Ok(())
    }

    fn launch(&self, launch: Launch, args: &[Arg]) -> Result<(), CudaError> {
        #[repr(C)]
        union Val {
            p: u64,
            i: i32,
            f: f32,
        }
        let mut vals: Vec<Val> = args
            .iter()
            .map(|a| match *a {
                Arg::Ptr(p) => Val { p },
                Arg::I32(i) => Val { i },
                Arg::F32(f) => Val { f },
            })
            .collect();
        let mut params: Vec<*mut c_void> = vals.iter_mut().map(|v| v as *mut Val as *mut c_void).collect();
        let name = CString::new(launch.kernel.name()).map_err(|e| CudaError::Shim(e.to_string()))?;
        let (grid, block) = ([launch.grid, 1, 1], [launch.block, 1, 1]);
        // SAFETY: `params` points at one value per kernel parameter, in order, each of the parameter's type
        // (pointers as 64-bit addresses of live buffers), as cuLaunchKernel requires; the shim checks the
        // count against the kernel's signature; the call is synchronous.
        let n = params.len() as c_int;
        let rc = unsafe { (self.launch)(name.as_ptr(), n, grid.as_ptr(), block.as_ptr(), params.as_mut_ptr()) };
        if rc != 0 {
            return Err(CudaError::Shim(format!(
                "launch of {} refused (unknown kernel, {} arguments, or bad geometry)",
                name.to_string_lossy(),
                args.len()
            )));
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), CudaError> {
        Ok(())
    }
}
