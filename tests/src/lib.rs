//! Harness for Bulwark's privileged behaviour tests.
//!
//! Every test builds its own three network namespaces (`vps`, `admin`,
//! `internet`, joined by veth pairs), runs the real `bulwarkd` inside `vps`
//! with a temporary `--root`, drives it with the real `bulwarkctl`, and checks
//! the outcome from outside: with `nft` inside `vps` and with TCP connections
//! from the other two namespaces. Nothing here touches the host's own
//! namespace: interfaces are created directly inside the test namespaces.
//!
//! Clean-up is by name (namespaces) and by PID (processes this harness
//! started), in `Drop`, so it also happens when a test panics.
//!
//! These tests need root. They fail loudly without it; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bulwark_model::api::{ApplyResponse, AuditEvent, GenerationInfo, Status};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use bulwark_model;
pub use serde_json;

/// Addresses of the topology. `vps` has one leg towards each neighbour.
pub mod wg;

pub mod addr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The vps address on the admin link.
    pub const VPS_ADMIN_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    pub const VPS_ADMIN_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 1));
    /// The admin namespace's own address (inside the admin CIDRs).
    pub const ADMIN_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
    pub const ADMIN_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 2));
    /// The vps address on the internet link.
    pub const VPS_INET_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
    pub const VPS_INET_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 1));
    /// The internet namespace's own address (outside every admin CIDR).
    pub const INET_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
    pub const INET_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 2));
}

/// Read group and admin group handed to bulwarkd; numeric so that no
/// `/etc/group` entries are needed.
pub const READ_GID: u32 = 61000;
pub const ADMIN_GID: u32 = 61001;
/// A group that is neither.
pub const OTHER_GID: u32 = 61002;

/// How long a probe waits for a handshake. Dropped SYNs run into it;
/// rejected ones fail at once.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long bulwarkd may take from exec to answering `status`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Panics unless the test runs as root: a test that cannot run must fail, not skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("these tests need root: they create network namespaces (run them as root, e.g. through .ci/run)");
    }
}

