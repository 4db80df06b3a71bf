//! Route handlers. They only translate: reads copy the published view or
//! read the audit log on a blocking thread; changes parse the request, hand
//! a command to the engine thread and turn the answer into JSON.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use bulwark_model::api::{
    AddPeerRequest, AddPeerResponse, ApplyRequest, ApplyResponse, AuditEvent, AuditVerify, ConfirmRequest,
    GenerationDetail, GenerationInfo, Health, PeerInfo, RollbackRequest, Status, VersionInfo, API_VERSION,
    MAX_BODY_BYTES,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::{Caller, Ctx, Role, BODY_DEADLINE};
use crate::audit;
use crate::converge::task::Command;
use crate::module::ActionRole;

/// A JSON body read within the size limit, with errors as JSON bodies.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // One deadline for the whole body: a client trickling a byte at a
        // time cannot stretch it, as a per-read timeout would let it.
        let read = tokio::time::timeout(BODY_DEADLINE, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| ApiError::BodyTimeout {
                secs: BODY_DEADLINE.as_secs(),
            })?
            .map_err(|e| {
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
            "modules",
            "evidence",
        ]
        .map(str::to_owned)
        .to_vec(),
    })
}

pub async fn status(State(ctx): State<Ctx>) -> impl IntoResponse {
    let json = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, json)], ctx.view.status_json().await)
}

pub async fn health(State(ctx): State<Ctx>) -> Json<Health> {
    Json(ctx.view.health().await)
}

pub async fn generations(State(ctx): State<Ctx>) -> Json<Vec<GenerationInfo>> {
    Json(ctx.view.current().await.generations.clone())
}

/// `GET /v1/generations/{n}`: read from disk on a blocking thread, like the
/// audit log, so it never queues behind the engine.
pub async fn generation(State(ctx): State<Ctx>, Path(number): Path<u64>) -> Result<Json<GenerationDetail>, ApiError> {
    let found = read_audit(&ctx, move |host| {
        crate::converge::generations::inspect(&host.state_dir(), number)
    })
    .await?;
    match found.map_err(crate::converge::EngineError::from)? {
        Some(g) => Ok(Json(g)),
        None => Err(crate::converge::EngineError::NoSuchGeneration { number }.into()),
    }
}

pub async fn peers(State(ctx): State<Ctx>) -> Json<Arc<Vec<PeerInfo>>> {
    Json(ctx.view.current().await.peers.clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// How many of the newest events to return (at most [`audit::MAX_TAIL`]).
    #[serde(default = "default_tail")]
    n: usize,
}

fn default_tail() -> usize {
    20
}

/// Run a read of the audit log (or of a generation) on a blocking thread, a
/// few at a time: the engine keeps writing meanwhile (see `audit::chain` on
/// why that is safe; a generation is renamed into place whole).
async fn read_audit<T: Send + 'static>(
    ctx: &Ctx,
    read: impl FnOnce(&crate::host::Host) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _turn = ctx
        .audit_readers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Interrupted)?;
    let host = ctx.host.clone();
    tokio::task::spawn_blocking(move || read(&host))
        .await
        .map_err(|_| ApiError::Interrupted)
}

pub async fn audit_tail(State(ctx): State<Ctx>, Query(q): Query<TailQuery>) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    if q.n > audit::MAX_TAIL {
        return Err(ApiError::BadRequest(format!(
            "n: {} is more than the {} events one request returns",
            q.n,
            audit::MAX_TAIL
        )));
    }
    let n = q.n;
    let events = read_audit(&ctx, move |host| audit::tail(host, n)).await?;
    Ok(Json(events.map_err(crate::converge::EngineError::from)?))
}

pub async fn audit_verify(State(ctx): State<Ctx>) -> Result<Json<AuditVerify>, ApiError> {
    Ok(Json(read_audit(&ctx, audit::verify).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    since: Option<String>,
    until: Option<String>,
}

/// The evidence report: one published view (status, health with the
/// resource checks, generations, peers) and one walk of the audit log, on a
/// blocking thread like every read of the log.
pub async fn evidence(
    State(ctx): State<Ctx>,
    Query(q): Query<EvidenceQuery>,
) -> Result<Json<bulwark_model::evidence::Evidence>, ApiError> {
    let window = audit::Window::parse(q.since.as_deref(), q.until.as_deref())?;
    let view = ctx.view.newest().await;
    let health = ctx.view.health_of(&view);
    let status = Status {
        health: health.level,
        ..view.status.clone()
    };
    let report = read_audit(&ctx, move |host| {
        let inputs = audit::EvidenceInputs {
            status: &status,
            health: &health,
            generations: &view.generations,
            peers: &view.peers,
        };
        audit::evidence(host, inputs, window, std::time::SystemTime::now())
    })
    .await?;
    Ok(Json(report))
}

// Changes go to the engine thread, which publishes what they changed before
// it answers: a `status` right after an `apply` shows the new generation.

pub async fn apply(
    State(ctx): State<Ctx>,
    caller: Caller,
    Body(req): Body<ApplyRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    Ok(Json(ctx.engine.call(|r| Command::Apply(req, caller.0.uid, r)).await??))
}

/// Run `action` of `module` on the engine thread for `uid`.
async fn action(
    ctx: &Ctx,
    module: &str,
    action: &str,
    body: serde_json::Value,
    uid: u32,
) -> Result<serde_json::Value, ApiError> {
    let (module, action) = (module.to_owned(), action.to_owned());
    Ok(ctx
        .engine
        .call(|r| Command::Action(module, action, body, uid, r))
        .await??)
}

fn decode<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("unexpected answer from the engine: {e}")))
}

pub async fn add_peer(
    State(ctx): State<Ctx>,
    caller: Caller,
    Body(req): Body<AddPeerRequest>,
) -> Result<Json<AddPeerResponse>, ApiError> {
    let body = serde_json::to_value(req).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(decode(
        action(&ctx, "wireguard", "add-peer", body, caller.0.uid).await?,
    )?))
}

pub async fn remove_peer(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PeerInfo>, ApiError> {
    let body = serde_json::json!({ "name": name });
    Ok(Json(decode(
        action(&ctx, "wireguard", "remove-peer", body, caller.0.uid).await?,
    )?))
}

/// An empty body confirms whatever is pending; `{"generation": N}` only N.
pub async fn confirm(
    State(ctx): State<Ctx>,
    caller: Caller,
    Body(req): Body<ConfirmRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    Ok(Json(
        ctx.engine
            .call(|r| Command::Confirm(caller.0.uid, req.generation, r))
            .await??,
    ))
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

/// `GET|POST /v1/modules/{module}/{action}`: a module's own command. The
/// caller's role was checked against Read by the router; an action that
/// needs more is refused here, from the module's own table, without a trip
/// to the engine thread, and audited like every refusal.
pub async fn module_action(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path((module, name)): Path<(String, String)>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(needs) = ctx.view.action_role(&module, &name) else {
        return Err(ApiError::NoRoute(format!("{module} {name}")));
    };
    if needs == ActionRole::Admin && ctx.policy.role(&caller.0) < Role::Admin {
        let needed = "root or group bulwark-admin";
        let what = format!("run {module} {name}");
        ctx.refusals.refused(caller.0.uid, &format!("{what} needs {needed}"));
        return Err(ApiError::Forbidden {
            uid: caller.0.uid,
            action: what,
            needs: needed,
        });
    }
    let Body(body) = Body::<serde_json::Value>::from_request(req, &()).await?;
    Ok(Json(action(&ctx, &module, &name, body, caller.0.uid).await?))
}
