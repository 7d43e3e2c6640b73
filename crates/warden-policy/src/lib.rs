//! Warden's Policy Engine (NIST 800-207 PE): Cedar policies validated against Warden's
//! schema, sliced by scope, decided into a [`Decision`](warden_core::Decision) value.
//!
//! What it does: load a policy set ([`PolicySources`] → [`PolicySnapshot`]), with errors that
//! name file, line and reason; decide [`ActionRequest`]s and AuthZEN requests; hold the set
//! in force in an [`Engine`] that swaps atomically on reload; run policy tests as data.
//!
//! What it does not do: read files, open sockets, spawn threads or look at a clock. The
//! caller hands it text and the time. Deny is the default: no policies, an unknown action,
//! an argument Cedar cannot represent, an evaluation error — each is a `Deny` with a reason.
//!
//! ## Decisions
//! A satisfied `forbid` denies. Otherwise, if any satisfied `permit` carries
//! `@approval("why")`, the decision is `RequireApproval` (approvers from `@approvers`, or
//! the agent's sponsor). Otherwise a satisfied `permit` allows, and its `@notify` names who to
//! tell. Nothing satisfied: default deny. Any evaluation error: deny. So approval is never
//! bypassed by a broader permit: Deny > RequireApproval > Allow.

pub mod authzen;
mod engine;
mod error;
mod explain;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod fuzz;
mod grant;
mod index;
mod load;
mod request;
mod schema;
mod snapshot;
mod source;
pub mod testing;
mod value;

pub use engine::{Engine, Reload};
pub use error::{LoadError, LoadErrors};
pub use explain::{Condition, Explanation, Outcome, PolicyExplanation};
pub use grant::Grantability;
pub use load::{KNOWN_ANNOTATIONS, PolicyMeta};
pub use request::{ActionRequest, ContentContext, RequestError, TaskInfo};
pub use schema::{BASE_SCHEMA, full_schema_text};
pub use snapshot::{PolicySnapshot, SnapshotStats, Trace, effect_name};
pub use source::{PolicySources, SourceFile};
pub use value::ValueError;
