//! Creating or checking the streams at start-up.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType, Stream};

use crate::Error;
use crate::url::subject_matches;

/// How a missing stream is created.
#[derive(Debug, Clone)]
pub(crate) struct StreamSpec {
    pub(crate) name: String,
    pub(crate) subject: String,
    pub(crate) retention: RetentionPolicy,
    pub(crate) duplicate_window: Duration,
    pub(crate) max_age: Duration,
    pub(crate) replicas: usize,
}

/// The stream `spec.name`: checked to capture `spec.subject` if it exists, created from
/// `spec` if it does not and `create` is set.
pub(crate) async fn ensure_stream(
    context: &Context,
    spec: &StreamSpec,
    create: bool,
) -> Result<Stream, Error> {
    match context.get_stream(&spec.name).await {
        Ok(stream) => {
            let subjects = &stream.cached_info().config.subjects;
            if !subjects.iter().any(|s| subject_matches(s, &spec.subject)) {
                return Err(Error::Config(format!(
                    "stream {} exists but does not capture subject {} (its subjects: {subjects:?})",
                    spec.name, spec.subject
                )));
            }
            Ok(stream)
        }
        Err(err) => {
            let missing = matches!(err.kind(), GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND);
            if !missing {
                return Err(Error::nats(format!("stream {}: {err}", spec.name)));
            }
            if !create {
                return Err(Error::Config(format!(
                    "stream {} does not exist",
                    spec.name
                )));
            }
            let config = Config {
                name: spec.name.clone(),
                subjects: vec![spec.subject.clone()],
                retention: spec.retention,
                storage: StorageType::File,
                duplicate_window: spec.duplicate_window,
                max_age: spec.max_age,
                num_replicas: spec.replicas,
                ..Config::default()
            };
            // Another replica may create it at the same moment: then read theirs.
            match context.create_stream(config).await {
                Ok(stream) => Ok(stream),
                Err(create_err) => context.get_stream(&spec.name).await.map_err(|_| {
                    Error::nats(format!(
                        "could not create stream {}: {create_err}",
                        spec.name
                    ))
                }),
            }
        }
    }
}
