//! Every preset as one declarative definition: what the verifier extracts and checks, what
//! the signer writes, how the key is read, what the event says about itself, and the
//! provider's URL handshake. The verifier (`extract.rs`, `verifier.rs`) and the signer
//! (`sign.rs`) read the same [`Preset`], so they cannot drift apart.
//!
//! A preset is built from a few shared [`Shape`]s; only providers that are truly odd
//! (Twilio, Mailgun, Twitch, Linear, Netlify) have a shape of their own. Adding a provider means a
//! [`SchemeId`] variant, its line in [`SchemeId::ALL`] and [`SchemeId::preset`], and its
//! definition here, plus its vectors and `docs/PROVIDERS.md`.

use crate::encoding::Encoding;
use crate::handshake::HandshakeKind;
use crate::reason::Reason;

use super::SchemeId;
use super::extract::{Family, KeyValue};
use super::generic::HmacAlgorithm;

/// One provider's scheme.
#[derive(Debug)]
pub(crate) struct Preset {
    /// The stable id (`stripe`).
    pub(crate) name: &'static str,
    /// One line for `hookgate schemes`: headers, algorithm, key format, window.
    pub(crate) description: &'static str,
    /// The timestamp tolerance in seconds (the provider's, or a conservative receiver
    /// policy where it documents none); `None` when nothing signed carries a time.
    pub(crate) window_secs: Option<u64>,
    /// Where the signature is and which bytes it covers.
    pub(crate) shape: Shape,
    /// How the secret (or public key) is written.
    pub(crate) key: KeyFormat,
    /// What a key looks like at the provider, for the CLI's hints.
    pub(crate) key_hint: &'static str,
    /// Event type, delivery id, dedup id and headers kept with the event.
    pub(crate) info: Info,
    /// The provider's URL handshake, if any.
    pub(crate) handshake: Option<HandshakeKind>,
}

/// Where a preset's signature is, which bytes it signs, and how the signer writes it.
#[derive(Debug)]
pub(crate) enum Shape {
    /// Standard Webhooks and its white-labels: `{id}.{timestamp}.{body}`, entries
    /// `version,base64` in the family's signature header.
    Standard {
        family: Family,
        version: &'static str,
        /// The answer when the header holds only entries of other versions (the Standard
        /// Webhooks libraries: no match; Clerk's and Resend's SDKs: no supported signature).
        other_versions_only: Reason,
    },
    /// Stripe-like `t=…,v1=…` in one header, over `{t}{joiner}{body}`.
    KeyValue(KeyValue),
    /// An HMAC of the body alone in one header, after a fixed prefix (`sha256=`, or none).
    BodyHmac {
        header: &'static str,
        prefix: &'static str,
        encoding: Encoding,
    },
    /// Shopify: base64 HMAC-SHA256 of the body in the HMAC header of the delivery's kind —
    /// [`SHOPIFY_EVENTS`] whenever its HMAC header is present and not empty, else
    /// [`SHOPIFY_WEBHOOKS`] — with every other header of that kind present, and a body that
    /// is not empty, as `@shopify/shopify-api`'s `webhooks.validate` requires. The signer
    /// writes a webhook delivery.
    Shopify,
    /// One HMAC of the body per active key, each in its own numbered header
    /// `{prefix}1` … `{prefix}{max}` (DocuSign Connect's `X-DocuSign-Signature-N`).
    NumberedBodyHmac {
        /// The first header, `{prefix}1`: where the signer writes and what is missing.
        first: &'static str,
        prefix: &'static str,
        max: usize,
        encoding: Encoding,
    },
    /// Comma-separated `{prefix}<signature>` entries of the body's HMAC, one per active
    /// secret (PagerDuty's `v1=…,v1=…`); entries of another version are skipped.
    PrefixedList {
        header: &'static str,
        prefix: &'static str,
        encoding: Encoding,
        /// Refuse an empty body (`missing_header` at `body`) once the header is found, before
        /// its entries are read: go-pagerduty's `VerifySignature` answers `ErrMalformedBody`
        /// there, and PagerDuty never sends one.
        non_empty_body: bool,
    },
    /// A bare signature in one header over `{timestamp}{separator}{body}`, the timestamp in
    /// its own header, signed as sent (Zendesk: RFC 3339, no separator, base64; Webflow: Unix
    /// milliseconds, `:`, hex).
    Timestamped {
        signature: &'static str,
        timestamp: &'static str,
        time: TimeFormat,
        separator: &'static str,
        encoding: Encoding,
    },
    /// Slack and Zoom: `v0=<hex>` over `v0:{timestamp}:{body}`, the time in its own header.
    /// `parsed_timestamp`: the SDK signs the parsed number (Zoom's Rivet: `Number(header)`),
    /// so `+` and leading zeros are that instant; otherwise the header is signed as sent
    /// (Slack's SDKs).
    Versioned {
        signature: &'static str,
        timestamp: &'static str,
        parsed_timestamp: bool,
    },
    /// An HMAC of the public URL followed by the body (Square).
    UrlAndBody {
        header: &'static str,
        encoding: Encoding,
    },
    /// A public-key signature over `{timestamp}{body}` (Discord, SendGrid).
    Asymmetric {
        signature: &'static str,
        timestamp: &'static str,
        encoding: Encoding,
    },
    /// A shared token compared as a whole (GitLab's classic token): the body is not signed.
    Token { header: &'static str },
    /// HTTP Basic authentication (RFC 7617): `Authorization: Basic base64(user:password)`,
    /// the `user:password` compared whole as a token (Postmark); the body is not signed.
    BasicAuth,
    /// Twitch EventSub: `{message id}{timestamp}{body}`, an RFC 3339 timestamp.
    Twitch,
    /// Linear: the body; the time is the body's `webhookTimestamp`.
    Linear,
    /// Twilio: the URL and the sorted form parameters, or the URL carrying `bodySHA256`.
    Twilio { body_sha256: bool },
    /// HubSpot v3: base64 HMAC-SHA256 of `{method}{URI}{body}{timestamp}`, the timestamp in
    /// Unix milliseconds in its own header, some `%`-escapes of the URI decoded first.
    HubspotV3,
    /// Contentful request verification: hex HMAC-SHA256 of the canonical request — method,
    /// normalised path, the headers named in `x-contentful-signed-headers`, body — with the
    /// timestamp (Unix milliseconds) among the signed headers.
    Contentful,
    /// Box: `box-signature-primary` / `-secondary`, each base64 HMAC-SHA256 of
    /// `{body}{box-delivery-timestamp}` with its own key (primary, secondary).
    Box,
    /// Mailgun: the signature fields travel in the body.
    Mailgun,
    /// A shared token in a top-level field of the JSON body (Figma's `passcode`), compared
    /// whole; the rest of the body is not authenticated. The verified event's body has the
    /// field's value replaced by [`REDACTED`], so the secret never reaches a sink.
    BodyToken { field: &'static str },
    /// Netlify: `X-Webhook-Signature` is a compact JWS, HS256 only, whose claims are
    /// `{"iss":"netlify","sha256":<hex SHA-256 of the body>}`.
    NetlifyJws,
    /// A shared token in `field` of **every** object of the JSON body's top-level `array`
    /// (Microsoft Graph's `value[].clientState`), compared whole; one missing or different
    /// token rejects the whole body. Each value is replaced by [`REDACTED`] in the verified
    /// event's body.
    BodyTokenEach {
        array: &'static str,
        field: &'static str,
    },
    /// Braintree: form fields `bt_signature` (`public_key|hex` pairs joined by `&`) and
    /// `bt_payload`; HMAC-SHA1 keyed by the SHA-1 of the private key, over the payload as
    /// received or with one `\n` appended (see `braintree.rs`).
    Braintree,
    /// A shared token in the request URL's query (`code` or `access_token`) or in
    /// `Authorization: Bearer` (Azure Event Grid, see `azure_event_grid.rs`), compared whole;
    /// the body is not authenticated. The signer writes it in the URL's `code` when it has a
    /// URL, else in the header.
    UrlToken,
}

impl Shape {
    /// The header that carries the signature (or token); `None` for Mailgun.
    pub(crate) fn signature_header(&self) -> Option<&'static str> {
        Some(match self {
            Shape::Standard { family, .. } => family.signature_name(),
            Shape::KeyValue(kv) => kv.header,
            Shape::BodyHmac { header, .. }
            | Shape::PrefixedList { header, .. }
            | Shape::NumberedBodyHmac { first: header, .. }
            | Shape::UrlAndBody { header, .. }
            | Shape::Token { header } => header,
            Shape::Versioned { signature, .. }
            | Shape::Timestamped { signature, .. }
            | Shape::Asymmetric { signature, .. } => signature,
            Shape::Shopify => SHOPIFY_WEBHOOKS.hmac,
            Shape::Twitch => "Twitch-Eventsub-Message-Signature",
            Shape::Linear => "Linear-Signature",
            Shape::Twilio { .. } => "X-Twilio-Signature",
            Shape::HubspotV3 => HUBSPOT_SIGNATURE,
            Shape::Contentful => CONTENTFUL_SIGNATURE,
            Shape::Box => "box-signature-primary",
            Shape::NetlifyJws => "X-Webhook-Signature",
            Shape::BasicAuth => "Authorization",
            Shape::UrlToken => super::azure_event_grid::AUTHORIZATION,
            Shape::Mailgun
            | Shape::BodyToken { .. }
            | Shape::BodyTokenEach { .. }
            | Shape::Braintree => return None,
        })
    }

    /// Whether the signed bytes include the HTTP method.
    pub(crate) fn signs_method(&self) -> bool {
        matches!(self, Shape::HubspotV3 | Shape::Contentful)
    }

    /// Whether the signed bytes include the request URL.
    pub(crate) fn signs_url(&self) -> bool {
        matches!(
            self,
            Shape::UrlAndBody { .. } | Shape::Twilio { .. } | Shape::HubspotV3 | Shape::Contentful
        )
    }
}

/// How a timestamp header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    /// Unix milliseconds, ASCII digits only.
    UnixMillis,
    /// RFC 3339 (`2023-11-14T22:13:20Z`, a fraction allowed).
    Rfc3339,
}

