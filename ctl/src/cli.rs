//! Command-line interface: every flag, subcommand and help text.
//!
//! The help is the first manual an operator reads (and the source of the man
//! pages), so each command says what it does and, where it helps, shows an
//! example. README.md and docs/api.md describe the same behaviour.

use std::path::PathBuf;

use bulwark_model::api::DEFAULT_SOCKET;
use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCandidates;
use clap_complete::Shell;

use crate::complete;
use crate::error::EXIT_CODES;

const ABOUT: &str = "Control bulwarkd, the Bulwark host hardening agent";

const LONG_ABOUT: &str = "\
Control bulwarkd, the Bulwark host hardening agent.

bulwarkctl talks to bulwarkd over its Unix socket. Reading state (status,
health, generations, peers, audit, evidence) needs membership in group
`bulwark`; changing it (apply, confirm, rollback, the peer commands, the ima
and vault commands that change something) needs root or group
`bulwark-admin`. `validate` works offline and needs no daemon.

A typical change:
  bulwarkctl validate /etc/bulwark/profile.toml
  bulwarkctl apply --dry-run /etc/bulwark/profile.toml
  bulwarkctl apply --confirm 120 /etc/bulwark/profile.toml
  bulwarkctl confirm

A fleet tool renders the profile itself and sends it on stdin:
  bulwarkctl --json apply - --source web.toml --confirm 120 --wait < web.toml
  bulwarkctl --json confirm --generation 7

What is in force, in words: bulwarkctl show. When something looks wrong:
bulwarkctl doctor.";

/// A confirm window is for "did I just lock myself out?"; longer than a day
/// it only leaves a revert pending that nobody remembers.
const MAX_CONFIRM_SECS: u64 = 24 * 3600;
/// Enough for any terminal session; the daemon bounds its answer anyway.
const MAX_TAIL: u64 = 100_000;
/// `apply --wait` without a value.
const DEFAULT_WAIT_SECS: &str = "60";
/// Longer than any module takes to settle; a wait is never open-ended.
const MAX_WAIT_SECS: u64 = 3600;

const GLOBAL: &str = "Global options";

/// What `health` and `doctor` exit with, for their own help.
const PLUGIN_CODES: &str = "\
Exit codes (the monitoring plug-in convention):
  0  OK
  1  WARNING
  2  CRITICAL
  3  UNKNOWN: the daemon is unreachable, its answer cannot be read, or the
     command line is wrong (an unknown check name included)";

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(
    name = "bulwarkctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    // --version is ours, so that --json can ask for it as JSON.
    disable_version_flag = true,
    subcommand_required = false,
    max_term_width = 80
)]
pub struct Cli {
    /// Print bulwarkctl's version (with --json: as JSON) and exit
    #[arg(short = 'V', long, help_heading = GLOBAL)]
    pub version: bool,

    /// bulwarkd's API socket
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "PATH", env = "BULWARK_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Print the API's JSON answer instead of the summary (same exit codes)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Show each request and the full cause of connection errors on stderr
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a profile offline, exactly as bulwarkd would
    #[command(long_about = "\
Check a profile offline, exactly as bulwarkd would.

Reports every problem at once, one per line (file: path: reason), and exits 4
if there is any. No daemon is needed. FILE `-` reads the profile from stdin.

Examples:
  bulwarkctl validate /etc/bulwark/profile.toml
  render-profile web | bulwarkctl validate - --source web.toml")]
    Validate(ValidateArgs),

    /// Validate a profile, show the plan and make it the new generation
    #[command(long_about = "\
Apply a profile: validate it, show the plan, and make it the new generation.

bulwarkd validates the profile; its errors print as `validate` prints them,
and when the daemon is unreachable bulwarkctl validates it itself, so they
look the same either way. When run over SSH, bulwarkctl refuses a profile that
would drop the SSH connection it runs in, unless --force is given.

With --confirm SECS the change reverts to the previous generation after SECS
seconds unless `bulwarkctl confirm` is run in time: use it whenever a change
could cut you off.

With --wait[=SECS], bulwarkctl returns only once the host's health is no longer
CRITICAL (a WARNING, such as the open confirm window itself, is fine), at most
SECS seconds (60 without a value), and exits 10 if it stays CRITICAL. With
--json, the answer gains `health` (the last health read); on exit 10 the
error body holds the apply's answer as `apply`, and `health`. The
apply itself is synchronous (the firewall is read back before bulwarkd
answers); what --wait adds is the time modules take to settle: a userspace
WireGuard coming up, K3s restarting behind its drop-ins.

FILE `-` reads the profile from stdin; --source names it in errors and in the
generation (the file name by default, `stdin` for `-`).

Examples:
  bulwarkctl apply --dry-run profile.toml
  bulwarkctl apply --confirm 120 profile.toml && bulwarkctl confirm
  bulwarkctl --json apply - --source web.toml --confirm 120 --wait < web.toml")]
    Apply(ApplyArgs),

