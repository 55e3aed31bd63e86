//! Reads one field out of a JSON body without building the whole document.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

/// The field at `path` (object keys from the root) as text: strings as they are, numbers in
/// their JSON form; `None` for anything else or a body that is not a JSON object.
pub(crate) fn field(body: &[u8], path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut current: Box<RawValue> = serde_json::from_slice(body).ok()?;
    for key in parents {
        let next = {
            let object: HashMap<Cow<'_, str>, &RawValue> =
                serde_json::from_str(current.get()).ok()?;
            RawValue::to_owned(object.get(*key)?)
        };
        current = next;
    }
    let object: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_str(current.get()).ok()?;
    let leaf = object.get(*last)?;
    match serde_json::from_str::<serde_json::Value>(leaf.get()).ok()? {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The first of `paths` that yields a field.
pub(crate) fn first_field(body: &[u8], paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| field(body, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_strings_and_numbers() {
        let body = br#"{"id":"evt_1","event":{"type":"message","n":3},"x":null}"#;
        assert_eq!(field(body, &["id"]).as_deref(), Some("evt_1"));
        assert_eq!(field(body, &["event", "type"]).as_deref(), Some("message"));
        assert_eq!(field(body, &["event", "n"]).as_deref(), Some("3"));
        assert_eq!(field(body, &["x"]), None);
        assert_eq!(field(body, &["missing"]), None);
        assert_eq!(field(b"not json", &["id"]), None);
        assert_eq!(field(b"[1]", &["id"]), None);
        assert_eq!(
            first_field(body, &[&["nope"], &["id"]]).as_deref(),
            Some("evt_1")
        );
    }
}
