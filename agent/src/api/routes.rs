//! Route handlers. They only translate: parse the request, hand a command to
//! the engine thread, turn the answer into JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::Json;
use bulwark_model::api::{
    AddPeerRequest, AddPeerResponse, ApplyRequest, ApplyResponse, AuditEvent, AuditVerify, GenerationInfo, Health,
    PeerInfo, RollbackRequest, Status, VersionInfo, API_VERSION, MAX_BODY_BYTES,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::{Caller, Ctx, Reporter};
use crate::converge::task::Command;

/// A JSON body read within the size limit, with errors as JSON bodies.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit: MAX_BODY_BYTES }
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api_versions: vec![API_VERSION.to_owned()],
        capabilities: [
            "firewall",
            "generations",
            "confirm",
            "rollback",
            "drift",
            "audit",
            "wireguard",
            "k3s",
            "metrics",
        ]
        .map(str::to_owned)
        .to_vec(),
    })
}

pub async fn status(State(ctx): State<Ctx>, State(reporter): State<Reporter>) -> Result<Json<Status>, ApiError> {
    let mut status = ctx.engine.call(Command::Status).await??;
    status.health = reporter.health().await?.level;
    Ok(Json(status))
}

pub async fn health(State(reporter): State<Reporter>) -> Result<Json<Health>, ApiError> {
    Ok(Json(reporter.health().await?))
}

pub async fn generations(State(ctx): State<Ctx>) -> Result<Json<Vec<GenerationInfo>>, ApiError> {
    Ok(Json(ctx.engine.call(Command::Generations).await??))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// How many of the newest events to return.
    #[serde(default = "default_tail")]
    n: usize,
}

fn default_tail() -> usize {
    20
}

pub async fn audit_tail(State(ctx): State<Ctx>, Query(q): Query<TailQuery>) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    Ok(Json(ctx.engine.call(|r| Command::AuditTail(q.n, r)).await??))
}

pub async fn audit_verify(State(ctx): State<Ctx>) -> Result<Json<AuditVerify>, ApiError> {
    Ok(Json(ctx.engine.call(Command::AuditVerify).await??))
}

pub async fn apply(
    State(ctx): State<Ctx>,
    caller: Caller,
    Body(req): Body<ApplyRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    Ok(Json(ctx.engine.call(|r| Command::Apply(req, caller.0.uid, r)).await??))
}

pub async fn peers(State(ctx): State<Ctx>) -> Result<Json<Vec<PeerInfo>>, ApiError> {
    Ok(Json(ctx.engine.call(Command::Peers).await??))
}

pub async fn add_peer(
    State(ctx): State<Ctx>,
    caller: Caller,
    Body(req): Body<AddPeerRequest>,
) -> Result<Json<AddPeerResponse>, ApiError> {
    Ok(Json(
        ctx.engine.call(|r| Command::AddPeer(req, caller.0.uid, r)).await??,
    ))
}

pub async fn remove_peer(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PeerInfo>, ApiError> {
    Ok(Json(
        ctx.engine
            .call(|r| Command::RemovePeer(name, caller.0.uid, r))
            .await??,
    ))
}

pub async fn confirm(State(ctx): State<Ctx>, caller: Caller) -> Result<Json<ApplyResponse>, ApiError> {
    Ok(Json(ctx.engine.call(|r| Command::Confirm(caller.0.uid, r)).await??))
}

pub async fn rollback(
    State(ctx): State<Ctx>,
    caller: Caller,
    Body(req): Body<RollbackRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    Ok(Json(
        ctx.engine
            .call(|r| Command::Rollback(req.generation, caller.0.uid, r))
            .await??,
    ))
}
