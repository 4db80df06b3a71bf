//! Bulwark's benchmarks: every goal row of the firewall and the peers,
//! measured side by side in one run against what a user could run instead
//! (raw `nft -f`, one hand-built netlink batch, `wg set`, and ufw and
//! firewalld where installed), as ratios of medians. See docs/benchmarks.md for the figures and how to read them.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/bulwark-bench [--runs N] [--sizes 10,1000,50000,200000]
//!                              [--peers 10,1000,5000] [--idle SECS] [--only firewall|peers|others]
//! ```
//!
//! Needs root: it creates a network namespace of its own and runs bulwarkd,
//! nft, wg and wireguard-go inside it only.
#![allow(clippy::print_stdout)]

mod lab;
mod others;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bulwark_agent::firewall::netlink::{NfTables, SetChange};
use lab::{fail, http_get, run, run_stdin, timed, Daemon, Netns};

/// The networks of a profile of size `n`: every other address of 10/8, so
/// nothing merges.
pub(crate) fn cidrs(n: usize) -> Vec<String> {
    (0..n as u32)
        .map(|i| 2 * i)
        .map(|a| format!("10.{}.{}.{}/32", (a >> 16) & 255, (a >> 8) & 255, a & 255))
        .collect()
}

/// The one network added and removed by the one-CIDR rows.
pub(crate) const EXTRA: &str = "192.0.2.77/32";

fn firewall(n: usize, variant: u16, extra: bool) -> String {
    let mut nets = cidrs(n);
    if extra {
        nets.push(EXTRA.to_owned());
    }
    let list: Vec<String> = nets.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "[firewall]\nadmin_cidrs = [{}]\nadmin_tcp = [22, {}]\npublic_tcp = [443]\n",
        list.join(","),
        1000 + variant
    )
}

fn profile(n: usize, variant: u16, extra: bool) -> String {
    format!("[profile]\nname = \"bench\"\n{}", firewall(n, variant, extra))
}

pub(crate) struct Samples(pub(crate) Vec<Duration>);

impl Samples {
    pub(crate) fn of(runs: usize, mut f: impl FnMut() -> Duration) -> Samples {
        Samples((0..runs).map(|_| f()).collect())
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).copied().unwrap_or_default()
    }

    pub(crate) fn median(&self) -> Duration {
        self.quantile(0.5)
    }
}

pub(crate) fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m >= 100.0 {
        format!("{m:.0}")
    } else if m >= 1.0 {
        format!("{m:.1}")
    } else {
        format!("{m:.3}")
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

struct Opts {
    runs: usize,
    sizes: Vec<usize>,
    peers: Vec<usize>,
    idle: u64,
    only: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        runs: 5,
        sizes: vec![10, 1000, 50_000, 200_000],
        peers: vec![10, 1000, 5000],
        idle: 120,
        only: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |s: &str| s.split(',').filter_map(|x| x.parse().ok()).collect::<Vec<usize>>();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--runs" => o.runs = value().parse().unwrap_or_else(|_| fail("--runs N")),
            "--sizes" => o.sizes = list(&value()),
            "--peers" => o.peers = list(&value()),
            "--idle" => o.idle = value().parse().unwrap_or_else(|_| fail("--idle SECS")),
            "--only" => o.only = Some(value()),
            other => fail(&format!("unknown argument {other}")),
        }
    }
    o
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The anchor tools: one hand-built netlink batch, one GETGEN, as processes.
    match args.get(1).map(String::as_str) {
        Some("nl-batch") => return nl_batch(&args[2..]),
        Some("getgen") => {
            let g = NfTables::open().and_then(|mut k| k.generation());
            return println!("{}", g.unwrap_or_else(|e| fail(&e.to_string())));
        }
        _ => {}
    }
    if !nix::unistd::geteuid().is_root() {
        fail("needs root: it creates a network namespace");
    }
    let o = opts();
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let uptime = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# bulwark-bench: {} runs, load average {}", o.runs, uptime.trim());
    println!("# {}", String::from_utf8_lossy(&run(&["uname", "-sr"]).stdout).trim());
    println!(
        "# {}",
        String::from_utf8_lossy(&run(&["/usr/sbin/nft", "--version"]).stdout).trim()
    );
    let only = |what: &str| o.only.is_none() || o.only.as_deref() == Some(what);
    let bulwark = if only("firewall") {
        firewall_rows(&bin, &o)
    } else {
        BTreeMap::new()
    };
    if only("peers") {
        peer_rows(&bin, &o);
        module_alone(&o);
    }
    if only("others") {
        other_rows(&o, &bulwark);
    }
    let after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# load average at the end {}", after.trim());
}

