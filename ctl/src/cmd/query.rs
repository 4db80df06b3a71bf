//! Read-only commands: status, health, generations, audit.

use std::io::Write;

use bulwark_model::api::{AuditEvent, Check, GenerationInfo, Health, Status};
use serde::de::DeserializeOwned;

use super::{emit, emit_json, now, Ctx};
use crate::cli::HealthArgs;
use crate::error::{self, FAILED, OK};
use crate::output;

/// `health --check`/`--ignore` named something the daemon does not report.
#[derive(Debug, thiserror::Error)]
#[error("usage: {flag} {name:?}: no check or module of that name on this host (it reports: {known})")]
pub struct UnknownCheck {
    flag: &'static str,
    name: String,
    known: String,
}

/// Keep the checks `keep` names (all when empty), then drop those `drop`
/// names; a name is a check's or a module's. The level is the worst of
/// what is left.
pub fn select(h: Health, keep: &[String], drop: &[String]) -> Result<Health, UnknownCheck> {
    let matches = |c: &Check, n: &str| c.name == n || c.module == n;
    for (flag, names) in [("--check", keep), ("--ignore", drop)] {
        if let Some(name) = names.iter().find(|n| !h.checks.iter().any(|c| matches(c, n))) {
            let mut known: Vec<&str> = h.checks.iter().map(|c| c.name.as_str()).collect();
            known.extend(h.checks.iter().map(|c| c.module.as_str()).filter(|m| !m.is_empty()));
            known.sort_unstable();
            known.dedup();
            return Err(UnknownCheck {
                flag,
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    let checks = h
        .checks
        .into_iter()
        .filter(|c| keep.is_empty() || keep.iter().any(|n| matches(c, n)))
        .filter(|c| !drop.iter().any(|n| matches(c, n)))
        .collect();
    Ok(Health::from_checks(checks))
}

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
/// line of stdout, which is what monitoring systems show. With a selection
/// (`--check`, `--ignore`), `--json` prints the selected checks in the API's
/// shape.
pub fn health(ctx: &Ctx<'_>, out: &mut dyn Write, args: &HealthArgs) -> u8 {
    let result = (|| -> anyhow::Result<u8> {
        let answer = ctx.client()?.get("/v1/health")?;
        let all: Health = answer.decode()?;
        let selecting = !(args.check.is_empty() && args.ignore.is_empty());
        let h = select(all, &args.check, &args.ignore)?;
        if ctx.json && !selecting {
            emit(out, &answer.pretty())?;
        } else if ctx.json {
            emit_json(out, &h)?;
        } else {
            emit(out, &output::health(&h))?;
        }
        out.flush()?;
        Ok(health_code(&h))
    })();
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

    fn named(name: &str, module: &str, level: Level) -> Check {
        Check {
            module: module.into(),
            name: name.into(),
            level,
            reason: String::new(),
        }
    }

    #[test]
    fn health_selection_by_check_or_module_recomputes_the_level() {
        let all = || {
            Health::from_checks(vec![
                named("firewall", "firewall", Level::Ok),
                named("wireguard", "wireguard", Level::Ok),
                named("wireguard_handshakes", "wireguard", Level::Warning),
                named("k3s_bind", "k3s", Level::Critical),
            ])
        };
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let h = select(all(), &s(&["firewall", "wireguard"]), &s(&["wireguard_handshakes"])).unwrap();
        let names: Vec<&str> = h.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["firewall", "wireguard"]);
        assert_eq!(health_code(&h), 0);
        let h = select(all(), &[], &s(&["k3s"])).unwrap();
        assert_eq!(h.level, Level::Warning);
        let e = select(all(), &s(&["firewal"]), &[]).unwrap_err().to_string();
        assert!(
            e.contains("--check \"firewal\"") && e.contains("firewall, k3s, k3s_bind"),
            "{e}"
        );
        assert!(select(all(), &[], &s(&["nope"]))
            .unwrap_err()
            .to_string()
            .contains("--ignore"));
    }

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
