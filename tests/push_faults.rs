//! Live sessions under faults: the staleness bound holds while the listening connection is
//! lost. A private server of the test's own (it is restarted), and a relay in front of the
//! instance that keeps sessions in memory, so the test can cut it off (tests/common/relay.rs).
//!
//! The promise checked: a session revoked at T is never reported live after T + bound. Each
//! check's start is compared with the revocation's end, in one run: a bound, not a timing
//! between runs.

mod common;
#[path = "common/relay.rs"]
mod relay;

use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{
    LiveSessions, LiveSettings, NewSession, PoolSettings, SessionKey, SessionRepo,
    build_pool_with_config, migrate,
};
use common::server::PrivateServer;
use relay::FaultRelay;
use tokio::time::Instant;
use tokio_postgres::Client;
use uuid::Uuid;

const BOUND: Duration = Duration::from_millis(600);

async fn create_session(repo: &SessionRepo, client: &Client) -> SessionKey {
    let user: Uuid = client
        .query_one("INSERT INTO auth.users DEFAULT VALUES RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    repo.create(&NewSession::new(user, Duration::from_secs(3600)))
        .await
        .unwrap()
        .0
        .key()
}

/// Terminates every listening connection of the server (they are the ones whose last
/// statement is a heartbeat); returns how many.
async fn terminate_listeners(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
             FROM pg_stat_activity
             WHERE query LIKE '%auth_sessions_heartbeat_%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Checks `key` over and over until `end`, and asserts that no check started after
/// `revoked + BOUND` answered live. Returns (live answers, refusals, errors).
async fn never_live_past_the_bound(
    live: &LiveSessions,
    key: SessionKey,
    revoked: Instant,
    end: Instant,
) -> (u32, u32, u32) {
    let (mut accepted, mut refused, mut failed) = (0, 0, 0);
    while Instant::now() < end {
        let started = Instant::now();
        match live.check(key).await {
            Ok(Some(_)) => {
                accepted += 1;
                assert!(
                    started < revoked + BOUND,
                    "accepted {:?} after the revocation, past the bound of {BOUND:?}: {:?}",
                    started - revoked,
                    live.status()
                );
            }
            Ok(None) => refused += 1,
            Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (accepted, refused, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_an_outage_is_never_accepted_past_the_bound_push() {
    let server = Arc::new(
        tokio::task::spawn_blocking(PrivateServer::start)
            .await
            .expect("start the private server"),
    );
    let pool_a = build_pool_with_config(server.config(), &PoolSettings::default()).unwrap();
    migrate(&pool_a).await.expect("migrate");
    let a = SessionRepo::new(pool_a);
    let admin = server.client().await;

    let port = server.config().get_ports()[0];
    let relay = FaultRelay::start(("127.0.0.1".to_owned(), port)).await;
    let mut config = server.config();
    config.port(port);
    let mut through = tokio_postgres::Config::new();
    through
        .host("127.0.0.1")
        .port(relay.port)
        .user(config.get_user().unwrap_or("postgres"))
        .dbname(config.get_dbname().unwrap_or("postgres"));
    if let Some(password) = config.get_password() {
        through.password(password);
    }
    let pool_b = build_pool_with_config(
        through,
        &PoolSettings::default()
            .create_timeout(Duration::from_millis(300))
            .wait_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let b = SessionRepo::new(pool_b)
        .with_deadline(Duration::from_millis(300))
        .unwrap();
    let live = b
        .live_sessions(
            LiveSettings::default()
                .staleness_bound(BOUND)
                .heartbeat_interval(Duration::from_millis(100))
                .reconnect_backoff(Duration::from_millis(50)),
        )
        .unwrap();
    assert!(live.listening(Duration::from_secs(10)).await);

    // 1. The listening connection killed: a revocation made before it listens again is
    //    refused within the bound (memory is emptied when it listens again).
    let first = create_session(&a, &admin).await;
    assert!(live.check(first).await.unwrap().is_some());
    assert!(live.check(first).await.unwrap().is_some());
    let clears = live.status().clears;
    assert_eq!(terminate_listeners(&admin).await, 1);
    assert!(a.revoke(first).await.unwrap());
    let revoked = Instant::now();
    let (_, refused, _) =
        never_live_past_the_bound(&live, first, revoked, revoked + 2 * BOUND).await;
    assert!(refused > 0);
    assert!(
        live.status().clears > clears,
        "memory emptied on listening again"
    );
    assert!(live.listening(Duration::from_secs(10)).await);
    assert_eq!(live.check(first).await.unwrap(), None);

    // 2. Cut off from the server, which restarts meanwhile, the listening connection
    //    terminated; a revocation made during the outage.
    let second = create_session(&a, &admin).await;
    assert!(live.check(second).await.unwrap().is_some());
    let before = live.status();
    relay.black_hole();
    assert_eq!(terminate_listeners(&admin).await, 1);
    let restarting = server.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();
    // The pool's connections died with the server: retry until a fresh one answers.
    let mut tries = 0;
    let revoked = loop {
        match a.revoke(second).await {
            Ok(found) => {
                assert!(found);
                break Instant::now();
            }
            Err(err) => {
                tries += 1;
                assert!(tries < 50, "the server does not answer again: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (accepted, refused, failed) =
        never_live_past_the_bound(&live, second, revoked, revoked + 3 * BOUND).await;
    let during = live.status();
    assert!(!during.fresh, "not fresh without heartbeats: {during:?}");
    assert!(
        failed > 0,
        "past the bound, checks read the database, unreachable: {accepted} accepted, \
         {refused} refused, {failed} failed"
    );
    assert_eq!(during.endings_heard, before.endings_heard, "nothing heard");

    // Healed: listening again, memory emptied, the revocation read from the database.
    relay.heal();
    assert!(live.listening(Duration::from_secs(10)).await);
    assert!(live.status().clears > during.clears);
    // The pool of b may hold connections that died with the server: retry past them.
    let mut tries = 0;
    let answer = loop {
        match live.check(second).await {
            Ok(answer) => break answer,
            Err(err) => {
                tries += 1;
                assert!(tries < 50, "b cannot read the database again: {err}");
            }
        }
    };
    assert_eq!(answer, None);
    let memory = live.status().memory_answers;
    assert_eq!(live.check(second).await.unwrap(), None);
    assert_eq!(
        live.status().memory_answers,
        memory + 1,
        "remembered as ended"
    );
    live.shutdown().await;
}
