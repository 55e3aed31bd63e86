//! What `hookgate serve` runs: endpoints from the flags (one) or from a TOML file (several),
//! and the generated secret of a first run.
//!
//! ```toml
//! listen = "127.0.0.1:8787"        # optional; --listen wins
//! data_dir = "./hookgate-data"     # optional; --data-dir wins
//! header_timeout = "30s"           # optional; slower request heads are disconnected
//! body_timeout = "10s"             # optional; a body trickled past it gets 408
//! max_connections = 512            # optional; beyond, 503 over_capacity
//! max_in_flight = 256              # optional; requests answered at once, beyond: 503
//!
//! [tls]                            # optional; --tls-cert/--tls-key win
//! cert = "cert.pem"
//! key = "key.pem"
//!
//! [[endpoint]]
//! name = "stripe"                  # the inbox's name (default: "default")
//! path = "/webhooks/stripe"
//! scheme = "stripe"
//! tolerance = 300                  # seconds; optional
//! max_body = 1048576               # bytes; optional
//! forward = "http://127.0.0.1:3000/stripe"   # or exec = "cmd", or queue = "URL", or none: print
//! dedup = "redis://127.0.0.1:6379/?prefix=hookgate:dedup:"   # optional: shared by replicas
//! dedup_fail_open = false          # optional: accept on while Redis is down
//! store = "postgres://hookgate@10.0.0.9/app?schema=hookgate_stripe"  # optional: instead of
//!                                  # the local inbox, a PostgreSQL store shared by replicas
//! keys = [
//!   { secret = "whsec_new" },
//!   { secret_env = "OLD_STRIPE_SECRET", not_after = "2025-07-01T00:00:00Z" },
//! ]
//! retry = { max_attempts = 12, base = "1s", cap = "1h" }   # optional
//!
//! # Instead of forward/exec: several destinations, each with its own deliveries
//! # (local inbox only). See docs/DESTINATIONS.md.
//! [[endpoint.destination]]
//! name = "billing"
//! forward = "http://127.0.0.1:3000/billing"          # or exec = "CMD"
//! filter = { type = ["invoice.*"], body = { "/data/object/livemode" = true } }
//! rate = "50/s"
//! concurrency = 4
//! order_key = "/data/object/customer"
//! circuit = { failures = 5, open_for = "30s" }
//! retry = { max_attempts = 12, base = "1s", cap = "1h" }  # missing keys: the endpoint's
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hookgate::SchemeId;
use hookgate_queue::{Destination, DestinationConfig, DestinationTarget, RetryPolicy, Router};
use serde::Deserialize;

use crate::duration::{parse_duration, parse_instant};
use crate::error::CliError;
use crate::inbox::DEFAULT_ENDPOINT;

/// The configuration file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) header_timeout: Option<String>,
    pub(super) body_timeout: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) tls: Option<TlsFile>,
    #[serde(default, rename = "endpoint")]
    pub(super) endpoints: Vec<EndpointFile>,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// One `[[endpoint]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointFile {
    name: Option<String>,
    path: String,
    scheme: String,
    #[serde(default)]
    keys: Vec<KeyFile>,
    tolerance: Option<u64>,
    max_body: Option<usize>,
    forward: Option<String>,
    exec: Option<String>,
    queue: Option<String>,
    dedup: Option<String>,
    #[serde(default)]
    dedup_fail_open: bool,
    store: Option<String>,
    public_url: Option<String>,
    verify_token: Option<String>,
    retry: Option<RetryFile>,
    #[serde(default, rename = "destination")]
    destinations: Vec<DestinationConfig>,
}

/// One key of an endpoint's keyring.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    not_after: Option<String>,
}

/// An endpoint's retry policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFile {
    pub(super) max_attempts: Option<u32>,
    pub(super) base: Option<String>,
    pub(super) cap: Option<String>,
}

/// A key, resolved.
#[derive(Clone)]
pub(super) struct KeySpec {
    pub(super) secret: String,
    pub(super) not_after: Option<SystemTime>,
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySpec")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What happens to each verified event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// POST the envelope to this URL.
    Forward(String),
    /// Pipe the envelope to this shell command.
    Exec(String),
    /// Print the envelope as one JSON line.
    Print,
    /// Append the envelope to a Redis stream or a NATS JetStream stream (this URL), for
    /// consumers elsewhere: nothing is processed locally.
    Queue(String),
}

/// The queue backend a `queue` URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueKind {
    Redis,
    Nats,
}

