//! The body types the middleware produces: the raw body handed to the inner service after
//! verification, and the response body.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// The request body the inner service receives in verify-only mode: the raw body, byte for
/// byte as the sender sent it and as it was verified, already in memory.
///
/// It is an ordinary [`http_body::Body`] (one data frame, then the end), so axum's `Bytes`,
/// `String` or `Json` extractors read it as usual; plain tower services can also take the
/// bytes without polling with [`into_bytes`](Self::into_bytes).
#[derive(Clone, Default)]
pub struct RawBody {
    bytes: Option<Bytes>,
}

impl RawBody {
    /// A body holding `bytes`.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        RawBody {
            bytes: (!bytes.is_empty()).then_some(bytes),
        }
    }

    /// The bytes not yet read (all of them, unless the body was polled).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    /// Takes the bytes not yet read (all of them, unless the body was polled).
    pub fn into_bytes(self) -> Bytes {
        self.bytes.unwrap_or_default()
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.bytes.take().map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(u64::try_from(self.as_bytes().len()).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for RawBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may hold personal data: show its size only.
        f.debug_struct("RawBody")
            .field("len", &self.as_bytes().len())
            .finish()
    }
}

pin_project! {
    /// The response body of [`GateService`](crate::GateService): the inner service's body
    /// when it answered, or the short body of a response the middleware made itself (the
    /// outcome's code, or what a custom [`Respond`](crate::Respond) returned).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Answer { bytes: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn answer(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Answer {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Answer { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Answer { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Answer { bytes } => SizeHint::with_exact(
                bytes
                    .as_ref()
                    .map_or(0, |b| u64::try_from(b.len()).unwrap_or(u64::MAX)),
            ),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Answer { .. } => "middleware",
        };
        f.debug_struct("ResponseBody").field("from", &from).finish()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, Empty};

    use super::*;

    #[tokio::test]
    async fn a_raw_body_yields_its_bytes_once() {
        let body = RawBody::new("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert_eq!(format!("{body:?}"), "RawBody { len: 5 }");
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "hello");

        let empty = RawBody::new(Bytes::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.into_bytes(), "");
    }

    #[tokio::test]
    async fn a_response_body_is_either_side() {
        let answer = ResponseBody::<Empty<Bytes>>::answer(Bytes::from_static(b"accepted"));
        assert_eq!(answer.size_hint().exact(), Some(8));
        assert_eq!(answer.collect().await.unwrap().to_bytes(), "accepted");
        let inner = ResponseBody::inner(Empty::<Bytes>::new());
        assert!(inner.is_end_stream());
        assert!(format!("{inner:?}").contains("inner"));
    }
}
