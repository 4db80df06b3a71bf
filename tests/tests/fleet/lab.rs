//! Three hosts for the fleet tests and an Ansible controller to drive them.
//!
//! Each host is the harness's `vps` namespace (with its `admin` and
//! `internet` neighbours) running its own bulwarkd and its own sshd: config,
//! host key and authorized_keys under the test's temporary directory,
//! listening only on the host's address inside its namespace. The controller
//! is ansible-playbook in the root namespace; it reaches each host through a
//! veth pair this lab creates, one end in the root namespace, the other in
//! the host's namespace, addressed from 198.18.0.0/15 (the benchmarking
//! range, RFC 2544), never through the machine's own network. The machine's
//! own sshd, if any, is never touched.
//!
//! Clean-up is by PID (sshd, SSH masters, WireGuard clients) and by name
//! (namespaces, whose deletion takes the veth pairs with them), on drop.
#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulwark_tests::{bin, in_ns, poll, run, run_ok, Daemon, Net, Ran};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// The pinned ansible-core (ansible/requirements.txt) and where
/// ansible/install-venv puts it; `BULWARK_ANSIBLE_VENV` overrides.
pub fn venv() -> PathBuf {
    let pin = fs::read_to_string(repo().join("ansible/requirements.txt")).expect("ansible/requirements.txt");
    let version = pin
        .lines()
        .find_map(|l| l.strip_prefix("ansible-core=="))
        .expect("an ansible-core==VERSION pin")
        .trim()
        .to_owned();
    let venv = std::env::var_os("BULWARK_ANSIBLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/opt/bulwark-ci/ansible-core-{version}")));
    let python = venv.join("bin/python");
    assert!(
        venv.join("bin/ansible-playbook").is_file() && venv.join("bin/ansible-test").is_file(),
        "ansible-core {version} is not installed at {}: run ansible/install-venv (CI's .ci/run does)",
        venv.display()
    );
    let installed = run_ok(Command::new(&python).args(["-c", "import ansible; print(ansible.__version__)"]));
    assert_eq!(
        installed.stdout.trim(),
        version,
        "{} holds another ansible-core than the pinned one: remove it and run ansible/install-venv",
        venv.display()
    );
    venv
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn examples() -> PathBuf {
    repo().join("ansible/examples")
}

/// A process-unique number for names and subnets.
fn next() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A /30 in 198.18.0.0/15 that no interface of the root namespace uses.
fn free_link() -> (Ipv4Addr, Ipv4Addr) {
    let taken = run_ok(Command::new("ip").args(["-o", "-4", "addr", "show"])).stdout;
    let pid = std::process::id() as usize;
    for _ in 0..512 {
        let n = (pid * 64 + next()) % (2 * 256 * 64);
        let (second, third, fourth) = (
            18 + (n / (256 * 64)) as u8,
            ((n / 64) % 256) as u8,
            ((n % 64) * 4) as u8,
        );
        let controller = Ipv4Addr::new(198, second, third, fourth + 1);
        if !taken.contains(&format!("{}.{}.{}.", 198, second, third)) {
            return (controller, Ipv4Addr::new(198, second, third, fourth + 2));
        }
    }
    panic!("no free /30 in 198.18.0.0/15 in the root namespace:\n{taken}");
}

/// PIDs of processes whose command line contains `needle`.
pub fn pids_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

fn kill_all(pids: &[i32], signal: Signal) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), signal);
    }
}

/// One managed host.
pub struct Host {
    pub name: String,
    /// The host's address on the controller's link, where sshd listens.
    pub addr: Ipv4Addr,
    /// The controller's address on that link.
    pub controller: Ipv4Addr,
    /// The host's WireGuard interface (unique: UAPI sockets are shared).
    pub wg: String,
    /// Host variables for the inventory, besides the connection's.
    pub vars: serde_json::Map<String, Value>,
    dir: PathBuf,
    sshd: Option<Child>,
    // Dropped in this order: the daemon, then the namespaces.
    pub daemon: Daemon,
    pub net: Net,
}

impl Host {
    fn new(name: &str, dir: &Path, client_key: &str) -> Host {
        let net = Net::new("fleet");
        let daemon = Daemon::new(&net.vps);
        let (controller, addr) = free_link();
        let n = next();
        let root_if = format!("bwf{}x{n}", std::process::id() % 10_000);
        run_ok(Command::new("ip").args([
            "link", "add", &root_if, "type", "veth", "peer", "name", "bw-ctl", "netns", &net.vps,
        ]));
        run_ok(Command::new("ip").args(["addr", "add", &format!("{controller}/30"), "dev", &root_if]));
        run_ok(Command::new("ip").args(["link", "set", &root_if, "up"]));
        run_ok(Command::new("ip").args(["-n", &net.vps, "addr", "add", &format!("{addr}/30"), "dev", "bw-ctl"]));
        run_ok(Command::new("ip").args(["-n", &net.vps, "link", "set", "bw-ctl", "up"]));

        let dir = dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut host = Host {
            name: name.to_owned(),
            addr,
            controller,
            wg: format!("wgf{}x{n}", std::process::id() % 10_000),
            vars: serde_json::Map::new(),
            dir,
            sshd: None,
            daemon,
            net,
        };
        host.start_sshd(client_key);
        host
    }

