//! `hookgate send`: sign deliveries as a provider would, POST them, retry on the provider's
//! schedule, and report every attempt.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate::{SchemeId, Signer};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{HttpClient, parse_url};
use crate::duration::{human, parse_duration, unix_now};
use crate::error::CliError;
use crate::input;
use crate::outgoing::{self, Draft, Target};
use crate::{Output, Status};

/// Arguments of `hookgate send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The endpoint to POST to, e.g. http://127.0.0.1:8787/webhooks.
    url: String,

    /// The scheme id (list: `hookgate schemes`). Default: standard-webhooks-v1, the scheme
    /// of `hookgate serve`'s generated secret.
    #[arg(
        long,
        value_name = "ID",
        value_parser = crate::parse_scheme,
        default_value = "standard-webhooks-v1"
    )]
    scheme: SchemeId,

    /// The signing key (as for `hookgate sign`): the shared secret, or the private key of
    /// an asymmetric scheme.
    #[arg(
        long,
        value_name = "KEY",
        env = "HOOKGATE_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    secret: String,

    /// The body to send, byte for byte (- for stdin). Default: a small JSON event carrying
    /// the delivery's id and type, different for each delivery.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,

    /// The event type, in the generated body's `type` and in the scheme's event header
    /// where it has one (default for the generated body: hookgate.test).
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,

    /// The delivery id. With --count above 1, delivery N gets ID-N. Default: a random
    /// msg_… id per delivery.
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// How many distinct deliveries to send.
    #[arg(long, value_name = "N", default_value_t = 1)]
    count: u64,

    /// How many deliveries are in flight at once.
    #[arg(long, value_name = "C", default_value_t = 1)]
    concurrency: usize,

    /// Retry a delivery that got no 2xx on this provider's schedule: none; prefinery (15
    /// retries, 5 s + N⁴ after the N-th, about 2 days); stripe (about 3 days: 5 min, 25 min,
    /// 1.5 h, 2 h, 4 h, 8 h, then daily, an approximation of Stripe's unpublished exact
    /// timings); svix (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); exponential (1 s doubling,
    /// 10 retries). Each retry is signed again with a fresh timestamp and the same id.
    #[arg(long, value_enum, value_name = "SCHEDULE", default_value = "none")]
    retry_schedule: RetrySchedule,

    /// Multiply every retry delay by X: 0.001 turns Prefinery's two days into about three
    /// minutes, for tests.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    time_scale: f64,

    /// How long to wait for each answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,

    /// The public URL a URL-signing scheme (twilio, square) signs, when it differs from the
    /// URL called (a proxy in between). Default: the URL.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,

    /// The HTTP method to send with (default POST). hubspot-v3 signs it.
    #[arg(long, value_name = "METHOD", value_parser = parse_method, default_value = "POST")]
    method: http::Method,

    /// An extra request header as 'Name: value' (repeatable); replaces a header of the
    /// same name.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Trust the CA certificates in this PEM file, besides the system's (for an https
    /// endpoint with a private or self-signed certificate).
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,

    /// Print only failed attempts and the summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// A provider's retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RetrySchedule {
    /// One attempt.
    None,
    /// Prefinery: 15 retries, 5 s + N⁴ after the N-th failure.
    Prefinery,
    /// Stripe, approximately: for about three days.
    Stripe,
    /// Svix's published schedule.
    Svix,
    /// 1 s, doubling, 10 retries.
    Exponential,
}

impl RetrySchedule {
    /// The delay before each retry, in order.
    pub(crate) fn delays(self) -> Vec<Duration> {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        let secs: Vec<u64> = match self {
            RetrySchedule::None => Vec::new(),
            RetrySchedule::Prefinery => (1..=15u64)
                .map(|n| n.saturating_pow(4).saturating_add(5))
                .collect(),
            RetrySchedule::Stripe => vec![
                5 * MIN,
                25 * MIN,
                90 * MIN,
                2 * HOUR,
                4 * HOUR,
                8 * HOUR,
                24 * HOUR,
                24 * HOUR,
            ],
            RetrySchedule::Svix => vec![
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ],
            RetrySchedule::Exponential => (0..10u32).map(|n| 1u64 << n).collect(),
        };
        secs.into_iter().map(Duration::from_secs).collect()
    }
}

/// How one delivery ended.
#[derive(Debug)]
struct Delivered {
    ok: bool,
    attempts: u32,
    latencies: Vec<Duration>,
}

