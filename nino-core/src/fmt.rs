//! Optional logging facade: forwards to `defmt` when the `defmt` feature is on, otherwise compiles to nothing.
//!
//! Use `trace!`, `debug!`, `info!`, `warn!` and `error!` anywhere in the crate (this module is declared first
//! in `lib.rs`, so the macros are in scope everywhere). The format string is a defmt format string (`{}`,
//! `{=u32}`, ...). Without `defmt` the arguments are still evaluated by reference, so they must type-check
//! and a variable used only for logging does not warn as unused.
//!
//! Linking a binary with the `defmt` feature needs a `#[defmt::global_logger]` and a `defmt::timestamp!`
//! somewhere in it (see `tests/nostd-check`); `error!` is always live, the other levels only when
//! `DEFMT_LOG` asks for them at compile time.
#![macro_use]

// Every level is part of the facade even while no core module uses it yet.
#[allow(unused_macros)]
macro_rules! trace {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::trace!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($( & $x ),*);
    }};
}

// Every level is part of the facade even while no core module uses it yet.
#[allow(unused_macros)]
macro_rules! debug {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::debug!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($( & $x ),*);
    }};
}

// Every level is part of the facade even while no core module uses it yet.
#[allow(unused_macros)]
macro_rules! info {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::info!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($( & $x ),*);
    }};
}

// Every level is part of the facade even while no core module uses it yet.
#[allow(unused_macros)]
macro_rules! warn {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::warn!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($( & $x ),*);
    }};
}

// Every level is part of the facade even while no core module uses it yet.
#[allow(unused_macros)]
macro_rules! error {
    ($s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::error!($s $(, $x)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($( & $x ),*);
    }};
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    /// Without `defmt` every level must expand, accept trailing commas and defmt hints in the literal, and
    /// evaluate each argument exactly once (as defmt does), so switching the feature changes no behaviour.
    /// With `defmt` a linked test binary would need a global logger, so this runs only without it.
    #[cfg(not(feature = "defmt"))]
    #[test]
    fn levels_expand_and_evaluate_arguments_once() {
        let calls = Cell::new(0u32);
        let arg = || {
            calls.set(calls.get() + 1);
            7u32
        };
        trace!("t {=u32}", arg());
        debug!("d {} {}", arg(), 1.5f32,);
        info!("i");
        warn!("w {}", arg());
        error!("e {=u32}", arg());
        assert_eq!(calls.get(), 4);
    }
}
