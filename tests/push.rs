//! Live sessions (`SessionRepo::live_sessions`): every end of a session is pushed by the
//! database to every instance, which then refuses it from memory, with no statement of its own.
//!
//! Two repositories on one test database stand for two instances of a service: `a` changes
//! sessions, `b` keeps them in memory. Where a test counts `b`'s statements, `b`'s pool (and
//! so its listening connection, opened with the pool's settings) goes through a relay that
//! counts on the wire the messages after which the client waits for the server (see
//! tests/round_trips.rs); the listening connection's heartbeats are one such message each and
//! are subtracted. Waits poll a counter every few milliseconds, never sleep for a duration.

mod common;
#[path = "common/relay.rs"]
mod relay;

use std::time::Duration;

use auth_sessions::{
    CapPolicy, LiveSessions, LiveSettings, LiveStatus, NewSession, PoolSettings, Rotation,
    SessionKey, SessionPolicy, SessionRepo, build_pool_with_config,
};
use common::TestDb;
use relay::CountingRelay;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);

/// Settings for `b`: a bound long enough that memory stays fresh through the test, a
/// heartbeat rarely, and no automatic flush to speak of.
fn quiet() -> LiveSettings {
    LiveSettings::default()
        .staleness_bound(Duration::from_secs(60))
        .heartbeat_interval(Duration::from_secs(20))
}

/// Waits (polling, at most 10 s) until `live`'s status satisfies `done`.
async fn until(live: &LiveSessions, what: &str, done: impl Fn(&LiveStatus) -> bool) -> LiveStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = live.status();
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 10 s for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn started(repo: &SessionRepo, settings: LiveSettings) -> LiveSessions {
    let live = repo.live_sessions(settings).expect("live sessions");
    assert!(
        live.listening(Duration::from_secs(10)).await,
        "not listening: {:?}",
        live.status()
    );
    live
}

async fn session(repo: &SessionRepo, user: Uuid) -> SessionKey {
    repo.create(&NewSession::new(user, HOUR))
        .await
        .expect("create")
        .0
        .key()
}

/// Checks `key` on `live` and says whether the answer came from memory.
async fn check(live: &LiveSessions, key: SessionKey) -> (bool, bool) {
    let before = live.status().memory_answers;
    let answer = live.check(key).await.expect("check");
    (answer.is_some(), live.status().memory_answers > before)
}

#[tokio::test]
async fn a_revocation_on_one_repository_is_pushed_to_another_which_refuses_it_with_no_statement() {
    let db = TestDb::new().await;
    let relay = CountingRelay::start(db.upstream()).await;
    let pool_b =
        build_pool_with_config(db.config_through(relay.port), &PoolSettings::default()).unwrap();
    let b = SessionRepo::new(pool_b);
    let live = started(&b, quiet()).await;
    let a = &db.repo;
    let user = db.user().await;
    let key = session(a, user).await;
    let other = session(a, user).await;

    // First check: one statement; then from memory.
    let found = live.check(key).await.unwrap().expect("live");
    assert_eq!(found.key, key);
    assert_eq!(found.user_id(), user);
    assert_eq!(check(&live, key).await, (true, true));
    assert_eq!(check(&live, other).await, (true, false));

    let wire = relay.count();
    let status = live.status();
    assert!(a.revoke(key).await.unwrap());
    until(&live, "the revocation to be heard", |s| {
        s.endings_heard > status.endings_heard
    })
    .await;
    assert_eq!(
        check(&live, key).await,
        (false, true),
        "refused from memory"
    );
    assert_eq!(check(&live, key).await, (false, true));
    // The other session of the user is untouched, still from memory.
    assert_eq!(check(&live, other).await, (true, true));
    let after = live.status();
    assert_eq!(after.database_answers, status.database_answers);
    assert_eq!(
        relay.count() - wire,
        after.heartbeats_sent - status.heartbeats_sent,
        "b issued no statement but its heartbeats"
    );
    live.shutdown().await;
}

