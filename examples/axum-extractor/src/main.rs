//! Verifying webhooks inside an axum handler: the [`VerifiedJson`] extractor checks the
//! signature over the raw body with the gate held in the router state, and only then
//! deserializes the JSON. The handler answers the sender itself (verify-only mode: nothing
//! is queued; do the work before answering 2xx, and be idempotent on the dedup key, since
//! senders retry).
//!
//! # Run it
//!
//! ```text
//! cargo run -p axum-extractor
//! ```
//!
//! It prints `listening on 127.0.0.1:3000` once it accepts deliveries at `POST /webhooks`,
//! then one JSON line per verified delivery. Settings, all optional, from the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOOKGATE_LISTEN` | `127.0.0.1:3000` | the address to listen on (port 0: any free port, printed) |
//! | `HOOKGATE_SCHEME` | `standard-webhooks-v1` | the sender's scheme (`cargo run -p hookgate-cli -- schemes` lists them) |
//! | `HOOKGATE_SECRET` | `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw` | one or more keys separated by spaces; the default is a well-known **test** secret |
//! | `HOOKGATE_URL` | none | for URL-signing schemes (twilio, square): the exact public URL the sender calls |
//!
//! # Send it a signed delivery
//!
//! ```text
//! BODY='{"type":"invoice.paid","id":"in_1"}'
//! printf '%s' "$BODY" | cargo run -q -p hookgate-cli -- sign --scheme standard-webhooks-v1 \
//!     --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --id msg_1 > /tmp/headers.txt
//! curl -si http://127.0.0.1:3000/webhooks -H @/tmp/headers.txt --data-binary "$BODY"
//! ```
//!
//! The answer is `200 {"status":"processed"}` and the event is printed. Change a byte of
//! the body: `401 signature_mismatch`, and the handler never runs. A body that verifies but
//! is not JSON: `400 invalid_json`.

use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use hookgate::{Gate, SchemeId, Verifier};
use hookgate_tower::VerifiedJson;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The documented test secret used when `HOOKGATE_SECRET` is not set.
const DEFAULT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Runs only for a delivery whose signature, timestamp and JSON all checked out.
async fn webhook(VerifiedJson(payload, event): VerifiedJson<Value>) -> Json<Value> {
    // Real work goes here, keyed on `event.dedup_key()` so that a retry is harmless.
    print_line(&json!({
        "dedup_key": event.dedup_key(),
        "scheme": event.scheme(),
        "delivery_id": event.delivery_id(),
        "event_type": event.event_type(),
        "payload": payload,
    }));
    Json(json!({ "status": "processed" }))
}

/// The app: the gate is the router's state, where the extractor finds it.
fn router(gate: Gate) -> Router {
    Router::new()
        .route("/webhooks", post(webhook))
        .with_state(gate)
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("axum-extractor: {error}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let listen: SocketAddr = var("HOOKGATE_LISTEN")
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|e| format!("HOOKGATE_LISTEN: {e}"))?;
    let scheme: SchemeId = var("HOOKGATE_SCHEME")
        .unwrap_or_else(|| "standard-webhooks-v1".to_owned())
        .parse()
        .map_err(|e| format!("HOOKGATE_SCHEME: {e}"))?;
    let secrets = var("HOOKGATE_SECRET").unwrap_or_else(|| DEFAULT_SECRET.to_owned());

    let mut verifier = Verifier::builder(scheme);
    for secret in secrets.split_whitespace() {
        verifier = verifier.secret(secret);
    }
    if let Some(url) = var("HOOKGATE_URL") {
        verifier = verifier.url(url);
    }
    let gate = Gate::builder(verifier.build()?).build_verify_only()?;

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    print_line(&Value::String(format!(
        "listening on {}",
        listener.local_addr()?
    )));
    axum::serve(listener, router(gate))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// One line on stdout, flushed at once (stdout may be a pipe). Strings are printed as
/// they are, other values as JSON.
fn print_line(value: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = match value {
        Value::String(text) => writeln!(stdout, "{text}"),
        other => writeln!(stdout, "{other}"),
    };
    let _ = stdout.flush();
}
