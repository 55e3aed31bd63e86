//! Seed inputs: real signed deliveries laid out in each target's format, plus near misses,
//! so the fuzzer starts from inputs that reach the success paths.

use hookgate::{SchemeId, SignRequest, SignedDelivery, Signer};

use crate::keys::{NOW, URL, generic_schemes, signing_secret};

/// One seed: the target it belongs to, a file name, its bytes, and the labels (schemes) it
/// must verify for; every other label it may or may not.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The fuzz target.
    pub target: &'static str,
    /// File name under `fuzz/seeds/<target>/`.
    pub name: String,
    /// The input.
    pub data: Vec<u8>,
    /// Verdict labels that must be `Ok` for this input.
    pub verifies: Vec<String>,
}

const BODY: &str = r#"{"id":"evt_1","type":"invoice.paid","event_id":"evt_1","data":{"n":1}}"#;

fn linear_body() -> String {
    format!(
        r#"{{"action":"create","type":"Issue","webhookTimestamp":{}}}"#,
        NOW.saturating_mul(1000)
    )
}

fn sign(scheme: SchemeId, body: &str, id: &str, ts: i64) -> Option<SignedDelivery> {
    let signer = Signer::new(scheme, &signing_secret(scheme)).ok()?;
    let mut request = SignRequest::new(body.to_owned()).id(id).timestamp(ts);
    if scheme.signs_url() {
        request = request.url(URL);
    }
    signer.sign(&request).ok()
}

fn header<'a>(delivery: &'a SignedDelivery, name: &str) -> &'a str {
    delivery
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map_or("", |(_, v)| v.as_str())
}

fn lines(parts: &[&str]) -> Vec<u8> {
    parts.join("\n").into_bytes()
}

