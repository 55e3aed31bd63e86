//! Runs the load binary for one second per case so the harness cannot rot. It checks the
//! shape of the JSON and that requests succeeded, never speed.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::{Command, Output};

/// A one-second JSON run of `setups` on `framework` with two connections, and `more`
/// arguments.
fn one_second(framework: &str, setups: &str, more: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
        .args([
            "--json",
            "--duration",
            "1",
            "--connections",
            "2",
            "--frameworks",
            framework,
            "--setups",
            setups,
        ])
        .args(more)
        .output()
        .expect("the load binary runs")
}

#[test]
fn quick_json_run_reports_every_setup() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
        .args([
            "--quick",
            "--json",
            "--duration",
            "1",
            "--connections",
            "1,4",
        ])
        .output()
        .expect("the load binary runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("JSON array on stdout");

    let mut seen = Vec::new();
    for run in &runs {
        for field in [
            "requests",
            "errors",
            "rps",
            "p50_us",
            "p99_us",
            "p999_us",
            "ratio_to_baseline",
            "connections",
        ] {
            assert!(run[field].is_number(), "{field} missing in {run}");
        }
        // Not pinned: the report says so.
        assert!(
            run["cpus"].is_null() && run["postgres_cpus"].is_null(),
            "{run}"
        );
        let framework = run["framework"].as_str().unwrap();
        let setup = run["setup"].as_str().unwrap();
        assert!(["axum", "actix"].contains(&framework), "{run}");
        assert!(
            ["baseline", "gate-memory", "gate-inbox", "gate-inbox-worker"].contains(&setup),
            "{run}"
        );
        assert!(
            run["requests"].as_u64().unwrap() > 0,
            "no request succeeded: {run}"
        );
        assert_eq!(run["errors"].as_u64().unwrap(), 0, "requests failed: {run}");
        if setup == "baseline" {
            assert!((run["ratio_to_baseline"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        }
        // Only the inbox commits to disk, and every commit holds at least one job.
        if setup.starts_with("gate-inbox") {
            assert!(run["events_per_commit"].as_f64().unwrap() >= 1.0, "{run}");
        } else {
            assert!(run["events_per_commit"].is_null(), "{run}");
        }
        // Only the worker setup processes; it reports what share it finished (never more
        // than what was stored).
        if setup == "gate-inbox-worker" {
            let share = run["processed_share"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&share), "{run}");
        } else {
            assert!(run["processed_share"].is_null(), "{run}");
        }
        seen.push((
            framework.to_owned(),
            setup.to_owned(),
            run["connections"].as_u64().unwrap(),
        ));
    }
    for setup in ["baseline", "gate-memory", "gate-inbox", "gate-inbox-worker"] {
        for connections in [1, 4] {
            assert!(
                seen.contains(&("axum".to_owned(), setup.to_owned(), connections)),
                "missing axum {setup} {connections}"
            );
        }
    }
}

#[test]
fn a_run_without_its_baseline_reports_no_ratio() {
    let output = one_second("actix", "gate-memory", &[]);
    assert!(output.status.success());
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["framework"], "actix");
    assert_eq!(runs[0]["setup"], "gate-memory");
    assert!(runs[0]["ratio_to_baseline"].is_null());
    assert!(runs[0]["requests"].as_u64().unwrap() > 0);
}

#[test]
fn dedup_memory_mode_reports_per_key_cost() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
        .args(["--dedup-keys", "20000", "--json"])
        .output()
        .expect("the load binary runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["dedup_keys"], 20000);
    assert_eq!(report["stored"], 20000);
    assert!(report["bytes_per_key"].is_number());
}

#[test]
fn bad_arguments_exit_with_usage_error() {
    let status = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
        .arg("--connections")
        .arg("0")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn unknown_setups_and_frameworks_are_usage_errors() {
    for (flag, value) in [("--setups", "gate-redis"), ("--frameworks", "rocket")] {
        let output = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
            .args([flag, value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains(value));
    }
}

#[test]
fn the_gate_postgres_setups_run_on_a_database_of_their_own() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
        .args([
            "--json",
            "--duration",
            "1",
            "--connections",
            "4",
            "--frameworks",
            "axum",
            "--setups",
            "baseline,gate-postgres,gate-postgres-worker",
            "--postgres",
            // The store's settings in the URL reach the store, not the driver.
            &format!("{}?pool_size=4&max_batch=8", postgres.url()),
        ])
        .output()
        .expect("the load binary runs");
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(runs.len(), 3);
    let run = &runs[1];
    assert_eq!(run["setup"], "gate-postgres");
    assert!(run["processed_share"].is_null(), "{run}");
    assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["errors"].as_u64().unwrap(), 0, "requests failed: {run}");
    assert!(run["ratio_to_baseline"].is_number(), "{run}");
    assert!(run["events_per_commit"].is_null(), "{run}");
    let per_batch = run["events_per_batch"].as_f64().unwrap();
    assert!((1.0..=8.0).contains(&per_batch), "{run}");
    let commits = run["commits_per_event"].as_f64().unwrap();
    assert!(commits > 0.0, "{run}");
    // With a worker in the same database, which processes what is stored.
    let run = &runs[2];
    assert_eq!(run["setup"], "gate-postgres-worker");
    assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["errors"].as_u64().unwrap(), 0, "requests failed: {run}");
    let processed = run["processed_share"].as_f64().unwrap();
    assert!(processed > 0.0 && processed <= 1.0, "{run}");

    // A schema in the URL is refused: each run makes and drops its own.
    let output = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
        .args([
            "--duration",
            "1",
            "--connections",
            "1",
            "--frameworks",
            "axum",
            "--setups",
            "gate-postgres",
            "--postgres",
            &format!("{}?schema=app", postgres.url()),
        ])
        .output()
        .expect("the load binary runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("schema"));

    // With the database on CPUs of its own (CPU 0 for both here, which every machine has:
    // `load::pin`'s tests check the masks).
    let url = postgres.url();
    let pinned = ["--cpus", "0", "--postgres-cpus", "0", "--postgres", &url];
    let output = one_second("axum", "baseline,gate-postgres", &pinned);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("this process on CPUs 0, PostgreSQL (") && stderr.contains("on CPUs 0"),
        "{stderr}"
    );
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["errors"].as_u64().unwrap(), 0, "{}", runs[1]);
    // The report says how it was measured.
    for run in &runs {
        assert_eq!(run["cpus"], "0", "{run}");
        assert_eq!(run["postgres_cpus"], "0", "{run}");
    }
}

#[test]
fn postgres_cpus_need_cpus_and_a_postgres_setup() {
    for (args, expected) in [
        (
            &["--postgres-cpus", "1", "--setups", "gate-postgres"][..],
            "needs --cpus",
        ),
        (
            &[
                "--cpus",
                "0",
                "--postgres-cpus",
                "1",
                "--setups",
                "baseline",
            ][..],
            "needs a gate-postgres setup",
        ),
        (&["--cpus", "4095", "--setups", "baseline"][..], "--cpus"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_hookgate-load"))
            .args(args)
            .output()
            .expect("the load binary runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
