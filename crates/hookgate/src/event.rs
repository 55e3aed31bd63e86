//! The result of a successful verification.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::encoding::hex;
use crate::json;

/// Where a derived field (event type, delivery id) comes from.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    /// Known at verification time (from a header, or absent).
    Known(Option<String>),
    /// Read lazily from the verified JSON body, trying each path in turn.
    Json(&'static [&'static [&'static str]]),
}

/// How the dedup key is derived. Every recipe uses authenticated content only.
#[derive(Debug, Clone)]
pub(crate) enum DedupRecipe {
    /// An id that is part of the signed content (Standard Webhooks `webhook-id`, Twitch's
    /// message id, Mailgun's token).
    SignedId(String),
    /// The delivery id, which the scheme signs (Standard Webhooks `webhook-id`, Twitch's
    /// message id): one copy of it serves both.
    SignedDeliveryId,
    /// A field of the signed JSON body (Stripe's event `id`), else the body digest.
    Json(&'static [&'static [&'static str]]),
    /// SHA-256 of the signed body.
    Body,
    /// SHA-256 of the signed body with the value of every member of this name, in the objects
    /// of the body's top-level array, written as `null`: HubSpot's batches, where a retry
    /// changes each event's `attemptNumber` and nothing else. The body digest when the body
    /// is not such an array.
    BodyWithout(&'static str),
    /// SHA-256 of the signed URL and body (URL-signing schemes).
    UrlAndBody(String),
    /// A digest of the signed content computed during verification (Twilio's form
    /// parameters are signed decoded and sorted, so the raw body is not canonical).
    SignedContentDigest(String),
}

/// Longest id kept verbatim in a dedup key; longer ids are hashed.
const MAX_ID_IN_KEY: usize = 200;

/// `a`, `b` and `c` in one string allocated once at its final size.
fn join3(a: &str, b: &str, c: &str) -> String {
    let len = a.len().saturating_add(b.len()).saturating_add(c.len());
    let mut out = String::with_capacity(len);
    out.push_str(a);
    out.push_str(b);
    out.push_str(c);
    out
}

/// A delivery whose signature, freshness and format were verified.
///
/// Only a [`Verifier`](crate::Verifier) can construct one, so holding a `VerifiedEvent` means
/// the body is authentic. Fields that need the body parsed (event type from JSON, a JSON dedup
/// id) are computed on first use.
#[derive(Clone)]
pub struct VerifiedEvent {
    pub(crate) scheme: Arc<str>,
    pub(crate) key_id: Arc<str>,
    pub(crate) key_index: usize,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) received_at: SystemTime,
    pub(crate) body: Bytes,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) event_type: Field,
    pub(crate) delivery_id: Field,
    pub(crate) dedup: DedupRecipe,
    pub(crate) event_type_cell: OnceLock<Option<String>>,
    pub(crate) delivery_id_cell: OnceLock<Option<String>>,
    pub(crate) dedup_cell: OnceLock<String>,
}

impl VerifiedEvent {
    /// The scheme that verified it (`stripe`, `standard-webhooks-v1`, a generic scheme's name).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The key that matched: its id, or its position in the keyring as text.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Position of the matching key in the keyring.
    pub fn key_index(&self) -> usize {
        self.key_index
    }

    /// The raw body, byte for byte as received — except for a scheme whose shared secret
    /// travels in the body (Figma's `passcode`): there the secret's JSON value is replaced by
    /// `"[redacted]"`, so this body differs from the bytes received and no sink, store, log or
    /// forwarded envelope ever holds the secret.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Consumes the event, returning the raw body.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The signed timestamp, where the scheme has one.
    pub fn timestamp(&self) -> Option<SystemTime> {
        let ms = self.timestamp_ms?;
        let magnitude = Duration::from_millis(ms.unsigned_abs());
        if ms >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// The signed timestamp in Unix milliseconds, where the scheme has one.
    pub fn timestamp_millis(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// When the verifier's clock accepted the delivery.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// The provider's delivery or event id, where the scheme carries one. It may come from an
    /// unsigned header (GitHub's `X-GitHub-Delivery`): use [`dedup_key`](Self::dedup_key) for
    /// deduplication, not this.
    pub fn delivery_id(&self) -> Option<&str> {
        resolve(&self.delivery_id, &self.delivery_id_cell, &self.body)
    }

    /// The event type where the scheme carries one (a header such as `X-GitHub-Event`, or
    /// the body's `type` field).
    pub fn event_type(&self) -> Option<&str> {
        resolve(&self.event_type, &self.event_type_cell, &self.body)
    }

    /// The authenticated deduplication key: the signed delivery id where the scheme signs one,
    /// otherwise an id from the signed body or a SHA-256 digest of the signed content. It is
    /// the same for every retry of a delivery and cannot be changed without the key.
    pub fn dedup_key(&self) -> &str {
        self.dedup_cell.get_or_init(|| self.compute_dedup_key())
    }

    /// Informational headers the scheme documents (event type, delivery id, content type),
    /// as received. They are not all covered by the signature.
    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    fn compute_dedup_key(&self) -> String {
        let scheme = &self.scheme;
        let id_key = |id: &str| {
            if id.len() <= MAX_ID_IN_KEY && id.bytes().all(|b| b.is_ascii_graphic()) {
                // Built by hand: `format!` costs about 1.5 k instructions per delivery here
                // (its formatting machinery and a reallocation), three copies a few dozen.
                join3(scheme, ":id:", id)
            } else {
                format!("{scheme}:id-sha256:{}", hex(&Sha256::digest(id.as_bytes())))
            }
        };
        let body_key = || format!("{scheme}:sha256:{}", hex(&Sha256::digest(&self.body)));
        match &self.dedup {
            DedupRecipe::SignedId(id) => id_key(id),
            DedupRecipe::SignedDeliveryId => match &self.delivery_id {
                Field::Known(Some(id)) => id_key(id),
                // Extraction always sets the id with this recipe.
                Field::Known(None) | Field::Json(_) => body_key(),
            },
            DedupRecipe::Json(paths) => match json::first_field(&self.body, paths) {
                Some(id) if !id.is_empty() => id_key(&id),
                _ => body_key(),
            },
            DedupRecipe::Body => body_key(),
            DedupRecipe::BodyWithout(member) => {
                match json::element_member_spans(&self.body, member) {
                    Some(spans) if !spans.is_empty() => {
                        format!("{scheme}:sha256:{}", digest_without(&self.body, &spans))
                    }
                    _ => body_key(),
                }
            }
            DedupRecipe::UrlAndBody(url) => {
                format!("{scheme}:sha256:{}", url_digest(url, &self.body))
            }
            DedupRecipe::SignedContentDigest(digest) => format!("{scheme}:sha256:{digest}"),
        }
    }
}

/// Lowercase hex SHA-256 of `body` with each of `spans` (in order, not overlapping) replaced
/// by `null`. The result is itself JSON with `null` at the same places, so two bodies give the
/// same digest only when they differ in nothing but the values at those places.
fn digest_without(body: &[u8], spans: &[Range<usize>]) -> String {
    let mut hasher = Sha256::new();
    let mut at = 0;
    for span in spans {
        hasher.update(body.get(at..span.start).unwrap_or_default());
        hasher.update(b"null");
        at = span.end;
    }
    hasher.update(body.get(at..).unwrap_or_default());
    hex(&hasher.finalize())
}

/// Lowercase hex SHA-256 of a URL (length-prefixed, so URL and content cannot trade bytes)
/// followed by the signed content.
pub(crate) fn url_digest(url: &str, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update((url.len() as u64).to_be_bytes());
    hasher.update(url.as_bytes());
    hasher.update(content);
    hex(&hasher.finalize())
}

/// A field's value: read where it was kept at verification, or parsed from the body once
/// (into `cell`) on first use. A known value is not copied into the cell: the gate, the
/// sinks and the log all read these on every event.
fn resolve<'a>(
    field: &'a Field,
    cell: &'a OnceLock<Option<String>>,
    body: &[u8],
) -> Option<&'a str> {
    match field {
        Field::Known(value) => value.as_deref(),
        Field::Json(paths) => cell
            .get_or_init(|| json::first_field(body, paths))
            .as_deref(),
    }
}

impl fmt::Debug for VerifiedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedEvent")
            .field("scheme", &self.scheme)
            .field("key_id", &self.key_id)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("delivery_id", &self.delivery_id())
            .field("event_type", &self.event_type())
            .field("dedup_key", &self.dedup_key())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join3_concatenates_into_one_allocation_of_the_final_size() {
        let joined = join3("standard-webhooks-v1", ":id:", "msg_1");
        assert_eq!(joined, "standard-webhooks-v1:id:msg_1");
        assert_eq!(joined.capacity(), joined.len());
        assert_eq!(join3("", "", ""), "");
    }
}
