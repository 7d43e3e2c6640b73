//! `warden`: the Zero Trust gateway for AI agents.

mod admin_cmd;
mod agent_cmd;
mod agent_taints;
mod approvals_cmd;
mod audit_cmd;
mod bench;
mod bench_mcp;
mod breakers_cmd;
mod config_cmd;
mod demo;
mod inspect_cmd;
mod keys_cmd;
mod kill_cmd;
mod mcp_cmd;
mod mcp_stdio;
mod monitor_cmd;
mod policy_cmd;
mod serve;
mod simulate;
mod tools_cmd;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cedar builds and drops many small values per decision; mimalloc makes that markedly
/// cheaper than the system allocator (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Warden verifies every action an AI agent takes: who it is, what its task allows, and
/// whether this call with these arguments is allowed right now.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (embedded defaults when no config is given: loopback, deny all).
    Serve(serve::ServeArgs),
    /// Inspect and check configuration files.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Validate, test and explain Cedar policy sets.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Register and manage agent identities.
    Agent(agent_cmd::AgentArgs),
    /// Verify, query, prove and export the tamper-evident audit trail.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Revoke a token (and its delegation subtree), a task or an agent's tokens.
    Revoke(admin_cmd::RevokeArgs),
    /// Stop an agent now: its tokens, every delegated descendant, calls in flight, open
    /// streams (`--drill`: prove the kill switch against a test agent and time it).
    Kill(kill_cmd::KillArgs),
    /// Make a killed or suspended agent active again (explicit and audited).
    Resume(kill_cmd::ResumeArgs),
    /// Calls held for a human's approval: list, show, approve, deny.
    #[command(subcommand)]
    Approvals(approvals_cmd::ApprovalsCommand),
    /// Upstream tool definitions and their pins: list, diff, approve (a changed definition
    /// is disabled until approved).
    #[command(subcommand)]
    Tools(tools_cmd::ToolsCommand),
    /// Circuit breakers: which are open and why, and closing them (a person's decision).
    #[command(subcommand)]
    Breakers(breakers_cmd::BreakersCommand),
    /// Alerts and quarantines raised by the behavioural monitor.
    #[command(subcommand)]
    Alerts(monitor_cmd::AlertsCommand),
    /// Admin API credentials.
    #[command(subcommand)]
    Admin(admin_cmd::AdminCommand),
    /// Manage Warden's own token-signing keys.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
    /// Act as an agent through a running Warden: list or call MCP tools (exit 3: refused).
    #[command(subcommand)]
    Mcp(mcp_cmd::McpCommand),
    /// Be a stdio MCP server for a desktop client: launch an MCP server and mediate every
    /// call to it as one agent (its key proves who), with the same policies and store.
    McpStdio(mcp_stdio::McpStdioArgs),
    /// Scan content offline for prompt injection, tool poisoning, secrets and personal data.
    Inspect(inspect_cmd::InspectArgs),
    /// Replay simulated agent workloads and attacks through the decision path and the
    /// behavioural monitor: detection delay per attack kind, false alerts on normal work.
    Simulate(simulate::SimulateArgs),
    /// Load drivers for measuring a running Warden.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// The config file to use: the flag, else `$WARDEN_CONFIG`, else none (defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Default: built-in defaults.
    #[arg(long, short = 'c', env = "WARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Keys(cmd) => keys_cmd::run(cmd),
        Command::Mcp(cmd) => mcp_cmd::run(cmd),
        Command::McpStdio(args) => mcp_stdio::run(args),
        Command::Audit(cmd) => audit_cmd::run(cmd),
        Command::Revoke(args) => admin_cmd::revoke(args),
        Command::Kill(args) => kill_cmd::run(args),
        Command::Resume(args) => kill_cmd::resume(args),
        Command::Approvals(cmd) => approvals_cmd::run(cmd),
        Command::Tools(cmd) => tools_cmd::run(cmd),
        Command::Breakers(cmd) => breakers_cmd::run(cmd),
        Command::Admin(cmd) => admin_cmd::run(cmd),
        Command::Alerts(cmd) => monitor_cmd::alerts(cmd),
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
