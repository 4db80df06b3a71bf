//! Numbered generations on disk: each successful apply, rollback or revert
//! becomes a directory holding the profile text and the rendered ruleset.
//!
//! A generation is written under a temporary name and renamed into place, so
//! the rename is the commit point: after a crash a generation either exists
//! whole or not at all. The highest number is the one in force.

use std::fs;
use std::path::{Path, PathBuf};

use bulwark_model::api::GenerationInfo;
use serde::{Deserialize, Serialize};

use crate::firewall::Ruleset;
use crate::state::{self, io, StateError, TMP_SUFFIX};

const PROFILE_FILE: &str = "profile.toml";
const RULESET_FILE: &str = "ruleset.json";
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
}

/// A complete generation as read back from disk.
#[derive(Debug, Clone)]
pub struct Generation {
    pub meta: Meta,
    pub profile_text: String,
    pub ruleset: Ruleset,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store, StateError> {
        let dir = state_dir.join("generations");
        state::private_dir(&dir, 0o700)?;
        Ok(Store { dir })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:06}"))
    }

    /// Committed generation numbers, ascending.
    pub fn numbers(&self) -> Result<Vec<u64>, StateError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let name = entry.map_err(io("list", &self.dir))?.file_name();
            if let Some(n) = name.to_str().and_then(|s| s.parse::<u64>().ok()) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn latest(&self) -> Result<Option<u64>, StateError> {
        Ok(self.numbers()?.last().copied())
    }

    pub fn load(&self, number: u64) -> Result<Option<Generation>, StateError> {
        let dir = self.path(number);
        let Some(meta) = state::read_json::<Meta>(&dir.join(META_FILE))? else {
            return Ok(None);
        };
        let Some(ruleset) = state::read_json::<Ruleset>(&dir.join(RULESET_FILE))? else {
            return Err(StateError::Corrupt {
                path: dir,
                reason: format!("{RULESET_FILE} is missing"),
            });
        };
        let profile_path = dir.join(PROFILE_FILE);
        let profile_text = fs::read_to_string(&profile_path).map_err(io("read", &profile_path))?;
        Ok(Some(Generation {
            meta,
            profile_text,
            ruleset,
        }))
    }

    /// Write a generation whole, then make it visible with one rename.
    pub fn commit(&self, generation: &Generation) -> Result<(), StateError> {
        let dest = self.path(generation.meta.number);
        let tmp = dest.with_file_name(format!("{:06}{TMP_SUFFIX}", generation.meta.number));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
        }
        state::private_dir(&tmp, 0o700)?;
        state::write_atomic(&tmp.join(PROFILE_FILE), generation.profile_text.as_bytes())?;
        state::write_json(&tmp.join(RULESET_FILE), &generation.ruleset)?;
        state::write_json(&tmp.join(META_FILE), &generation.meta)?;
        fs::rename(&tmp, &dest).map_err(io("rename into", &dest))?;
        state::sync_dir(&self.dir)
    }

    pub fn list(&self) -> Result<Vec<GenerationInfo>, StateError> {
        let numbers = self.numbers()?;
        let current = numbers.last().copied();
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            let Some(meta) = state::read_json::<Meta>(&self.path(n).join(META_FILE))? else {
                continue;
            };
            out.push(GenerationInfo {
                number: meta.number,
                profile: meta.profile,
                created: meta.created,
                uid: meta.uid,
                reason: meta.reason,
                current: Some(n) == current,
            });
        }
        Ok(out)
    }
}
