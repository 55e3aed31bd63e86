//! The conformance harness: the case model, fixtures, the HTTP client and one runner per
//! adapter.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod cases;
pub mod client;
pub mod fixture;
pub mod runners;
#[path = "../../../../crates/hookgate/tests/support/mod.rs"]
pub mod vectors;

use std::fmt;

use bytes::Bytes;
use hookgate::SchemeId;

/// How a request body is framed on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` and the body.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of this many bytes.
    Chunked(usize),
    /// `Content-Length: N` and no body at all: the server must answer without reading.
    DeclaredOnly(u64),
}

/// One request of a case.
#[derive(Debug, Clone)]
pub struct Req {
    /// `POST`, or `GET` for a provider's GET handshake (the query is in `path`).
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub framing: Framing,
}

impl Req {
    pub fn new(headers: Vec<(String, String)>, body: impl Into<Bytes>) -> Self {
        Req {
            method: "POST",
            path: "/webhooks".to_owned(),
            headers,
            body: body.into(),
            framing: Framing::Length,
        }
    }

    /// A `GET` of `/webhooks?{query}` without a body.
    pub fn get(query: &str) -> Self {
        Req {
            method: "GET",
            path: format!("/webhooks?{query}"),
            headers: Vec::new(),
            body: Bytes::new(),
            framing: Framing::Length,
        }
    }

    /// The query string of `path`, if any.
    /// An `OPTIONS` to the endpoint with `query` (Azure Event Grid's CloudEvents validation).
    pub fn options(query: &str) -> Self {
        Req {
            method: "OPTIONS",
            ..Req::get(query)
        }
    }

    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, query)| query)
    }

    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    pub fn replacing(mut self, name: &str, value: &str) -> Self {
        for (k, v) in &mut self.headers {
            if k.eq_ignore_ascii_case(name) {
                *v = value.to_owned();
            }
        }
        self
    }

    /// Adds another value of a header (a repeated header).
    pub fn adding(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The order in which a case's requests are sent.
#[derive(Debug, Clone)]
pub enum Script {
    /// One after the other.
    Sequential(Vec<Req>),
    /// All at once; answers are compared in the listed order.
    Concurrent(Vec<Req>),
    /// `first` is sent and held inside the sink; meanwhile `copies` are sent at once and
    /// answered; then the sink opens, `first` is answered, and `after` are sent one by one.
    /// Needs [`SinkKind::Held`].
    Held {
        first: Req,
        copies: Vec<Req>,
        after: Vec<Req>,
    },
}

/// What the middleware does with a verified delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Gate mode: hand off to the sink and answer.
    Receive,
    /// Verify-only mode: pass the event on to the handler.
    VerifyOnly,
}

/// The sink behind the gate.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// A bounded channel of this capacity.
    Channel(usize),
    /// A channel whose receiver is gone.
    Closed,
    /// A channel that holds every enqueue until the script opens it.
    Held,
    /// A sink that never answers (the gate's deadline is short).
    Hanging,
}

/// The dedup store behind the gate.
#[derive(Debug, Clone)]
pub enum StoreKind {
    /// A fresh memory store (the gate's default in gate mode).
    Memory,
    /// None at all (verify-only gates only).
    Absent,
    /// A store that fails every call.
    Down,
    /// A memory store where another copy holds a claim on this key.
    Claimed(String),
    /// A memory store where this key is already committed.
    Committed(String),
}

/// A key of the verifier's keyring.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub secret: String,
    /// Unix seconds after which the key no longer verifies.
    pub not_after: Option<u64>,
}

/// How to build the gate of a case (a fresh one for every adapter).
#[derive(Debug, Clone)]
pub struct Setup {
    pub scheme: SchemeId,
    pub keys: Vec<KeySpec>,
    pub now: u64,
    pub tolerance: Option<u64>,
    pub url_per_request: bool,
    pub limit: usize,
    pub sink: SinkKind,
    pub store: StoreKind,
    pub success_status: u16,
    /// The verify token of a GET handshake (Meta).
    pub verify_token: Option<String>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub setup: Setup,
    pub mode: Mode,
    /// The public origin (URL-signing schemes): adapters combine it with the path.
    pub origin: Option<String>,
    pub script: Script,
    /// Status and code of each answer, in script order.
    pub expect: Vec<(u16, String)>,
    /// Events reaching the sink (gate mode) or the handler (verify-only mode).
    pub events: usize,
    /// Provider handshakes the sink was told about (gate mode; never events).
    pub handshakes: usize,
}

impl Case {
    /// Whether the core gate can run this case: a body announced and never sent only
    /// exists on the wire.
    pub fn runs_on_core(&self) -> bool {
        self.requests()
            .iter()
            .all(|req| !matches!(req.framing, Framing::DeclaredOnly(_)))
    }

    pub fn requests(&self) -> Vec<&Req> {
        match &self.script {
            Script::Sequential(reqs) | Script::Concurrent(reqs) => reqs.iter().collect(),
            Script::Held {
                first,
                copies,
                after,
            } => std::iter::once(first)
                .chain(copies.iter())
                .chain(after.iter())
                .collect(),
        }
    }
}

/// One answer as an adapter gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The response body: the code.
    pub code: String,
    pub retry_after: Option<String>,
    /// The `Content-Type` on the wire (the core gate has none).
    pub content_type: Option<String>,
    /// The `X-Hook-Secret` answered (Asana's handshake echo), if any.
    pub hook_secret: Option<String>,
}

