//! Bounded cleanup of expired sessions and tombstones: concurrent cleaners beside live
//! lookups, the plan of the batch query, the background task, the tombstone retention, and
//! progress under a statement timeout. Idle sessions are in tests/cleanup_idle.rs, the
//! command's cleanup in tests/cleanup_cli.rs; what they share in tests/common/cleanup.rs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use auth_sessions::{
    CleanupSettings, NewSession, PoolSettings, RevokeReason, Rotation, RotationKey, SessionPolicy,
    SessionRepo, Validation, spawn_cleanup,
};
use common::TestDb;
use common::cleanup::{
    bulk_sessions, bulk_sessions_with, clean_until_empty, ids, live_sessions, query_text, sql,
};
use common::fixtures::{DAY, HOUR};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cleaners_and_live_lookups_run_side_by_side() {
    const EXPIRED: i32 = 100_000;
    let db = TestDb::new().await;
    bulk_sessions(&db, 1000, EXPIRED, "-1 day").await;

    let mut live = Vec::new();
    for _ in 0..20 {
        let user = db.user().await;
        for _ in 0..10 {
            live.push(db.repo.create(&NewSession::new(user, DAY)).await.unwrap().1);
        }
    }

    let repo = |size| {
        let pool = common::pool_for(db.config(), &PoolSettings::default().max_size(size));
        SessionRepo::with_policy(pool, SessionPolicy::default()).unwrap()
    };
    let cleaning = Arc::new(AtomicBool::new(true));
    let lookups = Arc::new(AtomicU64::new(0));
    let lookup_task = {
        let repo = repo(2);
        let (cleaning, lookups, live) = (cleaning.clone(), lookups.clone(), live.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while cleaning.load(Ordering::SeqCst) || i < live.len() {
                let token = &live[i % live.len()];
                let found = repo.find_by_token(token.expose_secret()).await?;
                assert!(found.is_some(), "a live session vanished during cleanup");
                lookups.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            Ok::<_, auth_sessions::Error>(())
        })
    };
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let repo = repo(1);
            tokio::spawn(async move { clean_until_empty(&repo, 1000).await })
        })
        .collect();
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(cleaners),
    )
    .await
    .expect("cleaners finish: no deadlock");
    cleaning.store(false, Ordering::SeqCst);
    let mut total = 0;
    for result in results {
        total += result.unwrap().expect("no cleaner error");
    }
    lookup_task.await.unwrap().expect("no lookup error");

    assert_eq!(
        total, EXPIRED as u64,
        "every expired row deleted exactly once"
    );
    assert_eq!(
        db.session_rows().await,
        live.len() as i64,
        "no live session deleted"
    );
    assert!(lookups.load(Ordering::SeqCst) >= live.len() as u64);
}

#[tokio::test]
async fn the_batch_query_walks_the_expiry_index_past_dead_tuples() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute("ALTER TABLE auth.user_sessions SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    // The start of the table: 50,000 rows, then deleted (dead tuples, never vacuumed).
    bulk_sessions(&db, 100, 50_000, "1 day").await;
    client
        .batch_execute("DELETE FROM auth.user_sessions")
        .await
        .unwrap();
    // Then live and expired rows behind them.
    bulk_sessions(&db, 100, 20_000, "30 days").await;
    bulk_sessions(&db, 100, 2_000, "-1 day").await;
    client
        .batch_execute("ANALYZE auth.user_sessions")
        .await
        .unwrap();

    let sql = query_text("delete_expired_sessions_batch", &[("batch_size", "1000")]);
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using user_sessions_expires_at_idx"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan on user_sessions"), "{plan}");

    let first = db.repo.delete_expired_batch(1000).await.unwrap();
    assert_eq!((first.expired, first.examined), (1000, 0), "{first:?}");
    assert!(!first.caught_up);
    assert_eq!(
        db.repo.delete_expired_batch(5000).await.unwrap().expired,
        1000
    );
}

