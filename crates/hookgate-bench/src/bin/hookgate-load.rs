//! The HTTP receive-path load benchmark.
//!
//! ```sh
//! cargo run --release -p hookgate-bench --bin hookgate-load -- [--quick] [--json]
//!     [--duration SECS] [--connections 1,16,64] [--frameworks axum,actix]
//!     [--setups baseline,gate-memory,gate-inbox,gate-inbox-worker,gate-inbox-fanout1,
//!               gate-inbox-fanout3,gate-postgres,gate-postgres-worker]
//!     [--postgres URL] [--cpus LIST --postgres-cpus LIST] [--dedup-keys N]
//! ```
//!
//! For each framework it measures the bare baseline, then the Gate with the in-memory sink,
//! with the SQLite inbox, and with the inbox and a worker processing every event, at each
//! connection count, and reports req/s, p50/p99/p99.9 latency and the ratio to the baseline
//! measured in the same run. `gate-postgres` (not run unless named in `--setups`) measures
//! the Gate with the PostgreSQL store: on the database at `--postgres URL`, or else on a
//! throwaway cluster it starts from the PostgreSQL binaries on the machine (default
//! settings, so `fsync` and `synchronous_commit` on); `gate-postgres-worker` adds a worker
//! processing every event in the same database. The URL may carry the store's settings
//! (`pool_size`, default 32; `max_batch`, `batch_writers`), but not `schema`: each run makes
//! and drops a schema of its own. `--cpus LIST` pins this process (load generator and
//! receiver) to those CPUs and `--postgres-cpus LIST` the PostgreSQL server (which must run
//! on this machine) to others, as `taskset -c` lists: the database then has cores of its
//! own, as a fleet's database server does, instead of taking the receiver's (see
//! `load::pin`); `--json` records both lists in every run (`cpus`, `postgres_cpus`, `null`
//! when not pinned). `--dedup-keys N` instead measures
//! the resident memory of the in-memory dedup store holding N committed keys.

use std::time::Duration;

use hookgate::MemoryDedupStore;
use hookgate::dedup::{Claim, DedupStore};
use hookgate_bench::load::{self, Framework, LoadConfig, RunResult, Setup};

struct Options {
    quick: bool,
    json: bool,
    duration: Option<Duration>,
    connections: Vec<usize>,
    frameworks: Vec<Framework>,
    setups: Vec<Setup>,
    postgres: Option<String>,
    cpus: Option<String>,
    postgres_cpus: Option<String>,
    dedup_keys: Option<u64>,
}

const USAGE: &str = "usage: hookgate-load [--quick] [--json] [--duration SECS] [--connections 1,16,64] \
[--frameworks axum,actix] [--setups baseline,gate-memory,gate-inbox,gate-inbox-worker,gate-inbox-fanout1,gate-inbox-fanout3,gate-postgres,gate-postgres-worker] \
[--postgres URL] [--cpus LIST --postgres-cpus LIST] [--dedup-keys N]";

