//! WireGuard on the module contract.
//!
//! `[wireguard]` absent means unmanaged: the interface Bulwark created is
//! removed (wireguard-go stopped, or the kernel device deleted); the server
//! key and the peer store stay, so bringing the section back restores every
//! peer. Peers are managed through actions (`add-peer`, `remove-peer`,
//! `peers`), not through the profile.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bulwark_model::api::{
    AddPeerRequest, Change, ChangeOp, Check, Level, ModuleStatus, PeerInfo, PeerRef, RemovePeerRequest,
    RenewPeerRequest, WireGuardStatus,
};
use bulwark_model::Profile;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{ErrorClass as WgClass, WgError, WireGuard};
use crate::audit::{self, Outcome};
use crate::clock::now_unix;
use crate::module::{ActionResult, ActionRole, Artifacts, Cx, DriftEvents, ErrorClass, Module, ModuleError};

pub const NAME: &str = "wireguard";
/// How often peers are checked for expiry at the latest; a peer due
/// sooner is checked when it is due.
const EXPIRY_EVERY: Duration = Duration::from_secs(10);

impl From<WgError> for ModuleError {
    fn from(e: WgError) -> ModuleError {
        let class = match e.class() {
            WgClass::BadRequest => ErrorClass::BadRequest,
            WgClass::Conflict => ErrorClass::Conflict,
            WgClass::NotFound => ErrorClass::NotFound,
            WgClass::Internal if matches!(e, WgError::State(_) | WgError::ServerKey { .. }) => ErrorClass::State,
            WgClass::Internal => ErrorClass::Failed,
        };
        ModuleError::new(NAME, class, e)
    }
}

/// The peer list of the last status, shared with the metrics and the
/// engine's published view: built once per status, never copied.
type PeerList = Arc<Mutex<Arc<Vec<PeerInfo>>>>;

#[derive(Debug, Default)]
pub struct WireGuardModule {
    /// Key and peer store, once loaded.
    wg: Option<WireGuard>,
    /// The interface this daemon brought up last, to tear down when the
    /// profile drops it or renames it.
    managed: Option<String>,
    next_expiry: Option<Instant>,
    peers_gauge: Gauge,
    peer_list: PeerList,
}

/// The per-peer series, written from the last status's peer list when
/// Prometheus scrapes rather than kept up to date at every status.
#[derive(Debug)]
struct PeerSeries(PeerList);

impl Collector for PeerSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let list = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // A removed or disabled peer has none of these series; one that
        // never completed a handshake has no handshake sample.
        let enabled: Vec<&PeerInfo> = list.iter().filter(|p| !p.disabled).collect();
        if enabled.is_empty() {
            return Ok(());
        }
        let handshakes: Vec<(&str, i64)> = enabled
            .iter()
            .filter_map(|p| Some((p.name.as_str(), i64::try_from(p.last_handshake?).unwrap_or(i64::MAX))))
            .collect();
        if !handshakes.is_empty() {
            let mut family = encoder.encode_descriptor(
                "wireguard_peer_last_handshake_timestamp",
                "Unix time of the peer's last WireGuard handshake (absent: none yet)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (peer, t) in handshakes {
                family.encode_family(&[("peer", peer)])?.encode_gauge(&t)?;
            }
        }
        // WireGuard's own counters: they restart with the peer's session on
        // the device, which Prometheus's rate() reads as a reset.
        for (name, help, bytes) in [
            (
                "wireguard_peer_received",
                "Bytes received from the peer (WireGuard's counter; resets when its session on the device restarts)",
                (|p: &PeerInfo| p.rx_bytes) as fn(&PeerInfo) -> u64,
            ),
            (
                "wireguard_peer_sent",
                "Bytes sent to the peer (WireGuard's counter; resets when its session on the device restarts)",
                |p: &PeerInfo| p.tx_bytes,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Counter)?;
            for p in &enabled {
                family
                    .encode_family(&[("peer", p.name.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&bytes(p), None)?;
            }
        }
        Ok(())
    }
}

impl WireGuardModule {
    pub fn new() -> WireGuardModule {
        WireGuardModule::default()
    }

