//! Configuration shared by the middleware and the extractors: the gate, the public origin
//! for URL-signing schemes, the JSON depth limit.

use std::sync::Arc;

use actix_web::http::Uri;
use actix_web::{HttpRequest, web};
use hookgate::{Gate, Scheme};

/// What the extractors need: the [`Gate`], and for URL-signing schemes the public origin.
/// Put it in `app_data` (bare or as [`web::Data`]); a bare `Gate` or a `web::Data<Gate>`
/// there works too, without an origin (URL-signing schemes, Twilio and Square, then use the
/// URL configured on the [`Verifier`](hookgate::Verifier)).
///
/// An invalid option are recorded, not panicked on: [`error`](Self::error) reports them, the
/// [`WebhookGate`](crate::WebhookGate) middleware refuses to start with them, and an
/// extractor answers `500 not_configured` (and logs the error).
///
/// ```
/// use hookgate::{Gate, SchemeId, Verifier};
/// use hookgate_actix::WebhookConfig;
///
/// let verifier = Verifier::builder(SchemeId::Twilio)
///     .secret("12345")
///     .build_with_url_per_request()?;
/// let gate = Gate::builder(verifier).build_verify_only()?;
/// let config = WebhookConfig::new(gate.clone()).public_origin("https://hooks.example.com");
/// assert!(config.error().is_none());
///
/// let bad = WebhookConfig::new(gate).public_origin("hooks.example.com");
/// assert_eq!(
///     bad.error().map(ToString::to_string).as_deref(),
///     Some("invalid public origin `hooks.example.com`: it must start with https:// or http://")
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookConfig {
    inner: Arc<Settings>,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) gate: Gate,
    origin: Option<Arc<str>>,
    signs_url: bool,
    pub(crate) error: Option<ConfigError>,
}

/// A [`WebhookConfig`] or [`WebhookGate`](crate::WebhookGate) option that cannot work.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The public origin is not `https://host[:port]` or `http://host[:port]` (a trailing
    /// `/` aside): no path, query, fragment, user info, spaces or control characters.
    #[error("invalid public origin `{origin}`: {problem}")]
    InvalidPublicOrigin {
        /// The origin as given.
        origin: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The middleware was asked to hand events off (gate mode) with a gate that has no
    /// sink, which would answer `503 sink_unavailable` to every delivery.
    #[error(
        "the gate has no sink: build it with GateBuilder::build, or use WebhookGate::verify_only"
    )]
    GateWithoutSink,
}

impl WebhookConfig {
    /// A configuration around `gate`, with the defaults.
    pub fn new(gate: Gate) -> Self {
        let signs_url = matches!(gate.verifier().scheme(), Scheme::Preset(id) if id.signs_url());
        WebhookConfig {
            inner: Arc::new(Settings {
                gate,
                origin: None,
                signs_url,
                error: None,
            }),
        }
    }

