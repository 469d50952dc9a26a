//! What spans shards and nodes on a Citus cluster (distributed PostgreSQL): cleanup in batches
//! with two concurrent cleaners, statistics over every shard, and the rotation key the
//! database keeps, shared by repositories and by a connection through a worker.
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
//! or one of them with `--test citus_cluster_wide`. Every test migrates that database, distributes it with
//! 8 shards (both idempotent) and then EMPTIES `auth.users` and `auth.user_sessions`: point
//! CITUS_URL at a scratch database only. The tests serialize themselves on a lock, so they
//! never see each other's rows, and cargo runs one test file after another. The cluster handle
//! and its fixtures are in tests/common/citus.rs.
//!
//! Without CITUS_URL an ignored test run fails loudly rather than passing silently.
//!
//! The test that connects through a worker uses CITUS_WORKER_URL (the same database on one
//! worker) when it is set, otherwise the first active worker the coordinator lists in
//! `pg_dist_node`, with CITUS_URL's user, password, database and TLS settings.

use std::time::Duration;

use auth_sessions::{Error, PoolSettings, SessionPolicy, SessionRepo, Validation, build_pool};

#[path = "common/citus.rs"]
mod cluster;
#[path = "common/outcomes.rs"]
mod outcomes;

use cluster::{Cluster, new_session};
use outcomes::rotated;

