//! The conformance table: see `tests/conformance.rs`.