/// `bulwark-bench nl-batch add|remove SET CIDR`: one element change to
/// table inet bulwark as a netlink batch of its own, the physical limit of
/// a one-network change.
fn nl_batch(args: &[String]) {
    let (Some(op), Some(set), Some(net)) = (args.first(), args.get(1), args.get(2)) else {
        fail("nl-batch add|remove SET CIDR");
    };
    let net: ipnet::IpNet = net.parse().unwrap_or_else(|_| fail("bad CIDR"));
    let mut change = SetChange {
        set: set.clone(),
        ..SetChange::default()
    };
    match op.as_str() {
        "add" => change.add.push(net),
        _ => change.remove.push(net),
    }
    let mut k = NfTables::open().unwrap_or_else(|e| fail(&e.to_string()));
    let g = k.generation().unwrap_or_else(|e| fail(&e.to_string()));
    k.change_elements(g, &[change]).unwrap_or_else(|e| fail(&e.to_string()));
}

fn nft_text(script: &str) -> Duration {
    timed(|| drop(run_stdin(&["/usr/sbin/nft", "-f", "-"], script.as_bytes())))
}

fn listing() -> String {
    String::from_utf8_lossy(&run(&["/usr/sbin/nft", "list", "table", "inet", "bulwark"]).stdout).into_owned()
}

fn generation() -> u32 {
    NfTables::open()
        .and_then(|mut k| k.generation())
        .unwrap_or_else(|e| fail(&e.to_string()))
}

