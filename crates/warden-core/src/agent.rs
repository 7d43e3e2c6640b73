//! An agent identity (ID-1): its own id, a mandatory human sponsor, a purpose, an autonomy
//! level, a lifecycle state and its public keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{AgentId, AutonomyLevel};

/// Where an agent is in its life. `revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Active,
    Suspended,
    Revoked,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not an agent state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent state `{0}`; expected active, suspended or revoked")]
pub struct UnknownState(pub String);

impl FromStr for AgentState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "revoked" => Ok(Self::Revoked),
            other => Err(UnknownState(other.to_owned())),
        }
    }
}

/// An Ed25519 public key as a JWK (RFC 8037: `kty` OKP, `crv` Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// The key id: its RFC 7638 thumbprint.
    pub kid: String,
}

/// One of an agent's keys. A rotated-out key stays valid until `not_after`, so clients can
/// switch without downtime (ID-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKey {
    pub jwk: PublicJwk,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// When a rotated-out key stops being accepted; `None` for the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
}

impl AgentKey {
    /// True when the key may be used at `now`.
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_after.is_none_or(|t| now < t)
    }
}

/// An agent as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: AgentId,
    pub name: String,
    /// The humans accountable for the agent; never empty while the agent is active.
    pub sponsors: Vec<String>,
    pub purpose: String,
    pub autonomy: AutonomyLevel,
    pub state: AgentState,
    /// False for clients that cannot sign DPoP proofs: their tokens are bearer tokens, a
    /// weaker posture shown wherever the agent is shown.
    pub dpop_required: bool,
    pub keys: Vec<AgentKey>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl AgentRecord {
    /// The keys accepted at `now`, current first.
    pub fn valid_keys(&self, now: i64) -> impl Iterator<Item = &AgentKey> {
        self.keys.iter().filter(move |k| k.valid_at(now))
    }
}

/// What it takes to register an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    pub id: AgentId,
    pub name: String,
    pub sponsors: Vec<String>,
    pub purpose: String,
    pub autonomy: AutonomyLevel,
    pub dpop_required: bool,
    pub key: PublicJwk,
}
