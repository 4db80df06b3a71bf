//! Exit codes and how errors reach the operator and scripts.
//!
//! Exit codes are part of the interface (README.md, "Exit codes", and
//! `bulwarkctl --help`): one per class of failure, so a script or a fleet
//! tool can tell "fix the profile" from "try again" from "someone else holds
//! the confirm window" without reading messages. With `--json` every
//! failure also prints an [`ErrorBody`] on stdout whose `kind` names it.
//! The mapping from error to code and kind lives here alone.

use std::io::{self, Write};

use bulwark_model::api::{ErrorBody, Health};
use bulwark_model::text::escape;
use bulwark_model::ProfileError;

use crate::client::ClientError;

/// Success.
pub const OK: u8 = 0;
/// The change failed (what was kept is in the message), a check failed
/// (a broken audit chain, files `ima scan` finds), or anything not classed
/// below.
pub const FAILED: u8 = 1;
/// Usage error (clap's own code).
pub const USAGE: u8 = 2;
/// The daemon could not be reached: nothing was sent, nothing happened.
pub const UNREACHABLE: u8 = 3;
/// What was sent is not acceptable: an invalid profile, an unreadable or
/// oversized file, a request the daemon refused as malformed.
pub const INVALID: u8 = 4;
/// The caller lacks the group the request needs.
pub const FORBIDDEN: u8 = 5;
/// The host's state refuses it: a confirm window is open, another
/// generation awaits confirmation, nothing to confirm, a name is taken, a
/// module's guard refuses (IMA enforce while files would be denied).
pub const CONFLICT: u8 = 6;
/// No such generation, peer or route.
pub const NOT_FOUND: u8 = 7;
/// The SSH guard refused a profile that would drop this SSH session.
pub const LOCKOUT: u8 = 8;
/// The daemon could not take or finish the request (busy, stopping, the
/// connection broke, an unreadable answer): try again; a change may have
/// taken effect, so read `status` first.
pub const UNAVAILABLE: u8 = 9;
/// `apply --wait`: the change is in force but health stayed CRITICAL.
pub const WAIT_TIMEOUT: u8 = 10;

/// The exit code table for `--help`; README.md has the same.
pub const EXIT_CODES: &str = "\
Exit codes (with --json, stdout holds a JSON body whose `kind` is shown):
   0  success
   1  failed: the change failed, or a check did: a broken audit chain, files
      ima scan finds (apply_failed, state_error, error)
   2  usage error (usage)
   3  daemon unreachable; nothing happened (unreachable)
   4  invalid input: profile, file or request (invalid_profile, bad_input,
      bad_request, too_large)
   5  permission denied (forbidden)
   6  conflict: a confirm window is open, another generation awaits
      confirmation, nothing to confirm, a name is taken, a module's guard
      refuses (conflict)
   7  no such generation or peer (not_found)
   8  refused: the profile would drop this SSH session (ssh_lockout)
   9  unavailable: busy, stopping or the connection broke; a change may
      have taken effect (busy, timeout, engine_stopped, interrupted,
      connection_lost, bad_response)
  10  apply --wait: in force, but health stayed CRITICAL (wait_timeout)
  health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (any failure)";

/// A profile that failed local validation. (A 422 from the daemon stays a
/// `ClientError::Api`; its profile errors print the same way.)
#[derive(Debug, thiserror::Error)]
#[error("{}; nothing was applied", self.summary())]
pub struct InvalidProfile {
    pub file: String,
    pub errors: Vec<ProfileError>,
}

impl InvalidProfile {
    /// `FILE is not a valid profile (N errors)`.
    pub fn summary(&self) -> String {
        let n = self.errors.len();
        format!(
            "{} is not a valid profile ({n} error{})",
            self.file,
            if n == 1 { "" } else { "s" }
        )
    }

    /// The body the daemon answers with for this profile, for `--json`.
    pub fn body(&self, error: String) -> ErrorBody {
        ErrorBody {
            kind: "invalid_profile".to_owned(),
            error,
            profile_errors: self.errors.clone(),
        }
    }
}