/// How a preset's key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFormat {
    /// A shared secret used as its UTF-8 bytes.
    Raw(HmacAlgorithm),
    /// `whsec_` followed by base64 key bytes (HMAC-SHA256).
    Whsec,
    /// Ed25519: `whpk_` + base64 public key to verify, `whsk_` to sign.
    Whpk,
    /// Ed25519: a hex public key to verify, a hex seed to sign.
    Ed25519Hex,
    /// ECDSA P-256: a base64 DER public key to verify, a PKCS#8 DER private key to sign.
    P256Der,
    /// A shared token compared whole (its SHA-256, in constant time).
    Token,
    /// Standard base64 of the HMAC-SHA256 key bytes (Airtable's `macSecretBase64`): a
    /// secret that does not decode is refused when the verifier is built.
    Base64Sha256,
    /// Braintree's API key pair written `public_key:private_key` (hookgate's format: Braintree
    /// shows the two keys separately); the HMAC-SHA1 key is the SHA-1 of the private key.
    BraintreePair,
}

/// Where a field of the event comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// The shape says (or nothing does).
    Shape,
    /// The first of these headers that is present. The signer writes the first one.
    Header(&'static [&'static str]),
    /// The first of these paths of the verified JSON body.
    Json(&'static [&'static [&'static str]]),
}

/// What the event says about itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Info {
    pub(crate) event_type: Source,
    pub(crate) delivery_id: Source,
    /// An id inside the signed JSON body to deduplicate on (else the shape's recipe: a
    /// signed id, or a digest of the signed content).
    pub(crate) dedup_json: Option<&'static [&'static [&'static str]]>,
    /// Headers kept with the event (unsigned: for information only).
    pub(crate) headers: &'static [&'static str],
}

impl Info {
    const NONE: Info = Info {
        event_type: Source::Shape,
        delivery_id: Source::Shape,
        dedup_json: None,
        headers: &[],
    };

    /// The event type in the body's `type`.
    const BODY_TYPE: Info = Info {
        event_type: Source::Json(TYPE),
        ..Info::NONE
    };

    /// Event type in `type`, the body's `id` as delivery and dedup id.
    const TYPE_AND_ID: Info = Info {
        event_type: Source::Json(TYPE),
        delivery_id: Source::Json(ID),
        dedup_json: Some(ID),
        headers: &[],
    };
}

const TYPE: &[&[&str]] = &[&["type"]];
const ID: &[&[&str]] = &[&["id"]];

impl SchemeId {
    /// The preset's definition: the one place that maps an id to it.
    pub(crate) fn preset(self) -> &'static Preset {
        match self {
            SchemeId::StandardWebhooksV1 => &STANDARD_WEBHOOKS_V1,
            SchemeId::StandardWebhooksV1a => &STANDARD_WEBHOOKS_V1A,
            SchemeId::Svix => &SVIX,
            SchemeId::Stripe => &STRIPE,
            SchemeId::Github => &GITHUB,
            SchemeId::GithubSha1 => &GITHUB_SHA1,
            SchemeId::Shopify => &SHOPIFY,
            SchemeId::Slack => &SLACK,
            SchemeId::Twilio => &TWILIO,
            SchemeId::TwilioBodySha256 => &TWILIO_BODY_SHA256,
            SchemeId::Paddle => &PADDLE,
            SchemeId::Square => &SQUARE,
            SchemeId::Mailgun => &MAILGUN,
            SchemeId::Sendgrid => &SENDGRID,
            SchemeId::Discord => &DISCORD,
            SchemeId::TwitchEventsub => &TWITCH_EVENTSUB,
            SchemeId::Zoom => &ZOOM,
            SchemeId::Linear => &LINEAR,
            SchemeId::Intercom => &INTERCOM,
            SchemeId::GitlabToken => &GITLAB_TOKEN,
            SchemeId::GitlabSigning => &GITLAB_SIGNING,
            SchemeId::Prefinery => &PREFINERY,
            SchemeId::Meta => &META,
            SchemeId::Asana => &ASANA,
            SchemeId::Calcom => &CALCOM,
            SchemeId::CheckoutCom => &CHECKOUT_COM,
            SchemeId::CoinbaseCommerce => &COINBASE_COMMERCE,
            SchemeId::Dropbox => &DROPBOX,
            SchemeId::Gitea => &GITEA,
            SchemeId::Forgejo => &FORGEJO,
            SchemeId::LemonSqueezy => &LEMON_SQUEEZY,
            SchemeId::Onfido => &ONFIDO,
            SchemeId::Razorpay => &RAZORPAY,
            SchemeId::Sentry => &SENTRY,
            SchemeId::Segment => &SEGMENT,
            SchemeId::Vercel => &VERCEL,
            SchemeId::Bitbucket => &BITBUCKET,
            SchemeId::Notion => &NOTION,
            SchemeId::Typeform => &TYPEFORM,
            SchemeId::Line => &LINE,
            SchemeId::Woocommerce => &WOOCOMMERCE,
            SchemeId::Okta => &OKTA,
            SchemeId::Calendly => &CALENDLY,
            SchemeId::Mux => &MUX,
            SchemeId::Clerk => &CLERK,
            SchemeId::Resend => &RESEND,
            SchemeId::Pagerduty => &PAGERDUTY,
            SchemeId::Telegram => &TELEGRAM,
            SchemeId::Airtable => &AIRTABLE,
            SchemeId::Zendesk => &ZENDESK,
            SchemeId::Webflow => &WEBFLOW,
            SchemeId::Persona => &PERSONA,
            SchemeId::Docusign => &DOCUSIGN,
            SchemeId::Netlify => &NETLIFY,
            SchemeId::Postmark => &POSTMARK,
            SchemeId::HubspotV3 => &HUBSPOT_V3,
            SchemeId::Figma => &FIGMA,
            SchemeId::Contentful => &CONTENTFUL,
            SchemeId::Box => &BOX,
            SchemeId::MicrosoftGraph => &MICROSOFT_GRAPH,
            SchemeId::Braintree => &BRAINTREE,
            SchemeId::AzureEventGrid => &AZURE_EVENT_GRID,
        }
    }
}

