//! Key rotation: an old key verifies during the overlap and never after its not-after time.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, UNIX_EPOCH};

use hookgate::{FixedClock, Key, Keyring, Reason, SchemeId, SignRequest, Signer, Verifier};

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ROTATED_AT: u64 = 1_700_000_000;

fn verifier_at(now: u64) -> Verifier {
    let keyring = Keyring::new().with(Key::new(NEW).with_id("2026-11")).with(
        Key::new(OLD)
            .with_id("2026-10")
            .not_after(UNIX_EPOCH + Duration::from_secs(ROTATED_AT)),
    );
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .keyring(keyring)
        .clock(FixedClock::from_unix(now))
        .build()
        .unwrap()
}

fn signed_with(secret: &str, at: u64) -> Vec<(String, String)> {
    let signer = Signer::new(SchemeId::StandardWebhooksV1, secret).unwrap();
    signer
        .sign(&SignRequest::new("{}").id("msg_rot").timestamp(at as i64))
        .unwrap()
        .headers
}

#[test]
fn old_key_verifies_during_overlap_and_fails_after_not_after() {
    let before = ROTATED_AT - 60;
    let event = verifier_at(before)
        .verify(&signed_with(OLD, before), "{}")
        .unwrap();
    assert_eq!(event.key_id(), "2026-10");
    assert_eq!(event.key_index(), 1);

    // Exactly at not-after the old key is still live.
    assert!(
        verifier_at(ROTATED_AT)
            .verify(&signed_with(OLD, ROTATED_AT), "{}")
            .is_ok()
    );

    let after = ROTATED_AT + 1;
    let rejection = verifier_at(after)
        .verify(&signed_with(OLD, after), "{}")
        .unwrap_err();
    assert_eq!(rejection.reason(), Reason::SignatureMismatch);
}

#[test]
fn new_key_verifies_before_and_after() {
    for now in [ROTATED_AT - 60, ROTATED_AT + 3600] {
        let event = verifier_at(now)
            .verify(&signed_with(NEW, now), "{}")
            .unwrap();
        assert_eq!(event.key_id(), "2026-11");
    }
}

#[test]
fn sender_signing_with_both_keys_matches_either() {
    // During a rotation providers send one signature per active secret.
    let now = ROTATED_AT + 10;
    let mut headers = signed_with(OLD, now);
    let new_signature = signed_with(NEW, now)
        .into_iter()
        .find(|(k, _)| k == "webhook-signature")
        .unwrap()
        .1;
    headers
        .iter_mut()
        .find(|(k, _)| k == "webhook-signature")
        .unwrap()
        .1
        .push_str(&format!(" {new_signature}"));
    let event = verifier_at(now).verify(&headers, "{}").unwrap();
    assert_eq!(event.key_id(), "2026-11");
}

#[test]
fn stripe_rotation_with_two_v1_values() {
    let old = "whsec_old_secret";
    let new = "whsec_new_secret";
    let now = 1_700_000_000;
    let header = |secret: &str| {
        let signed = Signer::new(SchemeId::Stripe, secret)
            .unwrap()
            .sign(&SignRequest::new("{}").timestamp(now))
            .unwrap();
        signed
            .headers
            .into_iter()
            .find(|(k, _)| k == "Stripe-Signature")
            .unwrap()
            .1
    };
    let old_v1 = header(old).split_once(",v1=").unwrap().1.to_owned();
    let combined = format!("{},v1={old_v1}", header(new));
    let only_old_key = Verifier::builder(SchemeId::Stripe)
        .secret(old)
        .clock(FixedClock::from_unix(now as u64))
        .build()
        .unwrap();
    assert!(
        only_old_key
            .verify(&[("Stripe-Signature", combined.as_str())], "{}")
            .is_ok()
    );
}
