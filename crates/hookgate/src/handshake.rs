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
//! | `okta` | `GET` with `X-Okta-Verification-Challenge: V` and the configured auth header | 200 JSON `{"verification":V}`; a wrong auth header gets the 401 a forged delivery gets |
//! | `woocommerce` | unsigned form POST `webhook_id=<digits>` (the ping sent when a webhook is saved) | 200, empty body |
//! | `asana` | POST with `X-Hook-Secret: S` and no `X-Hook-Signature`, S equal to a configured live key | 200, empty body, `X-Hook-Secret: S` |
//! | `microsoft-graph` | POST `?validationToken=T` with an empty body (at subscription creation and renewal) | 200 `text/plain`, T URL-decoded |
//! | `braintree` | `GET ?bt_challenge=C`, C 20–32 lowercase hex | 200 `text/plain` `public_key\|hex(HMAC-SHA1(SHA-1(private_key), C))`; another C → 400 `malformed_header` |
//! | `azure-event-grid` | POST `aeg-event-type: SubscriptionValidation`, `[{"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":V,…},…}]`, with the token | 200 JSON `{"validationResponse":V}` |
//! | `azure-event-grid` | `OPTIONS` with `WebHook-Request-Origin: O` (CloudEvents 1.0 abuse protection), with the token | 200, empty body, `WebHook-Allowed-Origin: O`, `WebHook-Allowed-Rate: *`, `Allow: OPTIONS, POST` |
//!
//! WooCommerce's, Asana's and Microsoft Graph's are not signed, so they are looked at only when verification has failed
//! for want of the signature header: a signed delivery never reaches them, and the fast
//! path pays nothing for them. Asana's secret is **never learnt** from the request (that
//! would let anyone register a key): the handshake is answered only when the header equals
//! a key the operator configured (compared in constant time), otherwise it is rejected as
//! any unsigned delivery is.
//!
//! Azure Event Grid signs nothing; both of its handshakes carry the token the operator put
//! in the webhook URL (or its `Authorization: Bearer` delivery property) and are verified
//! like a delivery first, so a handshake without the token gets the same 400/401 as a
//! forged delivery: answering anyone would let anyone subscribe the endpoint. Its `OPTIONS`
//! is answered by [`Gate::receive_options`](crate::Gate::receive_options); adapters route
//! `OPTIONS` there when [`Gate::takes_options`](crate::Gate::takes_options) says so.
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
use crate::headers::Headers;
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
    /// Okta event hooks' one-time verification `GET` with `X-Okta-Verification-Challenge`:
    /// verified like a delivery (the auth header Okta sends on every request), then
    /// answered `{"verification": <the challenge>}`.
    OktaVerification,
    /// WooCommerce's ping (`webhook_id=<digits>`, unsigned form POST) sent when a webhook
    /// is saved: answered 200 with an empty body, as `deliver_ping()` requires.
    WooCommercePing,
    /// Asana's `X-Hook-Secret` POST: answered 200 with the same header, only when its value
    /// is a configured live key.
    AsanaHookSecret,
    /// Microsoft Graph's `POST ?validationToken=T` (empty body, unsigned) sent when a
    /// subscription is created or renewed: answered 200 `text/plain` with T URL-decoded. It
    /// proves only that the URL echoes; every notification still carries the `clientState`.
    GraphValidationToken,
    /// Braintree's `GET ?bt_challenge=C`: answered `public_key|hex(HMAC-SHA1(SHA-1(private
    /// key), C))`, which proves the endpoint holds the key pair.
    BraintreeChallenge,
    /// Azure Event Grid's `SubscriptionValidationEvent` (Event Grid schema): a POST with
    /// `aeg-event-type: SubscriptionValidation`, verified by its token, answered
    /// `{"validationResponse": <data.validationCode>}`. A scheme with this handshake also
    /// answers the CloudEvents `OPTIONS` validation ([`CloudEventsOptions`](Self::CloudEventsOptions)).
    EventGridSubscriptionValidation,
    /// The CloudEvents 1.0 HTTP webhook abuse-protection `OPTIONS` (Azure Event Grid with the
    /// CloudEvents schema): verified by its token, answered 200 with `WebHook-Allowed-Origin`
    /// set to the request's `WebHook-Request-Origin`.
    CloudEventsOptions,
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
            HandshakeKind::OktaVerification => "okta_verification",
            HandshakeKind::WooCommercePing => "woocommerce_ping",
            HandshakeKind::AsanaHookSecret => "asana_hook_secret",
            HandshakeKind::GraphValidationToken => "microsoft_graph_validation",
            HandshakeKind::BraintreeChallenge => "braintree_challenge",
            HandshakeKind::EventGridSubscriptionValidation => "event_grid_subscription_validation",
            HandshakeKind::CloudEventsOptions => "cloudevents_options",
        }
    }

    /// Whether it is an unsigned `POST` (WooCommerce's ping, Asana's `X-Hook-Secret`,
    /// Microsoft Graph's `validationToken`), looked for only when verification fails for want
    /// of the signature (`missing_header`, or `missing_signature` where it travels in the
    /// body).
    pub fn is_unsigned_post(self) -> bool {
        matches!(
            self,
            HandshakeKind::WooCommercePing
                | HandshakeKind::AsanaHookSecret
                | HandshakeKind::GraphValidationToken
        )
    }

    /// Whether the provider sends it as a `GET` (with the handshake in the query string)
    /// rather than as a signed `POST`: adapters must route `GET` to the gate for it.
    pub fn is_get(self) -> bool {
        matches!(
            self,
            HandshakeKind::MetaSubscribe
                | HandshakeKind::DropboxChallenge
                | HandshakeKind::OktaVerification
                | HandshakeKind::BraintreeChallenge
        )
    }

    /// Whether the provider also validates the endpoint with an `OPTIONS` (the CloudEvents
    /// abuse protection Azure Event Grid uses with the CloudEvents schema): adapters must
    /// route `OPTIONS` to the gate for it.
    pub fn takes_options(self) -> bool {
        matches!(
            self,
            HandshakeKind::EventGridSubscriptionValidation | HandshakeKind::CloudEventsOptions
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
    /// Headers the answer must carry (Asana's `X-Hook-Secret` echo, the CloudEvents
    /// `WebHook-Allowed-*`).
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
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
            headers: Vec::new(),
        }
    }

    fn json(kind: HandshakeKind, value: &serde_json::Value) -> Self {
        HandshakeReply {
            kind,
            content_type: APPLICATION_JSON,
            body: Bytes::from(value.to_string()),
            headers: Vec::new(),
        }
    }

    /// The first header the answer must carry besides the content type: Asana's
    /// `X-Hook-Secret` echo, the CloudEvents `WebHook-Allowed-Origin`; `None` for the others.
    /// [`headers`](Self::headers) has them all.
    pub fn header(&self) -> Option<(&http::HeaderName, &http::HeaderValue)> {
        self.headers.first().map(|(name, value)| (name, value))
    }

    /// Every header the answer must carry besides the content type, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&http::HeaderName, &http::HeaderValue)> {
        self.headers.iter().map(|(name, value)| (name, value))
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
    /// A query parameter is present but not in the form the provider sends (Braintree's
    /// `bt_challenge` is 20–32 lowercase hex): 400 `malformed_header`, as for any malformed
    /// delivery.
    MalformedParameter(&'static str),
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeRefusal::NoGetHandshake => f.write_str("the scheme has no GET handshake"),
            HandshakeRefusal::MissingParameter(name) => write!(f, "no single {name} in the query"),
            HandshakeRefusal::VerifyTokenMismatch => f.write_str("the verify token does not match"),
            HandshakeRefusal::MalformedParameter(name) => write!(f, "{name} is malformed"),
        }
    }
}

