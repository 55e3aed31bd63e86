//! The verifier: a scheme, a keyring, a clock and a window, checked once at build time.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use p256::pkcs8::DecodePublicKey;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::clock::{Clock, SystemClock, unix_millis};
use crate::encoding::decode_base64_secret;
use crate::error::ConfigError;
use crate::event::VerifiedEvent;
use crate::handshake::{self, HandshakeRefusal, HandshakeReply, TokenDigest};
use crate::headers::Headers;
use crate::hmac_sha256::HmacSha256Key;
use crate::keyring::{Key, Keyring};
use crate::reason::{Reason, Rejection};
use crate::request::RequestContext;
use crate::scheme::extract::{self, Candidate, Extracted, body_sha256_hex};
use crate::scheme::generic::SecretFormat;
use crate::scheme::preset::KeyFormat;
use crate::scheme::{HmacAlgorithm, Scheme, Window};
use crate::secret::{KeyBytes, Secret};

/// Verifies deliveries of one scheme against a keyring.
///
/// Cheap to clone (shared internally) and safe to share between threads.
///
/// ```
/// use hookgate::{FixedClock, SchemeId, Verifier};
///
/// let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
///     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
///     .clock(FixedClock::from_unix(1614265330))
///     .build()?;
/// let headers = [
///     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
///     ("webhook-timestamp", "1614265330"),
///     ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
/// ];
/// let event = verifier.verify(&headers, r#"{"test": 2432232314}"#).expect("authentic");
/// assert_eq!(event.dedup_key(), "standard-webhooks-v1:id:msg_p5jXN8AQM9LWM0D4loKWxJek");
///
/// let forged = verifier.verify(&headers, r#"{"test": 1}"#).unwrap_err();
/// assert_eq!(forged.code(), "signature_mismatch");
/// assert_eq!(forged.status(), 401);
/// # Ok::<(), hookgate::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    name: Arc<str>,
    keys: Vec<PreparedKey>,
    window: Option<CheckedWindow>,
    clock: Arc<dyn Clock>,
    url: Option<String>,
    verify_token: Option<TokenDigest>,
}

#[derive(Debug, Clone, Copy)]
struct CheckedWindow {
    tolerance_ms: i64,
    accept_future: bool,
}

/// What a verified delivery keeps of its extraction.
struct Verdict {
    timestamp: Option<(i64, &'static str)>,
    delivery_id: crate::event::Field,
    event_type: crate::event::Field,
    dedup: crate::event::DedupRecipe,
    headers: Vec<(&'static str, String)>,
    redact: Vec<std::ops::Range<usize>>,
}

pub(crate) struct PreparedKey {
    id: Arc<str>,
    not_after: Option<SystemTime>,
    material: Material,
    /// For an HMAC-SHA256 key, its midstates, so that a verification does not hash the key's
    /// two padded blocks again (zeroized on drop, as the key bytes are).
    hmac_sha256: Option<HmacSha256Key>,
}

/// Key material decoded for the scheme's algorithm.
pub(crate) enum Material {
    HmacSha256(KeyBytes),
    HmacSha1(KeyBytes),
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    /// SHA-256 of a shared token: comparing digests keeps the comparison constant-time
    /// even when the lengths differ.
    TokenDigest(zeroize::Zeroizing<[u8; 32]>),
    /// Braintree's public key and HMAC-SHA1 key (see `scheme/braintree.rs`).
    Braintree(Box<crate::scheme::braintree::KeyPair>),
}

impl Verifier {
    /// Starts a verifier for `scheme` (a [`SchemeId`](crate::SchemeId), a [`GenericHmac`](crate::GenericHmac)
    /// or a [`Scheme`]).
    pub fn builder(scheme: impl Into<Scheme>) -> VerifierBuilder {
        VerifierBuilder {
            scheme: scheme.into(),
            keyring: Keyring::new(),
            tolerance: None,
            timestamp_check: true,
            accept_future: false,
            clock: Arc::new(SystemClock),
            url: None,
            verify_token: None,
        }
    }

    /// The scheme's name.
    pub fn scheme_name(&self) -> &str {
        &self.inner.name
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.inner.scheme
    }

    /// Verifies a delivery: its headers and its raw body, byte for byte as received.
    ///
    /// # Errors
    /// A [`Rejection`] naming the [`Reason`]: a missing or malformed header (400), a stale
    /// or future timestamp, or no signature matching a live key (401).
    pub fn verify<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: impl Into<Bytes>,
    ) -> Result<VerifiedEvent, Rejection> {
        self.verify_at_url(headers, body, None)
    }

    /// Verifies a delivery of a URL-signing scheme (Twilio, Square) at `url`, the full public
    /// URL the provider called (with its query string); without one, the URL configured on
    /// the builder is used.
    ///
    /// # Errors
    /// As [`verify`](Self::verify); `missing_header` (location `url`) when a URL-signing
    /// scheme has no URL at all.
    pub fn verify_at_url<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: impl Into<Bytes>,
        url: Option<&str>,
    ) -> Result<VerifiedEvent, Rejection> {
        self.verify_request(headers, body, url)
    }

