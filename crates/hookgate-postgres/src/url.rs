//! `postgres://` URLs with hookgate's own settings in the query.

use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// Default wait for a new connection before PostgreSQL counts as down: 5 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection URL split into the driver's configuration and hookgate's parameters.
#[derive(Debug)]
pub(crate) struct PgUrl {
    pub(crate) config: tokio_postgres::Config,
    params: Vec<(String, String)>,
}

impl PgUrl {
    /// Parses `url`, taking the query parameters named in `ours` out of it; the rest
    /// (`connect_timeout`, `application_name`, …) go to `tokio-postgres`.
    pub(crate) fn parse(url: &str, ours: &[&str]) -> Result<Self, Error> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut params = Vec::new();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if ours.contains(&name) {
                params.push((name.to_owned(), value.to_owned()));
            } else {
                rest.push(pair);
            }
        }
        let driver_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        if !(driver_url.starts_with("postgres://") || driver_url.starts_with("postgresql://")) {
            return Err(Error::Config(
                "the store URL must start with postgres:// or postgresql://".to_owned(),
            ));
        }
        // The driver's own message may quote the URL, password included: say less.
        let mut config = tokio_postgres::Config::from_str(&driver_url).map_err(|err| {
            Error::Config(format!(
                "not a usable postgres URL ({})",
                first_words(&err.to_string())
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hookgate");
        }
        Ok(PgUrl { config, params })
    }

    /// A hookgate parameter, if given.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric hookgate parameter.
    pub(crate) fn number(&self, name: &str) -> Result<Option<u64>, Error> {
        self.param(name)
            .map(|value| {
                value
                    .parse::<u64>()
                    .map_err(|_| Error::Config(format!("{name} must be a whole number")))
            })
            .transpose()
    }

    /// A duration given in milliseconds.
    pub(crate) fn millis(&self, name: &str) -> Result<Option<Duration>, Error> {
        Ok(self.number(name)?.map(Duration::from_millis))
    }
}

/// The driver's error message up to the first quote, so no part of the URL is echoed.
fn first_words(message: &str) -> String {
    message
        .split(['"', '\'', ':'])
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hookgate_parameters_are_taken_out_and_the_rest_goes_to_the_driver() {
        let url = PgUrl::parse(
            "postgres://app:pw@db.internal:6543/shop?schema=webhooks&application_name=x&pool_size=4",
            &["schema", "pool_size"],
        )
        .unwrap();
        assert_eq!(url.param("schema"), Some("webhooks"));
        assert_eq!(url.number("pool_size").unwrap(), Some(4));
        assert_eq!(url.config.get_application_name(), Some("x"));
        assert_eq!(url.config.get_dbname(), Some("shop"));
        assert_eq!(
            url.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        assert!(matches!(
            PgUrl::parse("redis://localhost/", &[]),
            Err(Error::Config(_))
        ));
        let err = PgUrl::parse("postgres://u:s3cret@h/db?nonsense_option=1", &[]).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(
            PgUrl::parse("postgres://h/db?pool_size=x", &["pool_size"])
                .unwrap()
                .number("pool_size")
                .is_err()
        );
    }
}
