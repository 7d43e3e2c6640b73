//! `warden bench authzen`: a load driver for the AuthZEN endpoint over loopback.
//!
//! Each connection is a keep-alive HTTP/1.1 client on its own task that sends one request,
//! reads the whole response, and records the latency; the driver reports decisions/s and
//! latency percentiles. It is deliberately small (no client library on the measured path).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Load the AuthZEN evaluation endpoint of a running Warden and report throughput and
    /// latency percentiles.
    Authzen(AuthzenArgs),
    /// Issue task tokens from a running Warden as fast as it gives them (client
    /// credentials with private_key_jwt and DPoP, PE intersection, signing) and report
    /// tokens/s and latency percentiles. Registers a throwaway agent through the admin API.
    Tokens(TokensArgs),
    /// MCP `tools/call` straight to an upstream vs through a running Warden (token + DPoP,
    /// policy, forwarding) at several concurrency levels: added latency and calls/s.
    /// Registers a throwaway agent through the admin API.
    Mcp(crate::bench_mcp::McpArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    /// The running Warden.
    #[arg(long, env = "WARDEN_SERVER", default_value = "http://127.0.0.1:8470")]
    server: String,
    /// Admin credential, to register the bench agent.
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Concurrent clients (threads).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to measure, in seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The resource to ask for (default `<server>/mcp`).
    #[arg(long)]
    resource: Option<String>,
    /// The tool the task asks for (the policy must permit any agent to call it).
    #[arg(long, default_value = "crm/search")]
    tool: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuthzenArgs {
    /// Address of the running Warden.
    #[arg(long, default_value = "127.0.0.1:8470")]
    addr: SocketAddr,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to measure, in seconds (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A JSON file whose `evaluation[].request` bodies are sent in turn (an AuthZEN
    /// decisions file). Default: one built-in Todo request.
    #[arg(long, value_name = "FILE")]
    requests: Option<std::path::PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

const DEFAULT_BODY: &str = r#"{"subject":{"type":"user","id":"CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},"action":{"name":"can_update_todo"},"resource":{"type":"todo","id":"7240d0db-8ff0-41ec-98b2-34a096273b91","properties":{"ownerID":"morty@the-citadel.com"}}}"#;

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        BenchCommand::Authzen(args) => args,
        BenchCommand::Tokens(args) => return tokens(&args),
        BenchCommand::Mcp(args) => return crate::bench_mcp::mcp(&args),
    };
    let bodies: Vec<String> = match &args.requests {
        None => vec![DEFAULT_BODY.to_owned()],
        Some(path) => {
            let v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?,
            )?;
            v.get("evaluation")
                .and_then(serde_json::Value::as_array)
                .context("the file has no `evaluation` array")?
                .iter()
                .filter_map(|c| c.get("request").map(ToString::to_string))
                .collect()
        }
    };
    if bodies.is_empty() {
        bail!("no requests to send");
    }
    let requests: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            format!(
                "POST /access/v1/evaluation HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                args.addr,
                b.len()
            )
            .into_bytes()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (samples, errors) = rt.block_on(load(&args, requests))?;
    report(&args, "decisions", samples, errors)
}

async fn load(args: &AuthzenArgs, requests: Vec<Vec<u8>>) -> anyhow::Result<(Vec<u32>, u64)> {
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(args.seconds);
    let requests = std::sync::Arc::new(requests);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let requests = std::sync::Arc::clone(&requests);
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            connection(addr, &requests, c, measure_from, end).await
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await??;
        samples.extend(s);
        errors += e;
    }
    Ok((samples, errors))
}

async fn connection(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    offset: usize,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}: is `warden serve` running?"))?;
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut samples = Vec::with_capacity(1 << 20);
    let mut errors = 0;
    let mut i = offset;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let req = requests
            .get(i % requests.len())
            .map_or(&[][..], Vec::as_slice);
        i += 1;
        stream.write_all(req).await?;
        let ok = read_response(&mut stream, &mut buf).await?;
        let took = now.elapsed();
        if now >= measure_from {
            samples.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            if !ok {
                errors += 1;
            }
        }
    }
    Ok((samples, errors))
}

/// Reads one response; true when its status is 200.
async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> anyhow::Result<bool> {
    let mut filled = 0;
    loop {
        filled += read_more(stream, buf, filled).await?;
        let head = buf.get(..filled).unwrap_or_default();
        if let Some(end) = find(head, b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(head.get(..end).unwrap_or_default()).into_owned();
            let len: usize = headers
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while filled < total {
                filled += read_more(stream, buf, filled).await?;
            }
            return Ok(headers.starts_with("HTTP/1.1 200"));
        }
        if filled == buf.len() {
            bail!("response headers too large");
        }
    }
}

