//! Finding server binaries, picking free ports, and starting children that die with the
//! test process.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Where Debian puts daemons that are not on an unprivileged user's `PATH`.
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// `name` on `PATH`, or in the system binary directories.
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    find_in(name, dirs)
}

/// The first executable `dir/name` among `dirs`.
pub(crate) fn find_in(name: &str, dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A port that was free a moment ago. Another process can take it before the server binds
/// it, so callers start the server again on a new port when it exits at once.
pub(crate) fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(err) => panic!("cannot find a free port on 127.0.0.1: {err}"),
    }
}

/// How to run one server process.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// Run as this system user (PostgreSQL, when the tests run as root).
    pub(crate) user: Option<String>,
}

impl Spec {
    pub(crate) fn new(program: PathBuf) -> Spec {
        Spec {
            program,
            args: Vec::new(),
            user: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Spec {
        self.args.push(arg.into());
        self
    }

    /// Runs it to completion (for `initdb`), with its output kept for the error message.
    pub(crate) fn run(&self) -> Result<(), String> {
        let output = self
            .command(false)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed ({}): {}{}",
                self.program.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts it in the background; it is killed when the test process ends.
    pub(crate) fn spawn(&self) -> std::io::Result<Child> {
        spawn_owned(self.clone())
    }

    /// The command line: through `setpriv` where it exists, to change user and to ask the
    /// kernel for SIGKILL when the spawning thread ends (`owned`).
    fn command(&self, owned: bool) -> Command {
        let setpriv = find_binary("setpriv");
        let wrap = self.user.is_some() || (owned && setpriv.is_some());
        let mut command = match (&setpriv, wrap) {
            (Some(setpriv), true) => {
                let mut command = Command::new(setpriv);
                if let Some(user) = &self.user {
                    command.args(["--reuid", user, "--regid", user, "--init-groups"]);
                }
                if owned {
                    command.args(["--pdeathsig", "KILL"]);
                }
                command.arg("--").arg(&self.program);
                command
            }
            _ => Command::new(&self.program),
        };
        command.args(&self.args);
        command
    }
}

/// Starts `spec` from one long-lived thread, so that the parent-death signal fires when the
/// test process exits, not when the test's own thread (or a runtime's worker) ends.
fn spawn_owned(spec: Spec) -> std::io::Result<Child> {
    type Request = (Spec, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("hookgate-testkit-spawner".to_owned())
            .spawn(move || {
                for (spec, reply) in requests {
                    let child = spec
                        .command(true)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn();
                    let _ = reply.send(child);
                }
            })
            .unwrap_or_else(|err| panic!("cannot start the spawner thread: {err}"));
        Mutex::new(sender)
    });
    let (reply, answer) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((spec, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Kills `child` (SIGKILL) and reaps it.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills `child` and every process it started (SIGKILL), and reaps it. It is stopped
/// (SIGSTOP) first, so that it starts no new child while they are being listed.
pub(crate) fn kill_with_children(child: &mut Child) {
    let pid = child.id();
    let _ = signal(pid, "STOP");
    let mut children = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    kill(child);
    for pid in children {
        let _ = signal(pid, "KILL");
    }
}

/// `kill -s SIGNAL PID`; whether it was sent.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Sends `signal` (e.g. `INT`) to `child` and waits up to `limit` for it to exit; kills it
/// if it has not.
pub(crate) fn stop(child: &mut Child, signal: &str, limit: Duration) {
    let sent = self::signal(child.id(), signal);
    if sent && crate::wait_until(limit, || matches!(child.try_wait(), Ok(Some(_)))) {
        return;
    }
    kill(child);
}

/// Whether `child` has exited.
pub(crate) fn exited(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_binary_is_found_only_where_it_is_executable() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "").unwrap();
        assert_eq!(find_in("not-executable", [dir.path().to_owned()]), None);
        assert_eq!(find_in("absent", [dir.path().to_owned()]), None);
        assert_eq!(
            find_in("sh", [PathBuf::from("/bin")]),
            Some("/bin/sh".into())
        );
    }

    #[test]
    fn a_spawned_child_is_killed_when_it_is_stopped() {
        let Some(sleep) = find_binary("sleep") else {
            return;
        };
        let mut child = Spec::new(sleep).arg("30").spawn().unwrap();
        assert!(!exited(&mut child));
        stop(&mut child, "TERM", Duration::from_secs(10));
        assert!(exited(&mut child));
    }
}
