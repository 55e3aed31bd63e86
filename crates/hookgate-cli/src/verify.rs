//! `hookgate verify`: check a captured delivery and say why it fails.

use std::path::PathBuf;
use std::time::Duration;

use hookgate::{FixedClock, Rejection, RequestContext, SchemeId, VerifiedEvent, Verifier};
use serde::Serialize;

use crate::error::CliError;
use crate::hint::{self, Advice};
use crate::input;
use crate::{Output, Status};

/// Arguments of `hookgate verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The scheme id, e.g. stripe, github, standard-webhooks-v1 (list: `hookgate schemes`).
    #[arg(long, value_name = "ID", value_parser = crate::parse_scheme)]
    scheme: SchemeId,

    /// A secret or public key, written as the provider shows it. Repeat it during a
    /// rotation: every key is tried and the first match is reported by position, from 0.
    #[arg(
        long = "secret",
        value_name = "KEY",
        env = "HOOKGATE_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    secrets: Vec<String>,

    /// A file with one key per line (blank lines ignored), tried after the --secret keys.
    /// Keeps keys out of the shell history and the process list.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,

    /// A request header as 'Name: value'. Repeatable; names match case-insensitively and a
    /// header given twice is passed as two values.
    #[arg(
        short = 'H',
        long = "header",
        value_name = "NAME: VALUE",
        allow_hyphen_values = true
    )]
    headers: Vec<String>,

    /// A file of headers, one 'Name: value' per line (blank lines and lines starting with #
    /// are skipped), read before the --header arguments.
    #[arg(long, value_name = "PATH")]
    headers_file: Option<PathBuf>,

    /// The file holding the raw body, byte for byte. Without it (or with -) the body is
    /// read from stdin.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,

    /// The exact public URL the provider called, query string included. Required by the
    /// URL-signing schemes (twilio, twilio-body-sha256, square, hubspot-v3); ignored by the
    /// others.
    #[arg(long)]
    url: Option<String>,

    /// The HTTP method of the request (default POST). Signed by hubspot-v3; ignored by the
    /// other schemes.
    #[arg(long, value_name = "METHOD")]
    method: Option<String>,

    /// Check as if it were this instant (Unix seconds) instead of now, e.g. the delivery's
    /// own timestamp to re-check a captured delivery.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,

    /// The timestamp window in seconds, in both directions (default: the scheme's own).
    #[arg(long, value_name = "SECONDS", conflicts_with = "no_timestamp_check")]
    tolerance: Option<u64>,

    /// Accept timestamps any distance in the future, as Stripe's and Paddle's own libraries
    /// do (by default a timestamp further ahead than the window is rejected).
    #[arg(long, conflicts_with = "no_timestamp_check")]
    accept_future: bool,

    /// Skip the timestamp window entirely: the signature is still checked, but replays are
    /// not detected.
    #[arg(long)]
    no_timestamp_check: bool,

    /// Print one JSON object instead of text (exit status unchanged).
    #[arg(long)]
    json: bool,
}

/// The JSON line for a delivery that verified.
#[derive(Debug, Serialize)]
struct ValidJson<'a> {
    valid: bool,
    key_index: usize,
    key_id: &'a str,
    scheme: &'a str,
    dedup_key: &'a str,
    delivery_id: Option<&'a str>,
    event_type: Option<&'a str>,
    /// Unix seconds.
    timestamp: Option<i64>,
    timestamp_ms: Option<i64>,
}

/// The JSON line for a rejected delivery.
#[derive(Debug, Serialize)]
struct InvalidJson<'a> {
    valid: bool,
    reason: &'a str,
    status: u16,
    location: Option<&'a str>,
    hint: &'a str,
    notes: &'a [String],
}

/// Runs `hookgate verify`.
///
/// # Errors
/// A usage or configuration problem; an invalid delivery is an `Ok` with
/// [`Status::Invalid`].
pub(crate) fn run(args: VerifyArgs) -> Result<Output, CliError> {
    let scheme = args.scheme;
    let secrets = input::collect_secrets(&args.secrets, args.secret_file.as_deref())?;
    let headers = input::collect_headers(args.headers_file.as_deref(), &args.headers)?;
    if scheme.signs_url() && args.url.is_none() {
        return Err(CliError::missing_url(scheme.as_str()));
    }
    warn_about_ignored_options(&args);
    let body = input::read_body(args.body_file.as_deref())?;

    let mut builder = Verifier::builder(scheme);
    for secret in &secrets {
        builder = builder.secret(secret.as_str());
    }
    if let Some(now) = args.now {
        builder = builder.clock(FixedClock::from_unix(now));
    }
    if let Some(seconds) = args.tolerance {
        builder = builder.tolerance(Duration::from_secs(seconds));
    }
    if args.accept_future {
        builder = builder.accept_future_timestamps(true);
    }
    if args.no_timestamp_check {
        builder = builder.without_timestamp_check();
    }
    if let Some(url) = &args.url {
        builder = builder.url(url.as_str());
    }
    let verifier = builder.build().map_err(|e| match e {
        hookgate::ConfigError::InvalidKey { .. } => CliError::new(format!(
            "{e} (keys are numbered from 0: the --secret keys in order, then the --secret-file \
             lines)"
        )),
        other => CliError::config(&other),
    })?;

    let context = hint::Context {
        scheme,
        body: &body,
        keys: secrets.len(),
        now_given: args.now.is_some(),
        headers: &headers,
    };
    let request = RequestContext::new().with_method(args.method.as_deref().unwrap_or("POST"));
    match verifier.verify_request(&headers, body.clone(), request) {
        Ok(event) => Ok(Output::new(
            valid_report(&event, scheme, args.json)?,
            Status::Success,
        )),
        Err(rejection) => {
            let advice = hint::advise(&rejection, context);
            Ok(Output::new(
                invalid_report(&rejection, &advice, args.json)?,
                Status::Invalid,
            ))
        }
    }
}

