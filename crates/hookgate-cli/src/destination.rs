//! `hookgate destination pause|resume NAME`: stops and restarts deliveries to one
//! destination of an endpoint. The pause is stored where the endpoint's deliveries are:
//! in its inbox, in the PostgreSQL store of `serve --store` (`--store postgres://…`), or
//! with `--queue URL` in the queue (a Redis set, a JetStream stream), so a running
//! `hookgate serve` or `hookgate work` (another process, every replica of a fleet) holds
//! the destination's deliveries within its poll interval, while the receiver keeps
//! accepting events; nothing is dropped.

use std::path::PathBuf;

use hookgate::BoxFuture;
use hookgate_inbox::EventLog;

use crate::error::CliError;
use crate::inbox::{DEFAULT_DATA_DIR, open_log};
use crate::work::QueueKind;
use crate::{Output, Status as ExitStatus};

/// Arguments of `hookgate destination`.
#[derive(Debug, clap::Args)]
pub(crate) struct DestinationArgs {
    /// The data directory of `hookgate serve`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,

    /// The endpoint, by its name in the config file. Default: the only one, or `default`.
    #[arg(long, value_name = "NAME", global = true)]
    endpoint: Option<String>,

    /// The endpoint's queue instead of its inbox, for `serve --queue URL` with
    /// destinations: the same redis://…?stream=NAME or nats://…?stream=NAME&subject=SUBJ
    /// URL (its stream names the endpoint). `hookgate work` on that queue reads the pauses
    /// from there.
    #[arg(long, value_name = "URL", global = true, conflicts_with_all = ["endpoint", "store"])]
    queue: Option<String>,

    /// The PostgreSQL store of `serve --store` instead of a data directory:
    /// postgres://USER@HOST/DB[?schema=S].
    #[arg(long, value_name = "URL", global = true, conflicts_with = "endpoint")]
    store: Option<String>,

    #[command(subcommand)]
    command: DestinationCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DestinationCommand {
    /// Stop deliveries to NAME (the receiver keeps accepting; they wait).
    Pause {
        /// The destination's name.
        name: String,
    },
    /// Restart deliveries to NAME.
    Resume {
        /// The destination's name.
        name: String,
    },
    /// The paused destinations, one per line.
    Paused,
}

/// Where an endpoint's pauses are kept: the one thing this command needs of a store, so
/// that the inbox and the queues share the command.
trait Pauses {
    /// Pauses `name`; `false` if it was paused already.
    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>>;
    /// Resumes `name`; `false` if it was not paused.
    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>>;
    /// The paused destinations.
    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, String>>;
}

/// The inbox and the PostgreSQL store: their event log keeps the pauses.
impl Pauses for dyn EventLog {
    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.pause_destination(name)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.resume_destination(name)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
        Box::pin(async move { self.paused_destinations().await.map_err(|e| e.to_string()) })
    }
}

impl Pauses for hookgate_redis::StreamPauses {
    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { self.pause(name).await.map_err(|e| e.to_string()) })
    }

    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { self.resume(name).await.map_err(|e| e.to_string()) })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
        Box::pin(async move { self.paused().await.map_err(|e| e.to_string()) })
    }
}

impl Pauses for hookgate_nats::JetStreamPauses {
    fn pause<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { self.pause(name).await.map_err(|e| e.to_string()) })
    }

    fn resume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { self.resume(name).await.map_err(|e| e.to_string()) })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
        Box::pin(async move { self.paused().await.map_err(|e| e.to_string()) })
    }
}

/// Runs `hookgate destination`.
///
/// # Errors
/// No inbox for the endpoint, a queue that cannot be reached, or a store error.
pub(crate) async fn run(args: DestinationArgs) -> Result<Output, CliError> {
    match &args.queue {
        None => {
            let (log, label) = open_log(
                args.store.as_deref(),
                &args.data_dir,
                args.endpoint.as_deref(),
            )
            .await?;
            change(&*log, args.command, &label).await
        }
        Some(url) => {
            let label = format!("--queue {}", crate::serve::redact(url));
            let fail = |e: &dyn std::fmt::Display| CliError::new(format!("{label}: {e}"));
            match QueueKind::of(url)? {
                QueueKind::Redis => {
                    let pauses = hookgate_redis::StreamPauses::connect(url)
                        .await
                        .map_err(|e| fail(&e))?;
                    change(&pauses, args.command, &label).await
                }
                QueueKind::Nats => {
                    let pauses = hookgate_nats::JetStreamPauses::connect(url)
                        .await
                        .map_err(|e| fail(&e))?;
                    change(&pauses, args.command, &label).await
                }
                QueueKind::Postgres => Err(CliError::new(format!(
                    "{label}: --queue takes a redis:// or nats:// queue here"
                ))),
            }
        }
    }
}

/// Applies `command` to the pauses in `store`.
async fn change<P: Pauses + ?Sized>(
    store: &P,
    command: DestinationCommand,
    label: &str,
) -> Result<Output, CliError> {
    let fail = |e: String| CliError::new(format!("{label}: {e}"));
    let text = match command {
        DestinationCommand::Pause { name } => {
            if store.pause(&name).await.map_err(fail)? {
                format!("paused destination {name}\n")
            } else {
                format!("destination {name} was paused already\n")
            }
        }
        DestinationCommand::Resume { name } => {
            if store.resume(&name).await.map_err(fail)? {
                format!("resumed destination {name}\n")
            } else {
                format!("destination {name} was not paused\n")
            }
        }
        DestinationCommand::Paused => {
            let names = store.paused().await.map_err(fail)?;
            names.iter().map(|n| format!("{n}\n")).collect()
        }
    };
    Ok(Output::new(text, ExitStatus::Success))
}
