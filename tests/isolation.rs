//! What the statements need from the server, pinned whatever it is configured to do:
//!
//! - every pooled connection runs at READ COMMITTED, even where the database's default is
//!   REPEATABLE READ (rotation relies on each statement taking a fresh snapshot);
//! - every pooled connection plans under `plan_cache_mode = auto`, even where the database
//!   forces generic plans (Citus has none for several statements), and so do the session
//!   functions whatever their caller's setting;
//! - retryable failures (serialization failure, deadlock, lock not available, closed
//!   connection) are told apart from the rest;
//! - migrations are not cut off by the pool's `statement_timeout` (or a `lock_timeout`) while
//!   another instance holds the migration lock.

mod common;

use std::time::{Duration, Instant};

use auth_sessions::deadpool_postgres::{self, Pool};
use auth_sessions::{
    Error, MIGRATIONS, NewSession, PoolSettings, RefreshToken, Rotation, RotationKey,
    SessionPolicy, SessionRepo, migrate,
};
use common::locks::lock_waiters;
use common::{EmptyDb, TestDb};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The key of the advisory lock `migrate` takes (`LOCK_KEY` in src/migrate.rs, "authsess").
/// The migration test checks that `migrate` really waits on it.
const MIGRATION_LOCK_KEY: i64 = 0x6175_7468_7365_7373;

fn key() -> RotationKey {
    RotationKey::from_bytes(b"the isolation tests' rotation key, 32+ bytes").unwrap()
}

async fn show(client: &Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn wait_for_lock_waiters(observer: &Client, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock_waiters(observer).await < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} statements waited on the lock after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rotates `token` from 8 tasks at once, while the session's row is locked, so that all 8
/// statements are queued on the row when the lock is released.
async fn eight_concurrent_rotations(
    db: &TestDb,
    repo: &SessionRepo,
    session_id: uuid::Uuid,
    token: &RefreshToken,
) -> Vec<Result<Rotation, Error>> {
    let observer = db.client().await;
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
        &[&session_id],
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (repo, token) = (repo.clone(), token.expose_secret().to_owned());
            tokio::spawn(async move { repo.rotate(&token).await })
        })
        .collect();
    wait_for_lock_waiters(&observer, 8).await;
    tx.rollback().await.unwrap();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_converges_under_a_repeatable_read_database_default() {
    let db = TestDb::new().await;
    common::admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
            db.name
        ))
        .await
        .unwrap();
    let plain = db.client().await;
    assert_eq!(
        show(&plain, "default_transaction_isolation").await,
        "repeatable read",
        "the database default did not take"
    );

    let pool = common::pool_for(db.config(), &PoolSettings::default().max_size(8));
    assert_eq!(
        show(&pool.get().await.unwrap(), "default_transaction_isolation").await,
        "read committed"
    );
    let repo =
        SessionRepo::with_policy(pool, SessionPolicy::default().rotation_key(key())).unwrap();
    let user = db.user().await;
    let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let successor = key().successor(&token).unwrap();

    let results = eight_concurrent_rotations(&db, &repo, session.id, &token).await;
    for result in results {
        match result {
            Ok(Rotation::Rotated { session: s, token }) => {
                assert_eq!(s.id, session.id);
                assert_eq!(token, successor, "two callers got different successors");
            }
            other => panic!("a concurrent rotation failed: {other:?}"),
        }
    }

    // The control: the same race on connections that keep the database's default fails with
    // serialization failures, which are classified as retryable.
    let mut manager_config = db.config();
    manager_config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let manager = deadpool_postgres::Manager::new(manager_config, NoTls);
    let raw: Pool = Pool::builder(manager).max_size(8).build().unwrap();
    let raw_repo =
        SessionRepo::with_policy(raw, SessionPolicy::default().rotation_key(key())).unwrap();
    let (session, token) = raw_repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let results = eight_concurrent_rotations(&db, &raw_repo, session.id, &token).await;
    let mut serialization_failures = 0;
    for result in results {
        match result {
            Ok(Rotation::Rotated { .. }) => {}
            Err(err @ Error::Database(_)) if err.is_retryable() => {
                let Error::Database(db_err) = &err else {
                    unreachable!()
                };
                assert_eq!(db_err.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
                serialization_failures += 1;
            }
            other => panic!("unexpected outcome under repeatable read: {other:?}"),
        }
    }
    println!("under repeatable read: {serialization_failures} of 8 rotations failed with 40001");
    assert!(
        serialization_failures > 0,
        "repeatable read did not conflict"
    );
}

