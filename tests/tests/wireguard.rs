//! WireGuard through the daemon: `bulwarkctl add-peer` prints a config that
//! really works from the `admin` namespace (real wireguard-go on both ends,
//! real packets to a listener on the server's VPN address), and only through
//! the tunnel; peers survive kill -9, expire, and re-applies keep sessions.
//!
//! Every test uses its own interface names: `/var/run/wireguard` (where the
//! UAPI sockets live) is shared by all network namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulwark_model::api::PeerInfo;
use bulwark_tests::addr::{VPS_ADMIN_V4, VPS_INET_V4};
use bulwark_tests::{bin, poll, run, run_ok, Daemon, Lab, Ran, Rng};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The server's VPN address and the K3s API port the tunnel must reach.
const VPN_SERVER: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const API_PORT: u16 = 6443;
const WG_PORT: u16 = 51820;

/// Interface names unique to this process and test (IFNAMSIZ: 15 bytes).
fn names() -> (String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::process::id() % 10000;
    (format!("wgv{p}x{n}"), format!("wga{p}x{n}"))
}

/// A profile with WireGuard on `iface`: 6443 only through the VPN, 22 from admins.
fn profile(iface: &str, address: &str) -> String {
    format!(
        r#"[profile]
name = "wg-test"
drift = "repair"
drift_interval = "1s"

[firewall]
admin_cidrs = ["198.51.100.0/24", "2001:db8:10::/64"]
admin_tcp = [22]
vpn_tcp = [{API_PORT}]

[wireguard]
interface = "{iface}"
address = "{address}"
listen_port = {WG_PORT}
endpoint = "{VPS_ADMIN_V4}:{WG_PORT}"
backend = "auto"
keepalive = 5
"#
    )
}

/// PIDs of `wireguard-go -f IFACE` (found by the unique interface name).
fn wg_go_pids(iface: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
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

/// Kills the wireguard-go serving `iface` when dropped: a daemon killed with
/// SIGKILL leaves it running, and it would keep its namespace alive.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        // SIGTERM first: wireguard-go then removes its socket and TUN device.
        for pid in wg_go_pids(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let _ = poll(Duration::from_secs(3), Duration::from_millis(20), || {
            wg_go_pids(&self.0).is_empty().then_some(())
        });
        for pid in wg_go_pids(&self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // A SIGKILLed one (here or in the test) leaves its socket file behind.
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.0));
    }
}

/// Kill the server's wireguard-go (after a daemon kill -9) so a restart
/// must rebuild the interface from the store.
fn kill_server_wg(iface: &str) {
    for pid in wg_go_pids(iface) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        poll(Duration::from_secs(5), Duration::from_millis(50), || wg_go_pids(iface)
            .is_empty()
            .then_some(()))
        .is_some(),
        "wireguard-go for {iface} survived SIGKILL"
    );
}

/// The admin end of the tunnel: a wireguard-go in the admin namespace, by PID.
struct Client {
    ns: String,
    iface: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Client {
    fn new(ns: &str, iface: &str) -> Client {
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
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// What an admin does with the printed config: `wg setconf` of its
    /// stripped form, its Address, routes for its AllowedIPs.
    fn up(&self, config: &str) {
        let file = self.dir.path().join("client.conf");
        fs::write(&file, strip(config)).unwrap();
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
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `wg-quick strip` removes: keys `wg setconf` does not know.
fn strip(config: &str) -> String {
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

fn field<'a>(config: &'a str, key: &str) -> &'a str {
    config
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{key} missing from the client config:\n{config}"))
}

/// Whether a TCP handshake from `ns` to `addr:port` completes (1 s).
fn tcp(ns: &str, addr: IpAddr, port: u16) -> bool {
    let ns = ns.to_owned();
    thread::spawn(move || {
        let f = fs::File::open(Path::new("/run/netns").join(&ns)).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(1)) else {
            return false;
        };
        // The harness's listener accepts and closes: EOF proves a full exchange.
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut b = [0u8; 1];
        matches!(s.read(&mut b), Ok(0))
    })
    .join()
    .unwrap()
}

fn through_tunnel(ns: &str) -> bool {
    tcp(ns, IpAddr::V4(VPN_SERVER), API_PORT)
}

/// Polls until the tunnel carries a connection (handshake included).
fn wait_tunnel(ns: &str, d: &Daemon) {
    let ok = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        through_tunnel(ns).then_some(())
    });
    assert!(
        ok.is_some(),
        "no connection through the tunnel to {VPN_SERVER}:{API_PORT}\n{}",
        d.logs()
    );
}