/// Everything a delivery task needs, shared.
#[derive(Debug)]
struct Plan {
    scheme: SchemeId,
    signer: Signer,
    client: HttpClient,
    target: Target,
    body: Option<Bytes>,
    event_type: Option<String>,
    extra_headers: Vec<(String, String)>,
    delays: Vec<Duration>,
    time_scale: f64,
    quiet: bool,
    progress: Option<ProgressBar>,
}

/// Runs `hookgate send`.
///
/// # Errors
/// A usage or configuration problem; failed deliveries are an `Ok` with
/// [`Status::Invalid`].
pub(crate) async fn run(args: SendArgs) -> Result<Output, CliError> {
    let uri = parse_url(&args.url, "the URL")?;
    if args.count == 0 {
        return Err(CliError::new("--count must be at least 1"));
    }
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return Err(CliError::new("--concurrency must be between 1 and 10000"));
    }
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err(CliError::new("--time-scale must be a number of at least 0"));
    }
    if args.timeout.is_zero() {
        return Err(CliError::new("--timeout must not be zero"));
    }
    let signer = Signer::new(args.scheme, &args.secret).map_err(|e| CliError::config(&e))?;
    let extra_headers = input::collect_headers(None, &args.headers)?;
    let body = match &args.body_file {
        Some(path) => Some(Bytes::from(input::read_body(Some(path))?)),
        None => None,
    };
    let client = HttpClient::new(args.ca_cert.as_deref(), args.timeout, args.concurrency)?;
    let public_url = args.public_url.clone().unwrap_or_else(|| args.url.clone());
    let progress = (args.count > 1 && std::io::stdout().is_terminal()).then(|| {
        let bar = ProgressBar::new(args.count);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} deliveries  {per_sec}  eta {eta}")
        {
            bar.set_style(style);
        }
        bar
    });
    let plan = Arc::new(Plan {
        scheme: args.scheme,
        signer,
        client,
        target: Target {
            uri,
            public_url,
            method: args.method.clone(),
        },
        body,
        event_type: args.event_type.clone(),
        extra_headers,
        delays: args.retry_schedule.delays(),
        time_scale: args.time_scale,
        quiet: args.quiet,
        progress,
    });

    let run_id = outgoing::random_hex(4);
    let ids: Vec<String> = (1..=args.count)
        .map(|n| match (&args.id, args.count) {
            (Some(id), 1) => id.clone(),
            (Some(id), _) => format!("{id}-{n}"),
            (None, _) => format!("msg_{run_id}_{n}"),
        })
        .collect();

    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for (n, id) in (1u64..).zip(ids) {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|_| CliError::new("internal error: the semaphore closed"))?;
        let plan = Arc::clone(&plan);
        tasks.spawn(async move {
            let result = deliver(&plan, n, &id).await;
            drop(permit);
            result
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(delivered)) => results.push(delivered),
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(CliError::new(format!("a delivery task failed: {error}"))),
        }
    }
    if let Some(bar) = &plan.progress {
        bar.finish_and_clear();
    }
    let summary = summarize(&results, started.elapsed(), &args.url);
    let ok = results.iter().all(|r| r.ok);
    Ok(Output::new(
        summary,
        if ok { Status::Success } else { Status::Invalid },
    ))
}

