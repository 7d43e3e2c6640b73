//! The admin API (`/admin/v1/...`): the agent registry and revocations over HTTP, so that a
//! running Warden learns of every change at once. Never open: each call carries an admin
//! credential (`Authorization: Bearer wdn_admin_...`), stored only as a SHA-256 hash; each
//! change is attributed to the credential's name in the log (and, with the audit issue, in
//! the audit trail).
//!
//! The first start creates the credential `admin` and prints its secret once.

// Handlers return a ready `Response` as their error; boxing it would gain nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::body::to_bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use warden_core::{AgentId, AgentRecord, AgentState, AutonomyLevel, NewAgent, PublicJwk};
use warden_identity::revocation::{Kill, Revocation, Revocations, StoreView};
use warden_store::{
    AdminCredential, AgentStore, AuthStore, ControlStore, RevocationRecord, SqliteStore, StoreError,
};

use crate::unix_now;
use warden_audit::EventRecord;

/// The prefix of admin secrets, so a leaked one is recognisable (secret scanners).
pub const SECRET_PREFIX: &str = "wdn_admin_";

/// A new random admin secret and its stored hash.
pub fn new_secret() -> (String, String) {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    let secret = format!("{SECRET_PREFIX}{}", B64.encode(b));
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// What the store keeps of a secret: hex SHA-256. The secret is 256 random bits, so a fast
/// hash is enough; there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What the admin handlers need.
#[derive(Debug)]
pub struct AdminState {
    pub store: SqliteStore,
    pub revocations: Arc<Revocations>,
    pub max_body: usize,
    pub audit: Arc<crate::audit::Audit>,
    /// Where `audit.db` is (read by the audit endpoints).
    pub data_dir: std::path::PathBuf,
    pub approvals: Arc<crate::approvals::Approvals>,
    pub breakers: Arc<crate::breakers::Breakers>,
    /// The MCP side: upstreams and tool pins (`/admin/v1/tools`).
    pub mcp: Arc<crate::mcp::McpState>,
}

pub(crate) type ApiResult = Result<Response, Response>;

pub(crate) fn err(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.to_string()}})),
    )
        .into_response()
}

pub(crate) fn store_err(e: StoreError) -> Response {
    match &e {
        StoreError::UnknownAgent(_)
        | StoreError::UnknownSponsor { .. }
        | StoreError::UnknownAdmin(_) => err(StatusCode::NOT_FOUND, "not_found", e),
        StoreError::AgentExists(_) | StoreError::AdminExists(_) => {
            err(StatusCode::CONFLICT, "conflict", e)
        }
        StoreError::Revoked(_) | StoreError::ResumeWithoutSponsor(_) => {
            err(StatusCode::CONFLICT, "conflict", e)
        }
        StoreError::NoSponsor | StoreError::Invalid(_) => {
            err(StatusCode::BAD_REQUEST, "invalid_request", e)
        }
        _ => {
            tracing::error!("admin API store error: {e}");
            err(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is not available; nothing was changed",
            )
        }
    }
}

pub(crate) async fn admin(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<AdminCredential, Response> {
    let denied = || {
        let mut r = err(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an admin credential is required: Authorization: Bearer wdn_admin_...",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    };
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| s.starts_with(SECRET_PREFIX))
        .ok_or_else(denied)?;
    match state.store.admin_by_hash(&hash_secret(secret)).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => {
            tracing::warn!("admin API call with an unknown credential refused");
            Err(denied())
        }
        Err(e) => Err(store_err(e)),
    }
}

pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    state: &AdminState,
    req: Request,
) -> Result<T, Response> {
    let bytes = to_bytes(req.into_body(), state.max_body)
        .await
        .map_err(|_| {
            err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "request body too large",
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("body: {e}"),
        )
    })
}

pub(crate) fn agent_id(s: &str) -> Result<AgentId, Response> {
    AgentId::new(s).map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_request", e))
}

