//! A destination as configured, checked into a [`Destination`], and the [`Router`] that
//! turns one event into one delivery per matching destination.

use std::fmt;
use std::num::NonZeroU32;

use serde::Deserialize;

use super::circuit::{CircuitConfig, DEFAULT_CIRCUIT_FAILURES, DEFAULT_CIRCUIT_OPEN_FOR};
use super::duration::parse_duration;
use super::filter::{EventFilter, EventView, FilterSpec, Prepared};
use super::lane::{LaneKey, OrderKey};
use super::rate::RateLimit;
use crate::RetryPolicy;

/// The longest destination name: 64 characters.
pub const MAX_DESTINATION_NAME: usize = 64;

/// One `[[endpoint.destination]]` table as written:
///
/// ```toml
/// [[endpoint.destination]]
/// name = "billing"                           # unique in the endpoint; shown in the event log
/// forward = "http://127.0.0.1:3000/billing"  # or exec = "CMD", or queue = "URL"
/// filter = { type = ["invoice.*", "customer.subscription.*"], body = { "/data/object/livemode" = true } }
/// rate = "50/s"                              # token bucket; optional
/// concurrency = 4                            # at most this many in flight; optional
/// order_key = "/data/object/customer"        # JSON Pointer or header:NAME; optional
/// circuit = { failures = 5, open_for = "30s" }   # optional; {} takes these defaults
/// retry = { max_attempts = 12, base = "1s", cap = "1h" }   # optional; missing keys: the endpoint's
/// ```
///
/// See [`FilterSpec`] for filters. [`resolve`](Self::resolve) checks it into a
/// [`Destination`]; unknown keys are refused when the file is read.
///
/// ```
/// use hookgate_queue::{DestinationConfig, RetryPolicy};
///
/// let config: DestinationConfig = serde_json::from_value(serde_json::json!({
///     "name": "billing",
///     "forward": "http://127.0.0.1:3000/billing",
///     "rate": "50/s",
///     "concurrency": 4,
/// })).unwrap();
/// let destination = config.resolve(RetryPolicy::new()).unwrap();
/// assert_eq!(destination.name(), "billing");
/// assert_eq!(destination.concurrency().map(|c| c.get()), Some(4));
///
/// let bad: DestinationConfig = serde_json::from_value(serde_json::json!({
///     "name": "audit", "exec": "./audit.sh", "rate": "lots",
/// })).unwrap();
/// let err = bad.resolve(RetryPolicy::new()).unwrap_err();
/// assert_eq!(err.key(), "rate");
/// assert!(err.to_string().starts_with("rate: expected a rate such as"));
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    name: String,
    forward: Option<String>,
    exec: Option<String>,
    queue: Option<String>,
    filter: Option<FilterSpec>,
    rate: Option<String>,
    concurrency: Option<u32>,
    order_key: Option<String>,
    circuit: Option<CircuitFile>,
    retry: Option<RetryFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitFile {
    failures: Option<u32>,
    open_for: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    max_attempts: Option<u32>,
    base: Option<String>,
    cap: Option<String>,
}

/// A mistake in a destination: which key (a path such as `filter.any[2].type` or
/// `circuit.open_for`) and what is wrong. Its text is `KEY: PROBLEM`, for the caller to
/// prefix with where the destination is (`endpoint stripe, destination billing: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationError {
    key: String,
    problem: String,
}

