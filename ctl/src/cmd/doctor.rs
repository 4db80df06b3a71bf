//! `bulwarkctl doctor`: what commonly goes wrong, each with its fix, in the
//! exit codes of `health`. Works without the daemon: what only the daemon
//! can tell (module state) is asked for when it answers.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use bulwark_model::api::{Check, Health, Level, Status};
use bulwark_model::coexist;

use super::{emit, emit_json, Ctx};
use crate::error;
use crate::output;

fn check(name: &str, level: Level, reason: String) -> Check {
    Check {
        name: name.to_owned(),
        module: "doctor".to_owned(),
        level,
        reason,
    }
}

/// Run `program args` with a small environment; its stdout, or why not.
fn output_of(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn in_path(program: &str) -> Option<PathBuf> {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(program))
    .find(|p| p.is_file())
}

fn wireguard() -> Check {
    let kernel = Path::new("/sys/module/wireguard").exists();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let module_file = ["wireguard.ko", "wireguard.ko.xz", "wireguard.ko.zst"].iter().any(|f| {
        Path::new("/lib/modules")
            .join(release.trim())
            .join("kernel/drivers/net/wireguard")
            .join(f)
            .exists()
    });
    match (kernel || module_file, in_path("wireguard-go")) {
        (true, _) => check(
            "wireguard",
            Level::Ok,
            if kernel {
                "kernel WireGuard is loaded".to_owned()
            } else {
                "kernel WireGuard module available (loaded on first use)".to_owned()
            },
        ),
        (false, Some(p)) => check(
            "wireguard",
            Level::Ok,
            format!("no kernel module; backend \"auto\" uses {}", p.display()),
        ),
        (false, None) => check(
            "wireguard",
            Level::Warning,
            "neither kernel WireGuard nor wireguard-go: a [wireguard] section cannot come up; install the \
             wireguard-go package (or a kernel with the wireguard module)"
                .to_owned(),
        ),
    }
}

fn nft() -> Check {
    match output_of("nft", &["--version"]) {
        Ok(v) => {
            let version = v
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_start_matches('v')
                .to_owned();
            let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
            // JSON input (nft -j -f) and interval sets as bulwarkd sends them.
            if parts.as_slice() >= [0, 9, 3].as_slice() {
                check("nft", Level::Ok, format!("nft {version}"))
            } else {
                check(
                    "nft",
                    Level::Critical,
                    format!("nft {version} is older than 0.9.3, which bulwarkd's JSON needs; upgrade nftables"),
                )
            }
        }
        Err(e) => check(
            "nft",
            Level::Critical,
            format!("{e}; install the nftables package (bulwarkd runs /usr/sbin/nft)"),
        ),
    }
}

fn other_managers(root: &Path) -> Check {
    let read = |p: &str| std::fs::read_to_string(root.join(p.trim_start_matches('/'))).ok();
    let (chains, listed) = match output_of("nft", &["-j", "list", "chains"]) {
        Ok(text) => (
            serde_json::from_str(&text).map_or_else(|_| Vec::new(), |v| coexist::chains_of_listing(&v)),
            true,
        ),
        Err(_) => (Vec::new(), false),
    };
    let ufw_rules = coexist::ufw_tables(&chains)
        .iter()
        .filter_map(|(f, t)| output_of("nft", &["-j", "list", "table", f, t]).ok())
        .filter_map(|text| serde_json::from_str(&text).ok())
        .map(|v: serde_json::Value| coexist::ufw_rules_of_listing(&v))
        .sum();
    let legacy_tables = ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let observed = coexist::Observed {
        ufw_conf: read("/etc/ufw/ufw.conf"),
        nftables_conf: read("/etc/nftables.conf"),
        nftables_enabled: root
            .join("etc/systemd/system/sysinit.target.wants/nftables.service")
            .exists(),
        firewalld_enabled: root
            .join("etc/systemd/system/multi-user.target.wants/firewalld.service")
            .exists(),
        chains,
        ufw_rules,
        legacy_tables,
    };
    let found = coexist::findings(&observed);
    match (found.is_empty(), listed) {
        (false, _) => check(
            "firewall_managers",
            Level::Warning,
            found.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | "),
        ),
        (true, true) => check(
            "firewall_managers",
            Level::Ok,
            "no other firewall manager found".to_owned(),
        ),
        (true, false) => check(
            "firewall_managers",
            Level::Warning,
            "cannot list nftables chains (run doctor as root); files show no other manager".to_owned(),
        ),
    }
}