/// `bulwarkctl --json peers`, accepting a bare list or `{"peers": [...]}`.
fn peers(d: &Daemon) -> Vec<PeerInfo> {
    let v: serde_json::Value = d.ctl_json(&["peers"]);
    let list = match v {
        serde_json::Value::Object(mut m) => m.remove("peers").unwrap_or_default(),
        other => other,
    };
    serde_json::from_value(list).expect("peers JSON")
}

fn peer<'a>(all: &'a [PeerInfo], name: &str) -> &'a PeerInfo {
    all.iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no peer {name} in {all:#?}"))
}

/// `wg show IFACE DUMP-FIELD` inside vps, as (public key → value).
fn wg_show(d: &Daemon, vps: &str, iface: &str, what: &str) -> BTreeMap<String, String> {
    let r = run(Command::new("ip").args(["netns", "exec", vps, "wg", "show", iface, what]));
    assert!(r.ok(), "wg show failed:\n{r}\n{}", d.logs());
    r.stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next().unwrap_or("").to_owned()))
        })
        .collect()
}

fn device_keys(d: &Daemon, vps: &str, iface: &str) -> BTreeSet<String> {
    wg_show(d, vps, iface, "peers").into_keys().collect()
}

/// `add-peer ARGS` that must succeed; returns the printed config.
fn add_peer(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["add-peer"];
    all.extend_from_slice(args);
    d.ctl_ok(&all).stdout
}

fn start(lab: &mut Lab, iface: &str) -> Reaper {
    let reaper = Reaper(iface.to_owned());
    lab.daemon.start(Some(&profile(iface, "10.8.0.1/24")));
    reaper
}

/// The peer store: its snapshot and the journal of changes since.
fn store_bytes(d: &Daemon) -> Vec<u8> {
    let dir = d.state_dir().join("wireguard");
    let mut bytes = fs::read(dir.join("peers.json")).unwrap_or_default();
    bytes.extend(fs::read(dir.join("peers.journal")).unwrap_or_default());
    bytes
}

#[test]
fn add_peer_config_completes_a_handshake_and_reaches_6443_only_through_the_tunnel() {
    let mut lab = Lab::new("wg-e2e");
    let (srv_if, cli_if) = names();
    let _reaper = start(&mut lab, &srv_if);
    let _l = lab.net.listen(&lab.net.vps, &[API_PORT, 22]);
    let d = &lab.daemon;
    let (admin, inet) = (lab.net.admin.clone(), lab.net.inet.clone());

    // Before the tunnel: 6443 via the plain link is refused from admin, and
    // from the internet even with a route to the VPN subnet.
    run_ok(Command::new("ip").args(["-n", &admin, "route", "add", "10.8.0.0/24", "via", "198.51.100.1"]));
    run_ok(Command::new("ip").args(["-n", &inet, "route", "add", "10.8.0.0/24", "via", "203.0.113.1"]));
    assert!(
        !through_tunnel(&admin),
        "6443 on the VPN address is reachable without the tunnel"
    );
    assert!(!tcp(&admin, VPS_ADMIN_V4, API_PORT), "6443 answers on the admin link");
    assert!(tcp(&admin, VPS_ADMIN_V4, 22), "the admin lost SSH");

    let config = add_peer(d, &["alice"]);
    assert!(config.contains("[Interface]") && config.contains("[Peer]"), "{config}");
    assert_eq!(field(&config, "Address"), "10.8.0.2/32");
    assert_eq!(field(&config, "Endpoint"), format!("{VPS_ADMIN_V4}:{WG_PORT}"));
    assert_eq!(field(&config, "AllowedIPs"), "10.8.0.0/24");
    assert!(!field(&config, "PresharedKey").is_empty());

    let client = Client::new(&admin, &cli_if);
    client.up(&config);
    wait_tunnel(&admin, d);
    assert!(
        !tcp(&inet, IpAddr::V4(VPN_SERVER), API_PORT),
        "the internet reaches 6443"
    );
    assert!(
        !tcp(&inet, VPS_INET_V4, API_PORT),
        "the internet reaches 6443 on the vps link"
    );

    let all = peers(d);
    let alice = peer(&all, "alice");
    assert_eq!(alice.address, "10.8.0.2");
    assert!(alice.last_handshake.is_some(), "no handshake recorded: {alice:?}");
    assert!(alice.rx_bytes > 0 && alice.tx_bytes > 0, "{alice:?}");
    // The human listing names the peer too.
    assert!(d.ctl_ok(&["peers"]).stdout.contains("alice"));
}

