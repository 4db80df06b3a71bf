//! One rule binds validation to rendering: every profile that validates
//! renders a ruleset that `nft -c` accepts.
//!
//! Random profiles, salted with adversarial strings (nft syntax in interface
//! names, catch-all and ambiguous CIDRs, odd ports and endpoints), go through
//! the real validator; each one that validates is rendered with bulwarkd's
//! renderer and its JSON batch checked by the real `nft -c` inside a network
//! namespace made for the test. A profile that validates but that nft
//! refuses would be applied as "ok" and fail at the kernel: the test fails
//! and prints it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use bulwark_agent::firewall::{render, Ruleset};
use bulwark_model::profile::Firewall;
use bulwark_model::Profile;
use bulwark_tests::{require_root, run, run_ok, run_with_stdin, Ran};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use toml::{Table, Value};

/// Enough to meet every adversarial string many times; about 10 s.
const CASES: u32 = 400;

/// A network namespace of the test's own, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        require_root();
        let name = format!("bwk-{tag}-{}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        Ns(name)
    }

    /// `nft -c -j -f -` on `rs`'s batch, inside the namespace.
    fn check(&self, rs: &Ruleset) -> Ran {
        let batch = serde_json::to_vec(&rs.to_nftables()).unwrap();
        run_with_stdin(
            Command::new("ip").args(["netns", "exec", &self.0, "nft", "-c", "-j", "-f", "-"]),
            &batch,
        )
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let r = run(Command::new("ip").args(["netns", "del", &self.0]));
        if !r.ok() {
            eprintln!("warning: could not delete namespace {}:\n{r}", self.0);
        }
    }
}

fn rendered(p: &Profile) -> Ruleset {
    render(&p.firewall, p.wireguard.as_ref().map(|w| w.interface.as_str()))
}

const GOOD_IFACES: &[&str] = &[
    "cni0",
    "flannel.1",
    "lxc*",
    "cali*",
    "veth*",
    "cilium_host",
    "cilium_vxlan",
    "kube-ipvs0",
    "vxlan.calico",
    "tunl0",
    "wg0",
    "wgadm0",
    "eth1",
    "a",
    "A1-b_c.d",
    "123",
    "abcdefghijklmno",
    "lxcabcdefghijk*",
    "nodelocaldns",
];

/// Strings that nft reads as syntax, that the kernel refuses, or that trust
/// too much.
const BAD_IFACES: &[&str] = &[
    "*",
    "@admin_v4",
    "@cluster_v4",
    "$iface",
    "eth*",
    "en*",
    "ens*",
    "wl*",
    "bond*",
    "br*",
    "l*",
    "lx*",
    "lxc**",
    "lx*c",
    "*lxc",
    "\"",
    "a\"b",
    "{a}",
    "}",
    "a b",
    "a\\*",
    "\\*",
    "\\",
    "é",
    "cni0\n",
    "",
    "-a",
    ".",
    "..",
    "a/b",
    "a:b",
    "abcdefghijklmnop",
    "abcdefghijklmno*",
    "\u{0}",
    "lo",
    "a;b",
    "a'b",
    "a,b",
    "#",
    "a#b",
    "\t",
    "\u{7f}",
];

/// `good` most of the time; with `salt`, `bad` one time in four.
fn salted<T: std::fmt::Debug + Clone + 'static>(
    salt: bool,
    good: impl Strategy<Value = T> + 'static,
    bad: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if salt {
        prop_oneof![3 => good, 1 => bad].boxed()
    } else {
        good.boxed()
    }
}

fn iface(salt: bool) -> BoxedStrategy<String> {
    salted(
        salt,
        select(GOOD_IFACES).prop_map(str::to_owned),
        prop_oneof![
            3 => select(BAD_IFACES).prop_map(str::to_owned),
            // Near the allowed alphabet, where a hole in the rules would hide.
            3 => "[a-zA-Z0-9._*@$-]{1,16}",
            1 => "[ -~]{0,17}",
            1 => "\\PC{0,6}",
        ],
    )
}

const BAD_CIDRS: &[&str] = &[
    "0.0.0.0/0",
    "::/0",
    "0.0.0.0/1",
    "2000::/3",
    "198.051.100.0/24",
    "010.42.0.0/16",
    "::ffff:198.51.100.0/120",
    "::ffff:10.42.0.0/112",
    "10.0.0.0/33",
    "10.0.0.0/",
    "10.0.0.0",
    "/8",
    " 10.42.0.0/16",
    "10.42.0.0/16 ",
    "10.42.0.1/16",
    "fc00::/7",
    "fd00::/8",
    "100.64.0.0/10",
    "2001:cafe:42::/56",
    "10.0.0.0/08",
    "1.2.3.4/32",
    "::1/128",
    "fe80::/10",
    "224.0.0.0/4",
    "255.255.255.255/32",
];

