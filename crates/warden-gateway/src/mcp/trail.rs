//! The audit trail of one MCP request (AU-1, AU-3). Every request ends with exactly one
//! decision record:
//!
//! * a tool call, resource read or prompt get is recorded where it is decided
//!   ([`decide_and_record`]) — with its arguments, policies, reasons and the agent's
//!   stated reason — and, when allowed, forwarded only once that record is durable; its
//!   upstream answer follows as an `outcome` record;
//! * anything else (a protocol method, a list call, or a request refused before any
//!   policy was asked: no token, bad JSON, header mismatch, unknown session) is recorded
//!   when its answer is ready ([`Trail::finish`]), from what the request showed so far;
//! * a request whose client goes away before its answer (the connection closes while the
//!   call is held for approval, waits for its record, or is being forwarded) is recorded
//!   when it is dropped: a `deny` with reason `client_gone` if nothing was recorded yet,
//!   an `aborted` outcome if the call had been forwarded.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use warden_audit::OutcomeRecord;
use warden_core::{ActionKind, Decision, Effect};
use warden_identity::token::AccessClaims;
use warden_mcp::{RequestId, codes};
use warden_policy::{ContentContext, PolicySnapshot};

use super::decide::{self, Caller, Refusal};
use super::local::LocalBinding;
use super::{McpState, rpc_error};
use crate::approvals::Ask;
use crate::audit;
use crate::breakers::Event;
use crate::limits::Subject;

/// The stable reason id of a refusal, carried on the response so that the request's
/// record names it.
#[derive(Debug, Clone)]
pub(crate) struct RefusedReason(pub String);

/// What one request has shown so far.
#[derive(Debug)]
pub(crate) struct Trail<'r> {
    started: Instant,
    scope: &'r str,
    via: &'r str,
    claims: Option<Arc<AccessClaims>>,
    method: Option<String>,
    recorded: bool,
    /// The action being decided, once known: what a dropped request is recorded as.
    deciding: Option<(ActionKind, String)>,
    /// A forwarded call whose outcome is not recorded yet: its decision's sequence number,
    /// resource and when it was forwarded.
    forwarded: Option<(u64, String, Instant)>,
    /// Set by [`Trail::finish`]: nothing is left for the drop to record.
    finished: bool,
    authority: Arc<crate::oauth::Authority>,
}

impl<'r> Trail<'r> {
    pub fn new(s: &McpState, scope: &'r str, local: Option<&'r LocalBinding>) -> Self {
        Self {
            started: Instant::now(),
            scope,
            via: local.map_or("token", |l| l.via.as_str()),
            claims: None,
            method: None,
            recorded: false,
            deciding: None,
            forwarded: None,
            finished: false,
            authority: Arc::clone(&s.authority),
        }
    }

    pub fn authenticated(&mut self, c: &Arc<AccessClaims>) {
        self.claims = Some(Arc::clone(c));
    }

    pub fn method(&mut self, m: &str) {
        self.method = Some(m.to_owned());
    }

    fn latency_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A record of this request with what it showed of its caller.
    fn record(&self) -> warden_audit::DecisionRecord {
        let via = if self.claims.is_some() {
            self.via
        } else {
            "none"
        };
        audit::from_claims(self.claims.as_deref(), "mcp", via)
    }

    /// Records the request unless its decision was recorded already: a refusal with the
    /// reason the caller was given, or a protocol-level allow.
    pub fn finish(mut self, s: &McpState, resp: &Response) {
        self.finished = true;
        if self.recorded {
            return;
        }
        let mut r = self.record();
        r.action = self.method.clone().unwrap_or_else(|| "request".into());
        r.resource = self.scope.to_owned();
        match resp.extensions().get::<RefusedReason>() {
            Some(reason) => {
                r.decision = "deny".into();
                r.reason_id.clone_from(&reason.0);
            }
            None if resp.status().is_success() || resp.status() == StatusCode::ACCEPTED => {
                r.decision = "allow".into();
                r.reason_id = "protocol".into();
            }
            None => {
                r.decision = "deny".into();
                r.reason_id = format!("http_{}", resp.status().as_u16());
            }
        }
        r.policy_version = s.authority.engine.snapshot().version().to_owned();
        r.latency_us = self.latency_us();
        s.authority.audit.record(r);
    }
}

