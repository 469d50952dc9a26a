//! Faults: calls cut short. A statement timeout is a typed error and the connection survives;
//! a future dropped mid-statement leaves no open transaction and no half state, and does not
//! stall the next caller on its connection.
//!
//! These tests only hold row locks, so they use the shared server through `TestDb`.
//!
//! Every test runs with both hot paths (`HotPath::Exclusive` and `HotPath::Pipelined`): each
//! body is an `async fn` taking the hot path, and two `#[tokio::test]`s call it. The helpers
//! all fault tests share are in tests/common/faults.rs.

mod common;

use std::time::{Duration, Instant};

use auth_sessions::{
    CapPolicy, Error, HotPath, NewSession, PoolSettings, Rotation, SessionPolicy, SessionRepo,
    Validation,
};
use common::TestDb;
use common::faults::{key, pipelined};
use common::fixtures::DAY;
use common::locks::{lock_waiters, settle};
use tokio_postgres::Client;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// c. Statement timeout
// ---------------------------------------------------------------------------------------------

async fn backend_pid(repo: &SessionRepo) -> i32 {
    repo.pool()
        .get()
        .await
        .expect("pooled connection")
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0)
}

#[tokio::test]
async fn statement_timeout_is_a_typed_error_exclusive() {
    statement_timeout_is_a_typed_error_and_the_connection_survives(HotPath::Exclusive).await;
}

#[tokio::test]
async fn statement_timeout_is_a_typed_error_pipelined() {
    statement_timeout_is_a_typed_error_and_the_connection_survives(pipelined(1)).await;
}

