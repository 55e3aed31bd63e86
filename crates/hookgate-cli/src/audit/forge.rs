//! The deliveries of the battery, each checked first against hookgate's own verifier (the
//! reference): a forgery the reference accepts is not a forgery for this scheme, and its
//! check does not apply.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hookgate::{Rejection, RequestContext, SchemeId, Signer, VerifiedEvent, Verifier};
use sha2::{Digest, Sha256};

use crate::duration::unix_now;
use crate::error::CliError;
use crate::outgoing::{self, Draft, Outgoing, Target};

/// The fixed DER prefix of a PKCS#8 P-256 private key without its public half: with a
/// 32-byte scalar appended, a key SendGrid-style signers accept.
const P256_PKCS8_PREFIX: [u8; 35] = [
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];

/// Everything needed to make deliveries for one scheme and key, and to check them.
#[derive(Debug)]
pub(super) struct Forge {
    pub(super) scheme: SchemeId,
    secret: String,
    signer: Signer,
    reference: Verifier,
    pub(super) target: Target,
    extra_headers: Vec<(String, String)>,
    /// This run's prefix for ids, so that runs never collide in the receiver's dedup store.
    run: String,
    /// The receiver's window, where the scheme signs a timestamp.
    pub(super) tolerance: Option<Duration>,
}

impl Forge {
    /// # Errors
    /// A key the scheme cannot sign with.
    pub(super) fn new(
        scheme: SchemeId,
        secret: &str,
        target: Target,
        extra_headers: Vec<(String, String)>,
        tolerance: Option<Duration>,
    ) -> Result<Self, CliError> {
        let signer = Signer::new(scheme, secret).map_err(|e| CliError::config(&e))?;
        let verifying = signer.verifying_key().unwrap_or_else(|| secret.to_owned());
        let mut builder = Verifier::builder(scheme).secret(verifying);
        let tolerance = tolerance.or(scheme.default_tolerance());
        if let Some(tolerance) = tolerance.filter(|_| scheme.has_timestamp()) {
            builder = builder.tolerance(tolerance);
        }
        let reference = builder
            .build_with_url_per_request()
            .map_err(|e| CliError::config(&e))?;
        Ok(Forge {
            scheme,
            secret: secret.to_owned(),
            signer,
            reference,
            target,
            extra_headers,
            run: outgoing::random_hex(6),
            tolerance: tolerance.filter(|_| scheme.has_timestamp()),
        })
    }

    /// The delivery id for the check `label`.
    pub(super) fn id(&self, label: &str) -> String {
        format!("msg_audit_{}_{label}", self.run)
    }

    /// The body for check `label` at `timestamp`, padded with `padding` bytes.
    pub(super) fn body(&self, label: &str, timestamp: i64, padding: usize) -> Bytes {
        let mut data = serde_json::json!({ "audit": label, "amount": 1000 });
        if padding > 0 {
            if let Some(object) = data.as_object_mut() {
                object.insert("padding".to_owned(), "x".repeat(padding).into());
            }
        }
        outgoing::sample_body(&self.id(label), "hookgate.audit", timestamp, data)
    }

    /// `body` signed as delivery `label` at `timestamp`, with this forge's key or `signer`.
    ///
    /// # Errors
    /// The key or request does not fit the scheme.
    pub(super) fn sign_body(
        &self,
        signer: Option<&Signer>,
        label: &str,
        body: Bytes,
        timestamp: i64,
    ) -> Result<Outgoing, CliError> {
        let id = self.id(label);
        let draft = Draft {
            body,
            id: &id,
            timestamp,
            event_type: Some("hookgate.audit"),
        };
        outgoing::sign(
            signer.unwrap_or(&self.signer),
            self.scheme,
            &self.target,
            &draft,
            &self.extra_headers,
        )
    }