#[tokio::test]
async fn a_rolled_back_revocation_is_not_pushed() {
    let db = TestDb::new().await;
    let a = &db.repo;
    let live = started(&SessionRepo::new(db.pool.clone()), quiet()).await;
    let user = db.user().await;
    let key = session(a, user).await;
    let sentinel = session(a, user).await;
    assert_eq!(check(&live, key).await, (true, false));
    assert_eq!(check(&live, sentinel).await, (true, false));
    let heard = live.status().endings_heard;

    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    let revoked = tx
        .execute(
            "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user'
             WHERE user_id = $1 AND id = $2",
            &[&key.user_id, &key.session_id],
        )
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    tx.rollback().await.unwrap();

    // A committed revocation after it: notifications arrive in commit order, so once this one
    // is heard, the rolled-back one would have been heard before it.
    assert!(a.revoke(sentinel).await.unwrap());
    let status = until(&live, "the sentinel's revocation", |s| {
        s.endings_heard > heard
    })
    .await;
    assert_eq!(status.endings_heard, heard + 1, "only the committed one");
    assert_eq!(check(&live, sentinel).await, (false, true));
    assert_eq!(
        check(&live, key).await,
        (true, true),
        "still live, from memory"
    );
    live.shutdown().await;
}

#[tokio::test]
async fn revoke_all_of_a_user_with_many_sessions_is_pushed_for_every_one() {
    const MANY: i64 = 1000;
    let db = TestDb::new().await;
    let live = started(&SessionRepo::new(db.pool.clone()), quiet()).await;
    let user = db.user().await;
    let bystander = db.user().await;
    let client = db.client().await;
    let rows = client
        .query(
            "INSERT INTO auth.user_sessions (user_id, id, refresh_token_hash, expires_at)
             SELECT $1, gen_random_uuid(), encode(sha256(n::text::bytea), 'hex'),
                    now() + interval '1 hour'
             FROM generate_series(1, $2::bigint) n
             RETURNING id",
            &[&user, &MANY],
        )
        .await
        .unwrap();
    let keys: Vec<SessionKey> = rows
        .iter()
        .map(|row| SessionKey::new(user, row.get(0)))
        .collect();
    let kept = session(&db.repo, bystander).await;
    for key in keys.iter().chain([&kept]) {
        assert!(live.check(*key).await.unwrap().is_some());
    }
    let status = live.status();
    assert_eq!(status.entries, keys.len() + 1);

    assert_eq!(db.repo.revoke_all(user).await.unwrap(), MANY as u64);
    let heard = until(&live, "every revocation", |s| {
        s.endings_heard >= status.endings_heard + MANY as u64
    })
    .await;
    assert_eq!(heard.endings_heard, status.endings_heard + MANY as u64);
    for key in &keys {
        assert_eq!(check(&live, *key).await, (false, true));
    }
    assert_eq!(check(&live, kept).await, (true, true));
    assert_eq!(live.status().database_answers, status.database_answers);
    live.shutdown().await;
}

