//! CPUs of their own for the benchmark and its PostgreSQL server (`--cpus`,
//! `--postgres-cpus`).
//!
//! A fleet's database is a server of its own: the replicas do not give it their cores. On
//! one two-core machine, `gate-postgres` otherwise measures the receiver with the
//! database's work taken out of the same two cores that the baseline has to itself. Pinning
//! the benchmark (load generator and receiver) to some CPUs and the database to others
//! measures what a receiver pays for the store, the database's own CPU aside; both setups
//! of a run, the baseline too, then have the same CPUs.
//!
//! The affinity is set with util-linux's `taskset`, on every thread of every process:
//! this process (before its threads start, which then inherit it), and the server's
//! postmaster and all its children (its backends, and those it forks later, inherit the
//! postmaster's). The server must run on this machine, under a user this process may
//! change. Its processes get their own CPUs back when the benchmark ends.

use std::path::Path;
use std::process::Command;

use hookgate_postgres::tokio_postgres::Client;

/// Pins this process, and every thread it starts afterwards, to `cpus` (a `taskset` list
/// such as `0` or `0,2-3`).
///
/// # Errors
/// When `taskset` is missing or refuses the list (a CPU this machine does not have).
pub fn pin_self(cpus: &str) -> Result<(), String> {
    taskset_list(std::process::id(), cpus)
}

/// The processes of a PostgreSQL server pinned to other CPUs, until dropped: then each
/// gets back the affinity it had.
#[derive(Debug)]
pub struct PinnedServer {
    /// Each pinned process and its affinity mask before (`taskset`'s hexadecimal form).
    before: Vec<(u32, String)>,
}

impl PinnedServer {
    /// How many processes are pinned (the postmaster and its children).
    pub fn processes(&self) -> usize {
        self.before.len()
    }
}

impl Drop for PinnedServer {
    fn drop(&mut self) {
        for (pid, mask) in &self.before {
            // A backend that has ended meanwhile has nothing to restore.
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = taskset(&["-a", "-p", mask.as_str(), &pid.to_string()]);
            }
        }
    }
}

/// Pins the PostgreSQL server behind `url` (a plain driver URL) to `cpus`: its postmaster,
/// found as the parent of this connection's backend, and every child of it.
///
/// # Errors
/// When the server cannot be reached, does not run on this machine, or its processes
/// cannot be pinned.
pub async fn pin_postgres(url: &str, cpus: &str) -> Result<PinnedServer, String> {
    let postmaster = postmaster(url).await?;
    let mut pids = vec![postmaster];
    pids.extend(children(postmaster));
    let mut pinned = PinnedServer { before: Vec::new() };
    for pid in pids {
        // A backend whose connection closed may end at any point here (the one that named
        // the postmaster does now): it has nothing to pin.
        let Some(mask) = mask(pid) else {
            continue;
        };
        match taskset_list(pid, cpus) {
            Ok(()) => pinned.before.push((pid, mask)),
            Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(pinned)
}

/// The process id of the postmaster of the server behind `url`, and of the backend that
/// answered: the postmaster is its parent.
///
/// # Errors
/// When the server cannot be reached or does not run on this machine.
pub async fn postmaster(url: &str) -> Result<u32, String> {
    // The session is held until its backend's parent is read: a backend whose connection
    // closed may already have exited, and then it would have no parent to find.
    let (_session, backend) = backend(url).await?;
    parent(backend).ok_or_else(|| {
        format!(
            "--postgres-cpus: PostgreSQL's process {backend} is not on this machine: \
             pin a remote server on its own host"
        )
    })
}

/// A new session (it lasts while the client is held) and its backend's process id.
async fn backend(url: &str) -> Result<(Client, u32), String> {
    let client = super::servers::direct(url)
        .await
        .map_err(|err| format!("--postgres-cpus: cannot connect to PostgreSQL: {err}"))?;
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|err| format!("--postgres-cpus: {err}"))?;
    let pid = u32::try_from(row.get::<_, i32>(0))
        .map_err(|_| "--postgres-cpus: the server named no process".to_owned())?;
    Ok((client, pid))
}

/// The parent of `pid`, from `/proc`.
fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}

/// Every process whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent(child) == Some(pid))
        .collect()
}

/// The affinity mask of `pid` as `taskset -p` prints it (`pid 7's current affinity mask: 3`):
/// hexadecimal, a bit per CPU.
pub fn mask(pid: u32) -> Option<String> {
    let output = taskset(&["-p", &pid.to_string()]).ok()?;
    output.rsplit(':').next().map(|mask| mask.trim().to_owned())
}

/// Pins every thread of `pid` to the CPUs of `list`.
fn taskset_list(pid: u32, list: &str) -> Result<(), String> {
    taskset(&["-a", "-p", "-c", list, &pid.to_string()]).map(drop)
}

/// Runs `taskset` with `args`; its output, or what it said went wrong.
fn taskset(args: &[&str]) -> Result<String, String> {
    let output = Command::new("taskset")
        .args(args)
        .output()
        .map_err(|err| format!("cannot run taskset (util-linux): {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "taskset {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_has_a_parent_and_is_its_parents_child() {
        let me = std::process::id();
        let mine = parent(me).expect("this process has a parent");
        assert!(children(mine).contains(&me));
        // Above the kernel's pid_max (at most 2^22): never a process.
        assert_eq!(parent(u32::MAX), None);
    }

    #[test]
    fn a_cpu_this_machine_lacks_is_refused_with_taskset_s_reason() {
        let child = Command::new("sleep").arg("5").spawn().expect("sleep runs");
        let error = taskset_list(child.id(), "4095").expect_err("no machine here has CPU 4095");
        assert!(error.contains("taskset"), "{error}");
        let before = mask(child.id()).expect("a mask");
        taskset_list(child.id(), "0").expect("CPU 0 exists");
        assert_eq!(mask(child.id()).as_deref(), Some("1"));
        assert_ne!(before, "");
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The postmaster and its children are pinned, a backend started afterwards inherits
    /// the pin, and dropping the guard gives the postmaster its CPUs back.
    #[tokio::test]
    async fn a_local_server_is_pinned_with_its_future_backends_and_let_go() {
        let Some(postgres) = hookgate_testkit::Postgres::start() else {
            return;
        };
        let url = postgres.url();
        let postmaster = postmaster(&url).await.expect("the postmaster is found");
        let before = mask(postmaster).expect("its mask");
        let pinned = pin_postgres(&url, "0").await.expect("the server is pinned");
        assert!(pinned.processes() >= 2, "{pinned:?}");
        assert_eq!(mask(postmaster).as_deref(), Some("1"));
        let (_later_session, later) = backend(&url).await.expect("a new backend");
        assert_eq!(mask(later).as_deref(), Some("1"), "backend {later}");
        drop(pinned);
        assert_eq!(mask(postmaster), Some(before));
        let refused = pin_postgres("postgres://postgres@127.0.0.1:1/none", "0").await;
        assert!(refused.unwrap_err().contains("cannot connect"));
    }
}