// ---------------------------------------------------------------------------------------------
// Across shards and nodes: cleanup, statistics, the shared rotation key
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_cleanup_in_batches_with_two_concurrent_cleaners() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(12).await;
    let (mut expired, mut live, mut tombstones) = (0i64, 0i64, 0i64);
    for &user in &users {
        for n in 0..10 {
            let (session, _) = repo
                .create(&new_session(user, &format!("device {n}")))
                .await
                .unwrap();
            match n {
                0..6 => {
                    cluster.expire(session.key()).await;
                    expired += 1;
                }
                6..8 => {
                    assert!(repo.revoke(session.key()).await.unwrap());
                    tombstones += 1;
                }
                _ => live += 1,
            }
        }
    }
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions WHERE expires_at <= now()")
            .await,
        expired
    );

    // One bounded batch deletes exactly its limit.
    assert_eq!(repo.delete_expired_batch(10).await.unwrap().expired, 10);
    let mut deleted = 10;

    // Two cleaners at once, in small batches, each going on until no expired row is left:
    // no error, no deadlock, every expired row deleted exactly once. (On Citus two multi-shard
    // deletes are serialized by the coordinator; a cleaner that waited finds its batch gone
    // and deletes nothing, which is counted here as a collision.)
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let repo = repo.clone();
            let pool = cluster.pool.clone();
            tokio::spawn(async move {
                let (mut mine, mut batches, mut collisions) = (0u64, 0u64, 0u64);
                loop {
                    let n = repo.delete_expired_batch(7).await?.deleted();
                    batches += 1;
                    mine += n;
                    if n == 0 {
                        let left: i64 = pool
                            .get()
                            .await
                            .unwrap()
                            .query_one(
                                "SELECT count(*) FROM auth.user_sessions \
                                 WHERE expires_at <= now()",
                                &[],
                            )
                            .await
                            .unwrap()
                            .get(0);
                        if left == 0 {
                            return Ok::<_, Error>((mine, batches, collisions));
                        }
                        collisions += 1;
                    }
                    assert!(batches < 1000, "cleaners make no progress");
                }
            })
        })
        .collect();
    for cleaner in cleaners {
        let (mine, batches, collisions) = cleaner
            .await
            .unwrap()
            .expect("a concurrent cleaner failed on Citus");
        eprintln!(
            "cleaner: {mine} rows in {batches} batches, {collisions} empty while rows remained"
        );
        deleted += mine;
    }
    assert_eq!(deleted, expired as u64);
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions WHERE expires_at <= now()")
            .await,
        0
    );
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions")
            .await,
        live + tombstones,
        "cleanup deleted only expired rows"
    );
    for &user in &users {
        assert_eq!(repo.count_live(user).await.unwrap(), 2);
    }

    // Tombstones go once past their retention.
    let no_retention =
        cluster.repo_with(SessionPolicy::default().tombstone_retention(Duration::ZERO));
    assert_eq!(
        no_retention
            .delete_expired_batch(1000)
            .await
            .unwrap()
            .tombstones,
        tombstones as u64
    );
    // The unbounded form.
    let (session, _) = repo.create(&new_session(users[0], "late")).await.unwrap();
    cluster.expire(session.key()).await;
    assert_eq!(repo.delete_expired().await.unwrap(), 1);
    assert_eq!(repo.delete_expired().await.unwrap(), 0);
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions")
            .await,
        live
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_stats_count_every_shard_and_size_the_shards() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(6).await;
    // User n has n + 1 sessions.
    let mut per_user = Vec::new();
    for (n, &user) in users.iter().take(6).enumerate() {
        let mut sessions = Vec::new();
        for d in 0..=n {
            sessions.push(
                repo.create(&new_session(user, &format!("device {d}")))
                    .await
                    .unwrap()
                    .0,
            );
        }
        per_user.push(sessions);
    }
    for &user in users.iter().skip(6) {
        repo.create(&new_session(user, "extra")).await.unwrap();
    }
    let extra = users.len() as u64 - 6;
    assert!(repo.revoke(per_user[5][0].key()).await.unwrap());
    cluster.expire(per_user[4][0].key()).await;

    let before = cluster
        .scalar("SELECT citus_table_size('auth.user_sessions')")
        .await;
    let stats = repo.stats().await.expect("stats on Citus");
    let after = cluster
        .scalar("SELECT citus_table_size('auth.user_sessions')")
        .await;
    let total_before_after = cluster
        .scalar("SELECT citus_total_relation_size('auth.user_sessions')")
        .await;
    let shell = cluster
        .scalar("SELECT pg_table_size('auth.user_sessions')")
        .await;
    eprintln!(
        "stats: {stats:?}; citus_table_size {before}/{after}, citus_total_relation_size \
         {total_before_after}, coordinator shell table {shell}"
    );
    assert_eq!(stats.total, 21 + extra);
    assert_eq!(stats.revoked, 1);
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.live, 19 + extra);
    assert_eq!(stats.users, users.len() as u64);
    assert_eq!(stats.max_live_per_user, 5);
    assert!(stats.table_bytes > 0, "table_bytes must count the shards");
    let (low, high) = (before.min(after) as u64, before.max(after) as u64);
    assert!(
        (low..=high).contains(&stats.table_bytes),
        "table_bytes {} must be citus_table_size ({before}, {after})",
        stats.table_bytes
    );
    assert!(
        stats.table_bytes > shell as u64,
        "table_bytes must reflect the shards, not the coordinator's empty shell ({shell})"
    );
    assert!(stats.index_bytes > 0);
    assert_eq!(
        stats.table_bytes + stats.index_bytes,
        total_before_after as u64,
        "index_bytes must be citus_total_relation_size - citus_table_size"
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_the_rotation_key_kept_by_the_database_is_shared_by_repositories() {
    let cluster = Cluster::new().await;
    let user = cluster.user().await;
    // Default policies: no configured key, so both read the one in auth.rotation_keys.
    let first = cluster.repo();
    let second = SessionRepo::new(build_pool(&cluster.url, &PoolSettings::default()).unwrap());
    let (_, t0) = first.create(&new_session(user, "phone")).await.unwrap();
    let t1 = rotated(&first, &t0).await;
    assert_eq!(
        rotated(&second, &t0).await,
        t1,
        "a second repository on its own pool derives the same successor"
    );
    let t2 = rotated(&second, &t1).await;
    assert_eq!(rotated(&first, &t1).await, t2);
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.rotation_keys")
            .await,
        1
    );
}

/// A service connected to a worker (Citus can serve clients on every node) with the default
/// policy reads the rotation key there too: `distribute` made `auth.rotation_keys` a reference
/// table. The worker is CITUS_WORKER_URL when set, otherwise the first active worker the
/// coordinator lists, reached with CITUS_URL's user, password, database and TLS settings.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_rotation_through_a_worker_uses_the_shared_key() {
    let cluster = Cluster::new().await;
    let user = cluster.user().await;
    let coordinator = cluster.repo();
    let worker = SessionRepo::new(cluster.worker_pool().await);
    let (_, t0) = coordinator
        .create(&new_session(user, "phone"))
        .await
        .unwrap();
    let t1 = rotated(&worker, &t0).await;
    assert_eq!(
        rotated(&coordinator, &t0).await,
        t1,
        "the coordinator's retry within the grace window converges on the worker's successor"
    );
    assert!(matches!(
        worker.validate(t1.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
}
