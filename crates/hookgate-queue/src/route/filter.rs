//! Declarative filters: which events a destination wants.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

use super::destination::DestinationError;
use super::glob::Glob;

/// What a filter (and a lane key) reads of an event: its type, the headers kept with it and
/// its raw body.
///
/// The headers are those the gate keeps with the event (the scheme's informational headers,
/// [`Envelope::headers`](crate::Envelope)); a filter on any other header never matches.
///
/// ```
/// use hookgate_queue::EventView;
///
/// let headers = vec![("X-Shopify-Topic".to_owned(), "orders/create".to_owned())];
/// let event = EventView::new(Some("orders/create"), &headers, br#"{"id":1}"#);
/// assert_eq!(event.header("x-shopify-topic").next(), Some("orders/create"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    event_type: Option<&'a str>,
    headers: &'a [(String, String)],
    body: &'a [u8],
}

impl<'a> EventView<'a> {
    /// An event's type (where the scheme carries one), kept headers and raw body.
    pub fn new(
        event_type: Option<&'a str>,
        headers: &'a [(String, String)],
        body: &'a [u8],
    ) -> Self {
        EventView {
            event_type,
            headers,
            body,
        }
    }

    /// The event type, where known.
    pub fn event_type(&self) -> Option<&'a str> {
        self.event_type
    }

    /// The values of the header `name` (compared without regard to case), in order.
    pub fn header<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The raw body.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

impl<'a> From<&'a crate::QueuedEvent> for EventView<'a> {
    fn from(event: &'a crate::QueuedEvent) -> Self {
        EventView::new(event.event_type(), event.headers(), event.body())
    }
}

/// An event being routed: the view plus its body parsed as JSON on first need, so that all
/// of an endpoint's filters and lane keys share one parse (and an event nobody asks about
/// the body of is never parsed).
pub(crate) struct Prepared<'a> {
    pub(crate) view: EventView<'a>,
    json: OnceCell<Option<Value>>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(view: EventView<'a>) -> Self {
        Prepared {
            view,
            json: OnceCell::new(),
        }
    }

    /// The body as JSON, or `None` when it is not JSON.
    pub(crate) fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.view.body).ok())
            .as_ref()
    }

    #[cfg(test)]
    pub(crate) fn parsed(&self) -> bool {
        self.json.get().is_some()
    }
}

/// A filter as written in the configuration; [`EventFilter::compile`] turns it into a
/// matcher.
///
/// Every key given must hold (they combine with "and"); the keys are:
///
/// | key | value | holds when |
/// |---|---|---|
/// | `type` | a glob or a list of globs | the event type matches one of them (an event without a type never matches) |
/// | `header` | a table: header name → glob or list of globs | for every named header, some value of it matches one of its globs (names ignore case; a missing header fails) |
/// | `body` | a table: JSON Pointer → value or list of values | for every pointer, the body's value there equals one of the values, or is an array containing one (a body that is not JSON, or lacks the pointer, fails) |
/// | `any` | a list of filters | at least one of them holds |
/// | `all` | a list of filters | all of them hold |
/// | `not` | a filter | it does not hold |
///
/// Globs know one special character, `*`, which matches any run of characters, `.` and `/`
/// included; type globs and header values are compared with case. Numbers compare by value
/// (`1` equals `1.0`). A list in `body` always means "any of": to test for an array element,
/// give the element alone (an array value contains it) or point at it (`/items/0`); to
/// compare a whole array, wrap it in a list of one (`"/tags" = [["a", "b"]]`). TOML dates
/// are refused: the body is JSON, so write a date as the string it is there.
///
/// ```toml
/// # Stripe invoices and subscriptions, live mode only:
/// filter = { type = ["invoice.*", "customer.subscription.*"], body = { "/livemode" = true } }
///
/// # Shopify orders from either of two shops:
/// filter = { header = { "X-Shopify-Topic" = "orders/*", "X-Shopify-Shop-Domain" = ["a.myshopify.com", "b.myshopify.com"] } }
///
/// # Either a refund, or anything for a customer on the enterprise plan, but never a test event:
/// [endpoint.destination.filter]
/// any = [ { type = "charge.refunded" }, { body = { "/data/object/plan" = "enterprise" } } ]
/// not = { type = "*.test" }
/// ```
///
/// An empty filter, an empty list and an empty table are refused: they are nearly always a
/// mistake (leave `filter` out to take every event).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(rename = "type")]
    event_type: Option<Globs>,
    header: Option<BTreeMap<String, Globs>>,
    body: Option<BTreeMap<String, Value>>,
    any: Option<Vec<FilterSpec>>,
    all: Option<Vec<FilterSpec>>,
    not: Option<Box<FilterSpec>>,
}