// --- Standard Webhooks and its family ---

const STANDARD_WEBHOOKS_V1: Preset = Preset {
    name: "standard-webhooks-v1",
    description: "Standard Webhooks v1: webhook-id/-timestamp/-signature, HMAC-SHA256 base64, whsec_ base64 secret, ±300 s",
    window_secs: Some(300),
    shape: Shape::Standard {
        family: Family::WEBHOOK,
        version: "v1",
        other_versions_only: Reason::SignatureMismatch,
    },
    key: KeyFormat::Whsec,
    key_hint: "the whsec_ secret is base64: its decoded bytes are the key (Stripe, by contrast, uses its whsec_ string as-is)",
    info: Info::BODY_TYPE,
    handshake: None,
};

const STANDARD_WEBHOOKS_V1A: Preset = Preset {
    name: "standard-webhooks-v1a",
    description: "Standard Webhooks v1a: as v1 with Ed25519 signatures, verified with whpk_ public keys (signed with whsk_)",
    shape: Shape::Standard {
        family: Family::WEBHOOK,
        version: "v1a",
        other_versions_only: Reason::SignatureMismatch,
    },
    key: KeyFormat::Whpk,
    key_hint: "verify with the whpk_ public key of the whsk_ key that signed",
    ..STANDARD_WEBHOOKS_V1
};

const SVIX: Preset = Preset {
    name: "svix",
    description: "Svix: Standard Webhooks v1 with svix-* (or webhook-*) headers, whsec_ base64 secret, ±300 s",
    shape: Shape::Standard {
        family: Family::SVIX,
        version: "v1",
        other_versions_only: Reason::SignatureMismatch,
    },
    ..STANDARD_WEBHOOKS_V1
};

const GITLAB_SIGNING: Preset = Preset {
    name: "gitlab-signing",
    description: "GitLab signing token: Standard Webhooks v1 headers, whsec_ base64 secret, ±300 s",
    info: Info {
        event_type: Source::Header(&["X-Gitlab-Event"]),
        headers: GITLAB_HEADERS,
        ..Info::NONE
    },
    ..STANDARD_WEBHOOKS_V1
};

const GITLAB_HEADERS: &[&str] = &[
    "X-Gitlab-Event",
    "X-Gitlab-Event-UUID",
    "X-Gitlab-Webhook-UUID",
    "X-Gitlab-Instance",
    "Idempotency-Key",
];

const GITLAB_TOKEN: Preset = Preset {
    name: "gitlab-token",
    description: "GitLab classic: X-Gitlab-Token equals the secret token (body NOT authenticated); no timestamp",
    window_secs: None,
    shape: Shape::Token {
        header: "X-Gitlab-Token",
    },
    key: KeyFormat::Token,
    key_hint: "the key is the webhook's secret token",
    info: Info {
        event_type: Source::Header(&["X-Gitlab-Event"]),
        delivery_id: Source::Header(&["Idempotency-Key", "X-Gitlab-Event-UUID"]),
        dedup_json: None,
        headers: GITLAB_HEADERS,
    },
    handshake: None,
};

// --- t=…,v1=… in one header ---

const STRIPE: Preset = Preset {
    name: "stripe",
    description: "Stripe: Stripe-Signature t=,v1= HMAC-SHA256 hex over t.body, whsec_ secret used as-is, 300 s",
    window_secs: Some(300),
    // Read as stripe-node and stripe-python both read it (`stripe_signature`): keys
    // untrimmed, the parsed timestamp signed; the presets built on this shape keep the base
    // reading.
    shape: Shape::KeyValue(KeyValue {
        stripe: true,
        ..KeyValue::STRIPE
    }),
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "Stripe's whsec_ secret is used as-is, prefix included, not base64-decoded; each endpoint, and test and live mode, has its own secret",
    info: Info::TYPE_AND_ID,
    handshake: None,
};

const PREFINERY: Preset = Preset {
    name: "prefinery",
    description: "Prefinery: X-Prefinery-Signature t=,v1= HMAC-SHA256 hex over t.body (Stripe's construction), 300 s",
    shape: Shape::KeyValue(KeyValue::PREFINERY),
    key_hint: "the project signing secret is used as-is",
    info: Info {
        event_type: Source::Json(&[&["event"]]),
        ..Info::NONE
    },
    ..STRIPE
};

const PADDLE: Preset = Preset {
    name: "paddle",
    description: "Paddle Billing: Paddle-Signature ts=;h1= HMAC-SHA256 hex of ts:body, secret used as-is, 5 s",
    window_secs: Some(5),
    shape: Shape::KeyValue(KeyValue::PADDLE),
    key_hint: "the notification destination's pdl_ntfset_ secret is used as-is",
    info: Info {
        event_type: Source::Json(&[&["event_type"]]),
        delivery_id: Source::Json(&[&["notification_id"], &["event_id"]]),
        dedup_json: Some(&[&["event_id"], &["notification_id"]]),
        headers: &[],
    },
    ..STRIPE
};

// --- an HMAC of the body ---

const GITHUB: Preset = Preset {
    name: "github",
    description: "GitHub: X-Hub-Signature-256 sha256=HMAC-SHA256 hex of the body; no timestamp",
    window_secs: None,
    shape: Shape::BodyHmac {
        header: "X-Hub-Signature-256",
        prefix: "sha256=",
        encoding: Encoding::Hex,
    },
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the webhook secret is used as-is (UTF-8)",
    info: Info {
        event_type: Source::Header(&["X-GitHub-Event"]),
        delivery_id: Source::Header(&["X-GitHub-Delivery"]),
        dedup_json: None,
        headers: &["X-GitHub-Event", "X-GitHub-Delivery", "X-GitHub-Hook-ID"],
    },
    handshake: None,
};

const GITHUB_SHA1: Preset = Preset {
    name: "github-sha1",
    description: "GitHub legacy: X-Hub-Signature sha1=HMAC-SHA1 hex of the body; no timestamp",
    shape: Shape::BodyHmac {
        header: "X-Hub-Signature",
        prefix: "sha1=",
        encoding: Encoding::Hex,
    },
    key: KeyFormat::Raw(HmacAlgorithm::Sha1),
    ..GITHUB
};

