//! Warden's Policy Administrator (NIST 800-207 PA): the pure parts.
//!
//! Agent key pairs (Ed25519) as JWKs with RFC 7638 thumbprints; strict EdDSA JWS; Warden's
//! signing keys; access tokens (`at+jwt`) with task, granted actions, `act` chain and
//! `cnf.jkt`; client assertions (RFC 7523); DPoP proofs (RFC 9449); single-use replay caches;
//! revocation state; and the resource-server check run on every request. The HTTP endpoints
//! live in `warden-gateway`; nothing here does I/O except reading and writing key files.

pub mod assertion;
pub mod dpop;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod fuzz;
pub mod jws;
mod keys;
pub mod replay;
pub mod revocation;
mod server_keys;
pub mod token;
pub mod verifier;

pub use keys::{KeyError, KeyPair, PrivateJwk, thumbprint, verifying_key};
pub use server_keys::ServerKeys;
