//! Who may look and who may write: the console token (a Bearer header, or a login that sets
//! a session cookie), the CSRF token bound to that session, and the same-origin check.
//!
//! Sessions are stateless: the cookie carries a random session id, an expiry and an HMAC
//! of both under a key derived from the console token, so a restart keeps sessions and a
//! new token ends them all. The CSRF token is an HMAC of the session id under the same key:
//! a page from another site can neither read it (HttpOnly cookie, no CORS) nor forge it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, REFERER};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::CliError;

/// The session cookie's name.
pub(super) const COOKIE_NAME: &str = "hookgate_console";
/// How long a login lasts.
pub(super) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The shortest console token accepted from `--console-token`.
pub(crate) const MIN_TOKEN_LEN: usize = 16;
/// The file in the data directory that keeps a generated token.
pub(crate) const TOKEN_FILE: &str = "console-token";

type HmacSha256 = Hmac<Sha256>;

/// The console token and the key derived from it. Never printed by `Debug`.
pub(crate) struct Auth {
    token_digest: [u8; 32],
    key: [u8; 32],
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }")
    }
}

/// How a request proved it may use the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Principal {
    /// `Authorization: Bearer TOKEN`: not sent by browsers on their own, so no CSRF risk.
    Bearer,
    /// A login cookie, with its session id (the CSRF token is bound to it).
    Session(String),
}

impl Auth {
    /// The console's authority for `token`.
    ///
    /// # Errors
    /// A token shorter than [`MIN_TOKEN_LEN`].
    pub(crate) fn new(token: &str) -> Result<Auth, CliError> {
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(CliError::new(format!(
                "the console token must be at least {MIN_TOKEN_LEN} characters"
            )));
        }
        let token_digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let key = mac(token.as_bytes(), &[b"hookgate console session key v1"]);
        Ok(Auth { token_digest, key })
    }

    /// Whether `given` is the token, compared in constant time (over digests, so the
    /// length does not show either).
    pub(super) fn token_matches(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }

    /// Who sent `headers`: a valid Bearer token first, else a valid session cookie.
    pub(super) fn principal(&self, headers: &HeaderMap, now: SystemTime) -> Option<Principal> {
        for value in headers.get_all(AUTHORIZATION) {
            let Ok(value) = value.to_str() else { continue };
            let Some((kind, token)) = value.split_once(' ') else {
                continue;
            };
            if kind.eq_ignore_ascii_case("bearer") && self.token_matches(token.trim()) {
                return Some(Principal::Bearer);
            }
        }
        cookies(headers)
            .filter(|(name, _)| *name == COOKIE_NAME)
            .find_map(|(_, value)| self.session(value, now))
            .map(Principal::Session)
    }

    /// A new session: the cookie's value.
    ///
    /// # Errors
    /// No random bytes from the OS.
    pub(super) fn new_session(&self, now: SystemTime) -> Result<String, CliError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|e| CliError::new(format!("no random bytes for a session: {e}")))?;
        let id = hex(&id);
        let expires = unix(now).saturating_add(SESSION_LIFETIME.as_secs());
        let tag = hex(&mac(
            &self.key,
            &[b"session", id.as_bytes(), expires.to_string().as_bytes()],
        ));
        Ok(format!("{id}.{expires}.{tag}"))
    }

    /// The session id of a cookie value, if its tag is right and it has not expired.
    fn session(&self, value: &str, now: SystemTime) -> Option<String> {
        let mut parts = value.split('.');
        let (Some(id), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expected = hex(&mac(
            &self.key,
            &[b"session", id.as_bytes(), expires.as_bytes()],
        ));
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        (unix(now) < expires).then(|| id.to_owned())
    }

    /// The CSRF token of a principal: bound to the session id (Bearer requests need none,
    /// but get one so the same page works for them).
    pub(super) fn csrf_token(&self, principal: &Principal) -> String {
        let id = match principal {
            Principal::Bearer => "bearer",
            Principal::Session(id) => id.as_str(),
        };
        hex(&mac(&self.key, &[b"csrf", id.as_bytes()]))
    }

    /// Whether a write by `principal` may go ahead: Bearer always; a session only from the
    /// console's own origin and with the session's CSRF token.
    pub(super) fn write_allowed(
        &self,
        principal: &Principal,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<(), &'static str> {
        match principal {
            Principal::Bearer => Ok(()),
            Principal::Session(_) => {
                if !same_origin(headers) {
                    return Err("cross_origin");
                }
                let expected = self.csrf_token(principal);
                match csrf {
                    Some(given) if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) => {
                        Ok(())
                    }
                    _ => Err("bad_csrf_token"),
                }
            }
        }
    }
}

/// Whether a browser request comes from a page of this same server: `Sec-Fetch-Site`, if
/// sent, says `same-origin`; and `Origin` (or, without it, `Referer`) names the host the
/// request was sent to. A request with neither is refused: browsers send `Origin` with
/// every POST. The scheme is not compared, so a TLS-terminating proxy in front keeps
/// working; the same host and port cannot serve two origins anyway.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    let authority = |url: &str| -> Option<String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        Some(rest.split('/').next().unwrap_or(rest).to_ascii_lowercase())
    };
    let host = host.to_ascii_lowercase();
    if let Some(origin) = headers.get(ORIGIN) {
        return origin
            .to_str()
            .ok()
            .and_then(authority)
            .is_some_and(|a| a == host);
    }
    headers
        .get(REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(authority)
        .is_some_and(|a| a == host)
}

