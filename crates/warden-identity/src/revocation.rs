//! What is revoked right now: token ids, tasks, agents that may not act (suspended or
//! revoked), and delegation subtrees (a revoked `jti` kills every token derived from it,
//! because each token carries its ancestors' `jti`s).
//!
//! Read on every verification, written rarely: the sets live behind an `ArcSwap`, so a check
//! is a few hash lookups with no lock, and a change publishes a new copy.

use std::collections::HashSet;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::token::AccessClaims;

/// One revocation, as stored and as the admin API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Revocation {
    /// One token, and with it every token delegated from it.
    Token(String),
    /// Every token of a task, at every delegation depth.
    Task(String),
    /// Every token an agent holds or that was delegated through it.
    Agent(String),
}

#[derive(Debug, Default, Clone)]
struct Sets {
    tokens: HashSet<String>,
    tasks: HashSet<String>,
    agents: HashSet<String>,
    /// Suspended or revoked in the registry; replaced wholesale on refresh.
    blocked: HashSet<String>,
}

/// The revocation state in force.
#[derive(Debug, Default)]
pub struct Revocations {
    sets: ArcSwap<Sets>,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds revocations (one published change for the batch).
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a Revocation>) {
        let items: Vec<&Revocation> = items.into_iter().collect();
        self.sets.rcu(|old| {
            let mut s = Sets::clone(old);
            for r in &items {
                match r {
                    Revocation::Token(j) => s.tokens.insert(j.clone()),
                    Revocation::Task(t) => s.tasks.insert(t.clone()),
                    Revocation::Agent(a) => s.agents.insert(a.clone()),
                };
            }
            s
        });
    }

    /// Replaces the set of agents that may not act (suspended and revoked ones).
    pub fn set_blocked_agents(&self, agents: HashSet<String>) {
        self.sets.rcu(|old| {
            let mut s = Sets::clone(old);
            s.blocked.clone_from(&agents);
            s
        });
    }

    /// Marks one agent as blocked (suspended or revoked) or not.
    pub fn set_agent_blocked(&self, agent: &str, blocked: bool) {
        self.sets.rcu(|old| {
            let mut s = Sets::clone(old);
            if blocked {
                s.blocked.insert(agent.to_owned());
            } else {
                s.blocked.remove(agent);
            }
            s
        });
    }

    /// Why the token may not be used, if it may not.
    pub fn check(&self, claims: &AccessClaims) -> Option<String> {
        let s = self.sets.load();
        if s.tokens.contains(&claims.jti) {
            return Some(format!("token {} is revoked", claims.jti));
        }
        if let Some(p) = claims.parents.iter().find(|p| s.tokens.contains(*p)) {
            return Some(format!(
                "token {p}, which this token was delegated from, is revoked"
            ));
        }
        if let Some(t) = claims.task()
            && s.tasks.contains(&t.task_id)
        {
            return Some(format!("task {} is revoked", t.task_id));
        }
        // Every agent of the chain: the holder, each earlier actor, the root agent (`sub`
        // unless it is a user). Walked in place: this runs on every request.
        let blocked = |a: &str| s.agents.contains(a) || s.blocked.contains(a);
        let root = claims
            .on_behalf_of()
            .is_none()
            .then_some(claims.sub.as_str());
        let mut actor = claims.act.as_ref();
        let mut found = [Some(claims.client_id.as_str()), root]
            .into_iter()
            .flatten()
            .find(|a| blocked(a));
        while found.is_none()
            && let Some(a) = actor
        {
            found = blocked(&a.sub).then_some(a.sub.as_str());
            actor = a.act.as_deref();
        }
        found.map(|a| format!("agent {a} is suspended or revoked"))
    }

    /// True when `agent` is blocked.
    pub fn agent_blocked(&self, agent: &str) -> bool {
        let s = self.sets.load();
        s.agents.contains(agent) || s.blocked.contains(agent)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::token::{AccessClaims, Actor, TaskDetail};
    use warden_core::AutonomyLevel;

    pub(crate) fn claims(jti: &str, client: &str, parents: &[&str]) -> AccessClaims {
        AccessClaims {
            iss: "w".into(),
            sub: "root".into(),
            aud: "r".into(),
            exp: 100,
            iat: 0,
            jti: jti.into(),
            client_id: client.into(),
            authorization_details: vec![TaskDetail {
                kind: "warden_task".into(),
                task_id: "t1".into(),
                purpose: String::new(),
                actions: vec![],
                on_behalf_of: None,
            }],
            act: (client != "root").then(|| Actor {
                sub: client.into(),
                act: None,
            }),
            cnf: None,
            autonomy: AutonomyLevel::Junior,
            sponsor: vec!["alice".into()],
            depth: parents.len() as u32,
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn every_kind_of_revocation_is_seen() {
        let r = Revocations::new();
        let child = claims("c", "helper", &["p"]);
        assert!(r.check(&child).is_none());
        r.extend(&[Revocation::Token("p".into())]);
        assert!(r.check(&child).unwrap().contains("delegated from"));
        let r = Revocations::new();
        r.extend(&[Revocation::Task("t1".into())]);
        assert!(r.check(&child).is_some());
        let r = Revocations::new();
        // The root agent of the delegation is suspended: the child's token dies too.
        r.set_agent_blocked("root", true);
        assert!(r.check(&child).is_some());
        r.set_agent_blocked("root", false);
        assert!(r.check(&child).is_none());
        r.extend(&[Revocation::Agent("helper".into())]);
        assert!(r.check(&child).is_some());
    }
}
