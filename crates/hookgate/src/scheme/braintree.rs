//! Braintree webhooks, as the official SDKs check them (braintree/braintree_python
//! `webhook_notification_gateway.py`, braintree/braintree_node
//! `webhook_notification_gateway.js`, and their tests):
//!
//! - the body is a form with `bt_signature` and `bt_payload`;
//! - `bt_payload` (base64 of the notification XML, with newlines) may hold only
//!   `A-Z a-z 0-9 + = /` and newlines, else it is refused before any MAC;
//! - `bt_signature` is `public_key|hex` pairs joined by `&`; the **first** pair whose public
//!   key is ours is the signature (none: "no matching public key");
//! - the hex is `HMAC-SHA1(key = SHA-1(private key), payload)`, compared as a string (so
//!   lowercase), over the payload as received **or** with one `\n` appended;
//! - the `GET ?bt_challenge=C` handshake is answered `public_key|hex(HMAC-SHA1(SHA-1(private
//!   key), C))`.
//!
//! The key pair is written `public_key:private_key`: hookgate's format, not Braintree's.

use std::borrow::Cow;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use smallvec::{SmallVec, smallvec};

use super::extract::{Candidate, Extracted, MAX_SIGNATURES, reject};
use crate::encoding::{BASE64, hex};
use crate::event::DedupRecipe;
use crate::reason::{Reason, Rejection};
use crate::secret::KeyBytes;

/// The form field holding the signature pairs.
pub(crate) const SIGNATURE: &str = "bt_signature";
/// The form field holding the signed payload.
pub(crate) const PAYLOAD: &str = "bt_payload";

/// A Braintree key pair, decoded: the public key (sent in clear in every signature) and the
/// HMAC-SHA1 key, the SHA-1 digest of the private key.
pub(crate) struct KeyPair {
    pub(crate) public: Box<str>,
    pub(crate) hmac_key: KeyBytes,
}

impl KeyPair {
    /// Reads `public_key:private_key`.
    ///
    /// # Errors
    /// A description of the problem (never the key) when either half is empty or the public
    /// key holds `|` or `&`, which cannot appear in a signature pair.
    pub(crate) fn parse(secret: &str) -> Result<KeyPair, &'static str> {
        const FORMAT: &str =
            "expected public_key:private_key (hookgate's format for Braintree's API key pair)";
        let (public, private) = secret.trim().split_once(':').ok_or(FORMAT)?;
        if public.is_empty() || private.is_empty() || public.contains(['|', '&']) {
            return Err(FORMAT);
        }
        Ok(KeyPair {
            public: Box::from(public),
            hmac_key: KeyBytes::new(Sha1::digest(private.as_bytes()).to_vec()),
        })
    }

    /// `hex(HMAC-SHA1(SHA-1(private key), message))`, lowercase as the SDKs write it.
    pub(crate) fn hex_mac(&self, message: &[&[u8]]) -> String {
        match <Hmac<Sha1> as Mac>::new_from_slice(self.hmac_key.as_slice()) {
            Ok(mut mac) => {
                for part in message {
                    mac.update(part);
                }
                hex(&mac.finalize().into_bytes())
            }
            // Unreachable (HMAC takes keys of any length); an empty answer never matches.
            Err(_) => String::new(),
        }
    }

    /// `public_key|hex(…)` over `message`: a signature pair, or the challenge's answer.
    pub(crate) fn pair(&self, message: &[u8]) -> String {
        format!("{}|{}", self.public, self.hex_mac(&[message]))
    }

    /// Whether the signature matches the payload as received or with one `\n` appended (the
    /// two forms the SDKs try), as the SDKs decide. One pass over the payload: the MAC state
    /// after it is finished twice, once as is and once after a newline.
    pub(crate) fn matches(&self, extracted: &Extracted<'_>) -> bool {
        let Some(signature) = matching_signature(&self.public, &extracted.signatures) else {
            return false;
        };
        let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(self.hmac_key.as_slice()) else {
            return false;
        };
        for message in &extracted.messages {
            for part in message {
                mac.update(part);
            }
        }
        let mut with_newline = mac.clone();
        with_newline.update(b"\n");
        let as_sent = hex(&mac.finalize().into_bytes());
        let with_newline = hex(&with_newline.finalize().into_bytes());
        bool::from(as_sent.as_bytes().ct_eq(signature) | with_newline.as_bytes().ct_eq(signature))
    }

    /// Whether the signature names this public key at all (else the SDKs answer "no
    /// matching public key").
    pub(crate) fn is_named(&self, extracted: &Extracted<'_>) -> bool {
        matching_signature(&self.public, &extracted.signatures).is_some()
    }
}

