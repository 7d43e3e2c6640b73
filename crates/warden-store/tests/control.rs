//! Kills and approvals against a real SQLite file: the rules every backend must keep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use warden_core::{AgentId, AgentState, AutonomyLevel, NewAgent, PublicJwk};
use warden_store::{
    AgentStore, ApprovalRecord, ApprovalState, ControlStore, SqliteStore, StoreError,
};

fn agent(id: &str) -> NewAgent {
    NewAgent {
        id: AgentId::new(id).unwrap(),
        name: id.into(),
        sponsors: vec!["alice@example.com".into()],
        purpose: "test".into(),
        autonomy: AutonomyLevel::Senior,
        dpop_required: true,
        key: PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: format!("x-{id}"),
            kid: format!("{id}-k"),
        },
    }
}

fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open_in(dir.path(), 1000).unwrap(), dir)
}

fn approval(id: &str, key: &str, expires_at: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        agent: "a".into(),
        task: "t".into(),
        action: "call_tool".into(),
        resource: "finance/transfer_funds".into(),
        arguments: serde_json::json!({"amount": 5000}),
        match_key: key.into(),
        binding: format!("b-{key}"),
        reasons: vec!["large transfer".into()],
        stated_reason: Some("pay invoice".into()),
        approvers: vec!["alice@example.com".into()],
        state: ApprovalState::Pending,
        created_at: 1000,
        expires_at,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        used_at: None,
    }
}

#[tokio::test]
async fn a_kill_suspends_and_is_remembered_until_resumed() {
    let (s, _d) = store();
    s.create_agent(agent("a"), 1000).await.unwrap();
    s.create_agent(agent("b"), 1000).await.unwrap();
    // All or nothing: one unknown agent kills none.
    let ids = [AgentId::new("a").unwrap(), AgentId::new("nobody").unwrap()];
    assert!(matches!(
        s.kill(&ids, "forced", "r", "admin", 1100).await,
        Err(StoreError::UnknownAgent(_))
    ));
    assert!(s.latest_kills().await.unwrap().is_empty());
    let a = AgentId::new("a").unwrap();
    let killed = s
        .kill(std::slice::from_ref(&a), "forced", "runaway", "admin", 1100)
        .await
        .unwrap();
    assert_eq!(killed[0].state, AgentState::Suspended);
    let kills = s.latest_kills().await.unwrap();
    assert_eq!(kills.len(), 1);
    assert_eq!((kills[0].agent.as_str(), kills[0].killed_at), ("a", 1100));
    assert!(kills[0].resumed_at.is_none());
    let back = s.resume(&a, "carol", 1200).await.unwrap();
    assert_eq!(back.state, AgentState::Active);
    let kills = s.latest_kills().await.unwrap();
    assert_eq!(kills[0].resumed_by.as_deref(), Some("carol"));
    assert!(s.kill(&[a], "gently", "", "admin", 1300).await.is_err());
}

#[tokio::test]
async fn an_approval_is_decided_once_used_once_and_expires() {
    let (s, _d) = store();
    s.add_approval(approval("ap1", "k1", 2000)).await.unwrap();
    let live = s.live_approval("k1", 1500).await.unwrap().unwrap();
    assert_eq!(live.state, ApprovalState::Pending);
    // Not approved yet: nothing to spend.
    assert!(!s.use_approval("ap1", 1500).await.unwrap());
    let a = s
        .decide_approval("ap1", true, "alice@example.com", "ok", 1600)
        .await
        .unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    // Decided once.
    assert!(
        s.decide_approval("ap1", false, "alice@example.com", "", 1601)
            .await
            .is_err()
    );
    // Spent once.
    assert!(s.use_approval("ap1", 1700).await.unwrap());
    assert!(!s.use_approval("ap1", 1701).await.unwrap());
    assert!(s.live_approval("k1", 1702).await.unwrap().is_none());
    // A pending approval nobody decides expires: a timeout denies.
    s.add_approval(approval("ap2", "k2", 2000)).await.unwrap();
    assert_eq!(
        s.approval("ap2", 2000).await.unwrap().unwrap().state,
        ApprovalState::Expired
    );
    assert!(
        s.decide_approval("ap2", true, "alice@example.com", "", 2001)
            .await
            .is_err()
    );
    // An approval not spent before its expiry expires too.
    let mut late = approval("ap3", "k3", 3000);
    late.created_at = 2500;
    s.add_approval(late).await.unwrap();
    s.decide_approval("ap3", true, "alice@example.com", "", 2600)
        .await
        .unwrap();
    assert!(!s.use_approval("ap3", 3000).await.unwrap());
    let counts = s.approval_counts("a", 0, 3000).await.unwrap();
    assert_eq!(counts, (3, 0));
    let listed = s
        .approvals(Some(ApprovalState::Expired), None, 10, 3000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
}
