//! Binds the listener, builds the router, serves until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{delete, get, post, put};
use warden_config::Config;
use warden_identity::dpop::DpopPolicy;
use warden_identity::revocation::Revocations;
use warden_identity::verifier::TokenVerifier;
use warden_policy::authzen::Mapping;
use warden_policy::{Engine, PolicySnapshot};
use warden_store::AuthStore as _;

use axum::serve::ListenerExt as _;

use crate::admin_api::{self, AdminState};
use crate::authzen_api::{self, AuthzenState};
use crate::oauth::{self, Authority, Idp};
use crate::{approvals_api, control_api, policy_files, reload, taints_api, tools_api};

/// What `warden serve` prints at start.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub policy_source: String,
    pub policy_version: String,
    pub policies: usize,
    pub authzen: bool,
    pub watching: bool,
    /// The SQLite database file.
    pub store: PathBuf,
    /// The `kid` of the key tokens are signed with.
    pub signing_kid: String,
    /// The OAuth issuer (base of the token endpoint and of every resource URL).
    pub issuer: String,
    /// The resources tokens can be issued for.
    pub resources: Vec<String>,
    /// The bootstrap admin secret, on the first start only: shown once, stored hashed.
    pub bootstrap_admin: Option<warden_config::Secret>,
    /// The agent-bound local listeners: where, and as whom.
    pub local_listeners: Vec<String>,
}

/// An agent-bound local listener, bound and ready.
#[derive(Debug)]
enum LocalListener {
    Tcp(tokio::net::TcpListener, Router),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, Router),
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    info: ServerInfo,
    store: warden_store::SqliteStore,
    revocations: Arc<Revocations>,
    locals: Vec<LocalListener>,
    mcp: Arc<crate::mcp::McpState>,
    issuer: String,
    audit: Arc<crate::audit::Audit>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Opens the audit log of `data_dir` and starts its writer. A log that does not open
/// (damaged, cut short) stops the server: it must not run without its record.
fn open_audit(
    config: &Config,
    data_dir: &std::path::Path,
    inspector: Arc<warden_inspect::Inspector>,
) -> anyhow::Result<Arc<crate::audit::Audit>> {
    let origin = config
        .audit
        .origin
        .clone()
        .unwrap_or_else(warden_audit::log::default_origin);
    let log = warden_audit::AuditLog::open(data_dir, &origin).with_context(|| {
        format!(
            "cannot open the audit log in {dir}; see what is wrong with `warden audit verify \
             --data-dir {dir}`",
            dir = data_dir.display()
        )
    })?;
    let (auditor, _writer) = warden_audit::Auditor::start(
        log,
        warden_audit::CheckpointPolicy {
            every_records: config.audit.checkpoint_every_records,
            every: Duration::from_secs(config.audit.checkpoint_every_secs),
        },
    );
    Ok(crate::audit::Audit::new(auditor, &config.audit, inspector))
}

