//! The registry's contract, against a real SQLite file. A PostgreSQL backend must pass the
//! same cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use warden_core::{AgentId, AgentState, AutonomyLevel, NewAgent, PublicJwk};
use warden_store::{AgentStore, SqliteStore, StoreError};

fn jwk(kid: &str) -> PublicJwk {
    PublicJwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: format!("x-{kid}"),
        kid: kid.into(),
    }
}

fn new_agent(id: &str, sponsors: &[&str]) -> NewAgent {
    NewAgent {
        id: AgentId::new(id).unwrap(),
        name: format!("Agent {id}"),
        sponsors: sponsors.iter().map(|s| (*s).to_owned()).collect(),
        purpose: "test".into(),
        autonomy: AutonomyLevel::Junior,
        dpop_required: true,
        key: jwk(&format!("{id}-k1")),
    }
}

fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open_in(dir.path(), 1000).unwrap(), dir)
}

fn id(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

#[tokio::test]
async fn create_and_read_back() {
    let (s, _d) = store();
    let a = s
        .create_agent(
            new_agent("crm-bot", &["dana@example.com", "lee@example.com"]),
            1000,
        )
        .await
        .unwrap();
    assert_eq!(a.state, AgentState::Active);
    assert_eq!(a.sponsors, vec!["dana@example.com", "lee@example.com"]);
    assert_eq!(a.keys.len(), 1);
    assert_eq!(s.agent(&id("crm-bot")).await.unwrap(), a);
    assert_eq!(s.agents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_sponsor_is_mandatory_and_ids_are_unique() {
    let (s, _d) = store();
    assert!(matches!(
        s.create_agent(new_agent("a", &[]), 1).await,
        Err(StoreError::NoSponsor)
    ));
    assert!(matches!(
        s.create_agent(new_agent("a", &["  "]), 1).await,
        Err(StoreError::NoSponsor)
    ));
    s.create_agent(new_agent("a", &["x"]), 1).await.unwrap();
    assert!(matches!(
        s.create_agent(new_agent("a", &["x"]), 1).await,
        Err(StoreError::AgentExists(_))
    ));
    assert!(matches!(
        s.agent(&id("nobody")).await,
        Err(StoreError::UnknownAgent(_))
    ));
}

#[tokio::test]
async fn removing_the_last_sponsor_suspends_the_agent() {
    let (s, _d) = store();
    s.create_agent(new_agent("a", &["x", "y"]), 1)
        .await
        .unwrap();
    let r = s.remove_sponsor(&id("a"), "x", 2).await.unwrap();
    assert!(!r.suspended);
    assert_eq!(r.agent.state, AgentState::Active);
    let r = s.remove_sponsor(&id("a"), "y", 3).await.unwrap();
    assert!(r.suspended);
    assert_eq!(r.agent.state, AgentState::Suspended);
    assert!(r.agent.sponsors.is_empty());
    // It cannot be resumed until someone sponsors it again.
    assert!(matches!(
        s.set_state(&id("a"), AgentState::Active, 4).await,
        Err(StoreError::ResumeWithoutSponsor(_))
    ));
    s.add_sponsor(&id("a"), "z", 5).await.unwrap();
    assert_eq!(
        s.set_state(&id("a"), AgentState::Active, 6)
            .await
            .unwrap()
            .state,
        AgentState::Active
    );
    assert!(matches!(
        s.remove_sponsor(&id("a"), "nobody", 7).await,
        Err(StoreError::UnknownSponsor { .. })
    ));
}

#[tokio::test]
async fn revocation_is_final() {
    let (s, _d) = store();
    s.create_agent(new_agent("a", &["x"]), 1).await.unwrap();
    s.set_state(&id("a"), AgentState::Revoked, 2).await.unwrap();
    for result in [
        s.set_state(&id("a"), AgentState::Active, 3).await,
        s.set_state(&id("a"), AgentState::Suspended, 3).await,
        s.add_sponsor(&id("a"), "y", 3).await,
        s.set_autonomy(&id("a"), AutonomyLevel::Senior, 3).await,
        s.rotate_key(&id("a"), jwk("k2"), 60, 3).await,
    ] {
        assert!(matches!(result, Err(StoreError::Revoked(_))), "{result:?}");
    }
    assert_eq!(s.agent(&id("a")).await.unwrap().state, AgentState::Revoked);
}

#[tokio::test]
async fn key_rotation_keeps_the_old_key_for_the_grace_period() {
    let (s, _d) = store();
    s.create_agent(new_agent("a", &["x"]), 100).await.unwrap();
    let a = s.rotate_key(&id("a"), jwk("k2"), 3600, 200).await.unwrap();
    assert_eq!(a.keys.len(), 2);
    assert_eq!(a.keys[0].jwk.kid, "k2", "the current key comes first");
    assert_eq!(a.keys[1].not_after, Some(3800));
    assert_eq!(a.valid_keys(3799).count(), 2);
    assert_eq!(
        a.valid_keys(3800)
            .map(|k| k.jwk.kid.as_str())
            .collect::<Vec<_>>(),
        vec!["k2"]
    );
}

#[tokio::test]
async fn the_file_survives_reopening_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open_in(dir.path(), 1).unwrap();
        s.create_agent(new_agent("a", &["x"]), 1).await.unwrap();
    }
    let s = SqliteStore::open_in(dir.path(), 2).unwrap();
    assert_eq!(s.agent(&id("a")).await.unwrap().name, "Agent a");
    let mode: String = rusqlite::Connection::open(s.path())
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

mod auth {
    use super::*;
    use warden_store::{AuthStore, RevocationRecord};

    fn rev(kind: &str, value: &str, expires_at: Option<i64>) -> RevocationRecord {
        RevocationRecord {
            id: 0,
            kind: kind.into(),
            value: value.into(),
            reason: "test".into(),
            revoked_by: "admin".into(),
            created_at: 1000,
            expires_at,
        }
    }

    #[tokio::test]
    async fn bootstrap_happens_once_and_secrets_are_found_by_hash() {
        let (s, _d) = store();
        let first = s.bootstrap_admin("admin", "h1", 1000).await.unwrap();
        assert_eq!(first.unwrap().created_by, "bootstrap");
        assert!(
            s.bootstrap_admin("admin2", "h2", 1001)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(s.admin_by_hash("h1").await.unwrap().unwrap().name, "admin");
        assert!(s.admin_by_hash("h2").await.unwrap().is_none());
        s.add_admin("ops", "h3", "admin", 1002).await.unwrap();
        assert!(matches!(
            s.add_admin("ops", "h4", "admin", 1003).await,
            Err(StoreError::AdminExists(_))
        ));
        s.replace_admin_secret("admin", "h9").await.unwrap();
        assert!(s.admin_by_hash("h1").await.unwrap().is_none());
        assert!(s.admin_by_hash("h9").await.unwrap().is_some());
        assert!(s.replace_admin_secret("nobody", "x").await.is_err());
    }

    #[tokio::test]
    async fn revocations_are_read_back_in_order_until_they_expire() {
        let (s, _d) = store();
        let a = s
            .add_revocation(rev("token", "j1", Some(1300)))
            .await
            .unwrap();
        let b = s.add_revocation(rev("task", "t1", None)).await.unwrap();
        assert!(b.id > a.id);
        let all = s.revocations_since(0, 1000).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            s.revocations_since(a.id, 1000).await.unwrap(),
            vec![b.clone()]
        );
        // The token has expired: its revocation need not be loaded any more.
        assert_eq!(s.revocations_since(0, 1400).await.unwrap(), vec![b]);
        assert!(s.add_revocation(rev("user", "x", None)).await.is_err());
    }

    #[tokio::test]
    async fn blocked_agents_are_the_suspended_and_revoked_ones() {
        let (s, _d) = store();
        for a in ["a1", "a2", "a3"] {
            s.create_agent(new_agent(a, &["alice"]), 1000)
                .await
                .unwrap();
        }
        s.set_state(&id("a2"), AgentState::Suspended, 1001)
            .await
            .unwrap();
        s.set_state(&id("a3"), AgentState::Revoked, 1001)
            .await
            .unwrap();
        assert_eq!(s.blocked_agents().await.unwrap(), vec!["a2", "a3"]);
    }
}
