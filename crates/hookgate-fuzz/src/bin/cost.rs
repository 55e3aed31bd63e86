//! What the worst forged request costs, per scheme: the most signatures the parser allows,
//! each of the right shape but wrong, over the largest body the gate accepts by default.
//! Opt-in, like the timing check (numbers, not assertions):
//!
//! ```text
//! cargo run --release -p hookgate-fuzz --features timing --bin cost
//! HOOKGATE_COST_BODY=65536 HOOKGATE_COST_KEYS=2 cargo run --release -p hookgate-fuzz --features timing --bin cost
//! ```
//!
//! An unauthenticated sender controls this cost, so it is the number to compare with the
//! request rate a receiver must survive.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hookgate::{FixedClock, SchemeId, SignRequest, Signer, Verifier};

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://hooks.example.com/twilio?tenant=7";
const MAX_SIGNATURES: usize = 32;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The signing and verifying keys of each scheme.
fn keys(scheme: SchemeId) -> Option<(String, String)> {
    Some(match scheme {
        SchemeId::StandardWebhooksV1a => (
            "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==".to_owned(),
            "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=".to_owned(),
        ),
        SchemeId::Discord => (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60".to_owned(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".to_owned(),
        ),
        SchemeId::Sendgrid => {
            use p256::pkcs8::EncodePrivateKey as _;
            let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).ok()?;
            let private = base64::engine::general_purpose::STANDARD
                .encode(key.to_pkcs8_der().ok()?.as_bytes());
            let public = Signer::new(SchemeId::Sendgrid, &private).ok()?.verifying_key()?;
            (private, public)
        }
        // hookgate's format for Braintree's key pair.
        SchemeId::Braintree => (
            "cost_public_key:MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            "cost_public_key:MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        ),
        _ => (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        ),
    })
}

/// The decoded signature with one byte in its second half flipped: still well-formed (a
/// valid Ed25519 `R`, a DER integer), so the verifier does the full work before it fails.
fn wrong(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    let at = raw
        .len()
        .saturating_sub(raw.len() / 4)
        .min(raw.len().saturating_sub(1));
    if let Some(b) = out.get_mut(at) {
        *b ^= 0x01;
    }
    out
}

fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn enc64(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i.saturating_add(2))?, 16).ok())
        .collect()
}

fn enc_hex(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature header value of the worst forged request, from the valid one.
fn forged(scheme: SchemeId, valid: &str) -> Option<String> {
    let many = |f: &dyn Fn() -> String, sep: &str| vec![f(); MAX_SIGNATURES].join(sep);
    Some(match scheme {
        SchemeId::StandardWebhooksV1
        | SchemeId::StandardWebhooksV1a
        | SchemeId::Svix
        | SchemeId::GitlabSigning => {
            let (version, sig) = valid.split_once(',')?;
            let bad = format!("{version},{}", enc64(&wrong(&b64(sig)?)));
            many(&|| bad.clone(), " ")
        }
        SchemeId::Stripe | SchemeId::Prefinery | SchemeId::Paddle => {
            let (sep, key) = if scheme == SchemeId::Paddle {
                (";", "h1=")
            } else {
                (",", "v1=")
            };
            let (ts, sig) = valid.split_once(sep)?;
            let sig = sig.strip_prefix(key)?;
            let bad = format!("{key}{}", enc_hex(&wrong(&hex(sig)?)));
            format!("{ts}{sep}{}", many(&|| bad.clone(), sep))
        }
        SchemeId::Shopify
        | SchemeId::Square
        | SchemeId::Twilio
        | SchemeId::TwilioBodySha256
        | SchemeId::Sendgrid => enc64(&wrong(&b64(valid)?)),
        SchemeId::GitlabToken => format!("{valid}x"),
        _ => match valid.split_once('=') {
            Some((prefix, sig)) => format!("{prefix}={}", enc_hex(&wrong(&hex(sig)?))),
            None => enc_hex(&wrong(&hex(valid)?)),
        },
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let body_len = env("HOOKGATE_COST_BODY", 2 * 1024 * 1024);
    let key_count = env("HOOKGATE_COST_KEYS", 1).max(1);
    let runs = env("HOOKGATE_COST_RUNS", 9).max(1);
    println!(
        "worst forged request vs one valid delivery: {body_len}-byte body, {key_count} key(s), median of {runs}"
    );
    println!(
        "{:<22} {:>12} {:>14} {:>8}",
        "scheme", "valid", "worst forged", "ratio"
    );
    for scheme in SchemeId::ALL {
        let Some((signing, verifying)) = keys(scheme) else {
            continue;
        };
        let mut builder = Verifier::builder(scheme)
            .url(URL)
            .clock(FixedClock::from_unix(NOW.unsigned_abs()));
        for _ in 0..key_count {
            builder = builder.secret(verifying.as_str());
        }
        let (Ok(verifier), Ok(signer)) = (builder.build(), Signer::new(scheme, &signing)) else {
            continue;
        };
        let body = if scheme == SchemeId::Linear {
            let mut b = format!(
                "{{\"webhookTimestamp\":{},\"pad\":\"",
                NOW.saturating_mul(1000)
            );
            b.push_str(&"a".repeat(body_len.saturating_sub(b.len()).saturating_sub(2)));
            b.push_str("\"}");
            b.into_bytes()
        } else {
            vec![b'a'; body_len]
        };
        let request = SignRequest::new(body)
            .id("msg_cost")
            .timestamp(NOW)
            .url(URL);
        let Ok(delivery) = signer.sign(&request) else {
            continue;
        };
        let url = delivery.url.as_deref().or(Some(URL));
        let valid = time(runs, || {
            let ok = verifier
                .verify_at_url(&delivery.headers, delivery.body.clone(), url)
                .is_ok();
            std::hint::black_box(ok);
        });
        let worst = scheme.signature_header().and_then(|name| {
            let value = delivery.headers.iter().find(|(k, _)| k == name)?.1.clone();
            let mut headers = delivery.headers.clone();
            let slot = headers.iter_mut().find(|(k, _)| k == name)?;
            slot.1 = forged(scheme, &value)?;
            let rejected = verifier
                .verify_at_url(&headers, delivery.body.clone(), url)
                .is_err();
            rejected.then(|| {
                time(runs, || {
                    let result = verifier.verify_at_url(&headers, delivery.body.clone(), url);
                    std::hint::black_box(result.is_err());
                })
            })
        });
        let ratio = worst.map_or(String::from("-"), |w| {
            format!("{:.1}x", w.as_secs_f64() / valid.as_secs_f64().max(1e-9))
        });
        println!(
            "{:<22} {:>12} {:>14} {:>8}",
            scheme.as_str(),
            format!("{valid:.2?}"),
            worst.map_or(String::from("-"), |w| format!("{w:.2?}")),
            ratio
        );
    }
}
