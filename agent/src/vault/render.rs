//! The Vault server configuration and the hardened unit Bulwark renders.
//!
//! Pure: the same profile and layout always render the same bytes. The
//! configuration holds no secret: the static key and Bulwark's token IDs are
//! files the server reads from its credentials directory (systemd's
//! `$CREDENTIALS_DIRECTORY`, or a 0700 directory bulwarkd fills when it
//! supervises the server itself).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bulwark_model::profile::{CredentialStore, Custody, Tls, Vault as VaultProfile};

/// Name of the unit Bulwark renders.
pub const UNIT: &str = "bulwark-vault.service";
/// The system user the unit runs as (a systemd dynamic user).
pub const USER: &str = "bulwark-vault";
/// Where systemd puts the unit's credentials.
pub const SYSTEMD_CREDENTIALS: &str = "/run/credentials/bulwark-vault.service";
/// The unit's state directory (`StateDirectory=bulwark-vault`).
pub const DATA_DIR: &str = "/var/lib/bulwark-vault";
/// The policy that scopes Bulwark's own token.
pub const POLICY: &str = "bulwark";
/// The policy of the one-shot token that issues the operator's credentials.
pub const BOOTSTRAP_POLICY: &str = "bulwark-bootstrap";
/// KV mount and key of the canary secret (written at init, read by health
/// and the restore test).
pub const CANARY_MOUNT: &str = "bulwark";
pub const CANARY_PATH: &str = "bulwark/canary";

/// Credential names, as files in the credentials directory.
pub mod cred {
    pub const CONFIG: &str = "config.hcl";
    pub const STATIC_KEY: &str = "static-key";
    /// Manual custody: the temporary static key the Vault initialises
    /// under, destroyed once the seal has moved to Shamir.
    pub const STAGING_KEY: &str = "staging-key";
    pub const BULWARK_TOKEN: &str = "bulwark-token";
    pub const BOOTSTRAP_TOKEN: &str = "bootstrap-token";
    pub const TRANSIT_TOKEN: &str = "transit-token";
    pub const TLS_CERT: &str = "tls-cert";
    pub const TLS_KEY: &str = "tls-key";
}

/// Which seal the configuration carries. Only manual custody has stages:
/// it initialises under a temporary static key (so no answer of an init
/// call can be lost), then migrates to Shamir with the recovery keys as the
/// operator's shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The seal the profile asks for (also every generation's artifact).
    Steady,
    /// Manual custody before `init`: the temporary static key, self-init.
    Staging,
    /// Manual custody during `init`: the temporary key disabled, so the
    /// server starts a seal migration to Shamir.
    Migrating,
}

/// Where the rendered configuration points the server.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Directory holding the credential files (see [`cred`]).
    pub credentials: String,
    /// Raft storage and the file audit device live here.
    pub data_dir: String,
}

impl Layout {
    /// The layout under systemd.
    pub fn systemd() -> Layout {
        Layout {
            credentials: SYSTEMD_CREDENTIALS.to_owned(),
            data_dir: DATA_DIR.to_owned(),
        }
    }

    pub fn raft_dir(&self) -> String {
        format!("{}/raft", self.data_dir)
    }

    pub fn audit_log(&self) -> String {
        format!("{}/audit.log", self.data_dir)
    }
}

fn scheme(v: &VaultProfile) -> &'static str {
    match v.tls {
        Tls::Off => "http",
        Tls::SelfSigned | Tls::Files { .. } => "https",
    }
}

/// The address clients use: `http://127.0.0.1:8200`.
pub fn api_addr(v: &VaultProfile) -> String {
    format!("{}://{}", scheme(v), v.listen)
}

/// Raft's cluster port: the one after the API port, on the same address.
pub fn cluster_listen(v: &VaultProfile) -> SocketAddr {
    SocketAddr::new(v.listen.ip(), v.listen.port().wrapping_add(1).max(1))
}

/// A loopback-only listener, two ports above the API, with OpenBao's
/// unauthenticated `sys/generate-root` endpoints on (they are off on every
/// other listener): Bulwark makes the operator's root token there from the
/// keys. Anyone local could at worst cancel an attempt; the threshold of
/// keys is still needed for a token.
pub fn admin_listen(v: &VaultProfile) -> SocketAddr {
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        v.listen.port().wrapping_add(2).max(1),
    )
}

