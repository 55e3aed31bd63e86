//! An actix-web webhook receiver in gate mode: the middleware verifies each delivery, stores
//! it in the durable inbox (or an in-memory channel) and answers the sender; a worker then
//! prints every event as one JSON line on stdout. The actix twin of `examples/axum-receiver`:
//! same settings, same route, same output.
//!
//! # Run it
//!
//! ```text
//! cargo run -p actix-receiver
//! ```
//!
//! It prints `listening on 127.0.0.1:3001` once it accepts deliveries at `POST /webhooks`.
//! Settings, all optional, from the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HOOKGATE_LISTEN` | `127.0.0.1:3001` | the address to listen on (port 0: any free port, printed) |
//! | `HOOKGATE_SCHEME` | `standard-webhooks-v1` | the sender's scheme (`cargo run -p hookgate-cli -- schemes` lists them) |
//! | `HOOKGATE_SECRET` | `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw` | one or more keys separated by spaces (rotation: old and new); the default is a well-known **test** secret |
//! | `HOOKGATE_SINK` | `inbox` | `inbox`: the durable SQLite inbox, whose 200 means "on disk"; `memory`: a bounded channel, lost if the process stops |
//! | `HOOKGATE_DATA` | `./hookgate-data` | the inbox's directory (`inbox.db` inside) |
//! | `HOOKGATE_PUBLIC_ORIGIN` | none | for URL-signing schemes (twilio, square): the public origin the sender calls, e.g. `https://hooks.example.com` |
//!
//! # Send it a signed delivery
//!
//! With the default scheme and secret, sign a body with the hookgate CLI and post it with
//! curl (`--data-binary` keeps the bytes exactly as signed):
//!
//! ```text
//! BODY='{"type":"invoice.paid","id":"in_1"}'
//! printf '%s' "$BODY" | cargo run -q -p hookgate-cli -- sign --scheme standard-webhooks-v1 \
//!     --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --id msg_1 > /tmp/headers.txt
//! curl -si http://127.0.0.1:3001/webhooks -H @/tmp/headers.txt --data-binary "$BODY"
//! ```
//!
//! The answer is `200 accepted`, and the event appears on stdout as a JSON line. Send the
//! same command again: `200 duplicate`, and nothing is printed. Change one byte of the body:
//! `401 signature_mismatch`. Stop the receiver with Ctrl-C: actix-web finishes the requests
//! in progress, then the inbox worker finishes what it is doing; events not yet printed are
//! printed at the next start.

use std::error::Error;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use actix_web::{App, HttpResponse, HttpServer, web};
use hookgate::{ChannelSink, Gate, SchemeId, VerifiedEvent, Verifier};
use hookgate_actix::WebhookGate;
use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Worker};
use serde_json::{Value, json};

/// The documented test secret used when `HOOKGATE_SECRET` is not set.
const DEFAULT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where verified events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkKind {
    Inbox,
    Memory,
}

/// The settings read from the environment.
#[derive(Debug)]
struct Config {
    listen: SocketAddr,
    scheme: SchemeId,
    secrets: Vec<String>,
    sink: SinkKind,
    data: PathBuf,
    public_origin: Option<String>,
}