/// Failures of bulwarkctl's own, before a request or after its answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot read profile {name}")]
    ReadProfile {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{name} is {size} bytes; bulwarkd accepts profiles up to {max} bytes")]
    TooLarge { name: String, size: usize, max: usize },
    /// The SSH guard's refusal, with the fix.
    #[error("{0}")]
    SshLockout(String),
    /// `apply --wait` ran out of time; the apply itself succeeded.
    #[error(
        "generation {} is in force but health is still CRITICAL after {secs}s: {critical}{}",
        generation.map_or_else(|| "?".to_owned(), |g| g.to_string()),
        if *pending { "; it reverts when its confirm window closes unless confirmed" } else { "" }
    )]
    WaitTimeout {
        generation: Option<u64>,
        secs: u64,
        /// The CRITICAL checks, `name: reason; ...`.
        critical: String,
        pending: bool,
        /// The apply's answer and the last health seen, for `--json`.
        apply: serde_json::Value,
        health: Option<Health>,
    },
}

/// Whether the error is only a closed stdout (`bulwarkctl ... | head`),
/// which is how pipelines end and not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The `kind` and exit code of an error of any command but `health`.
pub fn classify(err: &anyhow::Error) -> (String, u8) {
    if let Some(e) = err.downcast_ref::<ClientError>() {
        return match e {
            ClientError::Api { status, body, .. } => (body.kind.clone(), api_code(*status)),
            ClientError::Unreachable { .. } => ("unreachable".to_owned(), UNREACHABLE),
            ClientError::Transport { .. } => ("connection_lost".to_owned(), UNAVAILABLE),
            ClientError::BadResponse { .. } => ("bad_response".to_owned(), UNAVAILABLE),
            ClientError::Setup(_) => ("error".to_owned(), FAILED),
        };
    }
    if err.downcast_ref::<InvalidProfile>().is_some() {
        return ("invalid_profile".to_owned(), INVALID);
    }
    let (kind, code) = match err.downcast_ref::<CtlError>() {
        Some(CtlError::ReadProfile { .. }) => ("bad_input", INVALID),
        Some(CtlError::TooLarge { .. }) => ("too_large", INVALID),
        Some(CtlError::SshLockout(_)) => ("ssh_lockout", LOCKOUT),
        Some(CtlError::WaitTimeout { .. }) => ("wait_timeout", WAIT_TIMEOUT),
        None => ("error", FAILED),
    };
    (kind.to_owned(), code)
}

/// The class of a daemon's error answer, by its HTTP status (the daemon
/// maps each `kind` to one status: docs/api.md, "Errors").
fn api_code(status: u16) -> u8 {
    match status {
        400 | 413 | 422 => INVALID,
        403 => FORBIDDEN,
        404 => NOT_FOUND,
        409 => CONFLICT,
        408 | 503 => UNAVAILABLE,
        _ => FAILED,
    }
}

/// Exit code for an error of any command but `health`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        OK
    } else {
        classify(err).1
    }
}

/// Exit code for an error of `health`: anything that keeps the level from
/// being known is UNKNOWN, in the monitoring plug-in convention.
pub fn health_exit_code(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        OK
    } else {
        UNREACHABLE
    }
}

/// The message with its causes, as one line.
fn message(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    escape(&text).into_owned()
}

/// The JSON body `--json` prints for `err`: the daemon's own answer when it
/// sent one, else an [`ErrorBody`] of the same shape.
pub fn json_body(err: &anyhow::Error) -> String {
    if let Some(ClientError::Api { raw: Some(raw), .. }) = err.downcast_ref::<ClientError>() {
        return raw.clone();
    }
    let (kind, _) = classify(err);
    let body = match err.downcast_ref::<InvalidProfile>() {
        Some(inv) => inv.body(inv.to_string()),
        None => ErrorBody {
            kind,
            error: message(err),
            profile_errors: match err.downcast_ref::<ClientError>() {
                Some(ClientError::Api { body, .. }) => body.profile_errors.clone(),
                _ => Vec::new(),
            },
        },
    };
    let mut value = serde_json::to_value(&body).unwrap_or_default();
    if let (Some(CtlError::WaitTimeout { apply, health, .. }), Some(map)) =
        (err.downcast_ref::<CtlError>(), value.as_object_mut())
    {
        map.insert("apply".to_owned(), apply.clone());
        map.insert("health".to_owned(), serde_json::to_value(health).unwrap_or_default());
    }
    serde_json::to_string_pretty(&value).map_or_else(|_| String::new(), |t| t + "\n")
}