const INTERCOM: Preset = Preset {
    name: "intercom",
    description: "Intercom: X-Hub-Signature sha1=HMAC-SHA1 hex of the body; no timestamp",
    key_hint: "the key is the app's client secret",
    info: Info {
        event_type: Source::Json(&[&["topic"]]),
        delivery_id: Source::Json(ID),
        dedup_json: Some(ID),
        headers: &[],
    },
    ..GITHUB_SHA1
};

/// Meta signs like GitHub, with the app secret; its GET handshake carries a verify token.
/// Sources: developers.facebook.com/docs/graph-api/webhooks/getting-started (verification
/// requests, event notifications); fbsamples/graph-api-webhooks-samples.
const META: Preset = Preset {
    name: "meta",
    description: "Meta (WhatsApp, Messenger, Instagram): X-Hub-Signature-256 sha256=HMAC-SHA256 hex of the body with the app secret; GET hub.challenge answered with the verify token; no timestamp",
    key_hint: "the key is the App Secret from the app dashboard (Settings > Basic), used as-is; the verify token is a separate setting (--verify-token)",
    info: Info {
        event_type: Source::Json(&[&["object"]]),
        ..Info::NONE
    },
    handshake: Some(HandshakeKind::MetaSubscribe),
    ..GITHUB
};

/// The headers of one kind of Shopify delivery, as `@shopify/shopify-api` names them
/// (`WEBHOOK_HEADER_NAMES`).
#[derive(Debug)]
pub(crate) struct ShopifyKind {
    /// Where the signature is.
    pub(crate) hmac: &'static str,
    /// The headers `webhooks.validate` requires: `hmac` first, then the ones beside it (none
    /// of which is signed).
    pub(crate) headers: &'static [&'static str],
}

/// A classic webhook delivery.
pub(crate) const SHOPIFY_WEBHOOKS: ShopifyKind = ShopifyKind {
    hmac: "X-Shopify-Hmac-Sha256",
    headers: &[
        "X-Shopify-Hmac-Sha256",
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-API-Version",
        "X-Shopify-Webhook-Id",
    ],
};

/// An events delivery (`shopify-*` headers).
pub(crate) const SHOPIFY_EVENTS: ShopifyKind = ShopifyKind {
    hmac: "shopify-hmac-sha256",
    headers: &[
        "shopify-hmac-sha256",
        "shopify-topic",
        "shopify-shop-domain",
        "shopify-api-version",
        "shopify-webhook-id",
        "shopify-event-id",
    ],
};

/// Shopify/shopify-app-js `packages/apps/shopify-api/lib/webhooks/validate.ts`,
/// `lib/utils/hmac-validator.ts`. Facts and vectors: docs/PROVIDERS.md (shopify row).
const SHOPIFY: Preset = Preset {
    name: "shopify",
    description: "Shopify: X-Shopify-Hmac-Sha256 (events: shopify-hmac-sha256) HMAC-SHA256 base64 of the body, the topic, shop domain, API version and webhook id headers required; no timestamp",
    window_secs: None,
    shape: Shape::Shopify,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the app's client secret, used as-is",
    info: Info {
        event_type: Source::Header(&["X-Shopify-Topic", "shopify-topic"]),
        delivery_id: Source::Header(&[
            "X-Shopify-Event-Id",
            "X-Shopify-Webhook-Id",
            "shopify-event-id",
        ]),
        dedup_json: None,
        headers: &[
            "X-Shopify-Topic",
            "X-Shopify-Shop-Domain",
            "X-Shopify-API-Version",
            "X-Shopify-Webhook-Id",
            "X-Shopify-Event-Id",
            "X-Shopify-Triggered-At",
        ],
    },
    handshake: None,
};

// --- v0=… over v0:{timestamp}:{body} ---

const SLACK: Preset = Preset {
    name: "slack",
    description: "Slack: X-Slack-Signature v0=HMAC-SHA256 hex of v0:ts:body, X-Slack-Request-Timestamp, ±300 s",
    window_secs: Some(300),
    shape: Shape::Versioned {
        signature: "X-Slack-Signature",
        timestamp: "X-Slack-Request-Timestamp",
        parsed_timestamp: false,
    },
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the app's Signing Secret (not the deprecated verification token)",
    info: Info {
        event_type: Source::Json(&[&["event", "type"], &["type"]]),
        delivery_id: Source::Json(&[&["event_id"]]),
        dedup_json: Some(&[&["event_id"]]),
        headers: &["X-Slack-Retry-Num", "X-Slack-Retry-Reason"],
    },
    // api.slack.com/events/url_verification
    handshake: Some(HandshakeKind::SlackUrlVerification),
};

const ZOOM: Preset = Preset {
    name: "zoom",
    description: "Zoom: x-zm-signature v0=HMAC-SHA256 hex of v0:ts:body, x-zm-request-timestamp, ±300 s",
    shape: Shape::Versioned {
        signature: "x-zm-signature",
        timestamp: "x-zm-request-timestamp",
        // @zoom/rivet signs `Number(x-zm-request-timestamp)` (docs/PROVIDERS.md, zoom row).
        parsed_timestamp: true,
    },
    key_hint: "the key is the app's Secret Token",
    info: Info {
        event_type: Source::Json(&[&["event"]]),
        delivery_id: Source::Header(&["x-zm-trackingid"]),
        dedup_json: None,
        headers: &[],
    },
    // developers.zoom.us/docs/api/webhooks/ (validate your webhook endpoint)
    handshake: Some(HandshakeKind::ZoomUrlValidation),
    ..SLACK
};

// --- a signature over {timestamp}{separator}{body}, the time in its own header ---

const ZENDESK: Preset = Preset {
    name: "zendesk",
    description: "Zendesk: X-Zendesk-Webhook-Signature HMAC-SHA256 base64 of timestamp+body, X-Zendesk-Webhook-Signature-Timestamp RFC 3339, secret used as-is, ±300 s",
    // Zendesk documents no window: a conservative receiver policy.
    window_secs: Some(300),
    shape: Shape::Timestamped {
        signature: "X-Zendesk-Webhook-Signature",
        timestamp: "X-Zendesk-Webhook-Signature-Timestamp",
        time: TimeFormat::Rfc3339,
        separator: "",
        encoding: Encoding::Base64,
    },
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the webhook's signing secret string, used as-is (it looks like base64 but is not decoded)",
    info: Info {
        event_type: Source::Json(TYPE),
        delivery_id: Source::Header(&["X-Zendesk-Webhook-Invocation-Id"]),
        dedup_json: None,
        headers: &["X-Zendesk-Webhook-Id", "X-Zendesk-Webhook-Invocation-Id"],
    },
    handshake: None,
};

const WEBFLOW: Preset = Preset {
    name: "webflow",
    description: "Webflow: x-webflow-signature HMAC-SHA256 hex of timestamp:body, x-webflow-timestamp in Unix ms, client secret used as-is, ±300 s",
    // developers.webflow.com: reject requests older than 5 minutes (the SDK checks no time).
    window_secs: Some(300),
    shape: Shape::Timestamped {
        signature: "x-webflow-signature",
        timestamp: "x-webflow-timestamp",
        time: TimeFormat::UnixMillis,
        separator: ":",
        // The SDK compares lowercase hex strings.
        encoding: Encoding::Hex,
    },
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the OAuth application's client secret (or the webhook's secret for site tokens), used as-is",
    info: Info {
        event_type: Source::Json(&[&["triggerType"]]),
        ..Info::NONE
    },
    handshake: None,
};

// --- the URL and the body ---

