//! Read-only access to request headers, whatever HTTP library the caller uses.

use std::collections::HashMap;

/// Request headers, looked up by name case-insensitively.
///
/// Implemented for [`http::HeaderMap`] (tower, axum, hyper, reqwest), for slices, arrays and
/// vectors of `(name, value)` pairs and for `HashMap<String, String>`; the actix adapter
/// implements it for actix-web's header map. A header that appears several times yields
/// several values, in order.
pub trait Headers {
    /// Every value of header `name` (matched ASCII case-insensitively), in order.
    fn get_all(&self, name: &str) -> Vec<&[u8]>;
}

impl Headers for http::HeaderMap {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        http::HeaderMap::get_all(self, name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().as_bytes())
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Headers for [(K, V); N] {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.as_slice().get_all(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.as_slice().get_all(name)
    }
}

impl<S: std::hash::BuildHasher> Headers for HashMap<String, String, S> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect()
    }
}

impl<H: Headers + ?Sized> Headers for &H {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        (**self).get_all(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_repeats() {
        let pairs = [("X-Sig", "a"), ("x-sig", "b"), ("Other", "c")];
        assert_eq!(
            pairs.get_all("X-SIG"),
            vec![b"a".as_slice(), b"b".as_slice()]
        );

        let mut map = http::HeaderMap::new();
        map.append("x-sig", http::HeaderValue::from_static("a"));
        map.append("x-sig", http::HeaderValue::from_static("b"));
        assert_eq!(Headers::get_all(&map, "X-Sig").len(), 2);
        assert!(Headers::get_all(&map, "missing").is_empty());
    }
}
