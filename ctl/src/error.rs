//! Exit codes and how errors reach the operator.
//!
//! Exit codes are part of the interface (README.md, "Exit codes") and scripts depend
//! on them, so the mapping from error to code lives in one place.

use std::io::{self, Write};

use bulwark_model::api::ErrorBody;
use bulwark_model::text::escape;
use bulwark_model::ProfileError;

use crate::client::ClientError;

/// Success.
pub const OK: u8 = 0;
/// Refused or failed: invalid profile, apply failed, 403, broken audit chain.
pub const FAILED: u8 = 1;
/// Daemon unreachable (and, for `health`, any answer that cannot be read).
pub const UNREACHABLE: u8 = 3;
// 2 (usage error) is produced by clap itself.

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

/// Whether the error is only a closed stdout (`bulwarkctl ... | head`),
/// which is how pipelines end and not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Exit code for an error of any command but `health`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        OK
    } else if err
        .downcast_ref::<ClientError>()
        .is_some_and(ClientError::is_unreachable)
    {
        UNREACHABLE
    } else {
        FAILED
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

/// Print `err` to stderr: profile errors one per line first, then
/// `bulwarkctl: error: <message>` and one `caused by:` line per cause. With
/// `--json` the daemon's error body also goes to stdout, so scripts reading
/// stdout see the API's answer whatever it was.
pub fn report(err: &anyhow::Error, json: bool) {
    if is_broken_pipe(err) {
        return;
    }
    let (profile_errors, body) = if let Some(inv) = err.downcast_ref::<InvalidProfile>() {
        (
            inv.errors.as_slice(),
            serde_json::to_string_pretty(&inv.body(inv.to_string()))
                .ok()
                .map(|t| t + "\n"),
        )
    } else if let Some(ClientError::Api { body, raw, .. }) = err.downcast_ref::<ClientError>() {
        (body.profile_errors.as_slice(), raw.clone())
    } else {
        (&[][..], None)
    };
    if json {
        if let Some(body) = body {
            // Nothing sensible is left to do if stdout is gone.
            let _ = io::stdout().write_all(body.as_bytes());
        }
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

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(&unreachable()), 3);
        assert_eq!(exit_code(&unreachable().context("reading status")), 3);
        for (status, kind) in [
            (403, "forbidden"),
            (409, "conflict"),
            (422, "invalid_profile"),
            (500, "apply_failed"),
        ] {
            assert_eq!(exit_code(&api(status, kind)), 1, "{status}");
        }
        let invalid = InvalidProfile {
            file: "p.toml".into(),
            errors: vec![],
        };
        assert_eq!(exit_code(&invalid.into()), 1);
        assert_eq!(exit_code(&anyhow::anyhow!("refused")), 1);
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