    /// What hookgate's own verifier says about `request`.
    pub(super) fn reference(&self, request: &Outgoing) -> Result<VerifiedEvent, Rejection> {
        let line = RequestContext::new()
            .with_url_opt(request.signed_url.as_deref())
            .with_method(request.method.as_str());
        self.reference
            .verify_request(&request.headers, request.body.clone(), line)
    }

    /// A signer for the same scheme with another key of the same kind, whose deliveries the
    /// reference rejects; `None` when no such key can be made.
    pub(super) fn other_key_signer(&self) -> Option<Signer> {
        other_keys(&self.secret).into_iter().find_map(|key| {
            let signer = Signer::new(self.scheme, &key).ok()?;
            let now = unix_now();
            let probe = self
                .sign_body(
                    Some(&signer),
                    "probe-key",
                    self.body("probe-key", now, 0),
                    now,
                )
                .ok()?;
            self.reference(&probe).is_err().then_some(signer)
        })
    }

    /// A complete delivery of another scheme signed with the same secret (or, failing
    /// that, another key), which the reference rejects; with that scheme's id.
    pub(super) fn other_scheme(&self, label: &str) -> Option<(SchemeId, Outgoing)> {
        let keys: Vec<String> = std::iter::once(self.secret.clone())
            .chain(other_keys(&self.secret))
            .collect();
        SchemeId::ALL
            .into_iter()
            .filter(|other| *other != self.scheme && !other.signs_url())
            .find_map(|other| {
                keys.iter().find_map(|key| {
                    let signer = Signer::new(other, key).ok()?;
                    let id = self.id(label);
                    let timestamp = unix_now();
                    let body = outgoing::sample_body(
                        &id,
                        "hookgate.audit",
                        timestamp,
                        serde_json::json!({ "audit": label }),
                    );
                    let draft = Draft {
                        body,
                        id: &id,
                        timestamp,
                        event_type: Some("hookgate.audit"),
                    };
                    let request =
                        outgoing::sign(&signer, other, &self.target, &draft, &self.extra_headers)
                            .ok()?;
                    self.reference(&request)
                        .is_err()
                        .then_some((other, request))
                })
            })
    }
}

/// Keys of the same kind as `secret` but different: the same prefix with other base64
/// bytes, hex of the same kind, a plain string, and a P-256 PKCS#8 key.
fn other_keys(secret: &str) -> Vec<String> {
    let digest = Sha256::new()
        .chain_update(b"hookgate audit: another key for ")
        .chain_update(secret.as_bytes())
        .finalize();
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut keys = Vec::new();
    for prefix in ["whsec_", "whsk_", "whpk_"] {
        if secret.trim().starts_with(prefix) {
            keys.push(format!("{prefix}{b64}"));
        }
    }
    // A key pair written public_key:private_key (Braintree): the same public key with
    // another private key.
    if let Some((public, _)) = secret.split_once(':') {
        keys.push(format!("{public}:{hex}"));
    }
    keys.push(hex);
    keys.push(format!("{b64}-hookgate-audit"));
    let mut der = P256_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&digest);
    keys.push(base64::engine::general_purpose::STANDARD.encode(der));
    keys
}

/// `request` with its body changed in one place (the amount), the signature untouched. A
/// body where the amount is not visible (Braintree's base64 `bt_payload`) gets the letter or
/// digit nearest its middle changed instead.
pub(super) fn tampered(request: &Outgoing) -> Outgoing {
    let mut forged = request.clone();
    let text = String::from_utf8_lossy(&request.body);
    let changed = text.replacen("1000", "9000", 1);
    forged.body = if changed == text {
        Bytes::from(change_middle(&request.body))
    } else {
        Bytes::from(changed)
    };
    forged
}

/// `body` with the ASCII letter or digit nearest its middle replaced by the next one (`z`
/// by `a`, `9` by `0`), so the body keeps its shape.
fn change_middle(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let middle = body.len() / 2;
    let at = (middle..body.len())
        .chain((0..middle).rev())
        .find(|&i| body.get(i).is_some_and(u8::is_ascii_alphanumeric));
    if let Some(byte) = at.and_then(|i| out.get_mut(i)) {
        *byte = match *byte {
            b'z' => b'a',
            b'Z' => b'A',
            b'9' => b'0',
            other => other.saturating_add(1),
        };
    }
    out
}

