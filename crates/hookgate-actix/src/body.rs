//! Reading a request body under the gate's limit: `Content-Length` first, then a running
//! count while streaming, never an allocation sized by what the client claims.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

/// Why a body could not be collected.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the limit: declared by `Content-Length` or seen while streaming.
    TooLarge,
    /// The stream failed (client gone, malformed chunked encoding, …).
    Unreadable(PayloadError),
}

/// Whether `Content-Length` announces more than `limit` bytes (a number too long for a
/// `u64` does too). An absent or unreadable header says nothing: actix-web has already
/// refused a malformed one, and the streamed count still applies.
pub(crate) fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let Some(value) = headers.get(CONTENT_LENGTH) else {
        return false;
    };
    let digits = value.as_bytes().trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|digits| digits.parse::<u64>().ok())
        .is_none_or(|declared| declared > limit)
}

/// Collects the body, stopping as soon as it passes `limit` bytes. A body that arrives in
/// one chunk (the usual case) is passed on without a copy.
pub(crate) async fn read_limited(payload: &mut Payload, limit: usize) -> Result<Bytes, BodyError> {
    let mut collected = Collected::Empty;
    let mut len: usize = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(BodyError::Unreadable)?;
        len = len
            .checked_add(chunk.len())
            .filter(|total| *total <= limit)
            .ok_or(BodyError::TooLarge)?;
        collected = collected.push(chunk);
    }
    Ok(collected.into_bytes())
}

/// The chunks read so far.
enum Collected {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Collected {
    fn push(self, chunk: Bytes) -> Self {
        match self {
            Collected::Empty => Collected::One(chunk),
            Collected::One(first) => {
                let mut many = BytesMut::from(first.as_ref());
                many.extend_from_slice(&chunk);
                Collected::Many(many)
            }
            Collected::Many(mut many) => {
                many.extend_from_slice(&chunk);
                Collected::Many(many)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Collected::Empty => Bytes::new(),
            Collected::One(bytes) => bytes,
            Collected::Many(many) => many.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use futures_util::stream;

    type BoxedPayloadStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>>;

    use super::*;

    fn payload_of(chunks: &[&'static [u8]]) -> Payload {
        let items: Vec<Result<Bytes, PayloadError>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk)))
            .collect();
        Payload::from(Box::pin(stream::iter(items)) as BoxedPayloadStream)
    }

    fn with_length(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn content_length_is_compared_without_overflow() {
        assert!(!declared_too_large(&HeaderMap::new(), 10));
        assert!(!declared_too_large(&with_length("10"), 10));
        assert!(declared_too_large(&with_length("11"), 10));
        assert!(declared_too_large(
            &with_length("18446744073709551615"),
            usize::MAX - 1
        ));
        assert!(declared_too_large(
            &with_length("99999999999999999999999"),
            10
        ));
        assert!(!declared_too_large(&with_length("ten"), 10));
    }

    #[tokio::test]
    async fn chunks_are_collected_up_to_the_limit_and_not_one_byte_more() {
        let mut payload = payload_of(&[b"hello ", b"world"]);
        let body = read_limited(&mut payload, 11).await.unwrap();
        assert_eq!(body, "hello world");

        let mut payload = payload_of(&[b"hello ", b"world"]);
        assert!(matches!(
            read_limited(&mut payload, 10).await,
            Err(BodyError::TooLarge)
        ));

        let mut payload = payload_of(&[b"one chunk"]);
        assert_eq!(read_limited(&mut payload, 9).await.unwrap(), "one chunk");

        let mut payload = payload_of(&[]);
        assert!(read_limited(&mut payload, 1).await.unwrap().is_empty());

        let mut payload = payload_of(&[b"a", b"b", b"c"]);
        assert_eq!(read_limited(&mut payload, 3).await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn a_failing_stream_is_unreadable() {
        let items: Vec<Result<Bytes, PayloadError>> = vec![
            Ok(Bytes::from_static(b"x")),
            Err(PayloadError::Incomplete(None)),
        ];
        let mut payload = Payload::from(Box::pin(stream::iter(items)) as BoxedPayloadStream);
        assert!(matches!(
            read_limited(&mut payload, 100).await,
            Err(BodyError::Unreadable(_))
        ));
    }
}