#[tokio::test]
async fn activity_batches_keep_idle_sessions_idle_and_busy_sessions_alive_across_two_instances_push()
 {
    let db = TestDb::new().await;
    let relay = CountingRelay::start(db.upstream()).await;
    let policy = || {
        SessionPolicy::default()
            .idle_timeout(Some(Duration::from_secs(60)))
            .activity_interval(Duration::from_secs(1))
            .max_sessions_per_user(None, CapPolicy::Refuse)
    };
    let pool_a =
        build_pool_with_config(db.config_through(relay.port), &PoolSettings::default()).unwrap();
    let a = SessionRepo::with_policy(pool_a, policy()).unwrap();
    let b = SessionRepo::with_policy(db.pool.clone(), policy()).unwrap();
    // Flushes by hand only: the background flush (under idle - activity: 59 s) does not come
    // round during the test.
    let settings = quiet().flush_interval(Duration::from_secs(50));
    let live_a = started(&a, settings.clone()).await;
    let live_b = started(&b, settings).await;
    let user = db.user().await;
    let busy = session(&a, user).await;
    let idle = session(&a, user).await;
    let others: Vec<SessionKey> = {
        let mut others = Vec::new();
        for _ in 0..50 {
            others.push(session(&a, user).await);
        }
        others
    };

    // Both were last active 59 s ago: live for one second more (room for a loaded machine to
    // run what follows before the busy one's activity is written).
    let client = db.client().await;
    client
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() - interval '59 s'
             WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    let backdated = tokio::time::Instant::now();
    for key in [busy, idle] {
        assert!(live_a.check(key).await.unwrap().is_some());
        assert!(live_b.check(key).await.unwrap().is_some());
    }

    // Warm: the batch statement is prepared on a's connection.
    live_a.record_activity(others[0], None);
    assert_eq!(live_a.flush().await.unwrap(), 1);

    // Instance a serves the busy session (and 50 others): no statement per request, one
    // statement for all of them at the flush.
    let wire = relay.count();
    let heartbeats = live_a.status().heartbeats_sent;
    let batches = live_a.status().activity_batches;
    for _ in 0..5 {
        live_a.record_activity(busy, None);
        for key in &others {
            live_a.record_activity(*key, Some("198.51.100.7".parse().unwrap()));
        }
    }
    assert_eq!(
        relay.count() - wire,
        live_a.status().heartbeats_sent - heartbeats,
        "recording activity issues no statement"
    );
    assert_eq!(live_a.status().pending_activity, 51);
    assert_eq!(live_a.flush().await.unwrap(), 51, "every session written");
    assert_eq!(live_a.status().activity_batches, batches + 1);
    assert_eq!(
        relay.count() - wire,
        1 + live_a.status().heartbeats_sent - heartbeats,
        "one statement for 51 sessions"
    );
    // Written since: a second flush has nothing to send.
    live_a.record_activity(busy, None);
    assert_eq!(live_a.flush().await.unwrap(), 0);
    assert_eq!(
        live_a.status().activity_batches,
        batches + 1,
        "nothing sent"
    );

    // Past the idle timeout of b's view of both: b asks the database before refusing.
    tokio::time::sleep_until(backdated + Duration::from_millis(1100)).await;
    let asked = live_b.status().database_answers;
    assert_eq!(
        live_b.check(busy).await.unwrap().map(|s| s.key),
        Some(busy),
        "kept alive by a's activity"
    );
    assert_eq!(live_b.check(idle).await.unwrap(), None, "idle for good");
    assert_eq!(live_b.status().database_answers, asked + 2);
    // Both answers are remembered.
    assert_eq!(check(&live_b, busy).await, (true, true));
    assert_eq!(check(&live_b, idle).await, (false, true));
    // Instance a, which recorded the activity itself, never thought the busy one idle.
    assert_eq!(check(&live_a, busy).await, (true, true));
    // And the database agrees on both.
    assert_eq!(
        a.record_activity(idle, None).await.unwrap(),
        None,
        "the idle one is not live"
    );
    live_a.shutdown().await;
    live_b.shutdown().await;
}

