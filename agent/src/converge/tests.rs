//! The engine in-process, with fake modules that record every call and fail
//! on command: restore-on-failure, the truthful error, dry runs, broken
//! state at start-up, sealed generations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::sync::{Arc, Mutex};

use bulwark_model::api::{ApplyRequest, Change, ChangeOp, Check, Level, ModuleStatus};
use bulwark_model::Profile;

use super::*;
use crate::module::{Artifacts, DriftEvents, ErrorClass};

/// What every fake module did, in order: "a apply p2", "b check p2", ...
type Log = Arc<Mutex<Vec<String>>>;

#[derive(Default, Clone)]
struct Faults {
    /// Profile names whose apply fails.
    apply: Vec<String>,
    /// The load error, if any.
    load: Option<String>,
    /// The level of the module's one health check.
    check: Level,
    /// How often its health was asked.
    health_calls: usize,
}

struct Fake {
    name: &'static str,
    log: Log,
    faults: Arc<Mutex<Faults>>,
    /// The profile name last applied: the "host state" of this module.
    state: Option<String>,
}

impl Fake {
    fn note(&self, what: &str, profile: &str) {
        self.log.lock().unwrap().push(format!("{} {what} {profile}", self.name));
    }
}

impl Module for Fake {
    fn name(&self) -> &'static str {
        self.name
    }

    fn load(&mut self, _cx: &mut Cx<'_>) -> Result<(), ModuleError> {
        match self.faults.lock().unwrap().load.clone() {
            Some(e) => Err(ModuleError::new(self.name, ErrorClass::State, e)),
            None => Ok(()),
        }
    }

    fn render(&self, profile: &Profile) -> Artifacts {
        Artifacts::from([("state".to_owned(), profile.name.clone())])
    }

    fn plan(
        &mut self,
        _cx: &mut Cx<'_>,
        profile: &Profile,
        _current: Option<&Profile>,
    ) -> Result<Vec<Change>, ModuleError> {
        Ok(if self.state.as_deref() == Some(profile.name.as_str()) {
            Vec::new()
        } else {
            vec![Change::new(
                self.name,
                ChangeOp::Change,
                format!("{:?} -> {}", self.state, profile.name),
            )]
        })
    }

    fn check(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        self.note("check", &profile.name);
        Ok(())
    }

    fn apply(&mut self, _cx: &mut Cx<'_>, profile: &Profile) -> Result<(), ModuleError> {
        self.note("apply", &profile.name);
        if self.faults.lock().unwrap().apply.contains(&profile.name) {
            return Err(ModuleError::new(
                self.name,
                ErrorClass::Failed,
                format!("refuses {}", profile.name),
            ));
        }
        self.state = Some(profile.name.clone());
        Ok(())
    }

    fn observe(&mut self, _cx: &mut Cx<'_>, current: &Profile) -> Result<Vec<String>, ModuleError> {
        Ok(match &self.state {
            Some(s) if *s == current.name => Vec::new(),
            other => vec![format!("holds {other:?}")],
        })
    }

    fn drift_events(&self) -> DriftEvents {
        DriftEvents {
            repaired: &audit::FW_DRIFT_REPAIRED,
            detected: &audit::FW_DRIFT_DETECTED,
            level: Level::Warning,
        }
    }

    fn health(&mut self, _cx: &mut Cx<'_>, _current: Option<&Profile>) -> Vec<Check> {
        let mut faults = self.faults.lock().unwrap();
        faults.health_calls += 1;
        vec![Check {
            name: self.name.to_owned(),
            level: faults.check,
            reason: format!("holds {:?}", self.state),
            ..Check::default()
        }]
    }

    fn status(&mut self, _cx: &mut Cx<'_>, _current: Option<&Profile>) -> ModuleStatus {
        ModuleStatus {
            module: self.name.to_owned(),
            managed: true,
            summary: format!("{:?}", self.state),
            ..ModuleStatus::default()
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    host: Host,
    log: Log,
    faults: Vec<Arc<Mutex<Faults>>>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        Rig {
            _dir: dir,
            host,
            log: Log::default(),
            faults: (0..3).map(|_| Arc::default()).collect(),
        }
    }

    /// An engine over fake modules a, b, c (in that order), started with
    /// boot profile `boot`.
    fn engine(&self, boot: &str) -> Engine {
        let modules: Vec<Box<dyn Module>> = ["a", "b", "c"]
            .into_iter()
            .zip(&self.faults)
            .map(|(name, faults)| {
                Box::new(Fake {
                    name,
                    log: self.log.clone(),
                    faults: faults.clone(),
                    state: None,
                }) as Box<dyn Module>
            })
            .collect();
        let parts = Parts {
            modules,
            failsafe: Failsafe {
                port: 51820,
                installed: Vec::new(),
            },
            metrics: Arc::new(Metrics::new()),
            monitor: watch::channel(None).0,
        };
        let mut e = Engine::new(self.host.clone(), parts).unwrap();
        e.start(("boot.toml", &profile(boot))).unwrap();
        self.log.lock().unwrap().clear();
        e
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn profile(name: &str) -> String {
    format!("[profile]\nname = \"{name}\"\n")
}

fn apply(e: &mut Engine, name: &str) -> Result<ApplyResponse, EngineError> {
    e.apply(
        ApplyRequest {
            profile: profile(name),
            source: Some(format!("{name}.toml")),
            dry_run: false,
            confirm_secs: None,
            force: false,
        },
        0,
    )
}

#[test]
fn a_failure_in_module_k_puts_back_every_module_up_to_k() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    rig.faults[2].lock().unwrap().apply.push("p2".to_owned());
    let err = apply(&mut e, "p2").unwrap_err();
    assert_eq!(
        rig.calls(),
        [
            "a apply p2",
            "b apply p2",
            "c apply p2",
            "a apply p1",
            "b apply p1",
            "c apply p1"
        ]
    );
    match &err {
        EngineError::Apply {
            failed,
            restored,
            not_restored,
            target,
        } => {
            assert_eq!(failed.module, "c");
            assert_eq!(restored, &["a", "b", "c"]);
            assert!(not_restored.is_empty());
            assert_eq!(target, "generation 1");
        }
        other => panic!("expected Apply, got {other:?}"),
    }
    assert_eq!(err.to_string(), "c: refuses p2; a, b, c put back to generation 1");
    assert_eq!(e.current_number(), Some(1));
    let last = e.audit().tail(1).unwrap().remove(0);
    assert_eq!(last.event, audit::CHG_FAILED.id);
    assert!(
        last.message.contains("a, b, c put back to generation 1"),
        "{}",
        last.message
    );
}

#[test]
fn a_module_that_cannot_be_put_back_is_named_with_its_reason() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    rig.faults[1].lock().unwrap().apply = vec!["p1".to_owned(), "p2".to_owned()];
    let err = apply(&mut e, "p2").unwrap_err();
    assert_eq!(rig.calls(), ["a apply p2", "b apply p2", "a apply p1", "b apply p1"]);
    assert_eq!(
        err.to_string(),
        "b: refuses p2; a put back to generation 1; could not put back b (b: refuses p1)"
    );
}