impl std::error::Error for HandshakeRefusal {}

/// The SHA-256 of a configured verify token: comparing digests keeps the comparison
/// constant-time whatever the lengths.
pub(crate) type TokenDigest = Zeroizing<[u8; 32]>;

pub(crate) fn token_digest(token: &str) -> TokenDigest {
    token_digest_bytes(token.as_bytes())
}

/// [`token_digest`] of bytes.
pub(crate) fn token_digest_bytes(token: &[u8]) -> TokenDigest {
    Zeroizing::new(Sha256::digest(token).into())
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
        HandshakeKind::EventGridSubscriptionValidation => answer_event_grid_validation(event),
        HandshakeKind::MetaSubscribe
        | HandshakeKind::DropboxChallenge
        | HandshakeKind::OktaVerification
        | HandshakeKind::WooCommercePing
        | HandshakeKind::AsanaHookSecret
        | HandshakeKind::GraphValidationToken
        | HandshakeKind::BraintreeChallenge
        | HandshakeKind::CloudEventsOptions => None,
    }
}

/// Azure Event Grid's `SubscriptionValidationEvent`, once its token has verified
/// (learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema):
/// header `aeg-event-type: SubscriptionValidation` and a body that is an array holding only
/// the validation event (`eventType` `Microsoft.EventGrid.SubscriptionValidationEvent`, a
/// non-empty `data.validationCode`). Both must say "validation" (the header is not covered by
/// anything, the body is the token-holder's); otherwise it is an ordinary event. Answered 200
/// JSON `{"validationResponse": V}`.
fn answer_event_grid_validation(event: &VerifiedEvent) -> Option<HandshakeReply> {
    let validation = event.headers().iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("aeg-event-type") && value == "SubscriptionValidation"
    });
    if !validation {
        return None;
    }
    let body = event.body();
    let elements = json::array_elements(body)?;
    let [only] = elements.as_slice() else {
        return None;
    };
    let element = body.get(only.clone())?;
    if json::field(element, &["eventType"])? != "Microsoft.EventGrid.SubscriptionValidationEvent" {
        return None;
    }
    let code = json::field(element, &["data", "validationCode"]).filter(|c| !c.is_empty())?;
    Some(HandshakeReply::json(
        HandshakeKind::EventGridSubscriptionValidation,
        &serde_json::json!({ "validationResponse": code }),
    ))
}

