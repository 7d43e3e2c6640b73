//! Autonomy levels from the CSA Agentic Trust Framework.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much an agent may do without a human (ATF): `intern` is read-only, `junior` needs
/// approval for every write, `senior` acts and then notifies, `principal` is autonomous in
/// its domain. Ordered from least to most trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutonomyLevel {
    Intern,
    Junior,
    Senior,
    Principal,
}

impl AutonomyLevel {
    /// Every level, least trusted first.
    pub const ALL: [AutonomyLevel; 4] = [Self::Intern, Self::Junior, Self::Senior, Self::Principal];

    /// The level's name as written in policies and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intern => "intern",
            Self::Junior => "junior",
            Self::Senior => "senior",
            Self::Principal => "principal",
        }
    }

    /// The level below this one (`None` for `intern`).
    pub fn lower(self) -> Option<Self> {
        match self {
            Self::Intern => None,
            Self::Junior => Some(Self::Intern),
            Self::Senior => Some(Self::Junior),
            Self::Principal => Some(Self::Senior),
        }
    }

    /// 0 for `intern` up to 3 for `principal`, so policies can compare levels.
    pub fn rank(self) -> i64 {
        match self {
            Self::Intern => 0,
            Self::Junior => 1,
            Self::Senior => 2,
            Self::Principal => 3,
        }
    }
}

impl fmt::Display for AutonomyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the four autonomy levels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown autonomy level `{0}`; expected intern, junior, senior or principal")]
pub struct UnknownAutonomy(pub String);

impl FromStr for AutonomyLevel {
    type Err = UnknownAutonomy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownAutonomy(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_are_ordered() {
        for level in AutonomyLevel::ALL {
            assert_eq!(level.as_str().parse::<AutonomyLevel>(), Ok(level));
        }
        assert!(AutonomyLevel::Intern < AutonomyLevel::Principal);
        assert!("admin".parse::<AutonomyLevel>().is_err());
    }
}
