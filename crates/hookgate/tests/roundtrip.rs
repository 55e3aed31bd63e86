//! Property tests: for every scheme with a signing side, verify(sign(x)) holds, and flipping
//! any single bit of the body, the signature, or a signed id or timestamp is rejected.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use hookgate::{FixedClock, SchemeId, SignRequest, SignedDelivery, Signer, Verifier};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://hooks.example.com/twilio?tenant=7";

/// A signing key and the matching verifying key for each scheme.
fn keys(scheme: SchemeId) -> (String, String) {
    match scheme {
        SchemeId::StandardWebhooksV1
        | SchemeId::Svix
        | SchemeId::GitlabSigning
        | SchemeId::Clerk
        | SchemeId::Resend => {
            let s = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
            (s.clone(), s)
        }
        SchemeId::StandardWebhooksV1a => (
            "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==".to_owned(),
            "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=".to_owned(),
        ),
        SchemeId::Discord => (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60".to_owned(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".to_owned(),
        ),
        SchemeId::Sendgrid => {
            let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD;
            let private = b64.encode(key.to_pkcs8_der().unwrap().as_bytes());
            let public = b64.encode(key.verifying_key().to_public_key_der().unwrap().as_bytes());
            (private, public)
        }
        // Airtable's macSecretBase64 is base64 of the key bytes.
        SchemeId::Airtable => {
            let s = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".to_owned();
            (s.clone(), s)
        }
        // hookgate's format for Braintree's key pair: public_key:private_key.
        SchemeId::Braintree => {
            let s = "a_public_key:a-shared-secret-0123".to_owned();
            (s.clone(), s)
        }
        _ => ("a-shared-secret-0123".to_owned(), "a-shared-secret-0123".to_owned()),
    }
}

/// What each scheme authenticates besides the body.
struct Covered {
    body: bool,
    headers: &'static [&'static str],
}

fn covered(scheme: SchemeId) -> Covered {
    let (body, headers): (bool, &'static [&'static str]) = match scheme {
        SchemeId::StandardWebhooksV1 | SchemeId::StandardWebhooksV1a | SchemeId::GitlabSigning => {
            (true, &["webhook-id", "webhook-timestamp"])
        }
        SchemeId::Svix | SchemeId::Clerk | SchemeId::Resend => {
            (true, &["svix-id", "svix-timestamp"])
        }
        SchemeId::Slack => (true, &["X-Slack-Request-Timestamp"]),
        SchemeId::Zoom => (true, &["x-zm-request-timestamp"]),
        SchemeId::Discord => (true, &["X-Signature-Timestamp"]),
        SchemeId::Sendgrid => (true, &["X-Twilio-Email-Event-Webhook-Timestamp"]),
        SchemeId::TwitchEventsub => (
            true,
            &[
                "Twitch-Eventsub-Message-Id",
                "Twitch-Eventsub-Message-Timestamp",
            ],
        ),
        // Mailgun signs only the timestamp and token in the body; shared tokens (GitLab,
        // Okta) sign nothing.
        SchemeId::Mailgun
        | SchemeId::GitlabToken
        | SchemeId::Okta
        | SchemeId::Telegram
        | SchemeId::Postmark
        | SchemeId::Figma
        | SchemeId::MicrosoftGraph
        | SchemeId::AzureEventGrid => (false, &[]),
        _ => (true, &[]),
    };
    Covered { body, headers }
}

