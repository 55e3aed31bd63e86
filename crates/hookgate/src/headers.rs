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

    /// Calls `visit(i, value)` with each value of each header named `names[i]` (matched ASCII
    /// case-insensitively), until it returns `false`. Values of one name come in order; the
    /// order between names is the implementation's.
    ///
    /// The default visits the names one after the other; a map that can walk all its headers
    /// once ([`http::HeaderMap`], slices of pairs) overrides it, which is cheaper than one
    /// lookup per name when a scheme reads several headers.
    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        let mut going = true;
        for (index, name) in names.iter().enumerate() {
            self.visit(name, &mut |value| {
                going = visit(index, value);
                going
            });
            if !going {
                break;
            }
        }
    }
}

/// The position in `names` of `name`, matched ASCII case-insensitively.
fn position(names: &[&str], name: &str) -> Option<usize> {
    names
        .iter()
        .position(|wanted| wanted.len() == name.len() && wanted.eq_ignore_ascii_case(name))
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

    // One walk over the map instead of one hashed lookup per name (each parses the name).
    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        for (name, value) in self {
            if let Some(index) = position(names, name.as_str()) {
                if !visit(index, value.as_bytes()) {
                    break;
                }
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

    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        for (key, value) in self {
            if let Some(index) = position(names, key.as_ref()) {
                if !visit(index, value.as_ref().as_bytes()) {
                    break;
                }
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

    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        self.as_slice().visit_names(names, visit);
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.as_slice().get_all(name)
    }

    fn visit<'a>(&'a self, name: &str, visit: &mut dyn FnMut(&'a [u8]) -> bool) {
        self.as_slice().visit(name, visit);
    }

    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        self.as_slice().visit_names(names, visit);
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

    fn visit_names<'a>(&'a self, names: &[&str], visit: &mut dyn FnMut(usize, &'a [u8]) -> bool) {
        (**self).visit_names(names, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every implementation finds the same values for the same names, one walk or not.
    #[test]
    fn visit_names_matches_one_visit_per_name() {
        let pairs = vec![
            ("Webhook-Id", "a"),
            ("other", "x"),
            ("webhook-signature", "s1"),
            ("WEBHOOK-ID", "b"),
            ("webhook-signature", "s2"),
        ];
        let mut map = http::HeaderMap::new();
        for (name, value) in &pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_static(value),
            );
        }
        let mut hash = HashMap::new();
        hash.insert("Webhook-Id".to_owned(), "a".to_owned());
        let names = ["webhook-id", "webhook-signature", "absent"];
        let collect = |headers: &dyn Headers| {
            let mut seen = vec![Vec::new(); names.len()];
            headers.visit_names(&names, &mut |index, value| {
                seen[index].push(value.to_vec());
                true
            });
            seen
        };
        let by_name = |headers: &dyn Headers| {
            names
                .iter()
                .map(|name| headers.get_all(name).iter().map(|v| v.to_vec()).collect())
                .collect::<Vec<Vec<Vec<u8>>>>()
        };
        let slice = pairs.as_slice();
        let array = [pairs[0], pairs[1], pairs[2], pairs[3], pairs[4]];
        for headers in [&map as &dyn Headers, &pairs, &slice, &array, &hash] {
            assert_eq!(collect(headers), by_name(headers));
        }
        assert_eq!(collect(&map)[0], vec![b"a".to_vec(), b"b".to_vec()]);

        // Stopping early stops the whole walk.
        let mut calls = 0;
        map.visit_names(&names, &mut |_, _| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1);
    }

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
