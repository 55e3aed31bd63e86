//! Why a delivery was rejected: the stable reason codes shared with the provider vectors.

use std::fmt;

/// Why a delivery failed verification.
///
/// Each variant has a stable snake_case [`code`](Reason::code) (the same codes as
/// `shared/vectors/provider-vectors.json`) and an HTTP [`status`](Reason::status): 400 when the
/// request is not shaped like a delivery of the scheme, 401 when it is shaped right but not
/// authentic or not fresh.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A header (or body field) the scheme requires is absent or empty.
    MissingHeader,
    /// A required header is present but does not have the scheme's syntax.
    MalformedHeader,
    /// The timestamp is not a valid timestamp in the scheme's format.
    InvalidTimestamp,
    /// The timestamp is older than the tolerance allows (a possible replay).
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance allows.
    TimestampTooNew,
    /// The signature header carries no signature of a version this scheme accepts
    /// (for example only Stripe's test-mode `v0`): a possible downgrade.
    NoSupportedSignature,
    /// No signature matched any live key.
    SignatureMismatch,
    /// The signature is valid but the body does not match the signed body hash (Twilio).
    BodyHashMismatch,
    /// The shared token does not match any live key (GitLab's `X-Gitlab-Token`).
    TokenMismatch,
    /// The signature fields carried in the body are absent or empty (Mailgun).
    MissingSignature,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 10] = [
        Reason::MissingHeader,
        Reason::MalformedHeader,
        Reason::InvalidTimestamp,
        Reason::TimestampTooOld,
        Reason::TimestampTooNew,
        Reason::NoSupportedSignature,
        Reason::SignatureMismatch,
        Reason::BodyHashMismatch,
        Reason::TokenMismatch,
        Reason::MissingSignature,
    ];

    /// The stable machine-readable code, e.g. `signature_mismatch`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingHeader => "missing_header",
            Reason::MalformedHeader => "malformed_header",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampTooOld => "timestamp_too_old",
            Reason::TimestampTooNew => "timestamp_too_new",
            Reason::NoSupportedSignature => "no_supported_signature",
            Reason::SignatureMismatch => "signature_mismatch",
            Reason::BodyHashMismatch => "body_hash_mismatch",
            Reason::TokenMismatch => "token_mismatch",
            Reason::MissingSignature => "missing_signature",
        }
    }

    /// Parses a code produced by [`Reason::code`].
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The HTTP status a receiver answers with: 400 for a request that is not shaped like a
    /// delivery, 401 for one that is not authentic or not fresh.
    pub fn status(self) -> u16 {
        match self {
            Reason::MissingHeader
            | Reason::MalformedHeader
            | Reason::InvalidTimestamp
            | Reason::MissingSignature => 400,
            Reason::TimestampTooOld
            | Reason::TimestampTooNew
            | Reason::NoSupportedSignature
            | Reason::SignatureMismatch
            | Reason::BodyHashMismatch
            | Reason::TokenMismatch => 401,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejected delivery: the [`Reason`] plus a non-secret hint of where it went wrong
/// (a header name, never a header value, a key or an expected signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    location: &'static str,
}

impl Rejection {
    pub(crate) fn new(reason: Reason, location: &'static str) -> Self {
        Rejection { reason, location }
    }

    /// Why the delivery was rejected.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The stable code of the reason, e.g. `timestamp_too_old`.
    pub fn code(&self) -> &'static str {
        self.reason.code()
    }

    /// The HTTP status to answer with (400 or 401).
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// Which header or field the reason refers to, for logs (never a value).
    pub fn location(&self) -> &'static str {
        self.location
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.location)
        }
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_statuses_are_4xx() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
            assert!(matches!(reason.status(), 400 | 401));
        }
        assert_eq!(Reason::from_code("nope"), None);
        assert_eq!(Reason::SignatureMismatch.status(), 401);
        assert_eq!(Reason::MalformedHeader.status(), 400);
    }
}