    /// Keep the change made by `apply --confirm` before it reverts
    #[command(long_about = "\
Keep the change made by `apply --confirm SECS` before its window closes.

Without it, the previous generation comes back on its own when the window
closes, even across a restart of bulwarkd. `bulwarkctl status` shows the
deadline.

With --generation N, only generation N is confirmed: if another generation
awaits confirmation (someone else applied since), nothing is confirmed and
bulwarkctl exits 6. Scripts should always pass the generation their apply
answered with.

Example:
  bulwarkctl apply --confirm 120 profile.toml && bulwarkctl confirm --generation 7")]
    Confirm(ConfirmArgs),

    /// Restore an earlier generation (by default the previous one)
    #[command(long_about = "\
Restore an earlier generation: its profile becomes the one in force again.

Without GEN, restores the generation before the current one. `bulwarkctl
generations` lists them.

Example:
  bulwarkctl rollback 3")]
    Rollback {
        /// Generation to restore
        #[arg(value_name = "GEN", add = ArgValueCandidates::new(complete::generations))]
        generation: Option<u64>,
    },

    /// List, show or compare the generations bulwarkd keeps
    #[command(long_about = "\
List the generations bulwarkd keeps (`*` marks the one in force), show one
whole (its profile and what each module rendered from it), or compare two.

Every apply, rollback and revert is a new generation; `bulwarkctl rollback
GEN` makes an old one the one in force again.

Examples:
  bulwarkctl generations
  bulwarkctl generations show 4
  bulwarkctl generations show 4 --artifact firewall/ruleset.json
  bulwarkctl generations diff 3 4")]
    Generations {
        #[command(subcommand)]
        command: Option<GenerationsCommand>,
    },

    /// Show bulwarkd's state: generation, pending confirmation, drift, modules
    #[command(long_about = "\
Show bulwarkd's state in a few lines: the generation and profile in force, a
pending confirmation and its deadline, the drift mode, the health level, the
last error, and one line per module.

`bulwarkctl show` says what the rules do, port by port.

Example:
  bulwarkctl status")]
    Status,

    /// Say what is enforced, in words: ports and their sources, VPN, K3s
    #[command(long_about = "\
Say what the host enforces, in words: for each class of port (public, admin,
VPN-only, cluster) which ports are open and from where, what is always
allowed, drop logging, the VPN (interface, address, endpoint, peers), the K3s
bind, the monitoring listener, and a line for every other module. Read from
the generation in force and the live status, so drift shows too.

Example:
  bulwarkctl show")]
    Show,

    /// Run health checks (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    #[command(after_help = PLUGIN_CODES, long_about = "\
Run the health checks and print each one with the overall level.

The exit code follows the monitoring plug-in convention, so this can be used
directly as a Nagios/Icinga check or as a rollout gate. --check keeps only the
checks named, --ignore drops them; both repeat, and a NAME is a check name or
a module (all its checks). A name the daemon does not report is an error.

Examples:
  bulwarkctl health
  bulwarkctl health --check firewall --check wireguard
  bulwarkctl health --ignore wireguard_handshakes")]
    Health(HealthArgs),

    /// Check what commonly goes wrong on this host and say how to fix it
    #[command(after_help = PLUGIN_CODES, long_about = "\
Check what commonly goes wrong, one line each with what to do: WireGuard in
the kernel or wireguard-go, the nft version, other firewall managers (ufw,
firewalld, nftables.service flushing the ruleset, legacy iptables), the API
socket's owner, mode and your groups, whether the daemon answers, the clock,
and IMA and Vault when the profile manages them. Works without the daemon.

Example:
  bulwarkctl doctor")]
    Doctor {
        /// Look for files under DIR instead of the daemon's root (or /)
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },

