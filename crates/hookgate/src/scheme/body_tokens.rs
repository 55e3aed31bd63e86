//! A shared token repeated in every element of a JSON array of the body (Microsoft Graph's
//! `value[].clientState`): found, checked to be one token, and marked for redaction.

use std::ops::Range;

#[cfg(test)]
use super::extract::Candidate;
use super::extract::{Extracted, reject};
use crate::json;
use crate::reason::{Reason, Rejection};

/// The token in `field` of every object of the body's top-level `array`.
///
/// - no `array` member, an `array` that is not an array of objects, an empty array, or an
///   element without a non-empty `field`: `missing_signature` (part of the body would be
///   unauthenticated);
/// - `array` named twice at top level, or `field` twice in one element: `malformed_header`
///   (which copy counts would be ambiguous, and the other would escape redaction);
/// - elements whose tokens differ: `token_mismatch` at once (at least one differs from any
///   single configured token; one mismatch rejects the batch). The tokens are compared with
///   one another in constant time too, though both sides come from the request.
///
/// The one token is then compared with the keys by the verifier, and every value's span is
/// redacted in the verified event's body.
pub(crate) fn every_element<'a>(
    body: &[u8],
    array: &'static str,
    field: &'static str,
) -> Result<Extracted<'a>, Rejection> {
    let missing = || reject(Reason::MissingSignature, field);
    let members = json::top_level_members(body, array).ok_or_else(missing)?;
    let array_span = match members.as_slice() {
        [] => return Err(missing()),
        [(span, _)] => span.clone(),
        _ => return Err(reject(Reason::MalformedHeader, array)),
    };
    let array_bytes = body.get(array_span.clone()).ok_or_else(missing)?;
    let elements = json::array_elements(array_bytes).ok_or_else(missing)?;
    if elements.is_empty() {
        return Err(missing());
    }
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(elements.len());
    let mut token: Option<String> = None;
    let mut differ = subtle::Choice::from(0);
    for element in elements {
        let offset = array_span
            .start
            .checked_add(element.start)
            .ok_or_else(missing)?;
        let element_bytes = array_bytes.get(element).ok_or_else(missing)?;
        let mut found = json::top_level_members(element_bytes, field).ok_or_else(missing)?;
        if found.len() > 1 {
            return Err(reject(Reason::MalformedHeader, field));
        }
        let (span, value) = found.pop().ok_or_else(missing)?;
        let value = value.filter(|v| !v.is_empty()).ok_or_else(missing)?;
        let start = offset.checked_add(span.start).ok_or_else(missing)?;
        let end = offset.checked_add(span.end).ok_or_else(missing)?;
        spans.push(start..end);
        match &token {
            None => token = Some(value),
            Some(first) => {
                use subtle::ConstantTimeEq as _;
                differ |= !first.as_bytes().ct_eq(value.as_bytes());
            }
        }
    }
    if bool::from(differ) {
        return Err(reject(Reason::TokenMismatch, field));
    }
    let token = token.ok_or_else(missing)?;
    let mut out = Extracted::new(Vec::new(), field);
    out.signatures.push(token.into_bytes().into());
    out.mismatch = Reason::TokenMismatch;
    out.redact = spans;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        every_element(body.as_bytes(), "value", "clientState")
            .map(|_| "ok")
            .unwrap_or_else(|r| r.code())
    }

    #[test]
    fn every_element_must_carry_the_same_token_once() {
        let body = r#"{"value":[{"id":1,"clientState":"s3cret"}, {"clientState" : "s3c\u0072et","x":{"clientState":"nested"}}],"clientState":"top"}"#;
        let out = every_element(body.as_bytes(), "value", "clientState").unwrap();
        assert_eq!(
            out.signatures.as_slice(),
            [Candidate::from_slice(b"s3cret")]
        );
        let redacted: Vec<&str> = out
            .redact
            .iter()
            .map(|span| body.get(span.clone()).unwrap())
            .collect();
        assert_eq!(redacted, [r#""s3cret""#, r#""s3c\u0072et""#]);
        assert_eq!(out.mismatch, Reason::TokenMismatch);

        assert_eq!(
            code(r#"{"value":[{"clientState":"a"},{"clientState":"b"}]}"#),
            "token_mismatch"
        );
        assert_eq!(
            code(r#"{"value":[{"clientState":"a"},{"id":2}]}"#),
            "missing_signature"
        );
        assert_eq!(
            code(r#"{"value":[{"clientState":""}]}"#),
            "missing_signature"
        );
        assert_eq!(
            code(r#"{"value":[{"clientState":null}]}"#),
            "missing_signature"
        );
        assert_eq!(code(r#"{"value":[]}"#), "missing_signature");
        assert_eq!(
            code(r#"{"value":{"clientState":"a"}}"#),
            "missing_signature"
        );
        assert_eq!(code(r#"{"value":["a"]}"#), "missing_signature");
        assert_eq!(code(r#"{"clientState":"a"}"#), "missing_signature");
        assert_eq!(code(""), "missing_signature");
        assert_eq!(code("not json"), "missing_signature");
        assert_eq!(
            code(r#"{"value":[{"clientState":"a","clientState":"a"}]}"#),
            "malformed_header"
        );
        assert_eq!(
            code(r#"{"value":[{"clientState":"a"}],"value":[{"clientState":"a"}]}"#),
            "malformed_header"
        );
    }
}
