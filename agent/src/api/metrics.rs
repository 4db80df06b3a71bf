//! `GET /v1/metrics` on the Unix socket, and the optional TCP listener for
//! Prometheus (`[monitoring] listen`), which serves `GET /metrics` and nothing
//! else. Validation allows that listener only on loopback or the VPN address.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::view::View;

/// OpenMetrics 1.0, which prometheus-client writes and Prometheus asks for.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format, for clients that do not ask for OpenMetrics.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapers are few; more connections than this are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// Hard cap on one connection's life.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// OpenMetrics when the client accepts it (Prometheus does), else the
/// classic text format, which curl users and `promtool check metrics` read.
/// The check gauges come from a view taken for the scrape (see
/// [`super::view`]).
pub async fn metrics(State(view): State<View>, headers: HeaderMap) -> impl IntoResponse {
    let m = view.scrape().await;
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode())
    } else {
        ([(header::CONTENT_TYPE, CONTENT_TYPE_TEXT)], m.encode_text())
    }
}

/// The router of the TCP listener: `GET /metrics` only.
pub fn tcp_router(view: View) -> Router {
    Router::new().route("/metrics", get(self::metrics)).with_state(view)
}

/// Serve `GET /metrics` on `addr` until `shutdown` completes. Binding fails
/// when `addr` does not exist on this host (yet): the caller decides whether
/// to retry.
pub async fn serve_tcp(addr: SocketAddr, view: View, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    log::info!(addr:display = addr; "serving Prometheus metrics");
    let app = tcp_router(view);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!(error:display = e; "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::warn!(limit = MAX_CONNECTIONS; "metrics listener: connection limit reached; closing a new connection");
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            super::serve_connection(stream, app, CONNECTION_TIMEOUT).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_listener_serves_metrics_only() {
        let metrics = Arc::new(crate::health::Metrics::new());
        metrics.set_generation(3);
        // Find a free port, then hand it to serve_tcp.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let published = tokio::sync::watch::channel(Arc::default()).1;
        let engine = crate::converge::task::EngineHandle::detached();
        let view = View::start(crate::host::Host::new("/"), engine, published, metrics).await;
        let server = tokio::spawn(serve_tcp(addr, view, async {
            let _ = stopped.await;
        }));
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(up, "listener did not come up");
        let ok = tokio::task::spawn_blocking(move || {
            (
                get(
                    addr,
                    "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
                ),
                get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                get(addr, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                get(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            )
        })
        .await
        .unwrap();
        assert!(ok.0.starts_with("HTTP/1.1 200"), "{}", ok.0);
        assert!(
            ok.0.to_lowercase().contains(&format!("content-type: {CONTENT_TYPE}")),
            "{}",
            ok.0
        );
        assert!(ok.0.contains("bulwark_generation 3"), "{}", ok.0);
        assert!(ok.0.ends_with("# EOF\n"), "{}", ok.0);
        assert!(
            ok.1.to_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE_TEXT}")),
            "{}",
            ok.1
        );
        assert!(!ok.1.contains("# EOF"), "{}", ok.1);
        assert!(ok.2.starts_with("HTTP/1.1 404"), "{}", ok.2);
        assert!(ok.3.starts_with("HTTP/1.1 405"), "{}", ok.3);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