pub(crate) fn ok(v: impl serde::Serialize) -> Response {
    Json(v).into_response()
}

pub(crate) fn collapse(r: ApiResult) -> Response {
    r.unwrap_or_else(|e| e)
}

/// Writes the audit record of a change an admin made, durably, before the change is
/// reported done. If it cannot be written the admin is told so (the change itself stands:
/// it was made first, and the gap is in the log's health counters).
pub(crate) async fn audited(s: &AdminState, e: EventRecord) -> Result<(), Response> {
    s.audit.event_durable(e).await.map(|_| ()).map_err(|e| {
        tracing::error!(target: "warden::audit", "admin change not audited: {e}");
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("the change was made but its audit record could not be written: {e}"),
        )
    })
}

/// Refuses a change that gives no reason: `what` ("a kill") goes into the message.
pub(crate) fn reason_required(reason: &str, what: &str) -> Result<(), Response> {
    if reason.trim().is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{what} needs a reason (it is kept in the audit trail)"),
        ));
    }
    Ok(())
}

pub(crate) fn event(name: &str, who: &AdminCredential) -> EventRecord {
    EventRecord::new(crate::audit::now_ms(), name, &who.name)
}

/// The agent's new state becomes visible to token checks at once.
pub(crate) fn publish(state: &AdminState, a: &AgentRecord) {
    state
        .revocations
        .set_agent_blocked(a.id.as_str(), a.state != AgentState::Active);
}

pub async fn list_agents(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            Ok(ok(s.store.agents().await.map_err(store_err)?))
        }
        .await,
    )
}

pub async fn show_agent(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            Ok(ok(s
                .store
                .agent(&agent_id(&id)?)
                .await
                .map_err(store_err)?))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub sponsors: Vec<String>,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub autonomy: Option<AutonomyLevel>,
    #[serde(default = "yes")]
    pub dpop_required: bool,
    /// The agent's public key; the private key never leaves the client.
    pub public_jwk: PublicJwk,
}

fn yes() -> bool {
    true
}

pub async fn create_agent(State(s): State<Arc<AdminState>>, req: Request) -> Response {
    collapse(async {
        let who = admin(&s, req.headers()).await?;
        let c: CreateAgent = body(&s, req).await?;
        warden_identity::verifying_key(&c.public_jwk)
            .map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_request", e))?;
        let id = agent_id(&c.id)?;
        let jwk = PublicJwk {
            kid: warden_identity::thumbprint(&c.public_jwk.crv, &c.public_jwk.x),
            ..c.public_jwk
        };
        let rec = s
            .store
            .create_agent(
                NewAgent {
                    name: c.name.unwrap_or_else(|| id.to_string()),
                    id,
                    sponsors: c.sponsors,
                    purpose: c.purpose,
                    autonomy: c.autonomy.unwrap_or(AutonomyLevel::Intern),
                    dpop_required: c.dpop_required,
                    key: jwk,
                },
                unix_now(),
            )
            .await
            .map_err(store_err)?;
        tracing::info!(admin = %who.name, agent = %rec.id, sponsors = ?rec.sponsors, "agent created");
        audited(&s, event("agent_created", &who).agent(rec.id.as_str())
            .detail("sponsors", rec.sponsors.clone())
            .detail("autonomy", rec.autonomy.as_str())
            .detail("purpose", rec.purpose.clone())).await?;
        Ok((StatusCode::CREATED, Json(rec)).into_response())
    }.await)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    pub reason: String,
}

