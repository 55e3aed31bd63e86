//! # hookgate
//!
//! Receive webhooks safely: verify each provider's signature over the raw body against a
//! keyring that supports rotation, reject stale and replayed deliveries, and derive an
//! authenticated dedup key, without any web framework.
//!
//! ## Quick start: verifying in a handler
//!
//! ```
//! use hookgate::{SchemeId, Verifier};
//!
//! // Build once (at start-up), share everywhere: bad keys are reported here, not per request.
//! let verifier = Verifier::builder(SchemeId::Github)
//!     .secret("It's a Secret to Everybody")
//!     .build()?;
//!
//! // In the handler: the headers (an http::HeaderMap, or pairs) and the raw body bytes.
//! let headers = [(
//!     "X-Hub-Signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
//! )];
//! match verifier.verify(&headers, "Hello, World!") {
//!     Ok(event) => println!("authentic, dedup key {}", event.dedup_key()),
//!     Err(rejection) => println!("answer {} {}", rejection.status(), rejection.code()),
//! }
//! # Ok::<(), hookgate::ConfigError>(())
//! ```
//!
//! For a one-off check there is [`verify`], which builds the verifier and verifies in one
//! call.
//!
//! ## Receiving: the Gate
//!
//! A server does more than verify: it must not lose an event and should not process one
//! twice. A [`Gate`] verifies, deduplicates through a [`DedupStore`] and hands each event to
//! a [`Sink`], answering 2xx only once the sink has it; the [`gate`] module documents this
//! at-least-once contract and what every status and code tells the sender. The framework
//! adapters only translate requests to the gate and its [`Outcome`] back to responses.
//!
//! ## Schemes
//!
//! [`SchemeId::ALL`] lists the presets (Standard Webhooks v1/v1a, Svix and its Clerk and
//! Resend aliases, Stripe, GitHub, Shopify, Slack, Twilio, Paddle, Square, Mailgun, SendGrid,
//! Discord, Twitch EventSub, Zoom, Linear, Intercom, GitLab, Prefinery, Meta, and more: 46 in
//! all); [`GenericHmac`] describes any other HMAC sender.
//! Schemes whose provider checks the endpoint first (Slack, Zoom, Twitch, Discord, Meta)
//! declare a [handshake], which the [`Gate`] answers and never stores.
//!
//! ## Security properties
//!
//! - **Raw bytes only.** Signatures are checked over the body exactly as received; nothing is
//!   re-serialised.
//! - **Constant-time comparison.** HMAC tags are compared with [`subtle`] over the full tag
//!   length (a truncated signature never matches), after computing the tag for every live key,
//!   so timing does not reveal which key or which byte matched. `subtle` is best effort: the
//!   compiler gives no hard guarantee, but no early-exit comparison is used anywhere.
//! - **Strict parsing.** Timestamps are ASCII digits only; signatures are canonical base64 or
//!   lowercase hex as each provider sends them; a header repeated with different values is
//!   malformed; at most 32 signatures per request are considered.
//! - **Replay window.** Where a scheme signs a timestamp, deliveries older than the tolerance
//!   are rejected, and by default so are those further in the future than the tolerance. The
//!   arithmetic cannot overflow.
//! - **Authenticated dedup keys.** [`VerifiedEvent::dedup_key`] is built only from signed
//!   content (a signed id, an id inside the signed body, or a digest of the signed body), so
//!   an attacker cannot make a replay look new by changing an unsigned header.
//! - **Secrets stay secret.** Keys are zeroized on drop and never appear in `Debug` output or
//!   error messages; rejections name a header, never a value or an expected signature.
//! - **Limits of the schemes themselves.** Schemes without a timestamp (GitHub, Shopify,
//!   Twilio, Square, Intercom, GitLab) cannot detect a replay once the dedup store has
//!   forgotten the delivery; GitLab's token does not authenticate the body; Mailgun signs only
//!   a timestamp and token, not the event; Twilio and Square need the exact public URL.

mod clock;
pub mod dedup;
mod encoding;
mod error;
mod event;
pub mod gate;
pub mod handshake;
mod headers;
mod hmac_sha256;
mod json;
mod keyring;
mod reason;
mod request;
mod scheme;
mod secret;
mod sign;
pub mod sink;
mod verifier;

use bytes::Bytes;

pub use clock::{Clock, FixedClock, SystemClock};
pub use dedup::{DedupStore, MemoryDedupStore};
pub use encoding::Encoding;
pub use error::{ConfigError, Error};
pub use event::VerifiedEvent;
pub use gate::{
    BoxFuture, Gate, GateBuilder, GateConfigError, Outcome, OutcomeKind, ReceiveFuture,
};
pub use handshake::{Handshake, HandshakeKind, HandshakeRefusal, HandshakeReply};
pub use headers::Headers;
pub use keyring::{Key, Keyring};
pub use reason::{Reason, Rejection};
pub use request::RequestContext;
pub use scheme::{GenericHmac, GenericHmacBuilder, HmacAlgorithm, Scheme, SchemeId};
pub use secret::Secret;
pub use sign::{SignRequest, SignedDelivery, Signer, standard_webhooks_public_key};
pub use sink::{ChannelSink, Handoff, Sink, SinkError};
pub use verifier::{Verifier, VerifierBuilder};

/// Verifies one delivery in one call, with the scheme's default window and the system clock.
///
/// `keys` are the secrets (or public keys) as the provider writes them; every one is tried.
/// `request` is what the request line says ([`RequestContext`], or just `Option<&str>` for the
/// public URL): the URL the provider called is needed only by URL-signing schemes (Twilio,
/// Square, HubSpot v3), the HTTP method only by HubSpot v3 (`POST` when not given). For many
/// requests, build a [`Verifier`] once instead.
///
/// ```
/// let headers = [
///     ("X-Shopify-Hmac-Sha256", "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="),
///     ("X-Shopify-Topic", "products/create"),
///     ("X-Shopify-Shop-Domain", "shop1.myshopify.io"),
///     ("X-Shopify-API-Version", "2023-01"),
///     ("X-Shopify-Webhook-Id", "123456789"),
/// ];
/// let event = hookgate::verify("shopify", &["test_secret_key"], &headers, r#"{"foo": "bar"}"#, None)?;
/// assert_eq!(event.scheme(), "shopify");
/// assert_eq!(event.event_type(), Some("products/create"));
///
/// let err = hookgate::verify("shopify", &["wrong"], &headers, r#"{"foo": "bar"}"#, None)
///     .unwrap_err();
/// assert_eq!(err.rejection().map(|r| r.code()), Some("signature_mismatch"));
/// # Ok::<(), hookgate::Error>(())
/// ```
///
/// # Errors
/// [`Error::Config`] for an unknown scheme, unusable keys or a URL-signing scheme without a
/// URL; [`Error::Rejected`] when the delivery does not verify.
pub fn verify<'r, H: Headers + ?Sized>(
    scheme: &str,
    keys: &[&str],
    headers: &H,
    body: impl Into<Bytes>,
    request: impl Into<RequestContext<'r>>,
) -> Result<VerifiedEvent, Error> {
    let scheme: SchemeId = scheme.parse()?;
    let request = request.into();
    let mut builder = Verifier::builder(scheme);
    for key in keys {
        builder = builder.secret(*key);
    }
    if let Some(url) = request.url() {
        builder = builder.url(url);
    }
    Ok(builder.build()?.verify_request(headers, body, request)?)
}