/// Which backend a `--queue` URL names.
pub(crate) fn queue_kind(url: &str) -> Result<QueueKind, String> {
    if is_redis(url) {
        Ok(QueueKind::Redis)
    } else if url.starts_with("nats://") {
        Ok(QueueKind::Nats)
    } else {
        Err(format!(
            "the queue URL {} must start with redis://, redis+unix:// or nats://",
            redact(url)
        ))
    }
}

/// Checks a `--dedup` URL: only Redis is a shared dedup store.
pub(super) fn check_dedup(url: &str) -> Result<(), String> {
    if is_redis(url) {
        Ok(())
    } else {
        Err(format!(
            "the dedup URL {} must start with redis:// or redis+unix://",
            redact(url)
        ))
    }
}

fn is_redis(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("redis+unix://")
}

/// Whether `url` names a PostgreSQL database.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A URL without its user and password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(host_end);
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// How failed processing is retried.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    pub(super) max_attempts: u32,
    pub(super) base: Duration,
    pub(super) cap: Duration,
}

/// One endpoint, resolved.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) name: String,
    pub(super) path: String,
    pub(super) scheme: SchemeId,
    pub(super) keys: Vec<KeySpec>,
    pub(super) tolerance: Option<Duration>,
    pub(super) max_body: Option<usize>,
    pub(super) action: Action,
    /// A shared Redis dedup store instead of the inbox.
    pub(super) dedup: Option<String>,
    /// Wrap the Redis dedup store in `FailOpenDedupStore`.
    pub(super) dedup_fail_open: bool,
    /// A PostgreSQL store shared by the replicas instead of the local inbox.
    pub(super) store: Option<String>,
    pub(super) public_url: Option<String>,
    /// The verify token of the scheme's GET handshake (Meta).
    pub(super) verify_token: Option<String>,
    pub(super) retry: Retry,
    /// The endpoint's destinations (none: its `action` takes every event).
    pub(super) destinations: Vec<Destination>,
}

impl Retry {
    /// The worker's policy.
    pub(super) fn policy(self) -> RetryPolicy {
        RetryPolicy::new()
            .base(self.base)
            .cap(self.cap)
            .max_attempts(self.max_attempts)
    }
}

/// Checks an endpoint's destinations (from `[[endpoint.destination]]` or `--destination`)
/// with the endpoint's retry policy as their default. Messages start with `endpoint E,
/// destination D: ` and name the key at fault.
///
/// # Errors
/// The first mistake.
pub(super) fn destinations(
    endpoint: &str,
    configs: &[DestinationConfig],
    retry: Retry,
    action: &Action,
) -> Result<Vec<Destination>, String> {
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    // An endpoint-level queue holds the destinations' streams (one per destination):
    // `hookgate work --queue URL --destination …` delivers them.
    match action {
        Action::Print => {}
        Action::Queue(url) => {
            queue_kind(url)?;
        }
        _ => {
            return Err(format!(
                "endpoint {endpoint}: an endpoint with destinations sends each event to them: \
                 remove its own forward or exec (declare it as one more destination)"
            ));
        }
    }
    let mut out = Vec::with_capacity(configs.len());
    for config in configs {
        let at = |problem: String| {
            format!(
                "endpoint {endpoint}, destination {}: {problem}",
                config.name()
            )
        };
        let destination = config
            .resolve(retry.policy())
            .map_err(|e| at(e.to_string()))?;
        match destination.target() {
            DestinationTarget::Forward(url) => {
                crate::client::parse_url(url, "forward").map_err(|e| at(e.to_string()))?;
            }
            DestinationTarget::Exec(_) => {}
            _ => {
                return Err(at(
                    "queue: a destination cannot hand events to a queue yet; use forward or \
                     exec (or an endpoint of its own with queue = \"URL\")"
                        .to_owned(),
                ));
            }
        }
        out.push(destination);
    }
    Router::new(out.clone()).map_err(|e| format!("endpoint {endpoint}: destination {e}"))?;
    Ok(out)
}

/// Reads one `--destination` value: the keys of a `[[endpoint.destination]]` table as an
/// inline TOML table without its braces, e.g. `name = "billing", forward =
/// "http://127.0.0.1:3000/", filter = { type = "invoice.*" }`.
///
/// # Errors
/// Not TOML, or a key the table does not have.
pub(super) fn destination_flag(text: &str) -> Result<DestinationConfig, String> {
    #[derive(Deserialize)]
    struct One {
        destination: DestinationConfig,
    }
    toml::from_str::<One>(&format!("destination = {{ {text} }}"))
        .map(|one| one.destination)
        .map_err(|e| format!("--destination {text:?}: {}", e.message()))
}

