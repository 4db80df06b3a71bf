//! The HTTP client to the Vault API (OpenBao and Vault speak the same one).
//!
//! Tokens travel in the `X-Vault-Token` header and keys in request bodies,
//! never in URLs; every call has a deadline. Secrets come back wrapped in
//! [`Secret`], whose `Debug` says nothing.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::VaultError;

/// Longest an ordinary API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Taking or restoring a raft snapshot (a few MB, written by raft).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A key share or token. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `GET /v1/sys/seal-status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SealStatus {
    #[serde(rename = "type")]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    /// Threshold and shares of the unseal (or, migrating, the old) seal.
    pub t: u8,
    pub n: u8,
    pub progress: u8,
    pub version: String,
    pub migration: bool,
    pub recovery_seal: bool,
    pub cluster_id: String,
}

/// `GET /v1/sys/rotate/recovery/init`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Rotation {
    pub started: bool,
    pub verification_required: bool,
    pub verification_nonce: String,
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for `base`; with `pin` (a DER certificate) it speaks TLS
    /// and accepts that certificate only.
    pub fn new(base: &str, pin: Option<Vec<u8>>) -> Result<Client, VaultError> {
        super::tls::install_provider();
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .no_proxy();
        builder = match pin {
            Some(der) => builder.use_preconfigured_tls(super::tls::pinned(der)?),
            // Plain HTTP: no certificate store is needed (or loaded).
            None => builder.tls_certs_only(std::iter::empty()),
        };
        let http = builder.build().map_err(|e| VaultError::Api {
            call: "client".to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), VaultError> {
        let call = format!("{method} /v1/{path}");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .timeout(timeout);
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t.expose());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().map_err(|e| VaultError::Api {
            call: call.clone(),
            reason: reason(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Ok((status, value))
    }

    /// A 2xx answer or an error carrying Vault's own `errors`.
    fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<Value>,
    ) -> Result<Value, VaultError> {
        self.ok_within(method, path, token, body, CALL_TIMEOUT)
    }

    fn ok_within(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, VaultError> {
        let call = format!("{method} /v1/{path}");
        let (status, value) = self.call(method, path, token, body, timeout)?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(VaultError::Refused {
                call,
                status,
                errors: errors_of(&value),
            })
        }
    }

    /// Wait, bounded, until the node is unsealed and active (HTTP 200 from
    /// `sys/health`): right after an unseal it still sets itself up.
    pub fn wait_active(&self, within: Duration) -> Result<(), VaultError> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok((200, _)) = self.call(reqwest::Method::GET, "sys/health", None, None, CALL_TIMEOUT) {
                return Ok(());
            }
            super::progress();
            if std::time::Instant::now() >= deadline {
                return Err(VaultError::Api {
                    call: "GET /v1/sys/health".to_owned(),
                    reason: format!("not active within {}s", within.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let v = self.ok(reqwest::Method::GET, "sys/seal-status", None, None)?;
        parse(v, "GET /v1/sys/seal-status")
    }

    /// Submit one share. `migrate`: the share unseals a seal migration.
    pub fn unseal(&self, key: &Secret, migrate: bool) -> Result<SealStatus, VaultError> {
        let body = json!({ "key": key.expose(), "migrate": migrate });
        let v = self.ok(reqwest::Method::PUT, "sys/unseal", None, Some(body))?;
        parse(v, "PUT /v1/sys/unseal")
    }

    /// Forget the shares submitted so far.
    pub fn unseal_reset(&self) -> Result<(), VaultError> {
        self.ok(reqwest::Method::PUT, "sys/unseal", None, Some(json!({ "reset": true })))
            .map(drop)
    }

    /// The recovery-key rotation under way, if any
    /// (`GET sys/rotate/recovery/init`).
    pub fn rotation(&self, token: &Secret) -> Result<Rotation, VaultError> {
        let v = self.ok(reqwest::Method::GET, "sys/rotate/recovery/init", Some(token), None)?;
        parse(v["data"].clone(), "GET /v1/sys/rotate/recovery/init")
    }

    /// Cancel the rotation under way (its keys were never verified).
    pub fn rotation_cancel(&self, token: &Secret) -> Result<(), VaultError> {
        self.ok(reqwest::Method::DELETE, "sys/rotate/recovery/init", Some(token), None)
            .map(drop)
    }

    /// Start a rotation to `shares` new recovery keys that take effect only
    /// once `threshold` of them are verified: the keys and the verification
    /// nonce. (A Vault without recovery keys needs no old ones for this.)
    pub fn rotation_start(
        &self,
        token: &Secret,
        shares: u8,
        threshold: u8,
    ) -> Result<(Vec<Secret>, String), VaultError> {
        let call = "POST /v1/sys/rotate/recovery/init";
        let body = json!({ "secret_shares": shares, "secret_threshold": threshold, "require_verification": true });
        let v = self.ok(
            reqwest::Method::POST,
            "sys/rotate/recovery/init",
            Some(token),
            Some(body),
        )?;
        let keys: Vec<Secret> = serde_json::from_value(v["data"]["keys"].clone()).unwrap_or_default();
        let nonce = v["data"]["verification_nonce"].as_str().unwrap_or_default().to_owned();
        if keys.len() != usize::from(shares) || nonce.is_empty() {
            return Err(VaultError::Api {
                call: call.to_owned(),
                reason: "no keys or no verification nonce in the answer: this Vault has recovery keys already"
                    .to_owned(),
            });
        }
        Ok((keys, nonce))
    }

    /// How many new keys were verified so far (`GET sys/rotate/recovery/verify`).
    pub fn rotation_verified(&self, token: &Secret) -> Result<u8, VaultError> {
        let v = self.ok(reqwest::Method::GET, "sys/rotate/recovery/verify", Some(token), None)?;
        Ok(u8::try_from(v["data"]["progress"].as_u64().unwrap_or(0)).unwrap_or(0))
    }

    /// Verify one new key; `true` once the rotation is complete (in force).
    pub fn rotation_verify(&self, token: &Secret, nonce: &str, key: &Secret) -> Result<bool, VaultError> {
        let v = self.ok(
            reqwest::Method::POST,
            "sys/rotate/recovery/verify",
            Some(token),
            Some(json!({ "key": key.expose(), "nonce": nonce })),
        )?;
        Ok(v["data"]["complete"].as_bool() == Some(true))
    }

    /// A root token from `keys` (unseal or recovery shares) through
    /// `sys/generate-root` with a one-time pad.
    pub fn generate_root(&self, keys: &[Secret]) -> Result<Secret, VaultError> {
        // A stale attempt would swallow the shares: cancel it first.
        let _ = self.ok(reqwest::Method::DELETE, "sys/generate-root/attempt", None, None);
        let start = self.ok(reqwest::Method::PUT, "sys/generate-root/attempt", None, Some(json!({})))?;
        let nonce = start["nonce"].as_str().unwrap_or_default().to_owned();
        let otp = start["otp"].as_str().unwrap_or_default().to_owned();
        let mut last = Value::Null;
        for k in keys {
            last = self.ok(
                reqwest::Method::PUT,
                "sys/generate-root/update",
                None,
                Some(json!({ "key": k.expose(), "nonce": nonce })),
            )?;
            if last["complete"].as_bool() == Some(true) {
                break;
            }
        }
        let encoded = last["encoded_token"].as_str().unwrap_or_default();
        decode_root(encoded, &otp).ok_or_else(|| VaultError::Api {
            call: "PUT /v1/sys/generate-root/update".to_owned(),
            reason: "the attempt did not complete with the shares given".to_owned(),
        })
    }

    pub fn put_policy(&self, token: &Secret, name: &str, policy: &str) -> Result<(), VaultError> {
        self.ok(
            reqwest::Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(token),
            Some(json!({ "policy": policy })),
        )
        .map(drop)
    }

    pub fn mount_kv(&self, token: &Secret, path: &str) -> Result<(), VaultError> {
        self.ok(
            reqwest::Method::POST,
            &format!("sys/mounts/{path}"),
            Some(token),
            Some(json!({ "type": "kv" })),
        )
        .map(drop)
    }

    /// An orphan token with a chosen ID and one policy.
    pub fn create_token(&self, token: &Secret, id: &Secret, policy: &str, period: &str) -> Result<(), VaultError> {
        let body = json!({
            "id": id.expose(),
            "policies": [policy],
            "no_default_policy": true,
            "display_name": policy,
            "period": period,
        });
        self.ok(
            reqwest::Method::POST,
            "auth/token/create-orphan",
            Some(token),
            Some(body),
        )
        .map(drop)
    }

    /// `auth/token/lookup-self`: the token's accessor and policies.
    pub fn lookup_self(&self, token: &Secret) -> Result<(String, Vec<String>), VaultError> {
        let v = self.ok(reqwest::Method::GET, "auth/token/lookup-self", Some(token), None)?;
        let accessor = v["data"]["accessor"].as_str().unwrap_or_default().to_owned();
        let policies = serde_json::from_value(v["data"]["policies"].clone()).unwrap_or_default();
        Ok((accessor, policies))
    }

    pub fn revoke_self(&self, token: &Secret) -> Result<(), VaultError> {
        self.ok(reqwest::Method::POST, "auth/token/revoke-self", Some(token), None)
            .map(drop)
    }

    pub fn revoke_accessor(&self, token: &Secret, accessor: &str) -> Result<(), VaultError> {
        self.ok(
            reqwest::Method::POST,
            "auth/token/revoke-accessor",
            Some(token),
            Some(json!({ "accessor": accessor })),
        )
        .map(drop)
    }

    pub fn write_canary(&self, token: &Secret, value: &str) -> Result<(), VaultError> {
        self.ok(
            reqwest::Method::POST,
            super::render::CANARY_PATH,
            Some(token),
            Some(json!({ "value": value })),
        )
        .map(drop)
    }

    /// A raft snapshot call: raw bytes both ways, with the long timeout.
    /// The call's name (for errors) and the answer, whatever its status.
    fn snapshot_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &Secret,
        body: Option<Vec<u8>>,
    ) -> Result<(String, reqwest::blocking::Response), VaultError> {
        let call = format!("{method} /v1/{path}");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.base))
            .header("X-Vault-Token", token.expose())
            .timeout(SNAPSHOT_TIMEOUT);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().map_err(|e| VaultError::Api {
            call: call.clone(),
            reason: reason(&e),
        })?;
        Ok((call, resp))
    }

    /// `GET sys/storage/raft/snapshot`, streamed into `out`; the bytes written.
    pub fn snapshot_into(&self, token: &Secret, out: &mut dyn std::io::Write) -> Result<u64, VaultError> {
        let (call, mut resp) = self.snapshot_call(reqwest::Method::GET, "sys/storage/raft/snapshot", token, None)?;
        if resp.status().as_u16() != 200 {
            return Err(refused(call, resp));
        }
        resp.copy_to(out).map_err(|e| VaultError::Api {
            call,
            reason: reason(&e),
        })
    }

    /// `POST sys/storage/raft/snapshot-force`: replace all data with `snapshot`.
    pub fn restore(&self, token: &Secret, snapshot: Vec<u8>) -> Result<(), VaultError> {
        let (call, resp) = self.snapshot_call(
            reqwest::Method::POST,
            "sys/storage/raft/snapshot-force",
            token,
            Some(snapshot),
        )?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(refused(call, resp))
        }
    }

    /// `PUT sys/init` of a fresh Vault (the throw-away Vault of a restore
    /// test only): its root token, and its one unseal key when `shamir`
    /// (auto-unseal: a recovery key, not kept).
    pub fn init_throwaway(&self, shamir: bool) -> Result<(Secret, Option<Secret>), VaultError> {
        let body = if shamir {
            json!({ "secret_shares": 1, "secret_threshold": 1 })
        } else {
            json!({ "recovery_shares": 1, "recovery_threshold": 1 })
        };
        // Raft elects its leader during init: seconds on a loaded host.
        let v = self.ok_within(
            reqwest::Method::PUT,
            "sys/init",
            None,
            Some(body),
            Duration::from_secs(60),
        )?;
        let field = |name: &str| {
            let value = if name == "keys" { &v[name][0] } else { &v[name] };
            value
                .as_str()
                .filter(|t| !t.is_empty())
                .map(|t| Secret(t.to_owned()))
                .ok_or_else(|| VaultError::Api {
                    call: "PUT /v1/sys/init".to_owned(),
                    reason: format!("no {name} in the answer"),
                })
        };
        let root = field("root_token")?;
        let key = if shamir { Some(field("keys")?) } else { None };
        Ok((root, key))
    }

    pub fn read_canary(&self, token: &Secret) -> Result<String, VaultError> {
        let v = self.ok(reqwest::Method::GET, super::render::CANARY_PATH, Some(token), None)?;
        Ok(v["data"]["value"].as_str().unwrap_or_default().to_owned())
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value, call: &str) -> Result<T, VaultError> {
    serde_json::from_value(v).map_err(|e| VaultError::Api {
        call: call.to_owned(),
        reason: format!("unexpected answer: {e}"),
    })
}

/// A non-2xx answer as an error carrying Vault's own `errors`.
fn refused(call: String, resp: reqwest::blocking::Response) -> VaultError {
    let status = resp.status().as_u16();
    let value = serde_json::from_str(&resp.text().unwrap_or_default()).unwrap_or(Value::Null);
    VaultError::Refused {
        call,
        status,
        errors: errors_of(&value),
    }
}

/// Vault's `{"errors": [...]}`, joined.
fn errors_of(v: &Value) -> String {
    match v["errors"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("; "),
        _ => "no error text".to_owned(),
    }
}

fn reason(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The root token from generate-root: base64 (raw or padded) XOR the OTP.
fn decode_root(encoded: &str, otp: &str) -> Option<Secret> {
    use base64::Engine as _;
    if encoded.is_empty() || otp.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()?;
    if bytes.len() != otp.len() {
        return None;
    }
    let token: Vec<u8> = bytes.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(token).ok().map(Secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64::Engine as _;

    #[test]
    fn a_generated_root_token_is_decoded_with_its_pad() {
        let otp = "abcdefghijklmnopqrstuvwxyz01";
        let token = "s.0123456789abcdefghijklmnop";
        assert_eq!(otp.len(), token.len());
        let x: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(x);
        assert_eq!(decode_root(&enc, otp).unwrap().expose(), token);
        assert!(decode_root("", otp).is_none());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret("s.topsecret".to_owned());
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
