//! What a user would run instead of Bulwark: ufw and firewalld, each in a
//! namespace of its own, with its configuration copied under a temporary
//! directory so nothing under /etc changes (firewalld also on a private
//! D-Bus). Both hold the same admin networks as Bulwark's rows: ufw as one
//! rule per network, firewalld as an ipset behind one rich rule.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::{fail, run, timed, Netns};
use crate::{cidrs, ms, Samples, EXTRA};

/// What one manager took at one size: full reload, one network added, removed.
pub struct Figures {
    pub n: usize,
    pub reload: Samples,
    pub add: Samples,
    pub remove: Samples,
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    }
    fs::write(path, text).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
}

/// `cp -a FROM INTO/` (INTO created).
fn copy_into(from: &str, into: &Path) {
    fs::create_dir_all(into).unwrap_or_else(|e| fail(&format!("{}: {e}", into.display())));
    run(&["cp", "-a", from, &format!("{}/", into.display())]);
}

fn host(cidr: &str) -> &str {
    cidr.trim_end_matches("/32")
}

/// ufw at `n` admin networks: `ufw-init force-reload` (what `ufw reload`
/// and boot run) and `ufw allow` / `ufw delete allow` of one network.
pub fn ufw(sizes: &[usize], runs: usize) -> Vec<Figures> {
    let _ns = Netns::enter("ufw");
    let mut out = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
        let d = dir.path();
        copy_into("/etc/ufw", &d.join("etc"));
        let conf = fs::read_to_string("/etc/ufw/ufw.conf").unwrap_or_default();
        write(
            &d.join("etc/ufw/ufw.conf"),
            &conf
                .replace("ENABLED=no", "ENABLED=yes")
                .replace("LOGLEVEL=low", "LOGLEVEL=off"),
        );
        // No sysctl changes: the namespace's network stack is not the point.
        let defaults = fs::read_to_string("/etc/default/ufw").unwrap_or_default();
        let defaults: String = defaults
            .lines()
            .map(|l| if l.starts_with("IPT_SYSCTL=") { "IPT_SYSCTL=" } else { l })
            .map(|l| format!("{l}\n"))
            .collect();
        write(&d.join("etc/default/ufw"), &defaults);
        fs::create_dir_all(d.join("lib/ufw")).unwrap_or_else(|e| fail(&e.to_string()));
        let mut rules = String::new();
        for c in cidrs(n) {
            let c = host(&c);
            let _ = write!(
                rules,
                "\n### tuple ### allow tcp 22 0.0.0.0/0 any {c} in\n-A ufw-user-input -p tcp --dport 22 -s {c} -j ACCEPT\n"
            );
        }
        let user = fs::read_to_string("/etc/ufw/user.rules").unwrap_or_default();
        write(
            &d.join("etc/ufw/user.rules"),
            &user.replacen(
                "### RULES ###\n",
                &format!("### RULES ###\n{rules}\n### END RULES ###\n"),
                1,
            ),
        );
        let datadir = d.display().to_string();
        let init = |what: &str| drop(run(&["/lib/ufw/ufw-init", "--datadir", &datadir, what]));
        init("start");
        let flag = format!("--datadir={datadir}");
        let rule = ["from", host(EXTRA), "to", "any", "port", "22", "proto", "tcp"];
        let ufw = |verb: &[&str]| {
            let mut args = vec!["ufw", flag.as_str()];
            args.extend_from_slice(verb);
            args.extend_from_slice(&rule);
            drop(run(&args));
        };
        let runs = if n >= 50_000 { runs.min(3) } else { runs };
        let reload = Samples::of(runs, || timed(|| init("force-reload")));
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            add.push(timed(|| ufw(&["allow"])));
            remove.push(timed(|| ufw(&["delete", "allow"])));
        }
        init("stop");
        out.push(Figures {
            n,
            reload,
            add: Samples(add),
            remove: Samples(remove),
        });
    }
    out
}