/// Reads and parses the configuration file.
///
/// # Errors
/// Unreadable or not valid TOML for this format (the message names the field).
pub(super) fn read(path: &Path) -> Result<File, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(format!(
            "cannot read the config file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| CliError::new(format!("config file {}: {e}", path.display())))
}

/// Resolves the file's endpoints, with `retry` as the default policy.
///
/// # Errors
/// An unknown scheme, a bad path, a key that cannot be read, a name used twice.
pub(super) fn endpoints(file: &File, retry: Retry) -> Result<Vec<Endpoint>, CliError> {
    if file.endpoints.is_empty() {
        return Err(CliError::new(
            "the config file declares no [[endpoint]]: add one with path, scheme and keys",
        ));
    }
    let mut out: Vec<Endpoint> = Vec::new();
    for (n, spec) in (1_usize..).zip(&file.endpoints) {
        let at =
            |problem: String| CliError::new(format!("config [[endpoint]] number {n}: {problem}"));
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        check_name(&name).map_err(at)?;
        if out.iter().any(|e| e.name == name) {
            return Err(at(format!(
                "the name {name:?} is used twice (each endpoint needs its own name)"
            )));
        }
        check_path(&spec.path).map_err(at)?;
        if out.iter().any(|e| e.path == spec.path) {
            return Err(at(format!("the path {} is used twice", spec.path)));
        }
        let scheme: SchemeId = crate::parse_scheme(&spec.scheme).map_err(at)?;
        let mut keys = Vec::new();
        for (k, key) in (1_usize..).zip(&spec.keys) {
            keys.push(resolve_key(key).map_err(|p| at(format!("key number {k}: {p}")))?);
        }
        if keys.is_empty() {
            return Err(at("no keys: add keys = [{ secret = \"...\" }]".to_owned()));
        }
        let action = match (&spec.forward, &spec.exec, &spec.queue) {
            (Some(_), Some(_), _) => {
                return Err(at("forward and exec are exclusive".to_owned()));
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(at(
                    "queue hands events to consumers on other machines, so it \
                     cannot be combined with forward or exec (which process them here)"
                        .to_owned(),
                ));
            }
            (Some(url), None, None) => {
                crate::client::parse_url(url, "forward").map_err(|e| at(e.to_string()))?;
                Action::Forward(url.clone())
            }
            (None, Some(command), None) => Action::Exec(command.clone()),
            (None, None, Some(url)) => {
                queue_kind(url).map_err(at)?;
                Action::Queue(url.clone())
            }
            (None, None, None) => Action::Print,
        };
        if let Some(url) = &spec.dedup {
            check_dedup(url).map_err(at)?;
        } else if spec.dedup_fail_open {
            return Err(at("dedup_fail_open needs dedup = \"redis://…\"".to_owned()));
        }
        if let Some(url) = &spec.store {
            check_store(url, spec.queue.is_some(), spec.dedup.is_some()).map_err(at)?;
        }
        let retry = match &spec.retry {
            Some(r) => retry_from(r, retry).map_err(at)?,
            None => retry,
        };
        let destinations =
            destinations(&name, &spec.destinations, retry, &action).map_err(CliError::new)?;
        out.push(Endpoint {
            name,
            path: spec.path.clone(),
            scheme,
            keys,
            tolerance: spec.tolerance.map(Duration::from_secs),
            max_body: spec.max_body,
            action,
            dedup: spec.dedup.clone(),
            dedup_fail_open: spec.dedup_fail_open,
            store: spec.store.clone(),
            public_url: spec.public_url.clone(),
            verify_token: spec.verify_token.clone(),
            retry,
            destinations,
        });
    }
    Ok(out)
}

/// Checks a `store` URL: PostgreSQL, and alone (it is the dedup store, the sink and the
/// queue at once).
pub(super) fn check_store(url: &str, with_queue: bool, with_dedup: bool) -> Result<(), String> {
    if !is_postgres(url) {
        return Err("store: a postgres://… URL (the PostgreSQL store)".to_owned());
    }
    if with_queue || with_dedup {
        return Err(
            "store keeps dedup, queue and event log in PostgreSQL, so it cannot be combined \
             with queue or dedup"
                .to_owned(),
        );
    }
    Ok(())
}

fn retry_from(file: &RetryFile, default: Retry) -> Result<Retry, String> {
    let duration = |text: &Option<String>, fallback: Duration, what: &str| match text {
        Some(text) => parse_duration(text).map_err(|e| format!("retry.{what}: {e}")),
        None => Ok(fallback),
    };
    Ok(Retry {
        max_attempts: file.max_attempts.unwrap_or(default.max_attempts),
        base: duration(&file.base, default.base, "base")?,
        cap: duration(&file.cap, default.cap, "cap")?,
    })
}

fn resolve_key(key: &KeyFile) -> Result<KeySpec, String> {
    let secret = match (&key.secret, &key.secret_env, &key.secret_file) {
        (Some(secret), None, None) => secret.clone(),
        (None, Some(var), None) => {
            std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))?
        }
        (None, None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .trim()
            .to_owned(),
        _ => return Err("give exactly one of secret, secret_env, secret_file".to_owned()),
    };
    let not_after = match &key.not_after {
        Some(text) => {
            Some(parse_instant(text, SystemTime::now()).map_err(|e| format!("not_after: {e}"))?)
        }
        None => None,
    };
    Ok(KeySpec { secret, not_after })
}

