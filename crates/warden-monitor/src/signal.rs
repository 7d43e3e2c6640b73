//! What the detectors report, and what each report weighs in the risk score.

use serde::{Deserialize, Serialize};

/// One kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A tool the trusted baseline never saw this agent call.
    FirstSeenTool,
    /// An upstream server the agent never used.
    FirstSeenServer,
    /// A host or mail domain never named in the agent's arguments.
    FirstSeenDestination,
    /// Calls per 10 s or per 5 min far above the agent's (or a tool's) history.
    RateSpike,
    /// More calls in 10 s than any agent should make (rule; also before a baseline).
    RunawayRate,
    /// Arguments or results far larger than usual for the tool.
    VolumeSpike,
    /// Far more distinct records (ids, paths) in a minute than the agent usually touches.
    Enumeration,
    /// A transition between two tools the agent has never made, from a tool whose onward
    /// calls are well known.
    UnlikelySequence,
    /// Activity in an hour of the day the agent is almost never active.
    OffHours,
    /// Many denials in a short time (rule).
    DenialStorm,
    /// Many distinct delegates acting for the agent at once (rule and statistical).
    FanOut,
    /// Content the agent received carried a prompt injection.
    ContentInjection,
    /// The agent's arguments carried a secret.
    SecretInArguments,
    /// Any other signal within 30 minutes of a content injection: the points are doubled.
    AfterInjection,
}

impl SignalKind {
    pub const ALL: [Self; 14] = [
        Self::FirstSeenTool,
        Self::FirstSeenServer,
        Self::FirstSeenDestination,
        Self::RateSpike,
        Self::RunawayRate,
        Self::VolumeSpike,
        Self::Enumeration,
        Self::UnlikelySequence,
        Self::OffHours,
        Self::DenialStorm,
        Self::FanOut,
        Self::ContentInjection,
        Self::SecretInArguments,
        Self::AfterInjection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstSeenTool => "first_seen_tool",
            Self::FirstSeenServer => "first_seen_server",
            Self::FirstSeenDestination => "first_seen_destination",
            Self::RateSpike => "rate_spike",
            Self::RunawayRate => "runaway_rate",
            Self::VolumeSpike => "volume_spike",
            Self::Enumeration => "enumeration",
            Self::UnlikelySequence => "unlikely_sequence",
            Self::OffHours => "off_hours",
            Self::DenialStorm => "denial_storm",
            Self::FanOut => "fan_out",
            Self::ContentInjection => "content_injection",
            Self::SecretInArguments => "secret_in_arguments",
            Self::AfterInjection => "after_injection",
        }
    }

    /// Points added to the risk score.
    pub fn points(self) -> u8 {
        match self {
            Self::FirstSeenServer
            | Self::RunawayRate
            | Self::RateSpike
            | Self::VolumeSpike
            | Self::Enumeration => 25,
            Self::FirstSeenTool | Self::FirstSeenDestination | Self::DenialStorm => 20,
            Self::FanOut => 30,
            Self::ContentInjection | Self::OffHours => 15,
            Self::UnlikelySequence | Self::SecretInArguments => 10,
            // Set per report: the sum of the signals it doubles.
            Self::AfterInjection => 0,
        }
    }

    /// The least time between two reports of this kind for one agent: a burst is one
    /// anomaly, not a hundred. First-seen kinds are instead reported once per name.
    pub fn cooldown_ms(self) -> i64 {
        match self {
            Self::RunawayRate | Self::DenialStorm | Self::FanOut => 20_000,
            Self::VolumeSpike | Self::UnlikelySequence | Self::Enumeration => 30_000,
            Self::OffHours => 1_800_000,
            // Reported once per bucket, and again each time the count doubles.
            Self::RateSpike => 0,
            Self::FirstSeenTool
            | Self::FirstSeenServer
            | Self::FirstSeenDestination
            | Self::ContentInjection
            | Self::SecretInArguments
            | Self::AfterInjection => 0,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One anomaly, with what it weighed and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub kind: SignalKind,
    pub points: u8,
    /// Names and figures only (never argument values).
    pub detail: String,
}

impl Signal {
    pub(crate) fn new(kind: SignalKind, detail: String) -> Self {
        Self {
            kind,
            points: kind.points(),
            detail,
        }
    }
}

/// What the monitor concluded from one observation that mattered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub agent: String,
    pub time_ms: i64,
    /// The risk score after the signals.
    pub risk: u8,
    pub signals: Vec<Signal>,
    /// The risk just reached the alert threshold.
    pub alert: bool,
    /// The risk just reached the quarantine threshold: stop the agent.
    pub quarantine: bool,
}
