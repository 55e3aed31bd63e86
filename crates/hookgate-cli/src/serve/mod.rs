//! `hookgate serve`.

use crate::Output;
use crate::error::CliError;

/// Arguments of `hookgate serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {}

pub(crate) async fn run(_args: ServeArgs) -> Result<Output, CliError> {
    Err(CliError::new("not yet"))
}