    /// Verifies a delivery with what the request line says: the public URL the provider
    /// called (for Twilio, Square and HubSpot v3; without one, the URL configured on the
    /// builder) and the HTTP method (HubSpot v3 signs it; `POST` when not given).
    ///
    /// ```
    /// use hookgate::{FixedClock, RequestContext, SchemeId, Verifier};
    ///
    /// // HubSpot's own example (hubspot-api-python, tests/spec/utils/test_signature.py).
    /// let verifier = Verifier::builder(SchemeId::HubspotV3)
    ///     .secret("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy")
    ///     .clock(FixedClock::from_unix(1_693_657_560))
    ///     .build_with_url_per_request()?;
    /// let headers = [
    ///     ("X-HubSpot-Signature-v3", "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="),
    ///     ("X-HubSpot-Request-Timestamp", "1693657560000"),
    /// ];
    /// let body = "{'example_field':'example_value'}";
    /// let request = RequestContext::new()
    ///     .with_url("https://www.example.com/webhook_uri")
    ///     .with_method("POST");
    /// assert!(verifier.verify_request(&headers, body, request).is_ok());
    /// let as_get = request.with_method("GET");
    /// assert_eq!(
    ///     verifier.verify_request(&headers, body, as_get).unwrap_err().code(),
    ///     "signature_mismatch"
    /// );
    /// # Ok::<(), hookgate::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`verify_at_url`](Self::verify_at_url).
    pub fn verify_request<'r, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: impl Into<Bytes>,
        request: impl Into<RequestContext<'r>>,
    ) -> Result<VerifiedEvent, Rejection> {
        let inner = &*self.inner;
        let body: Bytes = body.into();
        let request = request.into().or_url(inner.url.as_deref());
        let now = inner.clock.now();
        let (key_index, extracted) = self.check(headers, &body, request, now)?;
        let key_id = inner
            .keys
            .get(key_index)
            .map(|k| Arc::clone(&k.id))
            .unwrap_or_else(|| Arc::from(key_index.to_string()));
        let Verdict {
            timestamp,
            delivery_id,
            event_type,
            dedup,
            headers: info,
            redact,
        } = extracted;
        let body = if redact.is_empty() {
            body
        } else {
            redacted(&body, &redact)
        };
        Ok(VerifiedEvent {
            scheme: Arc::clone(&inner.name),
            key_id,
            key_index,
            timestamp_ms: timestamp.map(|(ms, _)| ms),
            received_at: now,
            body,
            headers: info,
            event_type,
            delivery_id,
            dedup,
            event_type_cell: OnceLock::new(),
            delivery_id_cell: OnceLock::new(),
            dedup_cell: OnceLock::new(),
        })
    }

    /// Extraction and every check: the matching key's index and what the event keeps. What
    /// borrows the body stays in here, so that the event can take the body afterwards.
    fn check<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &Bytes,
        request: RequestContext<'_>,
        now: SystemTime,
    ) -> Result<(usize, Verdict), Rejection> {
        let now_ms = unix_millis(now);
        let extracted = extract::extract(&self.inner.scheme, headers, body, request)?;
        if !extracted.timestamp_after_signature {
            self.check_window(&extracted, now_ms)?;
        }
        let key_index = self
            .find_key(&extracted, now)
            .ok_or_else(|| self.mismatch(&extracted))?;
        if let Some((expected, location)) = &extracted.body_sha256 {
            let actual = body_sha256_hex(body);
            if !bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(Rejection::new(Reason::BodyHashMismatch, location));
            }
        }
        if extracted.timestamp_after_signature {
            self.check_window(&extracted, now_ms)?;
        }
        let verdict = Verdict {
            timestamp: extracted.timestamp,
            delivery_id: extracted.delivery_id,
            event_type: extracted.event_type,
            dedup: extracted.dedup,
            headers: extracted.headers,
            redact: extracted.redact,
        };
        Ok((key_index, verdict))
    }

    /// The answer to a verified delivery that is the scheme's URL handshake (Slack
    /// `url_verification`, Zoom `endpoint.url_validation`, Twitch
    /// `webhook_callback_verification`, Discord PING), or `None` for an ordinary event. The
    /// [`Gate`](crate::Gate) calls it for every verified delivery and answers a handshake
    /// instead of handing it to the sink; a handler that uses the verifier alone should do
    /// the same.
    ///
    /// ```
    /// use hookgate::{FixedClock, SchemeId, SignRequest, Signer, Verifier};
    ///
    /// let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    /// let delivery = Signer::new(SchemeId::Slack, "8f742231b10e8888abcd99yyyzzz85a5")?
    ///     .sign(&SignRequest::new(body).timestamp(1_531_420_618))?;
    /// let verifier = Verifier::builder(SchemeId::Slack)
    ///     .secret("8f742231b10e8888abcd99yyyzzz85a5")
    ///     .clock(FixedClock::from_unix(1_531_420_618))
    ///     .build()?;
    /// let event = verifier.verify(&delivery.headers, delivery.body).expect("authentic");
    /// let reply = verifier.handshake(&event).expect("a handshake");
    /// assert_eq!(reply.body_text(), "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handshake(&self, event: &VerifiedEvent) -> Option<HandshakeReply> {
        let kind = self.inner.scheme.handshake()?;
        let key = match self.inner.keys.get(event.key_index).map(|k| &k.material) {
            Some(Material::HmacSha256(key)) => Some(key),
            _ => None,
        };
        handshake::answer_verified(kind, event, key)
    }

    /// Answers a `GET` to the endpoint: the scheme's `GET` handshake (Meta's
    /// `hub.mode=subscribe`, Dropbox's `challenge`), given the request's raw query string.
    /// Okta's verification `GET` lives in its headers and is verified like a delivery: it
    /// is answered by [`Gate::receive_get_with_headers`](crate::Gate::receive_get_with_headers),
    /// and here gets [`HandshakeRefusal::NoGetHandshake`].
    ///
    /// ```
    /// use hookgate::{HandshakeRefusal, SchemeId, Verifier};
    ///
    /// let verifier = Verifier::builder(SchemeId::Meta)
    ///     .secret("app-secret")
    ///     .verify_token("meatyhamhock")
    ///     .build()?;
    /// let query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock";
    /// assert_eq!(verifier.handshake_get(Some(query))?.body_text(), "1158201444");
    /// let forged = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess";
    /// assert_eq!(verifier.handshake_get(Some(forged)), Err(HandshakeRefusal::VerifyTokenMismatch));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`HandshakeRefusal::NoGetHandshake`] when the scheme has none,
    /// [`MissingParameter`](HandshakeRefusal::MissingParameter) without `hub.mode=subscribe`
    /// or `hub.challenge`, [`VerifyTokenMismatch`](HandshakeRefusal::VerifyTokenMismatch)
    /// when the token differs or no [verify token](VerifierBuilder::verify_token) is set.
    pub fn handshake_get(&self, query: Option<&str>) -> Result<HandshakeReply, HandshakeRefusal> {
        if self.inner.scheme.handshake() == Some(handshake::HandshakeKind::BraintreeChallenge) {
            return self.braintree_challenge(query);
        }
        handshake::answer_get(
            self.inner.scheme.handshake(),
            query,
            self.inner.verify_token.as_ref(),
        )
    }

    /// The answer to an unsigned POST handshake (WooCommerce's ping, Asana's
    /// `X-Hook-Secret`, Microsoft Graph's `validationToken` in `query`), with the id of the
    /// key it proved, for a request whose verification failed; `None` when it is not one and
    /// the rejection stands.
    pub(crate) fn handshake_unsigned<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        query: Option<&str>,
    ) -> Option<(HandshakeReply, Option<Arc<str>>)> {
        let kind = self.inner.scheme.handshake()?;
        let now = self.inner.clock.now();
        handshake::answer_unsigned(kind, headers, body, query, |value| {
            // Digests first: the comparison takes the same time whatever the lengths.
            let given = handshake::token_digest_bytes(value);
            let mut found = None;
            for key in &self.inner.keys {
                if key.not_after.is_some_and(|limit| now > limit) {
                    continue;
                }
                let material = match &key.material {
                    Material::HmacSha256(bytes) | Material::HmacSha1(bytes) => bytes.as_slice(),
                    _ => continue,
                };
                let expected = handshake::token_digest_bytes(material);
                if bool::from(given[..].ct_eq(&expected[..])) && found.is_none() {
                    found = Some(Arc::clone(&key.id));
                }
            }
            found
        })
    }

    /// The rejection when no live key matched: the scheme's mismatch reason, except that a
    /// Braintree signature naming none of the live public keys is "no matching public key"
    /// in the SDKs (`no_supported_signature`). Off the fast path: failures only.
    fn mismatch(&self, extracted: &Extracted<'_>) -> Rejection {
        let now = self.inner.clock.now();
        let mut braintree = false;
        let mut named = false;
        for key in &self.inner.keys {
            if let Material::Braintree(pair) = &key.material {
                braintree = true;
                let live = key.not_after.is_none_or(|limit| now <= limit);
                named |= live && pair.is_named(extracted);
            }
        }
        let reason = if braintree && !named {
            Reason::NoSupportedSignature
        } else {
            extracted.mismatch
        };
        Rejection::new(reason, extracted.signature_location)
    }

    /// Braintree's `GET ?bt_challenge=`: answered with the first live key pair.
    fn braintree_challenge(&self, query: Option<&str>) -> Result<HandshakeReply, HandshakeRefusal> {
        let now = self.inner.clock.now();
        handshake::answer_braintree(query, |challenge| {
            self.inner.keys.iter().find_map(|key| match &key.material {
                Material::Braintree(pair) if key.not_after.is_none_or(|limit| now <= limit) => {
                    Some(pair.pair(challenge.as_bytes()))
                }
                _ => None,
            })
        })
    }

    fn check_window(&self, extracted: &Extracted<'_>, now_ms: i64) -> Result<(), Rejection> {
        let (Some(window), Some((ts_ms, location))) = (self.inner.window, extracted.timestamp)
        else {
            return Ok(());
        };
        match check_window(ts_ms, now_ms, window.tolerance_ms, window.accept_future) {
            Ok(()) => {}
            Err(reason) => return Err(Rejection::new(reason, location)),
        }
        // A scheme whose sender allows less skew into the future than into the past (Box:
        // none at all), unless future timestamps are accepted explicitly.
        match extracted.future_tolerance_ms {
            Some(limit) if !window.accept_future && ts_ms.saturating_sub(now_ms) > limit => {
                Err(Rejection::new(Reason::TimestampTooNew, location))
            }
            _ => Ok(()),
        }
    }

    /// The index of the first live key any signature matches. Every live key is tried
    /// against every candidate, and HMAC tags are compared in constant time.
    fn find_key(&self, extracted: &Extracted<'_>, now: SystemTime) -> Option<usize> {
        let mut found = None;
        for (index, key) in self.inner.keys.iter().enumerate() {
            if key.not_after.is_some_and(|limit| now > limit) {
                continue;
            }
            if key.matches(extracted, index) && found.is_none() {
                found = Some(index);
            }
        }
        found
    }
}

