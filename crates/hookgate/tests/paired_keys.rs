//! Box pairs each signature header with its own key: the primary key signs
//! `box-signature-primary`, the secondary `box-signature-secondary` (box-python-sdk
//! `validate_message`), so a keyring for `box` is `[primary, secondary]`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hookgate::{FixedClock, SchemeId, Verifier};

/// box/box-python-sdk@656e9bb test/webhooks.py::testWebhookValidation (box-001).
const HEADERS: [(&str, &str); 6] = [
    ("box-delivery-id", "f96bb54b-ee16-4fc5-aa65-8c2d9e5b546f"),
    ("box-delivery-timestamp", "2020-01-01T00:00:00-07:00"),
    ("box-signature-algorithm", "HmacSHA256"),
    (
        "box-signature-primary",
        "6TfeAW3A1PASkgboxxA5yqHNKOwFyMWuEXny/FPD5hI=",
    ),
    (
        "box-signature-secondary",
        "v+1CD1Jdo3muIcbpv5lxxgPglOqMfsNHPV899xWYydo=",
    ),
    ("box-signature-version", "1"),
];
const BODY: &str = r#"{"type":"webhook_event","webhook":{"id":"1234567890"},"trigger":"FILE.UPLOADED","source":{"id":"1234567890","type":"file","name":"Test.txt"}}"#;

fn verify(keys: &[&str], headers: &[(&str, &str)]) -> Result<usize, &'static str> {
    let mut builder = Verifier::builder(SchemeId::Box).clock(FixedClock::from_unix(1_577_862_000));
    for key in keys {
        builder = builder.secret(*key);
    }
    builder
        .build()
        .unwrap()
        .verify(headers, BODY)
        .map(|event| event.key_index())
        .map_err(|rejection| rejection.code())
}

#[test]
fn each_header_is_checked_with_its_own_key() {
    assert_eq!(
        verify(&["SamplePrimaryKey", "SampleSecondaryKey"], &HEADERS),
        Ok(0)
    );
    // A rotated-out primary: the secondary key still verifies its own header.
    assert_eq!(
        verify(&["OldPrimaryKey", "SampleSecondaryKey"], &HEADERS),
        Ok(1)
    );
    // Swapped keys match neither header: each key is tried on its own header only.
    assert_eq!(
        verify(&["SampleSecondaryKey", "SamplePrimaryKey"], &HEADERS),
        Err("signature_mismatch")
    );
    // Without the secondary header only the primary pair can match.
    let without: Vec<(&str, &str)> = HEADERS
        .iter()
        .copied()
        .filter(|(name, _)| *name != "box-signature-secondary")
        .collect();
    assert_eq!(
        verify(&["SamplePrimaryKey", "SampleSecondaryKey"], &without),
        Ok(0)
    );
    assert_eq!(
        verify(&["OldPrimaryKey", "SampleSecondaryKey"], &without),
        Err("signature_mismatch")
    );
    // A third key has no header of its own.
    assert_eq!(
        verify(
            &["OldPrimaryKey", "OldSecondaryKey", "SamplePrimaryKey"],
            &HEADERS
        ),
        Err("signature_mismatch")
    );
}

/// The four key pairs `testWebhookValidation` passes to `validate_message` (primary,
/// `secondary_key=`), on the test's own signed headers; the vectors (`box-sdk-*`) take one key
/// each, so the pairs with a wrong primary key are checked here.
#[test]
fn the_sdk_tests_key_pairs_give_the_sdks_answers() {
    const INCORRECT: &str = "IncorrectKey";
    assert_eq!(
        verify(&["SamplePrimaryKey", "SampleSecondaryKey"], &HEADERS),
        Ok(0)
    );
    assert_eq!(verify(&["SamplePrimaryKey", INCORRECT], &HEADERS), Ok(0));
    assert_eq!(verify(&[INCORRECT, "SampleSecondaryKey"], &HEADERS), Ok(1));
    assert_eq!(
        verify(&[INCORRECT, INCORRECT], &HEADERS),
        Err("signature_mismatch")
    );
}
