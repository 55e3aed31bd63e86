//! `hookgate audit`: send a battery of genuine, forged, replayed and oversized deliveries to
//! a receiver written in any language, and say what it gets wrong.
//!
//! Which checks apply is derived from the scheme, not listed per provider: timestamp checks
//! where the scheme signs a timestamp ([`SchemeId::default_tolerance`]), the re-signed copy
//! where hookgate's own verifier derives the same dedup key from both copies (a signed id),
//! and every forgery only where hookgate's own verifier rejects it — a "forgery" the scheme
//! itself cannot tell apart (Mailgun's unsigned event data, GitLab's token) is reported as
//! not applicable, with the reason.

mod forge;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use hookgate::SchemeId;
use hookgate::gate::DEFAULT_MAX_BODY_BYTES;
use serde::Serialize;

use crate::client::{HttpClient, NoReply, Reply, parse_url};
use crate::duration::{human, parse_duration, unix_now};
use crate::error::CliError;
use crate::input;
use crate::outgoing::{Outgoing, Target};
use crate::{Output, Status};
use forge::Forge;

/// Arguments of `hookgate audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// The endpoint to audit, e.g. https://hooks.example.com/stripe.
    url: String,

    /// The scheme the endpoint verifies (list: `hookgate schemes`). Default:
    /// standard-webhooks-v1.
    #[arg(
        long,
        value_name = "ID",
        value_parser = crate::parse_scheme,
        default_value = "standard-webhooks-v1"
    )]
    scheme: SchemeId,

    /// The key the provider signs with (the endpoint's secret; for an asymmetric scheme the
    /// private key whose public half the endpoint holds).
    #[arg(
        long,
        value_name = "KEY",
        env = "HOOKGATE_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    secret: String,

    /// The body limit the endpoint states; the check sends a correctly signed body 1 KiB
    /// over it and expects 413.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body: usize,

    /// The endpoint's timestamp window in seconds (default: the scheme's own). The stale
    /// and future deliveries are stamped twice the window plus a minute away.
    #[arg(long, value_name = "SECONDS")]
    tolerance: Option<u64>,

    /// The public URL a URL-signing scheme (twilio, square) signs, when it differs from the
    /// URL called. Default: the URL.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,

    /// An extra header for every request as 'Name: value' (repeatable), e.g. to pass an
    /// access gate in front of the endpoint.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Trust the CA certificates in this PEM file, besides the system's.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,

    /// How long to wait for each answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15s")]
    timeout: Duration,

    /// Also write the report to this file: Markdown, or JSON when the name ends in .json.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// The endpoint did what it must.
    Pass,
    /// The endpoint accepted something forged, replayed or oversized, or rejected a
    /// genuine delivery.
    Fail,
    /// Not a hole, but worth fixing.
    Warn,
    /// An outside observer cannot tell; the report says what to check on the receiver.
    Unknown,
    /// The check does not apply to this scheme (the reason is given).
    NotApplicable,
}

impl Verdict {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Warn => "WARN",
            Verdict::Unknown => "UNKNOWN",
            Verdict::NotApplicable => "N/A",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) verdict: Verdict,
    pub(crate) expected: String,
    pub(crate) observed: String,
    /// Why it matters, in one line.
    pub(crate) why: &'static str,
    /// What to check on the receiver's side, or why the check does not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

/// The whole audit.
#[derive(Debug, Serialize)]
pub(crate) struct Audit {
    pub(crate) url: String,
    pub(crate) scheme: &'static str,
    pub(crate) started_at: String,
    pub(crate) tool: &'static str,
    pub(crate) checks: Vec<Check>,
}

impl Audit {
    pub(crate) fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }

    pub(crate) fn failed(&self) -> bool {
        self.count(Verdict::Fail) > 0
    }
}

/// What came back for one request.
type Answer = Result<Reply, NoReply>;