/// `body` with the bytes of each of `spans` (in order, disjoint) replaced by
/// [`REDACTED`](crate::scheme::preset::REDACTED). Spans out of order or outside the body
/// (which extraction never produces) redact the whole body rather than keep a secret.
fn redacted(body: &Bytes, spans: &[std::ops::Range<usize>]) -> Bytes {
    use crate::scheme::preset::REDACTED;
    let mut out = Vec::with_capacity(body.len().saturating_add(REDACTED.len()));
    let mut at = 0usize;
    for span in spans {
        match (body.get(at..span.start), span.end >= span.start) {
            (Some(before), true) => {
                out.extend_from_slice(before);
                out.extend_from_slice(REDACTED.as_bytes());
                at = span.end;
            }
            _ => return Bytes::from_static(REDACTED.as_bytes()),
        }
    }
    match body.get(at..) {
        Some(rest) => out.extend_from_slice(rest),
        None => return Bytes::from_static(REDACTED.as_bytes()),
    }
    Bytes::from(out)
}

/// Checks `ts` against `now` with a tolerance in both directions (the future only when
/// `accept_future` is false); exactly `tolerance` away is accepted. Never overflows.
pub(crate) fn check_window(
    ts_ms: i64,
    now_ms: i64,
    tolerance_ms: i64,
    accept_future: bool,
) -> Result<(), Reason> {
    let age = i128::from(now_ms).saturating_sub(i128::from(ts_ms));
    let tolerance = i128::from(tolerance_ms);
    if age > tolerance {
        Err(Reason::TimestampTooOld)
    } else if !accept_future && age.saturating_neg() > tolerance {
        Err(Reason::TimestampTooNew)
    } else {
        Ok(())
    }
}

