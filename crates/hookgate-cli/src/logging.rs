//! Log lines of the long-running commands (`serve`, `work`, `console`) on stderr: the
//! Gate's rejections and deferrals, the worker's failed leases, dead letters and lane
//! releases, a destination's pause and resume. Without a subscriber these `tracing`
//! events went nowhere, so an operator could not see why a delivery was dead-lettered.
//!
//! `HOOKGATE_LOG` chooses what is written, in `tracing-subscriber`'s filter syntax: `warn`,
//! `debug`, `hookgate_queue=debug,info`, … The default, `info`, writes one line per
//! rejected request and per worker problem, nothing per accepted delivery (those are
//! `debug`). The Gate and the worker log reason codes, ids, names and errors, never a
//! secret, a signature or a body.

use tracing_subscriber::EnvFilter;

use crate::error::CliError;

/// The environment variable that holds the log filter.
pub(crate) const LOG_ENV: &str = "HOOKGATE_LOG";

/// What is logged when `HOOKGATE_LOG` is unset or empty.
const DEFAULT_FILTER: &str = "info";

/// Installs the stderr subscriber, once per process. A filter that cannot be parsed is a
/// usage error naming the variable, so a typo does not silently hide every line.
pub(crate) fn init() -> Result<(), CliError> {
    let filter = filter(std::env::var(LOG_ENV).ok().as_deref())?;
    // A second call (only possible in tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    Ok(())
}

/// The filter for the variable's value, `None` when it is unset.
fn filter(spec: Option<&str>) -> Result<EnvFilter, CliError> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(spec) => EnvFilter::try_new(spec)
            .map_err(|e| CliError::new(format!("{LOG_ENV}={spec:?} is not a log filter: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_blank_means_info_and_a_bad_filter_is_an_error_naming_the_variable() {
        assert_eq!(
            filter(None).map(|f| f.to_string()).ok().as_deref(),
            Some("info")
        );
        assert_eq!(
            filter(Some("  ")).map(|f| f.to_string()).ok().as_deref(),
            Some("info")
        );
        assert_eq!(
            filter(Some("hookgate_queue=debug,warn"))
                .map(|f| f.to_string())
                .ok()
                .as_deref(),
            Some("hookgate_queue=debug,warn")
        );
        let Err(error) = filter(Some("hookgate_queue=loud")) else {
            panic!("an unknown level is refused");
        };
        assert!(error.to_string().contains("HOOKGATE_LOG"), "{error}");
    }
}
