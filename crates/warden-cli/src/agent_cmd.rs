//! `warden agent ...`: the agent registry (ID-1..ID-3).
//!
//! These commands work on the store in the data directory (the same SQLite file `warden
//! serve` uses; WAL lets both use it at once). Once the admin API lands they will also be
//! able to go through it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
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
    /// Suspend an agent (reversible with `resume`).
    Suspend { id: AgentId },
    /// Resume a suspended agent (it needs a sponsor).
    Resume { id: AgentId },
    /// Revoke an agent. Final.
    Revoke { id: AgentId },
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
    /// Set the agent's autonomy level.
    Autonomy { id: AgentId, level: AutonomyLevel },
    /// Add or remove sponsors.
    #[command(subcommand)]
    Sponsor(SponsorCommand),
}

#[derive(Debug, Subcommand)]
enum SponsorCommand {
    /// Add a sponsor.
    Add { id: AgentId, sponsor: String },
    /// Remove a sponsor; removing the last one suspends the agent.
    Remove { id: AgentId, sponsor: String },
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut config = config_cmd::load_or_default(args.config.config.as_deref())?;
    if let Some(d) = args.data_dir {
        config.server.data_dir = Some(d);
    }
    let data_dir = warden_gateway::data_dir(&config);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let store = SqliteStore::open_in(&data_dir, warden_gateway::unix_now())
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(&store, args.command, args.json))
}

async fn dispatch(store: &SqliteStore, cmd: AgentCommand, json: bool) -> anyhow::Result<ExitCode> {
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
                .create_agent(
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
                    return Err(e.into());
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
        AgentCommand::Show { id } => store.agent(&id).await?,
        AgentCommand::Suspend { id } => store.set_state(&id, AgentState::Suspended, t).await?,
        AgentCommand::Resume { id } => store.set_state(&id, AgentState::Active, t).await?,
        AgentCommand::Revoke { id } => store.set_state(&id, AgentState::Revoked, t).await?,
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
                    return Err(e.into());
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
            let r = store.remove_sponsor(&id, &sponsor, t).await?;
            if r.suspended && !json {
                println!("{sponsor} was the last sponsor: agent {id} is now SUSPENDED");
            }
            r.agent
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
    println!("Use it from Rust with warden-client once the token endpoint is enabled, or sign an");
    println!("RFC 7523 client assertion yourself: a JWT with alg EdDSA, kid above, iss = sub =");
    println!(
        "\"{}\", aud = <warden>/oauth/token, a fresh jti and exp within 60 s.",
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
fn rfc3339(secs: i64) -> String {
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
