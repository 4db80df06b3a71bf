//! Logging: structured journald entries under systemd, plain stderr lines
//! elsewhere (tests, the demo, a terminal).
//!
//! Log messages quote what callers sent (a profile's source name, a path, an
//! error about their input), so every message and every field value is
//! escaped ([`bulwark_model::text::escape`]) before it leaves the process:
//! one record is one line, in the journal and on stderr, and none carries a
//! terminal control sequence.

use bulwark_model::text::escape;
use log::kv::{self, Key, Source, Value, VisitSource};
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
        Some(j) => log::set_boxed_logger(Box::new(Escaped(j))).is_ok(),
        None => log::set_boxed_logger(Box::new(Escaped(Stderr))).is_ok(),
    };
    if installed {
        log::set_max_level(level);
    }
}

/// Fields of a record, escaped and owned.
struct Fields(Vec<(String, String)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        self.0.push((
            escape(key.as_str()).into_owned(),
            escape(&value.to_string()).into_owned(),
        ));
        Ok(())
    }
}

impl Source for Fields {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), kv::Error> {
        for (k, v) in &self.0 {
            visitor.visit_pair(Key::from_str(k), Value::from(v.as_str()))?;
        }
        Ok(())
    }
}

/// Passes every record on to `L` with its message and field values escaped.
struct Escaped<L>(L);

impl<L: Log> Log for Escaped<L> {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut fields = Fields(Vec::new());
        let _ = record.key_values().visit(&mut fields);
        let message = record.args().to_string();
        let message = escape(&message);
        self.0.log(
            &Record::builder()
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .key_values(&fields)
                .args(format_args!("{message}"))
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// One line per record on stderr: `bulwarkd[PID] LEVEL: message key=value...`.
struct Stderr;

impl Stderr {
    fn line(record: &Record) -> String {
        struct Line(String);
        impl<'kvs> VisitSource<'kvs> for Line {
            fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
                self.0.push_str(&format!(" {key}={value}"));
                Ok(())
            }
        }
        let mut line = Line(format!(
            "bulwarkd[{}] {}: {}",
            std::process::id(),
            record.level(),
            record.args()
        ));
        let _ = record.key_values().visit(&mut line);
        line.0
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        eprintln!("{}", Stderr::line(record));
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps the lines it is given.
    struct Keep(Mutex<Vec<String>>);

    impl Log for Keep {
        fn enabled(&self, _: &Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push(Stderr::line(record));
            }
        }
        fn flush(&self) {}
    }

    #[test]
    fn a_record_with_controls_in_message_and_fields_is_one_clean_line() {
        let keep = Escaped(Keep(Mutex::new(Vec::new())));
        let source = "a.toml\nbulwarkd[1] INFO: forged\u{1b}[2J";
        let fields = [("source", source)];
        keep.log(
            &Record::builder()
                .level(log::Level::Warn)
                .key_values(&fields)
                .args(format_args!("cannot apply {source}"))
                .build(),
        );
        let lines = keep.0 .0.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert!(!line.chars().any(bulwark_model::text::is_unsafe), "{line:?}");
        assert!(
            line.ends_with(
                "WARN: cannot apply a.toml\\nbulwarkd[1] INFO: forged\\x1b[2J \
                 source=a.toml\\nbulwarkd[1] INFO: forged\\x1b[2J"
            ),
            "{line:?}"
        );
    }
}