/// The policy of Bulwark's own token: health, snapshots and the canary.
pub fn bulwark_policy() -> String {
    format!(
        "path \"sys/storage/raft/snapshot\" {{ capabilities = [\"read\"] }}\n\
         path \"{CANARY_PATH}\" {{ capabilities = [\"create\", \"read\", \"update\"] }}\n\
         path \"auth/token/lookup-self\" {{ capabilities = [\"read\"] }}\n\
         path \"auth/token/renew-self\" {{ capabilities = [\"update\"] }}\n"
    )
}

/// The bootstrap token may create the first recovery keys and nothing else.
pub fn bootstrap_policy() -> String {
    "path \"sys/rotate/recovery/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"sudo\"] }\n\
     path \"auth/token/revoke-self\" { capabilities = [\"update\"] }\n"
        .to_owned()
}

/// Bulwark's self-signed certificate, in its Vault state directory (PEM;
/// not a secret: clients pin it).
pub const SELF_SIGNED_CERT: &str = "tls-cert.pem";

/// Token creation parameters shared by self-init and the manual init.
pub const BULWARK_TOKEN_PERIOD: &str = "768h";

/// `config.hcl` for `v` under `layout`, at `stage`.
pub fn config(profile_name: &str, v: &VaultProfile, layout: &Layout, stage: Stage) -> String {
    let c = &layout.credentials;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Rendered by Bulwark from profile {profile_name:?}; Bulwark replaces edits."
    );
    let _ = writeln!(s, "ui = false");
    let _ = writeln!(s, "api_addr = \"{}\"", api_addr(v));
    let _ = writeln!(s, "cluster_addr = \"{}://{}\"", scheme(v), cluster_listen(v));
    let _ = writeln!(s, "\nstorage \"raft\" {{");
    let _ = writeln!(s, "  path = \"{}\"", layout.raft_dir());
    let _ = writeln!(s, "  node_id = \"bulwark\"\n}}");
    let _ = writeln!(s, "\nlistener \"tcp\" {{");
    let _ = writeln!(s, "  address = \"{}\"", v.listen);
    let _ = writeln!(s, "  cluster_address = \"{}\"", cluster_listen(v));
    match &v.tls {
        Tls::Off => {
            let _ = writeln!(s, "  tls_disable = true");
        }
        Tls::SelfSigned | Tls::Files { .. } => {
            let _ = writeln!(s, "  tls_cert_file = \"{c}/{}\"", cred::TLS_CERT);
            let _ = writeln!(s, "  tls_key_file = \"{c}/{}\"", cred::TLS_KEY);
            let _ = writeln!(s, "  tls_min_version = \"tls12\"");
        }
    }
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "\nlistener \"tcp\" {{");
    let _ = writeln!(s, "  address = \"{}\"", admin_listen(v));
    let _ = writeln!(s, "  cluster_address = \"127.0.0.1:0\"");
    let _ = writeln!(s, "  tls_disable = true");
    let _ = writeln!(s, "  disable_unauthed_generate_root_endpoints = false\n}}");
    // OpenBao refuses audit devices enabled through the API: declarative only.
    let _ = writeln!(s, "\naudit \"file\" \"bulwark\" {{");
    let _ = writeln!(
        s,
        "  options {{\n    file_path = \"{}\"\n    mode = \"0600\"\n  }}\n}}",
        layout.audit_log()
    );
    s.push_str(&seal(v, stage, c));
    // OpenBao refuses self-initialisation without an auto-unseal seal.
    if v.custody != Custody::Manual || stage == Stage::Staging {
        s.push_str(&self_init(c));
    }
    s
}

