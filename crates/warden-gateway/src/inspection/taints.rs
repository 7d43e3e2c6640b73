//! Tainted tasks (IO-1): in memory for the decision path, written through to the store so
//! that a restart does not forget them.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use warden_store::TaintRecord;

/// One tainted task of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub task: String,
    /// The resource whose content carried the finding.
    pub source: String,
    /// The rules that fired.
    pub finding: String,
    pub expires_at: i64,
}

/// Tainted tasks by agent. Reads take a shared lock only when some task is tainted.
#[derive(Debug, Default)]
pub struct Taints {
    by_agent: RwLock<HashMap<String, Vec<Taint>>>,
    count: AtomicUsize,
}

impl Taints {
    pub fn load(records: Vec<TaintRecord>) -> Self {
        let t = Self::default();
        for r in records {
            t.add(
                &r.agent,
                Taint {
                    task: r.task,
                    source: r.source,
                    finding: r.finding,
                    expires_at: r.expires_at,
                },
            );
        }
        t
    }

    /// Taints a task (a newer taint replaces the task's older one, never shortening it).
    pub fn add(&self, agent: &str, taint: Taint) {
        // A poisoned lock still holds a consistent map: every write below is one push or
        // one assignment.
        let mut map = self.by_agent.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(agent.to_owned()).or_default();
        // Expired taints of this agent go now (they no longer count; the store deletes
        // its copies when it next lists them).
        let before = list.len();
        let now = crate::unix_now();
        list.retain(|t| t.expires_at > now);
        self.count.fetch_sub(before - list.len(), Ordering::Relaxed);
        match list.iter_mut().find(|t| t.task == taint.task) {
            Some(t) => {
                let expires_at = t.expires_at.max(taint.expires_at);
                *t = Taint {
                    expires_at,
                    ..taint
                };
            }
            None => {
                list.push(taint);
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The live taint of `agent`'s `task`, if any.
    pub fn get(&self, agent: &str, task: &str, now: i64) -> Option<Taint> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let map = self.by_agent.read().unwrap_or_else(|p| p.into_inner());
        map.get(agent)?
            .iter()
            .find(|t| t.task == task && t.expires_at > now)
            .cloned()
    }

    /// Every live taint, by agent.
    pub fn all(&self, now: i64) -> Vec<(String, Taint)> {
        let map = self.by_agent.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, Taint)> = map
            .iter()
            .flat_map(|(a, list)| {
                list.iter()
                    .filter(|t| t.expires_at > now)
                    .map(|t| (a.clone(), t.clone()))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1.task).cmp(&(&b.0, &b.1.task)));
        out
    }

    /// Ends the taints of `agent` (one task, or all); returns how many ended.
    pub fn clear(&self, agent: &str, task: Option<&str>) -> usize {
        let mut map = self.by_agent.write().unwrap_or_else(|p| p.into_inner());
        let Some(list) = map.get_mut(agent) else {
            return 0;
        };
        let before = list.len();
        list.retain(|t| task.is_some_and(|k| k != t.task));
        let gone = before - list.len();
        if list.is_empty() {
            map.remove(agent);
        }
        self.count.fetch_sub(gone, Ordering::Relaxed);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(task: &str, expires_at: i64) -> Taint {
        Taint {
            task: task.into(),
            source: "docs/docs.read".into(),
            finding: "ignore_previous".into(),
            expires_at,
        }
    }

    #[test]
    fn taints_are_per_task_and_end_when_cleared_or_expired() {
        let now = crate::unix_now();
        let t = Taints::default();
        assert_eq!(t.get("a", "t1", now), None);
        t.add("a", taint("t1", now + 60));
        t.add("a", taint("t2", now + 60));
        t.add("b", taint("t1", now + 60));
        assert!(t.get("a", "t1", now).is_some());
        assert_eq!(t.get("a", "t3", now), None);
        // A newer taint never shortens an older one.
        t.add("a", taint("t1", now + 10));
        assert_eq!(t.get("a", "t1", now).map(|x| x.expires_at), Some(now + 60));
        assert_eq!(t.clear("a", Some("t1")), 1);
        assert_eq!(t.get("a", "t1", now), None);
        assert!(t.get("a", "t2", now).is_some());
        assert_eq!(t.clear("a", None), 1);
        assert_eq!(t.all(now).len(), 1, "b's taint stays");
        // Expired taints do not hold, and are dropped at the agent's next taint.
        t.add("b", taint("old", now - 1));
        assert_eq!(t.get("b", "old", now), None);
        t.add("b", taint("t9", now + 60));
        assert_eq!(t.by_agent.read().unwrap()["b"].len(), 2);
        assert_eq!(t.count.load(Ordering::Relaxed), 2);
    }
}