#[test]
fn the_first_apply_of_a_host_without_generations_falls_back_to_the_failsafe() {
    let rig = Rig::new();
    rig.faults[0].lock().unwrap().apply.push("p1".to_owned());
    let mut e = rig.engine("p1");
    assert_eq!(e.current_number(), None);
    rig.faults[0].lock().unwrap().apply.clear();
    rig.faults[1].lock().unwrap().apply.push("p2".to_owned());
    let err = apply(&mut e, "p2").unwrap_err();
    assert_eq!(
        rig.calls(),
        ["a apply p2", "b apply p2", "a apply (failsafe)", "b apply (failsafe)"]
    );
    assert!(err.to_string().ends_with("a, b put back to the failsafe"), "{err}");
}

#[test]
fn a_dry_run_checks_every_module_and_applies_nothing() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    let resp = e
        .apply(
            ApplyRequest {
                profile: profile("p2"),
                source: None,
                dry_run: true,
                confirm_secs: None,
                force: false,
            },
            0,
        )
        .unwrap();
    assert_eq!(rig.calls(), ["a check p2", "b check p2", "c check p2"]);
    assert!(!resp.changed);
    let modules: Vec<&str> = resp.plan.changes.iter().map(|c| c.module.as_str()).collect();
    assert_eq!(modules, ["a", "b", "c", "profile"]);
    assert_eq!(e.current_number(), Some(1));
}

#[test]
fn an_empty_plan_changes_nothing() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    let resp = apply(&mut e, "p1").unwrap();
    assert!(!resp.changed && resp.plan.is_empty());
    assert!(rig.calls().is_empty());
}

