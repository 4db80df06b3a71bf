//! The HTTP/1.1 + JSON API on a Unix socket.
//!
//! Each connection is served by hyper with its peer's credentials attached;
//! a middleware authorises every request from them. Connections and requests
//! are charged to per-caller budgets ([`limits`]) and wait rather than fail;
//! headers must arrive in time, bodies within one total deadline and a size
//! limit. Reads are answered from the state the engine publishes ([`view`]),
//! refusals without the engine at all ([`refusals`]), and the audit log is
//! read on blocking threads beside its writer.

mod error;
pub mod limits;
pub mod metrics;
mod peer;
pub mod refusals;
mod routes;
mod throttle;
pub mod view;

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
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::converge::task::EngineHandle;
use crate::host::Host;
pub use error::ApiError;
use limits::{Closed, Limits};
pub use peer::{Peer, Policy, Role};
use refusals::Refusals;
use throttle::Throttle;
use view::View;

/// Time for a client to send its request headers (also bounds idle keep-alive).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a client to send its whole request body, however it trickles in.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(30);
/// Hard cap on one connection's life, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(600);
/// Audit reads (tail, verify) running at once; more wait their turn.
const AUDIT_READERS: usize = 2;
/// Request log lines per non-admin uid and window; the rest are counted.
const LOG_LINES: u64 = 50;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Shared by all handlers.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub engine: EngineHandle,
    pub policy: Policy,
    pub host: Host,
    /// What the engine publishes, with the resource checks: reads never
    /// queue behind the engine.
    pub view: View,
    pub refusals: Arc<Refusals>,
    /// Turns for reading the audit log off the engine thread.
    pub audit_readers: Arc<Semaphore>,
    /// The request log lines of callers who are not admins.
    pub request_lines: Arc<Throttle>,
}

impl Ctx {
    /// Also starts the tasks that flush throttled counts (current runtime).
    pub fn new(engine: EngineHandle, policy: Policy, host: Host, view: View) -> Ctx {
        let request_lines = Arc::new(Throttle::new(LOG_WINDOW, LOG_LINES));
        tokio::spawn(report_unlogged(request_lines.clone()));
        Ctx {
            refusals: Refusals::start(engine.clone()),
            engine,
            policy,
            host,
            view,
            audit_readers: Arc::new(Semaphore::new(AUDIT_READERS)),
            request_lines,
        }
    }
}

impl axum::extract::FromRef<Ctx> for View {
    fn from_ref(ctx: &Ctx) -> View {
        ctx.view.clone()
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
        .route("/generations/{number}", get(routes::generation))
        .route("/audit", get(routes::audit_tail))
        .route("/audit/verify", get(routes::audit_verify))
        .route("/metrics", get(metrics::metrics))
        .route("/peers", get(routes::peers))
        .route("/evidence", get(routes::evidence))
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
        .layer(middleware::from_fn(take_turn))
        .layer(middleware::from_fn_with_state(ctx.clone(), log_request))
        .with_state(ctx)
}

/// Refusals are answered here, at once; their audit events are rate-limited.
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
    ctx.refusals.refused(caller.0.uid, &format!("{action} needs {needed}"));
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

/// One log line per request: method, path, caller, status. A caller who is
/// not an admin gets [`LOG_LINES`] per [`LOG_WINDOW`] and a count of the
/// rest, so no local user can flood the journal: past its own rate limit,
/// journald would drop bulwarkd's lines, the audit events' copies among them.
async fn log_request(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let peer = req.extensions().get::<Peer>().cloned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let uid = peer.as_ref().map_or(-1, |p| i64::from(p.uid));
    let logged = match &peer {
        Some(p) if ctx.policy.role(p) != Role::Admin => {
            ctx.request_lines.pass(p.uid, &format!("{method} {path} {status}"))
        }
        _ => true,
    };
    if logged {
        log::info!(method:display = method, path:display = path, uid, status; "request");
    }
    response
}

/// Say how many request lines each throttled caller did not get logged.
async fn report_unlogged(lines: Arc<Throttle>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for held in lines.flush(std::time::Instant::now()) {
            log::info!(uid = held.uid, unlogged = held.count, last:display = held.last;
                "{} more request(s) of uid {} in the last {}s not logged one by one",
                held.count, held.uid, lines.interval().as_secs());
        }
    }
}

/// Serve `app` on `listener` until the process ends. Each connection is
/// charged to its caller's budget (see [`limits`]) and served on its own
/// task; its requests take turns from that budget.
pub async fn serve(listener: UnixListener, app: Router, policy: Policy) {
    limits::raise_file_limit();
    let limits = Limits::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!(error:display = e; "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = match Peer::of(&stream) {
            Ok(p) => p,
            Err(e) => {
                log::warn!(error:display = e; "cannot read peer credentials; closing connection");
                continue;
            }
        };
        let ticket = match limits.admit(peer.uid, policy.role(&peer)) {
            Ok(t) => t,
            Err(why) => {
                if let Some(n) = limits.closed() {
                    let (whose, limit) = match why {
                        Closed::Caller(l) => ("this caller's", l),
                        Closed::Readers(l) => ("all non-admin callers'", l),
                    };
                    log::warn!(uid = peer.uid, closed = n; "closed {n} connection(s) over budget ({whose} limit of {limit} connections; root and admins keep their own)");
                }
                continue;
            }
        };
        let turns = ticket.turns();
        let app = app.clone().map_request(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            req.extensions_mut().insert(turns.clone());
            req
        });
        tokio::spawn(async move {
            serve_connection(stream, app, CONNECTION_TIMEOUT).await;
            drop(ticket);
        });
    }
}

/// Each request waits for a turn of its caller's budget (see [`limits`]).
async fn take_turn(req: Request, next: Next) -> Response {
    let Some(turns) = req.extensions().get::<limits::Turns>().cloned() else {
        return next.run(req).await;
    };
    match turns.take().await {
        Some(_turn) => next.run(req).await,
        None => ApiError::Busy {
            secs: limits::QUEUE_WAIT.as_secs(),
        }
        .into_response(),
    }
}

/// Serve one HTTP/1.1 connection with the header timeout and a cap on its
/// whole life.
pub(crate) async fn serve_connection<I, S>(io: I, app: S, lifetime: Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), hyper_util::service::TowerToHyperService::new(app));
    match tokio::time::timeout(lifetime, conn).await {
        Ok(Err(e)) => log::debug!(error:display = e; "connection ended with an error"),
        Err(_) => log::warn!("connection exceeded {}s; closed", lifetime.as_secs()),
        Ok(Ok(())) => {}
    }
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