/// Reads more bytes into `buf` after `filled`; an error when the server closed.
async fn read_more(stream: &mut TcpStream, buf: &mut [u8], filled: usize) -> anyhow::Result<usize> {
    let n = stream
        .read(buf.get_mut(filled..).unwrap_or_default())
        .await?;
    if n == 0 {
        bail!("the server closed the connection");
    }
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn report(
    args: &AuthzenArgs,
    what: &str,
    mut samples: Vec<u32>,
    errors: u64,
) -> anyhow::Result<ExitCode> {
    if samples.is_empty() {
        bail!("no request completed");
    }
    samples.sort_unstable();
    let at = |q: f64| quantile(&samples, q);
    let rate = samples.len() as f64 / args.seconds as f64;
    let result = serde_json::json!({
        "connections": args.connections,
        "seconds": args.seconds,
        "requests": samples.len(),
        "errors": errors,
        format!("{what}_per_second"): rate.round(),
        "latency_us": {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{} connections, {} s: {} {what} ({:.0}/s), {} errors",
            args.connections,
            args.seconds,
            samples.len(),
            rate,
            errors
        );
        println!(
            "latency µs: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            at(0.50),
            at(0.90),
            at(0.99),
            at(0.999),
            at(1.0)
        );
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn tokens(args: &TokensArgs) -> anyhow::Result<ExitCode> {
    use warden_client::{AdminClient, AgentClient, TaskRequest};
    let key = warden_identity::KeyPair::generate();
    let id = format!("bench-{}", &key.public_jwk().kid[..8].to_ascii_lowercase());
    AdminClient::new(&args.server, &args.admin_token)
        .create_agent(
            &id,
            "token benchmark",
            &["bench@localhost".to_owned()],
            "warden bench tokens",
            warden_core::AutonomyLevel::Junior,
            true,
            &key.public_jwk(),
        )
        .map_err(|e| anyhow::anyhow!("cannot register the bench agent: {e}"))?;
    let resource = args
        .resource
        .clone()
        .unwrap_or_else(|| format!("{}/mcp", args.server.trim_end_matches('/')));
    let task = TaskRequest::new("bench", "token benchmark").call_tool(&args.tool);
    let client = AgentClient::new(&args.server, &id, key);
    client
        .token(&resource, &task)
        .map_err(|e| anyhow::anyhow!("the first token request failed: {e}"))?;
    let (samples, errors) = closed_loop(
        (0..args.connections.max(1))
            .map(|_| {
                let (client, task, resource) = (client.clone(), task.clone(), resource.clone());
                move || client.token(&resource, &task).is_ok()
            })
            .collect(),
        args.seconds,
    )?;
    let view = AuthzenArgs {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        connections: args.connections,
        seconds: args.seconds,
        requests: None,
        json: args.json,
    };
    if !args.json {
        println!("token issuance (client credentials + private_key_jwt + DPoP), agent {id}:");
    }
    report(&view, "tokens", samples, errors)
}

/// Runs each `call` on its own thread in a closed loop: 1 s of warm-up, then `seconds` of
/// measurement. Returns the latencies (µs) of the calls that returned true, and how many
/// returned false, during the measurement.
pub(crate) fn closed_loop<F>(calls: Vec<F>, seconds: u64) -> anyhow::Result<(Vec<u32>, u64)>
where
    F: FnMut() -> bool + Send + 'static,
{
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop = warm_until + Duration::from_secs(seconds);
    let handles: Vec<_> = calls
        .into_iter()
        .map(|mut call| {
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut errors = 0u64;
                loop {
                    let start = Instant::now();
                    if start >= stop {
                        break;
                    }
                    let ok = call();
                    if start >= warm_until {
                        if ok {
                            samples.push(
                                u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX),
                            );
                        } else {
                            errors += 1;
                        }
                    }
                }
                (samples, errors)
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (s, e) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        samples.extend(s);
        errors += e;
    }
    samples.sort_unstable();
    Ok((samples, errors))
}

/// The `q` quantile of sorted samples (0 when empty).
pub(crate) fn quantile(sorted: &[u32], q: f64) -> u32 {
    let i = (sorted.len().saturating_sub(1) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}
