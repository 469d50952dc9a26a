//! Live sessions on a Citus cluster: session endings raised on the workers (where the shards
//! and their triggers are) reach an instance that listens on every node
//! (`LiveSettings::citus_nodes`). Ignored by default, like the other tests/citus_*.rs, and run the same way:
//!
//! ```text
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/<db> \
//!     cargo test --test citus_push -- --ignored --test-threads=1
//! ```
//!
//! Not yet run on a cluster: written with the feature, to be run by hand on a coordinator with
//! two workers.

#[path = "common/citus.rs"]
mod cluster;

use std::time::Duration;

use auth_sessions::{LiveSessions, LiveSettings, SessionKey};
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
    cluster
        .client()
        .await
        .execute("DELETE FROM auth.users WHERE id = $1", &[&users[1]])
        .await
        .unwrap();
    heard(&live, before.endings_heard + 6).await;
    for key in all.iter().filter(|key| users[..2].contains(&key.user_id)) {
        assert_eq!(live.check(*key).await.unwrap(), None);
    }
    live.shutdown().await;
}
