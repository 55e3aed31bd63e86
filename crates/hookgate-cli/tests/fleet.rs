//! `hookgate serve` as a fleet: replicas sharing a Redis dedup store and handing events to a
//! Redis stream or a NATS JetStream stream. Every test starts the servers it needs on free
//! ports (`hookgate-testkit`; skipped where the binary is not installed, failed instead
//! under `HOOKGATE_REQUIRE_SERVICES=1`).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;

use common::{Serve, hookgate};
use hookgate_testkit::{Nats, Redis};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const N: usize = 50;

fn random_name() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// `hookgate send` of N deliveries with ids `ID-1`…`ID-N`, retrying like a provider.
async fn send(serve: &Serve, id: &str) -> common::Run {
    hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        SECRET,
        "--id",
        id,
        "--count",
        &N.to_string(),
        "--concurrency",
        "8",
        "--retry-schedule",
        "exponential",
        "--time-scale",
        "0.05",
        "--quiet",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_dedup_queue_each_delivery_once() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let name = random_name();
    let prefix = format!("hookgate-test:{name}:");
    let stream = format!("hookgate-test:{name}:events");
    let dedup = format!("{redis_url}?prefix={prefix}");
    let queue = format!("{redis_url}?stream={stream}");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--secret", SECRET, "--dedup", &dedup, "--queue", &queue];
    let a = Serve::start(dir_a.path(), &args);
    let b = Serve::start(dir_b.path(), &args);
    assert!(a.stderr().contains("no local worker"), "{}", a.stderr());
    assert!(
        !a.stderr().contains("dedup is per replica"),
        "{}",
        a.stderr()
    );

    let id = format!("fleet-{name}");
    let (to_a, to_b) = tokio::join!(send(&a, &id), send(&b, &id));
    assert_eq!(to_a.code, 0, "{to_a:?}\n{}", a.stderr());
    assert_eq!(to_b.code, 0, "{to_b:?}\n{}", b.stderr());

    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &reply.ids {
        let text: String = entry.get("envelope").expect("an envelope field");
        let envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
        *seen
            .entry(envelope["delivery_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (1..=N).map(|n| (format!("{id}-{n}"), 1)).collect();

    // Clean up before asserting, so that a failure leaves nothing behind.
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    keys.push(stream.clone());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut con)
        .await
        .unwrap();

    assert_eq!(reply.ids.len(), N, "{seen:?}");
    assert_eq!(seen, expected);
    // Nothing was stored locally: both dedup and the sink are elsewhere.
    assert!(!dir_a.path().join("inbox.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_queue_receives_every_delivery() {
    let Some(nats) = Nats::start() else { return };
    let name = random_name();
    let stream = format!("HOOKGATE_TEST_{}", name.to_uppercase());
    let subject = format!("hookgate.test.{name}");
    let queue = format!("{}/?stream={stream}&subject={subject}", nats.url());
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &["--secret", SECRET, "--queue", &queue]);
    assert!(
        serve.stderr().contains("no local worker"),
        "{}",
        serve.stderr()
    );
    assert!(
        serve.stderr().contains("dedup is per replica"),
        "{}",
        serve.stderr()
    );

    let run = send(&serve, &format!("nats-{name}")).await;
    let client = async_nats::connect(nats.address()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let messages = jetstream
        .get_stream(&stream)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages;
    jetstream.delete_stream(&stream).await.unwrap();

    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    assert_eq!(messages, N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_with_forward_or_exec_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for extra in [["--forward", "http://127.0.0.1:9/"], ["--exec", "cat"]] {
        let run = hookgate([
            "serve",
            "--data-dir",
            data,
            "--secret",
            SECRET,
            "--queue",
            "redis://127.0.0.1:6379/?stream=s",
            extra[0],
            extra[1],
        ])
        .await;
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("cannot be used with"), "{run:?}");
    }
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        "[[endpoint]]\npath = '/x'\nscheme = 'github'\nkeys = [{ secret = 's' }]\n\
         queue = 'nats://127.0.0.1:4222/'\nexec = 'cat'\n",
    )
    .unwrap();
    let run = hookgate([
        "serve",
        "--data-dir",
        data,
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot be combined with forward or exec"),
        "{run:?}"
    );
    let run = hookgate([
        "serve",
        "--data-dir",
        data,
        "--secret",
        SECRET,
        "--queue",
        "amqp://127.0.0.1/",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("must start with redis://"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_endpoint_shares_redis_dedup() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let name = random_name();
    let prefix = format!("hookgate-test:{name}:");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[endpoint]]\nname = 'cfg'\npath = '/webhooks'\nscheme = 'standard-webhooks-v1'\n\
             keys = [{{ secret = '{SECRET}' }}]\ndedup = '{redis_url}?prefix={prefix}'\n"
        ),
    )
    .unwrap();
    let serve = Serve::start(dir.path(), &["--config", config.to_str().unwrap()]);
    assert!(
        serve.stderr().contains("dedup in Redis"),
        "{}",
        serve.stderr()
    );
    let run = send(&serve, &format!("cfg-{name}")).await;
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    assert_eq!(keys.len(), N, "one committed dedup key per delivery");
}
