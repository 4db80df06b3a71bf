//! `bulwarkctl vault status|init|unseal|migrate|snapshot|snapshots|restore|restore-test`:
//! the Vault module's actions at `/v1/modules/vault/<action>`.
//!
//! `init` prints the keys (and root token) once and then acknowledges them,
//! so bulwarkd forgets them; if printing fails, nothing is acknowledged and
//! `init` shows the same keys again. Shares for `unseal` and `migrate` are
//! read without echo on a terminal, or one per line from stdin; they never
//! appear in argv.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use bulwark_model::vault::{
    InitResponse, RestoreRequest, RestoreTest, RestoreTestRequest, SnapshotEntry, SnapshotsResponse, UnsealRequest,
    UnsealResponse, VaultStatus, MODULE,
};

use super::{emit, emit_json, Ctx};
use crate::cli::VaultCommand;
use crate::error::{FAILED, OK};
use crate::output;

fn path(action: &str) -> String {
    format!("/v1/modules/{MODULE}/{action}")
}

pub fn run(ctx: &Ctx<'_>, out: &mut dyn Write, cmd: &VaultCommand) -> anyhow::Result<u8> {
    match cmd {
        VaultCommand::Status => status(ctx, out),
        VaultCommand::Init => init(ctx, out),
        VaultCommand::Unseal => shares(ctx, out, None),
        VaultCommand::Migrate { to } => shares(ctx, out, Some(to.as_str())),
        VaultCommand::Snapshot => snapshot(ctx, out),
        VaultCommand::Snapshots => list(ctx, out),
        VaultCommand::Restore { snapshot, yes } => restore(ctx, out, snapshot, *yes),
        VaultCommand::RestoreTest { shares } => restore_test(ctx, out, *shares),
    }
}

fn ago(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(unix)))
    )
}

fn snapshot(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let answer = ctx.client()?.post(&path("snapshot"), Some(&serde_json::json!({})))?;
    let e: SnapshotEntry = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        let remote = match (&e.uploaded, &e.upload_error) {
            (Some(_), _) => "uploaded, read back with the same SHA-256".to_owned(),
            (None, Some(err)) => format!("NOT uploaded (kept locally, retried): {err}"),
            (None, None) => "local only (no s3 in the profile)".to_owned(),
        };
        emit(
            out,
            &output::key_values(&[
                ("snapshot", e.name.clone()),
                ("size", format!("{} bytes", e.size)),
                ("sha256", e.sha256.clone()),
                ("off-site", remote),
            ]),
        )?;
    }
    Ok(if e.upload_error.is_some() { FAILED } else { OK })
}

fn list(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let answer = ctx.client()?.get(&path("snapshots"))?;
    let r: SnapshotsResponse = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
        return Ok(OK);
    }
    let mut text = format!("local ({}):\n", r.dir);
    for e in r.snapshots.iter().filter(|e| e.local) {
        let remote = match (&e.uploaded, &e.upload_error) {
            (Some(_), _) => "off-site".to_owned(),
            (None, Some(err)) => format!("NOT off-site: {err}"),
            (None, None) => "local only".to_owned(),
        };
        text.push_str(&format!(
            "  {}  {}  {} bytes  sha256 {}  {remote}\n",
            e.name,
            ago(e.taken),
            e.size,
            e.sha256
        ));
    }
    if let Some(remote) = &r.remote {
        text.push_str(&format!("remote ({remote}):\n"));
        for o in &r.objects {
            text.push_str(&format!(
                "  {}  {}  {} bytes  sha256 {}\n",
                o.key,
                ago(o.modified),
                o.size,
                o.sha256.as_deref().unwrap_or("(not Bulwark's)")
            ));
        }
    }
    if let Some(err) = &r.remote_error {
        text.push_str(&format!("  ! the bucket: {err}\n"));
    }
    if let Some(t) = &r.last_restore_test {
        text.push_str(&format!(
            "last restore test: {} {} ({}): {}\n",
            if t.passed { "PASSED" } else { "FAILED" },
            ago(t.at),
            t.snapshot,
            t.reason
        ));
    }
    emit(out, &text)?;
    Ok(OK)
}

fn restore(ctx: &Ctx<'_>, out: &mut dyn Write, snapshot: &str, yes: bool) -> anyhow::Result<u8> {
    let terminal = std::io::stdin().is_terminal();
    if !yes {
        if !terminal {
            bail!("restore replaces all of the Vault's data: confirm with --yes (no terminal to ask on)");
        }
        eprint!("Replace ALL of the Vault's data with {snapshot}? Type the snapshot's name to confirm: ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != snapshot {
            bail!("not confirmed; nothing was restored");
        }
    }
    let token = if terminal {
        rpassword::prompt_password("token that may update sys/storage/raft/snapshot-force (not echoed): ")?
    } else {
        std::io::stdin().lock().lines().next().transpose()?.unwrap_or_default()
    };
    if token.trim().is_empty() {
        bail!("no token given: type one, or pipe it in on stdin");
    }
    let req = RestoreRequest {
        snapshot: snapshot.to_owned(),
        token: token.trim().to_owned(),
    };
    let answer = ctx.client()?.post(&path("restore"), Some(&req))?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        let v: serde_json::Value = answer.decode()?;
        emit(
            out,
            &format!("restored {}\n", v["restored"].as_str().unwrap_or(snapshot)),
        )?;
    }
    Ok(OK)
}

