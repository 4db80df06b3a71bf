//! Changes sent as differences leave exactly what a full apply from scratch
//! gives, and changes made by others are seen as they happen.
//!
//! - Random sequences of admin-network changes, applied one by one (most of
//!   them go to the kernel as set-element changes over netlink), list
//!   exactly as the same profile applied to an empty table by a restarted
//!   daemon.
//! - Random sequences of add-peer and remove-peer leave the device exactly
//!   as a restarted daemon rebuilds it from the store.
//! - `nft flush ruleset` and `nft delete table inet bulwark` by another
//!   process are repaired through nf_tables events, long before the drift
//!   interval (an hour here) would find them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulwark_tests::{poll, run, Daemon, Lab, Rng};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Admin networks to pick from: runs of adjacent /24s (some merge into
/// /23s, others stay neighbours), scattered /24s and /32s, and IPv6 /48s.
fn pool() -> Vec<IpNet> {
    let mut out = Vec::new();
    for i in 0..12u32 {
        out.push(IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap(),
        ));
    }
    for i in 0..12u32 {
        out.push(IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(0xac10_0000 + (i << 10)), 24).unwrap(),
        ));
        out.push(IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(0xc633_6400 + 2 * i), 32).unwrap(),
        ));
    }
    for i in 0..8u16 {
        let v6 = std::net::Ipv6Addr::new(0x2001, 0x0db8, 2 * i, 0, 0, 0, 0, 0);
        out.push(IpNet::V6(Ipv6Net::new(v6, 48).unwrap()));
    }
    out
}

fn profile(nets: &BTreeSet<IpNet>) -> String {
    let list: Vec<String> = nets.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[profile]\nname = \"incremental\"\ndrift = \"repair\"\ndrift_interval = \"1h\"\n\n\
         [firewall]\nadmin_cidrs = [{}]\nadmin_tcp = [22]\npublic_tcp = [443]\n",
        list.join(", ")
    )
}

/// The networks nft lists in `set`, as the merged profile would hold them.
fn listed(d: &Daemon, set: &str) -> Vec<IpNet> {
    let r = d.nft(&["-j", "list", "set", "inet", "bulwark", set]);
    assert!(r.ok(), "{r}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut out = Vec::new();
    for item in doc["nftables"].as_array().unwrap() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            out.push(match e {
                serde_json::Value::String(a) => IpNet::from(a.parse::<std::net::IpAddr>().unwrap()),
                other => {
                    let p = &other["prefix"];
                    let addr = p["addr"].as_str().unwrap().parse().unwrap();
                    IpNet::new(addr, p["len"].as_u64().unwrap() as u8).unwrap()
                }
            });
        }
    }
    out.sort();
    out
}

/// How many applies so far went to the kernel as element changes (the
/// daemon logs each).
fn incremental_applies(d: &Daemon) -> usize {
    let log = fs::read_to_string(d.root.join("bulwarkd.stderr")).unwrap_or_default();
    log.matches("in one netlink transaction").count()
}

/// Kill the daemon, delete the table and start again: the generation in
/// force is applied to an empty table, whole.
fn from_scratch(lab: &mut Lab) -> String {
    lab.daemon.kill9();
    let r = lab.daemon.nft(&["delete", "table", "inet", "bulwark"]);
    assert!(r.ok(), "{r}");
    lab.daemon.restart();
    lab.daemon.ruleset_present()
}

#[test]
fn random_network_changes_list_exactly_as_a_full_apply_from_scratch() {
    let mut lab = Lab::new("incr-fw");
    let mut rng = Rng::from_env();
    let pool = pool();
    let mut nets: BTreeSet<IpNet> = pool.iter().step_by(3).copied().collect();
    lab.daemon.start(Some(&profile(&nets)));
    for round in 0..2 {
        let before = incremental_applies(&lab.daemon);
        for step in 0..15 {
            for _ in 0..=rng.below(3) {
                let n = pool[rng.below(pool.len() as u64) as usize];
                if !nets.remove(&n) {
                    nets.insert(n);
                }
            }
            let d = &lab.daemon;
            let r = d.apply(&d.write_profile("p", profile(&nets)), &[]);
            assert!(r.changed || r.plan.is_empty(), "round {round} step {step}: {r:?}");
            let all: Vec<IpNet> = nets.iter().copied().collect();
            let (v4, v6) = bulwark_model::cidr::merge(&all);
            let want4: Vec<IpNet> = v4.into_iter().map(IpNet::V4).collect();
            let want6: Vec<IpNet> = v6.into_iter().map(IpNet::V6).collect();
            assert_eq!(listed(d, "admin_v4"), want4, "round {round} step {step}\n{}", d.logs());
            assert_eq!(listed(d, "admin_v6"), want6, "round {round} step {step}\n{}", d.logs());
        }
        let incremental = lab.daemon.ruleset_present();
        let used = incremental_applies(&lab.daemon) - before;
        assert!(
            used > 0,
            "no change went through netlink in round {round}\n{}",
            lab.daemon.logs()
        );
        eprintln!("round {round}: {used} of 15 applies sent as element changes");
        let scratch = from_scratch(&mut lab);
        assert_eq!(scratch, incremental, "round {round}: incremental and full apply differ");
    }
}

