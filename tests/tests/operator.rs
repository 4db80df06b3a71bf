//! The operator's day, from the outside: `show` against a known profile,
//! generations shown whole and compared, colour only on a terminal, health
//! selection for a rollout gate, peers renewed, disabled and enabled with a
//! real tunnel, shell completion of peer names and generations, `doctor`,
//! and what `--json` does to `--version`, `completions` and `man`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use bulwark_model::api::{AuditEvent, Health, PeerInfo};
use bulwark_tests::wg::{names, Client, Reaper};
use bulwark_tests::{bin, connects, poll, run, Daemon, Lab, Ran};

const VPN_SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 8, 0, 1));
const API_PORT: u16 = 6443;

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh WireGuard public key, from wg itself.
fn public_key() -> String {
    let private = run(Command::new("wg").arg("genkey"));
    assert!(private.ok(), "{private}");
    let public = bulwark_tests::run_with_stdin(Command::new("wg").arg("pubkey"), private.stdout.as_bytes());
    assert!(public.ok(), "{public}");
    public.stdout.trim().to_owned()
}

fn profile(name: &str, iface: &str, public_tcp: &str) -> String {
    format!(
        r#"[profile]
name = "{name}"
drift_interval = "1s"

[firewall]
admin_cidrs = ["198.51.100.0/24", "2001:db8:10::/64"]
public_tcp = [{public_tcp}]
admin_tcp = [22]
vpn_tcp = [{API_PORT}]
cluster_cidrs = ["10.42.0.0/16"]
cluster_interfaces = ["cni0"]
log_drops = true

[wireguard]
interface = "{iface}"
address = "10.8.0.1/24"
endpoint = "198.51.100.1:51820"
keepalive = 1
peer_expiry = "90d"
stale_handshake = "2d"

[monitoring]
listen = "127.0.0.1:9469"
"#
    )
}

/// The lines of `text` from the one equal to `from` up to the next blank line.
fn block<'a>(text: &'a str, from: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != from)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn show_says_what_a_known_profile_enforces_in_words() {
    let mut lab = Lab::new("ops-show");
    let (srv, _) = names("sh");
    let _reaper = Reaper(srv.clone());
    lab.daemon.start(Some(&profile("show-a", &srv, "80, 443")));
    let d = &lab.daemon;
    let r = d.ctl_ok(&["show"]);
    let text = &r.stdout;
    assert!(
        text.starts_with(&format!(
            "bulwarkd {}: generation 1, profile show-a, applied ",
            env!("CARGO_PKG_VERSION")
        )),
        "{r}"
    );
    assert_eq!(
        block(text, "firewall"),
        [
            "firewall",
            "  state:     table inet bulwark in force, matches the generation",
            "  default:   incoming and forwarded traffic dropped; outgoing allowed",
            "  always:    established and related traffic, loopback, essential ICMP and",
            "             ICMPv6 (ping, errors, neighbour discovery)",
            "  public:    tcp 80, 443; udp 51820 (WireGuard), from anywhere",
            "  admin:     tcp 22, from 198.51.100.0/24, 2001:db8:10::/64",
            &format!("  vpn:       tcp 6443, only through {srv}"),
            "  cluster:   every port, incoming and forwarded, from 10.42.0.0/16; on cni0",
            "  drop log:  on, 5 per minute: prefixes \"bulwark drop: \" (incoming) and \"bulwark",
            "             forward drop: \"",
        ],
        "{r}"
    );
    let wg = block(text, "wireguard");
    assert_eq!(wg[0], "wireguard", "{r}");
    assert!(
        wg.iter()
            .any(|l| l.contains(&format!("{srv} 10.8.0.1/24, port 51820/udp, userspace backend"))),
        "{r}"
    );
    assert!(
        wg.contains(&"  endpoint:       198.51.100.1:51820 (in client configs)"),
        "{r}"
    );
    assert!(wg.contains(&"  peers:          0; new peers expire after 90d"), "{r}");
    assert!(
        wg.contains(&"  stale after:    2d without a handshake (health warns)"),
        "{r}"
    );
    assert_eq!(
        block(text, "k3s"),
        ["k3s", "  state:  not managed by this profile"],
        "{r}"
    );
    assert_eq!(
        block(text, "monitoring"),
        [
            "monitoring",
            "  metrics:  http://127.0.0.1:9469/metrics (no authentication: keep it on",
            "            loopback or the VPN)",
        ],
        "{r}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{r}");

    // --json carries the parsed profile and the status.
    let v: serde_json::Value = d.ctl_json(&["show"]);
    assert_eq!(v["profile"]["firewall"]["public_tcp"], serde_json::json!([80, 443]));
    assert_eq!(v["status"]["generation"], 1);
}

