//! # hookgate conformance
//!
//! One table of cases, run through every way of receiving a webhook with hookgate:
//!
//! - **core**: [`Gate::receive`](hookgate::Gate::receive) /
//!   [`Gate::verify_only`](hookgate::Gate::verify_only) called directly;
//! - **tower**: `hookgate_tower::GateLayer` around a service, served by hyper on 127.0.0.1;
//! - **actix**: `hookgate_actix::WebhookGate` around an actix-web app, served by actix-web's
//!   `HttpServer` on 127.0.0.1;
//! - for verify-only cases, the extractors alone as well: **actix-extractor**
//!   (`hookgate_actix::VerifiedWebhook` with a `WebhookConfig` in `app_data`) and
//!   **axum-extractor** (`hookgate_tower::VerifiedWebhook` with the gate as axum state; not for
//!   cases with a public origin, which that extractor does not take).
//!
//! The HTTP adapters are driven over real TCP by a small raw HTTP/1.1 client, so the cases
//! control the framing (`Content-Length`, `Transfer-Encoding: chunked`, a length announced
//! but never sent). Each case gives the same requests to each adapter, with a fresh gate,
//! sink and dedup store, and checks that every adapter answers the same status, the same
//! code (the response body) and the same `Retry-After`, and that the same number of events
//! reaches the sink (gate mode) or the handler (verify-only mode). A difference between
//! adapters is a bug in one of them.
//!
//! The table (in `tests/harness/cases.rs`) covers each row of the Gate contract, bodies at
//! and over the limit (declared and streamed, chunked included), duplicate, concurrent and
//! in-flight deliveries, key rotation, verify-only mode, and every provider vector in
//! `shared/vectors/provider-vectors.json` (valid or not; URL-signing schemes through a
//! public origin). Run it with `cargo test -p hookgate-conformance`.
