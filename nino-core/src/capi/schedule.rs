//! The period and horizon schedule of the C ABI: the core's [`Timeline`] kept in a caller-owned
//! [`NinoSchedule`], telling the training loop at every step whether to take an Adam step, record a state or
//! nowcast, and with which horizon.

use super::{NINO_E_HANDLE, NINO_E_INVALID_ARGUMENT, check_disjoint, check_ptr, read, span, status, write};
use crate::period::{Action, Horizon, Period, Timeline};

/// Words of a [`NinoSchedule`].
pub const NINO_SCHEDULE_WORDS: usize = 32;

/// The reference's static period: every window lasts `first` steps.
pub const NINO_PERIOD_STATIC: i32 = 0;
/// `first * growth^j` capped at `max`.
pub const NINO_PERIOD_GEOMETRIC: i32 = 1;
/// The geometric rule capped at `cap` while the reported loss keeps falling, the cap widening up to `max`.
pub const NINO_PERIOD_PROGRESS: i32 = 2;
/// nino's default dynamic rule (its numbers are the core's; the other fields are ignored).
pub const NINO_PERIOD_DYNAMIC: i32 = 3;
/// The periods of the public `dynamic_period` fork of the reference (the other fields are ignored).
pub const NINO_PERIOD_FORK: i32 = 4;

/// The horizon rule the period implies: the counter for a static period, the fraction otherwise.
pub const NINO_HORIZON_DEFAULT: i32 = 0;
/// The reference: the horizon schedule indexed by the nowcast counter.
pub const NINO_HORIZON_COUNTER: i32 = 1;
/// The reference curve read at the training fraction `step / max_steps`.
pub const NINO_HORIZON_FRACTION: i32 = 2;

/// An ordinary optimizer step.
pub const NINO_ACTION_ADAM: i32 = 0;
/// Record the current parameters as a context state, then take an optimizer step.
pub const NINO_ACTION_RECORD: i32 = 1;
/// Record the current parameters, then nowcast with horizon `k` instead of the optimizer step.
pub const NINO_ACTION_NOWCAST: i32 = 2;

/// Largest `max_steps` of a schedule: the planned nowcasts are counted window by window.
pub const NINO_MAX_STEPS: usize = 4_294_967_295;

/// How the period grows from one nowcast to the next.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NinoPeriod {
    /// One of `NINO_PERIOD_*`.
    pub kind: i32,
    /// The first window's period (the period of a static schedule), in steps.
    pub first: usize,
    /// Growth per nowcast (geometric, progress), at least 1.
    pub growth: f32,
    /// The progress rule's cap while the loss falls.
    pub cap: usize,
    /// The largest period (geometric, progress).
    pub max: usize,
}

/// A schedule's state, in memory the caller owns (copyable, no pointers into the caller's memory).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NinoSchedule {
    /// Opaque to the caller.
    pub opaque: [u64; NINO_SCHEDULE_WORDS],
}

/// What the training loop does at one step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NinoAction {
    /// One of `NINO_ACTION_*`.
    pub kind: i32,
    /// For a nowcast: its 0-based counter.
    pub index: usize,
    /// For a nowcast: the horizon to pass to `nino_nowcaster_nowcast`.
    pub k: usize,
}

/// Marks an initialised schedule ("ninosched").
const MAGIC: u64 = 0x6e69_6e6f_7363_6864;

/// What a [`NinoSchedule`] holds (`repr(C)`: the magic word comes first whatever the rest).
#[repr(C)]
struct Stored {
    magic: u64,
    timeline: Timeline<'static>,
}

const _: () = assert!(size_of::<Stored>() <= size_of::<NinoSchedule>());
const _: () = assert!(align_of::<Stored>() <= align_of::<NinoSchedule>());