/// The token to use: `--console-token`, else the one kept in the data directory, else a
/// new one written there (mode 0600). The flag says whether it was generated now.
///
/// # Errors
/// An unreadable or empty token file, or one that cannot be written.
pub(crate) fn stored_token(data_dir: &Path) -> Result<(String, bool), CliError> {
    let path = data_dir.join(TOKEN_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CliError::new(format!(
                "cannot read the console token file {}: {e}",
                path.display()
            ))
        })?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(CliError::new(format!(
                "the console token file {} is empty: delete it to generate a new token",
                path.display()
            )));
        }
        return Ok((token, false));
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| CliError::new(format!("no random bytes for a console token: {e}")))?;
    let token = format!("hgc_{}", hex(&bytes));
    crate::serve::write_private(&path, &format!("{token}\n"))?;
    Ok((token, true))
}

/// The `name=value` pairs of every `Cookie` header.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;

    const TOKEN: &str = "a-console-token-for-tests";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn short_tokens_are_refused_and_debug_hides_the_token() {
        assert!(Auth::new("short").is_err());
        let auth = Auth::new(TOKEN).unwrap();
        assert!(!format!("{auth:?}").contains(TOKEN));
    }

    #[test]
    fn bearer_and_cookie_sessions_authenticate() {
        let auth = Auth::new(TOKEN).unwrap();
        let now = SystemTime::now();
        assert_eq!(
            auth.principal(
                &headers(&[("authorization", &format!("Bearer {TOKEN}"))]),
                now
            ),
            Some(Principal::Bearer)
        );
        assert_eq!(
            auth.principal(
                &headers(&[("authorization", "Bearer wrong-token-xxxxxx")]),
                now
            ),
            None
        );
        let cookie = auth.new_session(now).unwrap();
        let Some(Principal::Session(id)) = auth.principal(
            &headers(&[("cookie", &format!("other=1; {COOKIE_NAME}={cookie}"))]),
            now,
        ) else {
            panic!("the session cookie was not accepted");
        };
        assert_eq!(id.len(), 32);
        // Expired, tampered, or made under another token: refused.
        let later = now + SESSION_LIFETIME + Duration::from_secs(1);
        let cookie_header = format!("{COOKIE_NAME}={cookie}");
        assert_eq!(
            auth.principal(&headers(&[("cookie", &cookie_header)]), later),
            None
        );
        let tampered = cookie_header.replacen('.', "9.", 1);
        assert_eq!(
            auth.principal(&headers(&[("cookie", &tampered)]), now),
            None
        );
        let other = Auth::new("another-console-token").unwrap();
        assert_eq!(
            other.principal(&headers(&[("cookie", &cookie_header)]), now),
            None
        );
    }

    #[test]
    fn session_writes_need_the_origin_and_the_sessions_csrf_token() {
        let auth = Auth::new(TOKEN).unwrap();
        let session = Principal::Session("abc".to_owned());
        let csrf = auth.csrf_token(&session);
        let good = headers(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "http://127.0.0.1:8787"),
        ]);
        assert_eq!(auth.write_allowed(&session, &good, Some(&csrf)), Ok(()));
        assert_eq!(
            auth.write_allowed(&session, &good, None),
            Err("bad_csrf_token")
        );
        let other_session = auth.csrf_token(&Principal::Session("xyz".to_owned()));
        assert_eq!(
            auth.write_allowed(&session, &good, Some(&other_session)),
            Err("bad_csrf_token")
        );
        let cross = headers(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(
            auth.write_allowed(&session, &cross, Some(&csrf)),
            Err("cross_origin")
        );
        let no_origin = headers(&[("host", "127.0.0.1:8787")]);
        assert_eq!(
            auth.write_allowed(&session, &no_origin, Some(&csrf)),
            Err("cross_origin")
        );
        let referer = headers(&[
            ("host", "127.0.0.1:8787"),
            ("referer", "http://127.0.0.1:8787/_hookgate/dead"),
        ]);
        assert_eq!(auth.write_allowed(&session, &referer, Some(&csrf)), Ok(()));
        let fetch_site = headers(&[
            ("host", "127.0.0.1:8787"),
            ("origin", "http://127.0.0.1:8787"),
            ("sec-fetch-site", "same-site"),
        ]);
        assert_eq!(
            auth.write_allowed(&session, &fetch_site, Some(&csrf)),
            Err("cross_origin")
        );
        assert_eq!(auth.write_allowed(&Principal::Bearer, &cross, None), Ok(()));
    }

    #[test]
    fn a_generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (token, generated) = stored_token(dir.path()).unwrap();
        assert!(generated);
        assert!(token.len() >= MIN_TOKEN_LEN);
        assert_eq!(stored_token(dir.path()).unwrap(), (token, false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