/// A body of the shape the scheme's senders use, built from arbitrary bytes.
fn body_for(scheme: SchemeId, raw: &[u8]) -> Vec<u8> {
    let text: String = raw.iter().map(|b| char::from(b'a' + b % 26)).collect();
    match scheme {
        SchemeId::Twilio => format!("Body={text}&From=%2B1555{}&To=x", raw.len()).into_bytes(),
        SchemeId::Linear => format!(
            r#"{{"action":"create","data":"{text}","webhookTimestamp":{}}}"#,
            NOW * 1000
        )
        .into_bytes(),
        SchemeId::Mailgun | SchemeId::Figma | SchemeId::MicrosoftGraph => {
            format!(r#"{{"event":"delivered","note":"{text}"}}"#).into_bytes()
        }
        // Shopify never sends an empty body, and the preset refuses one as its SDK does.
        SchemeId::Shopify => format!(r#"{{"note":"{text}"}}"#).into_bytes(),
        // Braintree's notification is XML, never empty; an empty `bt_payload` is refused as
        // braintree_node refuses it.
        SchemeId::Braintree => format!("<notification>{text}</notification>").into_bytes(),
        // PagerDuty never sends an empty body, and the preset refuses one as go-pagerduty does.
        SchemeId::Pagerduty => format!(r#"{{"event":{{"id":"{text}"}}}}"#).into_bytes(),
        _ => raw.to_vec(),
    }
}

fn sign(scheme: SchemeId, body: &[u8], id: &str) -> SignedDelivery {
    let (signing, _) = keys(scheme);
    let signer = Signer::new(scheme, &signing).unwrap_or_else(|e| panic!("{scheme}: {e}"));
    let mut request = SignRequest::new(body.to_vec()).id(id).timestamp(NOW);
    if scheme.signs_url() {
        request = request.url(URL);
    }
    signer
        .sign(&request)
        .unwrap_or_else(|e| panic!("{scheme}: {e}"))
}

fn verify(scheme: SchemeId, delivery: &SignedDelivery) -> Result<(), String> {
    let (_, verifying) = keys(scheme);
    let verifier = Verifier::builder(scheme)
        .secret(verifying)
        .clock(FixedClock::from_unix(NOW as u64))
        .build_with_url_per_request()
        .unwrap();
    verifier
        .verify_at_url(
            &delivery.headers,
            delivery.body.clone(),
            delivery.url.as_deref().or(Some(URL)),
        )
        .map(|_| ())
        .map_err(|r| r.code().to_owned())
}

/// The decoded form parameters of a body, in order.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn flip_bit(bytes: &mut [u8], position: usize, bit: u8) {
    let len = bytes.len();
    bytes[position % len] ^= 1 << bit;
}

/// Flips a low bit (0–6) of a header value, keeping it ASCII.
fn flip_header(delivery: &SignedDelivery, name: &str, position: usize, bit: u8) -> SignedDelivery {
    let mut changed = delivery.clone();
    let (_, value) = changed
        .headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap();
    let mut bytes = value.clone().into_bytes();
    flip_bit(&mut bytes, position, bit % 7);
    *value = String::from_utf8(bytes).unwrap();
    changed
}

fn signable() -> Vec<SchemeId> {
    SchemeId::ALL.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sign_then_verify_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..300), id in "[a-zA-Z0-9_]{1,40}") {
        for scheme in signable() {
            let delivery = sign(scheme, &body_for(scheme, &raw), &id);
            prop_assert_eq!(verify(scheme, &delivery), Ok(()), "{}", scheme);
        }
    }

    #[test]
    fn any_flipped_body_bit_is_rejected(raw in proptest::collection::vec(any::<u8>(), 1..300), position in any::<usize>(), bit in 0u8..8) {
        for scheme in signable().into_iter().filter(|s| covered(*s).body) {
            let mut delivery = sign(scheme, &body_for(scheme, &raw), "msg_1");
            let mut body = delivery.body.to_vec();
            flip_bit(&mut body, position, bit);
            // Twilio and Braintree sign decoded form fields: `%2B` and `%2b` are the same
            // content.
            let form = matches!(scheme, SchemeId::Twilio | SchemeId::Braintree);
            if form && form_pairs(&body) == form_pairs(&delivery.body) {
                continue;
            }
            delivery.body = body.into();
            prop_assert!(verify(scheme, &delivery).is_err(), "{} accepted a flipped body bit", scheme);
        }
    }

    #[test]
    fn any_flipped_signature_bit_is_rejected(raw in proptest::collection::vec(any::<u8>(), 0..200), position in any::<usize>(), bit in 0u8..7) {
        for scheme in signable() {
            let delivery = sign(scheme, &body_for(scheme, &raw), "msg_1");
            let Some(header) = scheme.signature_header() else { continue };
            let value = &delivery.headers.iter().find(|(k, _)| k == header).unwrap().1;
            // Hex in either case is the same signature for Discord and PagerDuty (as
            // go-pagerduty decodes it); flip the bytes after any `v1=` instead.
            let changed = if scheme == SchemeId::Discord || scheme == SchemeId::Pagerduty {
                let (prefix, hex) = value.split_at(value.find('=').map_or(0, |i| i + 1));
                let mut bytes = base16ct::mixed::decode_vec(hex).unwrap();
                flip_bit(&mut bytes, position, bit);
                let mut changed = delivery.clone();
                changed.headers.iter_mut().find(|(k, _)| k == header).unwrap().1 = format!("{prefix}{}", base16ct::lower::encode_string(&bytes));
                changed
            } else if scheme == SchemeId::Postmark {
                // RFC 7617: the scheme name `Basic` is case-insensitive; flip the credentials.
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut bytes = b64.decode(value.strip_prefix("Basic ").unwrap()).unwrap();
                flip_bit(&mut bytes, position, bit);
                let mut changed = delivery.clone();
                changed.headers.iter_mut().find(|(k, _)| k == header).unwrap().1 = format!("Basic {}", b64.encode(&bytes));
                changed
            } else if scheme == SchemeId::AzureEventGrid {
                // The auth scheme `Bearer` is case-insensitive (RFC 7235); flip the token.
                let mut bytes = value.strip_prefix("Bearer ").unwrap().as_bytes().to_vec();
                flip_bit(&mut bytes, position, bit);
                let mut changed = delivery.clone();
                changed.headers.iter_mut().find(|(k, _)| k == header).unwrap().1 = format!("Bearer {}", String::from_utf8(bytes).unwrap());
                changed
            } else {
                flip_header(&delivery, header, position, bit)
            };
            prop_assert!(verify(scheme, &changed).is_err(), "{} accepted a flipped signature bit", scheme);
        }
    }

    #[test]
    fn any_flipped_id_or_timestamp_bit_is_rejected(raw in proptest::collection::vec(any::<u8>(), 0..200), position in any::<usize>(), bit in 0u8..7) {
        for scheme in signable() {
            let delivery = sign(scheme, &body_for(scheme, &raw), "msg_2Xyz");
            for header in covered(scheme).headers {
                let changed = flip_header(&delivery, header, position, bit);
                prop_assert!(verify(scheme, &changed).is_err(), "{} accepted a flipped bit in {}", scheme, header);
            }
        }
    }

    #[test]
    fn mailgun_signed_fields_are_covered(position in any::<usize>(), bit in 0u8..7, field in 0usize..3) {
        let scheme = SchemeId::Mailgun;
        let delivery = sign(scheme, br#"{"event":"delivered"}"#, "0123456789abcdef0123456789abcdef0123456789abcdef01");
        let mut json: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
        let name = ["timestamp", "token", "signature"][field];
        let value = json["signature"][name].as_str().unwrap().to_owned();
        let mut bytes = value.into_bytes();
        flip_bit(&mut bytes, position, bit);
        json["signature"][name] = serde_json::Value::String(String::from_utf8(bytes).unwrap());
        let mut changed = delivery.clone();
        changed.body = json.to_string().into();
        prop_assert!(verify(scheme, &changed).is_err());
    }
}

#[test]
fn unauthenticated_parts_are_documented_limits() {
    // GitLab's classic token does not cover the body: a changed body still verifies.
    let delivery = sign(SchemeId::GitlabToken, b"{}", "id");
    let mut changed = delivery.clone();
    changed.body = "{\"tampered\":true}".into();
    assert_eq!(verify(SchemeId::GitlabToken, &changed), Ok(()));
    // Mailgun's signature covers timestamp and token only, not the event data.
    let delivery = sign(SchemeId::Mailgun, br#"{"event":"delivered"}"#, "tok");
    let tampered = String::from_utf8(delivery.body.to_vec())
        .unwrap()
        .replace("delivered", "failed");
    let mut changed = delivery.clone();
    changed.body = tampered.into();
    assert_eq!(verify(SchemeId::Mailgun, &changed), Ok(()));
}

#[test]
fn every_scheme_can_sign() {
    for scheme in SchemeId::ALL {
        let delivery = sign(scheme, &body_for(scheme, b"hello"), "msg_1");
        assert_eq!(verify(scheme, &delivery), Ok(()), "{scheme}");
    }
}