    /// sshd of our own: its config, host key and authorized_keys in the
    /// test's directory, listening on the host's address in its namespace.
    fn start_sshd(&mut self, client_key: &str) {
        let key = self.dir.join("ssh_host_ed25519_key");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key),
        );
        fs::write(self.dir.join("authorized_keys"), client_key).unwrap();
        let config = self.dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port 22\nListenAddress {}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\nMaxStartups 100\n",
                self.addr,
                key.display(),
                self.dir.join("sshd.pid").display(),
                self.dir.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        // sshd's privilege separation directory; what its package's tmpfiles
        // entry would create at boot.
        if !Path::new("/run/sshd").is_dir() {
            fs::create_dir_all("/run/sshd").unwrap();
            fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).unwrap();
        }
        let log = fs::File::create(self.dir.join("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.net.vps, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&config)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd (apt install openssh-server)");
        self.sshd = Some(child);
        let up = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            TcpStream::connect_timeout(&SocketAddr::new(IpAddr::V4(self.addr), 22), Duration::from_millis(500))
                .is_ok()
                .then_some(())
        });
        assert!(
            up.is_some(),
            "sshd of {} did not listen:\n{}",
            self.name,
            self.sshd_log()
        );
    }

    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The known_hosts line for this host's sshd.
    fn known_host(&self) -> String {
        let public = fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub")).unwrap();
        let mut fields = public.split_whitespace();
        format!("{} {} {}\n", self.addr, fields.next().unwrap(), fields.next().unwrap())
    }

    /// Whether a new TCP connection from the controller reaches sshd.
    pub fn ssh_port_open(&self) -> bool {
        TcpStream::connect_timeout(&SocketAddr::new(IpAddr::V4(self.addr), 22), Duration::from_secs(1)).is_ok()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            // `ip netns exec` execs sshd in place: this is sshd's PID. Its
            // per-connection children die with their namespace (Net's drop).
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let _ = c.wait();
        }
        self.daemon.kill9();
        kill_all(&pids_with(&format!("wireguard-go -f {}", self.wg)), Signal::SIGKILL);
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.wg));
    }
}

/// The controller's side: keys, known_hosts, ansible.cfg, inventory.
pub struct Fleet {
    pub hosts: Vec<Host>,
    pub dir: tempfile::TempDir,
    venv: PathBuf,
}