    /// The peers as of the last [`Module::status`], with their readings.
    pub fn peer_list(&self) -> Arc<Vec<PeerInfo>> {
        self.peer_list.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The loaded state, or the error every call gets until it loads.
    fn wg(&mut self) -> Result<&mut WireGuard, ModuleError> {
        self.wg.as_mut().ok_or_else(|| {
            ModuleError::new(
                NAME,
                ErrorClass::State,
                "the WireGuard key and peer store are not loaded",
            )
        })
    }

    /// PID of the wireguard-go this daemon supervises, if any.
    pub fn userspace_pid(&self) -> Option<u32> {
        self.wg.as_ref().and_then(WireGuard::userspace_pid)
    }

    fn section(profile: Option<&Profile>) -> Result<&bulwark_model::profile::WireGuard, ModuleError> {
        profile.and_then(|p| p.wireguard.as_ref()).ok_or_else(|| {
            ModuleError::new(
                NAME,
                ErrorClass::Conflict,
                "the profile in force has no [wireguard] section; apply one first",
            )
        })
    }

    fn peer_message(p: &bulwark_model::api::PeerInfo) -> String {
        format!("peer {} {} key {}", p.name, p.address, p.public_key)
    }

    fn expiry_text(p: &bulwark_model::api::PeerInfo) -> String {
        p.expires.map_or_else(|| "never".to_owned(), |t| t.to_string())
    }
}

impl Module for WireGuardModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn load(&mut self, cx: &mut Cx<'_>) -> Result<(), ModuleError> {
        if self.wg.is_some() {
            return Ok(());
        }
        let (wg, created) = WireGuard::open(cx.host)?;
        if created {
            cx.event(
                &audit::WG_KEY_CREATED,
                Outcome::Success,
                format!("public key {}", wg.public_key()),
            );
        }
        self.wg = Some(wg);
        Ok(())
    }

    fn render(&self, profile: &Profile) -> Artifacts {
        match &profile.wireguard {
            Some(w) => Artifacts::from([(
                "interface.json".to_owned(),
                serde_json::to_string_pretty(w).unwrap_or_default(),
            )]),
            None => Artifacts::new(),
        }
    }

    fn plan(
        &mut self,
        _cx: &mut Cx<'_>,
        profile: &Profile,
        current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError> {
        let want = profile.wireguard.as_ref();
        let old = self
            .managed
            .clone()
            .or_else(|| current.and_then(|c| c.wireguard.as_ref()).map(|w| w.interface.clone()));
        let wg = self.wg()?;
        let mut changes = wg.plan(want);
        if let Some(old) = old.filter(|o| want.is_none_or(|w| w.interface != *o)) {
            if wg.interface_exists(&old) {
                changes.push(Change::new(
                    NAME,
                    ChangeOp::Remove,
                    format!("interface {old} (unmanaged now; the server key and peers stay stored)"),
                ));
            }
        }
        Ok(changes)
    }

    fn check(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        self.wg()?;
        match &profile.wireguard {
            Some(w) => Ok(super::backend::check(&w.interface, w.backend)?),
            None => Ok(()),
        }
    }

    fn apply(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        let old = self.managed.take();
        let wg = self.wg()?;
        if let Some(old) = old.filter(|o| profile.wireguard.as_ref().is_none_or(|w| w.interface != *o)) {
            if wg.teardown(&old)? {
                log::info!(iface = old.as_str(); "WireGuard interface {old} removed: the profile no longer manages it");
            }
        }
        if let Some(w) = &profile.wireguard {
            wg.apply(w)?;
            if let Some(backend) = wg.backend_in_use() {
                log::info!(interface = w.interface.as_str(), backend; "WireGuard {} up on the {backend} backend", w.interface);
            }
            self.managed = Some(w.interface.clone());
        }
        Ok(())
    }

    fn observe(&mut self, _cx: &mut Cx<'_>, current: &Profile) -> Result<Vec<String>, ModuleError> {
        let Some(w) = &current.wireguard else {
            return Ok(Vec::new());
        };
        Ok(self.wg()?.drift(w)?.into_iter().collect())
    }

    fn drift_events(&self) -> DriftEvents {
        DriftEvents {
            repaired: &audit::WG_DRIFT_REPAIRED,
            detected: &audit::WG_DRIFT_DETECTED,
            level: Level::Warning,
        }
    }

    fn health(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> Vec<Check> {
        let (Some(w), Some(wg)) = (current.and_then(|c| c.wireguard.as_ref()), self.wg.as_ref()) else {
            return Vec::new();
        };
        wg.health(w)
    }

    fn status(&mut self, _cx: &mut Cx<'_>, current: Option<&Profile>) -> ModuleStatus {
        let section = current.and_then(|c| c.wireguard.as_ref());
        let (Some(w), Some(wg)) = (section, self.wg.as_ref()) else {
            *self.peer_list.lock().unwrap_or_else(PoisonError::into_inner) = Arc::default();
            self.peers_gauge.set(0);
            return ModuleStatus {
                module: NAME.to_owned(),
                managed: section.is_some(),
                level: if section.is_some() { Level::Critical } else { Level::Ok },
                summary: if section.is_some() { "not loaded" } else { "unmanaged" }.to_owned(),
                details: serde_json::Value::Null,
            };
        };
        let peer_list = Arc::new(wg.peers(Some(w)).unwrap_or_default());
        self.peers_gauge.set(i64::try_from(peer_list.len()).unwrap_or(i64::MAX));
        let detail = WireGuardStatus {
            interface: w.interface.clone(),
            backend: wg.backend_in_use().unwrap_or("down").to_owned(),
            address: w.address.to_string(),
            listen_port: w.listen_port,
            public_key: wg.public_key(),
            peers: peer_list.len(),
            disabled_peers: peer_list.iter().filter(|p| p.disabled).count(),
        };
        *self.peer_list.lock().unwrap_or_else(PoisonError::into_inner) = peer_list;
        ModuleStatus {
            module: NAME.to_owned(),
            managed: true,
            level: Level::Ok,
            summary: format!(
                "{} {} port {} ({} backend), {} peer(s)",
                detail.interface, detail.address, detail.listen_port, detail.backend, detail.peers
            ),
            details: serde_json::to_value(&detail).unwrap_or_default(),
        }
    }

    fn tick(&mut self, cx: &mut Cx<'_>, current: Option<&Profile>) -> Option<Instant> {
        let now = Instant::now();
        if self.next_expiry.is_some_and(|t| now < t) {
            return self.next_expiry;
        }
        let mut next = now + EXPIRY_EVERY;
        if let (Some(w), Some(wg)) = (current.and_then(|c| c.wireguard.as_ref()), self.wg.as_mut()) {
            let unix = now_unix();
            match wg.expire(w, unix) {
                Ok(expired) => {
                    for p in expired {
                        cx.event(&audit::WG_PEER_EXPIRED, Outcome::Success, Self::peer_message(&p));
                    }
                }
                Err(e) => log::error!(error:display = e; "could not expire peers"),
            }
            if let Some(due) = wg.next_expiry() {
                // At least a second on: one that failed to expire is retried, not spun on.
                next = next.min(now + Duration::from_secs(due.saturating_sub(unix).max(1)));
            }
        }
        self.next_expiry = Some(next);
        self.next_expiry
    }

    fn actions(&self) -> &'static [(&'static str, ActionRole)] {
        &[
            ("peers", ActionRole::Read),
            ("add-peer", ActionRole::Admin),
            ("remove-peer", ActionRole::Admin),
            ("renew-peer", ActionRole::Admin),
            ("disable-peer", ActionRole::Admin),
            ("enable-peer", ActionRole::Admin),
        ]
    }

