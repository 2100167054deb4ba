//! GPU smoke test: with a GPU, a context, device memory and host↔device copies must work and round-trip
//! exactly; without one, one visible `SKIP:` line on stderr says so (nothing is claimed as checked).
//!
//! Set `NINO_REQUIRE_GPU=1` (as `scripts/gpu-check.sh` does) to turn a missing GPU into a failure.

use half::f16;
use nino_cuda::cudarc::driver::CudaContext;
use nino_cuda::{GpuStatus, probe};
use std::io::Write;

/// The probe must answer, not panic, and answer the same twice (it is called by every GPU entry point).
#[test]
fn probe_answers_consistently() {
    let first = probe();
    assert_eq!(first, probe());
}

#[test]
fn device_memory_round_trip() {
    let status = probe();
    if status.may_skip() && std::env::var_os("NINO_REQUIRE_GPU").is_none_or(|v| v != "1") {
        // libtest captures `eprintln!`, not a direct write to stderr: this line shows in `cargo test -q`.
        let _ = writeln!(std::io::stderr(), "SKIP: no GPU ({status}); nothing checked");
        return;
    }
    let GpuStatus::Available { name, compute_capability, total_mem, .. } = &status else {
        panic!("a GPU is required or present but not usable: {status}");
    };
    let _ = writeln!(std::io::stderr(), "GPU: {status}");
    assert!(!name.is_empty() && *total_mem > 0 && compute_capability.0 >= 7, "implausible device: {status}");

    let ctx = CudaContext::new(0).expect("context on device 0");
    let stream = ctx.default_stream();

    // An odd length, so a copy that rounds to a block or a vector width would show.
    let host: Vec<f32> = (0..4099).map(|i| (i as f32).sin() * 1e3).collect();
    let dev = stream.clone_htod(&host).expect("host to device");
    assert_eq!(stream.clone_dtoh(&dev).expect("device to host"), host, "f32 round trip");

    // Zeroed allocation, then device-to-device into it.
    let mut zeros = stream.alloc_zeros::<f32>(host.len()).expect("alloc_zeros");
    assert!(stream.clone_dtoh(&zeros).expect("read zeros").iter().all(|&v| v.to_bits() == 0));
    stream.memcpy_dtod(&dev, &mut zeros).expect("device to device");
    let mut back = vec![0.0f32; host.len()];
    stream.memcpy_dtoh(&zeros, &mut back).expect("device to host into a slice");
    stream.synchronize().expect("synchronize");
    assert_eq!(back, host, "device-to-device copy");

    // f16 storage, which the NiNo kernels will read, keeps its bit patterns.
    let halfs: Vec<f16> = (0..1031u16).map(f16::from_bits).collect();
    let dev_h = stream.clone_htod(&halfs).expect("f16 host to device");
    let back_h = stream.clone_dtoh(&dev_h).expect("f16 device to host");
    assert!(back_h.iter().zip(&halfs).all(|(a, b)| a.to_bits() == b.to_bits()), "f16 round trip");
}
