//! Azure Event Grid webhook delivery: Event Grid signs nothing, so the endpoint is
//! authenticated by a shared token the operator puts in the webhook URL registered in Azure
//! (Event Grid sends every query parameter with every delivery and with the validation
//! requests), or in a static `Authorization: Bearer` header set as a delivery property.
//!
//! Where the token may be (any of them; each is compared whole, in constant time, with every
//! live key):
//!
//! - the query parameter `code` (the name Azure Functions' HTTP trigger uses for its key, so
//!   a URL made for one keeps working) or `access_token` (the CloudEvents HTTP webhook spec's
//!   name, §3.2, which Event Grid's CloudEvents delivery follows);
//! - the `Authorization` header with the `Bearer` scheme (CloudEvents HTTP webhook §3.1; the
//!   example of Event Grid's "custom delivery properties" page is `Authorization: BEARER …`).
//!   Another scheme in `Authorization` is not ours and is ignored.
//!
//! A parameter named twice, or `Authorization` repeated with different values, is
//! `malformed_header`: which copy counts would be ambiguous. No token anywhere is
//! `missing_header` (location `code`), as for every token preset; a wrong one is
//! `token_mismatch` (401). The token is never kept: the verified event holds the body and
//! a few `aeg-*` headers only, never the URL or `Authorization`.
//!
//! Facts and sources: `docs/PROVIDERS.md`, section "Azure Event Grid".

use smallvec::SmallVec;

use super::extract::{Candidate, Extracted, reject, single};
use crate::headers::Headers;
use crate::reason::{Reason, Rejection};

/// The query parameters that may carry the token, in the order the signer prefers.
pub(crate) const PARAMETERS: [&str; 2] = ["code", "access_token"];

/// The header that may carry `Bearer <token>`.
pub(crate) const AUTHORIZATION: &str = "Authorization";

/// The token candidates of one request: see the [module documentation](self).
pub(crate) fn extract<'a, H: Headers + ?Sized>(
    headers: &'a H,
    query: Option<&str>,
) -> Result<Extracted<'a>, Rejection> {
    let mut tokens: SmallVec<[Candidate; 2]> = SmallVec::new();
    for name in PARAMETERS {
        if let Some(token) = single_parameter(query, name)? {
            tokens.push(Candidate::from_slice(token.as_bytes()));
        }
    }
    if let Some(value) = single(headers, AUTHORIZATION)? {
        if let Some(token) = bearer(value) {
            tokens.push(Candidate::from_slice(token.as_bytes()));
        }
    }
    if tokens.is_empty() {
        return Err(reject(Reason::MissingHeader, PARAMETERS[0]));
    }
    let mut out = Extracted::new(Vec::new(), PARAMETERS[0]);
    out.signatures = tokens;
    out.mismatch = Reason::TokenMismatch;
    Ok(out)
}

/// The one non-empty value of query parameter `name`, URL-decoded: `None` when absent or
/// empty, `malformed_header` when named twice.
fn single_parameter(query: Option<&str>, name: &'static str) -> Result<Option<String>, Rejection> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut values = form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value);
    let first = values.next();
    if values.next().is_some() {
        return Err(reject(Reason::MalformedHeader, name));
    }
    Ok(first
        .filter(|value| !value.is_empty())
        .map(|v| v.into_owned()))
}

/// The token of `Bearer <token>` (the scheme name is case-insensitive, RFC 7235 §2.1);
/// `None` for another scheme or an empty token.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(headers: &[(&str, &str)], query: Option<&str>) -> Result<Vec<String>, &'static str> {
        extract(headers, query)
            .map(|out| {
                assert_eq!(out.mismatch, Reason::TokenMismatch);
                out.signatures
                    .iter()
                    .map(|c| String::from_utf8(c.to_vec()).unwrap())
                    .collect()
            })
            .map_err(|r| r.code())
    }

    #[test]
    fn the_token_is_read_from_code_access_token_or_a_bearer_header() {
        let none: &[(&str, &str)] = &[];
        assert_eq!(tokens(none, Some("code=s3cret")), Ok(vec!["s3cret".into()]));
        assert_eq!(
            tokens(none, Some("x=1&access_token=a%2Bb")),
            Ok(vec!["a+b".into()])
        );
        assert_eq!(
            tokens(&[("Authorization", "BEARER s3cret")], None),
            Ok(vec!["s3cret".into()])
        );
        assert_eq!(
            tokens(
                &[("authorization", "Bearer t")],
                Some("code=c&access_token=a")
            ),
            Ok(vec!["c".into(), "a".into(), "t".into()])
        );
        // Another auth scheme is not ours; an empty value is no token.
        assert_eq!(
            tokens(&[("Authorization", "Basic dXNlcjpwdw==")], None),
            Err("missing_header")
        );
        assert_eq!(
            tokens(none, Some("code=&access_token=")),
            Err("missing_header")
        );
        assert_eq!(tokens(none, Some("Code=s3cret")), Err("missing_header"));
        assert_eq!(tokens(none, None), Err("missing_header"));
        assert_eq!(
            tokens(&[("Authorization", "Bearer ")], None),
            Err("missing_header")
        );
        // Ambiguous: which copy counts?
        assert_eq!(tokens(none, Some("code=a&code=a")), Err("malformed_header"));
        assert_eq!(
            tokens(
                &[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
                None
            ),
            Err("malformed_header")
        );
    }
}
