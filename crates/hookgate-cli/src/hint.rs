//! What to check when a delivery does not verify: one hint per rejection, tailored to the
//! scheme, plus notes about the body. Nothing here ever sees a secret or a signature.

use hookgate::{Reason, Rejection, SchemeId};

/// Advice printed after `invalid: REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advice {
    /// The one-line hint.
    pub(crate) hint: String,
    /// Further observations (a trailing newline in the body, …).
    pub(crate) notes: Vec<String>,
}

/// What the user gave besides the delivery, as far as the hints need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) scheme: SchemeId,
    pub(crate) body: &'a [u8],
    pub(crate) keys: usize,
    pub(crate) now_given: bool,
    /// The headers given, to recognise another scheme's signature header.
    pub(crate) headers: &'a [(String, String)],
}

/// The advice for `rejection`.
pub(crate) fn advise(rejection: &Rejection, cx: Context<'_>) -> Advice {
    let scheme = cx.scheme;
    let location = rejection.location();
    let hint = match rejection.reason() {
        Reason::SignatureMismatch => mismatch_hint(cx),
        Reason::BodyHashMismatch if location == "bodySHA256" => format!(
            "the bodySHA256 in the signed URL is not the SHA-256 of this body: the body must be \
             the raw bytes exactly as received, and --url the full URL {} called",
            provider(scheme)
        ),
        Reason::BodyHashMismatch => format!(
            "the body digest signed in {location} is not the SHA-256 of this body: the body \
             must be the raw bytes exactly as {} sent them",
            provider(scheme)
        ),
        Reason::TokenMismatch => token_hint(scheme, location),
        // Shopify's and PagerDuty's SDKs refuse an empty body as missing, as we do.
        Reason::MissingHeader if location == "body" => format!(
            "the body is empty, and {} never sends an empty body: pass the delivery's body \
             with --body-file or on stdin",
            provider(scheme)
        ),
        Reason::MissingHeader => missing_hint(scheme, location, cx.headers),
        Reason::MalformedHeader => format!(
            "{location} does not have {}'s syntax, or was given twice with different values",
            scheme.as_str()
        ),
        Reason::InvalidTimestamp => format!("{location} must hold {}", timestamp_format(scheme)),
        Reason::TimestampTooOld => {
            if cx.now_given {
                "the timestamp is older than the window at --now: pass the delivery's own \
                 timestamp as --now, or widen it with --tolerance SECONDS"
                    .to_owned()
            } else {
                "the timestamp is older than the window (a possible replay): to re-check a \
                 captured delivery pass --now with its timestamp, or widen it with --tolerance \
                 SECONDS"
                    .to_owned()
            }
        }
        Reason::TimestampTooNew => "the timestamp is further ahead of the clock than the window \
             allows: check the sender's clock (or --now); --accept-future accepts future \
             timestamps as Stripe's and Paddle's own libraries do"
            .to_owned(),
        Reason::NoSupportedSignature => format!(
            "{location} carries no signature of a version {} accepts (for example only Stripe's \
             test-mode v0): a downgrade is refused",
            scheme.as_str()
        ),
        Reason::MissingSignature if scheme == SchemeId::Figma => {
            "the JSON body must carry one non-empty passcode (Figma sends it in every event)"
                .to_owned()
        }
        Reason::MissingSignature if scheme == SchemeId::MicrosoftGraph => {
            "every notification of the body's value array must carry a non-empty clientState \
             (set clientState when creating the subscription); an empty POST with \
             ?validationToken= is the validation request, which `serve` answers"
                .to_owned()
        }
        Reason::MissingSignature if scheme == SchemeId::Braintree => {
            "the form body must carry bt_signature and bt_payload, each once (pass Braintree's \
             POST body as received)"
                .to_owned()
        }
        Reason::MissingSignature => "the body must carry signature.timestamp, signature.token \
             and signature.signature (Mailgun puts its signature in the body)"
            .to_owned(),
        _ => format!(
            "see `hookgate schemes` for what {} expects",
            scheme.as_str()
        ),
    };
    let mut notes = Vec::new();
    let body_matters = matches!(
        rejection.reason(),
        Reason::SignatureMismatch | Reason::BodyHashMismatch
    ) && signs_raw_body(scheme);
    if body_matters && cx.body.ends_with(b"\n") {
        notes.push(format!(
            "the body ({} bytes) ends with a newline: if the sender's body did not, remove it \
             (editors and `echo` add one; use printf '%s')",
            cx.body.len()
        ));
    }
    if body_matters && cx.body.is_empty() {
        notes.push("the body is empty: was it passed with --body-file or on stdin?".to_owned());
    }
    Advice { hint, notes }
}

