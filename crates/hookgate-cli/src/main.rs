//! The `hookgate` command: run a durable webhook receiver (`serve`), consume a fleet's queue
//! (`work`) and replay its dead letters (`dead-letters`), send signed deliveries to an endpoint (`send`), audit any receiver's security
//! (`audit`), inspect the event log and dead letters (`inbox`), verify a captured delivery
//! and say why it fails (`verify`), sign one as a provider would (`sign`), and list the
//! schemes hookgate knows (`schemes`).
//!
//! Exit status: 0 valid (or done), 1 invalid delivery (or failed deliveries, failed audit
//! checks), 2 usage or configuration error (the message on stderr). Secrets and expected
//! signatures are never printed.

mod audit;
mod client;
mod console;
mod dead_letters;
mod destination;
mod duration;
mod error;
mod hint;
mod inbox;
mod input;
mod log_view;
mod logging;
mod outgoing;
mod process;
mod send;
mod serve;
mod sign;
mod verify;
mod work;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate::SchemeId;

/// Receive webhooks safely, send and audit them, for every provider hookgate knows.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a delivery's signature and freshness, and say why it fails.
    ///
    /// The first line is `valid (key N)`, N being the position of the matching key from 0,
    /// or `invalid: REASON` with a reason code such as signature_mismatch. On success the
    /// dedup key, delivery id, event type and timestamp follow; on failure the header at
    /// fault and a hint. With --json, one JSON object instead.
    ///
    /// The body must be the raw bytes exactly as sent (from --body-file, else stdin).
    /// Exit status: 0 valid, 1 invalid, 2 usage or configuration error. Secrets and
    /// expected signatures are never printed.
    ///
    /// Example (the Standard Webhooks official vector):
    ///
    ///   printf '%s' '{"test": 2432232314}' | hookgate verify \
    ///     --scheme standard-webhooks-v1 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
    ///     -H 'webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek' -H 'webhook-timestamp: 1614265330' \
    ///     -H 'webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' \
    ///     --now 1614265330
    #[command(verbatim_doc_comment)]
    Verify(verify::VerifyArgs),

    /// Print the headers a sender would add to a delivery, one `Name: value` per line.
    ///
    /// Output, on stdout:
    ///   - twilio-body-sha256 only: first a line `# url: URL`, the URL to call (Twilio adds
    ///     bodySHA256 to its query string, and signs that URL); azure-event-grid with --url:
    ///     the same line, the URL with the token in its `code` parameter (as registered in
    ///     Azure; without --url the token goes in `Authorization: Bearer`);
    ///   - the headers, one `Name: value` per line;
    ///   - mailgun, figma, microsoft-graph and braintree: the signature (or token) lives in
    ///     the body, so a blank line follows the headers, then the body to send — mailgun: a
    ///     JSON object wrapping the given body as event-data; figma: the passcode added;
    ///     microsoft-graph: the clientState added to every notification of `value` (a single
    ///     notification is wrapped in a batch); braintree: the form bt_signature, bt_payload
    ///     with the given body (the notification XML) as base64 — unless --out-body FILE is
    ///     given, which receives it instead.
    ///
    /// gitlab-token "signs" by sending the token itself: its header carries the secret (and
    /// azure-event-grid's URL or Authorization header carries its token).
    ///
    /// Example:
    ///
    ///   printf '%s' '{"id":"evt_1"}' | hookgate sign --scheme stripe \
    ///     --secret whsec_test_secret --timestamp 1700000000
    #[command(verbatim_doc_comment)]
    Sign(sign::SignArgs),

    /// List the scheme ids with a one-line description each.
    Schemes,

    /// Run a webhook receiver in front of any application: verify, deduplicate, store
    /// durably, then forward, pipe or print each event, with retries and dead letters.
    ///
    /// With no --secret and no --config, the first start generates a Standard Webhooks
    /// secret, keeps it in the data directory and prints it: the receiver works with no
    /// set-up. `listening on ADDR` is printed once the socket is bound (the actual address,
    /// so `--listen 127.0.0.1:0` picks a free port).
    ///
    /// Endpoints answer 2xx only once the event is committed to the SQLite inbox in the
    /// data directory; GET /healthz answers `ok`, GET /metrics the Prometheus metrics.
    /// --console adds the web console (event log, dead letters with replay, activity)
    /// under /_hookgate/, behind a token printed at start.
    /// SIGTERM or Ctrl-C stops taking requests, lets running handlers finish and exits.
    /// Rejections, retries and dead letters are logged on stderr; HOOKGATE_LOG sets the
    /// filter (default info; e.g. warn, or hookgate_queue=debug,info).
    ///
    /// Example:
    ///
    ///   hookgate serve --forward http://127.0.0.1:3000/events
    ///
    /// A fleet of replicas behind one load balancer shares its dedup store in Redis
    /// (--dedup) and hands events to a queue that consumers on other machines read
    /// (--queue, a Redis stream or a NATS JetStream stream). A --queue endpoint processes
    /// nothing itself: no local worker, so no --forward or --exec.
    ///
    ///   hookgate serve --dedup 'redis://10.0.0.5:6379/?prefix=hookgate:dedup:' \
    ///     --queue 'redis://10.0.0.5:6379/?stream=webhooks'
    ///   hookgate serve --queue 'nats://10.0.0.7:4222/?stream=WEBHOOKS&subject=webhooks.in'
    ///
    /// A config file (--config hookgate.toml) declares several endpoints:
    ///
    ///   listen = "0.0.0.0:8787"              # optional; --listen wins
    ///   data_dir = "/var/lib/hookgate"       # optional; --data-dir wins
    ///   header_timeout = "30s"               # optional; slower request heads: closed
    ///   body_timeout = "10s"                 # optional; a trickled body gets 408
    ///   max_connections = 512                # optional; beyond: 503 over_capacity
    ///   max_in_flight = 256                  # optional; requests at once, beyond: 503
    ///   [tls]                                # optional; --tls-cert/--tls-key win
    ///   cert = "cert.pem"
    ///   key = "key.pem"
    ///
    ///   [[endpoint]]
    ///   name = "stripe"                      # names its inbox: inbox-stripe.db
    ///   path = "/webhooks/stripe"
    ///   scheme = "stripe"
    ///   tolerance = 300                      # seconds; optional
    ///   max_body = 1048576                   # bytes; optional
    ///   forward = "http://127.0.0.1:3000/stripe"   # or exec = "CMD", or queue = "URL"
    ///                                        #   (redis:// or nats://); none: print
    ///   dedup = "redis://10.0.0.5:6379/"     # optional: shared dedup store
    ///   dedup_fail_open = false              # optional: accept while Redis is down
    ///   keys = [
    ///     { secret_env = "STRIPE_SECRET" },  # or secret = "...", secret_file = "..."
    ///     { secret_env = "STRIPE_OLD", not_after = "2025-07-01T00:00:00Z" },
    ///   ]
    ///   retry = { max_attempts = 12, base = "1s", cap = "1h" }   # optional
    #[command(verbatim_doc_comment)]
    Serve(Box<serve::ServeArgs>),

    /// Consume a fleet's queue (a Redis stream or a JetStream stream that `hookgate serve
    /// --queue` fills) and forward, pipe or print each event, with retries and dead letters:
    /// processing for an application in any language.
    ///
    /// Each event is handled as by `serve`'s own worker: the same JSON envelope and
    /// Idempotency-Key header, at least once, exponential backoff with full jitter, then a
    /// dead letter (`<stream>:dead` in Redis, `<stream>_DEAD` in JetStream). Several `work`
    /// processes share one queue; the events of one that dies are taken over by another
    /// after --lease. SIGTERM or Ctrl-C finishes the events in progress, or gives them back.
    /// Retries and dead letters are logged on stderr (HOOKGATE_LOG, as for serve).
    ///
    /// Examples:
    ///
    ///   hookgate work --queue 'redis://10.0.0.5:6379/?stream=webhooks' \
    ///     --forward http://127.0.0.1:3000/events --workers 16
    ///   hookgate work --queue 'nats://10.0.0.7:4222/?stream=WEBHOOKS&subject=webhooks.in' \
    ///     --exec './handle-event.py' --listen 127.0.0.1:9090
    #[command(verbatim_doc_comment)]
    Work(Box<work::WorkArgs>),

    /// List the dead letters of a queue that `hookgate work` consumes, or put them back on
    /// the queue (--replay) once the cause is fixed.
    ///
    /// Examples:
    ///
    ///   hookgate dead-letters --queue 'redis://10.0.0.5:6379/?stream=webhooks'
    ///   hookgate dead-letters --queue 'redis://10.0.0.5:6379/?stream=webhooks' --replay
    #[command(verbatim_doc_comment)]
    DeadLetters(dead_letters::DeadLettersArgs),

    /// Sign deliveries as a provider would and POST them to an endpoint, retrying non-2xx
    /// answers on a provider's schedule; prints each attempt and a summary.
    ///
    /// Exit status: 0 when every delivery got a 2xx, 1 when some did not, 2 usage error.
    ///
    /// Example:
    ///
    ///   hookgate send http://127.0.0.1:8787/webhooks --secret whsec_... --count 100 \
    ///     --concurrency 8
    #[command(verbatim_doc_comment)]
    Send(send::SendArgs),

    /// Send a battery of forged, replayed and malformed deliveries to a receiver written in
    /// any language and say what it gets wrong.
    ///
    /// Each check prints what was expected, what was observed, PASS/FAIL (or WARN, UNKNOWN
    /// where an outside observer cannot tell, N/A where the scheme makes it moot) and why
    /// it matters. Exit status: 0 when nothing failed, 1 when the endpoint accepts anything
    /// forged, replayed or oversized (or rejects a valid delivery), 2 usage error.
    ///
    /// Example:
    ///
    ///   hookgate audit https://hooks.example.com/stripe --scheme stripe \
    ///     --secret whsec_... --report audit.md
    #[command(verbatim_doc_comment)]
    Audit(audit::AuditArgs),

    /// Inspect the receiver's event log and dead letters, and replay events.
    Inbox(inbox::InboxArgs),

    /// Pause or resume deliveries to one destination of an endpoint, while `hookgate
    /// serve` keeps receiving (and runs, in another process, or not).
    ///
    /// Example:
    ///
    ///   hookgate destination pause billing --endpoint stripe --data-dir ./hookgate-data
    #[command(verbatim_doc_comment)]
    Destination(destination::DestinationArgs),

    /// Serve the web console over a data directory's inboxes, without a receiver: the
    /// event list with filters, event details, dead letters with replay, the activity chart,
    /// and a JSON API, behind the console token. (`hookgate serve --console` serves the
    /// same next to the receiver.)
    ///
    /// Example:
    ///
    ///   hookgate console --data-dir ./hookgate-data --listen 127.0.0.1:8788
    #[command(verbatim_doc_comment)]
    Console(console::command::ConsoleArgs),
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    stdout: Vec<u8>,
    status: Status,
}