impl DestinationError {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        DestinationError {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The key at fault.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for DestinationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for DestinationError {}

/// Where a destination's deliveries go. URLs and commands are checked no further than
/// "present": the caller knows which transports it has (`hookgate serve` parses the URL
/// and the queue kind as it does for an endpoint's own `forward`/`queue`).
///
/// A URL may carry a password (`redis://:pw@host/`) or a token in its query, and a command
/// a token in its arguments: its `Debug` and [`redacted`](Self::redacted) show neither.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestinationTarget {
    /// POST each event to this URL.
    Forward(String),
    /// Run this command with each event.
    Exec(String),
    /// Publish each event to this queue URL.
    Queue(String),
}

impl DestinationTarget {
    /// For logs and messages: the kind, then the URL without user, password and query
    /// values, or the command's program without its arguments.
    ///
    /// ```
    /// use hookgate_queue::DestinationTarget;
    ///
    /// let queue = DestinationTarget::Queue("redis://app:s3cret@10.0.0.5:6379/?stream=s".into());
    /// assert_eq!(queue.redacted(), "queue redis://***@10.0.0.5:6379/?…");
    /// let exec = DestinationTarget::Exec("./notify.sh --token abc".into());
    /// assert_eq!(exec.redacted(), "exec ./notify.sh …");
    /// ```
    pub fn redacted(&self) -> String {
        match self {
            DestinationTarget::Forward(url) | DestinationTarget::Queue(url) => {
                format!("{} {}", self.kind(), redact_url(url))
            }
            DestinationTarget::Exec(command) => {
                let command = command.trim();
                match command.split_once(char::is_whitespace) {
                    Some((program, _)) => format!("exec {program} …"),
                    None => format!("exec {command}"),
                }
            }
        }
    }

    /// `forward`, `exec` or `queue`: the key it came from.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationTarget::Forward(_) => "forward",
            DestinationTarget::Exec(_) => "exec",
            DestinationTarget::Queue(_) => "queue",
        }
    }
}

impl fmt::Debug for DestinationTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("filter", &self.filter)
            .field("rate", &self.rate)
            .field("concurrency", &self.concurrency)
            .field("order_key", &self.order_key)
            .finish_non_exhaustive()
    }
}

/// A URL without user and password, and with its query and fragment cut to `?…`. The
/// authority ends at the first `/` only, so a stray `?` or `#` in a password is hidden too.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((_, host)) => (true, host),
        None => (false, authority),
    };
    let host_and_path = format!("{host}{path}");
    let shown = match host_and_path.split_once(['?', '#']) {
        Some((head, _)) => format!("{head}?…"),
        None => host_and_path,
    };
    let userinfo = if userinfo { "***@" } else { "" };
    match scheme {
        Some(scheme) => format!("{scheme}://{userinfo}{shown}"),
        None => format!("{userinfo}{shown}"),
    }
}

/// A checked destination: a name, a target, and the optional filter, rate, concurrency
/// cap, lane key and circuit breaker, with its retry policy. Built from a
/// [`DestinationConfig`] or directly (for the command line's one-endpoint case).
///
/// ```
/// use std::num::NonZeroU32;
/// use hookgate_queue::{Destination, DestinationTarget};
///
/// let audit = Destination::new("audit", DestinationTarget::Exec("./audit.sh".into()))
///     .unwrap()
///     .with_rate("10/s".parse().unwrap())
///     .with_concurrency(NonZeroU32::new(1).unwrap());
/// assert_eq!(audit.rate().map(|r| r.to_string()), Some("10/s".to_owned()));
/// ```
#[derive(Debug, Clone)]
pub struct Destination {
    name: String,
    target: DestinationTarget,
    filter: Option<EventFilter>,
    rate: Option<RateLimit>,
    concurrency: Option<NonZeroU32>,
    order_key: Option<OrderKey>,
    circuit: Option<CircuitConfig>,
    retry: RetryPolicy,
}

impl Destination {
    /// A destination taking every event, unlimited, unordered, without a circuit breaker,
    /// with the default retry policy.
    ///
    /// # Errors
    /// A bad name (1 to 64 letters, digits, `-`, `_` or `.`) or an empty target.
    pub fn new(name: &str, target: DestinationTarget) -> Result<Self, DestinationError> {
        check_name(name).map_err(|p| DestinationError::new("name", p))?;
        let (DestinationTarget::Forward(text)
        | DestinationTarget::Exec(text)
        | DestinationTarget::Queue(text)) = &target;
        if text.trim().is_empty() {
            return Err(DestinationError::new(target.kind(), "is empty"));
        }
        Ok(Destination {
            name: name.to_owned(),
            target,
            filter: None,
            rate: None,
            concurrency: None,
            order_key: None,
            circuit: None,
            retry: RetryPolicy::new(),
        })
    }

