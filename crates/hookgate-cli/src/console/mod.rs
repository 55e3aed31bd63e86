//! The web console: the inbox's event log as pages under `/_hookgate/`, and the same data as
//! a JSON API under `/_hookgate/api/`.
//!
//! - Everything but the login page and the stylesheet needs the console token, as
//!   `Authorization: Bearer TOKEN` or as the session cookie the login form sets (HttpOnly,
//!   SameSite=Strict); without it, 401.
//! - Writes (replaying dead letters) by a session need a same-origin request carrying the
//!   session's CSRF token; Bearer requests are not sent by browsers on their own.
//! - Every value that came with an event (body, headers, ids, types, errors) is escaped
//!   when rendered (maud escapes every splice), and a Content-Security-Policy without any
//!   script source is sent as a second line of defence. Header values that can be
//!   credentials are masked.
//! - The data comes from the same queries as `hookgate inbox`, through the store-neutral
//!   [`EventLog`] that the SQLite inbox and the PostgreSQL store both implement
//!   ([`LogQuery`], [`EventLog::entry`], [`EventLog::attempts`],
//!   [`EventLog::replay_dead_letters`], …); the JSON shapes are those of
//!   `hookgate inbox … --json`.

pub(crate) mod auth;
pub(crate) mod command;
mod pages;
mod rejections;

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use std::sync::Arc;

use hookgate_inbox::event_log::LogError;
use hookgate_inbox::{ArrivalCursor, EventId, EventLog, LogEntry, LogQuery, Replay, Status};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::duration::{parse_instant, rfc3339};
use crate::inbox::{EntryJson, deliveries_json, show_json, stats_json};
use auth::{Auth, COOKIE_NAME, Principal, SESSION_LIFETIME};

/// Where the console lives, on the receiver's listener or its own.
pub(crate) const PREFIX: &str = "/_hookgate";
/// The largest request body the console reads (a login or a replay form).
pub(crate) const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Events per page.
const PAGE_SIZE: usize = 50;
/// Most events per page of the JSON API.
const MAX_API_PAGE: usize = 1000;
/// Seconds between reloads of a live page, unless `?refresh=` says otherwise.
const DEFAULT_REFRESH: u32 = 10;
/// Hours of the activity chart by default, and at most.
const DEFAULT_HOURS: u64 = 3;
const MAX_HOURS: u64 = 24;
/// The most recent handshakes recorded in the store that the rejections page lists.
const HANDSHAKES_SHOWN: usize = 50;

/// One endpoint's event log (its SQLite inbox or its PostgreSQL store), by the endpoint's
/// name.
#[derive(Clone)]
pub(crate) struct ConsoleEndpoint {
    pub(crate) name: String,
    pub(crate) log: Arc<dyn EventLog>,
}

impl std::fmt::Debug for ConsoleEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleEndpoint")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The console: what it shows and who may see it.
#[derive(Debug)]
pub(crate) struct Console {
    auth: Auth,
    endpoints: Vec<ConsoleEndpoint>,
    metrics: Option<PrometheusHandle>,
    secure: bool,
}

type Body = Full<Bytes>;

/// What one request asks, once parsed.
struct Call<'a> {
    query: Vec<(String, String)>,
    endpoint: &'a ConsoleEndpoint,
    principal: Principal,
    csrf: String,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        param(&self.query, name)
    }
}

impl Console {
    /// A console over `endpoints` (at least one), guarded by `auth`. `metrics` gives the
    /// rejection counts (absent for `hookgate console`, which runs no gate); `secure` marks
    /// the session cookie `Secure` (HTTPS).
    pub(crate) fn new(
        auth: Auth,
        endpoints: Vec<ConsoleEndpoint>,
        metrics: Option<PrometheusHandle>,
        secure: bool,
    ) -> Console {
        Console {
            auth,
            endpoints,
            metrics,
            secure,
        }
    }

