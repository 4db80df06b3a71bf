//! VPN peers: add-peer, remove-peer, renew-peer, disable-peer, enable-peer,
//! peers.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use bulwark_model::api::{AddPeerRequest, AddPeerResponse, PeerInfo, PeerRef, RenewPeerRequest};
use bulwark_model::text::escape;
use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;

use super::{emit, now, Ctx};
use crate::cli::AddPeerArgs;
use crate::error::OK;
use crate::output;

/// Print the client config on stdout (and nothing else, so it can be
/// redirected into a file), or write it to `--output` (0600); the QR code and
/// the summary go to stderr, never stdout.
pub fn add(ctx: &Ctx<'_>, out: &mut dyn Write, args: &AddPeerArgs) -> anyhow::Result<u8> {
    // The config is shown only once: make sure it has somewhere to go first.
    if let Some(path) = &args.output {
        if path.exists() {
            bail!(
                "{} exists; choose another file or remove it (the peer was not added)",
                path.display()
            );
        }
    }
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
    let mut written = None;
    if let Some(path) = &args.output {
        match write_private(path, &added.client_config) {
            Ok(()) => written = Some(path),
            Err(e) => {
                // Never lose the only copy: print it after all.
                eprintln!(
                    "bulwarkctl: cannot write {}: {e}; the config follows on stdout",
                    path.display()
                );
            }
        }
    }
    if written.is_none() {
        emit(out, &added.client_config)?;
    }
    if args.qr {
        eprint!("{}", qr(&added.client_config)?);
    }
    let p = &added.peer;
    let expires = p.expires.map_or_else(|| "never".to_owned(), output::rfc3339);
    let place = written.map_or_else(String::new, |w| format!("; config written to {} (0600)", w.display()));
    eprintln!(
        "added peer {} at {} (expires {expires}){place}; this config is shown only once",
        escape(&p.name),
        escape(&p.address)
    );
    Ok(OK)
}

/// Create `path` with mode 0600 (never an existing file: no clobbering, no
/// following a planted symlink) and write `text` to it.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The config as a terminal QR code with explicit colours (black modules on
/// a white background with its quiet zone), so it scans on dark and light
/// terminals alike.
pub fn qr(config: &str) -> anyhow::Result<String> {
    const BLACK_ON_WHITE: &str = "\x1b[30;107m";
    const RESET: &str = "\x1b[0m";
    let code = QrCode::new(config.as_bytes())?;
    let text = code.render::<Dense1x2>().quiet_zone(true).build();
    let mut out = String::from("\n");
    for line in text.lines() {
        out.push_str(BLACK_ON_WHITE);
        out.push_str(line);
        out.push_str(RESET);
        out.push('\n');
    }
    Ok(out)
}

pub fn remove(ctx: &Ctx<'_>, out: &mut dyn Write, name: &str, yes: bool) -> anyhow::Result<u8> {
    if !yes && !confirmed(name)? {
        bail!("not removed: answer 'yes' to remove {name}, or pass --yes");
    }
    let answer = ctx
        .client()?
        .delete(&format!("/v1/peers/{}", crate::client::segment(name)))?;
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

/// Run a WireGuard module action on one peer and say what it did.
fn peer_action<B: serde::Serialize>(
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
    action: &str,
    body: &B,
    say: impl FnOnce(&PeerInfo) -> String,
) -> anyhow::Result<u8> {
    let answer = ctx
        .client()?
        .post(&format!("/v1/modules/wireguard/{action}"), Some(body))?;
    let peer: PeerInfo = answer.decode()?;
    if ctx.json {
        emit(out, &answer.pretty())?;
    } else {
        emit(out, &format!("{}\n", say(&peer)))?;
    }
    Ok(OK)
}

pub fn renew(ctx: &Ctx<'_>, out: &mut dyn Write, name: &str, expires: Option<&str>) -> anyhow::Result<u8> {
    let req = RenewPeerRequest {
        name: name.to_owned(),
        expires: expires.map(str::to_owned),
    };
    let now = now();
    peer_action(ctx, out, "renew-peer", &req, |p| {
        let until = p
            .expires
            .map_or_else(|| "never".to_owned(), |t| output::deadline(t, now));
        format!("renewed peer {}: expires {until}", escape(&p.name))
    })
}

pub fn set_enabled(ctx: &Ctx<'_>, out: &mut dyn Write, name: &str, enabled: bool) -> anyhow::Result<u8> {
    let req = PeerRef { name: name.to_owned() };
    let action = if enabled { "enable-peer" } else { "disable-peer" };
    peer_action(ctx, out, action, &req, |p| {
        if enabled {
            format!(
                "enabled peer {} ({}): its config works again",
                escape(&p.name),
                escape(&p.address)
            )
        } else {
            format!(
                "disabled peer {} ({}): off the interface until `bulwarkctl enable-peer {}`",
                escape(&p.name),
                escape(&p.address),
                escape(&p.name)
            )
        }
    })
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