#[test]
fn generations_show_and_diff_and_colour_only_on_a_terminal() {
    let mut lab = Lab::new("ops-gen");
    let (srv, _) = names("gn");
    let _reaper = Reaper(srv.clone());
    lab.daemon.start(Some(&profile("gen-a", &srv, "80")));
    let d = &lab.daemon;
    let b = d.write_profile("b", profile("gen-b", &srv, "80, 443"));
    // A dry run through a pipe: the plan is plain text.
    let dry = d.ctl_ok(&["apply", "--dry-run", b.to_str().unwrap()]);
    assert!(
        dry.stdout.contains("+ firewall:") && !dry.stdout.contains('\x1b'),
        "{dry}"
    );
    let forced = d.ctl_env(&[("CLICOLOR_FORCE", "1")], &["apply", "--dry-run", b.to_str().unwrap()]);
    assert!(forced.stdout.contains("\x1b[32m+ firewall:"), "{forced}");
    let no_color = d.ctl_env(
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
        &["apply", "--dry-run", b.to_str().unwrap()],
    );
    assert!(!no_color.stdout.contains('\x1b'), "NO_COLOR must win:\n{no_color}");
    // On a real terminal (script(1) gives it a pty), colour by itself.
    let tty = run(Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "env -u NO_COLOR TERM=xterm {} --socket {} apply --dry-run {}",
            bin("bulwarkctl").display(),
            d.socket().display(),
            b.display()
        ))
        .arg("/dev/null"));
    assert!(
        tty.stdout.contains("\x1b[32m+ firewall:"),
        "no colour on a terminal:\n{tty}"
    );

    d.ctl_ok(&["apply", b.to_str().unwrap()]);
    let show = d.ctl_ok(&["generations", "show", "2"]);
    assert!(show.stdout.starts_with("generation:  2 (in force)\n"), "{show}");
    assert!(
        show.stdout
            .contains("\nseal:        verified with this host's integrity key\n"),
        "{show}"
    );
    assert!(show.stdout.contains("  name = \"gen-b\"\n"), "{show}");
    assert!(show.stdout.contains("\n  firewall/ruleset.json  "), "{show}");
    let artifact = d.ctl_ok(&["generations", "show", "2", "--artifact", "firewall/ruleset.json"]);
    let on_disk = fs::read_to_string(d.state_dir().join("generations/000002/firewall/ruleset.json")).unwrap();
    assert_eq!(artifact.stdout.trim_end(), on_disk.trim_end());
    let missing = d.ctl(&["generations", "show", "2", "--artifact", "k3s/50-bulwark.yaml"]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(missing.stderr.contains("it has: firewall/ruleset.json"), "{missing}");
    assert_eq!(d.ctl(&["generations", "show", "9"]).code, Some(7));

    let diff = d.ctl_ok(&["generations", "diff", "1", "2"]);
    let t = &diff.stdout;
    assert!(
        t.contains("--- generation 1: profile.toml\n+++ generation 2: profile.toml\n"),
        "{diff}"
    );
    assert!(t.contains("\n-name = \"gen-a\"\n+name = \"gen-b\"\n"), "{diff}");
    assert!(t.contains("\n-public_tcp = [80]\n+public_tcp = [80, 443]\n"), "{diff}");
    assert!(t.contains("--- generation 1: firewall/ruleset.json\n"), "{diff}");
    assert!(
        t.lines().any(|l| l.starts_with('+') && l[1..].trim() == "443"),
        "{diff}"
    );
    assert!(
        !t.contains("wireguard/interface.json"),
        "an unchanged artifact is not diffed:\n{diff}"
    );
    assert!(!t.contains('\x1b'), "{diff}");
    let same = d.ctl_ok(&["generations", "diff", "2", "2"]);
    assert_eq!(
        same.stdout,
        "generations 2 and 2 are the same: same profile, same artifacts\n"
    );

    // A generation edited on disk is shown, and said not to verify.
    let path = d.state_dir().join("generations/000001/profile.toml");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("[80]", "[80, 8080]")).unwrap();
    let show = d.ctl_ok(&["generations", "show", "1"]);
    assert!(show.stdout.contains("seal:        DOES NOT VERIFY"), "{show}");
    let v: serde_json::Value = d.ctl_json(&["generations", "show", "1"]);
    assert_eq!(v["sealed"], false);
}

