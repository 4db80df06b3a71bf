//! The Vault module's actions: `status`, `init`, `ack`, `unseal`, `migrate`.
//!
//! **Init, exactly once, whatever crashes.** Every custody initialises on
//! the server's first start from Bulwark's configuration (declarative
//! self-initialisation under an auto-unseal seal: the static key, the
//! transit server, or, for manual custody, a temporary static key), with
//! Bulwark's policy and token IDs stored before that start: no answer has to
//! reach bulwarkd. `init` then produces the operator's keys with a
//! recovery-key rotation that takes effect only once its new keys are
//! verified, and keeps them in the encrypted hand-over before verifying, so
//! a crash leaves either nothing in force (the rotation starts again) or the
//! kept keys. Manual custody then migrates to Shamir with those keys as the
//! shares. `init` asked again shows the same keys until `ack`. The root token
//! is never stored: a repeated `init` makes a new one from the kept keys and
//! revokes the one shown before.

use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_model::profile::{Custody, Vault as VaultProfile};
use bulwark_model::vault::{
    AckRequest, InitRequest, InitResponse, RestoreRequest, RestoreTestRequest, UnsealRequest, UnsealResponse,
};
use serde_json::Value;

use super::client::{Client, Secret};
use super::custody::{self, Handover, Record, Store, HANDOVER};
use super::render::{self, cred};
use super::{Vault, VaultError};
use crate::audit::{self, Outcome};
use crate::module::{ActionRole, Cx};

