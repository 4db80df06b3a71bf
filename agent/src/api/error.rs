//! The one mapping from failures to HTTP statuses, always with a JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_model::api::ErrorBody;

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
    #[error("no such route: {0}")]
    NoRoute(String),
}

use crate::converge::chain;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            ApiError::Engine(e) => match e {
                EngineError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_profile"),
                EngineError::ConfirmPending { .. } | EngineError::NothingToConfirm => {
                    (StatusCode::CONFLICT, "conflict")
                }
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
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
        };
        let profile_errors = match &self {
            ApiError::Engine(EngineError::Invalid(v)) => v.errors.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            kind: kind.to_owned(),
            error: chain(&self),
            profile_errors,
        };
        (status, Json(body)).into_response()
    }
}
