//! What the other backends of a test's database are doing, seen from an observer connection
//! to that database: how many wait on a lock, which one, and whether any statement still runs.
//! The tests that hold a row lock and then start a call use these to know the call reached the
//! server before they act on it.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// How many backends of this database (other than the observer) wait on a lock.
pub async fn lock_waiters(observer: &Client) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state = 'active' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The backend of this database that waits on a lock (exactly one).
pub async fn lock_waiter(observer: &Client) -> i32 {
    let pids: Vec<i32> = observer
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state = 'active' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pids.len(), 1, "lock waiters: {pids:?}");
    pids[0]
}

/// Waits (at most 5 s) until one backend waits on a lock.
pub async fn until_one_waits(observer: &Client, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock_waiters(observer).await != 1 {
        assert!(Instant::now() < deadline, "{what} never waited on the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most 5 s) until no other backend of this database is running a statement, then
/// returns how many are `idle in transaction`.
pub async fn settle(observer: &Client) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let active: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if active == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{active} statement(s) still running after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
