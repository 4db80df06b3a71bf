//! The benchmark's own network namespace, the daemon in it, and the tools
//! measured against it. The harness enters the namespace once at start, so
//! every process it starts (bulwarkd, nft, wg, bulwarkctl) runs there
//! without an `ip netns exec` in front; the host's ruleset and interfaces
//! are never touched. Everything started is ended by its PID.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn fail(what: &str) -> ! {
    eprintln!("bulwark-bench: {what}");
    std::process::exit(1)
}

/// The namespace, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Create a namespace and move this thread (and every process and
    /// thread it starts from now on) into it.
    pub fn enter(tag: &str) -> Netns {
        let name = format!("bwk-bench-{tag}-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        if !ok.is_ok_and(|s| s.success()) {
            fail(&format!("ip netns add {name} failed (root needed)"));
        }
        let ns = File::open(format!("/run/netns/{name}")).unwrap_or_else(|e| fail(&format!("open netns: {e}")));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| fail(&format!("setns: {e}")));
        run(&["ip", "link", "set", "lo", "up"]);
        Netns { name }
    }
}

impl Netns {
    /// A second namespace, not entered: `run` executes there.
    pub fn beside(tag: &str) -> Netns {
        let name = format!("bwk-bench-{tag}-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status();
        if !ok.is_ok_and(|s| s.success()) {
            fail(&format!("ip netns add {name} failed (root needed)"));
        }
        Netns { name }
    }

    /// Run `f` on a thread inside this namespace (processes it starts run
    /// there too).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| fail(&format!("open netns: {e}")));
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| fail(&format!("setns: {e}")));
                f()
            });
            h.join().unwrap_or_else(|_| fail("a benchmark thread panicked"))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", args[0])));
    if !out.status.success() {
        fail(&format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    out
}

pub fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", args[0])));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().unwrap_or_else(|e| fail(&e.to_string()));
    if !out.status.success() {
        fail(&format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    out
}

/// Wall time of `f`.
pub fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// bulwarkd under a temporary root, killed (with its children) when dropped.
pub struct Daemon {
    pub root: tempfile::TempDir,
    pub bin: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(bin: &Path, boot_profile: &str) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("bulwark-bench-")
            .tempdir()
            .unwrap_or_else(|e| fail(&e.to_string()));
        let etc = root.path().join("etc/bulwark");
        fs::create_dir_all(&etc).unwrap_or_else(|e| fail(&e.to_string()));
        fs::write(etc.join("profile.toml"), boot_profile).unwrap_or_else(|e| fail(&e.to_string()));
        let log = File::create(root.path().join("bulwarkd.log")).unwrap_or_else(|e| fail(&e.to_string()));
        let child = Command::new(bin.join("bulwarkd"))
            .arg("--root")
            .arg(root.path())
            .stdout(log.try_clone().unwrap_or_else(|e| fail(&e.to_string())))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| fail(&format!("bulwarkd: {e}")));
        let d = Daemon {
            root,
            bin: bin.to_owned(),
            child: Some(child),
        };
        let t = Instant::now();
        while !d.ctl_quiet(&["status"]) {
            if t.elapsed() > Duration::from_secs(120) {
                fail(&format!("bulwarkd did not come up:\n{}", d.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn socket(&self) -> PathBuf {
        self.root.path().join("run/bulwark/bulwarkd.sock")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.root.path().join("bulwarkd.log")).unwrap_or_default()
    }

    fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("bulwarkctl"));
        c.arg("--socket").arg(self.socket()).args(args);
        c
    }

    fn ctl_quiet(&self, args: &[&str]) -> bool {
        self.ctl_cmd(args).output().is_ok_and(|o| o.status.success())
    }

    /// `bulwarkctl ARGS`, which must succeed.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let out = self
            .ctl_cmd(args)
            .output()
            .unwrap_or_else(|e| fail(&format!("bulwarkctl: {e}")));
        if !out.status.success() {
            fail(&format!(
                "bulwarkctl {args:?}: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ));
        }
        out
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.root.path().join(name);
        fs::write(&p, text).unwrap_or_else(|e| fail(&e.to_string()));
        p
    }

    pub fn apply(&self, file: &Path) {
        self.ctl(&["apply", &file.display().to_string()]);
    }

    /// VmRSS in kB.
    pub fn rss_kb(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// User plus system CPU time of every thread so far.
    pub fn cpu(&self) -> Duration {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let f: Vec<u64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // Fields 14 and 15 of stat; `after` starts at field 3 (state, not a number).
        let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        Duration::from_millis(ticks * 1000 / hz.max(1))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// HTTP/1.1 GET over the daemon's Unix socket, the way a client does it
/// (a new connection per request). Returns the status code.
pub fn http_get(socket: &Path, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap_or_else(|e| fail(&format!("connect: {e}")));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap_or_else(|e| fail(&e.to_string()));
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let head = String::from_utf8_lossy(&body[..body.len().min(16)]).into_owned();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