async fn change_state(s: &AdminState, id: &str, req: Request, to: AgentState) -> ApiResult {
    let who = admin(s, req.headers()).await?;
    let r: Reason = body(s, req).await.unwrap_or_default();
    let rec = s
        .store
        .set_state(&agent_id(id)?, to, unix_now())
        .await
        .map_err(store_err)?;
    publish(s, &rec);
    tracing::info!(admin = %who.name, agent = %rec.id, state = rec.state.as_str(), reason = %r.reason, "agent state changed");
    let name = match to {
        AgentState::Active => "agent_resumed",
        AgentState::Suspended => "agent_suspended",
        AgentState::Revoked => "agent_revoked",
    };
    audited(
        s,
        event(name, &who).agent(rec.id.as_str()).reason(&r.reason),
    )
    .await?;
    Ok(ok(rec))
}

pub async fn suspend(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(change_state(&s, &id, req, AgentState::Suspended).await)
}

pub async fn resume(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(crate::control_api::resume(&s, &id, req).await)
}

pub async fn revoke(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(change_state(&s, &id, req, AgentState::Revoked).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAutonomy {
    pub autonomy: AutonomyLevel,
}

pub async fn set_autonomy(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(async {
        let who = admin(&s, req.headers()).await?;
        let b: SetAutonomy = body(&s, req).await?;
        let rec = s.store.set_autonomy(&agent_id(&id)?, b.autonomy, unix_now()).await.map_err(store_err)?;
        s.revocations.set_level(rec.id.as_str(), rec.autonomy, true);
        tracing::info!(admin = %who.name, agent = %rec.id, autonomy = rec.autonomy.as_str(), "agent autonomy changed");
        audited(&s, event("autonomy_changed", &who).agent(rec.id.as_str()).detail("autonomy", rec.autonomy.as_str())).await?;
        Ok(ok(rec))
    }.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sponsor {
    pub sponsor: String,
}

pub async fn add_sponsor(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(async {
        let who = admin(&s, req.headers()).await?;
        let b: Sponsor = body(&s, req).await?;
        let rec = s.store.add_sponsor(&agent_id(&id)?, &b.sponsor, unix_now()).await.map_err(store_err)?;
        tracing::info!(admin = %who.name, agent = %rec.id, sponsor = %b.sponsor, "sponsor added");
        audited(&s, event("sponsor_added", &who).agent(rec.id.as_str()).detail("sponsor", b.sponsor.clone())).await?;
        Ok(ok(rec))
    }.await)
}

pub async fn remove_sponsor(
    State(s): State<Arc<AdminState>>,
    Path((id, sponsor)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    collapse(async {
        let who = admin(&s, &headers).await?;
        let r = s.store.remove_sponsor(&agent_id(&id)?, &sponsor, unix_now()).await.map_err(store_err)?;
        publish(&s, &r.agent);
        tracing::info!(admin = %who.name, agent = %r.agent.id, sponsor = %sponsor, suspended = r.suspended, "sponsor removed");
        audited(&s, event("sponsor_removed", &who).agent(r.agent.id.as_str()).detail("sponsor", sponsor.clone()).detail("suspended", r.suspended)).await?;
        Ok(ok(json!({"agent": r.agent, "suspended": r.suspended})))
    }.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    pub public_jwk: PublicJwk,
    #[serde(default = "default_grace")]
    pub grace_secs: i64,
}

fn default_grace() -> i64 {
    3600
}

pub async fn rotate_key(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    collapse(
        async {
            let who = admin(&s, req.headers()).await?;
            let b: RotateKey = body(&s, req).await?;
            warden_identity::verifying_key(&b.public_jwk)
                .map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_request", e))?;
            let jwk = PublicJwk {
                kid: warden_identity::thumbprint(&b.public_jwk.crv, &b.public_jwk.x),
                ..b.public_jwk
            };
            let rec = s
                .store
                .rotate_key(
                    &agent_id(&id)?,
                    jwk,
                    b.grace_secs.clamp(0, 7 * 86_400),
                    unix_now(),
                )
                .await
                .map_err(store_err)?;
            tracing::info!(admin = %who.name, agent = %rec.id, "agent key rotated");
            audited(&s, event("key_rotated", &who).agent(rec.id.as_str())).await?;
            Ok(ok(rec))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    #[serde(flatten)]
    pub what: Revocation,
    #[serde(default)]
    pub reason: String,
    /// For a token: its `exp`, after which the revocation may be forgotten.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// Maps a revocation to the store's (kind, value).
pub fn revocation_parts(r: &Revocation) -> (&'static str, &str) {
    match r {
        Revocation::Token(v) => ("token", v),
        Revocation::Task(v) => ("task", v),
        Revocation::Agent(v) => ("agent", v),
    }
}

/// The store's (kind, value) as a revocation.
pub fn revocation_from(kind: &str, value: &str) -> Option<Revocation> {
    match kind {
        "token" => Some(Revocation::Token(value.to_owned())),
        "task" => Some(Revocation::Task(value.to_owned())),
        "agent" => Some(Revocation::Agent(value.to_owned())),
        _ => None,
    }
}

pub async fn add_revocation(State(s): State<Arc<AdminState>>, req: Request) -> Response {
    collapse(
        async {
            let who = admin(&s, req.headers()).await?;
            let b: Revoke = body(&s, req).await?;
            let (kind, value) = revocation_parts(&b.what);
            let rec = s
                .store
                .add_revocation(RevocationRecord {
                    id: 0,
                    kind: kind.to_owned(),
                    value: value.to_owned(),
                    reason: b.reason.clone(),
                    revoked_by: who.name.clone(),
                    created_at: unix_now(),
                    expires_at: b.expires_at,
                })
                .await
                .map_err(store_err)?;
            // Durable first, then in force: a revocation the store lost would come back to life
            // at the next restart.
            s.revocations.extend([&b.what]);
            tracing::info!(admin = %who.name, kind, value, reason = %b.reason, "revoked");
            let mut e = event("revoked", &who)
                .reason(&b.reason)
                .detail("kind", kind)
                .detail("value", value);
            if kind == "agent" {
                e = e.agent(value);
            }
            audited(&s, e).await?;
            Ok((StatusCode::CREATED, Json(rec)).into_response())
        }
        .await,
    )
}

pub async fn list_revocations(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            Ok(ok(s
                .store
                .revocations_since(0, unix_now())
                .await
                .map_err(store_err)?))
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    pub name: String,
}

/// `POST /admin/v1/admins`: another named credential; its secret is in this answer only.
pub async fn create_admin(State(s): State<Arc<AdminState>>, req: Request) -> Response {
    collapse(
        async {
            let who = admin(&s, req.headers()).await?;
            let b: NewAdmin = body(&s, req).await?;
            if b.name.is_empty() || b.name.len() > 64 {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "name: 1-64 characters",
                ));
            }
            let (secret, hash) = new_secret();
            let cred = s
                .store
                .add_admin(&b.name, &hash, &who.name, unix_now())
                .await
                .map_err(store_err)?;
            tracing::info!(admin = %who.name, created = %cred.name, "admin credential created");
            audited(
                &s,
                event("admin_created", &who).detail("name", cred.name.clone()),
            )
            .await?;
            Ok((
                StatusCode::CREATED,
                Json(json!({"name": cred.name, "secret": secret,
            "note": "shown once; Warden keeps only a hash"})),
            )
                .into_response())
        }
        .await,
    )
}

/// `GET /admin/v1/whoami`: which credential this is.
pub async fn whoami(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    collapse(async { Ok(ok(admin(&s, &headers).await?)) }.await)
}

/// Unknown admin paths: a JSON 404, after authentication (no probing without a credential).
pub async fn not_found(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            Ok(err(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin endpoint",
            ))
        }
        .await,
    )
}

/// Keeps the in-memory revocation state equal to the store: changes made through the API
/// apply at once; changes made to the store directly (the CLI without `--server`) apply
/// within `every`.
pub async fn sync_revocations(
    store: SqliteStore,
    revocations: Arc<Revocations>,
    every: std::time::Duration,
) {
    let mut last_id = 0;
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if let Err(e) = sync_once(&store, &revocations, &mut last_id).await {
            tracing::error!("cannot refresh revocations from the store: {e}");
        }
    }
}

/// One refresh; also run before serving starts.
pub async fn sync_once(
    store: &SqliteStore,
    revocations: &Revocations,
    last_id: &mut i64,
) -> Result<(), StoreError> {
    let seen = revocations.version();
    let blocked = store.blocked_agents().await?;
    let kills = store.latest_kills().await?;
    let kills = kills
        .into_iter()
        .map(|k| {
            let kill = Kill {
                at: k.killed_at,
                forced: k.mode == "forced" && k.resumed_at.is_none(),
            };
            (k.agent, kill)
        })
        .collect();
    let levels = store.agent_levels().await?.into_iter().collect();
    // Skipped when a change was published while the store was read (next round catches up).
    revocations.refresh(
        seen,
        StoreView {
            blocked: blocked.into_iter().collect(),
            kills,
            levels,
        },
    );
    let new = store.revocations_since(*last_id, unix_now()).await?;
    if let Some(last) = new.last() {
        *last_id = last.id;
    }
    let items: Vec<Revocation> = new
        .iter()
        .filter_map(|r| revocation_from(&r.kind, &r.value))
        .collect();
    if !items.is_empty() {
        revocations.extend(items.iter());
    }
    Ok(())
}

/// `GET /admin/v1/audit?agent=&task=&since=&until=&decision=&kind=&after=&limit=`: records,
/// oldest first (`since`/`until` in Unix milliseconds; `limit` at most 1000, default 100).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub agent: Option<String>,
    pub task: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub decision: Option<String>,
    pub kind: Option<String>,
    pub after: Option<u64>,
    pub limit: Option<u64>,
}

fn audit_db(s: &AdminState) -> Result<rusqlite::Connection, Response> {
    warden_audit::verify::open_read_only(&s.data_dir).map_err(|e| {
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            format!("the audit log cannot be read: {e}"),
        )
    })
}

pub async fn audit_records(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let q = query
                .map_err(|e| err(StatusCode::BAD_REQUEST, "invalid_request", e))?
                .0;
            let filter = warden_audit::query::Filter {
                agent: q.agent,
                task: q.task,
                since_ms: q.since,
                until_ms: q.until,
                decision: q.decision,
                kind: q.kind,
                after_seq: q.after,
                limit: Some(q.limit.unwrap_or(100).min(1000)),
            };
            let s2 = Arc::clone(&s);
            let records = tokio::task::spawn_blocking(move || {
                let db = audit_db(&s2)?;
                warden_audit::query::query(&db, &filter)
                    .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", e))
            })
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))??;
            Ok(ok(json!({"records": records})))
        }
        .await,
    )
}

/// `GET /admin/v1/audit/checkpoint`: the newest signed checkpoint and the key that verifies
/// it — keep copies elsewhere to catch a rewrite of the whole log.
pub async fn audit_checkpoint(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    collapse(
        async {
            admin(&s, &headers).await?;
            let s2 = Arc::clone(&s);
            let cp = tokio::task::spawn_blocking(move || {
                let db = audit_db(&s2)?;
                warden_audit::query::latest_checkpoint(&db)
                    .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", e))
            })
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))??;
            let h = s.audit.auditor.health();
            use std::sync::atomic::Ordering::Relaxed;
            Ok(ok(json!({
                "checkpoint": cp.as_ref().map(|c| &c.note),
                "size": cp.as_ref().map(|c| c.size),
                "time_ms": cp.as_ref().map(|c| c.time_ms),
                "verifier_key": s.audit.auditor.verifier_key(),
                "records": h.size.load(Relaxed),
                "failing": h.failing.load(Relaxed),
                "failed_records": h.failed.load(Relaxed),
                "last_error": h.last_error(),
            })))
        }
        .await,
    )
}
