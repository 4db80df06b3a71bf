//! Helpers shared by the K3s and monitoring tests (included with `#[path]`):
//! a bulwarkd started with `--systemctl`, the K3s stand-in, the systemctl
//! stand-in, and the profile they use. Every process here is stopped by PID
//! on drop.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bulwark_tests::{bin, Daemon, Ran, ADMIN_GID, READ_GID};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The server's VPN address in every profile here (each test has its own namespace).
pub const VPN_IP: &str = "10.8.0.1";

/// A WireGuard interface name unique to this process and call: the
/// userspace backend's UAPI sockets live in /var/run/wireguard, which every
/// namespace shares. At most 15 bytes.
pub fn wg_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wk{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A profile with the VPN, K3s bound to it, and optionally the metrics listener.
pub fn profile(wg: &str, tls_san: &[&str], listen: Option<&str>) -> String {
    let sans: Vec<String> = tls_san.iter().map(|s| format!("{s:?}")).collect();
    let mut p = format!(
        "[profile]
name = \"k3s-test\"
drift_interval = \"1s\"

[firewall]
admin_cidrs = [\"198.51.100.0/24\", \"2001:db8:10::/64\"]
admin_tcp = [22]
vpn_tcp = [6443, 10250, 9469]

[wireguard]
interface = \"{wg}\"
address = \"{VPN_IP}/24\"
endpoint = \"203.0.113.1:51820\"
backend = \"userspace\"

[k3s]
bind = \"vpn\"
tls_san = [{}]
restart = true
",
        sans.join(", ")
    );
    if let Some(l) = listen {
        p.push_str(&format!("\n[monitoring]\nlisten = \"{l}\"\n"));
    }
    p
}

/// Makes `root` look like a systemd host with K3s installed, so bulwarkd
/// reloads and restarts through the systemctl stand-in.
pub fn fake_systemd_with_k3s(root: &Path) {
    fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    fs::write(
        root.join("usr/local/bin/k3s"),
        "#!/bin/sh\n# not K3s: only its presence is checked\nexit 1\n",
    )
    .unwrap();
}

/// The systemctl stand-in: a script that appends its arguments, one call per
/// line, to `log`.
pub struct SystemctlStandIn {
    pub path: PathBuf,
    pub log: PathBuf,
}

impl SystemctlStandIn {
    pub fn new(root: &Path) -> SystemctlStandIn {
        let path = root.join("systemctl-standin");
        let log = root.join("systemctl-standin.log");
        fs::write(
            &path,
            format!(
                "#!/bin/sh\n# systemctl stand-in: records its arguments instead of acting\necho \"$*\" >> '{}'\n",
                log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        SystemctlStandIn { path, log }
    }

    /// Every call so far, one argument string each.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn restarts(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.contains("restart") && c.contains("k3s.service"))
            .count()
    }
}

/// bulwarkd in the vps namespace with the harness's root and socket, plus
/// `--systemctl`. The harness's `Daemon` keeps providing root, `ctl` and logs.
pub struct Bulwarkd {
    child: Option<Child>,
}

impl Bulwarkd {
    pub fn start(d: &Daemon, vps: &str, boot_profile: &str, systemctl: &Path) -> Bulwarkd {
        let profile = d.root.join("etc/bulwark/profile.toml");
        fs::create_dir_all(profile.parent().unwrap()).unwrap();
        fs::write(&profile, boot_profile).unwrap();
        // The harness reads these two files for its failure messages.
        let log = |s: &str| {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.root.join(format!("bulwarkd.{s}")))
                .unwrap();
            writeln!(f, "===== start (with --systemctl) =====").unwrap();
            f
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", vps])
            .arg(bin("bulwarkd"))
            .arg("--root")
            .arg(&d.root)
            .arg("--profile")
            .arg(&profile)
            .arg("--systemctl")
            .arg(systemctl)
            .args([
                "--read-group",
                &READ_GID.to_string(),
                "--admin-group",
                &ADMIN_GID.to_string(),
            ])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"));
        let child = cmd.spawn().expect("spawn bulwarkd");
        let mut me = Bulwarkd { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = me.child.as_mut().unwrap().try_wait().unwrap() {
                me.child = None;
                panic!("bulwarkd exited during start-up ({status}):\n{}", d.logs());
            }
            if d.ctl(&["status"]).ok() {
                return me;
            }
            assert!(
                Instant::now() < deadline,
                "bulwarkd did not answer within 30s:\n{}",
                d.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Bulwarkd {
    /// SIGKILL by PID, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Bulwarkd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The K3s stand-in (tests/k3s-standin/k3s-standin) running in `vps`.
pub struct K3sStandIn {
    child: Child,
    pub listening: Vec<String>,
}

impl K3sStandIn {
    /// Starts it and waits until it listens; `bind_override` simulates a K3s
    /// that ignores the drop-in.
    pub fn start(vps: &str, root: &Path, bind_override: Option<&str>) -> K3sStandIn {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k3s-standin/k3s-standin");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", vps, "python3"])
            .arg(&script)
            .arg("--root")
            .arg(root);
        if let Some(a) = bind_override {
            cmd.args(["--bind-override", a]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the K3s stand-in");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).take(2).collect();
            let _ = tx.send(lines);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(lines) if lines.len() == 2 => K3sStandIn {
                child,
                listening: lines,
            },
            other => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the K3s stand-in did not start listening ({other:?}):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

impl Drop for K3sStandIn {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// `bulwarkctl health` until its exit code is `want` (health is re-read from
/// the kernel on every call; the poll covers a daemon that caches it briefly).
pub fn health_until(d: &Daemon, args: &[&str], want: i32) -> Ran {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut all = vec!["health"];
        all.extend_from_slice(args);
        let r = d.ctl(&all);
        if r.code == Some(want) || Instant::now() >= deadline {
            return r;
        }
        thread::sleep(Duration::from_millis(250));
    }
}
