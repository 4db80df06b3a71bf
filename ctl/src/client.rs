//! HTTP/JSON client for bulwarkd's Unix socket.
//!
//! Responses come back as raw JSON values so `--json` can print exactly what
//! the daemon sent, fields this version does not know included; callers decode
//! the typed view with [`decode`]. Failures are sorted by what they mean to
//! the operator: the daemon could not be reached (nothing happened), the
//! connection broke mid-request (something may have happened), or the daemon
//! answered with an error body.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_model::api::ErrorBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

/// Long enough for an apply that reloads a large ruleset, short enough that a
/// hung daemon does not hang a monitoring check forever.
const TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed: the request was never sent.
    #[error("daemon unreachable at {}: {cause}{}", socket.display(), hint(*kind))]
    Unreachable {
        socket: PathBuf,
        cause: String,
        kind: Option<std::io::ErrorKind>,
    },

    /// The connection broke after the request was sent, or timed out.
    #[error(
        "lost the connection to bulwarkd at {} during {method} {path}: {cause}{}",
        socket.display(),
        // A change may have gone through before the connection broke.
        if *method == "GET" { "" } else { "; it may have taken effect, check `bulwarkctl status`" }
    )]
    Transport {
        socket: PathBuf,
        method: &'static str,
        path: String,
        cause: String,
    },

    /// The daemon answered with a non-2xx status.
    #[error("bulwarkd {} ({status} {}): {}", if *status >= 500 { "failed" } else { "refused the request" }, body.kind, body.error)]
    Api {
        status: u16,
        body: ErrorBody,
        /// The body re-indented, when it was JSON (for `--json`).
        raw: Option<String>,
    },

    /// The daemon answered 2xx with a body this version cannot read.
    #[error("unreadable answer from bulwarkd to {method} {path}")]
    BadResponse {
        method: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },

    /// Nothing was sent.
    #[error("cannot set up the request: {0}")]
    Setup(String),
}

fn hint(kind: Option<std::io::ErrorKind>) -> &'static str {
    use std::io::ErrorKind as K;
    match kind {
        Some(K::NotFound | K::ConnectionRefused) => {
            "; is bulwarkd running? (--socket or BULWARK_SOCKET selects another socket)"
        }
        Some(K::PermissionDenied) => "; run as root or as a member of group bulwark",
        _ => "",
    }
}

/// One HTTP/1.1 request per connection, driven on the calling thread: a
/// command makes one or two requests, so neither a pool nor a runtime
/// thread of its own would pay for its start-up.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    socket: PathBuf,
    verbose: bool,
}

impl Client {
    pub fn new(socket: &Path, verbose: bool) -> Result<Client, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ClientError::Setup(format!("no runtime: {e}")))?;
        Ok(Client {
            runtime,
            socket: socket.to_path_buf(),
            verbose,
        })
    }

    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send("GET", path, None)
    }

    /// POST `body` as JSON, or an empty body when `None`.
    pub fn post<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<Answer, ClientError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Setup(format!("cannot encode the body: {e}")))?;
        self.send("POST", path, body)
    }

    pub fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.send("DELETE", path, None)
    }

    fn send(&self, method: &'static str, path: &str, body: Option<Vec<u8>>) -> Result<Answer, ClientError> {
        self.trace(format_args!("{method} {path} via {}", self.socket.display()));
        let (status, bytes) = self.runtime.block_on(self.exchange(method, path, body))?;
        self.trace(format_args!("{status} ({} bytes)", bytes.len()));
        if !status.is_success() {
            return Err(api_error(status.as_u16(), status.canonical_reason(), &bytes));
        }
        let answer = Answer {
            method,
            path: path.to_owned(),
            body: bytes.to_vec(),
        };
        // Reject what is not JSON at all here, so even `--json` never passes
        // garbage on as an answer.
        answer.decode::<serde::de::IgnoredAny>()?;
        Ok(answer)
    }

    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.socket)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                self.trace(format_args!("{method} {path} failed: connect: {e}"));
                return Err(ClientError::Unreachable {
                    socket: self.socket.clone(),
                    cause: e.to_string(),
                    kind: Some(e.kind()),
                });
            }
            Err(_) => {
                self.trace(format_args!("{method} {path} failed: connect timed out"));
                return Err(ClientError::Unreachable {
                    socket: self.socket.clone(),
                    cause: format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
                    kind: Some(std::io::ErrorKind::TimedOut),
                });
            }
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            // A Unix socket has no host; HTTP/1.1 still wants the header.
            .header(HOST, "localhost")
            .header(USER_AGENT, concat!("bulwarkctl/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Setup(format!("{method} {path}: {e}")))?;
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            // The connection runs beside the request and ends with it.
            tokio::spawn(connection);
            let response = sender.send_request(request).await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                let causes = causes(&e);
                self.trace(format_args!("{method} {path} failed:\n  {}", causes.join("\n  ")));
                // The innermost cause says what actually happened ("Broken pipe").
                let cause = match causes.as_slice() {
                    [outer, .., inner] => format!("{outer} ({inner})"),
                    _ => e.to_string(),
                };
                Err(self.transport_error(method, path, cause))
            }
            Err(_) => Err(self.transport_error(method, path, format!("timed out after {} s", TIMEOUT.as_secs()))),
        }
    }

    fn transport_error(&self, method: &'static str, path: &str, cause: String) -> ClientError {
        ClientError::Transport {
            socket: self.socket.clone(),
            method,
            path: path.to_owned(),
            cause,
        }
    }

    fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.verbose {
            // Tracing must never fail the command, so a closed stderr is ignored.
            let _ = writeln!(std::io::stderr(), "bulwarkctl: {what}");
        }
    }
}

