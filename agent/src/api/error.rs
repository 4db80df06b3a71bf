//! The one mapping from failures to HTTP statuses, always with a JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_model::api::ErrorBody;
use bulwark_model::text::escape;
use bulwark_model::ProfileError;

use crate::converge::task::EngineGone;
use crate::converge::EngineError;
use crate::module::ErrorClass;

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
    #[error("bad query: {0}")]
    Query(#[from] crate::audit::WindowError),
}

use crate::converge::chain;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::Engine(e) => match e {
                EngineError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_profile"),
                EngineError::ConfirmPending { .. }
                | EngineError::NothingToConfirm
                | EngineError::ConfirmOther { .. } => (StatusCode::CONFLICT, "conflict"),
                EngineError::ConfirmWindow { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
                EngineError::NoSuchGeneration { .. }
                | EngineError::NoEarlierGeneration
                | EngineError::NoSuchModule { .. } => (StatusCode::NOT_FOUND, "not_found"),
                EngineError::ModuleBroken { .. } | EngineError::State(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "state_error")
                }
                EngineError::Apply { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "apply_failed"),
                EngineError::Module(m) => match m.class {
                    ErrorClass::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
                    ErrorClass::Conflict => (StatusCode::CONFLICT, "conflict"),
                    ErrorClass::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                    ErrorClass::State => (StatusCode::INTERNAL_SERVER_ERROR, "state_error"),
                    ErrorClass::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "apply_failed"),
                },
            },
            ApiError::Gone(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_stopped"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Interrupted => (StatusCode::SERVICE_UNAVAILABLE, "interrupted"),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Query(_) => (StatusCode::BAD_REQUEST, "bad_request"),
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
