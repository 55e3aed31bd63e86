//! What keeps slow and abusive clients from holding `hookgate serve` hostage.
//!
//! - A **header deadline**: a client that sends its request head too slowly is
//!   disconnected (hyper's header read timeout).
//! - A **body deadline**: a request body that is not complete within it (trickled a byte at
//!   a time) is answered `408 body_timeout` and the connection closed; nothing is stored.
//! - A **connection cap** and an **in-flight cap**: beyond them a client is answered `503
//!   over_capacity` with `Retry-After` at once, never put in an unbounded queue.
//! - A **lingering close**: when a connection closes while the client may still be sending
//!   (a 413 answered from `Content-Length` before the body was read, a 408), the write side
//!   is shut first and what the client sends is read and discarded for a bounded time and
//!   amount. Closing a socket with unread data makes the kernel send a reset, which can
//!   destroy the answer before the client reads it; lingering lets it read the status.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// The default deadline for a request's headers.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The default body deadline.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of open connections.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The default number of webhook requests being answered at once.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// How long a closing connection is drained at most.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// How many bytes a closing connection is drained at most.
const LINGER_BYTES: usize = 64 * 1024 * 1024;
/// Connections over the cap that are answered 503 at once; beyond these, they are closed
/// without an answer (a flood must not grow the number of tasks).
const MAX_REFUSALS: usize = 64;
/// The reason code of a body that missed its deadline.
pub(crate) const BODY_TIMEOUT: &str = "body_timeout";
/// The reason code of a request over the connection or in-flight cap.
pub(crate) const OVER_CAPACITY: &str = "over_capacity";
/// Seconds a sender is told to wait when over capacity.
pub(crate) const RETRY_AFTER_SECONDS: &str = "1";
/// Requests refused before they reached an endpoint's gate. Label: `reason`
/// (`body_timeout`, `over_capacity`).
pub(crate) const REFUSED_METRIC: &str = "hookgate_serve_refused_total";

/// The limits of one `serve` process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl Limits {
    /// Checks the values a user gave.
    pub(crate) fn check(self) -> Result<Limits, String> {
        if self.body_timeout.is_zero() || self.header_timeout.is_zero() {
            return Err("the header and body timeouts must not be zero".to_owned());
        }
        if self.max_connections == 0 || self.max_in_flight == 0 {
            return Err("the connection and in-flight limits must be at least 1".to_owned());
        }
        Ok(self)
    }
}

/// Counts open connections; a permit is held for a connection's lifetime.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSlots {
    open: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

impl ConnectionSlots {
    pub(crate) fn new(max: usize) -> Self {
        ConnectionSlots {
            open: Arc::new(Semaphore::new(max)),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
        }
    }

    /// A slot for a new connection, or `None` when all are taken.
    pub(crate) fn try_open(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.open).try_acquire_owned().ok()
    }

    /// Answers a connection over the cap with `503 over_capacity` and closes it, in a task
    /// of its own (at most [`MAX_REFUSALS`] at once; beyond, the connection is just closed).
    pub(crate) fn refuse<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        metrics::counter!(REFUSED_METRIC, "reason" => OVER_CAPACITY).increment(1);
        let Ok(permit) = Arc::clone(&self.refusals).try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let mut stream = LingeringIo::new(stream);
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
                 retry-after: {RETRY_AFTER_SECONDS}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n\
                 {OVER_CAPACITY}\n",
                OVER_CAPACITY.len().saturating_add(1)
            );
            let _ = tokio::time::timeout(LINGER_TIME, async {
                stream.write_all(answer.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
            drop(permit);
        });
    }
}

/// The in-flight cap: a permit per webhook request being answered.
#[derive(Debug, Clone)]
pub(crate) struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub(crate) fn new(max: usize) -> Self {
        InFlight(Arc::new(Semaphore::new(max)))
    }

    /// A permit, or `None` when the cap is reached.
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.0).try_acquire_owned().ok()
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes.
#[derive(Debug)]
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must be complete within `limit` from now.
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body was not complete before the body deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyTimedOut;

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body was not complete before the body deadline")
    }
}

impl StdError for BodyTimedOut {}

/// Whether `error` (or what it wraps) is a missed body deadline.
pub(crate) fn is_body_timeout(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// A connection whose shutdown shuts the write side, then reads and discards what the
/// client still sends (until it closes, [`LINGER_TIME`] passes or [`LINGER_BYTES`] were
/// read), so that closing does not reset the connection under the client's feet.
#[derive(Debug)]
pub(crate) struct LingeringIo<T> {
    inner: T,
    closing: Closing,
}

#[derive(Debug)]
enum Closing {
    Open,
    Draining {
        until: Pin<Box<Sleep>>,
        drained: usize,
        scratch: Box<[u8]>,
    },
    Closed,
}

impl<T> LingeringIo<T> {
    pub(crate) fn new(inner: T) -> Self {
        LingeringIo {
            inner,
            closing: Closing::Open,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LingeringIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.closing {
                Closing::Open => {
                    // The answer is out and the client sees the end of it.
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.closing = Closing::Draining {
                        until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        drained: 0,
                        scratch: vec![0; 16 * 1024].into_boxed_slice(),
                    };
                }
                Closing::Draining {
                    until,
                    drained,
                    scratch,
                } => {
                    if until.as_mut().poll(cx).is_ready() || *drained >= LINGER_BYTES {
                        this.closing = Closing::Closed;
                        continue;
                    }
                    let mut buf = ReadBuf::new(scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => {
                            *drained = drained.saturating_add(buf.filled().len());
                        }
                        // The client closed its side (or the connection broke): done.
                        Ok(()) | Err(_) => this.closing = Closing::Closed,
                    }
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;
    use tokio::io::AsyncReadExt as _;

    use super::*;

    /// A trickling sender: one part, then nothing more, ever.
    struct OnePartThenStall(bool);

    impl Body for OnePartThenStall {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            if self.0 {
                return Poll::Pending;
            }
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_its_deadline_fails_with_body_timed_out() {
        let mut body = DeadlineBody::new(OnePartThenStall(false), Duration::from_secs(10));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "part");
        // Nothing more arrives: the (paused) clock runs to the deadline.
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(&*error), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_body_is_passed_through() {
        let body = http_body_util::Full::new(Bytes::from_static(b"whole"));
        let body = DeadlineBody::new(body.map_err(|never| match never {}), Duration::from_secs(1));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "whole");
    }

    /// What `hookgate-tower` puts in the response: an error whose source is the body's.
    #[derive(Debug)]
    struct Wrapper(Box<dyn StdError + Send + Sync>);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_wrapped_timeout_is_recognised_and_others_are_not() {
        assert!(is_body_timeout(&Wrapper(Box::new(BodyTimedOut))));
        assert!(!is_body_timeout(&Wrapper("reset".into())));
    }

    #[tokio::test]
    async fn lingering_shutdown_reads_what_the_peer_still_sends_then_closes() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut server = LingeringIo::new(server);
        let closing = tokio::spawn(async move { server.shutdown().await });
        // The peer sees the end of the answer, and its late bytes are consumed.
        let mut rest = Vec::new();
        client.write_all(b"late body bytes").await.unwrap();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[test]
    fn limits_must_be_positive() {
        assert!(Limits::default().check().is_ok());
        let zero = Limits {
            body_timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(zero.check().is_err());
        let none = Limits {
            max_in_flight: 0,
            ..Limits::default()
        };
        assert!(none.check().is_err());
    }
}
