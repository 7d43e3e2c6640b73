//! Tampering with the real `audit.db` file — change a byte of a record, delete one, swap
//! two, cut the tail, replace a checkpoint — is found by `verify`, which names the place.
//! (`warden-cli/tests/audit.rs` does the same through `warden audit verify`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use rusqlite::Connection;
use warden_audit::log::{AuditLog, Durability, Prepared};
use warden_audit::record::{EventRecord, Record};
use warden_audit::verify::{Problem, verify};

/// A log of 100 records with checkpoints at 40, 80 and 100.
fn log(dir: &Path) -> String {
    let mut log = AuditLog::open(dir, "tamper.example/audit").unwrap();
    for i in 0..100 {
        let r = Record::Event(EventRecord::new(i, "test", "cli").detail("i", i));
        log.append(&[Prepared::new(&r).unwrap()], Durability::Process)
            .unwrap();
        if i == 39 || i == 79 {
            log.checkpoint(i).unwrap();
        }
    }
    log.checkpoint(100).unwrap();
    log.verifier_key()
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("audit.db")).unwrap()
}

fn problems(dir: &Path, vkey: &str) -> Vec<Problem> {
    verify(dir, vkey, &mut |_, _| {}).unwrap().problems
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    let r = verify(dir.path(), &vkey, &mut |_, _| {}).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!((r.records, r.checkpoints, r.checkpointed), (100, 3, 100));
}

#[test]
fn a_changed_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    db(dir.path())
        .execute(
            "UPDATE records SET leaf = replace(leaf, '\"i\":57', '\"i\":58') WHERE seq = 57",
            [],
        )
        .unwrap();
    assert_eq!(problems(dir.path(), &vkey)[0], Problem::Changed { seq: 57 });
}

#[test]
fn a_changed_record_with_a_recomputed_hash_is_caught_by_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    let c = db(dir.path());
    let leaf: String = c
        .query_row("SELECT leaf FROM records WHERE seq = 57", [], |r| r.get(0))
        .unwrap();
    let forged = leaf.replace("\"actor\":\"cli\"", "\"actor\":\"xyz\"");
    let h = warden_audit::merkle::leaf_hash(forged.as_bytes());
    c.execute(
        "UPDATE records SET leaf = ?1, leaf_hash = ?2 WHERE seq = 57",
        rusqlite::params![forged, &h[..]],
    )
    .unwrap();
    assert_eq!(
        problems(dir.path(), &vkey)[0],
        Problem::RootMismatch { size: 80, from: 40 }
    );
}

#[test]
fn a_deleted_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    db(dir.path())
        .execute("DELETE FROM records WHERE seq = 12", [])
        .unwrap();
    assert_eq!(problems(dir.path(), &vkey)[0], Problem::Missing { seq: 12 });
}

#[test]
fn two_swapped_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    let c = db(dir.path());
    c.execute_batch(
        "UPDATE records SET seq = -1 WHERE seq = 30;
         UPDATE records SET seq = 30 WHERE seq = 31;
         UPDATE records SET seq = 31 WHERE seq = -1;",
    )
    .unwrap();
    assert_eq!(
        problems(dir.path(), &vkey)[0],
        Problem::Moved {
            seq: 30,
            claims: Some(31)
        }
    );
}

#[test]
fn a_cut_tail_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    db(dir.path())
        .execute("DELETE FROM records WHERE seq >= 90", [])
        .unwrap();
    assert_eq!(
        problems(dir.path(), &vkey),
        vec![Problem::Truncated {
            checkpoint: 100,
            records: 90
        }]
    );
}

#[test]
fn a_replaced_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    let c = db(dir.path());
    // Signed by another key under the same name...
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let forged = warden_audit::note::Checkpoint {
        origin: "tamper.example/audit".into(),
        size: 80,
        root: [0; 32],
    }
    .sign("tamper.example/audit", &other);
    c.execute(
        "UPDATE checkpoints SET note = ?1 WHERE size = 80",
        [&forged],
    )
    .unwrap();
    let p = problems(dir.path(), &vkey);
    assert!(
        matches!(&p[0], Problem::BadCheckpoint { size: 80, why } if why.contains("no signature")),
        "{p:?}"
    );
    // ...or the real checkpoint of 40 stored as if it were the one of 80.
    let forty: String = c
        .query_row("SELECT note FROM checkpoints WHERE size = 40", [], |r| {
            r.get(0)
        })
        .unwrap();
    c.execute("UPDATE checkpoints SET note = ?1 WHERE size = 80", [&forty])
        .unwrap();
    let p = problems(dir.path(), &vkey);
    assert!(
        matches!(&p[0], Problem::BadCheckpoint { size: 80, why } if why.contains("signs 40")),
        "{p:?}"
    );
}

#[test]
fn a_log_rewritten_with_its_own_key_is_caught_by_a_checkpoint_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let vkey = log(dir.path());
    let kept: String = db(dir.path())
        .query_row("SELECT note FROM checkpoints WHERE size = 100", [], |r| {
            r.get(0)
        })
        .unwrap();
    // The thief deletes the tail and every checkpoint, then re-signs with the stolen key.
    db(dir.path())
        .execute_batch("DELETE FROM records WHERE seq >= 70; DELETE FROM checkpoints;")
        .unwrap();
    AuditLog::open(dir.path(), "x")
        .unwrap()
        .checkpoint(5)
        .unwrap();
    assert!(problems(dir.path(), &vkey).is_empty());
    let against = warden_audit::verify::verify_against(dir.path(), &vkey, &kept).unwrap();
    assert!(against.unwrap_err().contains("cut"));
}
