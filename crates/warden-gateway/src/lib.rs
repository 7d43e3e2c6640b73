//! Warden's Policy Enforcement Point: the HTTP server and what it serves.
//!
//! Today: the AuthZEN Authorization API 1.0 (Warden as a PDP for other PEPs), health, and
//! hot reload of the policy set. The MCP gateway, token endpoint and admin API arrive with
//! their issues and are wired here. This crate does not parse config files (it is handed a
//! [`warden_config::Config`]) and makes no decisions (the engine does).

mod authzen_api;
pub mod policy_files;
pub mod reload;
mod server;

pub use server::{Server, ServerInfo, data_dir, unix_now};
