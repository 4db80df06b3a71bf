//! The drop-ins Bulwark owns for K3s, rendered as text (no system calls).

use std::fmt::Write as _;
use std::net::IpAddr;

use bulwark_model::profile::{EtcdSnapshots, K3s as K3sProfile};

/// Merged by K3s after its own `config.yaml`, in lexical order: `50-` leaves
/// room for an operator's files on either side.
pub const CONFIG_DROPIN: &str = "/etc/rancher/k3s/config.yaml.d/50-bulwark.yaml";
/// Orders k3s.service after bulwarkd.service.
pub const UNIT_DROPIN: &str = "/etc/systemd/system/k3s.service.d/50-bulwark.conf";
/// The S3 keys for K3s's etcd snapshots (0600): written from the
/// credentials file at each apply, never part of a generation or a plan.
pub const KEYS_DROPIN: &str = "/etc/rancher/k3s/config.yaml.d/51-bulwark-etcd-s3.yaml";

/// YAML double-quoted scalar. Values are validated IPs and DNS names, but
/// quoting keeps an IPv6 address (with its colons) a plain string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `config.yaml.d/50-bulwark.yaml`: every address K3s binds or announces is `bind`.
pub fn config_yaml(desired: &K3sProfile, bind: IpAddr) -> String {
    let ip = quoted(&bind.to_string());
    let mut s = String::from(
        "# Managed by Bulwark from the [k3s] section of its profile; edits are\n\
         # overwritten on the next apply. K3s merges this file over config.yaml.\n",
    );
    let _ = writeln!(s, "bind-address: {ip}");
    let _ = writeln!(s, "advertise-address: {ip}");
    let _ = writeln!(s, "node-ip: {ip}");
    if !desired.tls_san.is_empty() {
        s.push_str("tls-san:\n");
        for san in &desired.tls_san {
            let _ = writeln!(s, "  - {}", quoted(san));
        }
    }
    if let Some(etcd) = &desired.etcd_snapshots {
        etcd_settings(&mut s, etcd);
    }
    s
}

/// K3s's own etcd snapshot settings; the keys go to [`KEYS_DROPIN`].
fn etcd_settings(s: &mut String, etcd: &EtcdSnapshots) {
    if let Some(cron) = &etcd.schedule {
        let _ = writeln!(s, "etcd-snapshot-schedule-cron: {}", quoted(cron));
    }
    if let Some(n) = etcd.retention {
        let _ = writeln!(s, "etcd-snapshot-retention: {n}");
    }
    let Some(s3) = &etcd.s3 else { return };
    let _ = writeln!(s, "# The S3 keys are in {KEYS_DROPIN} (root only).");
    s.push_str("etcd-s3: true\n");
    let _ = writeln!(s, "etcd-s3-endpoint: {}", quoted(&s3.endpoint));
    let _ = writeln!(s, "etcd-s3-bucket: {}", quoted(&s3.bucket));
    let _ = writeln!(s, "etcd-s3-folder: {}", quoted(&s3.folder));
    let _ = writeln!(s, "etcd-s3-region: {}", quoted(&s3.region));
    if s3.insecure {
        s.push_str("etcd-s3-insecure: true\n");
    }
}

/// [`KEYS_DROPIN`]: the access key and secret from `source`.
pub fn keys_yaml(source: &str, access_key_id: &str, secret_access_key: &str) -> String {
    let mut s = format!(
        "# Managed by Bulwark from {source} for K3s's etcd snapshots to S3;\n\
         # rewritten on each apply. Root only: it holds the S3 secret.\n"
    );
    let _ = writeln!(s, "etcd-s3-access-key: {}", quoted(access_key_id));
    let _ = writeln!(s, "etcd-s3-secret-key: {}", quoted(secret_access_key));
    s
}

/// `k3s.service.d/50-bulwark.conf`: the VPN address K3s binds to exists only
/// once bulwarkd has converged, so K3s starts after it.
pub fn unit_dropin() -> String {
    "# Managed by Bulwark: K3s binds to the VPN address, which exists only once\n\
     # bulwarkd has started.\n\
     [Unit]\n\
     Wants=bulwarkd.service\n\
     After=bulwarkd.service\n"
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bulwark_model::profile::K3sBind;

    fn profile(sans: &[&str]) -> K3sProfile {
        K3sProfile {
            bind: K3sBind::Vpn,
            tls_san: sans.iter().map(|s| (*s).to_owned()).collect(),
            restart: true,
            etcd_snapshots: None,
        }
    }

    #[test]
    fn config_names_the_bind_address_everywhere() {
        let text = config_yaml(&profile(&["10.8.0.1", "k3s.vpn.internal"]), "10.8.0.1".parse().unwrap());
        assert_eq!(
            text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(),
            [
                "bind-address: \"10.8.0.1\"",
                "advertise-address: \"10.8.0.1\"",
                "node-ip: \"10.8.0.1\"",
                "tls-san:",
                "  - \"10.8.0.1\"",
                "  - \"k3s.vpn.internal\"",
            ]
        );
        assert!(text.starts_with("# Managed by Bulwark"));
    }

    #[test]
    fn empty_tls_san_is_left_out_and_ipv6_is_quoted() {
        let text = config_yaml(&profile(&[]), "fd00::1".parse().unwrap());
        assert!(!text.contains("tls-san"));
        assert!(text.contains("bind-address: \"fd00::1\"\n"));
    }

    #[test]
    fn etcd_snapshots_go_to_the_bucket_with_the_keys_left_to_their_own_file() {
        use bulwark_model::profile::{EtcdS3, S3Credentials};
        let mut p = profile(&[]);
        p.etcd_snapshots = Some(EtcdSnapshots {
            schedule: Some("0 */6 * * *".to_owned()),
            retention: Some(14),
            s3: Some(EtcdS3 {
                endpoint: "127.0.0.1:9000".to_owned(),
                insecure: true,
                bucket: "backups".to_owned(),
                folder: "hosts/vps1/k3s-etcd".to_owned(),
                region: "eu-west-1".to_owned(),
                credentials: S3Credentials::File("/etc/bulwark/s3-credentials".to_owned()),
            }),
        });
        let text = config_yaml(&p, "10.8.0.1".parse().unwrap());
        assert_eq!(
            text.lines().filter(|l| l.starts_with("etcd")).collect::<Vec<_>>(),
            [
                "etcd-snapshot-schedule-cron: \"0 */6 * * *\"",
                "etcd-snapshot-retention: 14",
                "etcd-s3: true",
                "etcd-s3-endpoint: \"127.0.0.1:9000\"",
                "etcd-s3-bucket: \"backups\"",
                "etcd-s3-folder: \"hosts/vps1/k3s-etcd\"",
                "etcd-s3-region: \"eu-west-1\"",
                "etcd-s3-insecure: true",
            ]
        );
        assert!(!text.contains("access-key") && !text.contains("secret-key"), "{text}");
        let keys = keys_yaml("/etc/bulwark/s3-credentials", "AKIA1", "s3cr3t");
        assert_eq!(
            keys.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(),
            ["etcd-s3-access-key: \"AKIA1\"", "etcd-s3-secret-key: \"s3cr3t\""]
        );
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("a\nb"), "\"a\\u000ab\"");
    }

    #[test]
    fn unit_dropin_orders_after_bulwarkd() {
        let text = unit_dropin();
        assert!(text.contains("[Unit]\nWants=bulwarkd.service\nAfter=bulwarkd.service\n"));
    }
}
