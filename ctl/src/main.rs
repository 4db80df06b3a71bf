//! bulwarkctl: the operator's command-line client for bulwarkd.
//!
//! This file only parses arguments and turns the outcome into an exit code;
//! the commands live in `cmd`, the socket client in `client`, the human
//! layout in `output`.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap::Parser as _;

mod cli;
mod client;
mod cmd;
mod complete;
mod error;
mod evidence_html;
mod output;
mod ssh_guard;

/// Commands whose exit codes follow the monitoring plug-in convention, where
/// a wrong command line is UNKNOWN (3), not 2 (CRITICAL there).
const PLUGIN_COMMANDS: &[&str] = &["health", "doctor"];

fn main() -> ExitCode {
    // A shell asking for completions (the scripts of `bulwarkctl completions`)
    // is answered here, before anything is written to stdout.
    clap_complete::CompleteEnv::with_factory(cli::Cli::command)
        .var(complete::VAR)
        .bin("bulwarkctl")
        .completer("bulwarkctl")
        .complete();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version requests succeed; usage errors exit 2 from
            // clap (3 for health and doctor); with --json they also print
            // their JSON body first, like every failure.
            let plugin = e.use_stderr() && subcommand().is_some_and(|c| PLUGIN_COMMANDS.contains(&c.as_str()));
            if plugin {
                let _ = e.print();
                println!("overall: UNKNOWN");
                return ExitCode::from(error::UNREACHABLE);
            }
            if e.exit_code() == i32::from(error::USAGE) && json_requested() {
                print!("{}", error::usage_json(&e));
            }
            e.exit();
        }
    };
    ExitCode::from(cmd::run(&cli))
}

/// The subcommand's name: the first argument that is neither a global
/// option nor `--socket`'s value (clap could not parse the line).
fn subcommand() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--socket" {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// `--json` among the arguments (before a `--`), for errors clap finds
/// before it has parsed them.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}
