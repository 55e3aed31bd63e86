//! dudect-style timing check: does rejecting a forged signature take longer when the forgery
//! matches the expected tag for longer? Opt-in, too slow and noisy for CI:
//!
//! ```text
//! cargo run --release -p hookgate-fuzz --features timing --bin timing
//! HOOKGATE_TIMING_SAMPLES=5000000 cargo run --release -p hookgate-fuzz --features timing --bin timing -- --filter hmac
//! ```
//!
//! Each bench times `Verifier::verify` on two classes of forged deliveries that differ from
//! the correct one in exactly one byte of the same length: the first byte (Left) or the last
//! byte (Right). An early-exit comparison returns sooner for Left; a constant-time one does
//! not care. `naive_early_exit_control` runs the same classes through a deliberately
//! early-exit comparison over 4 KiB, to show the harness can see a leak at all.
//!
//! Reading the output: `max t` is the largest Welch t-statistic over dudect's percentile
//! crops. |t| > 4.5 (dudect's threshold; its README says 5) is evidence of a timing
//! difference; below it, no evidence was found with this many samples, which is not a proof.

use std::hint::black_box;

use dudect_bencher::rand::RngExt as _;
use dudect_bencher::{BenchRng, Class, CtRunner, ctbench_main};
use hookgate::{SchemeId, SignRequest, Signer, Verifier};

const SECRET: &str = "a-shared-secret-for-timing-0123456789";
const BODY: &str = r#"{"action":"opened","number":1,"repository":{"full_name":"octo/hooks"}}"#;

/// Samples per bench (both classes together), from `HOOKGATE_TIMING_SAMPLES`.
fn samples() -> usize {
    std::env::var("HOOKGATE_TIMING_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// The correct signature bytes for `BODY` under `scheme`, written as the header carries them.
fn correct_header(scheme: SchemeId, header: &str) -> String {
    Signer::new(scheme, SECRET)
        .and_then(|signer| signer.sign(&SignRequest::new(BODY)))
        .ok()
        .and_then(|d| d.headers.into_iter().find(|(k, _)| k == header))
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// `text` with the character at byte `index` replaced by a different character of the
/// same class (hex digit stays a hex digit, letter a letter).
fn change_char(text: &str, index: usize) -> String {
    text.char_indices()
        .map(|(i, c)| {
            if i != index {
                c
            } else if c == '0' {
                '1'
            } else if c.is_ascii_digit() || ('a'..='f').contains(&c) {
                '0'
            } else if c == 'x' {
                'y'
            } else {
                'x'
            }
        })
        .collect()
}

fn run_classes(runner: &mut CtRunner, rng: &mut BenchRng, f: impl Fn(Class)) {
    let classes: Vec<Class> = (0..samples())
        .map(|_| {
            if rng.random::<bool>() {
                Class::Left
            } else {
                Class::Right
            }
        })
        .collect();
    for class in classes {
        runner.run_one(class, || f(class));
    }
}

/// GitHub (HMAC-SHA256, lowercase hex): forgery wrong in the first vs the last hex digit.
fn hmac_sha256_hex_first_vs_last_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let header = "X-Hub-Signature-256";
    let Ok(verifier) = Verifier::builder(SchemeId::Github).secret(SECRET).build() else {
        return;
    };
    let correct = correct_header(SchemeId::Github, header);
    let prefix = "sha256=".len();
    let left = [(header, change_char(&correct, prefix))];
    let right = [(
        header,
        change_char(&correct, correct.len().saturating_sub(1)),
    )];
    let body = bytes::Bytes::from_static(BODY.as_bytes());
    run_classes(runner, rng, |class| {
        let headers = match class {
            Class::Left => &left,
            Class::Right => &right,
        };
        black_box(verifier.verify(black_box(headers), body.clone()).is_ok());
    });
}

/// GitLab's token (SHA-256 digests compared in constant time): token wrong in its first vs
/// its last character.
fn gitlab_token_first_vs_last_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let header = "X-Gitlab-Token";
    let Ok(verifier) = Verifier::builder(SchemeId::GitlabToken)
        .secret(SECRET)
        .build()
    else {
        return;
    };
    let left = [(header, change_char(SECRET, 0))];
    let right = [(header, change_char(SECRET, SECRET.len().saturating_sub(1)))];
    let body = bytes::Bytes::from_static(BODY.as_bytes());
    run_classes(runner, rng, |class| {
        let headers = match class {
            Class::Left => &left,
            Class::Right => &right,
        };
        black_box(verifier.verify(black_box(headers), body.clone()).is_ok());
    });
}

/// Positive control: an early-exit comparison of 4 KiB must show a large |t|.
fn naive_early_exit_control(runner: &mut CtRunner, rng: &mut BenchRng) {
    let expected = vec![0x5au8; 4096];
    let mut left = expected.clone();
    let mut right = expected.clone();
    if let Some(b) = left.first_mut() {
        *b ^= 1;
    }
    if let Some(b) = right.last_mut() {
        *b ^= 1;
    }
    run_classes(runner, rng, |class| {
        let candidate = match class {
            Class::Left => &left,
            Class::Right => &right,
        };
        let equal = black_box(candidate)
            .iter()
            .zip(black_box(&expected))
            .all(|(a, b)| a == b);
        black_box(equal);
    });
}

ctbench_main!(
    hmac_sha256_hex_first_vs_last_byte,
    gitlab_token_first_vs_last_byte,
    naive_early_exit_control
);
