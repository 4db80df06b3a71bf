//! Logging: structured journald entries under systemd, plain stderr lines
//! elsewhere (tests, the demo, a terminal).

use log::{LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::{connected_to_journal, JournalLog};

/// Install the logger. Key-value pairs become journald fields
/// (`bulwark_event` → `BULWARK_EVENT=`), or ` key=value` on stderr.
pub fn init(level: LevelFilter) {
    let journal = connected_to_journal()
        .then(|| JournalLog::new().ok())
        .flatten()
        .map(|j| j.with_syslog_identifier("bulwarkd".to_owned()));
    let installed = match journal {
        Some(j) => j.install().is_ok(),
        None => log::set_boxed_logger(Box::new(Stderr)).is_ok(),
    };
    if installed {
        log::set_max_level(level);
    }
}

struct Stderr;

struct Fields(String);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut fields = Fields(String::new());
        let _ = record.key_values().visit(&mut fields);
        eprintln!(
            "bulwarkd[{}] {}: {}{}",
            std::process::id(),
            record.level(),
            record.args(),
            fields.0
        );
    }

    fn flush(&self) {}
}