/// `value` cut to three quarters of its length (at a character boundary).
pub(super) fn truncate(value: &str) -> String {
    let keep = value.len().saturating_sub(value.len() / 4);
    let mut end = keep.min(value.len());
    while end > 0 && !value.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    value.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forge(scheme: SchemeId, secret: &str) -> Forge {
        let target = Target {
            uri: "http://127.0.0.1:9/hooks".parse().unwrap(),
            public_url: "http://127.0.0.1:9/hooks".to_owned(),
            method: http::Method::POST,
        };
        Forge::new(scheme, secret, target, Vec::new(), None).unwrap()
    }

    #[test]
    fn valid_deliveries_verify_under_the_reference_for_every_hmac_scheme() {
        for scheme in SchemeId::ALL {
            let secret = match scheme {
                SchemeId::StandardWebhooksV1
                | SchemeId::Svix
                | SchemeId::GitlabSigning
                | SchemeId::Clerk
                | SchemeId::Resend => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SchemeId::StandardWebhooksV1a => continue,
                SchemeId::Discord => {
                    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
                }
                SchemeId::Sendgrid => continue,
                // Airtable's macSecretBase64 is base64 of the key bytes.
                SchemeId::Airtable => "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
                // hookgate's format for Braintree's key pair.
                SchemeId::Braintree => "audit_public_key:a-shared-secret",
                _ => "a-shared-secret",
            };
            let forge = forge(scheme, secret);
            let now = unix_now();
            let valid = forge
                .sign_body(None, "valid", forge.body("valid", now, 0), now)
                .unwrap();
            assert!(forge.reference(&valid).is_ok(), "{scheme}");
            assert!(forge.other_key_signer().is_some(), "{scheme}");
            assert!(forge.other_scheme("other").is_some(), "{scheme}");
        }
    }

    #[test]
    fn another_p256_key_can_sign() {
        let der = {
            let mut der = P256_PKCS8_PREFIX.to_vec();
            der.extend_from_slice(&[7u8; 32]);
            base64::engine::general_purpose::STANDARD.encode(der)
        };
        let forge = forge(SchemeId::Sendgrid, &der);
        let now = unix_now();
        let valid = forge
            .sign_body(None, "v", forge.body("v", now, 0), now)
            .unwrap();
        assert!(forge.reference(&valid).is_ok());
        assert!(forge.other_key_signer().is_some());
    }

    #[test]
    fn tampering_and_truncation_change_what_they_should() {
        assert_eq!(truncate("sha256=abcdefgh"), "sha256=abcde");
        assert_eq!(truncate(""), "");
        let forge = forge(SchemeId::Github, "k");
        let now = unix_now();
        let valid = forge
            .sign_body(None, "t", forge.body("t", now, 0), now)
            .unwrap();
        let forged = tampered(&valid);
        assert_ne!(forged.body, valid.body);
        assert_eq!(forged.headers, valid.headers);
        assert!(forge.reference(&forged).is_err());
        // Braintree's body is a form around a base64 payload: the amount is not visible.
        let forge = self::forge(SchemeId::Braintree, "pk:sk");
        let valid = forge
            .sign_body(None, "t", forge.body("t", now, 0), now)
            .unwrap();
        let forged = tampered(&valid);
        assert_ne!(forged.body, valid.body);
        assert_eq!(forged.body.len(), valid.body.len());
        assert!(forge.reference(&valid).is_ok());
        assert!(forge.reference(&forged).is_err());
        assert_eq!(change_middle(b"a-z-9"), b"a-a-9");
        assert_eq!(change_middle(b"--"), b"--");
    }
}
