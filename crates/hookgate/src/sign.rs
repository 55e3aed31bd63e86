//! The sender's side: produce the headers a provider would add, for tests, the `hookgate
//! send` command and in-house senders.
//!
//! The signed bytes come from the same extraction code the verifier uses, so a signature
//! made here verifies exactly when the layouts agree.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use p256::pkcs8::DecodePrivateKey;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::encoding::{BASE64, BASE64_URL, Encoding, decode_base64_secret, hex};
use crate::error::ConfigError;
use crate::request::RequestContext;
use crate::scheme::extract::{self, Family};
use crate::scheme::generic::GenericHmac;
use crate::scheme::preset::{KeyFormat, Shape, Source, TimeFormat};
use crate::scheme::{HmacAlgorithm, Scheme};
use crate::secret::KeyBytes;
use base64::Engine as _;

/// What to sign: the body and, where the scheme uses them, an id, a timestamp and a URL.
#[derive(Debug, Clone)]
#[must_use]
pub struct SignRequest {
    body: Bytes,
    id: Option<String>,
    timestamp: Option<i64>,
    url: Option<String>,
    method: Option<String>,
    event_type: Option<String>,
}

impl SignRequest {
    /// A request to sign `body`.
    pub fn new(body: impl Into<Bytes>) -> Self {
        SignRequest {
            body: body.into(),
            id: None,
            timestamp: None,
            url: None,
            method: None,
            event_type: None,
        }
    }