/// Runs `hookgate audit`.
///
/// # Errors
/// A usage or configuration problem; failed checks are an `Ok` with [`Status::Invalid`].
pub(crate) async fn run(args: AuditArgs) -> Result<Output, CliError> {
    let uri = parse_url(&args.url, "the URL")?;
    if args.max_body == 0 {
        return Err(CliError::new("--max-body must be at least 1"));
    }
    if args.tolerance == Some(0) {
        return Err(CliError::new("--tolerance must be at least 1"));
    }
    if args.tolerance.is_some() && !args.scheme.has_timestamp() {
        crate::note(&format!(
            "{} signs no timestamp: --tolerance is ignored",
            args.scheme
        ));
    }
    let extra_headers = input::collect_headers(None, &args.headers)?;
    let target = Target {
        uri,
        public_url: args.public_url.clone().unwrap_or_else(|| args.url.clone()),
        method: http::Method::POST,
    };
    let forge = Forge::new(
        args.scheme,
        &args.secret,
        target,
        extra_headers,
        args.tolerance.map(Duration::from_secs),
    )?;
    let client = HttpClient::new(args.ca_cert.as_deref(), args.timeout, 2)?;
    let started_at = crate::duration::rfc3339(std::time::SystemTime::now());
    let checks = battery(&forge, &client, args.max_body).await?;
    let audit = Audit {
        url: args.url.clone(),
        scheme: args.scheme.as_str(),
        started_at,
        tool: concat!("hookgate ", env!("CARGO_PKG_VERSION")),
        checks,
    };
    if let Some(path) = &args.report {
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let text = if json {
            report::json(&audit)
        } else {
            report::markdown(&audit)
        };
        std::fs::write(path, text).map_err(|e| {
            CliError::new(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
    }
    let out = if args.json {
        report::json(&audit)
    } else {
        report::text(&audit)
    };
    let status = if audit.failed() {
        Status::Invalid
    } else {
        Status::Success
    };
    Ok(Output::new(out, status))
}

/// Runs every check, in an order that keeps the replays close to the delivery they copy.
async fn battery(
    forge: &Forge,
    client: &HttpClient,
    max_body: usize,
) -> Result<Vec<Check>, CliError> {
    let scheme = forge.scheme;
    let send = |request: Outgoing| async move {
        client
            .send(
                request.method.clone(),
                &request.uri,
                &request.headers,
                request.body,
            )
            .await
    };
    let mut checks = Vec::new();

    // 1. A genuine delivery.
    let start = unix_now().saturating_sub(1);
    let valid_body = forge.body("valid", start, 0);
    let valid = forge.sign_body(None, "valid", valid_body.clone(), start)?;
    let reference = forge.reference(&valid).map_err(|rejection| {
        CliError::new(format!(
            "the audit's own delivery does not verify with this key ({}): check --secret \
             and --scheme",
            rejection.code()
        ))
    })?;
    let first = send(valid.clone()).await;
    let accepted = matches!(&first, Ok(reply) if is_success(reply.status));
    checks.push(valid_check(&first));

    // 2. The exact same request again.
    let replay_why = "Senders retry whenever they miss your 2xx (a timeout, a lost \
                      connection): a receiver that processes every copy charges, ships or \
                      emails twice.";
    if accepted {
        let again = send(valid.clone()).await;
        checks.push(duplicate_check(
            "replay",
            "exact replay of an accepted delivery",
            replay_why,
            &first,
            &again,
            forge.id("valid"),
        ));
    } else {
        checks.push(not_applicable(
            "replay",
            "exact replay of an accepted delivery",
            replay_why,
            "the genuine delivery was not accepted, so there is nothing to replay",
        ));
    }

    // 3. The same delivery id, re-signed with a new timestamp.
    let resigned_why = "Providers sign every retry afresh with a new timestamp: deduplicating \
                        on the signature or the raw request misses these copies; dedupe on \
                        the signed delivery id.";
    let resigned_title = "same id re-signed with a new timestamp";
    if !scheme.has_timestamp() {
        checks.push(not_applicable(
            "resigned",
            resigned_title,
            resigned_why,
            &format!(
                "{scheme} signs no timestamp: a retry is byte for byte the exact replay above"
            ),
        ));
    } else {
        let later = unix_now().max(start.saturating_add(1));
        let resigned = forge.sign_body(None, "valid", valid_body, later)?;
        match forge.reference(&resigned) {
            Ok(copy) if copy.dedup_key() == reference.dedup_key() => {
                if accepted {
                    let answer = send(resigned).await;
                    checks.push(duplicate_check(
                        "resigned",
                        resigned_title,
                        resigned_why,
                        &first,
                        &answer,
                        forge.id("valid"),
                    ));
                } else {
                    checks.push(not_applicable(
                        "resigned",
                        resigned_title,
                        resigned_why,
                        "the genuine delivery was not accepted, so there is nothing to copy",
                    ));
                }
            }
            _ => checks.push(not_applicable(
                "resigned",
                resigned_title,
                resigned_why,
                &format!(
                    "{scheme} signs no delivery id: a copy re-signed with a new timestamp is \
                     a different message to any receiver; only the timestamp window limits \
                     replays"
                ),
            )),
        }
    }

    // 4–10. Forgeries.
    let now = unix_now();
    let base = forge.sign_body(None, "tampered", forge.body("tampered", now, 0), now)?;
    let tampered = forge::tampered(&base);
    checks.push(
        forgery(
            forge,
            &send,
            "tampered-body",
            "tampered body, original signature",
            "The signature must cover the raw body byte for byte: a receiver that checks it \
             over re-serialised JSON, or not at all, accepts edited events.",
            Some(tampered),
            &format!("{scheme} does not authenticate the body: hookgate's verifier accepts it too"),
        )
        .await,
    );

    let wrong = match forge.other_key_signer() {
        Some(signer) => Some(forge.sign_body(
            Some(&signer),
            "wrong-key",
            forge.body("wrong-key", now, 0),
            now,
        )?),
        None => None,
    };
    checks.push(
        forgery(
            forge,
            &send,
            "wrong-key",
            "signed with another key",
            "A receiver that accepts any well-formed signature, or a leftover test key, lets \
             anyone forge events.",
            wrong,
            "no other key of this kind could be made",
        )
        .await,
    );

    let header = scheme.signature_header();
    let no_header = format!("{scheme} carries its signature in the body, not in a header");
    let with_header = |label: &str, value: Option<&dyn Fn(&str) -> String>| {
        let header = header?;
        let mut request = forge
            .sign_body(None, label, forge.body(label, now, 0), now)
            .ok()?;
        let original = request.header(header).unwrap_or_default().to_owned();
        request.set_header(header, value.map(|f| f(&original)));
        Some(request)
    };
    checks.push(
        forgery(
            forge,
            &send,
            "missing-signature",
            "signature header missing",
            "A receiver that skips verification when the header is absent accepts unsigned \
             events from anyone.",
            with_header("missing-signature", None),
            &no_header,
        )
        .await,
    );
    checks.push(
        forgery(
            forge,
            &send,
            "malformed-signature",
            "malformed signature header",
            "A header that does not parse must reject the delivery, not skip the check.",
            with_header(
                "malformed-signature",
                Some(&|_| "hookgate-audit: this is not a signature".to_owned()),
            ),
            &no_header,
        )
        .await,
    );
    let other = forge.other_scheme("other-scheme");
    let other_title = "signature of another scheme";
    let other_why = "Accepting whichever signature header is present lets an attacker pick the \
                     construction (or the key) to forge.";
    match other {
        Some((other_scheme, request)) => {
            let mut check = forgery(
                forge,
                &send,
                "other-scheme",
                other_title,
                other_why,
                Some(request),
                "",
            )
            .await;
            check.expected =
                format!("4xx for a complete {other_scheme} delivery signed with the same key");
            checks.push(check);
        }
        None => checks.push(not_applicable(
            "other-scheme",
            other_title,
            other_why,
            "no other scheme can sign with this kind of key",
        )),
    }
    checks.push(
        forgery(
            forge,
            &send,
            "truncated-signature",
            "truncated signature",
            "A prefix comparison (or a truncated-MAC check) lets an attacker find a signature \
             a few bytes at a time.",
            with_header("truncated-signature", Some(&|v| forge::truncate(v))),
            &no_header,
        )
        .await,
    );
    checks.push(
        forgery(
            forge,
            &send,
            "empty-signature",
            "empty signature",
            "An empty signature against a prefix check, or a loop over zero signatures that \
             ends in 'valid', accepts anything.",
            with_header("empty-signature", Some(&|_| String::new())),
            &no_header,
        )
        .await,
    );

    // 11–12. The timestamp window.
    let no_timestamp = format!(
        "{scheme} signs no timestamp: only remembering deliveries (deduplication) stops replays"
    );
    let offset = forge
        .tolerance
        .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
        .map(|t| t.saturating_mul(2).saturating_add(60));
    let stale = match offset {
        Some(offset) => {
            let at = unix_now().saturating_sub(offset);
            Some(forge.sign_body(None, "stale", forge.body("stale", at, 0), at)?)
        }
        None => None,
    };
    let mut stale_check = forgery_noting(
        forge,
        &send,
        "stale-timestamp",
        "stale timestamp",
        "Without a timestamp window, a delivery captured once (from a log, a proxy) can be \
         replayed forever once the dedup store has forgotten it.",
        stale,
        &no_timestamp,
        "the receiver accepted a delivery signed long ago: a captured delivery can be replayed \
         whenever the dedup store has forgotten it",
    )
    .await;
    if let (Some(offset), Verdict::Pass | Verdict::Fail) = (offset, stale_check.verdict) {
        stale_check.expected = format!("4xx for a timestamp {} old", human_secs(offset));
    }
    checks.push(stale_check);
    let future = match offset {
        Some(offset) => {
            let at = unix_now().saturating_add(offset);
            Some(forge.sign_body(None, "future", forge.body("future", at, 0), at)?)
        }
        None => None,
    };
    let mut future_check = forgery_noting(
        forge,
        &send,
        "future-timestamp",
        "future timestamp",
        "A delivery stamped ahead of the clock stays replayable for longer than the window; \
         hookgate rejects it by default (Stripe's and Paddle's own libraries accept it).",
        future,
        &no_timestamp,
        "the receiver accepted a delivery stamped ahead of its clock",
    )
    .await;
    if future_check.verdict == Verdict::Fail {
        // Only a key holder can stamp the future: a weakness, not a forgery.
        future_check.verdict = Verdict::Warn;
    }
    if let Some(offset) = offset {
        if future_check.verdict != Verdict::NotApplicable {
            future_check.expected = format!("4xx for a timestamp {} ahead", human_secs(offset));
        }
    }
    checks.push(future_check);

    // 13. A body over the stated limit.
    let padding = max_body.saturating_add(1024);
    let now = unix_now();
    let large = forge.sign_body(
        None,
        "body-too-large",
        forge.body("body-too-large", now, padding),
        now,
    )?;
    let size = large.body.len();
    let answer = send(large).await;
    checks.push(body_limit_check(&answer, size, max_body));
    Ok(checks)
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// `401 signature_mismatch (3ms)`, or the error.
fn describe(answer: &Answer) -> String {
    match answer {
        Ok(reply) => {
            let body = reply.body_snippet(60);
            if body.is_empty() {
                format!("{} ({})", reply.status, human(reply.latency))
            } else {
                format!("{} {body} ({})", reply.status, human(reply.latency))
            }
        }
        Err(no_reply) => format!("no answer: {}", no_reply.error),
    }
}

fn human_secs(secs: i64) -> String {
    human(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

fn not_applicable(id: &'static str, title: &'static str, why: &'static str, reason: &str) -> Check {
    Check {
        id,
        title,
        verdict: Verdict::NotApplicable,
        expected: "-".to_owned(),
        observed: "not sent".to_owned(),
        why,
        note: Some(reason.to_owned()),
    }
}

fn valid_check(answer: &Answer) -> Check {
    let (verdict, note) = match answer {
        Ok(reply) if is_success(reply.status) => (Verdict::Pass, None),
        Ok(reply) if reply.status == 400 || reply.status == 401 || reply.status == 403 => (
            Verdict::Fail,
            Some(
                "the receiver rejects a correctly signed, fresh delivery: check that --scheme \
                 and --secret match its configuration (and --public-url for URL-signing \
                 schemes). Until it accepts this one, the forgery checks below pass for the \
                 wrong reason."
                    .to_owned(),
            ),
        ),
        _ => (
            Verdict::Fail,
            Some(
                "no 2xx for a genuine delivery: the sender would retry and eventually give up. \
                 Until it accepts this one, the forgery checks below pass for the wrong reason."
                    .to_owned(),
            ),
        ),
    };
    Check {
        id: "valid",
        title: "genuine delivery",
        verdict,
        expected: "2xx".to_owned(),
        observed: describe(answer),
        why: "A receiver that rejects genuine deliveries loses events, and passes every forgery \
              check for the wrong reason.",
        note,
    }
}

/// A copy of the accepted delivery: 2xx expected, processed once — which the answer shows
/// only if the receiver says so.
fn duplicate_check(
    id: &'static str,
    title: &'static str,
    why: &'static str,
    first: &Answer,
    again: &Answer,
    delivery_id: String,
) -> Check {
    let expected = "2xx, and not processed a second time".to_owned();
    let observed = describe(again);
    let on_the_receiver = format!(
        "on the receiver, check that delivery {delivery_id} was processed once (one record, \
         one side effect), not {}",
        if id == "replay" {
            "twice"
        } else {
            "once per copy"
        }
    );
    let (verdict, note) = match (first, again) {
        (Ok(first), Ok(again)) if is_success(again.status) => {
            if signals_duplicate(first, again) {
                (
                    Verdict::Pass,
                    Some(format!(
                        "answered {} where the first copy got {}: the receiver recognised the \
                         copy",
                        describe_short(again),
                        describe_short(first)
                    )),
                )
            } else {
                (
                    Verdict::Unknown,
                    Some(format!(
                        "answered 2xx as it did the first time, which is right for the sender, \
                         but an outside observer cannot tell whether it processed the event \
                         again: {on_the_receiver}"
                    )),
                )
            }
        }
        (_, Ok(again)) if again.status >= 500 => (
            Verdict::Warn,
            Some(
                "a server error for a copy makes the sender retry it again and again; answer \
                 2xx for a delivery already stored"
                    .to_owned(),
            ),
        ),
        (_, Ok(_)) => (
            Verdict::Warn,
            Some(
                "a copy of an accepted delivery was refused: the provider's retry after a lost \
                 2xx would count as a failure (and may disable the endpoint); answer 2xx and \
                 skip the processing instead"
                    .to_owned(),
            ),
        ),
        (_, Err(_)) => (
            Verdict::Warn,
            Some(format!("no answer to a copy: {on_the_receiver}")),
        ),
    };
    Check {
        id,
        title,
        verdict,
        expected,
        observed,
        why,
        note,
    }
}

/// Whether the receiver's answer to a copy differs from its answer to the original in a way
/// that says "already seen": another 2xx status, or a body that mentions it.
fn signals_duplicate(first: &Reply, again: &Reply) -> bool {
    let says = |reply: &Reply| {
        let text = String::from_utf8_lossy(&reply.body).to_ascii_lowercase();
        text.contains("duplicate") || text.contains("already")
    };
    first.status != again.status || (says(again) && !says(first))
}

fn describe_short(reply: &Reply) -> String {
    let body = reply.body_snippet(40);
    if body.is_empty() {
        reply.status.to_string()
    } else {
        format!("{} {body}", reply.status)
    }
}

/// Sends a forged `request` (if one could be made and hookgate's own verifier rejects it)
/// and expects a 4xx.
async fn forgery<F, Fut>(
    forge: &Forge,
    send: &F,
    id: &'static str,
    title: &'static str,
    why: &'static str,
    request: Option<Outgoing>,
    not_applicable_reason: &str,
) -> Check
where
    F: Fn(Outgoing) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    forgery_noting(
        forge,
        send,
        id,
        title,
        why,
        request,
        not_applicable_reason,
        "the receiver accepted it: anyone can make this delivery",
    )
    .await
}

/// As [`forgery`], with what to say if the receiver accepts it.
#[allow(
    clippy::too_many_arguments,
    reason = "one call per check, every argument named"
)]
async fn forgery_noting<F, Fut>(
    forge: &Forge,
    send: &F,
    id: &'static str,
    title: &'static str,
    why: &'static str,
    request: Option<Outgoing>,
    not_applicable_reason: &str,
    accepted_note: &str,
) -> Check
where
    F: Fn(Outgoing) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let Some(request) = request else {
        return not_applicable(id, title, why, not_applicable_reason);
    };
    if forge.reference(&request).is_ok() {
        return not_applicable(id, title, why, not_applicable_reason);
    }
    let answer = send(request).await;
    let (verdict, note) = match &answer {
        Ok(reply) if is_success(reply.status) => (Verdict::Fail, Some(accepted_note.to_owned())),
        Ok(reply) if (400..500).contains(&reply.status) => (Verdict::Pass, None),
        Ok(_) => (
            Verdict::Warn,
            Some(
                "rejected, but with a server error: the sender will retry it, and a 5xx hides \
                 the reason from both sides; answer 400 or 401"
                    .to_owned(),
            ),
        ),
        Err(_) => (
            Verdict::Warn,
            Some(
                "no HTTP answer: the receiver may have crashed or dropped the connection"
                    .to_owned(),
            ),
        ),
    };
    Check {
        id,
        title,
        verdict,
        expected: "4xx (400 or 401)".to_owned(),
        observed: describe(&answer),
        why,
        note,
    }
}

fn body_limit_check(answer: &Answer, size: usize, max_body: usize) -> Check {
    let (verdict, note) = match answer {
        Ok(reply) if reply.status == 413 => (Verdict::Pass, None),
        Ok(reply) if is_success(reply.status) => (
            Verdict::Fail,
            Some(format!(
                "a {size}-byte body was accepted: the stated limit ({max_body} bytes) is not \
                 enforced"
            )),
        ),
        Ok(reply) if (400..500).contains(&reply.status) => (
            Verdict::Pass,
            Some(format!(
                "refused with {} rather than 413 Payload Too Large",
                reply.status
            )),
        ),
        Ok(_) => (
            Verdict::Warn,
            Some("a server error rather than 413: the limit may be hit by accident".to_owned()),
        ),
        Err(no_reply) if !no_reply.timed_out => (
            Verdict::Pass,
            Some(
                "the connection was closed before the whole body was sent, as a receiver \
                 enforcing its limit may do (413 is clearer for the sender)"
                    .to_owned(),
            ),
        ),
        Err(_) => (
            Verdict::Warn,
            Some("no answer before the timeout: the receiver may be buffering it".to_owned()),
        ),
    };
    Check {
        id: "body-too-large",
        title: "body over the stated limit",
        verdict,
        expected: format!("413 for a correctly signed {size}-byte body (limit {max_body})"),
        observed: describe(answer),
        why: "A receiver that reads any body whole before checking lets one client exhaust its \
              memory; refusing with 413 before buffering it all keeps it up.",
        note,
    }
}
