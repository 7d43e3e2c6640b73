//! Identifiers, each a newtype that can only hold a well-formed value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} `{value}` contains {found:?}; allowed are letters, digits and {allowed}")]
    BadChar {
        kind: &'static str,
        value: String,
        found: char,
        allowed: &'static str,
    },
    #[error("tool reference `{0}` must be `server/tool`")]
    NotServerTool(String),
    #[error("risk score {0} is out of range 0..=100")]
    RiskOutOfRange(i64),
}

const MAX_ID_LEN: usize = 128;
const ID_PUNCT: &str = "`.`, `_`, `-`, `:`, `@`";

fn check_id(kind: &'static str, value: &str, extra: &[char]) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
            max: MAX_ID_LEN,
        });
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@');
    if let Some(found) = value.chars().find(|c| !ok(*c) && !extra.contains(c)) {
        return Err(IdError::BadChar {
            kind,
            value: value.to_owned(),
            found,
            allowed: ID_PUNCT,
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an identifier.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id($kind, &value, &[])?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// The unique, immutable identifier of an agent (ID-1).
    AgentId,
    "agent id"
);
string_id!(
    /// The identifier of a task an agent works on; tokens are scoped to one task.
    TaskId,
    "task id"
);

/// The identifier of a policy: its `@id` annotation, or `file:line` where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PolicyId(String);

impl PolicyId {
    /// Wraps a policy id. Policy ids come from policy files, which are validated on load.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tool on a tool server, written `server/tool` (e.g. `crm/get_contact`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolRef {
    full: String,
    slash: usize,
}

impl ToolRef {
    /// Builds a reference from its two parts, validating both.
    pub fn new(server: &str, tool: &str) -> Result<Self, IdError> {
        check_id("tool server name", server, &[])?;
        // Tool names in MCP may contain `/` (namespaced tools); the first `/` splits.
        check_id("tool name", tool, &['/'])?;
        Ok(Self {
            full: format!("{server}/{tool}"),
            slash: server.len(),
        })
    }

    /// The tool server's name.
    pub fn server(&self) -> &str {
        self.full.get(..self.slash).unwrap_or_default()
    }

    /// The tool's name on its server.
    pub fn tool(&self) -> &str {
        self.full.get(self.slash + 1..).unwrap_or_default()
    }

    /// `server/tool`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for ToolRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (server, tool) = s
            .split_once('/')
            .ok_or_else(|| IdError::NotServerTool(s.to_owned()))?;
        Self::new(server, tool)
    }
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl Serialize for ToolRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for ToolRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An agent's risk score, 0 (no concern) to 100 (certain compromise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RiskScore(u8);

impl RiskScore {
    /// Parses a score, rejecting values outside 0..=100.
    pub fn new(value: i64) -> Result<Self, IdError> {
        u8::try_from(value)
            .ok()
            .filter(|v| *v <= 100)
            .map(Self)
            .ok_or(IdError::RiskOutOfRange(value))
    }

    /// The score as a number.
    pub fn value(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for RiskScore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        Self::new(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_rejects_empty_long_and_odd_characters() {
        assert!(AgentId::new("crm-bot").is_ok());
        assert_eq!(AgentId::new(""), Err(IdError::Empty { kind: "agent id" }));
        assert!(matches!(
            AgentId::new("a".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
        assert!(matches!(
            AgentId::new("bad id"),
            Err(IdError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            AgentId::new("quote\"inject"),
            Err(IdError::BadChar { .. })
        ));
    }

    #[test]
    fn tool_ref_splits_on_the_first_slash() {
        let t: ToolRef = "crm/get_contact".parse().unwrap();
        assert_eq!(t.server(), "crm");
        assert_eq!(t.tool(), "get_contact");
        let nested: ToolRef = "fs/dir/read".parse().unwrap();
        assert_eq!(nested.server(), "fs");
        assert_eq!(nested.tool(), "dir/read");
        assert!("no-slash".parse::<ToolRef>().is_err());
        assert!("/tool".parse::<ToolRef>().is_err());
        assert!("server/".parse::<ToolRef>().is_err());
    }

    #[test]
    fn risk_score_is_bounded() {
        assert_eq!(RiskScore::new(100).unwrap().value(), 100);
        assert!(RiskScore::new(101).is_err());
        assert!(RiskScore::new(-1).is_err());
        let parsed: Result<RiskScore, _> = serde_json::from_str("150");
        assert!(parsed.is_err());
    }
}
