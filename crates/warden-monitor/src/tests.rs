#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

const DAY: i64 = 86_400_000;
const TOOLS: [&str; 3] = ["crm/read_contact", "crm/log_call_note", "email/send"];

fn call<'a>(agent: &'a str, tool: &'a str, t: i64) -> Call<'a> {
    Call {
        time_ms: t,
        agent,
        delegator: None,
        server: tool.split('/').next().unwrap(),
        tool,
        outcome: Outcome::Allowed,
        bytes_out: 200,
        destinations: &[],
        record: None,
    }
}

/// Three days of office hours, a call every 30 s cycling through three tools (the last is
/// `email/send`). Returns 10:00 on the next day.
fn train(m: &Monitor, agent: &str) -> i64 {
    let mut last = 0;
    for day in 0..3 {
        for i in 0..(8 * 120) {
            let t = day * DAY + 9 * 3_600_000 + i * 30_000;
            let tool = TOOLS[(i % 3) as usize];
            assert!(m.call(&call(agent, tool, t)).is_empty(), "at {t}: {tool}");
            last = t;
        }
    }
    (last / DAY + 1) * DAY + 10 * 3_600_000
}

fn kinds(v: &[Verdict]) -> Vec<SignalKind> {
    v.iter()
        .flat_map(|v| v.signals.iter().map(|s| s.kind))
        .collect()
}

#[test]
fn a_young_baseline_judges_by_rules_only() {
    let m = Monitor::new(Settings::default());
    for (i, tool) in ["a/x", "b/y", "c/z"].into_iter().enumerate() {
        assert!(m.call(&call("new", tool, i as i64 * 1000)).is_empty());
    }
    let mut storm = Vec::new();
    for i in 0..5 {
        let mut c = call("new", "a/forbidden", 10_000 + i * 1000);
        c.outcome = Outcome::Denied;
        storm = m.call(&c);
    }
    assert_eq!(kinds(&storm), [SignalKind::DenialStorm]);
    assert_eq!(m.risk("new", 15_000), 20);
}

#[test]
fn a_trained_agent_reaching_for_new_tools_and_servers_is_flagged() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    assert_eq!(m.risk("bot", t), 0);
    let v = m.call(&call("bot", "crm/delete_record", t));
    assert_eq!(kinds(&v), [SignalKind::FirstSeenTool]);
    assert!(!v[0].alert);
    let v = m.call(&call("bot", "finance/transfer_funds", t + 30_000));
    assert_eq!(
        kinds(&v),
        [SignalKind::FirstSeenTool, SignalKind::FirstSeenServer]
    );
    assert!(v[0].alert, "20 + 20 + 25 reaches 40: {v:?}");
    assert!(!v[0].quarantine);
    // The same new tool again is not a new finding.
    assert!(
        m.call(&call("bot", "crm/delete_record", t + 60_000))
            .is_empty()
    );
}

#[test]
fn a_runaway_loop_is_caught_within_a_few_calls() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    let mut caught = None;
    for i in 0..20 {
        let v = m.call(&call("bot", "crm/read_contact", t + i * 200));
        if kinds(&v).contains(&SignalKind::RateSpike) {
            caught = Some(i + 1);
            break;
        }
    }
    let n = caught.expect("a burst of 5 calls per second must be a spike");
    assert!(n <= 8, "caught after {n} calls");
    // A burst that keeps growing keeps adding risk: reported again at twice the count.
    let mut reports = 1;
    for i in n..40 {
        let v = m.call(&call("bot", "crm/read_contact", t + i * 200));
        reports += v
            .iter()
            .flat_map(|v| &v.signals)
            .filter(|s| s.kind == SignalKind::RateSpike && s.detail.contains("within 10 s"))
            .count();
    }
    assert_eq!(reports, 3, "at {n}, {}, {} calls", 2 * n, 4 * n);
}

