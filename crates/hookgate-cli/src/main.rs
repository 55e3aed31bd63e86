//! The `hookgate` command: verify a captured webhook delivery and say why it fails, sign one
//! as a provider would, and list the schemes hookgate knows.
//!
//! Exit status: 0 valid (or done), 1 invalid delivery, 2 usage or configuration error (the
//! message on stderr). Secrets and expected signatures are never printed.

mod error;
mod hint;
mod input;
mod sign;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookgate::SchemeId;

/// Verify, sign and inspect webhook deliveries for every provider hookgate knows.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a delivery's signature and freshness, and say why it fails.
    ///
    /// The first line is `valid (key N)`, N being the position of the matching key from 0,
    /// or `invalid: REASON` with a reason code such as signature_mismatch. On success the
    /// dedup key, delivery id, event type and timestamp follow; on failure the header at
    /// fault and a hint. With --json, one JSON object instead.
    ///
    /// The body must be the raw bytes exactly as sent (from --body-file, else stdin).
    /// Exit status: 0 valid, 1 invalid, 2 usage or configuration error. Secrets and
    /// expected signatures are never printed.
    ///
    /// Example (the Standard Webhooks official vector):
    ///
    ///   printf '%s' '{"test": 2432232314}' | hookgate verify \
    ///     --scheme standard-webhooks-v1 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
    ///     -H 'webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek' -H 'webhook-timestamp: 1614265330' \
    ///     -H 'webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' \
    ///     --now 1614265330
    #[command(verbatim_doc_comment)]
    Verify(verify::VerifyArgs),

    /// Print the headers a sender would add to a delivery, one `Name: value` per line.
    ///
    /// Output, on stdout:
    ///   - twilio-body-sha256 only: first a line `# url: URL`, the URL to call (Twilio adds
    ///     bodySHA256 to its query string, and signs that URL);
    ///   - the headers, one `Name: value` per line;
    ///   - mailgun only: its signature lives in the body, so a blank line follows the
    ///     headers, then the signed body to send (a JSON object wrapping the given body as
    ///     event-data) — unless --out-body FILE is given, which receives it instead.
    ///
    /// gitlab-token "signs" by sending the token itself: its header carries the secret.
    ///
    /// Example:
    ///
    ///   printf '%s' '{"id":"evt_1"}' | hookgate sign --scheme stripe \
    ///     --secret whsec_test_secret --timestamp 1700000000
    #[command(verbatim_doc_comment)]
    Sign(sign::SignArgs),

    /// List the scheme ids with a one-line description each.
    Schemes,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    stdout: Vec<u8>,
    status: Status,
}

impl Output {
    pub(crate) fn new(stdout: impl Into<Vec<u8>>, status: Status) -> Self {
        Output {
            stdout: stdout.into(),
            status,
        }
    }
}

/// How a command ended, besides usage and configuration errors (exit status 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Exit status 0: done, or the delivery is valid.
    Success,
    /// Exit status 1: the delivery is invalid.
    Invalid,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => verify::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Schemes => Ok(schemes()),
    };
    match result {
        Ok(output) => {
            // A closed stdout (`| head -1`) is not an error of the delivery: keep the status.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(&output.stdout)
                .and_then(|()| stdout.flush());
            match output.status {
                Status::Success => ExitCode::SUCCESS,
                Status::Invalid => ExitCode::from(1),
            }
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "hookgate: error: {error}");
            ExitCode::from(2)
        }
    }
}

/// `hookgate schemes`: every id with its description.
fn schemes() -> Output {
    let width = SchemeId::ALL
        .iter()
        .map(|id| id.as_str().len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for id in SchemeId::ALL {
        out.push_str(&format!("{:<width$}  {}\n", id.as_str(), id.description()));
    }
    Output::new(out, Status::Success)
}

/// Parses `--scheme`.
pub(crate) fn parse_scheme(text: &str) -> Result<SchemeId, String> {
    text.parse()
        .map_err(|_| "unknown scheme; run `hookgate schemes` for the list".to_owned())
}

/// A remark on stderr that does not change the outcome.
pub(crate) fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "hookgate: note: {message}");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn schemes_lists_every_id_once() {
        let text = String::from_utf8(schemes().stdout).unwrap();
        assert_eq!(text.lines().count(), SchemeId::ALL.len());
        for id in SchemeId::ALL {
            assert!(
                text.lines()
                    .any(|l| l.split_whitespace().next() == Some(id.as_str()))
            );
        }
    }
}
