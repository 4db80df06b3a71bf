//! Commands that read or change the profile in force: validate, apply,
//! confirm, rollback.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bulwark_model::api::{ApplyRequest, ApplyResponse, ConfirmRequest, Health, Level, RollbackRequest, MAX_BODY_BYTES};
use bulwark_model::profile::ValidationErrors;
use bulwark_model::Profile;

use super::{emit, emit_json, now, Ctx};
use crate::cli::{ApplyArgs, ConfirmArgs, ValidateArgs};
use crate::client::{Answer, Client, ClientError};
use crate::error::{self, CtlError, InvalidProfile, INVALID, OK};
use crate::output::{self, Action};
use crate::ssh_guard::{self, Verdict};

/// How often `apply --wait` asks for health.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// Read a profile from a file or, for `-`, from stdin. It is named by
/// `source` when given, else by the path as the operator typed it (or
/// `stdin`): that name labels validation errors and the generation.
fn read_profile(path: &Path, source: Option<&str>) -> Result<(String, Vec<u8>), CtlError> {
    let stdin = path == Path::new("-");
    let name = match source {
        Some(s) => s.to_owned(),
        None if stdin => "stdin".to_owned(),
        None => path.display().to_string(),
    };
    let read = if stdin {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    match read {
        Ok(bytes) => Ok((name, bytes)),
        Err(source) => Err(CtlError::ReadProfile { name, source }),
    }
}

pub fn validate(ctx: &Ctx<'_>, out: &mut dyn Write, args: &ValidateArgs) -> anyhow::Result<u8> {
    let (name, bytes) = read_profile(&args.file, args.source.as_deref())?;
    match Profile::parse_bytes(&name, &bytes) {
        Ok(profile) if ctx.json => emit_json(out, &profile).map(|()| OK),
        Ok(profile) => {
            emit(out, &format!("{name}: ok (profile {})\n", profile.name))?;
            Ok(OK)
        }
        Err(invalid) => {
            let invalid = InvalidProfile {
                file: invalid.file,
                errors: invalid.errors,
            };
            if ctx.json {
                emit_json(out, &invalid.body(invalid.summary()))?;
            }
            let mut text = String::new();
            for e in &invalid.errors {
                text.push_str(&format!("{e}\n"));
            }
            // The error lines are the whole report; stderr going away is no
            // reason to change the exit code.
            let _ = std::io::stderr().write_all(text.as_bytes());
            Ok(INVALID)
        }
    }
}

pub fn apply(ctx: &Ctx<'_>, out: &mut dyn Write, args: &ApplyArgs) -> anyhow::Result<u8> {
    let (name, bytes) = read_profile(&args.file, args.source.as_deref())?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(CtlError::TooLarge {
            name,
            size: bytes.len(),
            max: MAX_BODY_BYTES,
        }
        .into());
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Err(invalid(ValidationErrors::not_text(&name, e.utf8_error()))),
    };
    let ssh = ssh_guard::ssh_connection();
    // bulwarkd validates every profile it is sent, and its errors print as
    // local ones do, so the profile is parsed here only for the checks that
    // must run on this side: the SSH guard (over SSH) and the IMA enforce
    // pre-flight. Parsing 50,000 networks costs more than the whole no-op
    // apply otherwise does.
    let local = if ssh.is_some() || super::ima::preflight_may_run(&text, args.force) {
        Some(Profile::parse(&name, &text).map_err(invalid)?)
    } else {
        None
    };
    let req = ApplyRequest {
        profile: text,
        source: Some(name.clone()),
        dry_run: args.dry_run,
        confirm_secs: args.confirm,
        force: args.force,
    };
    if let Some(profile) = &local {
        let flags = ssh_guard::Flags {
            force: args.force,
            confirm_secs: args.confirm,
            dry_run: args.dry_run,
        };
        match ssh_guard::decide(ssh.as_deref(), &profile.firewall, flags) {
            Verdict::Proceed => {}
            Verdict::Warn(msg) => error::warn(&msg),
            Verdict::Refuse(msg) => return Err(CtlError::SshLockout(msg).into()),
        }
        super::ima::enforce_preflight(ctx, profile, &req)?;
    }
    let client = ctx.client()?;
    let answer = match client.post("/v1/apply", Some(&req)) {
        Ok(answer) => answer,
        // The same errors whether or not bulwarkd is up.
        Err(e @ ClientError::Unreachable { .. }) if local.is_none() => {
            return Err(Profile::parse(&name, &req.profile).map_or_else(invalid, |_| e.into()))
        }
        Err(ClientError::Api { body, .. }) if body.kind == "invalid_profile" => {
            return Err(InvalidProfile {
                file: name,
                errors: body.profile_errors,
            }
            .into())
        }
        Err(e) => return Err(e.into()),
    };
    let Some(secs) = args.wait else {
        return finish(ctx, out, &answer, Action::Apply);
    };
    let resp: ApplyResponse = answer.decode()?;
    let started = Instant::now();
    let health = wait_not_critical(&client, Duration::from_secs(secs))?;
    if health.level == Level::Critical {
        let critical: Vec<String> = health
            .checks
            .iter()
            .filter(|c| c.level == Level::Critical)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect();
        return Err(CtlError::WaitTimeout {
            generation: resp.generation,
            secs,
            critical: critical.join("; "),
            pending: resp.confirm_deadline.is_some(),
            apply: answer.decode()?,
            health: Some(health),
        }
        .into());
    }
    if ctx.json {
        emit(out, &answer.pretty_with("health", &health))?;
    } else {
        emit(out, &output::outcome(&resp, Action::Apply, now()))?;
        let waited = started.elapsed().as_secs_f64();
        emit(out, &format!("health {} after {waited:.1}s\n", health.level))?;
    }
    Ok(OK)
}

fn invalid(v: ValidationErrors) -> anyhow::Error {
    InvalidProfile {
        file: v.file,
        errors: v.errors,
    }
    .into()
}

/// Poll health until it is not CRITICAL or `limit` has passed; returns the
/// last answer either way.
fn wait_not_critical(client: &Client, limit: Duration) -> anyhow::Result<Health> {
    let deadline = Instant::now() + limit;
    loop {
        let health: Health = client.get("/v1/health")?.decode()?;
        if health.level != Level::Critical || Instant::now() >= deadline {
            return Ok(health);
        }
        std::thread::sleep(WAIT_POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

pub fn confirm(ctx: &Ctx<'_>, out: &mut dyn Write, args: &ConfirmArgs) -> anyhow::Result<u8> {
    let req = ConfirmRequest {
        generation: args.generation,
    };
    let answer = ctx.client()?.post("/v1/confirm", Some(&req))?;
    finish(ctx, out, &answer, Action::Confirm)
}

pub fn rollback(ctx: &Ctx<'_>, out: &mut dyn Write, generation: Option<u64>) -> anyhow::Result<u8> {
    let answer = ctx
        .client()?
        .post("/v1/rollback", Some(&RollbackRequest { generation }))?;
    finish(ctx, out, &answer, Action::Rollback)
}

/// Print an [`ApplyResponse`]: as sent with `--json`, else plan and summary.
fn finish(ctx: &Ctx<'_>, out: &mut dyn Write, answer: &Answer, action: Action) -> anyhow::Result<u8> {
    let resp: ApplyResponse = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(out, &output::outcome(&resp, action, now()))?;
    }
    Ok(OK)
}
