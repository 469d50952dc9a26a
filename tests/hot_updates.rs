//! Activity writes and token rotations are HOT updates. Its own test binary, so no other test's
//! connections run beside it: pruning, which makes room on the page for the next HOT update,
//! waits for every snapshot that may still see the old row versions, including those of
//! backends starting up in other databases, and a busy neighbour turns a share of the updates
//! into non-HOT ones.

mod common;

use std::time::Duration;

use auth_sessions::{
    CapPolicy, NewSession, PoolSettings, RefreshToken, RotationKey, SessionKey, SessionPolicy,
    SessionRepo,
};
use common::TestDb;
use common::outcomes::rotated;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn repo(db: &TestDb, policy: SessionPolicy) -> SessionRepo {
    let key = RotationKey::from_bytes(b"a test rotation key of at least 32 bytes").unwrap();
    SessionRepo::with_policy(db.pool.clone(), policy.rotation_key(key)).unwrap()
}

/// `(n_tup_upd, n_tup_hot_upd)` of `auth.user_sessions`, once the statistics show at least
/// `at_least` updates. Runs on the pool's only connection, the one that made the updates, so
/// flushing its pending statistics makes them all visible.
async fn updates(db: &TestDb, at_least: i64) -> (i64, i64) {
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
        if updates.0 >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    updates
}

async fn touched(repo: &SessionRepo, session: SessionKey) {
    let activity = repo.record_activity(session, None).await.unwrap();
    assert!(activity.expect("live session").written);
}

/// Creates `count` sessions and returns their tokens.
async fn sessions(repo: &SessionRepo, user: Uuid, label: &str, count: usize) -> Vec<RefreshToken> {
    let mut tokens = Vec::new();
    for i in 0..count {
        let new = NewSession::new(user, DAY).with_device_info(format!("{label} {i}"));
        tokens.push(repo.create(&new).await.unwrap().1);
    }
    tokens
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Activity,
    Rotation,
}

/// Makes `writes` writes of one kind round-robin over `tokens` and returns how many updates
/// the statistics counted and how many of them were HOT.
async fn measure(
    db: &TestDb,
    repo: &SessionRepo,
    kind: Write,
    tokens: &mut [RefreshToken],
    writes: usize,
) -> (i64, i64) {
    let before = updates(db, 0).await;
    for i in 0..writes {
        let slot = i % tokens.len();
        match kind {
            Write::Activity => touched(repo, tokens[slot].session_key()).await,
            Write::Rotation => tokens[slot] = rotated(repo, &tokens[slot]).await,
        }
    }
    let after = updates(db, before.0 + writes as i64).await;
    (after.0 - before.0, after.1 - before.1)
}

#[tokio::test]
async fn activity_updates_and_rotations_are_hot_updates() {
    let db = TestDb::with_settings(PoolSettings::default().max_size(1)).await;
    let repo = repo(
        &db,
        SessionPolicy::default()
            .activity_interval(Duration::ZERO)
            .max_sessions_per_user(None, CapPolicy::Refuse),
    );
    let user = db.user().await;

    // Exactly: four sessions on the table's empty first page leave room on it for every new
    // row version below without any pruning, so nothing but a changed indexed column could
    // make one of these writes a non-HOT update.
    let mut tokens = sessions(&repo, user, "exact", 4).await;
    let (total, hot) = measure(&db, &repo, Write::Activity, &mut tokens, 12).await;
    println!("activity: {hot} HOT of {total} updates");
    assert_eq!(
        (total, hot),
        (12, 12),
        "every activity write updates one row, as a HOT update"
    );
    let (total, hot) = measure(&db, &repo, Write::Rotation, &mut tokens, 12).await;
    println!("rotations: {hot} HOT of {total} updates");
    assert_eq!(
        (total, hot),
        (12, 12),
        "every rotation updates one row, as a HOT update"
    );
    assert!(tokens.iter().all(|token| token.generation() == 3));
    let client = db.pool.get().await.unwrap();
    let pages: i64 = client
        .query_one(
            "SELECT count(DISTINCT (ctid::text::point)[0]) FROM auth.user_sessions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pages, 1, "every row version stayed on the first page");
    drop(client);

    // Sustained, over many pages' worth of row versions: HOT then depends on pruning, which a
    // transaction running elsewhere on the server can hold back for a while, so each kind gets
    // a few attempts (on fresh sessions) to show it.
    for kind in [Write::Activity, Write::Rotation] {
        let mut seen = Vec::new();
        for attempt in 0..3 {
            let mut tokens = sessions(&repo, user, &format!("{kind:?} {attempt}"), 40).await;
            let (total, hot) = measure(&db, &repo, kind, &mut tokens, 400).await;
            assert_eq!(total, 400, "{kind:?}: each write updates exactly one row");
            seen.push(hot);
            if hot as f64 >= 0.9 * total as f64 {
                break;
            }
        }
        println!("sustained {kind:?}: HOT of 400 updates, by attempt: {seen:?}");
        assert!(
            seen.iter().any(|&hot| hot as f64 >= 0.9 * 400.0),
            "{kind:?} updates should be HOT: {seen:?} of 400 per attempt"
        );
    }

    let client = db.pool.get().await.unwrap();
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
