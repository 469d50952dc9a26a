//! Live sessions on a Citus cluster: session endings raised on the workers (where the shards
//! and their triggers are) reach an instance that listens on every node
//! (`LiveSettings::citus_nodes`). Ignored by default, like the other tests/citus_*.rs, and run the same way:
//!
//! ```text
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/<db> \
//!     cargo test --test citus_push -- --ignored --test-threads=1
//! ```
//!
//! Run on a coordinator with two workers: see docs/SCALING.md, "Citus run".

#[path = "common/citus.rs"]
mod cluster;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use auth_sessions::{LiveSessions, LiveSettings, Rotation, SessionKey, SessionPolicy};
use cluster::{Cluster, new_session};

async fn heard(live: &LiveSessions, at_least: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live.status().endings_heard < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "endings not heard: {:?}",
            live.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
#[ignore = "needs a Citus cluster: CITUS_URL"]
async fn citus_revocations_on_every_worker_are_pushed_to_an_instance_listening_on_every_node() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let workers: i64 = cluster
        .scalar("SELECT count(*) FROM citus_get_active_worker_nodes()")
        .await;
    let live = repo
        .live_sessions(
            LiveSettings::default()
                .staleness_bound(Duration::from_secs(30))
                .citus_nodes(true),
        )
        .unwrap();
    assert!(
        live.listening(Duration::from_secs(10)).await,
        "{:?}",
        live.status()
    );
    assert_eq!(
        live.status().nodes as i64,
        1 + workers,
        "the coordinator and every worker"
    );

    // Sessions on (at least) two workers, each revoked: every revocation heard.
    let mut keys: Vec<SessionKey> = Vec::new();
    for user in cluster.users_on_every_worker(4).await {
        let (session, _) = repo.create(&new_session(user, "laptop")).await.unwrap();
        keys.push(session.key());
    }
    for key in &keys {
        assert!(live.check(*key).await.unwrap().is_some());
    }
    let before = live.status();
    for key in &keys {
        assert!(repo.revoke(*key).await.unwrap());
    }
    heard(&live, before.endings_heard + keys.len() as u64).await;
    for key in &keys {
        assert_eq!(live.check(*key).await.unwrap(), None);
    }
    assert_eq!(live.status().database_answers, before.database_answers);

    // revoke_all of a user, and the deletion of a user (cascading on the worker), too.
    let users = cluster.users_on_every_worker(2).await;
    let mut all = Vec::new();
    for user in &users {
        for device in ["a", "b", "c"] {
            all.push(
                repo.create(&new_session(*user, device))
                    .await
                    .unwrap()
                    .0
                    .key(),
            );
        }
    }
    for key in &all {
        assert!(live.check(*key).await.unwrap().is_some());
    }
    let before = live.status();
    assert_eq!(repo.revoke_all(users[0]).await.unwrap(), 3);
    // A plain connection, where citus.enable_unsafe_triggers is off: the triggers on the shards
    // fire without it (Citus checks it when a table is distributed or a trigger created).
    let client = cluster.client().await;
    let unsafe_triggers: String = client
        .query_one("SHOW citus.enable_unsafe_triggers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unsafe_triggers, "off");
    client
        .execute("DELETE FROM auth.users WHERE id = $1", &[&users[1]])
        .await
        .unwrap();
    heard(&live, before.endings_heard + 6).await;
    for key in all.iter().filter(|key| users[..2].contains(&key.user_id)) {
        assert_eq!(live.check(*key).await.unwrap(), None);
    }
    live.shutdown().await;
}

/// Revocations inside the functions delegated to the workers (reuse detection in
/// `auth.rotate_session`, eviction at the cap in `auth.create_session`) are raised on the
/// worker that runs them and heard.
#[tokio::test]
#[ignore = "needs a Citus cluster: CITUS_URL"]
async fn citus_revocations_inside_delegated_functions_are_pushed() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo_with(
        SessionPolicy::default()
            .rotation_grace(Duration::ZERO)
            .max_sessions_per_user(Some(1), auth_sessions::CapPolicy::EvictLeastRecentlyActive),
    );
    let live = repo
        .live_sessions(
            LiveSettings::default()
                .staleness_bound(Duration::from_secs(30))
                .citus_nodes(true),
        )
        .unwrap();
    assert!(live.listening(Duration::from_secs(10)).await);
    for user in cluster.users_on_every_worker(2).await {
        // Reuse: the replaced token presented again revokes the session.
        let (stolen, token) = repo.create(&new_session(user, "stolen")).await.unwrap();
        assert!(live.check(stolen.key()).await.unwrap().is_some());
        assert!(matches!(
            repo.rotate(token.expose_secret()).await.unwrap(),
            Rotation::Rotated { .. }
        ));
        let before = live.status().endings_heard;
        assert!(matches!(
            repo.rotate(token.expose_secret()).await.unwrap(),
            Rotation::TokenReused { .. }
        ));
        heard(&live, before + 1).await;
        assert_eq!(live.check(stolen.key()).await.unwrap(), None);

        // Eviction: a cap of one, a second login evicts the first.
        let (first, _) = repo.create(&new_session(user, "first")).await.unwrap();
        assert!(live.check(first.key()).await.unwrap().is_some());
        let before = live.status().endings_heard;
        let (second, _) = repo.create(&new_session(user, "second")).await.unwrap();
        heard(&live, before + 1).await;
        assert_eq!(live.check(first.key()).await.unwrap(), None);
        assert!(live.check(second.key()).await.unwrap().is_some());
    }
    live.shutdown().await;
}

