//! `warden bench mcp`: MCP `tools/call` direct to an upstream vs through Warden, on loopback.
//!
//! Registers a DPoP-bound bench agent through the admin API, gets a task token for one tool,
//! then for each concurrency level drives the same `tools/call` (2026-07-28, stateless: no
//! session set-up on the measured path) first straight at the upstream, then through Warden
//! with the token and a DPoP proof per call. DPoP proofs are signed before the clock starts,
//! so the figures show Warden's cost, not the client's signing. Reports p50/p99 latency and
//! calls/s for both and the added latency. With `--proxy`, the same calls through a plain
//! reverse proxy (nginx) too, so Warden's added latency can be set against a bare hop's.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use warden_client::{AdminClient, AgentClient, TaskRequest};

use crate::bench::{closed_loop, quantile};

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// The running Warden.
    #[arg(long, env = "WARDEN_SERVER", default_value = "http://127.0.0.1:8470")]
    server: String,
    /// Admin credential, to register the bench agent.
    #[arg(long, env = "WARDEN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// The upstream's name in Warden's config.
    #[arg(long, default_value = "crm")]
    upstream: String,
    /// The upstream's own URL, for the direct baseline.
    #[arg(long)]
    direct: String,
    /// Extra header for the direct baseline (the upstream's credential), `Name: value`.
    #[arg(long)]
    direct_header: Option<String>,
    /// A plain reverse proxy (e.g. nginx) in front of the same upstream, measured with the
    /// direct baseline's headers: the yardstick for what any hop costs on this machine.
    #[arg(long)]
    proxy: Option<String>,
    /// The tool to call and its JSON arguments.
    #[arg(long, default_value = "read_contact")]
    tool: String,
    #[arg(long, default_value = r#"{"id":"c-1"}"#)]
    arguments: String,
    /// Concurrency levels (clients, each a thread with a keep-alive connection).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds per measurement (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

struct Run {
    calls: usize,
    errors: u64,
    p50: u32,
    p99: u32,
    rate: f64,
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .max_idle_connections_per_host(256)
        .build()
        .into()
}

/// One measurement: `clients` threads posting `body` to `url` for `seconds`. `auth` gives
/// the per-call authorization headers (pre-computed).
fn measure(
    url: &str,
    body: &str,
    headers: &[(String, String)],
    clients: usize,
    seconds: u64,
    mut proofs: Vec<Vec<String>>,
) -> anyhow::Result<Run> {
    let calls = (0..clients)
        .map(|i| {
            let (url, body, headers) = (url.to_owned(), body.to_owned(), headers.to_vec());
            let mut proofs = proofs.get_mut(i).map(std::mem::take).unwrap_or_default();
            let agent = http();
            move || {
                let mut req = agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("Accept", "application/json, text/event-stream")
                    .header("MCP-Protocol-Version", "2026-07-28")
                    .header("Mcp-Method", "tools/call");
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                if let Some(p) = proofs.pop() {
                    req = req.header("DPoP", p);
                }
                match req.send(body.as_bytes()) {
                    Ok(mut r) => {
                        let status = r.status().as_u16();
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        status == 200 && text.contains("\"result\"")
                    }
                    Err(_) => false,
                }
            }
        })
        .collect();
    let (samples, errors) = closed_loop(calls, seconds)?;
    Ok(Run {
        calls: samples.len(),
        errors,
        p50: quantile(&samples, 0.5),
        p99: quantile(&samples, 0.99),
        rate: samples.len() as f64 / seconds as f64,
    })
}

