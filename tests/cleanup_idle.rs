//! Cleanup of idle sessions (unused for longer than the idle timeout): deleted in bounded
//! batches while live ones stay, and the defects of the first design (each test failed on it
//! first): how many rows a statement examines, progress through many live rows under a short
//! timeout, and what a failed batch reports.

mod common;

use std::time::Duration;

use auth_sessions::{CleanupBatch, Error, PoolSettings, SessionPolicy, SessionRepo, Validation};
use common::TestDb;
use common::cleanup::{bulk_sessions_with, ids, live_sessions, query_text, sql};
use common::fixtures::HOUR;
use uuid::Uuid;

#[tokio::test]
async fn idle_sessions_are_deleted_in_batches_and_live_ones_stay() {
    let db = TestDb::new().await;
    let idle = live_sessions(&db, 5).await;
    let live = live_sessions(&db, 3).await;
    let made_idle = sql(
        &db,
        "UPDATE auth.user_sessions SET last_active_at = now() - interval '2 hours' \
         WHERE id = ANY($1)",
        &ids(&idle),
    )
    .await;
    assert_eq!(made_idle, 5);
    let with_idle = |idle_timeout| {
        SessionRepo::with_policy(
            db.pool.clone(),
            SessionPolicy::default().idle_timeout(idle_timeout),
        )
        .unwrap()
    };

    // Two hours of idleness is nothing under the default 14 days, or without an idle timeout.
    assert_eq!(
        db.repo.delete_expired_batch(100).await.unwrap().deleted(),
        0
    );
    assert_eq!(
        with_idle(None)
            .delete_expired_batch(100)
            .await
            .unwrap()
            .deleted(),
        0
    );
    assert_eq!(with_idle(None).delete_expired().await.unwrap(), 0);
    assert_eq!(db.session_rows().await, 8);

    // Under a one-hour idle timeout they are dead: deleted, at most `limit` per batch.
    let repo = with_idle(Some(HOUR));
    assert_eq!(
        repo.validate(idle[0].expose_secret()).await.unwrap(),
        Validation::IdleTimedOut
    );
    // The walk examines two sessions per batch, in key order: four batches for eight rows,
    // the last of which reaches the end of the table.
    let mut batches = Vec::new();
    loop {
        let batch = repo.delete_expired_batch(2).await.unwrap();
        assert_eq!(batch.examined, 2, "{batch:?}");
        batches.push(batch);
        if batch.caught_up {
            break;
        }
        assert!(batches.len() < 4, "{batches:?}");
    }
    assert_eq!(batches.len(), 4, "{batches:?}");
    assert_eq!(
        batches.iter().map(|b| b.idle).sum::<u64>(),
        5,
        "{batches:?}"
    );
    assert_eq!(
        db.session_rows().await,
        3,
        "only the live sessions are left"
    );
    for token in &idle {
        assert_eq!(
            repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Unknown,
            "an idle session is gone after cleanup"
        );
    }
    for token in &live {
        assert!(
            repo.find_by_token(token.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
    }
}

// ---- Defects of the first cleanup design (each test failed on it first) ----

/// Rows a statement examined on the session table, from its `EXPLAIN ANALYZE` (run in a
/// transaction that is rolled back): rows returned plus rows removed by filters, over every
/// scan of `user_sessions` (the delete itself not counted).
async fn rows_examined(client: &mut tokio_postgres::Client, sql: &str) -> (u64, String) {
    let tx = client.transaction().await.unwrap();
    let lines: Vec<String> = tx
        .query(
            &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.rollback().await.unwrap();
    let number = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let (mut total, mut loops, mut scanning) = (0, 1, false);
    for line in &lines {
        if line.contains("(actual") {
            // A scan of the table itself (not of one of its indexes, whose rows the table scan
            // above it counts again).
            scanning = line.contains(" on user_sessions ") && !line.contains("Delete on");
            loops = number(line, "loops=").unwrap_or(1);
            if scanning {
                total += number(line, "rows=").unwrap_or(0) * loops;
            }
        } else if scanning && let Some(removed) = number(line, "Rows Removed by Filter: ") {
            total += removed * loops;
        }
    }
    (total, lines.join("\n"))
}

#[tokio::test]
async fn keyset_idle_cleanup_examines_at_most_a_window_of_rows_per_statement() {
    let db = TestDb::new().await;
    // 20,000 live sessions, then 10 idle ones behind them.
    bulk_sessions_with(&db, 200, 20_000, "20 days", "1 hour", None).await;
    bulk_sessions_with(&db, 10, 10, "20 days", "15 days", None).await;
    let mut client = db.client().await;
    client
        .batch_execute("ANALYZE auth.user_sessions")
        .await
        .unwrap();
    // A window from the start of the table, and one from the middle of the key space: the
    // read of the window and the delete of its key range each examine at most about a window.
    for from in [
        "00000000-0000-0000-0000-000000000000",
        "80000000-0000-0000-0000-000000000000",
    ] {
        let from_key = [
            ("from_user_id", format!("'{from}'::uuid")),
            (
                "from_id",
                "'00000000-0000-0000-0000-000000000000'::uuid".to_owned(),
            ),
            ("idle_seconds", "1209600".to_owned()),
        ];
        let mut params: Vec<(&str, &str)> =
            from_key.iter().map(|(k, v)| (*k, v.as_str())).collect();
        params.push(("window_size", "100"));
        let find = query_text("find_idle_sessions_in_key_window", &params);
        let (examined, plan) = rows_examined(&mut client, &find).await;
        assert!(
            examined <= 101,
            "reading a window of 100 examined {examined} rows:\n{plan}"
        );
        assert!(plan.contains("user_sessions_pkey"), "{plan}");
        let window = client.query_one(&find, &[]).await.unwrap();
        assert_eq!(window.get::<_, i64>("examined"), 100);
        let (to_user_id, to_id): (Uuid, Uuid) = (window.get("last_user_id"), window.get("last_id"));
        let (to_user_id, to_id) = (format!("'{to_user_id}'::uuid"), format!("'{to_id}'::uuid"));
        let mut params: Vec<(&str, &str)> =
            from_key.iter().map(|(k, v)| (*k, v.as_str())).collect();
        params.extend([
            ("to_user_id", to_user_id.as_str()),
            ("to_id", to_id.as_str()),
        ]);
        let delete = query_text("delete_idle_sessions_in_key_range", &params);
        let (examined, plan) = rows_examined(&mut client, &delete).await;
        assert!(
            examined <= 101,
            "deleting in a window of 100 examined {examined} rows:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }

    // The repository walks the whole table in windows of the batch size, keeping its position
    // from one batch to the next, and finds every idle session.
    let mut walked = Vec::new();
    loop {
        let batch = db.repo.delete_expired_batch(5_000).await.unwrap();
        walked.push(batch);
        if batch.caught_up {
            break;
        }
    }
    let examined: Vec<u64> = walked.iter().map(|b| b.examined).collect();
    assert_eq!(examined, [5_000, 5_000, 5_000, 5_000, 10], "{walked:?}");
    assert_eq!(walked.iter().map(|b| b.idle).sum::<u64>(), 10);
    assert_eq!(db.session_rows().await, 20_000);
    // The next round starts over at the start of the table.
    let again = db.repo.delete_expired_batch(5_000).await.unwrap();
    assert_eq!(
        (again.examined, again.idle, again.caught_up),
        (5_000, 0, false)
    );
}

#[tokio::test]
async fn idle_cleanup_makes_progress_through_200k_live_rows_under_a_40ms_timeout() {
    const LIVE: i32 = 200_000;
    const IDLE: i32 = 2_000;
    const EXPIRED: i32 = 1_000;
    let db =
        TestDb::with_settings(PoolSettings::default().statement_timeout(Duration::from_millis(40)))
            .await;
    let started = std::time::Instant::now();
    // One INSERT each: the live rows first, the dead ones behind them in the heap.
    bulk_sessions_with(&db, 2_000, LIVE, "20 days", "1 hour", None).await;
    bulk_sessions_with(&db, 200, IDLE, "20 days", "15 days", None).await;
    bulk_sessions_with(&db, 100, EXPIRED, "-1 day", "2 days", None).await;
    db.client()
        .await
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await
        .unwrap();
    println!("inserted in {:.1} s", started.elapsed().as_secs_f64());

    // The first cleanup design scanned the table for idle rows in every batch (68 ms for
    // 200,000 rows on a loaded 2-core machine) and was cancelled by the 40 ms timeout each
    // time; walking the key space in windows of 1,000 rows, every statement stays far below
    // it.
    let started = std::time::Instant::now();
    let (mut batches, mut failed) = (0u32, Vec::new());
    let mut totals = CleanupBatch::default();
    loop {
        batches += 1;
        let batch = match db.repo.delete_expired_batch(1_000).await {
            Ok(batch) => batch,
            Err(err) => {
                // A rare timeout on a loaded machine costs one window, retried next batch;
                // what the batch deleted before it still counts.
                totals.expired += err.deleted.expired;
                totals.tombstones += err.deleted.tombstones;
                failed.push(err.to_string());
                assert!(failed.len() <= 5, "batches keep failing: {failed:?}");
                continue;
            }
        };
        totals.expired += batch.expired;
        totals.idle += batch.idle;
        totals.examined += batch.examined;
        if batch.caught_up {
            break;
        }
        assert!(batches < 300, "the walk does not end: {totals:?}");
    }
    println!(
        "{batches} batches in {:.2} s ({} failed: {failed:?}), {totals:?}",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    assert_eq!(totals.expired, EXPIRED as u64);
    assert_eq!(totals.idle, IDLE as u64, "every idle session deleted");
    let left: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM auth.user_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, i64::from(LIVE), "no live session deleted");
}

#[tokio::test]
async fn idle_cleanup_failure_reports_what_the_batch_deleted_before_it() {
    let db = TestDb::with_settings(
        PoolSettings::default().statement_timeout(Duration::from_millis(300)),
    )
    .await;
    bulk_sessions_with(&db, 10, 50, "-1 day", "2 days", None).await;
    bulk_sessions_with(&db, 5, 5, "20 days", "2 hours", None).await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().idle_timeout(Some(HOUR)),
    )
    .unwrap();
    // Another transaction holds one idle row: the idle statement waits for it and times out,
    // after the expired statement committed.
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM auth.user_sessions WHERE expires_at > now() ORDER BY id LIMIT 1 FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let err = repo.delete_expired_batch(100).await.unwrap_err();
    assert_eq!(db.session_rows().await, 5, "the expired sessions are gone");
    assert_eq!(err.deleted.expired, 50, "{err:?}");
    assert_eq!(err.deleted.deleted(), 50, "{err:?}");
    assert!(!err.deleted.caught_up);
    assert!(matches!(err.error, Error::StatementTimeout), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cleanup batch failed after deleting 50 session(s)"
    );
    // Once the row is free, the next batch retries the same window and deletes every idle
    // session.
    tx.rollback().await.unwrap();
    let batch = repo.delete_expired_batch(100).await.unwrap();
    assert_eq!((batch.expired, batch.idle, batch.caught_up), (0, 5, true));
    assert_eq!(db.session_rows().await, 0);
}