/// Waits until the table is empty (the background task deleted every row), for at most 20 s.
async fn until_no_sessions_are_left(db: &TestDb, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while db.session_rows().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background task did not delete {what} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_background_task_cleans_until_shutdown_and_reports() {
    let db = TestDb::new().await;
    bulk_sessions(&db, 10, 2_500, "-1 hour").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = CleanupSettings::default()
        .every(Duration::from_millis(50))
        .batch_size(1000);
    let task = spawn_cleanup(db.repo.clone(), settings, async {
        let _ = stopped.await;
    });
    // Rows that expire while the task runs are picked up by a later round.
    until_no_sessions_are_left(&db, "the first 2,500").await;
    bulk_sessions(&db, 1, 30, "-1 second").await;
    until_no_sessions_are_left(&db, "the 30 that expired later").await;
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.deleted, 2_530, "{report:?}");
    assert_eq!(report.errors, 0);
    assert!(report.batches >= 4, "{report:?}");
    assert_eq!(db.session_rows().await, 0);
}

#[tokio::test]
async fn a_zero_batch_is_refused() {
    let db = TestDb::new().await;
    let err = db.repo.delete_expired_batch(0).await.unwrap_err();
    assert!(
        matches!(
            err.error,
            auth_sessions::Error::InvalidInput { field: "limit", .. }
        ),
        "{err:?}"
    );
    assert_eq!(err.deleted.deleted(), 0);
}

#[tokio::test]
async fn tombstones_are_kept_for_the_retention_then_deleted() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let mut old = Vec::new();
    let mut recent = Vec::new();
    for i in 0..6 {
        let (session, token) = db
            .repo
            .create(&NewSession::new(user, DAY * 30))
            .await
            .unwrap();
        assert!(db.repo.revoke(session.key()).await.unwrap());
        if i < 4 { &mut old } else { &mut recent }.push(token);
    }
    let live = live_sessions(&db, 2).await;
    // Four tombstones revoked 8 days ago (past the default 7-day retention), two just now.
    sql(
        &db,
        "UPDATE auth.user_sessions SET created_at = now() - interval '9 days', \
         last_active_at = now() - interval '8 days', revoked_at = now() - interval '8 days' \
         WHERE id = ANY($1)",
        &ids(&old),
    )
    .await;
    for token in &old {
        assert_eq!(
            db.repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Revoked(RevokeReason::User),
            "a tombstone reports its revocation until cleanup"
        );
    }

    // Bounded batches delete the old tombstones only.
    let first = db.repo.delete_expired_batch(3).await.unwrap();
    assert_eq!((first.tombstones, first.examined), (3, 0), "{first:?}");
    assert_eq!(db.repo.delete_expired_batch(3).await.unwrap().tombstones, 1);
    assert_eq!(db.repo.delete_expired_batch(3).await.unwrap().deleted(), 0);
    assert_eq!(db.session_rows().await, 4);
    for token in &old {
        assert_eq!(
            db.repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Unknown
        );
    }
    for token in &recent {
        assert_eq!(
            db.repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Revoked(RevokeReason::User),
            "a recent tombstone stays and still reports the revocation"
        );
    }
    for token in &live {
        assert!(matches!(
            db.repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Valid(_)
        ));
    }

    // A shorter retention: the recent tombstones, revoked two hours ago, are past it. The
    // unbounded cleanup honours the retention too.
    sql(
        &db,
        "UPDATE auth.user_sessions SET revoked_at = now() - interval '2 hours' \
         WHERE id = ANY($1)",
        &ids(&recent),
    )
    .await;
    assert_eq!(db.repo.delete_expired().await.unwrap(), 0, "7 days: kept");
    let short = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().tombstone_retention(HOUR),
    )
    .unwrap();
    assert_eq!(short.delete_expired().await.unwrap(), 2);
    assert_eq!(
        db.session_rows().await,
        2,
        "only the live sessions are left"
    );
    for token in &recent {
        assert_eq!(
            short.validate(token.expose_secret()).await.unwrap(),
            Validation::Unknown
        );
    }
}

