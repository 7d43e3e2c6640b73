//! `warden simulate` (MO-1): replays the trace simulator's workloads (warden-testkit
//! `sim`) through the real decision path — the task's granted tools, the Policy Engine with
//! the agent's risk in `context.risk`, the behavioural monitor, quarantine — in virtual
//! time, and reports per attack kind how many actions and seconds passed from its first
//! action to the first alert and to the quarantine, and how many alerts normal work raised.

use std::collections::HashSet;
use std::process::ExitCode;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::Serialize;
use serde_json::Value;
use warden_core::{ActionKind, AgentId, AutonomyLevel, Effect, RiskScore};
use warden_monitor::{Call, Monitor, Outcome, Reply, ReplyKind, Verdict};
use warden_policy::{
    ActionRequest, ContentContext, PolicySnapshot, PolicySources, SourceFile, TaskInfo,
};
use warden_testkit::sim::{self, Action, AttackKind, DAY_MS, EPOCH_MS, HOUR_MS};

use crate::ConfigArg;

/// The simulated organisation's policies: routine work is allowed while an agent's risk is
/// low; from 70 each call needs a person (none answers in the simulation); above 90
/// everything is refused.
pub const POLICIES: &str = r#"
@id("sim-routine")
permit (principal, action == Warden::Action::"call_tool", resource)
when { context.risk < 70 };

@id("sim-risky-needs-approval")
@approval("risk 70 or more: a person confirms each call")
permit (principal, action == Warden::Action::"call_tool", resource)
when { context.risk >= 70 && context.risk <= 90 };

@id("sim-risk-ceiling")
@reason("an agent this far from its baseline does nothing")
forbid (principal, action, resource) when { context.risk > 90 };
"#;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Days of normal work the baselines learn from.
    #[arg(long, default_value_t = 10)]
    pub train_days: i64,
    /// Days of normal work on which false alerts are counted.
    #[arg(long, default_value_t = 14)]
    pub eval_days: i64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The `[monitor]` settings to simulate (default: the built-in ones).
    #[command(flatten)]
    pub config: ConfigArg,
}

/// What replaying a trace showed.
#[derive(Debug, Default)]
struct Replay {
    actions: usize,
    alerts: Vec<Verdict>,
    quarantines: Vec<Verdict>,
    /// Per action index, the verdicts it produced.
    verdicts: Vec<(usize, Verdict)>,
    /// Per action: was it forwarded?
    forwarded: Vec<bool>,
}

struct Path<'a> {
    snapshot: &'a PolicySnapshot,
    monitor: &'a Monitor,
    profiles: &'a [sim::Profile],
    quarantined: HashSet<&'static str>,
}

impl Path<'_> {
    /// One call through the decision path; returns the monitor's verdicts.
    fn step(&mut self, a: &Action) -> (bool, Vec<Verdict>) {
        // A quarantined agent (or one acting for a quarantined agent) is stopped.
        if self.quarantined.contains(a.agent)
            || a.delegator.is_some_and(|d| self.quarantined.contains(d))
        {
            return (false, Vec::new());
        }
        let granted = self
            .profiles
            .iter()
            .find(|p| p.agent == a.agent)
            .is_some_and(|p| p.granted.contains(&a.tool));
        let args = a.arguments.as_object();
        let effect = if granted {
            self.decide(a, args)
        } else {
            Effect::Deny
        };
        if effect == Effect::RequireApproval {
            // Held; nobody answers: not forwarded, not counted against the agent.
            return (false, Vec::new());
        }
        let allowed = effect == Effect::Allow;
        let mut dest = [""; 8];
        let n = warden_gateway::monitoring::destinations(args, &mut dest);
        let verdicts = self.monitor.call(&Call {
            time_ms: a.time_ms,
            agent: a.agent,
            delegator: a.delegator,
            server: a.server(),
            tool: a.tool,
            outcome: if allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            bytes_out: args.map_or(0, warden_gateway::monitoring::size),
            destinations: dest.get(..n).unwrap_or_default(),
            record: warden_gateway::monitoring::record(args),
        });
        let mut verdicts = verdicts;
        let stopped = verdicts.iter().any(|v| v.quarantine && v.agent == a.agent);
        for v in &verdicts {
            if v.quarantine {
                self.quarantined.insert(if v.agent == a.agent {
                    a.agent
                } else {
                    a.delegator.unwrap_or(a.agent)
                });
            }
        }
        if allowed && !stopped {
            for kind in [ReplyKind::Answered, ReplyKind::Content(a.reply_bytes)] {
                let r = Reply {
                    time_ms: a.time_ms + 50,
                    agent: a.agent,
                    tool: a.tool,
                    kind,
                };
                verdicts.extend(self.monitor.reply(&r));
            }
        }
        (allowed && !stopped, verdicts)
    }

    fn decide(&self, a: &Action, args: Option<&serde_json::Map<String, Value>>) -> Effect {
        let (Ok(agent), Ok(risk)) = (
            AgentId::new(a.agent),
            RiskScore::new(i64::from(self.monitor.risk(a.agent, a.time_ms))),
        ) else {
            return Effect::Deny;
        };
        let req = ActionRequest {
            agent,
            action: ActionKind::CallTool,
            resource: a.tool.to_owned(),
            arguments: args.cloned().unwrap_or_default(),
            task: TaskInfo {
                id: "sim".into(),
                purpose: "simulated work".into(),
            },
            on_behalf_of: None,
            delegated_by: a
                .delegator
                .and_then(|d| AgentId::new(d).ok())
                .into_iter()
                .collect(),
            autonomy: AutonomyLevel::Senior,
            risk,
            limit_used: 0,
            time: a.time_ms / 1000,
            reason: None,
            inspection: ContentContext::default(),
        };
        self.snapshot.evaluate(&req).effect
    }

    fn replay(&mut self, trace: &[Action]) -> Replay {
        let mut r = Replay::default();
        for (i, a) in trace.iter().enumerate() {
            let (forwarded, verdicts) = self.step(a);
            r.actions += 1;
            r.forwarded.push(forwarded);
            for v in verdicts {
                if v.alert {
                    r.alerts.push(v.clone());
                }
                if v.quarantine {
                    r.quarantines.push(v.clone());
                }
                r.verdicts.push((i, v));
            }
        }
        r
    }
}

