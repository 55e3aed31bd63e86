//! The provider schemes hookgate knows, and the generic HMAC scheme for everyone else.
//!
//! A scheme knows where a provider puts the signature, id and timestamp, which bytes it
//! signs, the algorithm and encoding, how its secret is written and its timestamp window.
//! `shared/vectors/SCHEMES.md` in the project repository lists the provider facts behind
//! each preset.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::handshake::HandshakeKind;

pub(crate) mod extract;
pub(crate) mod generic;

pub use generic::{GenericHmac, GenericHmacBuilder, HmacAlgorithm};

/// A preset for one provider's signature scheme.
///
/// The string form (`"stripe"`, `"standard-webhooks-v1"`, …) is what the CLI and the
/// configuration files use; see [`SchemeId::ALL`] for the list.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemeId {
    /// Standard Webhooks v1: HMAC-SHA256 over `{id}.{timestamp}.{body}`, `whsec_` base64 keys.
    StandardWebhooksV1,
    /// Standard Webhooks v1a: Ed25519 over `{id}.{timestamp}.{body}`, `whpk_` public keys.
    StandardWebhooksV1a,
    /// Svix: Standard Webhooks v1 with `svix-*` (or white-labelled `webhook-*`) headers.
    Svix,
    /// Stripe: `Stripe-Signature: t=…,v1=…`, HMAC-SHA256 hex over `{t}.{body}`, raw `whsec_` key.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=…`, HMAC-SHA256 hex over the body.
    Github,
    /// GitHub's legacy `X-Hub-Signature: sha1=…` (HMAC-SHA1).
    GithubSha1,
    /// Shopify: `X-Shopify-Hmac-Sha256`, HMAC-SHA256 base64 over the body.
    Shopify,
    /// Slack: `X-Slack-Signature: v0=…` over `v0:{timestamp}:{body}`.
    Slack,
    /// Twilio: `X-Twilio-Signature`, HMAC-SHA1 base64 over the URL and sorted form parameters.
    Twilio,
    /// Twilio JSON requests: HMAC-SHA1 over the URL carrying `bodySHA256`, plus the body hash.
    TwilioBodySha256,
    /// Paddle Billing: `Paddle-Signature: ts=…;h1=…` over `{ts}:{body}`.
    Paddle,
    /// Square: `x-square-hmacsha256-signature`, HMAC-SHA256 base64 over URL + body.
    Square,
    /// Mailgun: signature fields in the body, HMAC-SHA256 hex over `{timestamp}{token}`.
    Mailgun,
    /// Twilio SendGrid Event Webhook: ECDSA P-256 over `{timestamp}{body}`.
    Sendgrid,
    /// Discord interactions: Ed25519 over `{timestamp}{body}`, hex public key.
    Discord,
    /// Twitch EventSub: HMAC-SHA256 hex over `{message id}{timestamp}{body}`.
    TwitchEventsub,
    /// Zoom: `x-zm-signature: v0=…` over `v0:{timestamp}:{body}`.
    Zoom,
    /// Linear: `Linear-Signature` hex over the body, freshness from `webhookTimestamp` (ms).
    Linear,
    /// Intercom: `X-Hub-Signature: sha1=…` over the body.
    Intercom,
    /// GitLab's classic `X-Gitlab-Token`: a shared token, the body is not authenticated.
    GitlabToken,
    /// GitLab signing tokens: Standard Webhooks v1 headers.
    GitlabSigning,
    /// Prefinery: `X-Prefinery-Signature: t=…,v1=…`, a copy of Stripe's construction.
    Prefinery,
    /// Meta (WhatsApp Cloud API, Messenger, Instagram): `X-Hub-Signature-256: sha256=…`,
    /// HMAC-SHA256 hex over the body with the app secret; the `GET hub.challenge`
    /// subscription handshake is answered with a configured verify token.
    Meta,
}

/// Whether a timestamp in the future beyond the tolerance is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// The scheme carries no timestamp.
    None,
    /// The scheme carries a timestamp; default tolerance.
    Tolerance(Duration),
}

