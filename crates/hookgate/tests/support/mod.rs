//! Loads the provider vectors kept in `shared/vectors/` beside the repository.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    pub id: String,
    pub scheme: String,
    pub case: String,
    pub secret: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub body: String,
    pub body_b64: Option<String>,
    pub url: Option<String>,
    pub now: u64,
    pub tolerance_s: Option<u64>,
    pub expect: String,
    pub strict_expect: Option<String>,
}

impl Vector {
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body_b64 {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("body_b64"),
            None => self.body.as_bytes().to_vec(),
        }
    }

    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().expect("header values are strings").to_owned(),
                )
            })
            .collect()
    }
}

/// `HOOKGATE_VECTORS`, else `shared/vectors/provider-vectors.json` beside the repository.
pub fn vectors_path() -> PathBuf {
    if let Ok(path) = std::env::var("HOOKGATE_VECTORS") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/provider-vectors.json")
}

pub fn load() -> Vec<Vector> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the provider vectors at {} ({e}); set HOOKGATE_VECTORS",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("provider-vectors.json parses")
}