/// Print `err` to stderr: profile errors one per line first, then
/// `bulwarkctl: error: <message>` and one `caused by:` line per cause. With
/// `--json` a JSON body naming the error's `kind` also goes to stdout, so a
/// script reading stdout always gets JSON, whatever went wrong.
pub fn report(err: &anyhow::Error, json: bool) {
    if is_broken_pipe(err) {
        return;
    }
    let profile_errors = if let Some(inv) = err.downcast_ref::<InvalidProfile>() {
        inv.errors.as_slice()
    } else if let Some(ClientError::Api { body, .. }) = err.downcast_ref::<ClientError>() {
        body.profile_errors.as_slice()
    } else {
        &[][..]
    };
    if json {
        // Nothing sensible is left to do if stdout is gone.
        let _ = io::stdout().write_all(json_body(err).as_bytes());
    }
    // Messages quote the daemon and the caller's input: one line each, no
    // terminal controls.
    let mut text = String::new();
    for e in profile_errors {
        text.push_str(&format!("{}\n", escape(&e.to_string())));
    }
    text.push_str(&format!("bulwarkctl: error: {}\n", escape(&err.to_string())));
    for cause in err.chain().skip(1) {
        text.push_str(&format!("  caused by: {}\n", escape(&cause.to_string())));
    }
    let _ = io::stderr().write_all(text.as_bytes());
}

/// A usage error with `--json`: the same body shape on stdout, before clap
/// prints its own message on stderr and exits 2.
pub fn usage_json(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("usage error");
    let first = first.trim().trim_start_matches("error: ");
    let body = ErrorBody {
        kind: "usage".to_owned(),
        error: escape(first).into_owned(),
        profile_errors: Vec::new(),
    };
    serde_json::to_string_pretty(&body).map_or_else(|_| String::new(), |t| t + "\n")
}