/// The `seal` stanza of `v` at `stage`, its key or token read from the
/// directory `creds` (none for a Shamir Vault). The restore test's
/// throw-away Vault uses the same stanza with its own directory.
pub fn seal(v: &VaultProfile, stage: Stage, creds: &str) -> String {
    let c = creds;
    let mut s = String::new();
    let static_seal = |s: &mut String, id: &str, key: &str, disabled: bool| {
        let _ = writeln!(s, "\nseal \"static\" {{");
        if disabled {
            let _ = writeln!(s, "  disabled = \"true\"");
        }
        let _ = writeln!(s, "  current_key_id = \"{id}\"");
        let _ = writeln!(s, "  current_key = \"file://{c}/{key}\"\n}}");
    };
    match (v.custody, stage) {
        (Custody::Manual, Stage::Steady) => {}
        (Custody::Manual, Stage::Staging) => static_seal(&mut s, "bulwark-staging", cred::STAGING_KEY, false),
        (Custody::Manual, Stage::Migrating) => static_seal(&mut s, "bulwark-staging", cred::STAGING_KEY, true),
        (Custody::Static, _) => static_seal(&mut s, "bulwark-1", cred::STATIC_KEY, false),
        (Custody::Transit, _) => {
            if let Some(t) = &v.transit {
                let _ = writeln!(s, "\nseal \"transit\" {{");
                let _ = writeln!(s, "  address = \"{}\"", t.address);
                let _ = writeln!(s, "  key_name = \"{}\"", t.key_name);
                let _ = writeln!(s, "  mount_path = \"{}/\"", t.mount_path);
                let _ = writeln!(s, "  token = \"file://{c}/{}\"\n}}", cred::TRANSIT_TOKEN);
            }
        }
    }
    s
}

/// Declarative self-initialisation (auto-unseal only): on its first start
/// OpenBao initialises itself and creates Bulwark's policy, its token (whose
/// ID Bulwark generated and stored before the first start) and the one-shot
/// bootstrap token for the operator's recovery keys. No answer has to reach
/// bulwarkd, so no crash of bulwarkd can lose what init creates.
fn self_init(creds: &str) -> String {
    let token = |name: &str, file: &str, policy: &str, extra: &str| {
        format!(
            "  request \"{name}\" {{\n    operation = \"update\"\n    path = \"auth/token/create-orphan\"\n    data = {{\n      \
             id = {{ eval_source = \"file\", eval_type = \"string\", path = \"{creds}/{file}\" }}\n      \
             policies = [\"{policy}\"]\n      no_default_policy = true\n      display_name = \"{name}\"\n{extra}    }}\n  }}\n"
        )
    };
    let policy = |name: &str, body: &str| {
        format!(
            "  request \"policy-{name}\" {{\n    operation = \"update\"\n    path = \"sys/policies/acl/{name}\"\n    \
             data = {{\n      policy = <<-EOT\n{body}      EOT\n    }}\n  }}\n"
        )
    };
    let mut s = String::from("\ninitialize \"bulwark\" {\n");
    s.push_str(&policy(POLICY, &bulwark_policy()));
    s.push_str(&policy(BOOTSTRAP_POLICY, &bootstrap_policy()));
    let _ = writeln!(
        s,
        "  request \"canary-mount\" {{\n    operation = \"update\"\n    path = \"sys/mounts/{CANARY_MOUNT}\"\n    data = {{ type = \"kv\" }}\n  }}"
    );
    s.push_str(&token(
        "bulwark",
        cred::BULWARK_TOKEN,
        POLICY,
        &format!("      period = \"{BULWARK_TOKEN_PERIOD}\"\n"),
    ));
    s.push_str(&token(
        "bulwark-bootstrap",
        cred::BOOTSTRAP_TOKEN,
        BOOTSTRAP_POLICY,
        "      ttl = \"87600h\"\n",
    ));
    s.push_str("}\n");
    s
}

/// Credentials the unit (or the supervised server) needs at `stage`, in order.
pub fn credentials(v: &VaultProfile, stage: Stage) -> Vec<&'static str> {
    let mut c = match (v.custody, stage) {
        // A Shamir Vault reads no key, and its tokens exist already.
        (Custody::Manual, Stage::Steady) => vec![],
        (Custody::Manual, Stage::Staging) => vec![cred::STAGING_KEY, cred::BULWARK_TOKEN, cred::BOOTSTRAP_TOKEN],
        (Custody::Manual, Stage::Migrating) => vec![cred::STAGING_KEY],
        (Custody::Static, _) => vec![cred::STATIC_KEY, cred::BULWARK_TOKEN, cred::BOOTSTRAP_TOKEN],
        (Custody::Transit, _) => vec![cred::TRANSIT_TOKEN, cred::BULWARK_TOKEN, cred::BOOTSTRAP_TOKEN],
    };
    if v.tls != Tls::Off {
        c.extend([cred::TLS_CERT, cred::TLS_KEY]);
    }
    c
}

