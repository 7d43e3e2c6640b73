//! `warden serve --demo`: the demo tool servers (crm, finance, email, docs) in-process,
//! Warden in front of them with example policies, and one registered agent whose key is
//! written beside them — everything the README quickstart needs, in a directory of its own
//! that is recreated on every start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use warden_core::AutonomyLevel;
use warden_gateway::Server;
use warden_identity::KeyPair;
use warden_testkit::{DemoOptions, SERVICES};

use crate::serve::{self, ServeArgs};

/// The demo's policy set and the argument types it reads.
const POLICIES: &str = include_str!("demo.cedar");
const ARGUMENTS_SCHEMA: &str = include_str!("arguments.cedarschema");

/// Marks a directory as the demo's own, so it may be wiped on the next start.
const MARKER: &str = ".warden-demo";

/// The demo agent.
pub const AGENT: &str = "assistant";

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.config.config.is_some() || args.policies.is_some() {
        anyhow::bail!(
            "--demo brings its own config and policies; drop --config/--policies (or run \
             `warden serve --config FILE` without --demo)"
        );
    }
    let base = match &args.data_dir {
        Some(d) => d.clone(),
        None => warden_gateway::data_dir(&warden_config::Config::default()).join("demo"),
    };
    prepare(&base)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let secret = random_hex();
        let tools = warden_testkit::serve(
            "127.0.0.1:0".parse()?,
            DemoOptions {
                require_authorization: Some(format!("Bearer {secret}")),
                json_response: false,
            },
        )
        .await
        .context("cannot start the demo tool servers")?;
        let config_file = write_files(&base, &secret, |s| tools.url(s), args.listen)?;
        let config = crate::config_cmd::load(&config_file)?;
        let _log = serve::init_logging(&config.log.level, config.log.format);
        let server = Server::bind(&config).await.with_context(|| {
            format!(
                "cannot start Warden on {} (another Warden running? try --listen 127.0.0.1:0)",
                config.server.listen
            )
        })?;
        let info = server.info().clone();
        let url = format!("http://{}", info.addr);
        let admin = info
            .bootstrap_admin
            .as_ref()
            .map(|s| s.expose().to_owned())
            .context("the demo data directory was not fresh")?;
        let running = tokio::spawn(server.run(serve::shutdown_signal()));
        let key_file = base.join(format!("{AGENT}.jwk"));
        let key_out = key_file.clone();
        let admin_url = url.clone();
        tokio::task::spawn_blocking(move || register(&admin_url, &admin, &key_out))
            .await
            .context("registering the demo agent")??;
        serve::print_banner(&info);
        print_guide(&url, &key_file, &base, &tools.url("crm"));
        println!("Press Ctrl-C to stop.");
        running.await.context("the server task failed")??;
        tools.stop();
        tracing::info!("shut down");
        Ok(ExitCode::SUCCESS)
    })
}

/// Empties `base` if it is an earlier demo's directory; refuses any other non-empty one.
fn prepare(base: &Path) -> anyhow::Result<()> {
    if base.join(MARKER).exists() {
        std::fs::remove_dir_all(base)
            .with_context(|| format!("cannot clear the demo directory {}", base.display()))?;
    } else if std::fs::read_dir(base).is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!(
            "{} is not empty and not a demo directory; give --demo an empty --data-dir",
            base.display()
        );
    }
    std::fs::create_dir_all(base.join("policies"))
        .with_context(|| format!("cannot create {}", base.display()))?;
    std::fs::write(
        base.join(MARKER),
        "warden serve --demo recreates this directory\n",
    )?;
    Ok(())
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the policies, the upstream secret and `warden.toml`; returns the config's path.
fn write_files(
    base: &Path,
    secret: &str,
    url_of: impl Fn(&str) -> String,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<PathBuf> {
    let policies = base.join("policies");
    std::fs::write(policies.join("demo.cedar"), POLICIES)?;
    std::fs::write(policies.join("arguments.cedarschema"), ARGUMENTS_SCHEMA)?;
    let token_file = base.join("upstream.token");
    write_private(&token_file, secret)?;
    let listen = listen.map_or_else(
        || warden_config::DEFAULT_LISTEN.to_owned(),
        |l| l.to_string(),
    );
    let mut config = format!(
        "# Written by `warden serve --demo`; recreated on every start.\n\
         [server]\nlisten = \"{listen}\"\ndata_dir = {data:?}\n\n\
         [policy]\ndir = {policies:?}\nwatch = true\n\n\
         # The demo's own tool servers are trusted on first use; a production config\n\
         # leaves this at `approve` and approves each tool with `warden tools approve`.\n\
         [inspection.pinning]\nmode = \"tofu\"\n",
        data = base.join("data"),
        policies = policies,
    );
    for s in SERVICES {
        config.push_str(&format!(
            "\n[upstreams.{s}]\nurl = \"{url}\"\n[upstreams.{s}.credential]\n\
             header = \"Authorization\"\nprefix = \"Bearer \"\nsecret = {{ file = {token:?} }}\n",
            url = url_of(s),
            token = token_file,
        ));
    }
    let path = base.join("warden.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Registers the demo agent through the admin API and writes its private key.
fn register(url: &str, admin: &str, key_file: &Path) -> anyhow::Result<()> {
    let key = KeyPair::generate();
    key.write_private(key_file)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    warden_client::AdminClient::new(url, admin)
        .create_agent(
            AGENT,
            "Demo support assistant",
            &["demo@example.com".to_owned()],
            "answers customer questions from the CRM and documents",
            AutonomyLevel::Junior,
            true,
            &key.public_jwk(),
        )
        .map_err(|e| anyhow::anyhow!("cannot register the demo agent: {e}"))?;
    Ok(())
}

fn print_guide(url: &str, key: &Path, base: &Path, tools: &str) {
    let tools_base = tools.trim_end_matches("/crm/mcp");
    println!();
    println!("Demo: tool servers crm, finance, email, docs at {tools_base}/<name>/mcp, behind");
    println!("Warden at {url}/mcp (all of them, tools named `crm.read_contact`, ...) and");
    println!(
        "{url}/mcp/<name>. Agent `{AGENT}` is registered; its key is {}.",
        key.display()
    );
    println!(
        "Policies: {} (edit them — they reload). Config: {}.",
        base.join("policies/demo.cedar").display(),
        base.join("warden.toml").display()
    );
    println!();
    println!("Try, in another terminal:");
    println!();
    println!(
        "  export WARDEN_SERVER={url} WARDEN_AGENT={AGENT} WARDEN_AGENT_KEY={}",
        key.display()
    );
    println!("  warden mcp call crm.read_contact '{{\"id\": \"c-1\"}}'                  # allowed");
    println!(
        "  warden mcp call crm.delete_record '{{\"id\": \"c-1\"}}' --grant crm/read_contact   # outside the task"
    );
    println!(
        "  warden mcp call finance.transfer_funds '{{\"amount\": 50000, \"to\": \"DE89370400440532013000\"}}'   # over the cap"
    );
    println!(
        "  warden mcp tools --grant crm/read_contact --grant crm/delete_record --grant finance/transfer_funds"
    );
    println!();
}
