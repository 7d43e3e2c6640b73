//! The grants of the token endpoint: client credentials, delegation and on-behalf-of (RFC
//! 7523, RFC 8693, RFC 9396, RFC 9449 on the token request).

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use warden_core::{ActionKind, AgentId, AgentRecord, AgentState};
use warden_identity::assertion::{self, JWT_BEARER};
use warden_identity::dpop::{self, DpopError};
use warden_identity::jws;
use warden_identity::token::{Actor, GrantedAction, TASK_DETAIL_TYPE, TaskDetail};
use warden_identity::verifier::AuthError;
use warden_policy::{ActionRequest, TaskInfo};
use warden_store::AgentStore;

use super::{
    ACCESS_TOKEN_TYPE, Authority, Form, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, OauthError, store_error,
};

impl Authority {
    /// Authenticates an agent by its signed assertion; it must be active.
    async fn authenticate(&self, assertion: &str, now: i64) -> Result<AgentRecord, OauthError> {
        let bad = |e: assertion::AssertionError| OauthError::new("invalid_client", e.to_string());
        let claimed = assertion::claimed_agent(assertion).map_err(bad)?;
        let id = AgentId::new(claimed.as_str())
            .map_err(|_| OauthError::new("invalid_client", format!("unknown agent `{claimed}`")))?;
        let agent = self.store.agent(&id).await.map_err(store_error)?;
        let endpoint = self.token_endpoint();
        assertion::verify_assertion(
            assertion,
            &agent,
            &[endpoint.as_str(), self.issuer.as_str()],
            self.assertion_policy,
            &self.assertion_replay,
            now,
        )
        .map_err(|e| match e {
            assertion::AssertionError::CacheFull => {
                OauthError::new("temporarily_unavailable", e.to_string())
            }
            e => bad(e),
        })?;
        if agent.state != AgentState::Active {
            return Err(OauthError::new(
                "invalid_client",
                format!("agent `{}` is {}", agent.id, agent.state.as_str()),
            ));
        }
        Ok(agent)
    }

