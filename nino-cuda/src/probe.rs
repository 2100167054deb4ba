//! Is there a usable CUDA GPU? Answered without panicking, even where no NVIDIA driver is installed.
//!
//! cudarc loads `libcuda` lazily and *panics* when the library or one of its symbols is missing, so the
//! probe checks for the library first, then the driver version against the bindings we compile, and only
//! then initialises the driver, counts devices and creates a context on device 0.

use cudarc::driver::{CudaContext, DriverError, sys};
use std::fmt;

/// Oldest driver that loads the committed PTX (NVRTC 12.9 writes PTX ISA 8.8) and matches the bindings we
/// build with (`cuda-12090`): CUDA 12.9, encoded as CUDA encodes versions (`1000 * major + 10 * minor`).
/// Keep in step with the cudarc feature in the root `Cargo.toml` and the wheel in `scripts/ptx.sh`.
pub const REQUIRED_DRIVER_VERSION: i32 = 12_090;

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuStatus {
    /// Device 0 is usable: a context was created on it.
    Available {
        /// Device name as the driver reports it (e.g. `NVIDIA H100 80GB HBM3`).
        name: String,
        /// Driver API version, `1000 * major + 10 * minor` (13000 is CUDA 13.0).
        driver_version: i32,
        /// Compute capability `(major, minor)`; `(9, 0)` on an H100.
        compute_capability: (i32, i32),
        /// Device memory in bytes.
        total_mem: usize,
        /// Number of visible CUDA devices.
        device_count: usize,
    },
    /// No `libcuda` could be loaded: no NVIDIA driver on this machine.
    NoDriverLibrary,
    /// The driver is older than the API our bindings call, so calls could fail with missing symbols.
    DriverTooOld {
        /// Driver API version found.
        driver_version: i32,
        /// Version required ([`REQUIRED_DRIVER_VERSION`]).
        required: i32,
    },
    /// The driver is present and reports no device (`CUDA_ERROR_NO_DEVICE`, or a count of 0).
    NoDevice(String),
    /// The driver failed in any other way (version query, initialisation, context creation, a device
    /// query): an error, never a reason to skip.
    Unusable(String),
}

impl GpuStatus {
    /// Whether GPU work can run.
    pub fn is_available(&self) -> bool {
        matches!(self, GpuStatus::Available { .. })
    }

    /// Whether this machine simply has no GPU (no driver library, or a driver that reports no device), as
    /// opposed to a driver or GPU that is present but failing: only this may be skipped.
    pub fn is_absent(&self) -> bool {
        matches!(self, GpuStatus::NoDriverLibrary | GpuStatus::NoDevice(_))
    }

    /// Whether GPU tests may print SKIP on this status: only where the GPU is absent ([`Self::is_absent`])
    /// *and* the machine has no NVIDIA GPU on its PCI bus (or `CUDA_VISIBLE_DEVICES` hides them all). A
    /// GPU on the bus whose driver library is missing, or whose driver initialises to "no device", is a
    /// broken driver: a failure, not a skip.
    pub fn may_skip(&self) -> bool {
        let hidden = std::env::var_os("CUDA_VISIBLE_DEVICES").is_some_and(|v| v.is_empty() || v == "-1");
        skip_allowed(self, nvidia_gpu_on_pci(std::path::Path::new(PCI_DEVICES)), hidden)
    }
}

/// Where Linux lists PCI devices, one folder each with `vendor` and `class` files.
const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// The decision of [`GpuStatus::may_skip`], apart from the machine it looks at.
fn skip_allowed(status: &GpuStatus, gpu_on_pci: bool, hidden: bool) -> bool {
    status.is_absent() && (!gpu_on_pci || hidden)
}

/// Whether `devices` (a `/sys/bus/pci/devices`) holds an NVIDIA (vendor `0x10de`) display or 3D controller
/// (class `0x03....`); NVIDIA's audio functions and switches are other classes. No such folder: `false`.
pub fn nvidia_gpu_on_pci(devices: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(devices) else { return false };
    entries.flatten().any(|e| {
        let read = |f: &str| std::fs::read_to_string(e.path().join(f)).unwrap_or_default();
        read("vendor").trim() == "0x10de" && read("class").trim().starts_with("0x03")
    })
}

/// `13000` → `13.0`.
fn version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

impl fmt::Display for GpuStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuStatus::Available { name, driver_version, compute_capability: (ma, mi), total_mem, device_count } => {
                write!(
                    f,
                    "{name} (sm_{ma}{mi}, {:.1} GiB, driver API {}, {device_count} device(s))",
                    *total_mem as f64 / (1u64 << 30) as f64,
                    version(*driver_version)
                )
            }
            GpuStatus::NoDriverLibrary => f.write_str("NoDriverLibrary: libcuda not found"),
            GpuStatus::DriverTooOld { driver_version, required } => write!(
                f,
                "DriverTooOld: driver supports CUDA {}, nino-cuda needs {} or newer",
                version(*driver_version),
                version(*required)
            ),
            GpuStatus::NoDevice(why) => write!(f, "NoDevice: {why}"),
            GpuStatus::Unusable(why) => write!(f, "Unusable: {why}"),
        }
    }
}

/// `CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)`.
pub(crate) fn describe(e: DriverError) -> String {
    match e.error_string() {
        Ok(s) => format!("{:?} ({})", e.0, s.to_string_lossy()),
        Err(_) => format!("{:?}", e.0),
    }
}