/// The socket's owner and mode, and whether this user may use it.
fn socket(path: &Path) -> Check {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return check(
                "socket",
                Level::Critical,
                format!(
                    "{}: {e}; is bulwarkd running? (systemctl status bulwarkd)",
                    path.display()
                ),
            )
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    let group = group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string());
    let mut problems = Vec::new();
    if mode & 0o007 != 0 {
        problems.push(format!(
            "mode {mode:o} lets every local user connect; bulwarkd makes it 0660"
        ));
    }
    if group != "bulwark" {
        problems.push(format!(
            "group {group}, not bulwark: readers in group bulwark cannot connect (reinstall the package to create the group)"
        ));
    }
    let uid = nix_uid();
    let mine = own_groups();
    let member = uid == 0 || mine.iter().any(|g| g == "bulwark" || g == "bulwark-admin");
    if !member {
        problems.push(
            "you are neither root nor in group bulwark or bulwark-admin: `adduser $USER bulwark` (read) or \
             bulwark-admin (change), then log in again"
                .to_owned(),
        );
    }
    if problems.is_empty() {
        check(
            "socket",
            Level::Ok,
            format!("{} mode {mode:o} group {group}; you may use it", path.display()),
        )
    } else {
        check(
            "socket",
            Level::Warning,
            format!("{}: {}", path.display(), problems.join("; ")),
        )
    }
}

fn group_name(gid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/group").ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        f.next();
        (f.next()?.parse::<u32>().ok()? == gid).then(|| name.to_owned())
    })
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// Names of this process's groups, from /proc/self/status.
fn own_groups() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .filter_map(group_name)
        .collect()
}

/// Whether the clock is synchronised, as systemd's timedatectl tells; a
/// check that cannot tell says so as a WARNING rather than hiding the rest
/// of the report behind UNKNOWN.
fn clock() -> Check {
    match output_of("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]) {
        Ok(v) if v.trim() == "yes" => check("clock", Level::Ok, "synchronised (NTP)".to_owned()),
        Ok(_) => check(
            "clock",
            Level::Warning,
            "not synchronised: confirm deadlines, peer expiry and audit times follow this clock; enable \
             systemd-timesyncd or chrony"
                .to_owned(),
        ),
        Err(_) => check(
            "clock",
            Level::Warning,
            "cannot tell whether the clock is synchronised (timedatectl does not answer: no systemd?); make \
             sure NTP keeps it, confirm deadlines and peer expiry follow it"
                .to_owned(),
        ),
    }
}

/// What the daemon says, when it answers: its own checks for modules the
/// doctor has no local view of (IMA, Vault), and the status for the root.
fn daemon(ctx: &Ctx<'_>) -> (Vec<Check>, Option<Status>) {
    let client = match ctx.client() {
        Ok(c) => c,
        Err(e) => return (vec![check("daemon", Level::Critical, e.to_string())], None),
    };
    let status: Status = match client.get("/v1/status").and_then(|a| a.decode()) {
        Ok(s) => s,
        Err(e) => {
            return (
                vec![check(
                    "daemon",
                    Level::Critical,
                    format!("{e}; start it with `systemctl start bulwarkd` and see `journalctl -u bulwarkd`"),
                )],
                None,
            )
        }
    };
    let mut out = vec![check(
        "daemon",
        Level::Ok,
        format!(
            "bulwarkd {} answers; generation {}",
            status.version,
            status
                .generation
                .map_or_else(|| "none (failsafe)".to_owned(), |g| g.to_string())
        ),
    )];
    for m in status
        .modules
        .iter()
        .filter(|m| m.managed && matches!(m.module.as_str(), "ima" | "vault"))
    {
        out.push(Check {
            name: m.module.clone(),
            module: m.module.clone(),
            level: m.level,
            reason: format!("{} (bulwarkctl health --check {} for details)", m.summary, m.module),
        });
    }
    (out, Some(status))
}

pub fn run(ctx: &Ctx<'_>, out: &mut dyn Write, root: Option<&Path>) -> u8 {
    let (mut checks, status) = daemon(ctx);
    let root = root
        .map(Path::to_path_buf)
        .or_else(|| status.map(|s| PathBuf::from(s.root)))
        .unwrap_or_else(|| PathBuf::from("/"));
    checks.push(socket(ctx.socket));
    checks.push(wireguard());
    checks.push(nft());
    checks.push(other_managers(&root));
    checks.push(clock());
    let h = Health::from_checks(checks);
    let written = if ctx.json {
        emit_json(out, &h)
    } else {
        emit(out, &output::health(&h)).map_err(Into::into)
    };
    match written.and_then(|()| out.flush().map_err(Into::into)) {
        Ok(()) => u8::try_from(h.level.exit_code()).unwrap_or(error::UNREACHABLE),
        Err(e) if error::is_broken_pipe(&e) => error::OK,
        Err(e) => {
            error::report(&e, ctx.json);
            error::UNREACHABLE
        }
    }
}