impl PreparedKey {
    fn matches(&self, extracted: &Extracted<'_>, index: usize) -> bool {
        // Paired signatures (Box): key `index` is checked against signature `index` only.
        let signatures: &[Candidate] = if extracted.paired {
            extracted.signatures.get(index..=index).unwrap_or(&[])
        } else {
            &extracted.signatures
        };
        match &self.material {
            Material::HmacSha256(key) => {
                extracted.messages.iter().fold(Choice::from(0), |acc, m| {
                    let tag = match &self.hmac_sha256 {
                        Some(prepared) => Some(prepared.tag(m.iter().map(|piece| &**piece))),
                        None => hmac_tag::<Hmac<Sha256>>(key, m).map(Into::into),
                    };
                    acc | any_equal(tag.as_ref().map(|t| t.as_slice()), signatures)
                })
            }
            Material::HmacSha1(key) => extracted.messages.iter().fold(Choice::from(0), |acc, m| {
                acc | any_equal(hmac_tag::<Hmac<Sha1>>(key, m).as_deref(), signatures)
            }),
            Material::TokenDigest(expected) => {
                signatures.iter().fold(Choice::from(0), |acc, token| {
                    acc | Sha256::digest(token)[..].ct_eq(&expected[..])
                })
            }
            Material::Ed25519(public) => {
                return extracted.messages.iter().any(|m| {
                    let message = m.concat();
                    signatures.iter().any(|sig| {
                        ed25519_dalek::Signature::from_slice(sig)
                            .is_ok_and(|sig| public.verify_strict(&message, &sig).is_ok())
                    })
                });
            }
            Material::Braintree(pair) => return pair.matches(extracted),
            Material::P256(public) => {
                use p256::ecdsa::signature::Verifier as _;
                return extracted.messages.iter().any(|m| {
                    let message = m.concat();
                    signatures.iter().any(|sig| {
                        p256::ecdsa::Signature::from_der(sig)
                            .is_ok_and(|sig| public.verify(&message, &sig).is_ok())
                    })
                });
            }
        }
        .into()
    }
}

