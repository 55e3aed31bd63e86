//! # hookgate-actix
//!
//! [actix-web] 4 adapter for [`hookgate`]: a middleware and extractors that put a
//! [`Gate`](hookgate::Gate) in front of your webhook routes. It behaves exactly like the
//! tower/axum adapter (`hookgate-tower`): the same gate decides, so the same delivery gets the
//! same status, the same code and reaches the sink the same number of times, which the
//! workspace's conformance tests check over real HTTP.
//!
//! | item | what it does |
//! |---|---|
//! | [`WebhookGate::new`] | middleware, **gate mode**: verify, deduplicate, hand off to the sink, answer the sender (`200 accepted` only once the sink has the event) |
//! | [`WebhookGate::verify_only`] | middleware, **verify-only mode**: verify, then call your handler with the event in the request extensions and the raw body put back |
//! | [`VerifiedWebhook`] | extractor: the [`VerifiedEvent`](hookgate::VerifiedEvent), from the middleware or verified on the spot with the gate in `app_data` |
//! | [`VerifiedJson<T>`] | extractor: the same, with the body deserialised as `T` (bounded nesting) |
//! | [`WebhookConfig`] | what the extractors read from `app_data`: the gate and a public origin |
//! | [`WebhookError`] | every answer that is not "here is your event", as a [`ResponseError`](actix_web::ResponseError) |
//! | [`ActixHeaders`] | actix-web's header map as [`hookgate::Headers`], for calling a verifier yourself |
//!
//! [actix-web]: https://actix.rs
//!
//! ## Quick start: gate mode
//!
//! Build the gate **once**, outside `HttpServer::new`, and clone it into each worker: every
//! worker must share the same dedup store and sink.
//!
//! ```no_run
//! use actix_web::{App, HttpResponse, HttpServer, web};
//! use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
//! use hookgate_actix::WebhookGate;
//!
//! #[actix_web::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let verifier = Verifier::builder(SchemeId::Stripe).secret("whsec_...").build()?;
//!     let (sink, mut events) = ChannelSink::bounded(1024);
//!     let gate = Gate::builder(verifier).sink(sink).build()?;
//!
//!     // Process events off the request path.
//!     actix_web::rt::spawn(async move {
//!         while let Some(event) = events.recv().await {
//!             println!("{} {:?}", event.dedup_key(), event.event_type());
//!         }
//!     });
//!
//!     HttpServer::new(move || {
//!         App::new().service(
//!             web::resource("/webhooks")
//!                 .wrap(WebhookGate::new(gate.clone()))
//!                 .to(HttpResponse::Ok), // never reached: the gate answers
//!         )
//!     })
//!     .bind(("127.0.0.1", 3001))?
//!     .run()
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! ## Verify-only mode and the extractors
//!
//! To process the delivery in the handler itself, use [`WebhookGate::verify_only`] and take
//! the event with [`VerifiedWebhook`] or [`VerifiedJson`]; or skip the middleware and put a
//! [`WebhookConfig`] in `app_data`, and the extractor verifies on its own. Either way, the
//! handler only runs for an authentic, fresh delivery, and what it answers is what the sender
//! gets — so answer 2xx only once the event is safe.
//!
//! ## What the sender gets
//!
//! The gate's [status and code table](hookgate::gate#status-and-code-table) applies as is:
//! the body is the code alone (`text/plain`), a 503 carries `Retry-After`, and the
//! [`Outcome`](hookgate::Outcome) is put in the response extensions for logging middleware.
//! Like the tower adapter, this one adds `400 body_unreadable` (the body stream failed) and,
//! from [`VerifiedJson`], `400 invalid_json`, `400 json_too_deep` and `422 unexpected_json`;
//! and `500 not_configured` when an extractor finds no configuration.
//!
//! ## URL-signing schemes
//!
//! Twilio and Square sign the public URL they called. Behind a proxy the server cannot know
//! it, so configure the public origin: [`WebhookGate::public_origin`] /
//! [`WebhookConfig::public_origin`] (`https://hooks.example.com`), to which the request's path
//! and query are appended exactly as received; build the verifier with
//! [`build_with_url_per_request`](hookgate::VerifierBuilder::build_with_url_per_request).
//!
//! ## Security properties
//!
//! - **Raw bytes.** The body is read from the payload stream as received, never through
//!   actix-web's `Bytes` or `Json` extractors, which may decompress or decode it: the signature
//!   is checked over exactly what the sender signed.
//! - **Bounded memory.** `Content-Length` above the gate's
//!   [`max_body_bytes`](hookgate::Gate::max_body_bytes) is refused before reading; a streamed
//!   or chunked body is counted as it arrives and refused the moment it passes the limit.
//!   Nothing is allocated from a client-announced length.
//! - **No verification here.** Signatures, replay windows and dedup keys are the gate's; this
//!   crate only moves bytes in and outcomes out. Response bodies carry codes, never details.
//! - **No panics.** Configuration errors are reported when the app starts (middleware) or
//!   answered as `500 not_configured` and logged (extractor); statuses and headers cross from
//!   `http` 1 to actix-web's `http` 0.2 without unwrapping.

mod body;
mod config;
mod error;
mod extract;
mod headers;
mod middleware;
mod receive;

pub use config::{ConfigError, WebhookConfig};
pub use error::{WebhookError, WebhookErrorKind};
pub use extract::{MAX_JSON_DEPTH, VerifiedJson, VerifiedWebhook};
pub use headers::ActixHeaders;
pub use middleware::{WebhookGate, WebhookGateService};
