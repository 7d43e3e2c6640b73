//! Warden's Policy Enforcement Point: the HTTP server and what it serves.
//!
//! The MCP gateway (every call authenticated, decided, held for approval, limited, guarded
//! by circuit breakers, audited and forwarded), the AuthZEN Authorization API 1.0 (Warden
//! as a PDP for other PEPs), the OAuth authorization server for agents (token endpoint,
//! delegation, metadata), the admin API with the kill switch, health, and hot reload of the
//! policy set. This crate does not parse config files (it is handed a
//! [`warden_config::Config`]) and makes no decisions (the engine does).

pub mod admin_api;
pub mod approvals;
pub mod approvals_api;
pub mod audit;
mod authzen_api;
pub mod breakers;
pub mod control_api;
mod demotion;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod fuzz;
pub mod inspection;
pub mod limits;
pub mod mcp;
pub mod monitor_api;
pub mod monitoring;
pub mod oauth;
pub mod policy_files;
pub mod reload;
mod server;
mod taints_api;
mod tools_api;
mod unread;

pub use server::{Headless, Server, ServerInfo, data_dir, unix_now};