fn mismatch_hint(cx: Context<'_>) -> String {
    let scheme = cx.scheme;
    let keys = match cx.keys {
        1 => "the key did not match".to_owned(),
        n => format!("none of the {n} keys matched"),
    };
    let signed = match scheme {
        SchemeId::Mailgun => {
            "Mailgun signs signature.timestamp + signature.token, not the event".to_owned()
        }
        SchemeId::Braintree => "Braintree signs bt_payload (as sent, or with one newline \
             added) with the private key of the pair whose public key bt_signature names"
            .to_owned(),
        SchemeId::Twilio => "Twilio signs the URL followed by the sorted form parameters of the \
             raw body; --url must be exactly the public URL it called (https, host, port, path, \
             query string), not the URL seen behind a proxy"
            .to_owned(),
        SchemeId::HubspotV3 => "HubSpot v3 signs the HTTP method, the URI, the raw body and \
             X-HubSpot-Request-Timestamp; --url must be exactly the URI HubSpot called (https, \
             host, path, query string), not the URL seen behind a proxy, and --method its method \
             (default POST)"
            .to_owned(),
        SchemeId::Contentful => "Contentful signs the HTTP method, the path and query of the \
             URL it called, the headers named in x-contentful-signed-headers and the raw body; \
             --url must have exactly that path and query and --method its method (default POST)"
            .to_owned(),
        SchemeId::TwilioBodySha256 | SchemeId::Square => format!(
            "{} signs the URL and the raw body bytes; --url must be exactly the public URL it \
             called (https, host, port, path, query string), not the URL seen behind a proxy",
            provider(scheme)
        ),
        _ => "the signature covers the raw body bytes exactly as sent (re-formatted JSON, a \
              changed encoding or an added newline break it)"
            .to_owned(),
    };
    format!("{keys}; {signed}; {}", key_format(scheme))
}

/// A shared token that does not match: named where the scheme carries it (its own header, or
/// a field of the body), with how the provider writes it.
fn token_hint(scheme: SchemeId, location: &str) -> String {
    let place = if scheme == SchemeId::AzureEventGrid {
        "the token (the URL's code or access_token parameter, or Authorization: Bearer)".to_owned()
    } else if scheme.signature_header() == Some(location) {
        format!("the {location} header")
    } else {
        format!("the body's {location} field")
    };
    let compared = match scheme {
        SchemeId::Postmark => "the Basic credentials are compared exactly",
        _ => "compared exactly",
    };
    format!(
        "{place} does not equal any --secret ({compared}); {}",
        key_format(scheme)
    )
}

fn missing_hint(scheme: SchemeId, location: &str, headers: &[(String, String)]) -> String {
    let others = schemes_signed_by(headers, scheme);
    if !others.is_empty() {
        return format!(
            "{} needs the header {location}, but these headers look like {}: is --scheme right?",
            scheme.as_str(),
            others.join(" or ")
        );
    }
    match (scheme, location) {
        (_, "url") => "pass --url with the exact public URL the provider called".to_owned(),
        (SchemeId::Linear, _) => {
            format!("the body must carry `{location}` (Linear's signed timestamp, in ms)")
        }
        (SchemeId::AzureEventGrid, _) => "azure-event-grid needs its token: pass --url with \
             the URL Azure called (with its ?code=TOKEN or ?access_token=TOKEN) or --header \
             'Authorization: Bearer TOKEN'"
            .to_owned(),
        (SchemeId::Mailgun | SchemeId::Braintree | SchemeId::MicrosoftGraph, _) => {
            format!("the body must carry `{location}`")
        }
        _ => format!(
            "{} needs the header {location}: pass it with --header '{location}: VALUE' (names \
             are case-insensitive)",
            scheme.as_str()
        ),
    }
}

/// The schemes (other than `scheme`) whose signature header is among `headers`, to recognise a
/// delivery given the wrong `--scheme`.
fn schemes_signed_by(headers: &[(String, String)], scheme: SchemeId) -> Vec<&'static str> {
    let present = |name: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(name));
    let own = scheme.signature_header();
    SchemeId::ALL
        .into_iter()
        .filter(|id| *id != scheme)
        .filter(|id| {
            id.signature_header()
                .is_some_and(|h| present(h) && Some(h) != own)
        })
        .map(SchemeId::as_str)
        .collect()
}

fn timestamp_format(scheme: SchemeId) -> &'static str {
    match scheme {
        SchemeId::TwitchEventsub | SchemeId::Zendesk | SchemeId::Box => {
            "an RFC 3339 time such as 2024-01-01T00:00:00.123456789Z"
        }
        SchemeId::Linear | SchemeId::Webflow | SchemeId::HubspotV3 | SchemeId::Contentful => {
            "Unix milliseconds as ASCII digits"
        }
        _ => "Unix seconds as ASCII digits (no sign, no fraction)",
    }
}