pub(crate) fn hmac_tag<M: Mac + hmac::digest::KeyInit>(
    key: &KeyBytes,
    message: &[std::borrow::Cow<'_, [u8]>],
) -> Option<hmac::digest::Output<M>> {
    // `new_from_slice` accepts keys of any length for HMAC; the error arm is unreachable but
    // handled: no tag never equals a signature.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key.as_slice()).ok()?;
    for part in message {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes())
}

/// Constant-time "does any candidate equal `tag`" (a length mismatch is simply unequal; the
/// length of a tag is public).
fn any_equal(tag: Option<&[u8]>, candidates: &[Candidate]) -> Choice {
    let Some(tag) = tag.filter(|t| !t.is_empty()) else {
        return Choice::from(0);
    };
    candidates
        .iter()
        .fold(Choice::from(0), |acc, c| acc | ct_eq(tag, c))
}

/// `subtle`'s constant-time equality, eight bytes at a time when the lengths allow (every
/// HMAC-SHA256 tag): the same comparison in an eighth of the steps.
fn ct_eq(a: &[u8], b: &[u8]) -> Choice {
    if a.len() != b.len() || a.len() % 8 != 0 {
        return a.ct_eq(b);
    }
    a.chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(Choice::from(1), |acc, (x, y)| {
            let word = |bytes: &[u8]| {
                let mut word = [0u8; 8];
                word.copy_from_slice(bytes);
                u64::from_ne_bytes(word)
            };
            acc & word(x).ct_eq(&word(y))
        })
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.inner.name)
            .field("keys", &self.inner.keys.len())
            .field("window", &self.inner.window)
            .field("clock", &self.inner.clock)
            .field("url", &self.inner.url)
            .field("verify_token", &self.inner.verify_token.is_some())
            .finish()
    }
}