#[test]
fn a_module_whose_state_does_not_load_is_critical_and_blocks_no_other_at_start_up() {
    let rig = Rig::new();
    rig.faults[1].lock().unwrap().load = Some("peers.json is corrupt".to_owned());
    let mut e = rig.engine("p1");
    assert_eq!(e.current_number(), Some(1));
    let health = e.health();
    let b = health.checks.iter().find(|c| c.name == "b").unwrap();
    assert_eq!(b.level, Level::Critical);
    assert!(b.reason.contains("peers.json is corrupt"), "{b:?}");
    // An apply while it is broken changes nothing and says why.
    let err = apply(&mut e, "p2").unwrap_err();
    assert!(matches!(err, EngineError::ModuleBroken { module: "b", .. }), "{err}");
    assert!(rig.calls().is_empty());
    // Once repaired, the next apply loads it and goes through.
    rig.faults[1].lock().unwrap().load = None;
    apply(&mut e, "p2").unwrap();
    assert_eq!(rig.calls(), ["a apply p2", "b apply p2", "c apply p2"]);
}

#[test]
fn an_edited_generation_is_refused_at_start_up_and_the_one_before_restored() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    apply(&mut e, "p2").unwrap();
    drop(e);
    let meta = rig.host.state_dir().join("generations/000002/a/state");
    std::fs::write(&meta, "p-evil").unwrap();
    let e = rig.engine("p1");
    assert_eq!(e.current_number(), Some(1));
    let refused = e.audit().tail(10).unwrap();
    assert!(refused
        .iter()
        .any(|ev| ev.event == audit::CHG_REFUSED_GENERATION.id && ev.message.contains("generation 2")));
}

#[test]
fn a_first_module_that_fails_at_start_up_leaves_the_failsafe_and_the_api() {
    let rig = Rig::new();
    drop(rig.engine("p1"));
    rig.faults[0].lock().unwrap().apply.push("p1".to_owned());
    let mut e = rig.engine("p1");
    assert_eq!(e.current_number(), None);
    let health = e.health();
    assert_eq!(health.level, Level::Critical);
    assert!(
        health.checks.iter().any(|c| c.reason.contains("failsafe")),
        "{health:?}"
    );
}

#[test]
fn a_later_module_that_fails_at_start_up_is_critical_while_the_rest_converge() {
    let rig = Rig::new();
    drop(rig.engine("p1"));
    rig.faults[1].lock().unwrap().apply.push("p1".to_owned());
    let mut e = rig.engine("p1");
    assert_eq!(e.current_number(), Some(1));
    let b = e
        .health()
        .checks
        .into_iter()
        .find(|c| c.name == "b" && c.level == Level::Critical);
    assert!(b.is_some_and(|c| c.reason.contains("refuses p1")));
}

#[test]
fn a_rollback_plans_every_module_not_only_the_firewall() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    apply(&mut e, "p2").unwrap();
    let resp = e.rollback(None, 0).unwrap();
    assert!(resp.changed);
    let modules: Vec<&str> = resp.plan.changes.iter().map(|c| c.module.as_str()).collect();
    assert_eq!(modules, ["a", "b", "c", "profile"], "{:?}", resp.plan);
    assert_eq!(e.current_number(), Some(3));
}

#[test]
fn retention_keeps_the_newest_and_the_one_a_pending_confirmation_needs() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    let text = |n: usize| format!("[profile]\nname = \"p{n}\"\nkeep_generations = 3\n");
    for n in 2..=6 {
        e.apply(
            ApplyRequest {
                profile: text(n),
                source: None,
                dry_run: false,
                confirm_secs: None,
                force: false,
            },
            0,
        )
        .unwrap();
    }
    assert_eq!(e.store.numbers().unwrap(), [4, 5, 6]);
    e.apply(
        ApplyRequest {
            profile: text(7),
            source: None,
            dry_run: false,
            confirm_secs: Some(600),
            force: false,
        },
        0,
    )
    .unwrap();
    for n in 8..=9 {
        // Blocked while the window is open.
        assert!(e
            .apply(
                ApplyRequest {
                    profile: text(n),
                    source: None,
                    dry_run: false,
                    confirm_secs: None,
                    force: false
                },
                0
            )
            .is_err());
    }
    assert_eq!(e.store.numbers().unwrap(), [5, 6, 7]);
    assert_eq!(e.pending.as_ref().and_then(|p| p.revert_to), Some(6));
}

