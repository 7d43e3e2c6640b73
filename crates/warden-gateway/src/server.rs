//! Binds the listener, builds the router, serves until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use warden_config::Config;
use warden_policy::authzen::Mapping;
use warden_policy::{Engine, PolicySnapshot};

use crate::authzen_api::{self, AuthzenState};
use crate::{policy_files, reload};

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
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    info: ServerInfo,
    _store: warden_store::SqliteStore,
    _watcher: Option<notify::RecommendedWatcher>,
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
        let signing_kid = keys.current().public_jwk().kid;
        let jwks = keys.jwks();

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

        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;

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
        });
        let mut router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    let jwks = jwks.clone();
                    async move { axum::Json(jwks) }
                }),
            );
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
                .with_state(state);
            router = router.merge(authzen);
        }

        let watcher = match (&config.policy.dir, config.policy.watch) {
            (Some(dir), true) => Some(
                reload::watch(
                    Arc::clone(&engine),
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
            },
            _store: store,
            _watcher: watcher,
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}