/// A process ended by its PID when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > timeout {
            fail(&format!("{what} within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private system bus in `dir` for one firewalld; its address.
fn private_bus(dir: &Path) -> (Killed, String) {
    let sock = dir.join("bus.sock");
    let conf = dir.join("bus.conf");
    write(
        &conf,
        &format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  <type>system</type>\n  \
             <listen>unix:path={}</listen>\n  <auth>EXTERNAL</auth>\n  <policy context=\"default\">\n    \
             <allow user=\"root\"/>\n    <allow own=\"*\"/>\n    <allow send_destination=\"*\"/>\n    \
             <allow receive_sender=\"*\"/>\n  </policy>\n</busconfig>\n",
            sock.display()
        ),
    );
    let child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("dbus-daemon: {e}")));
    let bus = Killed(child);
    wait_until("the private bus came up", Duration::from_secs(10), || sock.exists());
    (bus, format!("unix:path={}", sock.display()))
}

/// firewalld at `n` admin networks in an ipset: `firewall-cmd --reload`
/// and a runtime `--add-entry` / `--remove-entry` of one network. Also
/// returns how long firewalld took to start with them.
pub fn firewalld(sizes: &[usize], runs: usize) -> Vec<(Figures, Duration)> {
    let _ns = Netns::enter("fwd");
    let mut out = Vec::new();
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
        let d = dir.path();
        let (_bus, address) = private_bus(d);
        copy_into("/etc/firewalld", d);
        let config = d.join("firewalld");
        let mut entries = String::with_capacity(n * 32);
        for c in cidrs(n) {
            let _ = writeln!(entries, "  <entry>{c}</entry>");
        }
        write(
            &config.join("ipsets/admin.xml"),
            &format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ipset type=\"hash:net\">\n{entries}</ipset>\n"),
        );
        write(
            &config.join("zones/public.xml"),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Public</short>\n  \
             <rule family=\"ipv4\"><source ipset=\"admin\"/><port port=\"22\" protocol=\"tcp\"/><accept/></rule>\n\
             </zone>\n",
        );
        let log = fs::File::create(d.join("firewalld.log")).unwrap_or_else(|e| fail(&e.to_string()));
        let started = Instant::now();
        let daemon = Killed(
            Command::new("firewalld")
                .args(["--nofork", "--nopid", "--log-target", "console", "--system-config"])
                .arg(&config)
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap_or_else(|e| fail(&e.to_string())))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| fail(&format!("firewalld: {e}"))),
        );
        let cmd = |args: &[&str]| {
            Command::new("firewall-cmd")
                .args(args)
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let firewall_cmd = |args: &[&str]| {
            if !cmd(args) {
                let log = fs::read_to_string(d.join("firewalld.log")).unwrap_or_default();
                fail(&format!("firewall-cmd {args:?} failed at {n} networks:\n{log}"));
            }
        };
        wait_until("firewalld was running", Duration::from_secs(600), || cmd(&["--state"]));
        let start = started.elapsed();
        let runs = if n >= 50_000 { runs.min(3) } else { runs };
        let reload = Samples::of(runs, || timed(|| firewall_cmd(&["--reload"])));
        let add_entry = format!("--add-entry={EXTRA}");
        let remove_entry = format!("--remove-entry={EXTRA}");
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            add.push(timed(|| firewall_cmd(&["--ipset=admin", &add_entry])));
            remove.push(timed(|| firewall_cmd(&["--ipset=admin", &remove_entry])));
        }
        drop(daemon);
        out.push((
            Figures {
                n,
                reload,
                add: Samples(add),
                remove: Samples(remove),
            },
            start,
        ));
    }
    out
}

/// `| n | reload | add | remove |` with each as a median.
pub fn row(f: &Figures, extra: &str) -> String {
    format!(
        "| {} | {} | {} | {} |{extra}",
        f.n,
        ms(f.reload.median()),
        ms(f.add.median()),
        ms(f.remove.median())
    )
}