/// The CloudEvents 1.0 abuse-protection answer to a verified `OPTIONS`
/// (github.com/cloudevents/spec `http-webhook.md` §4, as Azure Event Grid sends it): the one
/// non-empty `WebHook-Request-Origin` (visible ASCII, at most 255 bytes: a DNS name) is
/// granted in `WebHook-Allowed-Origin`; `WebHook-Allowed-Rate: *` (§4.2.2: MUST when the
/// request asked for a rate, SHOULD otherwise; hookgate sets no per-origin rate, its limits
/// answer 503 with `Retry-After`); `Allow: OPTIONS, POST` (§4.2: SHOULD name POST). A
/// `WebHook-Request-Callback` is never called: permission is granted in this answer.
pub(crate) fn answer_cloudevents_options<H: Headers + ?Sized>(
    headers: &H,
) -> Result<HandshakeReply, HandshakeRefusal> {
    const NAME: &str = "WebHook-Request-Origin";
    let values = headers.get_all(NAME);
    let origin = match values.as_slice() {
        [value] => value.trim_ascii(),
        _ => return Err(HandshakeRefusal::MissingParameter(NAME)),
    };
    if origin.is_empty() {
        return Err(HandshakeRefusal::MissingParameter(NAME));
    }
    if origin.len() > 255 || !origin.iter().all(|b| b.is_ascii_graphic()) {
        return Err(HandshakeRefusal::MalformedParameter(NAME));
    }
    let origin = http::HeaderValue::from_bytes(origin)
        .map_err(|_| HandshakeRefusal::MalformedParameter(NAME))?;
    Ok(HandshakeReply {
        kind: HandshakeKind::CloudEventsOptions,
        content_type: TEXT_PLAIN,
        body: Bytes::new(),
        headers: vec![
            (
                http::HeaderName::from_static("webhook-allowed-origin"),
                origin,
            ),
            (
                http::HeaderName::from_static("webhook-allowed-rate"),
                http::HeaderValue::from_static("*"),
            ),
            (
                http::header::ALLOW,
                http::HeaderValue::from_static("OPTIONS, POST"),
            ),
        ],
    })
}

