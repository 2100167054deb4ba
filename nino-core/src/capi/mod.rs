//! The C ABI (feature `capi`): a nowcaster in one block of caller memory, its memory plan, the period and
//! horizon schedule, the rollback snapshot and verdict, and Adam, as `extern "C"` functions for training
//! runtimes written in C or C++. `nino-core/capi` builds them into `libnino.a`; `nino-core/capi/include/nino.h`
//! declares them (`tests/capi_header.rs` checks the two against each other) and `docs/c-abi.md` explains them.
//!
//! The functions only check their arguments and translate: every computation is the core's own
//! ([`crate::nowcast::nowcast`], [`crate::plan::NowcastPlan`], [`crate::period::Timeline`],
//! [`crate::rollback`], [`crate::adam::adam_step`]). Nothing here allocates or panics on bad input: every
//! pointer is checked for null and alignment, every length against the plan, every buffer for overlap with
//! the ones it is used with, before a slice is made of it; an error is an `i32` code (`NINO_E_*`).

mod nowcaster;
mod schedule;
mod train;

pub use nowcaster::*;
pub use schedule::*;
pub use train::*;

use crate::error::Error;
use core::ffi::{CStr, c_char};

/// Version of the ABI that `nino.h` declares (`NINO_ABI_VERSION`), so a program can tell a stale library.
pub const NINO_ABI_VERSION: u32 = 1;

/// Success.
pub const NINO_OK: i32 = 0;
/// A pointer argument that must not be null is null.
pub const NINO_E_NULL: i32 = -1;
/// A pointer is not aligned for its type (`NINO_ALIGN` for the nowcaster's memory).
pub const NINO_E_ALIGN: i32 = -2;
/// A buffer's length is not the one the plan asks for (or the memory block is too short).
pub const NINO_E_BUFFER_SIZE: i32 = -3;
/// Two buffers that must be distinct overlap (or one overlaps the nowcaster's memory).
pub const NINO_E_OVERLAP: i32 = -4;
/// The architecture string or shape is invalid.
pub const NINO_E_ARCH: i32 = -5;
/// The weight file is malformed, or lacks a tensor the model reads, or has it in the wrong shape or dtype.
pub const NINO_E_WEIGHTS: i32 = -6;
/// `model_args` is missing, malformed or names an option the core does not run.
pub const NINO_E_MODEL_ARGS: i32 = -7;
/// The model is valid but not one the C ABI runs (NiNo++ variants, word positional encodings, sizes beyond
/// the address space), or it cannot nowcast this architecture (feature slots, edge types).
pub const NINO_E_UNSUPPORTED: i32 = -8;
/// The GNN needs node features and none were given for an architecture without a built-in table.
pub const NINO_E_NODE_FEATURES: i32 = -9;
/// The horizon `k` is outside `1..=seq_len`.
pub const NINO_E_HORIZON: i32 = -10;
/// A nowcast was asked for before `ctx` states were recorded.
pub const NINO_E_HISTORY: i32 = -11;
/// A value that must be finite is NaN or infinite (weights, node features, the history, the prediction).
pub const NINO_E_NON_FINITE: i32 = -12;
/// Another argument is out of its range (a storage, period, horizon rule, rule or Adam setting).
pub const NINO_E_INVALID_ARGUMENT: i32 = -13;
/// A restore was asked for before any save.
pub const NINO_E_NO_SNAPSHOT: i32 = -14;
/// The nowcaster or schedule was not initialised by its `_init` function (or its memory was overwritten).
pub const NINO_E_HANDLE: i32 = -15;

/// Every code with its name and message, in order from `NINO_OK` down.
const ERRORS: [(i32, &CStr, &CStr); 16] = [
    (NINO_OK, c"NINO_OK", c"success"),
    (NINO_E_NULL, c"NINO_E_NULL", c"a pointer argument that must not be null is null"),
    (NINO_E_ALIGN, c"NINO_E_ALIGN", c"a pointer is not aligned for its type (NINO_ALIGN for nowcaster memory)"),
    (NINO_E_BUFFER_SIZE, c"NINO_E_BUFFER_SIZE", c"a buffer's length is not the one the memory plan asks for"),
    (NINO_E_OVERLAP, c"NINO_E_OVERLAP", c"two buffers that must be distinct overlap"),
    (NINO_E_ARCH, c"NINO_E_ARCH", c"the architecture string or input shape is invalid"),
    (NINO_E_WEIGHTS, c"NINO_E_WEIGHTS", c"the weight file is malformed or lacks a tensor the model reads"),
    (NINO_E_MODEL_ARGS, c"NINO_E_MODEL_ARGS", c"model_args is missing, malformed or names an unsupported option"),
    (
        NINO_E_UNSUPPORTED,
        c"NINO_E_UNSUPPORTED",
        c"the model is not one the C ABI runs, or cannot nowcast this architecture",
    ),
    (NINO_E_NODE_FEATURES, c"NINO_E_NODE_FEATURES", c"no node features given and no built-in table for this arch"),
    (NINO_E_HORIZON, c"NINO_E_HORIZON", c"the horizon k is outside 1..=seq_len"),
    (NINO_E_HISTORY, c"NINO_E_HISTORY", c"fewer than ctx states recorded"),
    (NINO_E_NON_FINITE, c"NINO_E_NON_FINITE", c"a value that must be finite is NaN or infinite"),
    (NINO_E_INVALID_ARGUMENT, c"NINO_E_INVALID_ARGUMENT", c"an argument is out of its range"),
    (NINO_E_NO_SNAPSHOT, c"NINO_E_NO_SNAPSHOT", c"restore before any save"),
    (NINO_E_HANDLE, c"NINO_E_HANDLE", c"the nowcaster or schedule was not initialised by its _init function"),
];