/// Only "no device" counts as absent; any other failure to count devices is a broken driver (an error).
/// `detail` is the error described (describing it needs the driver, so tests pass their own text).
fn classify_count_error(code: sys::CUresult, detail: String) -> GpuStatus {
    if code == sys::cudaError_enum::CUDA_ERROR_NO_DEVICE {
        GpuStatus::NoDevice(detail)
    } else {
        GpuStatus::Unusable(format!("counting devices: {detail}"))
    }
}

/// Probes device 0. Never panics: a panic inside cudarc (which it uses for missing libraries and symbols)
/// is caught and reported as [`GpuStatus::Unusable`].
pub fn probe() -> GpuStatus {
    std::panic::catch_unwind(probe_inner).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        GpuStatus::Unusable(format!("cudarc panicked: {msg}"))
    })
}

fn probe_inner() -> GpuStatus {
    // SAFETY: only tries to dlopen the driver library by its usual names; no state is touched.
    if !unsafe { sys::is_culib_present() } {
        return GpuStatus::NoDriverLibrary;
    }
    let mut driver_version = 0;
    // SAFETY: cuDriverGetVersion writes one int and may be called before cuInit.
    if let Err(e) = unsafe { sys::cuDriverGetVersion(&mut driver_version) }.result() {
        return GpuStatus::Unusable(format!("cuDriverGetVersion failed: {}", describe(e)));
    }
    if driver_version < REQUIRED_DRIVER_VERSION {
        return GpuStatus::DriverTooOld { driver_version, required: REQUIRED_DRIVER_VERSION };
    }
    let device_count = match CudaContext::device_count() {
        Ok(n) if n > 0 => n as usize,
        Ok(_) => return GpuStatus::NoDevice("the driver reports 0 devices".into()),
        Err(e) => return classify_count_error(e.0, describe(e)),
    };
    let ctx = match CudaContext::new(0) {
        Ok(ctx) => ctx,
        Err(e) => return GpuStatus::Unusable(format!("creating a context on device 0: {}", describe(e))),
    };
    let query = || -> Result<GpuStatus, DriverError> {
        Ok(GpuStatus::Available {
            name: ctx.name()?,
            driver_version,
            compute_capability: ctx.compute_capability()?,
            total_mem: ctx.total_mem()?,
            device_count,
        })
    };
    query().unwrap_or_else(|e| GpuStatus::Unusable(format!("querying device 0: {}", describe(e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_print_as_major_minor() {
        assert_eq!(version(12_040), "12.4");
        assert_eq!(version(13_000), "13.0");
    }

    #[test]
    fn only_no_device_counts_as_absent() {
        assert!(classify_count_error(sys::cudaError_enum::CUDA_ERROR_NO_DEVICE, "none".into()).is_absent());
        for code in [
            sys::cudaError_enum::CUDA_ERROR_NOT_INITIALIZED,
            sys::cudaError_enum::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH,
            sys::cudaError_enum::CUDA_ERROR_INVALID_DEVICE,
        ] {
            let s = classify_count_error(code, format!("{code:?}"));
            assert!(matches!(s, GpuStatus::Unusable(_)) && !s.is_absent(), "{code:?}: {s}");
        }
    }

    #[test]
    fn a_gpu_on_the_bus_with_a_failing_driver_is_not_skipped() {
        let absent = [GpuStatus::NoDriverLibrary, GpuStatus::NoDevice("CUDA_ERROR_NO_DEVICE".into())];
        for s in &absent {
            assert!(skip_allowed(s, false, false), "{s}: no GPU anywhere may skip");
            assert!(!skip_allowed(s, true, false), "{s}: a GPU on the PCI bus must fail");
            assert!(skip_allowed(s, true, true), "{s}: CUDA_VISIBLE_DEVICES hid every GPU");
        }
        // A driver that fails to initialise, counts with another error, or cannot make a context never skips.
        let broken = [
            classify_count_error(sys::cudaError_enum::CUDA_ERROR_NOT_INITIALIZED, "init".into()),
            classify_count_error(sys::cudaError_enum::CUDA_ERROR_UNKNOWN, "unknown".into()),
            classify_count_error(sys::cudaError_enum::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "mismatch".into()),
            GpuStatus::DriverTooOld { driver_version: 11_080, required: REQUIRED_DRIVER_VERSION },
            GpuStatus::Unusable("creating a context".into()),
        ];
        for s in &broken {
            for (on_pci, hidden) in [(false, false), (true, false), (true, true)] {
                assert!(!skip_allowed(s, on_pci, hidden), "{s} skipped (pci {on_pci}, hidden {hidden})");
            }
        }
    }

    #[test]
    fn an_nvidia_display_or_3d_controller_on_the_pci_bus_is_a_gpu() {
        let root = std::env::temp_dir().join(format!("nino-pci-{}", std::process::id()));
        let dev = |name: &str, vendor: &str, class: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        };
        assert!(!nvidia_gpu_on_pci(&root), "no folder");
        dev("0000:00:01.0", "0x8086", "0x030000"); // another vendor's VGA
        dev("0000:00:02.0", "0x10de", "0x040300"); // NVIDIA HD audio
        dev("0000:00:03.0", "0x10de", "0x068000"); // NVSwitch
        assert!(!nvidia_gpu_on_pci(&root));
        dev("0000:65:00.0", "0x10de", "0x030200"); // an H100 (3D controller)
        assert!(nvidia_gpu_on_pci(&root));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn absent_and_broken_are_told_apart() {
        assert!(GpuStatus::NoDriverLibrary.is_absent());
        assert!(GpuStatus::NoDevice("x".into()).is_absent());
        assert!(!GpuStatus::Unusable("x".into()).is_absent());
        assert!(!GpuStatus::DriverTooOld { driver_version: 11_080, required: 12_040 }.is_absent());
        assert!(!GpuStatus::NoDriverLibrary.is_available());
    }
}