#[tokio::test]
async fn reuse_detection_eviction_cleanup_and_user_deletion_are_pushed() {
    let db = TestDb::new().await;
    let a = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default()
            .rotation_grace(Duration::ZERO)
            .max_sessions_per_user(Some(2), CapPolicy::EvictLeastRecentlyActive),
    )
    .unwrap();
    let live = started(&SessionRepo::new(db.pool.clone()), quiet()).await;

    // Reuse detection: a replaced token presented again revokes the session, inside
    // auth.rotate_session.
    let stolen_user = db.user().await;
    let (stolen, token) = a.create(&NewSession::new(stolen_user, HOUR)).await.unwrap();
    assert!(matches!(
        a.rotate(token.expose_secret()).await.unwrap(),
        Rotation::Rotated { .. }
    ));
    assert!(live.check(stolen.key()).await.unwrap().is_some());
    let heard = live.status().endings_heard;
    assert!(matches!(
        a.rotate(token.expose_secret()).await.unwrap(),
        Rotation::TokenReused { .. }
    ));
    until(&live, "the reuse revocation", |s| s.endings_heard > heard).await;
    assert_eq!(check(&live, stolen.key()).await, (false, true));

    // Eviction at the cap: the least recently active of two goes for a third.
    let crowded = db.user().await;
    let oldest = session(&a, crowded).await;
    let second = session(&a, crowded).await;
    assert!(live.check(oldest).await.unwrap().is_some());
    assert!(live.check(second).await.unwrap().is_some());
    let heard = live.status().endings_heard;
    session(&a, crowded).await;
    until(&live, "the eviction", |s| s.endings_heard > heard).await;
    assert_eq!(check(&live, oldest).await, (false, true));
    assert_eq!(check(&live, second).await, (true, true));

    // Cleanup: an expired session (its expiry moved into the past behind b's back, so b's
    // memory still thinks it live) is deleted, and the deletion pushed.
    let expiring_user = db.user().await;
    let expiring = session(&a, expiring_user).await;
    assert!(live.check(expiring).await.unwrap().is_some());
    db.expire(expiring.session_id).await;
    assert_eq!(check(&live, expiring).await, (true, true), "memory lags");
    let heard = live.status().endings_heard;
    assert!(a.delete_expired().await.unwrap() >= 1);
    until(&live, "the cleanup", |s| s.endings_heard > heard).await;
    assert_eq!(check(&live, expiring).await, (false, true));

    // Deleting the user deletes its sessions by cascade: pushed too.
    let leaving = db.user().await;
    let first = session(&a, leaving).await;
    let other = session(&a, leaving).await;
    for key in [first, other] {
        assert!(live.check(key).await.unwrap().is_some());
    }
    let heard = live.status().endings_heard;
    db.client()
        .await
        .execute("DELETE FROM auth.users WHERE id = $1", &[&leaving])
        .await
        .unwrap();
    until(&live, "the cascade", |s| s.endings_heard >= heard + 2).await;
    assert_eq!(check(&live, first).await, (false, true));
    assert_eq!(check(&live, other).await, (false, true));
    live.shutdown().await;
}

#[tokio::test]
async fn memory_is_bounded_and_the_least_recently_checked_session_is_read_again_push() {
    let db = TestDb::new().await;
    let live = started(&SessionRepo::new(db.pool.clone()), quiet().capacity(2)).await;
    let user = db.user().await;
    let [one, two, three] = [
        session(&db.repo, user).await,
        session(&db.repo, user).await,
        session(&db.repo, user).await,
    ];
    for key in [one, two] {
        assert_eq!(check(&live, key).await, (true, false));
    }
    assert_eq!(check(&live, one).await, (true, true)); // one is now the most recent
    assert_eq!(check(&live, three).await, (true, false)); // evicts two
    assert_eq!(live.status().entries, 2);
    assert_eq!(check(&live, one).await, (true, true));
    assert_eq!(
        check(&live, two).await,
        (true, false),
        "evicted: read again"
    );
    live.shutdown().await;
}

