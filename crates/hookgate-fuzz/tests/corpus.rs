//! Replays every committed fuzz input through the same harness `cargo fuzz` runs, without
//! nightly: the seeds (`fuzz/seeds/<target>/`), the corpus the fuzzing runs kept and
//! minimised (`fuzz/corpus/<target>/`) and every crash artifact
//! (`fuzz/artifacts/<target>/`), so a crash once found stays fixed.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use hookgate_fuzz::{TARGETS, harness, seeds};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_and_crash_artifact_replays_without_a_finding() {
    let mut failures = Vec::new();
    let mut replayed = 0usize;
    for (target, run) in TARGETS {
        for kind in ["seeds", "corpus", "artifacts"] {
            for path in files(&fuzz_dir().join(kind).join(target)) {
                let data = std::fs::read(&path).unwrap();
                replayed += 1;
                if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                    failures.push(path.display().to_string());
                }
            }
        }
    }
    assert!(failures.is_empty(), "inputs that still fail: {failures:#?}");
    assert!(replayed >= TARGETS.len(), "only {replayed} inputs replayed");
    println!("replayed {replayed} corpus and artifact files");
}

#[test]
fn valid_seeds_verify_so_the_fuzzer_starts_past_the_signature_check() {
    for seed in seeds::all() {
        let run = harness(seed.target).unwrap();
        let verdicts = run(&seed.data);
        for label in &seed.verifies {
            let verdict = verdicts
                .iter()
                .find(|v| &v.label == label)
                .unwrap_or_else(|| panic!("{}/{}: no verdict for {label}", seed.target, seed.name));
            assert!(
                verdict.result.is_ok(),
                "{}/{}: {label} rejected its own seed: {:?}",
                seed.target,
                seed.name,
                verdict.result
            );
        }
    }
}

#[test]
fn committed_seeds_match_the_generated_ones() {
    for seed in seeds::all() {
        let path = fuzz_dir().join("seeds").join(seed.target).join(&seed.name);
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == seed.data,
            "{} is missing or stale: run `cargo run -p hookgate-fuzz --bin write-seeds`",
            path.display()
        );
    }
}

#[test]
fn every_fuzz_target_has_a_harness_a_corpus_and_a_manifest_entry() {
    let on_disk: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let known: BTreeSet<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    assert_eq!(
        on_disk, known,
        "fuzz/fuzz_targets/*.rs and hookgate_fuzz::TARGETS differ"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in &known {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        assert!(
            !files(&fuzz_dir().join("seeds").join(target)).is_empty(),
            "fuzz/seeds/{target} is empty"
        );
    }
}