impl SchemeId {
    /// Every preset, in the order `hookgate schemes` lists them.
    pub const ALL: [SchemeId; 23] = [
        SchemeId::StandardWebhooksV1,
        SchemeId::StandardWebhooksV1a,
        SchemeId::Svix,
        SchemeId::Stripe,
        SchemeId::Github,
        SchemeId::GithubSha1,
        SchemeId::Shopify,
        SchemeId::Slack,
        SchemeId::Twilio,
        SchemeId::TwilioBodySha256,
        SchemeId::Paddle,
        SchemeId::Square,
        SchemeId::Mailgun,
        SchemeId::Sendgrid,
        SchemeId::Discord,
        SchemeId::TwitchEventsub,
        SchemeId::Zoom,
        SchemeId::Linear,
        SchemeId::Intercom,
        SchemeId::GitlabToken,
        SchemeId::GitlabSigning,
        SchemeId::Prefinery,
        SchemeId::Meta,
    ];

    /// The stable id, e.g. `standard-webhooks-v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemeId::StandardWebhooksV1 => "standard-webhooks-v1",
            SchemeId::StandardWebhooksV1a => "standard-webhooks-v1a",
            SchemeId::Svix => "svix",
            SchemeId::Stripe => "stripe",
            SchemeId::Github => "github",
            SchemeId::GithubSha1 => "github-sha1",
            SchemeId::Shopify => "shopify",
            SchemeId::Slack => "slack",
            SchemeId::Twilio => "twilio",
            SchemeId::TwilioBodySha256 => "twilio-body-sha256",
            SchemeId::Paddle => "paddle",
            SchemeId::Square => "square",
            SchemeId::Mailgun => "mailgun",
            SchemeId::Sendgrid => "sendgrid",
            SchemeId::Discord => "discord",
            SchemeId::TwitchEventsub => "twitch-eventsub",
            SchemeId::Zoom => "zoom",
            SchemeId::Linear => "linear",
            SchemeId::Intercom => "intercom",
            SchemeId::GitlabToken => "gitlab-token",
            SchemeId::GitlabSigning => "gitlab-signing",
            SchemeId::Prefinery => "prefinery",
            SchemeId::Meta => "meta",
        }
    }

    /// A one-line description: headers, algorithm, key format.
    pub fn description(self) -> &'static str {
        match self {
            SchemeId::StandardWebhooksV1 => {
                "Standard Webhooks v1: webhook-id/-timestamp/-signature, HMAC-SHA256 base64, whsec_ base64 secret, ±300 s"
            }
            SchemeId::StandardWebhooksV1a => {
                "Standard Webhooks v1a: as v1 with Ed25519 signatures, verified with whpk_ public keys (signed with whsk_)"
            }
            SchemeId::Svix => {
                "Svix: Standard Webhooks v1 with svix-* (or webhook-*) headers, whsec_ base64 secret, ±300 s"
            }
            SchemeId::Stripe => {
                "Stripe: Stripe-Signature t=,v1= HMAC-SHA256 hex over t.body, whsec_ secret used as-is, 300 s"
            }
            SchemeId::Github => {
                "GitHub: X-Hub-Signature-256 sha256=HMAC-SHA256 hex of the body; no timestamp"
            }
            SchemeId::GithubSha1 => {
                "GitHub legacy: X-Hub-Signature sha1=HMAC-SHA1 hex of the body; no timestamp"
            }
            SchemeId::Shopify => {
                "Shopify: X-Shopify-Hmac-Sha256 HMAC-SHA256 base64 of the body; no timestamp"
            }
            SchemeId::Slack => {
                "Slack: X-Slack-Signature v0=HMAC-SHA256 hex of v0:ts:body, X-Slack-Request-Timestamp, ±300 s"
            }
            SchemeId::Twilio => {
                "Twilio: X-Twilio-Signature HMAC-SHA1 base64 of URL + sorted form params; needs the public URL"
            }
            SchemeId::TwilioBodySha256 => {
                "Twilio JSON: X-Twilio-Signature over the URL with bodySHA256=hex(SHA-256(body)); needs the public URL"
            }
            SchemeId::Paddle => {
                "Paddle Billing: Paddle-Signature ts=;h1= HMAC-SHA256 hex of ts:body, secret used as-is, 5 s"
            }
            SchemeId::Square => {
                "Square: x-square-hmacsha256-signature HMAC-SHA256 base64 of URL + body; needs the public URL"
            }
            SchemeId::Mailgun => {
                "Mailgun: body signature.{timestamp,token,signature}, HMAC-SHA256 hex of timestamp+token (body not signed), 900 s"
            }
            SchemeId::Sendgrid => {
                "SendGrid Event Webhook: ECDSA P-256 base64 DER over timestamp+body, base64 DER public key, 600 s"
            }
            SchemeId::Discord => {
                "Discord: X-Signature-Ed25519 hex over X-Signature-Timestamp+body, hex public key, 600 s"
            }
            SchemeId::TwitchEventsub => {
                "Twitch EventSub: sha256=HMAC-SHA256 hex of message-id+timestamp+body, RFC 3339 timestamp, 600 s"
            }
            SchemeId::Zoom => {
                "Zoom: x-zm-signature v0=HMAC-SHA256 hex of v0:ts:body, x-zm-request-timestamp, ±300 s"
            }
            SchemeId::Linear => {
                "Linear: Linear-Signature HMAC-SHA256 hex of the body, webhookTimestamp (ms) in the body, ±60 s"
            }
            SchemeId::Intercom => {
                "Intercom: X-Hub-Signature sha1=HMAC-SHA1 hex of the body; no timestamp"
            }
            SchemeId::GitlabToken => {
                "GitLab classic: X-Gitlab-Token equals the secret token (body NOT authenticated); no timestamp"
            }
            SchemeId::GitlabSigning => {
                "GitLab signing token: Standard Webhooks v1 headers, whsec_ base64 secret, ±300 s"
            }
            SchemeId::Prefinery => {
                "Prefinery: X-Prefinery-Signature t=,v1= HMAC-SHA256 hex over t.body (Stripe's construction), 300 s"
            }
            SchemeId::Meta => {
                "Meta (WhatsApp, Messenger, Instagram): X-Hub-Signature-256 sha256=HMAC-SHA256 hex of the body with the app secret; GET hub.challenge answered with the verify token; no timestamp"
            }
        }
    }

    /// The provider's timestamp window, or a conservative receiver policy where the provider
    /// documents none (Mailgun 15 min, SendGrid and Discord 10 min, Zoom 5 min).
    pub(crate) fn window(self) -> Window {
        let secs = match self {
            SchemeId::StandardWebhooksV1
            | SchemeId::StandardWebhooksV1a
            | SchemeId::Svix
            | SchemeId::GitlabSigning
            | SchemeId::Stripe
            | SchemeId::Prefinery
            | SchemeId::Slack
            | SchemeId::Zoom => 300,
            SchemeId::Paddle => 5,
            SchemeId::TwitchEventsub | SchemeId::Sendgrid | SchemeId::Discord => 600,
            SchemeId::Linear => 60,
            SchemeId::Mailgun => 900,
            SchemeId::Github
            | SchemeId::GithubSha1
            | SchemeId::Shopify
            | SchemeId::Twilio
            | SchemeId::TwilioBodySha256
            | SchemeId::Square
            | SchemeId::Intercom
            | SchemeId::GitlabToken
            | SchemeId::Meta => return Window::None,
        };
        Window::Tolerance(Duration::from_secs(secs))
    }

    /// The header that carries the signature (or GitLab's token); `None` for Mailgun, whose
    /// signature travels in the body.
    pub fn signature_header(self) -> Option<&'static str> {
        Some(match self {
            SchemeId::StandardWebhooksV1
            | SchemeId::StandardWebhooksV1a
            | SchemeId::GitlabSigning => "webhook-signature",
            SchemeId::Svix => "svix-signature",
            SchemeId::Stripe => "Stripe-Signature",
            SchemeId::Prefinery => "X-Prefinery-Signature",
            SchemeId::Paddle => "Paddle-Signature",
            SchemeId::Github | SchemeId::Meta => "X-Hub-Signature-256",
            SchemeId::GithubSha1 | SchemeId::Intercom => "X-Hub-Signature",
            SchemeId::Shopify => "X-Shopify-Hmac-Sha256",
            SchemeId::Slack => "X-Slack-Signature",
            SchemeId::Zoom => "x-zm-signature",
            SchemeId::Twilio | SchemeId::TwilioBodySha256 => "X-Twilio-Signature",
            SchemeId::Square => "x-square-hmacsha256-signature",
            SchemeId::Sendgrid => "X-Twilio-Email-Event-Webhook-Signature",
            SchemeId::Discord => "X-Signature-Ed25519",
            SchemeId::TwitchEventsub => "Twitch-Eventsub-Message-Signature",
            SchemeId::Linear => "Linear-Signature",
            SchemeId::GitlabToken => "X-Gitlab-Token",
            SchemeId::Mailgun => return None,
        })
    }

    /// The default timestamp tolerance, or `None` when the scheme signs no timestamp.
    pub fn default_tolerance(self) -> Option<Duration> {
        match self.window() {
            Window::None => None,
            Window::Tolerance(tolerance) => Some(tolerance),
        }
    }

    /// Whether the scheme signs the request URL (the public URL must be configured).
    pub fn signs_url(self) -> bool {
        matches!(
            self,
            SchemeId::Twilio | SchemeId::TwilioBodySha256 | SchemeId::Square
        )
    }

    /// The URL handshake the provider performs before it delivers events, if it has one:
    /// see [`HandshakeKind`].
    pub fn handshake(self) -> Option<HandshakeKind> {
        match self {
            SchemeId::Slack => Some(HandshakeKind::SlackUrlVerification),
            SchemeId::Zoom => Some(HandshakeKind::ZoomUrlValidation),
            SchemeId::TwitchEventsub => Some(HandshakeKind::TwitchCallbackVerification),
            SchemeId::Discord => Some(HandshakeKind::DiscordPing),
            SchemeId::Meta => Some(HandshakeKind::MetaSubscribe),
            _ => None,
        }
    }

    /// Whether the scheme's signatures carry a timestamp that the verifier checks.
    pub fn has_timestamp(self) -> bool {
        self.window() != Window::None
    }
}