// ---------------------------------------------------------------------------------------------
// Retryable failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_pools_and_the_session_functions_plan_under_auto_whatever_the_database_forces() {
    let db = TestDb::new().await;
    common::admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET plan_cache_mode = force_generic_plan",
            db.name
        ))
        .await
        .unwrap();
    let plain = db.client().await;
    assert_eq!(
        show(&plain, "plan_cache_mode").await,
        "force_generic_plan",
        "the database default did not take"
    );
    let pool = common::pool_for(db.config(), &PoolSettings::default().max_size(1));
    assert_eq!(
        show(&pool.get().await.unwrap(), "plan_cache_mode").await,
        "auto"
    );

    // The functions a Citus coordinator delegates to a worker (where the caller's connection
    // options do not reach) carry the setting themselves.
    let configs: Vec<(String, Vec<String>)> = plain
        .query(
            "SELECT proname::text, coalesce(proconfig, '{}') FROM pg_proc \
             WHERE pronamespace = 'auth'::regnamespace \
               AND proname IN ('create_session', 'rotate_session') ORDER BY proname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let auto = vec!["plan_cache_mode=auto".to_owned()];
    assert_eq!(
        configs,
        [
            ("create_session".to_owned(), auto.clone()),
            ("rotate_session".to_owned(), auto)
        ]
    );

    // On one PostgreSQL every call works under either mode; here, on the pool's connection,
    // past the five custom plans, with an eviction at the cap.
    let repo = SessionRepo::with_policy(
        pool,
        SessionPolicy::default()
            .rotation_key(key())
            .max_sessions_per_user(Some(1), auth_sessions::CapPolicy::EvictLeastRecentlyActive),
    )
    .unwrap();
    let user = db.user().await;
    for _ in 0..6 {
        let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
        assert_eq!(repo.count_live(user).await.unwrap(), 1);
        assert!(matches!(
            repo.rotate(token.expose_secret()).await.unwrap(),
            Rotation::Rotated { .. }
        ));
        assert_eq!(
            repo.revoke_all_except(session.key()).await.unwrap(),
            Some(0)
        );
    }
}

async fn scratch_table(db: &TestDb) -> Client {
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE scratch (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO scratch VALUES (1, 0), (2, 0);",
        )
        .await
        .unwrap();
    client
}