impl Fleet {
    pub fn new(n: usize) -> Fleet {
        bulwark_tests::require_root();
        let venv = venv();
        let dir = tempfile::Builder::new().prefix("bulwark-fleet-").tempdir().unwrap();
        let d = dir.path();
        let key = d.join("id_ed25519");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "controller", "-f"])
                .arg(&key),
        );
        let public = fs::read_to_string(d.join("id_ed25519.pub")).unwrap();
        let hosts: Vec<Host> = (1..=n).map(|i| Host::new(&format!("host{i}"), d, &public)).collect();
        let known: String = hosts.iter().map(Host::known_host).collect();
        fs::write(d.join("known_hosts"), known).unwrap();
        for sub in ["home", "cp", "local-tmp", "remote-tmp", "peers"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::set_permissions(d.join("peers"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(
            d.join("ansible.cfg"),
            format!(
                "[defaults]\ninventory = {d}/inventory.json\nforks = 5\ntimeout = 5\nhost_key_checking = True\n\
                 remote_tmp = {d}/remote-tmp\nlocal_tmp = {d}/local-tmp\nretry_files_enabled = False\n\
                 interpreter_python = /usr/bin/python3\ncollections_path = {collections}\n\
                 [ssh_connection]\n\
                 ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={d}/known_hosts \
                 -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes\n\
                 control_path_dir = {d}/cp\npipelining = True\n",
                d = d.display(),
                collections = repo().join("ansible").display(),
            ),
        )
        .unwrap();
        Fleet { hosts, dir, venv }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts every host's bulwarkd on the built-in default profile (SSH
    /// open), as a freshly installed host has.
    pub fn start_daemons(&mut self) {
        for h in &mut self.hosts {
            h.daemon.start(None);
        }
    }

    /// Writes the inventory from each host's `vars`.
    fn inventory(&self) {
        let d = self.dir.path();
        let mut hosts = serde_json::Map::new();
        for h in &self.hosts {
            let mut vars = h.vars.clone();
            vars.insert("ansible_host".into(), json!(h.addr.to_string()));
            vars.insert("bulwark_socket".into(), json!(h.daemon.socket()));
            hosts.insert(h.name.clone(), Value::Object(vars));
        }
        let inventory = json!({
            "all": {
                "children": {"bulwark": {"hosts": hosts}},
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": d.join("id_ed25519"),
                    "bulwark_ctl": bin("bulwarkctl"),
                    "bulwark_peer_dir": d.join("peers"),
                    "bulwark_file_sd": d.join("file_sd.json"),
                },
            }
        });
        fs::write(d.join("inventory.json"), serde_json::to_vec_pretty(&inventory).unwrap()).unwrap();
    }

    /// `ansible-playbook PLAYBOOK ARGS` from ansible/examples, with the
    /// inventory written from the hosts' current vars; returns the run and
    /// its wall time.
    pub fn playbook(&self, playbook: &str, args: &[&str]) -> (Ran, Duration) {
        self.inventory();
        let d = self.dir.path();
        let mut cmd = Command::new(self.venv.join("bin/ansible-playbook"));
        cmd.arg(examples().join(playbook))
            .args(args)
            .env("ANSIBLE_CONFIG", d.join("ansible.cfg"))
            .env("HOME", d.join("home"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_CONNECTION")
            .env_remove("BULWARK_SOCKET")
            .env_remove("ANSIBLE_COLLECTIONS_PATH");
        let t0 = Instant::now();
        let r = run(&mut cmd);
        let took = t0.elapsed();
        // BULWARK_FLEET_SHOW=1 prints every run, for reading what Ansible shows.
        if std::env::var_os("BULWARK_FLEET_SHOW").is_some() {
            eprintln!("{r}\n(took {:.1}s)", took.as_secs_f64());
        }
        (r, took)
    }

    /// What the host's logs say, for failure messages.
    pub fn logs(&self) -> String {
        self.hosts
            .iter()
            .map(|h| {
                format!(
                    "===== {} =====\n{}\n--- sshd ---\n{}",
                    h.name,
                    h.daemon.logs(),
                    h.sshd_log()
                )
            })
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // SSH masters outlive ansible-playbook (ControlPersist): ours are
        // the ssh processes whose control path lies in our directory.
        kill_all(
            &pids_with(&self.dir.path().join("cp").display().to_string()),
            Signal::SIGTERM,
        );
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// `host : ok=1 changed=1 unreachable=0 failed=0 ...` of the PLAY RECAP, as
/// (host, changed, failed, unreachable); hosts the run never reached are absent.
pub fn recap(r: &Ran) -> Vec<(String, u32, u32, u32)> {
    let Some((_, tail)) = r.stdout.rsplit_once("PLAY RECAP") else {
        return Vec::new();
    };
    tail.lines()
        .filter_map(|l| {
            let (host, counts) = l.split_once(" : ")?;
            let count = |key: &str| -> Option<u32> {
                counts
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            Some((
                host.trim().to_owned(),
                count("changed")?,
                count("failed")?,
                count("unreachable")?,
            ))
        })
        .collect()
}

/// A WireGuard client, wireguard-go in a namespace, by PID.
pub struct WgClient {
    ns: String,
    iface: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl WgClient {
    pub fn up(ns: &str, config: &str) -> WgClient {
        let iface = format!("wgc{}x{}", std::process::id() % 10_000, next());
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "wireguard-go", "-f", &iface])
            .env_remove("LOG_LEVEL")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wireguard-go");
        let sock = PathBuf::from(format!("/var/run/wireguard/{iface}.sock"));
        let ready = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            UnixStream::connect(&sock).is_ok().then_some(())
        });
        assert!(ready.is_some(), "client wireguard-go did not open {}", sock.display());
        let client = WgClient {
            ns: ns.to_owned(),
            iface,
            child,
            dir: tempfile::tempdir().unwrap(),
        };
        // What an admin does with it: `wg setconf` of the stripped config,
        // its Address, a route for its AllowedIPs.
        let stripped: String = config
            .lines()
            .filter(|l| !l.trim_start().to_ascii_lowercase().starts_with("address"))
            .map(|l| format!("{l}\n"))
            .collect();
        let file = client.dir.path().join("client.conf");
        fs::write(&file, stripped).unwrap();
        let field = |key: &str| {
            config
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start().strip_prefix('=')))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{key} missing from the client config"))
                .to_owned()
        };
        let (ns, iface) = (client.ns.as_str(), client.iface.as_str());
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", ns, "wg", "setconf", iface])
                .arg(&file),
        );
        run_ok(Command::new("ip").args(["-n", ns, "addr", "add", &field("Address"), "dev", iface]));
        run_ok(Command::new("ip").args(["-n", ns, "link", "set", iface, "up"]));
        for net in field("AllowedIPs").split(',') {
            run_ok(Command::new("ip").args(["-n", ns, "route", "replace", net.trim(), "dev", iface]));
        }
        client
    }

    /// Seconds since the epoch of the last handshake; 0 for none.
    pub fn latest_handshake(&self) -> u64 {
        let r = run_ok(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns,
            "wg",
            "show",
            &self.iface,
            "latest-handshakes",
        ]));
        r.stdout
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }

    /// Whether a TCP connection to `addr:port` through the tunnel completes.
    pub fn connects(&self, addr: Ipv4Addr, port: u16) -> bool {
        in_ns(&self.ns, move || {
            TcpStream::connect_timeout(&SocketAddr::new(IpAddr::V4(addr), port), Duration::from_secs(1)).is_ok()
        })
    }
}

impl Drop for WgClient {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.iface));
    }
}