    /// The delivery id (default: derived from the body and timestamp).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The timestamp in Unix seconds (default: now).
    pub fn timestamp(mut self, unix_seconds: i64) -> Self {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// The URL the delivery goes to (required by Twilio, Square and HubSpot v3).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The HTTP method the delivery is sent with (default `POST`; HubSpot v3 signs it).
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// The event type, sent in the scheme's event header where it has one.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }
}

/// A signed delivery: the headers to send, the body (Mailgun carries its signature in the
/// body) and the URL to call (Twilio's JSON scheme adds `bodySHA256` to it).
#[derive(Debug, Clone)]
pub struct SignedDelivery {
    /// Headers as `(name, value)`, signature included.
    pub headers: Vec<(String, String)>,
    /// The body to send.
    pub body: Bytes,
    /// The URL to send to, where the scheme signs one.
    pub url: Option<String>,
}

/// Signs deliveries for a scheme with one key.
pub struct Signer {
    scheme: Scheme,
    key: SigningKey,
}

enum SigningKey {
    Hmac(KeyBytes, HmacAlgorithm),
    Ed25519(Box<ed25519_dalek::SigningKey>),
    P256(Box<p256::ecdsa::SigningKey>),
    Token(KeyBytes),
    Braintree(Box<crate::scheme::braintree::KeyPair>),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme.name())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `scheme` with `secret`: the shared secret for HMAC schemes, `whsk_…`
    /// (or a hex seed for Discord) for Ed25519, a base64 PKCS#8 DER private key for SendGrid.
    ///
    /// # Errors
    /// [`ConfigError::InvalidKey`] for an undecodable secret, [`ConfigError::CannotSign`]
    /// when given a public key.
    pub fn new(scheme: impl Into<Scheme>, secret: &str) -> Result<Signer, ConfigError> {
        let scheme = scheme.into();
        let invalid = |problem| ConfigError::InvalidKey {
            index: 0,
            scheme: scheme.name().to_owned(),
            problem,
        };
        let format = match &scheme {
            Scheme::Preset(id) => Some(id.preset().key),
            Scheme::Generic(_) => None,
        };
        let key = match format {
            Some(KeyFormat::Whpk) => {
                if secret.trim().starts_with("whpk_") {
                    return Err(ConfigError::CannotSign(
                        scheme.name().to_owned(),
                        "a whpk_ public key only verifies; sign with the whsk_ key",
                    ));
                }
                let encoded = secret.trim().strip_prefix("whsk_").unwrap_or(secret.trim());
                SigningKey::Ed25519(Box::new(ed25519_signing_key(encoded).map_err(invalid)?))
            }
            Some(KeyFormat::Ed25519Hex) => {
                let bytes = base16ct::mixed::decode_vec(secret.trim())
                    .map_err(|_| invalid("expected a hex Ed25519 private key"))?;
                let seed: [u8; 32] = match bytes.len() {
                    32 | 64 => bytes
                        .get(..32)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| invalid("bad key"))?,
                    _ => return Err(invalid("an Ed25519 private key has 32 (or 64) bytes")),
                };
                SigningKey::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            Some(KeyFormat::P256Der) => {
                let der = decode_base64_secret(secret)
                    .ok_or_else(|| invalid("expected a base64 PKCS#8 DER private key"))?;
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|_| {
                    ConfigError::CannotSign(
                        scheme.name().to_owned(),
                        "SendGrid signs with a P-256 PKCS#8 private key",
                    )
                })?;
                SigningKey::P256(Box::new(key))
            }
            Some(KeyFormat::Token) => SigningKey::Token(KeyBytes::new(secret.as_bytes().to_vec())),
            _ => match crate::verifier::prepare(&scheme, secret).map_err(invalid)? {
                crate::verifier::Material::HmacSha256(key) => {
                    SigningKey::Hmac(key, HmacAlgorithm::Sha256)
                }
                crate::verifier::Material::HmacSha1(key) => {
                    SigningKey::Hmac(key, HmacAlgorithm::Sha1)
                }
                crate::verifier::Material::Braintree(pair) => SigningKey::Braintree(pair),
                _ => {
                    return Err(ConfigError::CannotSign(
                        scheme.name().to_owned(),
                        "not a shared-secret scheme",
                    ));
                }
            },
        };
        Ok(Signer { scheme, key })
    }

    /// The key a receiver verifies with, written as the verifier expects it, for asymmetric
    /// schemes (`whpk_…` for Standard Webhooks v1a, hex for Discord, base64 DER for SendGrid);
    /// `None` for shared-secret schemes, where the receiver holds the same secret.
    pub fn verifying_key(&self) -> Option<String> {
        match &self.key {
            SigningKey::Ed25519(key) => {
                let public = key.verifying_key();
                Some(match &self.scheme {
                    Scheme::Preset(id) if id.preset().key == KeyFormat::Ed25519Hex => {
                        hex(public.as_bytes())
                    }
                    _ => format!("whpk_{}", BASE64.encode(public.as_bytes())),
                })
            }
            SigningKey::P256(key) => {
                use p256::pkcs8::EncodePublicKey as _;
                key.verifying_key()
                    .to_public_key_der()
                    .ok()
                    .map(|der| BASE64.encode(der.as_bytes()))
            }
            SigningKey::Hmac(..) | SigningKey::Token(_) | SigningKey::Braintree(_) => None,
        }
    }

    /// Signs one delivery.
    ///
    /// # Errors
    /// [`ConfigError::MissingUrl`] for a URL-signing scheme without a URL.
    pub fn sign(&self, request: &SignRequest) -> Result<SignedDelivery, ConfigError> {
        let ts = request.timestamp.unwrap_or_else(now_unix);
        let id = request.id.clone().unwrap_or_else(|| {
            let digest = Sha256::new()
                .chain_update(ts.to_be_bytes())
                .chain_update(&request.body)
                .finalize();
            format!("msg_{}", hex(digest.get(..12).unwrap_or_default()))
        });
        let event_type = request.event_type.clone();
        let request_method = request.method.clone();
        let mut url = request.url.clone();
        let mut body = request.body.clone();
        let layout = Layout::of(&self.scheme, &id, ts, event_type.as_deref())?;

        if let Scheme::Preset(id) = &self.scheme {
            if id.signs_url() && url.is_none() {
                return Err(ConfigError::MissingUrl(id.as_str().to_owned()));
            }
        }
        let shape = match &self.scheme {
            Scheme::Preset(id) => Some(&id.preset().shape),
            Scheme::Generic(_) => None,
        };
        if matches!(shape, Some(Shape::Twilio { body_sha256: true })) {
            let base = url.unwrap_or_default();
            let joiner = if base.contains('?') { '&' } else { '?' };
            url = Some(format!(
                "{base}{joiner}bodySHA256={}",
                extract::body_sha256_hex(&body)
            ));
        }
        if matches!(shape, Some(Shape::NetlifyJws)) {
            let claims = format!(
                r#"{{"iss":"netlify","sha256":"{}"}}"#,
                extract::body_sha256_hex(&body)
            );
            let input = format!(
                "{}.{}",
                BASE64_URL.encode(extract::NETLIFY_JWS_HEADER),
                BASE64_URL.encode(claims)
            );
            let signature = BASE64_URL.encode(self.raw_signature(input.as_bytes()));
            let mut headers = layout.headers;
            headers.push((
                layout.signature_header.to_owned(),
                format!("{input}.{signature}"),
            ));
            return Ok(SignedDelivery { headers, body, url });
        }
        if matches!(shape, Some(Shape::Mailgun)) {
            body = self.mailgun_body(&id, ts, &body);
            return Ok(SignedDelivery {
                headers: layout.headers,
                body,
                url,
            });
        }
        if let (Some(Shape::Braintree), SigningKey::Braintree(pair)) = (shape, &self.key) {
            // The body to sign is the notification (XML): it becomes the base64 bt_payload.
            let body = Bytes::from(crate::scheme::braintree::form_body(pair, &body));
            let mut headers = layout.headers;
            headers.push((
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ));
            return Ok(SignedDelivery { headers, body, url });
        }
        if let (Some(Shape::BodyTokenEach { array, field }), SigningKey::Token(token)) =
            (shape, &self.key)
        {
            let body = body_tokens_each(&body, array, field, token).ok_or_else(|| {
                ConfigError::CannotSign(
                    self.scheme.name().to_owned(),
                    "the body must be a JSON object (a notification, or a batch with an array of them)",
                )
            })?;
            return Ok(SignedDelivery {
                headers: layout.headers,
                body,
                url,
            });
        }
        if let (Some(Shape::BodyToken { field }), SigningKey::Token(token)) = (shape, &self.key) {
            let cannot = |why| ConfigError::CannotSign(self.scheme.name().to_owned(), why);
            let mut value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| cannot("the body must be a JSON object"))?;
            let object = value
                .as_object_mut()
                .ok_or_else(|| cannot("the body must be a JSON object"))?;
            object.insert(
                (*field).to_owned(),
                serde_json::Value::String(String::from_utf8_lossy(token.as_slice()).into_owned()),
            );
            let body = Bytes::from(
                serde_json::to_vec(&value).map_err(|_| cannot("the body must be a JSON object"))?,
            );
            return Ok(SignedDelivery {
                headers: layout.headers,
                body,
                url,
            });
        }
        if let (Some(Shape::UrlToken), SigningKey::Token(token), Some(base)) =
            (shape, &self.key, url.as_deref())
        {
            // As the operator registers it in Azure: the webhook URL with `code=<token>`.
            let url = Some(with_query_token(base, token.as_slice()));
            return Ok(SignedDelivery {
                headers: layout.headers,
                body,
                url,
            });
        }
        if let SigningKey::Token(token) = &self.key {
            let mut headers = layout.headers;
            // As the shape writes it: the token itself, or Basic credentials.
            headers.push((
                layout.signature_header.to_owned(),
                (layout.format)(&String::from_utf8_lossy(token.as_slice())),
            ));
            return Ok(SignedDelivery { headers, body, url });
        }

        // Ask the verifier's extraction which bytes it will check, using a placeholder.
        let mut probe = layout.headers.clone();
        probe.push((layout.signature_header.to_owned(), (layout.format)("00")));
        let mut request = RequestContext::new().with_url_opt(url.as_deref());
        if let Some(method) = request_method.as_deref() {
            request = request.with_method(method);
        }
        let extracted = extract::extract(&self.scheme, &probe, &body, request).map_err(|_| {
            ConfigError::CannotSign(
                self.scheme.name().to_owned(),
                "the request does not fit the scheme",
            )
        })?;
        let message: Vec<u8> = extracted
            .messages
            .first()
            .map(|m| m.concat())
            .unwrap_or_default();
        // It borrows the body and URL, which the delivery takes.
        drop(extracted);
        let encoded = self.sign_bytes(&message, layout.encoding);
        let mut headers = layout.headers;
        headers.push((
            layout.signature_header.to_owned(),
            (layout.format)(&encoded),
        ));
        Ok(SignedDelivery { headers, body, url })
    }

    fn sign_bytes(&self, message: &[u8], encoding: Encoding) -> String {
        encoding.encode(&self.raw_signature(message))
    }

    fn raw_signature(&self, message: &[u8]) -> Vec<u8> {
        match &self.key {
            SigningKey::Hmac(key, HmacAlgorithm::Sha256) => mac::<Hmac<Sha256>>(key, message),
            SigningKey::Hmac(key, HmacAlgorithm::Sha1) => mac::<Hmac<Sha1>>(key, message),
            SigningKey::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(key.as_ref(), message);
                signature.to_der().as_bytes().to_vec()
            }
            SigningKey::Token(token) => token.as_slice().to_vec(),
            SigningKey::Braintree(pair) => pair.hex_mac(&[message]).into_bytes(),
        }
    }

    fn mailgun_body(&self, token: &str, ts: i64, event: &Bytes) -> Bytes {
        let message = format!("{ts}{token}");
        let signature = self.sign_bytes(message.as_bytes(), Encoding::Hex);
        let event_data = serde_json::from_slice::<serde_json::Value>(event).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(event).into_owned())
        });
        let wrapped = serde_json::json!({
            "signature": { "timestamp": ts.to_string(), "token": token, "signature": signature },
            "event-data": event_data,
        });
        Bytes::from(wrapped.to_string())
    }
}