/// Builder of a [`Verifier`]. Defaults: the scheme's documented window (future timestamps
/// rejected beyond it), the system clock, no URL.
#[derive(Debug)]
#[must_use]
pub struct VerifierBuilder {
    scheme: Scheme,
    keyring: Keyring,
    tolerance: Option<Duration>,
    timestamp_check: bool,
    accept_future: bool,
    clock: Arc<dyn Clock>,
    url: Option<String>,
    verify_token: Option<Secret>,
}

impl VerifierBuilder {
    /// Adds a secret or public key, written as the provider hands it over.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.keyring.push(Key::new(secret));
        self
    }

    /// Adds a key (with an id and a not-after time, for rotations).
    pub fn key(mut self, key: impl Into<Key>) -> Self {
        self.keyring.push(key);
        self
    }

    /// Adds every key of a keyring.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring.keys.extend(keyring.keys);
        self
    }

    /// Overrides the scheme's timestamp tolerance (how far from now a timestamp may be).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Disables the timestamp window explicitly. Replays are then caught only by the dedup
    /// store, for as long as it remembers a delivery.
    pub fn without_timestamp_check(mut self) -> Self {
        self.timestamp_check = false;
        self
    }

    /// Accepts timestamps any distance in the future, as Stripe's and Paddle's own libraries
    /// do. Off by default: a future timestamp extends how long a captured delivery replays.
    pub fn accept_future_timestamps(mut self, accept: bool) -> Self {
        self.accept_future = accept;
        self
    }

    /// Uses `clock` for "now" (a [`FixedClock`](crate::FixedClock) in tests).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses a shared clock.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The public URL the provider calls, for URL-signing schemes (Twilio, Square). It must
    /// be byte-identical to the URL configured at the provider.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The verify token configured at the provider for its `GET` subscription handshake
    /// (Meta's `hub.verify_token`). Without one, that handshake is refused with 403.
    pub fn verify_token(mut self, token: impl Into<Secret>) -> Self {
        self.verify_token = Some(token.into());
        self
    }

    /// Checks the configuration and decodes every key.
    ///
    /// # Errors
    /// [`ConfigError::EmptyKeyring`], [`ConfigError::InvalidKey`] (an undecodable `whsec_`, a
    /// public key of the wrong size), [`ConfigError::ZeroTolerance`],
    /// [`ConfigError::EmptyVerifyToken`].
    pub fn build(self) -> Result<Verifier, ConfigError> {
        self.build_inner(true)
    }

    /// Like [`build`](Self::build), but a URL-signing scheme may be built without a URL and
    /// given one per request with [`Verifier::verify_at_url`].
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_with_url_per_request(self) -> Result<Verifier, ConfigError> {
        self.build_inner(false)
    }

    fn build_inner(self, require_url: bool) -> Result<Verifier, ConfigError> {
        if self.keyring.is_empty() {
            return Err(ConfigError::EmptyKeyring);
        }
        if self
            .verify_token
            .as_ref()
            .is_some_and(|token| token.expose().is_empty())
        {
            return Err(ConfigError::EmptyVerifyToken);
        }
        if let Scheme::Preset(id) = &self.scheme {
            if require_url && id.signs_url() && self.url.is_none() {
                return Err(ConfigError::MissingUrl(id.as_str().to_owned()));
            }
        }
        let window = match (self.scheme.window(), self.timestamp_check) {
            (Window::None, _) | (_, false) => None,
            (Window::Tolerance(default), true) => {
                let tolerance = self.tolerance.unwrap_or(default);
                if tolerance.is_zero() {
                    return Err(ConfigError::ZeroTolerance);
                }
                Some(CheckedWindow {
                    tolerance_ms: i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX),
                    accept_future: self.accept_future,
                })
            }
        };
        let keys = self
            .keyring
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let material = prepare(&self.scheme, key.secret.expose()).map_err(|problem| {
                    ConfigError::InvalidKey {
                        index,
                        scheme: self.scheme.name().to_owned(),
                        problem,
                    }
                })?;
                let hmac_sha256 = match &material {
                    Material::HmacSha256(bytes) => Some(HmacSha256Key::new(bytes.as_slice())),
                    _ => None,
                };
                Ok(PreparedKey {
                    hmac_sha256,
                    id: key
                        .id
                        .clone()
                        .unwrap_or_else(|| Arc::from(index.to_string())),
                    not_after: key.not_after,
                    material,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Verifier {
            inner: Arc::new(Inner {
                name: Arc::from(self.scheme.name()),
                scheme: self.scheme,
                keys,
                window,
                clock: self.clock,
                url: self.url,
                verify_token: self
                    .verify_token
                    .as_ref()
                    .map(|token| handshake::token_digest(token.expose())),
            }),
        })
    }
}