/// One glob or a list of them.
#[derive(Debug, Clone, PartialEq)]
struct Globs(Vec<String>);

impl<'de> Deserialize<'de> for Globs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GlobsVisitor;
        impl<'de> Visitor<'de> for GlobsVisitor {
            type Value = Globs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pattern such as \"invoice.*\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Globs, E> {
                Ok(Globs(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Globs, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(Globs(out))
            }
        }
        deserializer.deserialize_any(GlobsVisitor)
    }
}

/// A compiled filter: parsed once at start, then matched against each event.
///
/// ```
/// use hookgate_queue::{EventFilter, EventView, FilterSpec};
///
/// let spec: FilterSpec = serde_json::from_str(
///     r#"{ "type": ["invoice.*"], "body": { "/livemode": true } }"#,
/// ).unwrap();
/// let filter = EventFilter::compile(&spec).unwrap();
///
/// let live = EventView::new(Some("invoice.paid"), &[], br#"{"livemode":true}"#);
/// let test = EventView::new(Some("invoice.paid"), &[], br#"{"livemode":false}"#);
/// let other = EventView::new(Some("charge.failed"), &[], br#"{"livemode":true}"#);
/// assert!(filter.matches(live));
/// assert!(!filter.matches(test));
/// assert!(!filter.matches(other));
/// ```
#[derive(Debug, Clone)]
pub struct EventFilter {
    condition: Condition,
}

#[derive(Debug, Clone)]
enum Condition {
    Type(Vec<Glob>),
    Header { name: String, any_of: Vec<Glob> },
    Body { pointer: String, any_of: Vec<Value> },
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

impl EventFilter {
    /// Checks and compiles a filter.
    ///
    /// # Errors
    /// The first mistake. Its key is the path from the destination's `filter` key
    /// (`filter.any[2].header`, counting from 1); the problem says what is wrong and what
    /// was expected.
    pub fn compile(spec: &FilterSpec) -> Result<EventFilter, DestinationError> {
        let condition = compile(spec, "filter")
            .map_err(|(key, problem)| DestinationError::new(key, problem))?;
        Ok(EventFilter { condition })
    }

    /// Whether the event passes. A body condition parses the body; to route one event to
    /// several destinations with a single parse, use a [`Router`](crate::Router).
    pub fn matches(&self, event: EventView<'_>) -> bool {
        self.matches_prepared(&Prepared::new(event))
    }

    pub(crate) fn matches_prepared(&self, event: &Prepared<'_>) -> bool {
        self.condition.holds(event)
    }

