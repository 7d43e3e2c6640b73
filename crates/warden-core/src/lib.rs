//! Warden's domain values: the identifiers, actions and decisions that every other crate
//! speaks in.
//!
//! This crate does no I/O, starts no threads and holds no state. Values are parsed once at
//! the edge ("parse, don't validate") so that an [`AgentId`] or a [`ToolRef`] in hand is
//! always well formed. A [`Decision`] is a value with reasons, never a bool: the audit
//! record and every protocol response are built from it.

mod action;
mod agent;
mod autonomy;
mod decision;
mod ids;

pub use action::ActionKind;
pub use agent::{AgentKey, AgentRecord, AgentState, NewAgent, PublicJwk, UnknownState};
pub use autonomy::AutonomyLevel;
pub use decision::{ApprovalRequirement, Decision, DecisionError, Effect};
pub use ids::{AgentId, IdError, PolicyId, RiskScore, TaskId, ToolRef};
