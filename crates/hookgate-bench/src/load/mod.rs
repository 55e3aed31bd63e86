//! The HTTP receive-path load benchmark: each setup is started on 127.0.0.1, driven by an
//! in-process HTTP/1.1 keep-alive load generator with freshly signed 1 KiB Standard Webhooks
//! deliveries, and compared with its framework's bare baseline measured in the same run.

mod client;
pub mod pin;
mod servers;

use std::time::Duration;

use serde::Serialize;

pub use client::{LoadConfig, drive};
pub use servers::{Framework, POSTGRES_POOL, RunningServer, Setup, Stopped, driver_url, start};

/// The Standard Webhooks secret every setup verifies with.
pub const SECRET: &str = crate::SW_SECRET;
/// The body size of every delivery.
pub const BODY_BYTES: usize = 1024;

/// One measured run: one setup at one connection count.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `axum` or `actix`.
    pub framework: &'static str,
    /// `baseline`, `gate-memory`, `gate-inbox`, `gate-inbox-worker`, `gate-inbox-fanout1`,
    /// `gate-inbox-fanout3`, `gate-postgres` or `gate-postgres-worker`.
    pub setup: &'static str,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Requests answered with 200 during the measured window.
    pub requests: u64,
    /// Requests that failed or were answered with anything but 200.
    pub errors: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency in microseconds.
    pub p50_us: u64,
    /// 99th percentile latency in microseconds.
    pub p99_us: u64,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: u64,
    /// With the inbox: jobs (enqueues, and with a worker its leases and completions) per
    /// group commit (fsync) during the run, on average.
    pub events_per_commit: Option<f64>,
    /// With `gate-postgres(-worker)`: enqueues per batch (one statement, one commit) of the store,
    /// warm-up included.
    pub events_per_batch: Option<f64>,
    /// With `gate-postgres(-worker)`: transactions the database committed per enqueue, warm-up
    /// included (batches, the workers' wake-up notifications, the run's few reads of the
    /// statistics).
    pub commits_per_event: Option<f64>,
    /// With a worker: the share of the events stored during the run that it had processed
    /// when the load stopped (1.0: it kept up).
    pub processed_share: Option<f64>,
    /// `rps` divided by the same framework's baseline at the same connection count (`null`
    /// when `--setups` left the baseline out).
    pub ratio_to_baseline: Option<f64>,
    /// The CPUs this process (load generator and receiver) was pinned to with `--cpus`
    /// (`null`: not pinned).
    pub cpus: Option<String>,
    /// The CPUs the PostgreSQL server was pinned to with `--postgres-cpus` (`null`: not
    /// pinned; it shared the machine's CPUs).
    pub postgres_cpus: Option<String>,
}

/// Latency percentiles over recorded samples (microseconds), nearest-rank.
pub fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a sample vector, clamped below"
    )]
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or(0)
}

/// Requests per second.
pub fn rate(count: u64, window: Duration) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        reason = "request counts are far below 2^52"
    )]
    let count = count as f64;
    let secs = window.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`), if readable.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 0.5), 500);
        assert_eq!(percentile(&samples, 0.99), 990);
        assert_eq!(percentile(&samples, 0.999), 999);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert!((rate(100, Duration::from_secs(2)) - 50.0).abs() < f64::EPSILON);
    }
}
