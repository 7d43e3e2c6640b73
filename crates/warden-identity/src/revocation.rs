//! What is revoked right now: token ids, tasks, agents that may not act (suspended or
//! revoked), delegation subtrees (a revoked `jti` kills every token derived from it, because
//! each token carries its ancestors' `jti`s), and kills (every token issued to or through an
//! agent up to the moment it was killed, KS-1), and the autonomy level each agent holds in
//! the registry now, which caps the level its tokens claim (a demoted agent acts at its new
//! level at once, HC-3).
//!
//! Read on every verification, written rarely: the sets live behind an `ArcSwap`, so a check
//! is a few hash lookups with no lock, and a change publishes a new copy. Each published
//! change also ticks a [`watch`] channel, so that work already under way (a call waiting for
//! its upstream, an open event stream) can look again at once ([`Revocations::changes`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use warden_core::AutonomyLevel;

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

/// An agent stopped by the kill switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// Tokens issued to or through the agent at or before this time (Unix seconds) are
    /// revoked for good; a resumed agent needs new ones.
    pub at: i64,
    /// Forced: work already under way is aborted too. Graceful: it may finish.
    pub forced: bool,
}

#[derive(Debug, Default, Clone)]
struct Sets {
    tokens: HashSet<String>,
    tasks: HashSet<String>,
    agents: HashSet<String>,
    /// Suspended or revoked in the registry; replaced wholesale on refresh.
    blocked: HashSet<String>,
    /// The latest kill of each killed agent.
    kills: HashMap<String, Kill>,
    /// Killed here but not (yet) in the store: a refresh keeps their kill and block.
    unstored: HashSet<String>,
    /// Registry autonomy of agents below `principal`; replaced on refresh.
    levels: HashMap<String, AutonomyLevel>,
    /// Levels set here but not (yet) in the store: a refresh keeps the lower of the two.
    pinned_levels: HashMap<String, AutonomyLevel>,
}

/// What the store says, for [`Revocations::refresh`].
#[derive(Debug, Default, Clone)]
pub struct StoreView {
    /// Suspended and revoked agents.
    pub blocked: HashSet<String>,
    /// The latest kill of each killed agent.
    pub kills: HashMap<String, Kill>,
    /// The registry's autonomy of agents below `principal`.
    pub levels: HashMap<String, AutonomyLevel>,
}

impl Sets {
    /// The first agent of the token's chain for which `hit` holds: the holder, each earlier
    /// actor, the root agent (`sub` unless it is a user). Walked in place: this runs on
    /// every request.
    fn find(claims: &AccessClaims, hit: impl Fn(&str) -> bool) -> Option<&str> {
        let root = claims
            .on_behalf_of()
            .is_none()
            .then_some(claims.sub.as_str());
        let mut actor = claims.act.as_ref();
        let mut found = [Some(claims.client_id.as_str()), root]
            .into_iter()
            .flatten()
            .find(|a| hit(a));
        while found.is_none()
            && let Some(a) = actor
        {
            found = hit(&a.sub).then_some(a.sub.as_str());
            actor = a.act.as_deref();
        }
        found
    }
}

