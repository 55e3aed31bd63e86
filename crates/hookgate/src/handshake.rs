//! Provider URL handshakes: the requests a provider sends to prove that an endpoint is
//! theirs before (and while) it delivers events there.
//!
//! A handshake is answered with a body the provider computes too, and is **never** stored
//! or handed to a sink: it is not an event. A signed handshake (Slack, Zoom, Twitch,
//! Discord) is verified exactly like a delivery first, so a forged one gets the same 4xx as
//! any forged delivery. Meta's `GET` handshake is not signed; it carries the verify token
//! configured at Meta, compared in constant time with the one configured here.
//!
//! What each provider sends and expects (sources in `docs/PROVIDERS.md`):
//!
//! | scheme | request | answer |
//! |---|---|---|
//! | `slack` | signed POST `{"type":"url_verification","challenge":C}` | 200 `text/plain` C |
//! | `zoom` | signed POST `{"event":"endpoint.url_validation","payload":{"plainToken":P}}` | 200 JSON `{"plainToken":P,"encryptedToken":hex(HMAC-SHA256(secret token, P))}` |
//! | `twitch-eventsub` | signed POST, `Twitch-Eventsub-Message-Type: webhook_callback_verification`, `{"challenge":C,…}` | 200 `text/plain` C |
//! | `discord` | signed POST `{"type":1,…}` (PING) | 200 JSON `{"type":1}` (PONG) |
//! | `meta` | `GET ?hub.mode=subscribe&hub.challenge=C&hub.verify_token=T` | 200 `text/plain` C when T is the configured token, else 403 |
//! | `dropbox` | `GET ?challenge=C` | 200 `text/plain` C |
//!
//! Every answer carries `X-Content-Type-Options: nosniff`: a challenge is echoed as text,
//! never as something a browser would render.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::encoding::hex;
use crate::event::VerifiedEvent;
use crate::json;
use crate::secret::KeyBytes;

/// Which provider handshake a scheme performs: see the [module documentation](self).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeKind {
    /// Slack Events API `url_verification` (signed POST): answered with the `challenge`.
    SlackUrlVerification,
    /// Zoom `endpoint.url_validation` (signed POST): answered with the plain token and its
    /// HMAC-SHA256 under the secret token, in hex.
    ZoomUrlValidation,
    /// Twitch EventSub `webhook_callback_verification` (signed POST): answered with the raw
    /// `challenge` as `text/plain`. (`revocation` messages are events, not handshakes.)
    TwitchCallbackVerification,
    /// Discord interactions PING (`{"type":1}`, Ed25519-signed): answered `{"type":1}`.
    DiscordPing,
    /// Meta (WhatsApp, Messenger, Instagram) `GET ?hub.mode=subscribe`: answered with
    /// `hub.challenge` when `hub.verify_token` is the configured verify token.
    MetaSubscribe,
    /// Dropbox `GET ?challenge=C`: answered with C as `text/plain` (with
    /// `X-Content-Type-Options: nosniff`, as Dropbox asks: the echo is not authenticated).
    DropboxChallenge,
}

impl HandshakeKind {
    /// A stable name, e.g. `slack_url_verification`: what the event log records.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeKind::SlackUrlVerification => "slack_url_verification",
            HandshakeKind::ZoomUrlValidation => "zoom_url_validation",
            HandshakeKind::TwitchCallbackVerification => "twitch_callback_verification",
            HandshakeKind::DiscordPing => "discord_ping",
            HandshakeKind::MetaSubscribe => "meta_subscribe",
            HandshakeKind::DropboxChallenge => "dropbox_challenge",
        }
    }

    /// Whether the provider sends it as a `GET` (with the handshake in the query string)
    /// rather than as a signed `POST`: adapters must route `GET` to the gate for it.
    pub fn is_get(self) -> bool {
        matches!(
            self,
            HandshakeKind::MetaSubscribe | HandshakeKind::DropboxChallenge
        )
    }
}

impl fmt::Display for HandshakeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a handshake: status 200, a content type and a body the provider checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    kind: HandshakeKind,
    content_type: &'static str,
    body: Bytes,
}

/// `Content-Type` of a plain-text answer.
pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// `Content-Type` of a JSON answer.
const APPLICATION_JSON: &str = "application/json";

impl HandshakeReply {
    fn text(kind: HandshakeKind, text: String) -> Self {
        HandshakeReply {
            kind,
            content_type: TEXT_PLAIN,
            body: Bytes::from(text),
        }
    }

    fn json(kind: HandshakeKind, value: &serde_json::Value) -> Self {
        HandshakeReply {
            kind,
            content_type: APPLICATION_JSON,
            body: Bytes::from(value.to_string()),
        }
    }

