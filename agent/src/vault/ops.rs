//! The Vault module's actions: `status`, `init`, `ack`, `unseal`, `migrate`.
//!
//! **Init, exactly once.** Under static and transit custody OpenBao
//! initialises itself on its first start from Bulwark's configuration
//! (`render::self_init`), so nothing of that init depends on an answer
//! reaching bulwarkd. `init` then issues the operator's recovery keys
//! through the one-shot bootstrap token and a root token made from them.
//! Under manual custody `init` calls `sys/init`. In both, the record's
//! `phase` is written before the call and the keys go to the encrypted
//! hand-over the moment they arrive; `init` asked again shows the same keys
//! until `ack`. The root token is never stored: a repeated `init` makes a
//! new one from the kept keys and revokes the one shown before.

use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_model::profile::{Custody, Vault as VaultProfile};
use bulwark_model::vault::{AckRequest, InitRequest, InitResponse, UnsealRequest, UnsealResponse};
use serde_json::Value;

use super::client::{Client, Secret};
use super::custody::{self, Handover, Phase, Record, Store, HANDOVER};
use super::render::{self, cred};
use super::{Vault, VaultError};
use crate::audit::{self, Outcome};
use crate::module::{ActionRole, Cx};

/// How long a just-unsealed Vault may take to become active.
const ACTIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The actions and who may call each.
pub const ACTIONS: &[(&str, ActionRole)] = &[
    ("status", ActionRole::Read),
    ("init", ActionRole::Admin),
    ("ack", ActionRole::Admin),
    ("unseal", ActionRole::Admin),
    ("migrate", ActionRole::Admin),
];

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, VaultError> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    serde_json::from_value(v).map_err(|e| VaultError::BadRequest(format!("request body: {e}")))
}

fn to_json<T: serde::Serialize>(t: &T) -> Result<Value, VaultError> {
    serde_json::to_value(t).map_err(|e| VaultError::BadRequest(e.to_string()))
}

impl Vault {
    pub(super) fn run_action(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        action: &str,
        req: Value,
    ) -> Result<Value, VaultError> {
        match action {
            "status" => {
                let s = self.vault_status(v);
                to_json(&s)
            }
            "init" => {
                let _: InitRequest = body(req)?;
                let r = if v.custody == Custody::Manual {
                    self.init_manual(cx, v)?
                } else {
                    self.init_auto(cx, v)?
                };
                to_json(&r)
            }
            "ack" => {
                let _: AckRequest = body(req)?;
                self.ack(cx, v)?;
                to_json(&serde_json::json!({ "acknowledged": true }))
            }
            "unseal" | "migrate" => {
                let r: UnsealRequest = body(req)?;
                let migrate = action == "migrate";
                if migrate && r.to.as_deref() != Some("static") {
                    return Err(VaultError::BadRequest(
                        "migrate: only --to static is supported".to_owned(),
                    ));
                }
                let out = self.unseal(cx, v, Secret(r.key.trim().to_owned()), migrate)?;
                to_json(&out)
            }
            other => Err(VaultError::BadRequest(format!("no action {other:?}"))),
        }
    }

    /// The loopback listener where generate-root is allowed.
    fn admin(&self, _v: &VaultProfile) -> Result<Client, VaultError> {
        Client::new(&format!("http://{}", render::admin_listen(_v)))
    }