/// The core's period for a [`NinoPeriod`].
fn period(p: &NinoPeriod) -> Result<Period<'static>, i32> {
    Ok(match p.kind {
        NINO_PERIOD_STATIC => Period::Static(p.first),
        NINO_PERIOD_GEOMETRIC => Period::Geometric { first: p.first, growth: p.growth, max: p.max },
        NINO_PERIOD_PROGRESS => Period::Progress { first: p.first, growth: p.growth, cap: p.cap, max: p.max },
        NINO_PERIOD_DYNAMIC => Period::DYNAMIC,
        NINO_PERIOD_FORK => Period::FORK,
        _ => return Err(NINO_E_INVALID_ARGUMENT),
    })
}

/// Starts a schedule in `schedule` for `ctx` context states, a run of at most `max_steps` steps and a model
/// of `seq_len` horizons (the plan's `ctx` and `seq_len`); `horizon` is one of `NINO_HORIZON_*`.
///
/// # Safety
/// `schedule` and `period` are null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_schedule_init(
    schedule: *mut NinoSchedule,
    period_spec: *const NinoPeriod,
    horizon: i32,
    ctx: usize,
    max_steps: usize,
    seq_len: usize,
) -> i32 {
    status((|| {
        check_ptr(schedule)?;
        // SAFETY: the caller's contract.
        let p = period(&unsafe { read(period_spec) }?)?;
        let horizon = match horizon {
            NINO_HORIZON_DEFAULT => p.default_horizon(),
            NINO_HORIZON_COUNTER => Horizon::Counter,
            NINO_HORIZON_FRACTION => Horizon::Fraction,
            _ => return Err(NINO_E_INVALID_ARGUMENT),
        };
        if max_steps > NINO_MAX_STEPS {
            return Err(NINO_E_INVALID_ARGUMENT);
        }
        let timeline = Timeline::new(p, ctx, max_steps, seq_len).map_err(|_| NINO_E_INVALID_ARGUMENT)?;
        let stored = Stored { magic: MAGIC, timeline: timeline.with_horizon(horizon) };
        // SAFETY: non-null and aligned (checked; `Stored` needs no more than `NinoSchedule`), and large
        // enough (asserted at compile time); writable by the caller's contract.
        unsafe { write(schedule.cast::<Stored>(), stored) };
        Ok(())
    })())
}

/// The schedule behind `schedule`.
///
/// # Safety
/// `schedule` is null or valid, and was initialised by `nino_schedule_init` if it holds the magic word.
unsafe fn open<'a>(schedule: *mut NinoSchedule) -> Result<&'a mut Timeline<'static>, i32> {
    check_ptr(schedule)?;
    let stored = schedule.cast::<Stored>();
    // SAFETY: aligned and readable (the contract); `magic` is the first field, a plain `u64`.
    if unsafe { (&raw const (*stored).magic).read() } != MAGIC {
        return Err(NINO_E_HANDLE);
    }
    // SAFETY: the magic says `nino_schedule_init` wrote a `Stored` here.
    Ok(unsafe { &mut (*stored).timeline })
}

/// Stores in `*action` what the training loop does at 1-based step `step`; call once per step, in order.
///
/// # Safety
/// `schedule` and `action` are null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_schedule_next(schedule: *mut NinoSchedule, step: u64, action: *mut NinoAction) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let t = unsafe { open(schedule) }?;
        check_ptr(action)?;
        check_disjoint(&[span(schedule, 1)?, span(action, 1)?])?;
        let a = match t.next(step) {
            Action::Adam => NinoAction { kind: NINO_ACTION_ADAM, index: 0, k: 0 },
            Action::Record => NinoAction { kind: NINO_ACTION_RECORD, index: 0, k: 0 },
            Action::Nowcast { index, k } => NinoAction { kind: NINO_ACTION_NOWCAST, index, k },
        };
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write(action, a) };
        Ok(())
    })())
}

/// Reports the held-out loss measured at the nowcast just made, which the progress rule sizes the next
/// window by (other rules ignore it); call once per nowcast, after `nino_schedule_next`.
///
/// # Safety
/// `schedule` is null or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nino_schedule_report(schedule: *mut NinoSchedule, loss: f32) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        unsafe { open(schedule) }?.report(loss);
        Ok(())
    })())
}
