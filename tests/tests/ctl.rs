//! bulwarkctl's own safety net: `apply` refuses, without `--force`, a profile
//! that would drop the SSH session it runs in (`SSH_CONNECTION`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bulwark_tests::Lab;

/// The operator's session: from the admin namespace's address to port 22.
const SSH: (&str, &str) = ("SSH_CONNECTION", "198.51.100.2 50022 198.51.100.1 22");

/// Keeps SSH open for the operator's network.
const KEEPS_SSH: &str = include_str!("../fixtures/a.toml");

/// Opens SSH only to a network the operator is not in.
const CUTS_SSH: &str = "[profile]
name = \"cuts-ssh\"

[firewall]
admin_cidrs = [\"192.0.2.0/24\"]
admin_tcp = [22]
";

#[test]
fn apply_refuses_to_cut_the_ssh_session_without_force() {
    let mut lab = Lab::new("ssh-guard");
    lab.daemon.start(None);
    let d = &lab.daemon;
    let keeps = d.write_profile("keeps", KEEPS_SSH);
    let cuts = d.write_profile("cuts", CUTS_SSH);

    let r = d.ctl_env(&[SSH], &["apply", keeps.to_str().unwrap()]);
    assert!(r.ok(), "a profile that keeps the session open applies:\n{r}");
    let before = d.ruleset_present();
    let gens = d.generations().len();

    let r = d.ctl_env(&[SSH], &["apply", cuts.to_str().unwrap()]);
    assert_eq!(
        r.code,
        Some(1),
        "a profile that drops the SSH session needs --force:\n{r}"
    );
    assert!(
        r.stderr.contains("--force"),
        "the refusal should say how to override it:\n{r}"
    );
    assert_eq!(
        d.ruleset().as_deref(),
        Some(before.as_str()),
        "the refused apply changed the ruleset"
    );
    assert_eq!(d.generations().len(), gens, "the refused apply recorded a generation");

    let r = d.ctl_env(&[SSH], &["apply", "--force", cuts.to_str().unwrap()]);
    assert!(r.ok(), "--force overrides the guard:\n{r}");
    assert_ne!(
        d.ruleset().as_deref(),
        Some(before.as_str()),
        "the forced apply changed nothing"
    );
}
