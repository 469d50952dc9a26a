//! Every `SessionRepo` call costs exactly one round trip on a warm pooled connection.
//!
//! The test puts a small TCP relay between the pool and PostgreSQL and counts, on the wire, the
//! messages after which the client waits for the server: `Sync` (extended protocol) and `Query`
//! (simple protocol). A call that prepares an unnamed statement first (what
//! `tokio_postgres::Client::execute` does with SQL text) shows up as two.

mod common;
#[path = "common/relay.rs"]
mod relay;

use std::net::IpAddr;
use std::time::Duration;

use auth_sessions::{NewSession, PoolSettings, SessionRepo, build_pool_with_config};
use common::TestDb;
use relay::CountingRelay;
use tokio_postgres::config::Host;

fn upstream(db: &TestDb) -> (String, u16) {
    let config = db.config();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

#[tokio::test]
async fn every_repository_call_is_one_round_trip_on_a_warm_connection() {
    let db = TestDb::new().await;
    let relay = CountingRelay::start(upstream(&db)).await;
    let direct = db.config();
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(relay.port).dbname(&db.name);
    if let Some(user) = direct.get_user() {
        config.user(user);
    }
    if let Some(password) = direct.get_password() {
        config.password(password);
    }
    // One connection, so every call below reuses the same warm connection.
    let pool = build_pool_with_config(config, &PoolSettings::default().max_size(1)).unwrap();
    let repo = SessionRepo::new(pool.clone());
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
        measure!("find_by_token_hash", repo.find_by_token_hash(&token.hash()));
        measure!("list_devices", repo.list_devices(user));
        measure!(
            "record_activity",
            repo.record_activity(session.id, Some(ip))
        );
        measure!("count_live", repo.count_live(user));
        measure!("revoke", repo.revoke(other.id, user));
        measure!(
            "revoke_all_except",
            repo.revoke_all_except(user, session.id)
        );
        measure!("delete_expired", repo.delete_expired());
        measure!("validate", repo.validate(token.expose_secret()));
        let rotation = measure!("rotate", repo.rotate(token.expose_secret()));
        assert!(matches!(rotation, auth_sessions::Rotation::Rotated { .. }));
        measure!("revoke_all", repo.revoke_all(user));
        if pass == "cold" {
            cold = costs
        } else {
            warm = costs
        }
    }
    assert_eq!(warm.len(), 11);
    for (name, cost) in &cold {
        assert_eq!(*cost, 2, "{name} on first use: prepare, then run: {cold:?}");
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
}
