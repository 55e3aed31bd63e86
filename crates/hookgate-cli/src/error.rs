//! The command's own error type: a usage or configuration problem (exit status 2).

use std::fmt;

use hookgate::ConfigError;

/// A usage or configuration error, printed on stderr with exit status 2.
///
/// Messages name arguments by flag and position, files by path and keys by position: never a
/// secret, a header value or a body, since a header value can be the secret itself (GitLab's
/// `X-Gitlab-Token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError(String);

impl CliError {
    /// An error with this message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        CliError(message.into())
    }

    /// A configuration error of the core library, in terms of the command's flags.
    pub(crate) fn config(error: &ConfigError) -> Self {
        match error {
            ConfigError::MissingUrl(scheme) => CliError::missing_url(scheme),
            ConfigError::ZeroTolerance => CliError::new(
                "--tolerance 0 would reject every delivery; use --no-timestamp-check to turn the \
                 timestamp window off",
            ),
            other => CliError::new(other.to_string()),
        }
    }

    /// The error for a URL-signing scheme given no `--url`.
    pub(crate) fn missing_url(scheme: &str) -> Self {
        CliError::new(format!(
            "scheme {scheme} signs the request URL: pass --url with the exact public URL the \
             provider called (scheme, host, port, path and query string, as configured at the \
             provider)"
        ))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_speak_in_flags() {
        let missing = CliError::config(&ConfigError::MissingUrl("twilio".to_owned()));
        assert!(missing.to_string().contains("--url"));
        let zero = CliError::config(&ConfigError::ZeroTolerance);
        assert!(zero.to_string().contains("--no-timestamp-check"));
        let empty = CliError::config(&ConfigError::EmptyKeyring);
        assert!(empty.to_string().contains("keyring is empty"));
    }
}
