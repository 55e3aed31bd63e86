//! A throwaway PostgreSQL cluster of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{self, Spec};

/// How long the postmaster gets to accept connections.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the postmaster is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// How long a restart keeps trying while a killed server's processes linger.
const RESTART_LIMIT: Duration = Duration::from_secs(60);
/// Ports tried before giving up (another process can take a free port first).
const PORT_TRIES: usize = 5;
/// The system user the cluster runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// A PostgreSQL cluster made by `initdb` in a temporary directory and served by `postgres`
/// on a free port of 127.0.0.1 (trust authentication, superuser `postgres`); stopped and
/// deleted when dropped.
///
/// As root it runs as the `postgres` system user, since PostgreSQL refuses to run as root.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    user: Option<String>,
    child: Option<Child>,
    port: u16,
    /// Owned by the user the cluster runs as; holds `data/` and the Unix socket.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster, or returns `None` (after one line on stderr) where the
    /// PostgreSQL server binaries are not installed.
    ///
    /// # Panics
    /// When `initdb` fails or the server does not come up, or the binaries are missing under
    /// `HOOKGATE_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = server_bin_dir() else {
            crate::missing("initdb/postgres", "postgresql");
            return None;
        };
        let user = if is_root() {
            if !user_exists(SYSTEM_USER) {
                crate::missing(
                    "the `postgres` system user (PostgreSQL refuses to run as root)",
                    "postgresql",
                );
                return None;
            }
            Some(SYSTEM_USER.to_owned())
        } else {
            None
        };
        let base = if user.is_some() {
            // The system user must be able to reach it: not under root's own TMPDIR.
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("hookgate-pg-")
            .tempdir_in(&base)
            .unwrap_or_else(|err| panic!("cannot create a directory for PostgreSQL: {err}"));
        if let Some(user) = &user {
            chown_to(dir.path(), user);
        }
        let mut postgres = Postgres {
            bin,
            user,
            child: None,
            port: 0,
            dir,
        };
        postgres.initdb();
        for _ in 0..PORT_TRIES {
            postgres.port = process::free_port();
            if postgres.launch() {
                return Some(postgres);
            }
        }
        panic!("PostgreSQL did not come up on any of {PORT_TRIES} free ports");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory with the server binaries in use (`psql`, `pg_isready`, …).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Fast shutdown (SIGINT): clients are disconnected, the data stays for
    /// [`restart`](Postgres::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, "INT", STOP_LIMIT);
        }
    }

    /// SIGKILL of the whole server, the postmaster and its backends at once: a crash (as
    /// when the machine goes down), recovered from the WAL at the next start. Killing the
    /// postmaster alone left its backends running until they noticed, so a pooled
    /// connection could still commit a transaction after `kill` returned.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_with_children(&mut child);
        }
    }

    /// Starts it again on the same port and data, and waits until it accepts connections.
    ///
    /// # Panics
    /// When it is running, or does not come up.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is already running");
        // After a kill, the dead postmaster's backends still hold its shared memory until
        // they notice and exit, and a new postmaster refuses to start meanwhile: try again
        // until they are gone (a bounded wait).
        let started = crate::wait_until(RESTART_LIMIT, || self.launch());
        assert!(
            started,
            "PostgreSQL did not come up again on port {}",
            self.port
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spec(&self, program: &str) -> Spec {
        let mut spec = Spec::new(self.bin.join(program));
        spec.user = self.user.clone();
        spec
    }

    fn initdb(&self) {
        let result = self
            .spec("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-U")
            .arg("postgres")
            .arg("-A")
            .arg("trust")
            .arg("-E")
            .arg("UTF8")
            .arg("--locale=C")
            .arg("--no-sync")
            .run();
        if let Err(problem) = result {
            panic!("initdb of a throwaway cluster failed: {problem}");
        }
    }

    /// Starts the postmaster on `self.port`; `false` when it exits at once (port taken).
    fn launch(&mut self) -> bool {
        let mut child = self
            .spec("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start postgres: {err}"));
        let ready = self.bin.join("pg_isready");
        let port = self.port;
        let up = crate::wait_until(START_LIMIT, || {
            process::exited(&mut child) || accepts(&ready, port)
        });
        if up && !process::exited(&mut child) {
            self.child = Some(child);
            true
        } else {
            process::stop(&mut child, "INT", STOP_LIMIT);
            false
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown, so that the server releases its shared memory; the directory
        // goes with `self.dir`.
        self.stop();
    }
}

/// The directory holding `initdb` and `postgres`: `pg_config --bindir`, Debian's
/// /usr/lib/postgresql/VERSION/bin (newest first), then `PATH`.
fn server_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| {
        process::find_in("initdb", [dir.to_owned()]).is_some()
            && process::find_in("postgres", [dir.to_owned()]).is_some()
    };
    let from_pg_config = process::find_binary("pg_config")
        .and_then(|pg_config| Command::new(pg_config).arg("--bindir").output().ok())
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_server(dir)) {
        return Some(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    if let Some((_, dir)) = debian.into_iter().find(|(_, dir)| has_server(dir)) {
        return Some(dir);
    }
    process::find_binary("initdb")
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_owned))
        .filter(|dir| has_server(dir))
}

fn is_root() -> bool {
    id(&["-u"]).as_deref() == Some("0")
}

fn user_exists(user: &str) -> bool {
    id(&["-u", user]).is_some()
}

/// `id ARGS`, trimmed, when it succeeds.
fn id(args: &[&str]) -> Option<String> {
    let output = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn chown_to(path: &Path, user: &str) {
    let number = |flag: &str| {
        id(&[flag, user])
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("cannot read the ids of the `{user}` user"))
    };
    let (uid, gid) = (number("-u"), number("-g"));
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|err| panic!("cannot give {} to `{user}`: {err}", path.display()));
}

/// Whether the server on `port` accepts connections (`pg_isready`, or a TCP connect where
/// `pg_isready` is missing).
fn accepts(pg_isready: &Path, port: u16) -> bool {
    if pg_isready.exists() {
        Command::new(pg_isready)
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    } else {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn psql(postgres: &Postgres, sql: &str) -> Option<String> {
        let output = Command::new(postgres.bin_dir().join("psql"))
            .args(["-X", "-A", "-t", "-d", &postgres.url(), "-c", sql])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    #[test]
    fn a_throwaway_cluster_keeps_data_across_a_restart_and_is_deleted_when_dropped() {
        let Some(mut postgres) = Postgres::start() else {
            return;
        };
        let port = postgres.port();
        let dir = postgres.dir.path().to_owned();
        assert_eq!(
            psql(
                &postgres,
                "CREATE TABLE t (n int); INSERT INTO t VALUES (7)"
            )
            .as_deref(),
            Some("CREATE TABLE\nINSERT 0 1")
        );
        postgres.stop();
        assert!(psql(&postgres, "SELECT 1").is_none(), "stopped");
        postgres.restart();
        assert_eq!(psql(&postgres, "SELECT n FROM t").as_deref(), Some("7"));
        postgres.kill();
        postgres.restart();
        assert_eq!(
            psql(&postgres, "SELECT n FROM t").as_deref(),
            Some("7"),
            "recovered after a kill"
        );
        drop(postgres);
        assert!(!dir.exists(), "the cluster's directory is deleted");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
