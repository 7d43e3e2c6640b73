//! Baselines and alerts against a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use warden_store::{AlertRecord, MonitorStore, SqliteStore};

fn alert(agent: &str, time_ms: i64, action: &str) -> AlertRecord {
    AlertRecord {
        id: 0,
        time_ms,
        agent: agent.into(),
        risk: 45,
        action: action.into(),
        signals: r#"[{"kind":"first_seen_tool","points":20,"detail":"x"}]"#.into(),
        webhook: "pending".into(),
    }
}

#[tokio::test]
async fn baselines_are_replaced_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open_in(dir.path(), 1).unwrap();
        s.save_baselines(
            vec![("a".into(), "{1}".into()), ("b".into(), "{2}".into())],
            1,
        )
        .await
        .unwrap();
        s.save_baselines(vec![("a".into(), "{3}".into())], 2)
            .await
            .unwrap();
    }
    let s = SqliteStore::open_in(dir.path(), 3).unwrap();
    assert_eq!(
        s.baselines(None).await.unwrap(),
        [("a".into(), "{3}".into()), ("b".into(), "{2}".into())]
    );
    assert_eq!(s.baselines(Some("b")).await.unwrap().len(), 1);
    assert!(s.baselines(Some("c")).await.unwrap().is_empty());
}

#[tokio::test]
async fn alerts_are_listed_newest_last_and_track_their_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_in(dir.path(), 1).unwrap();
    let first = s.add_alert(alert("a", 1_000, "alert")).await.unwrap();
    s.add_alert(alert("b", 2_000, "alert")).await.unwrap();
    s.add_alert(alert("a", 3_000, "quarantine")).await.unwrap();
    s.set_webhook(first, "delivered").await.unwrap();
    let all = s.alerts(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id, first);
    assert_eq!(all[0].webhook, "delivered");
    assert_eq!(all[2].action, "quarantine");
    let a = s.alerts(Some("a"), 2_000, 100).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(
        s.alerts(None, 0, 2).await.unwrap()[0].agent,
        "b",
        "the newest two"
    );
}
