//! Compiling the kernels with NVRTC (from the pinned `nvidia-cuda-nvrtc-cu12` wheel; no GPU and no CUDA
//! toolkit needed): the committed PTX, and ptxas's resource report per kernel for real architectures.
//! Driven by `examples/ptxgen.rs` (regenerate, check) and `scripts/cuda-ci.sh`.

use crate::kernels::{HEADERS, Module, THREADS};
use cudarc::nvrtc::{result, sys};
use std::ffi::{CStr, CString, c_char};
use std::sync::mpsc;
use std::time::Duration;

/// Virtual architecture of the committed PTX: loads on sm_80 and newer (A100, H100) through the driver's
/// JIT.
pub const PTX_ARCH: &str = "compute_80";

/// Real architectures whose register, spill and shared memory reports CI checks.
pub const CHECK_ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// Static shared memory one block may use without opting in (48 KiB on every architecture).
pub const SHARED_LIMIT: usize = 48 * 1024;

/// Registers of one streaming multiprocessor (64 Ki on sm_80 and sm_90): a block of THREADS threads must
/// fit, or the launch fails.
pub const REGISTER_FILE: usize = 64 * 1024;

/// Options of every compile: no contraction of `a * b + c` into an FMA (the kernels call fmaf where they
/// mean it, so the host shim computes the same values), IEEE division and square root.
pub const OPTIONS: [&str; 4] = ["--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--std=c++17"];

/// Why a compile did not give PTX.
#[derive(Debug, thiserror::Error)]
pub enum PtxError {
    /// libnvrtc could not be loaded (install the wheel and put its lib directory on LD_LIBRARY_PATH).
    #[error(
        "libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12==12.9.86 and add its nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    /// NVRTC refused the source.
    #[error("{module} for {arch}: {err}\n{log}")]
    Compile {
        /// Module name.
        module: String,
        /// Target.
        arch: String,
        /// NVRTC's error.
        err: String,
        /// The compile log.
        log: String,
    },
    /// The compile took longer than allowed (an over-unrolled kernel can take minutes).
    #[error("{0} for {1}: no result after {2} s")]
    Timeout(String, String, u64),
}

/// Whether libnvrtc can be loaded (never panics, unlike a first NVRTC call without it).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// What one compile produced: PTX (for a virtual architecture) and the log (ptxas's report for a real one).
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The PTX text (empty for a real architecture).
    pub ptx: String,
    /// NVRTC's log.
    pub log: String,
}

fn cstring_lossy(v: Vec<c_char>) -> String {
    // SAFETY: NVRTC's buffers are NUL-terminated.
    unsafe { CStr::from_ptr(v.as_ptr()) }.to_string_lossy().into_owned()
}

fn compile_blocking(m: &Module, arch: &str) -> Result<Compiled, PtxError> {
    let fail = |err: String, log: String| PtxError::Compile { module: m.name.into(), arch: arch.into(), err, log };
    let src = CString::new(m.source).map_err(|e| fail(e.to_string(), String::new()))?;
    let name = CString::new(format!("{}.cu", m.name)).map_err(|e| fail(e.to_string(), String::new()))?;
    let hdr_src: Vec<CString> = HEADERS.iter().map(|(_, s)| CString::new(*s).unwrap_or_default()).collect();
    let hdr_name: Vec<CString> = HEADERS.iter().map(|(n, _)| CString::new(*n).unwrap_or_default()).collect();
    let hs: Vec<*const c_char> = hdr_src.iter().map(|s| s.as_ptr()).collect();
    let hn: Vec<*const c_char> = hdr_name.iter().map(|s| s.as_ptr()).collect();
    let mut prog = std::ptr::null_mut();
    // SAFETY: every pointer is a live NUL-terminated string for the duration of the call.
    unsafe {
        sys::nvrtcCreateProgram(&mut prog, src.as_ptr(), name.as_ptr(), hs.len() as i32, hs.as_ptr(), hn.as_ptr())
    }
    .result()
    .map_err(|e| fail(format!("{e:?}"), String::new()))?;
    let real = arch.starts_with("sm_");
    let mut opts: Vec<String> = vec![format!("--gpu-architecture={arch}")];
    opts.extend(OPTIONS.iter().map(|s| s.to_string()));
    if real {
        opts.push("--ptxas-options=-v".into());
    }
    // SAFETY: `prog` was created above and is destroyed below, once.
    let compiled = unsafe { result::compile_program(prog, &opts) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog) }.map(cstring_lossy).unwrap_or_default();
    let out = match compiled {
        Err(e) => Err(fail(format!("{e:?}"), log)),
        Ok(()) if real => Ok(Compiled { ptx: String::new(), log }),
        // SAFETY: as above.
        Ok(()) => match unsafe { result::get_ptx(prog) } {
            Ok(ptx) => Ok(Compiled { ptx: cstring_lossy(ptx), log }),
            Err(e) => Err(fail(format!("{e:?}"), log)),
        },
    };
    // SAFETY: as above.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

