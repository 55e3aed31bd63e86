//! Attacker-controlled input never panics, absurd sizes cost bounded work, and no secret or
//! expected signature reaches `Debug`, `Display` or an error.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hookgate::{FixedClock, Key, Keyring, Reason, SchemeId, SignRequest, Signer, Verifier};
use proptest::prelude::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn verifier(scheme: SchemeId) -> Verifier {
    let secret = match scheme {
        SchemeId::StandardWebhooksV1a => "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
        SchemeId::Discord => "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        SchemeId::Sendgrid => {
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
        }
        // Airtable's macSecretBase64 is base64 of the key bytes.
        SchemeId::Airtable => "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
        // hookgate's format for Braintree's key pair.
        SchemeId::Braintree => "a_public_key:MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        _ => SECRET,
    };
    Verifier::builder(scheme)
        .secret(secret)
        .url("https://example.com/hook?x=1")
        .clock(FixedClock::from_unix(1_700_000_000))
        .build()
        .unwrap()
}

/// Every header name any preset reads, so arbitrary values reach every parser.
const NAMES: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "Stripe-Signature",
    "X-Prefinery-Signature",
    "Paddle-Signature",
    "X-Hub-Signature-256",
    "X-Hub-Signature",
    "X-Shopify-Hmac-Sha256",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "x-zm-signature",
    "x-zm-request-timestamp",
    "X-Twilio-Signature",
    "x-square-hmacsha256-signature",
    "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp",
    "X-Signature-Ed25519",
    "X-Signature-Timestamp",
    "Twitch-Eventsub-Message-Id",
    "Twitch-Eventsub-Message-Timestamp",
    "Twitch-Eventsub-Message-Signature",
    "Linear-Signature",
    "X-Gitlab-Token",
    "X-PagerDuty-Signature",
    "X-Telegram-Bot-Api-Secret-Token",
    "X-Airtable-Content-MAC",
    "X-Zendesk-Webhook-Signature",
    "X-Zendesk-Webhook-Signature-Timestamp",
    "x-webflow-signature",
    "x-webflow-timestamp",
    "Persona-Signature",
    "X-DocuSign-Signature-1",
    "X-DocuSign-Signature-2",
    "X-Webhook-Signature",
    "Authorization",
];

fn header_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(NAMES),
            proptest::string::string_regex("[ -~]{0,120}|.{0,40}").unwrap(),
        ),
        0..8,
    )
    .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_headers_and_body_never_panic(headers in header_strategy(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        for scheme in SchemeId::ALL {
            let result = verifier(scheme).verify(&headers, body.clone());
            if let Ok(event) = result {
                // Only a real signature can get here; exercising the lazy fields must not panic either.
                let _ = (event.dedup_key(), event.event_type(), event.delivery_id());
            }
        }
    }

    #[test]
    fn structured_headers_with_random_parts_never_panic(
        t in "[0-9a-z=,;. -]{0,30}",
        sig in "[0-9a-zA-Z+/=,; .-]{0,90}",
    ) {
        let cases = [
            ("Stripe-Signature", format!("t={t},v1={sig}")),
            ("Paddle-Signature", format!("ts={t};h1={sig}")),
            ("webhook-signature", format!("v1,{sig} v1a,{sig} {t}")),
        ];
        for (name, value) in cases {
            let headers = vec![
                (name.to_owned(), value),
                ("webhook-id".to_owned(), "msg".to_owned()),
                ("webhook-timestamp".to_owned(), t.clone()),
            ];
            for scheme in [SchemeId::Stripe, SchemeId::Paddle, SchemeId::StandardWebhooksV1, SchemeId::StandardWebhooksV1a] {
                let _ = verifier(scheme).verify(&headers, "{}");
            }
        }
    }
}

#[test]
fn thousands_of_signatures_are_malformed_not_slow() {
    let entries: Vec<String> = (0..5000)
        .map(|i| format!("v1,{}", "A".repeat(43) + &i.to_string()))
        .collect();
    let headers = [
        ("webhook-id", "msg_1".to_owned()),
        ("webhook-timestamp", "1700000000".to_owned()),
        ("webhook-signature", entries.join(" ")),
    ];
    let rejection = verifier(SchemeId::StandardWebhooksV1)
        .verify(&headers, "{}")
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::MalformedHeader);

    let stripe = format!("t=1700000000,{}", vec!["v1=00"; 5000].join(","));
    let rejection = verifier(SchemeId::Stripe)
        .verify(&[("Stripe-Signature", stripe)], "{}")
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::MalformedHeader);
}

#[test]
fn huge_header_values_are_rejected_cleanly() {
    let huge = "a".repeat(1 << 20);
    let headers = [("X-Hub-Signature-256", format!("sha256={huge}"))];
    let rejection = verifier(SchemeId::Github)
        .verify(&headers, "{}")
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::SignatureMismatch);
    let headers = [
        ("webhook-id", huge.clone()),
        ("webhook-timestamp", huge.clone()),
        ("webhook-signature", huge),
    ];
    let rejection = verifier(SchemeId::StandardWebhooksV1)
        .verify(&headers, "{}")
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::InvalidTimestamp);
}

#[test]
fn deeply_nested_json_bodies_do_not_overflow_the_stack() {
    // Stripe reads the event id out of the (verified) body lazily; nesting must not crash it.
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let signer = Signer::new(SchemeId::Stripe, SECRET).unwrap();
    let signed = signer
        .sign(&SignRequest::new(body.clone()).timestamp(1_700_000_000))
        .unwrap();
    let event = verifier(SchemeId::Stripe)
        .verify(&signed.headers, body)
        .unwrap();
    assert!(event.dedup_key().starts_with("stripe:sha256:"));
    assert_eq!(event.event_type(), None);
}

#[test]
fn no_secret_or_expected_signature_in_debug_display_or_errors() {
    let secret = "super-secret-value-1234567890";
    let verifier = Verifier::builder(SchemeId::Github)
        .keyring(Keyring::new().with(Key::new(secret).with_id("primary")))
        .build()
        .unwrap();
    let signer = Signer::new(SchemeId::Github, secret).unwrap();
    let signed = signer.sign(&SignRequest::new("payload")).unwrap();
    let expected_signature = signed
        .headers
        .iter()
        .find(|(k, _)| k == "X-Hub-Signature-256")
        .unwrap()
        .1
        .clone();
    let expected_hex = expected_signature.trim_start_matches("sha256=");

    // A forged delivery: the error must not reveal the signature that would have matched.
    let rejection = verifier
        .verify(&[("X-Hub-Signature-256", "sha256=00")], "payload")
        .unwrap_err();
    let event = verifier.verify(&signed.headers, "payload").unwrap();
    let outputs = [
        format!("{verifier:?}"),
        format!("{signer:?}"),
        format!("{rejection:?} {rejection}"),
        format!("{event:?}"),
        format!("{:?}", Key::new(secret)),
        format!("{:?}", hookgate::Secret::new(secret)),
        format!("{:?}", Keyring::new().with(secret)),
    ];
    for output in outputs {
        assert!(!output.contains(secret), "secret leaked: {output}");
        assert!(
            !output.contains(expected_hex),
            "expected signature leaked: {output}"
        );
    }

    let config_error = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret("whsec_***not base64***")
        .build()
        .unwrap_err();
    assert!(!config_error.to_string().contains("not base64"));
    assert!(!format!("{config_error:?}").contains("not base64"));
}
