//! Walk the trees a policy appraises.
//!
//! Symlinks are never followed. A directory on another filesystem is
//! looked at with `statfs(2)` once per device; a filesystem the policy
//! never appraises (`dont_appraise fsmagic=…`, see
//! [`Policy::skipped_magics`]) is not entered, and neither is a
//! `scan_skip` directory.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bulwark_model::ima::appraise::{FileFacts, Verdict};
use bulwark_model::ima::grammar::Policy;

/// A file the policy appraises.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where the file is, to open it.
    pub path: PathBuf,
    /// The path as the host sees it (under `root`), as the policy judged it.
    pub host_path: String,
    pub verdict: Verdict,
    pub size: u64,
}

/// What a walk met.
#[derive(Debug, Clone, Default)]
pub struct WalkStats {
    /// Regular files looked at.
    pub files: u64,
    pub dirs: u64,
    /// Mount points and directories not entered, with why.
    pub skipped: Vec<String>,
    /// Directories that could not be listed.
    pub errors: Vec<String>,
}

/// Something the walk reports as it goes.
#[derive(Debug)]
pub enum Item {
    Candidate(Candidate),
    /// Regular files looked at so far (every 4096).
    Progress(u64),
}

/// Filesystem facts per device: magic and type name.
struct Filesystems {
    by_dev: HashMap<u64, (u64, Option<String>)>,
    names: HashMap<u64, String>,
}

impl Filesystems {
    fn new() -> Filesystems {
        // /proc/self/mountinfo: "… MAJ:MIN … - FSTYPE SOURCE OPTIONS".
        let mut names = HashMap::new();
        if let Ok(text) = fs::read_to_string("/proc/self/mountinfo") {
            for line in text.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                let (Some(devno), Some(dash)) = (fields.get(2), fields.iter().position(|f| *f == "-")) else {
                    continue;
                };
                let (Some((maj, min)), Some(fstype)) = (devno.split_once(':'), fields.get(dash + 1)) else {
                    continue;
                };
                if let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) {
                    let dev = nix::sys::stat::makedev(maj, min);
                    let name = fstype.split('.').next().unwrap_or(fstype);
                    names.insert(dev, name.to_owned());
                }
            }
        }
        Filesystems {
            by_dev: HashMap::new(),
            names,
        }
    }

    fn of(&mut self, path: &Path, dev: u64) -> Option<(u64, Option<String>)> {
        if let Some(f) = self.by_dev.get(&dev) {
            return Some(f.clone());
        }
        let magic = nix::sys::statfs::statfs(path).ok()?.filesystem_type().0 as u64;
        let entry = (magic, self.names.get(&dev).cloned());
        self.by_dev.insert(dev, entry.clone());
        Some(entry)
    }
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// The host path of `path` when the host's `/` is at `root`.
pub fn host_path(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// Walk `roots` (absolute paths: files or directories) and report every
/// file `policy` appraises. The host's `/` is at `root` (`/` but in
/// tests); `skip` lists host directories not to enter.
pub fn walk(
    roots: &[PathBuf],
    root: &Path,
    policy: &Policy,
    skip: &[String],
    mut report: impl FnMut(Item),
) -> WalkStats {
    let skipped_magics: BTreeSet<u64> = policy.skipped_magics();
    let needs_elf = policy.needs_elf();
    let mut fss = Filesystems::new();
    let mut stats = WalkStats::default();
    let skip: BTreeSet<&str> = skip.iter().map(|s| s.trim_end_matches('/')).collect();
    let mut stack: Vec<PathBuf> = Vec::new();
    // Roots are judged like any entry: a file root is one file.
    let mut pending: Vec<(PathBuf, Option<u64>)> = roots.iter().map(|r| (r.clone(), None)).collect();
    loop {
        let (path, parent_dev) = match pending.pop() {
            Some(p) => p,
            None => match stack.pop() {
                Some(dir) => {
                    stats.dirs += 1;
                    let dev = fs::symlink_metadata(&dir).map(|m| m.dev()).ok();
                    match fs::read_dir(&dir) {
                        Ok(entries) => {
                            for e in entries.flatten() {
                                pending.push((e.path(), dev));
                            }
                        }
                        Err(e) => stats.errors.push(format!("{}: {e}", dir.display())),
                    }
                    continue;
                }
                None => break,
            },
        };
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let text = host_path(root, &path);
        if meta.is_dir() {
            if skip.contains(text.as_str()) {
                stats.skipped.push(format!("{text} (scan_skip)"));
                continue;
            }
            if parent_dev != Some(meta.dev()) {
                match fss.of(&path, meta.dev()) {
                    Some((magic, name)) if skipped_magics.contains(&magic) => {
                        let name = name.unwrap_or_else(|| format!("{magic:#x}"));
                        stats.skipped.push(format!("{text} ({name}: not appraised)"));
                        continue;
                    }
                    _ => {}
                }
            }
            stack.push(path);
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        stats.files += 1;
        if stats.files % 4096 == 0 {
            report(Item::Progress(stats.files));
        }
        let Some((magic, name)) = fss.of(&path, meta.dev()) else {
            continue;
        };
        let facts = FileFacts {
            path: &text,
            fsmagic: magic,
            fsname: name.as_deref(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode(),
            elf: needs_elf && meta.mode() & 0o111 == 0 && is_elf(&path),
        };
        if let Some(verdict) = policy.verdict(&facts) {
            report(Item::Candidate(Candidate {
                host_path: text.clone(),
                path: path.clone(),
                verdict,
                size: meta.size(),
            }));
        }
    }
    stats
}
