//! Splitting the fuzzer's bytes into fields, and building headers in both forms hookgate
//! accepts.

use http::{HeaderMap, HeaderName, HeaderValue};

/// `data` split on `\n` into exactly `n` fields (missing ones empty); the last field keeps
/// the rest of the input, newlines included.
pub(crate) fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n.max(1), |b| *b == b'\n').collect();
    out.resize(n.max(1), &[]);
    out
}

/// Headers as `(name, value)` strings (values decoded lossily: the pair form only carries
/// UTF-8) and, when every value is a valid HTTP header value, as an [`HeaderMap`] too.
pub(crate) struct BothForms {
    pub(crate) pairs: Vec<(String, String)>,
    pub(crate) map: Option<HeaderMap>,
    /// Both forms carry the same bytes (every value is UTF-8), so they must get the same
    /// answer.
    pub(crate) comparable: bool,
}

pub(crate) fn both_forms(headers: &[(&str, &[u8])]) -> BothForms {
    let pairs = headers
        .iter()
        .map(|(name, value)| {
            (
                (*name).to_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect();
    let comparable = headers
        .iter()
        .all(|(_, value)| std::str::from_utf8(value).is_ok());
    let mut map = Some(HeaderMap::new());
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            (Ok(name), Ok(value)) => {
                if let Some(map) = map.as_mut() {
                    map.append(name, value);
                }
            }
            _ => map = None,
        }
    }
    BothForms {
        pairs,
        map,
        comparable,
    }
}

/// `Name: value` lines up to the first empty line, then the body. Lines that are not a valid
/// HTTP header are dropped, as a server would never hand them over.
pub(crate) fn http_request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        _ if data.first() == Some(&b'\n') => (&[][..], data.get(1..).unwrap_or_default()),
        Some(at) => (
            data.get(..at).unwrap_or_default(),
            data.get(at.saturating_add(2)..).unwrap_or_default(),
        ),
        None => (data, &[][..]),
    };
    let mut map = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        let value = line
            .get(colon.saturating_add(1)..)
            .unwrap_or_default()
            .trim_ascii();
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    (map, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_the_rest_in_the_last_one() {
        assert_eq!(fields(b"a\nb\nc\nd", 3), vec![&b"a"[..], b"b", b"c\nd"]);
        assert_eq!(fields(b"a", 3), vec![&b"a"[..], b"", b""]);
        assert_eq!(fields(b"", 1), vec![&b""[..]]);
    }

    #[test]
    fn requests_split_at_the_first_empty_line() {
        let (map, body) = http_request(b"X-A: 1\nbad line\n\xff: 2\nX-B:2\n\nbody\n\nmore");
        assert_eq!(map.len(), 2);
        assert_eq!(body, b"body\n\nmore");
        let (map, body) = http_request(b"\nbody: not a header");
        assert!(map.is_empty());
        assert_eq!(body, b"body: not a header");
        let forms = both_forms(&[("x", b"\xff")]);
        assert!(forms.map.is_some());
        assert!(!forms.comparable);
        let forms = both_forms(&[("x", b"\r")]);
        assert!(forms.map.is_none());
        assert_eq!(forms.pairs.len(), 1);
    }
}