/// The terminal QR code (explicit colours, two modules per character) back
/// into an image, decoded by zbarimg: what a phone's camera would read.
fn decode_terminal_qr(stderr: &str, dir: &Path) -> String {
    let rows: Vec<Vec<char>> = stderr
        .lines()
        .filter(|l| l.starts_with("\x1b[30;107m"))
        .map(|l| {
            l.trim_start_matches("\x1b[30;107m")
                .trim_end_matches("\x1b[0m")
                .chars()
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no QR code on stderr:\n{stderr}");
    const SCALE: usize = 4;
    let width = rows[0].len();
    let mut pixels = Vec::new();
    for row in &rows {
        for half in [0, 1] {
            let line: Vec<u8> = row
                .iter()
                .flat_map(|c| {
                    let (top, bottom) = match c {
                        '█' => (true, true),
                        '▀' => (true, false),
                        '▄' => (false, true),
                        _ => (false, false),
                    };
                    let dark = if half == 0 { top } else { bottom };
                    std::iter::repeat_n(if dark { 0u8 } else { 255 }, SCALE)
                })
                .collect();
            for _ in 0..SCALE {
                pixels.extend_from_slice(&line);
            }
        }
    }
    let image = dir.join("qr.pgm");
    let mut pgm = format!("P5\n{} {}\n255\n", width * SCALE, rows.len() * 2 * SCALE).into_bytes();
    pgm.extend_from_slice(&pixels);
    fs::write(&image, pgm).unwrap();
    let r = run_ok(Command::new("zbarimg").args(["--raw", "-q"]).arg(&image));
    r.stdout.trim_end_matches('\n').to_owned()
}

#[test]
fn add_peer_qr_goes_to_stderr_and_output_is_a_0600_file_wg_quick_accepts() {
    let mut lab = Lab::new("wg-qr");
    let (srv_if, cli_if) = names();
    let _reaper = start(&mut lab, &srv_if);
    let _l = lab.net.listen(&lab.net.vps, &[API_PORT]);
    let d = &lab.daemon;
    let dir = tempfile::tempdir().unwrap();
    // wg-quick takes the interface name from the file name.
    let file = dir.path().join(format!("{cli_if}.conf"));
    let r = d.ctl_ok(&["add-peer", "carol", "--qr", "--output", file.to_str().unwrap()]);
    assert_eq!(r.stdout, "", "nothing may go to stdout with --output:\n{r}");
    assert!(r.stderr.contains("written to"), "{r}");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let config = fs::read_to_string(&file).unwrap();
    assert_eq!(decode_terminal_qr(&r.stderr, dir.path()), config.trim_end_matches('\n'));

    // `wg-quick strip` accepts the file, and what it prints completes a handshake.
    let stripped = run_ok(Command::new("wg-quick").arg("strip").arg(&file)).stdout;
    assert!(
        stripped.contains("[Peer]") && !stripped.contains("Address"),
        "{stripped}"
    );
    let client = Client::new(&lab.net.admin, &cli_if);
    client.up(&config);
    wait_tunnel(&lab.net.admin, d);

    // An existing file is refused before any peer is added.
    let again = d.ctl(&["add-peer", "dave", "--output", file.to_str().unwrap()]);
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr.contains("exists"), "{again}");
    assert!(!peers(d).iter().any(|p| p.name == "dave"));

    // Without --output, stdout is the config alone even with --qr.
    let plain = d.ctl_ok(&["add-peer", "erin", "--qr"]);
    assert!(
        plain.stdout.contains("\n[Interface]\n") && !plain.stdout.contains('\x1b'),
        "{plain}"
    );
    assert!(plain.stderr.contains("\x1b[30;107m"), "{plain}");
}

#[test]
fn remove_peer_asks_without_yes_and_then_cuts_the_tunnel() {
    let mut lab = Lab::new("wg-remove");
    let (srv_if, cli_if) = names();
    let _reaper = start(&mut lab, &srv_if);
    let _l = lab.net.listen(&lab.net.vps, &[API_PORT]);
    let d = &lab.daemon;
    let admin = lab.net.admin.clone();
    let config = add_peer(d, &["alice"]);
    let client = Client::new(&admin, &cli_if);
    client.up(&config);
    wait_tunnel(&admin, d);

    // No terminal and no --yes: refused, nothing removed.
    let r = d.ctl(&["remove-peer", "alice"]);
    assert!(
        !r.ok(),
        "remove-peer without --yes and without a terminal must not proceed:\n{r}"
    );
    assert_eq!(peers(d).len(), 1);

    d.ctl_ok(&["remove-peer", "alice", "--yes"]);
    assert!(peers(d).is_empty());
    assert!(
        device_keys(d, &lab.net.vps, &srv_if).is_empty(),
        "alice is still on the device"
    );
    // The same config, brought up again, no longer gets through.
    client.up(&config);
    thread::sleep(Duration::from_secs(1));
    assert!(!through_tunnel(&admin), "a removed peer still reaches 6443");
    let r = d.ctl(&["remove-peer", "alice", "--yes"]);
    assert!(!r.ok() && r.stderr.contains("alice"), "removing an absent peer:\n{r}");
}

#[test]
fn own_key_mode_installs_the_given_key_and_the_filled_config_works() {
    let mut lab = Lab::new("wg-ownkey");
    let (srv_if, cli_if) = names();
    let _reaper = start(&mut lab, &srv_if);
    let _l = lab.net.listen(&lab.net.vps, &[API_PORT]);
    let d = &lab.daemon;
    let admin = lab.net.admin.clone();

    let private = run_ok(Command::new("wg").arg("genkey")).stdout.trim().to_owned();
    let public = bulwark_tests::run_with_stdin(Command::new("wg").arg("pubkey"), private.as_bytes())
        .stdout
        .trim()
        .to_owned();
    let config = add_peer(d, &["bob", "--public-key", &public, "--address", "10.8.0.77"]);
    assert_eq!(field(&config, "PrivateKey"), "<your private key>");
    assert_eq!(field(&config, "Address"), "10.8.0.77/32");
    assert!(!config.contains(&private));
    assert!(
        device_keys(d, &lab.net.vps, &srv_if).contains(&public),
        "bob's key is not live on {srv_if}"
    );
    assert_eq!(peer(&peers(d), "bob").public_key, public);

    let client = Client::new(&admin, &cli_if);
    client.up(&config.replace("<your private key>", &private));
    wait_tunnel(&admin, d);
}

#[test]
fn twenty_concurrent_add_peers_get_distinct_addresses_and_survive_kill9() {
    let mut lab = Lab::new("wg-concurrent");
    let (srv_if, _) = names();
    let _reaper = start(&mut lab, &srv_if);
    let vps = lab.net.vps.clone();
    let results: Vec<Ran> = thread::scope(|s| {
        let d = &lab.daemon;
        let handles: Vec<_> = (0..20)
            .map(|i| s.spawn(move || d.ctl(&["add-peer", &format!("admin{i}")])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(r.ok(), "concurrent add-peer failed:\n{r}\n{}", lab.daemon.logs());
    }
    let addrs: BTreeSet<String> = results.iter().map(|r| field(&r.stdout, "Address").to_owned()).collect();
    assert_eq!(addrs.len(), 20, "addresses are not distinct: {addrs:?}");
    let before = peers(&lab.daemon);
    assert_eq!(before.len(), 20);
    let keys: BTreeSet<String> = before.iter().map(|p| p.public_key.clone()).collect();
    assert_eq!(device_keys(&lab.daemon, &vps, &srv_if), keys);

    // Daemon and wireguard-go both gone: the restart must rebuild the interface from the store.
    lab.daemon.kill9();
    kill_server_wg(&srv_if);
    lab.daemon.restart();
    let after = peers(&lab.daemon);
    assert_eq!(
        after.iter().map(|p| (&p.name, &p.address)).collect::<BTreeSet<_>>(),
        before.iter().map(|p| (&p.name, &p.address)).collect::<BTreeSet<_>>()
    );
    let back = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let r = run(Command::new("ip").args(["netns", "exec", &vps, "wg", "show", &srv_if, "peers"]));
        let live: BTreeSet<String> = r.stdout.lines().map(str::to_owned).collect();
        (live == keys).then_some(())
    });
    assert!(
        back.is_some(),
        "the 20 peers are not back on {srv_if}\n{}",
        lab.daemon.logs()
    );
}

#[test]
fn sigterm_stops_wireguard_go_with_the_daemon_and_a_restart_brings_the_peers_back() {
    let mut lab = Lab::new("wg-term");
    let (srv_if, _) = names();
    let _reaper = start(&mut lab, &srv_if);
    let vps = lab.net.vps.clone();
    add_peer(&lab.daemon, &["admin"]);
    let keys = device_keys(&lab.daemon, &vps, &srv_if);
    assert_eq!(keys.len(), 1);
    assert_eq!(wg_go_pids(&srv_if).len(), 1, "one wireguard-go serves {srv_if}");

    // Outside systemd nothing else ends bulwarkd's children: it must.
    lab.daemon.terminate();
    assert_eq!(wg_go_pids(&srv_if), Vec::<i32>::new(), "wireguard-go outlived bulwarkd");
    let link = run(Command::new("ip").args(["netns", "exec", &vps, "ip", "link", "show", &srv_if]));
    assert!(!link.ok(), "{srv_if} is still there after the stop:\n{link}");

    lab.daemon.restart();
    let back = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        (device_keys(&lab.daemon, &vps, &srv_if) == keys).then_some(())
    });
    assert!(
        back.is_some(),
        "the peer is not back on {srv_if}\n{}",
        lab.daemon.logs()
    );
}

