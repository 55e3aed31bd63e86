//! Prints the verify-path benchmark table (Markdown) from criterion's last run:
//! `cargo bench -p hookgate-bench --bench verify && cargo run -p hookgate-bench --bin bench-report`.

use std::path::PathBuf;

use hookgate_bench::PAYLOAD_SIZES;
use hookgate_bench::report::{human, mb_per_s, median_ns};

fn main() {
    let dir = std::env::var("CRITERION_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion"),
        PathBuf::from,
    );
    println!("| scheme | payload | floor (raw HMAC) | hookgate | ratio to floor | peers |");
    println!("|---|---|---|---|---|---|");
    for scheme in ["standard-webhooks-v1", "stripe", "github", "shopify"] {
        let group = format!("verify-{scheme}");
        for size in PAYLOAD_SIZES {
            let floor = median_ns(&dir, &group, "floor-hmac", size);
            let ours = median_ns(&dir, &group, "hookgate", size);
            let (Some(floor), Some(ours)) = (floor, ours) else {
                println!("| {scheme} | {size} | not measured | | | |");
                continue;
            };
            let mut peers = Vec::new();
            for peer in ["svix", "standardwebhooks"] {
                if let Some(ns) = median_ns(&dir, &group, peer, size) {
                    peers.push(format!(
                        "{peer} {} ({:.2}× floor, {:.1}× hookgate)",
                        human(ns),
                        ns / floor,
                        ns / ours
                    ));
                }
            }
            println!(
                "| {scheme} | {size} B | {} ({:.0} MB/s) | {} | {:.3}× | {} |",
                human(floor),
                mb_per_s(size, floor),
                human(ours),
                ours / floor,
                peers.join("; ")
            );
        }
    }
    if let Some(ns) = median_ns(&dir, "verify-standard-webhooks-v1a", "hookgate", 1024) {
        println!("\nEd25519 (standard-webhooks-v1a) at 1 KiB: {}", human(ns));
    }
}
