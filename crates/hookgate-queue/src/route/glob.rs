//! The glob of filters: `*` matches any run of characters (none included), everything else
//! matches itself.
//!
//! Why not `globset` or `glob-match`: those are path globs, where `*` stops at `/`, and they
//! add `?`, `[…]` and `{…}`. Filters match event types (`customer.subscription.*`) and header
//! values (`orders/*`), which are not paths: `*` must cross `.` and `/`, and a `?` or `[` in
//! a header value should mean itself. `*` is all the issue asks for, so this is a small
//! matcher with no dependency: linear in the pattern and the text per star retry, at most
//! `O(pattern × text)`, with no backtracking blow-up and no regex to compile.

use std::fmt;

/// A compiled `*` pattern.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: Box<str>,
}

impl Glob {
    /// Any non-empty pattern; `*` is the only special character.
    pub(crate) fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches only an empty value; use \"*\" for any".into());
        }
        Ok(Glob {
            pattern: pattern.into(),
        })
    }

    /// Whether `text` matches the whole pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        glob_match(self.pattern.as_bytes(), text.as_bytes())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.pattern, f)
    }
}

/// The classic greedy match with one remembered star: on a mismatch, let the last star
/// swallow one more byte and retry from just after it. Byte-wise is exact for UTF-8, since
/// `*` is ASCII and a literal run can only match whole characters.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0_usize, 0_usize);
    // (position of the last star in the pattern, text position it was tried at)
    let mut star: Option<(usize, usize)> = None;
    loop {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p = p.saturating_add(1);
            }
            (Some(&want), Some(&got)) if want == got => {
                p = p.saturating_add(1);
                t = t.saturating_add(1);
            }
            (None, None) => return true,
            _ => match star {
                Some((star_p, star_t)) if star_t < text.len() => {
                    let swallowed = star_t.saturating_add(1);
                    star = Some((star_p, swallowed));
                    p = star_p.saturating_add(1);
                    t = swallowed;
                }
                _ => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).unwrap().matches(text)
    }

    #[test]
    fn star_matches_any_run_across_dots_and_slashes() {
        assert!(m("invoice.*", "invoice.paid"));
        assert!(m("customer.*", "customer.subscription.created"));
        assert!(m("orders/*", "orders/create"));
        assert!(m("*", ""));
        assert!(m("*", "anything at all"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(m("*.created", "customer.subscription.created"));
        assert!(m("*é*", "café"));
    }

    #[test]
    fn everything_else_is_literal_and_the_whole_text_must_match() {
        assert!(!m("invoice.*", "invoices.paid"));
        assert!(!m("invoice.*", "xinvoice.paid"));
        assert!(!m("invoice.paid", "invoice.paid.late"));
        assert!(!m("a*b*c", "a-b-b-d"));
        assert!(!m("a*c", "ab"));
        assert!(m("what?", "what?"));
        assert!(!m("what?", "whats"));
        assert!(m("[x]", "[x]"));
        assert!(!m("[x]", "x"));
        assert!(!m("Invoice.*", "invoice.paid"));
    }

    #[test]
    fn many_stars_over_a_long_text_need_no_backtracking_blowup() {
        let text = "a".repeat(10_000);
        assert!(!m("*a*a*a*a*a*a*a*a*b", &text));
        assert!(m("*a*a*a*a*a*a*a*a*", &text));
    }

    #[test]
    fn an_empty_pattern_is_refused() {
        assert!(Glob::new("").is_err());
    }
}
