//! `redis://` URLs with hookgate's own query parameters, and the connections made from them.

use std::time::Duration;

use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Error;

/// Default time to establish a connection: 2 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time to wait for a reply: 2 seconds. A Redis that does not answer in time counts
/// as down (the gate answers 503), well inside the gate's 10 s deadline.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A URL split into what the `redis` crate reads and hookgate's own parameters.
#[derive(Debug)]
pub(crate) struct RedisUrl {
    pub(crate) client: Client,
    params: Vec<(String, String)>,
}

impl RedisUrl {
    /// Splits `url`, keeping the query parameters named in `ours` for hookgate and passing
    /// the rest (`protocol`, …) to the `redis` crate.
    pub(crate) fn parse(url: &str, ours: &[&str]) -> Result<Self, Error> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut params = Vec::new();
        let mut passed = form_urlencoded::Serializer::new(String::new());
        let mut any_passed = false;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if ours.contains(&name.as_ref()) {
                params.push((name.into_owned(), value.into_owned()));
            } else {
                passed.append_pair(&name, &value);
                any_passed = true;
            }
        }
        let redis_url = if any_passed {
            format!("{base}?{}", passed.finish())
        } else {
            base.to_owned()
        };
        let client = Client::open(redis_url.as_str())
            .map_err(|e| Error::Config(format!("not a usable Redis URL: {e}")))?;
        Ok(RedisUrl { client, params })
    }

    /// The last value of parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parameter `name` as a whole number.
    pub(crate) fn number(&self, name: &str) -> Result<Option<u64>, Error> {
        self.param(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::Config(format!("URL parameter {name}={v:?} is not a whole number"))
                })
            })
            .transpose()
    }

    /// Parameter `name` as milliseconds.
    pub(crate) fn millis(&self, name: &str) -> Result<Option<Duration>, Error> {
        Ok(self.number(name)?.map(Duration::from_millis))
    }
}

/// A multiplexed connection that reconnects by itself: commands fail while Redis is
/// unreachable, and work again once it is back.
pub(crate) async fn connection(
    client: Client,
    response_timeout: Duration,
) -> Result<ConnectionManager, Error> {
    // Few, quick reconnection attempts per failure: a request waits for them, so while
    // Redis is down it should fail fast (503) rather than hold the sender. Every later
    // request starts a new attempt, so the connection comes back as soon as Redis does.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(250));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_our_parameters_from_the_redis_ones() {
        let url = RedisUrl::parse(
            "redis://127.0.0.1:6379/2?prefix=app%3A&protocol=resp2&claim_ttl_ms=500",
            &["prefix", "claim_ttl_ms"],
        )
        .unwrap();
        assert_eq!(url.param("prefix"), Some("app:"));
        assert_eq!(
            url.millis("claim_ttl_ms").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(url.param("protocol"), None);
        assert_eq!(url.client.get_connection_info().redis_settings().db(), 2);

        let bad = RedisUrl::parse("redis://h/?claim_ttl_ms=soon", &["claim_ttl_ms"]).unwrap();
        assert!(bad.millis("claim_ttl_ms").is_err());
        assert!(RedisUrl::parse("http://nope", &[]).is_err());
    }
}