/// What the kill -9 loop knows about one peer name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Present,
    Absent,
    /// The call was cut by the kill: either outcome is fine.
    Unsure,
}

fn ctl_at(socket: &Path, args: &[&str]) -> Ran {
    run(Command::new(bin("bulwarkctl"))
        .env_remove("SSH_CONNECTION")
        .env_remove("BULWARK_SOCKET")
        .arg("--socket")
        .arg(socket)
        .args(args))
}

#[test]
fn kill9_during_add_and_remove_loops_loses_or_duplicates_no_peer() {
    let mut lab = Lab::new("wg-kill9");
    let (srv_if, _) = names();
    let _reaper = start(&mut lab, &srv_if);
    let vps = lab.net.vps.clone();
    let socket = lab.daemon.socket();
    let mut rng = Rng::from_env();
    let known: Arc<Mutex<BTreeMap<String, Known>>> = Arc::default();
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (stop, known, socket) = (stop.clone(), known.clone(), socket.clone());
            let seed = rng.below(1000);
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("r{round}p{i}");
                    i += 1;
                    known.lock().unwrap().insert(name.clone(), Known::Unsure);
                    let r = ctl_at(&socket, &["add-peer", &name]);
                    if r.ok() {
                        known.lock().unwrap().insert(name.clone(), Known::Present);
                    } else if r.stderr.contains("invalid") {
                        panic!("add-peer refused a valid name:\n{r}");
                    }
                    // Remove every other peer this round added.
                    if (i + seed) % 2 == 0 && r.ok() {
                        known.lock().unwrap().insert(name.clone(), Known::Unsure);
                        if ctl_at(&socket, &["remove-peer", &name, "--yes"]).ok() {
                            known.lock().unwrap().insert(name, Known::Absent);
                        }
                    }
                }
            })
        };
        thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        lab.daemon.kill9();
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        if round % 2 == 1 {
            kill_server_wg(&srv_if);
        }
        lab.daemon.restart();
        let leftovers: Vec<_> = files(&lab.daemon.state_dir())
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with(".bwk-tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files survived the restart: {leftovers:?}"
        );

        let all = peers(&lab.daemon);
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "duplicate peer names after kill -9: {names:?}"
        );
        let addrs: BTreeSet<&str> = all.iter().map(|p| p.address.as_str()).collect();
        assert_eq!(addrs.len(), all.len(), "duplicate addresses after kill -9: {all:#?}");
        for (name, k) in known.lock().unwrap().iter() {
            let present = unique.contains(name.as_str());
            match k {
                Known::Present => assert!(present, "{name} was added (exit 0) but is gone after kill -9"),
                Known::Absent => assert!(!present, "{name} was removed (exit 0) but is back after kill -9"),
                Known::Unsure => {}
            }
        }
        // Settle the unsure ones to what the daemon now says.
        for (name, k) in known.lock().unwrap().iter_mut() {
            *k = if unique.contains(name.as_str()) {
                Known::Present
            } else {
                Known::Absent
            };
        }
        let keys: BTreeSet<String> = all.iter().map(|p| p.public_key.clone()).collect();
        let synced = poll(Duration::from_secs(10), Duration::from_millis(200), || {
            let r = run(Command::new("ip").args(["netns", "exec", &vps, "wg", "show", &srv_if, "peers"]));
            let live: BTreeSet<String> = r.stdout.lines().map(str::to_owned).collect();
            (live == keys).then_some(())
        });
        assert!(
            synced.is_some(),
            "device peers differ from the store after restart (round {round})\n{}",
            lab.daemon.logs()
        );
    }
}