impl Drop for Trail<'_> {
    /// The request was dropped before its answer: its client went away (or a kill cut it).
    fn drop(&mut self) {
        let audit = &self.authority.audit;
        if let Some((seq, resource, since)) = self.forwarded.take() {
            audit
                .auditor
                .record(&warden_audit::Record::Outcome(OutcomeRecord {
                    time_ms: audit::now_ms(),
                    decision_seq: seq,
                    agent: self.claims.as_ref().map(|c| c.client_id.clone()),
                    resource,
                    status: "aborted".into(),
                    http_status: None,
                    latency_us: u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX),
                    findings: Vec::new(),
                }));
        }
        if self.finished || self.recorded {
            return;
        }
        let mut r = self.record();
        match self.deciding.take() {
            Some((kind, resource)) => {
                r.action = kind.as_str().to_owned();
                r.resource = resource;
            }
            None => {
                r.action = self.method.take().unwrap_or_else(|| "request".into());
                r.resource = self.scope.to_owned();
            }
        }
        r.decision = "deny".into();
        r.reason_id = "client_gone".into();
        r.reasons = vec![
            "the client closed the connection before the answer; nothing was forwarded".into(),
        ];
        r.policy_version = self.authority.engine.snapshot().version().to_owned();
        r.latency_us = self.latency_us();
        audit.record(r);
    }
}

