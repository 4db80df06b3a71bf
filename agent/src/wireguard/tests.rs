//! Façade tests: refusals that must change nothing (no privileges needed),
//! and a privileged end-to-end test of the module with real wireguard-go
//! processes in two network namespaces and real packets through the tunnel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use bulwark_model::profile::Backend as Wanted;

fn profile(iface: &str, address: &str, port: u16, endpoint: &str) -> Profile {
    let address: Ipv4Net = address.parse().unwrap();
    Profile {
        interface: iface.to_owned(),
        address,
        listen_port: port,
        endpoint: endpoint.to_owned(),
        backend: Wanted::Auto,
        client_allowed_ips: vec![ipnet::IpNet::V4(address.trunc())],
        keepalive: 25,
        peer_expiry: None,
        stale_handshake: bulwark_model::profile::STALE_HANDSHAKE_DEFAULT,
    }
}

fn req(name: &str) -> AddPeerRequest {
    AddPeerRequest {
        name: name.to_owned(),
        ..AddPeerRequest::default()
    }
}

fn stored(name: &str, address: &str) -> StoredPeer {
    StoredPeer {
        name: name.to_owned(),
        public_key: Key::generate_private().get_public().to_base64(),
        preshared_key: Secret::generate_preshared().to_base64(),
        address: address.parse().unwrap(),
        created: now_unix(),
        expires: None,
        disabled: false,
    }
}

#[test]
fn open_creates_the_server_key_once_in_a_private_dir() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path());
    let (wg, created) = WireGuard::open(&host).unwrap();
    assert!(created);
    let (wg2, created) = WireGuard::open(&host).unwrap();
    assert!(!created);
    assert_eq!(wg.public_key(), wg2.public_key());
    use std::os::unix::fs::PermissionsExt;
    let wgdir = host.state_dir().join("wireguard");
    assert_eq!(fs::metadata(&wgdir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(
        fs::metadata(wgdir.join("server.key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Debug output of the whole module carries no secret.
    let key = fs::read_to_string(wgdir.join("server.key")).unwrap();
    assert!(!format!("{wg:?}").contains(key.trim()));
    assert_eq!(wg.backend_in_use(), None);
}

#[test]
fn no_wireguard_section_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wg, _) = WireGuard::open(&Host::new(dir.path())).unwrap();
    assert!(wg.plan(None).is_empty());
    assert!(wg.peers(None).unwrap().is_empty());
}

#[test]
fn bad_add_peer_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path());
    let (mut wg, _) = WireGuard::open(&host).unwrap();
    let taken = stored("alice", "10.8.0.2");
    let alice_key = taken.public_key.clone();
    wg.store.insert(taken).unwrap();
    let dir = host.state_dir().join("wireguard");
    // The store is its snapshot and the journal of changes since.
    let store_bytes = || {
        let mut b = fs::read(dir.join("peers.json")).unwrap_or_default();
        b.extend(fs::read(dir.join("peers.journal")).unwrap_or_default());
        b
    };
    let before = store_bytes();
    let p = profile("wgunit0", "10.8.0.1/24", 51820, "vps.example.org:51820");
    let server_key = wg.public_key();

    let cases: Vec<(AddPeerRequest, &str)> = vec![
        (req("bad name"), "invalid peer name"),
        (req("-x"), "start with a letter or digit"),
        (req("alice"), "already exists"),
        (
            AddPeerRequest {
                public_key: Some("not-a-key".to_owned()),
                ..req("bob")
            },
            "invalid public key",
        ),
        (
            AddPeerRequest {
                public_key: Some(alice_key),
                ..req("bob")
            },
            "already used by peer \"alice\"",
        ),
        (
            AddPeerRequest {
                public_key: Some(server_key),
                ..req("bob")
            },
            "already used by this server",
        ),
        (
            AddPeerRequest {
                address: Some(Ipv4Addr::new(10, 9, 0, 2)),
                ..req("bob")
            },
            "outside the VPN subnet 10.8.0.0/24",
        ),
        (
            AddPeerRequest {
                address: Some(Ipv4Addr::new(10, 8, 0, 2)),
                ..req("bob")
            },
            "already used by another peer",
        ),
        (
            AddPeerRequest {
                address: Some(Ipv4Addr::new(10, 8, 0, 1)),
                ..req("bob")
            },
            "server's own",
        ),
        (
            AddPeerRequest {
                expires: Some("tomorrow".to_owned()),
                ..req("bob")
            },
            "invalid expiry",
        ),
    ];
    for (r, want) in cases {
        let shown = format!("{r:?}");
        let err = wg.add_peer(&p, r).unwrap_err().to_string();
        assert!(err.contains(want), "{shown}: {err:?} lacks {want:?}");
        assert_eq!(store_bytes(), before, "{shown} changed the store");
        assert_eq!(wg.store.all().len(), 1);
    }
    // A /30 holds the server and one peer: the next one finds it exhausted.
    let small = profile("wgunit0", "10.8.0.1/30", 51820, "vps.example.org:51820");
    let err = wg.add_peer(&small, req("bob")).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Conflict);
    assert!(err.to_string().contains("no free address in 10.8.0.0/30"), "{err}");
    assert_eq!(store_bytes(), before);

    let err = wg.remove_peer(&p, "nobody").unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert_eq!(store_bytes(), before);
}