#[test]
fn an_expired_peer_is_removed_within_one_drift_interval() {
    let mut lab = Lab::new("wg-expiry");
    let (srv_if, _) = names();
    let _reaper = start(&mut lab, &srv_if);
    let d = &lab.daemon;
    let t0 = Instant::now();
    // 60 s: the shortest lifetime add-peer accepts (the bounds of peer_expiry).
    add_peer(d, &["temp", "--expires", "60s"]);
    add_peer(d, &["stays"]);
    let temp = peer(&peers(d), "temp").clone();
    let expires = temp.expires.expect("an expiry");
    assert!(expires >= temp.created + 60, "{temp:?}");
    assert!(device_keys(d, &lab.net.vps, &srv_if).contains(&temp.public_key));

    // Expiry at 60 s, drift interval 1 s: gone by 60 s + 1 s (+1 s of slack for the call).
    let gone = poll(Duration::from_secs(64), Duration::from_millis(200), || {
        (!peers(d).iter().any(|p| p.name == "temp")).then(|| t0.elapsed())
    });
    let took = gone.unwrap_or_else(|| panic!("temp was not removed\n{}", d.logs()));
    assert!(
        took <= Duration::from_secs(62),
        "expired peer removed only after {took:?}"
    );
    assert!(
        took >= Duration::from_secs(59),
        "peer removed before it expired ({took:?})"
    );
    let keys = device_keys(d, &lab.net.vps, &srv_if);
    assert!(!keys.contains(&temp.public_key), "expired peer still on the device");
    assert_eq!(peers(d).len(), 1, "the peer without expiry must stay");
    let events = d.audit_tail(20);
    assert!(
        events
            .iter()
            .any(|e| e.event == "BWK-WG-0003" && e.message.contains("temp")),
        "no BWK-WG-0003 audit event for temp: {events:#?}"
    );
}

