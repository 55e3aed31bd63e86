//! Reading what the user hands over: the raw body, `Name: value` headers and secrets.

use std::io::{IsTerminal, Read};
use std::path::Path;

use crate::error::CliError;

/// Reads the body, byte for byte: from `path`, or from stdin when `path` is absent or `-`.
///
/// # Errors
/// The file (or stdin) cannot be read.
pub(crate) fn read_body(path: Option<&Path>) -> Result<Vec<u8>, CliError> {
    match path {
        Some(path) if path != Path::new("-") => std::fs::read(path).map_err(|e| {
            CliError::new(format!("cannot read the body file {}: {e}", path.display()))
        }),
        _ => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                crate::note(
                    "reading the body from stdin (end it with Ctrl-D; or pass --body-file PATH)",
                );
            }
            let mut body = Vec::new();
            stdin
                .read_to_end(&mut body)
                .map_err(|e| CliError::new(format!("cannot read the body from stdin: {e}")))?;
            Ok(body)
        }
    }
}

/// The headers of a delivery: the lines of `file` first, then each `--header` argument, in
/// order. A header given twice stays two values.
///
/// # Errors
/// A line or argument that is not `Name: value`, or a file that cannot be read. The message
/// names the line or argument by position, never by content (a header value may be a secret).
pub(crate) fn collect_headers(
    file: Option<&Path>,
    args: &[String],
) -> Result<Vec<(String, String)>, CliError> {
    let mut headers = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::new(format!(
                "cannot read the headers file {}: {e}",
                path.display()
            ))
        })?;
        for (number, line) in (1_usize..).zip(text.lines()) {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let header = parse_header(line).map_err(|problem| {
                CliError::new(format!(
                    "line {number} of the headers file {}: {problem}",
                    path.display()
                ))
            })?;
            headers.push(header);
        }
    }
    for (number, arg) in (1_usize..).zip(args) {
        let header = parse_header(arg)
            .map_err(|problem| CliError::new(format!("--header number {number}: {problem}")))?;
        headers.push(header);
    }
    Ok(headers)
}

/// Splits `Name: value` at the first colon; the name must be an HTTP token, and spaces and
/// tabs around the value are dropped, as HTTP does.
///
/// # Errors
/// A description of the problem that does not repeat the input.
pub(crate) fn parse_header(line: &str) -> Result<(String, String), &'static str> {
    let Some((name, value)) = line.split_once(':') else {
        return Err("expected `Name: value` (no colon found)");
    };
    let name = name.trim_matches([' ', '\t']);
    if name.is_empty() {
        return Err("expected `Name: value` (the name is empty)");
    }
    if !name.bytes().all(is_token_byte) {
        return Err("the header name has characters an HTTP header name cannot have");
    }
    let value = value.trim_matches([' ', '\t', '\r', '\n']);
    Ok((name.to_owned(), value.to_owned()))
}

/// A byte allowed in an HTTP header name (RFC 9110 `tchar`).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The keys to try: every `--secret`, then each non-blank line of `file`.
///
/// # Errors
/// The file cannot be read, or no key was given at all.
pub(crate) fn collect_secrets(
    args: &[String],
    file: Option<&Path>,
) -> Result<Vec<String>, CliError> {
    let mut secrets = args.to_vec();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::new(format!(
                "cannot read the secret file {}: {e}",
                path.display()
            ))
        })?;
        secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned),
        );
    }
    if secrets.is_empty() {
        return Err(CliError::new(
            "no key given: pass --secret KEY (repeat it for a rotation), set HOOKGATE_SECRET, \
             or use --secret-file PATH",
        ));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_the_first_colon() {
        assert_eq!(
            parse_header("Stripe-Signature: t=1,v1=ab:cd "),
            Ok(("Stripe-Signature".to_owned(), "t=1,v1=ab:cd".to_owned()))
        );
        assert_eq!(
            parse_header("x-empty:"),
            Ok(("x-empty".to_owned(), String::new()))
        );
        assert!(parse_header("no colon here").is_err());
        assert!(parse_header(": value").is_err());
        assert!(parse_header("bad name: value").is_err());
    }

    #[test]
    fn header_errors_never_repeat_the_value() {
        let err = collect_headers(None, &["X-Gitlab-Token hunter2".to_owned()]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(err.to_string().contains("--header number 1"));
    }

    #[test]
    fn no_secret_is_a_usage_error() {
        assert!(collect_secrets(&[], None).is_err());
        assert_eq!(
            collect_secrets(&["a".to_owned()], None).unwrap(),
            vec!["a".to_owned()]
        );
    }
}
