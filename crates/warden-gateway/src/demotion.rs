//! What Warden does when circuit breakers open (HC-3): each opening is audited and logged;
//! an agent with enough incidents is demoted one autonomy level — in the registry first,
//! then at once for the tokens it already holds, then durably audited. Off the hot path:
//! the demotion runs as its own task.

use crate::breakers::{ACTOR, Trip};

/// Audits the breakers that opened and demotes agents with enough incidents: the store
/// first (a person sees the new level), then at once for tokens already issued, then a
/// durable record. If the store cannot be written the demotion still holds in memory.
pub(crate) fn report(
    a: &std::sync::Arc<crate::oauth::Authority>,
    token_level: warden_core::AutonomyLevel,
    trips: Vec<Trip>,
) {
    for t in trips {
        tracing::warn!(
            target: "warden::breakers",
            agent = %t.agent,
            scope = %t.scope,
            cause = t.cause.as_str(),
            count = t.count,
            open_secs = t.open_for.as_secs(),
            incidents = t.incidents,
            "circuit breaker opened"
        );
        a.audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "breaker_opened", ACTOR)
                .agent(&t.agent)
                .detail("scope", t.scope.as_str())
                .detail("cause", t.cause.as_str())
                .detail("count", t.count)
                .detail("open_secs", t.open_for.as_secs())
                .detail("reopened", t.reopened)
                .detail("incidents", t.incidents),
        );
        if t.demote {
            let a = std::sync::Arc::clone(a);
            tokio::spawn(async move { demote(&a, &t, token_level).await });
        }
    }
}

async fn demote(a: &crate::oauth::Authority, t: &Trip, token_level: warden_core::AutonomyLevel) {
    use warden_store::AgentStore as _;
    let revocations = a.verifier.revocations();
    let id = match warden_core::AgentId::new(&t.agent) {
        Ok(id) => id,
        Err(e) => {
            // Unreachable for a verified token's agent; say so rather than skip silently.
            tracing::error!(target: "warden::breakers", agent = %t.agent, "cannot demote: {e}");
            return;
        }
    };
    // The level to lower is the registry's (the token may claim less).
    let from = match a.store.agent(&id).await {
        Ok(r) => r.autonomy,
        Err(e) => {
            tracing::error!(target: "warden::breakers", agent = %t.agent, "cannot read the agent to demote it: {e}");
            revocations
                .level(&t.agent)
                .unwrap_or(token_level)
                .min(token_level)
        }
    };
    let Some(to) = from.lower() else {
        tracing::warn!(target: "warden::breakers", agent = %t.agent, "repeated incidents, but the agent is already an intern");
        a.audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "demotion_skipped", ACTOR)
                .agent(&t.agent)
                .reason("the agent is already at the lowest autonomy level")
                .detail("incidents", t.incidents),
        );
        return;
    };
    let stored = match a.store.set_autonomy(&id, to, crate::unix_now()).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(target: "warden::breakers", agent = %t.agent, "demotion not stored (held in memory): {e}");
            false
        }
    };
    revocations.set_level(&t.agent, to, stored);
    tracing::warn!(target: "warden::breakers", agent = %t.agent, from = from.as_str(), to = to.as_str(), "agent demoted after repeated incidents");
    let e = warden_audit::EventRecord::new(crate::audit::now_ms(), "autonomy_demoted", ACTOR)
        .agent(&t.agent)
        .reason(&format!(
            "{} circuit-breaker incidents; a person must raise it again",
            t.incidents
        ))
        .detail("from", from.as_str())
        .detail("to", to.as_str())
        .detail("incidents", t.incidents)
        .detail("stored", stored);
    if let Err(e) = a.audit.event_durable(e).await {
        tracing::error!(target: "warden::audit", agent = %t.agent, "demotion not audited: {e}");
    }
}
