//! `hookgate console`: the web console over an event log, without a receiver (for a store
//! that other processes fill, such as the PostgreSQL store of a fleet, or to look at a data
//! directory after the fact).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookgate_inbox::{EventLog, Inbox};
use hookgate_postgres::PgStore;
use tokio::net::TcpListener;

use super::auth::{Auth, TOKEN_FILE, stored_token};
use super::{Console, ConsoleEndpoint, PREFIX};
use crate::error::CliError;
use crate::inbox::{DEFAULT_DATA_DIR, DEFAULT_ENDPOINT, existing_inbox, inbox_path};
use crate::{Output, Status as ExitStatus};

/// The console's own address when none is given.
pub(crate) const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:8788";

/// Arguments of `hookgate console`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsoleArgs {
    /// The data directory of `hookgate serve`: every endpoint's inbox in it is shown, and a
    /// generated console token is kept there (also for a PostgreSQL --store). Default:
    /// ./hookgate-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Only this endpoint's inbox (its name in the config file); with a PostgreSQL
    /// --store, the name the console shows for it (default: the store's schema).
    #[arg(long, value_name = "NAME")]
    endpoint: Option<String>,

    /// The store to show instead: the PostgreSQL store of `serve --store`
    /// (postgres://USER@HOST/DB[?schema=S]), or an inbox database file (a path, or
    /// sqlite://PATH, whose token is kept beside it).
    #[arg(long, value_name = "URL")]
    store: Option<String>,

    /// The address to listen on (port 0 picks a free port; the actual address is printed).
    /// Keep it on 127.0.0.1 unless the network in between is trusted.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_CONSOLE_LISTEN)]
    listen: String,

    /// The console token (at least 16 characters). Default: generated on first start,
    /// kept in the data directory (console-token) and printed.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HOOKGATE_CONSOLE_TOKEN",
        hide_env_values = true
    )]
    console_token: Option<String>,
}

/// Runs `hookgate console` until SIGTERM or Ctrl-C.
///
/// # Errors
/// No inbox to show, a bad token, an address that cannot be bound.
pub(crate) async fn run(args: ConsoleArgs) -> Result<Output, CliError> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let (opened, token_dir) = match &args.store {
        Some(url) if crate::serve::is_postgres(url) => {
            let shown = crate::serve::redact(url);
            let store = PgStore::connect(url)
                .await
                .map_err(|e| CliError::new(format!("--store {shown}: {e}")))?;
            let name = args
                .endpoint
                .clone()
                .unwrap_or_else(|| store.schema().to_owned());
            let log: Arc<dyn EventLog> = Arc::new(store);
            (vec![ConsoleEndpoint { name, log }], data_dir)
        }
        Some(store) => {
            if args.endpoint.is_some() || args.data_dir.is_some() {
                return Err(CliError::new(
                    "--store with an inbox file takes neither --endpoint nor --data-dir (the \
                     token is kept beside the file)",
                ));
            }
            let path = PathBuf::from(store.strip_prefix("sqlite://").unwrap_or(store));
            if !path.is_file() {
                return Err(CliError::new(format!(
                    "--store {}: no such inbox database",
                    path.display()
                )));
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| s.strip_prefix("inbox-").unwrap_or(s))
                .filter(|s| *s != "inbox")
                .unwrap_or(DEFAULT_ENDPOINT)
                .to_owned();
            let dir = path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            (vec![open_inbox(name, &path)?], dir)
        }
        None => {
            let mut opened = Vec::new();
            for (name, path) in inboxes(&data_dir, args.endpoint.as_deref())? {
                opened.push(open_inbox(name, &path)?);
            }
            (opened, data_dir)
        }
    };
    let auth = console_auth(args.console_token.as_deref(), &token_dir)?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot read the bound address: {e}")))?;
    crate::note(&format!("console: http://{addr}{PREFIX}/"));
    let console = Arc::new(Console::new(auth, opened, None, false));
    crate::serve::eprintln_flush(&format!("listening on {addr}"));
    crate::serve::serve(
        listener,
        None,
        Arc::new(ConsoleOnly(console)),
        crate::serve::Limits::default(),
    )
    .await;
    Ok(Output::new(Vec::new(), ExitStatus::Success))
}

