//! `warden serve`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use warden_config::LogFormat;
use warden_gateway::Server;

use crate::{ConfigArg, config_cmd};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Listen address (overrides the config), e.g. 127.0.0.1:0 for any free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory (overrides the config and $WARDEN_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Policy directory (overrides the config).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Start the demo: tool servers (crm, finance, email, docs), example policies and an
    /// agent, in `<data dir>/demo` (recreated on each start); prints what to try.
    #[arg(long)]
    pub demo: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.demo {
        return crate::demo::run(args);
    }
    let mut config = config_cmd::load_or_default(args.config.config.as_deref())?;
    if let Some(l) = args.listen {
        config.server.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.server.data_dir = Some(d);
    }
    if let Some(p) = args.policies {
        config.policy.dir = Some(p);
    }
    let _log = init_logging(&config.log.level, config.log.format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Before the banner: whoever reads the address may stop Warden at once.
        let shutdown = shutdown_signal();
        let server = Server::bind(&config).await?;
        print_banner(server.info());
        println!("Press Ctrl-C to stop.");
        server.run(shutdown).await?;
        tracing::info!("shut down");
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn print_banner(info: &warden_gateway::ServerInfo) {
    let url = format!("http://{}", info.addr);
    println!(
        "Warden {} — Zero Trust gateway for AI agents",
        env!("CARGO_PKG_VERSION")
    );
    println!("  listening    {url}");
    println!("  data dir     {}", info.data_dir.display());
    println!("  store        {}", info.store.display());
    println!(
        "  signing key  {} ({url}/.well-known/jwks.json)",
        info.signing_kid
    );
    println!(
        "  policy set   {} — {} {} ({})",
        info.policy_source,
        info.policies,
        if info.policies == 1 {
            "policy"
        } else {
            "policies"
        },
        info.policy_version
    );
    if info.watching {
        println!("  hot reload   on: changes apply to the next decision");
    }
    if info.authzen {
        println!("  AuthZEN PDP  {url}/access/v1/evaluation");
        println!("               {url}/access/v1/evaluations");
        println!("               {url}/.well-known/authzen-configuration");
    }
    println!("  OAuth issuer {}", info.issuer);
    println!("  token        {}/oauth/token", info.issuer);
    println!(
        "               {}/.well-known/oauth-authorization-server",
        info.issuer
    );
    for r in &info.resources {
        println!("  resource     {r}");
    }
    for l in &info.local_listeners {
        println!("  local        {l}");
    }
    println!("  admin API    {url}/admin/v1/");
    println!("  health       {url}/healthz");
    if let Some(secret) = &info.bootstrap_admin {
        println!();
        println!("  First start: the admin API credential `admin` is");
        println!();
        println!("      {}", secret.expose());
        println!();
        println!("  It is shown this once; Warden keeps only its hash. Keep it in a secret store.");
        println!("  Use it with: export WARDEN_ADMIN_TOKEN=...; warden agent list --server {url}");
        println!(
            "  Lost it? `warden admin reset --data-dir {}` prints a new one.",
            info.data_dir.display()
        );
        println!();
    }
}

/// Logs go to stderr through a writer thread, so no request ever waits on a write(2) (the
/// decision log is on the hot path). It never drops lines: when its buffer is full, logging
/// waits. Keep the guard until exit: dropping it flushes.
#[must_use = "dropping the guard stops the log writer"]
pub(crate) fn init_logging(
    level: &str,
    format: LogFormat,
) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour only on a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// Resolves at SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called,
/// not when the future is first polled: a signal that arrives between the banner and the
/// server's first poll must stop Warden gracefully, not kill it (found by crash_recovery,
/// whose SIGTERM right after a restart now and then met the default action). Call it
/// inside the runtime.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn recv(s: Option<Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                // Not installable: this signal cannot stop Warden; the other still can.
                None => std::future::pending::<()>().await,
            }
        }
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                () = recv(term) => {},
                () = recv(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