/// One attack kind's result.
#[derive(Debug, Serialize)]
struct AttackResult {
    kind: AttackKind,
    name: &'static str,
    agent: &'static str,
    attack_actions: usize,
    detected: bool,
    actions_to_alert: Option<usize>,
    seconds_to_alert: Option<f64>,
    actions_to_quarantine: Option<usize>,
    seconds_to_quarantine: Option<f64>,
    /// Attack actions that still reached the tool server after the alert (the policy holds
    /// calls for approval from risk 70; a quarantine stops everything).
    forwarded_after_alert: usize,
    /// The signals of the alert.
    signals: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    train_days: i64,
    eval_days: i64,
    training_actions: usize,
    normal_actions: usize,
    false_alerts: usize,
    false_alerts_per_10k: f64,
    false_quarantines: usize,
    attacks: Vec<AttackResult>,
}

fn snapshot() -> anyhow::Result<PolicySnapshot> {
    PolicySnapshot::load(&PolicySources {
        policies: vec![SourceFile::new("simulation.cedar", POLICIES)],
        schemas: Vec::new(),
        entities: Vec::new(),
    })
    .map_err(|e| anyhow::anyhow!("the simulation's policies do not load: {e}"))
}

fn attack_run(
    kind: AttackKind,
    trained: &Monitor,
    snapshot: &PolicySnapshot,
    profiles: &[sim::Profile],
    seed: u64,
    at_ms: i64,
    normal: &[Action],
) -> AttackResult {
    let attack = sim::attack(kind, seed, at_ms);
    let agent = attack.first().map_or("", |a| a.agent);
    let delegator = attack.first().and_then(|a| a.delegator);
    let end = attack.last().map_or(at_ms, |a| a.time_ms) + 600_000;
    let mut trace: Vec<Action> = normal
        .iter()
        .filter(|a| a.time_ms < end)
        .cloned()
        .chain(attack.iter().cloned())
        .collect();
    trace.sort_by_key(|a| a.time_ms);
    let monitor = trained.fork();
    let mut path = Path {
        snapshot,
        monitor: &monitor,
        profiles,
        quarantined: HashSet::new(),
    };
    let r = path.replay(&trace);
    let first = trace.iter().position(|a| a.attack.is_some()).unwrap_or(0);
    let first_ms = trace.get(first).map_or(at_ms, |a| a.time_ms);
    let ours = |v: &Verdict| v.agent == agent || Some(v.agent.as_str()) == delegator;
    let attack_actions_upto = |i: usize| {
        trace
            .get(first..=i)
            .map_or(0, |s| s.iter().filter(|a| a.attack.is_some()).count())
    };
    let find = |want: fn(&Verdict) -> bool| {
        r.verdicts
            .iter()
            .find(|(i, v)| *i >= first && ours(v) && want(v))
            .map(|(i, v)| {
                (
                    attack_actions_upto(*i),
                    (v.time_ms - first_ms) as f64 / 1000.0,
                    v,
                )
            })
    };
    let alert = find(|v| v.alert);
    let quarantine = find(|v| v.quarantine);
    let alert_at = r
        .verdicts
        .iter()
        .find(|(i, v)| *i >= first && ours(v) && v.alert)
        .map_or(usize::MAX, |(i, _)| *i);
    let forwarded_after_alert = trace
        .iter()
        .zip(&r.forwarded)
        .enumerate()
        .filter(|(i, (a, f))| *i > alert_at && a.attack.is_some() && **f)
        .count();
    AttackResult {
        kind,
        name: kind.as_str(),
        agent,
        attack_actions: attack.len(),
        detected: alert.is_some(),
        actions_to_alert: alert.map(|a| a.0),
        seconds_to_alert: alert.map(|a| a.1),
        actions_to_quarantine: quarantine.map(|q| q.0),
        seconds_to_quarantine: quarantine.map(|q| q.1),
        forwarded_after_alert,
        signals: alert.map_or_else(Vec::new, |(_, _, v)| {
            v.signals
                .iter()
                .map(|s| s.kind.as_str().to_owned())
                .collect()
        }),
    }
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let config = crate::config_cmd::load_or_default(args.config.config.as_deref())?;
    let settings = warden_gateway::monitoring::settings(&config.monitor);
    let snapshot = snapshot()?;
    let profiles = sim::profiles();
    let train_end = EPOCH_MS + args.train_days.max(1) * DAY_MS;
    let eval_end = train_end + args.eval_days.max(1) * DAY_MS;
    let training = sim::normal(args.seed, EPOCH_MS, train_end);
    let normal = sim::normal(args.seed.wrapping_add(1), train_end, eval_end);
    if !args.json {
        eprintln!(
            "replaying {} days of normal work ({} actions) to learn baselines, then {} days ({} actions) and {} attacks ...",
            args.train_days,
            training.len(),
            args.eval_days,
            normal.len(),
            AttackKind::ALL.len()
        );
    }
    let trained = Monitor::new(settings);
    let mut path = Path {
        snapshot: &snapshot,
        monitor: &trained,
        profiles: &profiles,
        quarantined: HashSet::new(),
    };
    path.replay(&training);
    let eval_monitor = trained.fork();
    let mut path = Path {
        snapshot: &snapshot,
        monitor: &eval_monitor,
        profiles: &profiles,
        quarantined: HashSet::new(),
    };
    let eval = path.replay(&normal);
    let attacks: Vec<AttackResult> = AttackKind::ALL
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            // Day one of the evaluation, 10:30 UTC, an hour apart.
            let at = train_end + 10 * HOUR_MS + 1_800_000 + i as i64 * HOUR_MS;
            attack_run(
                *kind, &trained, &snapshot, &profiles, args.seed, at, &normal,
            )
        })
        .collect();
    let report = Report {
        seed: args.seed,
        train_days: args.train_days,
        eval_days: args.eval_days,
        training_actions: training.len(),
        normal_actions: eval.actions,
        false_alerts: eval.alerts.len(),
        false_alerts_per_10k: eval.alerts.len() as f64 * 10_000.0 / eval.actions.max(1) as f64,
        false_quarantines: eval.quarantines.len(),
        attacks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &eval);
    }
    Ok(ExitCode::SUCCESS)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |x| x.to_string())
}

