//! No call waits on a dead network: deadlines, half-open connections, silent servers, and the
//! server connections abandoned calls leave behind.
//!
//! The network faults come from a relay in the test process (`FaultRelay`,
//! tests/common/relay.rs) between the pool and PostgreSQL: it black-holes established
//! connections (nothing arrives, nothing is closed: a crashed host, a partition, a cloud
//! failover), accepts new connections without ever answering them, and heals. Every test runs
//! with both hot paths. Deadlines are short (1 s) so the suite stays fast; elapsed times are
//! only checked against generous upper bounds.

mod common;
#[path = "common/relay.rs"]
mod relay;

use std::time::{Duration, Instant};

use auth_sessions::{
    Error, HotPath, NewSession, PipelineSettings, PoolSettings, Rotation, RotationKey,
    SessionPolicy, SessionRepo, build_pool_with_config, deadpool_postgres::Pool,
};
use common::TestDb;
use common::locks::lock_waiters;
use relay::FaultRelay;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The deadline of the relay tests' calls.
const DEADLINE: Duration = Duration::from_secs(1);
/// Slack on top of a deadline or timeout before a test calls a call late: the machine is
/// shared and noisy, and a deadline is a structural guarantee, not a benchmark.
const SLACK: Duration = Duration::from_millis(1500);
/// How long a test waits for a call before it reports it hung.
const HUNG: Duration = Duration::from_secs(8);

fn pipelined(connections: usize) -> HotPath {
    HotPath::Pipelined(PipelineSettings::new(connections))
}

/// The pipelined hot path with `backoff` after a failed connect.
fn pipelined_with_backoff(connections: usize, backoff: Duration) -> HotPath {
    HotPath::Pipelined(PipelineSettings::new(connections).connect_backoff(backoff))
}

/// A relay to the test's database server.
async fn relay_to(db: &TestDb) -> FaultRelay {
    FaultRelay::start(db.upstream()).await
}

/// A pool whose connections go through `relay` to the test's database (plaintext: the relay
/// is on this machine).
fn pool_through(db: &TestDb, relay: &FaultRelay, settings: &PoolSettings) -> Pool {
    build_pool_with_config(db.config_through(relay.port), settings).unwrap()
}

/// A repository on `pool` with `hot_path` and every call limited to `deadline`.
fn repo(pool: Pool, hot_path: HotPath, deadline: Duration) -> SessionRepo {
    SessionRepo::new(pool)
        .with_hot_path(hot_path)
        .unwrap()
        .with_deadline(deadline)
        .unwrap()
}