#[test]
fn oversized_arguments_and_results_are_volume_spikes() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    m.call(&call("bot", "crm/read_contact", t));
    m.call(&call("bot", "crm/log_call_note", t + 30_000));
    let mut c = call("bot", "email/send", t + 60_000);
    c.bytes_out = 500_000;
    assert_eq!(kinds(&m.call(&c)), [SignalKind::VolumeSpike]);
    let reply = |t, n| Reply {
        time_ms: t,
        agent: "bot",
        tool: "crm/read_contact",
        kind: ReplyKind::Content(n),
    };
    // No history of result sizes yet: no spike.
    assert!(m.reply(&reply(t + 90_000, 2_000_000)).is_none());
    for i in 0..40 {
        assert!(m.reply(&reply(t + 100_000 + i, 800 + i as u64)).is_none());
    }
    let v = m.reply(&reply(t + 200_000, 2_000_000)).unwrap();
    assert_eq!(v.signals[0].kind, SignalKind::VolumeSpike);
    assert!(
        v.signals[0]
            .detail
            .contains("2000000 bytes returned by crm/read_contact")
    );
}

#[test]
fn the_risk_decays_and_the_alert_latch_lowers() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    m.call(&call("bot", "x/one", t));
    m.call(&call("bot", "y/two", t + 1));
    let r = m.risk("bot", t + 1);
    assert_eq!(r, 90, "20+25 twice");
    // Quarantine at 90 came with the second call.
    assert!(m.quarantined("bot"));
    assert_eq!(m.risk("bot", t + 1 + 900_000), 45, "one half-life later");
    assert_eq!(m.risk("bot", t + 1 + 2_700_000), 11);
    assert!(m.release("bot", t + 3_000_000));
    assert!(!m.quarantined("bot"));
    assert_eq!(m.risk("bot", t + 3_000_000), 0);
}

#[test]
fn nothing_is_learned_while_the_agent_is_under_suspicion() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    let before = m.profile("bot", t).unwrap().0.operations;
    m.call(&call("bot", "x/one", t));
    m.call(&call("bot", "y/two", t + 1_000));
    assert!(m.risk("bot", t + 2_000) >= 40);
    m.call(&call("bot", "x/three", t + 2_000));
    let (p, _) = m.profile("bot", t + 3_000).unwrap();
    assert_eq!(
        p.operations,
        before + 1,
        "only the first, still unsuspected, call"
    );
    assert!(
        p.tools
            .iter()
            .all(|x| x.name != "y/two" && x.name != "x/three")
    );
}

#[test]
fn a_quarantine_is_asked_for_once() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    let mut asked = 0;
    for (i, tool) in ["a/1", "b/2", "c/3", "d/4", "e/5"].into_iter().enumerate() {
        asked += m
            .call(&call("bot", tool, t + i as i64))
            .iter()
            .filter(|v| v.quarantine)
            .count();
    }
    assert_eq!(asked, 1);
}

#[test]
fn signals_after_an_injection_weigh_double() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    let v = m.finding("bot", Finding::Injection, t).unwrap();
    assert_eq!(v.risk, 15);
    let v = m.call(&call("bot", "crm/delete_record", t + 1_000));
    assert_eq!(
        kinds(&v),
        [SignalKind::FirstSeenTool, SignalKind::AfterInjection]
    );
    assert_eq!(v[0].risk, 55);
    assert!(v[0].alert);
}

#[test]
fn delegation_fan_out_is_reported_on_the_delegator() {
    let m = Monitor::new(Settings::default());
    let names: Vec<String> = (0..12).map(|i| format!("helper-{i}")).collect();
    let mut seen = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut c = call(n, "crm/read_contact", i as i64 * 1000);
        c.delegator = Some("boss");
        let v = m.call(&c);
        if !v.is_empty() {
            seen.push((i, v));
        }
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (i, v) = &seen[0];
    assert_eq!(*i, 10, "the 11th delegate is over the limit of 10");
    assert_eq!(kinds(v), [SignalKind::FanOut]);
    assert_eq!(v[0].agent, "boss");
    assert!(m.risk("boss", 12_000) >= 29);
}