/// Whether the signature covers the body bytes (so a stray newline matters).
fn signs_raw_body(scheme: SchemeId) -> bool {
    !matches!(
        scheme,
        SchemeId::Mailgun
            | SchemeId::Twilio
            | SchemeId::GitlabToken
            | SchemeId::Okta
            | SchemeId::Telegram
            | SchemeId::Postmark
            | SchemeId::Figma
            | SchemeId::MicrosoftGraph
            | SchemeId::AzureEventGrid
            | SchemeId::Braintree
    )
}

fn provider(scheme: SchemeId) -> &'static str {
    match scheme {
        SchemeId::Twilio | SchemeId::TwilioBodySha256 => "Twilio",
        SchemeId::Square => "Square",
        SchemeId::HubspotV3 => "HubSpot",
        SchemeId::Contentful => "Contentful",
        SchemeId::Shopify => "Shopify",
        SchemeId::Pagerduty => "PagerDuty",
        _ => "the provider",
    }
}

/// How the scheme's key is written: the usual reason a correct-looking secret fails.
pub(crate) fn key_format(scheme: SchemeId) -> &'static str {
    scheme.key_hint()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(scheme: SchemeId, body: &[u8]) -> Context<'_> {
        Context {
            scheme,
            body,
            keys: 1,
            now_given: false,
            headers: &[],
        }
    }

    #[test]
    fn every_scheme_has_a_key_format() {
        for scheme in SchemeId::ALL {
            assert!(!key_format(scheme).contains("hookgate schemes"), "{scheme}");
        }
    }

    #[test]
    fn a_missing_header_suggests_the_scheme_the_headers_belong_to() {
        let headers = vec![("webhook-signature".to_owned(), "v1,x".to_owned())];
        let rejection = hookgate::verify("stripe", &["k"], &headers, "{}", None)
            .unwrap_err()
            .rejection()
            .cloned()
            .unwrap();
        let advice = advise(
            &rejection,
            Context {
                headers: &headers,
                ..cx(SchemeId::Stripe, b"{}")
            },
        );
        assert!(
            advice.hint.contains("standard-webhooks-v1"),
            "{}",
            advice.hint
        );
        assert!(advice.hint.contains("--scheme"));
        let advice = advise(&rejection, cx(SchemeId::Stripe, b"{}"));
        assert!(advice.hint.contains("--header 'Stripe-Signature: VALUE'"));
    }

    #[test]
    fn an_empty_body_refused_as_missing_is_not_called_a_header() {
        let headers = vec![(
            "X-PagerDuty-Signature".to_owned(),
            format!("v1={}", "0".repeat(64)),
        )];
        let rejection = hookgate::verify("pagerduty", &["k"], &headers, "", None)
            .unwrap_err()
            .rejection()
            .cloned()
            .unwrap();
        assert_eq!(rejection.location(), "body");
        let advice = advise(&rejection, cx(SchemeId::Pagerduty, b""));
        assert!(
            advice.hint.contains("PagerDuty never sends an empty body"),
            "{}",
            advice.hint
        );
        assert!(!advice.hint.contains("--header"), "{}", advice.hint);
    }

    #[test]
    fn a_token_mismatch_names_the_schemes_own_header() {
        for (scheme, header) in [
            (SchemeId::GitlabToken, "X-Gitlab-Token"),
            (SchemeId::Okta, "Authorization"),
            (SchemeId::Telegram, "X-Telegram-Bot-Api-Secret-Token"),
            (SchemeId::Postmark, "Authorization"),
        ] {
            let value = match scheme {
                SchemeId::Postmark => "Basic d3Jvbmc6Y3JlZHM=",
                _ => "wrong-token",
            };
            let headers = vec![(header.to_owned(), value.to_owned())];
            let rejection =
                hookgate::verify(scheme.as_str(), &["right-user:token"], &headers, "{}", None)
                    .unwrap_err()
                    .rejection()
                    .cloned()
                    .unwrap();
            assert_eq!(rejection.code(), "token_mismatch", "{scheme}");
            let advice = advise(&rejection, cx(scheme, b"{}"));
            assert!(
                advice.hint.contains(&format!("the {header} header")),
                "{scheme}: {}",
                advice.hint
            );
            if scheme != SchemeId::GitlabToken {
                assert!(
                    !advice.hint.contains("X-Gitlab-Token"),
                    "{scheme}: {}",
                    advice.hint
                );
            }
        }
    }

    #[test]
    fn a_trailing_newline_is_pointed_out_where_the_body_is_signed() {
        let rejection = hookgate::verify(
            "github",
            &["k"],
            &[("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))],
            "{}\n",
            None,
        )
        .unwrap_err()
        .rejection()
        .cloned()
        .unwrap();
        let advice = advise(&rejection, cx(SchemeId::Github, b"{}\n"));
        assert!(advice.hint.contains("raw body"));
        assert!(advice.notes.iter().any(|n| n.contains("newline")));
        let advice = advise(&rejection, cx(SchemeId::Twilio, b"a=1\n"));
        assert!(advice.notes.is_empty());
    }
}