/// The inbox at `path`, as the console endpoint `name`.
fn open_inbox(name: String, path: &Path) -> Result<ConsoleEndpoint, CliError> {
    let inbox = Inbox::builder(path)
        .no_scheduled_pruning()
        .open()
        .map_err(|e| CliError::new(format!("inbox {}: {e}", path.display())))?;
    Ok(ConsoleEndpoint {
        name,
        log: Arc::new(inbox),
    })
}

/// The console's token: the flag's, else the one kept in `dir` (generated and printed on
/// first start, like the receiver's secret).
///
/// # Errors
/// A token under 16 characters, an unreadable or unwritable token file.
pub(crate) fn console_auth(flag: Option<&str>, dir: &Path) -> Result<Auth, CliError> {
    if let Some(token) = flag {
        return Auth::new(token).map_err(|e| CliError::new(format!("--console-token: {e}")));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::new(format!(
            "cannot create the data directory {}: {e}",
            dir.display()
        ))
    })?;
    let (token, generated) = stored_token(dir)?;
    let path = dir.join(TOKEN_FILE);
    if generated {
        crate::note(&format!(
            "no --console-token given: generated this console token, kept in {} (sign in \
             with it, or send it as `Authorization: Bearer TOKEN`):\n\n    {token}\n",
            path.display()
        ));
    } else {
        crate::note(&format!(
            "no --console-token given: using the console token kept in {}",
            path.display()
        ));
    }
    Auth::new(&token).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}

/// Every endpoint's inbox in `data_dir` (the default one first), or just `endpoint`'s.
fn inboxes(data_dir: &Path, endpoint: Option<&str>) -> Result<Vec<(String, PathBuf)>, CliError> {
    if let Some(name) = endpoint {
        return Ok(vec![(
            name.to_owned(),
            existing_inbox(data_dir, Some(name))?,
        )]);
    }
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| {
                    if n == "inbox.db" {
                        Some(DEFAULT_ENDPOINT.to_owned())
                    } else {
                        n.strip_prefix("inbox-")
                            .and_then(|n| n.strip_suffix(".db"))
                            .map(str::to_owned)
                    }
                })
                .map(|name| {
                    let path = inbox_path(data_dir, &name);
                    (name, path)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| {
        (a.0 != DEFAULT_ENDPOINT)
            .cmp(&(b.0 != DEFAULT_ENDPOINT))
            .then(a.0.cmp(&b.0))
    });
    if found.is_empty() {
        // The same message as `hookgate inbox` for an empty directory.
        existing_inbox(data_dir, None)?;
    }
    Ok(found)
}

/// A listener that serves only the console (its own `--console-listen` address, or
/// `hookgate console`).
#[derive(Debug)]
pub(crate) struct ConsoleOnly(pub(crate) Arc<Console>);

impl crate::serve::Handle for ConsoleOnly {
    async fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<crate::serve::ResponseBodyOf> {
        let path = request.uri().path();
        if path == PREFIX || path.starts_with(&format!("{PREFIX}/")) {
            return self
                .0
                .serve_request(request)
                .await
                .map(http_body_util::Either::Right);
        }
        if path == "/" {
            let mut response = http::Response::new(http_body_util::Either::Right(
                http_body_util::Full::new(bytes::Bytes::new()),
            ));
            *response.status_mut() = http::StatusCode::SEE_OTHER;
            response.headers_mut().insert(
                http::header::LOCATION,
                http::HeaderValue::from_static("/_hookgate/"),
            );
            return response;
        }
        crate::serve::plain(http::StatusCode::NOT_FOUND, "not_found\n")
    }
}
