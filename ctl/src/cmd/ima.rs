//! `bulwarkctl ima`: scan, label and sign files for the policy Bulwark
//! wrote, and the dpkg hook. The file work is bulwark-imalabel's, the same
//! code bulwarkd's scan runs; writing labels happens here, as root, because
//! bulwarkd holds no CAP_SYS_ADMIN.

use std::collections::BTreeSet;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use bulwark_imalabel::walk::{walk, Item};
use bulwark_imalabel::{label_file, scan, LabelOutcome, Progress, Signer, Verifier};
use bulwark_model::api::{ApplyRequest, ApplyResponse};
use bulwark_model::ima::api::{ImaState, LabelRun, ScanReport, MODULE};
use bulwark_model::ima::grammar::{parse_policy, Policy, DEBIAN_6_1};
use bulwark_model::ima::templates::{header_records, POLICY_HEADER};

use super::{emit, emit_json, Ctx};
use crate::cli::{ImaCommand, ImaPolicyArgs};
use crate::error::{self, FAILED, OK};
use crate::output;

/// Files a refusal lists before "and N more" (as bulwarkd's).
const REFUSAL_LIST: usize = 10;
/// Failures a label run reports to bulwarkd.
const REPORTED_FAILURES: usize = 20;

pub fn run(ctx: &Ctx<'_>, out: &mut dyn Write, command: &ImaCommand) -> anyhow::Result<u8> {
    match command {
        ImaCommand::Scan { policy, paths } => scan_cmd(ctx, out, policy, paths),
        ImaCommand::Label { policy, all, paths } => label_cmd(ctx, out, policy, *all, paths, None),
        ImaCommand::Sign {
            policy,
            key,
            all,
            paths,
        } => label_cmd(ctx, out, policy, *all, paths, Some(key)),
        ImaCommand::Status => status(ctx, out),
        ImaCommand::Policy { file } => policy(out, file),
        ImaCommand::DpkgHook {
            policy,
            admindir,
            stamp,
        } => Ok(dpkg_hook(ctx, out, policy, admindir.as_deref(), stamp)),
    }
}

/// The policy in force, what its header records, and the verifier.
struct Loaded {
    /// The host's / (`--root`).
    root: PathBuf,
    policy: Policy,
    skip: Vec<String>,
    verifier: Option<Verifier>,
    cert: Option<PathBuf>,
}

fn load(args: &ImaPolicyArgs) -> anyhow::Result<Loaded> {
    let path = &args.policy;
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the IMA policy {}: apply a profile with an [ima] section first, or give --policy",
            path.display()
        )
    })?;
    let policy = parse_policy(&text, &DEBIAN_6_1).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "{} is not a policy the kernel accepts:\n  {}",
            path.display(),
            lines.join("\n  ")
        )
    })?;
    let (skip, recorded_cert) = header_records(&text);
    let cert = args.cert.clone().or(recorded_cert.map(PathBuf::from));
    let verifier = match &cert {
        Some(c) => Some(Verifier::from_cert_file(c).with_context(|| format!("signing certificate {}", c.display()))?),
        None => None,
    };
    Ok(Loaded {
        root: fs::canonicalize(&args.root).with_context(|| format!("cannot find {}", args.root.display()))?,
        policy,
        skip,
        verifier,
        cert,
    })
}

/// The trees to walk: PATHs (inside `root` when it is not `/`), or all of `root`.
fn roots(root: &Path, all: bool, paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let root = fs::canonicalize(root).with_context(|| format!("cannot find {}", root.display()))?;
    if all || paths.is_empty() {
        return Ok(vec![root]);
    }
    paths
        .iter()
        .map(|p| {
            let inside = if root == Path::new("/") {
                p.clone()
            } else {
                root.join(p.strip_prefix("/").unwrap_or(p))
            };
            fs::canonicalize(&inside).with_context(|| format!("cannot find {}", inside.display()))
        })
        .collect()
}

/// One line on a terminal, rewritten in place; nothing when stderr is not one.
struct Meter {
    on: bool,
    last: Instant,
}