/// What one path segment or query value may not hold as it is, so that
/// `alice?x` or `a/b` reaches bulwarkd as that one value, not as `alice`
/// or two segments, and `x&until=y` as one parameter.
const NOT_IN_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'/')
    .add(b'?')
    .add(b'%')
    .add(b'&')
    .add(b'=')
    .add(b'+')
    .add(b';');

/// `value` as one path segment or query value, for what the user typed.
pub fn segment(value: &str) -> String {
    utf8_percent_encode(value, NOT_IN_SEGMENT).to_string()
}

/// hyper's error and each of its causes, outermost first.
fn causes(e: &hyper::Error) -> Vec<String> {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect()
}

/// Build the error for a non-2xx answer. A body that is not an [`ErrorBody`]
/// (a proxy, an older daemon) still yields a readable message.
fn api_error(status: u16, reason: Option<&str>, bytes: &[u8]) -> ClientError {
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    let raw = is_json.then(|| pretty_json(bytes));
    let body = serde_json::from_slice::<ErrorBody>(bytes)
        .ok()
        .filter(|b| !b.kind.is_empty() || !b.error.is_empty());
    let body = body.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        ErrorBody {
            kind: reason.unwrap_or("error").to_lowercase().replace(' ', "_"),
            error: if text.is_empty() {
                "no details given".to_owned()
            } else {
                text.chars().take(200).collect()
            },
            profile_errors: Vec::new(),
        }
    });
    ClientError::Api { status, body, raw }
}

/// A 2xx answer: its body is known to be JSON.
#[derive(Debug)]
pub struct Answer {
    method: &'static str,
    path: String,
    body: Vec<u8>,
}

impl Answer {
    /// The typed view of the answer.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::BadResponse {
            method: self.method,
            path: self.path.clone(),
            source,
        })
    }

    /// The answer as the daemon sent it, indented, for `--json`.
    pub fn pretty(&self) -> String {
        pretty_json(&self.body)
    }

    /// The answer (a JSON object) with one more field at its end, indented;
    /// the daemon's fields keep their order.
    pub fn pretty_with<T: Serialize>(&self, key: &str, value: &T) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let inner = text.trim_end().strip_suffix('}').map(str::trim_end);
        match (inner, serde_json::to_string(key), serde_json::to_string(value)) {
            (Some(inner), Ok(key), Ok(value)) => {
                let sep = if inner.trim_start() == "{" { "" } else { "," };
                pretty_json(format!("{inner}{sep}{key}:{value}}}").as_bytes())
            }
            _ => self.pretty(),
        }
    }
}