impl Config {
    fn from_env() -> Result<Config, Box<dyn Error>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let listen = var("HOOKGATE_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:3001".to_owned())
            .parse()
            .map_err(|e| format!("HOOKGATE_LISTEN: {e}"))?;
        let scheme = var("HOOKGATE_SCHEME")
            .unwrap_or_else(|| "standard-webhooks-v1".to_owned())
            .parse()
            .map_err(|e| format!("HOOKGATE_SCHEME: {e}"))?;
        let secrets = var("HOOKGATE_SECRET")
            .unwrap_or_else(|| DEFAULT_SECRET.to_owned())
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let sink = match var("HOOKGATE_SINK").as_deref() {
            None | Some("inbox") => SinkKind::Inbox,
            Some("memory") => SinkKind::Memory,
            Some(other) => {
                return Err(format!("HOOKGATE_SINK: {other:?} is neither inbox nor memory").into());
            }
        };
        let data =
            var("HOOKGATE_DATA").map_or_else(|| PathBuf::from("./hookgate-data"), PathBuf::from);
        Ok(Config {
            listen,
            scheme,
            secrets,
            sink,
            data,
            public_origin: var("HOOKGATE_PUBLIC_ORIGIN"),
        })
    }

    fn verifier(&self) -> Result<Verifier, Box<dyn Error>> {
        let mut builder = Verifier::builder(self.scheme);
        for secret in &self.secrets {
            builder = builder.secret(secret.as_str());
        }
        // URL-signing schemes get the URL per request, from HOOKGATE_PUBLIC_ORIGIN.
        Ok(builder.build_with_url_per_request()?)
    }

    /// The middleware, its options checked here so that a bad one is reported by name
    /// (actix-web would refuse to start with it anyway).
    fn middleware(&self, gate: Gate) -> Result<WebhookGate, Box<dyn Error>> {
        let middleware = WebhookGate::new(gate);
        let middleware = match &self.public_origin {
            Some(origin) => middleware.public_origin(origin),
            None => middleware,
        };
        if let Some(error) = middleware.config().error() {
            return Err(format!("HOOKGATE_PUBLIC_ORIGIN: {error}").into());
        }
        Ok(middleware)
    }
}

#[actix_web::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("actix-receiver: {error}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let config = Config::from_env()?;
    let verifier = config.verifier()?;
    match config.sink {
        SinkKind::Inbox => {
            std::fs::create_dir_all(&config.data)
                .map_err(|e| format!("HOOKGATE_DATA {}: {e}", config.data.display()))?;
            let inbox = Inbox::open(config.data.join("inbox.db"))?;
            let gate = inbox.gate(verifier).build()?;
            let worker = Worker::builder(inbox, |event: InboxEvent| async move {
                print_line(&json!({
                    "dedup_key": event.dedup_key(),
                    "scheme": event.scheme(),
                    "delivery_id": event.delivery_id(),
                    "event_type": event.event_type(),
                    "body": body_value(event.body()),
                }));
                HandlerResult::Ok
            })
            .start()?;
            serve(&config, config.middleware(gate)?).await?;
            worker.shutdown().await;
        }
        SinkKind::Memory => {
            let (sink, mut events) = ChannelSink::bounded(1024);
            let gate = Gate::builder(verifier).sink(sink).build()?;
            actix_web::rt::spawn(async move {
                while let Some(event) = events.recv().await {
                    print_event(&event);
                }
            });
            serve(&config, config.middleware(gate)?).await?;
        }
    }
    Ok(())
}

/// Serves `POST /webhooks` behind the middleware, which answers every delivery itself, until
/// Ctrl-C (actix-web stops gracefully on SIGINT and SIGTERM).
async fn serve(config: &Config, middleware: WebhookGate) -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new().service(
            web::resource("/webhooks").route(
                web::post()
                    .to(HttpResponse::Ok) // never reached: the middleware answers
                    .wrap(middleware.clone()),
            ),
        )
    })
    .listen(listener)?
    .run();
    print_text(&format!("listening on {addr}"));
    server.await?;
    Ok(())
}

fn print_event(event: &VerifiedEvent) {
    print_line(&json!({
        "dedup_key": event.dedup_key(),
        "scheme": event.scheme(),
        "delivery_id": event.delivery_id(),
        "event_type": event.event_type(),
        "body": body_value(event.body()),
    }));
}

/// The body as JSON when it is JSON, else as (lossy) text.
fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn print_line(value: &Value) {
    print_text(&value.to_string());
}

/// One line on stdout, flushed at once (stdout may be a pipe).
fn print_text(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