/// A comma-separated list of names, each looked up in `known`.
fn names<T: Copy>(list: &str, known: &[(&str, T)], what: &str) -> Result<Vec<T>, String> {
    list.split(',')
        .map(|name| {
            known
                .iter()
                .find(|(known, _)| *known == name.trim())
                .map(|(_, value)| *value)
                .ok_or_else(|| format!("unknown {what} `{name}`"))
        })
        .collect()
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        json: false,
        duration: None,
        connections: vec![1, 16, 64],
        frameworks: vec![Framework::Axum, Framework::Actix],
        setups: vec![
            Setup::Baseline,
            Setup::GateMemory,
            Setup::GateInbox,
            Setup::GateInboxWorker,
        ],
        postgres: None,
        cpus: None,
        postgres_cpus: None,
        dedup_keys: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = true,
            "--duration" => {
                let secs: f64 = value("--duration")?
                    .parse()
                    .map_err(|_| "--duration takes seconds".to_owned())?;
                options.duration = Some(
                    Duration::try_from_secs_f64(secs).map_err(|_| "bad --duration".to_owned())?,
                );
            }
            "--connections" => {
                options.connections = value("--connections")?
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("bad connection count `{c}`"))
                    })
                    .collect::<Result<_, _>>()?;
                if options.connections.contains(&0) {
                    return Err("connection counts must be at least 1".into());
                }
            }
            "--frameworks" => {
                let known = [("axum", Framework::Axum), ("actix", Framework::Actix)];
                options.frameworks = names(&value("--frameworks")?, &known, "framework")?;
            }
            "--setups" => {
                let known = [
                    ("baseline", Setup::Baseline),
                    ("gate-memory", Setup::GateMemory),
                    ("gate-inbox", Setup::GateInbox),
                    ("gate-postgres", Setup::GatePostgres),
                    ("gate-postgres-worker", Setup::GatePostgresWorker),
                    ("gate-inbox-worker", Setup::GateInboxWorker),
                    ("gate-inbox-fanout1", Setup::GateInboxFanout1),
                    ("gate-inbox-fanout3", Setup::GateInboxFanout3),
                ];
                options.setups = names(&value("--setups")?, &known, "setup")?;
            }
            "--postgres" => options.postgres = Some(value("--postgres")?),
            "--cpus" => options.cpus = Some(value("--cpus")?),
            "--postgres-cpus" => options.postgres_cpus = Some(value("--postgres-cpus")?),
            "--dedup-keys" => {
                options.dedup_keys = Some(
                    value("--dedup-keys")?
                        .parse()
                        .map_err(|_| "--dedup-keys takes a count".to_owned())?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if options.postgres_cpus.is_some() {
        if options.cpus.is_none() {
            return Err("--postgres-cpus needs --cpus: the database's CPUs apart from ours".into());
        }
        if !options.setups.iter().any(|s| s.needs_postgres()) {
            return Err("--postgres-cpus needs a gate-postgres setup in --setups".into());
        }
    }
    Ok(options)
}

fn main() {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("hookgate-load: {message}");
            std::process::exit(2);
        }
    };
    // Before the runtime's threads start: they inherit it.
    if let Some(cpus) = &options.cpus {
        if let Err(error) = load::pin::pin_self(cpus) {
            eprintln!("hookgate-load: --cpus: {error}");
            std::process::exit(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hookgate-load: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    // A throwaway cluster for gate-postgres when no database was named; it lives until the
    // end of main.
    let mut options = options;
    let _cluster = if options.setups.iter().any(|s| s.needs_postgres())
        && options.postgres.is_none()
    {
        match hookgate_testkit::Postgres::start() {
            Some(cluster) => {
                options.postgres = Some(cluster.url());
                Some(cluster)
            }
            None => {
                eprintln!(
                    "hookgate-load: gate-postgres needs PostgreSQL: install its server binaries or pass --postgres URL"
                );
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    // The server's processes get their CPUs back when this is dropped, before any exit.
    let pinned = match (&options.postgres_cpus, &options.postgres) {
        (Some(cpus), Some(url)) => {
            match runtime.block_on(load::pin::pin_postgres(&load::driver_url(url), cpus)) {
                Ok(pinned) => {
                    eprintln!(
                        "hookgate-load: this process on CPUs {}, PostgreSQL ({} processes) on CPUs {cpus}",
                        options.cpus.as_deref().unwrap_or("all"),
                        pinned.processes()
                    );
                    Some(pinned)
                }
                Err(error) => {
                    eprintln!("hookgate-load: {error}");
                    std::process::exit(1);
                }
            }
        }
        _ => None,
    };
    let result = match options.dedup_keys {
        Some(keys) => runtime.block_on(dedup_memory(keys, options.json)),
        None => runtime.block_on(run_all(&options)),
    };
    drop(pinned);
    if let Err(error) = result {
        eprintln!("hookgate-load: {error}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run_all(options: &Options) -> Result<(), BoxError> {
    let measure = options.duration.unwrap_or(if options.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    });
    let warm_up = measure
        .checked_div(5)
        .unwrap_or_default()
        .min(Duration::from_secs(1));
    let mut results: Vec<RunResult> = Vec::new();
    for &framework in &options.frameworks {
        for &connections in &options.connections {
            let mut baseline_rps = None;
            for &setup in &options.setups {
                let server = load::start(framework, setup, options.postgres.as_deref()).await?;
                let recorded = load::drive(
                    server.addr,
                    LoadConfig {
                        connections,
                        warm_up,
                        measure,
                    },
                )
                .await?;
                let stats = server.inbox_stats();
                let worker = server.worker_stats();
                let postgres = server.postgres_stats();
                let stopped = server.stop().await;
                #[allow(clippy::cast_precision_loss, reason = "ratios of counts")]
                let (events_per_batch, commits_per_event) = match postgres {
                    Some(pg) if pg.batches > 0 && pg.events > 0 => (
                        Some(pg.events as f64 / pg.batches as f64),
                        stopped
                            .postgres_commits
                            .map(|commits| commits as f64 / pg.events as f64),
                    ),
                    _ => (None, None),
                };
                // Enqueues share the segment log's syncs (the database's commits are the
                // applier's and the worker's).
                let events_per_commit = stats.map(|s| s.average_log_batch());
                // Of the events stored during the run (warm-up included), the share the
                // worker had finished when the load stopped.
                let stored = stats
                    .map(|s| s.events_stored)
                    .or(postgres.map(|pg| pg.events));
                let processed_share = match (stored, worker) {
                    (Some(stored), Some(worker)) if stored > 0 => {
                        #[allow(clippy::cast_precision_loss, reason = "a ratio of counts")]
                        let share = worker.processed as f64 / stored as f64;
                        Some(share)
                    }
                    _ => None,
                };
                let requests = u64::try_from(recorded.latencies_us.len()).unwrap_or(u64::MAX);
                let rps = load::rate(requests, measure);
                if setup == Setup::Baseline {
                    baseline_rps = Some(rps);
                }
                let result = RunResult {
                    framework: framework.name(),
                    setup: setup.name(),
                    connections,
                    requests,
                    errors: recorded.errors,
                    rps,
                    p50_us: load::percentile(&recorded.latencies_us, 0.50),
                    p99_us: load::percentile(&recorded.latencies_us, 0.99),
                    p999_us: load::percentile(&recorded.latencies_us, 0.999),
                    events_per_commit,
                    events_per_batch,
                    commits_per_event,
                    processed_share,
                    ratio_to_baseline: baseline_rps.filter(|b| *b > 0.0).map(|b| rps / b),
                    cpus: options.cpus.clone(),
                    postgres_cpus: options.postgres_cpus.clone(),
                };
                if !options.json {
                    println!(
                        "{:<6} {:<17} {:>3} conn  {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  {}  ({} errors){}{}{}{}",
                        result.framework,
                        result.setup,
                        result.connections,
                        result.rps,
                        result.p50_us,
                        result.p99_us,
                        result.p999_us,
                        result.ratio_to_baseline.map_or_else(
                            || "(no baseline)".to_owned(),
                            |r| format!("×{r:.2} of baseline")
                        ),
                        result.errors,
                        result
                            .events_per_commit
                            .map_or_else(String::new, |n| format!("  {n:.1} events/commit")),
                        result
                            .events_per_batch
                            .map_or_else(String::new, |n| format!("  {n:.1} events/batch")),
                        result
                            .commits_per_event
                            .map_or_else(String::new, |n| format!("  {n:.3} commits/event")),
                        result
                            .processed_share
                            .map_or_else(String::new, |n| format!("  {:.0}% processed", n * 100.0)),
                    );
                }
                results.push(result);
            }
        }
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

async fn dedup_memory(keys: u64, json: bool) -> Result<(), BoxError> {
    let before = load::resident_bytes().unwrap_or(0);
    // Room to spare: capacity is enforced per shard, and the point is to hold all N keys.
    let store = MemoryDedupStore::builder()
        .max_keys(keys.max(1).saturating_mul(2))
        .build()?;
    for i in 0..keys {
        let key = format!("standard-webhooks-v1:id:msg_{i:024}");
        if let Claim::New(token) = store.claim(&key).await? {
            store.commit(&key, token).await?;
        }
    }
    store.run_pending_tasks();
    let after = load::resident_bytes().unwrap_or(0);
    let grown = after.saturating_sub(before);
    #[allow(
        clippy::cast_precision_loss,
        reason = "memory sizes are far below 2^52"
    )]
    let (mib, per_key) = (
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / keys.max(1) as f64,
    );
    if json {
        println!(
            "{}",
            serde_json::json!({ "dedup_keys": keys, "stored": store.key_count(), "resident_bytes": grown, "bytes_per_key": per_key })
        );
    } else {
        println!(
            "in-memory dedup store: {} keys stored, resident memory grew {mib:.1} MiB ({per_key:.0} bytes/key)",
            store.key_count()
        );
    }
    Ok(())
}