fn print_report(r: &Report, eval: &Replay) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "attack",
        "agent",
        "detected",
        "actions to alert",
        "seconds to alert",
        "actions to quarantine",
        "seconds to quarantine",
        "forwarded after alert",
        "alerting signals",
    ]);
    for a in &r.attacks {
        t.add_row([
            a.name.to_owned(),
            a.agent.to_owned(),
            if a.detected { "yes" } else { "NO" }.to_owned(),
            opt(a.actions_to_alert),
            opt(a.seconds_to_alert.map(|s| format!("{s:.1}"))),
            opt(a.actions_to_quarantine),
            opt(a.seconds_to_quarantine.map(|s| format!("{s:.1}"))),
            format!("{} of {}", a.forwarded_after_alert, a.attack_actions),
            a.signals.join(", "),
        ]);
    }
    println!("{t}");
    println!(
        "Normal work: {} actions after {} days of learning ({} actions): {} false alerts \
         ({:.2} per 10,000 actions), {} false quarantines.",
        r.normal_actions,
        r.train_days,
        r.training_actions,
        r.false_alerts,
        r.false_alerts_per_10k,
        r.false_quarantines
    );
    for v in &eval.alerts {
        let kinds: Vec<&str> = v.signals.iter().map(|s| s.kind.as_str()).collect();
        println!(
            "  false alert: {} risk {} ({})",
            v.agent,
            v.risk,
            kinds.join(", ")
        );
    }
}
