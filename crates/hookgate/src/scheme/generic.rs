//! A signature scheme built from configuration, for senders without a preset.

use std::time::Duration;

use super::Window;
use crate::encoding::Encoding;
use crate::error::ConfigError;

/// The HMAC hash function of a generic scheme.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA256 (the default).
    Sha256,
    /// HMAC-SHA1, for legacy senders.
    Sha1,
}

/// One piece of the signed-content template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(Vec<u8>),
    Id,
    Timestamp,
    Body,
}

/// How a generic scheme's secret is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretFormat {
    /// The secret's UTF-8 bytes are the key.
    Raw,
    /// Base64 after an optional `whsec_` prefix (Standard Webhooks style).
    Base64,
}

/// A configurable HMAC scheme: signature header, optional prefix, hex or base64, optional id
/// and timestamp headers, and a template of the signed content.
///
/// ```
/// use hookgate::{Encoding, GenericHmac};
///
/// let acme = GenericHmac::builder("acme")
///     .signature_header("X-Acme-Signature")
///     .prefix("sha256=")
///     .encoding(Encoding::Hex)
///     .id_header("X-Acme-Delivery")
///     .timestamp_header("X-Acme-Timestamp")
///     .template("{id}.{timestamp}.{body}")
///     .build()?;
/// assert_eq!(acme.name(), "acme");
/// # Ok::<(), hookgate::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct GenericHmac {
    pub(crate) name: String,
    pub(crate) algorithm: HmacAlgorithm,
    pub(crate) signature_header: String,
    pub(crate) prefix: String,
    pub(crate) encoding: Encoding,
    pub(crate) separator: Option<char>,
    pub(crate) id_header: Option<String>,
    pub(crate) timestamp_header: Option<String>,
    pub(crate) template: Vec<Part>,
    pub(crate) secret_format: SecretFormat,
    pub(crate) tolerance: Duration,
}

impl GenericHmac {
    /// Starts a generic scheme called `name` (used in logs, metrics and dedup keys).
    pub fn builder(name: impl Into<String>) -> GenericHmacBuilder {
        GenericHmacBuilder {
            name: name.into(),
            algorithm: HmacAlgorithm::Sha256,
            signature_header: None,
            prefix: String::new(),
            encoding: Encoding::Hex,
            separator: None,
            id_header: None,
            timestamp_header: None,
            template: "{body}".to_owned(),
            secret_format: SecretFormat::Raw,
            tolerance: Duration::from_secs(300),
        }
    }

    /// The scheme's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the delivery id is part of the signed content (then it is the dedup key).
    pub(crate) fn signs_id(&self) -> bool {
        self.template.contains(&Part::Id)
    }

    pub(crate) fn window(&self) -> Window {
        if self.template.contains(&Part::Timestamp) {
            Window::Tolerance(self.tolerance)
        } else {
            Window::None
        }
    }
}

/// Builder of a [`GenericHmac`] scheme; every setting documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct GenericHmacBuilder {
    name: String,
    algorithm: HmacAlgorithm,
    signature_header: Option<String>,
    prefix: String,
    encoding: Encoding,
    separator: Option<char>,
    id_header: Option<String>,
    timestamp_header: Option<String>,
    template: String,
    secret_format: SecretFormat,
    tolerance: Duration,
}

impl GenericHmacBuilder {
    /// The header carrying the signature (required).
    pub fn signature_header(mut self, name: impl Into<String>) -> Self {
        self.signature_header = Some(name.into());
        self
    }

    /// A prefix every signature carries, such as `sha256=` (default: none).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How the signature is encoded (default: lowercase hex).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The hash function (default: SHA-256).
    pub fn algorithm(mut self, algorithm: HmacAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// A character separating several signatures in the header, for senders that sign with
    /// every active key during a rotation (default: one signature per header value).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = Some(separator);
        self
    }

    /// The header carrying the delivery id, usable as `{id}` in the template.
    pub fn id_header(mut self, name: impl Into<String>) -> Self {
        self.id_header = Some(name.into());
        self
    }

