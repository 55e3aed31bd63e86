//! The keys, clock and URL every harness uses, so that seeds signed here verify there.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use hookgate::{Encoding, FixedClock, GenericHmac, SchemeId, Signer, Verifier};
use p256::pkcs8::EncodePrivateKey as _;

/// The fixed "now" of every verifier here (Unix seconds); seeds are signed at this instant.
pub const NOW: i64 = 1_700_000_000;

/// The public URL the URL-signing schemes (Twilio, Square) are verified against.
pub const URL: &str = "https://hooks.example.com/twilio?tenant=7";

/// The shared secret of every HMAC scheme (a raw string for most, `whsec_` base64 for
/// Standard Webhooks, Svix and GitLab signing tokens) and GitLab's token.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A part of [`SECRET`] that must never appear in any output.
pub(crate) const SECRET_MARKER: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const WHSK: &str =
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
const WHPK: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";
const DISCORD_PRIVATE: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const DISCORD_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// The SendGrid P-256 key pair, as base64 PKCS#8 (signing) and base64 SPKI (verifying).
fn sendgrid_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let private = p256::ecdsa::SigningKey::from_slice(&[7u8; 32])
            .ok()
            .and_then(|key| key.to_pkcs8_der().ok())
            .map(|der| base64::engine::general_purpose::STANDARD.encode(der.as_bytes()))
            .unwrap_or_default();
        let public = Signer::new(SchemeId::Sendgrid, &private)
            .ok()
            .and_then(|signer| signer.verifying_key())
            .unwrap_or_default();
        (private, public)
    })
}

/// Braintree's key pair in hookgate's `public_key:private_key` format, [`SECRET`] as the
/// private key.
fn braintree_pair() -> String {
    format!("fuzz_public_key:{SECRET}")
}

/// The secret a sender signs `scheme` with.
pub(crate) fn signing_secret(scheme: SchemeId) -> String {
    match scheme {
        SchemeId::StandardWebhooksV1a => WHSK.to_owned(),
        SchemeId::Discord => DISCORD_PRIVATE.to_owned(),
        SchemeId::Sendgrid => sendgrid_keys().0.clone(),
        SchemeId::Braintree => braintree_pair(),
        _ => SECRET.to_owned(),
    }
}

/// The key a receiver verifies `scheme` with.
pub(crate) fn verifying_secret(scheme: SchemeId) -> String {
    match scheme {
        SchemeId::StandardWebhooksV1a => WHPK.to_owned(),
        SchemeId::Discord => DISCORD_PUBLIC.to_owned(),
        SchemeId::Sendgrid => sendgrid_keys().1.clone(),
        SchemeId::Braintree => braintree_pair(),
        _ => SECRET.to_owned(),
    }
}

/// A verifier of `scheme` at [`NOW`], with [`URL`] for the URL-signing schemes (which may
/// also be given a URL per request). Built once per scheme.
pub(crate) fn verifier(scheme: SchemeId) -> Option<Verifier> {
    static VERIFIERS: OnceLock<HashMap<SchemeId, Verifier>> = OnceLock::new();
    VERIFIERS
        .get_or_init(|| {
            SchemeId::ALL
                .into_iter()
                .filter_map(|id| {
                    Verifier::builder(id)
                        .secret(verifying_secret(id))
                        .url(URL)
                        .clock(FixedClock::from_unix(NOW.unsigned_abs()))
                        .build()
                        .ok()
                        .map(|v| (id, v))
                })
                .collect()
        })
        .get(&scheme)
        .cloned()
}

/// The two generic HMAC configurations the `generic_hmac` target exercises: hex with a
/// prefix, a separator and an id and timestamp in the signed content; and bare base64 over
/// the body with a `whsec_` secret.
pub(crate) fn generic_schemes() -> &'static [(GenericHmac, Verifier)] {
    static GENERIC: OnceLock<Vec<(GenericHmac, Verifier)>> = OnceLock::new();
    GENERIC.get_or_init(|| {
        let schemes = [
            GenericHmac::builder("acme")
                .signature_header("X-Acme-Signature")
                .prefix("sha256=")
                .encoding(Encoding::Hex)
                .separator(',')
                .id_header("X-Acme-Delivery")
                .timestamp_header("X-Acme-Timestamp")
                .template("{id}.{timestamp}.{body}")
                .build(),
            GenericHmac::builder("acme-b64")
                .signature_header("X-Acme-Signature")
                .encoding(Encoding::Base64)
                .base64_secrets()
                .build(),
        ];
        schemes
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|scheme| {
                Verifier::builder(scheme.clone())
                    .secret(SECRET)
                    .clock(FixedClock::from_unix(NOW.unsigned_abs()))
                    .build()
                    .ok()
                    .map(|verifier| (scheme, verifier))
            })
            .collect()
    })
}
