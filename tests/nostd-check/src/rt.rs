//! What a `no_std`, `no_main` binary needs from its runtime, shared by the binaries of this crate: a panic
//! handler, output through glibc's `write`, a fixed-capacity text buffer, and with `--features defmt` a
//! no-op defmt logger. glibc is linked for its C start files (see `build.rs`); it is not `std`.

use core::fmt::Write;

unsafe extern "C" {
    /// glibc's `abort`: ends the process with SIGABRT.
    fn abort() -> !;
    /// glibc's `write(2)`.
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: `abort` takes no arguments and never returns.
    unsafe { abort() }
}

/// A fixed-capacity `core::fmt::Write` sink, since there is no `String` here.
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Buf { bytes: [0; N], len: 0 }
    }

    /// What was written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes `bytes` to standard output; output is best effort, so short writes and errors are ignored.
#[allow(dead_code)] // nostd-check reports through its exit status only
pub fn print_bytes(bytes: &[u8]) {
    // SAFETY: the pointer and length describe a live slice; fd 1 is standard output.
    let _ = unsafe { write(1, bytes.as_ptr(), bytes.len()) };
}

/// `println!` for this runtime: formats into a 256-byte line (longer lines are cut) and writes it.
#[allow(unused_macros)]
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut line = $crate::rt::Buf::<256>::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        let _ = core::fmt::Write::write_str(&mut line, "\n");
        $crate::rt::print_bytes(line.as_bytes());
    }};
}
#[allow(unused_imports)]
pub(crate) use println;

/// A logger that drops every frame: defmt needs one in any binary that keeps a log call, and these binaries
/// only prove that the defmt build links, not what it prints.
#[cfg(feature = "defmt")]
mod noop_logger {
    #[defmt::global_logger]
    struct NoopLogger;

    // SAFETY: nothing is shared, so there is no critical section to guard.
    unsafe impl defmt::Logger for NoopLogger {
        fn acquire() {}
        unsafe fn flush() {}
        unsafe fn release() {}
        unsafe fn write(_bytes: &[u8]) {}
    }

    defmt::timestamp!("{=u32}", 0);
}
