//! The provider schemes hookgate knows, and the generic HMAC scheme for everyone else.
//!
//! A scheme knows where a provider puts the signature, id and timestamp, which bytes it
//! signs, the algorithm and encoding, how its secret is written and its timestamp window.
//! `shared/vectors/SCHEMES.md` and `docs/PROVIDERS.md` in the project repository list the
//! provider facts behind each preset; each preset is one definition in `preset.rs`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::handshake::HandshakeKind;

pub(crate) mod azure_event_grid;
pub(crate) mod body_tokens;
pub(crate) mod braintree;
pub(crate) mod extract;
pub(crate) mod generic;
pub(crate) mod preset;

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
    /// Asana: `X-Hook-Signature`, HMAC-SHA256 hex of the body.
    Asana,
    /// Cal.com: `X-Cal-Signature-256`, HMAC-SHA256 hex of the body.
    Calcom,
    /// Checkout.com: `Cko-Signature`, HMAC-SHA256 hex of the body.
    CheckoutCom,
    /// Coinbase Commerce: `X-CC-Webhook-Signature`, HMAC-SHA256 hex of the body.
    CoinbaseCommerce,
    /// Dropbox: `X-Dropbox-Signature`, HMAC-SHA256 hex of the body with the app secret.
    Dropbox,
    /// Gitea: `X-Gitea-Signature`, HMAC-SHA256 hex of the body.
    Gitea,
    /// Forgejo: `X-Forgejo-Signature`, HMAC-SHA256 hex of the body.
    Forgejo,
    /// Lemon Squeezy: `X-Signature`, HMAC-SHA256 hex of the body.
    LemonSqueezy,
    /// Onfido: `X-SHA2-Signature`, HMAC-SHA256 hex of the body.
    Onfido,
    /// Razorpay: `X-Razorpay-Signature`, HMAC-SHA256 hex of the body.
    Razorpay,
    /// Sentry integration platform: `Sentry-Hook-Signature`, HMAC-SHA256 hex of the body.
    Sentry,
    /// Segment: `X-Signature`, HMAC-SHA1 hex of the body.
    Segment,
    /// Vercel: `x-vercel-signature`, HMAC-SHA1 hex of the body.
    Vercel,
    /// Bitbucket Cloud: `X-Hub-Signature: sha256=…` over the body.
    Bitbucket,
    /// Notion: `X-Notion-Signature: sha256=…` over the body.
    Notion,
    /// Typeform: `Typeform-Signature: sha256=<base64>` over the body.
    Typeform,
    /// LINE Messaging API: `x-line-signature`, HMAC-SHA256 base64 of the body.
    Line,
    /// WooCommerce: `X-WC-Webhook-Signature`, HMAC-SHA256 base64 of the body.
    Woocommerce,
    /// Okta event hooks: the `Authorization` header, a shared token (the body is not authenticated).
    Okta,
    /// Calendly: `Calendly-Webhook-Signature: t=…,v1=…` (Stripe's construction), 180 s.
    Calendly,
    /// Mux: `Mux-Signature: t=…,v1=…` (Stripe's construction), 300 s.
    Mux,
    /// Clerk: an alias of [`Svix`](SchemeId::Svix) (Clerk signs with Svix).
    Clerk,
    /// Resend: an alias of [`Svix`](SchemeId::Svix) (Resend signs with Svix).
    Resend,
    /// PagerDuty v3 webhooks: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of
    /// the body, one entry per active secret.
    Pagerduty,
    /// Telegram Bot API: `X-Telegram-Bot-Api-Secret-Token`, a shared token (the body is not
    /// authenticated).
    Telegram,
    /// Airtable: `X-Airtable-Content-MAC: hmac-sha256=<hex>` of the body, keyed by the
    /// base64-decoded `macSecretBase64`.
    Airtable,
    /// Zendesk: `X-Zendesk-Webhook-Signature`, HMAC-SHA256 base64 of the RFC 3339
    /// `X-Zendesk-Webhook-Signature-Timestamp` followed by the body.
    Zendesk,
    /// Webflow: `x-webflow-signature`, HMAC-SHA256 hex of `{x-webflow-timestamp}:{body}`, the
    /// timestamp in Unix milliseconds.
    Webflow,
    /// Persona: `Persona-Signature: t=…,v1=…`, HMAC-SHA256 hex over `{t}.{body}`, one group
    /// per active secret while rotating.
    Persona,
    /// DocuSign Connect: `X-DocuSign-Signature-1` … `-N`, HMAC-SHA256 base64 of the body, one
    /// header per active key.
    Docusign,
    /// Netlify deploy notifications: `X-Webhook-Signature`, a JWS (HS256) whose `sha256`
    /// claim is the body's digest.
    Netlify,
    /// Postmark: HTTP Basic authentication with the credentials of the webhook URL (the body
    /// is not authenticated).
    Postmark,
    /// HubSpot v3: `X-HubSpot-Signature-v3`, HMAC-SHA256 base64 of the HTTP method, the URI
    /// HubSpot called, the body and `X-HubSpot-Request-Timestamp` (Unix milliseconds).
    HubspotV3,
    /// Figma: the `passcode` field of the JSON body equals the webhook's passcode (the rest of
    /// the body is not authenticated). The verified event's body has the passcode redacted.
    Figma,
    /// Contentful request verification: `x-contentful-signature`, HMAC-SHA256 hex of the HTTP
    /// method, the request path, the headers listed in `x-contentful-signed-headers` and the
    /// body.
    Contentful,
    /// Box: `box-signature-primary` and `box-signature-secondary`, HMAC-SHA256 base64 of the
    /// body and `box-delivery-timestamp`, each with its own key.
    Box,
    /// Microsoft Graph change notifications: the `clientState` of every notification in the
    /// JSON body's `value` array equals the subscription's (the rest of the body is not
    /// authenticated); the verified event's body has each one redacted. The
    /// `POST ?validationToken=` handshake is answered.
    MicrosoftGraph,
    /// Braintree: form fields `bt_signature` (`public_key|hex`, HMAC-SHA1 keyed by the SHA-1
    /// of the private key) and `bt_payload`; the `GET ?bt_challenge=` handshake is answered.
    /// The key is written `public_key:private_key`.
    Braintree,
    /// Azure Event Grid: a shared token in the webhook URL's query (`code` or `access_token`)
    /// or in `Authorization: Bearer` (the body is not authenticated); the
    /// `SubscriptionValidationEvent` POST and the CloudEvents `OPTIONS` validation are
    /// answered once the token verifies.
    AzureEventGrid,
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
    pub const ALL: [SchemeId; 62] = [
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
        SchemeId::Asana,
        SchemeId::Calcom,
        SchemeId::CheckoutCom,
        SchemeId::CoinbaseCommerce,
        SchemeId::Dropbox,
        SchemeId::Gitea,
        SchemeId::Forgejo,
        SchemeId::LemonSqueezy,
        SchemeId::Onfido,
        SchemeId::Razorpay,
        SchemeId::Sentry,
        SchemeId::Segment,
        SchemeId::Vercel,
        SchemeId::Bitbucket,
        SchemeId::Notion,
        SchemeId::Typeform,
        SchemeId::Line,
        SchemeId::Woocommerce,
        SchemeId::Okta,
        SchemeId::Calendly,
        SchemeId::Mux,
        SchemeId::Clerk,
        SchemeId::Resend,
        SchemeId::Pagerduty,
        SchemeId::Telegram,
        SchemeId::Airtable,
        SchemeId::Zendesk,
        SchemeId::Webflow,
        SchemeId::Persona,
        SchemeId::Docusign,
        SchemeId::Netlify,
        SchemeId::Postmark,
        SchemeId::HubspotV3,
        SchemeId::Figma,
        SchemeId::Contentful,
        SchemeId::Box,
        SchemeId::MicrosoftGraph,
        SchemeId::Braintree,
        SchemeId::AzureEventGrid,
    ];

    /// The stable id, e.g. `standard-webhooks-v1`.
    pub fn as_str(self) -> &'static str {
        self.preset().name
    }

    /// A one-line description: headers, algorithm, key format.
    pub fn description(self) -> &'static str {
        self.preset().description
    }

    /// What the key looks like at the provider (where to find it, how it is written).
    pub fn key_hint(self) -> &'static str {
        self.preset().key_hint
    }

    /// The provider's timestamp window, or a conservative receiver policy where the provider
    /// documents none (Mailgun 15 min, SendGrid and Discord 10 min, Zoom 5 min).
    pub(crate) fn window(self) -> Window {
        match self.preset().window_secs {
            None => Window::None,
            Some(secs) => Window::Tolerance(Duration::from_secs(secs)),
        }
    }

    /// The header that carries the signature (or GitLab's token); `None` for the schemes
    /// whose signature travels in the body (Mailgun, Figma, Microsoft Graph, Braintree).
    pub fn signature_header(self) -> Option<&'static str> {
        self.preset().shape.signature_header()
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
        self.preset().shape.signs_url()
    }

    /// Whether the scheme signs the request's HTTP method (HubSpot v3): adapters pass it in
    /// the [`RequestContext`](crate::RequestContext), `POST` when not given.
    pub fn signs_method(self) -> bool {
        self.preset().shape.signs_method()
    }

    /// The URL handshake the provider performs before it delivers events, if it has one:
    /// see [`HandshakeKind`].
    pub fn handshake(self) -> Option<HandshakeKind> {
        self.preset().handshake
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
