//! Warden's Policy Administrator (NIST 800-207 PA).
//!
//! Today: agent key pairs (Ed25519), their JWK form with RFC 7638 thumbprints as key ids, and
//! private key files written owner-only. The token endpoint (RFC 7523 / 8693 / 8707 / 9396),
//! DPoP (RFC 9449) and revocation arrive in the following increments of issue 3.

pub mod jws;
mod keys;
mod server_keys;

pub use keys::{KeyError, KeyPair, PrivateJwk, thumbprint, verifying_key};
pub use server_keys::ServerKeys;
