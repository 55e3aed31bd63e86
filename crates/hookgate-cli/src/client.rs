//! The HTTP client shared by `send`, `audit` and `serve --forward`: HTTP/1.1 over TCP or
//! TLS (rustls with the aws-lc-rs provider, the system's roots plus an optional extra CA),
//! one connection pool, a timeout per request, and the answer's body read up to a cap.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::CliError;

/// Most bytes of an answer's body kept (the rest is not read).
const MAX_REPLY_BODY: usize = 64 * 1024;

/// A pooled HTTP(S) client with a per-request timeout.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    /// The body, up to [`MAX_REPLY_BODY`] bytes.
    pub(crate) body: Bytes,
    /// From sending the request to the end of the body.
    pub(crate) latency: Duration,
}

impl Reply {
    /// The body as text for a one-line report: at most `max` characters, control
    /// characters escaped.
    pub(crate) fn body_snippet(&self, max: usize) -> String {
        snippet(&self.body, max)
    }
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct NoReply {
    /// What went wrong, e.g. `timeout after 30s`, `connection refused`.
    pub(crate) error: String,
    pub(crate) latency: Duration,
    /// The request timed out (as opposed to a connection or protocol error).
    pub(crate) timed_out: bool,
}

impl HttpClient {
    /// A client trusting the system's roots and, if given, the CA certificates in the PEM
    /// file `extra_ca`.
    ///
    /// # Errors
    /// The CA file cannot be read or holds no certificate.
    pub(crate) fn new(
        extra_ca: Option<&Path>,
        timeout: Duration,
        pool_size: usize,
    ) -> Result<Self, CliError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // An unusable system certificate is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca {
            let certs = read_certificates(path)?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    CliError::new(format!(
                        "the CA certificate in {} is unusable: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::new(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_size.max(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpClient { client, timeout })
    }

    /// POSTs `body` with `headers` to `uri`.
    ///
    /// # Errors
    /// No answer: a connection error, a protocol error, or the timeout.
    pub(crate) async fn post(
        &self,
        uri: &Uri,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, NoReply> {
        self.send(Method::POST, uri, headers, body).await
    }

    /// Sends `body` with `headers` to `uri` with `method`.
    ///
    /// # Errors
    /// As [`post`](Self::post).
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Reply, NoReply> {
        let started = Instant::now();
        let fail = |error: String, timed_out: bool| NoReply {
            error,
            latency: started.elapsed(),
            timed_out,
        };
        let mut request = Request::builder().method(method).uri(uri.clone());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| fail(format!("cannot build the request: {e}"), false))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe_client_error(&e))?;
            let (parts, body) = response.into_parts();
            // Only the first bytes are kept; a longer answer is cut, not an error.
            let body = match Limited::new(body, MAX_REPLY_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok::<_, String>((parts, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(fail(
                format!("timeout after {}", crate::duration::human(self.timeout)),
                true,
            )),
            Ok(Err(error)) => Err(fail(error, false)),
            Ok(Ok((parts, body))) => Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                latency: started.elapsed(),
            }),
        }
    }
}

/// Parses an endpoint URL given on the command line: `http` or `https` with a host.
///
/// # Errors
/// Anything else, described in terms of `flag`.
pub(crate) fn parse_url(text: &str, what: &str) -> Result<Uri, CliError> {
    let uri: Uri = text
        .parse()
        .map_err(|_| CliError::new(format!("{what} is not a URL: {text:?}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(CliError::new(format!(
            "{what} must be an http:// or https:// URL with a host, not {text:?}"
        )));
    }
    Ok(uri)
}

/// Reads every certificate of a PEM file.
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let pem = std::fs::read(path).map_err(|e| {
        CliError::new(format!(
            "cannot read the certificate file {}: {e}",
            path.display()
        ))
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            CliError::new(format!(
                "{} is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(CliError::new(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The most useful line of a client error: the innermost cause (e.g. `Connection
/// refused`) after hyper's own summary.
fn describe_client_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// Bytes as a short, single-line, terminal-safe text.
pub(crate) fn snippet(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(parse_url("http://127.0.0.1:8787/webhooks", "URL").is_ok());
        assert!(parse_url("https://hooks.example.com/x?y=1", "URL").is_ok());
        assert!(parse_url("ftp://x/y", "URL").is_err());
        assert!(parse_url("/webhooks", "URL").is_err());
        assert!(parse_url("not a url", "URL").is_err());
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        assert_eq!(snippet(b"accepted", 20), "accepted");
        assert_eq!(snippet(b"a\nb", 20), "a\\nb");
        assert_eq!(snippet(b"abcdef", 3), "abc…");
    }
}
