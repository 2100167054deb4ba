//! Links glibc: it provides `__libc_start_main` (called by the C start files that run our `main`) and the
//! `memcpy`/`memset`/`memcmp` symbols that `core` emits calls to. libc is not std.

fn main() {
    println!("cargo:rustc-link-arg-bins=-lc");
}
