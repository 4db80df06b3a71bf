//! Numbered generations on disk: each successful apply, rollback or revert
//! becomes a directory holding the profile text, what each module rendered
//! from it, and a seal over both.
//!
//! ```text
//! generations/000007/meta.json            number, who, when, why, profile digest, seal
//! generations/000007/profile.toml         the profile as applied
//! generations/000007/firewall/ruleset.json  one directory per module: its artifacts
//! generations/000007/k3s/50-bulwark.yaml
//! ```
//!
//! A generation is written under a temporary name and renamed into place, so
//! the rename is the commit point: after a crash a generation either exists
//! whole or not at all. The highest number is the one in force.
//!
//! **Integrity.** The seal is an HMAC (see [`crate::integrity`]) over the
//! metadata, the profile text and every artifact. A generation whose seal does
//! not verify is refused before anything of it reaches the host: an edited
//! ruleset, profile or metadata is [`StateError::Corrupt`], never installed.
//! Generations written before seals existed are sealed once, when the store is
//! first opened by a version that seals (trust on first use, audited).
//!
//! **Retention.** [`Store::prune`] keeps the newest N and whatever a pending
//! confirmation still needs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bulwark_model::api::{GenerationDetail, GenerationInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::integrity::IntegrityKey;
use crate::module::Artifacts;
use crate::state::{self, io, StateError, TMP_SUFFIX};

const PROFILE_FILE: &str = "profile.toml";
const META_FILE: &str = "meta.json";

/// What a generation records about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub number: u64,
    pub profile: String,
    /// File name the profile came from, for error messages.
    pub source: String,
    /// Unix time of creation.
    pub created: u64,
    pub uid: u32,
    /// `boot`, `apply`, `rollback` or `revert`.
    pub reason: String,
    /// SHA-256 of the profile text: which content is in force.
    #[serde(default)]
    pub digest: String,
    /// bulwarkd version that wrote it.
    #[serde(default)]
    pub version: String,
    /// HMAC over everything else; empty in generations older than seals.
    #[serde(default)]
    pub seal: String,
}

/// A complete generation as read back from disk (and verified).
#[derive(Debug, Clone)]
pub struct Generation {
    pub meta: Meta,
    pub profile_text: String,
    /// Module name → its artifacts.
    pub artifacts: BTreeMap<String, Artifacts>,
}

/// SHA-256 of a profile's text, hex: the digest status and generations show.
pub fn profile_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Generation {
    /// The bytes the seal covers, in a fixed order.
    fn sealed_parts(&self) -> Vec<Vec<u8>> {
        let meta = Meta {
            seal: String::new(),
            ..self.meta.clone()
        };
        let mut parts = vec![
            serde_json::to_vec(&meta).unwrap_or_default(),
            self.profile_text.as_bytes().to_vec(),
        ];
        for (module, files) in &self.artifacts {
            for (name, content) in files {
                parts.push(format!("{module}/{name}").into_bytes());
                parts.push(content.as_bytes().to_vec());
            }
        }
        parts
    }

    fn seal_with(&mut self, key: &IntegrityKey) {
        let parts = self.sealed_parts();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        self.meta.seal = key.seal(&refs);
    }

    fn verify(&self, key: &IntegrityKey) -> bool {
        let parts = self.sealed_parts();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        key.verify(&refs, &self.meta.seal)
    }
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    key: IntegrityKey,
    /// What [`Store::list`] read of each generation's meta: a committed
    /// generation never changes, and the list is asked for after every
    /// command.
    listed: Mutex<BTreeMap<u64, GenerationInfo>>,
}

