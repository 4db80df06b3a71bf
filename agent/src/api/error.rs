//! The one mapping from failures to HTTP statuses, always with a JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_model::api::ErrorBody;
use bulwark_model::text::escape;
use bulwark_model::ProfileError;

use crate::converge::task::EngineGone;
use crate::converge::EngineError;
use crate::wireguard::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Gone(#[from] EngineGone),
    #[error("uid {uid} is not allowed to {action}: it needs {needs}")]
    Forbidden {
        uid: u32,
        action: String,
        needs: &'static str,
    },
    #[error("request body is not valid: {0}")]
    BadRequest(String),
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body did not arrive within {secs}s")]
    BodyTimeout { secs: u64 },
    #[error("the request's work was interrupted (is the daemon stopping?)")]
    Interrupted,
    #[error("this caller has too many requests in progress; waited {secs}s for a turn")]
    Busy { secs: u64 },
    #[error("no such route: {0}")]
    NoRoute(String),
}

/// The message with its whole cause chain, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::Engine(EngineError::Invalid(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_profile"),
            ApiError::Engine(EngineError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Engine(EngineError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Engine(EngineError::BadRequest(_)) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Engine(EngineError::Firewall { .. } | EngineError::K3s { .. } | EngineError::Verify(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "apply_failed")
            }
            ApiError::Engine(EngineError::WireGuard { .. }) => (StatusCode::INTERNAL_SERVER_ERROR, "apply_failed"),
            ApiError::Engine(EngineError::Peer(e)) => match e.class() {
                ErrorClass::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
                ErrorClass::Conflict => (StatusCode::CONFLICT, "conflict"),
                ErrorClass::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                ErrorClass::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "wireguard_failed"),
            },
            ApiError::Engine(EngineError::State(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "state_error"),
            ApiError::Gone(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_stopped"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Interrupted => (StatusCode::SERVICE_UNAVAILABLE, "interrupted"),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
        };
        // Messages quote what the caller sent (an apply's `source` names
        // the file in every profile error): escaped, like every log line.
        let profile_errors = match &self {
            ApiError::Engine(EngineError::Invalid(v)) => v
                .errors
                .iter()
                .map(|e| ProfileError {
                    file: escape(&e.file).into_owned(),
                    path: escape(&e.path).into_owned(),
                    reason: escape(&e.reason).into_owned(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            kind: kind.to_owned(),
            error: escape(&chain(&self)).into_owned(),
            profile_errors,
        };
        (status, Json(body)).into_response()
    }
}
