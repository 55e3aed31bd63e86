//! Reads one field out of a JSON body without building the whole document.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
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

/// Every top-level member named `field` of the JSON object `body`: where its value is
/// (a byte range of `body`) and the value's text (strings unescaped, numbers as written;
/// `None` for any other type). `None` when `body` is not one JSON object.
pub(crate) fn top_level_members(
    body: &[u8],
    field: &str,
) -> Option<Vec<(Range<usize>, Option<String>)>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let raws = Members { field }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    raws.into_iter()
        .map(|raw| {
            let value = match serde_json::from_str::<serde_json::Value>(raw.get()).ok()? {
                serde_json::Value::String(text) => Some(text),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            };
            Some((span_in(body, raw)?, value))
        })
        .collect()
}

/// Where each element of the JSON array `array` is: byte ranges of `array`, in order.
/// `None` when `array` is not one JSON array.
pub(crate) fn array_elements(array: &[u8]) -> Option<Vec<Range<usize>>> {
    let elements: Vec<&RawValue> = serde_json::from_slice(array).ok()?;
    elements
        .into_iter()
        .map(|raw| span_in(array, raw))
        .collect()
}

/// Where the values of the members named `field` are, as byte ranges of `body`, in every
/// object that is an element of the JSON array `body` (one level down: deeper members are not
/// looked at), in order. `None` when `body` is not one JSON array.
pub(crate) fn element_member_spans(body: &[u8], field: &str) -> Option<Vec<Range<usize>>> {
    let elements: Vec<&RawValue> = serde_json::from_slice(body).ok()?;
    let mut spans = Vec::new();
    for element in elements {
        let text = element.get();
        if !text.starts_with('{') {
            continue;
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        for raw in (Members { field }).deserialize(&mut deserializer).ok()? {
            spans.push(span_in(body, raw)?);
        }
    }
    Some(spans)
}

/// Where `raw`, which borrows from `body`, lies in it: its offset is the difference of the
/// addresses.
fn span_in(body: &[u8], raw: &RawValue) -> Option<Range<usize>> {
    let text = raw.get();
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(text.len())?;
    (end <= body.len()).then_some(start..end)
}

/// Visits one JSON object, keeping the raw values of the members named `field`, in order.
struct Members<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.field {
                found.push(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
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

    #[test]
    fn top_level_members_give_every_occurrence_with_its_span() {
        let body = br#"{"a":{"passcode":"nested"}, "passcode" : "p\u0061ss","n":1,"passcode":7}"#;
        let found = top_level_members(body, "passcode").unwrap();
        assert_eq!(found.len(), 2);
        let spans: Vec<&[u8]> = found
            .iter()
            .map(|(range, _)| body.get(range.clone()).unwrap())
            .collect();
        assert_eq!(spans, [&br#""p\u0061ss""#[..], &b"7"[..]]);
        assert_eq!(found[0].1.as_deref(), Some("pass"));
        assert_eq!(found[1].1.as_deref(), Some("7"));
        assert_eq!(
            top_level_members(br#"{"x":1}"#, "passcode"),
            Some(Vec::new())
        );
        assert_eq!(
            top_level_members(br#"{"passcode":null}"#, "passcode").unwrap()[0].1,
            None
        );
        assert_eq!(top_level_members(b"[1]", "passcode"), None);
        assert_eq!(
            top_level_members(br#"{"passcode":"a"} x"#, "passcode"),
            None
        );
        assert_eq!(top_level_members(b"not json", "passcode"), None);
    }

    #[test]
    fn array_elements_give_each_span_in_order() {
        let array = br#"[ {"a":1} ,"x\"y", [2] ,3]"#;
        let spans = array_elements(array).unwrap();
        let texts: Vec<&[u8]> = spans
            .iter()
            .map(|range| array.get(range.clone()).unwrap())
            .collect();
        assert_eq!(texts, [&br#"{"a":1}"#[..], br#""x\"y""#, b"[2]", b"3"]);
        assert_eq!(array_elements(b"[]"), Some(Vec::new()));
        assert_eq!(array_elements(br#"{"a":1}"#), None);
        assert_eq!(array_elements(b"[1] x"), None);
    }

    #[test]
    fn element_member_spans_find_the_members_of_each_object_in_the_array() {
        let body = br#"[{"a":1,"n":0},7,{"n" : "x","b":{"n":2}},{"m":1},{"n":null,"n":3}]"#;
        let spans = element_member_spans(body, "n").unwrap();
        let values: Vec<&[u8]> = spans
            .iter()
            .map(|range| body.get(range.clone()).unwrap())
            .collect();
        // The nested `"n":2` is not an element's own member.
        assert_eq!(values, [&b"0"[..], br#""x""#, b"null", b"3"]);
        assert_eq!(element_member_spans(b"[]", "n"), Some(Vec::new()));
        assert_eq!(element_member_spans(br#"{"n":1}"#, "n"), None);
        assert_eq!(element_member_spans(br#"[{"n":1}] x"#, "n"), None);
        assert_eq!(element_member_spans(b"not json", "n"), None);
    }
}
