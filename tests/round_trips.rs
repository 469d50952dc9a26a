//! Every `SessionRepo` call costs exactly one round trip on a warm pooled connection.
//!
//! The test puts a small TCP relay between the pool and PostgreSQL and counts, on the wire, the
//! messages after which the client waits for the server: `Sync` (extended protocol) and `Query`
//! (simple protocol). A call that prepares an unnamed statement first (what
//! `tokio_postgres::Client::execute` does with SQL text) shows up as two. It runs with both hot
//! paths: exclusive (every call checks out the pool's one connection) and pipelined (the
//! hot-path calls, or only the read-only ones, share one connection of their own; cleanup
//! still uses the pool's).

mod common;
#[path = "common/relay.rs"]
mod relay;

use std::net::IpAddr;
use std::time::Duration;

use auth_sessions::{
    HotPath, NewSession, PipelineSettings, PoolSettings, Rotation, SessionRepo, Validation,
    build_pool_with_config,
};
use common::TestDb;
use relay::CountingRelay;

#[tokio::test]
async fn every_repository_call_is_one_round_trip_on_a_warm_pooled_connection() {
    one_round_trip_per_call(HotPath::Exclusive).await;
}

#[tokio::test]
async fn every_repository_call_is_one_round_trip_on_a_warm_shared_connection() {
    one_round_trip_per_call(HotPath::Pipelined(
        PipelineSettings::new(1).pipeline_writes(true),
    ))
    .await;
}

#[tokio::test]
async fn every_repository_call_is_one_round_trip_with_only_reads_shared() {
    one_round_trip_per_call(HotPath::Pipelined(PipelineSettings::new(1))).await;
}

async fn one_round_trip_per_call(hot_path: HotPath) {
    let db = TestDb::new().await;
    let relay = CountingRelay::start(db.upstream()).await;
    // One connection, so every call below reuses the same warm connection.
    let pool = build_pool_with_config(
        db.config_through(relay.port),
        &PoolSettings::default().max_size(1),
    )
    .unwrap();
    let repo = SessionRepo::new(pool.clone())
        .with_hot_path(hot_path.clone())
        .unwrap();
    let user = db.user().await;
    let ip: IpAddr = "198.51.100.4".parse().unwrap();
    let new = NewSession::new(user, Duration::from_secs(3600))
        .with_device_info("laptop")
        .with_ip_address(ip)
        .with_user_agent("agent");

    // Each call is measured twice: cold (may prepare its statement) and warm.
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for pass in ["cold", "warm"] {
        let mut costs = Vec::new();
        macro_rules! measure {
            ($name:literal, $call:expr) => {{
                let before = relay.count();
                let result = $call.await.unwrap();
                costs.push(($name, relay.count() - before));
                result
            }};
        }
        let (session, token) = measure!("create", repo.create(&new));
        let (other, _) = repo.create(&new).await.unwrap();
        let found = measure!("find_by_token", repo.find_by_token(token.expose_secret()));
        assert_eq!(found.map(|s| s.key()), Some(session.key()));
        measure!("list_devices", repo.list_devices(user));
        let activity = measure!(
            "record_activity",
            repo.record_activity(session.key(), Some(ip))
        );
        assert!(activity.is_some());
        measure!("count_live", repo.count_live(user));
        assert!(measure!("revoke", repo.revoke(other.key())));
        measure!("revoke_all_except", repo.revoke_all_except(session.key()));
        measure!("delete_expired", repo.delete_expired());
        let validation = measure!("validate", repo.validate(token.expose_secret()));
        assert!(matches!(validation, Validation::Valid(_)), "{validation:?}");
        // The normal path: the presented token is current, one statement rotates it.
        let rotation = measure!("rotate", repo.rotate(token.expose_secret()));
        assert!(matches!(rotation, Rotation::Rotated { .. }), "{rotation:?}");
        assert_eq!(measure!("revoke_all", repo.revoke_all(user)), 1);
        if pass == "cold" {
            cold = costs
        } else {
            warm = costs
        }
    }
    assert_eq!(warm.len(), 11);
    for (name, cost) in &cold {
        // The first call that needs the rotation keys (create, here, which signs the new
        // token) also reads the keys the database keeps, finds none, stores key 1 and reads
        // again: three more statements, the first two prepared (2 + 2 + 1).
        let expected = if *name == "create" { 7 } else { 2 };
        assert_eq!(
            *cost, expected,
            "{name} on first use: prepare, then run: {cold:?}"
        );
    }
    for (name, cost) in &warm {
        assert_eq!(
            *cost, 1,
            "{name} took {cost} round trips on a warm connection: {warm:?}"
        );
    }

    // The counter does see the two round trips of an unnamed statement with parameters.
    let client = pool.get().await.unwrap();
    let before = relay.count();
    client.execute("SELECT $1::int", &[&1i32]).await.unwrap();
    assert_eq!(
        relay.count() - before,
        2,
        "execute with SQL text: prepare, then execute"
    );
    drop(client);
    // The hot-path calls used one shared connection, opened once, and only the bulk call
    // (delete_expired) and the key load used the pool's.
    if let HotPath::Pipelined(_) = hot_path {
        let status = repo.pipeline_status().unwrap();
        assert_eq!((status.open, status.opened), (1, 1), "{status:?}");
    }
}
