//! Command-line interface: every flag, subcommand and help text.
//!
//! The help is the first manual an operator reads (and the source of the man
//! pages), so each command says what it does and, where it helps, shows an
//! example. README.md and docs/api.md describe the same behaviour.

use std::path::PathBuf;

use bulwark_model::api::DEFAULT_SOCKET;
use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

const ABOUT: &str = "Control bulwarkd, the Bulwark host hardening agent";

const LONG_ABOUT: &str = "\
Control bulwarkd, the Bulwark host hardening agent.

bulwarkctl talks to bulwarkd over its Unix socket. Reading state (status,
health, generations, peers, audit, evidence) needs membership in group
`bulwark`; changing it (apply, confirm, rollback, add-peer, remove-peer) needs
root or group `bulwark-admin`. `validate` works offline and needs no daemon.

A typical change:
  bulwarkctl validate /etc/bulwark/profile.toml
  bulwarkctl apply --dry-run /etc/bulwark/profile.toml
  bulwarkctl apply --confirm 120 /etc/bulwark/profile.toml
  bulwarkctl confirm";

/// A confirm window is for "did I just lock myself out?"; longer than a day
/// it only leaves a revert pending that nobody remembers.
const MAX_CONFIRM_SECS: u64 = 24 * 3600;
/// Enough for any terminal session; the daemon bounds its answer anyway.
const MAX_TAIL: u64 = 100_000;

const GLOBAL: &str = "Global options";

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  refused or failed (invalid profile, apply failed, permission denied,
     broken audit chain)
  2  usage error
  3  daemon unreachable
  health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN";

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(
    name = "bulwarkctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    propagate_version = true,
    max_term_width = 80
)]
pub struct Cli {
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
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a profile offline, exactly as bulwarkd would
    #[command(long_about = "\
Check a profile offline, exactly as bulwarkd would.

Reports every problem at once, one per line (file: path: reason), and exits 1
if there is any. No daemon is needed.

Example:
  bulwarkctl validate /etc/bulwark/profile.toml")]
    Validate {
        /// Profile to check (TOML)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },

    /// Validate a profile, show the plan and make it the new generation
    #[command(long_about = "\
Apply a profile: validate it, show the plan, and make it the new generation.

The profile is validated locally first, so errors look the same whether or not
the daemon is reachable. When run over SSH, bulwarkctl refuses a profile that
would drop the SSH connection it runs in, unless --force is given.

With --confirm SECS the change reverts to the previous generation after SECS
seconds unless `bulwarkctl confirm` is run in time: use it whenever a change
could cut you off.

Examples:
  bulwarkctl apply --dry-run profile.toml
  bulwarkctl apply --confirm 120 profile.toml && bulwarkctl confirm")]
    Apply(ApplyArgs),

    /// Keep the change made by `apply --confirm` before it reverts
    Confirm,

    /// Restore an earlier generation (by default the previous one)
    #[command(long_about = "\
Restore an earlier generation: its profile becomes the one in force again.

Without GEN, restores the generation before the current one. `bulwarkctl
generations` lists them.

Example:
  bulwarkctl rollback 3")]
    Rollback {
        /// Generation to restore
        #[arg(value_name = "GEN")]
        generation: Option<u64>,
    },

    /// List the generations bulwarkd keeps (`*` marks the one in force)
    Generations,

    /// Show what bulwarkd enforces and whether the host matches it
    Status,

    /// Run health checks (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    #[command(long_about = "\
Run the health checks and print each one with the overall level.

The exit code follows the monitoring plug-in convention, so this can be used
directly as a Nagios/Icinga check: 0 OK, 1 WARNING, 2 CRITICAL, and 3 UNKNOWN
when the daemon is unreachable or its answer cannot be read.")]
    Health,

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
    RemovePeer {
        /// Name of the peer (see `bulwarkctl peers`)
        #[arg(value_name = "NAME")]
        name: String,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// List VPN peers with address, expiry, last handshake and transfer
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
Print a shell completion script to stdout.

Example:
  bulwarkctl completions bash > /etc/bash_completion.d/bulwarkctl")]
    Completions {
        /// Shell to generate completions for
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },

    /// Write man pages (bulwarkctl.1 and one per subcommand) into DIR
    #[command(long_about = "\
Write man pages into DIR: bulwarkctl.1 and one page per subcommand, such as
bulwarkctl-apply.1.

Example:
  bulwarkctl man /usr/local/share/man/man1")]
    Man {
        /// Directory to write into (created if missing)
        #[arg(value_name = "DIR", default_value = ".")]
        dir: PathBuf,
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
    /// Remove the peer after this long (e.g. 30d, 12h); default: the profile's peer_expiry
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
pub struct ApplyArgs {
    /// Profile to apply (TOML)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

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
    Status,

    /// Print the IMA policy a profile renders, checked as bulwarkd checks it
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
run: problems are printed and reported to bulwarkd.")]
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
    Status,
    /// Show the Vault's keys and a root token once, then forget them
    #[command(long_about = "\
Show the Vault's keys (the Shamir shares under manual custody, recovery keys
otherwise) and a root token, once; then bulwarkd forgets the keys. Store each
key with a different person. An interrupted run shows the same keys again.
With revoke_root = true in the profile the root token is revoked instead.")]
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
        let Command::Apply(a) = cli.command else {
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
    fn usage_errors_exit_2() {
        for args in [
            &["frobnicate"][..],
            &["apply"],
            &["rollback", "x"],
            &["audit"],
            &["completions", "cmd.exe"],
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
            Command::Audit {
                command: AuditCommand::Tail { n: 20 }
            }
        ));
        // The socket default comes from BULWARK_SOCKET when set, so only
        // check it when the test environment leaves it alone.
        if std::env::var_os("BULWARK_SOCKET").is_none() {
            assert_eq!(cli.socket, PathBuf::from(DEFAULT_SOCKET));
        }
        let cli = parse(&["rollback"]).unwrap();
        assert!(matches!(cli.command, Command::Rollback { generation: None }));
        let cli = parse(&["man"]).unwrap();
        assert!(matches!(cli.command, Command::Man { dir } if dir == Path::new(".")));
    }

    #[test]
    fn short_flags() {
        let cli = parse(&["-v", "audit", "tail", "-n", "5"]).unwrap();
        assert!(cli.verbose);
        assert!(matches!(
            cli.command,
            Command::Audit {
                command: AuditCommand::Tail { n: 5 }
            }
        ));
        let cli = parse(&["rollback", "7"]).unwrap();
        assert!(matches!(cli.command, Command::Rollback { generation: Some(7) }));
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
        let Command::Evidence(a) = cli.command else {
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