/// Time from `act` (one commit) to the kernel's next commit after it:
/// bulwarkd's repair.
fn repaired_after(act: &[&str]) -> Duration {
    use bulwark_agent::firewall::netlink::{later, next_generation};
    let mut k = NfTables::open().unwrap_or_else(|e| fail(&e.to_string()));
    let before = k.generation().unwrap_or_else(|e| fail(&e.to_string()));
    let t = Instant::now();
    run(act);
    loop {
        let g = k.generation().unwrap_or_else(|e| fail(&e.to_string()));
        if later(g, next_generation(before)) {
            return t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(120) {
            fail(&format!("{act:?} was not repaired within 120 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn incremental_count(d: &Daemon) -> usize {
    d.log().matches("in one netlink transaction").count()
}

/// Bulwark's medians at one size: full apply, one network added, removed.
type Medians = BTreeMap<usize, [Duration; 3]>;

/// The firewall's rows; returns its medians for [`other_rows`].
fn firewall_rows(bin: &Path, o: &Opts) -> Medians {
    let _ns = Netns::enter("fw");
    // The raw tools work on the same table in a namespace of their own: in
    // bulwarkd's, changing its table would be drift, repaired at once, and
    // its event listener makes the kernel announce every element of every
    // commit there.
    let raw_ns = Netns::beside("raw");
    let d = Daemon::start(bin, &profile(10, 0, false));
    let mut rows: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut row = |k: &'static str, line: String| rows.entry(k).or_default().push(line);
    let mut medians = Medians::new();
    for &n in &o.sizes {
        let runs = if n >= 100_000 { o.runs.min(3) } else { o.runs };
        let a = d.write("a.toml", &profile(n, 0, false));
        let b = d.write("b.toml", &profile(n, 1, false));
        let b_extra = d.write("b-extra.toml", &profile(n, 1, true));
        d.apply(&a);
        // Full apply: the rules change (a port), so the table is replaced whole.
        let full = Samples::of(runs, || {
            let t = timed(|| d.apply(&b)) + timed(|| d.apply(&a));
            t / 2
        });
        d.apply(&b);
        let script = format!("add table inet bulwark\ndelete table inet bulwark\n{}", listing());
        let raw = raw_ns.run(|| Samples::of(runs, || nft_text(&script)));
        row(
            "full",
            format!(
                "| {n} | {} | {} | {} |",
                ms(full.median()),
                ms(raw.median()),
                ratio(full.median(), raw.median())
            ),
        );

        // No-op: the same profile again.
        let noop = Samples::of(runs, || timed(|| d.apply(&b)));
        let gen_exe = bin.join("bulwark-bench");
        let gen_exe = gen_exe.display().to_string();
        let getgen = raw_ns.run(|| Samples::of(runs, || timed(|| drop(run(&[&gen_exe, "getgen"])))));
        row(
            "noop",
            format!(
                "| {n} | {} | {} | {} |",
                ms(noop.median()),
                ms(getgen.median()),
                ratio(noop.median(), getgen.median())
            ),
        );

        // One network added, then removed again.
        let before = incremental_count(&d);
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            add.push(timed(|| d.apply(&b_extra)));
            remove.push(timed(|| d.apply(&b)));
        }
        let sent = incremental_count(&d) - before;
        let (add, remove) = (Samples(add), Samples(remove));
        medians.insert(n, [full.median(), add.median(), remove.median()]);
        let (mut nl_add, mut nl_remove) = (Vec::new(), Vec::new());
        raw_ns.run(|| {
            for _ in 0..runs {
                nl_add.push(timed(|| drop(run(&[&gen_exe, "nl-batch", "add", "admin_v4", EXTRA]))));
                nl_remove.push(timed(|| {
                    drop(run(&[&gen_exe, "nl-batch", "remove", "admin_v4", EXTRA]))
                }));
            }
        });
        let (nl_add, nl_remove) = (Samples(nl_add), Samples(nl_remove));
        row(
            "one",
            format!(
                "| {n} | {} / {} | {} / {} | {} / {} | {sent} of {} |",
                ms(add.median()),
                ms(remove.median()),
                ms(nl_add.median()),
                ms(nl_remove.median()),
                ratio(add.median(), nl_add.median()),
                ratio(remove.median(), nl_remove.median()),
                2 * runs
            ),
        );

        // Reads.
        let sock = d.socket();
        let status = Samples::of(200, || timed(|| assert_ok(http_get(&sock, "/v1/status"))));
        let version = Samples::of(200, || timed(|| assert_ok(http_get(&sock, "/version"))));
        row(
            "status",
            format!(
                "| {n} | {} | {} | {} | {} |",
                ms(status.median()),
                ms(status.quantile(0.99)),
                ms(version.median()),
                ratio(status.median(), version.median())
            ),
        );

        // Another process flushes the ruleset / deletes the table.
        let ours = listing();
        let flush = repaired_after(&["/usr/sbin/nft", "flush", "ruleset"]);
        wait_for(&ours, &sock);
        let delete = repaired_after(&["/usr/sbin/nft", "delete", "table", "inet", "bulwark"]);
        wait_for(&ours, &sock);
        if flush.max(delete) > Duration::from_secs(5) {
            eprintln!("# slow repair; bulwarkd's log:\n{}", d.log());
        }
        row("drift", format!("| {n} | {} | {} |", ms(flush), ms(delete)));

        let rss = d.rss_kb();
        let idle = if n == 50_000 || n >= 200_000 { o.idle } else { 0 };
        let (cpu, rss_after) = if idle > 0 {
            let c0 = d.cpu();
            std::thread::sleep(Duration::from_secs(idle));
            (Some(d.cpu() - c0), d.rss_kb())
        } else {
            (None, rss)
        };
        row(
            "idle",
            format!(
                "| {n} | {} | {:.1} MB | {:.1} MB |",
                cpu.map_or("-".to_owned(), |c| format!("{:.3} s / {idle} s", c.as_secs_f64())),
                rss as f64 / 1024.0,
                rss_after as f64 / 1024.0
            ),
        );
        eprintln!("# {n} CIDRs done (generation {})", generation());
    }
    print_table(
        "Full apply (rules change: the table is replaced whole): `bulwarkctl apply` against raw `nft -f` of the same table",
        "| CIDRs | bulwarkctl apply ms | nft -f ms | ratio |",
        &rows["full"],
    );
    print_table(
        "No-op apply (the same profile again) against one NFT_MSG_GETGEN as a process",
        "| CIDRs | bulwarkctl apply ms | getgen ms | ratio |",
        &rows["noop"],
    );
    print_table(
        "One CIDR added / removed: `bulwarkctl apply` against one hand-built netlink batch as a process",
        "| CIDRs | add / remove ms | batch add / remove ms | ratio add / remove | sent as element changes |",
        &rows["one"],
    );
    print_table(
        "GET /v1/status over the Unix socket, 200 requests, against GET /version",
        "| CIDRs | status p50 ms | status p99 ms | /version p50 ms | ratio p50 |",
        &rows["status"],
    );
    print_table(
        "Repair after another process changes the ruleset (drift_interval 30 s): time to bulwarkd's commit",
        "| CIDRs | nft flush ruleset ms | nft delete table inet bulwark ms |",
        &rows["drift"],
    );
    print_table(
        "Idle: daemon CPU over the idle period, RSS before and after it",
        "| CIDRs | CPU | RSS | RSS after idle |",
        &rows["idle"],
    );
    medians
}

/// ufw and firewalld where installed, at the sizes up to 50,000 (firewalld
/// did not start within minutes at 200,000), against Bulwark's medians.
fn other_rows(o: &Opts, bulwark: &Medians) {
    let sizes: Vec<usize> = o.sizes.iter().copied().filter(|&n| n <= 50_000).collect();
    let versus = |n: usize, f: &others::Figures| {
        bulwark.get(&n).map_or(" - | - |".to_owned(), |[full, add, remove]| {
            format!(
                " {} | {} / {} |",
                ratio(*full, f.reload.median()),
                ratio(*add, f.add.median()),
                ratio(*remove, f.remove.median())
            )
        })
    };
    let header = "| CIDRs | reload ms | add ms | remove ms | Bulwark full / reload | Bulwark add / remove vs theirs |";
    if Path::new("/usr/sbin/ufw").exists() {
        let rows: Vec<String> = others::ufw(&sizes, o.runs)
            .iter()
            .map(|f| others::row(f, &versus(f.n, f)))
            .collect();
        print_table(
            "ufw: `ufw-init force-reload` (what `ufw reload` runs) and `ufw allow` / `ufw delete allow` of one network; ratios are Bulwark's time over ufw's",
            header,
            &rows,
        );
    }
    if Path::new("/usr/sbin/firewalld").exists() {
        let figures = others::firewalld(&sizes, o.runs);
        let rows: Vec<String> = figures
            .iter()
            .map(|(f, start)| others::row(f, &format!("{} {} |", versus(f.n, f), ms(*start))))
            .collect();
        print_table(
            "firewalld: `firewall-cmd --reload` and a runtime `--ipset --add-entry` / `--remove-entry`; ratios are Bulwark's time over firewalld's",
            &format!("{header} firewalld start ms |"),
            &rows,
        );
    }
}

fn assert_ok(code: u16) {
    if code != 200 {
        fail(&format!("HTTP {code}"));
    }
}

/// Wait until the table is back as it was and the engine has finished
/// with it (a status request queues behind the repair's verification).
fn wait_for(want: &str, socket: &Path) {
    let t = Instant::now();
    while listing() != want {
        if t.elapsed() > Duration::from_secs(120) {
            fail("the table did not come back as it was");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ok(http_get(socket, "/v1/status"));
}

fn print_table(title: &str, header: &str, rows: &[String]) {
    println!("\n## {title}\n\n{header}");
    let cols = header.matches('|').count() - 1;
    println!("|{}", "---:|".repeat(cols));
    for r in rows {
        println!("{r}");
    }
}

fn wg_key() -> String {
    wireguard_control::Key::generate_private().get_public().to_base64()
}

fn peer_rows(bin: &Path, o: &Opts) {
    let _ns = Netns::enter("wg");
    let iface = format!("wgb{}", std::process::id() % 100_000);
    let n = 50_000;
    let text = format!(
        "[profile]\nname = \"bench-wg\"\n{}\n[wireguard]\ninterface = \"{iface}\"\naddress = \"10.80.0.1/16\"\n\
         endpoint = \"192.0.2.1:51820\"\nbackend = \"userspace\"\n",
        firewall(n, 0, false)
    );
    let d = Daemon::start(bin, &text);
    let file = d.write("p.toml", &text);
    let mut rows = Vec::new();
    let mut reads = Vec::new();
    let mut count = 0;
    for &target in &o.peers {
        while count < target {
            d.ctl(&["add-peer", &format!("fill{count}")]);
            count += 1;
        }
        let runs = o.runs.max(10);
        let (mut add, mut remove, mut wg_add, mut wg_remove) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let name = format!("b{target}-{i}");
            add.push(timed(|| drop(d.ctl(&["add-peer", &name]))));
            remove.push(timed(|| drop(d.ctl(&["remove-peer", "--yes", &name]))));
            let key = wg_key();
            let ip = format!("10.80.250.{}/32", i + 1);
            wg_add.push(timed(|| {
                drop(run(&["wg", "set", &iface, "peer", &key, "allowed-ips", &ip]))
            }));
            wg_remove.push(timed(|| drop(run(&["wg", "set", &iface, "peer", &key, "remove"]))));
        }
        let (add, remove, wg_add, wg_remove) = (Samples(add), Samples(remove), Samples(wg_add), Samples(wg_remove));
        rows.push(format!(
            "| {target} | {} / {} | {} / {} | {} / {} |",
            ms(add.median()),
            ms(remove.median()),
            ms(wg_add.median()),
            ms(wg_remove.median()),
            ratio(add.median(), wg_add.median()),
            ratio(remove.median(), wg_remove.median())
        ));
        let sock = d.socket();
        let noop = Samples::of(o.runs, || timed(|| d.apply(&file)));
        let status = Samples::of(100, || timed(|| assert_ok(http_get(&sock, "/v1/status"))));
        let metrics = Samples::of(100, || timed(|| assert_ok(http_get(&sock, "/v1/metrics"))));
        reads.push(format!(
            "| {target} | {} | {} / {} | {} / {} | {:.1} MB |",
            ms(noop.median()),
            ms(status.median()),
            ms(status.quantile(0.99)),
            ms(metrics.median()),
            ms(metrics.quantile(0.99)),
            d.rss_kb() as f64 / 1024.0
        ));
        eprintln!("# {target} peers done");
    }
    print_table(
        "add-peer / remove-peer (userspace backend, 50,000 admin CIDRs in force) against `wg set`",
        "| peers | bulwarkctl add / remove ms | wg set add / remove ms | ratio add / remove |",
        &rows,
    );
    print_table(
        "With 50,000 CIDRs and N peers: no-op apply, GET /v1/status and GET /v1/metrics (p50 / p99), RSS",
        "| peers | no-op apply ms | status ms | metrics ms | RSS |",
        &reads,
    );
    drop(d);
    // A daemon killed by SIGTERM stops its wireguard-go; end any leftover by PID.
    let _ = Command::new("ip").args(["link", "del", &iface]).output();
}

/// The WireGuard module alone (no CLI, HTTP or engine): `add_peer`, which
/// appends to the journal with fsync and sends one UAPI `set`, against
/// `wg set` of one peer.
fn module_alone(o: &Opts) {
    use bulwark_agent::host::Host;
    use bulwark_agent::wireguard::WireGuard;
    use bulwark_model::api::AddPeerRequest;
    let _ns = Netns::enter("wgm");
    let iface = format!("wgm{}", std::process::id() % 100_000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let (mut wg, _) = WireGuard::open(&Host::new(dir.path())).unwrap_or_else(|e| fail(&e.to_string()));
    let address: ipnet::Ipv4Net = "10.60.0.1/16".parse().unwrap_or_else(|_| fail("address"));
    let p = bulwark_model::profile::WireGuard {
        interface: iface.clone(),
        address,
        listen_port: 51998,
        endpoint: "192.0.2.1:51998".to_owned(),
        backend: bulwark_model::profile::Backend::Userspace,
        client_allowed_ips: vec![ipnet::IpNet::V4(address.trunc())],
        keepalive: 25,
        peer_expiry: None,
        stale_handshake: bulwark_model::profile::STALE_HANDSHAKE_DEFAULT,
    };
    wg.apply(&p).unwrap_or_else(|e| fail(&e.to_string()));
    let req = |name: String| AddPeerRequest {
        name,
        ..AddPeerRequest::default()
    };
    let mut rows = Vec::new();
    let mut count = 0;
    for &target in &o.peers {
        while count < target {
            wg.add_peer(&p, req(format!("fill{count}")))
                .unwrap_or_else(|e| fail(&e.to_string()));
            count += 1;
        }
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let name = format!("m{target}-{i}");
            ours.push(timed(|| {
                drop(
                    wg.add_peer(&p, req(name.clone()))
                        .unwrap_or_else(|e| fail(&e.to_string())),
                )
            }));
            wg.remove_peer(&p, &name).unwrap_or_else(|e| fail(&e.to_string()));
            let key = wg_key();
            let ip = format!("10.61.0.{}/32", i + 1);
            raw.push(timed(|| {
                drop(run(&["wg", "set", &iface, "peer", &key, "allowed-ips", &ip]))
            }));
            run(&["wg", "set", &iface, "peer", &key, "remove"]);
        }
        let (ours, raw) = (Samples(ours), Samples(raw));
        rows.push(format!(
            "| {target} | {} | {} | {} |",
            ms(ours.median()),
            ms(raw.median()),
            ratio(ours.median(), raw.median())
        ));
    }
    wg.shutdown();
    print_table(
        "The WireGuard module alone: add_peer (journal append with fsync, one UAPI set) against `wg set`",
        "| peers | add_peer ms | wg set ms | ratio |",
        &rows,
    );
}