    /// Onboard an admin on the VPN and print their client config (once)
    #[command(long_about = "\
Onboard an admin on the WireGuard VPN: allocate the next free VPN address (or
--address), create a key pair (or use the admin's --public-key), add a
preshared key, apply it live, and print a wg-quick client config on stdout.

The config is shown exactly once: Bulwark does not keep the private key. Save
it straight into a file or scan the --qr code on a phone. With --public-key
the config carries a placeholder for the admin's own private key.

Examples:
  bulwarkctl add-peer alice > alice.conf
  bulwarkctl add-peer bob --public-key 'hJ7...=' --expires 30d")]
    AddPeer(AddPeerArgs),

    /// Remove a VPN peer; its config stops working at once
    #[command(long_about = "\
Remove a VPN peer: it leaves the store and the interface, and its config
stops working at once. Asks for confirmation on a terminal; without one, only
--yes removes. To cut a peer off for a while and keep it, use disable-peer.

Example:
  bulwarkctl remove-peer alice --yes")]
    RemovePeer {
        /// Name of the peer (see `bulwarkctl peers`)
        #[arg(value_name = "NAME", add = ArgValueCandidates::new(complete::peers))]
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Give a VPN peer a new expiry, counted from now
    #[command(long_about = "\
Give a VPN peer a new lifetime, counted from now: --expires DURATION, or
`never`, or by default the profile's wireguard.peer_expiry. The peer keeps its
keys, address and sessions; only the date it is removed on changes. An expired
peer is already gone: add it again.

Examples:
  bulwarkctl renew-peer alice
  bulwarkctl renew-peer alice --expires 30d")]
    RenewPeer {
        /// Name of the peer (see `bulwarkctl peers`)
        #[arg(value_name = "NAME", add = ArgValueCandidates::new(complete::peers))]
        name: String,
        /// New lifetime (e.g. 90d, 12h, or never); default: the profile's peer_expiry
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },

    /// Take a VPN peer off the interface, keeping it for enable-peer
    #[command(long_about = "\
Take a VPN peer off the WireGuard interface without forgetting it: its config
stops working at once, and `bulwarkctl enable-peer` makes the same config work
again (same keys, same address). Expiry still applies while disabled.

Example:
  bulwarkctl disable-peer alice")]
    DisablePeer {
        /// Name of the peer (see `bulwarkctl peers`)
        #[arg(value_name = "NAME", add = ArgValueCandidates::new(complete::peers))]
        name: String,
    },

    /// Put a disabled VPN peer back on the interface
    #[command(long_about = "\
Put a peer taken off with disable-peer back on the WireGuard interface; its
old config works again.

Example:
  bulwarkctl enable-peer alice")]
    EnablePeer {
        /// Name of the peer (see `bulwarkctl peers`)
        #[arg(value_name = "NAME", add = ArgValueCandidates::new(complete::peers))]
        name: String,
    },

    /// List VPN peers with address, expiry, last handshake and transfer
    #[command(long_about = "\
List VPN peers: name, VPN address, time since the last handshake, bytes
received and sent (in KiB, MiB, ...), expiry, and whether the peer is
disabled. Public keys are in --json.

Example:
  bulwarkctl peers")]
    Peers,

    /// IMA: scan and label files for the policy Bulwark wrote
    #[command(long_about = "\
IMA: scan and label files for the policy Bulwark wrote (/etc/ima/ima-policy).

scan, label and sign read the policy file and the files themselves; they need
no daemon, and label and sign need root (writing security.ima needs
CAP_SYS_ADMIN, which bulwarkd does not hold). Label runs are reported to
bulwarkd for the audit log when it is reachable.

Moving to enforce: bulwarkd refuses an apply to mode = \"enforce\" while a
scan finds files the policy would deny; label them first:
  bulwarkctl ima scan
  bulwarkctl ima label --all
  bulwarkctl apply profile.toml")]
    Ima {
        #[command(subcommand)]
        command: ImaCommand,
    },

    /// Read or verify the hash-chained audit log
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },

    /// Write the evidence report for auditors: evidence.json and evidence.html
    #[command(long_about = "\
Write the evidence report for auditors into DIR: evidence.json (the
bulwark-evidence schema of docs/evidence.md), evidence.html (one page, no
external assets, printable) rendered from it, and SHA256SUMS with the
SHA-256 of both (check with `sha256sum -c SHA256SUMS` in DIR).

For each ISO 27001 control of the architecture (docs/controls.md): the live
checks and their result now, the audit events of the period, the generations
applied, the VPN access review, backups and the IMA mode. The audit chain is
verified from its first line; a broken chain or a failing control is named
at the top. Prints the summary table; exits 1 when the report's status is
`fail` (the files are still written).

Dates are UTC: YYYY-MM-DD (midnight) or YYYY-MM-DDTHH:MM:SSZ; --since is
inclusive, --until exclusive, either may be left open.

Example:
  bulwarkctl evidence --since 2026-01-01 --until 2026-04-01 --out /srv/audit/q1")]
    Evidence(EvidenceArgs),

    /// The host's Vault: status, init, unseal, migrate
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },

    /// Print a shell completion script to stdout
    #[command(long_about = "\
Print a shell completion script to stdout. The script asks bulwarkctl itself
what to offer, so it completes subcommands and flags, and also peer names
and generation numbers from the daemon (through BULWARK_SOCKET or the default
socket; nothing is offered when it is unreachable). The package installs it
for bash, zsh and fish. No --json: the output is a script.

Example:
  bulwarkctl completions bash > /etc/bash_completion.d/bulwarkctl")]
    Completions {
        /// Shell to generate completions for
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },

    /// Write man pages (bulwarkctl.1 and one per subcommand) into DIR
    #[command(long_about = "\
Write man pages into DIR: bulwarkctl.1 and one page per subcommand (such as
bulwarkctl-apply.1). Prints the files written, one per line (with --json: a
JSON list). The package also ships bulwarkd(8) and bulwark-profile(5).

Example:
  bulwarkctl man /usr/local/share/man/man1")]
    Man {
        /// Directory to write into (created if missing)
        #[arg(value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

/// `bulwarkctl health` selection.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Report only this check or module (repeatable)
    #[arg(long = "check", value_name = "NAME")]
    pub check: Vec<String>,
    /// Leave out this check or module (repeatable)
    #[arg(long = "ignore", value_name = "NAME")]
    pub ignore: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum GenerationsCommand {
    /// List the generations (the default; `*` marks the one in force)
    List,
    /// Show one generation: who made it, when, why, its profile, its artifacts
    #[command(long_about = "\
Show one generation: its number, time, reason, the uid that made it, the
profile file it came from, whether its seal verifies, the profile text, and
the artifacts each module rendered from it (names and sizes; --artifact
prints one).

Examples:
  bulwarkctl generations show 4
  bulwarkctl generations show 4 --artifact firewall/ruleset.json")]
    Show {
        /// Generation number (see `bulwarkctl generations`)
        #[arg(value_name = "GEN", add = ArgValueCandidates::new(complete::generations))]
        generation: u64,
        /// Print only this artifact, named MODULE/FILE
        #[arg(long, value_name = "MODULE/FILE")]
        artifact: Option<String>,
    },
    /// Show what changed from generation A to B: profile and artifacts
    #[command(long_about = "\
Show what changed from generation A to generation B as unified diffs: the
profile text first, then every artifact that differs. Coloured on a terminal
(NO_COLOR turns it off).

Example:
  bulwarkctl generations diff 3 4")]
    Diff {
        /// The older generation
        #[arg(value_name = "A", add = ArgValueCandidates::new(complete::generations))]
        a: u64,
        /// The newer generation
        #[arg(value_name = "B", add = ArgValueCandidates::new(complete::generations))]
        b: u64,
    },
}

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// Start of the period, inclusive (UTC)
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub since: Option<String>,
    /// End of the period, exclusive (UTC)
    #[arg(long, value_name = "DATE", value_parser = date)]
    pub until: Option<String>,
    /// Directory to write into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// A date as the daemon reads it: `YYYY-MM-DD` or RFC 3339 in UTC.
fn date(text: &str) -> Result<String, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339(&full)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{e}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"))
}

#[derive(Debug, Args)]
pub struct AddPeerArgs {
    /// Unique name: letters, digits, '.', '_', '-'
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The admin's own public key (base64); otherwise a key pair is generated
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// A specific VPN address instead of the next free one
    #[arg(long, value_name = "IP")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Remove the peer after this long (e.g. 30d, 12h, or never); default: the profile's peer_expiry
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// Also show the config as a QR code, on stderr (never stdout, so a
    /// redirected config stays a valid file)
    #[arg(long)]
    pub qr: bool,
    /// Write the config to FILE (created with mode 0600; an existing file is
    /// refused before the peer is added) instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Profile to check (TOML); `-` reads stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Name the profile by in errors (default: FILE, or `stdin`)
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Profile to apply (TOML); `-` reads stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Name the profile by in errors and in the generation (default: FILE,
    /// or `stdin`)
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,

    /// Validate and show the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Revert unless `bulwarkctl confirm` is run within SECS seconds (at
    /// most a day)
    #[arg(long, value_name = "SECS", conflicts_with = "dry_run",
          value_parser = clap::value_parser!(u64).range(1..=MAX_CONFIRM_SECS))]
    pub confirm: Option<u64>,