#[test]
fn reapplying_the_same_profile_while_traffic_flows_keeps_the_handshake() {
    let mut lab = Lab::new("wg-reapply");
    let (srv_if, cli_if) = names();
    let _reaper = start(&mut lab, &srv_if);
    let _l = lab.net.listen(&lab.net.vps, &[API_PORT]);
    let d = &lab.daemon;
    let admin = lab.net.admin.clone();
    let vps = lab.net.vps.clone();
    let config = add_peer(d, &["alice"]);
    let client = Client::new(&admin, &cli_if);
    client.up(&config);
    wait_tunnel(&admin, d);

    // Traffic keeps flowing through the tunnel during the re-applies.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, failures, admin) = (stop.clone(), failures.clone(), admin.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !through_tunnel(&admin) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let key = peer(&peers(d), "alice").public_key.clone();
    let hs_before = wg_show(d, &vps, &srv_if, "latest-handshakes")[&key].clone();
    let rx_before: u64 = wg_show(d, &vps, &srv_if, "transfer")[&key].parse().unwrap();
    assert_ne!(hs_before, "0");
    let file = d.write_profile("same", profile(&srv_if, "10.8.0.1/24"));
    for _ in 0..3 {
        d.apply(&file, &[]);
    }
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();

    let hs_after = wg_show(d, &vps, &srv_if, "latest-handshakes")[&key].clone();
    let rx_after: u64 = wg_show(d, &vps, &srv_if, "transfer")[&key].parse().unwrap();
    assert_eq!(hs_after, hs_before, "re-apply reset the WireGuard session");
    assert!(
        rx_after >= rx_before,
        "transfer counters went back: {rx_before} -> {rx_after}"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "connections failed during re-apply"
    );
}

