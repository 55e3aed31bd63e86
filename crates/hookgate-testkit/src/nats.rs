//! A `nats-server` with JetStream of the test's own.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use crate::process::{self, Spec};

/// How long a server gets to greet its first client.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Ports tried before giving up (another process can take a free port first).
const PORT_TRIES: usize = 5;

/// A `nats-server -js` on a free port of 127.0.0.1, with its JetStream store in a temporary
/// directory; killed when dropped.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts a server with JetStream, or returns `None` (after one line on stderr) where
    /// `nats-server` is not installed.
    ///
    /// # Panics
    /// When the server does not come up, or `nats-server` is missing under
    /// `HOOKGATE_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<Nats> {
        let Some(binary) = process::find_binary("nats-server") else {
            crate::missing("nats-server", "nats-server");
            return None;
        };
        let dir = tempfile::tempdir()
            .unwrap_or_else(|err| panic!("cannot create a directory for NATS: {err}"));
        for _ in 0..PORT_TRIES {
            let port = process::free_port();
            let mut child = Spec::new(binary.clone())
                .arg("-a")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(port.to_string())
                .arg("-js")
                .arg("-sd")
                .arg(dir.path())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start nats-server: {err}"));
            let up = crate::wait_until(START_LIMIT, || process::exited(&mut child) || greets(port));
            if up && !process::exited(&mut child) {
                return Some(Nats {
                    child,
                    port,
                    _dir: dir,
                });
            }
            process::kill(&mut child);
        }
        panic!("nats-server did not come up on any of {PORT_TRIES} free ports");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as `async_nats::connect` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        process::kill(&mut self.child);
    }
}

/// Whether a NATS server on `port` sends its `INFO` greeting.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_nats_greets_and_is_gone_when_dropped() {
        let Some(nats) = Nats::start() else {
            return;
        };
        let port = nats.port();
        assert!(greets(port));
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
        drop(nats);
        assert!(!greets(port), "the server is gone with its value");
    }
}