impl Answer {
    fn without_wire_details(&self) -> Answer {
        Answer {
            content_type: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.code)?;
        if let Some(retry_after) = &self.retry_after {
            write!(f, " (Retry-After: {retry_after})")?;
        }
        if let Some(content_type) = &self.content_type {
            write!(f, " [{content_type}]")?;
        }
        Ok(())
    }
}

/// What one adapter did with one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub answers: Vec<Answer>,
    pub events: usize,
    pub handshakes: usize,
}

impl Run {
    /// The run as the core gate can see it: no `Content-Type`.
    fn without_wire_details(&self) -> Run {
        Run {
            answers: self
                .answers
                .iter()
                .map(Answer::without_wire_details)
                .collect(),
            events: self.events,
            handshakes: self.handshakes,
        }
    }
}

/// The adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// The gate called directly.
    Core,
    /// `hookgate_tower::GateLayer` behind hyper.
    Tower,
    /// `hookgate_actix::WebhookGate` behind actix-web.
    Actix,
    /// Verify-only cases: `hookgate_actix::VerifiedWebhook` alone, with a `WebhookConfig` in
    /// `app_data`.
    ActixExtractor,
    /// Verify-only cases without a public origin: `hookgate_tower::VerifiedWebhook` alone,
    /// with the gate as axum state (it takes URL-signing schemes' URL from the verifier only).
    AxumExtractor,
}

impl Adapter {
    pub const ALL: [Adapter; 5] = [
        Adapter::Core,
        Adapter::Tower,
        Adapter::Actix,
        Adapter::ActixExtractor,
        Adapter::AxumExtractor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Adapter::Core => "core",
            Adapter::Tower => "tower",
            Adapter::Actix => "actix",
            Adapter::ActixExtractor => "actix-extractor",
            Adapter::AxumExtractor => "axum-extractor",
        }
    }

    /// Whether this adapter can run `case`.
    pub fn runs(self, case: &Case) -> bool {
        match self {
            Adapter::Core => case.runs_on_core(),
            Adapter::Tower | Adapter::Actix => true,
            Adapter::ActixExtractor => case.mode == Mode::VerifyOnly,
            Adapter::AxumExtractor => case.mode == Mode::VerifyOnly && case.origin.is_none(),
        }
    }
}

/// Runs every case through every adapter; returns the disagreements and the number of runs
/// per adapter.
pub async fn check_all(cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    for case in cases {
        problems.extend(check(case).await);
    }
    problems
}

/// Runs one case through every adapter and lists what differs from the expectation or
/// between adapters.
pub async fn check(case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let mut runs: Vec<(Adapter, Run)> = Vec::new();
    for adapter in Adapter::ALL {
        if !adapter.runs(case) {
            continue;
        }
        let run = runners::run(adapter, case).await;
        runs.push((adapter, run));
    }
    for (adapter, run) in &runs {
        let got: Vec<(u16, String)> = run
            .answers
            .iter()
            .map(|a| (a.status, a.code.clone()))
            .collect();
        if got != case.expect {
            problems.push(format!(
                "[{}] {}: expected {:?}, got {:?}",
                adapter.name(),
                case.name,
                case.expect,
                got
            ));
        }
        if run.events != case.events {
            problems.push(format!(
                "[{}] {}: expected {} event(s), got {}",
                adapter.name(),
                case.name,
                case.events,
                run.events
            ));
        }
        if run.handshakes != case.handshakes {
            problems.push(format!(
                "[{}] {}: expected {} handshake(s) recorded by the sink, got {}",
                adapter.name(),
                case.name,
                case.handshakes,
                run.handshakes
            ));
        }
        // Asana's handshake: the X-Hook-Secret is echoed on a 200 handshake answer, and
        // never otherwise (a 4xx must not reflect a key guess back).
        for (req, answer) in case.requests().into_iter().zip(&run.answers) {
            let sent = req
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("X-Hook-Secret"))
                .map(|(_, value)| value.clone());
            let expected = sent.filter(|_| answer.status == 200);
            if answer.hook_secret != expected {
                problems.push(format!(
                    "[{}] {}: X-Hook-Secret answered {:?}, expected {:?}",
                    adapter.name(),
                    case.name,
                    answer.hook_secret,
                    expected
                ));
            }
        }
        for answer in &run.answers {
            if answer.retry_after.is_some() != (answer.status == 503) {
                problems.push(format!(
                    "[{}] {}: Retry-After must come with 503 and only with it: {answer}",
                    adapter.name(),
                    case.name
                ));
            }
        }
    }
    // Every adapter against the first, on what all of them can see; then the HTTP adapters
    // against each other on the wire details too.
    let http: Vec<(Adapter, Run)> = runs
        .iter()
        .filter(|(adapter, _)| *adapter != Adapter::Core)
        .cloned()
        .collect();
    let comparable: Vec<(Adapter, Run)> = runs
        .iter()
        .map(|(adapter, run)| (*adapter, run.without_wire_details()))
        .collect();
    for group in [comparable, http] {
        let Some(((first, reference), rest)) = group.split_first() else {
            continue;
        };
        for (adapter, run) in rest {
            if run != reference {
                problems.push(format!(
                    "{}: {} and {} disagree:\n    {}: {}\n    {}: {}",
                    case.name,
                    first.name(),
                    adapter.name(),
                    first.name(),
                    describe(reference),
                    adapter.name(),
                    describe(run)
                ));
            }
        }
    }
    problems
}

fn describe(run: &Run) -> String {
    let answers: Vec<String> = run.answers.iter().map(ToString::to_string).collect();
    format!(
        "[{}], {} event(s), {} handshake(s)",
        answers.join(", "),
        run.events,
        run.handshakes
    )
}
