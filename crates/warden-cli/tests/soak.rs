//! Soak (issue 9): the real binary under steady loopback load for a bounded time, its
//! resident memory and open descriptors sampled from /proc once a second. The traffic mixes
//! what an agent fleet does all day: new task tokens, sessions opened and ended (both
//! protocol eras), allowed calls, forbidden calls, listings, malformed frames and
//! unauthenticated requests. Passes when nothing unexpected is answered and neither memory
//! nor descriptors show a growth trend after the warm-up.
//!
//! `WARDEN_SOAK_SECS` sets the length (default 40 s, as in CI); `scripts/soak.sh 600` is the
//! documented long run. The samples go to `$CARGO_TARGET_TMPDIR/soak.csv`, the summary to
//! `soak.md` beside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::env::Env;
use serde_json::json;
use warden_client::TaskRequest;
use warden_client::mcp::McpSession;

const WORKERS: usize = 4;

fn soak_secs() -> u64 {
    std::env::var("WARDEN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
        .max(12)
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    sessions: AtomicU64,
    refusals: AtomicU64,
}

#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    calls: u64,
}

/// VmRSS (KiB) and Threads from /proc/PID/status, and the number of open descriptors.
fn sample(pid: u32, t: f64, calls: u64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    Sample {
        t,
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
        calls,
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Least-squares slope of `y` over `t`, per second.
fn slope(s: &[Sample], y: impl Fn(&Sample) -> u64) -> f64 {
    let n = s.len() as f64;
    let mt = s.iter().map(|x| x.t).sum::<f64>() / n;
    let my = s.iter().map(|x| y(x) as f64).sum::<f64>() / n;
    let num: f64 = s.iter().map(|x| (x.t - mt) * (y(x) as f64 - my)).sum();
    let den: f64 = s.iter().map(|x| (x.t - mt).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

/// One agent's day, over and over: a task token, a session, calls, a listing, the end of
/// the session; now and then a malformed frame or a request without a token.
fn worker(env: &Env, n: usize, stop: &AtomicBool, counts: &Counts) {
    let (agent, protocol) = match n % 2 {
        0 => ("assistant", "2025-06-18"),
        _ => ("other", "2026-07-28"),
    };
    let client = env.agent(agent);
    let url = env.url("crm");
    let task = TaskRequest::new("t-soak", "soak").call_tool("crm/read_contact");
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let token = client.token(&url, &task).unwrap();
        let mut s = McpSession::new(env.agent(agent), &url, &token.access_token, protocol);
        s.initialize().unwrap();
        counts.sessions.fetch_add(1, Ordering::Relaxed);
        for i in 0..20 {
            let r = s
                .call_tool("read_contact", json!({"id": format!("c-{n}-{round}-{i}")}))
                .unwrap();
            assert!(r.get("result").is_some(), "allowed call refused: {r}");
            counts.calls.fetch_add(1, Ordering::Relaxed);
        }
        // Outside the token's task: refused, recorded.
        let r = s.call_tool("log_call_note", json!({"id": "c-1"})).unwrap();
        assert!(r.get("error").is_some(), "out-of-task call allowed: {r}");
        assert_eq!(s.tool_names().unwrap(), ["read_contact"]);
        counts.refusals.fetch_add(1, Ordering::Relaxed);
        if round.is_multiple_of(5) {
            let bad = s.post_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,", &[]).unwrap();
            assert_eq!(bad.status, 400, "{}", bad.body);
            let anonymous = McpSession::new(env.agent(agent), &url, "not-a-token", protocol);
            let r = anonymous.post_raw(b"{}", &[]).unwrap();
            assert_eq!(r.status, 401, "{}", r.body);
            counts.refusals.fetch_add(2, Ordering::Relaxed);
        }
        if s.session_id().is_some() {
            let status = s.close().unwrap();
            assert!((200..300).contains(&status), "DELETE answered {status}");
        }
    }
}

#[test]
fn steady_load_shows_no_memory_or_descriptor_growth() {
    let secs = soak_secs();
    // Proofs live 5 s in the replay cache (the configurable minimum) and tokens 30 s in the
    // signature cache, so both reach their steady size in the warm-up instead of after the
    // default minute and five minutes. The clients run
    // at machine speed on purpose: the behavioural monitor scores and alerts as usual, but
    // does not quarantine them (it would, rightly, as runaways).
    let env = Env::start_with(
        "[oauth]\ndpop_max_age_secs = 5\n\
         [oauth.token_lifetime_secs]\nintern = 30\njunior = 30\nsenior = 30\nprincipal = 30\n\
         [monitor]\nquarantine_at = 0\n",
        "",
    );
    let pid = env.warden.pid();
    let stop = AtomicBool::new(false);
    let counts = Arc::new(Counts::default());
    let idle = sample(pid, 0.0, 0);
    let start = Instant::now();
    let samples = std::thread::scope(|scope| {
        for n in 0..WORKERS {
            let (env, stop, counts) = (&env, &stop, &counts);
            scope.spawn(move || worker(env, n, stop, counts));
        }
        let mut samples = Vec::new();
        while start.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_secs(1));
            let calls = counts.calls.load(Ordering::Relaxed);
            samples.push(sample(pid, start.elapsed().as_secs_f64(), calls));
        }
        stop.store(true, Ordering::Relaxed);
        samples
    });
    // The load has stopped; the workers' connections close. Wait for the descriptors to
    // settle (keep-alive connections to the upstream may stay pooled).
    std::thread::sleep(Duration::from_secs(2));
    let after = sample(pid, start.elapsed().as_secs_f64(), 0);

    // The first third is warm-up (caches, pools, allocator arenas fill); the trend is read
    // from the rest, comparing its middle and last thirds.
    let warm = samples.len() / 3;
    let steady = &samples[warm..];
    let third = steady.len() / 2;
    let (mid, last) = steady.split_at(third);
    let rss_mid = median(mid.iter().map(|s| s.rss_kib).collect());
    let rss_last = median(last.iter().map(|s| s.rss_kib).collect());
    let fds_mid_max = mid.iter().map(|s| s.fds).max().unwrap();
    let fds_last_max = last.iter().map(|s| s.fds).max().unwrap();
    let rss_slope = slope(steady, |s| s.rss_kib);
    let fd_slope = slope(steady, |s| s.fds);
    let calls = counts.calls.load(Ordering::Relaxed);
    let sessions = counts.sessions.load(Ordering::Relaxed);
    let refusals = counts.refusals.load(Ordering::Relaxed);
    let elapsed = samples.last().unwrap().t;

    let mut csv = String::from("t_secs,rss_kib,fds,threads,calls\n");
    for s in &samples {
        writeln!(
            csv,
            "{:.1},{},{},{},{}",
            s.t, s.rss_kib, s.fds, s.threads, s.calls
        )
        .unwrap();
    }
    let report = format!(
        "| | value |\n|---|---|\n\
         | length | {elapsed:.0} s, {WORKERS} clients |\n\
         | allowed calls | {calls} ({:.0}/s) |\n\
         | sessions opened and ended | {sessions} |\n\
         | refused requests (out of task, malformed, no token) | {refusals} |\n\
         | RSS idle → median middle third → median last third → after load | {} → {} → {} → {} KiB |\n\
         | RSS slope over the steady part | {:+.1} KiB/s ({:+.1} MiB/h) |\n\
         | open fds idle → max middle third → max last third → after load | {} → {} → {} → {} |\n\
         | fd slope over the steady part | {fd_slope:+.3}/s |\n\
         | threads idle → after load | {} → {} |\n",
        calls as f64 / elapsed,
        idle.rss_kib,
        rss_mid,
        rss_last,
        after.rss_kib,
        rss_slope,
        rss_slope * 3600.0 / 1024.0,
        idle.fds,
        fds_mid_max,
        fds_last_max,
        after.fds,
        idle.threads,
        after.threads,
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(out.join("soak.csv"), csv).unwrap();
    std::fs::write(out.join("soak.md"), &report).unwrap();
    println!("{report}");

    assert!(calls > 0 && sessions > 0, "no load was driven");
    // Memory: the last third's median within 10 % (plus 4 MiB) of the middle third's. The
    // margin covers allocator noise and the audit log's page cache, which fills (up to its
    // 64 MiB) as the log grows and is still filling in a short debug run. The long release
    // run (scripts/soak.sh) is the one that sees slow leaks: the cache growth fixed after
    // the first one showed as +28 MB between the thirds there.
    assert!(
        rss_last <= rss_mid + rss_mid / 10 + 4096,
        "resident memory keeps growing:\n{report}"
    );
    // Descriptors: no more in the last third than in the middle one (each client holds at
    // most a couple of connections; allow one per client of jitter), and back near idle
    // once the load stops (pooled upstream connections aside).
    assert!(
        fds_last_max <= fds_mid_max + WORKERS as u64,
        "open descriptors keep growing:\n{report}"
    );
    assert!(
        after.fds <= idle.fds + 2 * WORKERS as u64 + 4,
        "descriptors stay open after the load:\n{report}"
    );
}
