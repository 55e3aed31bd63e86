//! The middleware service.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use hookgate::Gate;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;
use crate::body::{RawBody, ResponseBody};
use crate::future::ResponseFuture;
use crate::layer::{GateLayer, Mode, Shared};
use crate::respond::DefaultRespond;

/// Verifies webhook deliveries with a [`Gate`] before (or instead of) the inner service:
/// see the [crate documentation](crate). Usually made by [`GateLayer`].
///
/// Request bodies of any [`http_body::Body`] type are accepted; the inner service receives
/// `http::Request<`[`RawBody`]`>` (verify-only mode only: in gate mode it is never called).
/// Responses are `http::Response<`[`ResponseBody<B>`](ResponseBody)`>`, `B` being the inner
/// service's body. Every rejection is a response: the error type is the inner service's,
/// and the middleware itself never fails.
pub struct GateService<S, R = DefaultRespond> {
    inner: S,
    shared: Arc<Shared<R>>,
}

impl<S> GateService<S> {
    /// Gate mode around `inner`, with the default responses; see [`GateLayer::new`].
    pub fn new(inner: S, gate: Gate) -> Self {
        GateLayer::new(gate).layer_service(inner)
    }

    /// Verify-only mode around `inner`; see [`GateLayer::verify_only`].
    pub fn verify_only(inner: S, gate: Gate) -> Self {
        GateLayer::verify_only(gate).layer_service(inner)
    }

    /// A layer in gate mode, the same as [`GateLayer::new`].
    pub fn layer(gate: Gate) -> GateLayer {
        GateLayer::new(gate)
    }
}

impl<S, R> GateService<S, R> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<R>>) -> Self {
        GateService { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The gate.
    pub fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }
}

impl<R> GateLayer<R> {
    fn layer_service<S>(&self, inner: S) -> GateService<S, R> {
        GateService::from_shared(inner, self.shared())
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for GateService<S, R>
where
    S: Service<Request<RawBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Data: Buf,
    ReqBody::Error: Into<BoxError>,
    R: crate::Respond,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Verify-only mode: the service that was polled ready goes into the future, and this
        // one keeps a clone. Gate mode answers every request itself and never calls it.
        let inner = (self.shared.mode == Mode::VerifyOnly).then(|| {
            let clone = self.inner.clone();
            mem::replace(&mut self.inner, clone)
        });
        ResponseFuture::new(request, inner, Arc::clone(&self.shared))
    }
}

impl<S: Clone, R> Clone for GateService<S, R> {
    fn clone(&self) -> Self {
        GateService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for GateService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateService")
            .field("inner", &self.inner)
            .field("config", &self.shared)
            .finish()
    }
}
