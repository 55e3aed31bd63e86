//! A `redis-server` of the test's own.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::process::{self, Spec};

/// How long a server gets to answer its first PING.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Ports tried before giving up (another process can take a free port first).
const PORT_TRIES: usize = 5;

/// A `redis-server` on a free port of 127.0.0.1, with its data in a temporary directory;
/// killed when dropped.
#[derive(Debug)]
pub struct Redis {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    persistent: bool,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server that keeps nothing on disk, or returns `None` (after one line on
    /// stderr) where `redis-server` is not installed.
    ///
    /// # Panics
    /// When the server does not come up, or `redis-server` is missing under
    /// `HOOKGATE_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<Redis> {
        Redis::start_with(false)
    }

    /// Starts a server that appends every write to its log and fsyncs it before answering,
    /// so that [`kill`](Redis::kill) then [`restart`](Redis::restart) loses nothing that
    /// was acknowledged: for outage tests.
    ///
    /// # Panics
    /// As [`start`](Redis::start).
    pub fn start_persistent() -> Option<Redis> {
        Redis::start_with(true)
    }

    fn start_with(persistent: bool) -> Option<Redis> {
        let Some(binary) = process::find_binary("redis-server") else {
            crate::missing("redis-server", "redis-server");
            return None;
        };
        let dir = tempfile::tempdir()
            .unwrap_or_else(|err| panic!("cannot create a directory for Redis: {err}"));
        let mut redis = Redis {
            binary,
            child: None,
            port: 0,
            persistent,
            dir,
        };
        for _ in 0..PORT_TRIES {
            redis.port = process::free_port();
            if redis.launch() {
                return Some(redis);
            }
        }
        panic!("redis-server did not come up on any of {PORT_TRIES} free ports");
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Starts it again on the same port and data directory, and waits until it answers.
    ///
    /// # Panics
    /// When it is running, or does not come up.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        assert!(
            self.launch(),
            "redis-server did not come up again on port {}",
            self.port
        );
    }

    /// Starts the process on `self.port`; `false` when it exits at once (port taken).
    fn launch(&mut self) -> bool {
        let mut spec = Spec::new(self.binary.clone())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path());
        spec = if self.persistent {
            spec.arg("--appendonly")
                .arg("yes")
                .arg("--appendfsync")
                .arg("always")
        } else {
            spec.arg("--appendonly").arg("no")
        };
        let mut child = spec
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-server: {err}"));
        let port = self.port;
        let up = crate::wait_until(START_LIMIT, || process::exited(&mut child) || ping(port));
        if up && !process::exited(&mut child) {
            self.child = Some(child);
            true
        } else {
            process::kill(&mut child);
            false
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_redis_answers_survives_a_kill_and_is_gone_when_dropped() {
        let Some(mut redis) = Redis::start_persistent() else {
            return;
        };
        let port = redis.port();
        assert!(ping(port));
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
        redis.kill();
        assert!(!ping(port));
        redis.restart();
        assert!(ping(port));
        drop(redis);
        assert!(!ping(port), "the server is gone with its value");
    }
}
