//! Provider URL handshakes against `hookgate serve` as a process, over real HTTP: Meta's
//! `GET` with a verify token, Slack's and Discord's signed POSTs. Each is answered as the
//! provider requires, a forged one is refused like a forged delivery, nothing becomes an
//! event, and each is counted and recorded as a handshake. Then Okta's verification `GET`,
//! Asana's `X-Hook-Secret` POST and WooCommerce's ping, which are not signed the usual way,
//! and Microsoft Graph's `POST ?validationToken=` and Braintree's `GET ?bt_challenge=`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Serve, eventually, get, inbox_list};
use hookgate::{SchemeId, SignRequest, Signer};

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_CHALLENGE: &str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
/// RFC 8032 test 1: the seed signs, the public key verifies.
const DISCORD_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const DISCORD_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// A plain HTTP/1.1 request over a fresh connection: (status, content type, body).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String, String) {
    let (status, content_type, body, _) = send_full(addr, method, path, headers, body).await;
    (status, content_type, body)
}

/// [`send`], with the value of the answer's `X-Hook-Secret` header, if any.
async fn send_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String, String, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let hook_secret = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-hook-secret")
            .then(|| value.trim().to_owned())
    });
    (status, content_type, body.to_owned(), hook_secret)
}

fn signed(scheme: SchemeId, secret: &str, body: &str) -> (Vec<(String, String)>, Vec<u8>) {
    // Signed now: `serve` runs on the system clock.
    let delivery = Signer::new(scheme, secret)
        .unwrap()
        .sign(&SignRequest::new(body.to_owned()))
        .unwrap();
    (delivery.headers, delivery.body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_meta_slack_and_discord_handshakes_and_stores_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_with(
        dir.path(),
        &format!(
            r#"
            [[endpoint]]
            name = "meta"
            path = "/hooks/meta"
            scheme = "meta"
            keys = [{{ secret = "meta-app-secret" }}]
            verify_token = "meatyhamhock"

            [[endpoint]]
            name = "slack"
            path = "/hooks/slack"
            scheme = "slack"
            keys = [{{ secret = "{SLACK_SECRET}" }}]

            [[endpoint]]
            name = "discord"
            path = "/hooks/discord"
            scheme = "discord"
            keys = [{{ secret = "{DISCORD_PUBLIC}" }}]
            "#
        ),
    );
    let addr = serve.addr;

    // Meta: GET with the verify token → the challenge; another token → 403.
    let subscribe = "/hooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=";
    assert_eq!(
        get(addr, &format!("{subscribe}meatyhamhock")).await,
        (200, "1158201444".to_owned())
    );
    assert_eq!(
        get(addr, &format!("{subscribe}guessed")).await,
        (403, "handshake_refused".to_owned())
    );
    // GET is routed only for a scheme with a GET handshake.
    assert_eq!(get(addr, "/hooks/slack?hub.mode=subscribe").await.0, 405);

    // Slack: the signed url_verification → the challenge as text/plain; forged → 401.
    let check = format!(
        r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"{SLACK_CHALLENGE}","type":"url_verification"}}"#
    );
    let (headers, body) = signed(SchemeId::Slack, SLACK_SECRET, &check);
    assert_eq!(
        send(addr, "POST", "/hooks/slack", &headers, &body).await,
        (
            200,
            "text/plain; charset=utf-8".to_owned(),
            SLACK_CHALLENGE.to_owned()
        )
    );
    let (headers, body) = signed(SchemeId::Slack, "someone-else", &check);
    assert_eq!(
        send(addr, "POST", "/hooks/slack", &headers, &body).await.0,
        401
    );

    // Discord: a signed PING → PONG as JSON; a bad signature → 401.
    let ping = r#"{"id":"1","application_id":"2","type":1,"version":1}"#;
    let (headers, body) = signed(SchemeId::Discord, DISCORD_SEED, ping);
    assert_eq!(
        send(addr, "POST", "/hooks/discord", &headers, &body).await,
        (
            200,
            "application/json".to_owned(),
            r#"{"type":1}"#.to_owned()
        )
    );
    let tampered = ping.replace("\"version\":1", "\"version\":2");
    assert_eq!(
        send(
            addr,
            "POST",
            "/hooks/discord",
            &headers,
            tampered.as_bytes()
        )
        .await
        .0,
        401
    );

    // Counted by scheme, never as events; recorded in each endpoint's inbox as a handshake.
    let endpoints = [("meta", "meta"), ("slack", "slack"), ("discord", "discord")];
    counted_not_stored(addr, dir.path(), &endpoints).await;
    stop_and_check_recorded(
        &mut serve,
        dir.path(),
        &[
            ("meta", "meta", "meta_subscribe", None),
            ("slack", "slack", "slack_url_verification", Some("0")),
            ("discord", "discord", "discord_ping", Some("0")),
        ],
    )
    .await;
}

