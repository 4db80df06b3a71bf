//! Which addresses the K3s ports listen on, from the kernel's socket table.
//!
//! `/proc/net/tcp{,6}` is read from the real `/proc`, never under the host
//! root: it shows the sockets of the daemon's own network namespace, which is
//! the one K3s serves from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulwark_model::api::{Check, Level};

/// The API server and the kubelet.
pub const K3S_PORTS: [u16; 2] = [6443, 10250];

/// Name of the health check.
pub const CHECK: &str = "k3s_bind";

/// TCP_LISTEN in the `st` column.
const LISTEN: &str = "0A";

/// Sockets in state LISTEN on one of `ports`, from `/proc/net/tcp` and
/// `/proc/net/tcp6`. A missing table (no IPv6) counts as empty.
pub fn listeners(ports: &[u16]) -> Vec<(IpAddr, u16)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => found.extend(parse_table(&text).into_iter().filter(|(_, p)| ports.contains(p))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(table, error:display = e; "cannot read the socket table"),
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Listening `(address, port)` pairs of one `/proc/net/tcp{,6}` table.
/// Lines that do not parse are skipped: the header, and nothing else.
pub fn parse_table(text: &str) -> Vec<(IpAddr, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let _slot = cols.next()?;
            let local = cols.next()?;
            let _remote = cols.next()?;
            let state = cols.next()?;
            if state != LISTEN {
                return None;
            }
            parse_endpoint(local)
        })
        .collect()
}

/// `0100007F:1A0B` or a 32-digit IPv6 address with its port. The kernel
/// prints each 32-bit word of the (network-order) address as a native-endian
/// integer, so each word's bytes come back with `to_ne_bytes`; the port is
/// printed in host order.
pub fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            // A v4-mapped listener is an IPv4 bind made through an AF_INET6 socket.
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The K3s ports must listen only on `bind` or loopback.
pub fn check_bind(bind: IpAddr) -> Check {
    judge(bind, &listeners(&K3S_PORTS))
}

/// [`check_bind`] on a given socket list: anything outside `bind` and
/// loopback is CRITICAL and named; nothing listening at all is a WARNING.
pub fn judge(bind: IpAddr, listening: &[(IpAddr, u16)]) -> Check {
    let ours: Vec<_> = listening.iter().filter(|(_, p)| K3S_PORTS.contains(p)).collect();
    let exposed: Vec<String> = ours
        .iter()
        .filter(|(ip, _)| *ip != bind && !ip.is_loopback())
        .map(|(ip, port)| match ip {
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
            IpAddr::V4(_) => format!("{ip}:{port}"),
        })
        .collect();
    let (level, reason) = if !exposed.is_empty() {
        (
            Level::Critical,
            format!(
                "K3s listens on {} outside {bind} and loopback; set bind-address or restart k3s",
                exposed.join(", ")
            ),
        )
    } else if ours.is_empty() {
        (
            Level::Warning,
            format!("k3s not listening on ports 6443 and 10250 (expected on {bind})"),
        )
    } else {
        let mut ports: Vec<u16> = ours.iter().map(|(_, p)| *p).collect();
        ports.dedup();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        (
            Level::Ok,
            format!("port(s) {} listen only on {bind} and loopback", ports.join(", ")),
        )
    };
    Check {
        module: String::new(),
        name: CHECK.to_owned(),
        level,
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Captured on x86-64 (little-endian): 127.0.0.1:53, 0.0.0.0:6443
    // (listening), 10.8.0.1:6443 established.
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100080A:192B 0200080A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
";

    // [::]:10250, [::1]:6443, [2001:db8::1]:6443, [::ffff:10.8.0.1]:6443.
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   2: B80D0120000000000000000001000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000100080A:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_listening_ipv4_sockets_only() {
        assert_eq!(parse_table(TCP), [(ip("127.0.0.1"), 53), (ip("0.0.0.0"), 6443)]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_ipv6_words_and_maps_v4() {
        assert_eq!(
            parse_table(TCP6),
            [
                (ip("::"), 10250),
                (ip("::1"), 6443),
                (ip("2001:db8::1"), 6443),
                (ip("10.8.0.1"), 6443),
            ]
        );
    }

    #[test]
    fn garbage_is_skipped() {
        assert_eq!(parse_endpoint("zz:1"), None);
        assert_eq!(parse_endpoint("0100007F"), None);
        assert_eq!(parse_endpoint("0100007F00:0035"), None);
        assert!(parse_table("nonsense\n\n").is_empty());
    }

    #[test]
    fn real_table_shows_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listeners(&[port]), [(ip("127.0.0.1"), port)]);
    }

    #[test]
    fn bind_and_loopback_are_ok() {
        let bind = ip("10.8.0.1");
        let c = judge(
            bind,
            &[(bind, 6443), (ip("127.0.0.1"), 6443), (ip("::1"), 10250), (bind, 10250)],
        );
        assert_eq!(c.level, Level::Ok, "{}", c.reason);
        assert!(c.reason.contains("6443, 10250"), "{}", c.reason);
    }

    #[test]
    fn wildcard_and_other_addresses_are_critical_and_named() {
        let bind = ip("10.8.0.1");
        let c = judge(bind, &[(bind, 6443), (ip("0.0.0.0"), 10250), (ip("::"), 6443)]);
        assert_eq!(c.level, Level::Critical);
        assert!(c.reason.contains("0.0.0.0:10250"), "{}", c.reason);
        assert!(c.reason.contains("[::]:6443"), "{}", c.reason);
        let c = judge(bind, &[(ip("203.0.113.1"), 6443)]);
        assert_eq!(c.level, Level::Critical);
        assert!(c.reason.contains("203.0.113.1:6443"), "{}", c.reason);
    }

    #[test]
    fn nothing_listening_is_a_warning() {
        let c = judge(ip("10.8.0.1"), &[(ip("0.0.0.0"), 22)]);
        assert_eq!(c.level, Level::Warning);
        assert!(c.reason.starts_with("k3s not listening"), "{}", c.reason);
    }
}
