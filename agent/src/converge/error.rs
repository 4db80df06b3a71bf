//! What can go wrong in the engine, typed: the API maps each variant to one
//! HTTP status and JSON `kind` (agent/src/api/error.rs).

use bulwark_model::ValidationErrors;

use crate::module::ModuleError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    #[error(
        "generation {generation} awaits confirmation until its window closes; run `bulwarkctl confirm` or wait for the revert"
    )]
    ConfirmPending { generation: u64 },
    #[error("confirm window {secs}s is outside 1..={max} seconds")]
    ConfirmWindow { secs: u64, max: u64 },
    #[error("no apply is waiting for confirmation")]
    NothingToConfirm,
    #[error("generation {pending} awaits confirmation, not generation {asked}; nothing was confirmed (see `bulwarkctl status`)")]
    ConfirmOther { asked: u64, pending: u64 },
    #[error("generation {number} does not exist; see `bulwarkctl generations`")]
    NoSuchGeneration { number: u64 },
    #[error("there is no earlier generation to roll back to")]
    NoEarlierGeneration,
    #[error("no module named {module:?}")]
    NoSuchModule { module: String },
    #[error("{module} cannot load its state, so nothing was changed: {reason}")]
    ModuleBroken { module: &'static str, reason: String },
    /// A module failed while the host was being changed; what the engine
    /// then put back is said exactly.
    #[error("{failed}; {}", restore_text(.restored, .not_restored, .target))]
    Apply {
        #[source]
        failed: ModuleError,
        /// Modules put back to `target`, in order.
        restored: Vec<&'static str>,
        /// Modules that could not be put back, with why.
        not_restored: Vec<(&'static str, String)>,
        /// What they were put back to: "generation 7" or "the failsafe ruleset".
        target: String,
    },
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("state on disk: {0}")]
    State(#[from] StateError),
}

fn restore_text(restored: &[&'static str], not_restored: &[(&'static str, String)], target: &str) -> String {
    let mut parts = Vec::new();
    if !restored.is_empty() {
        parts.push(format!("{} put back to {target}", restored.join(", ")));
    }
    if !not_restored.is_empty() {
        let failed: Vec<String> = not_restored.iter().map(|(m, e)| format!("{m} ({e})")).collect();
        parts.push(format!("could not put back {}", failed.join(", ")));
    }
    if parts.is_empty() {
        "nothing had been changed".to_owned()
    } else {
        parts.join("; ")
    }
}