/// Files under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_server_private_key_is_in_no_log_and_no_file_readable_by_others() {
    let mut lab = Lab::new("wg-secret");
    let (srv_if, _) = names();
    let _reaper = start(&mut lab, &srv_if);
    let d = &lab.daemon;
    let config = add_peer(d, &["alice"]);
    d.ctl_ok(&["remove-peer", "alice", "--yes"]);
    // Exercise more code paths that log: a restart, a status, a health.
    lab.daemon.kill9();
    lab.daemon.restart();
    let d = &lab.daemon;
    let _ = d.ctl(&["status"]);
    let _ = d.ctl(&["health"]);

    let key_file = d.state_dir().join("wireguard/server.key");
    let server_key = fs::read_to_string(&key_file).unwrap().trim().to_owned();
    assert_eq!(server_key.len(), 44, "server.key is not one base64 key");
    let mode = fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "server.key has mode {mode:o}");
    let client_private = field(&config, "PrivateKey").to_owned();
    for f in files(&d.root) {
        let Ok(bytes) = fs::read(&f) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        if f != key_file {
            assert!(
                !text.contains(&server_key),
                "{} contains the server private key",
                f.display()
            );
        }
        assert!(
            !text.contains(&client_private),
            "{} contains alice's private key",
            f.display()
        );
        if text.contains(&server_key) {
            let m = fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(m & 0o077, 0, "{} holds the key and is readable by others", f.display());
        }
    }
    // Every directory on the way to the key is private too.
    let wg_dir = d.state_dir().join("wireguard");
    assert_eq!(fs::metadata(&wg_dir).unwrap().permissions().mode() & 0o077, 0);
    // The API shows only the public half.
    for args in [&["--json", "status"][..], &["--json", "peers"], &["--json", "health"]] {
        let r = d.ctl(args);
        assert!(
            !r.stdout.contains(&server_key),
            "`bulwarkctl {args:?}` shows the server key"
        );
    }
    // Where a journal exists (the daemon logs there when it can), it is clean too.
    if let Ok(out) = Command::new("journalctl")
        .args(["-o", "cat", "--since", "-10min"])
        .output()
    {
        let journal = String::from_utf8_lossy(&out.stdout);
        assert!(!journal.contains(&server_key), "the journal holds the server key");
    }
}

