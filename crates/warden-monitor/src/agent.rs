//! One agent's state: its persisted baseline and risk, and the short memory the detectors
//! need (recent denials, delegates, the previous tool, cooldowns).

use serde::{Deserialize, Serialize};

use crate::baseline::{Baseline, LONG_MS, SHORT_MS, remember};
use crate::signal::{Signal, SignalKind, Verdict};
use crate::{Call, Finding, Outcome, Reply, ReplyKind, Settings};

/// Denials within this window make a storm.
const DENIAL_WINDOW_MS: i64 = 60_000;
/// Delegates active within this window count towards fan-out.
const FAN_OUT_WINDOW_MS: i64 = 600_000;
/// How long after a content injection other signals weigh double.
const INJECTION_WINDOW_MS: i64 = 1_800_000;
/// First-seen names reported recently are not reported again for this long.
const NOVEL_MS: i64 = 3_600_000;
const SHORT_MEMORY: usize = 64;
/// Samples a statistic needs before it is judged by.
const MIN_SAMPLES: u64 = 30;

/// What survives a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    pub baseline: Baseline,
    pub risk: f64,
    pub risk_ms: i64,
    pub alerted: bool,
    pub quarantined: bool,
}

impl Persisted {
    /// The risk score at `now`, decayed since it was last raised, as shown (0–100).
    pub fn risk_at(&self, s: &Settings, now_ms: i64) -> u8 {
        let age = now_ms.saturating_sub(self.risk_ms).max(0) as f64;
        let r = self.risk * (-age * std::f64::consts::LN_2 / s.half_life_ms).exp();
        r.round().clamp(0.0, 100.0) as u8
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AgentState {
    pub p: Persisted,
    denials: Vec<i64>,
    delegates: Vec<(u64, i64)>,
    novel: Vec<(u64, i64)>,
    records: Vec<(u64, i64)>,
    previous: Option<u32>,
    injection_ms: Option<i64>,
    fired: [i64; SignalKind::ALL.len()],
    /// Per window (10 s, 5 min): the bucket a rate spike was last reported in, and the
    /// count that reports it again (twice the last): a burst that keeps growing keeps
    /// adding risk. A burst that also lasts is a second, independent finding.
    spike: [(i64, u32); 2],
    pub dirty: bool,
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Keeps `(key, time)` pairs within `window` of `now`, at most [`SHORT_MEMORY`]; returns
/// whether `key` was there already, and records it.
fn seen_within(list: &mut Vec<(u64, i64)>, key: u64, now: i64, window: i64) -> bool {
    list.retain(|(_, t)| now.saturating_sub(*t) < window);
    if let Some(e) = list.iter_mut().find(|(k, _)| *k == key) {
        e.1 = now;
        return true;
    }
    if list.len() >= SHORT_MEMORY {
        list.remove(0);
    }
    list.push((key, now));
    false
}

impl AgentState {
    pub fn new(now_ms: i64) -> Self {
        Self {
            p: Persisted {
                baseline: Baseline::new(now_ms),
                risk_ms: now_ms,
                ..Persisted::default()
            },
            fired: [i64::MIN; SignalKind::ALL.len()],
            ..Self::default()
        }
    }

    pub fn restore(p: Persisted) -> Self {
        Self {
            p,
            fired: [i64::MIN; SignalKind::ALL.len()],
            ..Self::default()
        }
    }

    /// The risk score at `now`, decayed since it was last raised.
    pub fn risk(&self, s: &Settings, now_ms: i64) -> f64 {
        let age = now_ms.saturating_sub(self.p.risk_ms).max(0) as f64;
        self.p.risk * (-age * std::f64::consts::LN_2 / s.half_life_ms).exp()
    }

    fn novel(&mut self, what: &str, now: i64) -> bool {
        !seen_within(&mut self.novel, fnv(what), now, NOVEL_MS)
    }

    /// Observes one decided call: detects, then learns (unless the agent is under
    /// suspicion: an anomaly is not taught as normal).
    pub fn call(&mut self, s: &Settings, c: &Call<'_>, out: &mut Vec<Signal>) {
        let now = c.time_ms;
        let trusted = self.p.baseline.trusted(s, now);
        let learn = self.risk(s, now) < f64::from(s.alert_at);
        let denied = c.outcome == Outcome::Denied;
        let tool = self.p.baseline.tool(c.tool);
        if trusted {
            self.first_seen(c, tool, now, out);
        }
        self.rates(s, c, tool, trusted, learn, out);
        if trusted {
            self.sequence(tool, now, out);
            self.off_hours(now, out);
        }
        if let Some(r) = c.record {
            self.enumeration(c, r, trusted, learn, out);
        }
        if denied {
            self.denials
                .retain(|t| now.saturating_sub(*t) < DENIAL_WINDOW_MS);
            if self.denials.len() >= SHORT_MEMORY {
                self.denials.remove(0);
            }
            self.denials.push(now);
            let n = self.denials.len();
            if n >= s.denial_storm as usize && ready(&mut self.fired, SignalKind::DenialStorm, now)
            {
                out.push(Signal::new(
                    SignalKind::DenialStorm,
                    format!("{n} denials within 60 s"),
                ));
            }
        }
        if learn {
            self.learn(c, tool);
        }
        self.previous = self.p.baseline.tool(c.tool);
    }

    fn first_seen(&mut self, c: &Call<'_>, tool: Option<u32>, now: i64, out: &mut Vec<Signal>) {
        let b = &self.p.baseline;
        let new_server = !b.servers.iter().any(|x| x == c.server);
        if tool.is_none() && self.novel(c.tool, now) {
            out.push(Signal::new(
                SignalKind::FirstSeenTool,
                format!("{} was never called by this agent", c.tool),
            ));
        }
        if new_server && self.novel(c.server, now) {
            out.push(Signal::new(
                SignalKind::FirstSeenServer,
                format!("upstream {} was never used by this agent", c.server),
            ));
        }
        for d in c.destinations {
            if !self.p.baseline.destinations.iter().any(|x| x == d) && self.novel(d, now) {
                out.push(Signal::new(
                    SignalKind::FirstSeenDestination,
                    format!("{d} was never a destination of this agent"),
                ));
            }
        }
    }

    fn rates(
        &mut self,
        s: &Settings,
        c: &Call<'_>,
        tool: Option<u32>,
        trusted: bool,
        learn: bool,
        out: &mut Vec<Signal>,
    ) {
        let now = c.time_ms;
        let b = &mut self.p.baseline;
        let short = b.rate.tick(now, SHORT_MS, learn);
        let long = b.rate_long.tick(now, LONG_MS, learn);
        let mut spike: Option<(String, i64, u32)> = None;
        let mut sustained: Option<(String, i64, u32)> = None;
        let runaway = short > s.runaway_per_10s;
        if runaway && ready(&mut self.fired, SignalKind::RunawayRate, now) {
            out.push(Signal::new(
                SignalKind::RunawayRate,
                format!(
                    "{short} calls within 10 s (the limit for any agent is {})",
                    s.runaway_per_10s
                ),
            ));
        }
        if trusted && !runaway {
            spike = spiking(&b.rate, short, "10 s")
                .map(|w| (format!("{w} of this agent"), b.rate.bucket_ms, short));
            sustained = spiking(&b.rate_long, long, "5 min")
                .map(|w| (format!("{w} of this agent"), b.rate_long.bucket_ms, long));
        }
        if let Some(t) = tool.and_then(|i| b.tool_mut(i)) {
            let n = t.rate.tick(now, SHORT_MS, learn);
            if trusted && !runaway && spike.is_none() {
                spike = spiking(&t.rate, n, "10 s")
                    .map(|w| (format!("{w} of {}", t.name), t.rate.bucket_ms, n));
            }
            if trusted
                && c.bytes_out >= s.min_volume_bytes
                && t.bytes_out.n >= MIN_SAMPLES
                && t.bytes_out.z(ln(c.bytes_out), 0.5) > s.z
                && ready(&mut self.fired, SignalKind::VolumeSpike, now)
            {
                out.push(Signal::new(
                    SignalKind::VolumeSpike,
                    format!(
                        "{} bytes of arguments to {} (typically {:.0})",
                        c.bytes_out,
                        c.tool,
                        t.bytes_out.mean.exp() - 1.0
                    ),
                ));
            }
        }
        for (state, found) in self.spike.iter_mut().zip([spike, sustained]) {
            if let Some((why, bucket, n)) = found
                && (bucket != state.0 || n >= state.1)
            {
                *state = (bucket, n.saturating_mul(2));
                out.push(Signal::new(SignalKind::RateSpike, why));
            }
        }
    }

    /// Counts the records the agent touches that it did not touch in the last minute.
    fn enumeration(
        &mut self,
        c: &Call<'_>,
        record: &str,
        trusted: bool,
        learn: bool,
        out: &mut Vec<Signal>,
    ) {
        let now = c.time_ms;
        let key = fnv(c.tool) ^ fnv(record).rotate_left(17);
        if seen_within(&mut self.records, key, now, 60_000) {
            return;
        }
        let b = &mut self.p.baseline;
        let n = b.records.tick(now, 60_000, learn);
        if trusted
            && let Some(w) = spiking(&b.records, n, "1 min")
            && ready(&mut self.fired, SignalKind::Enumeration, now)
        {
            out.push(Signal::new(
                SignalKind::Enumeration,
                w.replace("calls", "distinct records"),
            ));
        }
    }

    fn sequence(&mut self, tool: Option<u32>, now: i64, out: &mut Vec<Signal>) {
        let (Some(from), Some(to)) = (self.previous, tool) else {
            return;
        };
        let b = &self.p.baseline;
        let Some(f) = b.tools.get(from as usize) else {
            return;
        };
        if f.onward < 100 || b.transition(from, to) > 0 {
            return;
        }
        // Never seen after `from` in 100 or more onward calls.
        let detail = format!(
            "{} after {} (never in {} calls after it)",
            b.tools.get(to as usize).map_or("?", |t| t.name.as_str()),
            f.name,
            f.onward
        );
        if ready(&mut self.fired, SignalKind::UnlikelySequence, now) {
            out.push(Signal::new(SignalKind::UnlikelySequence, detail));
        }
    }

    fn off_hours(&mut self, now: i64, out: &mut Vec<Signal>) {
        let b = &self.p.baseline;
        let hour = now.div_euclid(3_600_000).rem_euclid(24) as usize;
        let in_hour = b.hours.get(hour).copied().unwrap_or(0);
        if b.operations >= 500
            && (in_hour as f64) < b.operations as f64 * 0.002
            && ready(&mut self.fired, SignalKind::OffHours, now)
        {
            out.push(Signal::new(
                SignalKind::OffHours,
                format!(
                    "active at {hour:02}:00 UTC ({in_hour} of {} calls fell in this hour)",
                    b.operations
                ),
            ));
        }
    }

    fn learn(&mut self, c: &Call<'_>, tool: Option<u32>) {
        let now = c.time_ms;
        let denied = c.outcome == Outcome::Denied;
        let previous = self.previous;
        self.dirty = true;
        let b = &mut self.p.baseline;
        b.operations += 1;
        b.last_ms = now;
        b.denial_rate.add(if denied { 1.0 } else { 0.0 });
        let hour = now.div_euclid(3_600_000).rem_euclid(24) as usize;
        if let Some(h) = b.hours.get_mut(hour) {
            *h += 1;
        }
        if denied {
            b.denials += 1;
            if let Some(t) = tool.and_then(|i| b.tool_mut(i)) {
                t.denied += 1;
            }
            // What is refused does not become normal.
            return;
        }
        remember(&mut b.servers, c.server);
        for d in c.destinations {
            remember(&mut b.destinations, d);
        }
        let Some(i) = tool.or_else(|| b.add_tool(c.tool)) else {
            return;
        };
        if let Some(t) = b.tool_mut(i) {
            t.calls += 1;
            t.last_ms = now;
            if tool.is_none() {
                // A tool learned now starts its rate with this call.
                t.rate.tick(now, SHORT_MS, false);
            }
            t.bytes_out.add(ln(c.bytes_out));
        }
        if let Some(p) = previous {
            b.learn_transition(p, i);
        }
    }

    /// Observes the answer to a call.
    pub fn reply(&mut self, s: &Settings, r: &Reply<'_>, out: &mut Vec<Signal>) {
        let now = r.time_ms;
        let trusted = self.p.baseline.trusted(s, now);
        let learn = self.risk(s, now) < f64::from(s.alert_at);
        let Some(i) = self.p.baseline.tool(r.tool) else {
            return;
        };
        self.dirty |= learn;
        let b = &mut self.p.baseline;
        let bytes = match r.kind {
            ReplyKind::Answered | ReplyKind::Failed => {
                let failed = r.kind == ReplyKind::Failed;
                if learn {
                    b.error_rate.add(if failed { 1.0 } else { 0.0 });
                    if failed {
                        b.failures += 1;
                        if let Some(t) = b.tool_mut(i) {
                            t.failed += 1;
                        }
                    }
                }
                return;
            }
            ReplyKind::Content(n) => n,
        };
        let Some(t) = b.tool_mut(i) else {
            return;
        };
        let spike = trusted
            && bytes >= s.min_volume_bytes
            && t.bytes_in.n >= MIN_SAMPLES
            && t.bytes_in.z(ln(bytes), 0.5) > s.z;
        let typical = t.bytes_in.mean.exp() - 1.0;
        if learn {
            t.bytes_in.add(ln(bytes));
        }
        if spike && ready(&mut self.fired, SignalKind::VolumeSpike, now) {
            out.push(Signal::new(
                SignalKind::VolumeSpike,
                format!(
                    "{bytes} bytes returned by {} (typically {typical:.0})",
                    r.tool
                ),
            ));
        }
    }

    /// Observes a call made for this agent by `delegate`.
    pub fn delegated(&mut self, s: &Settings, delegate: &str, now: i64, out: &mut Vec<Signal>) {
        let trusted = self.p.baseline.trusted(s, now);
        let learn = self.risk(s, now) < f64::from(s.alert_at);
        seen_within(&mut self.delegates, fnv(delegate), now, FAN_OUT_WINDOW_MS);
        let n = u32::try_from(self.delegates.len()).unwrap_or(u32::MAX);
        let b = &mut self.p.baseline;
        let limit = if trusted {
            s.fan_out.min(b.fan_out_peak.saturating_mul(2).max(3))
        } else {
            s.fan_out
        };
        let over = n > limit;
        if learn && !over {
            self.dirty = true;
            b.fan_out_peak = b.fan_out_peak.max(n);
            remember(&mut b.delegates, delegate);
        }
        if over && ready(&mut self.fired, SignalKind::FanOut, now) {
            out.push(Signal::new(
                SignalKind::FanOut,
                format!("{n} delegates acting for this agent within 10 min (limit {limit})"),
            ));
        }
    }

    pub fn finding(&mut self, f: Finding, now: i64, out: &mut Vec<Signal>) {
        match f {
            Finding::Injection => {
                self.injection_ms = Some(now);
                out.push(Signal::new(
                    SignalKind::ContentInjection,
                    "content the agent received carried a prompt injection".into(),
                ));
            }
            Finding::Secret => out.push(Signal::new(
                SignalKind::SecretInArguments,
                "the agent's arguments carried a secret".into(),
            )),
        }
    }

    /// Adds what the signals weigh to the risk and says what follows. `None` when there
    /// were no signals.
    pub fn weigh(
        &mut self,
        s: &Settings,
        agent: &str,
        now: i64,
        mut signals: Vec<Signal>,
    ) -> Option<Verdict> {
        if signals.is_empty() {
            return None;
        }
        let after_injection = self
            .injection_ms
            .is_some_and(|t| now.saturating_sub(t) < INJECTION_WINDOW_MS);
        let mut points: u32 = signals.iter().map(|x| u32::from(x.points)).sum();
        if after_injection
            && signals
                .iter()
                .any(|x| x.kind != SignalKind::ContentInjection)
        {
            let extra: u32 = signals
                .iter()
                .filter(|x| x.kind != SignalKind::ContentInjection)
                .map(|x| u32::from(x.points))
                .sum();
            signals.push(Signal {
                kind: SignalKind::AfterInjection,
                points: u8::try_from(extra.min(100)).unwrap_or(100),
                detail: "within 30 minutes of a prompt injection in content it received".into(),
            });
            points += extra;
        }
        let risk = (self.risk(s, now) + f64::from(points)).min(100.0);
        self.p.risk = risk;
        self.p.risk_ms = now;
        self.dirty = true;
        // Judged as shown: a score that reads 90 is 90.
        let shown = risk.round();
        let alert = shown >= f64::from(s.alert_at) && !self.p.alerted;
        if alert {
            self.p.alerted = true;
        }
        let quarantine =
            s.quarantine_at.is_some_and(|q| shown >= f64::from(q)) && !self.p.quarantined;
        if quarantine {
            self.p.quarantined = true;
        }
        Some(Verdict {
            agent: agent.to_owned(),
            time_ms: now,
            risk: shown as u8,
            signals,
            alert,
            quarantine,
        })
    }

    /// Lowers the alert latch once the risk has decayed to half the threshold.
    pub fn settle(&mut self, s: &Settings, now: i64) {
        if self.p.alerted && self.risk(s, now) < f64::from(s.alert_at) / 2.0 {
            self.p.alerted = false;
            self.dirty = true;
        }
    }

    /// A person released the agent: no risk, no latch.
    pub fn release(&mut self, now: i64) {
        self.p.risk = 0.0;
        self.p.risk_ms = now;
        self.p.alerted = false;
        self.p.quarantined = false;
        self.injection_ms = None;
        self.denials.clear();
        self.dirty = true;
    }
}

/// May this kind be reported now? (Records it if so.)
fn ready(fired: &mut [i64; SignalKind::ALL.len()], kind: SignalKind, now: i64) -> bool {
    let Some(last) = fired.get_mut(kind.index()) else {
        return false;
    };
    if now.saturating_sub(*last) < kind.cooldown_ms() {
        return false;
    }
    *last = now;
    true
}

fn ln(bytes: u64) -> f64 {
    (bytes as f64).ln_1p()
}

/// Is `count` in the current bucket far above the learned calls per bucket? Needs enough
/// history, at least 4 deviations (floored at 1 call) and 5 calls over the mean.
fn spiking(r: &crate::stats::Rate, count: u32, window: &str) -> Option<String> {
    let h = &r.per_bucket;
    if h.n < MIN_SAMPLES {
        return None;
    }
    let limit = (h.mean + 4.0 * h.sd().max(1.0))
        .max(h.mean + 5.0)
        .max(f64::from(r.peak));
    (f64::from(count) > limit).then(|| {
        format!(
            "{count} calls within {window}, above the usual {:.1} (limit {limit:.0})",
            h.mean
        )
    })
}
