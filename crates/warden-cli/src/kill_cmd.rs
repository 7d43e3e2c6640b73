//! `warden kill` and `warden resume` (KS-1..KS-3), and the kill drill (KS-2): a real kill
//! against a live session of a test agent, timed from the command to the first denied call
//! and to the closing of the session's event stream, then undone.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::{Value, json};
use warden_client::mcp::McpSession;
use warden_client::{AgentClient, TaskRequest};
use warden_identity::KeyPair;

use crate::admin_cmd::ServerArgs;
use crate::bench::quantile;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("whom").required(true).args(["agent", "sponsor", "all"])))]
pub struct KillArgs {
    /// The agent to stop, with every token issued to it or delegated through it.
    agent: Option<String>,
    /// Kill every agent this person sponsors.
    #[arg(long, value_name = "SPONSOR")]
    sponsor: Option<String>,
    /// Kill every agent.
    #[arg(long)]
    all: bool,
    /// Let calls in flight finish (open streams still close). Default: forced.
    #[arg(long, conflicts_with = "force")]
    graceful: bool,
    /// Abort calls in flight and close open streams now (the default).
    #[arg(long)]
    force: bool,
    /// Why (kept in the audit trail). Required, except for a drill.
    #[arg(long, required_unless_present = "drill")]
    reason: Option<String>,
    /// Prove the kill switch: kill AGENT (a test agent) during a live session, time it,
    /// resume it. Needs the agent's key and a tool its policy allows.
    #[arg(long, requires = "agent", requires = "agent_key", requires = "call")]
    drill: bool,
    /// The drill agent's private key file.
    #[arg(long, value_name = "FILE")]
    agent_key: Option<PathBuf>,
    /// The tool the drill calls, `upstream/tool` (must be allowed for the agent).
    #[arg(long, value_name = "UPSTREAM/TOOL")]
    call: Option<String>,
    /// The drill call's arguments (JSON object).
    #[arg(long, default_value = "{}", value_name = "JSON")]
    args: String,
    /// How many drills to run.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The agent to make active again (tokens from before a kill stay revoked).
    agent: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let a = args
        .server
        .client()?
        .set_state(&args.agent, "resume", &args.reason)?;
    println!(
        "Agent `{}` is {} again. Tokens issued before a kill stay revoked: it must get new ones.",
        a.id, a.state
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: KillArgs) -> anyhow::Result<ExitCode> {
    if args.drill {
        return drill(&args);
    }
    let client = args.server.client()?;
    let mode = if args.graceful { "graceful" } else { "forced" };
    let reason = args.reason.as_deref().unwrap_or_default();
    let started = Instant::now();
    let v = match (&args.agent, &args.sponsor) {
        (Some(a), _) => client.kill(a, mode, reason)?,
        (None, sponsor) => client.kill_many(sponsor.as_deref(), mode, reason)?,
    };
    let took = started.elapsed();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let killed: Vec<&str> = v
        .get("killed")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "Killed ({mode}): {}. In force {} µs after Warden received the command; \
         acknowledged in {:.1} ms.",
        killed.join(", "),
        v.get("enforced_after_us").unwrap_or(&Value::Null),
        took.as_secs_f64() * 1e3
    );
    println!(
        "Every token issued to or through {} until now is revoked; resume with \
         `warden resume AGENT --reason ...`.",
        if killed.len() == 1 { "it" } else { "them" }
    );
    Ok(ExitCode::SUCCESS)
}

/// One drill's figures, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Command sent → first call answered with a denial.
    denied_us: u64,
    /// Command sent → the event stream closed (`None`: the upstream has no stream).
    stream_us: Option<u64>,
    /// Command sent → the admin API answered.
    ack_us: u64,
    /// One allowed call before the kill, end to end (the drill's resolution).
    call_us: u64,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn drill(args: &KillArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let agent = args.agent.clone().unwrap_or_default();
    let key_file = args.agent_key.clone().unwrap_or_default();
    let key = KeyPair::read_private(&key_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
    let call = args.call.clone().unwrap_or_default();
    let (upstream, tool) = call.split_once('/').context("--call is `upstream/tool`")?;
    let arguments: Value = serde_json::from_str(&args.args).context("--args: not JSON")?;
    let url = format!(
        "{}/mcp/{upstream}",
        args.server.server.trim_end_matches('/')
    );
    let client = AgentClient::new(&args.server.server, &agent, key);
    let mut rounds = Vec::new();
    let bar = (!args.json && args.rounds > 1)
        .then(|| indicatif::ProgressBar::new(u64::from(args.rounds)).with_message("kill drills"));
    for _ in 0..args.rounds {
        let r = one_drill(&admin, &client, &agent, &url, tool, &arguments);
        // Whatever happened, the agent is resumed.
        if let Err(e) = admin.set_state(&agent, "resume", "kill drill: restored") {
            eprintln!("warning: could not resume `{agent}` after the drill: {e}");
        }
        rounds.push(r?);
        if let Some(b) = &bar {
            b.inc(1);
        }
        // Tokens issued in the second of a kill stay revoked: the next round's must be newer.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::thread::sleep(Duration::from_nanos(
            1_000_000_000 - u64::from(now.subsec_nanos()) + 5_000_000,
        ));
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report(args, &agent, &rounds)
}