/// Decides one action (token grant, then policy with the real arguments), writes its
/// record, and for an allow waits until the record is as durable as the agent's autonomy
/// level requires. `Ok` carries the allow and the record's sequence number; `Err` the
/// answer to send instead — a refusal, or `audit_unavailable` when the record could not
/// be written (AU-3: then the call does not run).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn decide_and_record(
    s: &McpState,
    trail: &mut Trail<'_>,
    snapshot: &PolicySnapshot,
    caller: &Caller<'_>,
    kind: ActionKind,
    name: &str,
    arguments: Option<&Map<String, Value>>,
    id: Option<&RequestId>,
) -> Result<(Decision, u64), Result<Refusal, Response>> {
    let resource = format!("{}/{name}", caller.upstream);
    trail.deciding = Some((kind, resource.clone()));
    let agent = caller.claims.client_id.as_str();
    let breakers = &s.authority.breakers;
    let limits = &s.authority.limits;
    let claims = caller.claims;
    // Root first; the last is the agent this one acts for directly.
    let chain = claims.delegated_by();
    let subject = Subject {
        agent,
        task: claims.task().map_or("", |t| t.task_id.as_str()),
        tree: chain.first().copied().unwrap_or(agent),
        resource: &resource,
        arguments,
    };
    // HC-2: the policy sees how much of its limits the caller has used; MO-1: and how
    // far the agent strays from its baseline.
    let monitoring = &s.authority.monitoring;
    let now_ms = audit::now_ms();
    let caller = &Caller {
        limit_used: limits.used_percent(&subject),
        risk: monitoring.risk(agent, now_ms),
        ..*caller
    };
    // IO-1, IO-2: the arguments are inspected; what is found enters the decision.
    let inspection = &s.authority.inspection;
    let check = inspection.check_arguments(&resource, claims.autonomy, arguments);
    let taint = inspection.taints.get(agent, subject.task, caller.now);
    let no_secrets = check.no_secrets();
    let content = ContentContext {
        tainted: taint.is_some(),
        findings: check.tags,
    };
    // HC-3: an open breaker refuses before anything is decided or forwarded.
    let mut outcome = match breakers.admit(agent, &resource) {
        Ok(()) => match &check.block {
            Some(why) => Err(Refusal {
                code: codes::DENIED,
                reason_id: "content_blocked",
                message: format!("{} {resource}: {why}", kind.as_str()),
                decision: Decision::default_deny(why.clone()),
                approval: None,
            }),
            None => decide::decide(snapshot, caller, kind, name, arguments, content),
        },
        Err(open) => {
            let message = open.message(agent);
            Err(Refusal {
                code: codes::DENIED,
                reason_id: "circuit_open",
                message: format!("{} {resource}: {message}", kind.as_str()),
                decision: Decision::default_deny(message),
                approval: None,
            })
        }
    };
    // EP-4: a tool is called only while its definition is the approved one (IO-3: and its
    // result is checked against the output schema that definition declares). Asked only
    // for a call the grant and the policy let through, before anyone is asked to approve
    // it: a refused call never makes Warden list the upstream's tools.
    let passes = match &outcome {
        Ok(_) => true,
        Err(r) => r.decision.effect == Effect::RequireApproval,
    };
    if passes && kind == ActionKind::CallTool && inspection.pins.tracking() {
        if inspection.pins.stale(caller.upstream, caller.now) {
            crate::tools_api::refresh(s, caller.upstream).await;
        }
        if let Err(p) = inspection.pins.check(caller.upstream, name) {
            outcome = Err(Refusal {
                code: codes::DENIED,
                reason_id: p.reason_id,
                message: format!("{} {resource}: {}", kind.as_str(), p.message),
                decision: Decision::default_deny(p.message),
                approval: None,
            });
        }
    }
    // IO-1: once the task has received an injection, its high-risk calls need a human,
    // whatever the policy allows and however sure the detector was.
    if let (Ok(d), Some(t)) = (&outcome, &taint)
        && inspection.high_risk(&resource)
    {
        let mut d = d.clone();
        d.effect = Effect::RequireApproval;
        let why = format!(
            "the task is tainted: content from {} carried a prompt injection ({}); its \
             high-risk calls need a human's approval",
            t.source, t.finding
        );
        d.reasons.push(why.clone());
        outcome = Err(Refusal {
            code: codes::APPROVAL_REQUIRED,
            reason_id: "approval_required",
            message: format!(
                "{} {resource} needs a human's approval: {why}",
                kind.as_str()
            ),
            decision: d,
            approval: None,
        });
    }
    inspection.alert(agent, &resource, "arguments", &check.alerts);
    let mut approved = false;
    if let Err(r) = &mut outcome
        && r.decision.effect == Effect::RequireApproval
    {
        // HC-1: held until an approver decides, the timeout denies, or the agent is stopped.
        let ask = Ask {
            claims: caller.claims,
            action: kind.as_str(),
            resource: &resource,
            arguments,
            stated_reason: caller.reason,
            presented: caller.approval,
        };
        let revocations = s.authority.verifier.revocations();
        match s
            .authority
            .approvals
            .hold(revocations, ask, &r.decision)
            .await
        {
            Ok(a) => {
                let mut d = r.decision.clone();
                d.effect = Effect::Allow;
                d.reasons.push(format!(
                    "approved by {} (approval {}): {}",
                    a.by, a.id, a.reason
                ));
                approved = true;
                outcome = Ok(d);
            }
            Err(n) => {
                r.decision.effect = Effect::Deny;
                r.decision.reasons.push(n.message.clone());
                r.code = codes::DENIED;
                r.reason_id = n.reason_id;
                r.message = format!("{} {resource}: {}", kind.as_str(), n.message);
                r.approval = n.approval;
            }
        }
    }
    // HC-2: an allowed call counts against every matching limit, or is refused by one.
    if outcome.is_ok()
        && !limits.is_empty()
        && let Err(e) = limits.take(&subject)
    {
        let message = e.message();
        let decision = Decision::default_deny(message.clone());
        outcome = Err(Refusal {
            code: codes::DENIED,
            reason_id: "limit_exceeded",
            message: format!("{} {resource}: {message}", kind.as_str()),
            decision,
            approval: None,
        });
    }
    let event = match &outcome {
        Ok(_) => Some(Event::Allowed),
        Err(r) => crate::breakers::counts_as_denial(r.reason_id).then_some(Event::Denied),
    };
    if let Some(event) = event {
        let trips = breakers.record(agent, &resource, event);
        if !trips.is_empty() {
            crate::demotion::report(&s.authority, caller.claims.autonomy, trips);
        }
        let delegator = chain.last().copied();
        observe(
            monitoring, caller, delegator, &resource, arguments, event, now_ms,
        );
        // The call that took the agent over the quarantine threshold does not run either.
        if outcome.is_ok() && monitoring.monitor().is_some_and(|m| m.quarantined(agent)) {
            let why = "the agent is quarantined by the behavioural monitor: a person must \
                       release it (warden resume)";
            outcome = Err(Refusal {
                code: codes::DENIED,
                reason_id: "agent_quarantined",
                message: format!("{} {resource}: {why}", kind.as_str()),
                decision: Decision::default_deny(why.to_owned()),
                approval: None,
            });
        }
    }
    if !no_secrets {
        monitoring.finding(agent, warden_monitor::Finding::Secret);
    }
    let (d, refusal) = match &outcome {
        Ok(d) => (d, None),
        Err(r) => (&r.decision, Some(r)),
    };
    super::log_decision(caller, kind.as_str(), name, d, refusal);
    let mut r = audit::from_claims(Some(caller.claims), "mcp", caller.via());
    r.action = kind.as_str().to_owned();
    r.resource.clone_from(&resource);
    r.stated_reason = caller.reason.map(str::to_owned);
    r.findings = check.findings;
    let r = s.authority.audit.with_arguments(r, arguments, no_secrets);
    let mut r = audit::with_decision(
        r,
        d,
        refusal.map_or(if approved { "approved" } else { "allowed" }, |f| {
            f.reason_id
        }),
        snapshot.version(),
    );
    r.latency_us = trail.latency_us();
    trail.recorded = true;
    let audit = &s.authority.audit;
    match outcome {
        Err(refusal) => {
            audit.record(r);
            Err(Ok(refusal))
        }
        Ok(d) => {
            let durability = audit.durability(caller.claims.autonomy);
            let rec = warden_audit::Record::Decision(Box::new(r));
            match audit.auditor.commit(&rec, durability).await {
                Ok(seq) => {
                    trail.forwarded = Some((seq, resource, Instant::now()));
                    Ok((d, seq))
                }
                Err(e) => {
                    tracing::error!(
                        target: "warden::audit",
                        agent = %caller.claims.client_id,
                        resource = %resource,
                        "call refused: its audit record could not be written: {e}"
                    );
                    Err(Err(rpc_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        id,
                        codes::DENIED,
                        "the call was not forwarded: Warden could not write its audit record",
                        json!({"reason": "audit_unavailable"}),
                    )))
                }
            }
        }
    }
}