    /// Answers one request off the wire: reads its body (413 past [`MAX_REQUEST_BODY`]),
    /// then [`handle`](Self::handle)s it.
    pub(crate) async fn serve_request(
        &self,
        request: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        use http_body_util::BodyExt as _;
        let (parts, body) = request.into_parts();
        let body = match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let mut response = html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    pages::message("Too large", "The request body is too large."),
                );
                *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                return response;
            }
        };
        self.handle(Request::from_parts(parts, body)).await
    }

    /// Answers one request whose path starts with [`PREFIX`] (the body already read, at
    /// most [`MAX_REQUEST_BODY`]).
    pub(crate) async fn handle(&self, request: Request<Bytes>) -> Response<Body> {
        let now = SystemTime::now();
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return not_found();
        };
        let query: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        match (&parts.method, rest) {
            (&Method::GET, "" | "/") => return redirect(&format!("{PREFIX}/events"), None),
            (&Method::GET, "/style.css") => return stylesheet(),
            (&Method::GET, "/login") => {
                let next = safe_next(param(&query, "next"));
                if self.auth.principal(&parts.headers, now).is_some() {
                    return redirect(&next, None);
                }
                return html(StatusCode::OK, pages::login(&next, None));
            }
            (&Method::POST, "/login") => return self.login(&parts.headers, &body, now),
            (&Method::POST, "/logout") => {
                if !auth::same_origin(&parts.headers) {
                    return forbidden("cross_origin");
                }
                return redirect(
                    &format!("{PREFIX}/login"),
                    Some(self.cookie("", Duration::ZERO)),
                );
            }
            _ => {}
        }
        let api = rest.starts_with("/api/");
        let Some(principal) = self.auth.principal(&parts.headers, now) else {
            if api {
                let mut response = json(
                    StatusCode::UNAUTHORIZED,
                    &serde_json::json!({"error": "unauthorized"}),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"hookgate console\""),
                );
                return response;
            }
            let next = parts
                .uri
                .path_and_query()
                .map_or(PREFIX, |p| p.as_str())
                .to_owned();
            let next = if parts.method == Method::GET {
                safe_next(Some(&next))
            } else {
                format!("{PREFIX}/events")
            };
            return html(StatusCode::UNAUTHORIZED, pages::login(&next, None));
        };
        let endpoint = match param(&query, "endpoint") {
            Some(name) if !name.is_empty() => self.endpoints.iter().find(|e| e.name == name),
            _ => self.endpoints.first(),
        };
        let Some(endpoint) = endpoint else {
            return if api {
                json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "unknown_endpoint"}),
                )
            } else {
                html(
                    StatusCode::NOT_FOUND,
                    pages::message("No such endpoint", "This console has no such endpoint."),
                )
            };
        };
        let call = Call {
            csrf: self.auth.csrf_token(&principal),
            query,
            endpoint,
            principal,
        };
        let result = match (&parts.method, rest) {
            (&Method::GET, "/events") => self.list_page(&call, now).await,
            (&Method::GET, "/dead") => self.dead_page(&call).await,
            (&Method::GET, "/activity") => self.activity_page(&call, now).await,
            (&Method::GET, "/rejections") => self.rejections_page(&call).await,
            (&Method::POST, "/replay") => self.replay_form(&call, &parts.headers, &body).await,
            (&Method::GET, "/api/events") => self.api_list(&call, now, false).await,
            (&Method::GET, "/api/dead") => self.api_list(&call, now, true).await,
            (&Method::GET, "/api/stats") => self.api_stats(&call).await,
            (&Method::GET, "/api/activity") => self.api_activity(&call, now).await,
            (&Method::GET, "/api/rejections") => self.api_rejections(&call).await,
            (&Method::POST, "/api/replay") => self.api_replay(&call, &parts.headers, &body).await,
            (&Method::GET, other) => match other
                .strip_prefix("/events/")
                .map(|id| (false, id))
                .or_else(|| other.strip_prefix("/api/events/").map(|id| (true, id)))
            {
                Some((api, id)) => match id.parse::<i64>() {
                    Ok(id) if api => self.api_event(&call, id).await,
                    Ok(id) => self.detail_page(&call, id).await,
                    Err(_) => Err(Failure::NotFound),
                },
                None => Err(Failure::NotFound),
            },
            (_, _) => Err(Failure::NotFound),
        };
        result.unwrap_or_else(|failure| failure.response(api))
    }

    fn login(&self, headers: &http::HeaderMap, body: &Bytes, now: SystemTime) -> Response<Body> {
        let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let next = safe_next(param(&form, "next"));
        if !auth::same_origin(headers) {
            return forbidden("cross_origin");
        }
        let token = param(&form, "token").unwrap_or("");
        if !self.auth.token_matches(token) {
            return html(
                StatusCode::UNAUTHORIZED,
                pages::login(&next, Some("That is not the console token.")),
            );
        }
        match self.auth.new_session(now) {
            Ok(session) => redirect(&next, Some(self.cookie(&session, SESSION_LIFETIME))),
            Err(error) => Failure::Store(error.to_string()).response(false),
        }
    }

    /// A `Set-Cookie` value for the session cookie (an empty value and no lifetime ends it).
    fn cookie(&self, value: &str, lifetime: Duration) -> String {
        format!(
            "{COOKIE_NAME}={value}; Path={PREFIX}/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            lifetime.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn context<'a>(&'a self, call: &'a Call<'_>, refresh: Option<u32>) -> pages::Context<'a> {
        pages::Context {
            endpoint: &call.endpoint.name,
            endpoints: self.endpoints.iter().map(|e| e.name.as_str()).collect(),
            csrf: &call.csrf,
            refresh,
            signed_in: matches!(call.principal, Principal::Session(_)),
        }
    }

    fn refresh(call: &Call<'_>, default: u32) -> Result<Option<u32>, Failure> {
        let seconds = match call.param("refresh") {
            None | Some("") => default,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|s| *s <= 3600)
                .ok_or_else(|| Failure::BadRequest("refresh: seconds from 0 to 3600".into()))?,
        };
        Ok((seconds > 0).then_some(seconds))
    }

    async fn list_page(&self, call: &Call<'_>, now: SystemTime) -> Result<Response<Body>, Failure> {
        let refresh = Self::refresh(call, DEFAULT_REFRESH)?;
        let filter = Filter::parse(&call.query, now, false);
        let (entries, error) = match &filter {
            Ok(filter) => (self.page(call.endpoint, filter).await?, None),
            Err(message) => (Vec::new(), Some(message.as_str())),
        };
        let counts = call.endpoint.log.status_counts().await?;
        let shown = filter
            .clone()
            .unwrap_or_else(|_| Filter::lenient(&call.query));
        let status = if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        Ok(html(
            status,
            pages::list(
                &self.context(call, refresh),
                &shown,
                &entries,
                &counts,
                error,
            ),
        ))
    }

    async fn dead_page(&self, call: &Call<'_>) -> Result<Response<Body>, Failure> {
        let refresh = Self::refresh(call, DEFAULT_REFRESH)?;
        let filter =
            Filter::parse(&call.query, SystemTime::now(), true).map_err(Failure::BadRequest)?;
        let entries = self.page(call.endpoint, &filter).await?;
        let counts = call.endpoint.log.status_counts().await?;
        let replayed = call.param("replayed").and_then(|n| n.parse::<u64>().ok());
        Ok(html(
            StatusCode::OK,
            pages::dead(
                &self.context(call, refresh),
                &filter,
                &entries,
                counts.dead,
                replayed,
            ),
        ))
    }

    async fn detail_page(&self, call: &Call<'_>, id: i64) -> Result<Response<Body>, Failure> {
        let log = &call.endpoint.log;
        let id = EventId::new(id);
        let entry = log.entry(id).await?.ok_or(Failure::NotFound)?;
        let attempts = log.attempts(id).await?;
        let deliveries = log.deliveries(id).await?;
        let content = log.content(id).await?;
        // A page about an event still on its way reloads until it has arrived somewhere.
        let settled = matches!(
            entry.status,
            Status::Processed | Status::Dead | Status::Filtered
        );
        let refresh = Self::refresh(call, if settled { 0 } else { 5 })?;
        let headers: Vec<(String, String)> = content
            .as_ref()
            .map(|c| {
                c.headers
                    .iter()
                    .map(|(n, v)| (n.clone(), shown_header_value(n, v).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let body = content.map(|c| c.body).unwrap_or_default();
        Ok(html(
            StatusCode::OK,
            pages::detail(
                &self.context(call, refresh),
                &entry,
                &attempts,
                &deliveries,
                &headers,
                &body,
            ),
        ))
    }

    async fn activity_page(
        &self,
        call: &Call<'_>,
        now: SystemTime,
    ) -> Result<Response<Body>, Failure> {
        let refresh = Self::refresh(call, DEFAULT_REFRESH)?;
        let hours = hours(call)?;
        let minutes = call
            .endpoint
            .log
            .activity_per_minute(hours_before(now, hours), now)
            .await?;
        Ok(html(
            StatusCode::OK,
            pages::activity(&self.context(call, refresh), hours, &minutes),
        ))
    }

    async fn rejections_page(&self, call: &Call<'_>) -> Result<Response<Body>, Failure> {
        let refresh = Self::refresh(call, DEFAULT_REFRESH)?;
        let counts = rejections::Counts::read(self.metrics.as_ref());
        let handshakes = call.endpoint.log.handshakes(HANDSHAKES_SHOWN).await?;
        Ok(html(
            StatusCode::OK,
            pages::rejections(&self.context(call, refresh), &counts, &handshakes),
        ))
    }

    async fn api_rejections(&self, call: &Call<'_>) -> Result<Response<Body>, Failure> {
        let mut value = rejections::Counts::read(self.metrics.as_ref()).to_json();
        let handshakes = call.endpoint.log.handshakes(HANDSHAKES_SHOWN).await?;
        let recorded: Vec<serde_json::Value> = handshakes
            .iter()
            .map(|h| {
                serde_json::json!({
                    "received_at": rfc3339(h.received_at),
                    "scheme": h.scheme,
                    "kind": h.kind,
                    "key_id": h.key_id,
                })
            })
            .collect();
        if let Some(object) = value.as_object_mut() {
            object.insert("recorded_handshakes".to_owned(), recorded.into());
        }
        Ok(json(StatusCode::OK, &value))
    }

    async fn replay_form(
        &self,
        call: &Call<'_>,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> Result<Response<Body>, Failure> {
        let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        self.auth
            .write_allowed(&call.principal, headers, param(&form, "csrf"))
            .map_err(Failure::Forbidden)?;
        let which = replay_target(param(&form, "all"), param(&form, "id"))?;
        let replayed = call.endpoint.log.replay_dead_letters(which).await?;
        let next = safe_next(param(&form, "next"));
        let separator = if next.contains('?') { '&' } else { '?' };
        Ok(redirect(
            &format!("{next}{separator}replayed={replayed}"),
            None,
        ))
    }

    async fn api_replay(
        &self,
        call: &Call<'_>,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> Result<Response<Body>, Failure> {
        let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        self.auth
            .write_allowed(&call.principal, headers, csrf)
            .map_err(Failure::Forbidden)?;
        let request: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
            Failure::BadRequest("a JSON object: {\"ids\": [..]} or {\"all\": true}".into())
        })?;
        let which = if request.get("all").and_then(serde_json::Value::as_bool) == Some(true) {
            Replay::All
        } else {
            let ids = request
                .get("ids")
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| Failure::BadRequest("\"ids\" (an array) or \"all\": true".into()))?;
            let ids: Option<Vec<EventId>> =
                ids.iter().map(|id| id.as_i64().map(EventId::new)).collect();
            Replay::Ids(ids.ok_or_else(|| Failure::BadRequest("ids are integers".into()))?)
        };
        let replayed = call.endpoint.log.replay_dead_letters(which).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "replayed": replayed }),
        ))
    }

    async fn api_list(
        &self,
        call: &Call<'_>,
        now: SystemTime,
        dead: bool,
    ) -> Result<Response<Body>, Failure> {
        let filter = Filter::parse(&call.query, now, dead).map_err(Failure::BadRequest)?;
        let entries = self.page(call.endpoint, &filter).await?;
        let last = entries.last().filter(|_| entries.len() == filter.limit);
        let (next_before, next_after) = match last {
            Some(last) if filter.by_arrival() => (None, Some(ArrivalCursor::after(last).to_text())),
            Some(last) => (Some(last.id.get()), None),
            None => (None, None),
        };
        let events: Vec<EntryJson<'_>> = entries.iter().map(EntryJson::new).collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "events": events,
                "next_before": next_before,
                "next_after": next_after,
            }),
        ))
    }

    async fn api_event(&self, call: &Call<'_>, id: i64) -> Result<Response<Body>, Failure> {
        let log = &call.endpoint.log;
        let id = EventId::new(id);
        let entry = log.entry(id).await?.ok_or(Failure::NotFound)?;
        let attempts = log.attempts(id).await?;
        let content = log.content(id).await?;
        let stored = content
            .as_ref()
            .map(|c| (c.body.as_ref(), c.headers.as_slice()));
        let deliveries = log.deliveries(id).await?;
        let mut value = show_json(&entry, &attempts, stored);
        if let (false, Some(object)) = (deliveries.is_empty(), value.as_object_mut()) {
            object.insert("deliveries".to_owned(), deliveries_json(&deliveries));
        }
        if let Some(headers) = value
            .get_mut("headers")
            .and_then(serde_json::Value::as_array_mut)
        {
            for pair in headers.iter_mut() {
                if let Some([name, value]) = pair.as_array_mut().map(Vec::as_mut_slice) {
                    if let (Some(n), Some(v)) = (name.as_str(), value.as_str()) {
                        *value = shown_header_value(n, v).into_owned().into();
                    }
                }
            }
        }
        Ok(json(StatusCode::OK, &value))
    }

    async fn api_stats(&self, call: &Call<'_>) -> Result<Response<Body>, Failure> {
        let counts = call.endpoint.log.status_counts().await?;
        Ok(json(StatusCode::OK, &stats_json(&counts)))
    }

    async fn api_activity(
        &self,
        call: &Call<'_>,
        now: SystemTime,
    ) -> Result<Response<Body>, Failure> {
        let hours = hours(call)?;
        let minutes = call
            .endpoint
            .log
            .activity_per_minute(hours_before(now, hours), now)
            .await?;
        let minutes: Vec<serde_json::Value> = minutes
            .iter()
            .map(|m| {
                serde_json::json!({
                    "minute": rfc3339(m.minute),
                    "received": m.received,
                    "processed": m.processed,
                    "failed": m.failed,
                })
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "minutes": minutes }),
        ))
    }

    /// One page of the log: the inbox's own query, keyset-paged by id, or by arrival
    /// within a time window (where the arrival index gives the order without a sort).
    async fn page(
        &self,
        endpoint: &ConsoleEndpoint,
        filter: &Filter,
    ) -> Result<Vec<LogEntry>, Failure> {
        if filter.by_arrival() {
            return Ok(endpoint
                .log
                .query_by_arrival(filter.query(), filter.after)
                .await?);
        }
        Ok(endpoint.log.query(filter.query()).await?)
    }
}

