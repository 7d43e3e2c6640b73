//! The engine: the current policy snapshot, swapped atomically on reload.

use std::sync::Arc;

use arc_swap::ArcSwap;
use warden_core::Decision;

use crate::error::LoadErrors;
use crate::request::ActionRequest;
use crate::snapshot::PolicySnapshot;
use crate::source::PolicySources;

/// Holds the policy set in force. Readers never block: each evaluation takes the snapshot
/// current at its start, and a reload swaps in a new one for the very next call (PE-6). A
/// set that fails to load never replaces the running one.
#[derive(Debug)]
pub struct Engine {
    current: ArcSwap<PolicySnapshot>,
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The new set is in force.
    Applied {
        from: String,
        to: Arc<PolicySnapshot>,
    },
    /// The sources are identical to the running set; nothing changed.
    Unchanged,
}

impl Engine {
    pub fn new(snapshot: PolicySnapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    /// Decides with the snapshot in force now.
    pub fn evaluate(&self, req: &ActionRequest) -> Decision {
        self.current.load().evaluate(req)
    }

    /// Loads `sources` and, only if they load cleanly, puts them in force.
    pub fn reload(&self, sources: &PolicySources) -> Result<Reload, LoadErrors> {
        let old = self.current.load();
        if sources.version() == old.version() {
            return Ok(Reload::Unchanged);
        }
        let new = Arc::new(PolicySnapshot::load(sources)?);
        let from = old.version().to_owned();
        self.current.store(Arc::clone(&new));
        Ok(Reload::Applied { from, to: new })
    }
}
