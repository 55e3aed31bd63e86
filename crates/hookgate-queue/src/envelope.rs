//! The envelope: how a verified event travels through a queue, in one stable JSON document.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hookgate::VerifiedEvent;
use serde::{Deserialize, Serialize};

/// The envelope format version this crate writes, and the only one it reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// A verified event as it travels through a queue: everything a consumer on another machine
/// needs, as one JSON document.
///
/// # Format (version 1)
///
/// ```json
/// {
///   "version": 1,
///   "dedup_key": "standard-webhooks-v1:id:msg_1",
///   "scheme": "standard-webhooks-v1",
///   "delivery_id": "msg_1",
///   "event_type": "invoice.paid",
///   "timestamp_ms": 1700000000000,
///   "received_at_ms": 1700000000123,
///   "key_id": "0",
///   "headers": [["webhook-id", "msg_1"]],
///   "body_b64": "eyJ0eXBlIjoiaW52b2ljZS5wYWlkIn0="
/// }
/// ```
///
/// | field | type | meaning |
/// |---|---|---|
/// | `version` | integer | always `1` for this layout; a reader refuses other versions |
/// | `dedup_key` | string | [`VerifiedEvent::dedup_key`]: authenticated, the same for every retry of a delivery; consumers deduplicate on it |
/// | `scheme` | string | the scheme that verified the delivery |
/// | `delivery_id` | string or null | the provider's delivery id, where the scheme has one (possibly from an unsigned header: do not deduplicate on it) |
/// | `event_type` | string or null | the event type, where the scheme has one |
/// | `timestamp_ms` | integer or null | the signed timestamp, Unix milliseconds |
/// | `received_at_ms` | integer | when the gate's clock accepted the delivery, Unix milliseconds |
/// | `key_id` | string | the keyring entry that matched |
/// | `headers` | array of `[name, value]` | the informational headers the scheme documents, as received |
/// | `body_b64` | string | the raw body, byte for byte as verified, in standard base64 with padding |
/// | `destination` | string, absent when none | for an endpoint with destinations (issue 21): the one destination this copy is for; the sink writes one copy per matching destination |
///
/// **Stability.** Fields are only ever added to version 1, never renamed, removed or given
/// another meaning; readers ignore fields they do not know (so an older consumer reads a
/// newer producer's envelopes). A change that old readers could misread gets a new
/// `version`, which they refuse rather than misinterpret. Absent optional fields read as
/// null.
///
/// The body is base64 because webhook bodies are not always UTF-8; everything else is
/// plain JSON, readable from any language.
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The format version: [`ENVELOPE_VERSION`].
    pub version: u32,
    /// The authenticated dedup key.
    pub dedup_key: String,
    /// The scheme that verified the delivery.
    pub scheme: String,
    /// The provider's delivery id, where the scheme has one.
    #[serde(default)]
    pub delivery_id: Option<String>,
    /// The event type, where the scheme has one.
    #[serde(default)]
    pub event_type: Option<String>,
    /// The signed timestamp in Unix milliseconds, where the scheme has one.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    /// When the gate accepted the delivery, in Unix milliseconds.
    pub received_at_ms: i64,
    /// The keyring entry that matched.
    pub key_id: String,
    /// The informational headers the scheme documents, as received.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte as verified.
    #[serde(rename = "body_b64", with = "base64_body")]
    pub body: Bytes,
    /// The destination this copy of the event goes to, for an endpoint with destinations:
    /// a stream sink writes one copy per matching destination, each naming its own, so a
    /// consumer (and a dead letter, and its replay) knows where it goes without the
    /// stream's name. Absent (and not written) otherwise, so envelopes without
    /// destinations keep their exact layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

impl Envelope {
    /// The envelope of a verified event.
    pub fn from_event(event: &VerifiedEvent) -> Self {
        Envelope {
            version: ENVELOPE_VERSION,
            dedup_key: event.dedup_key().to_owned(),
            scheme: event.scheme().to_owned(),
            delivery_id: event.delivery_id().map(str::to_owned),
            event_type: event.event_type().map(str::to_owned),
            timestamp_ms: event.timestamp_millis(),
            received_at_ms: unix_millis(event.received_at()),
            key_id: event.key_id().to_owned(),
            headers: event
                .headers()
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
            body: event.body().clone(),
            destination: None,
        }
    }

    /// This envelope as the copy for destination `name`.
    #[must_use]
    pub fn with_destination(mut self, name: impl Into<String>) -> Self {
        self.destination = Some(name.into());
        self
    }

    /// The JSON document described in the [type documentation](Self).
    ///
    /// # Errors
    /// [`EnvelopeError::Json`] if serialisation fails (it does not for any envelope this
    /// crate builds; the error is kept rather than a panic).
    pub fn to_json(&self) -> Result<Vec<u8>, EnvelopeError> {
        serde_json::to_vec(self).map_err(EnvelopeError::Json)
    }