#[test]
fn confirm_with_a_generation_keeps_only_that_one() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    let resp = e
        .apply(
            ApplyRequest {
                profile: profile("p2"),
                source: None,
                dry_run: false,
                confirm_secs: Some(600),
                force: false,
            },
            0,
        )
        .unwrap();
    let pending = resp.generation.unwrap();
    let err = e.confirm(0, Some(pending + 1)).unwrap_err();
    assert!(
        matches!(err, EngineError::ConfirmOther { asked, pending: p } if asked == pending + 1 && p == pending),
        "{err}"
    );
    assert!(e.pending.is_some(), "a refused confirm must leave the window open");
    assert!(rig.host.state_dir().join("pending-confirm.json").exists());
    let ok = e.confirm(0, Some(pending)).unwrap();
    assert_eq!(ok.generation, Some(pending));
    assert_eq!(ok.digest.as_deref(), Some(profile_digest(&profile("p2")).as_str()));
    assert!(e.pending.is_none());
    assert!(matches!(
        e.confirm(0, Some(pending)),
        Err(EngineError::NothingToConfirm)
    ));
}

#[test]
fn apply_answers_with_the_digest_of_the_text_it_was_sent() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    let resp = apply(&mut e, "p2").unwrap();
    let digest = profile_digest(&profile("p2"));
    assert_eq!(resp.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(e.status().digest.as_deref(), Some(digest.as_str()));
    assert_eq!(e.generations().unwrap().last().unwrap().digest, digest);
}

#[test]
fn settings_are_planned_one_by_one_with_both_values() {
    let old = Profile::parse("a", "[profile]\nname = \"a\"\n").unwrap();
    let new = Profile::parse(
        "b",
        "[profile]\nname = \"b\"\ndrift = \"report\"\n[monitoring]\nlisten = \"127.0.0.1:9100\"\n",
    )
    .unwrap();
    let changes = setting_changes(&old, &new, &[]);
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    // In the model's key order (alphabetical).
    assert_eq!(
        lines,
        [
            "~ profile: profile.drift: repair -> report",
            "+ profile: monitoring.listen: 127.0.0.1:9100",
            "~ profile: profile.name: a -> b",
        ]
    );
    assert_eq!(changes[0].before, Some(serde_json::json!("repair")));
    assert_eq!(changes[1].op, ChangeOp::Add);
    assert_eq!(changes[1].after, Some(serde_json::json!("127.0.0.1:9100")));
    // Sections a module already planned are left to its own diff.
    assert!(setting_changes(&old, &new, &["monitoring", "profile"])
        .iter()
        .all(|c| c.what.starts_with("profile.")));
}

#[test]
fn the_boot_profile_is_compared_with_what_is_in_force() {
    let rig = Rig::new();
    let mut e = rig.engine("p1");
    assert_eq!(e.status().boot_profile, None, "no file, no entry");
    let path = rig.host.default_profile();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // The boot profile was given as text; the file is what an operator edits.
    std::fs::write(&path, profile("p1")).unwrap();
    let b = e.status().boot_profile.unwrap();
    assert!(!b.differs, "{b:?}");
    std::fs::write(&path, format!("# a comment\n{}", profile("p1"))).unwrap();
    let b = e.status().boot_profile.unwrap();
    assert!(!b.differs && b.reason.contains("text differs"), "{b:?}");
    std::fs::write(&path, profile("p9")).unwrap();
    let b = e.status().boot_profile.unwrap();
    assert!(b.differs && b.reason.contains("p9"), "{b:?}");
    assert_eq!(b.digest, profile_digest(&profile("p9")));
    std::fs::write(&path, "[profile]\nnom = 1\n").unwrap();
    assert!(e.status().boot_profile.unwrap().differs);
}

#[test]
fn a_report_asks_each_module_once_and_raises_its_status_to_its_worst_check() {
    let r = Rig::new();
    let mut e = r.engine("p1");
    r.faults[1].lock().unwrap().check = Level::Critical;
    let asked = || {
        r.faults
            .iter()
            .map(|f| f.lock().unwrap().health_calls)
            .collect::<Vec<_>>()
    };
    let before = asked();
    let (status, health) = e.report();
    let after: Vec<usize> = asked().iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        after,
        [1, 1, 1],
        "health asked once per module for status and health together"
    );
    let levels: Vec<Level> = status.modules.iter().map(|m| m.level).collect();
    assert_eq!(levels, [Level::Ok, Level::Critical, Level::Ok]);
    assert_eq!(status.health, Level::Critical);
    let modules: Vec<(&str, Level)> = health
        .checks
        .iter()
        .filter(|c| c.name == c.module)
        .map(|c| (c.module.as_str(), c.level))
        .collect();
    assert_eq!(modules, [("a", Level::Ok), ("b", Level::Critical), ("c", Level::Ok)]);
}
