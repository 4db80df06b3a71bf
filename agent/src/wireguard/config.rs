//! Client configuration in wg-quick format, shown to the admin exactly once.
//!
//! Pure rendering: the caller passes the keys. When the admin brought their
//! own public key, the `PrivateKey` line is a placeholder they replace.

use std::fmt::Write;
use std::net::Ipv4Addr;

use ipnet::IpNet;

/// Placeholder written when Bulwark does not know the client's private key.
pub const PRIVATE_KEY_PLACEHOLDER: &str = "<your private key>";

/// What goes into one client config.
pub struct ClientConfig<'a> {
    pub name: &'a str,
    /// Base64 private key, or `None` for the placeholder.
    pub private_key: Option<&'a str>,
    pub address: Ipv4Addr,
    pub server_public_key: &'a str,
    pub preshared_key: &'a str,
    pub endpoint: &'a str,
    pub allowed_ips: &'a [IpNet],
    /// Seconds; 0 leaves the line out.
    pub keepalive: u16,
}

impl std::fmt::Debug for ClientConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ClientConfig<'_> {
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = writeln!(s, "# Bulwark WireGuard access for {:?}", self.name);
        if self.private_key.is_none() {
            let _ = writeln!(
                s,
                "# Replace the PrivateKey placeholder with the key whose public half you gave."
            );
        }
        let _ = writeln!(s, "[Interface]");
        let _ = writeln!(
            s,
            "PrivateKey = {}",
            self.private_key.unwrap_or(PRIVATE_KEY_PLACEHOLDER)
        );
        let _ = writeln!(s, "Address = {}/32", self.address);
        let _ = writeln!(s);
        let _ = writeln!(s, "[Peer]");
        let _ = writeln!(s, "PublicKey = {}", self.server_public_key);
        let _ = writeln!(s, "PresharedKey = {}", self.preshared_key);
        let _ = writeln!(s, "Endpoint = {}", self.endpoint);
        let allowed: Vec<String> = self.allowed_ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "AllowedIPs = {}", allowed.join(", "));
        if self.keepalive > 0 {
            let _ = writeln!(s, "PersistentKeepalive = {}", self.keepalive);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn base<'a>(allowed: &'a [IpNet]) -> ClientConfig<'a> {
        ClientConfig {
            name: "alice",
            private_key: Some("cPRIVATE="),
            address: "10.8.0.2".parse().unwrap(),
            server_public_key: "sPUBLIC=",
            preshared_key: "pPSK=",
            endpoint: "vps.example.org:51820",
            allowed_ips: allowed,
            keepalive: 25,
        }
    }

    #[test]
    fn renders_a_wg_quick_config() {
        let allowed = ["10.8.0.0/24".parse().unwrap(), "192.0.2.0/24".parse().unwrap()];
        assert_eq!(
            base(&allowed).render(),
            "# Bulwark WireGuard access for \"alice\"\n\
             [Interface]\n\
             PrivateKey = cPRIVATE=\n\
             Address = 10.8.0.2/32\n\
             \n\
             [Peer]\n\
             PublicKey = sPUBLIC=\n\
             PresharedKey = pPSK=\n\
             Endpoint = vps.example.org:51820\n\
             AllowedIPs = 10.8.0.0/24, 192.0.2.0/24\n\
             PersistentKeepalive = 25\n"
        );
    }

    #[test]
    fn own_key_mode_gets_a_placeholder_and_keepalive_0_no_line() {
        let allowed = ["10.8.0.0/24".parse().unwrap()];
        let mut c = base(&allowed);
        c.private_key = None;
        c.keepalive = 0;
        let text = c.render();
        assert!(text.contains("PrivateKey = <your private key>\n"));
        assert!(text.contains("# Replace the PrivateKey placeholder"));
        assert!(!text.contains("PersistentKeepalive"));
        assert!(!format!("{c:?}").contains("pPSK"));
    }
}
