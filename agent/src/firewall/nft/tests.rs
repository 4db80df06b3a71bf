#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use bulwark_model::profile::Firewall;
use ipnet::Ipv4Net;

use super::super::render::render;
use super::super::testns::Netns;
use super::*;

/// A stand-in for nft: a shell script that records its arguments and stdin
/// next to itself, then runs `body`.
struct FakeNft {
    dir: tempfile::TempDir,
}

impl FakeNft {
    fn new(body: &str) -> FakeNft {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("nft");
        let d = dir.path().display();
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" > {d}/args\ncat > {d}/stdin\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeNft { dir }
    }

    fn nft(&self) -> Nft {
        Nft::new(self.dir.path().join("nft"))
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }
}

/// Another test thread forking while the script is still open for writing
/// makes exec fail with ETXTBSY; that is a test artefact, so retry.
fn retry_busy<T>(f: impl Fn() -> Result<T, FirewallError>) -> Result<T, FirewallError> {
    for _ in 0..50 {
        match f() {
            Err(FirewallError::Spawn { source, .. }) if source.raw_os_error() == Some(libc::ETXTBSY) => {
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
    f()
}

fn firewall(admin: usize) -> Firewall {
    // Every other /24, as merged profile networks would be (no two adjacent).
    let admin_v4 = (0..admin as u32)
        .map(|i| Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 9)), 24).unwrap())
        .collect();
    Firewall {
        admin_v4,
        admin_v6: vec!["2001:db8::/32".parse().unwrap()],
        public_tcp: vec![80, 443],
        admin_tcp: vec![22],
        vpn_tcp: vec![6443],
        public_udp: vec![51820],
        cluster_v4: vec!["10.42.0.0/16".parse().unwrap()],
        cluster_interfaces: vec!["cni0".to_owned()],
        log_drops: true,
        ..Firewall::default()
    }
}

#[test]
fn apply_sends_the_batch_as_json_on_stdin() {
    let fake = FakeNft::new("exit 0");
    let rs = render(&firewall(3), Some("wg0"));
    retry_busy(|| fake.nft().apply(&rs)).unwrap();
    assert_eq!(fake.file("args"), "-j -f -\n");
    let sent: serde_json::Value = serde_json::from_str(&fake.file("stdin")).unwrap();
    assert_eq!(sent, serde_json::to_value(rs.to_nftables()).unwrap());
}

#[test]
fn check_is_a_dry_run() {
    let fake = FakeNft::new("exit 0");
    retry_busy(|| fake.nft().check(&render(&firewall(1), None))).unwrap();
    assert_eq!(fake.file("args"), "-c -j -f -\n");
}