    fn action(
        &mut self,
        cx: &mut Cx<'_>,
        current: Option<&Profile>,
        action: &str,
        body: serde_json::Value,
    ) -> ActionResult {
        let bad = |e: serde_json::Error| ModuleError::new(NAME, ErrorClass::BadRequest, e);
        // A peer added or renewed may expire before the next planned check.
        self.next_expiry = None;
        match action {
            "peers" => {
                let section = current.and_then(|c| c.wireguard.as_ref());
                let peers = self.wg()?.peers(section)?;
                Ok(serde_json::to_value(peers).unwrap_or_default())
            }
            "add-peer" => {
                let req: AddPeerRequest = serde_json::from_value(body).map_err(bad)?;
                let w = Self::section(current)?;
                let added = self.wg()?.add_peer(w, req)?;
                cx.event(&audit::WG_PEER_ADDED, Outcome::Success, Self::peer_message(&added.peer));
                Ok(serde_json::to_value(added).unwrap_or_default())
            }
            "remove-peer" => {
                let req: RemovePeerRequest = serde_json::from_value(body).map_err(bad)?;
                let w = Self::section(current)?;
                let removed = self.wg()?.remove_peer(w, &req.name)?;
                cx.event(&audit::WG_PEER_REMOVED, Outcome::Success, Self::peer_message(&removed));
                Ok(serde_json::to_value(removed).unwrap_or_default())
            }
            "renew-peer" => {
                let req: RenewPeerRequest = serde_json::from_value(body).map_err(bad)?;
                let w = Self::section(current)?;
                let renewed = self.wg()?.renew_peer(w, &req.name, req.expires.as_deref())?;
                let msg = format!(
                    "{}; expires {}",
                    Self::peer_message(&renewed),
                    Self::expiry_text(&renewed)
                );
                cx.event(&audit::WG_PEER_RENEWED, Outcome::Success, msg);
                Ok(serde_json::to_value(renewed).unwrap_or_default())
            }
            "disable-peer" | "enable-peer" => {
                let req: PeerRef = serde_json::from_value(body).map_err(bad)?;
                let w = Self::section(current)?;
                let disable = action == "disable-peer";
                let was = self
                    .wg()?
                    .peers(None)?
                    .into_iter()
                    .find(|p| p.name == req.name)
                    .map(|p| p.disabled);
                let peer = self.wg()?.set_disabled(w, &req.name, disable)?;
                if was != Some(disable) {
                    let kind = if disable {
                        &audit::WG_PEER_DISABLED
                    } else {
                        &audit::WG_PEER_ENABLED
                    };
                    cx.event(kind, Outcome::Success, Self::peer_message(&peer));
                }
                Ok(serde_json::to_value(peer).unwrap_or_default())
            }
            _ => Err(ModuleError::new(
                NAME,
                ErrorClass::NotFound,
                format!("no action {action:?}"),
            )),
        }
    }

    fn register_metrics(&mut self, registry: &mut Registry) {
        registry.register("wireguard_peers", "WireGuard admin peers", self.peers_gauge.clone());
        registry.register_collector(Box::new(PeerSeries(self.peer_list.clone())));
    }

    fn shutdown(&mut self) {
        if let Some(wg) = self.wg.as_mut() {
            wg.shutdown();
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