// ---------------------------------------------------------------------------
// Privileged: real wireguard-go, real namespaces, real packets.

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the WireGuard module test needs root: it creates network namespaces and runs wireguard-go"
    );
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces (deleted by name) and processes (killed by PID) of one test.
struct Lab {
    srv: String,
    cli: String,
    children: Vec<Child>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        require_root();
        let base = format!("bwkwg-{}-{tag}", std::process::id());
        let lab = Lab {
            srv: format!("{base}-srv"),
            cli: format!("{base}-cli"),
            children: Vec::new(),
        };
        for ns in [&lab.srv, &lab.cli] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Created inside srv with the peer moved straight into cli: the
        // root namespace never sees either end.
        sh(&[
            "ip", "-n", &lab.srv, "link", "add", "bwkv0", "type", "veth", "peer", "name", "bwkv1", "netns", &lab.cli,
        ]);
        sh(&["ip", "-n", &lab.srv, "addr", "add", "192.0.2.1/24", "dev", "bwkv0"]);
        sh(&["ip", "-n", &lab.srv, "link", "set", "bwkv0", "up"]);
        sh(&["ip", "-n", &lab.cli, "addr", "add", "192.0.2.2/24", "dev", "bwkv1"]);
        sh(&["ip", "-n", &lab.cli, "link", "set", "bwkv1", "up"]);
        lab
    }

    /// A client wireguard-go in cli, owned by PID.
    fn client_wg(&mut self, iface: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.cli, "wireguard-go", "-f", iface])
            .env_remove("LOG_LEVEL")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
        let sock = backend::socket_path(iface);
        let ok = poll(Duration::from_secs(10), || UnixStream::connect(&sock).is_ok());
        assert!(ok, "client wireguard-go did not open {}", sock.display());
    }
}

use std::os::unix::net::UnixStream;

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let pid = Pid::from_raw(c.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.srv, &self.cli] {
            // The server's wireguard-go (spawned by the module) runs there too.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                let me = std::process::id().to_string();
                for pid in String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter(|p| *p != me)
                {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn enter(ns: &str) {
    let f = fs::File::open(Path::new("/run/netns").join(ns)).unwrap();
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// Whether a TCP exchange from namespace `ns` to `addr` completes: connect,
/// read the listener's one-byte greeting.
fn talks(ns: &str, addr: SocketAddr) -> bool {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter(&ns);
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(1500)));
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(1))
    })
    .join()
    .unwrap()
}

/// Stops the greeter's thread (and closes its socket) on drop.
struct Greeter(Arc<AtomicBool>);