/// The revocation state in force.
#[derive(Debug)]
pub struct Revocations {
    sets: ArcSwap<Sets>,
    /// Ticks on every published change.
    changed: watch::Sender<u64>,
    /// Serialises writers (rare); readers never take it.
    writer: std::sync::Mutex<()>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            sets: ArcSwap::default(),
            changed: watch::Sender::new(0),
            writer: std::sync::Mutex::new(()),
        }
    }
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `f` applied to the current sets, if it changes anything. With `seen`, only
    /// if nothing was published since that version (see [`Revocations::refresh`]).
    fn publish_if(&self, seen: Option<u64>, f: impl FnOnce(&mut Sets) -> bool) -> bool {
        let _w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.is_some_and(|v| v != self.version()) {
            return false;
        }
        let mut s = Sets::clone(&self.sets.load());
        if f(&mut s) {
            self.sets.store(Arc::new(s));
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        true
    }

    fn publish(&self, f: impl FnOnce(&mut Sets) -> bool) {
        self.publish_if(None, f);
    }

    /// The version of the state: it changes with every published change.
    pub fn version(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Replaces the blocked agents, the kills and the autonomy levels with what the store
    /// holds, unless something was published since `seen` (read before the store was): then
    /// the store may not have that change yet, and this refresh is skipped rather than undo
    /// it. `false`: skipped.
    pub fn refresh(&self, seen: u64, view: StoreView) -> bool {
        let StoreView {
            mut blocked,
            mut kills,
            mut levels,
        } = view;
        self.publish_if(Some(seen), |s| {
            // A demotion the store could not record is not undone either.
            for (a, l) in &s.pinned_levels {
                let stored = levels.entry(a.clone()).or_insert(*l);
                *stored = (*stored).min(*l);
            }
            // A kill the store could not record is not undone by the store's older view.
            for a in &s.unstored {
                blocked.insert(a.clone());
                if let Some(k) = s.kills.get(a) {
                    let stored = kills.entry(a.clone()).or_insert(*k);
                    if k.at > stored.at {
                        *stored = *k;
                    }
                }
            }
            let changed = s.blocked != blocked || s.kills != kills || s.levels != levels;
            s.blocked = blocked;
            s.kills = kills;
            s.levels = levels;
            changed
        })
    }

    /// Marks kills of `agents` as not recorded in the store (or, `false`, recorded now).
    pub fn set_unstored<'a>(&self, agents: impl IntoIterator<Item = &'a str>, unstored: bool) {
        let agents: Vec<&str> = agents.into_iter().collect();
        self.publish(|s| {
            agents.iter().fold(false, |changed, a| {
                changed
                    | if unstored {
                        s.unstored.insert((*a).to_owned())
                    } else {
                        s.unstored.remove(*a)
                    }
            })
        });
    }

    /// A receiver that sees every published change (see [`Revocations::until_revoked`]).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Adds revocations (one published change for the batch).
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a Revocation>) {
        let items: Vec<&Revocation> = items.into_iter().collect();
        self.publish(|s| {
            let mut changed = false;
            for r in &items {
                changed |= match r {
                    Revocation::Token(j) => s.tokens.insert(j.clone()),
                    Revocation::Task(t) => s.tasks.insert(t.clone()),
                    Revocation::Agent(a) => s.agents.insert(a.clone()),
                };
            }
            changed
        });
    }

    /// Marks one agent as blocked (suspended or revoked) or not.
    pub fn set_agent_blocked(&self, agent: &str, blocked: bool) {
        self.publish(|s| {
            if blocked {
                s.blocked.insert(agent.to_owned())
            } else {
                s.blocked.remove(agent)
            }
        });
    }

    /// Kills agents: each is blocked, every token issued to or through it until `kill.at`
    /// is revoked, and (forced) work under way on its behalf is told to stop. One published
    /// change for all of them.
    pub fn kill<'a>(&self, agents: impl IntoIterator<Item = &'a str>, kill: Kill) {
        let agents: Vec<&str> = agents.into_iter().collect();
        self.publish(|s| {
            for a in &agents {
                s.blocked.insert((*a).to_owned());
                let k = s.kills.entry((*a).to_owned()).or_insert(kill);
                k.at = k.at.max(kill.at);
                k.forced = kill.forced;
            }
            !agents.is_empty()
        });
    }

    /// Forgets that work under way for `agent` must be aborted (it was resumed). Its
    /// tokens from before the kill stay revoked.
    pub fn resumed(&self, agent: &str) {
        self.publish(|s| {
            s.unstored.remove(agent);
            let unblocked = s.blocked.remove(agent);
            let unforced = s.kills.get_mut(agent).is_some_and(|k| {
                let was = k.forced;
                k.forced = false;
                was
            });
            unblocked || unforced
        });
    }

    /// Sets the autonomy level `agent` holds in the registry; `stored: false` when the store
    /// could not record it (a refresh then keeps it, or the store's lower level).
    pub fn set_level(&self, agent: &str, level: AutonomyLevel, stored: bool) {
        self.publish(|s| {
            let before = (
                s.levels.get(agent).copied(),
                s.pinned_levels.get(agent).copied(),
            );
            if level == AutonomyLevel::Principal {
                s.levels.remove(agent);
            } else {
                s.levels.insert(agent.to_owned(), level);
            }
            if stored {
                s.pinned_levels.remove(agent);
            } else {
                s.pinned_levels.insert(agent.to_owned(), level);
            }
            before
                != (
                    s.levels.get(agent).copied(),
                    s.pinned_levels.get(agent).copied(),
                )
        });
    }

    /// The registry's autonomy level for `agent`, where it is below `principal`.
    pub fn level(&self, agent: &str) -> Option<AutonomyLevel> {
        self.sets.load().levels.get(agent).copied()
    }

    /// The claims as they may be acted on now: a token never claims more autonomy than its
    /// agent holds in the registry (a demotion applies to tokens already issued). The same
    /// claims, not a copy, unless they must be lowered.
    pub fn effective(&self, claims: Arc<AccessClaims>) -> Arc<AccessClaims> {
        let s = self.sets.load();
        match s.levels.get(&claims.client_id) {
            Some(l) if *l < claims.autonomy => {
                let mut lowered = AccessClaims::clone(&claims);
                lowered.autonomy = *l;
                Arc::new(lowered)
            }
            _ => claims,
        }
    }

    /// The latest kill of an agent on the token's chain (Unix seconds), if any. A token
    /// issued after a resume must carry a later `iat` than that: kills count in whole
    /// seconds, so one issued in the kill's own second would be dead on arrival.
    pub fn latest_kill(&self, claims: &AccessClaims) -> Option<i64> {
        let s = self.sets.load();
        if s.kills.is_empty() {
            return None;
        }
        let latest = std::cell::Cell::new(None::<i64>);
        Sets::find(claims, |a| {
            if let Some(k) = s.kills.get(a) {
                latest.set(Some(latest.get().map_or(k.at, |l| l.max(k.at))));
            }
            false
        });
        latest.get()
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
        if !s.kills.is_empty()
            && let Some(a) = Sets::find(claims, |a| {
                s.kills.get(a).is_some_and(|k| claims.iat <= k.at)
            })
        {
            return Some(format!(
                "agent {a} was killed; its earlier tokens are revoked"
            ));
        }
        Sets::find(claims, |a| s.agents.contains(a) || s.blocked.contains(a))
            .map(|a| format!("agent {a} is suspended or revoked"))
    }

    /// Why work under way with this token must be aborted now, if it must: a forced kill
    /// of an agent on its chain.
    pub fn must_abort(&self, claims: &AccessClaims) -> Option<String> {
        let s = self.sets.load();
        if s.kills.is_empty() {
            return None;
        }
        Sets::find(claims, |a| {
            s.kills
                .get(a)
                .is_some_and(|k| k.forced && claims.iat <= k.at)
        })
        .map(|a| format!("agent {a} was killed"))
    }

    /// Resolves when the token is no longer good: revoked, its agent suspended or killed
    /// (`abort_only`: only when a forced kill says to abort work under way). Waits without
    /// polling; wakes only when something is published.
    pub async fn until_revoked(&self, claims: &AccessClaims, abort_only: bool) -> String {
        let mut rx = self.changes();
        loop {
            let why = if abort_only {
                self.must_abort(claims)
            } else {
                self.check(claims)
            };
            if let Some(why) = why {
                return why;
            }
            if rx.changed().await.is_err() {
                // The state is gone with its owner: nothing can be checked any more.
                return "Warden is shutting down".into();
            }
        }
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
    fn the_latest_kill_on_the_chain_is_found() {
        let r = Revocations::new();
        let c = claims("c", "helper", &[]);
        assert_eq!(r.latest_kill(&c), None);
        r.kill(
            ["root"],
            Kill {
                at: 50,
                forced: true,
            },
        );
        r.kill(
            ["helper"],
            Kill {
                at: 40,
                forced: true,
            },
        );
        r.kill(
            ["stranger"],
            Kill {
                at: 90,
                forced: true,
            },
        );
        assert_eq!(r.latest_kill(&c), Some(50));
        // A token issued after the latest kill is not revoked by it; one in its second is.
        // (The agents stay suspended here: no resume in this test.)
        let killed = |iat| {
            let mut t = c.clone();
            t.iat = iat;
            r.check(&t).is_some_and(|m| m.contains("was killed"))
        };
        assert!(!killed(51));
        assert!(killed(50));
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

    #[test]
    fn a_kill_revokes_earlier_tokens_for_good_and_wakes_waiters() {
        let r = Revocations::new();
        let mut child = claims("c", "helper", &["p"]);
        child.iat = 50;
        let changes = r.changes();
        // Killing the root of the delegation stops the child's token, forced: abort too.
        r.kill(
            ["root"],
            Kill {
                at: 60,
                forced: true,
            },
        );
        assert!(changes.has_changed().unwrap());
        assert!(r.check(&child).unwrap().contains("killed"));
        assert!(r.must_abort(&child).is_some());
        // Resumed: the agent may act again, but only with tokens issued after the kill.
        r.resumed("root");
        assert!(r.must_abort(&child).is_none());
        assert!(r.check(&child).unwrap().contains("killed"));
        child.iat = 61;
        assert!(r.check(&child).is_none());
        // A graceful kill blocks new work but aborts nothing.
        r.kill(
            ["helper"],
            Kill {
                at: 70,
                forced: false,
            },
        );
        assert!(r.check(&child).is_some());
        assert!(r.must_abort(&child).is_none());
        // A refresh that changes nothing publishes nothing.
        let kills: HashMap<String, Kill> = [
            (
                "root".to_owned(),
                Kill {
                    at: 60,
                    forced: false,
                },
            ),
            (
                "helper".to_owned(),
                Kill {
                    at: 70,
                    forced: false,
                },
            ),
        ]
        .into();
        let blocked: HashSet<String> = ["helper".to_owned()].into();
        let view = |blocked: &HashSet<String>, kills: &HashMap<String, Kill>| StoreView {
            blocked: blocked.clone(),
            kills: kills.clone(),
            levels: HashMap::new(),
        };
        let v = r.version();
        assert!(r.refresh(v, view(&blocked, &kills)));
        let quiet = r.changes();
        assert!(r.refresh(r.version(), view(&blocked, &kills)));
        assert!(!quiet.has_changed().unwrap());
        // A refresh read before a local change is skipped: it must not undo the change.
        let stale = r.version();
        r.kill(
            ["other"],
            Kill {
                at: 80,
                forced: true,
            },
        );
        assert!(!r.refresh(stale, view(&blocked, &kills)));
        assert!(r.agent_blocked("other"));
        // A kill the store failed to record survives the store's view until it is stored
        // or the agent is resumed.
        r.set_unstored(["other"], true);
        assert!(r.refresh(r.version(), StoreView::default()));
        assert!(r.agent_blocked("other"));
        let mut other = claims("o", "other", &[]);
        other.iat = 80;
        assert!(r.check(&other).unwrap().contains("killed"));
        r.resumed("other");
        assert!(r.refresh(r.version(), StoreView::default()));
        assert!(!r.agent_blocked("other"));
    }

    #[test]
    fn a_registry_level_caps_the_autonomy_tokens_claim() {
        let r = Revocations::new();
        let c = std::sync::Arc::new(claims("j", "assistant", &[]));
        assert_eq!(c.autonomy, AutonomyLevel::Junior);
        // Nothing known: the same claims.
        assert!(std::sync::Arc::ptr_eq(
            &r.effective(std::sync::Arc::clone(&c)),
            &c
        ));
        // A higher registry level never raises a token.
        r.set_level("assistant", AutonomyLevel::Senior, true);
        assert_eq!(
            r.effective(std::sync::Arc::clone(&c)).autonomy,
            AutonomyLevel::Junior
        );
        // A demotion lowers tokens already issued.
        r.set_level("assistant", AutonomyLevel::Intern, false);
        let e = r.effective(std::sync::Arc::clone(&c));
        assert_eq!((e.autonomy, e.jti.as_str()), (AutonomyLevel::Intern, "j"));
        // Not stored yet: the store's older view does not undo it.
        let levels: HashMap<String, AutonomyLevel> =
            [("assistant".to_owned(), AutonomyLevel::Senior)].into();
        let view = StoreView {
            levels,
            ..StoreView::default()
        };
        assert!(r.refresh(r.version(), view.clone()));
        assert_eq!(r.level("assistant"), Some(AutonomyLevel::Intern));
        // Once a person sets the level (stored), the store's view rules again.
        r.set_level("assistant", AutonomyLevel::Senior, true);
        assert!(r.refresh(r.version(), view));
        assert_eq!(r.level("assistant"), Some(AutonomyLevel::Senior));
        r.set_level("assistant", AutonomyLevel::Principal, true);
        assert_eq!(r.level("assistant"), None);
    }

    #[tokio::test]
    async fn until_revoked_resolves_when_a_kill_is_published() {
        let r = std::sync::Arc::new(Revocations::new());
        let c = claims("c", "helper", &[]);
        let waiter = {
            let (r, c) = (std::sync::Arc::clone(&r), c.clone());
            tokio::spawn(async move { r.until_revoked(&c, true).await })
        };
        tokio::task::yield_now().await;
        // A graceful kill does not abort work under way...
        r.kill(
            ["helper"],
            Kill {
                at: c.iat,
                forced: false,
            },
        );
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // ...a forced one does.
        r.kill(
            ["helper"],
            Kill {
                at: c.iat,
                forced: true,
            },
        );
        assert!(waiter.await.unwrap().contains("helper"));
    }
}