/// Indent JSON text without parsing it into a map, so the daemon's key order
/// (and any field this version does not know) is kept as sent. The input
/// must be valid JSON; the output matches `serde_json::to_string_pretty`
/// plus a final newline.
pub fn pretty_json(json: &[u8]) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
    let text = String::from_utf8_lossy(json);
    let mut chars = text.chars().peekable();
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                out.push(c);
                if chars.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn api_error_keeps_the_daemons_body() {
        let body = br#"{"kind":"forbidden","error":"uid 1000 is not in group bulwark-admin","profile_errors":[]}"#;
        let err = api_error(403, Some("Forbidden"), body);
        assert_eq!(
            err.to_string(),
            "bulwarkd refused the request (403 forbidden): uid 1000 is not in group bulwark-admin"
        );
        let ClientError::Api { raw, .. } = err else { panic!() };
        assert!(raw.unwrap().starts_with("{\n  \"kind\": \"forbidden\",\n"));
    }

    #[test]
    fn pretty_json_keeps_key_order_and_matches_serde_json() {
        let compact = br#"{"z":1,"a":[],"m":{},"s":"x, y: {\"q\"} \\","l":[1,{"k":null}],"t":true}"#;
        let text = pretty_json(compact);
        assert!(text.starts_with("{\n  \"z\": 1,\n  \"a\": [],\n  \"m\": {},"), "{text}");
        // Same layout as serde_json's own pretty printer, key order aside.
        let value: serde_json::Value = serde_json::from_slice(compact).unwrap();
        let sorted = serde_json::to_vec(&value).unwrap();
        assert_eq!(
            pretty_json(&sorted),
            serde_json::to_string_pretty(&value).unwrap() + "\n"
        );
        // Whitespace already in the answer does not change the result.
        let spaced = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(pretty_json(spaced.as_bytes()), pretty_json(&sorted));
    }

    #[test]
    fn a_field_is_appended_in_order() {
        let answer = |body: &str| Answer {
            method: "POST",
            path: "/v1/apply".into(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            answer("{\"z\":1,\"a\":2}\n").pretty_with("health", &serde_json::json!({"level": "OK"})),
            "{\n  \"z\": 1,\n  \"a\": 2,\n  \"health\": {\n    \"level\": \"OK\"\n  }\n}\n"
        );
        assert_eq!(answer("{}").pretty_with("n", &1), "{\n  \"n\": 1\n}\n");
    }

    #[test]
    fn api_error_without_json_body_is_still_readable() {
        let err = api_error(502, Some("Bad Gateway"), b"upstream down\n");
        assert_eq!(err.to_string(), "bulwarkd failed (502 bad_gateway): upstream down");
        let err = api_error(500, Some("Internal Server Error"), b"");
        assert_eq!(
            err.to_string(),
            "bulwarkd failed (500 internal_server_error): no details given"
        );
    }

    #[test]
    fn unreachable_names_the_socket_and_hints() {
        let err = ClientError::Unreachable {
            socket: "/run/x.sock".into(),
            cause: "No such file or directory (os error 2)".into(),
            kind: Some(std::io::ErrorKind::NotFound),
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("daemon unreachable at /run/x.sock: No such file or directory (os error 2)"),
            "{msg}"
        );
        assert!(msg.contains("is bulwarkd running?"));
    }

    #[test]
    fn connecting_to_a_missing_socket_is_unreachable() {
        let dir = std::env::temp_dir().join(format!("bulwarkctl-test-{}", std::process::id()));
        let client = Client::new(&dir.join("missing.sock"), false).unwrap();
        let err = client.get("/v1/status").unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    }

    /// A listener on a real Unix socket that reads one request head (and
    /// `body_len` body bytes), answers `reply` and closes; returns what it read.
    fn serve_once(reply: &'static [u8], body_len: usize) -> (tempfile::TempDir, std::thread::JoinHandle<String>) {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("d.sock")).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() < head_len(&got) + body_len {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(reply).unwrap();
            String::from_utf8(got).unwrap()
        });
        (dir, server)
    }

    fn head_len(got: &[u8]) -> usize {
        got.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(usize::MAX, |p| p + 4)
    }

    #[test]
    fn a_request_reaches_the_socket_encoded_and_its_answer_comes_back() {
        let (dir, server) = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}",
            "[1,2,3]".len(),
        );
        let client = Client::new(&dir.path().join("d.sock"), false).unwrap();
        let path = format!("/v1/peers/{}", segment("alice laptop#2?x/%"));
        let answer = client.post(&path, Some(&[1, 2, 3])).unwrap();
        assert_eq!(answer.body, br#"{"ok":true}"#);
        let sent = server.join().unwrap();
        let head = sent.to_ascii_lowercase();
        assert!(
            sent.starts_with("POST /v1/peers/alice%20laptop%232%3Fx%2F%25 HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(head.contains("\r\nhost: localhost\r\n"), "{sent}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\n[1,2,3]"), "{sent}");
    }

    #[test]
    fn an_answer_cut_short_is_a_transport_error_and_an_error_status_an_api_error() {
        let (dir, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"ok\"", 0);
        let client = Client::new(&dir.path().join("d.sock"), false).unwrap();
        let err = client.get("/v1/status").unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, ClientError::Transport { .. }), "{err}");
        assert!(err.to_string().contains("GET /v1/status"), "{err}");

        let body = br#"{"kind":"forbidden","error":"no","profile_errors":[]}"#;
        let reply = format!("HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\n\r\n", body.len());
        let reply: &'static [u8] = [reply.as_bytes(), body].concat().leak();
        let (dir, server) = serve_once(reply, 0);
        let client = Client::new(&dir.path().join("d.sock"), false).unwrap();
        let err = client.delete("/v1/peers/x").unwrap_err();
        assert!(server.join().unwrap().starts_with("DELETE /v1/peers/x HTTP/1.1\r\n"));
        assert!(matches!(err, ClientError::Api { status: 403, .. }), "{err}");
    }
}
