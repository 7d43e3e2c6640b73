//! `warden agent ...`: the agent registry (ID-1..ID-3).
//!
//! With `--server URL` (or `$WARDEN_SERVER`) and an admin credential (`--admin-token` or
//! `$WARDEN_ADMIN_TOKEN`) the commands go through the running server's admin API, which
//! applies each change at once and attributes it to the credential. Without `--server` they
//! work on the store in the data directory (the SQLite file `warden serve` uses; WAL lets
//! both use it at once); a running server picks such changes up within a second.
//!
//! `warden agent token` asks a running Warden for a task token as the agent, for manual use
//! with curl; `warden agent proof` signs the DPoP proof each request needs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use warden_audit::EventRecord;
use warden_client::{AdminClient, AgentClient, TaskRequest};
use warden_core::{ActionKind, PublicJwk};
use warden_core::{AgentId, AgentRecord, AgentState, AutonomyLevel, NewAgent};
use warden_identity::KeyPair;
use warden_store::{AgentStore, SqliteStore};

use crate::{ConfigArg, config_cmd};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Data directory (overrides the config and $WARDEN_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of tables and text.
    #[arg(long, global = true)]
    json: bool,
    /// A running Warden to change through its admin API (e.g. http://127.0.0.1:8470).
    #[arg(long, global = true, env = "WARDEN_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The admin API credential (`wdn_admin_...`) for `--server`.
    #[arg(
        long,
        global = true,
        env = "WARDEN_ADMIN_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Register an agent: generates its key pair, stores only the public key, writes the
    /// private key to a 0600 file and prints how to use it.
    Create {
        /// The agent's id (letters, digits, `.`, `_`, `-`, `:`, `@`).
        id: AgentId,
        /// Display name. Default: the id.
        #[arg(long)]
        name: Option<String>,
        /// The human accountable for the agent (repeat for several). At least one.
        #[arg(long = "sponsor", required = true, value_name = "WHO")]
        sponsors: Vec<String>,
        /// What the agent is for.
        #[arg(long, default_value = "")]
        purpose: String,
        #[arg(long, default_value = "intern")]
        autonomy: AutonomyLevel,
        /// Let the agent use bearer tokens without DPoP proofs (weaker; shown as such).
        #[arg(long)]
        no_dpop: bool,
        /// Where to write the private key. Default: `<id>.jwk` in the current directory.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
    },
    /// List agents.
    List,
    /// Show one agent.
    Show { id: AgentId },
    /// Suspend an agent (reversible with `resume`). Its tokens stop working at once.
    Suspend {
        id: AgentId,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a suspended agent (it needs a sponsor).
    Resume {
        id: AgentId,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke an agent. Final; its tokens and every token delegated through it die.
    Revoke {
        id: AgentId,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give the agent a new key; the old one stays valid for the grace period.
    RotateKey {
        id: AgentId,
        /// Seconds the previous key remains valid.
        #[arg(long, default_value_t = 3600)]
        grace: i64,
        /// Where to write the new private key. Default: `<id>.<kid prefix>.jwk`.
        #[arg(long, value_name = "FILE")]
        key_out: Option<PathBuf>,
    },
    /// List tainted tasks (content they received carried a prompt injection; their
    /// high-risk calls need a human's approval until the taint expires or is ended).
    Taints {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<AgentId>,
    },
    /// End a taint after a person has looked at what the task received (audited).
    Untaint {
        id: AgentId,
        /// Only this task's taint (default: every task of the agent).
        #[arg(long)]
        task: Option<String>,
        /// What was checked.
        #[arg(long)]
        reason: String,
    },
    /// What the behavioural monitor has learned about the agent: tools, rates, volumes,
    /// hours, sequences, destinations, delegates; and its risk score now.
    Baseline { id: AgentId },
    /// Set the agent's autonomy level.
    Autonomy { id: AgentId, level: AutonomyLevel },
    /// Add or remove sponsors.
    #[command(subcommand)]
    Sponsor(SponsorCommand),
    /// Get a task token from a running Warden as this agent (prints the token; --json for
    /// the whole answer). Needs the agent's private key.
    Token(TokenArgs),
    /// Sign a DPoP proof for one request with the agent's key (for curl).
    Proof {
        /// The agent's private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The HTTP method of the request.
        #[arg(long, default_value = "POST")]
        method: String,
        /// The full URL of the request.
        #[arg(long)]
        url: String,
        /// The access token the request carries (sets `ath`).
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    id: AgentId,
    /// The agent's private key file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The resource the token is for (its `aud`), e.g. http://127.0.0.1:8470/mcp/crm.
    #[arg(long)]
    resource: String,
    /// The task id.
    #[arg(long)]
    task: String,
    /// What the task is for.
    #[arg(long, default_value = "")]
    purpose: String,
    /// A tool the task calls, `server/tool` (repeat).
    #[arg(long = "call", value_name = "SERVER/TOOL")]
    calls: Vec<String>,
    /// A resource the task reads, `server/uri` (repeat).
    #[arg(long = "read", value_name = "SERVER/URI")]
    reads: Vec<String>,
    /// A prompt the task gets, `server/name` (repeat).
    #[arg(long = "prompt", value_name = "SERVER/NAME")]
    prompts: Vec<String>,
    /// Ask for a bearer token (only for agents registered with --no-dpop).
    #[arg(long)]
    no_dpop: bool,
}

#[derive(Debug, Subcommand)]
enum SponsorCommand {
    /// Add a sponsor.
    Add { id: AgentId, sponsor: String },
    /// Remove a sponsor; removing the last one suspends the agent.
    Remove { id: AgentId, sponsor: String },
}

/// Where registry changes go.
pub(crate) enum Registry {
    /// Straight in the data directory; changes are written to its audit log here.
    Store(SqliteStore, Box<std::sync::Mutex<warden_audit::AuditLog>>),
    /// Through a running Warden's admin API, which audits them itself.
    Api(AdminClient),
}

impl Registry {
    /// Writes the audit record of an offline change (the server's own changes are audited
    /// by the server).
    pub(crate) fn audit(
        &self,
        event: &str,
        agent: &AgentId,
        f: impl FnOnce(EventRecord) -> EventRecord,
    ) -> anyhow::Result<()> {
        if let Self::Store(_, log) = self {
            let now = warden_gateway::audit::now_ms();
            let e = f(EventRecord::new(now, event, "cli").agent(agent.as_str()));
            let mut log = log
                .lock()
                .map_err(|_| anyhow::anyhow!("audit log lock poisoned"))?;
            log.append_now(&warden_audit::Record::Event(e), now)
                .context("the change was made but its audit record could not be written")?;
        }
        Ok(())
    }

    async fn create(&self, a: NewAgent, t: i64) -> anyhow::Result<AgentRecord> {
        Ok(match self {
            Self::Store(s, _) => {
                let r = s.create_agent(a, t).await?;
                self.audit("agent_created", &r.id, |e| {
                    e.detail("sponsors", r.sponsors.clone())
                        .detail("autonomy", r.autonomy.as_str())
                        .detail("purpose", r.purpose.clone())
                })?;
                r
            }
            Self::Api(c) => c.create_agent(
                a.id.as_str(),
                &a.name,
                &a.sponsors,
                &a.purpose,
                a.autonomy,
                a.dpop_required,
                &a.key,
            )?,
        })
    }

    async fn agents(&self) -> anyhow::Result<Vec<AgentRecord>> {
        Ok(match self {
            Self::Store(s, _) => s.agents().await?,
            Self::Api(c) => c.agents()?,
        })
    }

    async fn agent(&self, id: &AgentId) -> anyhow::Result<AgentRecord> {
        Ok(match self {
            Self::Store(s, _) => s.agent(id).await?,
            Self::Api(c) => c.agent(id.as_str())?,
        })
    }

    async fn set_state(
        &self,
        id: &AgentId,
        state: AgentState,
        reason: &str,
        t: i64,
    ) -> anyhow::Result<AgentRecord> {
        Ok(match self {
            Self::Store(s, _) => {
                let r = s.set_state(id, state, t).await?;
                let name = match state {
                    AgentState::Active => "agent_resumed",
                    AgentState::Suspended => "agent_suspended",
                    AgentState::Revoked => "agent_revoked",
                };
                self.audit(name, id, |e| e.reason(reason))?;
                r
            }
            Self::Api(c) => {
                let verb = match state {
                    AgentState::Active => "resume",
                    AgentState::Suspended => "suspend",
                    AgentState::Revoked => "revoke",
                };
                c.set_state(id.as_str(), verb, reason)?
            }
        })
    }

    async fn set_autonomy(
        &self,
        id: &AgentId,
        level: AutonomyLevel,
        t: i64,
    ) -> anyhow::Result<AgentRecord> {
        Ok(match self {
            Self::Store(s, _) => {
                let r = s.set_autonomy(id, level, t).await?;
                self.audit("autonomy_changed", id, |e| {
                    e.detail("autonomy", level.as_str())
                })?;
                r
            }
            Self::Api(c) => c.set_autonomy(id.as_str(), level)?,
        })
    }

    async fn add_sponsor(
        &self,
        id: &AgentId,
        sponsor: &str,
        t: i64,
    ) -> anyhow::Result<AgentRecord> {
        Ok(match self {
            Self::Store(s, _) => {
                let r = s.add_sponsor(id, sponsor, t).await?;
                self.audit("sponsor_added", id, |e| e.detail("sponsor", sponsor))?;
                r
            }
            Self::Api(c) => c.add_sponsor(id.as_str(), sponsor)?,
        })
    }

    async fn remove_sponsor(
        &self,
        id: &AgentId,
        sponsor: &str,
        t: i64,
    ) -> anyhow::Result<(AgentRecord, bool)> {
        Ok(match self {
            Self::Store(s, _) => {
                let r = s.remove_sponsor(id, sponsor, t).await?;
                self.audit("sponsor_removed", id, |e| {
                    e.detail("sponsor", sponsor)
                        .detail("suspended", r.suspended)
                })?;
                (r.agent, r.suspended)
            }
            Self::Api(c) => c.remove_sponsor(id.as_str(), sponsor)?,
        })
    }

    async fn rotate_key(
        &self,
        id: &AgentId,
        key: PublicJwk,
        grace: i64,
        t: i64,
    ) -> anyhow::Result<AgentRecord> {
        Ok(match self {
            Self::Store(s, _) => {
                let r = s.rotate_key(id, key, grace, t).await?;
                self.audit("key_rotated", id, |e| e)?;
                r
            }
            Self::Api(c) => c.rotate_key(id.as_str(), &key, grace)?,
        })
    }
}

/// The base URL of a running Warden: `--server`, else the default listen address.
fn server_url(server: Option<&str>) -> String {
    server.map_or_else(
        || format!("http://{}", warden_config::DEFAULT_LISTEN),
        |s| s.trim_end_matches('/').to_owned(),
    )
}

fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    KeyPair::read_private(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn token(args: TokenArgs, server: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let key = read_key(&args.key)?;
    let mut client = AgentClient::new(&server_url(server), args.id.as_str(), key);
    if args.no_dpop {
        client = client.with_dpop_key(None);
    }
    let mut task = TaskRequest::new(&args.task, &args.purpose);
    for (kind, list) in [
        (ActionKind::CallTool, &args.calls),
        (ActionKind::ReadResource, &args.reads),
        (ActionKind::GetPrompt, &args.prompts),
    ] {
        for r in list {
            task = task.action(kind, r);
        }
    }
    if task.actions.is_empty() {
        anyhow::bail!("name at least one action: --call SERVER/TOOL, --read or --prompt");
    }
    let t = client
        .token(&args.resource, &task)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        print_json(&t)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", t.access_token);
    eprintln!(
        "{} token for {} s; granted: {}",
        t.token_type,
        t.expires_in,
        t.granted()
            .iter()
            .map(|a| format!("{} {}", a.action, a.resource))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in &t.refused {
        eprintln!("not granted: {r}");
    }
    if t.token_type == "DPoP" {
        eprintln!(
            "each request needs a fresh proof: warden agent proof --key {} --method GET --url URL --token TOKEN",
            args.key.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AgentCommand::Token(t) => return token(t, args.server.as_deref(), args.json),
        AgentCommand::Proof {
            key,
            method,
            url,
            token,
        } => {
            let key = read_key(&key)?;
            println!(
                "{}",
                warden_identity::dpop::proof(
                    &key,
                    &method,
                    &url,
                    token.as_deref(),
                    warden_gateway::unix_now()
                )
            );
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if let Some(server) = &args.server {
        let secret = args.admin_token.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "--server needs an admin credential: --admin-token or $WARDEN_ADMIN_TOKEN \
                 (printed once at the server's first start)"
            )
        })?;
        let registry = Registry::Api(AdminClient::new(server, secret));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let monitor = warden_config::MonitorConfig::default();
        return rt.block_on(dispatch(&registry, args.command, args.json, &monitor));
    }
    let mut config = config_cmd::load_or_default(args.config.config.as_deref())?;
    if let Some(d) = args.data_dir {
        config.server.data_dir = Some(d);
    }
    let data_dir = warden_gateway::data_dir(&config);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store = SqliteStore::open_in(&data_dir, warden_gateway::unix_now())
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let origin = config
        .audit
        .origin
        .clone()
        .unwrap_or_else(warden_audit::log::default_origin);
    let log = warden_audit::AuditLog::open(&data_dir, &origin).with_context(|| {
        format!(
            "cannot open the audit log in {}; check it with `warden audit verify`",
            data_dir.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(
        &Registry::Store(store, Box::new(std::sync::Mutex::new(log))),
        args.command,
        args.json,
        &config.monitor,
    ))
}

async fn dispatch(
    store: &Registry,
    cmd: AgentCommand,
    json: bool,
    monitor: &warden_config::MonitorConfig,
) -> anyhow::Result<ExitCode> {
    let t = warden_gateway::unix_now();
    let agent = match cmd {
        AgentCommand::Create {
            id,
            name,
            sponsors,
            purpose,
            autonomy,
            no_dpop,
            key_out,
        } => {
            let pair = KeyPair::generate();
            let key_path = key_out.unwrap_or_else(|| PathBuf::from(format!("{id}.jwk")));
            // Write the key first: if that fails, nothing is registered.
            pair.write_private(&key_path)?;
            let created = store
                .create(
                    NewAgent {
                        name: name.unwrap_or_else(|| id.to_string()),
                        id,
                        sponsors,
                        purpose,
                        autonomy,
                        dpop_required: !no_dpop,
                        key: pair.public_jwk(),
                    },
                    t,
                )
                .await;
            let created = match created {
                Ok(a) => a,
                Err(e) => {
                    let _ = std::fs::remove_file(&key_path);
                    return Err(e);
                }
            };
            if json {
                print_json(&serde_json::json!({"agent": created, "private_key_file": key_path}))?;
            } else {
                print_created(&created, &key_path);
            }
            return Ok(ExitCode::SUCCESS);
        }
        AgentCommand::List => {
            let all = store.agents().await?;
            if json {
                print_json(&all)?;
            } else {
                print_list(&all);
            }
            return Ok(ExitCode::SUCCESS);
        }
        AgentCommand::Show { id } => {
            let a = store.agent(&id).await?;
            if !json {
                print_agent(&a);
                crate::agent_taints::show(store, &id).await;
                return Ok(ExitCode::SUCCESS);
            }
            a
        }
        AgentCommand::Baseline { id } => {
            return crate::monitor_cmd::baseline(store, &id, monitor, json).await;
        }
        AgentCommand::Taints { agent } => {
            return crate::agent_taints::list(store, agent.as_ref(), json).await;
        }
        AgentCommand::Untaint { id, task, reason } => {
            return crate::agent_taints::untaint(store, &id, task.as_deref(), &reason, json).await;
        }
        AgentCommand::Suspend { id, reason } => {
            store
                .set_state(&id, AgentState::Suspended, &reason, t)
                .await?
        }
        AgentCommand::Resume { id, reason } => {
            store.set_state(&id, AgentState::Active, &reason, t).await?
        }
        AgentCommand::Revoke { id, reason } => {
            store
                .set_state(&id, AgentState::Revoked, &reason, t)
                .await?
        }
        AgentCommand::Autonomy { id, level } => store.set_autonomy(&id, level, t).await?,
        AgentCommand::RotateKey { id, grace, key_out } => {
            let pair = KeyPair::generate();
            let kid = pair.public_jwk().kid;
            let path = key_out.unwrap_or_else(|| {
                PathBuf::from(format!("{id}.{}.jwk", kid.get(..8).unwrap_or(&kid)))
            });
            // Check the agent can rotate before writing a key file for it.
            store.agent(&id).await?;
            pair.write_private(&path)?;
            let a = match store.rotate_key(&id, pair.public_jwk(), grace, t).await {
                Ok(a) => a,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
            };
            if !json {
                println!("new private key written to {} (kid {kid})", path.display());
                println!("the previous key stays valid for {grace} s");
            }
            a
        }
        AgentCommand::Sponsor(SponsorCommand::Add { id, sponsor }) => {
            store.add_sponsor(&id, &sponsor, t).await?
        }
        AgentCommand::Sponsor(SponsorCommand::Remove { id, sponsor }) => {
            let (agent, suspended) = store.remove_sponsor(&id, &sponsor, t).await?;
            if suspended && !json {
                println!("{sponsor} was the last sponsor: agent {id} is now SUSPENDED");
            }
            agent
        }
        AgentCommand::Token(_) | AgentCommand::Proof { .. } => {
            anyhow::bail!("handled before dispatch")
        }
    };
    if json {
        print_json(&agent)?;
    } else {
        print_agent(&agent);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_created(a: &AgentRecord, key: &Path) {
    println!(
        "Agent {} registered (sponsors: {}).",
        a.id,
        a.sponsors.join(", ")
    );
    println!(
        "Private key written to {} (mode 0600). Warden keeps only the public key.",
        key.display()
    );
    println!(
        "Key id (RFC 7638 thumbprint): {}",
        a.keys.first().map_or("", |k| k.jwk.kid.as_str())
    );
    println!();
    println!("Get a task token (the server must be running):");
    println!(
        "  warden agent token {} --key {} --resource http://127.0.0.1:8470/mcp \\",
        a.id,
        key.display()
    );
    println!("      --task my-task-1 --call server/tool");
    println!(
        "From Rust: warden_client::AgentClient::new(issuer, \"{}\", key).token(...).",
        a.id
    );
    println!("Any OAuth client: private_key_jwt (RFC 7523, alg EdDSA, kid above, iss = sub =");
    println!(
        "\"{}\", aud = <warden>/oauth/token) plus a DPoP proof (RFC 9449) signed by the same key.",
        a.id
    );
}

fn posture(a: &AgentRecord) -> &'static str {
    if a.dpop_required {
        "DPoP-bound"
    } else {
        "bearer (weaker: no DPoP)"
    }
}

fn print_agent(a: &AgentRecord) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let rows = [
        ("id", a.id.to_string()),
        ("name", a.name.clone()),
        ("state", a.state.to_string()),
        ("sponsors", a.sponsors.join(", ")),
        ("purpose", a.purpose.clone()),
        ("autonomy", a.autonomy.to_string()),
        ("tokens", posture(a).to_owned()),
        (
            "keys",
            a.keys
                .iter()
                .map(|k| match k.not_after {
                    None => format!("{} (current)", k.jwk.kid),
                    Some(t) => format!("{} (until {})", k.jwk.kid, rfc3339(t)),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("created", rfc3339(a.created_at)),
        ("updated", rfc3339(a.updated_at)),
    ];
    for (k, v) in rows {
        t.add_row([k.to_owned(), v]);
    }
    println!("{t}");
}

fn print_list(all: &[AgentRecord]) {
    if all.is_empty() {
        println!("No agents yet. Register one: warden agent create ID --sponsor you@example.com");
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "id", "name", "state", "autonomy", "sponsors", "tokens", "updated",
    ]);
    for a in all {
        t.add_row([
            a.id.to_string(),
            a.name.clone(),
            a.state.to_string(),
            a.autonomy.to_string(),
            a.sponsors.join(", "),
            posture(a).to_owned(),
            rfc3339(a.updated_at),
        ]);
    }
    println!("{t}");
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, H. Hinnant).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
