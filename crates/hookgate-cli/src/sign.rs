//! `hookgate sign`: the headers a provider would add to a delivery.

use std::path::PathBuf;

use hookgate::{SchemeId, SignRequest, SignedDelivery, Signer};

use crate::error::CliError;
use crate::input;
use crate::{Output, Status};

/// Arguments of `hookgate sign`.
#[derive(Debug, clap::Args)]
pub(crate) struct SignArgs {
    /// The scheme id, e.g. stripe, github, standard-webhooks-v1 (list: `hookgate schemes`).
    #[arg(long, value_name = "ID", value_parser = crate::parse_scheme)]
    scheme: SchemeId,

    /// The signing key: the shared secret for HMAC schemes; for standard-webhooks-v1a the
    /// whsk_ key; for discord the hex Ed25519 private key (seed), not the public key; for
    /// sendgrid a base64 PKCS#8 DER P-256 private key.
    #[arg(
        long,
        value_name = "KEY",
        env = "HOOKGATE_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    secret: String,

    /// The delivery id (default: derived from the body and the timestamp). Mailgun uses it
    /// as the token.
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// The timestamp in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    timestamp: Option<i64>,

    /// The URL the delivery goes to. Required by twilio, twilio-body-sha256, square and
    /// hubspot-v3; azure-event-grid adds its token to it (`code=`).
    #[arg(long)]
    url: Option<String>,

    /// The HTTP method the delivery is sent with (default POST). Signed by hubspot-v3;
    /// ignored by the other schemes.
    #[arg(long, value_name = "METHOD")]
    method: Option<String>,

    /// The file holding the body to sign. Without it (or with -) the body is read from stdin.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,

    /// The event type, sent in the scheme's event header where it has one (GitHub, Shopify,
    /// GitLab, Linear, Twitch).
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,

    /// Write the body to send to this file instead of stdout. Only mailgun, figma,
    /// microsoft-graph and braintree change the body (the signature, or the token, lives in
    /// it); for the other schemes the file gets the body unchanged.
    #[arg(long, value_name = "PATH")]
    out_body: Option<PathBuf>,
}

/// Runs `hookgate sign`.
///
/// # Errors
/// A usage or configuration problem: an unusable key, a URL-signing scheme without `--url`,
/// an unreadable body or an unwritable `--out-body`.
pub(crate) fn run(args: SignArgs) -> Result<Output, CliError> {
    let scheme = args.scheme;
    if scheme.signs_url() && args.url.is_none() {
        return Err(CliError::missing_url(scheme.as_str()));
    }
    // Azure Event Grid signs nothing; its token goes into the URL's query when one is given.
    if args.url.is_some() && !scheme.signs_url() && scheme != SchemeId::AzureEventGrid {
        crate::note(&format!("{scheme} does not sign the URL: --url is ignored"));
    }
    if args.method.is_some() && !scheme.signs_method() {
        crate::note(&format!(
            "{scheme} does not sign the HTTP method: --method is ignored"
        ));
    }
    let signer = Signer::new(scheme, &args.secret).map_err(|e| CliError::config(&e))?;
    let body = input::read_body(args.body_file.as_deref())?;
    let mut request = SignRequest::new(body);
    if let Some(id) = args.id {
        request = request.id(id);
    }
    if let Some(timestamp) = args.timestamp {
        request = request.timestamp(timestamp);
    }
    if let Some(url) = args.url {
        request = request.url(url);
    }
    if let Some(event_type) = args.event_type {
        request = request.event_type(event_type);
    }
    if let Some(method) = args.method {
        request = request.method(method);
    }
    let delivery = signer.sign(&request).map_err(|e| CliError::config(&e))?;
    if let Some(path) = &args.out_body {
        std::fs::write(path, &delivery.body).map_err(|e| {
            CliError::new(format!("cannot write the body to {}: {e}", path.display()))
        })?;
    }
    Ok(Output::new(
        render(scheme, &delivery, args.out_body.is_none()),
        Status::Success,
    ))
}

/// The `sign` output: `# url: …` for twilio-body-sha256 and azure-event-grid (the URL to
/// call: with `bodySHA256`, or with the token in `code`), the headers one per line, then for
/// the schemes that sign in the body (mailgun, figma, microsoft-graph, braintree; unless the
/// body went to a file) a blank line and the signed body.
fn render(scheme: SchemeId, delivery: &SignedDelivery, body_to_stdout: bool) -> Vec<u8> {
    let mut out = String::new();
    if matches!(
        scheme,
        SchemeId::TwilioBodySha256 | SchemeId::AzureEventGrid
    ) {
        if let Some(url) = &delivery.url {
            out.push_str(&format!("# url: {url}\n"));
        }
    }
    for (name, value) in &delivery.headers {
        out.push_str(&format!("{name}: {value}\n"));
    }
    let mut out = out.into_bytes();
    // Schemes without a signature header carry it in the body (Mailgun's signature, Figma's
    // passcode, Microsoft Graph's clientState, Braintree's bt_signature).
    if scheme.signature_header().is_none() && body_to_stdout {
        out.push(b'\n');
        out.extend_from_slice(&delivery.body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailgun_body_follows_a_blank_line_unless_written_to_a_file() {
        let delivery = SignedDelivery {
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{\"signature\":{}}"),
            url: None,
        };
        assert_eq!(
            render(SchemeId::Mailgun, &delivery, true),
            b"\n{\"signature\":{}}".to_vec()
        );
        assert!(render(SchemeId::Mailgun, &delivery, false).is_empty());
        assert!(render(SchemeId::Github, &delivery, true).is_empty());
    }

    #[test]
    fn twilio_json_prints_the_url_to_call_first() {
        let delivery = SignedDelivery {
            headers: vec![("X-Twilio-Signature".to_owned(), "abc=".to_owned())],
            body: bytes::Bytes::new(),
            url: Some("https://x.test/h?bodySHA256=00".to_owned()),
        };
        let text = String::from_utf8(render(SchemeId::TwilioBodySha256, &delivery, true)).unwrap();
        assert_eq!(
            text,
            "# url: https://x.test/h?bodySHA256=00\nX-Twilio-Signature: abc=\n"
        );
    }
}