    /// Which handshake this answers.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// The `Content-Type` of the answer.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// The answer's body, exactly as the provider expects it (always UTF-8).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text.
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// A handshake the gate answered, as a [`Sink`](crate::Sink) may record it (the SQLite
/// inbox writes it to its event log as a handshake, not as an event). It carries no body,
/// challenge or token.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub(crate) scheme: Arc<str>,
    pub(crate) kind: HandshakeKind,
    pub(crate) key_id: Option<Arc<str>>,
    pub(crate) received_at: SystemTime,
}

impl Handshake {
    /// The scheme that answered it.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Which handshake it was.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// The id of the key that verified it (signed handshakes); `None` for Meta's `GET`,
    /// which is checked against the verify token instead.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// When the gate received it.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }
}

/// Why a `GET` handshake was not answered.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeRefusal {
    /// The scheme has no `GET` handshake: 405.
    NoGetHandshake,
    /// A query parameter the handshake needs is absent or repeated (`hub.mode=subscribe`,
    /// `hub.challenge`): 403 `handshake_refused`.
    MissingParameter(&'static str),
    /// The verify token differs from the configured one, or none is configured: 403
    /// `handshake_refused`.
    VerifyTokenMismatch,
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeRefusal::NoGetHandshake => f.write_str("the scheme has no GET handshake"),
            HandshakeRefusal::MissingParameter(name) => write!(f, "no single {name} in the query"),
            HandshakeRefusal::VerifyTokenMismatch => f.write_str("the verify token does not match"),
        }
    }
}

impl std::error::Error for HandshakeRefusal {}

/// The SHA-256 of a configured verify token: comparing digests keeps the comparison
/// constant-time whatever the lengths.
pub(crate) type TokenDigest = Zeroizing<[u8; 32]>;

pub(crate) fn token_digest(token: &str) -> TokenDigest {
    Zeroizing::new(Sha256::digest(token.as_bytes()).into())
}

/// The answer to a verified POST that is a handshake of `kind`; `None` when the event is an
/// ordinary event. `hmac_key` is the key that verified it (Zoom answers with an HMAC under
/// it).
pub(crate) fn answer_verified(
    kind: HandshakeKind,
    event: &VerifiedEvent,
    hmac_key: Option<&KeyBytes>,
) -> Option<HandshakeReply> {
    let body = event.body();
    match kind {
        HandshakeKind::SlackUrlVerification => {
            // https://api.slack.com/events/url_verification: respond with the challenge.
            if json::field(body, &["type"])? != "url_verification" {
                return None;
            }
            let challenge = json::field(body, &["challenge"])?;
            Some(HandshakeReply::text(kind, challenge))
        }
        HandshakeKind::ZoomUrlValidation => {
            if json::field(body, &["event"])? != "endpoint.url_validation" {
                return None;
            }
            let plain = json::field(body, &["payload", "plainToken"])?;
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hmac_key?.as_slice()).ok()?;
            mac.update(plain.as_bytes());
            let encrypted = hex(&mac.finalize().into_bytes());
            Some(HandshakeReply::json(
                kind,
                &serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted }),
            ))
        }
        HandshakeKind::TwitchCallbackVerification => {
            // The message type header is not signed, but the challenge is (in the body):
            // both must say "verification" for the message to be answered as one.
            let verification = event.headers().iter().any(|(name, value)| {
                name.eq_ignore_ascii_case("Twitch-Eventsub-Message-Type")
                    && value == "webhook_callback_verification"
            });
            if !verification {
                return None;
            }
            let challenge = json::field(body, &["challenge"])?;
            Some(HandshakeReply::text(kind, challenge))
        }
        HandshakeKind::DiscordPing => {
            // PING is interaction type 1; the answer is PONG, response type 1.
            if json::field(body, &["type"])? != "1" {
                return None;
            }
            Some(HandshakeReply::json(
                kind,
                &serde_json::json!({ "type": 1 }),
            ))
        }
        HandshakeKind::MetaSubscribe | HandshakeKind::DropboxChallenge => None,
    }
}