    /// Takes only the events `filter` passes.
    #[must_use]
    pub fn with_filter(mut self, filter: EventFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Starts at most `rate` deliveries.
    #[must_use]
    pub fn with_rate(mut self, rate: RateLimit) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Keeps at most `limit` deliveries in flight.
    #[must_use]
    pub fn with_concurrency(mut self, limit: NonZeroU32) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// Runs deliveries with the same key one at a time, in received order.
    #[must_use]
    pub fn with_order_key(mut self, key: OrderKey) -> Self {
        self.order_key = Some(key);
        self
    }

    /// Guards the target with a circuit breaker.
    #[must_use]
    pub fn with_circuit(mut self, circuit: CircuitConfig) -> Self {
        self.circuit = Some(circuit);
        self
    }

    /// Retries failed deliveries with `retry`.
    ///
    /// # Errors
    /// A policy that [`RetryPolicy::check`] refuses.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Result<Self, DestinationError> {
        retry
            .check()
            .map_err(|p| DestinationError::new("retry", p))?;
        self.retry = retry;
        Ok(self)
    }

    /// The name, unique in its endpoint.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where deliveries go.
    pub fn target(&self) -> &DestinationTarget {
        &self.target
    }

    /// The filter, if any (without one, every event matches).
    pub fn filter(&self) -> Option<&EventFilter> {
        self.filter.as_ref()
    }

    /// The rate limit, if any.
    pub fn rate(&self) -> Option<RateLimit> {
        self.rate
    }

    /// The concurrency cap, if any (without one, the worker pool's size is the cap).
    pub fn concurrency(&self) -> Option<NonZeroU32> {
        self.concurrency
    }

    /// The lane key, if deliveries are ordered.
    pub fn order_key(&self) -> Option<&OrderKey> {
        self.order_key.as_ref()
    }

    /// The circuit breaker's configuration, if any.
    pub fn circuit(&self) -> Option<CircuitConfig> {
        self.circuit
    }

    /// The retry policy.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// Whether routing an event to this destination reads its body.
    fn reads_body(&self) -> bool {
        self.order_key.as_ref().is_some_and(OrderKey::reads_body)
    }
}

impl DestinationConfig {
    /// The name as written (to name the destination in an error before it is checked).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks every key and builds the [`Destination`]. `default_retry` is the endpoint's
    /// policy: it applies when `retry` is missing, and fills the keys `retry` leaves out.
    ///
    /// # Errors
    /// The first mistake, naming its key.
    pub fn resolve(&self, default_retry: RetryPolicy) -> Result<Destination, DestinationError> {
        let target = match (&self.forward, &self.exec, &self.queue) {
            (Some(url), None, None) => DestinationTarget::Forward(url.clone()),
            (None, Some(command), None) => DestinationTarget::Exec(command.clone()),
            (None, None, Some(url)) => DestinationTarget::Queue(url.clone()),
            (None, None, None) => {
                return Err(DestinationError::new(
                    "forward",
                    "a destination needs one of forward = \"URL\", exec = \"CMD\" or queue = \"URL\"",
                ));
            }
            _ => {
                return Err(DestinationError::new(
                    "forward",
                    "forward, exec and queue are exclusive: give one (declare another \
                     destination for the other)",
                ));
            }
        };
        let mut destination = Destination::new(&self.name, target)?;
        if let Some(spec) = &self.filter {
            destination = destination.with_filter(EventFilter::compile(spec)?);
        }
        if let Some(text) = &self.rate {
            let rate = text.parse().map_err(|p| DestinationError::new("rate", p))?;
            destination = destination.with_rate(rate);
        }
        if let Some(limit) = self.concurrency {
            let limit = NonZeroU32::new(limit).ok_or_else(|| {
                DestinationError::new("concurrency", "0 would never deliver: use pause instead")
            })?;
            destination = destination.with_concurrency(limit);
        }
        if let Some(text) = &self.order_key {
            let key = text
                .parse()
                .map_err(|p| DestinationError::new("order_key", p))?;
            destination = destination.with_order_key(key);
        }
        if let Some(circuit) = &self.circuit {
            let failures = circuit.failures.unwrap_or(DEFAULT_CIRCUIT_FAILURES);
            let failures = NonZeroU32::new(failures)
                .ok_or_else(|| DestinationError::new("circuit.failures", "must be at least 1"))?;
            let open_for = match &circuit.open_for {
                Some(text) => parse_duration(text)
                    .map_err(|p| DestinationError::new("circuit.open_for", p))?,
                None => DEFAULT_CIRCUIT_OPEN_FOR,
            };
            if open_for.is_zero() {
                return Err(DestinationError::new(
                    "circuit.open_for",
                    "must be above zero (leave circuit out for no breaker)",
                ));
            }
            destination = destination.with_circuit(CircuitConfig::new(failures, open_for));
        }
        let mut retry = default_retry;
        if let Some(file) = &self.retry {
            if let Some(n) = file.max_attempts {
                retry = retry.max_attempts(n);
            }
            if let Some(text) = &file.base {
                retry = retry.base(
                    parse_duration(text).map_err(|p| DestinationError::new("retry.base", p))?,
                );
            }
            if let Some(text) = &file.cap {
                retry = retry
                    .cap(parse_duration(text).map_err(|p| DestinationError::new("retry.cap", p))?);
            }
        }
        destination.with_retry(retry)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_DESTINATION_NAME || !name.chars().all(ok) {
        return Err(format!(
            "{name:?}: a name is 1 to {MAX_DESTINATION_NAME} letters, digits, -, _ or ."
        ));
    }
    Ok(())
}

/// One delivery to make: which destination (its index in the [`Router`]) and, for an
/// ordered destination, the event's lane key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    destination: usize,
    lane: Option<LaneKey>,
}