/// An endpoint's name becomes part of a file name: letters, digits, `-` and `_`.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "the name {name:?} must be 1 to 64 letters, digits, - or _"
        ))
    }
}

/// A path starts with `/` and has no query.
pub(super) fn check_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') && !path.contains(['?', '#', ' ']) {
        Ok(())
    } else {
        Err(format!(
            "the path {path:?} must start with / and have no query string"
        ))
    }
}

/// The secret of a first run without keys: read from `DIR/secret`, or generated there (a
/// Standard Webhooks `whsec_` secret of 32 random bytes). Returns the secret and whether it
/// was generated now.
///
/// # Errors
/// The file cannot be read or written, or no random bytes are available.
pub(super) fn stored_secret(data_dir: &Path) -> Result<(String, bool), CliError> {
    let path = data_dir.join("secret");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CliError::new(format!(
                "cannot read the secret file {}: {e}",
                path.display()
            ))
        })?;
        let secret = text.trim().to_owned();
        if secret.is_empty() {
            return Err(CliError::new(format!(
                "the secret file {} is empty: delete it to generate a new secret",
                path.display()
            )));
        }
        return Ok((secret, false));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| CliError::new(format!("no random bytes for a secret: {e}")))?;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    write_private(&path, &format!("{secret}\n"))?;
    Ok((secret, true))
}