/// The batch a Microsoft Graph sender posts: `token` set as `field` of every object of
/// `array`; a JSON object without `array` is taken as one notification and wrapped in a
/// batch of one. `None` when the body is not a JSON object or `array` holds a non-object.
fn body_tokens_each(body: &[u8], array: &str, field: &str, token: &KeyBytes) -> Option<Bytes> {
    let token = serde_json::Value::String(String::from_utf8_lossy(token.as_slice()).into_owned());
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object_mut()?;
    let mut batch = match object.get_mut(array) {
        Some(serde_json::Value::Array(_)) => value,
        _ => serde_json::json!({ array: [value] }),
    };
    for element in batch.get_mut(array)?.as_array_mut()? {
        element
            .as_object_mut()?
            .insert(field.to_owned(), token.clone());
    }
    serde_json::to_vec(&batch).ok().map(Bytes::from)
}

/// HMAC of one contiguous message, through the verifier's own computation.
/// `url` with the query parameter `code=<token>` (form-encoded) added before any fragment.
fn with_query_token(url: &str, token: &[u8]) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let joiner = match base.split_once('?') {
        None => "?",
        Some((_, "")) => "",
        Some((_, query)) if query.ends_with('&') => "",
        Some(_) => "&",
    };
    let parameter = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            crate::scheme::azure_event_grid::PARAMETERS[0],
            &String::from_utf8_lossy(token),
        )
        .finish();
    let mut out = format!("{base}{joiner}{parameter}");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &KeyBytes, message: &[u8]) -> Vec<u8> {
    crate::verifier::hmac_tag::<M>(key, &[std::borrow::Cow::Borrowed(message)])
        .map(|tag| tag.to_vec())
        .unwrap_or_default()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Headers a scheme sends besides the signature, the signature header's name and how its
/// value is written around the encoded signature.
struct Layout {
    headers: Vec<(String, String)>,
    signature_header: String,
    encoding: Encoding,
    format: Box<dyn Fn(&str) -> String>,
}

impl Layout {
    fn of(
        scheme: &Scheme,
        id: &str,
        ts: i64,
        event_type: Option<&str>,
    ) -> Result<Layout, ConfigError> {
        let h = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Vec<_>>()
        };
        let plain = |header: &str, headers: Vec<(String, String)>, encoding| Layout {
            headers,
            signature_header: header.to_owned(),
            encoding,
            format: Box::new(|s: &str| s.to_owned()),
        };
        let with_prefix =
            |header: &str, headers: Vec<(String, String)>, prefix: &'static str| Layout {
                headers,
                signature_header: header.to_owned(),
                encoding: Encoding::Hex,
                format: Box::new(move |s: &str| format!("{prefix}{s}")),
            };
        let event = |name: &str| event_type.map(|t| (name.to_owned(), t.to_owned()));
        let preset = match scheme {
            Scheme::Preset(preset) => preset.preset(),
            Scheme::Generic(g) => return Ok(generic_layout(g, id, ts)),
        };
        let mut layout = match preset.shape {
            Shape::Standard {
                family, version, ..
            } => Layout {
                headers: h(&[
                    (family.name(Family::ID), id.to_owned()),
                    (family.name(Family::TIMESTAMP), ts.to_string()),
                ]),
                signature_header: family.signature_name().to_owned(),
                encoding: Encoding::Base64,
                format: Box::new(move |s: &str| format!("{version},{s}")),
            },
            Shape::KeyValue(kv) => Layout {
                headers: Vec::new(),
                signature_header: kv.header.to_owned(),
                encoding: Encoding::Hex,
                format: Box::new(move |s: &str| {
                    format!(
                        "{}={ts}{}{}={s}",
                        kv.timestamp_key, kv.separator, kv.signature_key
                    )
                }),
            },
            Shape::BodyHmac {
                header,
                prefix,
                encoding,
                ..
            } => Layout {
                headers: Vec::new(),
                signature_header: header.to_owned(),
                encoding,
                format: Box::new(move |s: &str| format!("{prefix}{s}")),
            },
            Shape::NumberedBodyHmac {
                first, encoding, ..
            } => plain(first, Vec::new(), encoding),
            Shape::Shopify => {
                // The headers a receiver using `@shopify/shopify-api` requires (not signed):
                // the topic is the event type, added below, or a placeholder; the shop and
                // the API version are placeholders of Shopify's form.
                let mut headers = h(&[
                    (
                        "X-Shopify-Shop-Domain",
                        "hookgate-test.myshopify.com".to_owned(),
                    ),
                    ("X-Shopify-API-Version", "2025-07".to_owned()),
                    ("X-Shopify-Webhook-Id", id.to_owned()),
                ]);
                if event_type.is_none() {
                    headers.push(("X-Shopify-Topic".to_owned(), "hookgate/test".to_owned()));
                }
                plain(
                    crate::scheme::preset::SHOPIFY_WEBHOOKS.hmac,
                    headers,
                    Encoding::Base64,
                )
            }
            Shape::PrefixedList { header, prefix, .. } => Layout {
                headers: Vec::new(),
                signature_header: header.to_owned(),
                encoding: Encoding::Hex,
                format: Box::new(move |s: &str| format!("{prefix}{s}")),
            },
            Shape::Versioned {
                signature,
                timestamp,
                ..
            } => with_prefix(signature, h(&[(timestamp, ts.to_string())]), "v0="),
            Shape::Timestamped {
                signature,
                timestamp,
                time,
                encoding,
                ..
            } => {
                let at = match time {
                    TimeFormat::UnixMillis => Some(ts.saturating_mul(1000).to_string()),
                    TimeFormat::Rfc3339 => rfc3339(ts),
                }
                .ok_or(ConfigError::CannotSign(
                    preset.name.to_owned(),
                    "timestamp out of range",
                ))?;
                plain(signature, h(&[(timestamp, at)]), encoding)
            }
            Shape::UrlAndBody { header, encoding } => plain(header, Vec::new(), encoding),
            Shape::Asymmetric {
                signature,
                timestamp,
                encoding,
            } => plain(
                signature,
                h(&[(timestamp, ts.to_string())]),
                // Discord's signature is read in either case; written in lowercase.
                match encoding {
                    Encoding::HexAnyCase => Encoding::Hex,
                    other => other,
                },
            ),
            Shape::Token { header } => plain(header, Vec::new(), Encoding::Hex),
            Shape::Twitch => {
                let at = rfc3339(ts).ok_or(ConfigError::CannotSign(
                    preset.name.to_owned(),
                    "timestamp out of range",
                ))?;
                with_prefix(
                    "Twitch-Eventsub-Message-Signature",
                    h(&[
                        ("Twitch-Eventsub-Message-Id", id.to_owned()),
                        ("Twitch-Eventsub-Message-Timestamp", at),
                        ("Twitch-Eventsub-Message-Type", "notification".to_owned()),
                    ]),
                    "sha256=",
                )
            }
            Shape::Linear => plain(
                "Linear-Signature",
                h(&[("Linear-Timestamp", ts.saturating_mul(1000).to_string())]),
                Encoding::Hex,
            ),
            Shape::Twilio { .. } => plain("X-Twilio-Signature", Vec::new(), Encoding::Base64),
            Shape::Contentful => {
                use crate::scheme::preset::{CONTENTFUL_SIGNED_HEADERS, CONTENTFUL_TIMESTAMP};
                plain(
                    crate::scheme::preset::CONTENTFUL_SIGNATURE,
                    h(&[
                        (CONTENTFUL_TIMESTAMP, ts.saturating_mul(1000).to_string()),
                        (
                            CONTENTFUL_SIGNED_HEADERS,
                            format!("{CONTENTFUL_SIGNED_HEADERS},{CONTENTFUL_TIMESTAMP}"),
                        ),
                    ]),
                    Encoding::Hex,
                )
            }
            Shape::Box => {
                let at = rfc3339(ts).ok_or(ConfigError::CannotSign(
                    preset.name.to_owned(),
                    "timestamp out of range",
                ))?;
                plain(
                    "box-signature-primary",
                    h(&[
                        ("box-delivery-timestamp", at),
                        ("box-signature-version", "1".to_owned()),
                        ("box-signature-algorithm", "HmacSHA256".to_owned()),
                    ]),
                    Encoding::Base64,
                )
            }
            Shape::HubspotV3 => plain(
                crate::scheme::preset::HUBSPOT_SIGNATURE,
                h(&[(
                    crate::scheme::preset::HUBSPOT_TIMESTAMP,
                    ts.saturating_mul(1000).to_string(),
                )]),
                Encoding::Base64,
            ),
            Shape::Mailgun
            | Shape::BodyToken { .. }
            | Shape::BodyTokenEach { .. }
            | Shape::Braintree => plain("", Vec::new(), Encoding::Hex),
            Shape::NetlifyJws => plain("X-Webhook-Signature", Vec::new(), Encoding::Base64),
            // Azure Event Grid marks every delivery `aeg-event-type: Notification`; the token
            // goes in the URL (see `sign`) or, without one, in `Authorization: Bearer`.
            Shape::UrlToken => Layout {
                headers: h(&[("aeg-event-type", "Notification".to_owned())]),
                signature_header: crate::scheme::azure_event_grid::AUTHORIZATION.to_owned(),
                encoding: Encoding::Hex,
                format: Box::new(|token: &str| format!("Bearer {token}")),
            },
            Shape::BasicAuth => Layout {
                headers: Vec::new(),
                signature_header: "Authorization".to_owned(),
                encoding: Encoding::Base64,
                format: Box::new(|credentials: &str| {
                    format!("Basic {}", BASE64.encode(credentials))
                }),
            },
        };
        // The delivery id and the event type go where the verifier reads them.
        let first = |source: Source| match source {
            Source::Header(names) => names.first().copied(),
            Source::Shape | Source::Json(_) => None,
        };
        if let Some(name) = first(preset.info.delivery_id) {
            layout.headers.push((name.to_owned(), id.to_owned()));
        }
        let event_header = first(preset.info.event_type).and_then(event);
        layout.headers.extend(event_header);
        Ok(layout)
    }
}

