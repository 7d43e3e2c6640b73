//! The embedded default: one SQLite file in the data directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use warden_core::{AgentId, AgentRecord, AgentState, AutonomyLevel, NewAgent, PublicJwk};

use crate::{
    AdminCredential, AgentStore, AlertRecord, ApprovalRecord, ApprovalState, AuthStore,
    ContentStore, ControlStore, KillRecord, MonitorStore, RevocationRecord, SponsorRemoved,
    StoreError, TaintRecord, ToolDefinition, ToolPin, agents, auth, content, control, migrate,
    monitor,
};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "warden.db";

/// The SQLite store. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `warden.db` in `data_dir`, in WAL mode, and migrates it.
    pub fn open_in(data_dir: &Path, now: i64) -> Result<Self, StoreError> {
        Self::open(&data_dir.join(DB_FILE), now)
    }

    /// Opens the database file at `path`.
    pub fn open(path: &Path, now: i64) -> Result<Self, StoreError> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL: readers never block the writer. FULL: a committed registry change (a
        // revocation, a suspension) survives power loss, not only a crash.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        if version > migrate::latest() {
            return Err(StoreError::Corrupt(format!(
                "{} has schema version {version}, newer than this build of Warden knows ({}); \
                 upgrade Warden",
                path.display(),
                migrate::latest()
            )));
        }
        migrate::migrate(&mut conn, now)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool, inside one transaction.
    async fn tx<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("the database connection lock is poisoned".into()))?;
            let tx = guard.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl AgentStore for SqliteStore {
    async fn create_agent(&self, agent: NewAgent, now: i64) -> Result<AgentRecord, StoreError> {
        self.tx(move |tx| agents::create(tx, &agent, now)).await
    }

    async fn agent(&self, id: &AgentId) -> Result<AgentRecord, StoreError> {
        let id = id.clone();
        self.tx(move |tx| agents::load(tx, &id)).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.tx(agents::load_all).await
    }

    async fn set_state(
        &self,
        id: &AgentId,
        state: AgentState,
        now: i64,
    ) -> Result<AgentRecord, StoreError> {
        let id = id.clone();
        self.tx(move |tx| agents::set_state(tx, &id, state, now))
            .await
    }

    async fn set_autonomy(
        &self,
        id: &AgentId,
        autonomy: AutonomyLevel,
        now: i64,
    ) -> Result<AgentRecord, StoreError> {
        let id = id.clone();
        self.tx(move |tx| agents::set_autonomy(tx, &id, autonomy, now))
            .await
    }

    async fn add_sponsor(
        &self,
        id: &AgentId,
        sponsor: &str,
        now: i64,
    ) -> Result<AgentRecord, StoreError> {
        let (id, sponsor) = (id.clone(), sponsor.to_owned());
        self.tx(move |tx| agents::add_sponsor(tx, &id, &sponsor, now))
            .await
    }

    async fn remove_sponsor(
        &self,
        id: &AgentId,
        sponsor: &str,
        now: i64,
    ) -> Result<SponsorRemoved, StoreError> {
        let (id, sponsor) = (id.clone(), sponsor.to_owned());
        self.tx(move |tx| agents::remove_sponsor(tx, &id, &sponsor, now))
            .await
    }

    async fn rotate_key(
        &self,
        id: &AgentId,
        key: PublicJwk,
        grace_secs: i64,
        now: i64,
    ) -> Result<AgentRecord, StoreError> {
        let id = id.clone();
        self.tx(move |tx| agents::rotate_key(tx, &id, &key, grace_secs, now))
            .await
    }
}

impl AuthStore for SqliteStore {
    async fn bootstrap_admin(
        &self,
        name: &str,
        secret_hash: &str,
        now: i64,
    ) -> Result<Option<AdminCredential>, StoreError> {
        let (name, hash) = (name.to_owned(), secret_hash.to_owned());
        self.tx(move |tx| {
            if auth::admin_count(tx)? > 0 {
                return Ok(None);
            }
            auth::add_admin(tx, &name, &hash, "bootstrap", now).map(Some)
        })
        .await
    }

    async fn add_admin(
        &self,
        name: &str,
        secret_hash: &str,
        created_by: &str,
        now: i64,
    ) -> Result<AdminCredential, StoreError> {
        let (name, hash, by) = (
            name.to_owned(),
            secret_hash.to_owned(),
            created_by.to_owned(),
        );
        self.tx(move |tx| auth::add_admin(tx, &name, &hash, &by, now))
            .await
    }

    async fn replace_admin_secret(&self, name: &str, secret_hash: &str) -> Result<(), StoreError> {
        let (name, hash) = (name.to_owned(), secret_hash.to_owned());
        self.tx(move |tx| auth::replace_admin_secret(tx, &name, &hash))
            .await
    }

    async fn admin_by_hash(
        &self,
        secret_hash: &str,
    ) -> Result<Option<AdminCredential>, StoreError> {
        let hash = secret_hash.to_owned();
        self.tx(move |tx| auth::admin_by_hash(tx, &hash)).await
    }

    async fn add_revocation(&self, r: RevocationRecord) -> Result<RevocationRecord, StoreError> {
        self.tx(move |tx| auth::add_revocation(tx, &r)).await
    }

