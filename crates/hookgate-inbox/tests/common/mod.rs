//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate::{Clock, SchemeId, SignRequest, Signer, VerifiedEvent, Verifier};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Mutex::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// A verified Standard Webhooks event with delivery id `id` and event type `event_type`.
pub fn event(id: &str, event_type: &str) -> VerifiedEvent {
    let body = format!(r#"{{"type":"{event_type}","data":{{"id":"{id}"}}}}"#);
    let delivery = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body).id(id).event_type(event_type))
        .unwrap();
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()
        .unwrap()
        .verify(&delivery.headers, delivery.body)
        .unwrap()
}

/// Polls `check` until it is true, failing the test after a generous limit (the limit is a
/// hang guard, not a performance assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
