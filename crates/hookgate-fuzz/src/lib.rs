//! Fuzz harnesses for hookgate, compiled twice: by `cargo fuzz` (the `fuzz/` project, on
//! nightly flags, with libFuzzer driving them) and by this ordinary workspace crate, whose
//! `tests/corpus.rs` replays every committed corpus file and crash artifact through the very
//! same functions under plain `cargo test`.
//!
//! Every harness reaches hookgate only through its public API: a [`Verifier`] of one scheme
//! and crafted headers put the fuzzer's bytes through exactly one family of header parsers
//! (the Stripe verifier and an arbitrary `Stripe-Signature` value exercise the `t=,v1=`
//! parser, a Mailgun verifier and an arbitrary body the body-field parser, and so on).
//!
//! # Input format
//!
//! Inputs are split on `\n` into a fixed number of fields, the last field taking the rest
//! (so a body may contain newlines); see each target's documentation. The format keeps the
//! committed seeds readable and lets libFuzzer's mutations move bytes between fields.
//!
//! # Oracles
//!
//! A harness panics (which libFuzzer records as a crash) when:
//! - verification panics, or a rejection's status is not 400/401 or its code does not
//!   round-trip through [`hookgate::Reason::from_code`];
//! - a rejection's `Display` or `Debug` output contains a secret;
//! - the same request verified through an `http::HeaderMap` and through `(name, value)`
//!   pairs gets different answers;
//! - a verified event's dedup key does not start with its scheme name;
//! - the [`Gate`](hookgate::Gate) or the tower middleware answers a status outside the
//!   contract table, enqueues on a rejection, fails to enqueue on `accepted`, or does not
//!   answer `duplicate` to a verified delivery sent twice; in verify-only mode the inner
//!   service gets a raw body different from the verified event's.
//!
//! Seeds: [`seeds::all`] builds them (valid signed deliveries and near misses); the
//! `write-seeds` binary writes them under `fuzz/seeds/<target>/seed-*`. What the fuzzing
//! runs add is minimised into `fuzz/corpus/<target>/`.

pub mod seeds;
pub mod targets;
pub mod tower_target;

mod input;
mod keys;

pub use keys::{NOW, URL};

/// What a harness decided for one scheme: `Ok(dedup key or outcome code)` or `Err(code)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The scheme (or scheme and header form) the input went through.
    pub label: String,
    /// `Ok` with the dedup key (verifier targets) or the success code (gate targets),
    /// `Err` with the rejection's code.
    pub result: Result<String, &'static str>,
}

/// A harness: the fuzzer's bytes in, the verdicts out (the fuzz targets ignore them; the
/// regression tests check that valid seeds verify).
pub type Harness = fn(&[u8]) -> Vec<Verdict>;

/// Every fuzz target by name, as `fuzz/fuzz_targets/<name>.rs`, `fuzz/seeds/<name>/` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Harness)] = &[
    ("standard_webhooks", targets::standard_webhooks),
    ("stripe_t_v1", targets::stripe_t_v1),
    ("paddle", targets::paddle),
    ("encodings", targets::encodings),
    ("timestamped_headers", targets::timestamped_headers),
    ("twilio_form", targets::twilio_form),
    ("mailgun_body", targets::mailgun_body),
    ("generic_hmac", targets::generic_hmac),
    ("gate", targets::gate),
    ("tower_service", tower_target::tower_service),
];

/// The harness of target `name`.
pub fn harness(name: &str) -> Option<Harness> {
    TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, harness)| *harness)
}