/// Path of a workspace binary. Cargo puts test executables in
/// `target/<profile>/deps/` and binaries one level up; `BULWARK_BIN_DIR`
/// overrides that (for testing installed binaries).
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("BULWARK_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let dir = exe.parent().expect("test executable has a directory");
            if dir.ends_with("deps") {
                dir.parent().expect("deps has a parent").to_path_buf()
            } else {
                dir.to_path_buf()
            }
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A finished command: exit code and output as text, printable for assertion messages.
#[derive(Debug, Clone)]
pub struct Ran {
    pub cmd: String,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    fn from_output(cmd: String, out: std::process::Output) -> Ran {
        Ran {
            cmd,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.cmd)?;
        writeln!(f, "exit: {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout.trim_end())?;
        write!(f, "stderr:\n{}", self.stderr.trim_end())
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with stdin closed.
pub fn run(cmd: &mut Command) -> Ran {
    let text = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{text}`: {e}"));
    Ran::from_output(text, out)
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Ran {
    let r = run(cmd);
    assert!(r.ok(), "command failed:\n{r}");
    r
}

/// Runs a command with `input` on stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Ran {
    let text = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{text}`: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write stdin");
    Ran::from_output(text, child.wait_with_output().expect("wait"))
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// A process-unique number, so parallel tests never share a name.
fn next_id() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Moves the calling thread into a named network namespace. Sockets it
/// creates afterwards, and processes it spawns, live in that namespace.
fn enter_netns(ns: &str) {
    let path = netns_path(ns);
    let f = File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
}

/// Runs `f` on a fresh thread inside network namespace `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Whether a TCP handshake from namespace `ns` to `addr:port` completes.
pub fn connects(ns: &str, addr: IpAddr, port: u16) -> bool {
    probe(ns, &[(addr, port)])[0]
}

/// Probes several targets from `ns` in parallel; one result per target.
pub fn probe(ns: &str, targets: &[(IpAddr, u16)]) -> Vec<bool> {
    let handles: Vec<_> = targets
        .iter()
        .map(|&(addr, port)| {
            let ns = ns.to_owned();
            thread::spawn(move || {
                enter_netns(&ns);
                TcpStream::connect_timeout(&SocketAddr::new(addr, port), PROBE_TIMEOUT).is_ok()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("probe thread")).collect()
}

/// The subset of `ports` on `addr` that accepts a connection from `ns`,
/// in the order given: easy to compare with `assert_eq!`.
pub fn reachable(ns: &str, addr: IpAddr, ports: &[u16]) -> Vec<u16> {
    let targets: Vec<_> = ports.iter().map(|&p| (addr, p)).collect();
    ports
        .iter()
        .zip(probe(ns, &targets))
        .filter(|(_, ok)| *ok)
        .map(|(p, _)| *p)
        .collect()
}

/// The three namespaces of one test. Deleted by name on drop.
pub struct Net {
    pub vps: String,
    pub admin: String,
    pub inet: String,
    created: Vec<String>,
}

impl Net {
    /// Builds the topology. `tag` appears in the names to tell tests apart
    /// in `ip netns list` when something is left behind.
    pub fn new(tag: &str) -> Net {
        require_root();
        let base = format!("bwk-{tag}-{}-{}", std::process::id(), next_id());
        let mut net = Net {
            vps: format!("{base}-vps"),
            admin: format!("{base}-admin"),
            inet: format!("{base}-inet"),
            created: Vec::new(),
        };
        for ns in [net.vps.clone(), net.admin.clone(), net.inet.clone()] {
            run_ok(Command::new("ip").args(["netns", "add", &ns]));
            net.created.push(ns.clone());
            ip(&ns, &["link", "set", "lo", "up"]);
        }
        // The veths are created inside vps with the peer placed straight into
        // the neighbour namespace, so the host namespace never sees them and
        // names only need to be unique per namespace (and <= 15 bytes).
        let (vps, admin, inet) = (net.vps.clone(), net.admin.clone(), net.inet.clone());
        for (peer_ns, here, v4, v6, peer_v4, peer_v6) in [
            (
                &admin,
                "bw-admin",
                "198.51.100.1/24",
                "2001:db8:10::1/64",
                "198.51.100.2/24",
                "2001:db8:10::2/64",
            ),
            (
                &inet,
                "bw-inet",
                "203.0.113.1/24",
                "2001:db8:20::1/64",
                "203.0.113.2/24",
                "2001:db8:20::2/64",
            ),
        ] {
            ip(
                &vps,
                &[
                    "link", "add", here, "type", "veth", "peer", "name", "bw-vps", "netns", peer_ns,
                ],
            );
            ip(&vps, &["addr", "add", v4, "dev", here]);
            ip(&vps, &["addr", "add", v6, "dev", here, "nodad"]);
            ip(&vps, &["link", "set", here, "up"]);
            ip(peer_ns, &["addr", "add", peer_v4, "dev", "bw-vps"]);
            ip(peer_ns, &["addr", "add", peer_v6, "dev", "bw-vps", "nodad"]);
            ip(peer_ns, &["link", "set", "bw-vps", "up"]);
        }
        // The kernel reports a new veth's carrier with a delay (linkwatch,
        // up to a second, longer on a loaded machine); until then its
        // packets go nowhere. Wait, so no test mistakes that for a firewall.
        for (ns, dev) in [
            (&vps, "bw-admin"),
            (&vps, "bw-inet"),
            (&admin, "bw-vps"),
            (&inet, "bw-vps"),
        ] {
            let up = poll(Duration::from_secs(10), Duration::from_millis(20), || {
                let r = run(Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", dev]));
                (r.stdout.contains("LOWER_UP") && r.stdout.contains("state UP")).then_some(())
            });
            assert!(up.is_some(), "{dev} in {ns} has no carrier after 10 s");
        }
        net
    }

    /// Starts TCP listeners in `ns` on `[::]` (dual-stack) that accept and
    /// close connections until the returned guard is dropped.
    pub fn listen(&self, ns: &str, ports: &[u16]) -> Listeners {
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, ports, stop2) = (ns.to_owned(), ports.to_vec(), stop.clone());
        let thread = thread::spawn(move || {
            enter_netns(&ns);
            let mut listeners = Vec::new();
            for p in &ports {
                match TcpListener::bind((Ipv6Addr::UNSPECIFIED, *p)).and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok(l)
                }) {
                    Ok(l) => listeners.push(l),
                    Err(e) => {
                        let _ = tx.send(Err(format!("bind [::]:{p} in {ns}: {e}")));
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(()));
            // Non-blocking accept polled with a short sleep, so the guard can
            // stop the thread without waking it through the network.
            while !stop2.load(Ordering::Relaxed) {
                for l in &listeners {
                    while let Ok((conn, _)) = l.accept() {
                        drop(conn);
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        match rx.recv() {
            Ok(Ok(())) => Listeners {
                stop,
                thread: Some(thread),
            },
            Ok(Err(e)) => panic!("listener: {e}"),
            Err(_) => panic!("listener thread died: {:?}", thread.join().err()),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            // Whatever still runs in a namespace we made is ours (the
            // daemon's wireguard-go children, above all): end it by PID.
            let pids = run(Command::new("ip").args(["netns", "pids", &ns]));
            let me = std::process::id().to_string();
            for pid in pids.stdout.split_whitespace().filter(|p| *p != me) {
                let _ = run(Command::new("kill").args(["-9", pid]));
            }
            let r = run(Command::new("ip").args(["netns", "del", &ns]));
            if !r.ok() {
                eprintln!("warning: could not delete namespace {ns}:\n{r}");
            }
        }
    }
}

fn ip(ns: &str, args: &[&str]) {
    run_ok(Command::new("ip").arg("-n").arg(ns).args(args));
}

/// TCP listeners started by [`Net::listen`]; stopped on drop.
pub struct Listeners {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One bulwarkd with its own temporary root, run inside the vps namespace.
pub struct Daemon {
    /// The daemon's `--root`.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    vps: String,
    profile: Option<PathBuf>,
    /// Flags added to every start (`--nft`, `--systemctl`, ...).
    args: Vec<String>,
    child: Option<Child>,
    starts: usize,
}

impl Daemon {
    /// Prepares a root directory; nothing runs until [`Daemon::start`].
    pub fn new(vps: &str) -> Daemon {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("bulwark-test-")
            .tempdir()
            .expect("tempdir");
        // Traversable by the unprivileged uids of the authorisation tests.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod root");
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("profiles")).expect("mkdir profiles");
        fs::set_permissions(root.join("profiles"), fs::Permissions::from_mode(0o755)).expect("chmod profiles");
        Daemon {
            root,
            _dir: dir,
            vps: vps.to_owned(),
            profile: None,
            args: Vec::new(),
            child: None,
            starts: 0,
        }
    }

    /// Adds flags to bulwarkd's command line for this and every later start
    /// (the daemon builder: `d.arg("--nft").arg(path)`).
    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut Daemon {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("run/bulwark/bulwarkd.sock")
    }

    /// Runs this and every later start with `--nft` pointing at a shell
    /// wrapper: `script` first (it sees nft's arguments as `$@`), then the
    /// real nft with the same arguments.
    pub fn wrap_nft(&mut self, script: &str) {
        let wrapper = self.root.join("nft-wrapper");
        fs::write(&wrapper, format!("#!/bin/sh\n{script}\nexec /usr/sbin/nft \"$@\"\n")).expect("write nft wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod nft wrapper");
        self.arg("--nft").arg(&wrapper);
    }

    /// `<root>/var/lib/bulwark`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("var/lib/bulwark")
    }

    fn log_path(&self, stream: &str) -> PathBuf {
        self.root.join(format!("bulwarkd.{stream}"))
    }

    /// Writes a profile to `<root>/profiles/<name>.toml`, readable by everyone.
    pub fn write_profile(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join("profiles").join(format!("{name}.toml"));
        fs::write(&path, text).expect("write profile");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod profile");
        path
    }

    /// Starts bulwarkd with `profile` as boot profile (written to
    /// `<root>/etc/bulwark/profile.toml`), or with none (the embedded default),
    /// and waits until `bulwarkctl status` succeeds.
    pub fn start(&mut self, profile: Option<&str>) {
        assert!(self.child.is_none(), "bulwarkd is already running");
        if let Some(text) = profile {
            let path = self.root.join("etc/bulwark/profile.toml");
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir etc/bulwark");
            fs::write(&path, text).expect("write boot profile");
            self.profile = Some(path);
        }
        self.spawn();
    }

    /// Starts bulwarkd again with the arguments of the last [`Daemon::start`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a stopped daemon: kill9() first");
        self.spawn();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let open = |stream: &str| {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path(stream))
                .expect("log file");
            writeln!(f, "===== start {} =====", self.starts).expect("write log");
            f
        };
        let (out, err) = (open("stdout"), open("stderr"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.vps])
            .arg(bin("bulwarkd"))
            .arg("--root")
            .arg(&self.root)
            .args([
                "--read-group",
                &READ_GID.to_string(),
                "--admin-group",
                &ADMIN_GID.to_string(),
            ]);
        if let Some(p) = &self.profile {
            cmd.arg("--profile").arg(p);
        }
        cmd.args(&self.args);
        // `ip netns exec` execs in place, so the child PID is bulwarkd's.
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let text = describe(&cmd);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{text}`: {e}")));

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().expect("child").try_wait().expect("try_wait") {
                self.child = None;
                panic!("bulwarkd exited during start-up ({status}):\n$ {text}\n{}", self.logs());
            }
            let r = self.ctl(&["status"]);
            if r.ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "bulwarkd did not answer `status` within {START_TIMEOUT:?}:\n$ {text}\nlast attempt:\n{r}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Simulates a reboot for the firewall: the daemon is killed with
    /// SIGKILL, whatever it ran in the vps namespace (wireguard-go) too, and
    /// table inet bulwark is deleted, as a kernel starting afresh has none.
    pub fn crash_and_reboot(&mut self) {
        self.kill9();
        let pids = run(Command::new("ip").args(["netns", "pids", &self.vps]));
        let me = std::process::id().to_string();
        for pid in pids.stdout.split_whitespace().filter(|p| *p != me) {
            let _ = run(Command::new("kill").args(["-9", pid]));
        }
        let _ = self.nft(&["delete", "table", "inet", "bulwark"]);
        assert!(
            self.ruleset().is_none(),
            "table inet bulwark survived the simulated reboot"
        );
    }

    /// Whether the daemon process is still alive.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// bulwarkd's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM to bulwarkd (by PID), as `systemctl stop` sends; asserts
    /// that it exits with status 0 within 30 s (else kills it and fails).
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("bulwarkd is not running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM bulwarkd");
        let exited = poll(Duration::from_secs(30), Duration::from_millis(20), || {
            child.try_wait().expect("try_wait")
        });
        let Some(status) = exited else {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = child.wait();
            panic!("bulwarkd did not exit within 30 s of SIGTERM\n{}", self.logs());
        };
        assert!(
            status.success(),
            "bulwarkd exited with {status} on SIGTERM\n{}",
            self.logs()
        );
    }

    /// SIGKILL to bulwarkd (by PID), then reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
            let _ = kill(pid, Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    fn ctl_cmd(&self) -> Command {
        let mut cmd = Command::new(bin("bulwarkctl"));
        // Keep the caller's environment from changing the CLI's behaviour:
        // `apply` refuses rules that would cut an SSH_CONNECTION it runs over.
        cmd.env_remove("SSH_CONNECTION").env_remove("BULWARK_SOCKET");
        cmd
    }

    /// `bulwarkctl --socket <socket> ARGS` as root.
    pub fn ctl(&self, args: &[&str]) -> Ran {
        run(self.ctl_cmd().arg("--socket").arg(self.socket()).args(args))
    }

    /// `bulwarkctl --socket <socket> ARGS` as root with extra environment variables.
    pub fn ctl_env(&self, env: &[(&str, &str)], args: &[&str]) -> Ran {
        let mut cmd = self.ctl_cmd();
        cmd.envs(env.iter().copied())
            .arg("--socket")
            .arg(self.socket())
            .args(args);
        run(&mut cmd)
    }

    /// Like [`Daemon::ctl`], panicking (with the daemon's log) unless it succeeds.
    pub fn ctl_ok(&self, args: &[&str]) -> Ran {
        let r = self.ctl(args);
        assert!(r.ok(), "bulwarkctl failed:\n{r}\n{}", self.logs());
        r
    }

    /// `bulwarkctl --json ARGS`, parsed.
    pub fn ctl_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let r = self.ctl_ok(&all);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("`--json` output is not the expected JSON ({e}):\n{r}"))
    }

    /// `bulwarkctl ARGS` as another uid with the given supplementary groups.
    pub fn ctl_as(&self, uid: u32, gid: u32, groups: &[u32], args: &[&str]) -> Ran {
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &gid.to_string(),
            "--groups",
            &groups.join(","),
            "--",
        ])
        .arg(bin("bulwarkctl"))
        .arg("--socket")
        .arg(self.socket())
        .args(args)
        .env_remove("SSH_CONNECTION")
        .env_remove("BULWARK_SOCKET");
        run(&mut cmd)
    }

    /// `nft ARGS` inside the vps namespace.
    pub fn nft(&self, args: &[&str]) -> Ran {
        run(Command::new("ip").args(["netns", "exec", &self.vps, "nft"]).args(args))
    }

    /// `nft -f -` with `script` inside the vps namespace.
    pub fn nft_script(&self, script: &str) -> Ran {
        run_with_stdin(
            Command::new("ip").args(["netns", "exec", &self.vps, "nft", "-f", "-"]),
            script.as_bytes(),
        )
    }

    /// `nft list table inet bulwark` in the vps namespace; `None` when the table is absent.
    pub fn ruleset(&self) -> Option<String> {
        self.table("inet", "bulwark")
    }

    /// `nft list table FAMILY NAME` in the vps namespace; `None` when absent.
    pub fn table(&self, family: &str, name: &str) -> Option<String> {
        let r = self.nft(&["list", "table", family, name]);
        if r.ok() {
            return Some(r.stdout);
        }
        assert!(
            r.stderr.contains("No such file or directory"),
            "nft failed unexpectedly:\n{r}"
        );
        None
    }

    /// The live ruleset, panicking when the table is absent.
    pub fn ruleset_present(&self) -> String {
        self.ruleset()
            .unwrap_or_else(|| panic!("table inet bulwark is absent\n{}", self.logs()))
    }

    /// Waits up to `timeout` for the live ruleset to equal `want`.
    pub fn wait_ruleset(&self, want: Option<&str>, timeout: Duration) -> Result<Duration, Option<String>> {
        let t0 = Instant::now();
        let mut last = None;
        let hit = poll(timeout, Duration::from_millis(100), || {
            let now = self.ruleset();
            if now.as_deref() == want {
                Some(t0.elapsed())
            } else {
                last = Some(now);
                None
            }
        });
        hit.ok_or_else(|| last.flatten())
    }

    /// `apply FILE` (with extra flags) through `--json`, parsed.
    pub fn apply(&self, file: &Path, flags: &[&str]) -> ApplyResponse {
        let file = file.to_str().expect("utf-8 path");
        let mut args = vec!["apply", file];
        args.extend_from_slice(flags);
        self.ctl_json(&args)
    }

    pub fn status(&self) -> Status {
        self.ctl_json(&["status"])
    }

    pub fn generations(&self) -> Vec<GenerationInfo> {
        self.ctl_json(&["generations"])
    }

    pub fn audit_tail(&self, n: usize) -> Vec<AuditEvent> {
        self.ctl_json(&["audit", "tail", "-n", &n.to_string()])
    }

    /// `curl` against the daemon's socket; returns the HTTP status and body.
    pub fn http(&self, method: &str, path: &str, body: Option<&Path>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "15", "--unix-socket"])
            .arg(self.socket())
            .args(["-X", method, "-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.arg("--data-binary").arg(format!("@{}", b.display()));
            cmd.args(["-H", "content-type: application/json"]);
        }
        cmd.arg(format!("http://localhost{path}"));
        let r = run(&mut cmd);
        let (body, code) = r.stdout.rsplit_once('\n').unwrap_or(("", r.stdout.as_str()));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl printed no HTTP status:\n{r}"));
        (code, body.to_owned())
    }

    /// The daemon's captured stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read = |s: &str| fs::read_to_string(self.log_path(s)).unwrap_or_default();
        format!(
            "--- bulwarkd stderr ({}) ---\n{}\n--- bulwarkd stdout ---\n{}\n--- end of bulwarkd output ---",
            self.root.display(),
            tail(&read("stderr"), 80),
            tail(&read("stdout"), 20)
        )
    }

    /// Files under the state directory whose name contains `.tmp`: leftovers of
    /// interrupted atomic writes.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.state_dir()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if e.file_name().to_string_lossy().contains(".tmp") {
                    found.push(p);
                }
            }
        }
        found
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill9();
    }
}

/// Namespaces plus a daemon: what most tests need. The daemon is dropped
/// (killed) before the namespaces are deleted.
pub struct Lab {
    pub daemon: Daemon,
    pub net: Net,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        require_root();
        let net = Net::new(tag);
        let daemon = Daemon::new(&net.vps);
        Lab { daemon, net }
    }
}

/// A small xorshift generator: reproducible randomness without a dependency.
/// The seed comes from `BULWARK_TEST_SEED` or the clock, and is printed.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("BULWARK_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                nanos ^ u64::from(std::process::id())
            });
        eprintln!("random seed: {seed} (set BULWARK_TEST_SEED={seed} to repeat)");
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
