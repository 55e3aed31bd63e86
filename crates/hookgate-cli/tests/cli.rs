//! The `hookgate` binary end to end: provider vectors, sign/verify round trips, usage errors,
//! JSON output, and secrets that never show up in any output.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../hookgate/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use hookgate::SchemeId;
use support::Vector;

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn first_line(&self) -> &str {
        self.stdout.lines().next().unwrap_or("")
    }

    fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    fn assert_usage_error(&self, stderr_mentions: &str) {
        assert_eq!(self.code, 2, "expected exit 2: {self:?}");
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:?}");
        assert!(
            self.stderr.contains(stderr_mentions),
            "stderr should mention {stderr_mentions:?}: {self:?}"
        );
    }
}

/// Runs `hookgate` with `args`, `stdin` piped in and `HOOKGATE_SECRET` unset.
fn hookgate<I, S>(args: I, stdin: &[u8]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    hookgate_env(args, stdin, None)
}

fn hookgate_env<I, S>(args: I, stdin: &[u8], secret_env: Option<&str>) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    command
        .args(args)
        .env_remove("HOOKGATE_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(secret) = secret_env {
        command.env("HOOKGATE_SECRET", secret);
    }
    let mut child = command.spawn().expect("the hookgate binary starts");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // A child that exits before reading (a usage error) closes the pipe: not a test failure.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// A fresh file under the test target directory holding `contents`.