/// The signature of the first pair naming `public`, as both SDKs pick it; `None` when no
/// pair names it, its signature is empty (braintree_python: `if not signature`), or a pair
/// of more than two parts comes first (braintree_python fails on it; braintree_node reads
/// its first two parts: the stricter answer is kept).
fn matching_signature<'s>(public: &str, pairs: &'s [Candidate]) -> Option<&'s [u8]> {
    for pair in pairs {
        let mut parts = pair.split(|b| *b == b'|');
        let (Some(key), Some(signature), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        if key == public.as_bytes() {
            return Some(signature).filter(|s| !s.is_empty());
        }
    }
    None
}

/// Reads `bt_signature` and `bt_payload` from the form body.
pub(crate) fn extract<'a>(body: &[u8]) -> Result<Extracted<'a>, Rejection> {
    let mut signature: Option<String> = None;
    let mut payload: Option<String> = None;
    for (name, value) in form_urlencoded::parse(body) {
        let (slot, location) = match &*name {
            SIGNATURE => (&mut signature, SIGNATURE),
            PAYLOAD => (&mut payload, PAYLOAD),
            _ => continue,
        };
        // A repeated field is ambiguous (frameworks keep the first or the last).
        if slot.replace(value.into_owned()).is_some() {
            return Err(reject(Reason::MalformedHeader, location));
        }
    }
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or_else(|| reject(Reason::MissingSignature, SIGNATURE))?;
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or_else(|| reject(Reason::MissingSignature, PAYLOAD))?;
    // The SDKs refuse any other character before computing a MAC ("payload contains
    // illegal characters"): an invalid signature.
    if !payload
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b'/' | b'\n'))
    {
        return Err(reject(Reason::SignatureMismatch, PAYLOAD));
    }
    let pairs: SmallVec<[Candidate; 2]> = signature
        .split('&')
        .filter(|pair| pair.contains('|'))
        .map(|pair| Candidate::from_slice(pair.as_bytes()))
        .collect();
    if pairs.is_empty() {
        return Err(reject(Reason::NoSupportedSignature, SIGNATURE));
    }
    if pairs.len() > MAX_SIGNATURES {
        return Err(reject(Reason::MalformedHeader, SIGNATURE));
    }
    // One payload, two accepted forms: the SDKs sign the canonical one with a final newline,
    // so both forms of a delivery share one dedup key.
    let mut digest = Sha256::new();
    digest.update(payload.as_bytes());
    if !payload.ends_with('\n') {
        digest.update(b"\n");
    }
    let dedup = DedupRecipe::SignedContentDigest(hex(&digest.finalize()));
    // The one message is the payload as received; `KeyPair::matches` also finishes it with a
    // newline appended.
    let mut out = Extracted::new(
        smallvec![smallvec![Cow::Owned(payload.into_bytes())]],
        SIGNATURE,
    );
    out.signatures = pairs;
    out.dedup = dedup;
    Ok(out)
}

