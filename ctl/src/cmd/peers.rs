//! VPN peers: add-peer, remove-peer, peers.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use bulwark_model::api::{AddPeerRequest, AddPeerResponse, PeerInfo};
use bulwark_model::text::escape;
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;

use super::{emit, now, Ctx};
use crate::cli::AddPeerArgs;
use crate::error::OK;
use crate::output;

/// Print the client config on stdout (and nothing else, so it can be
/// redirected into a file); the summary goes to stderr.
pub fn add(ctx: &Ctx<'_>, out: &mut dyn Write, args: &AddPeerArgs) -> anyhow::Result<u8> {
    let req = AddPeerRequest {
        name: args.name.clone(),
        public_key: args.public_key.clone(),
        address: args.address,
        expires: args.expires.clone(),
    };
    let answer = ctx.client()?.post("/v1/peers", Some(&req))?;
    let added: AddPeerResponse = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
        return Ok(OK);
    }
    emit(out, &added.client_config)?;
    if args.qr {
        let qr = QrCode::new(added.client_config.as_bytes())?;
        emit(
            out,
            &format!("\n{}\n", qr.render::<Dense1x2>().quiet_zone(true).build()),
        )?;
    }
    let p = &added.peer;
    let expires = p.expires.map_or_else(|| "never".to_owned(), output::rfc3339);
    eprintln!(
        "added peer {} at {} (expires {expires}); this config is shown only once",
        escape(&p.name),
        escape(&p.address)
    );
    Ok(OK)
}

pub fn remove(ctx: &Ctx<'_>, out: &mut dyn Write, name: &str, yes: bool) -> anyhow::Result<u8> {
    if !yes && !confirmed(name)? {
        bail!("not removed: answer 'yes' to remove {name}, or pass --yes");
    }
    let answer = ctx.client()?.delete(&format!("/v1/peers/{name}"))?;
    let removed: PeerInfo = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(
            out,
            &format!(
                "removed peer {} ({})\n",
                escape(&removed.name),
                escape(&removed.address)
            ),
        )?;
    }
    Ok(OK)
}

/// Ask on the terminal; without one, only --yes removes.
fn confirmed(name: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    eprint!("remove peer {name}? its config stops working at once [yes/no] ");
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "yes"))
}

pub fn list(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let answer = ctx.client()?.get("/v1/peers")?;
    let peers: Vec<PeerInfo> = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(out, &output::peers(&peers, now()))?;
    }
    Ok(OK)
}
