//! `hookgate destination pause|resume NAME`: stops and restarts deliveries to one
//! destination of an endpoint. The pause is stored in the endpoint's inbox, or in the
//! PostgreSQL store of `serve --store` (`--store postgres://…`), so a running `hookgate
//! serve` (another process, every replica of a fleet) holds the destination's deliveries
//! within its poll interval, while its receiver keeps accepting events; nothing is
//! dropped. Both stores answer through [`EventLog`](hookgate_inbox::EventLog).

use std::path::PathBuf;

use hookgate_inbox::event_log::LogError;

use crate::error::CliError;
use crate::inbox::{DEFAULT_DATA_DIR, open_log};
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

/// Runs `hookgate destination`.
///
/// # Errors
/// No inbox for the endpoint, or a database error.
pub(crate) async fn run(args: DestinationArgs) -> Result<Output, CliError> {
    let (log, label) = open_log(
        args.store.as_deref(),
        &args.data_dir,
        args.endpoint.as_deref(),
    )
    .await?;
    let fail = |e: LogError| CliError::new(format!("{label}: {e}"));
    let text = match args.command {
        DestinationCommand::Pause { name } => {
            if log.pause_destination(&name).await.map_err(fail)? {
                format!("paused destination {name}\n")
            } else {
                format!("destination {name} was paused already\n")
            }
        }
        DestinationCommand::Resume { name } => {
            if log.resume_destination(&name).await.map_err(fail)? {
                format!("resumed destination {name}\n")
            } else {
                format!("destination {name} was not paused\n")
            }
        }
        DestinationCommand::Paused => {
            let names = log.paused_destinations().await.map_err(fail)?;
            names.iter().map(|n| format!("{n}\n")).collect()
        }
    };
    Ok(Output::new(text, ExitStatus::Success))
}