/// Writes a file only its owner can read (mode 0600 on Unix), refusing to replace one.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        CliError::new(format!(
            "cannot create the secret file {}: {e}",
            path.display()
        ))
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            CliError::new(format!(
                "cannot write the secret file {}: {e}",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> Retry {
        Retry {
            max_attempts: 12,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_config_declares_several_endpoints() {
        let file: File = toml::from_str(
            r#"
            listen = "127.0.0.1:0"
            [[endpoint]]
            name = "stripe"
            path = "/webhooks/stripe"
            scheme = "stripe"
            forward = "http://127.0.0.1:3000/stripe"
            keys = [{ secret = "whsec_a" }, { secret = "whsec_b", not_after = "2030-01-01T00:00:00Z" }]
            retry = { max_attempts = 3, base = "10ms" }

            [[endpoint]]
            name = "gh"
            path = "/webhooks/github"
            scheme = "github"
            exec = "cat"
            keys = [{ secret = "s" }]
            "#,
        )
        .unwrap();
        let endpoints = endpoints(&file, retry()).unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].scheme, SchemeId::Stripe);
        assert_eq!(endpoints[0].keys.len(), 2);
        assert!(endpoints[0].keys[1].not_after.is_some());
        assert_eq!(endpoints[0].retry.max_attempts, 3);
        assert_eq!(endpoints[0].retry.base, Duration::from_millis(10));
        assert_eq!(endpoints[0].retry.cap, Duration::from_secs(3600));
        assert_eq!(endpoints[1].action, Action::Exec("cat".to_owned()));
        assert!(
            format!("{:?}", endpoints[0].keys[0])
                .find("whsec")
                .is_none()
        );
    }

    #[test]
    fn config_mistakes_are_named() {
        let bad = |text: &str| {
            let file: File = toml::from_str(text).unwrap();
            endpoints(&file, retry()).unwrap_err().to_string()
        };
        assert!(bad("").contains("no [[endpoint]]"));
        assert!(
            bad("[[endpoint]]\npath='x'\nscheme='github'\nkeys=[{secret='s'}]")
                .contains("must start with /")
        );
        assert!(
            bad("[[endpoint]]\npath='/x'\nscheme='nope'\nkeys=[{secret='s'}]")
                .contains("unknown scheme")
        );
        assert!(bad("[[endpoint]]\npath='/x'\nscheme='github'").contains("no keys"));
        assert!(
            bad("[[endpoint]]\npath='/x'\nscheme='github'\nkeys=[{secret='s'}]\n[[endpoint]]\npath='/y'\nscheme='github'\nkeys=[{secret='s'}]")
                .contains("used twice")
        );
        assert!(
            toml::from_str::<File>("[[endpoint]]\npath='/x'\nscheme='github'\ncolour='red'")
                .is_err()
        );
        let base = "[[endpoint]]\npath='/x'\nscheme='github'\nkeys=[{secret='s'}]\n";
        assert!(
            bad(&format!("{base}queue='nats://h/'\nforward='http://h/'"))
                .contains("cannot be combined with forward or exec")
        );
        assert!(bad(&format!("{base}queue='amqp://h/'")).contains("must start with redis://"));
        assert!(
            bad(&format!("{base}dedup='nats://h/'")).contains("dedup URL nats://h/ must start")
        );
        assert!(bad(&format!("{base}dedup_fail_open=true")).contains("needs dedup"));
    }

    #[test]
    fn an_endpoint_queue_holds_its_destinations_and_their_lanes() {
        let text = |queue: &str, extra: &str| {
            format!(
                r#"
                [[endpoint]]
                path = "/x"
                scheme = "github"
                keys = [{{ secret = "s" }}]
                queue = "{queue}"
                [[endpoint.destination]]
                name = "billing"
                forward = "http://127.0.0.1:3000/b"
                {extra}
                [[endpoint.destination]]
                name = "audit"
                exec = "./audit.sh"
                "#
            )
        };
        let redis = "redis://127.0.0.1:6379/?stream=s";
        let nats = "nats://127.0.0.1:4222/?stream=S&subject=s";
        let file: File = toml::from_str(&text(redis, "")).unwrap();
        let resolved = endpoints(&file, retry()).unwrap();
        assert!(matches!(resolved[0].action, Action::Queue(_)));
        let names: Vec<&str> = resolved[0].destinations.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["billing", "audit"]);

        let lanes = r#"order_key = "/customer""#;
        let file: File = toml::from_str(&text(redis, lanes)).unwrap();
        let resolved = endpoints(&file, retry()).unwrap();
        assert!(resolved[0].destinations[0].order_key().is_some());
        let file: File = toml::from_str(&text(nats, lanes)).unwrap();
        let resolved = endpoints(&file, retry()).unwrap();
        assert!(resolved[0].destinations[0].order_key().is_some());
    }

    #[test]
    fn a_config_endpoint_can_share_dedup_and_queue() {
        let file: File = toml::from_str(
            r#"
            [[endpoint]]
            path = "/x"
            scheme = "github"
            keys = [{ secret = "s" }]
            dedup = "redis://127.0.0.1:6379/?prefix=p:"
            dedup_fail_open = true
            queue = "nats://127.0.0.1:4222/?stream=S&subject=s"
            "#,
        )
        .unwrap();
        let endpoints = endpoints(&file, retry()).unwrap();
        assert_eq!(
            endpoints[0].action,
            Action::Queue("nats://127.0.0.1:4222/?stream=S&subject=s".to_owned())
        );
        assert_eq!(
            endpoints[0].dedup.as_deref(),
            Some("redis://127.0.0.1:6379/?prefix=p:")
        );
        assert!(endpoints[0].dedup_fail_open);
    }

    #[test]
    fn urls_in_messages_hide_passwords() {
        assert_eq!(
            redact("redis://user:pw@h:6379/?stream=s"),
            "redis://***@h:6379/?stream=s"
        );
        assert_eq!(redact("nats://h:4222/"), "nats://h:4222/");
        assert_eq!(queue_kind("redis+unix:///tmp/r.sock"), Ok(QueueKind::Redis));
    }

    #[test]
    fn the_first_run_generates_a_secret_once() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, generated) = stored_secret(dir.path()).unwrap();
        assert!(generated && secret.starts_with("whsec_"));
        let (again, generated) = stored_secret(dir.path()).unwrap();
        assert_eq!((again.as_str(), generated), (secret.as_str(), false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
