//! Faults: a server restart under load, terminated backends, statement timeouts, and futures
//! dropped mid-statement.
//!
//! Tests that stop or break the server run against a private PostgreSQL that the test starts
//! itself (`PrivateServer` from tests/common/server.rs, in a temporary directory on a free
//! port), never the shared server.
//! The tests that only hold row locks use the shared server through `TestDb`.
//!
//! Every test runs with both hot paths (`HotPath::Exclusive` and `HotPath::Pipelined`): each
//! body is an `async fn` taking the hot path, and two `#[tokio::test]`s call it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{
    CapPolicy, Error, HotPath, NewSession, PipelineSettings, PoolSettings, RefreshToken, Rotation,
    RotationKey, SessionPolicy, SessionRepo, Validation, build_pool_with_config, migrate,
};
use common::TestDb;
use common::locks::{lock_waiter, lock_waiters, settle, until_one_waits};
use common::server::PrivateServer;
use tokio_postgres::Client;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL server (`PrivateServer`, in tests/common/server.rs)
// ---------------------------------------------------------------------------------------------

/// The pipelined hot path with every hot-path call on the shared connections, writes too, so
/// that the tests exercise them with every kind of call.
fn pipelined(connections: usize) -> HotPath {
    HotPath::Pipelined(PipelineSettings::new(connections).pipeline_writes(true))
}

/// Starts a private server off the runtime's threads, migrates it, and returns it with a
/// repository on a pool.
async fn private_server(
    settings: &PoolSettings,
    hot_path: HotPath,
) -> (Arc<PrivateServer>, SessionRepo) {
    let server = tokio::task::spawn_blocking(PrivateServer::start)
        .await
        .expect("start the private server");
    let pool = build_pool_with_config(server.config(), settings).expect("pool");
    migrate(&pool).await.expect("migrate the private server");
    let policy = SessionPolicy::default()
        .max_sessions_per_user(None, CapPolicy::Refuse)
        .rotation_key(key());
    let repo = SessionRepo::with_policy(pool, policy)
        .unwrap()
        .with_hot_path(hot_path)
        .unwrap();
    (Arc::new(server), repo)
}

async fn insert_user(client: &Client) -> Uuid {
    client
        .query_one(
            "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
            &[&format!("{}@example.test", Uuid::new_v4())],
        )
        .await
        .expect("insert user")
        .get(0)
}

fn key() -> RotationKey {
    RotationKey::from_bytes(b"the fault tests' rotation key, 32+ bytes").unwrap()
}