fn health(d: &Daemon, args: &[&str]) -> Ran {
    let mut all = vec!["health"];
    all.extend_from_slice(args);
    d.ctl(&all)
}

#[test]
fn health_selects_checks_for_a_rollout_gate() {
    let mut lab = Lab::new("ops-health");
    let (srv, _) = names("hl");
    let _reaper = Reaper(srv.clone());
    lab.daemon.start(Some(&profile("gate", &srv, "80")));
    let d = &lab.daemon;
    let b = d.write_profile("b", profile("gate-b", &srv, "80, 443"));
    // An open confirm window is a WARNING.
    d.ctl_ok(&["apply", "--confirm", "600", b.to_str().unwrap()]);
    let all = health(d, &[]);
    assert_eq!(all.code, Some(1), "{all}");
    assert!(all.stdout.starts_with("overall: WARNING\n"), "{all}");
    let gate = health(d, &["--check", "firewall", "--check", "wireguard"]);
    assert_eq!(gate.code, Some(0), "the gate's own checks are OK:\n{gate}");
    assert!(
        gate.stdout.contains("\nfirewall ") && gate.stdout.contains("\nwireguard_peers "),
        "{gate}"
    );
    assert!(!gate.stdout.contains("\nconfirm "), "{gate}");
    let ignored = health(d, &["--ignore", "confirm"]);
    assert_eq!(ignored.code, Some(0), "{ignored}");
    let only = health(d, &["--check", "confirm"]);
    assert_eq!(only.code, Some(1), "{only}");
    let sel: Health = serde_json::from_str(&health(d, &["--json", "--check", "confirm"]).stdout).unwrap();
    assert_eq!(sel.checks.len(), 1);
    assert_eq!(sel.checks[0].name, "confirm");
    // A name the daemon does not report is a usage error, UNKNOWN in the
    // plug-in convention, and says which names there are.
    let typo = health(d, &["--check", "firewal"]);
    assert_eq!(typo.code, Some(3), "{typo}");
    assert_eq!(typo.stdout, "overall: UNKNOWN\n");
    assert!(
        typo.stderr.contains("no check or module of that name") && typo.stderr.contains("firewall"),
        "{typo}"
    );
    let bad_flag = health(d, &["--chek", "x"]);
    assert_eq!(bad_flag.code, Some(3), "{bad_flag}");
    d.ctl_ok(&["confirm"]);
    assert_eq!(health(d, &["--ignore", "firewall_managers"]).code, Some(0));
}

fn peer(d: &Daemon, name: &str) -> PeerInfo {
    let all: Vec<PeerInfo> = d.ctl_json(&["peers"]);
    all.into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no peer {name}"))
}