impl Store {
    /// Open the store; returns it with the numbers of generations it sealed
    /// for the first time (written before seals existed). Only a store in
    /// which no generation is sealed yet is such an upgrade: once one is,
    /// a generation without a seal is damage (a blanked seal must not buy
    /// trust) and is refused when it is loaded.
    pub fn open(state_dir: &Path, key: IntegrityKey) -> Result<(Store, Vec<u64>), StateError> {
        let dir = state_dir.join("generations");
        state::private_dir(&dir, 0o700)?;
        let store = Store {
            dir,
            key,
            listed: Mutex::default(),
        };
        let numbers = store.numbers()?;
        for &n in &numbers {
            if store.read(n)?.is_some_and(|g| !g.meta.seal.is_empty()) {
                return Ok((store, Vec::new()));
            }
        }
        let mut sealed = Vec::new();
        for n in numbers {
            let Some(mut g) = store.read(n)? else { continue };
            if g.meta.seal.is_empty() {
                g.meta.digest = profile_digest(&g.profile_text);
                g.seal_with(&store.key);
                state::write_json(&store.path(n).join(META_FILE), &g.meta)?;
                sealed.push(n);
            }
        }
        Ok((store, sealed))
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:06}"))
    }

    /// Committed generation numbers, ascending.
    pub fn numbers(&self) -> Result<Vec<u64>, StateError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let name = entry.map_err(io("list", &self.dir))?.file_name();
            if let Some(n) = name
                .to_str()
                .filter(|s| s.len() == 6)
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn latest(&self) -> Result<Option<u64>, StateError> {
        Ok(self.numbers()?.last().copied())
    }

    /// Read a generation as stored, without checking its seal.
    fn read(&self, number: u64) -> Result<Option<Generation>, StateError> {
        let dir = self.path(number);
        let Some(meta) = state::read_json::<Meta>(&dir.join(META_FILE))? else {
            return Ok(None);
        };
        let profile_path = dir.join(PROFILE_FILE);
        let profile_text = fs::read_to_string(&profile_path).map_err(io("read", &profile_path))?;
        let mut artifacts = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io("list", &dir))? {
            let entry = entry.map_err(io("list", &dir))?;
            if !entry.file_type().map_err(io("stat", &entry.path()))?.is_dir() {
                continue;
            }
            let module = entry.file_name().to_string_lossy().into_owned();
            let mut files = Artifacts::new();
            for file in fs::read_dir(entry.path()).map_err(io("list", &entry.path()))? {
                let file = file.map_err(io("list", &entry.path()))?;
                let path = file.path();
                let content = fs::read_to_string(&path).map_err(io("read", &path))?;
                files.insert(file.file_name().to_string_lossy().into_owned(), content);
            }
            artifacts.insert(module, files);
        }
        Ok(Some(Generation {
            meta,
            profile_text,
            artifacts,
        }))
    }

    /// Load a generation and verify its seal; a generation that does not
    /// verify is [`StateError::Corrupt`] and must not be installed.
    pub fn load(&self, number: u64) -> Result<Option<Generation>, StateError> {
        let Some(g) = self.read(number)? else { return Ok(None) };
        if !g.verify(&self.key) {
            return Err(StateError::Corrupt {
                path: self.path(number),
                reason: "its seal does not match its content (edited or damaged since it was applied); it is not \
                         installed"
                    .to_owned(),
            });
        }
        Ok(Some(g))
    }

    /// Seal a generation, write it whole, then make it visible with one rename.
    pub fn commit(&self, generation: &mut Generation) -> Result<(), StateError> {
        generation.meta.digest = profile_digest(&generation.profile_text);
        generation.meta.version = env!("CARGO_PKG_VERSION").to_owned();
        generation.seal_with(&self.key);
        let dest = self.path(generation.meta.number);
        // A number can come back when someone removed the newest directory.
        self.listed().remove(&generation.meta.number);
        let tmp = dest.with_file_name(format!("{:06}{TMP_SUFFIX}", generation.meta.number));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
        }
        // Nothing reads the temporary directory, so its files are written
        // in place; each is fsynced, then every directory once, before the
        // rename makes the whole generation visible.
        state::private_dir(&tmp, 0o700)?;
        state::write_in_new_dir(&tmp.join(PROFILE_FILE), generation.profile_text.as_bytes())?;
        for (module, files) in &generation.artifacts {
            let dir = tmp.join(module);
            state::private_dir(&dir, 0o700)?;
            for (name, content) in files {
                state::write_in_new_dir(&dir.join(name), content.as_bytes())?;
            }
            state::sync_dir(&dir)?;
        }
        let meta = tmp.join(META_FILE);
        state::write_in_new_dir(&meta, &state::json_text(&meta, &generation.meta)?)?;
        state::sync_dir(&tmp)?;
        fs::rename(&tmp, &dest).map_err(io("rename into", &dest))?;
        state::sync_dir(&self.dir)
    }

    /// Remove the oldest generations beyond the newest `keep`, except those
    /// in `protect` (the one a pending confirmation reverts to). Returns the
    /// numbers removed. A removal is a rename to a temporary name first, so a
    /// crash never leaves a half-deleted generation under a real number.
    pub fn prune(&self, keep: usize, protect: &[u64]) -> Result<Vec<u64>, StateError> {
        let numbers = self.numbers()?;
        let cut = numbers.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for n in numbers.into_iter().take(cut).filter(|n| !protect.contains(n)) {
            let dir = self.path(n);
            let tmp = dir.with_file_name(format!("{n:06}.pruned{TMP_SUFFIX}"));
            fs::rename(&dir, &tmp).map_err(io("rename", &dir))?;
            fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
            removed.push(n);
        }
        if !removed.is_empty() {
            state::sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Generation `number` whole, for an operator to read: whether its seal
    /// verifies is part of the answer, not a refusal (installing is what a
    /// broken seal forbids; reading it is how the damage is found).
    fn detail(&self, number: u64) -> Result<Option<GenerationDetail>, StateError> {
        let current = self.latest()?;
        let Some(g) = self.read(number)? else { return Ok(None) };
        let sealed = g.verify(&self.key);
        Ok(Some(GenerationDetail {
            info: GenerationInfo {
                number: g.meta.number,
                profile: g.meta.profile.clone(),
                created: g.meta.created,
                uid: g.meta.uid,
                reason: g.meta.reason.clone(),
                current: Some(number) == current,
                digest: g.meta.digest.clone(),
            },
            source: g.meta.source,
            version: g.meta.version,
            sealed,
            profile: g.profile_text,
            artifacts: g.artifacts,
        }))
    }

    /// Every generation, oldest first. The directory is read each time (a
    /// generation removed by hand is gone from the list); a meta file only
    /// the first time its generation is listed, so one edited in place is
    /// listed as first read until a restart, while [`Store::detail`] reads
    /// it again and reports its broken seal.
    pub fn list(&self) -> Result<Vec<GenerationInfo>, StateError> {
        let numbers = self.numbers()?;
        let current = numbers.last().copied();
        let mut listed = self.listed();
        listed.retain(|n, _| numbers.binary_search(n).is_ok());
        for n in numbers {
            if listed.contains_key(&n) {
                continue;
            }
            let Some(meta) = state::read_json::<Meta>(&self.path(n).join(META_FILE))? else {
                continue;
            };
            listed.insert(
                n,
                GenerationInfo {
                    number: meta.number,
                    profile: meta.profile,
                    created: meta.created,
                    uid: meta.uid,
                    reason: meta.reason,
                    current: false,
                    digest: meta.digest,
                },
            );
        }
        Ok(listed
            .iter()
            .map(|(n, info)| GenerationInfo {
                current: Some(*n) == current,
                ..info.clone()
            })
            .collect())
    }

    fn listed(&self) -> MutexGuard<'_, BTreeMap<u64, GenerationInfo>> {
        self.listed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Generation `number` under `state_dir`, read without the engine (and
/// without writing anything, unlike [`Store::open`]), its seal checked with
/// the host's integrity key. `None`: no such generation.
pub fn inspect(state_dir: &Path, number: u64) -> Result<Option<GenerationDetail>, StateError> {
    let key = IntegrityKey::load(state_dir)?.ok_or_else(|| StateError::Corrupt {
        path: IntegrityKey::path(state_dir),
        reason: "missing: no generation can be verified without it".to_owned(),
    })?;
    let store = Store {
        dir: state_dir.join("generations"),
        key,
        listed: Mutex::default(),
    };
    if !store.dir.is_dir() {
        return Ok(None);
    }
    store.detail(number)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let key = IntegrityKey::load_or_create(dir.path()).unwrap();
        let (store, _) = Store::open(dir.path(), key).unwrap();
        (dir, store)
    }

    fn generation(number: u64) -> Generation {
        let mut fw = Artifacts::new();
        fw.insert("ruleset.json".to_owned(), "{\"policy\":\"drop\"}".to_owned());
        Generation {
            meta: Meta {
                number,
                profile: "p".to_owned(),
                source: "p.toml".to_owned(),
                created: 1,
                uid: 0,
                reason: "apply".to_owned(),
                digest: String::new(),
                version: String::new(),
                seal: String::new(),
            },
            profile_text: "[profile]\nname = \"p\"\n".to_owned(),
            artifacts: BTreeMap::from([("firewall".to_owned(), fw)]),
        }
    }

    #[test]
    fn a_committed_generation_loads_back_whole() {
        let (_dir, s) = store();
        s.commit(&mut generation(1)).unwrap();
        let g = s.load(1).unwrap().unwrap();
        assert_eq!(g.artifacts["firewall"]["ruleset.json"], "{\"policy\":\"drop\"}");
        assert_eq!(g.meta.digest, profile_digest("[profile]\nname = \"p\"\n"));
        assert_eq!(s.list().unwrap()[0].digest, g.meta.digest);
    }

    /// The list keeps what it read of each meta, so it must still follow
    /// the directory: new commits, generations removed by hand, and a
    /// number committed again after its directory was removed.
    #[test]
    fn the_list_follows_commits_and_removals() {
        let (_dir, s) = store();
        let listed = |s: &Store| -> Vec<(u64, String, bool)> {
            s.list()
                .unwrap()
                .into_iter()
                .map(|g| (g.number, g.reason, g.current))
                .collect()
        };
        s.commit(&mut generation(1)).unwrap();
        s.commit(&mut generation(2)).unwrap();
        assert_eq!(listed(&s), [(1, "apply".into(), false), (2, "apply".into(), true)]);
        fs::remove_dir_all(s.path(2)).unwrap();
        assert_eq!(listed(&s), [(1, "apply".into(), true)]);
        let mut again = generation(2);
        again.meta.reason = "rollback".to_owned();
        s.commit(&mut again).unwrap();
        assert_eq!(listed(&s), [(1, "apply".into(), false), (2, "rollback".into(), true)]);
    }

    #[test]
    fn an_edited_artifact_profile_or_meta_is_refused() {
        for (file, from, to) in [
            ("firewall/ruleset.json", "drop", "accept"),
            ("profile.toml", "\"p\"", "\"q\""),
            ("meta.json", "\"uid\": 0", "\"uid\": 7"),
        ] {
            let (_dir, s) = store();
            s.commit(&mut generation(1)).unwrap();
            let path = s.path(1).join(file);
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file}: {text}");
            fs::write(&path, text.replace(from, to)).unwrap();
            let e = s.load(1).unwrap_err();
            assert!(e.to_string().contains("seal does not match"), "{file}: {e}");
        }
    }

    #[test]
    fn inspect_reads_a_generation_whole_and_says_whether_its_seal_holds() {
        let (dir, s) = store();
        s.commit(&mut generation(1)).unwrap();
        s.commit(&mut generation(2)).unwrap();
        let g = inspect(dir.path(), 1).unwrap().unwrap();
        assert!(g.sealed && !g.info.current);
        assert_eq!(g.profile, "[profile]\nname = \"p\"\n");
        assert_eq!(g.artifacts["firewall"]["ruleset.json"], "{\"policy\":\"drop\"}");
        assert!(inspect(dir.path(), 2).unwrap().unwrap().info.current);
        assert!(inspect(dir.path(), 3).unwrap().is_none());
        fs::write(s.path(1).join("firewall/ruleset.json"), "{\"policy\":\"accept\"}").unwrap();
        let g = inspect(dir.path(), 1).unwrap().unwrap();
        assert!(!g.sealed);
        assert_eq!(g.artifacts["firewall"]["ruleset.json"], "{\"policy\":\"accept\"}");
    }

    #[test]
    fn an_added_artifact_is_refused() {
        let (_dir, s) = store();
        s.commit(&mut generation(1)).unwrap();
        fs::write(s.path(1).join("firewall/extra.json"), "{}").unwrap();
        assert!(s.load(1).is_err());
    }

    #[test]
    fn generations_without_a_seal_are_sealed_once_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let gdir = dir.path().join("generations/000001");
        fs::create_dir_all(&gdir).unwrap();
        fs::write(gdir.join(PROFILE_FILE), "[profile]\nname = \"old\"\n").unwrap();
        fs::write(
            gdir.join(META_FILE),
            r#"{"number":1,"profile":"old","source":"x","created":1,"uid":0,"reason":"boot"}"#,
        )
        .unwrap();
        let key = IntegrityKey::load_or_create(dir.path()).unwrap();
        let (s, sealed) = Store::open(dir.path(), key).unwrap();
        assert_eq!(sealed, [1]);
        assert!(s.load(1).unwrap().is_some());
        let key = IntegrityKey::load_or_create(dir.path()).unwrap();
        let (_, again) = Store::open(dir.path(), key).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn a_blanked_seal_among_sealed_generations_is_refused_not_trusted() {
        let (dir, s) = store();
        s.commit(&mut generation(1)).unwrap();
        s.commit(&mut generation(2)).unwrap();
        let meta = s.path(2).join(META_FILE);
        let mut m: serde_json::Value = serde_json::from_str(&fs::read_to_string(&meta).unwrap()).unwrap();
        m["seal"] = serde_json::Value::String(String::new());
        fs::write(&meta, m.to_string()).unwrap();
        fs::write(s.path(2).join("firewall/ruleset.json"), "{\"policy\":\"accept\"}").unwrap();
        let key = IntegrityKey::load_or_create(dir.path()).unwrap();
        let (s, sealed) = Store::open(dir.path(), key).unwrap();
        assert!(sealed.is_empty(), "{sealed:?}");
        assert!(s.load(2).is_err(), "the blanked generation was trusted");
        assert!(s.load(1).unwrap().is_some());
    }

    #[test]
    fn prune_keeps_the_newest_and_the_protected() {
        let (_dir, s) = store();
        for n in 1..=8 {
            s.commit(&mut generation(n)).unwrap();
        }
        let removed = s.prune(3, &[2]).unwrap();
        assert_eq!(removed, [1, 3, 4, 5]);
        assert_eq!(s.numbers().unwrap(), [2, 6, 7, 8]);
    }
}