/// The event-list filters of a page or an API call, as [`LogQuery`] takes them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) statuses: Vec<Status>,
    pub(crate) event_type: String,
    pub(crate) delivery_id: String,
    pub(crate) scheme: String,
    /// Only events with a delivery to this destination (an endpoint with destinations).
    pub(crate) destination: String,
    /// As typed (RFC 3339, Unix seconds or a duration ago), and as an instant.
    pub(crate) since: String,
    pub(crate) until: String,
    since_at: Option<SystemTime>,
    until_at: Option<SystemTime>,
    pub(crate) include_test: bool,
    pub(crate) before: Option<i64>,
    /// Within a time window: the page starts after this arrival.
    pub(crate) after: Option<ArrivalCursor>,
    pub(crate) limit: usize,
}

impl Filter {
    /// The filters of a query string. `dead` forces the dead-letter view (test deliveries
    /// included, as [`EventLog::dead_letters`] does).
    fn parse(query: &[(String, String)], now: SystemTime, dead: bool) -> Result<Filter, String> {
        let mut filter = Filter::lenient(query);
        for (name, value) in query {
            if name == "status" && !value.is_empty() {
                let status: Status = value.parse().map_err(|_| {
                    format!(
                        "unknown status {value:?}; one of {}",
                        Status::ALL.map(Status::as_str).join(", ")
                    )
                })?;
                if !filter.statuses.contains(&status) {
                    filter.statuses.push(status);
                }
            }
        }
        if dead {
            filter.statuses = vec![Status::Dead];
            filter.include_test = true;
        }
        let instant = |text: &str, what: &str| -> Result<Option<SystemTime>, String> {
            if text.is_empty() {
                return Ok(None);
            }
            parse_instant(text, now)
                .map(Some)
                .map_err(|e| format!("{what}: {e}"))
        };
        filter.since_at = instant(&filter.since, "since")?;
        filter.until_at = instant(&filter.until, "until")?;
        if let Some(text) = param(query, "before").filter(|t| !t.is_empty()) {
            filter.before = Some(text.parse().map_err(|_| "before: an event id".to_owned())?);
        }
        if let Some(text) = param(query, "after").filter(|t| !t.is_empty()) {
            filter.after = Some(
                ArrivalCursor::parse(text)
                    .ok_or_else(|| "after: a cursor from the previous page".to_owned())?,
            );
        }
        if let Some(text) = param(query, "limit").filter(|t| !t.is_empty()) {
            filter.limit = text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_API_PAGE).contains(n))
                .ok_or_else(|| format!("limit: from 1 to {MAX_API_PAGE}"))?;
        }
        Ok(filter)
    }

    /// The text fields as given, for showing the form again after an error.
    fn lenient(query: &[(String, String)]) -> Filter {
        let text = |name: &str| param(query, name).unwrap_or("").trim().to_owned();
        Filter {
            statuses: query
                .iter()
                .filter(|(n, _)| n == "status")
                .filter_map(|(_, v)| v.parse().ok())
                .collect(),
            event_type: text("type"),
            delivery_id: text("delivery"),
            scheme: text("scheme"),
            destination: text("destination"),
            since: text("since"),
            until: text("until"),
            include_test: param(query, "test").is_some_and(|v| v == "1" || v == "on"),
            limit: PAGE_SIZE,
            ..Filter::default()
        }
    }

    /// Whether pages go by arrival (a time window) rather than by id.
    pub(crate) fn by_arrival(&self) -> bool {
        self.since_at.is_some() || self.until_at.is_some()
    }

    /// The inbox query: the same [`LogQuery`] as `hookgate inbox list`.
    fn query(&self) -> LogQuery {
        let mut query = LogQuery::new()
            .include_test(self.include_test)
            .limit(self.limit);
        for status in &self.statuses {
            query = query.status(*status);
        }
        if !self.event_type.is_empty() {
            query = query.event_type(self.event_type.clone());
        }
        if !self.delivery_id.is_empty() {
            query = query.delivery_id(self.delivery_id.clone());
        }
        if !self.scheme.is_empty() {
            query = query.scheme(self.scheme.clone());
        }
        if !self.destination.is_empty() {
            query = query.destination(self.destination.clone());
        }
        if let Some(at) = self.since_at {
            query = query.received_after(at);
        }
        if let Some(at) = self.until_at {
            query = query.received_before(at);
        }
        if let Some(id) = self.before {
            query = query.before_id(EventId::new(id));
        }
        query
    }

    /// The query string of these filters (for the next page's link), without `before`.
    pub(crate) fn query_string(&self, endpoint: &str) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        out.append_pair("endpoint", endpoint);
        for status in &self.statuses {
            out.append_pair("status", status.as_str());
        }
        for (name, value) in [
            ("type", &self.event_type),
            ("delivery", &self.delivery_id),
            ("scheme", &self.scheme),
            ("destination", &self.destination),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.is_empty() {
                out.append_pair(name, value);
            }
        }
        if self.include_test {
            out.append_pair("test", "1");
        }
        out.finish()
    }
}

