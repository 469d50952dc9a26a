//! Every statement of the `SessionRepo` API under each plan cache mode on a Citus cluster
//! (distributed PostgreSQL), and a pool of its own that forces generic plans refused with a
//! clear error.
//!
//! Ignored by default: these tests need a Citus coordinator, which the normal suite's
//! per-test databases cannot provide (Citus does not propagate `CREATE DATABASE`). Create one
//! database by hand with the `citus` extension in it on the coordinator and on every worker,
//! and the workers added (`citus_add_node`), then run every Citus file (`tests/citus_*.rs`)
//!
//! ```text
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/<db> \
//!     cargo test --test 'citus_*' -- --ignored --test-threads=1
//! ```
//!
//! or one of them with `--test citus_plan_cache`. Every test migrates that database, distributes it with
//! 8 shards (both idempotent) and then EMPTIES `auth.users` and `auth.user_sessions`: point
//! CITUS_URL at a scratch database only. The tests serialize themselves on a lock, so they
//! never see each other's rows, and cargo runs one test file after another. The cluster handle
//! and its fixtures are in tests/common/citus.rs.
//!
//! Without CITUS_URL an ignored test run fails loudly rather than passing silently.

use std::str::FromStr;
use std::time::Duration;

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::{
    CapPolicy, Error, PoolSettings, RevokeReason, Rotation, SessionPolicy, SessionRepo, Validation,
    build_pool,
};
use tokio_postgres::{Config, NoTls};

#[path = "common/citus.rs"]
mod cluster;
#[path = "common/outcomes.rs"]
mod outcomes;

use cluster::{Cluster, DAY, key, new_session};
use outcomes::rotated;

// ---------------------------------------------------------------------------------------------
// Plan cache modes
// ---------------------------------------------------------------------------------------------

/// Executions of each statement per mode: more than the five custom plans PostgreSQL makes of
/// a prepared statement before it may switch to a generic one.
const RUNS: usize = 6;

/// `result`'s value, or a panic naming the plan cache mode and the call.
fn ok<T, E: std::fmt::Debug>(mode: &str, what: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|err| panic!("plan_cache_mode = {mode}: {what} failed: {err:?}"))
}