/// How long a just-unsealed Vault may take to become active.
const ACTIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long `init` waits for a Vault that is still initialising itself.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The actions and who may call each.
pub const ACTIONS: &[(&str, ActionRole)] = &[
    ("status", ActionRole::Read),
    ("init", ActionRole::Admin),
    ("ack", ActionRole::Admin),
    ("unseal", ActionRole::Admin),
    ("migrate", ActionRole::Admin),
    ("snapshot", ActionRole::Admin),
    ("snapshots", ActionRole::Read),
    ("restore", ActionRole::Admin),
    ("restore-test", ActionRole::Admin),
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
                self.refresh(cx, v);
                let s = self.vault_status(v);
                to_json(&s)
            }
            "init" => {
                let _: InitRequest = body(req)?;
                let r = self.init(cx, v)?;
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
            "snapshot" | "snapshots" | "restore" | "restore-test" => {
                let Some(s) = v.snapshots.clone() else {
                    return Err(VaultError::Conflict(
                        "the profile in force has no [vault.snapshots] section".to_owned(),
                    ));
                };
                match action {
                    "snapshot" => {
                        let _: AckRequest = body(req)?;
                        let e = self.take_snapshot(cx, v, &s)?;
                        to_json(&e)
                    }
                    "snapshots" => to_json(&self.snapshots_listing(&s)?),
                    "restore" => {
                        let r: RestoreRequest = body(req)?;
                        let msg = self.restore_live(cx, v, &s, &r.snapshot, &Secret(r.token.trim().to_owned()))?;
                        to_json(&serde_json::json!({ "restored": msg }))
                    }
                    _ => {
                        let r: RestoreTestRequest = body(req)?;
                        let shares: Vec<Secret> = r.shares.iter().map(|k| Secret(k.trim().to_owned())).collect();
                        match (v.custody, shares.len()) {
                            (Custody::Manual, n) if n < usize::from(v.threshold) => {
                                return Err(VaultError::Conflict(format!(
                                    "a manual (Shamir) snapshot opens only with the original shares: give {} \
                                     (`bulwarkctl vault restore-test --shares`){}",
                                    v.threshold,
                                    if n > 0 { format!("; {n} given") } else { String::new() }
                                )))
                            }
                            (Custody::Manual, _) => {}
                            (c, n) if n > 0 => {
                                return Err(VaultError::BadRequest(format!(
                                    "shares: a {} Vault's restore test needs none (only manual custody does)",
                                    c.as_str()
                                )))
                            }
                            _ => {}
                        }
                        let t = self.restore_test(cx, v, &s, &shares)?;
                        to_json(&t)
                    }
                }
            }
            other => Err(VaultError::BadRequest(format!("no action {other:?}"))),
        }
    }

    /// The loopback listener where generate-root is allowed.
    fn admin(&self, _v: &VaultProfile) -> Result<Client, VaultError> {
        Client::new(&format!("http://{}", render::admin_listen(_v)), None)
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

    /// Wait, bounded, until the Vault answers initialised and Bulwark's
    /// record of it is complete (self-init takes a few seconds after the
    /// first start). Never initialises anything itself.
    fn claimed(&mut self, cx: &mut Cx<'_>, v: &VaultProfile, client: &Client) -> Result<Record, VaultError> {
        let deadline = std::time::Instant::now() + CLAIM_WAIT;
        loop {
            let status = client.seal_status()?;
            match custody::read_record(&self.host)? {
                None if status.initialized => {
                    return Err(VaultError::Conflict(format!(
                        "the Vault at {} is initialised but Bulwark holds no custody record for it; \
                         it will not be initialised again",
                        v.listen
                    )))
                }
                Some(r) if r.initialised.is_some() => return Ok(r),
                _ => {}
            }
            self.claim(cx, v, &status);
            super::progress();
            if std::time::Instant::now() >= deadline {
                return Err(VaultError::Conflict(
                    "the Vault has not finished initialising itself; see `bulwarkctl vault status`".to_owned(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `init`, for every custody. Each step can be interrupted by a crash
    /// and is taken up again by the next `init`:
    ///
    /// 1. The Vault initialised itself at its first start (nothing to lose).
    /// 2. The operator's keys come from a recovery-key rotation that takes
    ///    effect only once its keys are verified; they are in the encrypted
    ///    hand-over before the first is verified. An unverified rotation is
    ///    cancelled and started again.
    /// 3. Manual custody: the temporary key is disabled, the server restarts
    ///    and migrates to Shamir with those keys, which become the shares;
    ///    then the temporary key is destroyed.
    /// 4. A root token made from the keys; the keys stay until `ack`.
    fn init(&mut self, cx: &mut Cx<'_>, v: &VaultProfile) -> Result<InitResponse, VaultError> {
        let client = self.client(v)?;
        let store = self.store(v);
        let mut record = self.claimed(cx, v, &client)?;
        let mut handover = Self::handover(&store)?;
        if handover.is_none() && record.delivered.is_some() {
            return Err(VaultError::Conflict(
                "the Vault's keys were shown and acknowledged; Bulwark no longer holds them".to_owned(),
            ));
        }
        let repeated = record.keys_shown && handover.is_some();
        let kind = if v.custody == Custody::Manual {
            "unseal"
        } else {
            "recovery"
        };
        let mut status = client.seal_status()?;
        if status.recovery_seal && status.n == 0 {
            handover = Some(self.rotate_recovery(v, &client, &store, handover, kind)?);
            status = client.seal_status()?;
        }
        let h = handover.ok_or_else(|| {
            VaultError::Conflict(
                "the Vault has keys Bulwark never held (they were issued outside Bulwark); nothing to show".to_owned(),
            )
        })?;
        if record.staging {
            self.migrate_to_shamir(cx, v, &client, &h, &mut record)?;
        } else {
            // A crash between the record saying "shamir" and the deletion.
            self.forget_staging_key(v)?;
            if status.sealed && v.custody == Custody::Manual {
                // Restarted after the migration, before the operator took the keys.
                self.submit(&client, &h.keys, v.threshold, false)?;
                client.wait_active(ACTIVE_WAIT)?;
                cx.event(
                    &audit::VLT_UNSEALED,
                    Outcome::Success,
                    "unsealed by init with the kept shares",
                );
            }
        }
        let root = self.root_for_operator(cx, v, &client, &h.keys, &mut record)?;
        record.keys_shown = true;
        custody::write_record(&self.host, &record)?;
        self.refresh(cx, v);
        Ok(self.respond(cx, v, kind, h.keys, repeated, root, &record))
    }

    /// Step 2: the operator's keys through a verified rotation.
    fn rotate_recovery(
        &mut self,
        v: &VaultProfile,
        client: &Client,
        store: &Store,
        kept: Option<Handover>,
        kind: &str,
    ) -> Result<Handover, VaultError> {
        let boot = store
            .get(cred::BOOTSTRAP_TOKEN)?
            .ok_or_else(|| VaultError::Conflict("the bootstrap token ID is missing from the store".to_owned()))?;
        let under_way = client.rotation(&boot)?;
        let h = match kept {
            // Interrupted after the keys were kept: verify the same ones.
            Some(h) if under_way.started && under_way.verification_nonce == h.nonce => h,
            _ => {
                if under_way.started {
                    client.rotation_cancel(&boot)?;
                }
                let (keys, nonce) = client.rotation_start(&boot, v.shares, v.threshold)?;
                let h = Handover {
                    kind: kind.to_owned(),
                    keys,
                    threshold: v.threshold,
                    nonce,
                };
                // Kept before the first key is verified: until then nothing changed.
                Self::keep_handover(store, &h)?;
                h
            }
        };
        let done = usize::from(client.rotation_verified(&boot)?);
        for k in h.keys.iter().take(usize::from(v.threshold)).skip(done) {
            if client.rotation_verify(&boot, &h.nonce, k)? {
                break;
            }
        }
        if client.seal_status()?.n == 0 {
            return Err(VaultError::Api {
                call: "POST /v1/sys/rotate/recovery/verify".to_owned(),
                reason: "the rotation did not complete with the kept keys".to_owned(),
            });
        }
        Ok(h)
    }

    /// Step 3 (manual custody): from the temporary key to Shamir.
    fn migrate_to_shamir(
        &mut self,
        cx: &mut Cx<'_>,
        v: &VaultProfile,
        client: &Client,
        h: &Handover,
        record: &mut Record,
    ) -> Result<(), VaultError> {
        if !record.migrating {
            record.migrating = true;
            custody::write_record(&self.host, record)?;
        }
        let mut status = client.seal_status()?;
        if status.seal_type != "shamir" {
            // Still under the temporary key: restart with it disabled.
            self.write_rendered(&self.profile_name.clone(), v)?;
            self.start(v, true)?;
            status = self.restarted_as_shamir(client)?;
        }
        if status.sealed {
            self.submit(client, &h.keys, v.threshold, status.migration)?;
        }
        client.wait_active(ACTIVE_WAIT)?;
        if client.seal_status()?.seal_type != "shamir" {
            return Err(VaultError::Start(
                "the seal migration to Shamir did not complete".to_owned(),
            ));
        }
        record.staging = false;
        record.migrating = false;
        custody::write_record(&self.host, record)?;
        // Read at the next start only: the running server is Shamir already.
        self.write_rendered(&self.profile_name.clone(), v)?;
        self.forget_staging_key(v)?;
        cx.event(
            &audit::VLT_MIGRATED,
            Outcome::Success,
            "temporary static key -> shamir; the temporary key was destroyed".to_owned(),
        );
        Ok(())
    }

    /// Wait, bounded, until the restarted server answers with the Shamir
    /// seal of the migration (the old process may answer a moment longer).
    fn restarted_as_shamir(&self, client: &Client) -> Result<super::client::SealStatus, VaultError> {
        let deadline = std::time::Instant::now() + super::START_WAIT;
        loop {
            if let Ok(s) = client.seal_status() {
                if s.seal_type == "shamir" {
                    return Ok(s);
                }
            }
            super::progress();
            if std::time::Instant::now() >= deadline {
                return Err(VaultError::Start(format!(
                    "the Vault did not come back for the seal migration within {}s",
                    super::START_WAIT.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Submit `threshold` shares (or fewer, once unsealed).
    fn submit(&self, client: &Client, keys: &[Secret], threshold: u8, migrate: bool) -> Result<(), VaultError> {
        for k in keys.iter().take(usize::from(threshold)) {
            if !client.unseal(k, migrate)?.sealed {
                break;
            }
        }
        Ok(())
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
        // Every custody self-initialised with a bootstrap token; its work is done.
        if let Some(boot) = store.get(cred::BOOTSTRAP_TOKEN)? {
            // Already revoked (a crash after this call) answers 403: fine.
            let _ = self.client(v)?.revoke_self(&boot);
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