/// The form body a Braintree sender posts for `notification` (the XML): `bt_payload` is its
/// base64 in lines of 76 characters, each ending with `\n` (Python's `encodebytes`, as the
/// SDKs' `sample_notification` makes it), `bt_signature` the pair over that payload.
pub(crate) fn form_body(key: &KeyPair, notification: &[u8]) -> String {
    let encoded = BASE64.encode(notification);
    let lines = encoded.len().div_ceil(76);
    let mut payload = String::with_capacity(encoded.len().saturating_add(lines));
    for line in encoded.as_bytes().chunks(76) {
        payload.push_str(&String::from_utf8_lossy(line));
        payload.push('\n');
    }
    let signature = key.pair(payload.as_bytes());
    form_urlencoded::Serializer::new(String::new())
        .append_pair(SIGNATURE, &signature)
        .append_pair(PAYLOAD, &payload)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "integration_public_key:integration_private_key";

    #[test]
    fn the_official_challenge_answer() {
        // braintree_python tests/unit/test_webhooks.py::test_verify_returns_a_correct_challenge_response
        let key = KeyPair::parse(KEYS).unwrap();
        assert_eq!(
            key.pair(b"20f9f8ed05f77439fe955c977e4c8a53"),
            "integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4"
        );
    }

    #[test]
    fn key_pairs_need_both_halves() {
        for bad in [
            "",
            "public",
            ":private",
            "public:",
            "pub|lic:private",
            "a&b:c",
        ] {
            assert!(KeyPair::parse(bad).is_err(), "{bad}");
        }
        let key = KeyPair::parse(" pk:with:colon ").unwrap();
        assert_eq!(&*key.public, "pk");
        assert_eq!(key.hmac_key.as_slice(), &Sha1::digest(b"with:colon")[..]);
    }

    #[test]
    fn the_first_pair_naming_the_key_is_the_signature() {
        let pairs = |list: &[&str]| -> Vec<Candidate> {
            list.iter()
                .map(|p| Candidate::from_slice(p.as_bytes()))
                .collect()
        };
        assert_eq!(
            matching_signature("pk", &pairs(&["other|aa", "pk|bb", "pk|cc"])),
            Some(&b"bb"[..])
        );
        assert_eq!(matching_signature("pk", &pairs(&["other|aa"])), None);
        assert_eq!(matching_signature("pk", &pairs(&["pk|"])), None);
        assert_eq!(matching_signature("pk", &pairs(&["x|y|z", "pk|bb"])), None);
        assert_eq!(
            matching_signature("pk", &pairs(&["pk|bb", "x|y|z"])),
            Some(&b"bb"[..])
        );
    }

    #[test]
    fn a_signed_form_verifies_in_both_forms_and_shares_one_dedup_key() {
        let key = KeyPair::parse(KEYS).unwrap();
        let body = form_body(&key, b"<notification><kind>check</kind></notification>");
        let out = extract(body.as_bytes()).unwrap();
        assert!(key.matches(&out) && key.is_named(&out));
        let other = KeyPair::parse("integration_public_key:another").unwrap();
        assert!(!other.matches(&out) && other.is_named(&out));
        let stranger = KeyPair::parse("someone_else:integration_private_key").unwrap();
        assert!(!stranger.matches(&out) && !stranger.is_named(&out));

        // The payload without its final newline: the SDKs retry it with one.
        let trimmed = body.replace("%0A&", "&");
        let trimmed = trimmed.strip_suffix("%0A").unwrap_or(&trimmed).to_owned();
        assert_ne!(trimmed, body);
        let again = extract(trimmed.as_bytes()).unwrap();
        assert!(key.matches(&again));
        let recipe = |e: &Extracted<'_>| match &e.dedup {
            DedupRecipe::SignedContentDigest(d) => d.clone(),
            _ => String::new(),
        };
        assert_eq!(recipe(&out), recipe(&again));
    }

    #[test]
    fn malformed_forms_are_refused_before_any_mac() {
        let code = |body: &str| {
            extract(body.as_bytes())
                .map(|_| "ok")
                .unwrap_or_else(|r| r.code())
        };
        assert_eq!(code("bt_payload=abc"), "missing_signature");
        assert_eq!(code("bt_signature=a%7Cb"), "missing_signature");
        assert_eq!(code("bt_signature=&bt_payload=abc"), "missing_signature");
        assert_eq!(code("bt_signature=a%7Cb&bt_payload="), "missing_signature");
        assert_eq!(
            code("bt_signature=bad_stuff&bt_payload=abc"),
            "no_supported_signature"
        );
        assert_eq!(
            code("bt_signature=a%7Cb&bt_payload=a+b"),
            "signature_mismatch"
        );
        assert_eq!(
            code("bt_signature=a%7Cb&bt_payload=a%0D%0A"),
            "signature_mismatch"
        );
        assert_eq!(
            code("bt_signature=a%7Cb&bt_payload=abc&bt_payload=abc"),
            "malformed_header"
        );
        assert_eq!(
            code("bt_signature=a%7Cb&bt_signature=a%7Cb&bt_payload=abc"),
            "malformed_header"
        );
        let many = vec!["k|00"; MAX_SIGNATURES + 1]
            .join("%26")
            .replace('|', "%7C");
        assert_eq!(
            code(&format!("bt_signature={many}&bt_payload=abc")),
            "malformed_header"
        );
        assert_eq!(
            code(
                "bt_signature=a%7Cb&bt_payload=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%2B%3D%2F%0A"
            ),
            "ok"
        );
    }
}