/// Converts through `Error::from` and checks the variant, SQLSTATE and classification.
fn assert_retryable(err: tokio_postgres::Error, code: &SqlState) {
    let err = Error::from(err);
    match &err {
        Error::Database(db_err) => {
            assert_eq!(db_err.code(), Some(code), "{db_err}");
            assert!(db_err.is_retryable(), "{db_err} is not retryable");
        }
        other => panic!("expected Error::Database({}), got {other:?}", code.code()),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_deadlock_is_retryable() {
    let db = TestDb::new().await;
    let _setup = scratch_table(&db).await;
    let mut a = db.client().await;
    let mut b = db.client().await;
    let tx_a = a.transaction().await.unwrap();
    let tx_b = b.transaction().await.unwrap();
    for tx in [&tx_a, &tx_b] {
        tx.batch_execute("SET LOCAL deadlock_timeout = '100ms'")
            .await
            .unwrap();
    }
    tx_a.execute("UPDATE scratch SET n = n + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    tx_b.execute("UPDATE scratch SET n = n + 1 WHERE id = 2", &[])
        .await
        .unwrap();
    // Each now waits for the row the other holds: one of them is chosen as the victim.
    let (first, second) = tokio::join!(
        tx_a.execute("UPDATE scratch SET n = n + 1 WHERE id = 2", &[]),
        tx_b.execute("UPDATE scratch SET n = n + 1 WHERE id = 1", &[]),
    );
    let err = match (first, second) {
        (Err(err), Ok(_)) | (Ok(_), Err(err)) => err,
        other => panic!("expected exactly one deadlock victim, got {other:?}"),
    };
    assert_retryable(err, &SqlState::T_R_DEADLOCK_DETECTED);
}

#[tokio::test]
async fn a_lock_not_available_is_retryable() {
    let db = TestDb::new().await;
    let _setup = scratch_table(&db).await;
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM scratch WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap();

    let other = db.client().await;
    let err = other
        .execute("SELECT 1 FROM scratch WHERE id = 1 FOR UPDATE NOWAIT", &[])
        .await
        .unwrap_err();
    assert_retryable(err, &SqlState::LOCK_NOT_AVAILABLE);

    other
        .batch_execute("SET lock_timeout = '100ms'")
        .await
        .unwrap();
    let err = other
        .execute("UPDATE scratch SET n = n + 1 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_retryable(err, &SqlState::LOCK_NOT_AVAILABLE);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_serialization_failure_is_retryable() {
    let db = TestDb::new().await;
    let _setup = scratch_table(&db).await;
    let mut a = db.client().await;
    let b = db.client().await;
    let tx = a
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    // The snapshot is taken here...
    tx.query_one("SELECT n FROM scratch WHERE id = 1", &[])
        .await
        .unwrap();
    // ...then another transaction changes the row and commits...
    b.execute("UPDATE scratch SET n = n + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    // ...so updating it in the first one cannot be serialized.
    let err = tx
        .execute("UPDATE scratch SET n = n + 1 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_retryable(err, &SqlState::T_R_SERIALIZATION_FAILURE);
}

#[tokio::test]
async fn a_closed_connection_is_retryable_and_other_failures_are_not() {
    let db = TestDb::new().await;
    let _setup = scratch_table(&db).await;
    let victim = db.client().await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    db.client()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = Error::from(victim.execute("SELECT 1", &[]).await.unwrap_err());
    match &err {
        Error::Database(db_err) => assert!(db_err.is_closed() && db_err.is_retryable()),
        other => panic!("expected Error::Database, got {other:?}"),
    }
    assert!(err.is_retryable());

    let client = db.client().await;
    for sql in [
        "INSERT INTO scratch VALUES (1, 0)", // unique violation
        "SELECT * FROM no_such_table",       // undefined table
        "SELECT 1 / 0",                      // division by zero
    ] {
        let err = Error::from(client.execute(sql, &[]).await.unwrap_err());
        assert!(!err.is_retryable(), "{sql}: {err:?}");
    }
    client
        .batch_execute("SET statement_timeout = '50ms'")
        .await
        .unwrap();
    let err = Error::from(client.execute("SELECT pg_sleep(1)", &[]).await.unwrap_err());
    assert!(matches!(err, Error::StatementTimeout), "{err:?}");
    assert!(!err.is_retryable());
}

// ---------------------------------------------------------------------------------------------
// Migrations and the pool's timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn migrate_waits_for_another_instance_past_the_pools_statement_timeout() {
    let db = EmptyDb::new("migrate_wait").await;
    let config = common::server_config().dbname(&db.name).clone();
    // A lock_timeout set on the database must not cut the wait short either.
    common::admin()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET lock_timeout = '100ms'",
            db.name
        ))
        .await
        .unwrap();
    let (holder, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();

    let pool = common::pool_for(
        config.clone(),
        &PoolSettings::default().statement_timeout(Duration::from_millis(200)),
    );
    let running = tokio::spawn({
        let pool = pool.clone();
        async move { migrate(&pool).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!running.is_finished(), "migrate did not wait for the lock");
    let waiting: i64 = holder
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 1, "migrate is not waiting on the migration lock");
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();

    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("migrate finishes once the lock is released")
        .unwrap()
        .expect("migrate succeeds after waiting 1 s under a 200 ms statement_timeout");
    assert_eq!(report.applied.len(), MIGRATIONS.len());

    // The pool's own settings are untouched after the migration.
    let client = pool.get().await.unwrap();
    assert_eq!(show(&client, "statement_timeout").await, "200ms");
    assert_eq!(show(&client, "lock_timeout").await, "100ms");
    drop(client);
    pool.close();
    drop(holder);
    db.drop_now().await;
}