/// Compiles `m` for `arch` (`compute_XX`: PTX; `sm_XX`: ptxas's report in the log), giving up after
/// `timeout` (the compile thread is then abandoned; callers exit).
pub fn compile(m: &Module, arch: &str, timeout: Duration) -> Result<Compiled, PtxError> {
    if !nvrtc_present() {
        return Err(PtxError::NoNvrtc);
    }
    let (tx, rx) = mpsc::channel();
    let (module, a) = (*m, arch.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(compile_blocking(&module, &a));
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| Err(PtxError::Timeout(m.name.into(), arch.into(), timeout.as_secs())))
}

/// ptxas's figures for one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Kernel name.
    pub kernel: String,
    /// Target (`sm_90`).
    pub arch: String,
    /// Registers per thread.
    pub registers: usize,
    /// Bytes of spill stores plus spill loads.
    pub spill_bytes: usize,
    /// Bytes of stack frame.
    pub stack_bytes: usize,
    /// Bytes of static shared memory.
    pub shared_bytes: usize,
}

impl Resources {
    /// What is wrong with these figures for a block of [`THREADS`] threads, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.spill_bytes > 0 {
            Some(format!("{} bytes of register spills", self.spill_bytes))
        } else if self.shared_bytes > SHARED_LIMIT {
            Some(format!("{} bytes of shared memory (limit {SHARED_LIMIT})", self.shared_bytes))
        } else if self.registers * THREADS as usize > REGISTER_FILE {
            Some(format!("{} registers x {THREADS} threads exceed the register file", self.registers))
        } else {
            None
        }
    }
}

/// The number before `unit` in `line` (`"Used 56 registers"`, `"registers"` gives 56).
fn number_before(line: &str, unit: &str) -> Option<usize> {
    let i = line.find(unit)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

/// Parses ptxas's `-v` report (one block per entry function) from an NVRTC log.
pub fn parse_report(log: &str) -> Vec<Resources> {
    let mut out: Vec<Resources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let mut parts = rest.split('\'');
            let kernel = parts.next().unwrap_or_default().to_string();
            let arch = parts.nth(1).unwrap_or_default().to_string();
            out.push(Resources { kernel, arch, ..Resources::default() });
        } else if let Some(r) = out.last_mut() {
            if line.contains("spill stores") {
                r.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                r.spill_bytes = number_before(line, "bytes spill stores").unwrap_or(0)
                    + number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                r.registers = number_before(line, "registers").unwrap_or(0);
                r.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_reports_parse() {
        let log = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'nino_layer_f32' for 'sm_90'\n\
            ptxas info    : Function properties for nino_layer_f32\n\
            ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n\
            ptxas info    : Used 168 registers, used 1 barriers, 18176 bytes smem\n\
            ptxas info    : Compiling entry function 'nino_adam' for 'sm_90'\n\
            ptxas info    : Function properties for nino_adam\n\
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 22 registers, used 0 barriers\n";
        let r = parse_report(log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            Resources {
                kernel: "nino_layer_f32".into(),
                arch: "sm_90".into(),
                registers: 168,
                spill_bytes: 8,
                stack_bytes: 8,
                shared_bytes: 18176
            }
        );
        assert!(r[0].problem().unwrap().contains("spills"));
        assert_eq!((r[1].registers, r[1].shared_bytes, r[1].problem()), (22, 0, None));
        let big = Resources { shared_bytes: SHARED_LIMIT + 1, ..r[1].clone() };
        assert!(big.problem().unwrap().contains("shared memory"));
        let fat = Resources { registers: 513, ..r[1].clone() };
        assert!(fat.problem().unwrap().contains("register file"));
    }
}
