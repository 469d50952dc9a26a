//! Bounded cleanup: concurrent cleaners beside live lookups, the plan of the batch query, and
//! the background task.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use auth_sessions::{
    CleanupSettings, NewSession, PoolSettings, SessionPolicy, SessionRepo, build_pool_with_config,
    spawn_cleanup,
};
use common::TestDb;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Inserts `count` sessions for `users` fresh users, expiring `expires_in` from now (negative:
/// already expired), straight in SQL.
async fn bulk_sessions(db: &TestDb, users: i32, count: i32, expires_in: &str) {
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO auth.users (email) \
             SELECT gen_random_uuid() || '@bulk.test' FROM generate_series(1, $1)",
            &[&users],
        )
        .await
        .unwrap();
    client
        .execute(
            "WITH u AS (SELECT array_agg(id) AS ids FROM auth.users WHERE email LIKE '%@bulk.test') \
             INSERT INTO auth.user_sessions \
                 (user_id, refresh_token_hash, created_at, last_active_at, expires_at) \
             SELECT u.ids[1 + g % array_length(u.ids, 1)], \
                    encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), \
                    now() - interval '3 days', now() - interval '2 days', \
                    now() + $2::text::interval + g * interval '1 millisecond' \
             FROM generate_series(1, $1) g, u",
            &[&count, &expires_in],
        )
        .await
        .unwrap();
}

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
        let pool =
            build_pool_with_config(db.config(), &PoolSettings::default().max_size(size)).unwrap();
        SessionRepo::with_policy(pool, SessionPolicy::default())
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
            tokio::spawn(async move {
                let mut deleted = 0;
                loop {
                    let batch = repo.delete_expired_batch(1000).await?;
                    deleted += batch;
                    if batch < 1000 {
                        return Ok::<_, auth_sessions::Error>(deleted);
                    }
                }
            })
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

/// The text of one query of `queries/sessions.sql`, comments dropped and named parameters
/// replaced by literals.
fn query_text(name: &str, params: &[(&str, &str)]) -> String {
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/queries/sessions.sql"))
            .unwrap();
    let start = file.find(&format!("--! {name}\n")).unwrap();
    let body: Vec<&str> = file[start..]
        .lines()
        .filter(|line| !line.starts_with("--"))
        .collect();
    let body = body.join("\n");
    let mut sql = body[..body.find(';').unwrap()].to_owned();
    for (param, value) in params {
        sql = sql.replace(&format!(":{param}"), value);
    }
    sql
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

    assert_eq!(db.repo.delete_expired_batch(1000).await.unwrap(), 1000);
    assert_eq!(db.repo.delete_expired_batch(5000).await.unwrap(), 1000);
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    bulk_sessions(&db, 1, 30, "-1 second").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
            err,
            auth_sessions::Error::InvalidInput { field: "limit", .. }
        ),
        "{err:?}"
    );
}