const SQUARE: Preset = Preset {
    name: "square",
    description: "Square: x-square-hmacsha256-signature HMAC-SHA256 base64 of URL + body; needs the public URL",
    window_secs: None,
    shape: Shape::UrlAndBody {
        header: "x-square-hmacsha256-signature",
        encoding: Encoding::Base64,
    },
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the webhook subscription's signature key",
    info: Info {
        event_type: Source::Json(TYPE),
        delivery_id: Source::Json(&[&["event_id"]]),
        dedup_json: Some(&[&["event_id"]]),
        headers: &[],
    },
    handshake: None,
};

// --- the request line, the body and a timestamp ---

/// HubSpot's v3 signature header; its timestamp header is [`HUBSPOT_TIMESTAMP`].
pub(crate) const HUBSPOT_SIGNATURE: &str = "X-HubSpot-Signature-v3";
/// HubSpot's v3 timestamp header, Unix milliseconds.
pub(crate) const HUBSPOT_TIMESTAMP: &str = "X-HubSpot-Request-Timestamp";

/// developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
/// ("Validate the v3 request signature"); HubSpot/hubspot-api-python and hubspot-api-nodejs
/// `Signature` (v3). Facts and vectors: docs/PROVIDERS.md.
const HUBSPOT_V3: Preset = Preset {
    name: "hubspot-v3",
    description: "HubSpot v3: X-HubSpot-Signature-v3 HMAC-SHA256 base64 of method+URI+body+timestamp, X-HubSpot-Request-Timestamp in ms, client secret used as-is, ±300 s; needs the public URL",
    window_secs: Some(300),
    shape: Shape::HubspotV3,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the app's client secret (not a private app token), used as-is",
    // The body is a batch (a JSON array) of events, each with its own `eventId` and
    // `subscriptionType`: no one event type. The dedup key is a digest of the body with each
    // event's `attemptNumber` (the one field a retry changes) set aside (`extract.rs`).
    info: Info::NONE,
    handshake: None,
};

/// Contentful's signature header.
pub(crate) const CONTENTFUL_SIGNATURE: &str = "x-contentful-signature";
/// Contentful's timestamp header, Unix milliseconds, always among the signed headers.
pub(crate) const CONTENTFUL_TIMESTAMP: &str = "x-contentful-timestamp";
/// The comma-separated names of the headers Contentful signed, itself always among them.
pub(crate) const CONTENTFUL_SIGNED_HEADERS: &str = "x-contentful-signed-headers";

/// contentful.com/developers/docs/extensibility/webhooks/request-verification;
/// contentful/node-apps-toolkit `src/requests/sign-request.ts`, `verify-request.ts`,
/// `utils.ts`. Facts and vectors: docs/PROVIDERS.md.
const CONTENTFUL: Preset = Preset {
    name: "contentful",
    description: "Contentful: x-contentful-signature HMAC-SHA256 hex of method, path, the x-contentful-signed-headers and body; x-contentful-timestamp in ms, ±30 s; needs the public URL",
    // node-apps-toolkit verifyRequest's default time to live.
    window_secs: Some(30),
    shape: Shape::Contentful,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the webhook's 64-character signing secret, used as-is",
    info: Info {
        event_type: Source::Header(&["X-Contentful-Topic"]),
        headers: &["X-Contentful-Topic", "X-Contentful-Webhook-Name"],
        ..Info::NONE
    },
    handshake: None,
};

/// box/box-python-sdk `WebhooksManager.validate_message`, `compute_webhook_signature`,
/// `escape_unicode` and its tests; developer.box.com/guides/webhooks/v2/signatures-v2.
/// Facts and vectors: docs/PROVIDERS.md.
const BOX: Preset = Preset {
    name: "box",
    description: "Box: box-signature-primary/-secondary HMAC-SHA256 base64 of body+box-delivery-timestamp, one per key (primary key first, secondary second), RFC 3339 timestamp, 600 s old at most and never ahead",
    window_secs: Some(600),
    shape: Shape::Box,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the keys are the app's primary and secondary signature keys, in that order (each header is checked with its own key), used as-is",
    info: Info {
        event_type: Source::Json(&[&["trigger"]]),
        delivery_id: Source::Header(&["box-delivery-id"]),
        dedup_json: None,
        headers: &["box-delivery-id"],
    },
    handshake: None,
};

// --- public-key signatures over {timestamp}{body} ---

const DISCORD: Preset = Preset {
    name: "discord",
    description: "Discord: X-Signature-Ed25519 hex over X-Signature-Timestamp+body, hex public key, 600 s",
    window_secs: Some(600),
    shape: Shape::Asymmetric {
        signature: "X-Signature-Ed25519",
        timestamp: "X-Signature-Timestamp",
        encoding: Encoding::HexAnyCase,
    },
    key: KeyFormat::Ed25519Hex,
    key_hint: "the key is the application's hex Ed25519 public key",
    info: Info::TYPE_AND_ID,
    // discord.com/developers/docs/interactions/receiving-and-responding (PING → PONG)
    handshake: Some(HandshakeKind::DiscordPing),
};

const SENDGRID: Preset = Preset {
    name: "sendgrid",
    description: "SendGrid Event Webhook: ECDSA P-256 base64 DER over timestamp+body, base64 DER public key, 600 s",
    shape: Shape::Asymmetric {
        signature: "X-Twilio-Email-Event-Webhook-Signature",
        timestamp: "X-Twilio-Email-Event-Webhook-Timestamp",
        encoding: Encoding::Base64,
    },
    key: KeyFormat::P256Der,
    key_hint: "the key is the base64 DER verification key from Mail Settings",
    info: Info::NONE,
    handshake: None,
    ..DISCORD
};

// --- the odd ones ---

const TWITCH_EVENTSUB: Preset = Preset {
    name: "twitch-eventsub",
    description: "Twitch EventSub: sha256=HMAC-SHA256 hex of message-id+timestamp+body, RFC 3339 timestamp, 600 s",
    window_secs: Some(600),
    shape: Shape::Twitch,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the secret given when subscribing",
    info: Info {
        event_type: Source::Header(&["Twitch-Eventsub-Subscription-Type"]),
        delivery_id: Source::Shape,
        dedup_json: None,
        headers: &[
            "Twitch-Eventsub-Message-Type",
            "Twitch-Eventsub-Subscription-Type",
            "Twitch-Eventsub-Subscription-Version",
        ],
    },
    // dev.twitch.tv/docs/eventsub/handling-webhook-events (responding to a challenge)
    handshake: Some(HandshakeKind::TwitchCallbackVerification),
};

const LINEAR: Preset = Preset {
    name: "linear",
    description: "Linear: Linear-Signature HMAC-SHA256 hex of the body, webhookTimestamp (ms) in the body, ±60 s",
    window_secs: Some(60),
    shape: Shape::Linear,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the webhook's signing secret",
    info: Info {
        event_type: Source::Header(&["Linear-Event"]),
        delivery_id: Source::Header(&["Linear-Delivery"]),
        dedup_json: None,
        headers: &[],
    },
    handshake: None,
};

const TWILIO: Preset = Preset {
    name: "twilio",
    description: "Twilio: X-Twilio-Signature HMAC-SHA1 base64 of URL + sorted form params; needs the public URL",
    window_secs: None,
    shape: Shape::Twilio { body_sha256: false },
    key: KeyFormat::Raw(HmacAlgorithm::Sha1),
    key_hint: "the key is the Auth Token of the account that sent the request",
    info: Info {
        delivery_id: Source::Header(&["I-Twilio-Idempotency-Token"]),
        ..Info::NONE
    },
    handshake: None,
};