#[tokio::test]
async fn settings_out_of_range_and_a_foreign_pool_are_typed_errors_not_panics_push() {
    let db = TestDb::new().await;
    let repo = SessionRepo::new(db.pool.clone());
    for (settings, field) in [
        (LiveSettings::default().capacity(0), "capacity"),
        (LiveSettings::default().max_batch(0), "max_batch"),
        (
            LiveSettings::default().staleness_bound(Duration::from_secs(7200)),
            "staleness_bound",
        ),
    ] {
        match repo.live_sessions(settings) {
            Err(auth_sessions::Error::InvalidInput { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // A pool this crate did not build: its connection settings are unknown.
    let foreign = auth_sessions::deadpool_postgres::Pool::builder(
        auth_sessions::deadpool_postgres::Manager::new(db.config(), tokio_postgres::NoTls),
    )
    .max_size(1)
    .build()
    .unwrap();
    assert!(matches!(
        SessionRepo::new(foreign).live_sessions(LiveSettings::default()),
        Err(auth_sessions::Error::Config(_))
    ));
}

#[tokio::test]
async fn dropping_every_handle_stops_the_listening_connection_push() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let listeners = async || -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE '%auth_sessions_heartbeat_%'
                   AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    let live = started(
        &SessionRepo::new(db.pool.clone()),
        quiet().heartbeat_interval(Duration::from_millis(50)),
    )
    .await;
    let clone = live.clone();
    // Wait for the first heartbeat to be the connection's last statement.
    until(&live, "a second heartbeat", |s| s.heartbeats_heard >= 2).await;
    assert_eq!(listeners().await, 1);
    drop(live);
    assert!(clone.status().nodes_listening == 1, "a clone keeps it");
    drop(clone);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listeners().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn caught_up_makes_an_instances_own_revocation_refused_at_its_next_check_push() {
    let db = TestDb::new().await;
    let repo = SessionRepo::new(db.pool.clone());
    // Heartbeats every 20 s: any heard within the test was asked for by `caught_up`.
    let live = started(&repo, quiet()).await;
    let user = db.user().await;
    let key = session(&repo, user).await;
    let other = session(&repo, user).await;
    assert_eq!(check(&live, key).await, (true, false));
    assert_eq!(check(&live, other).await, (true, false));
    let before = live.status();

    assert!(repo.revoke(key).await.unwrap());
    assert!(live.caught_up(Duration::from_secs(10)).await, "heard back");
    let after = live.status();
    assert_eq!(
        after.endings_heard,
        before.endings_heard + 1,
        "the ending was heard first"
    );
    assert!(after.heartbeats_heard > before.heartbeats_heard);
    assert_eq!(
        check(&live, key).await,
        (false, true),
        "refused from memory"
    );
    assert_eq!(check(&live, other).await, (true, true));
    assert_eq!(live.status().database_answers, before.database_answers);

    // Nothing to hear it on: memory is cleared instead, and the next check reads the database.
    live.shutdown().await;
    assert!(!live.caught_up(Duration::from_millis(20)).await);
    assert_eq!(live.status().entries, 0);
    assert_eq!(check(&live, other).await, (true, false));
}

/// An end that is not pushed (on Citus, cleanup's deletions are not: schema/015) is learnt
/// when this instance writes activity of its own for the session: the batch statement returns
/// only live sessions, and one it did not return is ended in memory.
#[tokio::test]
async fn an_end_not_pushed_is_learnt_from_the_next_activity_batch_push() {
    let db = TestDb::new().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().activity_interval(Duration::ZERO),
    )
    .unwrap();
    let live = started(&repo, quiet()).await;
    let user = db.user().await;
    let gone = session(&repo, user).await;
    let kept = session(&repo, user).await;
    for key in [gone, kept] {
        assert!(live.check(key).await.unwrap().is_some());
        live.record_activity(key, None);
    }
    let client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE auth.user_sessions DISABLE TRIGGER user_sessions_deleted_notify",
        )
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&gone.user_id, &gone.session_id],
        )
        .await
        .unwrap();
    assert_eq!(
        check(&live, gone).await,
        (true, true),
        "not pushed: memory lags"
    );
    assert_eq!(live.flush().await.unwrap(), 1, "the kept one written");
    assert_eq!(check(&live, gone).await, (false, true), "ended in memory");
    assert_eq!(check(&live, kept).await, (true, true));
    live.shutdown().await;
}
