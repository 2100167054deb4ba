//! Optional logging facade: forwards to `defmt` when the `defmt` feature is on, otherwise compiles to nothing.