fn metrics(d: &Daemon) -> String {
    let r = run(Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "15", "--unix-socket"])
        .arg(d.socket())
        .arg("http://localhost/v1/metrics"));
    assert!(r.ok(), "{r}");
    r.stdout
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}

#[test]
fn renew_disable_and_enable_a_peer_keep_its_config_and_the_metrics_follow() {
    let mut lab = Lab::new("ops-peers");
    let (srv, cli) = names("pe");
    let _reaper = Reaper(srv.clone());
    lab.daemon.start(Some(&profile("peers", &srv, "80")));
    let _l = lab.net.listen(&lab.net.vps, &[API_PORT]);
    let d = &lab.daemon;
    let admin = lab.net.admin.clone();
    let config = d.ctl_ok(&["add-peer", "alice"]).stdout;
    let client = Client::new(&admin, &cli);
    client.up(&config);
    let through = || connects(&admin, VPN_SERVER, API_PORT);
    let wait = |want: bool| {
        poll(Duration::from_secs(20), Duration::from_millis(200), || {
            (through() == want).then_some(())
        })
    };
    assert!(wait(true).is_some(), "no tunnel\n{}", d.logs());

    // Traffic and handshake reach the metrics (the device reading behind
    // them may be up to a second old).
    let label = "{module=\"wireguard\",peer=\"alice\"}";
    let received = format!("bulwark_wireguard_peer_received_bytes_total{label}");
    let m = poll(Duration::from_secs(5), Duration::from_millis(200), || {
        let m = metrics(d);
        sample(&m, &received).is_some_and(|v| v > 0.0).then_some(m)
    })
    .unwrap_or_else(|| metrics(d));
    assert!(
        sample(&m, &format!("bulwark_wireguard_peer_received_bytes_total{label}")).unwrap() > 0.0,
        "{m}"
    );
    assert!(
        sample(&m, &format!("bulwark_wireguard_peer_sent_bytes_total{label}")).unwrap() > 0.0,
        "{m}"
    );
    assert!(sample(
        &m,
        &format!("bulwark_wireguard_peer_last_handshake_timestamp_seconds{label}")
    )
    .is_some());
    assert_eq!(sample(&m, "bulwark_up"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "bulwark_last_apply_success"), Some(1.0), "{m}");
    let now = now_unix() as f64;
    let last = sample(&m, "bulwark_last_apply_timestamp_seconds").unwrap();
    assert!((now - last).abs() < 120.0, "last apply {last}, now {now}");
    let list = d.ctl_ok(&["peers"]);
    assert!(
        list.stdout.contains(" B ") || list.stdout.contains("KiB"),
        "traffic in units:\n{list}"
    );

    // Renew: a new expiry from now, the session untouched.
    let before = peer(d, "alice").expires.unwrap();
    let r = d.ctl_ok(&["renew-peer", "alice", "--expires", "30d"]);
    assert!(r.stdout.starts_with("renewed peer alice: expires "), "{r}");
    let renewed = peer(d, "alice").expires.unwrap();
    assert!(renewed < before && renewed.abs_diff(now_unix() + 30 * 86400) < 60);
    d.ctl_ok(&["renew-peer", "alice"]);
    assert!(peer(d, "alice").expires.unwrap().abs_diff(now_unix() + 90 * 86400) < 60);
    d.ctl_ok(&["renew-peer", "alice", "--expires", "never"]);
    assert_eq!(peer(d, "alice").expires, None);
    let bad = d.ctl(&["renew-peer", "alice", "--expires", "5s"]);
    assert_eq!(bad.code, Some(4), "{bad}");
    assert!(bad.stderr.contains("outside"), "{bad}");
    assert_eq!(d.ctl(&["renew-peer", "nobody"]).code, Some(7));
    assert!(through(), "renewing cut the tunnel");

    // Disable: off the interface, the config stops working, the peer stays.
    let r = d.ctl_ok(&["disable-peer", "alice"]);
    assert!(r.stdout.contains("disabled peer alice (10.8.0.2)"), "{r}");
    assert!(wait(false).is_some(), "a disabled peer still reaches 6443");
    let p = peer(d, "alice");
    assert!(p.disabled);
    let wg = run(Command::new("ip").args(["netns", "exec", &lab.net.vps, "wg", "show", &srv, "peers"]));
    assert!(!wg.stdout.contains(&p.public_key), "still on the device:\n{wg}");
    assert!(d.ctl_ok(&["peers"]).stdout.contains("disabled"));
    let show = d.ctl_ok(&["show"]);
    assert!(show.stdout.contains("  peers:          1 (1 disabled); "), "{show}");
    let m = metrics(d);
    assert!(!m.contains("peer=\"alice\""), "a disabled peer keeps its series:\n{m}");
    // Drift repair leaves it off (the store is the truth).
    std::thread::sleep(Duration::from_secs(2));
    assert!(!through());

    // Enable: the very same config works again.
    d.ctl_ok(&["enable-peer", "alice"]);
    assert!(
        wait(true).is_some(),
        "the old config does not work after enable-peer\n{}",
        d.logs()
    );
    assert!(!peer(d, "alice").disabled);

    let events: Vec<AuditEvent> = d.audit_tail(50);
    for id in ["BWK-WG-0007", "BWK-WG-0008", "BWK-WG-0009"] {
        let e = events
            .iter()
            .find(|e| e.event == id)
            .unwrap_or_else(|| panic!("no {id} in {events:#?}"));
        assert!(e.message.contains("peer alice"), "{e:?}");
    }
}