/// Why a request got no page.
#[derive(Debug)]
enum Failure {
    NotFound,
    BadRequest(String),
    Forbidden(&'static str),
    Store(String),
}

impl From<LogError> for Failure {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Invalid(message) => Failure::BadRequest(message),
            other => Failure::Store(other.to_string()),
        }
    }
}

impl Failure {
    fn response(self, api: bool) -> Response<Body> {
        let (status, code, message) = match self {
            Failure::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found.".to_owned()),
            Failure::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message),
            Failure::Forbidden(code) => (
                StatusCode::FORBIDDEN,
                code,
                "This write was refused: it must come from a console page of this server, \
                 with its form token (reload the page and try again)."
                    .to_owned(),
            ),
            Failure::Store(message) => {
                crate::note(&format!("console: {message}"));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    "The event store could not answer; the receiver's log says why.".to_owned(),
                )
            }
        };
        if api {
            json(
                status,
                &serde_json::json!({"error": code, "message": message}),
            )
        } else {
            html(
                status,
                pages::message(status.canonical_reason().unwrap_or(""), &message),
            )
        }
    }
}

/// What `POST replay` asks for: every dead letter, or one by id.
fn replay_target(all: Option<&str>, id: Option<&str>) -> Result<Replay, Failure> {
    if all == Some("1") {
        return Ok(Replay::All);
    }
    let id = id
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(|| Failure::BadRequest("replay: an event id, or all=1".into()))?;
    Ok(Replay::Id(EventId::new(id)))
}