impl fmt::Display for SchemeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemeId {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchemeId::ALL
            .into_iter()
            .find(|id| id.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ConfigError::UnknownScheme(s.to_owned()))
    }
}

/// A scheme: a provider preset or a generic HMAC scheme built from configuration.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// A provider preset.
    Preset(SchemeId),
    /// A generic HMAC scheme (an in-house sender, a provider without a preset).
    Generic(Arc<GenericHmac>),
}

impl Scheme {
    /// The scheme's name: the preset id or the generic scheme's name.
    pub fn name(&self) -> &str {
        match self {
            Scheme::Preset(id) => id.as_str(),
            Scheme::Generic(generic) => generic.name(),
        }
    }

    pub(crate) fn window(&self) -> Window {
        match self {
            Scheme::Preset(id) => id.window(),
            Scheme::Generic(generic) => generic.window(),
        }
    }

    /// The provider's URL handshake, if any (a generic scheme has none).
    pub fn handshake(&self) -> Option<HandshakeKind> {
        match self {
            Scheme::Preset(id) => id.handshake(),
            Scheme::Generic(_) => None,
        }
    }
}

impl From<SchemeId> for Scheme {
    fn from(id: SchemeId) -> Self {
        Scheme::Preset(id)
    }
}

impl From<GenericHmac> for Scheme {
    fn from(generic: GenericHmac) -> Self {
        Scheme::Generic(Arc::new(generic))
    }
}

impl FromStr for Scheme {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchemeId::from_str(s).map(Scheme::Preset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for id in SchemeId::ALL {
            assert_eq!(id.as_str().parse::<SchemeId>(), Ok(id));
            assert!(!id.description().is_empty());
        }
        let mut names: Vec<_> = SchemeId::ALL.iter().map(|id| id.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SchemeId::ALL.len());
        assert!("nope".parse::<SchemeId>().is_err());
    }
}
