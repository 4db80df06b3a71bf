//! The HTTP/1.1 + JSON API on a Unix socket.
//!
//! Each connection is served by hyper with its peer's credentials attached;
//! a middleware authorises every request from them. Connections are capped,
//! headers and bodies must arrive in time, bodies are bounded.

mod error;
pub mod metrics;
mod peer;
mod routes;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bulwark_model::api::MAX_BODY_BYTES;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::audit::{self, Outcome};
use crate::converge::published::{Published, Reader, PATIENCE};
use crate::converge::task::EngineHandle;
use crate::health::Metrics;
use crate::host::Host;
use bulwark_model::api::Health;
pub use error::ApiError;
pub use peer::{Peer, Policy, Role};

/// Concurrent connections served; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Time for a client to send its request headers (also bounds idle keep-alive).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a client to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Hard cap on one connection's life, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Shared by all handlers.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub engine: EngineHandle,
    /// What the engine publishes: reads never queue behind it.
    pub published: Reader,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    pub host: Host,
}

/// Builds the full health report: the engine's checks plus the resource
/// checks, which read the system (sysinfo) and so run off the engine thread.
/// Every report also refreshes the check gauges of the metrics.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub host: Host,
    pub engine: EngineHandle,
    pub published: Reader,
    pub metrics: Arc<Metrics>,
}

impl Reporter {
    /// The engine's published view, taken after the request arrived when
    /// the engine can refresh it in time.
    pub async fn view(&self) -> Arc<Published> {
        self.engine.fresh(&self.published, PATIENCE).await
    }

    pub async fn health(&self) -> Result<Health, ApiError> {
        let published = self.view().await;
        let mut checks = published.health.checks.clone();
        let k3s = published.status.modules.iter().any(|m| m.module == "k3s" && m.managed);
        let host = self.host.clone();
        let resources = tokio::task::spawn_blocking(move || crate::health::resource_checks(&host, k3s));
        match resources.await {
            Ok(r) => checks.extend(r),
            Err(e) => log::error!(error:display = e; "resource checks failed"),
        }
        self.metrics.set_checks(&checks);
        Ok(Health::from_checks(checks))
    }
}

impl axum::extract::FromRef<Ctx> for Reporter {
    fn from_ref(ctx: &Ctx) -> Reporter {
        Reporter {
            host: ctx.host.clone(),
            engine: ctx.engine.clone(),
            metrics: ctx.metrics.clone(),
            published: ctx.published.clone(),
        }
    }
}

/// The authorised caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Peer);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Peer>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Forbidden {
                uid: u32::MAX,
                action: "call the API".to_owned(),
                needs: "a Unix socket peer",
            })
    }
}

pub fn router(ctx: Ctx) -> Router {
    let read = Router::new()
        .route("/status", get(routes::status))
        .route("/health", get(routes::health))
        .route("/generations", get(routes::generations))
        .route("/audit", get(routes::audit_tail))
        .route("/audit/verify", get(routes::audit_verify))
        .route("/metrics", get(metrics::metrics))
        .route("/peers", get(routes::peers))
        .route_layer(middleware::from_fn_with_state((ctx.clone(), Role::Read), authorize));
    let admin = Router::new()
        .route("/apply", post(routes::apply))
        .route("/confirm", post(routes::confirm))
        .route("/rollback", post(routes::rollback))
        .route("/peers", post(routes::add_peer))
        .route("/peers/{name}", axum::routing::delete(routes::remove_peer))
        .route_layer(middleware::from_fn_with_state((ctx.clone(), Role::Admin), authorize));
    // Module actions: who may call each comes from the module's own table.
    let modules = Router::new()
        .route(
            "/modules/{module}/{action}",
            get(routes::module_action).post(routes::module_action),
        )
        .route_layer(middleware::from_fn_with_state((ctx.clone(), Role::Read), authorize));
    Router::new()
        .route("/version", get(routes::version))
        .nest(bulwark_model::api::API_PREFIX, read.merge(admin).merge(modules))
        .fallback(|req: Request| async move { ApiError::NoRoute(req.uri().path().to_owned()) })
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::BadRequest(format!("{} is not allowed on {}", req.method(), req.uri().path()))
        })
        .layer(middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(middleware::from_fn(log_request))
        .with_state(ctx)
}

async fn authorize(State((ctx, needs)): State<(Ctx, Role)>, caller: Caller, req: Request, next: Next) -> Response {
    let role = ctx.policy.role(&caller.0);
    if role >= needs {
        return next.run(req).await;
    }
    let action = format!("{} {}", req.method(), req.uri().path());
    let needed = if needs == Role::Admin {
        "root or group bulwark-admin"
    } else {
        "group bulwark or bulwark-admin"
    };
    ctx.engine.record(
        &audit::API_REFUSED,
        caller.0.uid,
        Outcome::Refused,
        format!("{action} needs {needed}"),
    );
    ApiError::Forbidden {
        uid: caller.0.uid,
        action,
        needs: needed,
    }
    .into_response()
}