async fn statement_timeout_is_a_typed_error_and_the_connection_survives(hot_path: HotPath) {
    let db = TestDb::with_settings(
        PoolSettings::default()
            .max_size(1)
            .statement_timeout(Duration::from_millis(200)),
    )
    .await;
    let repo = db.repo.clone().with_hot_path(hot_path).unwrap();
    let user = db.user().await;
    let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let pid = backend_pid(&repo).await;
    let opened = repo.pipeline_status().map(|status| status.opened);

    // Another connection holds the session's row lock in an open transaction.
    let mut other = db.client().await;
    let tx = other.transaction().await.unwrap();
    let locked = tx
        .query(
            "SELECT id FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
            &[&session.id],
        )
        .await
        .unwrap();
    assert_eq!(locked.len(), 1);

    let started = Instant::now();
    let blocked = tokio::time::timeout(Duration::from_secs(5), repo.revoke(session.key()))
        .await
        .expect("the statement timeout ends the call well before 5 s");
    let waited = started.elapsed();
    println!("revoke on a locked row: {blocked:?} after {waited:?}");
    assert!(
        matches!(blocked, Err(Error::StatementTimeout)),
        "expected StatementTimeout, got {blocked:?}"
    );
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(2),
        "canceled after {waited:?}, expected about 200 ms"
    );

    tx.rollback().await.unwrap();
    // The same single connection serves the next call.
    assert!(
        repo.revoke(session.key()).await.unwrap(),
        "revoke after the lock is gone"
    );
    assert_eq!(backend_pid(&repo).await, pid, "the connection was replaced");
    assert_eq!(repo.pool().status().size, 1);
    assert_eq!(
        repo.pipeline_status().map(|status| status.opened),
        opened,
        "the shared connection was replaced"
    );
    assert!(matches!(
        repo.validate(token.expose_secret()).await.unwrap(),
        Validation::Revoked(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// d. Futures dropped mid-statement
// ---------------------------------------------------------------------------------------------

/// Runs `call` for about 100 ms (a `tokio::time::timeout`), longer if needed until its
/// statement is seen waiting on a lock on the server (at most 5 s), then drops it unfinished.
async fn drop_while_waiting<F, T>(observer: &Client, call: F, what: &str)
where
    F: std::future::Future<Output = Result<T, Error>>,
    T: std::fmt::Debug,
{
    let mut call = std::pin::pin!(call);
    let mut slice = Duration::from_millis(100);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(result) = tokio::time::timeout(slice, call.as_mut()).await {
            panic!("{what} should block on the lock, got {result:?}");
        }
        if lock_waiters(observer).await == 1 {
            return; // dropped here, its statement waiting on the server
        }
        assert!(Instant::now() < deadline, "{what} never waited on the lock");
        slice = Duration::from_millis(20);
    }
}

#[tokio::test]
async fn a_dropped_rotation_or_create_leaves_no_half_state_exclusive() {
    a_dropped_rotation_or_create_leaves_no_open_transaction_and_no_half_state(HotPath::Exclusive)
        .await;
}

#[tokio::test]
async fn a_dropped_rotation_or_create_leaves_no_half_state_pipelined() {
    a_dropped_rotation_or_create_leaves_no_open_transaction_and_no_half_state(pipelined(2)).await;
}

async fn a_dropped_rotation_or_create_leaves_no_open_transaction_and_no_half_state(
    hot_path: HotPath,
) {
    let db = TestDb::new().await;
    let policy = SessionPolicy::default()
        .max_sessions_per_user(Some(1), CapPolicy::EvictLeastRecentlyActive)
        .rotation_key(key());
    let repo = SessionRepo::with_policy(db.pool.clone(), policy)
        .unwrap()
        .with_hot_path(hot_path)
        .unwrap();
    let observer = db.client().await;

    // --- rotate ---------------------------------------------------------------------------
    let user = db.user().await;
    let (session, old) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let successor = key().successor(&old).unwrap();

    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.query(
        "SELECT id FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
        &[&session.id],
    )
    .await
    .unwrap();
    drop_while_waiting(&observer, repo.rotate(old.expose_secret()), "rotate").await;
    tx.rollback().await.unwrap();
    let idle_in_tx = settle(&observer).await;
    assert_eq!(idle_in_tx, 0, "a backend is left idle in transaction");

    // Rotation writes one row: it either applied entirely (the successor at generation 1) or
    // not at all (the old token at generation 0), and the session is still exactly one row.
    let rows: Vec<(i32, String)> = observer
        .query(
            "SELECT generation, refresh_token_hash FROM auth.user_sessions \
             WHERE user_id = $1 AND id = $2",
            &[&user, &session.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let old_hash = old.hash().as_str().to_owned();
    let new_hash = successor.hash().as_str().to_owned();
    let rotated = match rows.as_slice() {
        [(0, current)] if *current == old_hash => false,
        [(1, current)] if *current == new_hash => true,
        other => panic!("half state after a dropped rotation: {other:?}"),
    };
    println!(
        "dropped rotate: the statement {}",
        if rotated {
            "completed (rotated)"
        } else {
            "did not apply"
        }
    );

    // The pool still works, and a retry of the lost call gets the same successor.
    match repo.rotate(old.expose_secret()).await.unwrap() {
        Rotation::Rotated { session: s, token } => {
            assert_eq!(s.id, session.id);
            assert_eq!(token, successor, "the retry got another successor");
        }
        other => panic!("retry of the dropped rotation: {other:?}"),
    }
    assert!(matches!(
        repo.validate(successor.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));

    // --- create (cap 1, evicting) -----------------------------------------------------------
    let user = db.user().await;
    let (first, _) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let tx = locker.transaction().await.unwrap();
    tx.query(
        "SELECT id FROM auth.users WHERE id = $1 FOR UPDATE",
        &[&user],
    )
    .await
    .unwrap();
    drop_while_waiting(
        &observer,
        repo.create(&NewSession::new(user, DAY)),
        "create",
    )
    .await;
    tx.rollback().await.unwrap();
    let idle_in_tx = settle(&observer).await;
    assert_eq!(idle_in_tx, 0, "a backend is left idle in transaction");

    let rows: Vec<(Uuid, Option<String>)> = observer
        .query(
            "SELECT id, revoked_reason FROM auth.user_sessions WHERE user_id = $1 \
             ORDER BY created_at, id",
            &[&user],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let new_rows: Vec<_> = rows.iter().filter(|(id, _)| *id != first.id).collect();
    let first_reason = rows
        .iter()
        .find(|(id, _)| *id == first.id)
        .map(|(_, reason)| reason.clone())
        .expect("the first session is still there");
    match new_rows.as_slice() {
        // Nothing applied: the first session is untouched.
        [] => assert_eq!(first_reason, None, "evicted without a new session"),
        // Everything applied: the new session is live and the first one was evicted for it.
        [(_, None)] => assert_eq!(first_reason.as_deref(), Some("evicted")),
        other => panic!("half state after a dropped create: {other:?}, first {first_reason:?}"),
    }
    println!(
        "dropped create: the statement {}",
        if new_rows.is_empty() {
            "did not apply"
        } else {
            "completed"
        }
    );

    // The pool still works and the cap still holds.
    repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert_eq!(repo.count_live(user).await.unwrap(), 1);
    assert_eq!(settle(&observer).await, 0);
}

#[tokio::test]
async fn an_abandoned_call_does_not_stall_the_next_caller_exclusive() {
    an_abandoned_call_does_not_stall_the_next_caller_on_its_connection(HotPath::Exclusive).await;
}

#[tokio::test]
async fn an_abandoned_call_does_not_stall_the_next_caller_pipelined() {
    an_abandoned_call_does_not_stall_the_next_caller_on_its_connection(pipelined(1)).await;
}

async fn an_abandoned_call_does_not_stall_the_next_caller_on_its_connection(hot_path: HotPath) {
    // One connection: if an abandoned call handed it back (or, pipelined, kept sharing it)
    // while its statement still waited on a lock, the next call would queue behind that
    // statement for as long as the lock is held. Instead the connection is closed (retired),
    // the statement canceled, and a new one serves.
    let db = TestDb::with_settings(PoolSettings::default().max_size(1)).await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_key(key()),
    )
    .unwrap()
    .with_hot_path(hot_path)
    .unwrap();
    let observer = db.client().await;
    let user = db.user().await;
    let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();

    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
        &[&session.id],
    )
    .await
    .unwrap();
    drop_while_waiting(&observer, repo.rotate(token.expose_secret()), "rotate").await;

    // The lock is still held; the next call must not wait for it.
    let started = Instant::now();
    let live = tokio::time::timeout(Duration::from_secs(2), repo.count_live(user))
        .await
        .expect("the next call is not stalled behind the abandoned statement")
        .unwrap();
    assert_eq!(live, 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The abandoned statement was canceled: nothing waits on the lock any more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock_waiters(&observer).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned statement still waits on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.rollback().await.unwrap();
    assert_eq!(settle(&observer).await, 0, "no transaction left open");
    // Canceled before it could run: the old token is still the current one.
    assert!(
        repo.find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
}