const TWILIO_BODY_SHA256: Preset = Preset {
    name: "twilio-body-sha256",
    description: "Twilio JSON: X-Twilio-Signature over the URL with bodySHA256=hex(SHA-256(body)); needs the public URL",
    shape: Shape::Twilio { body_sha256: true },
    ..TWILIO
};

/// Mailgun signs a timestamp and a token, not the event: the window is a receiver policy.
const NETLIFY: Preset = Preset {
    name: "netlify",
    description: "Netlify deploy notifications: X-Webhook-Signature JWS HS256 (iss netlify, sha256 = hex SHA-256 of the body), secret token used as-is; no timestamp",
    window_secs: None,
    shape: Shape::NetlifyJws,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the notification's JWS secret token",
    // The deploy id repeats across a deploy's notifications (building, ready, failed): the
    // dedup key stays a digest of the (authenticated) body.
    info: Info {
        event_type: Source::Json(&[&["state"]]),
        ..Info::NONE
    },
    handshake: None,
};

const MAILGUN: Preset = Preset {
    name: "mailgun",
    description: "Mailgun: body signature.{timestamp,token,signature}, HMAC-SHA256 hex of timestamp+token (body not signed), 900 s",
    window_secs: Some(900),
    shape: Shape::Mailgun,
    key: KeyFormat::Raw(HmacAlgorithm::Sha256),
    key_hint: "the key is the HTTP webhook signing key (not the API key)",
    info: Info {
        event_type: Source::Json(&[&["event-data", "event"]]),
        delivery_id: Source::Json(&[&["event-data", "id"]]),
        dedup_json: None,
        headers: &[],
    },
    handshake: None,
};

// --- added from the facts in docs/PROVIDERS.md (sources there) and the vectors in
// tests/vectors/ ---

/// An HMAC-SHA256 of the body, lowercase hex, in one header, with the secret as-is.
const fn body_hex(
    name: &'static str,
    description: &'static str,
    header: &'static str,
    key_hint: &'static str,
) -> Preset {
    Preset {
        name,
        description,
        window_secs: None,
        shape: Shape::BodyHmac {
            header,
            prefix: "",
            encoding: Encoding::Hex,
        },
        key: KeyFormat::Raw(HmacAlgorithm::Sha256),
        key_hint,
        info: Info::NONE,
        handshake: None,
    }
}

const ASANA: Preset = Preset {
    handshake: Some(HandshakeKind::AsanaHookSecret),
    ..body_hex(
        "asana",
        "Asana: X-Hook-Signature HMAC-SHA256 hex of the body with the X-Hook-Secret of the handshake; no timestamp",
        "X-Hook-Signature",
        "the key is the X-Hook-Secret Asana sent when the webhook was created",
    )
};

const PAGERDUTY: Preset = Preset {
    shape: Shape::PrefixedList {
        header: "X-PagerDuty-Signature",
        prefix: "v1=",
        encoding: Encoding::HexAnyCase,
        non_empty_body: true,
    },
    info: Info {
        event_type: Source::Json(&[&["event", "event_type"]]),
        delivery_id: Source::Json(&[&["event", "id"]]),
        dedup_json: Some(&[&["event", "id"]]),
        headers: &["X-Webhook-Id", "X-Webhook-Subscription"],
    },
    ..body_hex(
        "pagerduty",
        "PagerDuty v3: X-PagerDuty-Signature v1=HMAC-SHA256 hex of the body, comma-separated per active secret; no timestamp",
        "X-PagerDuty-Signature",
        "the key is the webhook subscription's secret, used as-is",
    )
};

const DOCUSIGN: Preset = Preset {
    shape: Shape::NumberedBodyHmac {
        first: "X-DocuSign-Signature-1",
        prefix: "X-DocuSign-Signature-",
        // DocuSign Connect allows up to 100 active HMAC keys, one header each.
        max: 100,
        encoding: Encoding::Base64,
    },
    info: Info {
        event_type: Source::Json(&[&["event"]]),
        headers: &["X-DocuSign-AccountId"],
        ..Info::NONE
    },
    ..body_hex(
        "docusign",
        "DocuSign Connect: X-DocuSign-Signature-1..N HMAC-SHA256 base64 of the body, one header per active key; no timestamp",
        "X-DocuSign-Signature-1",
        "the key is one of the account's Connect HMAC secret keys, used as-is",
    )
};

const CALCOM: Preset = body_hex(
    "calcom",
    "Cal.com: X-Cal-Signature-256 HMAC-SHA256 hex of the body; no timestamp",
    "X-Cal-Signature-256",
    "the key is the webhook's secret",
);

const CHECKOUT_COM: Preset = body_hex(
    "checkout-com",
    "Checkout.com: Cko-Signature HMAC-SHA256 hex of the body; no timestamp",
    "Cko-Signature",
    "the key is the webhook's signature key (secret), used as-is",
);

const COINBASE_COMMERCE: Preset = body_hex(
    "coinbase-commerce",
    "Coinbase Commerce: X-CC-Webhook-Signature HMAC-SHA256 hex of the body; no timestamp",
    "X-CC-Webhook-Signature",
    "the key is the shared secret from the webhook settings",
);

/// www.dropbox.com/developers/reference/webhooks: the signature and the GET challenge.
const DROPBOX: Preset = Preset {
    handshake: Some(HandshakeKind::DropboxChallenge),
    ..body_hex(
        "dropbox",
        "Dropbox: X-Dropbox-Signature HMAC-SHA256 hex of the body with the app secret; GET ?challenge= echoed; no timestamp",
        "X-Dropbox-Signature",
        "the key is the app secret",
    )
};

const GITEA: Preset = Preset {
    info: Info {
        event_type: Source::Header(&["X-Gitea-Event"]),
        delivery_id: Source::Header(&["X-Gitea-Delivery"]),
        dedup_json: None,
        headers: &["X-Gitea-Event", "X-Gitea-Delivery"],
    },
    ..body_hex(
        "gitea",
        "Gitea: X-Gitea-Signature HMAC-SHA256 hex of the body; no timestamp",
        "X-Gitea-Signature",
        "the key is the webhook's secret, used as-is",
    )
};

const FORGEJO: Preset = Preset {
    info: Info {
        event_type: Source::Header(&["X-Forgejo-Event"]),
        delivery_id: Source::Header(&["X-Forgejo-Delivery"]),
        dedup_json: None,
        headers: &["X-Forgejo-Event", "X-Forgejo-Delivery"],
    },
    ..body_hex(
        "forgejo",
        "Forgejo: X-Forgejo-Signature HMAC-SHA256 hex of the body; no timestamp",
        "X-Forgejo-Signature",
        "the key is the webhook's secret, used as-is",
    )
};

const LEMON_SQUEEZY: Preset = Preset {
    info: Info {
        event_type: Source::Header(&["X-Event-Name"]),
        ..Info::NONE
    },
    ..body_hex(
        "lemon-squeezy",
        "Lemon Squeezy: X-Signature HMAC-SHA256 hex of the body; no timestamp",
        "X-Signature",
        "the key is the webhook's signing secret",
    )
};

const ONFIDO: Preset = body_hex(
    "onfido",
    "Onfido: X-SHA2-Signature HMAC-SHA256 hex of the body with the webhook token; no timestamp",
    "X-SHA2-Signature",
    "the key is the webhook's token",
);