/// Decodes key material as the scheme writes it.
pub(crate) fn prepare(scheme: &Scheme, secret: &str) -> Result<Material, &'static str> {
    let raw = |s: &str| {
        if s.is_empty() {
            Err("the secret is empty")
        } else {
            Ok(KeyBytes::new(s.as_bytes().to_vec()))
        }
    };
    let whsec = |s: &str| {
        let encoded = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        match decode_base64_secret(encoded) {
            Some(bytes) if !bytes.is_empty() => Ok(KeyBytes::new(bytes)),
            _ => Err("expected whsec_ followed by base64 key bytes"),
        }
    };
    match scheme {
        Scheme::Generic(g) => {
            let key = match g.secret_format {
                SecretFormat::Raw => raw(secret)?,
                SecretFormat::Base64 => whsec(secret)?,
            };
            Ok(match g.algorithm {
                HmacAlgorithm::Sha256 => Material::HmacSha256(key),
                HmacAlgorithm::Sha1 => Material::HmacSha1(key),
            })
        }
        Scheme::Preset(id) => match id.preset().key {
            KeyFormat::Whsec => Ok(Material::HmacSha256(whsec(secret)?)),
            KeyFormat::Raw(HmacAlgorithm::Sha256) => Ok(Material::HmacSha256(raw(secret)?)),
            KeyFormat::Raw(HmacAlgorithm::Sha1) => Ok(Material::HmacSha1(raw(secret)?)),
            KeyFormat::Base64Sha256 => match decode_base64_secret(secret) {
                Some(bytes) if !bytes.is_empty() => Ok(Material::HmacSha256(KeyBytes::new(bytes))),
                _ => Err("expected base64 key bytes (Airtable's macSecretBase64)"),
            },
            KeyFormat::Whpk => ed25519_public_key_whpk(secret).map(Material::Ed25519),
            KeyFormat::Ed25519Hex => {
                let bytes = base16ct::mixed::decode_vec(secret.trim())
                    .map_err(|_| "expected a hex Ed25519 public key")?;
                let array: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| "an Ed25519 public key has 32 bytes")?;
                ed25519_dalek::VerifyingKey::from_bytes(&array)
                    .map(Material::Ed25519)
                    .map_err(|_| "not a valid Ed25519 public key")
            }
            KeyFormat::P256Der => {
                let der = decode_base64_secret(secret).ok_or("expected a base64 DER public key")?;
                p256::PublicKey::from_public_key_der(&der)
                    .map(|pk| Material::P256(p256::ecdsa::VerifyingKey::from(&pk)))
                    .map_err(|_| "not a P-256 SubjectPublicKeyInfo")
            }
            KeyFormat::BraintreePair => crate::scheme::braintree::KeyPair::parse(secret)
                .map(|pair| Material::Braintree(Box::new(pair))),
            KeyFormat::Token => {
                if secret.is_empty() {
                    return Err("the token is empty");
                }
                let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                Ok(Material::TokenDigest(zeroize::Zeroizing::new(digest)))
            }
        },
    }
}

