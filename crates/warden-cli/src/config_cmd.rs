//! `warden config ...`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use warden_config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON schema of the configuration file.
    Schema,
    /// Check configuration files; report file, line and reason for each problem.
    Validate {
        /// Files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Reads and parses a config file, with errors that name file and line.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(Config::parse(&path.display().to_string(), &text, base)?)
}

/// The config for a command: the file if given, else the defaults.
pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Config> {
    path.map_or_else(|| Ok(Config::default()), load)
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&Config::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Validate { files } => {
            let mut bad = 0;
            for f in &files {
                match load(f) {
                    Ok(_) => println!("ok     {}", f.display()),
                    Err(e) => {
                        bad += 1;
                        println!("error  {e:#}");
                    }
                }
            }
            if bad > 0 {
                eprintln!("{bad} of {} config file(s) invalid", files.len());
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
