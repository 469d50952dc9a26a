//! Faults: broken connections. Terminated backends are replaced on the next calls, and on the
//! pipelined hot path a killed shared connection fails only its in-flight calls, while a slow
//! cleanup batch does not block lookups.
//!
//! The test that terminates backends runs against a private PostgreSQL that it starts itself
//! (`PrivateServer` from tests/common/server.rs), never the shared server; the others only
//! hold row locks and use the shared server through `TestDb`.
//!
//! The terminated-backends test runs with both hot paths (`HotPath::Exclusive` and
//! `HotPath::Pipelined`): its body is an `async fn` taking the hot path, and two
//! `#[tokio::test]`s call it. The helpers all fault tests share are in tests/common/faults.rs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{Error, HotPath, NewSession, PoolSettings, SessionPolicy, SessionRepo};
use common::TestDb;
use common::faults::{insert_user, key, outage_variant, pipelined, private_server};
use common::fixtures::DAY;
use common::locks::{lock_waiter, settle, until_one_waits};

// ---------------------------------------------------------------------------------------------
// b. Terminated backends
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_replaced_exclusive() {
    terminated_backends_are_replaced_on_the_next_calls(HotPath::Exclusive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_replaced_pipelined() {
    terminated_backends_are_replaced_on_the_next_calls(pipelined(4)).await;
}

/// The backends of the pool's open connections, sorted.
async fn pool_backends(repo: &SessionRepo) -> Vec<i32> {
    let size = repo.pool().status().size;
    let objects = futures::future::try_join_all((0..size).map(|_| repo.pool().get()))
        .await
        .expect("the pool's connections");
    let mut pids = Vec::new();
    for object in &objects {
        let pid: i32 = object
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        pids.push(pid);
    }
    pids.sort_unstable();
    pids
}

async fn terminated_backends_are_replaced_on_the_next_calls(hot_path: HotPath) {
    let settings = PoolSettings::default()
        .max_size(4)
        .create_timeout(Duration::from_secs(2))
        .wait_timeout(Duration::from_secs(2));
    let exclusive = hot_path == HotPath::Exclusive;
    let (server, repo) = private_server(&settings, hot_path).await;
    let admin = server.client().await;
    let user = insert_user(&admin).await;
    let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();

    // Warm four hot-path connections at once, and note their backends: the pool's four, or
    // the four shared ones (every backend but the admin's and the pool's).
    let pool_pids = if exclusive {
        let objects = futures::future::try_join_all((0..4).map(|_| repo.pool().get()))
            .await
            .expect("four pooled connections");
        drop(objects);
        assert_eq!(repo.pool().status().size, 4);
        Vec::new()
    } else {
        futures::future::try_join_all((0..4).map(|_| repo.find_by_token(token.expose_secret())))
            .await
            .expect("four lookups");
        assert_eq!(repo.pipeline_status().unwrap().open, 4);
        pool_backends(&repo).await
    };
    let mut hot_pids: Vec<i32> = if exclusive {
        pool_backends(&repo).await
    } else {
        Vec::new()
    };

    let backends: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|pid| !pool_pids.contains(pid))
        .collect();
    if !exclusive {
        hot_pids = backends.clone();
    }
    assert_eq!(hot_pids.len(), 4, "{backends:?}");
    assert_eq!(
        backends, hot_pids,
        "the database's other backends are the hot path's"
    );
    let terminated: Vec<i32> = backends.iter().copied().step_by(2).collect();
    for pid in &terminated {
        let done: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .unwrap()
            .get(0);
        assert!(done, "pg_terminate_backend({pid})");
    }

    // Rounds of four concurrent calls (every pooled connection is used) until one round
    // succeeds entirely; errors in between must be typed.
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut recovered_after = None;
    for round in 1..=10 {
        let results = futures::future::join_all((0..4).map(|_| {
            tokio::time::timeout(
                Duration::from_secs(10),
                repo.find_by_token(token.expose_secret()),
            )
        }))
        .await;
        let mut all_ok = true;
        for result in results {
            match result.expect("a call hung for 10 s") {
                Ok(found) => assert_eq!(found.map(|s| s.id), Some(session.id)),
                Err(err) => {
                    all_ok = false;
                    let variant = outage_variant(&err)
                        .unwrap_or_else(|| panic!("untyped error after termination: {err:?}"));
                    *errors.entry(variant).or_default() += 1;
                }
            }
        }
        if all_ok {
            recovered_after = Some(round);
            break;
        }
    }
    println!(
        "errors after terminating {terminated:?}: {errors:?}; recovered in round {recovered_after:?}"
    );
    assert!(
        recovered_after.is_some(),
        "calls still fail after 10 rounds: {errors:?}"
    );

    // Then every call succeeds, sequentially and concurrently.
    for _ in 0..20 {
        let found = repo.find_by_token(token.expose_secret()).await.unwrap();
        assert_eq!(found.map(|s| s.id), Some(session.id));
    }
    for _ in 0..5 {
        let results = futures::future::join_all((0..4).map(|_| repo.count_live(user))).await;
        for result in results {
            assert_eq!(result.unwrap(), 1);
        }
    }

    // The terminated backends are gone and the pool holds at most four connections.
    let alive: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1)",
            &[&terminated],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        alive.is_empty(),
        "terminated backends still listed: {alive:?}"
    );
    assert!(repo.pool().status().size <= 4);
    if let Some(status) = repo.pipeline_status() {
        assert_eq!(status.open, 4, "{status:?}");
        assert!(
            status.opened >= 6,
            "two shared connections replaced: {status:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// e. The pipelined hot path: a killed shared connection, and cleanup beside lookups
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shared_connection_fails_only_its_in_flight_calls() {
    let db = TestDb::new().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_key(key()),
    )
    .unwrap()
    .with_hot_path(pipelined(2))
    .unwrap();
    let observer = db.client().await;
    let user = db.user().await;
    let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let (_, other) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert_eq!(repo.pipeline_status().unwrap().open, 2);

    // A rotation waits on the session's row lock on one shared connection, so every call
    // issued on that connection after it stays in flight.
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
        &[&session.id],
    )
    .await
    .unwrap();
    let rotation = tokio::spawn({
        let (repo, token) = (repo.clone(), token.clone());
        async move { repo.rotate(token.expose_secret()).await }
    });
    until_one_waits(&observer, "rotate").await;
    let victim = lock_waiter(&observer).await;

    // Six lookups, dealt round-robin: three queue behind the rotation, three run on the other
    // connection and finish.
    let finished = Arc::new(AtomicU64::new(0));
    let lookups: Vec<_> = (0..6)
        .map(|_| {
            let (repo, other, finished) = (repo.clone(), other.clone(), finished.clone());
            tokio::spawn(async move {
                let result = repo.find_by_token(other.expose_secret()).await;
                finished.fetch_add(1, Ordering::SeqCst);
                result
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while finished.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the other connection's lookups hang"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        3,
        "lookups queued behind the waiting rotation finished"
    );

    let terminated: bool = observer
        .query_one("SELECT pg_terminate_backend($1)", &[&victim])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    // The rotation and the three lookups queued behind it fail, typed and retryable; the
    // other three succeeded.
    let rotation = tokio::time::timeout(Duration::from_secs(5), rotation)
        .await
        .expect("the rotation ends with its connection")
        .unwrap();
    let mut ok = 0;
    let mut failed = Vec::new();
    for lookup in lookups {
        match tokio::time::timeout(Duration::from_secs(5), lookup)
            .await
            .expect("every lookup ends")
            .unwrap()
        {
            Ok(found) => {
                assert!(found.is_some());
                ok += 1;
            }
            Err(err) => failed.push(err),
        }
    }
    println!("rotation: {rotation:?}; lookups: {ok} ok, failed: {failed:?}");
    let rotation_err = rotation.expect_err("the killed connection's rotation fails");
    assert!(
        matches!(rotation_err, Error::Database(_)) && rotation_err.is_retryable(),
        "{rotation_err:?}"
    );
    assert_eq!(ok, 3, "the other connection's lookups succeed");
    assert_eq!(failed.len(), 3, "only the killed connection's calls fail");
    for err in &failed {
        assert!(
            matches!(err, Error::Database(e) if e.is_closed()) && err.is_retryable(),
            "{err:?}"
        );
    }
    tx.rollback().await.unwrap();

    // The next calls succeed: the dead connection is replaced, once.
    for _ in 0..10 {
        let found = repo.find_by_token(token.expose_secret()).await.unwrap();
        assert_eq!(
            found.map(|s| s.id),
            Some(session.id),
            "the rotation did not apply"
        );
    }
    let status = repo.pipeline_status().unwrap();
    assert_eq!((status.open, status.opened), (2, 3), "{status:?}");
    assert_eq!(settle(&observer).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cleanup_batch_does_not_block_pipelined_lookups() {
    // The pool has one connection, and cleanup holds it while its batch waits on a row lock.
    let db = TestDb::with_settings(
        PoolSettings::default()
            .max_size(1)
            .wait_timeout(Duration::from_millis(300)),
    )
    .await;
    let repo = db.repo.clone().with_hot_path(pipelined(1)).unwrap();
    let observer = db.client().await;
    let user = db.user().await;
    let (live, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let (dead, _) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    db.expire(dead.id).await;

    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
        &[&dead.id],
    )
    .await
    .unwrap();
    let cleanup = tokio::spawn({
        let repo = repo.clone();
        async move { repo.delete_expired_batch(100).await }
    });
    until_one_waits(&observer, "the cleanup batch").await;

    // Lookups and the other hot-path calls go on, on the shared connection.
    for _ in 0..20 {
        let started = Instant::now();
        let found = tokio::time::timeout(
            Duration::from_secs(1),
            repo.find_by_token(token.expose_secret()),
        )
        .await
        .expect("a lookup waited for the cleanup batch")
        .unwrap();
        assert_eq!(found.map(|s| s.id), Some(live.id));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(repo.count_live(user).await.unwrap(), 1);
    assert!(
        repo.record_activity(live.key(), None)
            .await
            .unwrap()
            .is_some()
    );
    // The same lookup on the exclusive path waits for the pool's one connection.
    let exclusive = repo.clone().with_hot_path(HotPath::Exclusive).unwrap();
    assert!(matches!(
        exclusive.find_by_token(token.expose_secret()).await,
        Err(Error::PoolTimeout)
    ));
    assert!(!cleanup.is_finished(), "the cleanup batch still waits");

    tx.rollback().await.unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(5), cleanup)
        .await
        .expect("cleanup finishes once the lock is gone")
        .unwrap()
        .unwrap();
    assert_eq!(deleted.deleted(), 1);
}
