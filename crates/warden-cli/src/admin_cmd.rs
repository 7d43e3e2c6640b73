//! `warden admin ...` (admin credentials) and `warden revoke` (CR-5).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use warden_client::AdminClient;
use warden_store::{AuthStore, SqliteStore};

use crate::{ConfigArg, config_cmd};

/// Where to reach a running Warden's admin API.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The running Warden (e.g. http://127.0.0.1:8470).
    #[arg(
        long,
        env = "WARDEN_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8470"
    )]
    pub(crate) server: String,
    /// The admin API credential (`wdn_admin_...`).
    #[arg(
        long,
        env = "WARDEN_ADMIN_TOKEN",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub(crate) admin_token: Option<String>,
}

impl ServerArgs {
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        let secret = self.admin_token.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "an admin credential is needed: --admin-token or $WARDEN_ADMIN_TOKEN (printed \
                 once at the server's first start; `warden admin reset` makes a new one)"
            )
        })?;
        Ok(AdminClient::new(&self.server, secret))
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Replace an admin credential's secret, working on the data directory directly (for
    /// when the bootstrap secret is lost). Needs file access to the store, not the API.
    Reset {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory (overrides the config and $WARDEN_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Which credential.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// Create another named admin credential through the API (its secret is shown once).
    Create {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show which credential you are using.
    Whoami {
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::Reset {
            config,
            data_dir,
            name,
        } => {
            let mut config = config_cmd::load_or_default(config.config.as_deref())?;
            if let Some(d) = data_dir {
                config.server.data_dir = Some(d);
            }
            let dir = warden_gateway::data_dir(&config);
            let now = warden_gateway::unix_now();
            let store = SqliteStore::open_in(&dir, now)
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            let (secret, hash) = warden_gateway::admin_api::new_secret();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                match store.replace_admin_secret(&name, &hash).await {
                    Ok(()) => Ok(()),
                    Err(warden_store::StoreError::UnknownAdmin(_)) => store
                        .add_admin(&name, &hash, "reset", now)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            })?;
            println!("New secret for admin credential `{name}` (the old one no longer works):");
            println!();
            println!("    {secret}");
            println!();
            println!("It is shown this once; Warden keeps only its hash.");
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Create { name, server } => {
            let secret = server.client()?.create_admin(&name)?;
            println!("Admin credential `{name}` created. Its secret, shown this once:");
            println!();
            println!("    {secret}");
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Whoami { server } => {
            let v = server.client()?.whoami()?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `warden revoke`: takes effect on the next request anywhere the server checks tokens.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["token", "task", "agent"])))]
pub struct RevokeArgs {
    /// A token's `jti`: the token and every token delegated from it.
    #[arg(long, value_name = "JTI")]
    token: Option<String>,
    /// A task id: every token of the task, at every delegation depth.
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// An agent id: every token it holds or that was delegated through it (use `warden agent
    /// revoke` to revoke the agent's identity itself).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// Why (kept with the revocation).
    #[arg(long, default_value = "")]
    reason: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let (kind, value) = match (&args.token, &args.task, &args.agent) {
        (Some(j), _, _) => ("token", j),
        (_, Some(t), _) => ("task", t),
        (_, _, Some(a)) => ("agent", a),
        _ => anyhow::bail!("name what to revoke: --token, --task or --agent"),
    };
    let rec = args.server.client()?.revoke(kind, value, &args.reason)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!("revoked {kind} {value}; in force from the next request");
    }
    Ok(ExitCode::SUCCESS)
}