    /// The public origin senders call, such as `https://hooks.example.com`. URL-signing
    /// schemes (Twilio, Square) sign the full URL; behind a proxy the server cannot know it,
    /// so it is this origin followed by the request's path and query, exactly as received.
    /// Other schemes ignore it; the `Host` header is never trusted for it. Behind a proxy
    /// that rewrites paths, configure the full URL on the verifier instead
    /// ([`VerifierBuilder::url`](hookgate::VerifierBuilder::url)).
    pub fn public_origin(self, origin: impl AsRef<str>) -> Self {
        let origin = origin.as_ref();
        match parse_origin(origin) {
            Ok(parsed) => self.update(|settings| settings.origin = Some(Arc::from(parsed))),
            Err(problem) => self.fail(ConfigError::InvalidPublicOrigin {
                origin: origin.to_owned(),
                problem,
            }),
        }
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The public origin, if one was configured.
    pub fn origin(&self) -> Option<&str> {
        self.inner.origin.as_deref()
    }

    /// The first invalid option, if any.
    pub fn error(&self) -> Option<&ConfigError> {
        self.inner.error.as_ref()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner
    }

    pub(crate) fn fail(self, error: ConfigError) -> Self {
        self.update(|settings| {
            settings.error.get_or_insert(error);
        })
    }

    fn update(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// The configuration an extractor uses: a `WebhookConfig`, else a `Gate`, in
    /// `app_data`, bare or as `web::Data`.
    pub(crate) fn from_app_data(req: &HttpRequest) -> Option<WebhookConfig> {
        if let Some(config) = req.app_data::<WebhookConfig>() {
            return Some(config.clone());
        }
        if let Some(config) = req.app_data::<web::Data<WebhookConfig>>() {
            return Some(WebhookConfig::clone(config));
        }
        if let Some(gate) = req.app_data::<Gate>() {
            return Some(WebhookConfig::new(gate.clone()));
        }
        req.app_data::<web::Data<Gate>>()
            .map(|gate| WebhookConfig::new(Gate::clone(gate)))
    }
}

impl Settings {
    /// The public URL of this request, for URL-signing schemes with a configured origin.
    pub(crate) fn url_for(&self, uri: &Uri) -> Option<String> {
        if !self.signs_url {
            return None;
        }
        let origin = self.origin.as_deref()?;
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| uri.path(), |pq| pq.as_str());
        let mut url = String::with_capacity(origin.len().saturating_add(path_and_query.len()));
        url.push_str(origin);
        url.push_str(path_and_query);
        Some(url)
    }
}

/// Checks an origin (scheme, host, optional port) and drops a trailing `/`.
fn parse_origin(origin: &str) -> Result<&str, &'static str> {
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("it must start with https:// or http://")?;
    if !origin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("it contains spaces, control or non-ASCII characters");
    }
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() {
        return Err("it has no host");
    }
    if authority.contains(['/', '?', '#']) {
        return Err("it must be scheme, host and port only, without a path, query or fragment");
    }
    if authority.contains('@') {
        return Err("it must not carry user info");
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(literal) => {
            let (host, rest) = literal
                .split_once(']')
                .ok_or("its IPv6 address has no closing `]`")?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or("its port is not a number")?),
            };
            (host, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("it has no host");
    }
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
        return Err("its port is not a number");
    }
    Ok(origin.strip_suffix('/').unwrap_or(origin))
}

#[cfg(test)]
mod tests {
    use hookgate::{SchemeId, Verifier};

    use super::*;

    fn gate(scheme: SchemeId) -> Gate {
        let verifier = Verifier::builder(scheme)
            .secret("12345")
            .build_with_url_per_request()
            .unwrap();
        Gate::builder(verifier).build_verify_only().unwrap()
    }

    #[test]
    fn origins_are_checked_and_normalised() {
        assert_eq!(parse_origin("https://a.example"), Ok("https://a.example"));
        assert_eq!(
            parse_origin("http://a.example:8080/"),
            Ok("http://a.example:8080")
        );
        assert_eq!(parse_origin("http://[::1]:8080"), Ok("http://[::1]:8080"));
        for bad in [
            "",
            "a.example",
            "https://a.example/hooks",
            "https://a.example//",
            "https://user@a.example",
            "https://a.example:",
            "https://a.example:80x",
            "https://:443",
            "https://[::1",
            "https://[]:80",
            "https://[::1]x",
            "ftp://a.example",
            "https://",
            "https:///path",
            "https://a.example/?x=1",
            "https://a.example/#top",
            "https://a .example",
            "https://a.example\n",
            "https://é.example",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_url_is_the_origin_then_the_path_and_query_as_received() {
        let config = WebhookConfig::new(gate(SchemeId::Twilio)).public_origin("https://h.example/");
        let uri: Uri = "/sms?b=2&a=1".parse().unwrap();
        assert_eq!(
            config.settings().url_for(&uri).as_deref(),
            Some("https://h.example/sms?b=2&a=1")
        );
        assert_eq!(config.origin(), Some("https://h.example"));

        // Schemes that do not sign the URL never get one.
        let config = WebhookConfig::new(gate(SchemeId::Github)).public_origin("https://h.example");
        assert_eq!(config.settings().url_for(&uri), None);
        // Nor does a URL-signing scheme without an origin.
        let config = WebhookConfig::new(gate(SchemeId::Square));
        assert_eq!(config.settings().url_for(&uri), None);
    }

    #[test]
    fn a_bad_origin_is_recorded_and_reported() {
        let config = WebhookConfig::new(gate(SchemeId::Github)).public_origin("nope");
        assert_eq!(
            config.error(),
            Some(&ConfigError::InvalidPublicOrigin {
                origin: "nope".to_owned(),
                problem: "it must start with https:// or http://",
            })
        );
        assert_eq!(config.origin(), None);
        // The first error is kept.
        let config = config.public_origin("https://a.example/path");
        assert!(config.error().unwrap().to_string().contains("`nope`"));
    }
}