/// The answer to Okta's verification `GET`, once its auth header has been verified: the
/// single non-empty `X-Okta-Verification-Challenge`, as `{"verification": V}`.
pub(crate) fn answer_okta<H: Headers + ?Sized>(
    headers: &H,
) -> Result<HandshakeReply, HandshakeRefusal> {
    const NAME: &str = "X-Okta-Verification-Challenge";
    let values = headers.get_all(NAME);
    let challenge = match values.as_slice() {
        [value] if !value.is_empty() => {
            std::str::from_utf8(value).map_err(|_| HandshakeRefusal::MissingParameter(NAME))?
        }
        _ => return Err(HandshakeRefusal::MissingParameter(NAME)),
    };
    Ok(HandshakeReply::json(
        HandshakeKind::OktaVerification,
        &serde_json::json!({ "verification": challenge }),
    ))
}

/// The answer to an **unsigned** POST handshake of `kind` (WooCommerce's ping, Asana's
/// `X-Hook-Secret`, Microsoft Graph's `validationToken`), asked only after verification
/// failed for want of the signature. `query` is the request's raw query string.
/// `is_live_key` says whether a value is a configured live key (constant time) and returns
/// its id. `None`: not a handshake, and the rejection stands.
pub(crate) fn answer_unsigned<H: Headers + ?Sized>(
    kind: HandshakeKind,
    headers: &H,
    body: &[u8],
    query: Option<&str>,
    is_live_key: impl Fn(&[u8]) -> Option<Arc<str>>,
) -> Option<(HandshakeReply, Option<Arc<str>>)> {
    match kind {
        HandshakeKind::GraphValidationToken => {
            // learn.microsoft.com/graph/change-notifications-delivery-webhooks ("Notification
            // endpoint validation"): POST {notificationUrl}?validationToken=T, answered 200
            // text/plain with T URL-decoded, within 10 s. It carries no notification: a body
            // means it is not one, and the rejection stands.
            if body.iter().any(|b| !b.is_ascii_whitespace()) {
                return None;
            }
            let token = single_parameter(query?, "validationToken")?;
            Some((HandshakeReply::text(kind, token), None))
        }
        HandshakeKind::WooCommercePing => {
            // class-wc-webhook.php deliver_ping(): body `webhook_id=<id>`, no signature;
            // any status but 200 makes saving the webhook fail. It proves nothing and
            // carries nothing, so answering it stores nothing and trusts nothing.
            let id = body.strip_prefix(b"webhook_id=")?;
            if id.is_empty() || id.len() > 20 || !id.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let reply = HandshakeReply::text(kind, String::new());
            Some((reply, None))
        }
        HandshakeKind::AsanaHookSecret => {
            // developers.asana.com/docs/establish-a-webhook: echo X-Hook-Secret with 200.
            // Only a secret the operator configured is echoed: one learnt from the
            // request would let anyone register a key.
            let values = headers.get_all("X-Hook-Secret");
            let [secret] = values.as_slice() else {
                return None;
            };
            if body.iter().any(|b| !b.is_ascii_whitespace()) {
                return None;
            }
            let key_id = is_live_key(secret)?;
            let mut value = http::HeaderValue::from_bytes(secret).ok()?;
            // It is the key: never in Debug output.
            value.set_sensitive(true);
            let reply = HandshakeReply {
                kind,
                content_type: TEXT_PLAIN,
                body: Bytes::new(),
                headers: vec![(http::HeaderName::from_static("x-hook-secret"), value)],
            };
            Some((reply, Some(key_id)))
        }
        _ => None,
    }
}

/// The one non-empty value of the query parameter `name`, URL-decoded; `None` when it is
/// absent, empty or repeated (which copy counts would be ambiguous).
fn single_parameter(query: &str, name: &str) -> Option<String> {
    let mut values = form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned());
    let value = values.next()?;
    (values.next().is_none() && !value.is_empty()).then_some(value)
}

