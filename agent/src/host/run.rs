//! Running other programs: the one bounded child-process runner.
//!
//! nft, systemctl, evmctl, systemd-creds and bao all go through [`Run`]:
//! an absolute program path, the environment cleaned of what must not reach
//! a child (systemd's notification and socket-activation variables, and
//! `LOG_LEVEL`, which makes wireguard-go's launcher hang), stdin fed and
//! stdout and stderr drained on threads (a 50,000-element nft batch is
//! megabytes, far more than a pipe holds), stderr kept for the error, and a
//! deadline after which the child is killed. Waiting blocks on a pidfd, so a
//! fast child is reaped the moment it exits and a slow one costs no polling.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Variables no child inherits: a child must not speak for bulwarkd to
/// systemd, and `LOG_LEVEL` hangs wireguard-go's own launcher.
pub const SCRUBBED_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LOG_LEVEL",
];
/// At most this much of a child's stderr is kept for an error.
const STDERR_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for {command}")]
    Wait {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{command} did not finish within {} and was killed", humantime::format_duration(*.timeout))]
    Timeout { command: String, timeout: Duration },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl RunError {
    /// The child's stderr, when it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            RunError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// What a finished child left.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// Trimmed, at most 16 KiB.
    pub stderr: String,
}

/// One invocation of a program, built up and then run once.
#[derive(Debug)]
pub struct Run {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Run {
    /// `program` should be absolute: the daemon does not trust `$PATH`.
    pub fn new(program: impl AsRef<Path>, timeout: Duration) -> Run {
        Run {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            timeout,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Run {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Run {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Run {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Bytes fed on stdin (otherwise stdin is /dev/null). Never put a secret
    /// in an argument: arguments are world-readable in /proc.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Run {
        self.stdin = Some(bytes);
        self
    }

    /// The command line for messages: program and arguments.
    pub fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Run to completion; an exit status other than 0 is [`RunError::Failed`].
    pub fn output(self) -> Result<Output, RunError> {
        let command = self.describe();
        let out = self.finish()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(RunError::Failed {
                command,
                status: out.status,
                stderr: out.stderr,
            })
        }
    }

    /// Run to completion whatever the exit status.
    pub fn finish(self) -> Result<Output, RunError> {
        let command = self.describe();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            // Error texts are matched in places (nft's "No such file"): untranslated.
            .env("LC_ALL", "C")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
            command: command.clone(),
            source,
        })?;
        let writer = child.stdin.take().zip(self.stdin).map(|(mut pipe, data)| {
            thread::spawn(move || match pipe.write_all(&data) {
                // A child exiting early closes the pipe; its exit status says why.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            })
        });
        let stdout = child.stdout.take().map(|r| drain(r, usize::MAX));
        let stderr = child.stderr.take().map(|r| drain(r, STDERR_LIMIT));
        let status = match wait(&mut child, self.timeout) {
            Ok(Some(status)) => status,
            // The pipe threads end once the killed child's pipes close; do not wait for them.
            Ok(None) => {
                return Err(RunError::Timeout {
                    command,
                    timeout: self.timeout,
                })
            }
            Err(source) => return Err(RunError::Wait { command, source }),
        };
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stderr = String::from_utf8_lossy(&collect(stderr)).trim().to_owned();
        Ok(Output {
            status,
            stdout: collect(stdout),
            stderr,
        })
    }
}

/// How often a wait wakes to tell the watchdog (see [`crate::notify::progress`]).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Wait for `child` until `timeout`; `None` when it was killed for taking
/// longer. Blocks on a pidfd; where the kernel has none, polls.
fn wait(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32)
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok());
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        // A child bounded by its deadline is progress, not a hang (a
        // `systemctl daemon-reload` can take 30 s on a slow host).
        crate::notify::progress();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // kill() fails only when the child already exited; reap it either way.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        match &pidfd {
            Some(fd) => {
                let fd = fd.as_fd();
                let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
                let ts = rustix::event::Timespec::try_from(left.min(PROGRESS_EVERY))
                    .unwrap_or(rustix::event::Timespec { tv_sec: 1, tv_nsec: 0 });
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// Read `r` to its end on a thread, keeping at most `limit` bytes.
fn drain(mut r: impl Read + Send + 'static, limit: usize) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    })
}

fn collect(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn output_stdin_and_stderr_round_trip() {
        let out = Run::new("/bin/sh", Duration::from_secs(5))
            .args(["-c", "cat; echo oops >&2"])
            .stdin(b"hello".to_vec())
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, "oops");
    }

    #[test]
    fn a_failing_child_keeps_its_stderr_in_the_error() {
        let e = Run::new("/bin/sh", Duration::from_secs(5))
            .args(["-c", "echo 'no such table' >&2; exit 3"])
            .output()
            .unwrap_err();
        assert_eq!(e.stderr(), Some("no such table"));
        assert!(e.to_string().contains("exit status: 3"), "{e}");
    }

    #[test]
    fn a_hanging_child_is_killed_at_its_deadline() {
        let t0 = Instant::now();
        let e = Run::new("/bin/sleep", Duration::from_millis(200))
            .arg("30")
            .finish()
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_scrubbed_variables_never_reach_a_child() {
        for key in SCRUBBED_ENV {
            std::env::set_var(key, "set-by-the-test");
        }
        let out = Run::new("/usr/bin/env", Duration::from_secs(5))
            .env("KEEP", "1")
            .output()
            .unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(env.contains("KEEP=1"));
        for key in SCRUBBED_ENV {
            assert!(!env.contains(&format!("{key}=")), "{key} leaked: {env}");
        }
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let e = Run::new("/nonexistent/prog", Duration::from_secs(1))
            .finish()
            .unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }), "{e}");
    }
}
