//! `warden keys ...`: Warden's own signing keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use warden_identity::ServerKeys;

use crate::{ConfigArg, config_cmd};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key. New tokens are signed with it after the next start;
    /// tokens signed with the previous key keep verifying (the JWKS serves both).
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// Data directory (overrides the config and $WARDEN_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate { config, data_dir } = cmd;
    let mut config = config_cmd::load_or_default(config.config.as_deref())?;
    if let Some(d) = data_dir {
        config.server.data_dir = Some(d);
    }
    let dir = warden_gateway::data_dir(&config).join("keys");
    let kid = ServerKeys::rotate(&dir, warden_gateway::unix_now())?;
    println!("new signing key {kid} written to {}", dir.display());
    println!("restart `warden serve` to sign with it; the previous key stays in the JWKS");
    Ok(ExitCode::SUCCESS)
}