/// Warden without its HTTP listener, serving one agent in-process (`warden mcp-stdio`): the
/// same engine, store, upstreams and revocation state, and a router acting as that agent.
#[derive(Debug)]
pub struct Headless {
    pub router: Router,
    mcp: Arc<crate::mcp::McpState>,
    sync: tokio::task::JoinHandle<()>,
    persist: tokio::task::JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Headless {
    /// Waits until the stdio upstream `name` has been initialized (or `timeout` passes).
    pub async fn ready(&self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = match self.mcp.upstreams.get(name).map(|u| &u.link) {
                Some(crate::mcp::UpstreamLink::Stdio(c)) => c.init.load().is_some(),
                Some(crate::mcp::UpstreamLink::Http(_)) => true,
                None => return false,
            };
            if ready {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        self.sync.abort();
        self.persist.abort();
    }
}

/// The data directory: config, else `$WARDEN_DATA_DIR`, else `$XDG_DATA_HOME/warden`,
/// else `~/.local/share/warden`, else `./warden-data`.
pub fn data_dir(config: &Config) -> PathBuf {
    if let Some(d) = &config.server.data_dir {
        return d.clone();
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("WARDEN_DATA_DIR")
        .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("warden")))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/warden")))
        .unwrap_or_else(|| PathBuf::from("warden-data"))
}

/// Seconds since the Unix epoch, from the system clock (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Binds every `[[local_listeners]]` entry: the agent must be registered and active.
async fn bind_local_listeners(
    config: &Config,
    store: &warden_store::SqliteStore,
    mcp: &Arc<crate::mcp::McpState>,
    issuer: &str,
    now: i64,
) -> anyhow::Result<(Vec<LocalListener>, Vec<String>)> {
    use warden_store::AgentStore as _;
    let mut listeners = Vec::new();
    let mut shown = Vec::new();
    for (i, l) in config.local_listeners.iter().enumerate() {
        let what = format!("local_listeners[{i}]");
        let id = warden_core::AgentId::new(&l.agent).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let agent = store.agent(&id).await.map_err(|e| {
            anyhow::anyhow!("{what}: agent `{id}`: {e} (register it first: warden agent create)")
        })?;
        let binding = crate::mcp::local::LocalBinding::new(l, &agent, issuer, now)
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let scope = if binding.policy_only {
            "policy alone decides".to_owned()
        } else {
            format!("task narrowed to {} tool(s)", l.tools.len())
        };
        match (&l.listen, &l.unix) {
            (Some(addr), _) => {
                let t = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("{what}: cannot listen on {addr}"))?;
                let binding = binding.with_port(t.local_addr()?.port());
                let router = crate::mcp::local_router(Arc::clone(mcp), Arc::new(binding));
                shown.push(format!(
                    "http://{}/mcp as agent {id} ({scope})",
                    t.local_addr()?
                ));
                listeners.push(LocalListener::Tcp(t, router));
            }
            #[cfg(unix)]
            (None, Some(path)) => {
                // A socket left by an earlier run is replaced; any other file is not.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                let router = crate::mcp::local_router(Arc::clone(mcp), Arc::new(binding));
                let u = tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("{what}: cannot listen on {}", path.display()))?;
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .with_context(|| format!("{what}: cannot restrict {}", path.display()))?;
                shown.push(format!("unix:{} as agent {id} ({scope})", path.display()));
                listeners.push(LocalListener::Unix(u, router));
            }
            _ => anyhow::bail!("{what}: set `listen` or `unix`"),
        }
    }
    Ok((listeners, shown))
}