#[test]
fn completions_offer_peer_names_and_generation_numbers_from_the_daemon() {
    let mut lab = Lab::new("ops-complete");
    let (srv, _) = names("cp");
    let _reaper = Reaper(srv.clone());
    lab.daemon.start(Some(&profile("complete", &srv, "80")));
    let d = &lab.daemon;
    d.ctl_ok(&["add-peer", "alice", "--public-key", &public_key()]);
    d.ctl_ok(&["add-peer", "bob", "--public-key", &public_key()]);
    let script = d.root.join("bulwarkctl.bash");
    fs::write(&script, d.ctl_ok(&["completions", "bash"]).stdout).unwrap();
    let dir = bin("bulwarkctl").parent().unwrap().to_path_buf();
    // What bash does on TAB: run the registered function, read COMPREPLY.
    let complete = |words: &[&str]| {
        let line = words.join(" ");
        let r = run(Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({line}); COMP_CWORD={}; COMP_TYPE=9; \
                 _clap_complete_bulwarkctl bulwarkctl \"{}\" \"{}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display(),
                words.len() - 1,
                words[words.len() - 1].trim_matches('"'),
                words[words.len() - 2]
            ))
            .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", dir.display()))
            .env("BULWARK_SOCKET", d.socket()));
        assert!(r.ok(), "{r}");
        r.stdout.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    let values =
        |words: &[&str]| -> Vec<String> { complete(words).into_iter().filter(|w| !w.starts_with('-')).collect() };
    assert_eq!(values(&["bulwarkctl", "remove-peer", "\"\""]), ["alice", "bob"]);
    assert_eq!(complete(&["bulwarkctl", "disable-peer", "b"]), ["bob"]);
    assert_eq!(values(&["bulwarkctl", "rollback", "\"\""]), ["1"]);
    assert!(complete(&["bulwarkctl", "ren"]).contains(&"renew-peer".to_owned()));
}

