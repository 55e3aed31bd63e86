//! Reads criterion's estimates and prints the verify-path table with ratios to the floor.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// Median time in nanoseconds of benchmark `group/function/size`, if criterion recorded it.
pub fn median_ns(criterion_dir: &Path, group: &str, function: &str, size: usize) -> Option<f64> {
    let path: PathBuf = criterion_dir
        .join(group)
        .join(function)
        .join(size.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: Estimates = serde_json::from_str(&text).ok()?;
    Some(estimates.median.point_estimate)
}

/// Formats nanoseconds as µs or ns.
pub fn human(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Throughput in MB/s of `bytes` processed in `ns`.
pub fn mb_per_s(bytes: usize, ns: f64) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        reason = "payload sizes are far below 2^52"
    )]
    let bytes = bytes as f64;
    bytes / ns * 1000.0
}