const RAZORPAY: Preset = Preset {
    info: Info {
        event_type: Source::Json(&[&["event"]]),
        delivery_id: Source::Header(&["x-razorpay-event-id"]),
        dedup_json: None,
        headers: &["x-razorpay-event-id"],
    },
    ..body_hex(
        "razorpay",
        "Razorpay: X-Razorpay-Signature HMAC-SHA256 hex of the body with the webhook secret; no timestamp",
        "X-Razorpay-Signature",
        "the key is the webhook secret set in the dashboard (not the API key secret)",
    )
};

const SENTRY: Preset = Preset {
    info: Info {
        event_type: Source::Header(&["Sentry-Hook-Resource"]),
        delivery_id: Source::Header(&["Request-ID"]),
        dedup_json: None,
        headers: &["Sentry-Hook-Resource", "Request-ID"],
    },
    ..body_hex(
        "sentry",
        "Sentry integration platform: Sentry-Hook-Signature HMAC-SHA256 hex of the body with the client secret; no timestamp",
        "Sentry-Hook-Signature",
        "the key is the integration's client secret",
    )
};

const SEGMENT: Preset = Preset {
    key: KeyFormat::Raw(HmacAlgorithm::Sha1),
    info: Info::BODY_TYPE,
    ..body_hex(
        "segment",
        "Segment: X-Signature HMAC-SHA1 hex of the body with the shared secret; no timestamp",
        "X-Signature",
        "the key is the destination's shared secret",
    )
};

const VERCEL: Preset = Preset {
    key: KeyFormat::Raw(HmacAlgorithm::Sha1),
    info: Info::BODY_TYPE,
    ..body_hex(
        "vercel",
        "Vercel: x-vercel-signature HMAC-SHA1 hex of the body; no timestamp",
        "x-vercel-signature",
        "the key is the webhook's secret (or the integration's client secret)",
    )
};

/// An HMAC-SHA256 of the body after a prefix, or in base64.
const fn body_prefixed(
    name: &'static str,
    description: &'static str,
    header: &'static str,
    prefix: &'static str,
    encoding: Encoding,
    key_hint: &'static str,
) -> Preset {
    Preset {
        shape: Shape::BodyHmac {
            header,
            prefix,
            encoding,
        },
        ..body_hex(name, description, header, key_hint)
    }
}

const BITBUCKET: Preset = Preset {
    info: Info {
        event_type: Source::Header(&["X-Event-Key"]),
        delivery_id: Source::Header(&["X-Request-UUID"]),
        dedup_json: None,
        headers: &["X-Event-Key", "X-Request-UUID", "X-Hook-UUID"],
    },
    ..body_prefixed(
        "bitbucket",
        "Bitbucket Cloud: X-Hub-Signature sha256=HMAC-SHA256 hex of the body; no timestamp",
        "X-Hub-Signature",
        "sha256=",
        Encoding::Hex,
        "the key is the webhook's secret, used as-is",
    )
};

const NOTION: Preset = Preset {
    info: Info {
        event_type: Source::Json(TYPE),
        delivery_id: Source::Json(ID),
        dedup_json: Some(ID),
        headers: &[],
    },
    ..body_prefixed(
        "notion",
        "Notion: X-Notion-Signature sha256=HMAC-SHA256 hex of the body with the verification token; no timestamp",
        "X-Notion-Signature",
        "sha256=",
        Encoding::Hex,
        "the key is the verification_token Notion sent when the subscription was created",
    )
};

const TYPEFORM: Preset = body_prefixed(
    "typeform",
    "Typeform: Typeform-Signature sha256=HMAC-SHA256 base64 of the body; no timestamp",
    "Typeform-Signature",
    "sha256=",
    Encoding::Base64,
    "the key is the webhook's secret, used as-is",
);

const LINE: Preset = body_prefixed(
    "line",
    "LINE Messaging API: x-line-signature HMAC-SHA256 base64 of the body with the channel secret; no timestamp",
    "x-line-signature",
    "",
    Encoding::Base64,
    "the key is the channel secret",
);

const WOOCOMMERCE: Preset = Preset {
    handshake: Some(HandshakeKind::WooCommercePing),
    info: Info {
        event_type: Source::Header(&["X-WC-Webhook-Topic"]),
        delivery_id: Source::Header(&["X-WC-Webhook-Delivery-ID"]),
        dedup_json: None,
        headers: &[
            "X-WC-Webhook-Topic",
            "X-WC-Webhook-Source",
            "X-WC-Webhook-ID",
            "X-WC-Webhook-Delivery-ID",
        ],
    },
    ..body_prefixed(
        "woocommerce",
        "WooCommerce: X-WC-Webhook-Signature HMAC-SHA256 base64 of the body; no timestamp",
        "X-WC-Webhook-Signature",
        "",
        Encoding::Base64,
        "the key is the webhook's secret, used as-is",
    )
};

/// A shared token in a header: the body is not authenticated.
const fn token(
    name: &'static str,
    description: &'static str,
    header: &'static str,
    key_hint: &'static str,
) -> Preset {
    Preset {
        shape: Shape::Token { header },
        key: KeyFormat::Token,
        ..body_hex(name, description, header, key_hint)
    }
}

const OKTA: Preset = Preset {
    handshake: Some(HandshakeKind::OktaVerification),
    info: Info {
        delivery_id: Source::Header(&["X-Okta-Request-Id"]),
        ..Info::NONE
    },
    ..token(
        "okta",
        "Okta event hooks: the Authorization header equals the configured secret (body NOT authenticated); no timestamp",
        "Authorization",
        "the key is the value of the authorization header configured on the event hook",
    )
};

const POSTMARK: Preset = Preset {
    shape: Shape::BasicAuth,
    info: Info {
        event_type: Source::Json(&[&["RecordType"]]),
        ..Info::NONE
    },
    ..token(
        "postmark",
        "Postmark: HTTP Basic auth, Authorization: Basic base64(user:password) equals the credentials put in the webhook URL (body NOT authenticated); no timestamp",
        "Authorization",
        "the key is user:password exactly as written in the webhook URL (https://user:password@host/path)",
    )
};

/// developers.figma.com/docs/rest-api/webhooks-security: the webhook's passcode is echoed in
/// every event body (the `PING` sent at creation too). Stored bodies have it redacted.
const FIGMA: Preset = Preset {
    name: "figma",
    description: "Figma: the JSON body's passcode equals the webhook's passcode (the rest of the body NOT authenticated; the stored body has the passcode redacted); no timestamp",
    window_secs: None,
    shape: Shape::BodyToken { field: "passcode" },
    key: KeyFormat::Token,
    key_hint: "the key is the passcode given when the webhook was created",
    info: Info {
        event_type: Source::Json(&[&["event_type"]]),
        ..Info::NONE
    },
    handshake: None,
};

/// learn.microsoft.com/graph/change-notifications-delivery-webhooks: the `clientState` set on
/// the subscription is in every change notification of the body's `value` array; the
/// `POST ?validationToken=` validation request (creation and renewal) is echoed. Stored
/// bodies have every `clientState` redacted. Facts and vectors: docs/PROVIDERS.md.
const MICROSOFT_GRAPH: Preset = Preset {
    name: "microsoft-graph",
    description: "Microsoft Graph change notifications: every value[].clientState of the JSON body equals the subscription's clientState (the rest of the body NOT authenticated; stored bodies have it redacted); POST ?validationToken= echoed; no timestamp",
    window_secs: None,
    shape: Shape::BodyTokenEach {
        array: "value",
        field: "clientState",
    },
    key: KeyFormat::Token,
    key_hint: "the key is the clientState given when the subscription was created (subscriptions sharing the URL must share it: one batch may carry several)",
    // A batch of notifications, each with its own `changeType` and `subscriptionId`: no one
    // event type, and the dedup key is a digest of the (redacted) body.
    info: Info::NONE,
    handshake: Some(HandshakeKind::GraphValidationToken),
};