/// Multi-shard statements beside the triggers: Citus commits a statement that writes several
/// shards with two-phase commit, which PostgreSQL refuses for a transaction that ran NOTIFY.
/// The activity batches of live sessions (sessions of users on both workers, one UPDATE) and
/// cleanup's deletion of idle sessions on both workers must work, and an instance decides the
/// idle ones ended itself (cleanup's deletions are not pushed on Citus: schema/015).
#[tokio::test]
#[ignore = "needs a Citus cluster: CITUS_URL"]
async fn citus_activity_batches_and_cleanup_run_beside_the_triggers() {
    let cluster = Cluster::new().await;
    let idle = Duration::from_secs(3);
    let repo = cluster.repo_with(
        SessionPolicy::default()
            .activity_interval(Duration::ZERO)
            .idle_timeout(Some(idle)),
    );
    let live = repo
        .live_sessions(
            LiveSettings::default()
                .staleness_bound(Duration::from_secs(30))
                .flush_interval(Duration::from_secs(2))
                .citus_nodes(true),
        )
        .unwrap();
    assert!(live.listening(Duration::from_secs(10)).await);
    let users = cluster.users_on_every_worker(4).await;
    let mut busy = Vec::new();
    let mut quiet = Vec::new();
    for user in &users {
        busy.push(
            repo.create(&new_session(*user, "busy"))
                .await
                .unwrap()
                .0
                .key(),
        );
        quiet.push(
            repo.create(&new_session(*user, "quiet"))
                .await
                .unwrap()
                .0
                .key(),
        );
    }
    for key in busy.iter().chain(&quiet) {
        assert!(live.check(*key).await.unwrap().is_some());
    }
    // Activity on the busy ones, from a new address, written in batches spanning both workers,
    // until the quiet ones are idle.
    let started = tokio::time::Instant::now();
    let mut round = 0u8;
    while started.elapsed() < idle + Duration::from_millis(500) {
        round = round.wrapping_add(1);
        for key in &busy {
            live.record_activity(*key, Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, round))));
        }
        live.flush().await.expect("an activity batch on Citus");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = live.status();
    assert!(
        status.activity_written >= busy.len() as u64 * 2,
        "{status:?}"
    );
    for key in &busy {
        assert!(live.check(*key).await.unwrap().is_some(), "kept alive");
    }
    for key in &quiet {
        assert_eq!(live.check(*key).await.unwrap(), None, "idle");
    }
    // Cleanup deletes the idle sessions on both workers in one multi-shard statement.
    let deleted = repo.delete_expired().await.expect("cleanup on Citus");
    assert_eq!(deleted, quiet.len() as u64);
    let batch = repo
        .delete_expired_batch(100)
        .await
        .expect("a cleanup batch on Citus");
    assert_eq!(batch.deleted(), 0, "{batch:?}");
    for key in &busy {
        assert!(live.check(*key).await.unwrap().is_some());
    }
    live.shutdown().await;
}

/// An instance whose pool points at a worker (Citus 13 workers carry the metadata) listens on
/// that worker, the coordinator and the other worker, each once, and hears revocations made
/// through the coordinator on both workers.
#[tokio::test]
#[ignore = "needs a Citus cluster: CITUS_URL"]
async fn citus_an_instance_on_a_worker_listens_on_every_node_once() {
    let cluster = Cluster::new().await;
    let nodes: i64 = cluster
        .scalar("SELECT count(*) FROM pg_dist_node WHERE isactive AND noderole = 'primary'")
        .await;
    let on_worker = auth_sessions::SessionRepo::new(cluster.worker_pool().await);
    let live = on_worker
        .live_sessions(
            LiveSettings::default()
                .staleness_bound(Duration::from_secs(30))
                .citus_nodes(true),
        )
        .unwrap();
    assert!(live.listening(Duration::from_secs(10)).await);
    assert_eq!(
        live.status().nodes as i64,
        nodes,
        "each registered node once: {:?}",
        live.status()
    );
    let repo = cluster.repo();
    let mut keys = Vec::new();
    for user in cluster.users_on_every_worker(4).await {
        keys.push(
            repo.create(&new_session(user, "phone"))
                .await
                .unwrap()
                .0
                .key(),
        );
    }
    for key in &keys {
        assert!(live.check(*key).await.unwrap().is_some());
    }
    let before = live.status();
    for key in &keys {
        assert!(repo.revoke(*key).await.unwrap());
    }
    heard(&live, before.endings_heard + keys.len() as u64).await;
    assert_eq!(
        live.status().endings_heard,
        before.endings_heard + keys.len() as u64,
        "each ending heard once"
    );
    for key in &keys {
        assert_eq!(live.check(*key).await.unwrap(), None);
    }
    live.shutdown().await;
}
