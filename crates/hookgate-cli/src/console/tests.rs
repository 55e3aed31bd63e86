//! The console's handlers, in process over a real inbox and over a real PostgreSQL store:
//! authentication, escaping, filters, replay, the CSRF rules and the recorded handshakes.

#![allow(clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

use hookgate::{SchemeId, SignRequest, Signer, Verifier};
use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, RetryPolicy, Worker};
use hookgate_postgres::PgStore;
use http::HeaderMap;

use super::*;

const TOKEN: &str = "handler-test-console-token";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HOST: &str = "127.0.0.1:8787";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// Which store a fixture's console reads.
#[derive(Debug, Clone, Copy)]
enum Store {
    Inbox,
    Postgres,
}

struct Fixture {
    _dir: tempfile::TempDir,
    _postgres: Option<hookgate_testkit::Postgres>,
    console: Console,
    log: Arc<dyn EventLog>,
    /// A Slack gate over the same store, to record a handshake.
    slack: hookgate::Gate,
}

/// A store holding `events` (delivery id, body), every one a dead letter whose one attempt
/// failed with "downstream said no", and a console over it. `None` when the store's server
/// is not installed (the test is then skipped, as every backend test is).
async fn fixture(store: Store, events: &[(&str, &str)]) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new(SchemeId::StandardWebhooksV1, SECRET).unwrap();
    let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()
        .unwrap();
    let verified: Vec<hookgate::VerifiedEvent> = events
        .iter()
        .map(|(id, body)| {
            let delivery = signer
                .sign(&SignRequest::new(body.to_string()).id(id.to_string()))
                .unwrap();
            verifier.verify(&delivery.headers, delivery.body).unwrap()
        })
        .collect();
    let slack = Verifier::builder(SchemeId::Slack)
        .secret(SLACK_SECRET)
        .build()
        .unwrap();
    let (log, slack, postgres): (Arc<dyn EventLog>, _, _) = match store {
        Store::Inbox => {
            let inbox = dead_inbox(&dir, &verified).await;
            let gate = inbox.gate(slack).build().unwrap();
            (Arc::new(inbox), gate, None)
        }
        Store::Postgres => {
            let postgres = hookgate_testkit::Postgres::start()?;
            let store = dead_postgres(&postgres.url(), &verified).await;
            let gate = store.gate(slack).build().unwrap();
            (Arc::new(store), gate, Some(postgres))
        }
    };
    let console = Console::new(
        Auth::new(TOKEN).unwrap(),
        vec![ConsoleEndpoint {
            name: "default".to_owned(),
            log: log.clone(),
        }],
        None,
        false,
    );
    Some(Fixture {
        _dir: dir,
        _postgres: postgres,
        console,
        log,
        slack,
    })
}

/// An inbox whose worker killed every event.
async fn dead_inbox(dir: &tempfile::TempDir, events: &[hookgate::VerifiedEvent]) -> Inbox {
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .no_scheduled_pruning()
        .open()
        .unwrap();
    for event in events {
        inbox.enqueue(event).await.unwrap();
    }
    let worker = Worker::builder(inbox.clone(), |_: InboxEvent| async {
        HandlerResult::fail("downstream said no")
    })
    .poll_interval(Duration::from_millis(10))
    .retry(RetryPolicy::new().max_attempts(1))
    .start()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while inbox.status_counts().await.unwrap().dead != events.len() as u64 {
        assert!(Instant::now() < deadline, "events did not die");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    inbox
}

/// A PostgreSQL store whose every event died after one failed attempt (written as the
/// worker writes it, without running one: the console only reads the log).
async fn dead_postgres(url: &str, events: &[hookgate::VerifiedEvent]) -> PgStore {
    let store = PgStore::connect(url).await.unwrap();
    for event in events {
        store.enqueue(event).await.unwrap();
    }
    let (client, connection) =
        hookgate_postgres::tokio_postgres::connect(url, hookgate_postgres::tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "UPDATE hookgate.events SET status = 'dead', attempts = 1, started_at = now(),
                 finished_at = now(), duration_ms = 1, last_error = 'downstream said no',
                 dead_at = now(), due_at = NULL;
             INSERT INTO hookgate.attempts (event_id, attempt, started_at, finished_at, outcome, error)
                 SELECT id, 1, now(), now(), 'dead', 'downstream said no' FROM hookgate.events;",
        )
        .await
        .unwrap();
    store
}

/// Runs a check against the console over the SQLite inbox, then over PostgreSQL.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod inbox {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Store::Inbox).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Store::Postgres).await;
                }
            )*
        }
    };
}