#[test]
fn bad_add_peer_inputs_are_refused_with_a_clear_message_and_change_nothing() {
    let mut lab = Lab::new("wg-bad");
    let (srv_if, _) = names();
    let _reaper = start(&mut lab, &srv_if);
    let d = &lab.daemon;
    let vps = lab.net.vps.clone();
    add_peer(d, &["alice", "--address", "10.8.0.9"]);
    let alice_key = peer(&peers(d), "alice").public_key.clone();
    let store = store_bytes(d);
    let device = device_keys(d, &vps, &srv_if);
    let cases: &[(&[&str], &str)] = &[
        (&["add-peer", "bad name"], "invalid peer name"),
        (&["add-peer", "--", "-dash"], "invalid peer name"),
        (&["add-peer", "x/../../etc"], "invalid peer name"),
        (&["add-peer", &"n".repeat(33)], "longer than 32"),
        (&["add-peer", "alice"], "already exists"),
        (
            &["add-peer", "bob", "--public-key", "not-base64!"],
            "invalid public key",
        ),
        (&["add-peer", "bob", "--public-key", "AAAA"], "invalid public key"),
        (&["add-peer", "bob", "--public-key", &alice_key], "already used"),
        (&["add-peer", "bob", "--address", "10.9.0.5"], "outside the VPN subnet"),
        (&["add-peer", "bob", "--address", "10.8.0.9"], "already used"),
        (&["add-peer", "bob", "--address", "10.8.0.1"], "server's own"),
        (&["add-peer", "bob", "--address", "10.8.0.255"], "broadcast"),
        (&["add-peer", "bob", "--expires", "someday"], "invalid expiry"),
        (
            &["add-peer", "bob", "--expires", "59s"],
            "the bounds of wireguard.peer_expiry",
        ),
        (
            &["add-peer", "bob", "--expires", "3651d"],
            "the bounds of wireguard.peer_expiry",
        ),
        (&["remove-peer", "nobody", "--yes"], "no peer named"),
    ];
    for (args, want) in cases {
        let r = d.ctl(args);
        assert!(!r.ok(), "accepted: {args:?}\n{r}");
        assert!(
            r.stderr.contains(want),
            "`bulwarkctl {args:?}` does not say {want:?}:\n{r}"
        );
        assert_eq!(store_bytes(d), store, "{args:?} changed the peer store");
        assert_eq!(device_keys(d, &vps, &srv_if), device, "{args:?} changed the device");
    }
    assert_eq!(peers(d).len(), 1);
}

#[test]
fn an_exhausted_subnet_is_a_clear_error() {
    let mut lab = Lab::new("wg-full");
    let (srv_if, _) = names();
    let _reaper = Reaper(srv_if.clone());
    lab.daemon.start(Some(&profile(&srv_if, "10.8.0.1/30")));
    let d = &lab.daemon;
    let config = add_peer(d, &["only"]);
    assert_eq!(field(&config, "Address"), "10.8.0.2/32");
    let store = store_bytes(d);
    let r = d.ctl(&["add-peer", "more"]);
    assert!(!r.ok() && r.stderr.contains("no free address in 10.8.0.0/30"), "{r}");
    assert_eq!(store_bytes(d), store);
}