impl Routed {
    /// The destination's index in [`Router::destinations`].
    pub fn destination(&self) -> usize {
        self.destination
    }

    /// The lane key: `None` when the destination is unordered or the event has no key
    /// value (it then runs unordered).
    pub fn lane(&self) -> Option<&LaneKey> {
        self.lane.as_ref()
    }

    /// Takes the lane key out.
    pub fn into_lane(self) -> Option<LaneKey> {
        self.lane
    }
}

/// An endpoint's destinations, in declared order: routes each event to the destinations
/// whose filters pass it, with the lane key of the ordered ones, parsing the body (as
/// JSON) at most once per event for all of them, and only if some filter or lane key
/// needs it.
///
/// ```
/// use hookgate_queue::{Destination, DestinationTarget, EventFilter, EventView, Router};
///
/// let invoices = EventFilter::compile(
///     &serde_json::from_str(r#"{ "type": "invoice.*" }"#).unwrap(),
/// ).unwrap();
/// let router = Router::new(vec![
///     Destination::new("billing", DestinationTarget::Forward("http://b/".into()))
///         .unwrap()
///         .with_filter(invoices)
///         .with_order_key("/customer".parse().unwrap()),
///     Destination::new("audit", DestinationTarget::Exec("./audit.sh".into())).unwrap(),
/// ]).unwrap();
///
/// let routed = router.route(EventView::new(Some("invoice.paid"), &[], br#"{"customer":"c1"}"#));
/// assert_eq!(routed.len(), 2);
/// assert_eq!(router.destinations()[routed[0].destination()].name(), "billing");
/// assert_eq!(routed[0].lane().map(|k| k.as_str()), Some("c1"));
///
/// let routed = router.route(EventView::new(Some("charge.failed"), &[], b"{}"));
/// assert_eq!(routed.len(), 1); // audit only
///
/// // An event no destination takes is "filtered": stored, acknowledged, delivered nowhere.
/// let picky = Router::new(vec![router.destinations()[0].clone()]).unwrap();
/// assert!(picky.route(EventView::new(Some("charge.failed"), &[], b"{}")).is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Router {
    destinations: Vec<Destination>,
}

