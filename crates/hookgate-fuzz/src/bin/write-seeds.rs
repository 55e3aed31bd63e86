//! Writes the seed inputs of every fuzz target to `fuzz/seeds/<target>/seed-*` (or under the
//! directory given as the first argument). Idempotent: `fuzz/run.sh` runs it before fuzzing.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds"),
        PathBuf::from,
    );
    let mut written = 0usize;
    for seed in hookgate_fuzz::seeds::all() {
        let dir = root.join(seed.target);
        let path = dir.join(&seed.name);
        if let Err(error) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &seed.data))
        {
            eprintln!("cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        written = written.saturating_add(1);
    }
    println!("wrote {written} seeds under {}", root.display());
    ExitCode::SUCCESS
}
