//! The web console in a real browser: headless Chromium, driven over the W3C WebDriver
//! protocol by chromedriver, against a running `hookgate serve --console` fed by
//! `hookgate send`, once over the SQLite inbox and once over a PostgreSQL store
//! (`serve --store postgres://… --console`).
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Without them the test says so in one line and passes, except under
//! `HOOKGATE_REQUIRE_SERVICES=1`, where it fails. With `HOOKGATE_CONSOLE_SCREENSHOTS=DIR`
//! it saves a PNG of each page of the inbox run there (how docs/console/ was made).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Serve, hookgate, inbox_list};
use serde_json::{Value, json};

const TOKEN: &str = "browser-test-console-token";
/// How long any one condition may take before the test fails (a hang guard).
const LIMIT: Duration = Duration::from_secs(60);

/// The first of `names` found on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// chromedriver, killed on drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok((200, status)) = driver.try_call("GET", "/status", None) {
                if status["value"]["ready"] == json!(true) {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command: (HTTP status, JSON answer).
    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Value)> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte)? == 0 {
                break;
            }
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body);
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }
}

/// A browser session.
struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    screenshots: Option<PathBuf>,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_call("DELETE", &format!("/session/{}", self.session), None);
    }
}

impl<'a> Browser<'a> {
    fn open(driver: &'a Driver, chromium: &Path, screenshots: bool) -> Browser<'a> {
        let (status, answer) = driver
            .try_call(
                "POST",
                "/session",
                Some(&json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1280,900"]
                    }
                }}})),
            )
            .unwrap();
        assert_eq!(status, 200, "new session: {answer}");
        Browser {
            driver,
            session: answer["value"]["sessionId"].as_str().unwrap().to_owned(),
            screenshots: std::env::var_os("HOOKGATE_CONSOLE_SCREENSHOTS")
                .filter(|_| screenshots)
                .map(PathBuf::from),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self
            .driver
            .try_call(
                method,
                &format!("/session/{}{path}", self.session),
                body.as_ref(),
            )
            .unwrap();
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn elements(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["element-6066-11e4-a52e-4f735466cecf"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
    }

    fn element(&self, css: &str) -> String {
        let found = self.elements(css);
        assert!(!found.is_empty(), "no element {css} on {}", self.url());
        found[0].clone()
    }

    fn text(&self, css: &str) -> String {
        let element = self.element(css);
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The text of `css`, or `None` while the page is being replaced (a refresh).
    fn try_text(&self, css: &str) -> Option<String> {
        let path = |p: String| format!("/session/{}{p}", self.session);
        let (status, found) = self
            .driver
            .try_call(
                "POST",
                &path("/element".to_owned()),
                Some(&json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        let element = found["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str()?;
        if status != 200 {
            return None;
        }
        let (status, text) = self
            .driver
            .try_call("GET", &path(format!("/element/{element}/text")), None)
            .ok()?;
        (status == 200).then(|| text["value"].as_str().unwrap_or("").to_owned())
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn script(&self, source: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": source, "args": []})),
        )
    }

    /// Whether a JavaScript dialog (`alert`) is open.
    fn alert_open(&self) -> bool {
        let (status, _) = self
            .driver
            .try_call(
                "GET",
                &format!("/session/{}/alert/text", self.session),
                None,
            )
            .unwrap();
        status == 200
    }

    /// Waits until `check` holds, re-reading the page as it is (a page that refreshes
    /// itself is not navigated).
    fn wait_for(&self, what: &str, mut check: impl FnMut(&Browser<'_>) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&self, name: &str) {
        let Some(dir) = &self.screenshots else {
            return;
        };
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    fn rows(&self) -> usize {
        self.elements("table.events tbody tr").len()
    }
}

/// The tools, or `None` after saying why the test does not run.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            let message = "console browser test skipped: chromium and chromedriver not on PATH \
                           (Debian: apt-get install chromium chromium-driver)";
            assert!(
                std::env::var("HOOKGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{message}, and HOOKGATE_REQUIRE_SERVICES=1"
            );
            eprintln!("{message}");
            None
        }
    }
}

async fn send(serve: &Serve, secret: &str, args: &[&str]) {
    let mut all = vec!["send", "--secret", secret, "-q"];
    all.extend_from_slice(args);
    let url = serve.url("/webhooks");
    all.insert(1, &url);
    let run = hookgate(&all).await;
    assert_eq!(run.code, 0, "{run:?}");
}

/// The events of `hookgate inbox list --json --all` over the data directory's inbox, or
/// over the PostgreSQL store at `store`.
async fn listed(serve: &Serve, store: Option<&str>, extra: &[&str]) -> Vec<Value> {
    let Some(url) = store else {
        return inbox_list(&serve.data_dir, extra).await;
    };
    let mut args = vec!["inbox", "--store", url, "list", "--json", "--all"];
    args.extend_from_slice(extra);
    let run = hookgate(&args).await;
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_filters_replays_and_never_runs_a_body() {
    let Some(tools) = tools() else {
        return;
    };
    drive(tools, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_over_postgres_lists_filters_replays_and_never_runs_a_body() {
    let Some(tools) = tools() else {
        return;
    };
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    drive(tools, Some(&postgres.url())).await;
}

/// The whole walk through the console of a `serve` keeping its events in the data
/// directory's inbox, or in the PostgreSQL store at `store`.
async fn drive((chromium, chromedriver): (PathBuf, PathBuf), store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("downstream-up");
    let exec = format!("test -f '{}'", marker.display());
    // Every event dies at first (the command fails until the marker exists).
    let mut args = vec![
        "--console",
        "--console-token",
        TOKEN,
        "--exec",
        &exec,
        "--max-attempts",
        "1",
    ];
    if let Some(url) = store {
        args.extend(["--store", url]);
    }
    let serve = Serve::start(&dir.path().join("data"), &args);
    let secret = serve.generated_secret();
    send(
        &serve,
        &secret,
        &["--count", "3", "--event-type", "invoice.paid"],
    )
    .await;
    send(
        &serve,
        &secret,
        &["--count", "2", "--event-type", "customer.created"],
    )
    .await;
    let xss = dir.path().join("xss.json");
    std::fs::write(
        &xss,
        r#"{"type":"xss.probe","note":"<script>document.title='pwned';window.__pwned=1;alert(1)</script><img src=x onerror=\"window.__pwned=2;alert(2)\">"}"#,
    )
    .unwrap();
    send(
        &serve,
        &secret,
        &["--body-file", xss.to_str().unwrap(), "--id", "msg_xss"],
    )
    .await;
    // A forged delivery, for the rejections page.
    let forged = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "-q",
    ])
    .await;
    assert_eq!(forged.code, 1, "{forged:?}");
    common::eventually(LIMIT, "six dead letters", || async {
        let events = listed(&serve, store, &["--status", "dead"]).await;
        (events.len() == 6).then_some(())
    })
    .await;
    let events = listed(&serve, store, &[]).await;
    let id_of = |delivery: &str| {
        events
            .iter()
            .find(|e| e["delivery_id"] == delivery)
            .map(|e| e["id"].as_i64().unwrap())
            .unwrap()
    };
    let xss_id = id_of("msg_xss");
    let replayed_id = events
        .iter()
        .find(|e| e["event_type"] == "invoice.paid")
        .map(|e| e["id"].as_i64().unwrap())
        .unwrap();

    let driver = Driver::start(&chromedriver);
    let browser = Browser::open(&driver, &chromium, store.is_none());
    let console = |path: &str| serve.url(&format!("/_hookgate{path}"));

    // Without the token: the login page (401), then the list once signed in.
    browser.go(&console("/events?refresh=0"));
    browser.element("input[name=token]");
    browser.screenshot("login");
    browser.type_into("input[name=token]", TOKEN);
    browser.click("form button[type=submit]");
    browser.wait_for("the event list", |b| !b.elements("table.events").is_empty());
    assert_eq!(browser.rows(), 6, "every event is listed");
    browser.screenshot("events");

    // A filter narrows the list.
    browser.type_into("input[name=type]", "customer.created");
    browser.click("#apply-filters");
    browser.wait_for("the filtered list", |b| {
        b.url().contains("type=customer.created")
    });
    assert_eq!(browser.rows(), 2);
    for cell in browser.elements("table.events tbody td.type") {
        let text = browser.call("GET", &format!("/element/{cell}/text"), None);
        assert_eq!(text, "customer.created");
    }

    // The body with a script is shown as text and runs nothing.
    browser.go(&console(&format!("/events/{xss_id}?refresh=0")));
    let body = browser.text("pre#body");
    assert!(body.contains("<script>document.title='pwned'"), "{body}");
    assert!(body.contains("<img src=x onerror="), "{body}");
    assert!(!browser.alert_open(), "an alert opened");
    let state = browser.script("return [document.title, typeof window.__pwned];");
    assert_eq!(state[1], "undefined", "the body's script ran: {state}");
    assert!(!state[0].as_str().unwrap().contains("pwned"), "{state}");
    assert!(browser.elements("pre#body script, pre#body img").is_empty());
    browser.screenshot("event-detail");

    // A dead letter replayed with its button, once the downstream works, ends processed;
    // the detail page refreshes itself until it shows that.
    std::fs::write(&marker, b"").unwrap();
    browser.go(&console("/dead?refresh=0"));
    assert_eq!(browser.rows(), 6);
    browser.screenshot("dead-letters");
    browser.click(&format!("tr[data-id=\"{replayed_id}\"] button.replay"));
    browser.wait_for("the replay notice", |b| !b.elements("p.notice").is_empty());
    assert!(browser.text("p.notice").contains("Replayed 1"));
    browser.go(&console(&format!("/events/{replayed_id}?refresh=1")));
    browser.wait_for("the replayed event to show processed", |b| {
        b.try_text("#status").as_deref() == Some("processed")
    });
    assert!(browser.text("table.attempts").contains("dead"));
    browser.screenshot("event-processed");

    browser.go(&console("/activity?refresh=0"));
    assert_eq!(browser.elements("svg.chart polyline").len(), 3);
    browser.screenshot("activity");

    browser.go(&console("/rejections?refresh=0"));
    assert!(browser.text("main").contains("signature_mismatch"));
    browser.screenshot("rejections");

    // The log the console showed is the store's: `hookgate inbox` reads the same.
    let after = listed(&serve, store, &["--status", "processed"]).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], replayed_id);
}