    /// Whether matching may read the body.
    pub(crate) fn reads_body(&self) -> bool {
        self.condition.reads_body()
    }
}

fn join(prefix: &str, key: &str) -> String {
    format!("{prefix}.{key}")
}

fn compile(spec: &FilterSpec, at: &str) -> Result<Condition, (String, String)> {
    let mut all = Vec::new();
    if let Some(Globs(globs)) = &spec.event_type {
        let key = join(at, "type");
        all.push(Condition::Type(compile_globs(globs, &key)?));
    }
    if let Some(headers) = &spec.header {
        let key = join(at, "header");
        if headers.is_empty() {
            return Err((key, "an empty table: name at least one header".to_owned()));
        }
        for (name, Globs(globs)) in headers {
            check_header_name(name).map_err(|problem| (key.clone(), problem))?;
            let any_of = compile_globs(globs, &format!("{key}.{name}"))?;
            all.push(Condition::Header {
                name: name.to_ascii_lowercase(),
                any_of,
            });
        }
    }
    if let Some(body) = &spec.body {
        let key = join(at, "body");
        if body.is_empty() {
            return Err((
                key,
                "an empty table: give at least one JSON Pointer".to_owned(),
            ));
        }
        for (pointer, expected) in body {
            check_pointer(pointer).map_err(|problem| (key.clone(), problem))?;
            let any_of = match expected {
                Value::Array(values) if values.is_empty() => {
                    return Err((
                        format!("{key}.{pointer}"),
                        "an empty list matches nothing".to_owned(),
                    ));
                }
                Value::Array(values) => values.clone(),
                one => vec![one.clone()],
            };
            if any_of.iter().any(is_toml_date) {
                return Err((
                    format!("{key}.{pointer}"),
                    "a TOML date is not a JSON value: write it as a string".to_owned(),
                ));
            }
            all.push(Condition::Body {
                pointer: pointer.clone(),
                any_of,
            });
        }
    }
    if let Some(list) = &spec.any {
        all.push(Condition::Any(compile_list(list, &join(at, "any"))?));
    }
    if let Some(list) = &spec.all {
        all.push(Condition::All(compile_list(list, &join(at, "all"))?));
    }
    if let Some(inner) = &spec.not {
        all.push(Condition::Not(Box::new(compile(inner, &join(at, "not"))?)));
    }
    match all.len() {
        0 => Err((
            at.to_owned(),
            "an empty filter: give type, header, body, any, all or not (or leave the filter \
             out to take every event)"
                .to_owned(),
        )),
        1 => Ok(all.pop().unwrap_or(Condition::All(Vec::new()))),
        _ => Ok(Condition::All(all)),
    }
}

fn compile_list(list: &[FilterSpec], key: &str) -> Result<Vec<Condition>, (String, String)> {
    if list.is_empty() {
        return Err((
            key.to_owned(),
            "an empty list: give at least one filter".to_owned(),
        ));
    }
    (1_usize..)
        .zip(list)
        .map(|(n, spec)| compile(spec, &format!("{key}[{n}]")))
        .collect()
}

fn compile_globs(globs: &[String], key: &str) -> Result<Vec<Glob>, (String, String)> {
    if globs.is_empty() {
        return Err((key.to_owned(), "an empty list matches nothing".to_owned()));
    }
    globs
        .iter()
        .map(|g| Glob::new(g).map_err(|problem| (key.to_owned(), problem)))
        .collect()
}

/// How a TOML date or time arrives through serde: a table with one private key.
fn is_toml_date(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.keys().any(|k| k.starts_with("$__toml_private")),
        Value::Array(items) => items.iter().any(is_toml_date),
        _ => false,
    }
}

/// A header name: an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``).
pub(crate) fn check_header_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a header name"));
    }
    Ok(())
}

/// A JSON Pointer (RFC 6901) that selects something inside the document: `/a/b`, with `~0`
/// for `~` and `~1` for `/`.
pub(crate) fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') {
        return Err(format!(
            "{pointer:?} is not a JSON Pointer: it starts with / (such as \"/data/object/id\")"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{pointer:?} is not a JSON Pointer: ~ must be written ~0 (and / inside a name ~1)"
            ));
        }
    }
    Ok(())
}

impl Condition {
    fn reads_body(&self) -> bool {
        match self {
            Condition::Body { .. } => true,
            Condition::Type(_) | Condition::Header { .. } => false,
            Condition::All(list) | Condition::Any(list) => list.iter().any(Condition::reads_body),
            Condition::Not(inner) => inner.reads_body(),
        }
    }

    fn holds(&self, event: &Prepared<'_>) -> bool {
        match self {
            Condition::Type(globs) => event
                .view
                .event_type
                .is_some_and(|t| globs.iter().any(|g| g.matches(t))),
            Condition::Header { name, any_of } => event
                .view
                .header(name)
                .any(|value| any_of.iter().any(|g| g.matches(value))),
            Condition::Body { pointer, any_of } => event
                .json()
                .and_then(|json| json.pointer(pointer))
                .is_some_and(|found| any_of.iter().any(|want| contains(found, want))),
            Condition::All(all) => all.iter().all(|c| c.holds(event)),
            Condition::Any(any) => any.iter().any(|c| c.holds(event)),
            Condition::Not(inner) => !inner.holds(event),
        }
    }
}

/// `found` equals `want`, or is an array with an element equal to it.
fn contains(found: &Value, want: &Value) -> bool {
    json_eq(found, want)
        || match found {
            Value::Array(items) if !want.is_array() => items.iter().any(|i| json_eq(i, want)),
            _ => false,
        }
}