impl Drop for Greeter {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A listener in the calling thread's namespace that greets with one byte.
fn greeter(addr: SocketAddr) -> Greeter {
    let l = TcpListener::bind(addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            while let Ok((mut c, _)) = l.accept() {
                let _ = c.write_all(b"!");
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    Greeter(stop)
}

/// What `wg-quick strip` does: drop the wg-quick-only keys (Address, DNS…).
fn strip(config: &str) -> String {
    config
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
            !matches!(
                key.as_str(),
                "address" | "dns" | "mtu" | "table" | "preup" | "postup" | "predown" | "postdown" | "saveconfig"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn field<'a>(config: &'a str, key: &str) -> &'a str {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} missing in\n{config}"))
}

/// Bring a printed client config up on the client interface in cli.
fn client_up(lab: &Lab, iface: &str, config: &str, work: &Path) {
    let file = work.join(format!("{iface}.conf"));
    fs::write(&file, strip(config)).unwrap();
    let file = file.to_str().unwrap();
    let cli = lab.cli.as_str();
    sh(&["ip", "netns", "exec", cli, "wg", "setconf", iface, file]);
    sh(&["ip", "-n", cli, "addr", "flush", "dev", iface]);
    sh(&["ip", "-n", cli, "addr", "add", field(config, "Address"), "dev", iface]);
    sh(&["ip", "-n", cli, "link", "set", iface, "up"]);
    for net in field(config, "AllowedIPs").split(',') {
        sh(&["ip", "-n", cli, "route", "replace", net.trim(), "dev", iface]);
    }
}

fn handshake_of(wg: &WireGuard, p: &Profile, name: &str) -> (Option<u64>, u64, u64) {
    let all = wg.peers(Some(p)).unwrap();
    let peer = all.iter().find(|i| i.name == name).unwrap();
    (peer.last_handshake, peer.rx_bytes, peer.tx_bytes)
}

#[test]
fn privileged_module_converges_a_working_tunnel() {
    let mut lab = Lab::new("mod");
    let n = std::process::id() % 1000;
    let (srv_if, cli_if) = (format!("wgt{n}s"), format!("wgt{n}c"));
    lab.client_wg(&cli_if);
    let root = tempfile::tempdir().unwrap();
    let srv = lab.srv.clone();
    let cli = lab.cli.clone();
    let work = root.path().to_path_buf();
    let lab = Arc::new(lab);
    let lab2 = lab.clone();
    // Everything the module does happens on this thread, inside srv: its
    // netlink sockets and wireguard-go inherit the thread's namespace.
    thread::spawn(move || {
        enter(&srv);
        scenario(&lab2, &cli, &srv_if, &cli_if, &work)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
    drop(lab);
}

fn scenario(lab: &Lab, cli: &str, srv_if: &str, cli_if: &str, work: &Path) {
    let host = Host::new(work.join("root"));
    let (mut wg, created) = WireGuard::open(&host).unwrap();
    assert!(created);
    let p = profile(srv_if, "10.77.0.1/24", 51999, "192.0.2.1:51999");
    assert!(!wg.plan(Some(&p)).is_empty());
    assert!(wg.drift(&p).unwrap().is_some());

    wg.apply(&p).unwrap();
    assert_eq!(
        wg.backend_in_use(),
        Some("userspace"),
        "this kernel has no WireGuard module"
    );
    assert_eq!(wg.plan(Some(&p)), vec![], "plan after apply must be empty");
    assert_eq!(wg.drift(&p).unwrap(), None);
    let health = wg.health(&p);
    assert_eq!(health[0].level, Level::Ok, "{health:?}");

    let vpn: SocketAddr = "10.77.0.1:6443".parse().unwrap();
    let stop = greeter(vpn);

    // --- add-peer alice: the printed config works from cli.
    let resp = wg.add_peer(&p, req("alice")).unwrap();
    let config = resp.client_config.clone();
    assert_eq!(resp.peer.address, "10.77.0.2");
    assert_eq!(field(&config, "Endpoint"), "192.0.2.1:51999");
    assert_eq!(field(&config, "PublicKey"), wg.public_key());
    assert_eq!(field(&config, "PersistentKeepalive"), "25");
    // The private key lives only in the response.
    let private = field(&config, "PrivateKey").to_owned();
    let state_files = walk(&host.state_dir());
    for f in &state_files {
        let text = fs::read_to_string(f).unwrap_or_default();
        assert!(
            !text.contains(&private),
            "{} holds the client's private key",
            f.display()
        );
    }
    client_up(lab, cli_if, &config, work);
    assert!(
        poll(Duration::from_secs(15), || talks(cli, vpn)),
        "no TCP through the tunnel to {vpn}"
    );
    // Reports share one device reading a second: wait for one taken after
    // the traffic.
    let mut seen = (None, 0, 0);
    let fresh = poll(Duration::from_secs(5), || {
        seen = handshake_of(&wg, &p, "alice");
        seen.0.is_some() && seen.1 > 0 && seen.2 > 0
    });
    assert!(fresh, "no handshake and traffic with alice: {seen:?}");
    let (hs, rx, tx) = (seen.0.expect("a handshake with alice"), seen.1, seen.2);
    assert_eq!(wg.drift(&p).unwrap(), None);

    // --- an identical re-apply touches nothing: same handshake, counters not reset.
    wg.apply(&p).unwrap();
    assert!(talks(cli, vpn));
    let (hs2, rx2, tx2) = handshake_of(&wg, &p, "alice");
    assert_eq!(hs2, Some(hs), "re-apply reset the session");
    assert!(
        rx2 >= rx && tx2 >= tx,
        "counters went back: rx {rx}->{rx2} tx {tx}->{tx2}"
    );

    // --- drift: a peer deleted behind our back is reported and restored.
    let alice_key = resp.peer.public_key.clone();
    sh(&["wg", "set", srv_if, "peer", &alice_key, "remove"]);
    let why = wg.drift(&p).unwrap().expect("drift after removing alice by hand");
    assert!(why.contains("peer alice"), "{why}");
    wg.apply(&p).unwrap();
    assert_eq!(wg.drift(&p).unwrap(), None);
    // The server lost alice's session and endpoint with her; the client
    // re-handshakes after ~15 s of unanswered traffic.
    assert!(
        poll(Duration::from_secs(40), || talks(cli, vpn)),
        "restored alice does not get through"
    );

    // --- wireguard-go killed: drift, and apply starts a new one with every peer.
    let old = wg.userspace_pid().unwrap();
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
    assert!(poll(Duration::from_secs(5), || wg.drift(&p).ok().flatten().is_some()));
    wg.apply(&p).unwrap();
    assert_ne!(wg.userspace_pid(), Some(old));
    assert_eq!(wg.drift(&p).unwrap(), None);
    // The listener stays bound to the VPN address while it is gone and back.
    // The client notices the lost session after ~15 s without replies and re-handshakes.
    assert!(
        poll(Duration::from_secs(40), || talks(cli, vpn)),
        "no tunnel after wireguard-go restart"
    );

    // --- remove-peer: the same config no longer gets through.
    let removed = wg.remove_peer(&p, "alice").unwrap();
    assert_eq!(removed.name, "alice");
    assert!(wg.peers(Some(&p)).unwrap().is_empty());
    assert!(!talks(cli, vpn), "alice still gets through after remove_peer");

    // --- own-key mode: the placeholder filled in works.
    let own = Key::generate_private();
    let resp = wg
        .add_peer(
            &p,
            AddPeerRequest {
                public_key: Some(own.get_public().to_base64()),
                address: Some(Ipv4Addr::new(10, 77, 0, 50)),
                ..req("bob")
            },
        )
        .unwrap();
    assert!(resp.client_config.contains("PrivateKey = <your private key>"));
    let filled = resp
        .client_config
        .replace(config::PRIVATE_KEY_PLACEHOLDER, &own.to_base64());
    client_up(lab, cli_if, &filled, work);
    assert!(
        poll(Duration::from_secs(15), || talks(cli, vpn)),
        "own-key peer bob does not get through"
    );
    assert_eq!(
        wg.peers(Some(&p)).unwrap()[0].address,
        "10.77.0.50",
        "explicit address not used"
    );

    // --- expiry removes the peer from store and device.
    let gone = wg.expire(&p, u64::MAX).unwrap();
    assert!(gone.is_empty(), "bob has no expiry");
    let resp = wg
        .add_peer(
            &p,
            AddPeerRequest {
                expires: Some("1h".to_owned()),
                ..req("carol")
            },
        )
        .unwrap();
    let carol_expires = resp.peer.expires.unwrap();
    assert!(wg.expire(&p, carol_expires - 1).unwrap().is_empty());
    let gone = wg.expire(&p, carol_expires).unwrap();
    assert_eq!(gone.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), vec!["carol"]);
    assert_eq!(wg.drift(&p).unwrap(), None);

    // --- the server key never leaves its 0600 file.
    let key_file = host.state_dir().join("wireguard/server.key");
    let server_private = fs::read_to_string(&key_file).unwrap().trim().to_owned();
    for f in walk(work) {
        if f == key_file {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.contains(&server_private), "{} holds the server key", f.display());
    }
    assert!(!format!("{wg:?}").contains(&server_private));

    drop(stop);
    wg.shutdown();
    assert!(!backend::socket_path(srv_if).exists(), "wireguard-go left its socket");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn a_peer_is_stale_only_past_the_profiles_threshold() {
    let now = 1_000_000;
    let mut alice = stored("alice", "10.8.0.2");
    alice.created = now - 10 * 86400;
    let mut bob = stored("bob", "10.8.0.3");
    bob.created = now - 60;
    let mut carol = stored("carol", "10.8.0.4");
    carol.created = now - 10 * 86400;
    let all = [&alice, &bob, &carol];
    // alice last handshook 2 days ago, bob never (but is new), carol never.
    let last = |p: &StoredPeer| (p.name == "alice").then_some(now - 2 * 86400);
    assert_eq!(super::stale_peers(&all, last, now, 86400), ["alice", "carol"]);
    assert_eq!(super::stale_peers(&all, last, now, 3 * 86400), ["carol"]);
    assert!(super::stale_peers(&all, last, now, 30 * 86400).is_empty());
}