/// The answer to a `GET` handshake of `kind` with `query` (the raw query string).
pub(crate) fn answer_get(
    kind: Option<HandshakeKind>,
    query: Option<&str>,
    verify_token: Option<&TokenDigest>,
) -> Result<HandshakeReply, HandshakeRefusal> {
    let dropbox = match kind {
        Some(HandshakeKind::MetaSubscribe) => false,
        Some(HandshakeKind::DropboxChallenge) => true,
        _ => return Err(HandshakeRefusal::NoGetHandshake),
    };
    let mut mode = None;
    let mut challenge = None;
    let mut token = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match (&*name, dropbox) {
            ("hub.mode", false) => &mut mode,
            ("hub.challenge", false) | ("challenge", true) => &mut challenge,
            ("hub.verify_token", false) => &mut token,
            _ => continue,
        };
        // A repeated parameter is ambiguous: keep none of it.
        *slot = match slot.take() {
            None => Some(Some(value.into_owned())),
            Some(_) => Some(None),
        };
    }
    if dropbox {
        // https://www.dropbox.com/developers/reference/webhooks: echo the challenge. It proves
        // only that the URL answers, so nothing is stored and no key is involved.
        return match challenge.flatten().filter(|c| !c.is_empty()) {
            Some(challenge) => Ok(HandshakeReply::text(
                HandshakeKind::DropboxChallenge,
                challenge,
            )),
            None => Err(HandshakeRefusal::MissingParameter("challenge")),
        };
    }
    if mode.flatten().as_deref() != Some("subscribe") {
        return Err(HandshakeRefusal::MissingParameter("hub.mode"));
    }
    let Some(challenge) = challenge.flatten().filter(|c| !c.is_empty()) else {
        return Err(HandshakeRefusal::MissingParameter("hub.challenge"));
    };
    let (Some(expected), Some(given)) = (verify_token, token.flatten()) else {
        return Err(HandshakeRefusal::VerifyTokenMismatch);
    };
    if bool::from(token_digest(&given)[..].ct_eq(&expected[..])) {
        Ok(HandshakeReply::text(
            HandshakeKind::MetaSubscribe,
            challenge,
        ))
    } else {
        Err(HandshakeRefusal::VerifyTokenMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_get_needs_the_mode_the_challenge_and_the_right_token() {
        let token = token_digest("meatyhamhock");
        let kind = Some(HandshakeKind::MetaSubscribe);
        let ok = answer_get(
            kind,
            Some("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock"),
            Some(&token),
        )
        .unwrap();
        assert_eq!(ok.body_text(), "1158201444");
        assert_eq!(ok.content_type(), TEXT_PLAIN);
        let encoded = answer_get(
            kind,
            Some("hub.mode=subscribe&hub.challenge=a%20b%2Bc&hub.verify_token=meaty%68amhock"),
            Some(&token),
        )
        .unwrap();
        assert_eq!(encoded.body_text(), "a b+c");
        for (query, refusal) in [
            (
                "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
                HandshakeRefusal::VerifyTokenMismatch,
            ),
            (
                "hub.mode=subscribe&hub.challenge=1",
                HandshakeRefusal::VerifyTokenMismatch,
            ),
            (
                "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meatyhamhock",
                HandshakeRefusal::MissingParameter("hub.mode"),
            ),
            (
                "hub.mode=subscribe&hub.verify_token=meatyhamhock",
                HandshakeRefusal::MissingParameter("hub.challenge"),
            ),
            (
                "hub.mode=subscribe&hub.challenge=1&hub.challenge=2&hub.verify_token=meatyhamhock",
                HandshakeRefusal::MissingParameter("hub.challenge"),
            ),
            ("", HandshakeRefusal::MissingParameter("hub.mode")),
        ] {
            assert_eq!(
                answer_get(kind, Some(query), Some(&token)),
                Err(refusal),
                "{query}"
            );
        }
        assert_eq!(
            answer_get(
                kind,
                Some("hub.mode=subscribe&hub.challenge=1&hub.verify_token=meatyhamhock"),
                None
            ),
            Err(HandshakeRefusal::VerifyTokenMismatch),
            "no token configured: refused"
        );
        assert_eq!(
            answer_get(
                Some(HandshakeKind::SlackUrlVerification),
                Some("hub.mode=subscribe"),
                Some(&token)
            ),
            Err(HandshakeRefusal::NoGetHandshake)
        );
        assert_eq!(
            answer_get(None, None, None),
            Err(HandshakeRefusal::NoGetHandshake)
        );
        let dropbox = Some(HandshakeKind::DropboxChallenge);
        let echoed = answer_get(dropbox, Some("challenge=%3Cb%3E"), None).unwrap();
        assert_eq!(echoed.body_text(), "<b>");
        assert_eq!(echoed.content_type(), TEXT_PLAIN);
        for query in [
            "",
            "challenge=",
            "challenge=1&challenge=2",
            "hub.challenge=1",
        ] {
            assert_eq!(
                answer_get(dropbox, Some(query), None),
                Err(HandshakeRefusal::MissingParameter("challenge")),
                "{query}"
            );
        }
    }
}
