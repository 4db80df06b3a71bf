//! SSH lock-out guard: refuse to apply a profile that would drop the SSH
//! connection `bulwarkctl` itself runs in.
//!
//! A default-deny firewall applied over SSH is the classic way to lose a
//! remote host, so `apply` checks the profile against the session in
//! `SSH_CONNECTION` before sending it. The decision is a pure function of that
//! string, the profile and the flags; only [`ssh_connection`] looks at the
//! process environment.

use std::net::IpAddr;

use bulwark_model::profile::Firewall;

/// The parts of `SSH_CONNECTION` the guard needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshSession {
    pub client: IpAddr,
    pub server_port: u16,
}

/// Parse `SSH_CONNECTION` ("client_ip client_port server_ip server_port").
pub fn parse(value: &str) -> Result<SshSession, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [client, _client_port, _server, server_port] = fields[..] else {
        return Err(format!("expected 4 fields, found {}", fields.len()));
    };
    // sshd may append an interface scope to link-local addresses.
    let client = client.split('%').next().unwrap_or(client);
    let client: IpAddr = client.parse().map_err(|_| format!("{client:?} is not an IP address"))?;
    // On a dual-stack socket IPv4 clients appear as ::ffff:a.b.c.d, but
    // netfilter sees them as IPv4.
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    let server_port = server_port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{server_port:?} is not a port number"))?;
    Ok(SshSession { client, server_port })
}

/// What `apply` should do about the SSH session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// Go ahead, but tell the operator this first.
    Warn(String),
    Refuse(String),
}

/// The flags of `apply` that bear on the guard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub force: bool,
    pub confirm_secs: Option<u64>,
    pub dry_run: bool,
}

/// Decide whether applying `fw` is safe for the session in `ssh_connection`
/// (the value of `SSH_CONNECTION`, if any).
pub fn decide(ssh_connection: Option<&str>, fw: &Firewall, flags: Flags) -> Verdict {
    let Some(value) = ssh_connection.filter(|v| !v.trim().is_empty()) else {
        return Verdict::Proceed;
    };
    let session = match parse(value) {
        Ok(s) => s,
        Err(why) => {
            return Verdict::Warn(format!(
                "ignoring malformed SSH_CONNECTION {value:?} ({why}); the SSH lock-out check was skipped"
            ))
        }
    };
    if fw.admits_tcp(session.client, session.server_port) {
        return Verdict::Proceed;
    }
    let SshSession {
        client,
        server_port: port,
    } = session;
    let prefix = if client.is_ipv4() { 32 } else { 128 };
    let drops = format!("this profile would drop your SSH connection from {client} to port {port}");
    // Only --force overrides: a confirm window would still cut the session
    // for its whole length, so it is a safety net on top of --force.
    if flags.dry_run {
        Verdict::Warn(format!("{drops}; a real apply would be refused without --force"))
    } else if flags.force {
        let net = match flags.confirm_secs {
            Some(secs) => format!("; if you lose access it reverts in {secs}s unless you run `bulwarkctl confirm`"),
            None => String::new(),
        };
        Verdict::Warn(format!("{drops}; applying anyway because of --force{net}"))
    } else {
        Verdict::Refuse(format!(
            "{drops}; add {client}/{prefix} to firewall.admin_cidrs and {port} to firewall.admin_tcp, \
             or pass --force (with --confirm SECS, so it reverts if you are cut off)"
        ))
    }
}

/// Maximum number of ancestor processes searched for `SSH_CONNECTION`.
const MAX_ANCESTORS: usize = 32;

/// The SSH session's `SSH_CONNECTION`, from this process's environment or,
/// when that lacks it, from the nearest ancestor that has it: `sudo`, `su`
/// and `doas` reset the environment, and `sudo bulwarkctl apply` over SSH is
/// exactly the case the guard exists for.
pub fn ssh_connection() -> Option<String> {
    if let Some(v) = std::env::var_os("SSH_CONNECTION") {
        return Some(v.to_string_lossy().into_owned());
    }
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..MAX_ANCESTORS {
        if pid <= 1 {
            break;
        }
        // An unreadable environ (another user's process, no /proc) just ends
        // the search: the guard is a safety net, not a gate.
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        if let Some(v) = env_var(&environ, "SSH_CONNECTION") {
            return Some(v);
        }
        pid = parent_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    }
    None
}

/// Look up `key` in a NUL-separated `/proc/PID/environ` image.
fn env_var(environ: &[u8], key: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(rest).into_owned())
    })
}

