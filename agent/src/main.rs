use clap::Parser;

fn main() -> std::process::ExitCode {
    bulwark_agent::memory::one_arena();
    let args = bulwark_agent::daemon::Args::parse();
    let level = if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    bulwark_agent::logging::init(level);
    match bulwark_agent::daemon::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!("\n  caused by: {s}"));
                source = s.source();
            }
            log::error!("{msg}");
            eprintln!("bulwarkd: error: {msg}");
            match e {
                bulwark_agent::daemon::StartError::Running { .. } => {
                    std::process::ExitCode::from(bulwark_agent::daemon::EXIT_RUNNING)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