/// Print a warning to stderr.
pub fn warn(msg: &str) {
    let _ = writeln!(io::stderr(), "bulwarkctl: warning: {msg}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn api(status: u16, kind: &str) -> anyhow::Error {
        let body = ErrorBody {
            kind: kind.into(),
            error: "nope".into(),
            profile_errors: vec![],
        };
        ClientError::Api {
            status,
            body,
            raw: None,
        }
        .into()
    }

    fn unreachable() -> anyhow::Error {
        ClientError::Unreachable {
            socket: "/s".into(),
            cause: "refused".into(),
            kind: None,
        }
        .into()
    }

    fn body(err: &anyhow::Error) -> serde_json::Value {
        serde_json::from_str(&json_body(err)).unwrap()
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(&unreachable()), 3);
        assert_eq!(exit_code(&unreachable().context("reading status")), 3);
        for (status, kind, code) in [
            (400, "bad_request", INVALID),
            (403, "forbidden", FORBIDDEN),
            (404, "not_found", NOT_FOUND),
            (408, "timeout", UNAVAILABLE),
            (409, "conflict", CONFLICT),
            (413, "too_large", INVALID),
            (422, "invalid_profile", INVALID),
            (500, "apply_failed", FAILED),
            (500, "state_error", FAILED),
            (502, "bad_gateway", FAILED),
            (503, "busy", UNAVAILABLE),
            (503, "engine_stopped", UNAVAILABLE),
        ] {
            let err = api(status, kind);
            assert_eq!(classify(&err), (kind.to_owned(), code), "{status}");
        }
        let invalid = InvalidProfile {
            file: "p.toml".into(),
            errors: vec![],
        };
        assert_eq!(exit_code(&invalid.into()), INVALID);
        assert_eq!(exit_code(&CtlError::SshLockout("x".into()).into()), LOCKOUT);
        let big = CtlError::TooLarge {
            name: "p".into(),
            size: 2,
            max: 1,
        };
        assert_eq!(classify(&big.into()), ("too_large".to_owned(), INVALID));
        assert_eq!(exit_code(&anyhow::anyhow!("refused")), 1);
    }

    #[test]
    fn every_code_is_in_the_help_table_once() {
        for code in [
            OK,
            FAILED,
            USAGE,
            UNREACHABLE,
            INVALID,
            FORBIDDEN,
            CONFLICT,
            NOT_FOUND,
            LOCKOUT,
            UNAVAILABLE,
            WAIT_TIMEOUT,
        ] {
            let row = format!("\n  {code:>2}  ");
            assert_eq!(EXIT_CODES.matches(&row).count(), 1, "code {code}");
        }
    }

    #[test]
    fn local_errors_have_a_json_body_with_their_kind() {
        let lockout = anyhow::Error::from(CtlError::SshLockout("would drop \u{1b}x".into()));
        let b = body(&lockout);
        assert_eq!(b["kind"], "ssh_lockout");
        assert_eq!(b["error"], "would drop \\x1bx");
        assert_eq!(b["profile_errors"], serde_json::json!([]));
        let b = body(&unreachable().context("reading status"));
        assert_eq!(b["kind"], "unreachable");
        assert!(b["error"]
            .as_str()
            .unwrap()
            .starts_with("reading status: daemon unreachable"));
        let read = CtlError::ReadProfile {
            name: "p.toml".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(body(&read.into())["kind"], "bad_input");
        let wait = CtlError::WaitTimeout {
            generation: Some(4),
            secs: 5,
            critical: "k3s: exposed".into(),
            pending: true,
            apply: serde_json::json!({"generation": 4}),
            health: None,
        };
        let b = body(&wait.into());
        assert_eq!(b["kind"], "wait_timeout");
        assert_eq!(b["apply"]["generation"], 4);
        assert!(b["error"].as_str().unwrap().contains("reverts"), "{b}");
    }

    #[test]
    fn the_daemons_own_body_is_passed_on() {
        let err: anyhow::Error = ClientError::Api {
            status: 409,
            body: ErrorBody::default(),
            raw: Some("{\n  \"kind\": \"conflict\"\n}\n".into()),
        }
        .into();
        assert_eq!(json_body(&err), "{\n  \"kind\": \"conflict\"\n}\n");
    }

    #[test]
    fn broken_pipe_is_success() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing output");
        assert_eq!(exit_code(&err), 0);
        assert_eq!(health_exit_code(&err), 0);
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(exit_code(&other), 1);
    }

    #[test]
    fn health_errors_are_unknown() {
        assert_eq!(health_exit_code(&unreachable()), 3);
        assert_eq!(health_exit_code(&api(403, "forbidden")), 3);
        let bad = serde_json::from_str::<u8>("x").unwrap_err();
        let bad = ClientError::BadResponse {
            method: "GET",
            path: "/v1/health".into(),
            source: bad,
        };
        assert_eq!(health_exit_code(&bad.into()), 3);
    }

    #[test]
    fn invalid_profile_message_counts_errors() {
        let e = ProfileError {
            file: "p.toml".into(),
            path: "firewall.x".into(),
            reason: "unknown key".into(),
        };
        let one = InvalidProfile {
            file: "p.toml".into(),
            errors: vec![e.clone()],
        };
        assert_eq!(
            one.to_string(),
            "p.toml is not a valid profile (1 error); nothing was applied"
        );
        let two = InvalidProfile {
            file: "p.toml".into(),
            errors: vec![e.clone(), e],
        };
        assert!(two.to_string().contains("(2 errors)"));
        assert_eq!(two.body(two.summary()).kind, "invalid_profile");
    }
}