/// A name for the error variants a broken connection may give; `None` for any other.
fn outage_variant(err: &Error) -> Option<String> {
    match err {
        Error::Connect(e) => Some(format!(
            "Connect({})",
            e.code().map_or("no SQLSTATE", |c| c.code())
        )),
        Error::PoolTimeout => Some("PoolTimeout".into()),
        Error::Database(e) => Some(format!(
            "Database(code={}, closed={})",
            e.code().map_or("none", |c| c.code()),
            e.is_closed()
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// a. A restart under load
// ---------------------------------------------------------------------------------------------

const BEFORE: u8 = 0;
const RESTARTING: u8 = 1;
const AFTER: u8 = 2;

/// What one worker saw.
#[derive(Default)]
struct WorkerLog {
    /// Sessions whose create returned Ok: id -> token.
    created: Vec<(Uuid, RefreshToken)>,
    /// Successful calls by the phase in which they started.
    ok_by_start_phase: [u64; 3],
    /// Errors: (phase at start, phase at end, variant, elapsed since the restart finished).
    errors: Vec<(u8, u8, String, Option<Duration>)>,
    /// Lookups of an acknowledged session that found nothing or another session.
    wrong_lookups: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_during_lookups_and_creates_recovers_exclusive() {
    restart_during_lookups_and_creates_recovers_without_losing_acknowledged_writes(
        HotPath::Exclusive,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_during_lookups_and_creates_recovers_pipelined() {
    restart_during_lookups_and_creates_recovers_without_losing_acknowledged_writes(pipelined(2))
        .await;
}

async fn restart_during_lookups_and_creates_recovers_without_losing_acknowledged_writes(
    hot_path: HotPath,
) {
    let settings = PoolSettings::default()
        .max_size(8)
        .create_timeout(Duration::from_secs(2))
        .wait_timeout(Duration::from_secs(2))
        .recycle_timeout(Duration::from_secs(2));
    let (server, repo) = private_server(&settings, hot_path).await;
    let admin = server.client().await;
    let mut users = Vec::new();
    for _ in 0..8 {
        users.push(insert_user(&admin).await);
    }
    drop(admin);

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let restarted_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    // Successful calls per worker, to see the load going before the restart.
    let successes: Arc<Vec<AtomicU64>> =
        Arc::new(users.iter().map(|_| AtomicU64::new(0)).collect());
    let mut workers = Vec::new();
    for (n, user) in users.into_iter().enumerate() {
        let (repo, phase, stop, restarted_at, successes) = (
            repo.clone(),
            phase.clone(),
            stop.clone(),
            restarted_at.clone(),
            successes.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut log = WorkerLog::default();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let start_phase = phase.load(Ordering::SeqCst);
                // Every third call creates; the others look up a session this worker created.
                let result = if log.created.is_empty() || (i + n).is_multiple_of(3) {
                    let new = NewSession::new(user, DAY).with_device_info(format!("worker {n}"));
                    match tokio::time::timeout(Duration::from_secs(10), repo.create(&new)).await {
                        Ok(Ok((session, token))) => {
                            log.created.push((session.id, token));
                            Ok(())
                        }
                        Ok(Err(err)) => Err(Some(err)),
                        Err(_) => Err(None),
                    }
                } else {
                    let (id, token) = &log.created[i % log.created.len()];
                    let lookup = repo.find_by_token(token.expose_secret());
                    match tokio::time::timeout(Duration::from_secs(10), lookup).await {
                        Ok(Ok(found)) => {
                            if found.map(|s| s.id) != Some(*id) {
                                log.wrong_lookups += 1;
                            }
                            Ok(())
                        }
                        Ok(Err(err)) => Err(Some(err)),
                        Err(_) => Err(None),
                    }
                };
                let end_phase = phase.load(Ordering::SeqCst);
                match result {
                    Ok(()) => {
                        log.ok_by_start_phase[usize::from(start_phase)] += 1;
                        successes[n].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        let variant = match &err {
                            Some(err) => {
                                outage_variant(err).unwrap_or_else(|| format!("UNEXPECTED {err:?}"))
                            }
                            None => "UNEXPECTED: the call hung for 10 s".into(),
                        };
                        let since = restarted_at.get().map(|at| at.elapsed());
                        log.errors.push((start_phase, end_phase, variant, since));
                        // Do not spin while the server is away.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            log
        }));
    }

    // The load first: every worker has created sessions and looked them up, 20 calls each.
    let deadline = Instant::now() + Duration::from_secs(20);
    while successes.iter().any(|n| n.load(Ordering::Relaxed) < 20) {
        assert!(
            Instant::now() < deadline,
            "the load did not get going within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    phase.store(RESTARTING, Ordering::SeqCst);
    let restart_began = Instant::now();
    let restarter = server.clone();
    tokio::task::spawn_blocking(move || restarter.restart())
        .await
        .expect("restart");
    let restart_took = restart_began.elapsed();
    restarted_at.set(Instant::now()).unwrap();
    phase.store(AFTER, Ordering::SeqCst);
    // Not a wait for an event but the window watched after the restart: the pool must serve
    // without errors through its last second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut created: HashMap<Uuid, RefreshToken> = HashMap::new();
    let mut ok_by_start_phase = [0u64; 3];
    let mut variants: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut wrong_lookups = 0;
    for worker in workers {
        let log = tokio::time::timeout(Duration::from_secs(30), worker)
            .await
            .expect("workers stop within 30 s")
            .expect("worker panicked");
        created.extend(log.created);
        for (total, n) in ok_by_start_phase.iter_mut().zip(log.ok_by_start_phase) {
            *total += n;
        }
        for error in &log.errors {
            *variants.entry(error.2.clone()).or_default() += 1;
        }
        errors.extend(log.errors);
        wrong_lookups += log.wrong_lookups;
    }
    let last_error_after_restart = errors.iter().filter_map(|e| e.3).max();
    println!(
        "restart took {restart_took:?}; successful calls by starting phase \
         [before, restarting, after] = {ok_by_start_phase:?}; {} errors; \
         last error {last_error_after_restart:?} after the restart finished; variants seen: \
         {variants:#?}",
        errors.len()
    );

    assert!(
        ok_by_start_phase[usize::from(BEFORE)] > 0,
        "nothing succeeded before the restart"
    );
    let unexpected: Vec<_> = errors
        .iter()
        .filter(|e| e.2.starts_with("UNEXPECTED"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "errors other than Connect, PoolTimeout or Database: {unexpected:?}"
    );
    let before: Vec<_> = errors.iter().filter(|e| e.1 == BEFORE).collect();
    assert!(
        before.is_empty(),
        "errors before the restart began: {before:?}"
    );
    assert!(
        !errors.is_empty(),
        "a fast restart under load should surface at least one error"
    );
    assert!(
        ok_by_start_phase[usize::from(AFTER)] > 0,
        "the pool served no successful call after the restart"
    );
    // The pool recovers promptly: no error in the last second of the run.
    let late: Vec<_> = errors
        .iter()
        .filter(|e| e.3.is_some_and(|since| since > Duration::from_millis(1500)))
        .collect();
    assert!(
        late.is_empty(),
        "errors more than 1.5 s after the restart: {late:?}"
    );
    assert_eq!(
        wrong_lookups, 0,
        "lookups of acknowledged sessions found nothing or another session"
    );

    // Every acknowledged create is in the table, with its token's hash.
    let admin = server.client().await;
    let ids: Vec<Uuid> = created.keys().copied().collect();
    let rows = admin
        .query(
            "SELECT id, refresh_token_hash FROM auth.user_sessions WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("read back the sessions");
    let stored: HashMap<Uuid, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let lost: Vec<_> = ids.iter().filter(|id| !stored.contains_key(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates are missing: {lost:?}",
        lost.len(),
        ids.len()
    );
    for (id, token) in &created {
        assert_eq!(stored[id], token.hash().as_str(), "session {id} hash");
    }
    println!("{} acknowledged creates all present", ids.len());
}

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