#[test]
fn a_rejected_batch_carries_nfts_stderr() {
    let fake = FakeNft::new("echo 'Error: conflicting intervals specified' >&2; exit 1");
    let err = retry_busy(|| fake.nft().apply(&render(&firewall(1), None))).unwrap_err();
    match &err {
        FirewallError::Failed { op, status, stderr, .. } => {
            assert_eq!(*op, NftOp::Apply);
            assert_eq!(status.code(), Some(1));
            assert_eq!(stderr, "Error: conflicting intervals specified");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("could not apply table inet bulwark") && text.contains("conflicting intervals"),
        "{text}"
    );
}

#[test]
fn list_of_a_missing_table_is_none() {
    let fake = FakeNft::new(
        "echo 'Error: No such file or directory; did you mean table \u{2018}x\u{2019} in family inet?' >&2; exit 1",
    );
    assert_eq!(retry_busy(|| fake.nft().list()).unwrap(), None);
    assert_eq!(fake.file("args"), "list table inet bulwark\n");
}

#[test]
fn list_returns_nfts_output_verbatim() {
    let fake = FakeNft::new("printf 'table inet bulwark {\\n}\\n'");
    assert_eq!(
        retry_busy(|| fake.nft().list()).unwrap().as_deref(),
        Some("table inet bulwark {\n}\n")
    );
}

#[test]
fn other_list_failures_are_errors() {
    let fake = FakeNft::new("echo 'Error: Operation not permitted' >&2; exit 1");
    assert!(matches!(
        retry_busy(|| fake.nft().list()),
        Err(FirewallError::Failed { op: NftOp::List, .. })
    ));
}

#[test]
fn a_hung_nft_is_killed_at_the_timeout() {
    // exec: the script itself must be what hangs, so killing it closes the pipes.
    let fake = FakeNft::new("exec sleep 30");
    let start = Instant::now();
    let err = retry_busy(|| fake.nft().with_timeout(Duration::from_millis(200)).list()).unwrap_err();
    assert!(matches!(err, FirewallError::Timeout { op: NftOp::List, .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("within 200ms"), "{err}");
}

#[test]
fn a_missing_nft_is_a_spawn_error() {
    let err = Nft::new("/nonexistent/nft").list().unwrap_err();
    assert!(matches!(err, FirewallError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/nft"));
}

fn nft_cli(args: &[&str]) -> std::process::Output {
    Command::new(DEFAULT_NFT).args(args).output().unwrap()
}

fn timed(what: &str, f: impl FnOnce() -> Result<(), FirewallError>) {
    let start = Instant::now();
    f().unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: {:?}", start.elapsed());
}

/// The real thing, inside a private network namespace: apply, replace,
/// refusal, listing and delete, leaving a foreign table alone throughout.
#[test]
fn applies_replaces_lists_and_deletes_only_its_own_table_in_a_namespace() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates a network namespace and loads nftables rules: run it as root"
    );
    let ns = Netns::create();
    ns.run(|| {
        let nft = Nft::default();
        assert_eq!(nft.list().unwrap(), None);
        nft.delete().unwrap();

        // Someone else's table (K3s, flannel, ...) that must survive everything below.
        assert!(nft_cli(&["add", "table", "ip", "other"]).status.success());
        assert!(nft_cli(&["add", "chain", "ip", "other", "keep"]).status.success());

        let rs = render(&firewall(10), Some("wg0"));
        nft.check(&rs).unwrap();
        assert_eq!(nft.list().unwrap(), None, "check must not change anything");

        timed("apply 10 admin CIDRs", || nft.apply(&rs));
        let listed = nft.list().unwrap().expect("table exists after apply");
        assert!(listed.contains("set admin_v4"), "{listed}");
        assert!(listed.contains("10.0.18.0/24"), "{listed}");
        assert!(listed.contains("tcp dport 22 ip saddr @admin_v4 accept"), "{listed}");
        assert!(listed.contains("iifname \"wg0\" tcp dport 6443 accept"), "{listed}");
        assert!(listed.contains("policy drop"), "{listed}");

        // Re-applying replaces rather than appends, and lists identically.
        nft.apply(&rs).unwrap();
        assert_eq!(nft.list().unwrap().as_deref(), Some(listed.as_str()));

        // A batch the kernel refuses leaves the applied table in force.
        let mut bad = rs.clone();
        bad.sets[0].elements = vec!["10.0.0.0/8".parse().unwrap(), "10.1.0.0/16".parse().unwrap()];
        let err = nft.apply(&bad).unwrap_err();
        match &err {
            FirewallError::Failed { stderr, .. } => assert!(!stderr.is_empty(), "{err}"),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(nft.check(&bad).is_err());
        assert_eq!(nft.list().unwrap().as_deref(), Some(listed.as_str()));

        let big = render(&firewall(1_000), Some("wg0"));
        timed("apply 1,000 admin CIDRs", || nft.apply(&big));
        let huge = render(&firewall(50_000), Some("wg0"));
        timed("apply 50,000 admin CIDRs", || nft.apply(&huge));
        let listed = nft.list().unwrap().unwrap();
        assert!(listed.contains("11.134.158.0/24"), "last of 50,000 elements missing");

        nft.delete().unwrap();
        assert_eq!(nft.list().unwrap(), None);
        nft.delete().unwrap();
        let other = nft_cli(&["list", "table", "ip", "other"]);
        assert!(other.status.success() && String::from_utf8_lossy(&other.stdout).contains("chain keep"));
    });
}