    /// Reads an envelope written by [`to_json`](Self::to_json), by this or a later version
    /// of the crate.
    ///
    /// # Errors
    /// [`EnvelopeError::Json`] for a document that is not an envelope,
    /// [`EnvelopeError::UnsupportedVersion`] for another format version.
    pub fn from_json(json: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        // Read the version first, so a future layout is reported as such rather than as
        // whatever field it no longer has.
        let probe: VersionOnly = serde_json::from_slice(json).map_err(EnvelopeError::Json)?;
        if probe.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(probe.version));
        }
        serde_json::from_slice(json).map_err(EnvelopeError::Json)
    }

    /// The signed timestamp, where the scheme has one.
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.timestamp_ms.and_then(from_unix_millis)
    }

    /// When the gate accepted the delivery (the epoch if the value is out of range).
    pub fn received_at(&self) -> SystemTime {
        from_unix_millis(self.received_at_ms).unwrap_or(UNIX_EPOCH)
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("version", &self.version)
            .field("dedup_key", &self.dedup_key)
            .field("scheme", &self.scheme)
            .field("delivery_id", &self.delivery_id)
            .field("event_type", &self.event_type)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("received_at_ms", &self.received_at_ms)
            .field("key_id", &self.key_id)
            .field("destination", &self.destination)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An envelope could not be read or written.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not a JSON envelope (or a field has the wrong type).
    #[error("not a hookgate envelope: {0}")]
    Json(#[source] serde_json::Error),
    /// An envelope of a format version this crate does not read.
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
}

/// Milliseconds since the Unix epoch; instants before it are negative.
pub(crate) fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(i64::saturating_neg)
            .unwrap_or(i64::MIN),
    }
}

fn from_unix_millis(ms: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

mod base64_body {
    use super::{Bytes, Deserialize, STANDARD};
    use base64::Engine as _;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(body: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(body))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate::{FixedClock, SchemeId, SignRequest, Signer, Verifier};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn envelope() -> Envelope {
        let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
            .unwrap()
            .sign(
                &SignRequest::new(r#"{"type":"invoice.paid"}"#)
                    .id("msg_1")
                    .timestamp(1_700_000_000),
            )
            .unwrap();
        let event = Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(SECRET)
            .clock(FixedClock::from_unix(1_700_000_000))
            .build()
            .unwrap()
            .verify(&signed.headers, signed.body)
            .unwrap();
        Envelope::from_event(&event)
    }

    #[test]
    fn the_version_1_layout_is_pinned() {
        let json: serde_json::Value =
            serde_json::from_slice(&envelope().to_json().unwrap()).unwrap();
        let headers = json["headers"].clone();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1,
                "dedup_key": "standard-webhooks-v1:id:msg_1",
                "scheme": "standard-webhooks-v1",
                "delivery_id": "msg_1",
                "event_type": "invoice.paid",
                "timestamp_ms": 1_700_000_000_000_i64,
                "received_at_ms": 1_700_000_000_000_i64,
                "key_id": "0",
                "headers": headers,
                "body_b64": "eyJ0eXBlIjoiaW52b2ljZS5wYWlkIn0=",
            })
        );
        assert!(
            headers
                .as_array()
                .unwrap()
                .iter()
                .all(|pair| pair.as_array().is_some_and(|p| p.len() == 2))
        );
    }

    #[test]
    fn round_trips_binary_bodies_and_tolerates_new_fields() {
        let mut original = envelope();
        original.body = Bytes::from_static(&[0, 159, 146, 150, 255]);
        let back = Envelope::from_json(&original.to_json().unwrap()).unwrap();
        assert_eq!(back, original);
        assert_eq!(
            back.timestamp(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );

        // A later writer's extra field is ignored; absent optional fields are null.
        let newer = br#"{"version":1,"dedup_key":"k","scheme":"s","received_at_ms":5,
            "key_id":"0","body_b64":"","added_later":{"x":1}}"#;
        let read = Envelope::from_json(newer).unwrap();
        assert_eq!(read.delivery_id, None);
        assert!(read.headers.is_empty() && read.body.is_empty());
        assert_eq!(read.received_at(), UNIX_EPOCH + Duration::from_millis(5));
    }

    #[test]
    fn a_destination_is_written_only_when_there_is_one() {
        let plain = envelope().to_json().unwrap();
        assert!(!String::from_utf8(plain).unwrap().contains("destination"));
        let copy = envelope().with_destination("billing");
        let back = Envelope::from_json(&copy.to_json().unwrap()).unwrap();
        assert_eq!(back.destination.as_deref(), Some("billing"));
        assert_eq!(back, copy);
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let v2 = br#"{"version":2,"something":"else"}"#;
        assert!(matches!(
            Envelope::from_json(v2),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            Envelope::from_json(b"not json"),
            Err(EnvelopeError::Json(_))
        ));
        let bad_body = br#"{"version":1,"dedup_key":"k","scheme":"s","received_at_ms":5,"key_id":"0","body_b64":"!!"}"#;
        assert!(Envelope::from_json(bad_body).is_err());
        assert!(format!("{:?}", envelope()).contains("body_len"));
    }

    #[test]
    fn millis_conversions_do_not_overflow() {
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), -1000);
        assert_eq!(
            from_unix_millis(-1000),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        let _ = from_unix_millis(i64::MIN);
        let _ = from_unix_millis(i64::MAX);
    }
}
