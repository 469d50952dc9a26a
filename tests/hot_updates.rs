//! Activity writes are HOT updates. Its own test binary, so no other test's connections run
//! beside it: pruning, which makes room on the page for the next HOT update, waits for every
//! snapshot that may still see the old row versions, including those of backends starting up
//! in other databases, and a busy neighbour turns a share of the updates into non-HOT ones.

mod common;

use std::time::Duration;

use auth_sessions::{CapPolicy, NewSession, PoolSettings, RotationKey, SessionPolicy, SessionRepo};
use common::TestDb;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn repo(db: &TestDb, policy: SessionPolicy) -> SessionRepo {
    let key = RotationKey::from_bytes(b"a test rotation key of at least 32 bytes").unwrap();
    SessionRepo::with_policy(db.pool.clone(), policy.rotation_key(key))
}

#[tokio::test]
async fn activity_updates_are_hot_updates() {
    let db = TestDb::with_settings(PoolSettings::default().max_size(1)).await;
    let repo = repo(
        &db,
        SessionPolicy::default()
            .activity_interval(Duration::ZERO)
            .max_sessions_per_user(None, CapPolicy::Refuse),
    );
    let user = db.user().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let new = NewSession::new(user, DAY).with_device_info(format!("device {i}"));
        ids.push(repo.create(&new).await.unwrap().0.id);
    }
    let writes = 400;
    for i in 0..writes {
        assert!(
            repo.record_activity(ids[i % ids.len()], None)
                .await
                .unwrap()
                .unwrap()
                .written
        );
    }
    let client = db.pool.get().await.unwrap();
    client
        .execute("SELECT pg_stat_force_next_flush()", &[])
        .await
        .unwrap();
    let mut updates = (0i64, 0i64);
    for _ in 0..50 {
        let row = client
            .query_one(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables \
                 WHERE schemaname = 'auth' AND relname = 'user_sessions'",
                &[],
            )
            .await
            .unwrap();
        updates = (row.get(0), row.get(1));
        if updates.0 >= writes as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (total, hot) = updates;
    assert!(total >= writes as i64, "statistics saw {total} updates");
    let ratio = hot as f64 / total as f64;
    println!("HOT updates: {hot} of {total} ({ratio:.3})");
    assert!(
        ratio >= 0.9,
        "activity updates should be HOT: {hot} of {total}"
    );
    let options: Vec<String> = client
        .query_one(
            "SELECT reloptions FROM pg_class WHERE oid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(options, ["fillfactor=80"]);
}