fn one_drill(
    admin: &warden_client::AdminClient,
    client: &AgentClient,
    agent: &str,
    url: &str,
    tool: &str,
    arguments: &Value,
) -> anyhow::Result<Round> {
    let upstream = url.rsplit('/').next().unwrap_or_default();
    let task =
        TaskRequest::new("kill-drill", "kill drill").call_tool(&format!("{upstream}/{tool}"));
    let token = client
        .token(url, &task)
        .context("the drill agent could not get a token")?;
    let mut session = McpSession::new(client.clone(), url, &token.access_token, "2025-11-25");
    session.initialize().context("initialize")?;
    let _warm = session.call_tool(tool, arguments.clone())?;
    let t = Instant::now();
    let first = session.call_tool(tool, arguments.clone())?;
    let call_us = us(t.elapsed());
    if first.get("result").is_none() {
        anyhow::bail!(
            "the drill call is not allowed before the kill, so a denial would prove nothing: {first}"
        );
    }
    // The session's event stream, read until Warden closes it.
    let (stream_tx, stream_rx) = mpsc::channel();
    let stream_session = session.clone();
    std::thread::spawn(move || {
        if let Ok((200, mut body)) = stream_session.open_stream() {
            let mut buf = [0u8; 1024];
            while matches!(body.read(&mut buf), Ok(n) if n > 0) {}
            let _ = stream_tx.send(Some(Instant::now()));
        } else {
            let _ = stream_tx.send(None);
        }
    });
    // Calls back to back until one is denied.
    let (denied_tx, denied_rx) = mpsc::channel();
    let mut caller = session.clone();
    let (tool, arguments) = (tool.to_owned(), arguments.clone());
    std::thread::spawn(move || {
        loop {
            match caller.call_tool(&tool, arguments.clone()) {
                Ok(r) if r.get("result").is_some() => continue,
                _ => {
                    let _ = denied_tx.send(Instant::now());
                    return;
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let sent = Instant::now();
    admin.kill(agent, "forced", "kill drill")?;
    let ack = sent.elapsed();
    let denied = denied_rx
        .recv_timeout(Duration::from_secs(5))
        .context("no call was denied within 5 s of the kill")?;
    let stream = stream_rx
        .recv_timeout(Duration::from_secs(5))
        .context("the event stream did not close within 5 s of the kill")?;
    Ok(Round {
        denied_us: us(denied.saturating_duration_since(sent)),
        stream_us: stream.map(|t| us(t.saturating_duration_since(sent))),
        ack_us: us(ack),
        call_us,
    })
}

fn summary(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    let as_u32: Vec<u32> = v
        .iter()
        .map(|x| u32::try_from(*x).unwrap_or(u32::MAX))
        .collect();
    json!({
        "p50_us": quantile(&as_u32, 0.50),
        "p99_us": quantile(&as_u32, 0.99),
        "max_us": quantile(&as_u32, 1.0),
    })
}

fn report(args: &KillArgs, agent: &str, rounds: &[Round]) -> anyhow::Result<ExitCode> {
    let denied = summary(rounds.iter().map(|r| r.denied_us).collect());
    let streams: Vec<u64> = rounds.iter().filter_map(|r| r.stream_us).collect();
    let stream = (!streams.is_empty()).then(|| summary(streams));
    let ack = summary(rounds.iter().map(|r| r.ack_us).collect());
    let call = summary(rounds.iter().map(|r| r.call_us).collect());
    let out = json!({
        "agent": agent,
        "rounds": rounds.len(),
        "kill_to_first_denied_call": denied,
        "kill_to_stream_closed": stream,
        "kill_acknowledged": ack,
        "allowed_call_before_the_kill": call,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["from the kill command to", "p50", "p99", "max"]);
    let ms = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .map_or("-".to_owned(), |x| format!("{:.2} ms", x as f64 / 1e3))
    };
    for (what, v) in [
        ("first denied call", Some(&denied)),
        ("event stream closed", stream.as_ref()),
        ("kill acknowledged", Some(&ack)),
    ] {
        match v {
            Some(v) => t.add_row([
                what.to_owned(),
                ms(v, "p50_us"),
                ms(v, "p99_us"),
                ms(v, "max_us"),
            ]),
            None => t.add_row([what, "n/a (no stream)", "", ""].map(str::to_owned)),
        };
    }
    println!(
        "Kill drill: {} round(s) against `{agent}` (killed and resumed each time):",
        rounds.len()
    );
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