/// The secrets Bulwark itself generates and keeps in its store, for `stage`
/// (the operator's TLS files and transit token stay where they are).
pub fn generated(v: &VaultProfile, stage: Stage) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = credentials(v, stage)
        .into_iter()
        .filter(|n| !matches!(*n, cred::TRANSIT_TOKEN | cred::TLS_CERT))
        .filter(|n| *n != cred::TLS_KEY || v.tls == Tls::SelfSigned)
        .collect();
    // Bulwark's own token ID is needed to talk to every Vault it initialised.
    if !out.contains(&cred::BULWARK_TOKEN) && stage != Stage::Steady {
        out.push(cred::BULWARK_TOKEN);
    }
    out
}

/// The hardened unit. `binary` is the stable path of the current version,
/// `config` the rendered configuration, `keys` the directory of the stored
/// credentials (`NAME.cred` with systemd-creds, `NAME` with the file store).
pub fn unit(v: &VaultProfile, stage: Stage, binary: &str, config: &str, keys: &str) -> String {
    let mut creds = format!("LoadCredential={}:{config}\n", cred::CONFIG);
    for name in credentials(v, stage) {
        // The operator's own TLS files and transit token stay where the
        // operator keeps them; Bulwark's certificate is not a secret.
        let stored = match (name, &v.tls, &v.transit) {
            (cred::TLS_CERT, Tls::Files { cert, .. }, _) => Some(cert.clone()),
            (cred::TLS_KEY, Tls::Files { key, .. }, _) => Some(key.clone()),
            (cred::TLS_CERT, Tls::SelfSigned, _) => Some(format!("{}/{SELF_SIGNED_CERT}", super::custody::STATE_DIR)),
            (cred::TRANSIT_TOKEN, _, Some(t)) => Some(t.token_file.clone()),
            _ => None,
        };
        match (stored, v.credential_store) {
            (Some(path), _) => {
                let _ = writeln!(creds, "LoadCredential={name}:{path}");
            }
            (None, CredentialStore::SystemdCreds) => {
                let _ = writeln!(creds, "LoadCredentialEncrypted={name}:{keys}/{name}.cred");
            }
            (None, CredentialStore::File) => {
                let _ = writeln!(creds, "LoadCredential={name}:{keys}/{name}");
            }
        }
    }
    // Clients reach the API from loopback, or over the VPN; transit needs
    // its server, whose address may be a name: no IP filter then.
    let ip_filter = match (v.custody, v.listen.ip().is_loopback()) {
        (Custody::Transit, _) => String::new(),
        (_, true) => "IPAddressDeny=any\nIPAddressAllow=localhost\n".to_owned(),
        (_, false) => format!("IPAddressDeny=any\nIPAddressAllow=localhost {}\n", vpn_net(v.listen)),
    };
    format!(
        "# Rendered by Bulwark; Bulwark replaces edits. Hardening target:\n\
         # `systemd-analyze security` exposure <= 2.0 (measured in the VM tier).\n\
         [Unit]\n\
         Description=OpenBao for Bulwark ({impl_})\n\
         Documentation=file:/usr/share/doc/bulwark/vault.md\n\
         # The VPN address (listen = \"vpn:…\") exists once bulwarkd is ready.\n\
         After=network-online.target bulwarkd.service\n\
         Wants=network-online.target\n\
         StartLimitIntervalSec=120\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         # bao sends READY=1 while still sealed: bulwarkd reads /v1/sys/health.\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={binary} server -config=${{CREDENTIALS_DIRECTORY}}/{config_name}\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         KillSignal=SIGINT\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         TimeoutStopSec=30\n\
         LimitNOFILE=65536\n\
         # Its own system user, allocated by systemd; only the raft directory\n\
         # (and the audit log beside it) is writable.\n\
         DynamicUser=yes\n\
         User={USER}\n\
         StateDirectory=bulwark-vault\n\
         StateDirectoryMode=0700\n\
         UMask=0077\n\
         # Secrets arrive as credentials, readable by this unit only.\n\
         {creds}\
         # No capabilities: OpenBao dropped mlock, so not even CAP_IPC_LOCK.\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         NoNewPrivileges=yes\n\
         # Keys must never reach swap or a core file.\n\
         MemorySwapMax=0\n\
         LimitCORE=0\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         PrivateUsers=yes\n\
         PrivateIPC=yes\n\
         PrivateMounts=yes\n\
         DevicePolicy=closed\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         ProtectProc=invisible\n\
         ProcSubset=pid\n\
         KeyringMode=private\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         {ip_filter}\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         RemoveIPC=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged @resources\n\
         SystemCallErrorNumber=EPERM\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        impl_ = v.implementation.as_str(),
        config_name = cred::CONFIG,
    )
}