impl Router {
    /// An endpoint's destinations.
    ///
    /// # Errors
    /// No destination at all, or a name used twice (the key is `name`).
    pub fn new(destinations: Vec<Destination>) -> Result<Self, DestinationError> {
        if destinations.is_empty() {
            return Err(DestinationError::new(
                "destination",
                "an endpoint with destinations needs at least one",
            ));
        }
        for (i, d) in destinations.iter().enumerate() {
            if destinations
                .iter()
                .skip(i.saturating_add(1))
                .any(|o| o.name == d.name)
            {
                return Err(DestinationError::new(
                    "name",
                    format!("{:?} is used by two destinations of the endpoint", d.name),
                ));
            }
        }
        Ok(Router { destinations })
    }

    /// The destinations, in declared order.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// The destination called `name` and its index.
    pub fn find(&self, name: &str) -> Option<(usize, &Destination)> {
        self.destinations
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == name)
    }

    /// The deliveries one event becomes, in destination order; empty means the event is
    /// `filtered`.
    pub fn route(&self, event: EventView<'_>) -> Vec<Routed> {
        let prepared = Prepared::new(event);
        self.destinations
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.filter
                    .as_ref()
                    .is_none_or(|f| f.matches_prepared(&prepared))
            })
            .map(|(i, d)| Routed {
                destination: i,
                lane: d
                    .order_key
                    .as_ref()
                    .and_then(|k| k.lane_of_prepared(&prepared)),
            })
            .collect()
    }

    /// Whether routing may parse bodies (some filter or lane key reads the body).
    pub fn reads_bodies(&self) -> bool {
        self.destinations
            .iter()
            .any(|d| d.reads_body() || d.filter.as_ref().is_some_and(EventFilter::reads_body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Endpoint {
        destination: Vec<DestinationConfig>,
    }

    fn configs(text: &str) -> Vec<DestinationConfig> {
        toml::from_str::<Endpoint>(text).unwrap().destination
    }

    fn resolve(text: &str) -> Result<Destination, DestinationError> {
        configs(text).remove(0).resolve(RetryPolicy::new())
    }

    fn error(text: &str) -> DestinationError {
        resolve(text).unwrap_err()
    }

    const ISSUE_EXAMPLE: &str = r#"
        [[destination]]
        name = "billing"
        forward = "http://127.0.0.1:3000/billing"
        filter = { type = ["invoice.*", "customer.subscription.*"], header = { "X-Shopify-Topic" = "orders/*" }, body = { "/data/object/livemode" = true } }
        rate = "50/s"
        concurrency = 4
        order_key = "/data/object/customer"
        circuit = { failures = 5, open_for = "30s" }
        retry = { max_attempts = 12, base = "1s", cap = "1h" }
    "#;

    #[test]
    fn the_example_of_the_issue_resolves() {
        let d = resolve(ISSUE_EXAMPLE).unwrap();
        assert_eq!(d.name(), "billing");
        assert_eq!(
            d.target(),
            &DestinationTarget::Forward("http://127.0.0.1:3000/billing".into())
        );
        assert!(d.filter().is_some());
        assert_eq!(d.rate(), Some("50/s".parse().unwrap()));
        assert_eq!(d.concurrency(), NonZeroU32::new(4));
        assert_eq!(
            d.order_key(),
            Some(&"/data/object/customer".parse().unwrap())
        );
        assert_eq!(
            d.circuit(),
            Some(CircuitConfig::new(
                NonZeroU32::new(5).unwrap(),
                std::time::Duration::from_secs(30)
            ))
        );
        assert_eq!(d.retry(), RetryPolicy::new());
    }

    #[test]
    fn missing_keys_take_defaults_and_the_endpoints_retry() {
        let endpoint_retry = RetryPolicy::new()
            .max_attempts(3)
            .base(std::time::Duration::from_millis(10));
        let text = r#"
            [[destination]]
            name = "a"
            exec = "cat"
            circuit = {}
            retry = { cap = "2s" }
            [[destination]]
            name = "b"
            queue = "nats://127.0.0.1:4222/?stream=S&subject=s"
        "#;
        let mut all = configs(text).into_iter();
        let a = all.next().unwrap().resolve(endpoint_retry).unwrap();
        assert_eq!(a.circuit(), Some(CircuitConfig::default()));
        assert_eq!(
            a.retry(),
            endpoint_retry.cap(std::time::Duration::from_secs(2))
        );
        let b = all.next().unwrap().resolve(endpoint_retry).unwrap();
        assert_eq!(b.target().kind(), "queue");
        assert_eq!(b.retry(), endpoint_retry);
        assert!(b.filter().is_none() && b.rate().is_none() && b.concurrency().is_none());
        assert!(b.order_key().is_none() && b.circuit().is_none());
    }

    #[test]
    fn each_mistake_names_its_key() {
        let base = "[[destination]]\nname = \"d\"\n";
        let err = |rest: &str| error(&format!("{base}{rest}"));
        assert_eq!(err("").key(), "forward");
        assert!(
            err("forward = 'http://a/'\nexec = 'cat'")
                .problem()
                .contains("exclusive")
        );
        assert_eq!(err("exec = ' '").key(), "exec");
        assert_eq!(err("exec = 'x'\nrate = '5/d'").key(), "rate");
        assert_eq!(err("exec = 'x'\nconcurrency = 0").key(), "concurrency");
        assert_eq!(err("exec = 'x'\norder_key = 'customer'").key(), "order_key");
        assert_eq!(
            err("exec = 'x'\ncircuit = { failures = 0 }").key(),
            "circuit.failures"
        );
        assert_eq!(
            err("exec = 'x'\ncircuit = { open_for = 'soon' }").key(),
            "circuit.open_for"
        );
        assert_eq!(
            err("exec = 'x'\ncircuit = { open_for = '0s' }").key(),
            "circuit.open_for"
        );
        assert_eq!(
            err("exec = 'x'\nretry = { base = '1 week' }").key(),
            "retry.base"
        );
        assert_eq!(err("exec = 'x'\nretry = { cap = 'x' }").key(), "retry.cap");
        assert_eq!(
            err("exec = 'x'\nretry = { max_attempts = 0 }").key(),
            "retry"
        );
        assert_eq!(err("exec = 'x'\nfilter = {}").key(), "filter");
        let e = err("exec = 'x'\nfilter = { any = [ { body = { 'x' = 1 } } ] }");
        assert_eq!(e.key(), "filter.any[1].body");
        assert!(
            e.to_string()
                .starts_with("filter.any[1].body: \"x\" is not a JSON Pointer"),
            "{e}"
        );
        let e = error("[[destination]]\nname = \"no spaces\"\nexec = 'x'");
        assert_eq!(e.key(), "name");
        assert!(
            error(&format!(
                "[[destination]]\nname = \"{}\"\nexec = 'x'",
                "n".repeat(65)
            ))
            .key()
                == "name"
        );
    }

    #[test]
    fn debug_output_shows_no_passwords_tokens_or_arguments() {
        let text = r#"
            [[destination]]
            name = "q"
            queue = "redis://user:pw-123@h:6379/0?token=tok-456"
            [[destination]]
            name = "e"
            exec = "curl -H 'Authorization: Bearer tok-789' http://x/"
            [[destination]]
            name = "f"
            forward = "https://h/hook#frag-000"
        "#;
        for config in configs(text) {
            let resolved = config.resolve(RetryPolicy::new()).unwrap();
            let shown = format!("{config:?} {resolved:?} {}", resolved.target().redacted());
            for secret in ["pw-123", "tok-456", "tok-789", "frag-000", "user"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        assert_eq!(redact_url("http://h:80/a/b"), "http://h:80/a/b");
        assert_eq!(redact_url("nats://u@h/?stream=S"), "nats://***@h/?…");
        assert_eq!(redact_url("redis://:p#a?ss@h:6379"), "redis://***@h:6379");
        assert_eq!(redact_url("h/x?y"), "h/x?…");
        assert_eq!(
            DestinationTarget::Exec("./deliver".into()).redacted(),
            "exec ./deliver"
        );
    }

    #[test]
    fn unknown_keys_are_refused_when_read() {
        let err =
            toml::from_str::<Endpoint>("[[destination]]\nname = 'd'\nexec = 'x'\nrates = '5/s'")
                .err()
                .unwrap();
        assert!(err.to_string().contains("unknown field `rates`"), "{err}");
    }

    fn dest(name: &str) -> Destination {
        Destination::new(name, DestinationTarget::Exec("cat".into())).unwrap()
    }

    fn filter(json: &str) -> EventFilter {
        EventFilter::compile(&serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn the_router_refuses_duplicates_and_emptiness() {
        assert_eq!(Router::new(vec![]).unwrap_err().key(), "destination");
        let err = Router::new(vec![dest("a"), dest("b"), dest("a")]).unwrap_err();
        assert_eq!(err.key(), "name");
        assert!(err.problem().contains("\"a\""));
        let router = Router::new(vec![dest("a"), dest("b")]).unwrap();
        assert_eq!(router.find("b").map(|(i, _)| i), Some(1));
        assert!(router.find("c").is_none());
    }

    #[test]
    fn events_go_exactly_where_the_filters_say() {
        let router = Router::new(vec![
            dest("invoices").with_filter(filter(r#"{"type":"invoice.*"}"#)),
            dest("live").with_filter(filter(r#"{"body":{"/livemode":true}}"#)),
            dest("shop").with_filter(filter(r#"{"header":{"X-Topic":"orders/*"}}"#)),
        ])
        .unwrap();
        let names = |kind: Option<&str>, headers: &[(String, String)], body: &str| -> Vec<&str> {
            router
                .route(EventView::new(kind, headers, body.as_bytes()))
                .iter()
                .map(|r| router.destinations()[r.destination()].name())
                .collect()
        };
        let topic = vec![("x-topic".to_owned(), "orders/paid".to_owned())];
        assert_eq!(
            names(Some("invoice.paid"), &[], r#"{"livemode":false}"#),
            ["invoices"]
        );
        assert_eq!(
            names(Some("invoice.paid"), &[], r#"{"livemode":true}"#),
            ["invoices", "live"]
        );
        assert_eq!(
            names(None, &topic, r#"{"livemode":true}"#),
            ["live", "shop"]
        );
        assert!(names(Some("charge.failed"), &[], "[]").is_empty());
        assert!(router.reads_bodies());
    }

    #[test]
    fn the_body_is_parsed_once_for_all_destinations_or_not_at_all() {
        let router = Router::new(vec![
            dest("a").with_filter(filter(r#"{"body":{"/k":1}}"#)),
            dest("b").with_order_key("/k".parse().unwrap()),
            dest("c").with_filter(filter(r#"{"body":{"/k":[1,2]}}"#)),
        ])
        .unwrap();
        let prepared = Prepared::new(EventView::new(None, &[], br#"{"k":1}"#));
        // Route by hand over the same Prepared to observe it.
        let matched: Vec<bool> = router
            .destinations()
            .iter()
            .map(|d| d.filter().is_none_or(|f| f.matches_prepared(&prepared)))
            .collect();
        assert_eq!(matched, [true, true, true]);
        assert!(prepared.parsed());

        let types_only = Router::new(vec![
            dest("a").with_filter(filter(r#"{"type":"x"}"#)),
            dest("b").with_order_key("header:X-Id".parse().unwrap()),
        ])
        .unwrap();
        assert!(!types_only.reads_bodies());
    }

    #[test]
    fn lane_keys_are_per_destination() {
        let router = Router::new(vec![
            dest("by-customer").with_order_key("/customer".parse().unwrap()),
            dest("by-shop").with_order_key("header:X-Shop".parse().unwrap()),
            dest("unordered"),
        ])
        .unwrap();
        let headers = vec![("X-Shop".to_owned(), "s1".to_owned())];
        let routed = router.route(EventView::new(None, &headers, br#"{"customer":"c9"}"#));
        let lanes: Vec<Option<&str>> = routed
            .iter()
            .map(|r| r.lane().map(LaneKey::as_str))
            .collect();
        assert_eq!(lanes, [Some("c9"), Some("s1"), None]);
        let routed = router.route(EventView::new(None, &[], b"{}"));
        assert!(routed.into_iter().all(|r| r.into_lane().is_none()));
    }
}
