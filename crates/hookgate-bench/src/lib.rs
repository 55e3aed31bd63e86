//! Benchmark support for hookgate: the signed fixtures every harness shares, and the report
//! that turns criterion's measurements into the ratio table of `docs/BENCHMARKS.md`.
//!
//! Run the verify-path benchmarks with `cargo bench -p hookgate-bench --bench verify`, then
//! `cargo run -p hookgate-bench --bin bench-report` to print the table; run the HTTP load
//! benchmark with `cargo run --release -p hookgate-bench --bin hookgate-load -- --quick`.

use hookgate::{SchemeId, SignRequest, Signer};

/// The Standard Webhooks secret used by every fixture (the specification's test secret).
pub const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The shared secret of the Stripe, GitHub and Shopify fixtures.
pub const SHARED_SECRET: &str = "whsec_bench_shared_secret_0123456789";
/// The Ed25519 signing key (Svix's published `whsk_` test key).
pub const ED25519_SIGNING: &str =
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
/// Its `whpk_` public key.
pub const ED25519_PUBLIC: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";
/// The payload sizes the verify benchmark covers.
pub const PAYLOAD_SIZES: [usize; 4] = [256, 1024, 16 * 1024, 1024 * 1024];

/// A JSON-looking body of exactly `size` bytes.
pub fn payload(size: usize) -> Vec<u8> {
    let mut body = br#"{"type":"invoice.paid","data":""#.to_vec();
    let tail = br#""}"#;
    let filler = size.saturating_sub(body.len().saturating_add(tail.len()));
    body.extend(std::iter::repeat_n(b'x', filler));
    body.extend_from_slice(tail);
    body.truncate(size);
    body
}

/// Headers of a delivery of `body` signed now with `secret` for `scheme`.
///
/// # Errors
/// The signer's configuration error, if `secret` does not fit `scheme`.
pub fn signed_headers(
    scheme: SchemeId,
    secret: &str,
    id: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, hookgate::ConfigError> {
    let signer = Signer::new(scheme, secret)?;
    // Signed now (the default): the peer crates check timestamps against the system clock.
    let request = SignRequest::new(body.to_vec()).id(id);
    Ok(signer.sign(&request)?.headers)
}

pub mod load;
pub mod report;
