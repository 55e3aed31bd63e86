//! # hookgate-tower
//!
//! (docs to come)

mod body;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod respond;
mod service;

pub use body::{RawBody, ResponseBody};
#[cfg(feature = "axum")]
pub use extract::{
    MAX_JSON_DEPTH, VerifiedJson, VerifiedWebhook, WebhookRejection, WebhookRejectionKind,
};
pub use future::ResponseFuture;
pub use layer::{GateLayer, InvalidOrigin, Mode};
pub use respond::{BODY_UNREADABLE, BodyReadError, DefaultRespond, Respond, outcome_response};
pub use service::GateService;

/// The error type bodies are converted to.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