fn seed(target: &'static str, name: &str, data: Vec<u8>, verifies: &[&str]) -> Seed {
    Seed {
        target,
        name: format!("seed-{name}"),
        data,
        verifies: verifies.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    out.extend(standard_webhooks());
    out.extend(key_value());
    out.extend(encodings());
    out.extend(timestamped());
    out.extend(twilio());
    out.extend(mailgun());
    out.extend(generic());
    out.extend(gate());
    out.extend(tower());
    out
}

fn standard_webhooks() -> Vec<Seed> {
    let t = "standard_webhooks";
    let mut out = Vec::new();
    let now = NOW.to_string();
    if let Some(d) = sign(SchemeId::StandardWebhooksV1, BODY, "msg_1", NOW) {
        let sig = header(&d, "webhook-signature");
        out.push(seed(
            t,
            "v1",
            lines(&["msg_1", &now, sig, BODY]),
            &["standard-webhooks-v1", "svix", "gitlab-signing"],
        ));
        let rotated = format!("v1,AAAA v1a,bm9wZQ== {sig}");
        out.push(seed(
            t,
            "v1-rotation-list",
            lines(&["msg_1", &now, &rotated, BODY]),
            &["standard-webhooks-v1"],
        ));
        let repeated = format!("v1,AAAA\t{sig}");
        out.push(seed(
            t,
            "v1-repeated-header",
            lines(&["msg_1", &now, &repeated, BODY]),
            &[],
        ));
        out.push(seed(
            t,
            "v1-stale",
            lines(&["msg_1", "1699999000", sig, BODY]),
            &[],
        ));
    }
    if let Some(d) = sign(SchemeId::StandardWebhooksV1a, BODY, "msg_2", NOW) {
        let sig = header(&d, "webhook-signature");
        out.push(seed(
            t,
            "v1a",
            lines(&["msg_2", &now, sig, BODY]),
            &["standard-webhooks-v1a"],
        ));
    }
    out.push(seed(
        t,
        "unknown-version",
        lines(&["msg_3", &now, "v2,c2lnbmF0dXJl", BODY]),
        &[],
    ));
    out
}

fn key_value() -> Vec<Seed> {
    let mut out = Vec::new();
    if let Some(d) = sign(SchemeId::Stripe, BODY, "evt_1", NOW) {
        let value = header(&d, "Stripe-Signature");
        out.push(seed(
            "stripe_t_v1",
            "stripe",
            lines(&[value, BODY]),
            &["stripe", "prefinery"],
        ));
        let sig = value.rsplit("v1=").next().unwrap_or_default();
        // Stripe's libraries ignore other items and compare every `v1` (keys untrimmed).
        let many = format!("t={NOW},v0=00,v1=ff,v1={sig},junk,");
        out.push(seed(
            "stripe_t_v1",
            "stripe-several",
            lines(&[&many, BODY]),
            &["stripe"],
        ));
        out.push(seed(
            "stripe_t_v1",
            "stripe-test-mode-only",
            lines(&[&format!("t={NOW},v0={sig}"), BODY]),
            &[],
        ));
        out.push(seed(
            "stripe_t_v1",
            "stripe-two-timestamps",
            // Two different `t`: Stripe's two libraries would sign different ones.
            lines(&[&format!("t={NOW},t={},v1={sig}", NOW + 1), BODY]),
            &[],
        ));
    }
    if let Some(d) = sign(SchemeId::Paddle, BODY, "evt_1", NOW) {
        let value = header(&d, "Paddle-Signature");
        out.push(seed("paddle", "paddle", lines(&[value, BODY]), &["paddle"]));
        out.push(seed(
            "paddle",
            "paddle-empty-h1",
            lines(&[&format!("ts={NOW};h1="), BODY]),
            &[],
        ));
    }
    out
}

fn encodings() -> Vec<Seed> {
    let t = "encodings";
    let mut out = Vec::new();
    let linear = linear_body();
    let cases: [(SchemeId, &str, &str, &str); 7] = [
        (SchemeId::Github, "X-Hub-Signature-256", "sha256=", BODY),
        (SchemeId::GithubSha1, "X-Hub-Signature", "sha1=", BODY),
        (SchemeId::Linear, "Linear-Signature", "", &linear),
        (SchemeId::Discord, "X-Signature-Ed25519", "", BODY),
        (SchemeId::Shopify, "X-Shopify-Hmac-Sha256", "", BODY),
        (SchemeId::Square, "x-square-hmacsha256-signature", "", BODY),
        (
            SchemeId::Sendgrid,
            "X-Twilio-Email-Event-Webhook-Signature",
            "",
            BODY,
        ),
    ];
    for (scheme, name, prefix, body) in cases {
        if let Some(d) = sign(scheme, body, "evt_1", NOW) {
            let value = header(&d, name);
            let signature = value.strip_prefix(prefix).unwrap_or(value);
            out.push(seed(
                t,
                scheme.as_str(),
                lines(&[signature, body]),
                &[scheme.as_str()],
            ));
        }
    }
    out.push(seed(t, "uppercase-hex", lines(&["ABCDEF0123", BODY]), &[]));
    out.push(seed(t, "unpadded-base64", lines(&["AAE", BODY]), &[]));
    out.push(seed(t, "url-safe-base64", lines(&["-_8=", BODY]), &[]));
    out
}

fn timestamped() -> Vec<Seed> {
    let t = "timestamped_headers";
    let mut out = Vec::new();
    let linear = linear_body();
    let cases: [(SchemeId, &str, Option<&str>, &str); 6] = [
        (
            SchemeId::Slack,
            "X-Slack-Signature",
            Some("X-Slack-Request-Timestamp"),
            BODY,
        ),
        (
            SchemeId::Zoom,
            "x-zm-signature",
            Some("x-zm-request-timestamp"),
            BODY,
        ),
        (
            SchemeId::TwitchEventsub,
            "Twitch-Eventsub-Message-Signature",
            Some("Twitch-Eventsub-Message-Timestamp"),
            BODY,
        ),
        (
            SchemeId::Discord,
            "X-Signature-Ed25519",
            Some("X-Signature-Timestamp"),
            BODY,
        ),
        (
            SchemeId::Sendgrid,
            "X-Twilio-Email-Event-Webhook-Signature",
            Some("X-Twilio-Email-Event-Webhook-Timestamp"),
            BODY,
        ),
        (SchemeId::Linear, "Linear-Signature", None, &linear),
    ];
    for (scheme, sig_name, ts_name, body) in cases {
        if let Some(d) = sign(scheme, body, "msg_twitch_1", NOW) {
            let ts = ts_name.map_or("", |name| header(&d, name));
            let id = header(&d, "Twitch-Eventsub-Message-Id");
            let signature = header(&d, sig_name);
            out.push(seed(
                t,
                scheme.as_str(),
                lines(&[ts, id, signature, body]),
                &[scheme.as_str()],
            ));
        }
    }
    out.push(seed(
        t,
        "rfc3339-fraction",
        lines(&[
            "2023-11-14T22:13:20.123456789+01:00",
            "id",
            "sha256=00",
            BODY,
        ]),
        &[],
    ));
    out
}

fn twilio() -> Vec<Seed> {
    let t = "twilio_form";
    let mut out = Vec::new();
    let form = "Body=Hello+there%21&From=%2B15550001111&To=%2B15550002222&MessageSid=SM1";
    if let Some(d) = sign(SchemeId::Twilio, form, "evt_1", NOW) {
        let sig = header(&d, "X-Twilio-Signature");
        out.push(seed(t, "twilio-form", lines(&[sig, "", form]), &["twilio"]));
        out.push(seed(
            t,
            "twilio-form-explicit-port",
            lines(&[sig, "https://hooks.example.com:443/twilio?tenant=7", form]),
            &["twilio"],
        ));
    }
    if let Some(d) = sign(SchemeId::TwilioBodySha256, BODY, "evt_1", NOW) {
        let sig = header(&d, "X-Twilio-Signature");
        let url = d.url.clone().unwrap_or_default();
        out.push(seed(
            t,
            "twilio-body-sha256",
            lines(&[sig, &url, BODY]),
            &["twilio", "twilio-body-sha256"],
        ));
    }
    if let Some(d) = sign(SchemeId::Square, BODY, "evt_1", NOW) {
        let sig = header(&d, "x-square-hmacsha256-signature");
        out.push(seed(t, "square", lines(&[sig, "", BODY]), &["square"]));
    }
    out
}

fn mailgun() -> Vec<Seed> {
    let t = "mailgun_body";
    let mut out = Vec::new();
    let event = r#"{"event":"delivered","id":"ev_1"}"#;
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef01";
    if let Some(d) = sign(SchemeId::Mailgun, event, token, NOW) {
        let body = d.body.to_vec();
        // The same fields, form-encoded, as Mailgun's legacy webhooks post them.
        if let Ok(json) = std::str::from_utf8(&body) {
            let signature = json
                .split("\"signature\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default();
            let form =
                format!("timestamp={NOW}&token={token}&signature={signature}&event=delivered");
            out.push(seed(t, "form", form.into_bytes(), &["mailgun"]));
        }
        out.push(seed(t, "json", body, &["mailgun"]));
    }
    out.push(seed(
        t,
        "nested",
        br#"{"signature":{"signature":{"timestamp":1}},"event-data":[[[[]]]]}"#.to_vec(),
        &[],
    ));
    out
}

fn generic() -> Vec<Seed> {
    let t = "generic_hmac";
    let mut out = Vec::new();
    let now = NOW.to_string();
    for (scheme, _) in generic_schemes() {
        let Ok(signer) = Signer::new(scheme.clone(), crate::keys::SECRET) else {
            continue;
        };
        let request = SignRequest::new(BODY).id("del_1").timestamp(NOW);
        let Ok(d) = signer.sign(&request) else {
            continue;
        };
        let sig = header(&d, "X-Acme-Signature");
        let name = scheme.name();
        out.push(seed(t, name, lines(&["del_1", &now, sig, BODY]), &[name]));
        let rotated = format!("sha256=00,{sig}\tsha256=ff");
        out.push(seed(
            t,
            &format!("{name}-rotation"),
            lines(&["del_1", &now, &rotated, BODY]),
            &[],
        ));
    }
    out
}

fn gate() -> Vec<Seed> {
    let mut out = Vec::new();
    for scheme in SchemeId::ALL {
        let body = if scheme == SchemeId::Linear {
            linear_body()
        } else {
            BODY.to_owned()
        };
        let Some(d) = sign(scheme, &body, "msg_gate_1", NOW) else {
            continue;
        };
        let mut text = format!("{scheme}\n");
        for (name, value) in &d.headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        let mut data = text.into_bytes();
        data.extend_from_slice(&d.body);
        // Twilio's JSON variant signs a URL carrying the body hash, which the gate's fixed
        // URL does not: that seed is a near miss.
        let verifies: &[&str] = if scheme == SchemeId::TwilioBodySha256 {
            &[]
        } else {
            &[scheme.as_str()]
        };
        out.push(seed("gate", scheme.as_str(), data, verifies));
    }
    let mut huge = b"github\nX-Hub-Signature-256: sha256=00\n\n".to_vec();
    huge.resize(crate::targets::GATE_BODY_LIMIT.saturating_add(64), b'x');
    out.push(seed("gate", "body-too-large", huge, &[]));
    out
}

fn tower() -> Vec<Seed> {
    let mut out = Vec::new();
    for (scheme, mode, chunk) in [
        (SchemeId::Stripe, "receive", ""),
        (SchemeId::StandardWebhooksV1, "verify", ""),
        (SchemeId::Github, "receive", " 7"),
        (SchemeId::Twilio, "verify", " 3"),
        (SchemeId::Square, "receive", ""),
        (SchemeId::Mailgun, "verify", ""),
    ] {
        let Some(d) = sign(scheme, BODY, "msg_tower_1", NOW) else {
            continue;
        };
        let mut text = format!("{scheme} {mode}{chunk}\nPOST /twilio?tenant=7\n");
        for (name, value) in &d.headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        let mut data = text.into_bytes();
        data.extend_from_slice(&d.body);
        let label = format!("{scheme} {mode}");
        out.push(Seed {
            target: "tower_service",
            name: format!("seed-{scheme}-{mode}"),
            data,
            verifies: vec![label],
        });
    }
    let mut big = b"github receive\nPOST /hooks\ncontent-length: 999999\n\n".to_vec();
    big.extend_from_slice(b"{}");
    out.push(seed("tower_service", "content-length-over-limit", big, &[]));
    out.push(seed(
        "tower_service",
        "bad-request-line",
        b"stripe receive\nP\xffST /\n\n".to_vec(),
        &[],
    ));
    out
}
