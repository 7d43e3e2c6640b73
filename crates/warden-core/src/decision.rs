//! A decision is a value with reasons (PE-3).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::PolicyId;

/// The outcome of a policy decision. `Deny` is the default and the answer to every error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
    /// Allowed only once a human approver says so (HC-1).
    RequireApproval,
}

impl Effect {
    /// The effect as written in policy tests and JSON (`allow`, `deny`, `require_approval`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::RequireApproval => "require_approval",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that went wrong while deciding. Any error makes the decision a `Deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionError {
    /// The policy whose evaluation failed, if the error belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyId>,
    /// What went wrong, for operators (never sent to agents verbatim).
    pub message: String,
}

/// What a `RequireApproval` decision asks for: who may approve and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequirement {
    /// Who may approve: names from the policies' `@approvers` annotations, or `sponsor`.
    pub approvers: Vec<String>,
    /// Why approval is required, from the policies' `@approval` annotations.
    pub reasons: Vec<String>,
}

/// The PE's answer to one request: effect, the policies that determined it, human-readable
/// reasons and any errors. Build it with the constructors; they keep the invariants
/// (errors mean deny; approval data exactly when the effect is `RequireApproval`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    /// The policies that determined the effect: satisfied `forbid`s for a deny, satisfied
    /// `permit`s for an allow or an approval. Empty for a default deny.
    pub determining: Vec<PolicyId>,
    /// Why, in words: the `@reason` annotations of the determining policies, or a
    /// description of the default or error deny.
    pub reasons: Vec<String>,
    /// Errors met while deciding. Non-empty implies `Deny`.
    pub errors: Vec<DecisionError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequirement>,
    /// Who to notify after an allowed action (`@notify` annotations): act-then-notify.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notify: Vec<String>,
}

impl Decision {
    /// A deny with no policy behind it: nothing permitted the request.
    pub fn default_deny(reason: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            determining: Vec::new(),
            reasons: vec![reason.into()],
            errors: Vec::new(),
            approval: None,
            notify: Vec::new(),
        }
    }

    /// An allow for a protocol message that carries no action on a tool, resource or prompt
    /// (`initialize`, `ping`, list calls whose answers are filtered, notifications). No
    /// policy is consulted; `reason` says which protocol rule let it through.
    pub fn protocol_allow(reason: impl Into<String>) -> Self {
        Self {
            effect: Effect::Allow,
            determining: Vec::new(),
            reasons: vec![reason.into()],
            errors: Vec::new(),
            approval: None,
            notify: Vec::new(),
        }
    }

    /// A deny caused by an error: the request could not be decided, so it is refused.
    pub fn error_deny(errors: Vec<DecisionError>) -> Self {
        let first = errors.first().map_or("", |e| e.message.as_str());
        let more = match errors.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        let reasons = vec![format!(
            "denied because the request could not be evaluated: {first}{more}"
        )];
        Self {
            effect: Effect::Deny,
            determining: Vec::new(),
            reasons,
            errors,
            approval: None,
            notify: Vec::new(),
        }
    }

    /// A deny because the request itself is malformed (e.g. an argument Cedar cannot
    /// represent, an unknown action).
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::error_deny(vec![DecisionError {
            policy: None,
            message: message.into(),
        }])
    }

    /// True only for `Allow`. `RequireApproval` is not allowed until approved.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_deny_is_a_deny_with_reason() {
        let d = Decision::invalid_request("bad");
        assert_eq!(d.effect, Effect::Deny);
        assert!(!d.is_allowed());
        assert_eq!(d.errors.len(), 1);
        assert!(d.reasons[0].contains("could not be evaluated"));
    }

    #[test]
    fn effect_serialises_in_snake_case() {
        let s = serde_json::to_string(&Effect::RequireApproval).unwrap();
        assert_eq!(s, "\"require_approval\"");
    }
}
