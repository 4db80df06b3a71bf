//! What is enforced, in words (`show`), and generations whole (`generations
//! show N`, `generations diff A B`).

use std::io::Write;

use anyhow::{anyhow, bail, Context as _};
use bulwark_model::api::{GenerationDetail, Status};
use bulwark_model::Profile;

use super::{emit, Ctx};
use crate::error::OK;
use crate::output;

fn detail(ctx: &Ctx<'_>, number: u64) -> anyhow::Result<(crate::client::Answer, GenerationDetail)> {
    let answer = ctx.client()?.get(&format!("/v1/generations/{number}"))?;
    let g = answer.decode()?;
    Ok((answer, g))
}

pub fn show(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let client = ctx.client()?;
    let status: Status = client.get("/v1/status")?.decode()?;
    let Some(number) = status.generation else {
        bail!("no generation is in force (the failsafe ruleset: SSH and the WireGuard port only); apply a profile");
    };
    let (answer, g) = detail(ctx, number)?;
    if ctx.json {
        // The profile as the daemon parsed it, and the status beside it.
        let profile = Profile::parse(&g.source, &g.profile).map_err(|e| anyhow!("{e}"))?;
        let both = serde_json::json!({ "status": status, "generation": g.info, "profile": profile });
        super::emit_json(out, &both)?;
        return Ok(OK);
    }
    drop(answer);
    let profile = Profile::parse(&g.source, &g.profile).map_err(|e| {
        anyhow!("generation {number}'s profile does not validate with this bulwarkctl (older than the daemon?): {e}")
    })?;
    emit(out, &output::show(&profile, &status, g.info.created))?;
    if !g.sealed {
        emit(
            out,
            &format!(
                "\nwarning: generation {number}'s seal does not verify (see `bulwarkctl generations show {number}`)\n"
            ),
        )?;
    }
    Ok(OK)
}

pub fn generation(ctx: &Ctx<'_>, out: &mut dyn Write, number: u64, artifact: Option<&str>) -> anyhow::Result<u8> {
    let (answer, g) = detail(ctx, number)?;
    if let Some(name) = artifact {
        let (module, file) = name
            .split_once('/')
            .with_context(|| format!("--artifact {name:?}: write MODULE/FILE, such as firewall/ruleset.json"))?;
        let content = g.artifacts.get(module).and_then(|f| f.get(file)).with_context(|| {
            let all: Vec<String> = g
                .artifacts
                .iter()
                .flat_map(|(m, f)| f.keys().map(move |n| format!("{m}/{n}")))
                .collect();
            format!(
                "generation {number} has no artifact {name:?} (it has: {})",
                all.join(", ")
            )
        })?;
        if ctx.json {
            super::emit_json(out, content)?;
        } else {
            // As rendered, line by line, so it can be fed to nft or diffed;
            // only control characters inside a line are escaped.
            let text: String = content
                .lines()
                .map(|l| format!("{}\n", bulwark_model::text::escape(l)))
                .collect();
            emit(out, &text)?;
        }
        return Ok(OK);
    }
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(out, &output::generation(&g))?;
    }
    Ok(OK)
}

pub fn diff(ctx: &Ctx<'_>, out: &mut dyn Write, a: u64, b: u64) -> anyhow::Result<u8> {
    let (_, ga) = detail(ctx, a)?;
    let (_, gb) = detail(ctx, b)?;
    if ctx.json {
        super::emit_json(out, &serde_json::json!({ "a": ga, "b": gb }))?;
    } else {
        emit(out, &output::generation_diff(&ga, &gb))?;
    }
    Ok(OK)
}
