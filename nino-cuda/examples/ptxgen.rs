//! Regenerates or checks the committed PTX with NVRTC (`scripts/ptx.sh` sets up the pinned wheel).
//!
//! `ptxgen write`: compiles every `kernels/*.cu` for `compute_80` into `ptx/*.ptx`.
//! `ptxgen check`: recompiles and fails if any committed PTX differs, then compiles for sm_80 and sm_90
//! and fails on any register spill, shared memory over 48 KiB, or a block that does not fit the register
//! file; prints ptxas's figures per kernel.

use nino_cuda::kernels::MODULES;
use nino_cuda::ptxgen::{CHECK_ARCHS, PTX_ARCH, compile, nvrtc_present, parse_report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Longest a single compile may take (a sane kernel takes seconds).
const TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode != "write" && mode != "check" {
        eprintln!("usage: ptxgen write|check");
        return ExitCode::from(2);
    }
    if !nvrtc_present() {
        eprintln!("ptxgen: libnvrtc not found (scripts/ptx.sh installs the pinned wheel and sets LD_LIBRARY_PATH)");
        return ExitCode::FAILURE;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ptx");
    let mut failed = false;
    for m in MODULES {
        let t = Instant::now();
        let ptx = match compile(&m, PTX_ARCH, TIMEOUT) {
            Ok(c) => c.ptx,
            Err(e) => {
                eprintln!("ptxgen: {e}");
                return ExitCode::FAILURE;
            }
        };
        let path = dir.join(format!("{}.ptx", m.name));
        if mode == "write" {
            if let Err(e) = std::fs::write(&path, &ptx) {
                eprintln!("ptxgen: writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {} ({} bytes, {:.1} s)", path.display(), ptx.len(), t.elapsed().as_secs_f64());
            continue;
        }
        if ptx != m.ptx {
            eprintln!(
                "FAIL {}: the committed PTX differs from what NVRTC makes of the source (run scripts/ptx.sh)",
                path.display()
            );
            failed = true;
        } else {
            println!("ok   ptx/{}.ptx matches its source ({:.1} s)", m.name, t.elapsed().as_secs_f64());
        }
        for arch in CHECK_ARCHS {
            let log = match compile(&m, arch, TIMEOUT) {
                Ok(c) => c.log,
                Err(e) => {
                    eprintln!("ptxgen: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let report = parse_report(&log);
            if report.len() != m.kernels.len() {
                eprintln!(
                    "FAIL {} {arch}: ptxas reported {} kernels, expected {}",
                    m.name,
                    report.len(),
                    m.kernels.len()
                );
                failed = true;
            }
            for r in report {
                let verdict = match r.problem() {
                    Some(p) => {
                        failed = true;
                        format!("FAIL {p}")
                    }
                    None => "ok".to_string(),
                };
                println!(
                    "{verdict:4} {:20} {arch}: {:3} registers, {:5} B shared, {} B stack, {} B spills",
                    r.kernel, r.registers, r.shared_bytes, r.stack_bytes, r.spill_bytes
                );
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