#[test]
fn off_hours_activity_is_flagged_once_per_half_hour() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    let night = t - 7 * 3_600_000;
    assert_eq!(
        kinds(&m.call(&call("bot", "crm/read_contact", night))),
        [SignalKind::OffHours]
    );
    assert!(
        m.call(&call("bot", "crm/log_call_note", night + 60_000))
            .is_empty()
    );
}

#[test]
fn a_never_seen_transition_is_an_unlikely_sequence() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    // The cycle is read → note → send → read; send → note never happened.
    let v = m.call(&call("bot", "crm/log_call_note", t));
    assert_eq!(kinds(&v), [SignalKind::UnlikelySequence]);
}

#[test]
fn quiet_learning_is_written_too() {
    // Regression: only a risk change used to mark an agent's state for writing, so an
    // agent that never raised anything never had its baseline stored.
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    let changed = m.changed();
    assert_eq!(changed.len(), 1);
    let stored = parse_persisted(&changed[0].1).unwrap();
    assert_eq!(stored.baseline.operations, 2880);
    assert!(m.changed().is_empty());
    // An answer teaches too.
    m.reply(&Reply {
        time_ms: t,
        agent: "bot",
        tool: "crm/read_contact",
        kind: ReplyKind::Answered,
    });
    assert_eq!(m.changed().len(), 1);
}

#[test]
fn the_state_survives_a_restart() {
    let m = Monitor::new(Settings::default());
    let t = train(&m, "bot");
    m.call(&call("bot", "crm/new_tool", t));
    let changed = m.changed();
    assert_eq!(changed.len(), 1);
    assert!(m.changed().is_empty(), "marked clean");
    let restarted = Monitor::new(Settings::default());
    for (agent, json) in changed {
        restarted.restore(&agent, parse_persisted(&json).unwrap());
    }
    assert_eq!(restarted.profile("bot", t), m.profile("bot", t));
    assert_eq!(restarted.risk("bot", t), 20);
    // The restored baseline still knows its tools.
    assert!(
        restarted
            .call(&call("bot", "crm/read_contact", t + 30_000))
            .is_empty()
    );
    assert!(parse_persisted(r#"{"baseline":{"transitions":[[0,1,3]]}}"#).is_err());
}

/// As [`train`], each call touching a record of its own.
fn train_with_records(m: &Monitor, agent: &str) -> i64 {
    let ids: Vec<String> = (0..3000).map(|i| format!("r-{i}")).collect();
    for day in 0..3 {
        for i in 0..(8 * 120) {
            let t = day * DAY + 9 * 3_600_000 + i * 30_000;
            let mut c = call(agent, TOOLS[(i % 3) as usize], t);
            c.record = Some(&ids[(day * 960 + i) as usize]);
            assert!(m.call(&c).is_empty());
        }
    }
    3 * DAY + 10 * 3_600_000
}

#[test]
fn reading_many_distinct_records_is_an_enumeration() {
    let m = Monitor::new(Settings::default());
    let t = train_with_records(&m, "bot");
    let ids: Vec<String> = (0..12).map(|i| format!("c-{i}")).collect();
    let mut found = None;
    for (i, id) in ids.iter().enumerate() {
        let mut c = call("bot", "crm/read_contact", t + i as i64 * 4_000);
        c.record = Some(id);
        if kinds(&m.call(&c)).contains(&SignalKind::Enumeration) {
            found = Some(i + 1);
            break;
        }
    }
    // One call every 4 s is no rate spike, but far more records a minute than usual.
    assert!(found.is_some_and(|n| n <= 8), "{found:?}");
    // The same record over and over is not an enumeration.
    let m = Monitor::new(Settings::default());
    let t = train_with_records(&m, "bot");
    for i in 0..12 {
        let mut c = call("bot", "crm/read_contact", t + i * 4_000);
        c.record = Some("c-1");
        assert!(!kinds(&m.call(&c)).contains(&SignalKind::Enumeration));
    }
}