pub fn mcp(args: &McpArgs) -> anyhow::Result<std::process::ExitCode> {
    let server = args.server.trim_end_matches('/');
    let key = warden_identity::KeyPair::generate();
    let id = format!(
        "bench-{}",
        key.public_jwk()
            .kid
            .get(..8)
            .unwrap_or("x")
            .to_ascii_lowercase()
    );
    AdminClient::new(server, &args.admin_token)
        .create_agent(
            &id,
            "MCP gateway benchmark",
            &["bench@localhost".to_owned()],
            "warden bench mcp",
            warden_core::AutonomyLevel::Junior,
            true,
            &key.public_jwk(),
        )
        .map_err(|e| anyhow::anyhow!("cannot register the bench agent: {e}"))?;
    let url = format!("{server}/mcp/{}", args.upstream);
    let client = AgentClient::new(server, &id, key);
    let task = TaskRequest::new("bench", "MCP gateway benchmark")
        .call_tool(&format!("{}/{}", args.upstream, args.tool));
    let token = client
        .token(&url, &task)
        .map_err(|e| anyhow::anyhow!("cannot get a task token: {e}"))?
        .access_token;
    let arguments: serde_json::Value =
        serde_json::from_str(&args.arguments).context("--arguments is not JSON")?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": args.tool, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let mut direct_headers = vec![("Mcp-Name".to_owned(), args.tool.clone())];
    if let Some(h) = &args.direct_header {
        let (k, v) = h
            .split_once(':')
            .context("--direct-header is `Name: value`")?;
        direct_headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let warden_headers = vec![
        ("Mcp-Name".to_owned(), args.tool.clone()),
        ("Authorization".to_owned(), format!("DPoP {token}")),
    ];
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let clients = clients.max(1);
        let direct = measure(
            &args.direct,
            &body,
            &direct_headers,
            clients,
            args.seconds,
            vec![],
        )?;
        let proxy = match &args.proxy {
            Some(p) => Some(measure(
                p,
                &body,
                &direct_headers,
                clients,
                args.seconds,
                vec![],
            )?),
            None => None,
        };
        // Enough single-use proofs for the warm-up and the run at the direct rate x 1.5.
        let per_client =
            ((direct.rate * (args.seconds + 1) as f64 * 1.5) as usize / clients).max(1000);
        let proofs: Vec<Vec<String>> = (0..clients)
            .map(|_| {
                (0..per_client)
                    .filter_map(|_| client.proof("POST", &url, Some(&token)))
                    .collect()
            })
            .collect();
        let through = measure(&url, &body, &warden_headers, clients, args.seconds, proofs)?;
        rows.push(Row {
            clients,
            direct,
            proxy,
            warden: through,
        });
    }
    if args.json {
        let out: Vec<_> = rows.iter().map(Row::json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "tools/call {}/{} direct vs through Warden ({} s each):",
            args.upstream, args.tool, args.seconds
        );
        println!("{}", table(&rows));
    }
    let errors: u64 = rows.iter().map(Row::errors).sum();
    Ok(if errors == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// One concurrency level: direct, through the plain proxy (if asked), through Warden.
struct Row {
    clients: usize,
    direct: Run,
    proxy: Option<Run>,
    warden: Run,
}

/// `a`'s latency minus `base`'s, p50 and p99.
fn added(a: &Run, base: &Run) -> (i64, i64) {
    (
        i64::from(a.p50) - i64::from(base.p50),
        i64::from(a.p99) - i64::from(base.p99),
    )
}

impl Run {
    fn json(&self) -> serde_json::Value {
        json!({"calls_per_s": self.rate.round(), "p50_us": self.p50, "p99_us": self.p99,
               "calls": self.calls, "errors": self.errors})
    }
}

impl Row {
    fn errors(&self) -> u64 {
        self.direct.errors + self.warden.errors + self.proxy.as_ref().map_or(0, |p| p.errors)
    }

    fn json(&self) -> serde_json::Value {
        let (w50, w99) = added(&self.warden, &self.direct);
        let mut v = json!({"clients": self.clients,
            "direct": self.direct.json(), "warden": self.warden.json(),
            "added_p50_us": w50, "added_p99_us": w99});
        if let (Some(p), Some(o)) = (&self.proxy, v.as_object_mut()) {
            let (p50, p99) = added(p, &self.direct);
            o.insert("proxy".into(), p.json());
            o.insert("proxy_added_p50_us".into(), p50.into());
            o.insert("proxy_added_p99_us".into(), p99.into());
        }
        v
    }
}

fn table(rows: &[Row]) -> comfy_table::Table {
    let with_proxy = rows.iter().any(|r| r.proxy.is_some());
    let mut header = vec!["clients", "direct calls/s", "direct p50/p99 µs"];
    if with_proxy {
        header.extend(["proxy calls/s", "proxy added p50/p99 µs"]);
    }
    header.extend([
        "Warden calls/s",
        "Warden p50/p99 µs",
        "added p50/p99 µs",
        "errors",
    ]);
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(header);
    let pair = |(a, b): (i64, i64)| format!("{a} / {b}");
    for r in rows {
        let (d, w) = (&r.direct, &r.warden);
        let mut cells = vec![
            r.clients.to_string(),
            format!("{:.0}", d.rate),
            format!("{} / {}", d.p50, d.p99),
        ];
        if with_proxy {
            match &r.proxy {
                Some(p) => cells.extend([format!("{:.0}", p.rate), pair(added(p, d))]),
                None => cells.extend(["-".to_owned(), "-".to_owned()]),
            }
        }
        cells.extend([
            format!("{:.0}", w.rate),
            format!("{} / {}", w.p50, w.p99),
            pair(added(w, d)),
            r.errors().to_string(),
        ]);
        t.add_row(cells);
    }
    t
}