fn pairs(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Starts `serve` on a configuration file holding `endpoints` (TOML `[[endpoint]]` tables).
fn serve_with(dir: &Path, endpoints: &str) -> Serve {
    let config = dir.join("hookgate.toml");
    std::fs::write(&config, endpoints).unwrap();
    Serve::start(dir, &["--config", config.to_str().unwrap()])
}

/// Each `(endpoint, scheme)` counted one handshake in the metrics, and none stored an event.
async fn counted_not_stored(addr: SocketAddr, dir: &Path, endpoints: &[(&str, &str)]) {
    let (_, metrics) = get(addr, "/metrics").await;
    for (endpoint, scheme) in endpoints {
        assert!(
            metrics.contains(&format!(
                "hookgate_handshakes_total{{scheme=\"{scheme}\"}} 1"
            )),
            "{metrics}"
        );
        let events = inbox_list(dir, &["--endpoint", endpoint]).await;
        assert!(events.is_empty(), "{endpoint}: {events:?}");
    }
    assert!(!metrics.contains("hookgate_enqueued_total"), "{metrics}");
}

/// Stops `serve` cleanly, then checks that each endpoint's inbox recorded exactly one
/// handshake: `(endpoint, scheme, kind, key id)`.
async fn stop_and_check_recorded(
    serve: &mut Serve,
    dir: &Path,
    expected: &[(&str, &str, &str, Option<&str>)],
) {
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(serve.wait_exit(Duration::from_secs(60)), Some(0));
    for (endpoint, scheme, kind, key) in expected {
        let inbox = hookgate_inbox::Inbox::open(dir.join(format!("inbox-{endpoint}.db"))).unwrap();
        let recorded = inbox.handshakes(10).await.unwrap();
        assert_eq!(recorded.len(), 1, "{endpoint}: {recorded:?}");
        assert_eq!(recorded[0].scheme, *scheme);
        assert_eq!(recorded[0].kind, *kind);
        assert_eq!(recorded[0].key_id.as_deref(), *key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_okta_asana_and_woocommerce_handshakes_and_stores_none() {
    const ASANA_SECRET: &str = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_with(
        dir.path(),
        &format!(
            r#"
            [[endpoint]]
            name = "okta"
            path = "/hooks/okta"
            scheme = "okta"
            keys = [{{ secret = "my-shared-secret" }}]

            [[endpoint]]
            name = "asana"
            path = "/hooks/asana"
            scheme = "asana"
            keys = [{{ secret = "{ASANA_SECRET}" }}]

            [[endpoint]]
            name = "woocommerce"
            path = "/hooks/woocommerce"
            scheme = "woocommerce"
            keys = [{{ secret = "wc_whsec_9f8e7d6c5b4a" }}]
            "#
        ),
    );
    let addr = serve.addr;

    // Okta: the verification GET with the configured auth header → JSON; another → 401.
    let challenge = "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg";
    let okta = |auth: &'static str| {
        pairs(&[
            ("Authorization", auth),
            ("X-Okta-Verification-Challenge", challenge),
        ])
    };
    assert_eq!(
        send(addr, "GET", "/hooks/okta", &okta("my-shared-secret"), b"").await,
        (
            200,
            "application/json".to_owned(),
            format!(r#"{{"verification":"{challenge}"}}"#)
        )
    );
    assert_eq!(
        send(addr, "GET", "/hooks/okta", &okta("not-the-secret"), b"").await,
        (
            401,
            "text/plain; charset=utf-8".to_owned(),
            "token_mismatch".to_owned()
        )
    );

    // Asana: X-Hook-Secret equal to the configured key → echoed; a stranger's → 400, not
    // echoed (no key is ever learnt from a request).
    let answer = send_full(
        addr,
        "POST",
        "/hooks/asana",
        &pairs(&[("X-Hook-Secret", ASANA_SECRET)]),
        b"",
    )
    .await;
    assert_eq!(
        (answer.0, answer.2.as_str(), answer.3.as_deref()),
        (200, "", Some(ASANA_SECRET))
    );
    let answer = send_full(
        addr,
        "POST",
        "/hooks/asana",
        &pairs(&[("X-Hook-Secret", "attacker-chosen")]),
        b"",
    )
    .await;
    assert_eq!(
        (answer.0, answer.2.as_str(), answer.3),
        (400, "missing_header", None)
    );

    // WooCommerce: the ping → 200, empty; another unsigned body → 400.
    let form = pairs(&[("Content-Type", "application/x-www-form-urlencoded")]);
    assert_eq!(
        send(addr, "POST", "/hooks/woocommerce", &form, b"webhook_id=12")
            .await
            .0,
        200
    );
    assert_eq!(
        send(
            addr,
            "POST",
            "/hooks/woocommerce",
            &form,
            b"webhook_id=12&x=1"
        )
        .await
        .0,
        400
    );

    let endpoints = [
        ("okta", "okta"),
        ("asana", "asana"),
        ("woocommerce", "woocommerce"),
    ];
    counted_not_stored(addr, dir.path(), &endpoints).await;
    stop_and_check_recorded(
        &mut serve,
        dir.path(),
        &[
            ("okta", "okta", "okta_verification", Some("0")),
            ("asana", "asana", "asana_hook_secret", Some("0")),
            ("woocommerce", "woocommerce", "woocommerce_ping", None),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_graph_and_braintree_handshakes_and_stores_none() {
    const CLIENT_STATE: &str = "SecretClientState-8f14e45f";
    // braintree_python's unit-test key pair and official challenge (test_webhooks.py).
    const BRAINTREE_KEYS: &str = "integration_public_key:integration_private_key";
    let dir = tempfile::tempdir().unwrap();
    // No --public-url: the query of the POST reaches the gate all the same.
    let mut serve = serve_with(
        dir.path(),
        &format!(
            r#"
            [[endpoint]]
            name = "graph"
            path = "/hooks/graph"
            scheme = "microsoft-graph"
            keys = [{{ secret = "{CLIENT_STATE}" }}]

            [[endpoint]]
            name = "braintree"
            path = "/hooks/braintree"
            scheme = "braintree"
            keys = [{{ secret = "{BRAINTREE_KEYS}" }}]
            "#
        ),
    );
    let addr = serve.addr;

    // Graph: the empty POST ?validationToken= → the decoded token as text; the same POST with
    // a body is a delivery (no clientState: 400, nothing echoed); a wrong clientState → 401.
    let text = pairs(&[("Content-Type", "text/plain; charset=utf-8")]);
    let token_query = "/hooks/graph?validationToken=Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20Request-Id%3A%20522a8e7e-096a-494c-aaf1-ac0dcfca45b7";
    assert_eq!(
        send(addr, "POST", token_query, &text, b"").await,
        (
            200,
            "text/plain; charset=utf-8".to_owned(),
            "Validation: Testing client application reachability for subscription Request-Id: 522a8e7e-096a-494c-aaf1-ac0dcfca45b7".to_owned()
        )
    );
    let json = pairs(&[("Content-Type", "application/json")]);
    let unsigned = br#"{"value":[{"changeType":"created"}]}"#;
    let answer = send(addr, "POST", token_query, &json, unsigned).await;
    assert_eq!((answer.0, answer.2.as_str()), (400, "missing_signature"));
    let forged = br#"{"value":[{"changeType":"created","clientState":"guessed"}]}"#;
    let answer = send(addr, "POST", "/hooks/graph", &json, forged).await;
    assert_eq!((answer.0, answer.2.as_str()), (401, "token_mismatch"));

    // Braintree: the official challenge → the official answer; a malformed one → 400; none →
    // 403; a delivery signed with another private key → 401.
    assert_eq!(
        send(
            addr,
            "GET",
            "/hooks/braintree?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53",
            &[],
            b""
        )
        .await,
        (
            200,
            "text/plain; charset=utf-8".to_owned(),
            "integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4".to_owned()
        )
    );
    let answer = send(
        addr,
        "GET",
        "/hooks/braintree?bt_challenge=bad%20challenge",
        &[],
        b"",
    )
    .await;
    assert_eq!((answer.0, answer.2.as_str()), (400, "malformed_header"));
    let answer = send(addr, "GET", "/hooks/braintree", &[], b"").await;
    assert_eq!((answer.0, answer.2.as_str()), (403, "handshake_refused"));
    let (headers, body) = signed(
        SchemeId::Braintree,
        "integration_public_key:another_private_key",
        "<notification><kind>check</kind></notification>",
    );
    let answer = send(addr, "POST", "/hooks/braintree", &headers, &body).await;
    assert_eq!((answer.0, answer.2.as_str()), (401, "signature_mismatch"));

    counted_not_stored(
        addr,
        dir.path(),
        &[("graph", "microsoft-graph"), ("braintree", "braintree")],
    )
    .await;
    // Neither proves a key by its request: no key id is recorded.
    stop_and_check_recorded(
        &mut serve,
        dir.path(),
        &[
            (
                "graph",
                "microsoft-graph",
                "microsoft_graph_validation",
                None,
            ),
            ("braintree", "braintree", "braintree_challenge", None),
        ],
    )
    .await;
}

/// Azure Event Grid against `serve`: the `SubscriptionValidationEvent` POST and the CloudEvents
/// `OPTIONS`, each answered only with the token of the registered URL (or its Bearer delivery
/// property), refused like a forged delivery without it; both counted and recorded as
/// handshakes, none stored. A notification with the token is stored, and nothing `serve`
/// keeps (the inbox's files, its output) holds the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_azure_event_grid_handshakes_and_keeps_no_token() {
    const TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";
    // learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema.
    const VALIDATION: &str = r#"[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000000000-0000-0000-0000-00000000000000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2022-10-28T04:23:35.1981776Z","metadataVersion":"1","dataVersion":"1"}]"#;
    let dir = tempfile::tempdir().unwrap();
    let mut serve = serve_with(
        dir.path(),
        &format!(
            r#"
            [[endpoint]]
            name = "eventgrid"
            path = "/hooks/eventgrid"
            scheme = "azure-event-grid"
            keys = [{{ secret = "{TOKEN}" }}]

            [[endpoint]]
            name = "slack"
            path = "/hooks/slack"
            scheme = "slack"
            keys = [{{ secret = "{SLACK_SECRET}" }}]
            "#
        ),
    );
    let addr = serve.addr;
    let with_token = format!("/hooks/eventgrid?code={TOKEN}");

    let validation = pairs(&[
        ("Content-Type", "application/json"),
        ("aeg-event-type", "SubscriptionValidation"),
        ("aeg-subscription-name", "MYEVENTSUB"),
    ]);
    let (status, content_type, body) = send(
        addr,
        "POST",
        &with_token,
        &validation,
        VALIDATION.as_bytes(),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    let origin = pairs(&[("WebHook-Request-Origin", "eventgrid.azure.net")]);
    let bearer = pairs(&[
        ("WebHook-Request-Origin", "eventgrid.azure.net"),
        ("Authorization", &format!("Bearer {TOKEN}")),
    ]);
    let request = format!(
        "OPTIONS /hooks/eventgrid HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n{}\r\n",
        bearer
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect::<String>()
    );
    let head = raw_head(addr, &request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("webhook-allowed-origin: eventgrid.azure.net"),
        "{head}"
    );
    assert!(head.contains("webhook-allowed-rate: *"), "{head}");

    // Forged: no token, a wrong one; for the validation POST and the OPTIONS alike.
    for method in ["POST", "OPTIONS"] {
        let headers: Vec<(String, String)> = validation.iter().chain(&origin).cloned().collect();
        for (path, status, code) in [
            ("/hooks/eventgrid", 400, "missing_header"),
            ("/hooks/eventgrid?code=guess", 401, "token_mismatch"),
        ] {
            let answer = send(addr, method, path, &headers, VALIDATION.as_bytes()).await;
            assert_eq!(
                (answer.0, answer.2.as_str()),
                (status, code),
                "{method} {path}"
            );
        }
    }
    let answer = send(addr, "OPTIONS", &with_token, &[], b"").await;
    assert_eq!((answer.0, answer.2.as_str()), (403, "handshake_refused"));
    // OPTIONS goes to the gate only for a scheme validated with one.
    let head = raw_head(
        addr,
        "OPTIONS /hooks/slack HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(head.contains("allow: POST"), "{head}");
    let head = raw_head(
        addr,
        "GET /hooks/eventgrid HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(head.contains("allow: OPTIONS, POST"), "{head}");

    let (_, metrics) = get(addr, "/metrics").await;
    assert!(
        metrics.contains("hookgate_handshakes_total{scheme=\"azure-event-grid\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("hookgate_enqueued_total"), "{metrics}");
    assert!(
        inbox_list(dir.path(), &["--endpoint", "eventgrid"])
            .await
            .is_empty()
    );

    // A notification with the token is an event; the token stays out of what is kept.
    let notification = pairs(&[
        ("Content-Type", "application/json"),
        ("aeg-event-type", "Notification"),
    ]);
    let event = r#"[{"id":"831e1650-001e-001b-66ab-eeb76e069631","eventType":"Microsoft.Storage.BlobCreated","data":{}}]"#;
    let answer = send(addr, "POST", &with_token, &notification, event.as_bytes()).await;
    assert_eq!((answer.0, answer.2.as_str()), (200, "accepted"));
    // Another process reads the inbox once serve's applier has moved the event from the
    // log into the tables: wait for it (bounded), as the other inbox readers do.
    let events = eventually(
        Duration::from_secs(60),
        "the event in the inbox",
        || async {
            let events = inbox_list(dir.path(), &["--endpoint", "eventgrid"]).await;
            (!events.is_empty()).then_some(events)
        },
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(!format!("{events:?}").contains(TOKEN), "{events:?}");

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(serve.wait_exit(Duration::from_secs(60)), Some(0));
    let inbox = hookgate_inbox::Inbox::open(dir.path().join("inbox-eventgrid.db")).unwrap();
    let mut kinds: Vec<(String, String, Option<String>)> = inbox
        .handshakes(10)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.scheme, h.kind, h.key_id))
        .collect();
    kinds.sort();
    let scheme = "azure-event-grid".to_owned();
    assert_eq!(
        kinds,
        [
            (
                scheme.clone(),
                "cloudevents_options".to_owned(),
                Some("0".to_owned())
            ),
            (
                scheme,
                "event_grid_subscription_validation".to_owned(),
                Some("0".to_owned())
            ),
        ]
    );
    drop(inbox);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes())
                    || path.extension().is_some_and(|e| e == "toml"),
                "the token is in {}",
                path.display()
            );
        }
    }
    assert!(!serve.stdout().contains(TOKEN) && !serve.stderr().contains(TOKEN));
}

/// The head of the answer to a raw request, header names lower-cased.
async fn raw_head(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(head, _)| head);
    head.lines()
        .map(|line| match line.split_once(':') {
            Some((name, value)) => format!("{}:{value}", name.to_ascii_lowercase()),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