/// A Standard Webhooks v1a verifying key: `whpk_` + base64 of 32 bytes (a `whsk_` signing key
/// is accepted too and its public half used).
fn ed25519_public_key_whpk(secret: &str) -> Result<ed25519_dalek::VerifyingKey, &'static str> {
    let secret = secret.trim();
    if let Some(signing) = secret.strip_prefix("whsk_") {
        return crate::sign::ed25519_signing_key(signing).map(|k| k.verifying_key());
    }
    let encoded = secret.strip_prefix("whpk_").unwrap_or(secret);
    let bytes = decode_base64_secret(encoded).ok_or("expected whpk_ followed by base64")?;
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 public key has 32 bytes")?;
    ed25519_dalek::VerifyingKey::from_bytes(&array).map_err(|_| "not a valid Ed25519 public key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SchemeId;

    #[test]
    fn window_edges_are_exact_and_never_overflow() {
        assert_eq!(
            check_window(1000, 301_000 + 1000, 300_000, false),
            Err(Reason::TimestampTooOld)
        );
        assert_eq!(check_window(1000, 300_000 + 1000, 300_000, false), Ok(()));
        assert_eq!(
            check_window(301_000, 0, 300_000, false),
            Err(Reason::TimestampTooNew)
        );
        assert_eq!(check_window(300_000, 0, 300_000, false), Ok(()));
        assert_eq!(check_window(i64::MAX, 0, 300_000, true), Ok(()));
        assert_eq!(
            check_window(i64::MAX, i64::MIN, 300_000, false),
            Err(Reason::TimestampTooNew)
        );
        assert_eq!(
            check_window(i64::MIN, i64::MAX, i64::MAX, false),
            Err(Reason::TimestampTooOld)
        );
    }

    #[test]
    fn word_wise_comparison_agrees_with_bytewise() {
        let tag: Vec<u8> = (0..32).collect();
        assert!(bool::from(ct_eq(&tag, &tag)));
        for i in 0..32 {
            let mut other = tag.clone();
            other[i] ^= 0x80;
            assert!(!bool::from(ct_eq(&tag, &other)), "byte {i}");
        }
        assert!(!bool::from(ct_eq(&tag, &tag[..31])));
        assert!(!bool::from(ct_eq(&tag, &tag[..24])));
        assert!(bool::from(ct_eq(&tag[..20], &tag[..20])));
        assert!(!bool::from(ct_eq(&tag[..20], &tag[1..21])));
        let candidates = [
            Candidate::from_slice(&tag[1..]),
            Candidate::from_slice(&tag),
        ];
        assert!(bool::from(any_equal(Some(&tag), &candidates)));
        assert!(!bool::from(any_equal(Some(&tag), &candidates[..1])));
        assert!(!bool::from(any_equal(Some(&[]), &[Candidate::new()])));
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        let err = Verifier::builder(SchemeId::Stripe).build().unwrap_err();
        assert_eq!(err, ConfigError::EmptyKeyring);
        let err = Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret("whsec_!!!")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidKey { index: 0, .. }));
        assert!(!err.to_string().contains("!!!"));
        let err = Verifier::builder(SchemeId::Slack)
            .secret("s")
            .tolerance(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err, ConfigError::ZeroTolerance);
        let err = Verifier::builder(SchemeId::Square)
            .secret("s")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingUrl(_)));
        assert!(
            Verifier::builder(SchemeId::Square)
                .secret("s")
                .build_with_url_per_request()
                .is_ok()
        );
        let err = Verifier::builder(SchemeId::Discord)
            .secret("abcd")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidKey { .. }));
        let err = Verifier::builder(SchemeId::Github)
            .secret("")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidKey { .. }));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let verifier = Verifier::builder(SchemeId::Github)
            .secret("hunter2-secret")
            .build()
            .unwrap();
        assert!(!format!("{verifier:?}").contains("hunter2"));
    }
}