fn hours(call: &Call<'_>) -> Result<u64, Failure> {
    match call.param("hours") {
        None | Some("") => Ok(DEFAULT_HOURS),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|h| (1..=MAX_HOURS).contains(h))
            .ok_or_else(|| Failure::BadRequest(format!("hours: from 1 to {MAX_HOURS}"))),
    }
}

/// `hours` hours before `now`.
fn hours_before(now: SystemTime, hours: u64) -> SystemTime {
    now.checked_sub(Duration::from_secs(hours.saturating_mul(3600)))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Where to go after a login or a write: a path of this console only, never another site
/// (`//evil.example`, `/\evil.example`) — an open redirect would help phishing.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with(&format!("{PREFIX}/"))
                && !next.contains("//")
                && !next.contains('\\')
                && !next.chars().any(char::is_control) =>
        {
            next.to_owned()
        }
        _ => format!("{PREFIX}/events"),
    }
}

/// A header value as the console shows it: credentials (a GitLab token, an Authorization
/// or Cookie header) are masked, whatever the scheme kept.
pub(crate) fn shown_header_value<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    let name = name.to_ascii_lowercase();
    let secret = [
        "authorization",
        "cookie",
        "token",
        "secret",
        "password",
        "api-key",
        "apikey",
    ]
    .iter()
    .any(|word| name.contains(word));
    if secret {
        Cow::Borrowed("(hidden)")
    } else {
        Cow::Borrowed(value)
    }
}

fn security_headers(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn html(status: StatusCode, markup: maud::Markup) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(markup.into_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(&mut response);
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    security_headers(&mut response);
    response
}

fn redirect(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    security_headers(&mut response);
    response
}

fn forbidden(code: &'static str) -> Response<Body> {
    Failure::Forbidden(code).response(false)
}

fn not_found() -> Response<Body> {
    Failure::NotFound.response(false)
}

fn stylesheet() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        include_str!("style.css").as_bytes(),
    )));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests;
