//! Command dispatch and what every command shares: the socket client, the
//! `--json` switch and writing to stdout.

use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use clap::CommandFactory as _;

use crate::cli::{AuditCommand, Cli, Command, GenerationsCommand};
use crate::client::{Client, ClientError};
use crate::error;

mod docs;
mod doctor;
mod evidence;
mod ima;
mod peers;
mod profile;
mod query;
mod show;
mod vault;

/// Settings every command sees.
pub struct Ctx<'a> {
    pub socket: &'a Path,
    pub json: bool,
    pub verbose: bool,
}

impl Ctx<'_> {
    fn client(&self) -> Result<Client, ClientError> {
        Client::new(self.socket, self.verbose)
    }
}

/// Run the command and return the process exit code; errors are reported
/// here so each command only has to say what went wrong.
pub fn run(cli: &Cli) -> u8 {
    let ctx = Ctx {
        socket: &cli.socket,
        json: cli.json,
        verbose: cli.verbose,
    };
    // Colour written by `output` reaches only a colour terminal: the stream
    // strips it for pipes, files, TERM=dumb and NO_COLOR.
    let mut out = anstream::stdout().lock();
    let Some(command) = &cli.command else {
        if cli.version {
            return docs::version(&mut out, cli.json);
        }
        // No command is a usage error: the help goes where errors go.
        let _ = Cli::command().write_help(&mut io::stderr());
        return USAGE;
    };
    let result = match command {
        // health and doctor map their own errors: every failure is UNKNOWN.
        Command::Health(args) => return query::health(&ctx, &mut out, args),
        Command::Doctor { root } => return doctor::run(&ctx, &mut out, root.as_deref()),
        Command::Validate(args) => profile::validate(&ctx, &mut out, args),
        Command::Apply(args) => profile::apply(&ctx, &mut out, args),
        Command::Confirm(args) => profile::confirm(&ctx, &mut out, args),
        Command::Rollback { generation } => profile::rollback(&ctx, &mut out, *generation),
        Command::AddPeer(args) => peers::add(&ctx, &mut out, args),
        Command::RemovePeer { name, yes } => peers::remove(&ctx, &mut out, name, *yes),
        Command::RenewPeer { name, expires } => peers::renew(&ctx, &mut out, name, expires.as_deref()),
        Command::DisablePeer { name } => peers::set_enabled(&ctx, &mut out, name, false),
        Command::EnablePeer { name } => peers::set_enabled(&ctx, &mut out, name, true),
        Command::Peers => peers::list(&ctx, &mut out),
        Command::Generations { command } => match command {
            None | Some(GenerationsCommand::List) => query::generations(&ctx, &mut out),
            Some(GenerationsCommand::Show { generation, artifact }) => {
                show::generation(&ctx, &mut out, *generation, artifact.as_deref())
            }
            Some(GenerationsCommand::Diff { a, b }) => show::diff(&ctx, &mut out, *a, *b),
        },
        Command::Status => query::status(&ctx, &mut out),
        Command::Show => show::show(&ctx, &mut out),
        Command::Audit {
            command: AuditCommand::Tail { n },
        } => query::audit_tail(&ctx, &mut out, *n),
        Command::Audit {
            command: AuditCommand::Verify,
        } => query::audit_verify(&ctx, &mut out),
        Command::Ima { command } => ima::run(&ctx, &mut out, command),
        Command::Vault { command } => vault::run(&ctx, &mut out, command),
        Command::Evidence(args) => evidence::run(&ctx, &mut out, args),
        Command::Completions { shell } => docs::completions(&mut out, *shell, cli.json),
        Command::Man { dir } => docs::man(&mut out, dir, cli.json),
    };
    let result = result.and_then(|code| out.flush().map(|()| code).map_err(Into::into));
    match result {
        Ok(code) => code,
        Err(err) => {
            error::report(&err, ctx.json);
            error::exit_code(&err)
        }
    }
}

/// A usage error, as clap reports its own.
pub const USAGE: u8 = 2;

/// Write text to stdout; a failure (a closed pipe) surfaces as an error
/// that `error` knows how to treat.
fn emit(out: &mut dyn Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())
}

/// Pretty-print JSON, as `--json` promises.
fn emit_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    emit(out, &text)?;
    Ok(())
}

/// Current Unix time, for "in 2m" next to deadlines.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
