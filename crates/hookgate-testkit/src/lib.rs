//! Throwaway servers for hookgate's backend tests.
//!
//! A backend test must not depend on a service somebody started by hand: it starts its own
//! [`Redis`], [`Nats`] or [`Postgres`] on a free port of 127.0.0.1, from the binaries on
//! `PATH` (and where Debian puts them), with its data in a temporary directory, and the
//! server goes away when the value is dropped — also when the test panics, and even when
//! the test process is killed (the server is started with a parent-death signal through
//! `setpriv`, where `setpriv` exists).
//!
//! Where a binary is missing, `start` prints one line naming the Debian package and returns
//! `None`, and the test returns early: the README's test command passes on a machine with
//! only the Rust toolchain. Under `HOOKGATE_REQUIRE_SERVICES=1` (which `.ci/run` sets) a
//! missing binary fails the test instead, so CI never passes by skipping.
//!
//! ```no_run
//! # async fn example() {
//! let Some(redis) = hookgate_testkit::Redis::start() else { return };
//! let url = redis.url(); // redis://127.0.0.1:PORT/
//! # }
//! ```
//!
//! PostgreSQL refuses to run as root: as root, [`Postgres`] runs `initdb` and `postgres` as
//! the unprivileged `postgres` system user, in a temporary directory that user owns.

#![allow(
    clippy::panic,
    reason = "test support: a server that cannot be started fails the test that asked for it"
)]

mod nats;
mod postgres;
mod process;
mod redis;

pub use nats::Nats;
pub use postgres::Postgres;
pub use redis::Redis;

use std::io::Write as _;

/// The environment variable that turns a missing server binary from a skip into a failure.
pub const REQUIRE_SERVICES: &str = "HOOKGATE_REQUIRE_SERVICES";

/// Whether `HOOKGATE_REQUIRE_SERVICES=1` is set: a missing binary fails instead of skipping.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_SERVICES).is_ok_and(|value| value == "1")
}

/// A server binary that is not installed: skip (one line on stderr) or, when services are
/// required, fail.
///
/// The line goes to the process's stderr directly rather than through `eprintln!`, which
/// the test harness captures and hides for a passing test.
fn missing(binary: &str, package: &str) {
    let line = format!(
        "skipped: `{binary}` is not installed (Debian package: {package}; \
         set {REQUIRE_SERVICES}=1 to fail instead)"
    );
    if services_required() {
        panic!("{line}");
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
///
/// For waiting on a server to come up: a bounded wait on a condition, never a fixed sleep.
pub fn wait_until(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
