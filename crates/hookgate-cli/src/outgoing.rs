//! Deliveries as a provider sends them, for `send` and `audit`: a sample body, the signed
//! headers, and the URL to call.

use bytes::Bytes;
use hookgate::{SchemeId, SignRequest, Signer};
use http::{Method, Uri};

use crate::error::CliError;

/// Where deliveries go: the URL to connect to, and the public URL a URL-signing scheme
/// signs (the same unless the endpoint sits behind a proxy).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) uri: Uri,
    pub(crate) public_url: String,
    /// The HTTP method to send with (`POST` but for `hookgate send --method`); signed by
    /// hubspot-v3.
    pub(crate) method: Method,
}

/// One request ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
    /// For URL-signing schemes, the public URL that was signed (the receiver verifies it).
    pub(crate) signed_url: Option<String>,
}

impl Outgoing {
    /// The value of header `name` (case-insensitive), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replaces (or with `None` removes) every header named `name`.
    pub(crate) fn set_header(&mut self, name: &str, value: Option<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(value) = value {
            self.headers.push((name.to_owned(), value));
        }
    }
}

/// A JSON body carrying the fields the presets read an id, a type and a time from (`id` and
/// `event_id` for the schemes that take the event id from the body, `type`, and Linear's
/// signed `webhookTimestamp` in milliseconds), so that the same sample verifies under every
/// scheme. `extra` goes under `data`.
pub(crate) fn sample_body(
    id: &str,
    event_type: &str,
    timestamp: i64,
    extra: serde_json::Value,
) -> Bytes {
    let body = serde_json::json!({
        "id": id,
        "event_id": id,
        "type": event_type,
        "created": timestamp,
        "webhookTimestamp": timestamp.saturating_mul(1000),
        "data": extra,
    });
    Bytes::from(body.to_string())
}

/// What to sign.
#[derive(Debug, Clone)]
pub(crate) struct Draft<'a> {
    pub(crate) body: Bytes,
    pub(crate) id: &'a str,
    pub(crate) timestamp: i64,
    pub(crate) event_type: Option<&'a str>,
}

/// Signs `draft` for `target` and adds the usual request headers (`Content-Type` for a
/// JSON body, `User-Agent`) unless `extra` sets them; `extra` headers come last.
///
/// # Errors
/// A key the scheme cannot sign with, or a request that does not fit the scheme.
pub(crate) fn sign(
    signer: &Signer,
    scheme: SchemeId,
    target: &Target,
    draft: &Draft<'_>,
    extra: &[(String, String)],
) -> Result<Outgoing, CliError> {
    let mut request = SignRequest::new(draft.body.clone())
        .id(draft.id)
        .timestamp(draft.timestamp);
    if scheme.signs_url() {
        request = request.url(target.public_url.clone());
    }
    if scheme.signs_method() {
        request = request.method(target.method.as_str());
    }
    if let Some(event_type) = draft.event_type {
        request = request.event_type(event_type);
    }
    let delivery = signer.sign(&request).map_err(|e| CliError::config(&e))?;
    let uri = match delivery
        .url
        .as_deref()
        .and_then(|u| u.find("bodySHA256=").map(|at| (u, at)))
    {
        // Twilio's JSON scheme signs a URL carrying the body's hash: call it with that
        // query parameter too.
        Some((url, at)) => {
            let param = url.get(at..).unwrap_or_default();
            let base = target.uri.to_string();
            let joiner = if base.contains('?') { '&' } else { '?' };
            format!("{base}{joiner}{param}")
                .parse()
                .map_err(|_| CliError::new("the signed URL is not a valid URL"))?
        }
        None => target.uri.clone(),
    };
    let signed_url = scheme.signs_url().then(|| {
        delivery
            .url
            .clone()
            .unwrap_or_else(|| target.public_url.clone())
    });
    let mut outgoing = Outgoing {
        method: target.method.clone(),
        uri,
        headers: delivery.headers,
        body: delivery.body,
        signed_url,
    };
    let json = outgoing.body.first() == Some(&b'{') || outgoing.body.first() == Some(&b'[');
    if json {
        outgoing.set_header("Content-Type", Some("application/json".to_owned()));
    }
    outgoing.set_header(
        "User-Agent",
        Some(concat!("hookgate/", env!("CARGO_PKG_VERSION")).to_owned()),
    );
    for (name, value) in extra {
        outgoing.set_header(name, Some(value.clone()));
    }
    Ok(outgoing)
}

/// A random hex string of `bytes` random bytes (not secret: ids and nonces).
pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}