fn temp_file(contents: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hookgate-cli-{}-{n}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// Provider vectors

/// The `verify` arguments for a vector; the body goes through a file when `via_file`, else
/// through stdin.
fn vector_args(vector: &Vector, via_file: bool) -> Vec<String> {
    let mut args = strings(&[
        "verify",
        "--scheme",
        &vector.scheme,
        "--secret",
        &vector.secret,
    ]);
    for (name, value) in vector.header_pairs() {
        args.push("--header".to_owned());
        args.push(format!("{name}: {value}"));
    }
    args.push("--now".to_owned());
    args.push(vector.now.to_string());
    if let Some(tolerance) = vector.tolerance_s {
        args.push("--tolerance".to_owned());
        args.push(tolerance.to_string());
    }
    if let Some(url) = &vector.url {
        args.push("--url".to_owned());
        args.push(url.clone());
    }
    if let Some(method) = &vector.method {
        args.push("--method".to_owned());
        args.push(method.clone());
    }
    if via_file {
        args.push("--body-file".to_owned());
        args.push(temp_file(&vector.body_bytes()).display().to_string());
    }
    args
}

fn run_vector(vector: &Vector, via_file: bool, extra: &[&str]) -> Run {
    let mut args = vector_args(vector, via_file);
    args.extend(strings(extra));
    let stdin = if via_file {
        Vec::new()
    } else {
        vector.body_bytes()
    };
    hookgate(args, &stdin)
}

fn expected_first_line(expect: &str) -> String {
    if expect == "valid" {
        "valid (key 0)".to_owned()
    } else {
        format!("invalid: {expect}")
    }
}

#[test]
fn every_provider_vector_gives_its_result_through_the_cli() {
    let vectors = support::load();
    assert!(vectors.len() >= 200, "expected the full vector set");
    let mut failures = Vec::new();
    // scheme -> (valid runs, rejected runs)
    let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (index, vector) in vectors.iter().enumerate() {
        let strict = vector.strict_expect.as_deref().unwrap_or(&vector.expect);
        let mut check = |extra: &[&str], expect: &str| {
            let run = run_vector(vector, index % 2 == 0, extra);
            let want = expected_first_line(expect);
            let want_code = if expect == "valid" { 0 } else { 1 };
            if run.first_line() != want || run.code != want_code {
                failures.push(format!(
                    "{} [{}] {extra:?}: expected `{want}` (exit {want_code}), got `{}` (exit {}) {}",
                    vector.id,
                    vector.case,
                    run.first_line(),
                    run.code,
                    run.stderr.trim()
                ));
            }
            let counts = seen.entry(vector.scheme.clone()).or_default();
            if expect == "valid" {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        };
        check(&[], strict);
        // Stripe's and Paddle's own libraries accept future timestamps: --accept-future does.
        if vector.strict_expect.is_some() {
            check(&["--accept-future"], &vector.expect);
        }
    }
    // A scheme with no rejected vector still gets one: its valid delivery with the body changed.
    for id in SchemeId::ALL {
        let counts = seen.get(id.as_str()).copied().unwrap_or_default();
        assert!(counts.0 > 0, "no valid vector ran for {id}");
        if counts.1 > 0 {
            continue;
        }
        let mut tampered = vectors
            .iter()
            .find(|v| v.scheme == id.as_str() && v.expect == "valid")
            .unwrap()
            .clone();
        let mut body = tampered.body_bytes();
        body.push(b' ');
        tampered.body_b64 = None;
        tampered.body = String::from_utf8(body).unwrap();
        let run = run_vector(&tampered, false, &[]);
        if run.first_line() != "invalid: signature_mismatch" || run.code != 1 {
            failures.push(format!("{id} tampered body: got {run:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn json_output_is_one_parsable_object_for_valid_and_invalid() {
    let vectors = support::load();
    let valid = vectors
        .iter()
        .find(|v| v.scheme == "github" && v.expect == "valid")
        .unwrap();
    let run = run_vector(valid, true, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["key_index"], 0);
    assert_eq!(json["key_id"], "0");
    assert_eq!(json["scheme"], "github");
    assert!(json["dedup_key"].as_str().unwrap().starts_with("github:"));
    for field in ["delivery_id", "event_type", "timestamp"] {
        assert!(json.get(field).is_some(), "{field} is always present");
    }
    assert!(json["timestamp"].is_null(), "github signs no timestamp");

    let stamped = vectors
        .iter()
        .find(|v| v.scheme == "standard-webhooks-v1" && v.expect == "valid")
        .unwrap();
    let run = run_vector(stamped, false, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(json["timestamp"].as_i64().is_some(), "{json}");
    assert!(json["delivery_id"].as_str().is_some(), "{json}");

    let rejected = vectors
        .iter()
        .find(|v| v.scheme == "stripe" && v.expect == "signature_mismatch")
        .unwrap();
    let run = run_vector(rejected, true, &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["reason"], "signature_mismatch");
    assert_eq!(json["status"], 401);
    assert_eq!(json["location"], "Stripe-Signature");
    assert!(!json["hint"].as_str().unwrap().is_empty());
}

#[test]
fn invalid_deliveries_get_a_hint_after_the_first_line() {
    let vectors = support::load();
    let stripe = vectors
        .iter()
        .find(|v| v.scheme == "stripe" && v.expect == "signature_mismatch")
        .unwrap();
    let run = run_vector(stripe, false, &[]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "invalid: signature_mismatch");
    assert_eq!(lines[1], "location: Stripe-Signature");
    assert!(lines[2].starts_with("hint: "), "{lines:?}");
    assert!(lines[2].contains("raw body"), "{lines:?}");
    assert!(
        lines[2].contains("as-is"),
        "Stripe's whsec_ is raw: {lines:?}"
    );

    let twilio = vectors
        .iter()
        .find(|v| v.scheme == "twilio" && v.expect == "signature_mismatch")
        .unwrap();
    let run = run_vector(twilio, false, &[]);
    assert!(run.stdout.contains("public URL"), "{run:?}");
}

// ---------------------------------------------------------------------------------------------
// The sample delivery of examples/sample-delivery

fn sample(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/sample-delivery")
        .join(file)
        .display()
        .to_string()
}

const SAMPLE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn the_sample_delivery_verifies_as_its_readme_says() {
    let body = std::fs::read(sample("body.json")).unwrap();
    assert_eq!(body, br#"{"test": 2432232314}"#, "no trailing newline");
    let run = hookgate(
        [
            "verify",
            "--scheme",
            "standard-webhooks-v1",
            "--secret",
            SAMPLE_SECRET,
            "--headers-file",
            &sample("headers.txt"),
            "--body-file",
            &sample("body.json"),
            "--now",
            "1614265330",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let readme = std::fs::read_to_string(sample("README.md")).unwrap();
    assert!(
        readme.contains(&run.stdout),
        "the README shows the exact output:\n{}",
        run.stdout
    );
    assert_eq!(run.first_line(), "valid (key 0)");
}

#[test]
fn the_body_comes_from_stdin_and_headers_from_the_command_line() {
    let args = [
        "verify",
        "--scheme",
        "standard-webhooks-v1",
        "--secret",
        SAMPLE_SECRET,
        "-H",
        "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
        "--header",
        "Webhook-Timestamp: 1614265330",
        "--header",
        "WEBHOOK-SIGNATURE:v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "--now",
        "1614265330",
    ];
    let run = hookgate(args, br#"{"test": 2432232314}"#);
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");
    assert_eq!(run.code, 0);
    // `--body-file -` is stdin too.
    let mut with_dash = args.to_vec();
    with_dash.extend(["--body-file", "-"]);
    let run = hookgate(&with_dash, br#"{"test": 2432232314}"#);
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");

    // The classic mistake: `echo` adds a newline, and the hint says so.
    let run = hookgate(args, b"{\"test\": 2432232314}\n");
    assert_eq!(run.first_line(), "invalid: signature_mismatch");
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("ends with a newline"), "{run:?}");
    assert!(run.stdout.contains("whsec_ secret is base64"), "{run:?}");
}

#[test]
fn a_header_given_twice_is_passed_as_two_values() {
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let verify = |headers: &[String]| {
        let mut args = strings(&[
            "verify",
            "--scheme",
            "github",
            "--secret",
            "It's a Secret to Everybody",
        ]);
        for header in headers {
            args.push("--header".to_owned());
            args.push(header.clone());
        }
        hookgate(args, b"Hello, World!")
    };
    let run = verify(&[format!("X-Hub-Signature-256: {SIG}")]);
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");
    // Two equal values are one signature: valid (were they joined into one value, the
    // header would be malformed).
    let run = verify(&[
        format!("X-Hub-Signature-256: {SIG}"),
        format!("x-hub-signature-256: {SIG}"),
    ]);
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");
    // Two different values are ambiguous: malformed (were one of them dropped, it would be
    // valid or a mismatch).
    for other in [
        "sha256=0000000000000000000000000000000000000000000000000000000000000000",
        "sha256=abc",
    ] {
        for pair in [[SIG, other], [other, SIG]] {
            let run = verify(&[
                format!("X-Hub-Signature-256: {}", pair[0]),
                format!("X-HUB-SIGNATURE-256: {}", pair[1]),
            ]);
            assert_eq!(run.first_line(), "invalid: malformed_header", "{run:?}");
            assert_eq!(run.code, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sign, then verify

/// The parts of `sign`'s output.
#[derive(Debug, Default)]
struct Signed {
    url: Option<String>,
    headers: Vec<String>,
    body: Option<String>,
}

fn parse_signed(stdout: &str) -> Signed {
    let mut signed = Signed::default();
    let mut rest = stdout;
    while let Some((line, tail)) = rest.split_once('\n') {
        if line.is_empty() {
            signed.body = Some(tail.to_owned());
            break;
        }
        match line.strip_prefix("# url: ") {
            Some(url) => signed.url = Some(url.to_owned()),
            None => signed.headers.push(line.to_owned()),
        }
        rest = tail;
    }
    signed
}

struct RoundTrip {
    scheme: &'static str,
    sign_key: &'static str,
    verify_key: &'static str,
    body: &'static str,
    url: Option<&'static str>,
}

const TS: i64 = 1_700_000_000;

/// A P-256 key pair made for these tests only (`openssl ecparam -name prime256v1`).
const SENDGRID_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWs2+GwjX2NNX8Kzxee/6BMxqH7LveCWRG0b4v7R8/sehRANCAATZ0krqDbLeV1e43UqwMqZTn7xPlIBWi225IMlsf0qEHrhgl99G7sdBhJBw2O+r+fh90HIq5FKeqaK3/5AFGKJ6";
const SENDGRID_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2dJK6g2y3ldXuN1KsDKmU5+8T5SAVottuSDJbH9KhB64YJffRu7HQYSQcNjvq/n4fdByKuRSnqmit/+QBRiieg==";

fn round_trips() -> Vec<RoundTrip> {
    let shared = |scheme, key| RoundTrip {
        scheme,
        sign_key: key,
        verify_key: key,
        body: r#"{"id":"evt_1","type":"demo.created"}"#,
        url: None,
    };
    vec![
        shared("standard-webhooks-v1", SAMPLE_SECRET),
        shared("svix", SAMPLE_SECRET),
        shared("gitlab-signing", SAMPLE_SECRET),
        shared("stripe", "whsec_test_secret"),
        shared("prefinery", "prefinery-secret"),
        shared("github", "It's a Secret to Everybody"),
        shared("github-sha1", "It's a Secret to Everybody"),
        shared("intercom", "intercom-client-secret"),
        shared("shopify", "shopify-client-secret"),
        shared("slack", "8f742231b10e8888abcd99yyyzzz85a5"),
        shared("zoom", "zoom-secret-token"),
        shared("twitch-eventsub", "twitch-subscription-secret"),
        shared(
            "paddle",
            "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I",
        ),
        shared("gitlab-token", "gitlab-secret-token"),
        shared("meta", "meta-app-secret"),
        shared("asana", "asana-hook-secret"),
        shared("calcom", "cal-webhook-secret"),
        shared("checkout-com", "cko-signature-key"),
        shared("coinbase-commerce", "cc-shared-secret"),
        shared("dropbox", "dropbox-app-secret"),
        shared("gitea", "gitea-hook-secret"),
        shared("forgejo", "forgejo-hook-secret"),
        shared("lemon-squeezy", "lemon-signing-secret"),
        shared("onfido", "onfido-webhook-token"),
        shared("razorpay", "razorpay-webhook-secret"),
        shared("sentry", "sentry-client-secret"),
        shared("segment", "segment-shared-secret"),
        shared("vercel", "vercel-webhook-secret"),
        shared("bitbucket", "bitbucket-secret"),
        shared("notion", "secret_notion_verification_token"),
        shared("typeform", "typeform-secret"),
        shared("line", "line-channel-secret"),
        shared("woocommerce", "wc-webhook-secret"),
        shared("okta", "okta-authorization-value"),
        shared("calendly", "calendly-signing-key"),
        shared("mux", "mux-signing-secret"),
        shared("clerk", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        shared("resend", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        shared("pagerduty", "lDQHScfUeXUKaQRNF+8Xy0Qy4lZ0K8Cj"),
        shared("telegram", "tg_S3cret-Token_0123456789"),
        shared("airtable", "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="),
        shared("zendesk", "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="),
        shared(
            "webflow",
            "b1f2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a",
        ),
        shared("persona", "wbhsec_4bc5b1c4-2a86-4dd1-9b43-3b0a8b8f7a10"),
        shared("docusign", "Xb8JmJqW5XzQ1v2+R4t6Y8u0I2o4P6a8S0d2F4g6H8j="),
        shared("netlify", "netlify-jws-secret-0123456789abcdef"),
        shared("postmark", "hookuser:s3cr3t-pass"),
        shared("figma", "f1gm4-p4ssc0de-0123456789abcdef"),
        shared("box", "SamplePrimaryKey"),
        shared("mailgun", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"),
        shared("microsoft-graph", "SecretClientState-8f14e45f"),
        shared("azure-event-grid", "eg-7f3c9a1b2d4e6f80_S3cret"),
        RoundTrip {
            body: "<notification><kind>demo.created</kind></notification>",
            ..shared(
                "braintree",
                "integration_public_key:integration_private_key",
            )
        },
        RoundTrip {
            body: r#"{"action":"create","webhookTimestamp":1700000000000}"#,
            ..shared("linear", "linear-signing-secret")
        },
        RoundTrip {
            body: "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234",
            url: Some("https://mycompany.com/myapp.php?foo=1&bar=2"),
            ..shared("twilio", "12345")
        },
        RoundTrip {
            url: Some("https://mycompany.com/myapp.php?foo=1"),
            ..shared("twilio-body-sha256", "12345")
        },
        RoundTrip {
            url: Some("https://example.com/webhooks/square"),
            ..shared("square", "square-signature-key")
        },
        RoundTrip {
            url: Some("https://hooks.example.com/hubspot?portal=62515"),
            ..shared("hubspot-v3", "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy")
        },
        RoundTrip {
            url: Some("https://hooks.example.com/webhooks/contentful?tenant=a%20b&x=1"),
            ..shared(
                "contentful",
                "c0nt3ntfu1S1gn1ngS3cr3t-0123456789abcdefghijABCDEFGHIJ_klmnopqrs",
            )
        },
        RoundTrip {
            sign_key: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            verify_key: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            ..shared("discord", "")
        },
        RoundTrip {
            sign_key: "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==",
            verify_key: "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
            ..shared("standard-webhooks-v1a", "")
        },
        RoundTrip {
            sign_key: SENDGRID_PRIVATE,
            verify_key: SENDGRID_PUBLIC,
            ..shared("sendgrid", "")
        },
    ]
}

/// Signs `case` at `TS`, then verifies what `sign` printed at `TS`; returns the verify run.
fn sign_then_verify(case: &RoundTrip, verify_keys: &[&str], tamper: bool) -> Run {
    let mut args = strings(&[
        "sign",
        "--scheme",
        case.scheme,
        "--secret",
        case.sign_key,
        "--timestamp",
        &TS.to_string(),
        "--id",
        "msg_round_trip_1",
    ]);
    if let Some(url) = case.url {
        args.extend(strings(&["--url", url]));
    }
    let signed = hookgate(args, case.body.as_bytes());
    assert_eq!(signed.code, 0, "{}: sign failed: {signed:?}", case.scheme);
    let parsed = parse_signed(&signed.stdout);
    assert_eq!(
        parsed.url.is_some(),
        case.scheme == "twilio-body-sha256",
        "{}: only twilio-body-sha256 prints a URL: {signed:?}",
        case.scheme
    );
    assert_eq!(
        parsed.body.is_some(),
        matches!(
            case.scheme,
            "mailgun" | "figma" | "microsoft-graph" | "braintree"
        ),
        "{}: only the schemes that sign in the body print a body: {signed:?}",
        case.scheme
    );

    let mut args = strings(&["verify", "--scheme", case.scheme, "--now", &TS.to_string()]);
    for key in verify_keys {
        args.extend(strings(&["--secret", key]));
    }
    for header in &parsed.headers {
        args.extend(["--header".to_owned(), header.clone()]);
    }
    if let Some(url) = parsed.url.as_deref().or(case.url) {
        args.extend(strings(&["--url", url]));
    }
    let mut body = parsed.body.unwrap_or_else(|| case.body.to_owned());
    if tamper {
        body = body.replace("demo.created", "demo.deleted");
        body = body.replace("Digits=1234", "Digits=9999");
        body = body.replace("create", "remove");
        // Braintree's payload is the base64 of the notification: change its first character.
        body = body.replace("bt_payload=PG5v", "bt_payload=QG5v");
    }
    hookgate(args, body.as_bytes())
}

#[test]
fn what_sign_prints_verifies_for_every_scheme() {
    let cases = round_trips();
    let covered: Vec<&str> = cases.iter().map(|c| c.scheme).collect();
    for id in SchemeId::ALL {
        assert!(covered.contains(&id.as_str()), "no round trip for {id}");
    }
    for case in &cases {
        let run = sign_then_verify(case, &[case.verify_key], false);
        assert_eq!(
            run.first_line(),
            "valid (key 0)",
            "{}: {run:?}",
            case.scheme
        );
        assert_eq!(run.code, 0, "{}", case.scheme);
        // A rotation: the matching key is reported by its position.
        let wrong = if case.verify_key == SENDGRID_PUBLIC {
            // Another valid key of the same kind: the RFC 8032 key would not parse as P-256.
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhKAqfRJyVgcY6ATCzFNH7URlCja5W2CZxnkmtZFJtNQXW7+edQz8NPs0BJYi6SEPGGc8rDRl4Ld7lrTvbsPajw=="
        } else if case.scheme == "standard-webhooks-v1a" {
            "whpk_PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw="
        } else if case.scheme == "discord" {
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        } else if case.scheme == "airtable" {
            // Another base64 key: "not-the-key" is refused as a macSecretBase64.
            "AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE="
        } else if case.scheme == "braintree" {
            // The same public key with another private key (hookgate's key pair format).
            "integration_public_key:not-the-key"
        } else if case.verify_key.starts_with("whsec_") && case.scheme != "stripe" {
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
        } else {
            "not-the-key"
        };
        let run = sign_then_verify(case, &[wrong, case.verify_key], false);
        // Box pairs key i with header i: the second key only checks box-signature-secondary,
        // which a delivery signed with one key does not have.
        let expected = if case.scheme == "box" {
            "invalid: signature_mismatch"
        } else {
            "valid (key 1)"
        };
        assert_eq!(run.first_line(), expected, "{}: {run:?}", case.scheme);
        let run = sign_then_verify(case, &[wrong], false);
        assert!(
            run.first_line().starts_with("invalid: "),
            "{}: {run:?}",
            case.scheme
        );
        assert_eq!(run.code, 1, "{}", case.scheme);
    }
}

/// Azure Event Grid signs nothing: `sign --url` puts the token in the URL's `code`, as the
/// operator registers it in Azure, and `verify --url` reads it back from there; without a URL
/// the token goes in `Authorization: Bearer`.
#[test]
fn azure_event_grid_signs_by_putting_the_token_in_the_url() {
    const TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";
    let body = r#"[{"id":"831e1650-001e-001b-66ab-eeb76e069631","eventType":"Microsoft.Storage.BlobCreated","data":{}}]"#;
    let signed = hookgate(
        strings(&[
            "sign",
            "--scheme",
            "azure-event-grid",
            "--secret",
            TOKEN,
            "--url",
            "https://hooks.example.com/eventgrid",
        ]),
        body.as_bytes(),
    );
    assert_eq!(signed.code, 0, "{signed:?}");
    assert!(!signed.stderr.contains("ignored"), "{signed:?}");
    let parsed = parse_signed(&signed.stdout);
    let url = parsed.url.expect("the URL to call");
    assert_eq!(
        url,
        format!("https://hooks.example.com/eventgrid?code={TOKEN}")
    );
    assert!(
        parsed
            .headers
            .contains(&"aeg-event-type: Notification".to_owned())
    );
    assert!(
        !parsed
            .headers
            .iter()
            .any(|h| h.starts_with("Authorization"))
    );
    let verify = |url: &str, secret: &str| {
        let mut args = strings(&["verify", "--scheme", "azure-event-grid", "--secret", secret]);
        args.extend(strings(&["--url", url]));
        hookgate(args, body.as_bytes())
    };
    let run = verify(&url, TOKEN);
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");
    assert!(!run.stderr.contains("ignored"), "{run:?}");
    assert!(run.stdout.contains("not authenticated"), "{run:?}");
    let run = verify(&url, "not-the-token");
    assert_eq!(run.first_line(), "invalid: token_mismatch", "{run:?}");
    assert!(!run.all_output().contains(TOKEN), "{run:?}");
    let run = verify("https://hooks.example.com/eventgrid", TOKEN);
    assert_eq!(run.first_line(), "invalid: missing_header", "{run:?}");
    assert!(run.all_output().contains("?code=TOKEN"), "{run:?}");
}

#[test]
fn a_changed_body_fails_where_the_scheme_signs_it() {
    for case in round_trips() {
        // Mailgun signs only timestamp + token; GitLab's, Okta's, Telegram's and Postmark's tokens do not cover the
        // body.
        if matches!(
            case.scheme,
            "mailgun"
                | "gitlab-token"
                | "okta"
                | "telegram"
                | "postmark"
                | "figma"
                | "microsoft-graph"
                | "azure-event-grid"
        ) {
            continue;
        }
        let run = sign_then_verify(&case, &[case.verify_key], true);
        // Twilio's signed URL and Netlify's JWS sign a digest of the body.
        let want = if matches!(case.scheme, "twilio-body-sha256" | "netlify") {
            "invalid: body_hash_mismatch"
        } else {
            "invalid: signature_mismatch"
        };
        assert_eq!(run.first_line(), want, "{}: {run:?}", case.scheme);
        assert_eq!(run.code, 1);
    }
}

#[test]
fn mailgun_can_write_its_signed_body_to_a_file() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hookgate-cli-mailgun-{}.json", std::process::id()));
    let key = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    let run = hookgate(
        [
            "sign",
            "--scheme",
            "mailgun",
            "--secret",
            key,
            "--timestamp",
            "1700000000",
            "--out-body",
            out.to_str().unwrap(),
        ],
        br#"{"event":"delivered"}"#,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.is_empty(),
        "mailgun sends no signature header: {run:?}"
    );
    let run = hookgate(
        [
            "verify",
            "--scheme",
            "mailgun",
            "--secret",
            key,
            "--body-file",
            out.to_str().unwrap(),
            "--now",
            "1700000000",
        ],
        b"",
    );
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");
    assert!(run.stdout.contains("not authenticated"), "{run:?}");
}

#[test]
fn signing_now_verifies_against_the_real_clock() {
    let signed = hookgate(
        [
            "sign",
            "--scheme",
            "slack",
            "--secret",
            "slack-signing-secret",
        ],
        b"token=x&team_id=T1",
    );
    assert_eq!(signed.code, 0, "{signed:?}");
    let mut args = strings(&[
        "verify",
        "--scheme",
        "slack",
        "--secret",
        "slack-signing-secret",
    ]);
    for header in parse_signed(&signed.stdout).headers {
        args.extend(["-H".to_owned(), header]);
    }
    let run = hookgate(args, b"token=x&team_id=T1");
    assert_eq!(run.first_line(), "valid (key 0)", "{run:?}");
}

#[test]
fn the_timestamp_window_options_do_what_they_say() {
    let signed = hookgate(
        [
            "sign",
            "--scheme",
            "stripe",
            "--secret",
            "whsec_test_secret",
            "--timestamp",
            "1700000000",
        ],
        b"{}",
    );
    let headers: Vec<String> = parse_signed(&signed.stdout)
        .headers
        .into_iter()
        .flat_map(|h| ["-H".to_owned(), h])
        .collect();
    let verify = |extra: &[&str]| {
        let mut args = strings(&[
            "verify",
            "--scheme",
            "stripe",
            "--secret",
            "whsec_test_secret",
        ]);
        args.extend(headers.iter().cloned());
        args.extend(strings(extra));
        hookgate(args, b"{}")
    };
    let first = |extra: &[&str]| verify(extra).first_line().to_owned();
    assert_eq!(first(&["--now", "1700000300"]), "valid (key 0)");
    assert_eq!(
        first(&["--now", "1700000301"]),
        "invalid: timestamp_too_old"
    );
    assert_eq!(
        first(&["--now", "1699999699"]),
        "invalid: timestamp_too_new"
    );
    assert_eq!(
        first(&["--now", "1699999699", "--accept-future"]),
        "valid (key 0)"
    );
    assert_eq!(
        first(&["--now", "1700000400", "--tolerance", "400"]),
        "valid (key 0)"
    );
    assert_eq!(
        first(&["--now", "1700000401", "--tolerance", "400"]),
        "invalid: timestamp_too_old"
    );
    assert_eq!(
        first(&["--now", "1800000000", "--no-timestamp-check"]),
        "valid (key 0)"
    );
    // Without --now the real clock says 2023 is long gone.
    let run = verify(&[]);
    assert_eq!(run.first_line(), "invalid: timestamp_too_old");
    assert!(
        run.stdout.contains("--now"),
        "the hint says how to re-check: {run:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Usage and configuration errors: exit 2, message on stderr, nothing on stdout

#[test]
fn usage_and_configuration_errors_exit_2_with_a_message() {
    let github = [
        "verify",
        "--scheme",
        "github",
        "--secret",
        "k",
        "-H",
        "X-Hub-Signature-256: sha256=00",
    ];
    hookgate::<[&str; 0], &str>([], b"").assert_usage_error("Usage");
    hookgate(["frobnicate"], b"").assert_usage_error("unrecognized subcommand");
    hookgate(["verify", "--secret", "k"], b"{}").assert_usage_error("--scheme");
    hookgate(["verify", "--scheme", "nope", "--secret", "k"], b"{}")
        .assert_usage_error("hookgate schemes");
    hookgate(["verify", "--scheme", "github"], b"{}").assert_usage_error("--secret");
    hookgate(["verify", "--scheme", "twilio", "--secret", "k"], b"a=1").assert_usage_error("--url");
    hookgate(["verify", "--scheme", "square", "--secret", "k"], b"{}").assert_usage_error("--url");
    hookgate(
        [
            "verify", "--scheme", "github", "--secret", "k", "-H", "no colon",
        ],
        b"{}",
    )
    .assert_usage_error("--header number 1");
    hookgate(
        [
            "verify",
            "--scheme",
            "github",
            "--secret",
            "k",
            "-H",
            "Ok: 1",
            "-H",
            "bad name: 2",
        ],
        b"{}",
    )
    .assert_usage_error("--header number 2");
    let mut missing_file = github.to_vec();
    missing_file.extend(["--body-file", "/nonexistent/hookgate/body"]);
    hookgate(&missing_file, b"").assert_usage_error("cannot read the body file");
    hookgate(
        [
            "verify",
            "--scheme",
            "github",
            "--secret",
            "k",
            "--headers-file",
            "/nonexistent/h",
        ],
        b"{}",
    )
    .assert_usage_error("cannot read the headers file");
    let bad_headers = temp_file(b"# comment\nX-Ok: 1\n\nnot a header\n");
    hookgate(
        [
            "verify",
            "--scheme",
            "github",
            "--secret",
            "k",
            "--headers-file",
            bad_headers.to_str().unwrap(),
        ],
        b"{}",
    )
    .assert_usage_error("line 4 of the headers file");
    hookgate(
        [
            "verify",
            "--scheme",
            "slack",
            "--secret",
            "k",
            "--tolerance",
            "0",
        ],
        b"{}",
    )
    .assert_usage_error("--no-timestamp-check");
    hookgate(
        [
            "verify",
            "--scheme",
            "slack",
            "--secret",
            "k",
            "--tolerance",
            "5",
            "--no-timestamp-check",
        ],
        b"{}",
    )
    .assert_usage_error("cannot be used with");
    hookgate(
        [
            "verify",
            "--scheme",
            "slack",
            "--secret",
            "k",
            "--now",
            "yesterday",
        ],
        b"{}",
    )
    .assert_usage_error("--now");
    hookgate(
        [
            "verify",
            "--scheme",
            "standard-webhooks-v1",
            "--secret",
            "whsec_!!!",
        ],
        b"{}",
    )
    .assert_usage_error("key 0");
    hookgate(["verify", "--scheme", "discord", "--secret", "abcd"], b"{}")
        .assert_usage_error("key 0");
    hookgate(["sign", "--scheme", "github"], b"{}").assert_usage_error("--secret");
    hookgate(["sign", "--scheme", "square", "--secret", "k"], b"{}").assert_usage_error("--url");
    hookgate(
        [
            "sign",
            "--scheme",
            "standard-webhooks-v1a",
            "--secret",
            "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
        ],
        b"{}",
    )
    .assert_usage_error("whsk_");
    hookgate(
        ["sign", "--scheme", "discord", "--secret", "not-hex"],
        b"{}",
    )
    .assert_usage_error("hex");
    hookgate(["schemes", "--bogus"], b"").assert_usage_error("--bogus");
}

#[test]
fn every_command_has_help_and_a_version() {
    for args in [
        &["--help"][..],
        &["help"],
        &["verify", "--help"],
        &["sign", "--help"],
        &["schemes", "--help"],
    ] {
        let run = hookgate(args, b"");
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert!(run.stdout.contains("Usage: hookgate"), "{args:?}: {run:?}");
    }
    let run = hookgate(["sign", "--help"], b"");
    assert!(
        run.stdout.contains("--out-body"),
        "mailgun's body is documented"
    );
    assert!(
        run.stdout.contains("# url:"),
        "twilio's URL line is documented"
    );
    let run = hookgate(["--version"], b"");
    assert_eq!(
        run.stdout.trim(),
        format!("hookgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn schemes_lists_every_id_with_a_description() {
    let run = hookgate(["schemes"], b"");
    assert_eq!(run.code, 0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 62);
    assert_eq!(SchemeId::ALL.len(), 62);
    for (line, id) in lines.iter().zip(SchemeId::ALL) {
        let (name, description) = line.split_once(' ').unwrap();
        assert_eq!(name, id.as_str());
        assert_eq!(description.trim(), id.description());
    }
}

#[test]
fn a_wrong_scheme_is_recognised_from_the_headers() {
    let run = hookgate(
        [
            "verify",
            "--scheme",
            "stripe",
            "--secret",
            SAMPLE_SECRET,
            "--headers-file",
            &sample("headers.txt"),
            "--body-file",
            &sample("body.json"),
        ],
        b"",
    );
    assert_eq!(run.first_line(), "invalid: missing_header");
    assert!(run.stdout.contains("standard-webhooks-v1"), "{run:?}");
    assert!(run.stdout.contains("--scheme"), "{run:?}");
}

// ---------------------------------------------------------------------------------------------
// Secrets never leak

fn record(runs: &mut Vec<(String, Run)>, what: &str, run: Run) {
    runs.push((what.to_owned(), run));
}

#[test]
fn the_secret_never_appears_in_any_output() {
    const SECRET: &str = "S3cr3t-NEVER-print-me-4242";
    let mut runs: Vec<(String, Run)> = Vec::new();

    // github: valid, mismatch, JSON, wrong URL option, rotation.
    let signed = hookgate(
        ["sign", "--scheme", "github", "--secret", SECRET],
        b"{\"a\":1}",
    );
    let header = parse_signed(&signed.stdout).headers.join("\n");
    let sig = header
        .lines()
        .find(|h| h.starts_with("X-Hub-Signature-256"))
        .unwrap()
        .to_owned();
    let tampered_signed = hookgate(
        ["sign", "--scheme", "github", "--secret", SECRET],
        b"{\"a\":2}",
    );
    let expected_for_tampered = parse_signed(&tampered_signed.stdout)
        .headers
        .into_iter()
        .find(|h| h.starts_with("X-Hub-Signature-256"))
        .unwrap();
    let expected_hex = expected_for_tampered.rsplit('=').next().unwrap().to_owned();
    for (body, json) in [
        (&b"{\"a\":1}"[..], false),
        (b"{\"a\":1}", true),
        (b"{\"a\":2}", false),
        (b"{\"a\":2}", true),
    ] {
        let mut args = vec![
            "verify",
            "--scheme",
            "github",
            "--secret",
            SECRET,
            "-H",
            &sig,
            "--url",
            "https://x.test/",
        ];
        if json {
            args.push("--json");
        }
        let run = hookgate(&args, body);
        assert!(
            !run.stdout.contains(&expected_hex),
            "the expected signature leaked: {run:?}"
        );
        record(&mut runs, "github verify", run);
    }
    // Key given through the environment, and through a file.
    let run = hookgate_env(
        ["verify", "--scheme", "github", "-H", &sig],
        b"{\"a\":1}",
        Some(SECRET),
    );
    assert_eq!(
        run.first_line(),
        "valid (key 0)",
        "HOOKGATE_SECRET is a key: {run:?}"
    );
    record(&mut runs, "env", run);
    let secret_file = temp_file(format!("\n{SECRET}\n").as_bytes());
    let run = hookgate(
        [
            "verify",
            "--scheme",
            "github",
            "--secret",
            "other",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "-H",
            &sig,
        ],
        b"{\"a\":1}",
    );
    assert_eq!(run.first_line(), "valid (key 1)", "{run:?}");
    record(&mut runs, "secret file", run);

    // A secret that starts with a hyphen is a value, not an unknown flag echoed back.
    let hyphen = format!("-{SECRET}");
    let run = hookgate(
        [
            "verify", "--scheme", "github", "--secret", &hyphen, "-H", &sig,
        ],
        b"{\"a\":1}",
    );
    assert_eq!(run.first_line(), "invalid: signature_mismatch", "{run:?}");
    record(&mut runs, "hyphen secret", run);

    // GitLab's token is the secret itself, sent as a header.
    let token_header = format!("X-Gitlab-Token: {SECRET}");
    for args in [
        vec![
            "verify",
            "--scheme",
            "gitlab-token",
            "--secret",
            SECRET,
            "-H",
            &token_header,
        ],
        vec![
            "verify",
            "--scheme",
            "gitlab-token",
            "--secret",
            SECRET,
            "-H",
            &token_header,
            "--json",
        ],
        vec![
            "verify",
            "--scheme",
            "gitlab-token",
            "--secret",
            "other-token",
            "-H",
            &token_header,
        ],
        vec![
            "verify",
            "--scheme",
            "gitlab-token",
            "--secret",
            "other-token",
            "-H",
            &token_header,
            "--json",
        ],
    ] {
        record(&mut runs, "gitlab-token", hookgate(&args, b"{}"));
    }
    let no_colon = format!("X-Gitlab-Token {SECRET}");
    record(
        &mut runs,
        "header without colon",
        hookgate(
            [
                "verify",
                "--scheme",
                "gitlab-token",
                "--secret",
                "t",
                "-H",
                &no_colon,
            ],
            b"{}",
        ),
    );
    let bad_headers = temp_file(format!("X-Gitlab-Token {SECRET}\n").as_bytes());
    record(
        &mut runs,
        "headers file without colon",
        hookgate(
            [
                "verify",
                "--scheme",
                "gitlab-token",
                "--secret",
                "t",
                "--headers-file",
                bad_headers.to_str().unwrap(),
            ],
            b"{}",
        ),
    );

    // Configuration and usage errors with the secret on the command line.
    let bad_whsec = format!("whsec_{SECRET}!");
    for args in [
        vec![
            "verify",
            "--scheme",
            "standard-webhooks-v1",
            "--secret",
            bad_whsec.as_str(),
        ],
        vec!["verify", "--scheme", "discord", "--secret", SECRET],
        vec!["verify", "--scheme", "sendgrid", "--secret", SECRET],
        vec!["verify", "--scheme", "twilio", "--secret", SECRET],
        vec![
            "verify",
            "--scheme",
            "slack",
            "--secret",
            SECRET,
            "--tolerance",
            "0",
        ],
        vec![
            "verify", "--scheme", "github", "--secret", SECRET, "--bogus",
        ],
        vec!["verify", "--scheme", "nope", "--secret", SECRET],
        vec!["sign", "--scheme", "discord", "--secret", SECRET],
        vec!["sign", "--scheme", "sendgrid", "--secret", SECRET],
        vec!["sign", "--scheme", "square", "--secret", SECRET],
        vec![
            "sign",
            "--scheme",
            "standard-webhooks-v1",
            "--secret",
            bad_whsec.as_str(),
        ],
    ] {
        let run = hookgate(&args, b"{}");
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        record(&mut runs, "usage error", run);
    }
    // Help with the key in the environment does not show its value.
    record(
        &mut runs,
        "help",
        hookgate_env(["verify", "--help"], b"", Some(SECRET)),
    );
    record(
        &mut runs,
        "sign help",
        hookgate_env(["sign", "--help"], b"", Some(SECRET)),
    );

    for (what, run) in &runs {
        assert!(
            !run.all_output().contains(SECRET),
            "{what}: the secret leaked: {run:?}"
        );
    }
    assert!(runs.len() >= 25);
}

/// `hookgate send --scheme X` is accepted by `hookgate serve --scheme X` for every scheme:
/// what the sender signs is what the receiver verifies, over real HTTP.
#[test]
fn send_is_accepted_by_serve_for_every_scheme() {
    use std::io::{BufRead as _, BufReader};

    let cases = round_trips();
    let ids: Vec<&str> = cases.iter().map(|c| c.scheme).collect();
    for scheme in SchemeId::ALL {
        assert!(ids.contains(&scheme.as_str()), "no round trip for {scheme}");
    }
    // Twilio's JSON requests are verified at the public origin plus each request's own path
    // and query, so the public URL's path must be the endpoint's.
    let dir = tempfile::tempdir().unwrap();
    let refused = hookgate(
        strings(&[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--scheme",
            "twilio-body-sha256",
            "--secret",
            "12345",
            "--public-url",
            "https://hooks.example.com/twilio",
        ]),
        b"",
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("must be the endpoint's path"),
        "{refused:?}"
    );
    for case in &cases {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/webhooks");
        let dir = tempfile::tempdir().unwrap();
        let mut args = strings(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--scheme",
            case.scheme,
            "--secret",
            case.verify_key,
        ]);
        if case.url.is_some() {
            args.extend(strings(&["--public-url", &url]));
        }
        let mut serve = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(&args)
            .env_remove("HOOKGATE_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(serve.stderr.take().unwrap());
        let mut seen = String::new();
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            seen.push_str(&line);
            if line.starts_with("listening on") {
                break;
            }
            line.clear();
        }
        assert!(seen.contains("listening on"), "{}: {seen}", case.scheme);
        // Keep draining stderr so serve never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let sent = hookgate(
            strings(&[
                "send",
                &url,
                "--scheme",
                case.scheme,
                "--secret",
                case.sign_key,
                "--count",
                "2",
                "--retry-schedule",
                "exponential",
                "--time-scale",
                "0.001",
            ]),
            b"",
        );
        let _ = serve.kill();
        let _ = serve.wait();
        assert_eq!(sent.code, 0, "{}: {sent:?}", case.scheme);
    }
}
