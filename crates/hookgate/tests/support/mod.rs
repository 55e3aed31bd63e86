//! Loads the provider vectors kept in `shared/vectors/` beside the repository, and the ones
//! researched for this repository in `crates/hookgate/tests/vectors/` (one file per
//! provider; `handshakes.json` holds the URL handshakes, in a format of its own).

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
    /// The HTTP method, where the scheme signs it (`hubspot-v3`); `POST` when absent.
    pub method: Option<String>,
    pub now: u64,
    pub tolerance_s: Option<u64>,
    pub expect: String,
    pub strict_expect: Option<String>,
    /// What the Gate answers when it differs from the verifier's `expect`: `handshake` for
    /// an unsigned provider handshake the Gate answers 200 with an empty body (WooCommerce's
    /// ping), which the verifier alone still rejects.
    pub gate_expect: Option<String>,
    /// The secret is refused when a verifier is built (Airtable's non-base64
    /// `macSecretBase64`): the vector is a configuration check, not a delivery, and
    /// [`load`] leaves it out.
    #[serde(default)]
    pub expect_config_error: bool,
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

    /// The request line: the URL and the method, where the vector has them.
    pub fn request(&self) -> hookgate::RequestContext<'_> {
        let request = hookgate::RequestContext::new().with_url_opt(self.url.as_deref());
        match &self.method {
            Some(method) => request.with_method(method),
            None => request,
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

/// The shared vectors, and the repository's own vectors of every scheme this build knows.
pub fn load() -> Vec<Vector> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the provider vectors at {} ({e}); set HOOKGATE_VECTORS",
            path.display()
        )
    });
    let mut vectors: Vec<Vector> =
        serde_json::from_str(&text).expect("provider-vectors.json parses");
    vectors.extend(
        local()
            .into_iter()
            .filter(|v| v.scheme.parse::<hookgate::SchemeId>().is_ok() && !v.expect_config_error),
    );
    vectors
}

/// `crates/hookgate/tests/vectors/`.
pub fn local_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/hookgate/tests/vectors")
}

/// Every vector of `crates/hookgate/tests/vectors/` but the handshakes, known scheme or not.
pub fn local() -> Vec<Vector> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(local_dir())
        .expect("crates/hookgate/tests/vectors")
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != "handshakes.json")
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            serde_json::from_str::<Vec<Vector>>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// One URL handshake vector (`crates/hookgate/tests/vectors/handshakes.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct HandshakeVector {
    pub id: String,
    pub scheme: String,
    pub case: String,
    pub method: String,
    pub query: Option<String>,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub body: String,
    pub secret: Option<String>,
    pub verify_token: Option<String>,
    pub now: u64,
    pub expect_status: u16,
    pub expect_content_type: Option<String>,
    #[serde(default)]
    pub expect_headers: serde_json::Map<String, serde_json::Value>,
    /// A string (compared byte for byte) or a JSON object (compared parsed).
    pub expect_body: Option<serde_json::Value>,
    pub stored: bool,
}

impl HandshakeVector {
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_owned()))
            .collect()
    }
}

pub fn handshakes() -> Vec<HandshakeVector> {
    let path = local_dir().join("handshakes.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