/// Runs `calls` lookups of `token` at once; returns each one's result and how long it took,
/// or `None` for a call still waiting after [`HUNG`].
async fn concurrent_lookups(
    repo: &SessionRepo,
    token: &str,
    calls: usize,
) -> Vec<Option<(Result<bool, Error>, Duration)>> {
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let (repo, token) = (repo.clone(), token.to_owned());
            tokio::spawn(async move {
                let started = Instant::now();
                let result = tokio::time::timeout(HUNG, repo.find_by_token(&token)).await;
                result
                    .ok()
                    .map(|found| (found.map(|s| s.is_some()), started.elapsed()))
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// Retries a lookup until it finds the session (at most 10 s): the path recovered.
async fn until_found(repo: &SessionRepo, token: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    // Room to open a connection on a loaded machine; the clone shares the repository's pool
    // and shared connections.
    let repo = repo.clone().with_deadline(Duration::from_secs(3)).unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), repo.find_by_token(token)).await {
            Ok(Ok(Some(_))) => return,
            other => assert!(
                Instant::now() < deadline,
                "{what}: lookups do not recover: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A half-open connection: established, then nothing arrives
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connection_lookups_fail_within_the_deadline_exclusive() {
    half_open_connection_lookups_fail_within_the_deadline(HotPath::Exclusive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connection_lookups_fail_within_the_deadline_pipelined() {
    half_open_connection_lookups_fail_within_the_deadline(pipelined(2)).await;
}

async fn half_open_connection_lookups_fail_within_the_deadline(hot_path: HotPath) {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (_, token) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let token = token.expose_secret().to_owned();
    let relay = relay_to(&db).await;
    // Opening a connection can take most of a second on a loaded machine (a throwaway server
    // authenticates with SCRAM): the pool's own timeouts stay out of the way, and the warm-up
    // runs on a clone with a long deadline (it shares the pool and the shared connections).
    let settings = PoolSettings::default()
        .max_size(6)
        .create_timeout(Duration::from_secs(10))
        .wait_timeout(Duration::from_secs(10));
    let pool = pool_through(&db, &relay, &settings);
    let exclusive = hot_path == HotPath::Exclusive;
    let repo = repo(pool.clone(), hot_path, DEADLINE);
    let warming = repo.clone().with_deadline(Duration::from_secs(30)).unwrap();

    // Warm connections, each with its statement prepared: six pooled ones, or both shared.
    let results = concurrent_lookups(&warming, &token, 6).await;
    assert!(
        results.iter().all(|r| matches!(r, Some((Ok(true), _)))),
        "{results:?}"
    );
    if exclusive {
        let objects = futures::future::try_join_all((0..6).map(|_| pool.get()))
            .await
            .unwrap();
        drop(objects);
        assert_eq!(pool.status().size, 6);
    } else {
        assert_eq!(repo.pipeline_status().unwrap().open, 2);
    }

    // The network stops carrying bytes; no connection is closed.
    relay.black_hole();
    let results = concurrent_lookups(&repo, &token, 6).await;
    println!("through a black hole: {results:?}");
    let waiting = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(
        waiting, 0,
        "{waiting} of 6 lookups still waiting after {HUNG:?}"
    );
    for (result, elapsed) in results.into_iter().flatten() {
        let err = result.expect_err("a lookup through a black hole fails");
        assert!(
            matches!(err, Error::DeadlineExceeded) && err.is_retryable(),
            "{err:?}"
        );
        assert!(elapsed <= DEADLINE + SLACK, "failed after {elapsed:?}");
    }

    if !exclusive {
        // Both shared connections were retired, and every call on them failed.
        let status = repo.pipeline_status().unwrap();
        assert_eq!(status.open, 0, "{status:?}");
    }

    // The network heals: the next calls get working connections.
    relay.heal();
    until_found(&repo, &token, "after the black hole").await;
    if !exclusive {
        assert!(repo.pipeline_status().unwrap().opened > 2);
    }
}

// ---------------------------------------------------------------------------------------------
// A server that accepts connections and never answers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_concurrent_connects_to_a_silent_server_share_one_attempt_exclusive() {
    concurrent_connects_to_a_silent_server_share_one_attempt(HotPath::Exclusive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_concurrent_connects_to_a_silent_server_share_one_attempt_pipelined() {
    concurrent_connects_to_a_silent_server_share_one_attempt(pipelined_with_backoff(
        1,
        Duration::from_secs(3),
    ))
    .await;
}

async fn concurrent_connects_to_a_silent_server_share_one_attempt(hot_path: HotPath) {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (_, token) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let token = token.expose_secret().to_owned();
    let relay = relay_to(&db).await;
    relay.accept_silently();
    let create_timeout = Duration::from_secs(1);
    let settings = PoolSettings::default()
        .max_size(6)
        .create_timeout(create_timeout)
        .wait_timeout(Duration::from_secs(1));
    let pipelined = hot_path != HotPath::Exclusive;
    let repo = repo(
        pool_through(&db, &relay, &settings),
        hot_path,
        Duration::from_secs(5),
    );

    // Six callers at once, no connection yet: each fails once the connect times out, at the
    // same time, not one create timeout after the other.
    let results = concurrent_lookups(&repo, &token, 6).await;
    println!(
        "silent server: {results:?}, {} connection(s) accepted",
        relay.accepted()
    );
    for result in &results {
        let (result, elapsed) = result.as_ref().expect("a lookup hung");
        assert!(
            matches!(result, Err(Error::PoolTimeout)),
            "{result:?} after {elapsed:?}"
        );
        assert!(
            *elapsed <= create_timeout + SLACK,
            "failed after {elapsed:?}"
        );
    }
    if pipelined {
        // One connect attempt for the six callers.
        assert_eq!(relay.accepted(), 1, "connect attempts");
        // Within the backoff, a caller fails at once, without a connect attempt of its own.
        let started = Instant::now();
        let result = repo.find_by_token(&token).await;
        assert!(matches!(result, Err(Error::PoolTimeout)), "{result:?}");
        assert!(
            started.elapsed() < create_timeout,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(relay.accepted(), 1, "connect attempts");
    }

    relay.heal();
    until_found(&repo, &token, "after the silent server").await;
}

// ---------------------------------------------------------------------------------------------
// Abandoned calls and the server connections they leave open
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_abandoned_calls_leave_server_connections_bounded_exclusive() {
    abandoned_calls_leave_server_connections_bounded(HotPath::Exclusive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_abandoned_calls_leave_server_connections_bounded_pipelined() {
    abandoned_calls_leave_server_connections_bounded(pipelined(1)).await;
}

/// Server connections of the repository's pool (and its shared connections) to this test's
/// database, by their application name.
async fn server_connections(observer: &tokio_postgres::Client) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&APPLICATION],
        )
        .await
        .unwrap()
        .get(0)
}

const APPLICATION: &str = "deadline-abandoned-calls";

async fn abandoned_calls_leave_server_connections_bounded(hot_path: HotPath) {
    let db = TestDb::new().await;
    let settings = PoolSettings::default()
        .max_size(2)
        .wait_timeout(Duration::from_secs(30));
    let pool = common::pool_for(db.config().application_name(APPLICATION).clone(), &settings);
    let exclusive = hot_path == HotPath::Exclusive;
    let repo = repo(pool.clone(), hot_path, Duration::from_secs(30));
    let observer = db.client().await;
    let user = db.user().await;
    let (_, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let token = token.expose_secret().to_owned();
    assert!(repo.find_by_token(&token).await.unwrap().is_some());
    // The most the repository may hold: the pool's connections, plus the shared ones and
    // the retired ones still busy.
    let bound = if exclusive { 2 } else { 2 + 1 + 2 };

    // A short table lock: every lookup waits behind it.
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE auth.user_sessions IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Twenty times: a lookup that stays, and one beside it whose caller goes away.
    let mut keepers = Vec::new();
    for _ in 0..20 {
        let spawn = || {
            let (repo, token) = (repo.clone(), token.clone());
            tokio::spawn(async move { repo.find_by_token(&token).await })
        };
        keepers.push(spawn());
        let abandoned = spawn();
        tokio::time::sleep(Duration::from_millis(50)).await;
        abandoned.abort();
    }
    // Canceled statements end and their connections close within a moment; what stays open
    // must be within the bound.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut open = server_connections(&observer).await;
    while open > bound && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = server_connections(&observer).await;
    }
    assert!(
        open <= bound,
        "{open} server connections open (bound {bound}) after 20 abandoned calls"
    );

    // The lock goes: every remaining lookup completes.
    tx.rollback().await.unwrap();
    for keeper in keepers {
        let found = tokio::time::timeout(HUNG, keeper)
            .await
            .expect("a lookup hung after the lock went")
            .unwrap();
        assert!(found.unwrap().is_some());
    }
    if !exclusive {
        // The retired connections close with their last call.
        let deadline = Instant::now() + Duration::from_secs(3);
        while repo.pipeline_status().unwrap().retired > 0 {
            assert!(Instant::now() < deadline, "{:?}", repo.pipeline_status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP keepalive and tcp_user_timeout
// ---------------------------------------------------------------------------------------------

/// The connection settings of a pool built from `url`, as its manager prints them.
fn connection_settings(url: &str) -> String {
    let pool = auth_sessions::build_pool(url, &PoolSettings::default()).unwrap();
    format!("{:?}", pool.manager())
}

#[test]
fn half_open_detection_keepalive_and_tcp_user_timeout_on_every_connection() {
    // Nothing said: keepalive probes after 30 s idle, every 10 s, 3 of them; unacknowledged
    // data closes the connection after 30 s (instead of TCP's 15 minutes or so).
    let settings = connection_settings("postgres://u@db.example.com/app?sslmode=disable");
    for expected in [
        "keepalives: true",
        "keepalives_idle: 30s",
        "keepalives_interval: Some(10s)",
        "keepalives_retries: Some(3)",
        "tcp_user_timeout: Some(30s)",
    ] {
        assert!(settings.contains(expected), "{expected} in {settings}");
    }
    // What the URL says explicitly stands.
    let settings = connection_settings(
        "postgres://u@db.example.com/app?sslmode=disable&keepalives_idle=120\
         &keepalives_interval=4&keepalives_retries=9&tcp_user_timeout=5",
    );
    for expected in [
        "keepalives_idle: 120s",
        "keepalives_interval: Some(4s)",
        "keepalives_retries: Some(9)",
        "tcp_user_timeout: Some(5s)",
    ] {
        assert!(settings.contains(expected), "{expected} in {settings}");
    }
    let settings =
        connection_settings("postgres://u@db.example.com/app?sslmode=disable&keepalives=0");
    assert!(settings.contains("keepalives: false"), "{settings}");
}

// ---------------------------------------------------------------------------------------------
// A statement that waits on a row lock past the deadline
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_a_call_stuck_on_a_row_lock_is_canceled_exclusive() {
    a_call_stuck_on_a_row_lock_is_canceled(HotPath::Exclusive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_a_call_stuck_on_a_row_lock_is_canceled_pipelined() {
    a_call_stuck_on_a_row_lock_is_canceled(HotPath::Pipelined(
        PipelineSettings::new(1).pipeline_writes(true),
    ))
    .await;
}

async fn a_call_stuck_on_a_row_lock_is_canceled(hot_path: HotPath) {
    let db = TestDb::new().await;
    let policy = SessionPolicy::default()
        .rotation_key(RotationKey::from_bytes(b"the deadline tests' rotation key!!").unwrap());
    let repo = SessionRepo::with_policy(db.pool.clone(), policy)
        .unwrap()
        .with_hot_path(hot_path)
        .unwrap()
        .with_deadline(DEADLINE)
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
    let started = Instant::now();
    let rotation = tokio::time::timeout(HUNG, repo.rotate(token.expose_secret()))
        .await
        .unwrap_or_else(|_| panic!("the rotation still waits on the lock after {HUNG:?}"));
    let elapsed = started.elapsed();
    let err = rotation.expect_err("the rotation cannot take the lock in time");
    assert!(
        matches!(err, Error::DeadlineExceeded) && err.is_retryable(),
        "{err:?}"
    );
    assert!(elapsed <= DEADLINE + SLACK, "failed after {elapsed:?}");

    // Its statement was canceled: nothing waits on the lock any more, though it is held.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock_waiters(&observer).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the timed-out statement still waits on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        repo.find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    tx.rollback().await.unwrap();
    // The retry rotates.
    assert!(matches!(
        repo.rotate(token.expose_secret()).await.unwrap(),
        Rotation::Rotated { .. }
    ));
}
