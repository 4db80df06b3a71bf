//! Read-only commands: status, health, generations, audit.

use std::io::Write;

use bulwark_model::api::{AuditEvent, GenerationInfo, Health, Status};
use serde::de::DeserializeOwned;

use super::{emit, now, Ctx};
use crate::error::{self, FAILED, OK};
use crate::output;

/// GET `path` and print it: the raw answer with `--json`, else `human` of
/// the typed view. Returns the typed view for the exit code.
fn show<T: DeserializeOwned>(
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
    path: &str,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<T> {
    let answer = ctx.client()?.get(path)?;
    // Decode even for --json: an answer this version cannot read must not
    // pass as success (health turns it into UNKNOWN).
    let typed: T = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(out, &human(&typed))?;
    }
    Ok(typed)
}

pub fn status(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    show(ctx, out, "/v1/status", |s: &Status| output::status(s, now()))?;
    Ok(OK)
}

pub fn generations(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    show(ctx, out, "/v1/generations", |g: &Vec<GenerationInfo>| {
        output::generations(g)
    })?;
    Ok(OK)
}

pub fn audit_tail(ctx: &Ctx<'_>, out: &mut dyn Write, n: u64) -> anyhow::Result<u8> {
    show(ctx, out, &format!("/v1/audit?n={n}"), |e: &Vec<AuditEvent>| {
        output::audit(e)
    })?;
    Ok(OK)
}

pub fn audit_verify(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let verify = show(ctx, out, "/v1/audit/verify", output::audit_verify)?;
    Ok(if verify.ok { OK } else { FAILED })
}

/// `health` reports every failure as UNKNOWN (3), including on the first
/// line of stdout, which is what monitoring systems show.
pub fn health(ctx: &Ctx<'_>, out: &mut dyn Write) -> u8 {
    let result = show(ctx, out, "/v1/health", output::health).and_then(|h: Health| {
        out.flush()?;
        Ok(health_code(&h))
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            let code = error::health_exit_code(&err);
            if code != OK {
                if !ctx.json {
                    let _ = out.write_all(b"overall: UNKNOWN\n").and_then(|()| out.flush());
                }
                error::report(&err, ctx.json);
            }
            code
        }
    }
}

fn health_code(h: &Health) -> u8 {
    u8::try_from(h.level.exit_code()).unwrap_or(error::UNREACHABLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_model::api::{Check, Level};

    #[test]
    fn health_exit_code_is_the_worst_level() {
        let check = |level| Check {
            module: String::new(),
            name: "x".into(),
            level,
            reason: String::new(),
        };
        assert_eq!(health_code(&Health::from_checks(vec![])), 0);
        assert_eq!(
            health_code(&Health::from_checks(vec![check(Level::Ok), check(Level::Warning)])),
            1
        );
        assert_eq!(
            health_code(&Health::from_checks(vec![
                check(Level::Critical),
                check(Level::Warning)
            ])),
            2
        );
        assert_eq!(
            health_code(&Health {
                level: Level::Unknown,
                checks: vec![]
            }),
            3
        );
    }
}
