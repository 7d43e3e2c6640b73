//! Warden's tamper-evident audit trail (AU-1..AU-4, ID-4).
//!
//! * [`record`]: what a record says, built by the decision path from its decision value.
//! * [`jcs`]: RFC 8785 canonical JSON, the bytes that are hashed.
//! * [`merkle`]: the RFC 9162 tree, incremental edge, inclusion and consistency proofs.
//! * [`note`]: C2SP signed-note / tlog-checkpoint checkpoints, Ed25519.
//! * [`log`]: the log on disk (`audit.db`), appending from any process.
//! * [`writer`]: the group-committing writer thread and the [`Auditor`] handle.
//! * [`verify`]: recomputing everything from the stored records; names the first bad one.
//! * [`export`]: JSON lines and OCSF.
//!
//! The audit crate never makes decisions: it writes down the ones it is given, and says
//! whether they are durable.

pub mod export;
pub mod jcs;
pub mod log;
pub mod merkle;
pub mod note;
pub mod query;
pub mod record;
pub mod verify;
pub mod writer;

pub use log::{AuditError, AuditLog, Durability, Prepared};
pub use record::{DecisionRecord, EventRecord, OutcomeRecord, Record};
pub use writer::{AuditHealth, Auditor, CheckpointPolicy, WriterThread};