    /// Apply even if the profile would drop this SSH connection, or move to
    /// IMA enforce while files would be denied
    #[arg(long)]
    pub force: bool,

    /// Then wait until health is not CRITICAL, at most SECS seconds
    /// (`--wait=SECS`; default 60); exit 10 if it stays CRITICAL
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = DEFAULT_WAIT_SECS,
          require_equals = true, conflicts_with = "dry_run",
          value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_SECS))]
    pub wait: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Confirm only if generation N is the one awaiting confirmation
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,
}

/// Where `ima` commands read the policy.
const IMA_POLICY: &str = "/etc/ima/ima-policy";

#[derive(Debug, Args)]
pub struct ImaPolicyArgs {
    /// The IMA policy that decides which files are appraised
    #[arg(long, value_name = "FILE", default_value = IMA_POLICY)]
    pub policy: PathBuf,
    /// DER certificate that verifies signatures [default: the policy's signing_cert]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Treat DIR as the host's / (a mounted image); PATHs are inside it
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ImaCommand {
    /// List the files the policy appraises that enforce mode would deny
    #[command(long_about = "\
Walk PATHs (default /) and judge every file the policy appraises: ok, signed,
missing, stale (the label no longer matches the content) or unreadable.
Lists the files enforce mode would deny, then the counts; filesystems the
policy never appraises (proc, tmpfs, overlayfs, ...) are not entered.
Shows progress on a terminal. Exit 0 when nothing would be denied, 1
otherwise.

Example:
  bulwarkctl ima scan /usr/local/bin")]
    Scan {
        #[command(flatten)]
        policy: ImaPolicyArgs,
        /// Trees or files to scan
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },

    /// Write security.ima hashes for appraised files that lack a current one
    #[command(long_about = "\
Write security.ima (a SHA-256 hash, byte-identical to `evmctl ima_hash -a
sha256`) on every file in PATHs, or on the whole host with --all, that the
policy appraises and whose label is missing or stale. Current labels and
signatures are left alone. Needs root.

Examples:
  bulwarkctl ima label --all
  bulwarkctl ima label /usr/local/bin/k3s")]
    Label {
        #[command(flatten)]
        policy: ImaPolicyArgs,
        /// Label the whole host (/)
        #[arg(long, conflicts_with = "paths")]
        all: bool,
        /// Trees or files to label
        #[arg(value_name = "PATH", required_unless_present = "all")]
        paths: Vec<PathBuf>,
    },

    /// Write imasig signatures for appraised files (signatures = true)
    #[command(long_about = "\
Sign every file in PATHs (or the whole host with --all) that the policy
appraises with KEY, an unencrypted RSA private key in PEM; the key id comes
from --cert (the profile's signing_cert). `evmctl ima_verify` accepts the
result. Needs root.

Example:
  bulwarkctl ima sign --key /root/ima.key --cert /etc/bulwark/ima/cert.der --all")]
    Sign {
        #[command(flatten)]
        policy: ImaPolicyArgs,
        /// RSA private key (PEM, PKCS#1 or PKCS#8)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Sign the whole host (/)
        #[arg(long, conflicts_with = "paths")]
        all: bool,
        /// Trees or files to sign
        #[arg(value_name = "PATH", required_unless_present = "all")]
        paths: Vec<PathBuf>,
    },

    /// Show IMA as bulwarkd sees it: modes, policy, what remains to do
    #[command(long_about = "\
Show IMA as bulwarkd sees it: the appraisal mode the profile wants and the
one the kernel runs, the policy in force, and what remains to do.

Example:
  bulwarkctl ima status")]
    Status,

    /// Print the IMA policy a profile renders, checked as bulwarkd checks it
    #[command(long_about = "\
Print the IMA policy a profile's [ima] section renders, checked against the
kernel's policy grammar as bulwarkd checks it. No daemon is needed.

Example:
  bulwarkctl ima policy /etc/bulwark/profile.toml")]
    Policy {
        /// Profile with an [ima] section (TOML)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },

    /// Label the files of packages dpkg changed (run by dpkg's post-invoke hook)
    #[command(long_about = "\
Label, in hash mode, the files of every package whose file list dpkg changed
since the last run, so enforce mode lets later installs and upgrades run.
/etc/dpkg/dpkg.cfg.d/bulwark-ima runs it after every dpkg run (apt's too).
Does nothing unless /etc/ima/ima-policy is Bulwark's. Never fails the dpkg
run: problems are printed and reported to bulwarkd.

Example (what the hook runs):
  bulwarkctl ima dpkg-hook")]
    DpkgHook {
        #[command(flatten)]
        policy: ImaPolicyArgs,
        /// dpkg's database [default: $DPKG_ADMINDIR, else /var/lib/dpkg]
        #[arg(long, value_name = "DIR")]
        admindir: Option<PathBuf>,
        /// Where the hook keeps the time of its last run
        #[arg(long, value_name = "FILE", default_value = "/var/lib/bulwark/ima-dpkg.stamp")]
        stamp: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Show the Vault: version, seal, custody, and what needs attention
    #[command(long_about = "\
Show the Vault bulwarkd manages: implementation and version, whether it is
initialised and sealed, the custody of its unseal keys, and what needs the
operator's attention (shares to give, keys not yet shown).

Example:
  bulwarkctl vault status")]
    Status,
    /// Show the Vault's keys and a root token once, then forget them
    #[command(long_about = "\
Show the Vault's keys (the Shamir shares under manual custody, recovery keys
otherwise) and a root token, once; then bulwarkd forgets the keys. Store each
key with a different person. An interrupted run shows the same keys again.
With revoke_root = true in the profile the root token is revoked instead.

Example:
  bulwarkctl vault init")]
    Init,
    /// Give unseal shares (typed without echo, or one per line on stdin)
    #[command(long_about = "\
Give unseal shares until the Vault is unsealed. On a terminal each share is
read without echo; otherwise one share per line from stdin. Progress is shown
after each; a share given twice in a round is reported and ignored.

Example:
  bulwarkctl vault unseal")]
    Unseal,
    /// Move a manual (Shamir) Vault to the static seal, with its shares
    #[command(long_about = "\
Move a manual (Shamir) Vault to custody = \"static\": apply a profile with
custody = \"static\" first (the Vault restarts sealed, migrating), then give
the shares here. Afterwards the Vault unseals itself and the shares are its
recovery keys.

Example:
  bulwarkctl apply profile.toml && bulwarkctl vault migrate --to static")]
    Migrate {
        /// The custody to move to
        #[arg(long, value_name = "CUSTODY", value_parser = ["static"])]
        to: String,
    },
    /// Take a raft snapshot now (and upload it with [vault.snapshots] s3)
    #[command(long_about = "\
Take a raft snapshot now: written atomically (0600) to the snapshot directory
with its SHA-256, uploaded to the bucket and read back when the profile has
s3, and retention applied. Exit code 1 when the upload failed (the snapshot
is kept locally and the upload retried).

Example:
  bulwarkctl vault snapshot && bulwarkctl vault snapshots")]
    Snapshot,
    /// List the snapshots: local and off-site, with age, size and digest
    #[command(long_about = "\
List the Vault's snapshots, local (each with whether it is off-site yet) and
in the bucket, with age, size and SHA-256, and the last restore test.

Example:
  bulwarkctl vault snapshots")]
    Snapshots,
    /// Replace the Vault's data with a snapshot (asks first; --yes)
    #[command(long_about = "\
Replace all of the Vault's data with SNAPSHOT (a name from `bulwarkctl vault
snapshots`); the off-site copy is used when there is one, after its SHA-256
is checked. Needs a token that may update sys/storage/raft/snapshot-force
(a root token): typed without echo, or the first line of stdin. Asks for
confirmation on a terminal; --yes skips it (and is required without one).

Example:
  bulwarkctl vault restore vault-20261201T190500.123Z.snap --yes < token")]
    Restore {
        /// The snapshot's name
        snapshot: String,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
    /// Restore the latest snapshot into a throw-away Vault and check its canary
    #[command(long_about = "\
Restore the latest snapshot (the off-site copy when there is one) into a
throw-away Vault of the same binary on a free loopback port, read back the
canary written before the snapshot and compare it; then remove everything.
Under static and transit custody it needs nothing and also runs on its own
every restore_test_every. A manual (Shamir) snapshot opens only with the
original shares: give them with --shares (typed without echo, an empty line
to finish, or one per line on stdin); they are used in memory and never
stored. Exit code 1 when the test fails.

Examples:
  bulwarkctl vault restore-test
  bulwarkctl vault restore-test --shares        # manual custody")]
    RestoreTest {
        /// Read the original unseal shares (manual custody)
        #[arg(long)]
        shares: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the last audit events, oldest first
    #[command(long_about = "\
Print the last audit events, oldest first, one per line:
time, event id, severity, uid, result and message.

Example:
  bulwarkctl audit tail -n 50")]
    Tail {
        /// Number of events
        #[arg(short = 'n', value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..=MAX_TAIL))]
        n: u64,
    },

    /// Check the audit log's hash chain (exit 1 when broken)
    #[command(long_about = "\
Check the audit log's hash chain from the first line to audit.head: every
line's sequence, its link to the line before and its HMAC under this host's
integrity key. Exits 1 and names the first break when the chain is broken.

Example:
  bulwarkctl audit verify")]
    Verify,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bulwarkctl").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn apply_takes_its_flags_and_the_globals_anywhere() {
        let cli = parse(&[
            "apply",
            "p.toml",
            "--confirm",
            "90",
            "--force",
            "--json",
            "--socket",
            "/tmp/s",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.socket, PathBuf::from("/tmp/s"));
        let Some(Command::Apply(a)) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(a.file, PathBuf::from("p.toml"));
        assert_eq!(a.confirm, Some(90));
        assert!(a.force && !a.dry_run);
    }

    #[test]
    fn confirm_window_must_be_positive_and_excludes_dry_run() {
        assert_eq!(
            parse(&["apply", "p.toml", "--confirm", "0"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        let err = parse(&["apply", "p.toml", "--confirm", "5", "--dry-run"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn fleet_flags_parse() {
        let cli = parse(&["apply", "-", "--source", "web.toml", "--wait", "--confirm", "60"]).unwrap();
        let Some(Command::Apply(a)) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(a.file, PathBuf::from("-"));
        assert_eq!(a.source.as_deref(), Some("web.toml"));
        assert_eq!(a.wait, Some(60), "--wait alone waits the default");
        let Some(Command::Apply(a)) = parse(&["apply", "--wait=5", "p.toml"]).unwrap().command else {
            panic!("not apply")
        };
        assert_eq!((a.wait, a.file), (Some(5), PathBuf::from("p.toml")));
        // A bare --wait never swallows the file name that follows it.
        let Some(Command::Apply(a)) = parse(&["apply", "--wait", "p.toml"]).unwrap().command else {
            panic!("not apply")
        };
        assert_eq!((a.wait, a.file), (Some(60), PathBuf::from("p.toml")));
        for bad in [&["apply", "p", "--wait=0"][..], &["apply", "p", "--wait=3601"]] {
            assert_eq!(parse(bad).unwrap_err().kind(), ErrorKind::ValueValidation, "{bad:?}");
        }
        let err = parse(&["apply", "p", "--wait", "--dry-run"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let Some(Command::Confirm(c)) = parse(&["confirm", "--generation", "7"]).unwrap().command else {
            panic!("not confirm")
        };
        assert_eq!(c.generation, Some(7));
        let Some(Command::Validate(v)) = parse(&["validate", "-", "--source", "x.toml"]).unwrap().command else {
            panic!("not validate")
        };
        assert_eq!((v.file, v.source.as_deref()), (PathBuf::from("-"), Some("x.toml")));
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["frobnicate"][..],
            &["apply"],
            &["rollback", "x"],
            &["audit"],
            &["completions", "cmd.exe"],
            &["confirm", "--generation", "x"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn defaults() {
        let cli = parse(&["audit", "tail"]).unwrap();
        assert!(!cli.json && !cli.verbose);
        assert!(matches!(
            cli.command,
            Some(Command::Audit {
                command: AuditCommand::Tail { n: 20 }
            })
        ));
        // The socket default comes from BULWARK_SOCKET when set, so only
        // check it when the test environment leaves it alone.
        if std::env::var_os("BULWARK_SOCKET").is_none() {
            assert_eq!(cli.socket, PathBuf::from(DEFAULT_SOCKET));
        }
        let cli = parse(&["rollback"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Rollback { generation: None })));
        let cli = parse(&["man"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Man { dir }) if dir == Path::new(".")));
        let cli = parse(&["generations"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Generations { command: None })));
    }

    #[test]
    fn short_flags() {
        let cli = parse(&["-v", "audit", "tail", "-n", "5"]).unwrap();
        assert!(cli.verbose);
        assert!(matches!(
            cli.command,
            Some(Command::Audit {
                command: AuditCommand::Tail { n: 5 }
            })
        ));
        let cli = parse(&["rollback", "7"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Rollback { generation: Some(7) })));
    }

    #[test]
    fn health_selection_repeats() {
        let cli = parse(&[
            "health", "--check", "firewall", "--check", "k3s", "--ignore", "k3s_bind",
        ])
        .unwrap();
        let Some(Command::Health(h)) = cli.command else {
            panic!("not health")
        };
        assert_eq!(h.check, ["firewall", "k3s"]);
        assert_eq!(h.ignore, ["k3s_bind"]);
    }

    #[test]
    fn version_is_a_flag_of_ours_so_json_can_ask_for_it() {
        let cli = parse(&["--version", "--json"]).unwrap();
        assert!(cli.version && cli.json && cli.command.is_none());
        assert!(parse(&["-V"]).unwrap().version);
    }

    #[test]
    fn generations_show_and_diff_take_numbers() {
        let cli = parse(&["generations", "diff", "3", "4"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Generations {
                command: Some(GenerationsCommand::Diff { a: 3, b: 4 })
            })
        ));
        assert_eq!(
            parse(&["generations", "show", "x"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn every_subcommand_teaches_with_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let name = format!("{path} {}", sub.get_name());
                if sub.has_subcommands() {
                    walk(sub, &name, missing);
                    continue;
                }
                let long = sub.get_long_about().map(ToString::to_string).unwrap_or_default();
                if !long.contains("Example") || !long.contains("  bulwarkctl ") {
                    missing.push(name);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "bulwarkctl", &mut missing);
        // `generations list` is the plain `generations` its parent shows.
        missing.retain(|m| m != "bulwarkctl generations list");
        assert!(missing.is_empty(), "no example in the help of: {missing:?}");
    }

    #[test]
    fn evidence_reads_dates_in_utc_and_needs_out() {
        let cli = parse(&[
            "evidence",
            "--since",
            "2026-01-01",
            "--until",
            "2026-04-01T12:00:00Z",
            "--out",
            "q1",
        ])
        .unwrap();
        let Some(Command::Evidence(a)) = cli.command else {
            panic!("not evidence: {:?}", cli.command)
        };
        assert_eq!(
            (a.since.as_deref(), a.until.as_deref(), a.out),
            (Some("2026-01-01"), Some("2026-04-01T12:00:00Z"), PathBuf::from("q1"))
        );
        for bad in ["2026-13-01", "yesterday", "2026-01-01T00:00:00+02:00"] {
            let err = parse(&["evidence", "--since", bad, "--out", "q1"]).unwrap_err();
            assert!(err.to_string().contains("--since"), "{bad}: {err}");
            assert_eq!(err.exit_code(), 2);
        }
        assert!(parse(&["evidence"]).is_err(), "--out is required");
    }
}