/// `addr/len` with host bits cleared (a CIDR the parser accepts), inside
/// `base/mask_len`.
fn net_v4(base: u32, mask_len: u8, len: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = String> {
    (any::<u32>(), len).prop_map(move |(bits, len)| {
        let len = len.max(mask_len);
        let addr = base | (bits & u32::MAX.checked_shr(u32::from(mask_len)).unwrap_or(0));
        let net = addr & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        format!("{}/{len}", std::net::Ipv4Addr::from(net))
    })
}

fn net_v6(base: u128, mask_len: u8, len: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = String> {
    (any::<u128>(), len).prop_map(move |(bits, len)| {
        let len = len.max(mask_len);
        let addr = base | (bits & u128::MAX.checked_shr(u32::from(mask_len)).unwrap_or(0));
        let net = addr & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        format!("{}/{len}", std::net::Ipv6Addr::from(net))
    })
}

fn bad_cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(BAD_CIDRS).prop_map(str::to_owned),
        1 => net_v4(0, 0, 0..=32),
        1 => net_v6(0, 0, 0..=128),
        1 => "[0-9a-f.:/]{0,20}",
    ]
}

/// Pod and service networks: RFC 1918, CGNAT or ULA (10.8/16 stays free for the VPN).
fn cluster_cidr(salt: bool) -> BoxedStrategy<String> {
    salted(
        salt,
        prop_oneof![
            4 => net_v4(0x0a2a_0000, 15, 15..=30),
            1 => net_v4(0xac10_0000, 12, 12..=30),
            1 => net_v4(0x6440_0000, 10, 10..=30),
            2 => net_v6(0xfd00 << 112, 8, 8..=128),
        ],
        bad_cidr(),
    )
}

/// Admin networks: public ranges (documentation and 192.0.0.0/3), narrow enough.
fn admin_cidr(salt: bool) -> BoxedStrategy<String> {
    salted(
        salt,
        prop_oneof![
            4 => net_v4(0xc000_0000, 3, 8..=32),
            2 => net_v6(0x2001_0db8 << 96, 32, 32..=128),
        ],
        bad_cidr(),
    )
}

fn port(salt: bool) -> BoxedStrategy<Value> {
    salted(
        salt,
        (1i64..=65535).prop_map(Value::Integer),
        prop_oneof![
            3 => select(&[22i64, 53, 443, 6443, 9469, 51820][..]).prop_map(Value::Integer),
            1 => select(&[0i64, -1, 65536, 1 << 40][..]).prop_map(Value::Integer),
            1 => Just(Value::String("22".to_owned())),
        ],
    )
}

fn list(item: BoxedStrategy<impl Into<Value> + std::fmt::Debug + 'static>, max: usize) -> impl Strategy<Value = Value> {
    proptest::collection::vec(item, 0..=max).prop_map(|v| Value::Array(v.into_iter().map(Into::into).collect()))
}

const ENDPOINTS: &[&str] = &[
    "vps.example.org:51820",
    "198.51.100.1:51820",
    "[2001:db8::1]:51820",
    "x.y:1",
];
const BAD_ENDPOINTS: &[&str] = &[
    "2001:db8::1:51820",
    "[[[2001:db8::1]:51820",
    "[2001:db8::1]",
    "vps.example.org:0",
    "198.051.100.1:51820",
    "[::ffff:198.51.100.1]:51820",
    ":51820",
];

const VPN_ADDRESSES: &[&str] = &[
    "10.8.0.1/24",
    "10.8.0.1/30",
    "10.8.3.7/16",
    "192.168.77.1/24",
    "100.127.0.1/24",
];
const BAD_VPN_ADDRESSES: &[&str] = &[
    "10.42.0.1/24",
    "198.51.100.77/24",
    "10.8.0.0/24",
    "10.8.0.01/24",
    "fd00::1/64",
    "10.8.0.1/31",
];

fn strings(salt: bool, good: &'static [&'static str], bad: &'static [&'static str]) -> BoxedStrategy<String> {
    salted(salt, select(good), select(bad)).prop_map(str::to_owned).boxed()
}

fn wireguard(salt: bool) -> impl Strategy<Value = Option<Table>> {
    let section = (
        salted(salt, Just("wg0".to_owned()), iface(true)),
        strings(salt, VPN_ADDRESSES, BAD_VPN_ADDRESSES),
        salted(salt, Just(Value::Integer(51820)), port(true)),
        strings(salt, ENDPOINTS, BAD_ENDPOINTS),
    )
        .prop_map(|(i, a, p, e)| {
            let mut t = Table::new();
            t.insert("interface".into(), Value::String(i));
            t.insert("address".into(), Value::String(a));
            t.insert("listen_port".into(), p);
            t.insert("endpoint".into(), Value::String(e));
            t
        });
    proptest::option::weighted(0.6, section)
}