fn restore_test(ctx: &Ctx<'_>, out: &mut dyn Write, with_shares: bool) -> anyhow::Result<u8> {
    let req = RestoreTestRequest {
        shares: if with_shares { read_shares()? } else { Vec::new() },
    };
    let answer = ctx.client()?.post(&path("restore-test"), Some(&req))?;
    let t: RestoreTest = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(
            out,
            &format!(
                "restore test {} ({}, {} ms): {}\n",
                if t.passed { "PASSED" } else { "FAILED" },
                t.snapshot,
                t.took_ms,
                t.reason
            ),
        )?;
    }
    Ok(if t.passed { OK } else { FAILED })
}

fn status(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let answer = ctx.client()?.get(&path("status"))?;
    let s: VaultStatus = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
        return Ok(OK);
    }
    let state = match (s.initialized, s.sealed) {
        (None, _) => "not answering".to_owned(),
        (Some(false), _) => "not initialised".to_owned(),
        (Some(true), Some(true)) => format!("sealed ({}/{} shares)", s.progress, s.threshold),
        (Some(true), _) => match s.unsealed_for_secs {
            Some(secs) => format!(
                "unsealed for {}",
                humantime::format_duration(std::time::Duration::from_secs(secs))
            ),
            None => "unsealed".to_owned(),
        },
    };
    let mut text = output::key_values(&[
        ("vault", format!("{} {} ({})", s.implementation, s.version, s.runner)),
        ("listen", s.listen.clone()),
        ("state", state),
        ("seal", s.seal_type.clone()),
        ("custody", format!("{} (store: {})", s.custody, s.credential_store)),
        (
            "keys",
            if s.keys_delivered {
                "acknowledged"
            } else {
                "not yet taken"
            }
            .to_owned(),
        ),
        ("level", format!("{:?}", s.level).to_uppercase()),
    ]);
    for p in &s.problems {
        text.push_str(&format!("  ! {p}\n"));
    }
    emit(out, &text)?;
    Ok(OK)
}

fn init(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let client = ctx.client()?;
    let answer = client.post(&path("init"), Some(&serde_json::json!({})))?;
    let r: InitResponse = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        let mut text = format!(
            "{} {} keys ({} of them are needed){}:\n",
            r.keys.len(),
            r.key_kind,
            r.threshold,
            if r.repeated {
                ", shown before and never acknowledged"
            } else {
                ""
            }
        );
        for (i, k) in r.keys.iter().enumerate() {
            text.push_str(&format!("  key {}: {k}\n", i + 1));
        }
        match (&r.root_token, &r.root_token_accessor) {
            (Some(t), Some(a)) => text.push_str(&format!("root token: {t}\n  (accessor {a})\n")),
            (Some(t), None) => text.push_str(&format!("root token: {t}\n")),
            _ => text.push_str("root token: revoked\n"),
        }
        for n in &r.notes {
            text.push_str(&format!("- {n}\n"));
        }
        emit(out, &text)?;
    }
    // Only once they are out: bulwarkd forgets the keys.
    out.flush()?;
    client.post(&path("ack"), Some(&serde_json::json!({})))?;
    eprintln!("bulwarkctl: the keys are shown once; Bulwark no longer keeps them");
    Ok(OK)
}

/// The shares for a restore test: typed without echo until an empty line,
/// or every non-empty line of stdin.
fn read_shares() -> anyhow::Result<Vec<String>> {
    let mut shares = Vec::new();
    if std::io::stdin().is_terminal() {
        loop {
            let share = rpassword::prompt_password("original unseal share (not echoed; empty line to finish): ")?;
            if share.trim().is_empty() {
                break;
            }
            shares.push(share.trim().to_owned());
        }
    } else {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            if !line.trim().is_empty() {
                shares.push(line.trim().to_owned());
            }
        }
    }
    if shares.is_empty() {
        bail!("--shares: no share given: type them, or pipe them in one per line");
    }
    Ok(shares)
}

/// Read shares and send each until the Vault is unsealed.
fn shares(ctx: &Ctx<'_>, out: &mut dyn Write, to: Option<&str>) -> anyhow::Result<u8> {
    let action = if to.is_some() { "migrate" } else { "unseal" };
    let client = ctx.client()?;
    let terminal = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    let mut answers = Vec::new();
    loop {
        let share = if terminal {
            rpassword::prompt_password("unseal share (not echoed): ")?
        } else {
            match lines.next() {
                Some(line) => line?,
                None => break,
            }
        };
        let share = share.trim().to_owned();
        if share.is_empty() {
            if terminal {
                break;
            }
            continue;
        }
        let req = UnsealRequest {
            key: share,
            to: to.map(str::to_owned),
        };
        let answer = client.post(&path(action), Some(&req))?;
        let r: UnsealResponse = answer.decode()?;
        if !ctx.json {
            let line = if !r.sealed {
                format!("unsealed ({} seal)\n", r.seal_type)
            } else if r.repeated {
                format!(
                    "share already given in this round: ignored ({}/{})\n",
                    r.progress, r.threshold
                )
            } else {
                format!("share accepted: {}/{}\n", r.progress, r.threshold)
            };
            emit(out, &line)?;
        }
        let done = !r.sealed;
        answers.push(r);
        if done {
            break;
        }
    }
    if ctx.json {
        emit_json(out, &answers)?;
    }
    if answers.is_empty() {
        bail!("no share given: type one, or pipe them in one per line");
    }
    Ok(OK)
}
