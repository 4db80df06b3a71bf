//! Generated documentation and what bulwarkctl says about itself: shell
//! completions, man pages (both built from the clap definition, so they
//! cannot drift from `--help`) and `--version`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{emit, emit_json};
use crate::cli::Cli;
use crate::error::EXIT_CODES;
use crate::error::OK;

/// `--version`: the client's own version (it never asks the daemon; `status`
/// shows bulwarkd's).
pub fn version(out: &mut dyn Write, json: bool) -> u8 {
    let v = env!("CARGO_PKG_VERSION");
    let written = if json {
        emit_json(out, &serde_json::json!({ "name": "bulwarkctl", "version": v }))
    } else {
        emit(out, &format!("bulwarkctl {v}\n")).map_err(Into::into)
    };
    match written.and_then(|()| out.flush().map_err(Into::into)) {
        Ok(()) => OK,
        Err(e) if crate::error::is_broken_pipe(&e) => OK,
        Err(_) => crate::error::FAILED,
    }
}

/// A completion script is shell code: `--json` has nothing to say about
/// it, and is refused rather than ignored.
pub fn completions(out: &mut dyn Write, shell: Shell, json: bool) -> anyhow::Result<u8> {
    if json {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "completions prints a shell script; --json does not apply to it",
            )
            .exit();
    }
    out.write_all(&crate::complete::script(&shell.to_string())?)?;
    Ok(OK)
}

/// Write `bulwarkctl.1` and one page per subcommand (`bulwarkctl-audit-tail.1`
/// ...) into `dir`, naming each file written (a JSON list with `--json`).
pub fn man(out: &mut dyn Write, dir: &Path, json: bool) -> anyhow::Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Help for `help` itself is no manual page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // build() fills in the subcommands' display names (bulwarkctl-apply).
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, true, &mut written)?;
    if json {
        emit_json(out, &written)?;
    } else {
        let list: String = written.iter().map(|p| format!("{}\n", p.display())).collect();
        emit(out, &list)?;
    }
    Ok(OK)
}

fn write_pages(cmd: &clap::Command, dir: &Path, top: bool, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned();
    let path = dir.join(format!("{name}.1"));
    let page = page(cmd, top).with_context(|| format!("cannot render the man page of {name}"))?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, false, written)?;
    }
    Ok(())
}

/// Roff-escape text: backslashes, hyphens meant as minus signs in options,
/// and control characters at the start of a line.
fn roff(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with(['.', '\'']) {
            out.push_str("\\&");
        }
        out.push_str(&line);
    }
    out
}

/// `bulwarkctl apply [--dry-run] [--confirm SECS] [--force] FILE`: every
/// option with its value name, then the positionals, then the subcommand.
fn synopsis(cmd: &clap::Command) -> String {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut s = format!(".B {}\n", roff(name));
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()) {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("\\fB\\-{short}\\fR|\\fB\\-\\-{}\\fR", roff(long)),
            (Some(short), None) => format!("\\fB\\-{short}\\fR"),
            (None, Some(long)) => format!("\\fB\\-\\-{}\\fR", roff(long)),
            (None, None) => continue,
        };
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let value = match arg.get_value_names() {
            Some(names) if takes_value => format!(" \\fI{}\\fR", roff(&names.join(" "))),
            _ => String::new(),
        };
        let repeat = if matches!(arg.get_action(), clap::ArgAction::Append) {
            "..."
        } else {
            ""
        };
        writeln!(s, "[{flag}{value}]{repeat}").ok();
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let value = arg
            .get_value_names()
            .map_or_else(|| arg.get_id().to_string(), |v| v.join(" "));
        if arg.is_required_set() {
            writeln!(s, "\\fI{}\\fR", roff(&value)).ok();
        } else {
            writeln!(s, "[\\fI{}\\fR]", roff(&value)).ok();
        }
    }
    if cmd.has_subcommands() {
        let optional = !cmd.is_subcommand_required_set();
        let word = "\\fICOMMAND\\fR";
        writeln!(s, "{}", if optional { format!("[{word}]") } else { word.to_owned() }).ok();
    }
    s
}

const ENVIRONMENT: &str = "\
.TP
.B BULWARK_SOCKET
The API socket, as \\fB\\-\\-socket\\fR (default \\fI/run/bulwark/bulwarkd.sock\\fR).
.TP
.B NO_COLOR
When set, plans and diffs are never coloured. Without it they are coloured
only on a terminal; \\fBCLICOLOR_FORCE\\fR=1 colours them anyway.
.TP
.B SSH_CONNECTION
Set by sshd. \\fBapply\\fR refuses, without \\fB\\-\\-force\\fR, a profile that
would drop the connection it names.
";

const FILES: &str = "\
.TP
.I /run/bulwark/bulwarkd.sock
bulwarkd's API socket (0660, group \\fBbulwark\\fR; \\fBbulwark\\-admin\\fR may
change the host).
.TP
.I /etc/bulwark/profile.toml
The boot profile, applied only while the host has no generation.
.TP
.I /var/lib/bulwark/
Generations, peers, keys (root only).
.TP
.I /var/log/bulwark/audit.log
The hash\\-chained audit log (\\fBbulwarkctl audit verify\\fR).
";

/// One page: clap's title, name, description and options, with a synopsis
/// that names every value, and the sections clap has no notion of.
fn page(cmd: &clap::Command, top: bool) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    writeln!(out, ".SH SYNOPSIS\n{}", synopsis(cmd))?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    let codes = match cmd.get_after_help() {
        // health and doctor: the plug-in codes are their own after-help.
        Some(own) if !top => own.to_string(),
        _ => EXIT_CODES.to_owned(),
    };
    let codes = codes.lines().skip(1).collect::<Vec<_>>().join("\n");
    writeln!(out, ".SH \"EXIT STATUS\"\n.nf\n{}\n.fi", roff(&codes))?;
    writeln!(out, ".SH ENVIRONMENT\n{ENVIRONMENT}.SH FILES\n{FILES}")?;
    let see = if top {
        ".BR bulwarkd (8),\n.BR bulwark\\-profile (5),\n.BR nft (8),\n.BR wg (8)".to_owned()
    } else {
        ".BR bulwarkctl (1),\n.BR bulwarkd (8),\n.BR bulwark\\-profile (5)".to_owned()
    };
    writeln!(out, ".SH \"SEE ALSO\"\n{see}")?;
    writeln!(out, ".SH VERSION\n{}", env!("CARGO_PKG_VERSION"))?;
    Ok(out)
}
