//! Commands that read or change the profile in force: validate, apply,
//! confirm, rollback.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use bulwark_model::api::{ApplyRequest, ApplyResponse, RollbackRequest, MAX_BODY_BYTES};
use bulwark_model::Profile;

use super::{emit, emit_json, now, Ctx};
use crate::cli::ApplyArgs;
use crate::client::Answer;
use crate::error::{self, InvalidProfile, FAILED, OK};
use crate::output::{self, Action};
use crate::ssh_guard::{self, Verdict};

/// Read a profile file; errors are labelled with the path as the operator
/// typed it, which is also what labels validation errors.
fn read_profile(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read profile {name}"))?;
    Ok((name, bytes))
}

pub fn validate(ctx: &Ctx<'_>, out: &mut dyn Write, file: &Path) -> anyhow::Result<u8> {
    let (name, bytes) = read_profile(file)?;
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
            Ok(FAILED)
        }
    }
}

pub fn apply(ctx: &Ctx<'_>, out: &mut dyn Write, args: &ApplyArgs) -> anyhow::Result<u8> {
    let (name, bytes) = read_profile(&args.file)?;
    // Validate here first: errors then read the same whether or not the
    // daemon is reachable, and the SSH guard needs the parsed profile.
    let profile = Profile::parse_bytes(&name, &bytes).map_err(|v| InvalidProfile {
        file: v.file,
        errors: v.errors,
    })?;
    if bytes.len() > MAX_BODY_BYTES {
        bail!(
            "{name} is {} bytes; bulwarkd accepts profiles up to {MAX_BODY_BYTES} bytes",
            bytes.len()
        );
    }
    let flags = ssh_guard::Flags {
        force: args.force,
        confirm_secs: args.confirm,
        dry_run: args.dry_run,
    };
    match ssh_guard::decide(ssh_guard::ssh_connection().as_deref(), &profile.firewall, flags) {
        Verdict::Proceed => {}
        Verdict::Warn(msg) => error::warn(&msg),
        Verdict::Refuse(msg) => return Err(anyhow!(msg)),
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8"))?;
    let req = ApplyRequest {
        profile: text,
        source: Some(name),
        dry_run: args.dry_run,
        confirm_secs: args.confirm,
        force: args.force,
    };
    super::ima::enforce_preflight(ctx, &profile, &req)?;
    let answer = ctx.client()?.post("/v1/apply", Some(&req))?;
    finish(ctx, out, &answer, Action::Apply)
}

pub fn confirm(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let answer = ctx.client()?.post("/v1/confirm", None::<&()>)?;
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
