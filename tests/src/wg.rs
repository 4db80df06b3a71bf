//! The admin end of a WireGuard tunnel for tests: a wireguard-go in a test
//! namespace, configured from a client config bulwarkctl printed, killed by
//! PID when dropped.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{poll, run_ok};

/// Interface names unique to this process and call (IFNAMSIZ: 15 bytes):
/// `/var/run/wireguard` is shared by every network namespace.
pub fn names(tag: &str) -> (String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::process::id() % 10000;
    (format!("{tag}s{p}x{n}"), format!("{tag}c{p}x{n}"))
}

/// PIDs of `wireguard-go -f IFACE`.
pub fn wg_go_pids(iface: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if args.len() >= 2 && args[0].ends_with(b"wireguard-go") && args.last() == Some(&iface.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Stops the wireguard-go serving an interface when dropped (the server's,
/// which a daemon killed with SIGKILL would leave running).
pub struct Reaper(pub String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in wg_go_pids(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = poll(Duration::from_secs(3), Duration::from_millis(20), || {
            wg_go_pids(&self.0).is_empty().then_some(())
        });
        for pid in wg_go_pids(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.0));
    }
}

/// A client wireguard-go in namespace `ns`.
pub struct Client {
    ns: String,
    iface: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Client {
    pub fn new(ns: &str, iface: &str) -> Client {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "wireguard-go", "-f", iface])
            .env_remove("LOG_LEVEL")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wireguard-go (apt install wireguard-go)");
        let sock = PathBuf::from(format!("/var/run/wireguard/{iface}.sock"));
        let up = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            UnixStream::connect(&sock).is_ok().then_some(())
        });
        assert!(up.is_some(), "client wireguard-go did not open {}", sock.display());
        Client {
            ns: ns.to_owned(),
            iface: iface.to_owned(),
            child,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// What an admin does with the printed config: `wg setconf` of its
    /// stripped form, its Address, routes for its AllowedIPs.
    pub fn up(&self, config: &str) {
        let file = self.dir.path().join("client.conf");
        fs::write(&file, strip(config)).expect("write client config");
        let (ns, iface) = (self.ns.as_str(), self.iface.as_str());
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", ns, "wg", "setconf", iface])
                .arg(&file),
        );
        run_ok(Command::new("ip").args(["-n", ns, "addr", "flush", "dev", iface]));
        run_ok(Command::new("ip").args(["-n", ns, "addr", "add", field(config, "Address"), "dev", iface]));
        run_ok(Command::new("ip").args(["-n", ns, "link", "set", iface, "up"]));
        for net in field(config, "AllowedIPs").split(',') {
            run_ok(Command::new("ip").args(["-n", ns, "route", "replace", net.trim(), "dev", iface]));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let t = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `wg-quick strip` removes: keys `wg setconf` does not know.
pub fn strip(config: &str) -> String {
    let mut out: String = config
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
            !matches!(
                key.as_str(),
                "address" | "dns" | "mtu" | "table" | "preup" | "postup" | "predown" | "postdown" | "saveconfig"
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// The value of `key = value` in a config.
pub fn field<'a>(config: &'a str, key: &str) -> &'a str {
    config
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{key} missing from the client config:\n{config}"))
}
