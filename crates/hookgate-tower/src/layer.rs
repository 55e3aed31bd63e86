//! The layer: a gate, a mode and the options, applied to a service.

use std::fmt;
use std::sync::Arc;

use hookgate::Gate;
use tower_layer::Layer;

use crate::respond::{DefaultRespond, Respond};
use crate::service::GateService;

/// What the middleware does with a verified delivery.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Acknowledge-then-process: the middleware hands the event to the gate's sink and
    /// answers the sender itself (2xx only once the sink has it). The inner service is
    /// never called; your code consumes events from the sink.
    Receive,
    /// The middleware verifies (and answers rejections, duplicates and 503s itself), then
    /// calls the inner service with the [`VerifiedEvent`](hookgate::VerifiedEvent) in the
    /// request extensions and the raw body re-attached as a [`RawBody`](crate::RawBody).
    /// The inner service answers.
    VerifyOnly,
}

/// Applies a [`Gate`] to a service: see the [crate documentation](crate).
///
/// ```
/// use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
/// use hookgate_tower::GateLayer;
///
/// let verifier = Verifier::builder(SchemeId::Github).secret("It's a Secret to Everybody").build()?;
/// let (sink, _events) = ChannelSink::bounded(1024);
/// let layer = GateLayer::new(Gate::builder(verifier).sink(sink).build()?);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct GateLayer<R = DefaultRespond> {
    gate: Gate,
    mode: Mode,
    public_origin: Option<Arc<str>>,
    respond: Arc<R>,
}

impl GateLayer {
    /// Gate mode ([`Mode::Receive`]): the middleware answers every request it sees, 2xx
    /// only once the gate's sink has the event. Build the gate with
    /// [`GateBuilder::build`](hookgate::GateBuilder::build).
    pub fn new(gate: Gate) -> Self {
        GateLayer::with_mode(gate, Mode::Receive)
    }

    /// Verify-only mode ([`Mode::VerifyOnly`]): the middleware passes verified deliveries
    /// on to the inner service. Build the gate with
    /// [`GateBuilder::build_verify_only`](hookgate::GateBuilder::build_verify_only) (with a
    /// dedup store if already-processed deliveries should be answered `duplicate` here).
    pub fn verify_only(gate: Gate) -> Self {
        GateLayer::with_mode(gate, Mode::VerifyOnly)
    }

    /// A layer in the given mode.
    pub fn with_mode(gate: Gate, mode: Mode) -> Self {
        GateLayer {
            gate,
            mode,
            public_origin: None,
            respond: Arc::new(DefaultRespond),
        }
    }
}

impl<R> GateLayer<R> {
    /// The public origin the sender calls, such as `https://hooks.example.com`, for
    /// URL-signing schemes (Twilio, Square). The URL verified is this origin followed by the
    /// request's path and query (with the `axum` feature, axum's `OriginalUri` when the
    /// router was nested). Behind a proxy that rewrites paths, configure the full URL on the
    /// verifier instead ([`VerifierBuilder::url`](hookgate::VerifierBuilder::url)).
    ///
    /// Without it the verifier's own URL is used. The `Host` header is never trusted for
    /// this.
    ///
    /// # Errors
    /// [`InvalidOrigin`] unless `origin` is `http` or `https`, a host, an optional port and
    /// nothing else (a trailing `/` is accepted and dropped).
    ///
    /// ```
    /// # let verifier = hookgate::Verifier::builder(hookgate::SchemeId::Square)
    /// #     .secret("k").build_with_url_per_request()?;
    /// # let gate = hookgate::Gate::builder(verifier).build_verify_only()?;
    /// let layer = hookgate_tower::GateLayer::verify_only(gate)
    ///     .public_origin("https://hooks.example.com")?;
    /// assert_eq!(layer.origin(), Some("https://hooks.example.com"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn public_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        self.public_origin = Some(parse_origin(origin)?);
        Ok(self)
    }

    /// Shapes the responses the middleware makes itself; see [`Respond`].
    pub fn respond_with<T: Respond>(self, respond: T) -> GateLayer<T> {
        GateLayer {
            gate: self.gate,
            mode: self.mode,
            public_origin: self.public_origin,
            respond: Arc::new(respond),
        }
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The public origin, if one was set.
    pub fn origin(&self) -> Option<&str> {
        self.public_origin.as_deref()
    }

    pub(crate) fn shared(&self) -> Arc<Shared<R>> {
        Arc::new(Shared {
            gate: self.gate.clone(),
            mode: self.mode,
            public_origin: self.public_origin.clone(),
            respond: Arc::clone(&self.respond),
        })
    }
}

impl<S, R> Layer<S> for GateLayer<R> {
    type Service = GateService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService::from_shared(inner, self.shared())
    }
}

impl<R> Clone for GateLayer<R> {
    fn clone(&self) -> Self {
        GateLayer {
            gate: self.gate.clone(),
            mode: self.mode,
            public_origin: self.public_origin.clone(),
            respond: Arc::clone(&self.respond),
        }
    }
}

impl<R> fmt::Debug for GateLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateLayer")
            .field("gate", &self.gate)
            .field("mode", &self.mode)
            .field("public_origin", &self.public_origin)
            .field("respond", &std::any::type_name::<R>())
            .finish()
    }
}

/// What every request of one service needs, shared behind one `Arc`.
pub(crate) struct Shared<R> {
    pub(crate) gate: Gate,
    pub(crate) mode: Mode,
    pub(crate) public_origin: Option<Arc<str>>,
    pub(crate) respond: Arc<R>,
}

impl<R> fmt::Debug for Shared<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateConfig")
            .field("gate", &self.gate)
            .field("mode", &self.mode)
            .field("public_origin", &self.public_origin)
            .finish_non_exhaustive()
    }
}

/// The public origin given to [`GateLayer::public_origin`] is not `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin {
    origin: String,
}

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a public origin such as https://hooks.example.com (scheme, host, \
             optional port, no path)",
            self.origin
        )
    }
}

impl std::error::Error for InvalidOrigin {}

fn parse_origin(origin: &str) -> Result<Arc<str>, InvalidOrigin> {
    let invalid = || InvalidOrigin {
        origin: origin.to_owned(),
    };
    let trimmed = origin.strip_suffix('/').unwrap_or(origin);
    let uri: http::Uri = trimmed.parse().map_err(|_| invalid())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let path_empty = uri
        .path_and_query()
        .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/");
    let authority_ok = uri
        .authority()
        .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'));
    if scheme_ok && path_empty && authority_ok && !trimmed.ends_with('/') {
        Ok(Arc::from(trimmed))
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in [
            "https://hooks.example.com",
            "https://hooks.example.com/",
            "http://127.0.0.1:8080",
        ] {
            let parsed = parse_origin(ok).unwrap();
            assert!(!parsed.ends_with('/'), "{parsed}");
        }
        for bad in [
            "",
            "hooks.example.com",
            "ftp://hooks.example.com",
            "https://hooks.example.com/webhooks",
            "https://hooks.example.com?x=1",
            "https://user@hooks.example.com",
            "https://hooks.example.com//",
        ] {
            let error = parse_origin(bad).unwrap_err();
            assert!(error.to_string().contains("public origin"), "{bad}");
        }
    }
}
