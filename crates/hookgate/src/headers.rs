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

    /// Calls `visit` with each value of `name`, in order, until it returns `false`.
    ///
    /// The default goes through [`get_all`](Headers::get_all); implementations override it to
    /// avoid allocating on the request path.
    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        for value in self.get_all(name) {
            if !visit(value) {
                break;
            }
        }
    }
}

impl Headers for http::HeaderMap {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        http::HeaderMap::get_all(self, name)
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect()
    }

    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        for value in http::HeaderMap::get_all(self, name) {
            if !visit(value.as_bytes()) {
                break;
            }
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().as_bytes())
            .collect()
    }

    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        for (key, value) in self {
            if key.as_ref().eq_ignore_ascii_case(name) && !visit(value.as_ref().as_bytes()) {
                break;
            }
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Headers for [(K, V); N] {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.as_slice().get_all(name)
    }

    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        self.as_slice().visit(name, visit);
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.as_slice().get_all(name)
    }

    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        self.as_slice().visit(name, visit);
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

    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        (**self).visit(name, visit);
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

        let mut seen = Vec::new();
        map.visit("X-SIG", &mut |v| {
            seen.push(v);
            false
        });
        assert_eq!(seen, vec![b"a".as_slice()], "visiting stops when asked");
        let mut seen = Vec::new();
        pairs.visit("x-sig", &mut |v| {
            seen.push(v);
            true
        });
        assert_eq!(seen.len(), 2);
    }
}
