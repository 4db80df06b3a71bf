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
use reqwest::blocking::{Client as Http, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Host part of request URLs; with a Unix socket it only fills the Host header.
const BASE: &str = "http://localhost";
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

    #[error("cannot set up the HTTP client")]
    Setup(#[source] reqwest::Error),
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

pub struct Client {
    http: Http,
    socket: PathBuf,
    verbose: bool,
}

impl Client {
    pub fn new(socket: &Path, verbose: bool) -> Result<Client, ClientError> {
        // reqwest is built without a TLS provider of its own (bulwarkd pins
        // ring for its Vault client) and needs one installed, even unused.
        // Err means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Http::builder()
            .unix_socket(socket.to_path_buf())
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("bulwarkctl/", env!("CARGO_PKG_VERSION")))
            // A Unix socket: no TLS, so no system certificates to load (a
            // host without ca-certificates must still run bulwarkctl).
            .tls_certs_only(std::iter::empty())
            .build()
            .map_err(ClientError::Setup)?;
        Ok(Client {
            http,
            socket: socket.to_path_buf(),
            verbose,
        })
    }

    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.send("GET", path, self.http.get(url(path)))
    }

    /// POST `body` as JSON, or an empty body when `None`.
    pub fn post<B: Serialize>(&self, path: &str, body: Option<&B>) -> Result<Answer, ClientError> {
        let mut req = self.http.post(url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send("POST", path, req)
    }

    pub fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.send("DELETE", path, self.http.delete(url(path)))
    }

    fn send(&self, method: &'static str, path: &str, req: RequestBuilder) -> Result<Answer, ClientError> {
        self.trace(format_args!("{method} {path} via {}", self.socket.display()));
        let resp = req.send().map_err(|e| self.transport_error(method, path, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| self.transport_error(method, path, &e))?;
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

    fn transport_error(&self, method: &'static str, path: &str, e: &reqwest::Error) -> ClientError {
        if self.verbose {
            let mut chain = String::new();
            let mut cur: Option<&dyn std::error::Error> = Some(e);
            while let Some(err) = cur {
                chain.push_str(&format!("\n  {err}"));
                cur = err.source();
            }
            self.trace(format_args!("{method} {path} failed:{chain}"));
        }
        let (cause, kind) = root_cause(e);
        if e.is_connect() {
            ClientError::Unreachable {
                socket: self.socket.clone(),
                cause,
                kind,
            }
        } else {
            ClientError::Transport {
                socket: self.socket.clone(),
                method,
                path: path.to_owned(),
                cause,
            }
        }
    }

    fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.verbose {
            // Tracing must never fail the command, so a closed stderr is ignored.
            let _ = writeln!(std::io::stderr(), "bulwarkctl: {what}");
        }
    }
}

fn url(path: &str) -> String {
    format!("{BASE}{path}")
}

/// The innermost error says what actually happened ("No such file or
/// directory"); reqwest's outer layers only say that a request failed.
fn root_cause(e: &reqwest::Error) -> (String, Option<std::io::ErrorKind>) {
    let mut last: &dyn std::error::Error = e;
    let mut kind = None;
    while let Some(next) = last.source() {
        last = next;
        if let Some(io) = last.downcast_ref::<std::io::Error>() {
            kind = Some(io.kind());
        }
    }
    if e.is_timeout() {
        return (format!("timed out ({last})"), kind);
    }
    (last.to_string(), kind)
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
}