/// Unix seconds as RFC 3339 UTC (`2023-11-14T22:13:20Z`); `None` out of range.
fn rfc3339(ts: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn generic_layout(g: &GenericHmac, id: &str, ts: i64) -> Layout {
    let mut headers = Vec::new();
    if let Some(name) = &g.id_header {
        headers.push((name.clone(), id.to_owned()));
    }
    if let Some(name) = &g.timestamp_header {
        headers.push((name.clone(), ts.to_string()));
    }
    let prefix = g.prefix.clone();
    Layout {
        headers,
        signature_header: g.signature_header.clone(),
        encoding: g.encoding,
        format: Box::new(move |s: &str| format!("{prefix}{s}")),
    }
}

/// An Ed25519 signing key from base64: a 32-byte seed, or Svix's 64-byte seed || public key.
pub(crate) fn ed25519_signing_key(
    encoded: &str,
) -> Result<ed25519_dalek::SigningKey, &'static str> {
    let bytes = decode_base64_secret(encoded).ok_or("expected whsk_ followed by base64")?;
    let seed: [u8; 32] = match bytes.len() {
        32 | 64 => bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or("bad key length")?,
        _ => return Err("an Ed25519 signing key has 32 or 64 bytes"),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    if let Some(public) = bytes.get(32..) {
        if public != key.verifying_key().as_bytes() {
            return Err("the whsk_ key's public half does not match its seed");
        }
    }
    Ok(key)
}

/// The `whpk_` public key matching a `whsk_` signing key, for printing after key generation.
pub fn standard_webhooks_public_key(whsk: &str) -> Result<String, ConfigError> {
    let encoded = whsk.trim().strip_prefix("whsk_").unwrap_or(whsk.trim());
    let key = ed25519_signing_key(encoded).map_err(|problem| ConfigError::InvalidKey {
        index: 0,
        scheme: crate::SchemeId::StandardWebhooksV1a.as_str().to_owned(),
        problem,
    })?;
    Ok(format!(
        "whpk_{}",
        BASE64.encode(key.verifying_key().as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FixedClock, SchemeId, Verifier};

    #[test]
    fn layouts_use_the_documented_signature_header() {
        for id in SchemeId::ALL {
            let Some(header) = id.signature_header() else {
                continue;
            };
            let layout = Layout::of(&Scheme::Preset(id), "msg", 1_700_000_000, None).unwrap();
            assert_eq!(layout.signature_header, header, "{id}");
        }
    }

    #[test]
    fn the_event_grid_token_goes_in_the_url_or_else_the_bearer_header() {
        assert_eq!(
            with_query_token("https://h.example/eg", b"a b+c"),
            "https://h.example/eg?code=a+b%2Bc"
        );
        assert_eq!(
            with_query_token("https://h.example/eg?x=1#frag", b"t"),
            "https://h.example/eg?x=1&code=t#frag"
        );
        assert_eq!(
            with_query_token("https://h.example/eg?", b"t"),
            "https://h.example/eg?code=t"
        );
        let signer = Signer::new(SchemeId::AzureEventGrid, "s3cret token").unwrap();
        let verifier = Verifier::builder(SchemeId::AzureEventGrid)
            .secret("s3cret token")
            .build()
            .unwrap();
        let in_url = signer
            .sign(&SignRequest::new("[]").url("https://h.example/eg"))
            .unwrap();
        let url = in_url.url.as_deref().unwrap();
        assert_eq!(url, "https://h.example/eg?code=s3cret+token");
        assert!(
            !in_url
                .headers
                .iter()
                .any(|(name, _)| name == "Authorization")
        );
        assert!(verifier.verify_request(&in_url.headers, "[]", url).is_ok());
        let in_header = signer.sign(&SignRequest::new("[]")).unwrap();
        assert!(
            in_header
                .headers
                .contains(&("Authorization".to_owned(), "Bearer s3cret token".to_owned()))
        );
        assert!(verifier.verify(&in_header.headers, "[]").is_ok());
    }

    #[test]
    fn asymmetric_signers_report_the_key_receivers_verify_with() {
        let cases = [
            (
                SchemeId::StandardWebhooksV1a,
                "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==",
            ),
            (
                SchemeId::Discord,
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            ),
        ];
        for (scheme, private) in cases {
            let signer = Signer::new(scheme, private).unwrap();
            let public = signer.verifying_key().unwrap();
            let signed = signer
                .sign(&SignRequest::new("{}").timestamp(1_700_000_000))
                .unwrap();
            let verifier = Verifier::builder(scheme)
                .secret(public)
                .clock(FixedClock::from_unix(1_700_000_000))
                .build()
                .unwrap();
            assert!(verifier.verify(&signed.headers, "{}").is_ok(), "{scheme}");
        }
        assert_eq!(
            Signer::new(SchemeId::Github, "s").unwrap().verifying_key(),
            None
        );
    }
}