impl Meter {
    fn new() -> Meter {
        Meter {
            on: std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn show(&mut self, text: &str) {
        if self.on && self.last.elapsed().as_millis() >= 200 {
            self.last = Instant::now();
            let _ = write!(std::io::stderr(), "\r\x1b[K{text}");
        }
    }

    fn done(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

fn scan_cmd(ctx: &Ctx<'_>, out: &mut dyn Write, args: &ImaPolicyArgs, paths: &[PathBuf]) -> anyhow::Result<u8> {
    let l = load(args)?;
    let roots = roots(&args.root, false, paths)?;
    let mut meter = Meter::new();
    let report = scan(
        &roots,
        &l.root,
        &l.policy,
        &l.skip,
        l.verifier.as_ref(),
        None,
        |p: &Progress| {
            meter.show(&format!(
                "scanned {} files: {} appraised, {} would be denied",
                p.files_seen, p.appraised, p.failing
            ));
        },
    );
    meter.done();
    if ctx.json {
        emit_json(out, &report)?;
    } else {
        emit(out, &render_scan(&report))?;
    }
    Ok(if report.counts.failing() == 0 { OK } else { FAILED })
}

pub fn render_scan(r: &ScanReport) -> String {
    let mut t = output::Table::new(&[("STATE", output::Align::Left), ("PATH", output::Align::Left)]);
    for f in &r.files {
        t.row(vec![
            f.state.map_or("?", |s| s.as_str()).to_owned(),
            format!("{} - {}", f.path, f.detail),
        ]);
    }
    let mut text = if r.files.is_empty() {
        String::new()
    } else {
        t.render(true)
    };
    for s in &r.skipped {
        text.push_str(&format!("not entered: {s}\n"));
    }
    for e in &r.errors {
        text.push_str(&format!("error: {e}\n"));
    }
    let c = &r.counts;
    text.push_str(&format!(
        "{} appraised: {} ok, {} signed, {} missing, {} stale, {} unreadable ({:.1} s)\n",
        c.total(),
        c.ok,
        c.signed,
        c.missing,
        c.stale,
        c.unreadable,
        r.duration_ms as f64 / 1000.0
    ));
    if c.failing() > 0 {
        text.push_str(&format!("{} file(s) would be denied in enforce mode\n", c.failing()));
    }
    text
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Label (or sign, with `key`) every appraised file under `roots`.
fn label_roots(l: &Loaded, roots: &[PathBuf], signer: Option<&Signer>, meter: &mut Meter) -> LabelRun {
    let t0 = Instant::now();
    let mut run = LabelRun {
        source: if signer.is_some() { "sign" } else { "bulwarkctl" }.to_owned(),
        ..LabelRun::default()
    };
    walk(roots, &l.root, &l.policy, &l.skip, |item| match item {
        Item::Progress(n) => meter.show(&format!(
            "looked at {n} files: {} labelled, {} current, {} failed",
            run.labelled, run.current, run.failed
        )),
        Item::Candidate(c) => match label_file(&c.path, c.verdict.signature, signer, l.verifier.as_ref()) {
            LabelOutcome::Labelled => run.labelled += 1,
            LabelOutcome::Current => run.current += 1,
            LabelOutcome::Failed(why) => {
                run.failed += 1;
                if run.failures.len() < REPORTED_FAILURES {
                    run.failures.push(format!("{}: {why}", c.host_path));
                }
            }
        },
    });
    meter.done();
    run.duration_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    run
}

fn require_root() -> anyhow::Result<()> {
    if !euid_is_root() {
        bail!("writing security.ima needs root (CAP_SYS_ADMIN): run with sudo");
    }
    Ok(())
}

/// The effective uid is 0 (from /proc: no libc call needed).
fn euid_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Tell bulwarkd about a label run (the audit event); say so when it cannot hear.
fn report_run(ctx: &Ctx<'_>, run: &LabelRun) {
    let sent = ctx.client().map_err(anyhow::Error::from).and_then(|c| {
        c.post("/v1/modules/ima/labelled", Some(run))
            .map_err(anyhow::Error::from)
    });
    if let Err(e) = sent {
        error::warn(&format!("this label run is not in the audit log: {e:#}"));
    }
}

fn label_cmd(
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
    args: &ImaPolicyArgs,
    all: bool,
    paths: &[PathBuf],
    key: Option<&PathBuf>,
) -> anyhow::Result<u8> {
    let l = load(args)?;
    require_root()?;
    let signer = match key {
        Some(k) => Some(Signer::load(k, l.cert.as_deref()).with_context(|| format!("signing key {}", k.display()))?),
        None => None,
    };
    let roots = roots(&args.root, all, paths)?;
    let mut meter = Meter::new();
    let run = label_roots(&l, &roots, signer.as_ref(), &mut meter);
    report_run(ctx, &run);
    if ctx.json {
        emit_json(out, &run)?;
    } else {
        let mut text = String::new();
        for f in &run.failures {
            text.push_str(&format!("failed: {f}\n"));
        }
        let verb = if signer.is_some() { "signed" } else { "labelled" };
        text.push_str(&format!(
            "{verb} {}, already current {}, failed {} ({:.1} s)\n",
            run.labelled,
            run.current,
            run.failed,
            run.duration_ms as f64 / 1000.0
        ));
        emit(out, &text)?;
    }
    Ok(if run.failed == 0 { OK } else { FAILED })
}

fn policy(out: &mut dyn Write, file: &Path) -> anyhow::Result<u8> {
    let name = file.display().to_string();
    let bytes = fs::read(file).with_context(|| format!("cannot read profile {name}"))?;
    let profile = bulwark_model::Profile::parse_bytes(&name, &bytes).map_err(|v| crate::error::InvalidProfile {
        file: v.file,
        errors: v.errors,
    })?;
    match profile.ima.as_ref().map(|i| (i.mode, i.policy())) {
        None => bail!("{name} has no [ima] section"),
        Some((mode, None)) => bail!("{name}: mode = \"{}\" writes no policy", mode.as_str()),
        Some((_, Some(text))) => emit(out, &text)?,
    }
    Ok(OK)
}

fn status(ctx: &Ctx<'_>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let answer = ctx.client()?.get("/v1/modules/ima/state")?;
    if ctx.json {
        emit(out, &answer.pretty())?;
        return Ok(OK);
    }
    let s: ImaState = answer.decode()?;
    let scan = s.last_scan.map_or("none yet".to_owned(), |l| {
        format!(
            "{} appraised, {} would be denied ({})",
            l.counts.total(),
            l.counts.failing(),
            output::rfc3339(l.finished)
        )
    });
    let text = output::key_values(&[
        ("mode wanted", s.mode_wanted.clone()),
        ("in force", format!("ima_appraise={}", s.mode_in_force)),
        ("policy", s.policy.clone()),
        (
            "to do",
            if s.pending.is_empty() {
                "nothing".to_owned()
            } else {
                s.pending.join(", then ")
            },
        ),
        ("measurements", s.measurements.map_or("-".to_owned(), |m| m.to_string())),
        ("violations", s.violations.map_or("-".to_owned(), |m| m.to_string())),
        ("last scan", scan),
    ]);
    emit(out, &text)?;
    Ok(OK)
}

/// Packages whose file list changed since `since` (ms), and their files.
fn changed_packages(admindir: &Path, since: u128) -> anyhow::Result<(Vec<String>, Vec<PathBuf>)> {
    let info = admindir.join("info");
    let mut packages = Vec::new();
    let mut files = BTreeSet::new();
    for entry in fs::read_dir(&info).with_context(|| format!("cannot list {}", info.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pkg) = name.strip_suffix(".list") else {
            continue;
        };
        let modified = entry
            .metadata()?
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if modified < since {
            continue;
        }
        packages.push(pkg.to_owned());
        // Only the package's regular files: a directory in the list ("/.",
        // "/usr/bin") must never become a tree to walk.
        for line in fs::read_to_string(entry.path())?.lines() {
            let path = PathBuf::from(line);
            if line.starts_with('/') && fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file()) {
                files.insert(path);
            }
        }
    }
    packages.sort();
    Ok((packages, files.into_iter().collect()))
}

/// The dpkg hook: never fails the dpkg run (exit 0), says what went wrong.
fn dpkg_hook(ctx: &Ctx<'_>, out: &mut dyn Write, args: &ImaPolicyArgs, admindir: Option<&Path>, stamp: &Path) -> u8 {
    match fs::read_to_string(&args.policy) {
        Ok(t) if t.starts_with(POLICY_HEADER) => {}
        // IMA is not Bulwark's here: nothing to keep labelled.
        _ => return OK,
    }
    let started = now_ms();
    let admindir = admindir
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("DPKG_ADMINDIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/dpkg"));
    // First run: packages changed since the policy was written.
    let since = fs::read_to_string(stamp)
        .ok()
        .and_then(|s| s.trim().parse::<u128>().ok())
        .or_else(|| {
            fs::metadata(&args.policy)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis())
        })
        .unwrap_or(0);
    let result = (|| -> anyhow::Result<LabelRun> {
        let l = load(args)?;
        let (packages, files) = changed_packages(&admindir, since)?;
        let mut run = label_roots(
            &l,
            &files,
            None,
            &mut Meter {
                on: false,
                last: Instant::now(),
            },
        );
        run.source = "dpkg".to_owned();
        run.packages = packages;
        Ok(run)
    })();
    match result {
        Ok(run) => {
            if !run.packages.is_empty() {
                report_run(ctx, &run);
                let _ = emit(
                    out,
                    &format!(
                        "bulwark: IMA labels for {}: {} written, {} current, {} failed\n",
                        run.packages.join(" "),
                        run.labelled,
                        run.current,
                        run.failed
                    ),
                );
                for f in &run.failures {
                    error::warn(&format!("IMA label failed: {f}"));
                }
            }
            if let Err(e) = fs::write(stamp, format!("{started}\n")) {
                error::warn(&format!(
                    "cannot record the dpkg hook's run in {}: {e}",
                    stamp.display()
                ));
            }
        }
        Err(e) => error::warn(&format!("IMA labels after dpkg were not written: {e:#}")),
    }
    OK
}

/// Whether [`enforce_preflight`] could have work for this profile text, judged
/// without parsing it: only as root, without `--force`, and only when the
/// text could name an `ima` table (TOML spells a key either literally or
/// with `\u` / `\U` escapes).
pub fn preflight_may_run(text: &str, force: bool) -> bool {
    !force && euid_is_root() && ["ima", "\\u", "\\U"].iter().any(|s| text.contains(s))
}

/// The whole-host half of the enforce guard. bulwarkd scans what its
/// sandbox shows it (ProtectKernelModules hides /usr/lib/modules,
/// ProtectHome /root and /home), so `bulwarkctl apply` running as root
/// scans the whole host itself before an apply that bulwarkd's plan says
/// moves to enforce, and refuses while files would be denied (`--force`
/// skips both halves).
pub fn enforce_preflight(ctx: &Ctx<'_>, profile: &bulwark_model::Profile, req: &ApplyRequest) -> anyhow::Result<()> {
    let Some(ima) = &profile.ima else { return Ok(()) };
    if ima.mode != bulwark_model::profile::ImaMode::Enforce || req.force || !euid_is_root() {
        return Ok(());
    }
    let Some(text) = ima.policy() else { return Ok(()) };
    let mut dry = req.clone();
    dry.dry_run = true;
    // A refusal by bulwarkd's own scan is the answer as it stands.
    let plan: ApplyResponse = ctx.client()?.post("/v1/apply", Some(&dry))?.decode()?;
    let moving = plan
        .plan
        .changes
        .iter()
        .any(|c| c.module == MODULE && c.what.starts_with("moving to enforce"));
    if !moving {
        return Ok(());
    }
    let policy = parse_policy(&text, &DEBIAN_6_1)
        .map_err(|e| anyhow::anyhow!("the profile's IMA policy does not parse: {e:?}"))?;
    let verifier = if ima.signatures {
        let cert = Path::new(&ima.signing_cert);
        Some(Verifier::from_cert_file(cert).with_context(|| format!("signing certificate {}", cert.display()))?)
    } else {
        None
    };
    // The host as bulwarkd sees it: its --root (a temporary one in tests).
    let status: bulwark_model::api::Status = ctx.client()?.get("/v1/status")?.decode()?;
    let root = PathBuf::from(if status.root.is_empty() {
        "/"
    } else {
        status.root.as_str()
    });
    let mut meter = Meter::new();
    let report = scan(
        std::slice::from_ref(&root),
        &root,
        &policy,
        &ima.scan_skip(),
        verifier.as_ref(),
        Some(REFUSAL_LIST),
        |p: &Progress| {
            meter.show(&format!(
                "pre-flight scan for enforce: {} files, {} would be denied",
                p.files_seen, p.failing
            ))
        },
    );
    meter.done();
    let failing = report.counts.failing();
    if failing == 0 {
        return Ok(());
    }
    let mut list: Vec<String> = report
        .files
        .iter()
        .map(|f| format!("{} ({}: {})", f.path, f.state.map_or("?", |s| s.as_str()), f.detail))
        .collect();
    if failing > list.len() as u64 {
        list.push(format!("and {} more", failing - list.len() as u64));
    }
    bail!(
        "moving to IMA enforce refused by bulwarkctl's scan of the whole host: {failing} file(s) the policy appraises would be denied:\n  {}\nlabel them (`bulwarkctl ima label --all`, or the paths) and apply again, or apply with --force",
        list.join("\n  ")
    )
}
