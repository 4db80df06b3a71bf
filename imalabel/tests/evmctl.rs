//! `security.ima` as bulwark-imalabel writes it, compared byte for byte
//! with what the real `evmctl` writes, on a loop-mounted ext4 image and on
//! tmpfs; signatures checked both ways with `evmctl ima_sign`/`ima_verify`.
//! Needs root (mount, security.* xattrs), evmctl (ima-evm-utils), openssl.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bulwark_imalabel::label::XATTR;
use bulwark_imalabel::{judge, label_file, LabelOutcome, Signer, Verifier};
use bulwark_model::ima::api::FileState;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root: they mount filesystems and write security.ima"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install ima-evm-utils, openssl)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mounted filesystem, unmounted (lazily) on drop.
struct Mount {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mount {
    fn ext4() -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("fs.img");
        fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let dir = tmp.path().join("mnt");
        fs::create_dir(&dir).unwrap();
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&dir));
        Mount { dir, _tmp: tmp }
    }

    fn tmpfs() -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        fs::create_dir(&dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "bulwark-test"])
            .arg(&dir));
        Mount { dir, _tmp: tmp }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn xattr_bytes(p: &Path) -> Vec<u8> {
    xattr::get(p, XATTR).unwrap().expect("a security.ima label")
}

/// Contents covering the edge cases of hashing: empty, one byte, a chunk
/// boundary and a file larger than one read.
fn contents() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"x".to_vec(),
        b"hello bulwark\n".to_vec(),
        vec![0xa5; 256 * 1024],
        (0..3_000_000u32).map(|i| (i % 251) as u8).collect(),
    ]
}

fn same_bytes_as_evmctl(m: &Mount) {
    for (i, data) in contents().iter().enumerate() {
        let ours = m.dir.join(format!("ours-{i}"));
        let theirs = m.dir.join(format!("theirs-{i}"));
        fs::write(&ours, data).unwrap();
        fs::write(&theirs, data).unwrap();
        assert_eq!(judge(&ours, false, None).state, FileState::Missing);
        assert_eq!(label_file(&ours, false, None, None), LabelOutcome::Labelled);
        run(Command::new("evmctl").args(["ima_hash", "-a", "sha256"]).arg(&theirs));
        let (a, b) = (xattr_bytes(&ours), xattr_bytes(&theirs));
        assert_eq!(a.len(), 34);
        assert_eq!(hex(&a), hex(&b), "file {i} ({} bytes)", data.len());
        // A current label is left alone; evmctl's label judges ok as well.
        assert_eq!(label_file(&ours, false, None, None), LabelOutcome::Current);
        assert_eq!(judge(&theirs, false, None).state, FileState::Ok);
        // Appending leaves a stale label, which labelling repairs.
        use std::io::Write as _;
        fs::OpenOptions::new()
            .append(true)
            .open(&ours)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert_eq!(judge(&ours, false, None).state, FileState::Stale);
        assert_eq!(label_file(&ours, false, None, None), LabelOutcome::Labelled);
        assert_eq!(judge(&ours, false, None).state, FileState::Ok);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn hash_labels_are_byte_identical_to_evmctl_on_ext4() {
    require_root();
    let m = Mount::ext4();
    assert_eq!(
        nix::sys::statfs::statfs(&m.dir).unwrap().filesystem_type().0 as u64,
        0xef53
    );
    same_bytes_as_evmctl(&m);
}

#[test]
fn hash_labels_are_byte_identical_to_evmctl_on_tmpfs() {
    require_root();
    let m = Mount::tmpfs();
    assert_eq!(
        nix::sys::statfs::statfs(&m.dir).unwrap().filesystem_type().0 as u64,
        0x01021994
    );
    same_bytes_as_evmctl(&m);
}

/// An RSA key and a self-signed DER certificate with the usual subject key id.
fn key_and_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.der");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=bulwark test ima",
            "-outform",
            "DER",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (key, cert)
}

#[test]
fn signatures_verify_with_evmctl_and_evmctls_verify_here() {
    require_root();
    let m = Mount::ext4();
    let (key, cert) = key_and_cert(&m.dir);
    let signer = Signer::load(&key, Some(&cert)).unwrap();
    let verifier = Verifier::from_cert_file(&cert).unwrap();
    assert_eq!(signer.keyid, verifier.keyid);

    let ours = m.dir.join("signed-here");
    fs::write(&ours, b"#!/bin/sh\necho signed\n").unwrap();
    assert_eq!(
        label_file(&ours, true, Some(&signer), Some(&verifier)),
        LabelOutcome::Labelled
    );
    let out = run(Command::new("evmctl")
        .arg("ima_verify")
        .arg("--key")
        .arg(&cert)
        .arg(&ours));
    assert!(!out.contains("fail"), "{out}");
    assert_eq!(judge(&ours, true, Some(&verifier)).state, FileState::Signed);
    assert_eq!(
        label_file(&ours, true, Some(&signer), Some(&verifier)),
        LabelOutcome::Current
    );

    let theirs = m.dir.join("signed-by-evmctl");
    fs::write(&theirs, b"#!/bin/sh\necho evmctl\n").unwrap();
    run(Command::new("evmctl")
        .args(["ima_sign", "-a", "sha256", "--key"])
        .arg(&key)
        .arg(&theirs));
    let j = judge(&theirs, true, Some(&verifier));
    assert_eq!(j.state, FileState::Signed, "{j:?}");
    // Header bytes as FIELD-NOTES describe: 03 02 04 + key id.
    let raw = xattr_bytes(&theirs);
    assert_eq!(&raw[..3], &[3, 2, 4]);
    assert_eq!(&raw[3..7], &verifier.keyid);

    // Tampering breaks the signature; a hash is not enough where one is required.
    fs::write(&theirs, b"#!/bin/sh\necho changed\n").unwrap();
    assert_eq!(judge(&theirs, true, Some(&verifier)).state, FileState::Stale);
    let hashed = m.dir.join("hashed");
    fs::write(&hashed, b"x").unwrap();
    run(Command::new("evmctl").args(["ima_hash", "-a", "sha256"]).arg(&hashed));
    assert_eq!(judge(&hashed, true, Some(&verifier)).state, FileState::Missing);
    let LabelOutcome::Failed(why) = label_file(&hashed, true, None, Some(&verifier)) else {
        panic!("a hash must not satisfy a signature policy")
    };
    assert!(why.contains("ima sign"), "{why}");
}