/// Parent pid from `/proc/PID/stat`. The command name may contain spaces
/// and parentheses, so fields are counted from its closing parenthesis.
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bulwark_model::Profile;

    fn firewall(toml: &str) -> Firewall {
        Profile::parse("t.toml", &format!("[profile]\nname = \"t\"\n[firewall]\n{toml}"))
            .unwrap()
            .firewall
    }

    const SSH: &str = "198.51.100.7 51022 203.0.113.5 22";
    const REFUSE: Flags = Flags {
        force: false,
        confirm_secs: None,
        dry_run: false,
    };

    #[test]
    fn parses_ssh_connection() {
        let s = parse(SSH).unwrap();
        assert_eq!(
            s,
            SshSession {
                client: "198.51.100.7".parse().unwrap(),
                server_port: 22
            }
        );
        let s = parse("fe80::1%eth0 40000 fe80::2%eth0 2222").unwrap();
        assert_eq!(
            s,
            SshSession {
                client: "fe80::1".parse().unwrap(),
                server_port: 2222
            }
        );
        let s = parse("::ffff:192.0.2.9 40000 ::ffff:192.0.2.1 22").unwrap();
        assert_eq!(s.client, "192.0.2.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_malformed_ssh_connection() {
        assert!(parse("198.51.100.7 51022 203.0.113.5").is_err());
        assert!(parse("nohost 1 2.2.2.2 22").is_err());
        assert!(parse("1.1.1.1 1 2.2.2.2 70000").is_err());
        assert!(parse("1.1.1.1 1 2.2.2.2 0").is_err());
    }

    #[test]
    fn no_ssh_session_proceeds() {
        let fw = firewall("");
        assert_eq!(decide(None, &fw, REFUSE), Verdict::Proceed);
        assert_eq!(decide(Some("  "), &fw, REFUSE), Verdict::Proceed);
    }

    #[test]
    fn admitted_session_proceeds() {
        assert_eq!(
            decide(Some(SSH), &firewall("public_tcp = [22]"), REFUSE),
            Verdict::Proceed
        );
        let admin = firewall("admin_cidrs = [\"198.51.100.0/24\"]\nadmin_tcp = [22]");
        assert_eq!(decide(Some(SSH), &admin, REFUSE), Verdict::Proceed);
    }

    #[test]
    fn dropped_session_is_refused_with_the_fix() {
        let fw = firewall("admin_cidrs = [\"192.0.2.0/24\"]\nadmin_tcp = [22]");
        let Verdict::Refuse(msg) = decide(Some(SSH), &fw, REFUSE) else {
            panic!("not refused")
        };
        assert_eq!(
            msg,
            "this profile would drop your SSH connection from 198.51.100.7 to port 22; \
             add 198.51.100.7/32 to firewall.admin_cidrs and 22 to firewall.admin_tcp, \
             or pass --force (with --confirm SECS, so it reverts if you are cut off)"
        );
        // Right network, wrong port (sshd on 2222).
        let other_port = "198.51.100.7 51022 203.0.113.5 2222";
        let fw = firewall("admin_cidrs = [\"198.51.100.0/24\"]\nadmin_tcp = [22]");
        assert!(matches!(decide(Some(other_port), &fw, REFUSE), Verdict::Refuse(_)));
    }

    #[test]
    fn only_force_and_dry_run_warn_and_confirm_alone_is_refused() {
        let fw = firewall("");
        let confirm_only = Flags {
            confirm_secs: Some(60),
            ..REFUSE
        };
        assert!(matches!(decide(Some(SSH), &fw, confirm_only), Verdict::Refuse(_)));
        for flags in [
            Flags { force: true, ..REFUSE },
            Flags {
                force: true,
                confirm_secs: Some(60),
                ..REFUSE
            },
            Flags {
                dry_run: true,
                ..REFUSE
            },
        ] {
            assert!(
                matches!(decide(Some(SSH), &fw, flags), Verdict::Warn(m) if m.contains("would drop")),
                "{flags:?}"
            );
        }
    }

    #[test]
    fn malformed_value_warns_and_proceeds() {
        let Verdict::Warn(msg) = decide(Some("garbage"), &firewall(""), REFUSE) else {
            panic!("no warning")
        };
        assert!(msg.contains("malformed SSH_CONNECTION"), "{msg}");
    }

    #[test]
    fn reads_proc_formats() {
        assert_eq!(
            env_var(b"A=1\0SSH_CONNECTION=1.2.3.4 5 6.7.8.9 22\0B=2\0", "SSH_CONNECTION").as_deref(),
            Some("1.2.3.4 5 6.7.8.9 22")
        );
        assert_eq!(env_var(b"SSH_CONNECTIONX=1\0", "SSH_CONNECTION"), None);
        assert_eq!(parent_of("1234 (my (odd) cmd) S 99 1234 1234 0 -1"), Some(99));
        assert_eq!(parent_of("garbage"), None);
    }
}