/// A profile document; with `salt`, adversarial values are mixed into every field.
fn profile(salt: bool) -> impl Strategy<Value = Table> {
    let firewall = (
        list(admin_cidr(salt), 3),
        list(cluster_cidr(salt), 3),
        list(iface(salt), 4),
        (list(port(salt), 3), list(port(salt), 3), list(port(salt), 2)),
        (list(port(salt), 2), list(port(salt), 2)),
        any::<bool>(),
    );
    let listen = proptest::option::weighted(
        0.3,
        strings(
            salt,
            &["127.0.0.1:9469", "[::1]:9469"],
            &["127.0.0.1:0", "0.0.0.0:9469", "127.0.0.1:09469"],
        ),
    );
    (firewall, wireguard(salt), listen).prop_map(
        |((admin, cluster, ifaces, (pt, at, vt), (pu, vu), log), wg, listen)| {
            let mut fw = Table::new();
            for (k, v) in [
                ("admin_cidrs", admin),
                ("cluster_cidrs", cluster),
                ("cluster_interfaces", ifaces),
                ("public_tcp", pt),
                ("admin_tcp", at),
                ("vpn_tcp", vt),
                ("public_udp", pu),
                ("vpn_udp", vu),
            ] {
                fw.insert(k.into(), v);
            }
            fw.insert("log_drops".into(), Value::Boolean(log));
            let mut doc = Table::new();
            let mut meta = Table::new();
            meta.insert("name".into(), Value::String("prop".into()));
            doc.insert("profile".into(), Value::Table(meta));
            doc.insert("firewall".into(), Value::Table(fw));
            if let Some(wg) = wg {
                doc.insert("wireguard".into(), Value::Table(wg));
            }
            if let Some(listen) = listen {
                let mut m = Table::new();
                m.insert("listen".into(), Value::String(listen));
                doc.insert("monitoring".into(), Value::Table(m));
            }
            doc
        },
    )
}

#[test]
fn every_profile_that_validates_renders_a_ruleset_nft_accepts() {
    let ns = Ns::new("nftc");
    let (valid, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    // Half clean profiles (which mostly validate), half salted ones.
    let result = runner.run(&prop_oneof![profile(false), profile(true)], |doc| {
        // toml writes the strings escaped, so every adversarial string
        // reaches the validator as the value it is.
        let text = toml::to_string(&doc).unwrap();
        let Ok(p) = Profile::parse("prop.toml", &text) else {
            refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        valid.fetch_add(1, Ordering::Relaxed);
        let r = ns.check(&rendered(&p));
        if r.ok() {
            Ok(())
        } else {
            Err(TestCaseError::fail(format!(
                "this profile validates, but nft -c refuses its ruleset:\n{text}\n{r}"
            )))
        }
    });
    let (valid, refused) = (valid.into_inner(), refused.into_inner());
    eprintln!("{valid} profiles validated and passed nft -c, {refused} were refused by validation");
    if let Err(e) = result {
        panic!("{e}");
    }
    // Both sides must be exercised, or the property proves nothing.
    let total = (valid + refused) as f64;
    assert!(
        valid as f64 >= 0.2 * total,
        "only {valid} of {total} generated profiles validated"
    );
    assert!(
        refused as f64 >= 0.2 * total,
        "only {refused} of {total} generated profiles were refused"
    );
}

/// The names validation refuses are not refused out of caution alone:
/// rendered anyway, nft rejects them ("datatype mismatch", missing set), so
/// a profile holding them would pass validation and fail at apply.
#[test]
fn the_interface_names_validation_refuses_break_nft_when_rendered() {
    let ns = Ns::new("nftbad");
    for name in ["*", "@admin_v4"] {
        let text = format!("[profile]\nname = \"t\"\n[firewall]\ncluster_interfaces = [{name:?}]\n");
        let errs = Profile::parse("t.toml", &text)
            .expect_err("validation must refuse it")
            .errors;
        assert_eq!(errs[0].path, "firewall.cluster_interfaces[0]", "{errs:?}");
        let fw = Firewall {
            cluster_interfaces: vec![name.to_owned()],
            ..Firewall::default()
        };
        let r = ns.check(&render(&fw, None));
        assert!(
            !r.ok(),
            "nft accepted iifname {name:?}; the refusal would be pointless:\n{r}"
        );
    }
    // And the accepted forms pass, wildcard included.
    let p = Profile::parse(
        "t.toml",
        "[profile]\nname = \"t\"\n[firewall]\ncluster_interfaces = [\"lxc*\", \"cni0\", \"flannel.1\"]\ncluster_cidrs = [\"10.42.0.0/16\"]\n",
    )
    .unwrap();
    let r = ns.check(&rendered(&p));
    assert!(r.ok(), "{r}");
}