/// Interface names unique to this process and test (IFNAMSIZ: 15 bytes).
fn iface() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "wgi{}x{}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Ends the wireguard-go serving the interface when dropped, by its PID.
struct Reaper(String);

impl Reaper {
    fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            if args.len() >= 2 && args[0].ends_with(b"wireguard-go") && args.last() == Some(&self.0.as_bytes()) {
                pids.push(pid);
            }
        }
        pids
    }

    fn kill(&self, signal: nix::sys::signal::Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        let _ = poll(Duration::from_secs(3), Duration::from_millis(20), || {
            self.pids().is_empty().then_some(())
        });
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill(nix::sys::signal::Signal::SIGTERM);
        self.kill(nix::sys::signal::Signal::SIGKILL);
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.0));
    }
}

/// The device's peers: public key → (preshared key, allowed IPs).
fn device(d: &Daemon, vps: &str, iface: &str) -> BTreeMap<String, (String, String)> {
    let r = run(Command::new("ip").args(["netns", "exec", vps, "wg", "show", iface, "dump"]));
    assert!(r.ok(), "wg show failed:\n{r}\n{}", d.logs());
    r.stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), (f[1].to_owned(), f[3].to_owned()))
        })
        .collect()
}

#[test]
fn random_peer_changes_leave_the_device_a_rebuild_from_the_store_gives() {
    let mut lab = Lab::new("incr-wg");
    let iface = iface();
    let reaper = Reaper(iface.clone());
    let text = format!(
        "[profile]\nname = \"incr-wg\"\ndrift_interval = \"1h\"\n\n[wireguard]\ninterface = \"{iface}\"\n\
         address = \"10.70.0.1/24\"\nendpoint = \"192.0.2.1:51820\"\nbackend = \"userspace\"\n"
    );
    lab.daemon.start(Some(&text));
    let vps = lab.net.vps.clone();
    let mut rng = Rng::from_env();
    let mut present: BTreeSet<String> = BTreeSet::new();
    for i in 0..30 {
        let d = &lab.daemon;
        if !present.is_empty() && rng.below(3) == 0 {
            let name = present
                .iter()
                .nth(rng.below(present.len() as u64) as usize)
                .unwrap()
                .clone();
            d.ctl_ok(&["remove-peer", &name, "--yes"]);
            present.remove(&name);
        } else {
            let name = format!("p{i}");
            d.ctl_ok(&["add-peer", &name]);
            present.insert(name);
        }
    }
    let live = device(&lab.daemon, &vps, &iface);
    assert_eq!(live.len(), present.len(), "{live:#?}");
    lab.daemon.kill9();
    reaper.kill(nix::sys::signal::Signal::SIGKILL);
    lab.daemon.restart();
    let rebuilt = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let now = device(&lab.daemon, &vps, &iface);
        (now.len() == present.len()).then_some(now)
    })
    .unwrap_or_else(|| panic!("the device was not rebuilt\n{}", lab.daemon.logs()));
    assert_eq!(
        rebuilt, live,
        "peers changed one by one differ from the device rebuilt from the store"
    );
}

/// Profile whose drift interval is far away: only events can repair in time.
const SLOW_DRIFT: &str = "[profile]\nname = \"events\"\ndrift = \"repair\"\ndrift_interval = \"1h\"\n\n\
    [firewall]\nadmin_cidrs = [\"198.51.100.0/24\"]\nadmin_tcp = [22]\n";

#[test]
fn flush_ruleset_and_delete_table_by_another_process_are_repaired_by_events() {
    let mut lab = Lab::new("incr-events");
    lab.daemon.start(Some(SLOW_DRIFT));
    let d = &lab.daemon;
    let ours = d.ruleset_present();
    for (what, args) in [
        ("nft flush ruleset", &["flush", "ruleset"][..]),
        (
            "nft delete table inet bulwark",
            &["delete", "table", "inet", "bulwark"][..],
        ),
        (
            "nft flush chain inet bulwark input",
            &["flush", "chain", "inet", "bulwark", "input"][..],
        ),
    ] {
        let t0 = Instant::now();
        let r = d.nft(args);
        assert!(r.ok(), "{r}");
        match d.wait_ruleset(Some(&ours), Duration::from_secs(5)) {
            // The status queues behind the repair's read-back.
            Ok(_) => eprintln!(
                "{what}: repaired after {:?} ({})",
                t0.elapsed(),
                d.status().firewall.in_sync
            ),
            Err(last) => panic!(
                "{what} not repaired within 5 s (drift_interval 1h); live:\n{last:?}\n{}",
                d.logs()
            ),
        }
    }
    let events = d.audit_tail(50);
    let repairs = events.iter().filter(|e| e.event == "BWK-FW-0001").count();
    assert!(repairs >= 3, "not every repair was audited: {events:#?}");
    assert!(d.status().firewall.drift_repairs >= 3);
}