/// braintree/braintree_python `webhook_notification_gateway.py` (`parse`, `verify`) and
/// `tests/unit/test_webhooks.py`; braintree/braintree_node `webhook_notification_gateway.js`
/// and its spec. Facts and vectors: docs/PROVIDERS.md.
const BRAINTREE: Preset = Preset {
    name: "braintree",
    description: "Braintree: form fields bt_signature (public_key|HMAC-SHA1 hex, key = SHA-1 of the private key) over bt_payload as sent or with one newline added; GET ?bt_challenge= answered; key written public_key:private_key; no timestamp checked",
    window_secs: None,
    shape: Shape::Braintree,
    key: KeyFormat::BraintreePair,
    key_hint: "write the API key pair as public_key:private_key (hookgate's format, not Braintree's: the public and private key of the same API key, Settings > API)",
    info: Info::NONE,
    handshake: Some(HandshakeKind::BraintreeChallenge),
};

/// learn.microsoft.com/azure/event-grid: `security-authentication` (a client secret as a
/// query parameter of the webhook URL), `delivery-properties` (a static `Authorization`
/// header), `end-point-validation-event-grid-events-schema` (the `SubscriptionValidationEvent`
/// POST) and `end-point-validation-cloud-events-schema` (the CloudEvents `OPTIONS`). Event
/// Grid signs nothing: the token authenticates the sender, not the body. Facts and vectors:
/// docs/PROVIDERS.md.
const AZURE_EVENT_GRID: Preset = Preset {
    name: "azure-event-grid",
    description: "Azure Event Grid: a shared token in the webhook URL's query (code= or access_token=) or in Authorization: Bearer (body NOT authenticated); SubscriptionValidationEvent POST and CloudEvents OPTIONS validation answered once the token verifies; no timestamp",
    window_secs: None,
    shape: Shape::UrlToken,
    key: KeyFormat::Token,
    key_hint: "the key is the token you put in the webhook URL registered in Azure (https://host/path?code=TOKEN) or in a static Authorization: Bearer TOKEN delivery property; use URL-safe characters",
    // The Event Grid schema posts a JSON array of events (no one type or id at the top); a
    // CloudEvents 1.0 delivery is one event with `type` and `id`. The dedup key is the body's
    // digest (the `id` is not covered by anything the token proves), as for every token
    // preset. `aeg-event-type` tells a validation from a notification.
    info: Info {
        event_type: Source::Json(TYPE),
        delivery_id: Source::Json(ID),
        dedup_json: None,
        headers: &[
            "aeg-event-type",
            "aeg-subscription-name",
            "aeg-delivery-count",
        ],
    },
    handshake: Some(HandshakeKind::EventGridSubscriptionValidation),
};

/// What replaces a body-carried secret (Figma's `passcode`) in the verified event's body: a
/// JSON string, so the body stays the same JSON with one value changed.
pub(crate) const REDACTED: &str = "\"[redacted]\"";

const TELEGRAM: Preset = token(
    "telegram",
    "Telegram Bot API: X-Telegram-Bot-Api-Secret-Token equals the configured secret_token (body NOT authenticated); no timestamp",
    "X-Telegram-Bot-Api-Secret-Token",
    "the key is the secret_token given to setWebhook (1-256 of A-Z a-z 0-9 _ -)",
);

const AIRTABLE: Preset = Preset {
    key: KeyFormat::Base64Sha256,
    ..body_prefixed(
        "airtable",
        "Airtable: X-Airtable-Content-MAC hmac-sha256=HMAC-SHA256 hex of the body, key = base64-decoded macSecretBase64; no timestamp",
        "X-Airtable-Content-MAC",
        "hmac-sha256=",
        Encoding::Hex,
        "the key is the webhook's macSecretBase64 exactly as the create-webhook response returns it (it is base64-decoded)",
    )
};

const CALENDLY: Preset = Preset {
    name: "calendly",
    description: "Calendly: Calendly-Webhook-Signature t=,v1= HMAC-SHA256 hex over t.body, signing key used as-is, 180 s",
    window_secs: Some(180),
    shape: Shape::KeyValue(KeyValue {
        header: "Calendly-Webhook-Signature",
        ..KeyValue::STRIPE
    }),
    key_hint: "the key is the webhook subscription's signing key",
    info: Info::NONE,
    ..STRIPE
};

const PERSONA: Preset = Preset {
    name: "persona",
    description: "Persona: Persona-Signature t=,v1= HMAC-SHA256 hex over t.body (one group per secret while rotating, space-separated), wbhsec_ secret used as-is, ±300 s",
    // Persona documents no window: a conservative receiver policy, as for Stripe.
    window_secs: Some(300),
    shape: Shape::KeyValue(KeyValue {
        header: "Persona-Signature",
        whitespace_groups: true,
        ..KeyValue::STRIPE
    }),
    key_hint: "the key is the webhook's wbhsec_ secret, used as-is (prefix included)",
    info: Info {
        event_type: Source::Json(&[&["data", "attributes", "name"]]),
        delivery_id: Source::Json(&[&["data", "id"]]),
        dedup_json: Some(&[&["data", "id"]]),
        headers: &[],
    },
    ..STRIPE
};

const MUX: Preset = Preset {
    name: "mux",
    description: "Mux: Mux-Signature t=,v1= HMAC-SHA256 hex over t.body, signing secret used as-is, 300 s",
    // @mux/mux-node's `parseHeader` reads the header as Paddle's SDKs do (parts untrimmed, the
    // last `t` wins, the parsed timestamp signed): `mux-sdk-008`…`-015`.
    shape: Shape::KeyValue(KeyValue {
        header: "Mux-Signature",
        paddle: true,
        ..KeyValue::STRIPE
    }),
    key_hint: "the key is the webhook's signing secret",
    info: Info::BODY_TYPE,
    ..STRIPE
};

/// Clerk sends Svix webhooks: an alias of `svix`.
const CLERK: Preset = Preset {
    name: "clerk",
    description: "Clerk: alias of svix (svix-* headers only, as @clerk/backend reads them; whsec_ base64 secret, ±300 s)",
    shape: Shape::Standard {
        family: Family::SVIX_ONLY,
        version: "v1",
        other_versions_only: Reason::NoSupportedSignature,
    },
    key_hint: "the whsec_ signing secret of the Clerk endpoint (a Svix secret)",
    ..SVIX
};

/// Resend sends Svix webhooks: an alias of `svix`.
const RESEND: Preset = Preset {
    name: "resend",
    description: "Resend: alias of svix (svix-* headers, whsec_ base64 secret, ±300 s)",
    shape: Shape::Standard {
        family: Family::SVIX,
        version: "v1",
        other_versions_only: Reason::NoSupportedSignature,
    },
    key_hint: "the whsec_ signing secret of the Resend webhook (a Svix secret)",
    ..SVIX
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_defined_once_under_its_own_name() {
        let mut names: Vec<&str> = SchemeId::ALL.iter().map(|id| id.preset().name).collect();
        for id in SchemeId::ALL {
            let preset = id.preset();
            assert!(!preset.description.is_empty(), "{}", preset.name);
            assert!(!preset.key_hint.is_empty(), "{}", preset.name);
            assert!(preset.window_secs != Some(0), "{}", preset.name);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SchemeId::ALL.len());
    }
}