    fn handover(store: &Store) -> Result<Option<Handover>, VaultError> {
        match store.get(HANDOVER)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(s.expose())
                .map(Some)
                .map_err(|e| VaultError::Corrupt {
                    path: store.path(HANDOVER),
                    reason: e.to_string(),
                }),
        }
    }

    fn keep_handover(store: &Store, h: &Handover) -> Result<(), VaultError> {
        let text = serde_json::to_string(h).map_err(|e| VaultError::BadRequest(e.to_string()))?;
        store.replace(HANDOVER, text.as_bytes())
    }

    fn record(&self) -> Result<Record, VaultError> {
        Ok(custody::read_record(&self.host)?.unwrap_or_default())
    }

    /// Manual custody: `sys/init` once, Bulwark's policy and token, the keys shown.
    fn init_manual(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) -> Result<InitResponse, VaultError> {
        let client = self.client(v)?;
        let store = self.store(v);
        let status = client.seal_status()?;
        let existing = custody::read_record(&self.host)?;
        let (keys, repeated, mut record) = match (status.initialized, existing) {
            (false, Some(r)) if r.initialised.is_some() => {
                return Err(VaultError::Conflict(
                    "Bulwark's record says this Vault was initialised, but the server reports it is not: \
                     its raft data is gone; restore it, Bulwark will not initialise over a record"
                        .to_owned(),
                ))
            }
            (false, _) => {
                let record = Record {
                    custody: Custody::Manual.as_str().to_owned(),
                    shares: v.shares,
                    threshold: v.threshold,
                    phase: Some(Phase::Initialising),
                    ..Record::default()
                };
                custody::write_record(&self.host, &record)?;
                let answer = client.init(v.shares, v.threshold)?;
                let h = Handover {
                    kind: "unseal".to_owned(),
                    keys: answer.keys.clone(),
                    threshold: v.threshold,
                };
                // First thing after the answer: the keys must survive a crash.
                Self::keep_handover(&store, &h)?;
                cx.event(
                    &audit::VLT_INITIALISED,
                    Outcome::Success,
                    format!("sys/init with {} shares, threshold {}", v.shares, v.threshold),
                );
                self.finish_manual(v, &client, &answer.keys, Some(answer.root_token.clone()), record)?;
                let record = self.record()?;
                (answer.keys, false, record)
            }
            (true, None) => {
                return Err(VaultError::Conflict(format!(
                    "the Vault at {} is initialised but Bulwark holds no custody record for it; \
                     it will not be initialised again",
                    v.listen
                )))
            }
            (true, Some(r)) => match Self::handover(&store)? {
                Some(h) => {
                    let record = if r.initialised.is_none() {
                        // Crashed after the keys were kept: finish the setup from them.
                        self.finish_manual(v, &client, &h.keys, None, r)?;
                        self.record()?
                    } else {
                        r
                    };
                    (h.keys, true, record)
                }
                None if r.delivered.is_some() => {
                    return Err(VaultError::Conflict(
                        "the Vault is initialised and its keys were acknowledged; nothing to show".to_owned(),
                    ))
                }
                None => {
                    return Err(VaultError::Conflict(
                        "init was interrupted while the server initialised and its keys never reached Bulwark: \
                         the Vault is empty and nobody holds its keys; stop it, remove its raft directory and \
                         the custody record, then run init again"
                            .to_owned(),
                    ))
                }
            },
        };
        let root = self.root_for_operator(cx, v, &client, &keys, &mut record)?;
        Ok(self.respond(cx, v, "unseal", keys, repeated, root, &record))
    }

    /// After `sys/init` under manual custody: unseal, create Bulwark's
    /// policy, canary and token with the root token (made from the kept
    /// keys when the original is gone), record the Vault as Bulwark's.
    fn finish_manual(
        &mut self,
        v: &VaultProfile,
        client: &Client,
        keys: &[Secret],
        root: Option<Secret>,
        mut record: Record,
    ) -> Result<(), VaultError> {
        self.watch.expect_restart();
        for k in keys.iter().take(usize::from(v.threshold)) {
            let s = client.unseal(k, false)?;
            if !s.sealed {
                break;
            }
        }
        client.wait_active(ACTIVE_WAIT)?;
        let root = match root {
            Some(r) => r,
            None => self
                .admin(v)?
                .generate_root(&keys[..usize::from(v.threshold).min(keys.len())])?,
        };
        let store = self.store(v);
        let token = store
            .get(cred::BULWARK_TOKEN)?
            .ok_or_else(|| VaultError::Conflict("Bulwark's token ID is missing from the store".to_owned()))?;
        client.put_policy(&root, render::POLICY, &render::bulwark_policy())?;
        if client.read_canary(&token).is_err() {
            let _ = client.mount_kv(&root, render::CANARY_MOUNT);
            if client.lookup_self(&token).is_err() {
                client.create_token(&root, &token, render::POLICY, render::BULWARK_TOKEN_PERIOD)?;
            }
            client.write_canary(&token, &custody::random_hex()?)?;
        }
        // The setup token is not the operator's: revoke it.
        client.revoke_self(&root)?;
        let status = client.seal_status()?;
        record.initialised = Some(now_unix());
        record.cluster_id = Some(status.cluster_id).filter(|c| !c.is_empty());
        record.bulwark_token = true;
        record.phase = None;
        custody::write_record(&self.host, &record)
    }

    /// Static and transit custody: the first recovery keys of a self-initialised Vault.
    fn init_auto(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) -> Result<InitResponse, VaultError> {
        let client = self.client(v)?;
        let store = self.store(v);
        let status = client.seal_status()?;
        let mut record =
            match custody::read_record(&self.host)? {
                Some(r) if r.initialised.is_some() => r,
                Some(_) if !status.initialized || status.sealed => {
                    return Err(VaultError::Conflict(
                        "the Vault is still initialising itself; try again in a few seconds".to_owned(),
                    ))
                }
                Some(_) => return Err(VaultError::Conflict(
                    "the Vault is initialised but Bulwark has not confirmed its token yet; try again in a few seconds"
                        .to_owned(),
                )),
                None => {
                    return Err(VaultError::Conflict(format!(
                        "the Vault at {} has no custody record from Bulwark; it will not be initialised again",
                        v.listen
                    )))
                }
            };
        if status.sealed {
            return Err(VaultError::Conflict(
                "the Vault is sealed; its seal should unseal it (see health)".to_owned(),
            ));
        }
        let (keys, repeated) = match Self::handover(&store)? {
            Some(h) => (h.keys, true),
            None if record.delivered.is_some() => {
                return Err(VaultError::Conflict(
                    "the recovery keys were issued and acknowledged; nothing to show".to_owned(),
                ))
            }
            None => {
                let boot = store.get(cred::BOOTSTRAP_TOKEN)?.ok_or_else(|| {
                    VaultError::Conflict("the bootstrap token ID is missing from the store".to_owned())
                })?;
                record.phase = Some(Phase::IssuingRecovery);
                custody::write_record(&self.host, &record)?;
                let keys = client.first_recovery_keys(&boot, v.shares, v.threshold).map_err(|e| {
                    VaultError::Conflict(format!(
                        "{e}; if an earlier `init` was interrupted after the server issued them, they were lost: \
                         rotate them with `bao operator rotate-keys -target=recovery` and a root token"
                    ))
                })?;
                Self::keep_handover(
                    &store,
                    &Handover {
                        kind: "recovery".to_owned(),
                        keys: keys.clone(),
                        threshold: v.threshold,
                    },
                )?;
                record.phase = None;
                custody::write_record(&self.host, &record)?;
                (keys, false)
            }
        };
        let root = self.root_for_operator(cx, v, &client, &keys, &mut record)?;
        Ok(self.respond(cx, v, "recovery", keys, repeated, root, &record))
    }

    /// A root token for the operator, made from the kept keys; the one shown
    /// before (never acknowledged) is revoked. `None` under `revoke_root`.
    fn root_for_operator(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        client: &Client,
        keys: &[Secret],
        record: &mut Record,
    ) -> Result<Option<(Secret, String)>, VaultError> {
        let root = self
            .admin(v)?
            .generate_root(&keys[..usize::from(v.threshold).min(keys.len())])?;
        let (accessor, _) = client.lookup_self(&root)?;
        if let Some(old) = record.root_accessor.take() {
            // Shown before and not acknowledged: it may be lost; it must not live on.
            let _ = client.revoke_accessor(&root, &old);
        }
        if v.revoke_root {
            client.revoke_self(&root)?;
            record.root_revoked = true;
            record.root_accessor = None;
            custody::write_record(&self.host, record)?;
            cx.event(
                &audit::VLT_ROOT_REVOKED,
                Outcome::Success,
                format!("accessor {accessor} (revoke_root = true)"),
            );
            return Ok(None);
        }
        record.root_accessor = Some(accessor.clone());
        record.root_revoked = false;
        custody::write_record(&self.host, record)?;
        Ok(Some((root, accessor)))
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        kind: &str,
        keys: Vec<Secret>,
        repeated: bool,
        root: Option<(Secret, String)>,
        record: &Record,
    ) -> InitResponse {
        let mut notes = vec![
            format!(
                "Store each of the {} keys with a different person; {} of them {}.",
                keys.len(),
                v.threshold,
                if kind == "unseal" {
                    "unseal the Vault after every start"
                } else {
                    "make a new root token (`bao operator generate-root`)"
                }
            ),
            "Bulwark keeps them encrypted until `bulwarkctl vault ack` (the CLI sends it after printing them)."
                .to_owned(),
        ];
        match &root {
            Some((_, accessor)) => notes.push(format!(
                "Revoke the root token once the first admin policy exists: `bao token revoke -self` \
                 with it, or `bao token revoke -accessor {accessor}`."
            )),
            None => notes.push("The root token was revoked (revoke_root = true).".to_owned()),
        }
        cx.event(
            &audit::VLT_KEYS_ISSUED,
            Outcome::Success,
            format!(
                "{} {kind} keys{}{}",
                keys.len(),
                if repeated {
                    " (shown again, not yet acknowledged)"
                } else {
                    ""
                },
                root.as_ref()
                    .map(|(_, a)| format!(", root token accessor {a}"))
                    .unwrap_or_default()
            ),
        );
        InitResponse {
            custody: v.custody.as_str().to_owned(),
            key_kind: kind.to_owned(),
            keys: keys.into_iter().map(|k| k.0).collect(),
            threshold: v.threshold,
            root_token_accessor: root.as_ref().map(|(_, a)| a.clone()),
            root_token: root.map(|(t, _)| t.0),
            root_revoked: record.root_revoked,
            repeated,
            notes,
        }
    }

    /// The operator stored the keys: forget them, revoke the bootstrap token.
    fn ack(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) -> Result<(), VaultError> {
        let store = self.store(v);
        let mut record = self.record()?;
        if !store.exists(HANDOVER) {
            return Err(VaultError::Conflict(
                if record.delivered.is_some() {
                    "the keys were already acknowledged"
                } else {
                    "no keys are waiting: run `bulwarkctl vault init` first"
                }
                .to_owned(),
            ));
        }
        if v.custody != Custody::Manual {
            if let Some(boot) = store.get(cred::BOOTSTRAP_TOKEN)? {
                // Already revoked (a crash after this call) answers 403: fine.
                let _ = self.client(v)?.revoke_self(&boot);
            }
        }
        record.delivered = Some(now_unix());
        custody::write_record(&self.host, &record)?;
        store.remove(HANDOVER)?;
        cx.event(
            &audit::VLT_KEYS_DELIVERED,
            Outcome::Success,
            "the hand-over was deleted".to_owned(),
        );
        Ok(())
    }

    /// One share towards unsealing (or a seal migration).
    fn unseal(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        key: Secret,
        migrate: bool,
    ) -> Result<UnsealResponse, VaultError> {
        if key.expose().is_empty() {
            return Err(VaultError::BadRequest("key: empty share".to_owned()));
        }
        let client = self.client(v)?;
        let before = client.seal_status()?;
        if migrate && !before.migration {
            return Err(VaultError::Conflict(
                "no seal migration is under way: apply a profile with custody = \"static\" first".to_owned(),
            ));
        }
        if !before.sealed {
            return Ok(UnsealResponse {
                sealed: false,
                threshold: before.t,
                seal_type: before.seal_type,
                ..UnsealResponse::default()
            });
        }
        let after = client.unseal(&key, migrate).map_err(|e| match e {
            VaultError::Refused {
                status: 400, errors, ..
            } => VaultError::BadRequest(format!(
                "the share was refused ({errors}); the shares given so far were reset"
            )),
            other => other,
        })?;
        let repeated = after.sealed && after.progress == before.progress && before.progress > 0;
        if !after.sealed {
            if migrate {
                let mut record = self.record()?;
                record.custody = Custody::Static.as_str().to_owned();
                custody::write_record(&self.host, &record)?;
                cx.event(
                    &audit::VLT_MIGRATED,
                    Outcome::Success,
                    "manual (shamir) -> static; the shares are recovery keys now".to_owned(),
                );
            } else {
                cx.event(&audit::VLT_UNSEALED, Outcome::Success, format!("{} shares", before.t));
            }
            self.watch.saw(&after);
        }
        Ok(UnsealResponse {
            sealed: after.sealed,
            progress: if after.sealed { after.progress } else { after.t },
            threshold: after.t,
            repeated,
            migration: after.migration || migrate,
            seal_type: after.seal_type,
        })
    }
}
