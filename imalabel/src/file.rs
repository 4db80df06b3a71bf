//! One file: judge its label against its content, and label it.
//!
//! Both work on a single descriptor opened without following symlinks, so
//! the digest that is compared or written is the digest of the file whose
//! label is read or set, even if the path is replaced meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use bulwark_model::ima::api::FileState;
use nix::fcntl::OFlag;
use xattr::FileExt;

use crate::label::{HashAlgo, Label, XATTR};
use crate::sign::{Signer, Verifier};

const CHUNK: usize = 256 * 1024;

/// A file's state and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub state: FileState,
    pub detail: String,
    /// Bytes hashed (0 when the content was not read).
    pub bytes: u64,
}

/// What labelling one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOutcome {
    Labelled,
    /// Its label was already current.
    Current,
    Failed(String),
}

fn open(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() || ft.is_fifo() {
        return Err(std::io::Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(f)
}

fn digest(f: &mut File, algo: HashAlgo, bytes: &mut u64) -> std::io::Result<Vec<u8>> {
    let mut h = algo.hasher();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                *bytes += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finish())
}

fn read_label(f: &File) -> std::io::Result<Option<Vec<u8>>> {
    f.get_xattr(XATTR)
}

/// Judge a file's label: `need_signature` when the deciding rule has
/// `appraise_type=imasig`; signatures are checked with `verifier` when one
/// is given.
pub fn judge(path: &Path, need_signature: bool, verifier: Option<&Verifier>) -> Judged {
    match open(path) {
        Ok(mut f) => judge_open(&mut f, need_signature, verifier).0,
        Err(e) => Judged {
            state: FileState::Unreadable,
            detail: format!("cannot open: {e}"),
            bytes: 0,
        },
    }
}

/// The judgement, and the file's SHA-256 when it was computed.
fn judge_open(f: &mut File, need_signature: bool, verifier: Option<&Verifier>) -> (Judged, Option<Vec<u8>>) {
    let mut bytes = 0;
    let j = |state, detail: String, bytes| Judged { state, detail, bytes };
    let raw = match read_label(f) {
        Ok(r) => r,
        Err(e) => return (j(FileState::Unreadable, format!("cannot read {XATTR}: {e}"), 0), None),
    };
    let Some(raw) = raw else {
        return (j(FileState::Missing, format!("no {XATTR}"), 0), None);
    };
    match Label::parse(&raw) {
        Label::Digest { .. } if need_signature => (
            j(
                FileState::Missing,
                "a hash label where the policy requires a signature".to_owned(),
                0,
            ),
            None,
        ),
        Label::Digest { algo, digest: want } => match digest(f, algo, &mut bytes) {
            Ok(have) if have == want => {
                let sha = (algo == HashAlgo::Sha256).then_some(have);
                (j(FileState::Ok, format!("{} hash", algo.name()), bytes), sha)
            }
            Ok(have) => {
                let sha = (algo == HashAlgo::Sha256).then_some(have);
                (
                    j(
                        FileState::Stale,
                        format!("{} hash differs from the content", algo.name()),
                        bytes,
                    ),
                    sha,
                )
            }
            Err(e) => (j(FileState::Unreadable, format!("cannot read: {e}"), bytes), None),
        },
        Label::Signature { algo, keyid, signature } => {
            let have = match digest(f, algo, &mut bytes) {
                Ok(d) => d,
                Err(e) => return (j(FileState::Unreadable, format!("cannot read: {e}"), bytes), None),
            };
            let sha = (algo == HashAlgo::Sha256).then(|| have.clone());
            let judged = match verifier {
                None => j(
                    FileState::Signed,
                    format!("signature, key id {} (not verified here)", hex::encode(keyid)),
                    bytes,
                ),
                Some(v) if v.keyid != keyid => j(
                    FileState::Stale,
                    format!(
                        "signed by key id {}, not signing_cert's {}",
                        hex::encode(keyid),
                        hex::encode(v.keyid)
                    ),
                    bytes,
                ),
                Some(v) if v.verify(algo, &have, &signature) => j(
                    FileState::Signed,
                    format!("signature verified, key id {}", hex::encode(keyid)),
                    bytes,
                ),
                Some(_) => j(
                    FileState::Stale,
                    "signature does not match the content".to_owned(),
                    bytes,
                ),
            };
            (judged, sha)
        }
        Label::VeritySignature => (
            j(
                FileState::Signed,
                "fs-verity signature (not checked by Bulwark)".to_owned(),
                0,
            ),
            None,
        ),
        Label::Invalid { reason } => (j(FileState::Stale, format!("invalid {XATTR}: {reason}"), 0), None),
    }
}

/// Label a file unless its label is current: with a SHA-256 hash (the
/// bytes of `evmctl ima_hash -a sha256`), or with a signature when a
/// `signer` is given. A current signature is never replaced by a hash.
pub fn label_file(
    path: &Path,
    need_signature: bool,
    signer: Option<&Signer>,
    verifier: Option<&Verifier>,
) -> LabelOutcome {
    let mut f = match open(path) {
        Ok(f) => f,
        Err(e) => return LabelOutcome::Failed(format!("cannot open: {e}")),
    };
    let (judged, sha) = judge_open(&mut f, need_signature || signer.is_some(), verifier);
    let ours = |j: &Judged| j.state == FileState::Signed || (j.state == FileState::Ok && signer.is_none());
    if ours(&judged) {
        return LabelOutcome::Current;
    }
    if judged.state == FileState::Unreadable {
        return LabelOutcome::Failed(judged.detail);
    }
    if need_signature && signer.is_none() {
        return LabelOutcome::Failed("the policy requires a signature: use `bulwarkctl ima sign`".to_owned());
    }
    let sha = match sha {
        Some(s) => s,
        None => {
            use std::io::Seek as _;
            let mut n = 0;
            match f.rewind().and_then(|()| digest(&mut f, HashAlgo::Sha256, &mut n)) {
                Ok(d) => d,
                Err(e) => return LabelOutcome::Failed(format!("cannot read: {e}")),
            }
        }
    };
    let bytes = match signer {
        None => Label::digest_bytes(HashAlgo::Sha256, &sha),
        Some(s) => match s
            .sign(HashAlgo::Sha256, &sha)
            .map(|sig| Label::signature_bytes(HashAlgo::Sha256, s.keyid, &sig))
        {
            Ok(Some(b)) => b,
            Ok(None) => return LabelOutcome::Failed("signature too long".to_owned()),
            Err(e) => return LabelOutcome::Failed(e.to_string()),
        },
    };
    match f.set_xattr(XATTR, &bytes) {
        Ok(()) => LabelOutcome::Labelled,
        Err(e) if e.raw_os_error() == Some(nix::libc::EPERM) => LabelOutcome::Failed(format!(
            "cannot write {XATTR}: {e} (needs root with CAP_SYS_ADMIN; immutable file?)"
        )),
        Err(e) => LabelOutcome::Failed(format!("cannot write {XATTR}: {e}")),
    }
}