    async fn revocations_since(
        &self,
        after_id: i64,
        now: i64,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        self.tx(move |tx| auth::revocations_since(tx, after_id, now))
            .await
    }

    async fn blocked_agents(&self) -> Result<Vec<String>, StoreError> {
        self.tx(auth::blocked_agents).await
    }

    async fn agent_levels(&self) -> Result<Vec<(String, AutonomyLevel)>, StoreError> {
        self.tx(auth::agent_levels).await
    }
}

impl ControlStore for SqliteStore {
    async fn kill(
        &self,
        ids: &[AgentId],
        mode: &str,
        reason: &str,
        by: &str,
        now: i64,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        let (ids, mode, reason, by) = (
            ids.to_vec(),
            mode.to_owned(),
            reason.to_owned(),
            by.to_owned(),
        );
        self.tx(move |tx| control::kill(tx, &ids, &mode, &reason, &by, now))
            .await
    }

    async fn resume(&self, id: &AgentId, by: &str, now: i64) -> Result<AgentRecord, StoreError> {
        let (id, by) = (id.clone(), by.to_owned());
        self.tx(move |tx| control::resume(tx, &id, &by, now)).await
    }

    async fn latest_kills(&self) -> Result<Vec<KillRecord>, StoreError> {
        self.tx(control::latest_kills).await
    }

    async fn add_approval(&self, a: ApprovalRecord) -> Result<(), StoreError> {
        self.tx(move |tx| control::add_approval(tx, &a)).await
    }

    async fn approval(&self, id: &str, now: i64) -> Result<Option<ApprovalRecord>, StoreError> {
        let id = id.to_owned();
        self.tx(move |tx| control::approval(tx, &id, now)).await
    }

    async fn live_approval(
        &self,
        match_key: &str,
        now: i64,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let key = match_key.to_owned();
        self.tx(move |tx| control::live_approval(tx, &key, now))
            .await
    }

    async fn approvals(
        &self,
        state: Option<ApprovalState>,
        agent: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let agent = agent.map(str::to_owned);
        self.tx(move |tx| control::approvals(tx, state, agent.as_deref(), limit, now))
            .await
    }

    async fn approval_counts(
        &self,
        agent: &str,
        since: i64,
        now: i64,
    ) -> Result<(u32, u32), StoreError> {
        let agent = agent.to_owned();
        self.tx(move |tx| control::approval_counts(tx, &agent, since, now))
            .await
    }

    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: &str,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let (id, by, reason) = (id.to_owned(), by.to_owned(), reason.to_owned());
        self.tx(move |tx| control::decide_approval(tx, &id, approve, &by, &reason, now))
            .await
    }

    async fn use_approval(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.tx(move |tx| control::use_approval(tx, &id, now)).await
    }
}

impl MonitorStore for SqliteStore {
    async fn save_baselines(
        &self,
        states: Vec<(String, String)>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.tx(move |tx| monitor::save_baselines(tx, &states, now))
            .await
    }

    async fn baselines(&self, agent: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        let agent = agent.map(str::to_owned);
        self.tx(move |tx| monitor::baselines(tx, agent.as_deref()))
            .await
    }

    async fn add_alert(&self, a: AlertRecord) -> Result<i64, StoreError> {
        self.tx(move |tx| monitor::add_alert(tx, &a)).await
    }

    async fn set_webhook(&self, id: i64, state: &str) -> Result<(), StoreError> {
        let state = state.to_owned();
        self.tx(move |tx| monitor::set_webhook(tx, id, &state))
            .await
    }

    async fn alerts(
        &self,
        agent: Option<&str>,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let agent = agent.map(str::to_owned);
        self.tx(move |tx| monitor::alerts(tx, agent.as_deref(), since_ms, limit))
            .await
    }
}

impl ContentStore for SqliteStore {
    async fn taint(&self, t: TaintRecord) -> Result<(), StoreError> {
        self.tx(move |tx| content::taint(tx, &t)).await
    }

    async fn taints(&self, now: i64) -> Result<Vec<TaintRecord>, StoreError> {
        self.tx(move |tx| content::taints(tx, now)).await
    }

    async fn clear_taints(&self, agent: &str, task: Option<&str>) -> Result<usize, StoreError> {
        let (agent, task) = (agent.to_owned(), task.map(str::to_owned));
        self.tx(move |tx| content::clear_taints(tx, &agent, task.as_deref()))
            .await
    }

    async fn tool_pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        self.tx(content::pins).await
    }

    async fn approve_tool(
        &self,
        upstream: &str,
        tool: &str,
        hash: &str,
        by: &str,
        now: i64,
    ) -> Result<ToolPin, StoreError> {
        let (u, t, h, b) = (
            upstream.to_owned(),
            tool.to_owned(),
            hash.to_owned(),
            by.to_owned(),
        );
        self.tx(move |tx| content::approve_tool(tx, &u, &t, &h, &b, now))
            .await
    }

    async fn saw_tools(
        &self,
        upstream: &str,
        tools: Vec<ToolDefinition>,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let u = upstream.to_owned();
        self.tx(move |tx| content::saw_tools(tx, &u, &tools, now))
            .await
    }

    async fn tool_sightings(&self) -> Result<Vec<ToolDefinition>, StoreError> {
        self.tx(content::sightings).await
    }
}