/// Sends delivery number `n` until it gets a 2xx or the schedule runs out.
async fn deliver(plan: &Plan, n: u64, id: &str) -> Result<Delivered, CliError> {
    let first_timestamp = unix_now();
    let body = match &plan.body {
        Some(body) => body.clone(),
        None => outgoing::sample_body(
            id,
            plan.event_type.as_deref().unwrap_or("hookgate.test"),
            first_timestamp,
            serde_json::json!({ "n": n }),
        ),
    };
    let mut latencies = Vec::new();
    let mut attempt: u32 = 0;
    let mut delays = plan.delays.iter();
    let mut succeeded;
    loop {
        attempt = attempt.saturating_add(1);
        let draft = Draft {
            body: body.clone(),
            id,
            timestamp: if attempt == 1 {
                first_timestamp
            } else {
                unix_now()
            },
            event_type: plan.event_type.as_deref(),
        };
        let request = outgoing::sign(
            &plan.signer,
            plan.scheme,
            &plan.target,
            &draft,
            &plan.extra_headers,
        )?;
        let result = plan
            .client
            .send(
                request.method.clone(),
                &request.uri,
                &request.headers,
                request.body,
            )
            .await;
        let (ok, what, latency) = match &result {
            Ok(reply) => {
                let mut what = format!("{} {}", reply.status, reply.body_snippet(60));
                if let Some(after) = reply.headers.get(http::header::RETRY_AFTER) {
                    what.push_str(&format!(
                        " (Retry-After: {})",
                        crate::client::snippet(after.as_bytes(), 30)
                    ));
                }
                ((200..300).contains(&reply.status), what, reply.latency)
            }
            Err(no_reply) => (
                false,
                format!("error: {}", no_reply.error),
                no_reply.latency,
            ),
        };
        latencies.push(latency);
        succeeded = ok;
        let next = if ok { None } else { delays.next().copied() };
        let mut line = format!("{id} attempt {attempt}: {what} ({})", human(latency));
        if let Some(delay) = next {
            line.push_str(&format!(
                "; retry in {}",
                human(scaled(delay, plan.time_scale))
            ));
        } else if !ok {
            line.push_str("; giving up");
        }
        if !(plan.quiet && ok) {
            report(plan, &line);
        }
        match next {
            _ if ok => break,
            Some(delay) => tokio::time::sleep(scaled(delay, plan.time_scale)).await,
            None => break,
        }
    }
    if let Some(bar) = &plan.progress {
        bar.inc(1);
    }
    Ok(Delivered {
        ok: succeeded,
        attempts: attempt,
        latencies,
    })
}

/// A line about one attempt: above the progress bar, or on stdout.
fn report(plan: &Plan, line: &str) {
    match &plan.progress {
        Some(bar) => bar.println(line),
        None => crate::say(line),
    }
}

/// `delay × scale`, saturating.
fn scaled(delay: Duration, scale: f64) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * scale).unwrap_or(Duration::MAX)
}

/// The closing summary.
fn summarize(results: &[Delivered], elapsed: Duration, url: &str) -> String {
    let delivered = results.iter().filter(|r| r.ok).count();
    let failed = results.len().saturating_sub(delivered);
    let attempts: u64 = results.iter().map(|r| u64::from(r.attempts)).sum();
    let mut latencies: Vec<Duration> = results
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let pick = |q: f64| -> Duration {
        let last = latencies.len().saturating_sub(1);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a rank within a vector's length"
        )]
        let rank = ((last as f64) * q).round() as usize;
        latencies.get(rank.min(last)).copied().unwrap_or_default()
    };
    #[allow(clippy::cast_precision_loss, reason = "a rate for people")]
    let rate = results.len() as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "sent {} deliveries to {url}: {delivered} delivered (2xx), {failed} failed; {attempts} \
         attempts; latency p50 {} p99 {} max {}; {} ({rate:.0}/s)\n",
        results.len(),
        human(pick(0.5)),
        human(pick(0.99)),
        human(latencies.last().copied().unwrap_or_default()),
        human(elapsed),
    )
}

/// An HTTP method as written on the command line (`POST`, `put`, …), upper-cased.
fn parse_method(text: &str) -> Result<http::Method, String> {
    http::Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{text:?} is not an HTTP method"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefinery_retries_fifteen_times_over_about_two_days() {
        let delays = RetrySchedule::Prefinery.delays();
        assert_eq!(delays.len(), 15);
        assert_eq!(delays[0], Duration::from_secs(6));
        assert_eq!(delays[1], Duration::from_secs(21));
        assert_eq!(delays[14], Duration::from_secs(5 + 15u64.pow(4)));
        let total: Duration = delays.iter().sum();
        assert!(total > Duration::from_secs(48 * 3600) && total < Duration::from_secs(52 * 3600));
    }

    #[test]
    fn schedules_have_their_published_shape() {
        assert!(RetrySchedule::None.delays().is_empty());
        assert_eq!(RetrySchedule::Svix.delays()[0], Duration::from_secs(5));
        assert_eq!(RetrySchedule::Svix.delays().len(), 7);
        let stripe: Duration = RetrySchedule::Stripe.delays().iter().sum();
        assert!(stripe <= Duration::from_secs(72 * 3600));
        assert_eq!(
            RetrySchedule::Exponential.delays()[9],
            Duration::from_secs(512)
        );
    }

    #[test]
    fn time_scale_compresses_and_saturates() {
        assert_eq!(
            scaled(Duration::from_secs(6), 0.001),
            Duration::from_millis(6)
        );
        assert_eq!(scaled(Duration::from_secs(6), 0.0), Duration::ZERO);
        assert_eq!(scaled(Duration::MAX, 2.0), Duration::MAX);
    }
}