fn warn_about_ignored_options(args: &VerifyArgs) {
    let scheme = args.scheme;
    // Azure Event Grid signs nothing but reads its token from the URL's query.
    if args.url.is_some() && !scheme.signs_url() && scheme != SchemeId::AzureEventGrid {
        crate::note(&format!("{scheme} does not sign the URL: --url is ignored"));
    }
    if args.method.is_some() && !scheme.signs_method() {
        crate::note(&format!(
            "{scheme} does not sign the HTTP method: --method is ignored"
        ));
    }
    if !scheme.has_timestamp()
        && (args.tolerance.is_some() || args.accept_future || args.no_timestamp_check)
    {
        crate::note(&format!(
            "{scheme} signs no timestamp: the window options are ignored (replays are caught \
             only by remembering deliveries)"
        ));
    }
}

fn valid_report(event: &VerifiedEvent, scheme: SchemeId, json: bool) -> Result<String, CliError> {
    let timestamp_ms = event.timestamp_millis();
    let timestamp = timestamp_ms.map(|ms| ms.div_euclid(1000));
    if json {
        let line = ValidJson {
            valid: true,
            key_index: event.key_index(),
            key_id: event.key_id(),
            scheme: event.scheme(),
            dedup_key: event.dedup_key(),
            delivery_id: event.delivery_id(),
            event_type: event.event_type(),
            timestamp,
            timestamp_ms,
        };
        return to_json_line(&line);
    }
    let mut out = format!("valid (key {})\n", event.key_index());
    out.push_str(&format!("scheme: {}\n", event.scheme()));
    out.push_str(&format!("dedup key: {}\n", event.dedup_key()));
    if let Some(id) = event.delivery_id() {
        out.push_str(&format!("delivery id: {}\n", printable(id)));
    }
    if let Some(event_type) = event.event_type() {
        out.push_str(&format!("event type: {}\n", printable(event_type)));
    }
    if let Some(seconds) = timestamp {
        out.push_str(&format!("timestamp: {seconds}\n"));
    }
    match scheme {
        SchemeId::GitlabToken => out.push_str(
            "note: gitlab-token checks a shared token only: the body is not authenticated\n",
        ),
        SchemeId::Mailgun => out.push_str(
            "note: mailgun signs the timestamp and token only: the event data is not \
             authenticated\n",
        ),
        SchemeId::MicrosoftGraph => out.push_str(
            "note: microsoft-graph checks the clientState token only: the notifications are \
             not authenticated\n",
        ),
        SchemeId::AzureEventGrid => out.push_str(
            "note: azure-event-grid checks the token of the URL (or Authorization: Bearer) only: \
             the body is not authenticated\n",
        ),
        _ => {}
    }
    Ok(out)
}

fn invalid_report(rejection: &Rejection, advice: &Advice, json: bool) -> Result<String, CliError> {
    let location = Some(rejection.location()).filter(|l| !l.is_empty());
    if json {
        let line = InvalidJson {
            valid: false,
            reason: rejection.code(),
            status: rejection.status(),
            location,
            hint: &advice.hint,
            notes: &advice.notes,
        };
        return to_json_line(&line);
    }
    let mut out = format!("invalid: {}\n", rejection.code());
    if let Some(location) = location {
        out.push_str(&format!("location: {location}\n"));
    }
    out.push_str(&format!("hint: {}\n", advice.hint));
    for note in &advice.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    Ok(out)
}

fn to_json_line(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string(value)
        .map(|mut line| {
            line.push('\n');
            line
        })
        .map_err(|e| CliError::new(format!("cannot write JSON: {e}")))
}

/// Text from the delivery, made safe for a terminal (control characters escaped).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_a_delivery_are_escaped() {
        assert_eq!(printable("evt_1"), "evt_1");
        assert_eq!(printable("a\u{1b}[2J\"b\n"), "a\\u{1b}[2J\"b\\n");
    }
}