#[test]
fn doctor_reports_each_check_with_a_fix_and_health_exit_codes() {
    let mut lab = Lab::new("ops-doctor");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let in_ns = |args: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &lab.net.vps])
            .arg(bin("bulwarkctl"))
            .arg("--socket")
            .arg(d.socket())
            .args(args)
            .env_remove("BULWARK_SOCKET");
        run(&mut cmd)
    };
    let r = in_ns(&["doctor"]);
    for name in ["daemon", "socket", "wireguard", "nft", "firewall_managers", "clock"] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(&format!("{name} "))),
            "no {name} line:\n{r}"
        );
    }
    assert!(
        r.stdout.contains("bulwarkd ") && r.stdout.contains(" answers; generation 1"),
        "{r}"
    );
    // The test daemon hands its socket to a numeric group, not `bulwark`.
    assert!(r.stdout.contains("group 61000, not bulwark"), "{r}");
    assert!(matches!(r.code, Some(1)), "{r}");
    // An nftables.service that flushes the ruleset, under the daemon's root.
    let root = &d.root;
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/nftables.conf"), "#!/usr/sbin/nft -f\nflush ruleset\n").unwrap();
    let wants = root.join("etc/systemd/system/sysinit.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/system/nftables.service", wants.join("nftables.service")).unwrap();
    let r = in_ns(&["--json", "doctor"]);
    assert_eq!(r.code, Some(1), "{r}");
    let h: Health = serde_json::from_str(&r.stdout).unwrap();
    let managers = h.checks.iter().find(|c| c.name == "firewall_managers").unwrap();
    assert!(
        managers
            .reason
            .starts_with("nftables.service: it is enabled and /etc/nftables.conf runs `flush ruleset`")
            && managers.reason.contains("flush table inet filter"),
        "{r}"
    );

    // With the daemon gone, doctor still runs and says so: CRITICAL.
    let r = run(Command::new(bin("bulwarkctl")).args(["--socket", "/nonexistent/bulwarkd.sock", "doctor"]));
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stdout.starts_with("overall: CRITICAL\n"), "{r}");
    let r = run(Command::new(bin("bulwarkctl")).args(["--json", "--socket", "/nonexistent/bulwarkd.sock", "doctor"]));
    let h: Health = serde_json::from_str(&r.stdout).unwrap();
    let daemon = h.checks.iter().find(|c| c.name == "daemon").unwrap();
    assert!(daemon.reason.contains("systemctl start bulwarkd"), "{r}");
    assert!(
        h.checks.iter().any(|c| c.name == "nft"),
        "the local checks still run:\n{r}"
    );
}

#[test]
fn json_is_honoured_or_refused_by_version_completions_and_man() {
    let ctl = || {
        let mut c = Command::new(bin("bulwarkctl"));
        c.env_remove("BULWARK_SOCKET");
        c
    };
    let v = run(ctl().args(["--version", "--json"]));
    assert!(v.ok(), "{v}");
    let j: serde_json::Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        run(ctl().arg("--version")).stdout,
        format!("bulwarkctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    let c = run(ctl().args(["--json", "completions", "bash"]));
    assert_eq!(c.code, Some(2), "{c}");
    assert!(c.stderr.contains("--json does not apply") && c.stdout.is_empty(), "{c}");
    let dir = tempfile::tempdir().unwrap();
    let m = run(ctl().args(["--json", "man"]).arg(dir.path()));
    assert!(m.ok(), "{m}");
    let pages: Vec<String> = serde_json::from_str(&m.stdout).unwrap();
    assert!(
        pages.iter().any(|p| p.ends_with("/bulwarkctl-renew-peer.1")),
        "{pages:?}"
    );
    let page = fs::read_to_string(dir.path().join("bulwarkctl-health.1")).unwrap();
    for section in [".SH SYNOPSIS", ".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
        assert!(page.contains(section), "{section} missing:\n{page}");
    }
    assert!(
        page.contains("[\\fB\\-\\-check\\fR \\fINAME\\fR]..."),
        "synopsis names the value:\n{page}"
    );
    let none = run(&mut ctl());
    assert_eq!(none.code, Some(2), "{none}");
}