/// MO-1: the decided call, as the behavioural monitor learns from it (the same calls a
/// breaker counts: Warden's own failures are not the agent's behaviour).
fn observe(
    monitoring: &Arc<crate::monitoring::Monitoring>,
    caller: &Caller<'_>,
    delegator: Option<&str>,
    resource: &str,
    arguments: Option<&Map<String, Value>>,
    event: Event,
    now_ms: i64,
) {
    let claims = caller.claims;
    let mut dest = [""; 8];
    let n = crate::monitoring::destinations(arguments, &mut dest);
    monitoring.call(&warden_monitor::Call {
        time_ms: now_ms,
        agent: &claims.client_id,
        delegator,
        server: caller.upstream,
        tool: resource,
        outcome: if event == Event::Denied {
            warden_monitor::Outcome::Denied
        } else {
            warden_monitor::Outcome::Allowed
        },
        bytes_out: arguments.map_or(0, crate::monitoring::size),
        destinations: dest.get(..n).unwrap_or_default(),
        record: crate::monitoring::record(arguments),
    });
}

/// Records what the upstream answered to the call whose decision is record `seq`.
pub(crate) fn outcome(
    s: &McpState,
    trail: &mut Trail<'_>,
    caller: &Caller<'_>,
    seq: u64,
    name: &str,
    forwarded: Instant,
    answer: &Response,
) {
    trail.forwarded = None;
    let status = answer.status();
    let refused = answer.extensions().get::<RefusedReason>();
    let failed = refused.is_some_and(|r| r.0 == "upstream_failed");
    let aborted = refused.is_some_and(|r| r.0 == "agent_killed");
    let resource = format!("{}/{name}", caller.upstream);
    // HC-3: an answer closes a probing breaker; failures in a row open one.
    let event = if aborted {
        None
    } else if failed || !status.is_success() {
        Some(Event::Failed)
    } else {
        Some(Event::Succeeded)
    };
    if let Some(event) = event {
        let agent = caller.claims.client_id.as_str();
        let trips = s.authority.breakers.record(agent, &resource, event);
        if !trips.is_empty() {
            crate::demotion::report(&s.authority, caller.claims.autonomy, trips);
        }
        s.authority.monitoring.reply(&warden_monitor::Reply {
            time_ms: audit::now_ms(),
            agent,
            tool: &resource,
            kind: if event == Event::Failed {
                warden_monitor::ReplyKind::Failed
            } else {
                warden_monitor::ReplyKind::Answered
            },
        });
    }
    let rec = OutcomeRecord {
        time_ms: audit::now_ms(),
        decision_seq: seq,
        agent: Some(caller.claims.client_id.clone()),
        resource,
        status: if aborted {
            "aborted"
        } else if failed {
            "failed"
        } else if status.is_success() {
            "ok"
        } else {
            "error"
        }
        .into(),
        http_status: (!failed && !aborted).then_some(status.as_u16()),
        latency_us: u64::try_from(forwarded.elapsed().as_micros()).unwrap_or(u64::MAX),
        findings: Vec::new(),
    };
    s.authority
        .audit
        .record_after_answer(warden_audit::Record::Outcome(rec));
}

/// What to record if a kill cuts the answer to call `seq` while it streams: an outcome
/// `aborted` after the `ok` of its head.
pub(crate) fn on_abort(
    s: &McpState,
    caller: &Caller<'_>,
    seq: u64,
    name: &str,
) -> super::contain::OnAbort {
    let audit = Arc::clone(&s.authority.audit);
    let agent = caller.claims.client_id.clone();
    let resource = format!("{}/{name}", caller.upstream);
    let started = Instant::now();
    Box::new(move |_why: &str| {
        audit
            .auditor
            .record(&warden_audit::Record::Outcome(OutcomeRecord {
                time_ms: audit::now_ms(),
                decision_seq: seq,
                agent: Some(agent),
                resource,
                status: "aborted".into(),
                http_status: None,
                latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                findings: Vec::new(),
            }));
    })
}
