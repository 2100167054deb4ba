//! `libnino.a`: nino-core's C ABI (`nino_core::capi`, declared in `include/nino.h`) as a static library for C
//! and C++ training runtimes. `no_std` and without an allocator: it needs from the C side only `abort` (for
//! the panic handler) and `memcpy`, `memmove`, `memset` and `memcmp`, which any C runtime provides.
#![no_std]

pub use nino_core::capi::*;

unsafe extern "C" {
    /// The C library's `abort`.
    fn abort() -> !;
}

/// Any panic left in the library ends the process: the ABI's functions check their inputs first and return
/// error codes, and unwinding must never cross into C.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: `abort` takes nothing and never returns.
    unsafe { abort() }
}