/// JSON equality where numbers compare by value (`1` = `1.0`), which TOML and JSON writers
/// do not agree on.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(toml_text: &str) -> EventFilter {
        EventFilter::compile(&spec(toml_text)).unwrap()
    }

    fn spec(toml_text: &str) -> FilterSpec {
        #[derive(Deserialize)]
        struct Wrap {
            filter: FilterSpec,
        }
        toml::from_str::<Wrap>(toml_text).unwrap().filter
    }

    /// The key relative to `filter` (or `filter` itself), and the problem.
    fn error(toml_text: &str) -> (String, String) {
        let err = EventFilter::compile(&spec(toml_text)).unwrap_err();
        let key = err
            .key()
            .strip_prefix("filter")
            .unwrap()
            .trim_start_matches('.');
        let key = if key.is_empty() { "filter" } else { key };
        (key.to_owned(), err.problem().to_owned())
    }

    fn event<'a>(
        kind: Option<&'a str>,
        headers: &'a [(String, String)],
        body: &'a str,
    ) -> EventView<'a> {
        EventView::new(kind, headers, body.as_bytes())
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_example_of_the_issue_reads_and_matches() {
        let f = filter(
            r#"filter = { type = ["invoice.*", "customer.subscription.*"], header = { "X-Shopify-Topic" = "orders/*" }, body = { "/data/object/livemode" = true } }"#,
        );
        let hs = headers(&[("x-shopify-topic", "orders/create")]);
        let live = r#"{"data":{"object":{"livemode":true}}}"#;
        assert!(f.matches(event(Some("invoice.paid"), &hs, live)));
        assert!(f.matches(event(Some("customer.subscription.updated"), &hs, live)));
        assert!(!f.matches(event(Some("charge.failed"), &hs, live)));
        assert!(!f.matches(event(None, &hs, live)));
        assert!(!f.matches(event(Some("invoice.paid"), &[], live)));
        let test_mode = r#"{"data":{"object":{"livemode":false}}}"#;
        assert!(!f.matches(event(Some("invoice.paid"), &hs, test_mode)));
        assert!(!f.matches(event(Some("invoice.paid"), &hs, "not json")));
        assert!(!f.matches(event(Some("invoice.paid"), &hs, r#"{"data":{}}"#)));
    }

    #[test]
    fn header_names_ignore_case_and_any_value_of_a_repeated_header_counts() {
        let f = filter(r#"filter = { header = { "X-Topic" = ["orders/*", "refunds/create"] } }"#);
        let hs = headers(&[("X-TOPIC", "carts/update"), ("x-topic", "refunds/create")]);
        assert!(f.matches(event(None, &hs, "")));
        let hs = headers(&[("X-Topic", "carts/update")]);
        assert!(!f.matches(event(None, &hs, "")));
        // Values keep their case.
        let hs = headers(&[("X-Topic", "Orders/create")]);
        assert!(!f.matches(event(None, &hs, "")));
    }

    #[test]
    fn body_lists_mean_any_of_and_arrays_in_the_event_contain() {
        let f = filter(
            r#"filter = { body = { "/plan" = ["pro", "enterprise"], "/tags" = "vip", "/n" = 1 } }"#,
        );
        assert!(f.matches(event(
            None,
            &[],
            r#"{"plan":"pro","tags":["a","vip"],"n":1.0}"#
        )));
        assert!(f.matches(event(
            None,
            &[],
            r#"{"plan":"enterprise","tags":"vip","n":1}"#
        )));
        assert!(!f.matches(event(None, &[], r#"{"plan":"free","tags":["vip"],"n":1}"#)));
        assert!(!f.matches(event(None, &[], r#"{"plan":"pro","tags":["a"],"n":1}"#)));
        assert!(!f.matches(event(None, &[], r#"{"plan":"pro","tags":["vip"],"n":2}"#)));
        assert!(!f.matches(event(None, &[], r#"{"plan":"pro","tags":["vip"],"n":"1"}"#)));
    }

    #[test]
    fn a_whole_array_is_compared_when_wrapped_in_a_list() {
        let f = filter(r#"filter = { body = { "/tags" = [["a", "b"]] } }"#);
        assert!(f.matches(event(None, &[], r#"{"tags":["a","b"]}"#)));
        assert!(!f.matches(event(None, &[], r#"{"tags":["a","b","c"]}"#)));
        assert!(!f.matches(event(None, &[], r#"{"tags":"a"}"#)));
    }

    #[test]
    fn toml_dates_are_refused() {
        let (key, problem) = error(r#"filter = { body = { "/at" = 2024-05-01T00:00:00Z } }"#);
        assert_eq!(key, "body./at");
        assert!(problem.contains("string"), "{problem}");
    }

    #[test]
    fn pointers_reach_into_arrays_and_escaped_names() {
        let f =
            filter(r#"filter = { body = { "/items/0/sku" = "A-1", "/a~1b" = { x = [1, 2] } } }"#);
        assert!(f.matches(event(
            None,
            &[],
            r#"{"items":[{"sku":"A-1"}],"a/b":{"x":[1,2.0]}}"#
        )));
        assert!(!f.matches(event(
            None,
            &[],
            r#"{"items":[{"sku":"A-1"}],"a/b":{"x":[1,2],"y":0}}"#
        )));
        assert!(!f.matches(event(
            None,
            &[],
            r#"{"items":[{},{"sku":"A-1"}],"a/b":{"x":[1,2]}}"#
        )));
    }

    #[test]
    fn any_all_and_not_combine() {
        let f = filter(
            r#"
            [filter]
            any = [ { type = "charge.refunded" }, { body = { "/plan" = "enterprise" } } ]
            not = { type = "*.test" }
            "#,
        );
        assert!(f.matches(event(Some("charge.refunded"), &[], "{}")));
        assert!(f.matches(event(Some("invoice.paid"), &[], r#"{"plan":"enterprise"}"#)));
        assert!(!f.matches(event(Some("invoice.paid"), &[], r#"{"plan":"pro"}"#)));
        assert!(!f.matches(event(Some("invoice.test"), &[], r#"{"plan":"enterprise"}"#)));

        let f = filter(r#"filter = { all = [ { type = "a.*" }, { type = "*.b" } ] }"#);
        assert!(f.matches(event(Some("a.b"), &[], "")));
        assert!(!f.matches(event(Some("a.c"), &[], "")));
    }

    #[test]
    fn a_filter_without_body_conditions_never_parses_the_body() {
        let f = filter(r#"filter = { type = "a.*", any = [ { header = { "X-A" = "*" } } ] }"#);
        let hs = headers(&[("X-A", "1")]);
        let prepared = Prepared::new(event(Some("a.b"), &hs, "{}"));
        assert!(f.matches_prepared(&prepared));
        assert!(!prepared.parsed());
    }

    #[test]
    fn mistakes_name_their_key() {
        assert_eq!(error("filter = {}").0, "filter");
        assert_eq!(error("filter = { type = [] }").0, "type");
        assert_eq!(error(r#"filter = { type = [""] }"#).0, "type");
        let (key, problem) = error(r#"filter = { body = { "data/id" = 1 } }"#);
        assert_eq!(key, "body");
        assert!(problem.contains("not a JSON Pointer"), "{problem}");
        assert!(
            error(r#"filter = { body = { "/a~2" = 1 } }"#)
                .1
                .contains("~0")
        );
        assert_eq!(error(r#"filter = { body = { "/a" = [] } }"#).0, "body./a");
        assert_eq!(
            error(r#"filter = { header = { "X Topic" = "a" } }"#).0,
            "header"
        );
        assert_eq!(error(r#"filter = { header = {} }"#).0, "header");
        assert_eq!(error(r#"filter = { any = [] }"#).0, "any");
        let (key, _) = error(r#"filter = { any = [ { type = "a" }, { all = [ {} ] } ] }"#);
        assert_eq!(key, "any[2].all[1]");
        assert_eq!(
            error(r#"filter = { not = { header = { "X" = [] } } }"#).0,
            "not.header.X"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_fail_to_parse() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrap {
            filter: FilterSpec,
        }
        let err = toml::from_str::<Wrap>(r#"filter = { types = "a" }"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `types`"), "{err}");
        let err = toml::from_str::<Wrap>(r#"filter = { type = 3 }"#).unwrap_err();
        assert!(err.to_string().contains("a pattern such as"), "{err}");
    }
}