/// Errors that axum's own extractors produce (a bad query string, say) come
/// as plain text; give them the JSON body every error of this API has.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(response.status().is_client_error() || response.status().is_server_error()) || is_json {
        return response;
    }
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let body = bulwark_model::api::ErrorBody {
        kind: if status.is_client_error() {
            "bad_request"
        } else {
            "internal"
        }
        .to_owned(),
        error: String::from_utf8_lossy(&text).trim().to_owned(),
        profile_errors: Vec::new(),
    };
    (status, axum::Json(body)).into_response()
}

/// One log line per request: method, path, caller, status.
async fn log_request(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let uid = req.extensions().get::<Peer>().map_or(-1, |p| i64::from(p.uid));
    let response = next.run(req).await;
    log::info!(method:display = method, path:display = path, uid, status = response.status().as_u16(); "request");
    response
}

/// Serve `app` on `listener` until the process ends.
pub async fn serve(listener: UnixListener, app: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!(error:display = e; "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::warn!(limit = MAX_CONNECTIONS; "connection limit reached; closing a new connection");
            continue;
        };
        let peer = match Peer::of(&stream) {
            Ok(p) => p,
            Err(e) => {
                log::warn!(error:display = e; "cannot read peer credentials; closing connection");
                continue;
            }
        };
        let app = app.clone().map_request(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            req
        });
        spawn_connection(stream, app, slot, CONNECTION_TIMEOUT);
    }
}

/// Serve one HTTP/1.1 connection on its own task, with the header timeout
/// and a cap on its whole life, holding `slot` (its place under the
/// connection limit) until it ends.
pub(crate) fn spawn_connection<I, S>(io: I, app: S, slot: OwnedSemaphorePermit, lifetime: Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tokio::spawn(async move {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), hyper_util::service::TowerToHyperService::new(app));
        match tokio::time::timeout(lifetime, conn).await {
            Ok(Err(e)) => log::debug!(error:display = e; "connection ended with an error"),
            Err(_) => log::warn!("connection exceeded {}s; closed", lifetime.as_secs()),
            Ok(Ok(())) => {}
        }
        drop(slot);
    });
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("socket activation: {0}")]
    Activation(#[source] std::io::Error),
}

/// The listening socket: the one systemd passed (socket activation) or a new
/// one at `path`, mode 0660, group `group`. It is bound under a temporary name
/// with a umask that makes it 0660 from birth, given its group, then renamed
/// into place, so it is never reachable with wider rights.
pub fn listen(path: &Path, policy: Policy) -> Result<std::os::unix::net::UnixListener, SocketError> {
    use std::os::fd::FromRawFd;
    let mut fds = sd_notify::listen_fds().map_err(SocketError::Activation)?;
    if let Some(fd) = fds.next() {
        log::info!(fd; "using the socket passed by systemd");
        #[allow(unsafe_code)]
        // SAFETY: systemd passed this descriptor to us alone (LISTEN_PID matched) and
        // nothing else in the process owns it.
        return Ok(unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) });
    }
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| SocketError::Io { op, path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    // Only a directory created here gets its mode set: an existing one (such
    // as /tmp for `--socket /tmp/x.sock`) is not ours to change.
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io("set mode of", dir))?;
    }
    let tmp = crate::state::tmp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = std::os::unix::net::UnixListener::bind(&tmp);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io("bind", &tmp))?;
    if let Some(gid) = policy.read_gid {
        nix::unistd::chown(&tmp, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| SocketError::Io {
            op: "chown",
            path: tmp.clone(),
            source: e.into(),
        })?;
    }
    if let Some(gid) = policy.admin_gid.filter(|g| Some(*g) != policy.read_gid) {
        // The admin group needs to connect too, without joining the read group:
        // an ACL entry grants it rw, and the mode stays 0660 for everyone else.
        if let Err(e) = xattr::set(&tmp, "system.posix_acl_access", &socket_acl(gid)) {
            log::warn!(error:display = e; "cannot give group {gid} access to the socket (no ACL support?); admins must also be in the read group");
        }
    }
    std::fs::rename(&tmp, path).map_err(io("rename into", path))?;
    Ok(listener)
}

/// A POSIX access ACL (the kernel's xattr format, version 2) granting
/// owner rw, owning group rw, `admin_gid` rw, others nothing.
fn socket_acl(admin_gid: u32) -> Vec<u8> {
    const UNDEFINED: u32 = u32::MAX;
    // (tag, permissions, id), in the tag order the kernel requires.
    let entries: [(u16, u16, u32); 5] = [
        (0x01, 6, UNDEFINED), // user owner
        (0x04, 6, UNDEFINED), // owning group
        (0x08, 6, admin_gid), // named group
        (0x10, 6, UNDEFINED), // mask
        (0x20, 0, UNDEFINED), // other
    ];
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    acl
}