on_both_stores!(
    without_the_token_every_page_and_api_call_is_401,
    bodies_types_and_errors_are_escaped_everywhere,
    filters_and_keyset_pages_use_the_store_query,
    replay_needs_the_origin_and_the_sessions_csrf_token,
    live_pages_refresh_themselves_unless_told_not_to,
    handshakes_recorded_in_the_store_are_listed,
    deliveries_per_destination_are_shown_and_filter_the_list,
);

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Bytes> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::from(body.to_owned())).unwrap()
}

fn bearer() -> (&'static str, String) {
    ("authorization", format!("Bearer {TOKEN}"))
}

async fn get(console: &Console, uri: &str) -> (StatusCode, HeaderMap, String) {
    let (name, value) = bearer();
    send(console, request("GET", uri, &[(name, &value)], "")).await
}

async fn send(console: &Console, request: Request<Bytes>) -> (StatusCode, HeaderMap, String) {
    use http_body_util::BodyExt as _;
    let response = console.handle(request).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Signs in through the login form: the cookie header to send, and the page's CSRF token.
async fn login(console: &Console) -> (String, String) {
    let (status, headers, _) = send(
        console,
        request(
            "POST",
            "/_hookgate/login",
            &[
                ("origin", "http://127.0.0.1:8787"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!("token={TOKEN}&next=%2F_hookgate%2Fdead"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/_hookgate/dead");
    let set_cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/_hookgate/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let (status, _, page) = send(
        console,
        request(
            "GET",
            "/_hookgate/dead?refresh=0",
            &[("cookie", &cookie)],
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

async fn without_the_token_every_page_and_api_call_is_401(store: Store) {
    let Some(f) = fixture(store, &[("msg_1", r#"{"type":"a"}"#)]).await else {
        return;
    };
    for uri in [
        "/_hookgate/events",
        "/_hookgate/events/1",
        "/_hookgate/dead",
        "/_hookgate/activity",
        "/_hookgate/rejections",
    ] {
        let (status, _, page) = send(&f.console, request("GET", uri, &[], "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(page.contains("name=\"token\""), "{uri}: the login form");
        assert!(!page.contains("msg_1"), "{uri}: nothing of the log");
    }
    for (method, uri) in [
        ("GET", "/_hookgate/api/events"),
        ("GET", "/_hookgate/api/events/1"),
        ("GET", "/_hookgate/api/stats"),
        ("POST", "/_hookgate/api/replay"),
    ] {
        let (status, headers, body) = send(
            &f.console,
            request(
                method,
                uri,
                &[("authorization", "Bearer not-the-console-token")],
                r#"{"all":true}"#,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(headers.contains_key("www-authenticate"));
        assert_eq!(body, r#"{"error":"unauthorized"}"#);
    }
    assert_eq!(f.log.status_counts().await.unwrap().dead, 1);
    // The stylesheet and the login page need no token.
    let (status, _, _) = send(&f.console, request("GET", "/_hookgate/style.css", &[], "")).await;
    assert_eq!(status, StatusCode::OK);
    // A wrong token on the login form: 401 again, no cookie.
    let (status, headers, _) = send(
        &f.console,
        request(
            "POST",
            "/_hookgate/login",
            &[("origin", "http://127.0.0.1:8787")],
            "token=wrong-token-wrong-token",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!headers.contains_key("set-cookie"));
    // A login posted from another site: refused (login CSRF).
    let (status, _, _) = send(
        &f.console,
        request(
            "POST",
            "/_hookgate/login",
            &[("origin", "http://evil.example")],
            &format!("token={TOKEN}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Bearer and the login cookie both work.
    let (status, _, _) = get(&f.console, "/_hookgate/events").await;
    assert_eq!(status, StatusCode::OK);
    login(&f.console).await;
}

async fn bodies_types_and_errors_are_escaped_everywhere(store: Store) {
    let probe = r#"{"type":"<script>alert('type')</script>","html":"<script>alert(1)</script><img src=x onerror=alert(2)>"}"#;
    let Some(f) = fixture(store, &[("msg_<b>id</b>", probe)]).await else {
        return;
    };
    for uri in [
        "/_hookgate/events?refresh=0",
        "/_hookgate/events/1",
        "/_hookgate/dead",
    ] {
        let (status, headers, page) = get(&f.console, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(!page.contains("<script"), "{uri}: {page}");
        assert!(!page.contains("<img"), "{uri}");
        assert!(!page.contains("<b>"), "{uri}");
        assert!(page.contains("&lt;script&gt;alert('type')"), "{uri}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    let (_, _, detail) = get(&f.console, "/_hookgate/events/1").await;
    assert!(
        detail.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{detail}"
    );
    // Pretty-printed JSON.
    assert!(detail.contains("{\n  &quot;html&quot;: "), "{detail}");
    // The JSON API is JSON, not HTML.
    let (_, headers, body) = get(&f.console, "/_hookgate/api/events/1").await;
    assert_eq!(headers["content-type"], "application/json");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["body"], probe);
}

async fn filters_and_keyset_pages_use_the_store_query(store: Store) {
    let events: Vec<(String, String)> = (1..=7)
        .map(|n| {
            let kind = if n % 2 == 0 { "even" } else { "odd" };
            (format!("msg_{n}"), format!(r#"{{"type":"{kind}"}}"#))
        })
        .collect();
    let refs: Vec<(&str, &str)> = events
        .iter()
        .map(|(id, body)| (id.as_str(), body.as_str()))
        .collect();
    let Some(f) = fixture(store, &refs).await else {
        return;
    };
    let ids = |body: &str| -> Vec<i64> {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        value["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?type=even").await;
    assert_eq!(ids(&body), [6, 4, 2]);
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?delivery=msg_5").await;
    assert_eq!(ids(&body), [5]);
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?status=processed").await;
    assert_eq!(ids(&body), Vec::<i64>::new());
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?status=dead&since=1h").await;
    assert_eq!(ids(&body).len(), 7);
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?until=1h").await;
    assert_eq!(ids(&body), Vec::<i64>::new());
    // Keyset pages: 3, then the next 3 before the last id, then the rest.
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?limit=3").await;
    assert_eq!(ids(&body), [7, 6, 5]);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["next_before"], 5);
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?limit=3&before=5").await;
    assert_eq!(ids(&body), [4, 3, 2]);
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?limit=3&before=2").await;
    assert_eq!(ids(&body), [1]);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["next_before"], serde_json::Value::Null);
    // Within a time window, pages go by arrival: the same rows, each once.
    let (_, _, body) = get(&f.console, "/_hookgate/api/events?since=1h&limit=4").await;
    let first = ids(&body);
    assert_eq!(first.len(), 4);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["next_before"], serde_json::Value::Null);
    let after = value["next_after"].as_str().unwrap().to_owned();
    let (status, _, body) = get(
        &f.console,
        &format!("/_hookgate/api/events?since=1h&limit=4&after={after}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut all: Vec<i64> = first.into_iter().chain(ids(&body)).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=7).collect::<Vec<i64>>());
    let (_, _, page) = get(&f.console, "/_hookgate/events?refresh=0&limit=4&since=1h").await;
    assert!(page.contains("since=1h&amp;after="), "{page}");
    // The HTML page: same rows, and an "older" link with the filters kept.
    let (_, _, page) = get(&f.console, "/_hookgate/events?type=odd&refresh=0").await;
    assert_eq!(page.matches("<tr data-id=").count(), 4);
    let (_, _, page) = get(&f.console, "/_hookgate/events?refresh=0&limit=2&type=odd").await;
    assert!(page.contains("type=odd&amp;before=5"), "{page}");
    // Bad input: a clear 400, never a panic.
    for uri in [
        "/_hookgate/api/events?status=bogus",
        "/_hookgate/api/events?since=yesterday-ish",
        "/_hookgate/api/events?limit=0",
        "/_hookgate/api/events?before=x",
        "/_hookgate/api/events?since=1h&after=nope",
        "/_hookgate/api/activity?hours=999",
    ] {
        let (status, _, body) = get(&f.console, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    let (status, _, page) = get(&f.console, "/_hookgate/events?since=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("since:"), "{page}");
    let (status, _, _) = get(&f.console, "/_hookgate/events/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&f.console, "/_hookgate/events?endpoint=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Stats and activity come from the same inbox.
    let (_, _, body) = get(&f.console, "/_hookgate/api/stats").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["dead"],
        7
    );
    let (_, _, body) = get(&f.console, "/_hookgate/api/activity?hours=1").await;
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let received: u64 = value["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["received"].as_u64().unwrap())
        .sum();
    assert_eq!(received, 7);
}

async fn replay_needs_the_origin_and_the_sessions_csrf_token(store: Store) {
    let Some(f) = fixture(
        store,
        &[("msg_1", r#"{"type":"a"}"#), ("msg_2", r#"{"type":"b"}"#)],
    )
    .await
    else {
        return;
    };
    let (cookie, csrf) = login(&f.console).await;
    let form = |csrf: &str| format!("csrf={csrf}&id=1&next=%2F_hookgate%2Fdead");
    let refused = [
        // No Origin, no Referer.
        (vec![("cookie", cookie.as_str())], form(&csrf)),
        // Another site.
        (
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "http://evil.example"),
            ],
            form(&csrf),
        ),
        // The right origin, but no token or another session's.
        (
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "http://127.0.0.1:8787"),
            ],
            "id=1".to_owned(),
        ),
        (
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "http://127.0.0.1:8787"),
            ],
            form("0123456789abcdef"),
        ),
    ];
    for (headers, body) in refused {
        let (status, _, _) = send(
            &f.console,
            request("POST", "/_hookgate/replay", &headers, &body),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?} {body}");
    }
    // The JSON API with a cookie also needs the token, in X-CSRF-Token.
    let (status, _, _) = send(
        &f.console,
        request(
            "POST",
            "/_hookgate/api/replay",
            &[("cookie", &cookie), ("origin", "http://127.0.0.1:8787")],
            r#"{"all":true}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        f.log.status_counts().await.unwrap().dead,
        2,
        "nothing replayed"
    );

    let (status, headers, _) = send(
        &f.console,
        request(
            "POST",
            "/_hookgate/replay",
            &[("cookie", &cookie), ("origin", "http://127.0.0.1:8787")],
            &form(&csrf),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/_hookgate/dead?replayed=1");
    let entry = f.log.entry(EventId::new(1)).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Queued);
    // A Bearer client replays through the API without a CSRF token.
    let (name, value) = bearer();
    let (status, _, body) = send(
        &f.console,
        request(
            "POST",
            "/_hookgate/api/replay",
            &[(name, &value)],
            r#"{"ids":[2]}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"replayed":1}"#);
    assert_eq!(f.log.status_counts().await.unwrap().dead, 0);
    // An open redirect is not on offer.
    assert_eq!(safe_next(Some("//evil.example/x")), "/_hookgate/events");
    assert_eq!(safe_next(Some("https://evil.example")), "/_hookgate/events");
    assert_eq!(safe_next(Some("/_hookgate/\\evil")), "/_hookgate/events");
    assert_eq!(safe_next(Some("/_hookgate/dead")), "/_hookgate/dead");
}

#[test]
fn credentials_in_headers_are_masked() {
    assert_eq!(shown_header_value("X-Gitlab-Token", "s3cret"), "(hidden)");
    assert_eq!(shown_header_value("Authorization", "Basic x"), "(hidden)");
    assert_eq!(shown_header_value("X-GitHub-Event", "push"), "push");
}

async fn live_pages_refresh_themselves_unless_told_not_to(store: Store) {
    let Some(f) = fixture(store, &[("msg_1", r#"{"type":"a"}"#)]).await else {
        return;
    };
    let (_, _, page) = get(&f.console, "/_hookgate/events").await;
    assert!(page.contains(r#"<meta http-equiv="refresh" content="10">"#));
    let (_, _, page) = get(&f.console, "/_hookgate/events?refresh=0").await;
    assert!(!page.contains("http-equiv=\"refresh\""));
    // A settled event's page does not reload by itself.
    let (_, _, page) = get(&f.console, "/_hookgate/events/1").await;
    assert!(!page.contains("http-equiv=\"refresh\""));
}

async fn handshakes_recorded_in_the_store_are_listed(store: Store) {
    let Some(f) = fixture(store, &[("msg_1", r#"{"type":"a"}"#)]).await else {
        return;
    };
    let (_, _, page) = get(&f.console, "/_hookgate/rejections?refresh=0").await;
    assert!(page.contains("None recorded."), "{page}");
    let check = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"<b>3eZbrw1aB</b>","type":"url_verification"}"#;
    let delivery = Signer::new(SchemeId::Slack, SLACK_SECRET)
        .unwrap()
        .sign(&SignRequest::new(check))
        .unwrap();
    let outcome = f
        .slack
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!(outcome.code(), "handshake", "{outcome:?}");
    let (status, _, page) = get(&f.console, "/_hookgate/rejections?refresh=0").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Handshakes recorded in the store"), "{page}");
    assert!(page.contains("slack_url_verification"), "{page}");
    assert!(
        !page.contains("3eZbrw1aB"),
        "nothing of the request: {page}"
    );
    let (_, _, body) = get(&f.console, "/_hookgate/api/rejections").await;
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["recorded_handshakes"][0]["scheme"], "slack");
    assert_eq!(
        value["recorded_handshakes"][0]["kind"],
        "slack_url_verification"
    );
    // Never an event.
    assert_eq!(f.log.status_counts().await.unwrap().total(), 1);
}

/// A store of an endpoint with destinations `billing` (invoices only, every call failing
/// with markup in its error) and `audit` (everything, succeeding), two events (an invoice,
/// a charge) run through the real worker loop, and a console over it.
async fn routed(
    store: Store,
) -> Option<(
    Console,
    Option<hookgate_testkit::Postgres>,
    tempfile::TempDir,
)> {
    use hookgate_queue::{Destination, DestinationTarget, EventFilter, Router};

    let dir = tempfile::tempdir().unwrap();
    let filter = serde_json::from_str(r#"{"body":{"/kind":"invoice"}}"#).unwrap();
    let destinations = vec![
        Destination::new("billing", DestinationTarget::Exec("true".into()))
            .unwrap()
            .with_filter(EventFilter::compile(&filter).unwrap())
            .with_retry(RetryPolicy::new().max_attempts(1))
            .unwrap(),
        Destination::new("audit", DestinationTarget::Exec("true".into())).unwrap(),
    ];
    let router = Router::new(destinations.clone()).unwrap();
    let signer = Signer::new(SchemeId::StandardWebhooksV1, SECRET).unwrap();
    let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()
        .unwrap();
    let events: Vec<hookgate::VerifiedEvent> = [("msg_1", "invoice"), ("msg_2", "charge")]
        .iter()
        .map(|(id, kind)| {
            let body = format!(r#"{{"kind":"{kind}"}}"#);
            let delivery = signer.sign(&SignRequest::new(body).id(*id)).unwrap();
            verifier.verify(&delivery.headers, delivery.body).unwrap()
        })
        .collect();
    let result = |destination: Option<&str>| match destination {
        Some("billing") => HandlerResult::fail("<b>billing</b> said no"),
        _ => HandlerResult::Ok,
    };
    let (log, postgres): (Arc<dyn EventLog>, _) = match store {
        Store::Inbox => {
            let inbox = Inbox::builder(dir.path().join("inbox.db"))
                .destinations(router)
                .no_scheduled_pruning()
                .open()
                .unwrap();
            for event in &events {
                inbox.enqueue(event).await.unwrap();
            }
            let worker = Worker::builder(inbox.clone(), move |event: InboxEvent| {
                let outcome = result(event.destination());
                async move { outcome }
            })
            .poll_interval(Duration::from_millis(10))
            .destinations("default", &destinations)
            .start()
            .unwrap();
            settled(&inbox).await;
            worker.shutdown().await;
            (Arc::new(inbox), None)
        }
        Store::Postgres => {
            let postgres = hookgate_testkit::Postgres::start()?;
            let store = PgStore::builder()
                .destinations(router)
                .connect(&postgres.url())
                .await
                .unwrap();
            for event in &events {
                store.enqueue(event).await.unwrap();
            }
            let worker = hookgate_postgres::PgWorker::builder(
                &store,
                move |event: hookgate_queue::QueuedEvent| {
                    let outcome = result(event.destination());
                    async move { outcome }
                },
            )
            .poll_interval(Duration::from_millis(10))
            .destinations("default", &destinations)
            .start()
            .unwrap();
            settled(&store).await;
            worker.shutdown().await;
            (Arc::new(store), Some(postgres))
        }
    };
    let console = Console::new(
        Auth::new(TOKEN).unwrap(),
        vec![ConsoleEndpoint {
            name: "default".to_owned(),
            log,
        }],
        None,
        false,
    );
    Some((console, postgres, dir))
}

/// Waits until billing's delivery is dead and audit's two are processed.
async fn settled(log: &dyn EventLog) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = log.delivery_counts().await.unwrap();
        if counts.contains(&("billing".to_owned(), Status::Dead, 1))
            && counts.contains(&("audit".to_owned(), Status::Processed, 2))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not settle: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn deliveries_per_destination_are_shown_and_filter_the_list(store: Store) {
    let Some((console, _postgres, _dir)) = routed(store).await else {
        return;
    };
    let (status, _, page) = get(&console, "/_hookgate/events/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h2>Deliveries</h2>"), "{page}");
    let billing = page.find(">billing</a>").expect("billing's row");
    let audit = page.find(">audit</a>").expect("audit's row");
    assert!(billing < audit, "in the endpoint's order");
    assert!(
        page.contains("&lt;b&gt;billing&lt;/b&gt; said no"),
        "{page}"
    );
    assert!(!page.contains("<b>billing"), "escaped");
    assert!(page.contains("/_hookgate/events?endpoint=default&amp;destination=billing"));
    // The charge went to audit alone.
    let (_, _, page) = get(&console, "/_hookgate/events/2").await;
    assert!(
        page.contains(">audit</a>") && !page.contains(">billing</a>"),
        "{page}"
    );

    let ids = |body: &str| -> Vec<i64> {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        value["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let (_, _, body) = get(&console, "/_hookgate/api/events?destination=billing").await;
    assert_eq!(ids(&body), [1]);
    let (_, _, body) = get(&console, "/_hookgate/api/events?destination=audit").await;
    assert_eq!(ids(&body), [2, 1]);
    let (_, _, body) = get(&console, "/_hookgate/api/events?destination=nowhere").await;
    assert_eq!(ids(&body), Vec::<i64>::new());
    // The HTML list keeps the filter in its form and its links.
    let (status, _, page) = get(&console, "/_hookgate/events?destination=billing&refresh=0").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"name="destination" value="billing""#),
        "{page}"
    );
    // The JSON API gives each delivery's state.
    let (_, _, body) = get(&console, "/_hookgate/api/events/1").await;
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    let deliveries = value["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["destination"], "billing");
    assert_eq!(deliveries[0]["status"], "dead");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert_eq!(deliveries[0]["last_error"], "<b>billing</b> said no");
    assert_eq!(deliveries[1]["status"], "processed");
}