#[tokio::test]
async fn cleanup_progresses_under_a_300_ms_statement_timeout() {
    let db = TestDb::with_settings(
        PoolSettings::default().statement_timeout(Duration::from_millis(300)),
    )
    .await;
    let key = RotationKey::from_bytes(b"the cleanup tests' rotation key, 32+ bytes").unwrap();
    let repo =
        SessionRepo::with_policy(db.pool.clone(), SessionPolicy::default().rotation_key(key))
            .unwrap();
    let user = db.user().await;
    let (session, first) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let mut token = first.clone();
    for _ in 0..1000 {
        token = match repo.rotate(token.expose_secret()).await.unwrap() {
            Rotation::Rotated { token, .. } => token,
            other => panic!("expected Rotated, got {other:?}"),
        };
    }
    assert_eq!(token.generation(), 1000);
    // A thousand rotations leave one row and no history.
    assert_eq!(db.session_rows().await, 1);

    // Dead rows of every kind: expired, tombstones past the retention, idle (14 days).
    const EXPIRED: i32 = 6_000;
    const TOMBSTONES: i32 = 2_000;
    const IDLE: i32 = 1_500;
    bulk_sessions_with(&db, 500, EXPIRED, "-1 day", "2 days", None).await;
    bulk_sessions_with(&db, 200, TOMBSTONES, "20 days", "10 days", Some("8 days")).await;
    bulk_sessions_with(&db, 200, IDLE, "20 days", "15 days", None).await;
    let dead = u64::try_from(EXPIRED + TOMBSTONES + IDLE).unwrap();

    let mut total = 0;
    let mut batches = 0;
    loop {
        let batch = repo
            .delete_expired_batch(1000)
            .await
            .unwrap_or_else(|err| panic!("batch {batches} failed: {err:?}"));
        assert!(batch.deleted() <= 1000, "{batch:?}");
        batches += 1;
        total += batch.deleted();
        if batch.caught_up {
            break;
        }
        assert!(
            batches <= 20,
            "cleanup does not converge: {total} of {dead}"
        );
    }
    assert_eq!(total, dead, "every dead row deleted, in {batches} batches");
    assert_eq!(db.session_rows().await, 1, "only the live session is left");

    // The live session is intact, and the very first token is still proven an ancestor.
    assert!(
        matches!(repo.validate(token.expose_secret()).await.unwrap(), Validation::Valid(s) if s.id == session.id)
    );
    assert_eq!(
        repo.validate(first.expose_secret()).await.unwrap(),
        Validation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_cleaners_at_once_delete_every_dead_row_exactly_once() {
    const CLEANERS: usize = 4;
    const EXPIRED: i32 = 4_000;
    const TOMBSTONES: i32 = 600;
    const IDLE: i32 = 400;
    let db = TestDb::new().await;
    bulk_sessions_with(&db, 300, EXPIRED, "-1 day", "2 days", None).await;
    bulk_sessions_with(&db, 100, TOMBSTONES, "20 days", "10 days", Some("8 days")).await;
    bulk_sessions_with(&db, 100, IDLE, "20 days", "15 days", None).await;
    // Rows that must survive: live sessions, recent tombstones.
    bulk_sessions_with(&db, 100, 500, "20 days", "1 hour", None).await;
    bulk_sessions_with(&db, 100, 200, "20 days", "1 hour", Some("1 day")).await;
    let live = live_sessions(&db, 10).await;
    let survivors = 500 + 200 + live.len() as i64;
    let dead = u64::try_from(EXPIRED + TOMBSTONES + IDLE).unwrap();

    let barrier = Arc::new(tokio::sync::Barrier::new(CLEANERS));
    let mut cleaners = Vec::new();
    for _ in 0..CLEANERS {
        let pool = common::pool_for(db.config(), &PoolSettings::default().max_size(1));
        drop(pool.get().await.unwrap()); // Connect before the race starts.
        let repo = SessionRepo::with_policy(pool, SessionPolicy::default()).unwrap();
        let barrier = barrier.clone();
        cleaners.push(tokio::spawn(async move {
            barrier.wait().await;
            clean_until_empty(&repo, 250).await
        }));
    }
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(cleaners),
    )
    .await
    .expect("cleaners finish: no deadlock");
    let mut total = 0;
    let mut per_cleaner = Vec::new();
    for result in results {
        let deleted = result
            .unwrap()
            .unwrap_or_else(|err| panic!("a cleaner failed (deadlock?): {err:?}"));
        per_cleaner.push(deleted);
        total += deleted;
    }
    println!("deleted per cleaner: {per_cleaner:?}");
    assert_eq!(total, dead, "every dead row deleted exactly once");
    assert_eq!(db.session_rows().await, survivors, "no live row deleted");
    for token in &live {
        assert!(
            db.repo
                .find_by_token(token.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
    }
}