/// Every call of the API, each of its statements executed at least [`RUNS`] times on the one
/// connection of `pool`: logins within a cap (eviction and refusal), lookups, validation,
/// listing, counting, activity, rotation (rotated, grace, reuse, a stale ancestor), the three
/// revocations, cleanup batches, the unbounded cleanup, stats, and the rotation key kept by
/// the database (loaded by [`RUNS`] fresh repositories).
async fn every_call_of_the_api(cluster: &Cluster, pool: &Pool, mode: &str) {
    let capped = |at_cap| {
        SessionRepo::with_policy(
            pool.clone(),
            SessionPolicy::default()
                .max_sessions_per_user(Some(3), at_cap)
                .activity_interval(Duration::ZERO)
                .idle_timeout(Some(DAY)),
        )
        .unwrap()
    };
    let repo = capped(CapPolicy::EvictLeastRecentlyActive);
    let refusing = capped(CapPolicy::Refuse);
    let strict = SessionRepo::with_policy(
        pool.clone(),
        SessionPolicy::default().rotation_grace(Duration::ZERO),
    )
    .unwrap();
    let users = cluster.users_on_every_worker(RUNS).await;
    assert!(users.len() >= RUNS);
    for (n, &user) in users.iter().enumerate() {
        // Four logins at a cap of three: the fourth evicts the least recently active.
        let mut tokens = Vec::new();
        for device in 0..4 {
            let (_, token) = ok(
                mode,
                "create",
                repo.create(&new_session(user, &format!("device {device}")))
                    .await,
            );
            tokens.push(token);
        }
        assert!(
            matches!(
                ok(
                    mode,
                    "validate",
                    repo.validate(tokens[0].expose_secret()).await
                ),
                Validation::Revoked(RevokeReason::Evicted)
            ),
            "{mode}: the fourth login evicts the first"
        );
        let refused = refusing.create(&new_session(user, "one too many")).await;
        assert!(
            matches!(refused, Err(Error::SessionCapReached)),
            "{mode}: {refused:?}"
        );
        let (a0, b0) = (tokens[1].clone(), tokens[2].clone());

        // The key kept by the database, read by a repository of its own.
        let fresh = SessionRepo::new(pool.clone());
        let Validation::Valid(session) =
            ok(mode, "validate", fresh.validate(a0.expose_secret()).await)
        else {
            panic!("{mode}: a live session must validate");
        };
        assert_eq!(
            ok(
                mode,
                "find_by_token",
                repo.find_by_token(a0.expose_secret()).await
            ),
            Some(session.clone())
        );
        assert_eq!(
            ok(mode, "list_devices", repo.list_devices(user).await).len(),
            3
        );
        assert_eq!(ok(mode, "count_live", repo.count_live(user).await), 3);
        let activity = ok(
            mode,
            "record_activity",
            repo.record_activity(session.key(), None).await,
        )
        .expect("a live session records activity");
        assert!(activity.written, "{mode}: a zero interval always writes");

        // Rotation: rotated, then the same successor inside the grace window, then reuse.
        let a1 = rotated(&repo, &a0).await;
        assert_eq!(rotated(&repo, &a0).await, a1, "{mode}: grace");
        assert_eq!(
            ok(
                mode,
                "rotate (reuse)",
                strict.rotate(a0.expose_secret()).await
            ),
            Rotation::TokenReused {
                session_id: session.id,
                user_id: user
            }
        );
        // A stale ancestor: proven, then revoked by the second statement.
        let b1 = rotated(&repo, &b0).await;
        rotated(&repo, &b1).await;
        assert!(
            matches!(
                ok(
                    mode,
                    "rotate (stale)",
                    repo.rotate(b0.expose_secret()).await
                ),
                Rotation::TokenReused { .. }
            ),
            "{mode}: a stale ancestor is reuse"
        );

        // Revocations: one, all but the current one, all.
        let current = tokens[3].session_key();
        let (gone, _) = ok(
            mode,
            "create",
            repo.create(&new_session(user, "gone")).await,
        );
        let (_, other) = ok(
            mode,
            "create",
            repo.create(&new_session(user, "other")).await,
        );
        assert!(ok(mode, "revoke", repo.revoke(gone.key()).await));
        assert_eq!(
            ok(
                mode,
                "revoke_all_except",
                repo.revoke_all_except(current).await
            ),
            Some(1)
        );
        assert!(matches!(
            ok(mode, "validate", repo.validate(other.expose_secret()).await),
            Validation::Revoked(RevokeReason::User)
        ));
        assert_eq!(ok(mode, "revoke_all", repo.revoke_all(user).await), 1);
        assert_eq!(ok(mode, "count_live", repo.count_live(user).await), 0);

        // Something for cleanup: one more session, expired.
        let (doomed, _) = ok(
            mode,
            "create",
            repo.create(&new_session(user, "doomed")).await,
        );
        cluster.expire(doomed.key()).await;
        eprintln!("{mode}: user {n} done");
    }
    // Cleanup and stats: expired, tombstone and idle batches, the unbounded delete, stats.
    let mut deleted = 0;
    for _ in 0..RUNS {
        deleted += ok(
            mode,
            "delete_expired_batch",
            repo.delete_expired_batch(1).await,
        )
        .deleted();
        let stats = ok(mode, "stats", repo.stats().await);
        assert_eq!(stats.live, 0, "{mode}: {stats:?}");
        ok(mode, "delete_expired", repo.delete_expired().await);
    }
    assert!(
        deleted >= 1,
        "{mode}: the batches deleted the expired sessions"
    );
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions WHERE expires_at <= now()")
            .await,
        0,
        "{mode}: every expired session is deleted"
    );
}

