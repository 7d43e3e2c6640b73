//! The kinds of action an agent can take through Warden.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an agent is trying to do. Each kind is one Cedar action in Warden's schema
/// (`Warden::Action::"call_tool"` and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// MCP `tools/call`.
    CallTool,
    /// MCP `resources/read`.
    ReadResource,
    /// MCP `prompts/get`.
    GetPrompt,
    /// A message to another agent (A2A).
    SendMessage,
}

impl ActionKind {
    /// Every action kind.
    pub const ALL: [ActionKind; 4] = [
        Self::CallTool,
        Self::ReadResource,
        Self::GetPrompt,
        Self::SendMessage,
    ];

    /// The Cedar action id, e.g. `call_tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallTool => "call_tool",
            Self::ReadResource => "read_resource",
            Self::GetPrompt => "get_prompt",
            Self::SendMessage => "send_message",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names no action kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action `{0}`; expected call_tool, read_resource, get_prompt or send_message")]
pub struct UnknownAction(pub String);

impl FromStr for ActionKind {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}