    /// The header carrying the Unix timestamp in seconds, usable as `{timestamp}`.
    pub fn timestamp_header(mut self, name: impl Into<String>) -> Self {
        self.timestamp_header = Some(name.into());
        self
    }

    /// The signed content: literal text with the placeholders `{id}`, `{timestamp}` and
    /// `{body}` (default: `{body}`). `{body}` must appear exactly once.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// Treat secrets as base64 after an optional `whsec_` prefix, like Standard Webhooks
    /// (default: the secret's UTF-8 bytes are the key).
    pub fn base64_secrets(mut self) -> Self {
        self.secret_format = SecretFormat::Base64;
        self
    }

    /// The timestamp window in both directions (default: 300 s).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ConfigError::Generic`] when the signature header is missing, the template has an
    /// unknown placeholder, does not sign the body exactly once, or uses `{id}`/`{timestamp}`
    /// without the matching header; [`ConfigError::ZeroTolerance`] for a zero window.
    pub fn build(self) -> Result<GenericHmac, ConfigError> {
        let fail = |msg: String| Err(ConfigError::Generic(msg));
        let Some(signature_header) = self.signature_header.filter(|h| !h.trim().is_empty()) else {
            return fail("a signature header is required".into());
        };
        if http::HeaderName::from_bytes(signature_header.as_bytes()).is_err() {
            return fail(format!("`{signature_header}` is not a valid header name"));
        }
        let template = parse_template(&self.template).map_err(ConfigError::Generic)?;
        if template.iter().filter(|p| **p == Part::Body).count() != 1 {
            return fail("the template must contain {body} exactly once".into());
        }
        if template.contains(&Part::Id) && self.id_header.is_none() {
            return fail("the template uses {id} but no id header is set".into());
        }
        if template.contains(&Part::Timestamp) && self.timestamp_header.is_none() {
            return fail("the template uses {timestamp} but no timestamp header is set".into());
        }
        if self.tolerance.is_zero() {
            return Err(ConfigError::ZeroTolerance);
        }
        Ok(GenericHmac {
            name: self.name,
            algorithm: self.algorithm,
            signature_header,
            prefix: self.prefix,
            encoding: self.encoding,
            separator: self.separator,
            id_header: self.id_header,
            timestamp_header: self.timestamp_header,
            template,
            secret_format: self.secret_format,
            tolerance: self.tolerance,
        })
    }
}

fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (literal, after) = rest.split_at(open);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.as_bytes().to_vec()));
        }
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed placeholder in template `{template}`"));
        };
        let (placeholder, tail) = after.split_at(close.saturating_add(1));
        parts.push(match placeholder {
            "{id}" => Part::Id,
            "{timestamp}" => Part::Timestamp,
            "{body}" => Part::Body,
            other => {
                return Err(format!(
                    "unknown placeholder {other} (use {{id}}, {{timestamp}}, {{body}})"
                ));
            }
        });
        rest = tail;
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.as_bytes().to_vec()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_into_parts() {
        assert_eq!(
            parse_template("{id}.{timestamp}.{body}").unwrap(),
            vec![
                Part::Id,
                Part::Literal(b".".to_vec()),
                Part::Timestamp,
                Part::Literal(b".".to_vec()),
                Part::Body
            ]
        );
        assert!(parse_template("{nope}").is_err());
        assert!(parse_template("{body").is_err());
    }

    #[test]
    fn bad_configurations_are_build_errors() {
        let base = || GenericHmac::builder("x").signature_header("X-Sig");
        assert!(base().build().is_ok());
        assert!(GenericHmac::builder("x").build().is_err());
        assert!(base().template("{id}.{body}").build().is_err());
        assert!(base().template("{timestamp}").build().is_err());
        assert!(base().template("{body}{body}").build().is_err());
        assert!(base().signature_header("bad header").build().is_err());
        assert_eq!(
            base().tolerance(Duration::ZERO).build().unwrap_err(),
            ConfigError::ZeroTolerance
        );
        let signed_id = base()
            .id_header("X-Id")
            .template("{id}:{body}")
            .build()
            .unwrap();
        assert!(signed_id.signs_id());
        assert_eq!(signed_id.window(), Window::None);
    }
}