    /// The DPoP key of the token request, if a proof came; required unless the agent
    /// opted out.
    fn dpop_key(
        &self,
        headers: &HeaderMap,
        agent: &AgentRecord,
        now: i64,
    ) -> Result<Option<String>, OauthError> {
        let proof = match headers
            .get_all("dpop")
            .iter()
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => None,
            [one] => Some(one.to_str().map_err(|_| {
                OauthError::new("invalid_dpop_proof", "the DPoP header is not ASCII")
            })?),
            _ => {
                return Err(OauthError::new(
                    "invalid_dpop_proof",
                    "exactly one DPoP header is allowed",
                ));
            }
        };
        let Some(proof) = proof else {
            if agent.dpop_required {
                return Err(OauthError::new(
                    "invalid_dpop_proof",
                    format!(
                        "agent `{}` must send a DPoP proof with its token requests",
                        agent.id
                    ),
                ));
            }
            return Ok(None);
        };
        let v = dpop::verify_proof(
            proof,
            "POST",
            &self.token_endpoint(),
            None,
            None,
            self.verifier.dpop_policy(),
            self.verifier.replay_cache(),
            now,
        )
        .map_err(|e| match e {
            DpopError::CacheFull => OauthError::new("temporarily_unavailable", e.to_string()),
            e => OauthError::new("invalid_dpop_proof", e.to_string()),
        })?;
        Ok(Some(v.jkt))
    }

    /// The single `warden_task` entry of `authorization_details`, if given.
    pub(crate) fn task_detail(form: &Form) -> Result<Option<TaskDetail>, OauthError> {
        let bad = |m: String| OauthError::new("invalid_authorization_details", m);
        let Some(raw) = form.get("authorization_details") else {
            return Ok(None);
        };
        let list: Vec<Value> = serde_json::from_str(raw)
            .map_err(|e| bad(format!("authorization_details is not a JSON array: {e}")))?;
        let [only] = list.as_slice() else {
            return Err(bad(format!(
                "exactly one authorization_details entry of type `{TASK_DETAIL_TYPE}` is \
                 expected, got {}",
                list.len()
            )));
        };
        if only.get("type").and_then(Value::as_str) != Some(TASK_DETAIL_TYPE) {
            return Err(bad(format!(
                "unsupported authorization_details type; Warden knows `{TASK_DETAIL_TYPE}`"
            )));
        }
        let d: TaskDetail = serde_json::from_value(only.clone())
            .map_err(|e| bad(format!("{TASK_DETAIL_TYPE}: {e}")))?;
        if d.task_id.is_empty()
            || d.task_id.len() > 128
            || !d
                .task_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(bad(
                "task_id must be 1-128 letters, digits, `-`, `_`, `.` or `:`".into(),
            ));
        }
        Ok(Some(d))
    }

    /// Keeps the requested actions the PE could permit for `agent` on this task; says why
    /// the others were refused.
    #[allow(clippy::too_many_arguments)]
    fn intersect(
        &self,
        agent: &AgentRecord,
        aud: &str,
        task: &TaskDetail,
        on_behalf_of: Option<&str>,
        delegated_by: &[&str],
        requested: &[GrantedAction],
        now: i64,
    ) -> Result<(Vec<GrantedAction>, Vec<Value>), OauthError> {
        let snapshot = self.engine.snapshot();
        let server = aud
            .strip_prefix(&self.issuer)
            .and_then(|p| p.strip_prefix("/mcp/"));
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        let delegated_by = delegated_by
            .iter()
            .map(|a| AgentId::new(*a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OauthError::new("invalid_grant", e.to_string()))?;
        for want in requested {
            let server_scoped = want.action != ActionKind::SendMessage;
            let outside = match server {
                Some(s) => {
                    !server_scoped
                        || !want
                            .resource
                            .strip_prefix(s)
                            .is_some_and(|r| r.starts_with('/'))
                }
                None => false,
            };
            if outside {
                refused.push(json!({"action": want.action, "resource": want.resource,
                    "reason": format!("not served by resource {aud}")}));
                continue;
            }
            let req = ActionRequest {
                agent: agent.id.clone(),
                action: want.action,
                resource: want.resource.clone(),
                arguments: serde_json::Map::new(),
                task: TaskInfo {
                    id: task.task_id.clone(),
                    purpose: task.purpose.clone(),
                },
                on_behalf_of: on_behalf_of.map(str::to_owned),
                delegated_by: delegated_by.clone(),
                autonomy: agent.autonomy,
                risk: warden_core::RiskScore::default(),
                limit_used: 0,
                time: now,
                reason: None,
                inspection: Default::default(),
            };
            match snapshot.grantable(&req) {
                warden_policy::Grantability::Grantable { .. } => granted.push(want.clone()),
                warden_policy::Grantability::Refused(why) => refused
                    .push(json!({"action": want.action, "resource": want.resource, "reason": why})),
            }
        }
        granted.sort();
        granted.dedup();
        if granted.is_empty() {
            let reasons: Vec<String> = refused
                .iter()
                .map(|r| {
                    format!(
                        "{} {}: {}",
                        r["action"].as_str().unwrap_or(""),
                        r["resource"].as_str().unwrap_or(""),
                        r["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            return Err(OauthError::new(
                "invalid_authorization_details",
                format!(
                    "no requested action can be granted to `{}` for this task: {}",
                    agent.id,
                    reasons.join("; ")
                ),
            ));
        }
        Ok((granted, refused))
    }

    pub(super) async fn client_credentials(
        &self,
        form: &Form,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Response, OauthError> {
        let agent = self.client(form, now).await?;
        let jkt = self.dpop_key(headers, &agent, now)?;
        let aud = self.resource(form)?;
        let task = Self::task_detail(form)?.ok_or_else(|| {
            OauthError::new(
                "invalid_authorization_details",
                format!("authorization_details with one `{TASK_DETAIL_TYPE}` entry is required"),
            )
        })?;
        if task.on_behalf_of.is_some() {
            return Err(OauthError::new(
                "invalid_authorization_details",
                "on_behalf_of needs the user's own token: use token exchange with the user's \
                 IdP token as subject_token",
            ));
        }
        if task.actions.is_empty() {
            return Err(OauthError::new(
                "invalid_authorization_details",
                "the task names no actions",
            ));
        }
        let (granted, refused) =
            self.intersect(&agent, &aud, &task, None, &[], &task.actions, now)?;
        let claims = self.mint(
            &agent,
            aud,
            TaskDetail {
                actions: granted,
                ..task
            },
            jkt,
            now,
        );
        self.respond(&claims, refused, false, now)
    }

    async fn client(&self, form: &Form, now: i64) -> Result<AgentRecord, OauthError> {
        if form.get("client_secret").is_some() {
            return Err(OauthError::new(
                "invalid_client",
                "client secrets are not accepted; authenticate with private_key_jwt",
            ));
        }
        match form.get("client_assertion_type") {
            Some(JWT_BEARER) => {}
            Some(other) => {
                return Err(OauthError::new(
                    "invalid_client",
                    format!("client_assertion_type `{other}` is not supported; use {JWT_BEARER}"),
                ));
            }
            None => {
                return Err(OauthError::new(
                    "invalid_client",
                    "client authentication with private_key_jwt is required \
                     (client_assertion_type, client_assertion)",
                ));
            }
        }
        let agent = self
            .authenticate(form.require("client_assertion")?, now)
            .await?;
        if let Some(cid) = form.get("client_id")
            && cid != agent.id.as_str()
        {
            return Err(OauthError::new(
                "invalid_client",
                "client_id does not match the client assertion",
            ));
        }
        Ok(agent)
    }

    pub(super) async fn token_exchange(
        &self,
        form: &Form,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Response, OauthError> {
        match form.get("actor_token_type") {
            Some(JWT_TOKEN_TYPE) => {}
            _ => {
                return Err(OauthError::new(
                    "invalid_request",
                    format!(
                        "actor_token (the acting agent's signed assertion) with \
                         actor_token_type {JWT_TOKEN_TYPE} is required"
                    ),
                ));
            }
        }
        let actor = self.authenticate(form.require("actor_token")?, now).await?;
        if form.get("client_assertion").is_some() {
            let client = self.client(form, now).await?;
            if client.id != actor.id {
                return Err(OauthError::new(
                    "invalid_client",
                    "the client and the actor must be the same agent",
                ));
            }
        }
        let jkt = self.dpop_key(headers, &actor, now)?;
        let subject = form.require("subject_token")?;
        match form.require("subject_token_type")? {
            ACCESS_TOKEN_TYPE => self.delegate(form, subject, &actor, jkt, now),
            JWT_TOKEN_TYPE | ID_TOKEN_TYPE => self.on_behalf_of(form, subject, &actor, jkt, now),
            other => Err(OauthError::new(
                "invalid_request",
                format!("subject_token_type `{other}` is not supported"),
            )),
        }
    }

    /// RFC 8693 delegation: the parent's task token, narrowed, for a child agent.
    fn delegate(
        &self,
        form: &Form,
        subject: &str,
        child: &AgentRecord,
        jkt: Option<String>,
        now: i64,
    ) -> Result<Response, OauthError> {
        let grant = |e: AuthError| OauthError::new("invalid_grant", format!("subject_token: {e}"));
        let parent = self.verifier.decode(subject, now).map_err(grant)?;
        self.verifier.check_revocation(&parent).map_err(grant)?;
        let depth = parent.depth + 1;
        if depth > self.max_depth {
            return Err(OauthError::new(
                "invalid_request",
                format!(
                    "delegation depth {depth} is over the limit of {}",
                    self.max_depth
                ),
            ));
        }
        if parent.client_id == child.id.as_str() {
            return Err(OauthError::new(
                "invalid_request",
                "an agent cannot delegate to itself",
            ));
        }
        if parent.agents().contains(&child.id.as_str()) {
            return Err(OauthError::new(
                "invalid_request",
                format!("agent `{}` is already in this delegation chain", child.id),
            ));
        }
        let aud = match form.get("resource") {
            None => parent.aud.clone(),
            Some(r) if r == parent.aud => r.to_owned(),
            Some(r) => {
                return Err(OauthError::new(
                    "invalid_target",
                    format!(
                        "a delegated token keeps its parent's audience {}; `{r}` would widen it",
                        parent.aud
                    ),
                ));
            }
        };
        let parent_task = parent
            .task()
            .cloned()
            .ok_or_else(|| OauthError::new("invalid_grant", "subject_token has no task"))?;
        let requested = match Self::task_detail(form)? {
            None => parent_task.actions.clone(),
            Some(d) => {
                if d.task_id != parent_task.task_id {
                    return Err(OauthError::new(
                        "invalid_authorization_details",
                        format!("a delegated token stays on task `{}`", parent_task.task_id),
                    ));
                }
                if d.on_behalf_of.is_some() {
                    return Err(OauthError::new(
                        "invalid_authorization_details",
                        "on_behalf_of is inherited from the subject token, not requested",
                    ));
                }
                if let Some(extra) = d.actions.iter().find(|a| !parent_task.actions.contains(a)) {
                    return Err(OauthError::new(
                        "invalid_authorization_details",
                        format!(
                            "delegation cannot widen the task: the parent token does not grant \
                             {} on {}",
                            extra.action.as_str(),
                            extra.resource
                        ),
                    ));
                }
                d.actions
            }
        };
        let obo = parent.on_behalf_of().map(str::to_owned);
        // The child acts for everyone already in the chain, root first.
        let mut chain: Vec<&str> = parent.delegated_by();
        chain.push(parent.client_id.as_str());
        let (granted, refused) = self.intersect(
            child,
            &aud,
            &parent_task,
            obo.as_deref(),
            &chain,
            &requested,
            now,
        )?;
        let mut parents = parent.parents.clone();
        parents.push(parent.jti.clone());
        let mut claims = self.mint(
            child,
            aud,
            TaskDetail {
                actions: granted,
                ..parent_task
            },
            jkt,
            now,
        );
        claims.sub.clone_from(&parent.sub);
        claims.exp = claims.exp.min(parent.exp);
        claims.act = Some(Actor {
            sub: child.id.to_string(),
            act: parent.act.clone().map(Box::new),
        });
        claims.depth = depth;
        claims.parents = parents;
        self.respond(&claims, refused, true, now)
    }

    /// On-behalf-of: a user's IdP token and an agent's assertion give a task token with
    /// `sub` = the user and `act.sub` = the agent.
    fn on_behalf_of(
        &self,
        form: &Form,
        subject: &str,
        agent: &AgentRecord,
        jkt: Option<String>,
        now: i64,
    ) -> Result<Response, OauthError> {
        let user = self.verify_user_token(subject, now)?;
        let aud = self.resource(form)?;
        let task = Self::task_detail(form)?.ok_or_else(|| {
            OauthError::new(
                "invalid_authorization_details",
                "authorization_details with the task is required",
            )
        })?;
        if task.on_behalf_of.as_deref().is_some_and(|u| u != user) {
            return Err(OauthError::new(
                "invalid_authorization_details",
                "on_behalf_of differs from the user in subject_token",
            ));
        }
        let (granted, refused) =
            self.intersect(agent, &aud, &task, Some(&user), &[], &task.actions, now)?;
        let mut claims = self.mint(
            agent,
            aud,
            TaskDetail {
                actions: granted,
                on_behalf_of: Some(user.clone()),
                ..task
            },
            jkt,
            now,
        );
        claims.sub = user;
        claims.act = Some(Actor {
            sub: agent.id.to_string(),
            act: None,
        });
        self.respond(&claims, refused, true, now)
    }

    /// Verifies a user token from a configured IdP; returns the user (`sub`).
    fn verify_user_token(&self, token: &str, now: i64) -> Result<String, OauthError> {
        let bad = |m: String| OauthError::new("invalid_grant", format!("subject_token: {m}"));
        let peek = jws::peek(token).map_err(|e| bad(e.to_string()))?;
        let iss = peek.claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let idp = self.idps.iter().find(|i| i.issuer == iss).ok_or_else(|| {
            bad(format!(
                "issuer `{iss}` is not a configured identity provider"
            ))
        })?;
        let kid = peek.header.get("kid").and_then(Value::as_str);
        let mut verified = None;
        for (_, key) in idp
            .keys
            .iter()
            .filter(|(k, _)| kid.is_none_or(|kid| kid == k))
        {
            if let Ok(v) = jws::verify(token, key, None) {
                verified = Some(v);
                break;
            }
        }
        let claims = verified
            .ok_or_else(|| bad("not signed by the identity provider".into()))?
            .claims;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == idp.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&idp.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(bad(format!("aud must include `{}`", idp.audience)));
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp <= now {
            return Err(bad("expired".into()));
        }
        let skew = self.assertion_policy.skew;
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|n| n > now + skew)
        {
            return Err(bad("not valid yet".into()));
        }
        claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| bad("no sub".into()))
    }
}
