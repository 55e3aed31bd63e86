//! actix-web's header map seen through [`hookgate::Headers`].

use actix_web::http::header::HeaderMap;

/// actix-web's request headers as [`hookgate::Headers`], so a [`Verifier`](hookgate::Verifier)
/// or a [`Gate`](hookgate::Gate) can read them directly.
///
/// actix-web 4 has its own header map (on `http` 0.2), which hookgate's trait cannot be
/// implemented for from here; this borrowed view is the bridge.
///
/// ```
/// use actix_web::test::TestRequest;
/// use hookgate::Headers as _;
/// use hookgate_actix::ActixHeaders;
///
/// let req = TestRequest::default()
///     .insert_header(("X-Hub-Signature-256", "sha256=00"))
///     .to_http_request();
/// let headers = ActixHeaders::new(req.headers());
/// assert_eq!(headers.get_all("x-hub-signature-256"), vec![b"sha256=00".as_slice()]);
/// assert!(headers.get_all("not a header name").is_empty());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(&'a HeaderMap);

impl<'a> ActixHeaders<'a> {
    /// A view of `headers`.
    pub fn new(headers: &'a HeaderMap) -> Self {
        ActixHeaders(headers)
    }

    /// The header map viewed.
    pub fn inner(&self) -> &'a HeaderMap {
        self.0
    }
}

impl hookgate::Headers for ActixHeaders<'_> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        let mut values = Vec::new();
        self.visit(name, &mut |value| {
            values.push(value);
            true
        });
        values
    }

    /// Walks the map instead of looking `name` up: parsing a lookup name into an `http` 0.2
    /// `HeaderName` allocates for every non-standard header, and requests have few headers.
    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        let map: &'a HeaderMap = self.0;
        for (key, value) in map {
            if key.as_str().eq_ignore_ascii_case(name) && !visit(value.as_bytes()) {
                break;
            }
        }
    }

    /// One walk for all the names.
    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        let map: &'a HeaderMap = self.0;
        for (key, value) in map {
            let wanted = names
                .iter()
                .position(|name| key.as_str().eq_ignore_ascii_case(name));
            if let Some(index) = wanted {
                if !visit(index, value.as_bytes()) {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};
    use hookgate::Headers as _;

    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_repeats_in_order() {
        let mut map = HeaderMap::new();
        let name = HeaderName::from_static("webhook-id");
        map.append(name.clone(), HeaderValue::from_static("a"));
        map.append(name, HeaderValue::from_static("b"));
        let headers = ActixHeaders::new(&map);
        assert_eq!(
            headers.get_all("Webhook-ID"),
            vec![b"a".as_slice(), b"b".as_slice()]
        );
        assert!(headers.get_all("webhook-signature").is_empty());
        assert!(headers.get_all("").is_empty());
        assert_eq!(headers.inner().len(), 2);

        let mut seen = Vec::new();
        headers.visit("WEBHOOK-ID", &mut |value| {
            seen.push(value);
            false
        });
        assert_eq!(seen, vec![b"a".as_slice()], "visiting stops when told to");
    }

    #[test]
    fn values_are_passed_on_byte_for_byte() {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static("x-sig"),
            HeaderValue::from_bytes(b"v1,\xe9t\xe9").unwrap(),
        );
        assert_eq!(
            ActixHeaders::new(&map).get_all("x-sig"),
            vec![b"v1,\xe9t\xe9".as_slice()]
        );
    }
}