impl Output {
    pub(crate) fn new(stdout: impl Into<Vec<u8>>, status: Status) -> Self {
        Output {
            stdout: stdout.into(),
            status,
        }
    }

    /// What it prints, as text.
    pub(crate) fn into_text(self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// How a command ended, besides usage and configuration errors (exit status 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Exit status 0: done, or the delivery is valid.
    Success,
    /// Exit status 1: the delivery is invalid (or deliveries failed, checks failed).
    Invalid,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => verify::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Schemes => Ok(schemes()),
        Command::Serve(args) => logging::init().and_then(|()| run_async(serve::run(*args))),
        Command::Work(args) => logging::init().and_then(|()| run_async(work::run(*args))),
        Command::DeadLetters(args) => run_async(dead_letters::run(args)),
        Command::Send(args) => run_async(send::run(args)),
        Command::Audit(args) => run_async(audit::run(args)),
        Command::Inbox(args) => run_async(inbox::run(args)),
        Command::Destination(args) => run_async(destination::run(args)),
        Command::Console(args) => {
            logging::init().and_then(|()| run_async(console::command::run(args)))
        }
    };
    match result {
        Ok(output) => {
            // A closed stdout (`| head -1`) is not an error of the delivery: keep the status.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(&output.stdout)
                .and_then(|()| stdout.flush());
            match output.status {
                Status::Success => ExitCode::SUCCESS,
                Status::Invalid => ExitCode::from(1),
            }
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "hookgate: error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs an async command on a multi-threaded Tokio runtime.
fn run_async(
    command: impl std::future::Future<Output = Result<Output, error::CliError>>,
) -> Result<Output, error::CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| error::CliError::new(format!("cannot start the async runtime: {e}")))?
        .block_on(command)
}

/// Writes one line on stdout at once (long-running commands report as they go). A closed
/// stdout is ignored, as for the buffered output.
pub(crate) fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// `hookgate schemes`: every id with its description.
fn schemes() -> Output {
    let width = SchemeId::ALL
        .iter()
        .map(|id| id.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for id in SchemeId::ALL {
        out.push_str(&format!("{:<width$}  {}\n", id.as_str(), id.description()));
    }
    Output::new(out, Status::Success)
}

/// Parses `--scheme`.
pub(crate) fn parse_scheme(text: &str) -> Result<SchemeId, String> {
    text.parse()
        .map_err(|_| "unknown scheme; run `hookgate schemes` for the list".to_owned())
}

/// A remark on stderr that does not change the outcome.
pub(crate) fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "hookgate: note: {message}");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn schemes_lists_every_id_once() {
        let text = String::from_utf8(schemes().stdout).unwrap();
        assert_eq!(text.lines().count(), SchemeId::ALL.len());
        for id in SchemeId::ALL {
            assert!(
                text.lines()
                    .any(|l| l.split_whitespace().next() == Some(id.as_str()))
            );
        }
    }
}