/// The whole API on a database whose every node defaults to `force_generic_plan`, then to
/// `force_custom_plan` (`ALTER DATABASE ... SET plan_cache_mode` on the coordinator and on
/// each worker: Citus 13.2 passes it on, 13.0 does not), through a pool of one connection opened after the change, so that every
/// statement is prepared once and executed more than five times, and the functions delegated
/// to the workers run there under the workers' setting. PostgreSQL's own `auto` is what every
/// other test runs under.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_every_statement_works_under_force_generic_plan_and_force_custom_plan() {
    let cluster = Cluster::new().await;
    for mode in ["force_generic_plan", "force_custom_plan"] {
        cluster.set_database_plan_cache_mode(Some(mode)).await;
        // A plain connection opened now (no option of the crate) and the workers' new
        // connections see the database's setting.
        let (client, _) = cluster.client_with_notices().await;
        let shown: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(shown, mode);
        let on_workers: Vec<String> = client
            .query(
                "SELECT result FROM run_command_on_workers('SHOW plan_cache_mode')",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(
            !on_workers.is_empty() && on_workers.iter().all(|shown| shown == mode),
            "{on_workers:?}"
        );
        let pool = build_pool(&cluster.url, &PoolSettings::default().max_size(1)).unwrap();
        every_call_of_the_api(&cluster, &pool, mode).await;
        pool.close();
        cluster
            .pool
            .get()
            .await
            .unwrap()
            .batch_execute("TRUNCATE auth.user_sessions, auth.users")
            .await
            .unwrap();
    }
    cluster.set_database_plan_cache_mode(None).await;
}

/// A pool built without [`build_pool`] whose connections force generic plans: the calls whose
/// statements Citus can route generically work (and so do the session functions, which plan
/// under `auto` whatever the caller asks, and the read of the stored rotation keys), the others
/// fail with
/// [`Error::ForcedGenericPlan`], which says what to change, rather than with a bare database
/// error.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_a_pool_of_its_own_that_forces_generic_plans_is_refused_with_a_clear_error() {
    let cluster = Cluster::new().await;
    let mut config = Config::from_str(&cluster.url).unwrap();
    config.options("-c plan_cache_mode=force_generic_plan");
    let manager = auth_sessions::deadpool_postgres::Manager::new(config, NoTls);
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let shown: String = pool
        .get()
        .await
        .unwrap()
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "force_generic_plan");
    let repo = SessionRepo::with_policy(
        pool.clone(),
        SessionPolicy::default()
            .rotation_key(key())
            .max_sessions_per_user(Some(1), CapPolicy::EvictLeastRecentlyActive),
    )
    .unwrap();
    let user = cluster.user().await;
    for _ in 0..RUNS {
        // Routed generically, or a session function: these work.
        let (session, token) = repo.create(&new_session(user, "phone")).await.unwrap();
        assert_eq!(
            repo.find_by_token(token.expose_secret()).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(repo.count_live(user).await.unwrap(), 1, "the cap evicted");
        rotated(&repo, &token).await;
        assert!(repo.revoke(session.key()).await.unwrap());
        // The keys kept by the database: a plain read of a reference table (and, the first
        // time, an insert into it), which Citus plans generically.
        let stored = SessionRepo::new(pool.clone());
        let minted = stored.mint_token(user).await.unwrap();
        assert_eq!(
            stored.rotate(minted.expose_secret()).await.unwrap(),
            Rotation::Unknown,
            "a minted token whose session was never created"
        );
        // No generic plan on Citus: refused, with the reason.
        for (call, result) in [
            ("revoke_all", repo.revoke_all(user).await.map(|_| ())),
            (
                "validate",
                repo.validate(token.expose_secret()).await.map(|_| ()),
            ),
            ("stats", repo.stats().await.map(|_| ())),
            (
                "delete_expired_batch",
                repo.delete_expired_batch(10)
                    .await
                    .map(|_| ())
                    .map_err(Error::from),
            ),
        ] {
            match result {
                Err(err @ Error::ForcedGenericPlan(_)) => {
                    assert!(err.to_string().contains("plan_cache_mode"), "{call}: {err}");
                    assert!(!err.is_retryable(), "{call}");
                }
                other => panic!("{call}: expected ForcedGenericPlan, got {other:?}"),
            }
        }
    }
}