/// Braintree's `bt_challenge`: exactly one, 20–32 lowercase hex digits, as the official SDKs'
/// `verify` demands (`^[a-f0-9]{20,32}$`, braintree_python `webhook_notification_gateway.py`).
/// The answer is `{public_key}|{hex(HMAC-SHA1(SHA-1(private_key), challenge))}`, computed by
/// `answer` from the challenge.
pub(crate) fn answer_braintree(
    query: Option<&str>,
    answer: impl FnOnce(&str) -> Option<String>,
) -> Result<HandshakeReply, HandshakeRefusal> {
    const NAME: &str = "bt_challenge";
    let mut values =
        form_urlencoded::parse(query.unwrap_or("").as_bytes()).filter(|(key, _)| key == NAME);
    let (Some((_, challenge)), None) = (values.next(), values.next()) else {
        return Err(HandshakeRefusal::MissingParameter(NAME));
    };
    let well_formed = (20..=32).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(HandshakeRefusal::MalformedParameter(NAME));
    }
    let text = answer(&challenge).ok_or(HandshakeRefusal::NoGetHandshake)?;
    Ok(HandshakeReply::text(
        HandshakeKind::BraintreeChallenge,
        text,
    ))
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

    #[test]
    fn unsigned_handshakes_answer_only_their_exact_shape_and_never_learn_a_key() {
        let none: &[(&str, &str)] = &[];
        let no_key = |_: &[u8]| -> Option<Arc<str>> { None };
        let woo = HandshakeKind::WooCommercePing;
        let (reply, key) = answer_unsigned(woo, none, b"webhook_id=12", None, no_key).unwrap();
        assert_eq!((reply.body_text(), key), ("", None));
        for body in [
            &b"webhook_id="[..],
            b"webhook_id=12&x=1",
            b"webhook_id=-1",
            b"webhook_id=123456789012345678901",
            b"{}",
            b"",
        ] {
            assert!(
                answer_unsigned(woo, none, body, None, no_key).is_none(),
                "{body:?}"
            );
        }
        let asana = HandshakeKind::AsanaHookSecret;
        let configured =
            |value: &[u8]| (value == b"the-configured-secret").then(|| Arc::from("k1"));
        let headers = [("X-Hook-Secret", "the-configured-secret")];
        let (reply, key) = answer_unsigned(asana, &headers, b"", None, configured).unwrap();
        assert_eq!(key.as_deref(), Some("k1"));
        let (name, value) = reply.header().unwrap();
        assert_eq!(
            (name.as_str(), value.as_bytes()),
            ("x-hook-secret", &b"the-configured-secret"[..])
        );
        assert!(
            !format!("{reply:?}").contains("the-configured-secret"),
            "the key in Debug"
        );
        // A stranger's secret, a repeated header, or a body: not a handshake.
        let stranger = [("X-Hook-Secret", "attacker-chosen")];
        assert!(answer_unsigned(asana, &stranger, b"", None, configured).is_none());
        let twice = [
            ("X-Hook-Secret", "the-configured-secret"),
            ("X-Hook-Secret", "the-configured-secret"),
        ];
        assert!(answer_unsigned(asana, &twice, b"", None, configured).is_none());
        assert!(answer_unsigned(asana, &headers, b"{\"events\":[]}", None, configured).is_none());
        assert!(answer_unsigned(asana, none, b"", None, configured).is_none());
        // Only the two unsigned kinds answer here.
        assert!(
            answer_unsigned(
                HandshakeKind::SlackUrlVerification,
                &headers,
                b"",
                None,
                configured
            )
            .is_none()
        );
    }

    #[test]
    fn graph_echoes_one_decoded_validation_token_on_an_empty_post() {
        let none: &[(&str, &str)] = &[];
        let no_key = |_: &[u8]| -> Option<Arc<str>> { None };
        let graph = HandshakeKind::GraphValidationToken;
        let query = Some("validationToken=Validation%3A%20Testing+client%20%3Cb%3E");
        let (reply, key) = answer_unsigned(graph, none, b"", query, no_key).unwrap();
        assert_eq!(
            (reply.body_text(), reply.content_type(), key),
            ("Validation: Testing client <b>", TEXT_PLAIN, None)
        );
        assert!(answer_unsigned(graph, none, b" \r\n", query, no_key).is_some());
        for (body, query) in [
            (&b"{\"value\":[]}"[..], query),
            (b"", None),
            (b"", Some("")),
            (b"", Some("validationToken=")),
            (b"", Some("validationToken=a&validationToken=b")),
            (b"", Some("validationtoken=a")),
        ] {
            assert!(
                answer_unsigned(graph, none, body, query, no_key).is_none(),
                "{body:?} {query:?}"
            );
        }
    }

    #[test]
    fn braintree_answers_only_a_single_lowercase_hex_challenge() {
        let answer = |c: &str| Some(format!("pub|{c}"));
        let ok = answer_braintree(
            Some("bt_challenge=20f9f8ed05f77439fe955c977e4c8a53"),
            answer,
        )
        .unwrap();
        assert_eq!(ok.body_text(), "pub|20f9f8ed05f77439fe955c977e4c8a53");
        assert_eq!(ok.kind(), HandshakeKind::BraintreeChallenge);
        assert!(answer_braintree(Some("bt_challenge=0123456789abcdef0123"), answer).is_ok());
        for query in [
            "bt_challenge=bad%20challenge",
            "bt_challenge=20F9F8ED05F77439FE955C977E4C8A53",
            "bt_challenge=0123456789abcdef012",
            "bt_challenge=0123456789abcdef0123456789abcdef0",
            "bt_challenge=",
        ] {
            assert_eq!(
                answer_braintree(Some(query), answer),
                Err(HandshakeRefusal::MalformedParameter("bt_challenge")),
                "{query}"
            );
        }
        for query in [
            None,
            Some("challenge=20f9f8ed05f77439fe955c977e4c8a53"),
            Some("bt_challenge=20f9f8ed05f77439fe95&bt_challenge=20f9f8ed05f77439fe95"),
        ] {
            assert_eq!(
                answer_braintree(query, answer),
                Err(HandshakeRefusal::MissingParameter("bt_challenge")),
                "{query:?}"
            );
        }
    }

    #[test]
    fn cloudevents_options_grants_exactly_the_one_origin_asked_for() {
        let reply =
            answer_cloudevents_options(&[("WebHook-Request-Origin", " eventgrid.azure.net ")])
                .unwrap();
        assert_eq!(reply.kind(), HandshakeKind::CloudEventsOptions);
        assert_eq!(reply.body_text(), "");
        let headers: Vec<(&str, &str)> = reply
            .headers()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("webhook-allowed-origin", "eventgrid.azure.net"),
                ("webhook-allowed-rate", "*"),
                ("allow", "OPTIONS, POST"),
            ]
        );
        let name = "WebHook-Request-Origin";
        for headers in [
            vec![],
            vec![(name, "")],
            vec![(name, "a.example"), (name, "a.example")],
        ] {
            assert_eq!(
                answer_cloudevents_options(&headers),
                Err(HandshakeRefusal::MissingParameter(name)),
                "{headers:?}"
            );
        }
        let long = "a".repeat(256);
        for origin in ["two words", "caf\u{e9}.example", long.as_str()] {
            assert_eq!(
                answer_cloudevents_options(&[(name, origin)]),
                Err(HandshakeRefusal::MalformedParameter(name)),
                "{origin}"
            );
        }
    }

    #[test]
    fn okta_needs_one_non_empty_challenge() {
        let ok = answer_okta(&[("X-Okta-Verification-Challenge", "abc")]).unwrap();
        assert_eq!(ok.body_text(), r#"{"verification":"abc"}"#);
        assert_eq!(ok.content_type(), APPLICATION_JSON);
        for headers in [
            vec![],
            vec![("X-Okta-Verification-Challenge", "")],
            vec![
                ("X-Okta-Verification-Challenge", "a"),
                ("X-Okta-Verification-Challenge", "b"),
            ],
        ] {
            assert_eq!(
                answer_okta(&headers),
                Err(HandshakeRefusal::MissingParameter(
                    "X-Okta-Verification-Challenge"
                ))
            );
        }
    }
}