/// The /24 around the VPN address, for IPAddressAllow= (peers live there).
fn vpn_net(listen: SocketAddr) -> String {
    match listen.ip() {
        std::net::IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(a) => format!("{a}/64"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bulwark_model::Profile;

    fn vault(extra: &str) -> VaultProfile {
        let text = format!(
            "[profile]\nname = \"t\"\n[vault]\nversion = \"2.7.2\"\nsource = {{ path = \"/opt/bao\", sha256 = \"{}\" }}\n\
             tls = \"off\"\n{extra}",
            "ab".repeat(32)
        );
        Profile::parse("t.toml", &text).unwrap().vault.unwrap()
    }

    #[test]
    fn static_custody_renders_the_seal_self_init_and_no_secret() {
        let v = vault("custody = \"static\"\ncredential_store = \"file\"\n");
        let c = config("t", &v, &Layout::systemd(), Stage::Steady);
        assert!(c.contains("seal \"static\""), "{c}");
        assert!(c.contains("file:///run/credentials/bulwark-vault.service/static-key"));
        assert!(c.contains("initialize \"bulwark\""));
        assert!(c.contains("mode = \"0600\""));
        assert!(c.contains("tls_disable = true"));
        assert_eq!(
            c,
            config("t", &v, &Layout::systemd(), Stage::Steady),
            "rendering is not deterministic"
        );
        let u = unit(
            &v,
            Stage::Steady,
            "/usr/local/lib/bulwark/vault/current/bao",
            "/var/lib/bulwark/vault/config.hcl",
            "/k",
        );
        assert!(u.contains("LoadCredential=static-key:/k/static-key\n"), "{u}");
        assert!(u.contains("CapabilityBoundingSet=\n"));
        assert!(u.contains("MemorySwapMax=0\n"));
        assert!(u.contains("IPAddressAllow=localhost\n"));
    }

    #[test]
    fn manual_custody_initialises_under_a_temporary_key_then_has_no_seal_stanza() {
        let v = vault("custody = \"manual\"\n");
        let staging = config("t", &v, &Layout::systemd(), Stage::Staging);
        assert!(
            staging.contains("seal \"static\"") && staging.contains("staging-key"),
            "{staging}"
        );
        assert!(staging.contains("initialize \"bulwark\""));
        let migrating = config("t", &v, &Layout::systemd(), Stage::Migrating);
        assert!(migrating.contains("disabled = \"true\""), "{migrating}");
        assert!(
            !migrating.contains("initialize"),
            "OpenBao refuses self-init without auto-unseal"
        );
        let c = config("t", &v, &Layout::systemd(), Stage::Steady);
        assert!(!c.contains("seal \""), "{c}");
        assert!(!c.contains("initialize"));
        let u = unit(&v, Stage::Steady, "/b", "/c", "/k");
        assert!(u.contains("LoadCredential=config.hcl:/c\n"), "{u}");
        assert!(!u.contains("static-key") && !u.contains("bulwark-token") && !u.contains("staging-key"));
        let u = unit(&v, Stage::Staging, "/b", "/c", "/k");
        assert!(
            u.contains("LoadCredentialEncrypted=staging-key:/k/staging-key.cred\n"),
            "{u}"
        );
    }

    #[test]
    fn self_signed_tls_serves_https_from_bulwarks_certificate() {
        let v = vault("custody = \"static\"\n").clone();
        let v = VaultProfile {
            tls: Tls::SelfSigned,
            ..v
        };
        let c = config("t", &v, &Layout::systemd(), Stage::Steady);
        assert!(
            c.contains("tls_cert_file = \"/run/credentials/bulwark-vault.service/tls-cert\""),
            "{c}"
        );
        assert!(api_addr(&v).starts_with("https://"));
        let u = unit(&v, Stage::Steady, "/b", "/c", "/var/lib/bulwark/vault/keys");
        assert!(
            u.contains("LoadCredential=tls-cert:/var/lib/bulwark/vault/tls-cert.pem\n"),
            "{u}"
        );
        assert!(
            u.contains("LoadCredentialEncrypted=tls-key:/var/lib/bulwark/vault/keys/tls-key.cred\n"),
            "{u}"
        );
    }
}