impl Server {
    /// Loads the policy set, creates the data directory and binds the listener. Any
    /// problem is an error here, before anything is served.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        // Re-checked here: `--listen` may have changed the address after the file check.
        if let Some(problem) = config.exposure_problem() {
            anyhow::bail!("{problem}");
        }
        let data_dir = data_dir(config);
        create_private_dir(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let now = unix_now();
        let store = warden_store::SqliteStore::open_in(&data_dir, now)
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
        let keys = warden_identity::ServerKeys::load_or_create(&data_dir.join("keys"), now)
            .context("cannot load Warden's signing keys")?;
        let inspector = Arc::new(crate::inspection::classifier::attach(
            warden_inspect::Inspector::new()
                .context("cannot build the content inspector")?
                .with_threshold(config.inspection.threshold),
            config.inspection.classifier.as_ref(),
        )?);
        let audit = open_audit(config, &data_dir, Arc::clone(&inspector))?;
        // The revocation state must be known before the first token is checked.
        let revocations = Arc::new(Revocations::new());
        let mut last = 0;
        admin_api::sync_once(&store, &revocations, &mut last)
            .await
            .context("cannot read revocations from the store")?;
        let monitoring = Arc::new(
            crate::monitoring::Monitoring::open(
                &config.monitor,
                store.clone(),
                Arc::clone(&audit),
                Arc::clone(&revocations),
            )
            .await?,
        );
        let taints = warden_store::ContentStore::taints(&store, now)
            .await
            .context("cannot read tainted tasks from the store")?;
        let pins = warden_store::ContentStore::tool_pins(&store)
            .await
            .context("cannot read tool pins from the store")?;
        let inspection = crate::inspection::Inspection::new(
            config.inspection.clone(),
            inspector,
            store.clone(),
            Arc::clone(&audit),
            taints,
            pins,
            Arc::clone(&monitoring),
        );
        let signing_kid = keys.current().public_jwk().kid;
        let jwks = keys.jwks();
        let keys = Arc::new(keys);
        let idps = config
            .oauth
            .identity_providers
            .iter()
            .map(Idp::load)
            .collect::<anyhow::Result<Vec<_>>>()
            .context("oauth.identity_providers")?;
        let (secret, hash) = admin_api::new_secret();
        let bootstrap_admin = store
            .bootstrap_admin("admin", &hash, now)
            .await
            .context("cannot create the bootstrap admin credential")?
            .map(|_| warden_config::Secret::new(secret));

        let (snapshot, policy_source) = match &config.policy.dir {
            None => (
                PolicySnapshot::deny_all().map_err(|e| anyhow::anyhow!("{e}"))?,
                "embedded default (deny everything)".to_owned(),
            ),
            Some(dir) => {
                let sources = policy_files::read_dir(dir)?;
                let snap = PolicySnapshot::load(&sources).map_err(|e| {
                    anyhow::anyhow!("the policy set in {} does not load:\n{e}", dir.display())
                })?;
                (snap, dir.display().to_string())
            }
        };
        for w in snapshot.warnings() {
            tracing::warn!(warning = %w, "policy validation warning");
        }
        let info_version = snapshot.version().to_owned();
        let policies = snapshot.stats().policies;
        let engine = Arc::new(Engine::new(snapshot));
        tracing::info!(version = %info_version, policies, source = %policy_source, "policy set loaded");
        audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "server_started", "warden")
                .detail("version", env!("CARGO_PKG_VERSION"))
                .detail("listen", config.server.listen.to_string()),
        );
        audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "policy_loaded", "warden")
                .detail("policy_version", info_version.clone())
                .detail("policies", policies)
                .detail("source", policy_source.clone()),
        );

        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let issuer = config.issuer(addr);
        let mut resources = vec![(format!("{issuer}/mcp"), Some("all tool servers".to_owned()))];
        resources.extend(
            config
                .upstreams
                .iter()
                .map(|(n, u)| (format!("{issuer}/mcp/{n}"), u.name.clone())),
        );
        let dpop_policy = DpopPolicy {
            max_age: config.oauth.dpop_max_age_secs,
            skew: config.oauth.clock_skew_secs,
        };
        let verifier = Arc::new(TokenVerifier::new(
            Arc::clone(&keys),
            issuer.clone(),
            Arc::clone(&revocations),
            dpop_policy,
        ));
        let approvals = Arc::new(crate::approvals::Approvals::new(
            store.clone(),
            config.approvals.clone(),
            Arc::clone(&audit),
        ));
        let breakers = Arc::new(crate::breakers::Breakers::new(config.breakers.clone()));
        let authority = Arc::new(Authority {
            store: store.clone(),
            engine: Arc::clone(&engine),
            keys: Arc::clone(&keys),
            verifier,
            issuer: issuer.clone(),
            resources: resources.clone(),
            assertion_replay: warden_identity::replay::ReplayCache::new(1_000_000),
            assertion_policy: warden_identity::assertion::AssertionPolicy {
                max_lifetime: config.oauth.assertion_max_lifetime_secs,
                skew: config.oauth.clock_skew_secs,
            },
            lifetimes: config.oauth.token_lifetime_secs,
            max_depth: config.oauth.max_delegation_depth,
            idps,
            max_body: config.server.max_body_bytes,
            audit: Arc::clone(&audit),
            approvals: Arc::clone(&approvals),
            limits: crate::limits::Limits::new(config.limits.clone()),
            breakers: Arc::clone(&breakers),
            inspection,
            monitoring: Arc::clone(&monitoring),
        });
        let mcp_state = Arc::new(
            crate::mcp::McpState::new(config, Arc::clone(&authority))
                .context("cannot set up the MCP upstreams")?,
        );
        let (locals, local_listeners) =
            bind_local_listeners(config, &store, &mcp_state, &issuer, now).await?;
        let admin = Arc::new(AdminState {
            store: store.clone(),
            revocations: Arc::clone(&revocations),
            max_body: config.server.max_body_bytes,
            audit: Arc::clone(&audit),
            data_dir: data_dir.clone(),
            approvals,
            breakers,
            mcp: Arc::clone(&mcp_state),
        });

        let api_key = config
            .authzen
            .api_key
            .as_ref()
            .map(|r| r.resolve())
            .transpose()
            .context("authzen.api_key")?;
        let base_url = config
            .authzen
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let state = Arc::new(AuthzenState {
            engine: Arc::clone(&engine),
            mapping: Mapping {
                namespace: config.authzen.namespace.clone(),
                types: config.authzen.types.clone().into_iter().collect(),
            },
            max_body: config.server.max_body_bytes,
            api_key,
            base_url,
            audit: Arc::clone(&audit),
        });
        let mut router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/metrics",
                get(crate::audit::metrics)
                    .with_state((Arc::clone(&audit), Arc::clone(&monitoring))),
            )
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    let jwks = jwks.clone();
                    async move { axum::Json(jwks) }
                }),
            );
        let oauth_routes = Router::new()
            .route(
                "/oauth/token",
                post(oauth::token).fallback(oauth::token_method_not_allowed),
            )
            .route("/oauth/whoami", get(oauth::whoami))
            .route(
                "/.well-known/oauth-authorization-server",
                get(oauth::metadata),
            )
            .route(
                "/.well-known/oauth-protected-resource/{*path}",
                get(oauth::resource_metadata),
            )
            .with_state(authority)
            .layer(axum::middleware::from_fn(crate::unread::close_if_unread));
        let admin_routes = Router::new()
            .route(
                "/admin/v1/agents",
                get(admin_api::list_agents).post(admin_api::create_agent),
            )
            .route("/admin/v1/agents/{id}", get(admin_api::show_agent))
            .route("/admin/v1/agents/{id}/suspend", post(admin_api::suspend))
            .route("/admin/v1/agents/{id}/resume", post(admin_api::resume))
            .route("/admin/v1/agents/{id}/kill", post(control_api::kill_agent))
            .route("/admin/v1/kill", post(control_api::kill_many))
            .route("/admin/v1/breakers", get(control_api::breakers))
            .route(
                "/admin/v1/agents/{id}/breakers/reset",
                post(control_api::reset_breakers),
            )
            .route("/admin/v1/approvals", get(approvals_api::list))
            .route("/admin/v1/approvals/{id}", get(approvals_api::show))
            .route(
                "/admin/v1/approvals/{id}/approve",
                post(approvals_api::approve),
            )
            .route("/admin/v1/approvals/{id}/deny", post(approvals_api::deny))
            .route("/admin/v1/taints", get(taints_api::list))
            .route(
                "/admin/v1/agents/{id}/baseline",
                get(crate::monitor_api::baseline),
            )
            .route("/admin/v1/alerts", get(crate::monitor_api::alerts))
            .route("/admin/v1/agents/{id}/untaint", post(taints_api::untaint))
            .route("/admin/v1/tools", get(tools_api::list))
            .route("/admin/v1/tools/{upstream}/{tool}", get(tools_api::show))
            .route(
                "/admin/v1/tools/{upstream}/{tool}/approve",
                post(tools_api::approve),
            )
            .route("/admin/v1/agents/{id}/revoke", post(admin_api::revoke))
            .route(
                "/admin/v1/agents/{id}/autonomy",
                put(admin_api::set_autonomy),
            )
            .route(
                "/admin/v1/agents/{id}/sponsors",
                post(admin_api::add_sponsor),
            )
            .route(
                "/admin/v1/agents/{id}/sponsors/{sponsor}",
                delete(admin_api::remove_sponsor),
            )
            .route("/admin/v1/agents/{id}/keys", post(admin_api::rotate_key))
            .route(
                "/admin/v1/revocations",
                get(admin_api::list_revocations).post(admin_api::add_revocation),
            )
            .route("/admin/v1/admins", post(admin_api::create_admin))
            .route("/admin/v1/whoami", get(admin_api::whoami))
            .route("/admin/v1/audit", get(admin_api::audit_records))
            .route(
                "/admin/v1/audit/checkpoint",
                get(admin_api::audit_checkpoint),
            )
            .route("/admin/{*rest}", axum::routing::any(admin_api::not_found))
            .with_state(admin)
            .layer(axum::middleware::from_fn(crate::unread::close_if_unread));
        router = router
            .merge(oauth_routes)
            .merge(admin_routes)
            .merge(crate::mcp::router(Arc::clone(&mcp_state)));
        let issuer_kept = issuer.clone();
        if config.authzen.enabled {
            let authzen = Router::new()
                .route(
                    "/access/v1/evaluation",
                    post(authzen_api::evaluation).fallback(authzen_api::method_not_allowed),
                )
                .route(
                    "/access/v1/evaluations",
                    post(authzen_api::evaluations).fallback(authzen_api::method_not_allowed),
                )
                .route(
                    "/.well-known/authzen-configuration",
                    get(authzen_api::metadata),
                )
                .with_state(state)
                .layer(axum::middleware::from_fn(crate::unread::close_if_unread));
            router = router.merge(authzen);
        }

        let watcher = match (&config.policy.dir, config.policy.watch) {
            (Some(dir), true) => Some(
                reload::watch(
                    Arc::clone(&engine),
                    Arc::clone(&audit),
                    dir.clone(),
                    Duration::from_millis(config.policy.debounce_ms),
                )
                .with_context(|| format!("cannot watch {}", dir.display()))?,
            ),
            _ => None,
        };
        Ok(Self {
            listener,
            router,
            info: ServerInfo {
                addr,
                data_dir,
                policy_source,
                policy_version: info_version,
                policies,
                authzen: config.authzen.enabled,
                watching: watcher.is_some(),
                store: store.path().to_path_buf(),
                signing_kid,
                issuer,
                resources: resources.into_iter().map(|(u, _)| u).collect(),
                bootstrap_admin,
                local_listeners,
            },
            store,
            revocations,
            locals,
            mcp: mcp_state,
            issuer: issuer_kept,
            audit,
            _watcher: watcher,
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// An agent's registry record.
    pub async fn agent(&self, id: &str) -> anyhow::Result<warden_core::AgentRecord> {
        use warden_store::AgentStore as _;
        let id = warden_core::AgentId::new(id).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.store.agent(&id).await.map_err(|e| {
            anyhow::anyhow!("agent `{id}`: {e} (register it first: warden agent create)")
        })
    }

    /// Drops the HTTP listener and serves `binding`'s agent in-process instead: the router
    /// answers `/mcp` and `/mcp/<upstream>` as that agent (see `mcp::local`). The agent
    /// must be registered and active.
    pub async fn into_headless(
        self,
        binding: &warden_config::LocalListenerConfig,
        via: &str,
    ) -> anyhow::Result<Headless> {
        let agent = self.agent(&binding.agent).await?;
        let mut b = crate::mcp::local::LocalBinding::new(binding, &agent, &self.issuer, unix_now())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        b.via = via.to_owned();
        let sync = tokio::spawn(admin_api::sync_revocations(
            self.store.clone(),
            Arc::clone(&self.revocations),
            Duration::from_secs(1),
        ));
        let persist = self.mcp.authority.monitoring.spawn_persist();
        Ok(Headless {
            persist,
            router: crate::mcp::local_router(Arc::clone(&self.mcp), Arc::new(b)),
            mcp: self.mcp,
            sync,
            _watcher: self._watcher,
        })
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sync = tokio::spawn(admin_api::sync_revocations(
            self.store.clone(),
            Arc::clone(&self.revocations),
            Duration::from_secs(1),
        ));
        let monitoring = Arc::clone(&self.mcp.authority.monitoring);
        let persist = monitoring.spawn_persist();
        let locals: Vec<_> = self
            .locals
            .into_iter()
            .map(|l| {
                tokio::spawn(async move {
                    let served = match l {
                        LocalListener::Tcp(t, r) => {
                            let t = t.tap_io(|tcp| {
                                let _ = tcp.set_nodelay(true);
                            });
                            axum::serve(t, r).await
                        }
                        #[cfg(unix)]
                        LocalListener::Unix(u, r) => axum::serve(u, r).await,
                    };
                    if let Err(e) = served {
                        tracing::error!("local listener stopped: {e}");
                    }
                })
            })
            .collect();
        // TCP_NODELAY: a streamed answer is written as head, then body; with Nagle the body
        // waits for the client's delayed ACK of the head (~40 ms per call).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
        });
        let served = axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        self.audit.event(warden_audit::EventRecord::new(
            crate::audit::now_ms(),
            "server_stopped",
            "warden",
        ));
        persist.abort();
        monitoring.persist().await;
        // Everything recorded is committed and under a signed checkpoint before exit.
        self.audit.auditor.flush().await;
        sync.abort();
        for l in locals {
            l.abort();
        }
        served?;
        Ok(())
    }
}