/// What an unknown code names.
const UNKNOWN: (&CStr, &CStr) = (c"NINO_E_UNKNOWN", c"not an error code of this library");

/// The library's ABI version, to compare with `NINO_ABI_VERSION` of the header a program was built with.
#[unsafe(no_mangle)]
pub extern "C" fn nino_abi_version() -> u32 {
    NINO_ABI_VERSION
}

/// The symbolic name of an error code (`"NINO_E_HORIZON"`), a static string; unknown codes give
/// `"NINO_E_UNKNOWN"`.
#[unsafe(no_mangle)]
pub extern "C" fn nino_error_name(code: i32) -> *const c_char {
    ERRORS.iter().find(|e| e.0 == code).map_or(UNKNOWN.0, |e| e.1).as_ptr()
}

/// A one-line description of an error code, a static string.
#[unsafe(no_mangle)]
pub extern "C" fn nino_error_message(code: i32) -> *const c_char {
    ERRORS.iter().find(|e| e.0 == code).map_or(UNKNOWN.1, |e| e.2).as_ptr()
}

/// A failed call's code (one of the `NINO_E_*`).
type Status = Result<(), i32>;

/// The code of a core error: lengths, non-finite values and architectures have their own codes, any other
/// refusal is `fallback` (the code of what the caller was doing).
fn code(e: Error, fallback: i32) -> i32 {
    match e {
        Error::BufferSize { .. } => NINO_E_BUFFER_SIZE,
        Error::NonFinite(_) => NINO_E_NON_FINITE,
        Error::Arch(_) => NINO_E_ARCH,
        Error::InvalidArgument(_) => fallback,
    }
}

/// The return value of an ABI function.
fn status(r: Status) -> i32 {
    r.err().unwrap_or(NINO_OK)
}

/// Checks that `p` is non-null and aligned for `T`.
fn check_ptr<T>(p: *const T) -> Status {
    if p.is_null() {
        return Err(NINO_E_NULL);
    }
    if !p.is_aligned() {
        return Err(NINO_E_ALIGN);
    }
    Ok(())
}

/// The byte range `[start, end)` of `n` values at `p`, or `NINO_E_BUFFER_SIZE` if it does not fit in memory.
fn span<T>(p: *const T, n: usize) -> Result<(usize, usize), i32> {
    let bytes = n.checked_mul(size_of::<T>()).filter(|&b| b <= isize::MAX as usize).ok_or(NINO_E_BUFFER_SIZE)?;
    let start = p as usize;
    Ok((start, start.checked_add(bytes).ok_or(NINO_E_BUFFER_SIZE)?))
}

/// Whether two byte ranges share a byte.
fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1 && a.0 < a.1 && b.0 < b.1
}

/// Fails with `NINO_E_OVERLAP` when any two of `ranges` overlap.
fn check_disjoint(ranges: &[(usize, usize)]) -> Status {
    for (i, a) in ranges.iter().enumerate() {
        if ranges[i + 1..].iter().any(|b| overlaps(*a, *b)) {
            return Err(NINO_E_OVERLAP);
        }
    }
    Ok(())
}

/// Reads a struct argument.
///
/// # Safety
/// `p` is null or points to a readable `T` every bit pattern of which is valid (the ABI's argument structs
/// hold only integers, floats and pointers).
unsafe fn read<T: Copy>(p: *const T) -> Result<T, i32> {
    check_ptr(p)?;
    // SAFETY: non-null and aligned (checked), readable by the caller's contract.
    Ok(unsafe { p.read() })
}

/// Writes a result through an out-pointer checked earlier with [`check_ptr`].
///
/// # Safety
/// `p` is non-null, aligned and writable.
unsafe fn write<T>(p: *mut T, value: T) {
    // SAFETY: the caller's contract.
    unsafe { p.write(value) }
}

/// A caller buffer of `n` values as a slice.
///
/// # Safety
/// `p` is null or valid for reads of `n` values, and nothing writes to them while the slice lives.
unsafe fn slice<'a, T>(p: *const T, n: usize) -> Result<&'a [T], i32> {
    check_ptr(p)?;
    span(p, n)?;
    // SAFETY: non-null, aligned, at most isize::MAX bytes (checked); readable and not written meanwhile by
    // the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, n) })
}

/// A caller buffer of `n` values as a mutable slice.
///
/// # Safety
/// `p` is null or valid for reads and writes of `n` values, and nothing else accesses them while the slice
/// lives.
unsafe fn slice_mut<'a, T>(p: *mut T, n: usize) -> Result<&'a mut [T], i32> {
    check_ptr(p)?;
    span(p, n)?;
    // SAFETY: as in `slice`, plus exclusive access by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, n) })
}

/// A NUL-terminated string of at most `max` bytes before its NUL, as UTF-8; `bad` is the code for a
/// string that is too long or not UTF-8.
///
/// # Safety
/// `p` is null or points to readable bytes up to a NUL or `max + 1` bytes, whichever comes first.
unsafe fn c_str<'a>(p: *const c_char, max: usize, bad: i32) -> Result<&'a str, i32> {
    check_ptr(p)?;
    let mut len = 0;
    // SAFETY: bytes are read one at a time and never past the first NUL or `max + 1` bytes (the contract).
    while unsafe { p.add(len).read() } != 0 {
        if len == max {
            return Err(bad);
        }
        len += 1;
    }
    // SAFETY: the `len` bytes before the NUL were just read.
    let bytes = unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) };
    core::str::from_utf8(bytes).map_err(|_| bad)
}
