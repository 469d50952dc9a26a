//! What the fault tests share (tests/faults_restart.rs, tests/faults_connections.rs,
//! tests/faults_cut_short.rs): a private PostgreSQL server with a migrated repository, the
//! pipelined hot path they run, the rotation key, and the error variants an outage may give.

use std::sync::Arc;

use auth_sessions::{
    CapPolicy, Error, HotPath, PipelineSettings, PoolSettings, RotationKey, SessionPolicy,
    SessionRepo, build_pool_with_config, migrate,
};
use tokio_postgres::Client;
use uuid::Uuid;

use super::server::PrivateServer;

/// The pipelined hot path with every hot-path call on the shared connections, writes too, so
/// that the tests exercise them with every kind of call.
pub fn pipelined(connections: usize) -> HotPath {
    HotPath::Pipelined(PipelineSettings::new(connections).pipeline_writes(true))
}

/// Starts a private server off the runtime's threads, migrates it, and returns it with a
/// repository on a pool.
pub async fn private_server(
    settings: &PoolSettings,
    hot_path: HotPath,
) -> (Arc<PrivateServer>, SessionRepo) {
    let server = tokio::task::spawn_blocking(PrivateServer::start)
        .await
        .expect("start the private server");
    let pool = build_pool_with_config(server.config(), settings).expect("pool");
    migrate(&pool).await.expect("migrate the private server");
    let policy = SessionPolicy::default()
        .max_sessions_per_user(None, CapPolicy::Refuse)
        .rotation_key(key());
    let repo = SessionRepo::with_policy(pool, policy)
        .unwrap()
        .with_hot_path(hot_path)
        .unwrap();
    (Arc::new(server), repo)
}

/// A new user in `auth.users`, inserted through `client`.
pub async fn insert_user(client: &Client) -> Uuid {
    client
        .query_one(
            "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
            &[&format!("{}@example.test", Uuid::new_v4())],
        )
        .await
        .expect("insert user")
        .get(0)
}

/// The rotation key of every repository in the fault tests.
pub fn key() -> RotationKey {
    RotationKey::from_bytes(b"the fault tests' rotation key, 32+ bytes").unwrap()
}

/// A name for the error variants a broken connection may give; `None` for any other.
pub fn outage_variant(err: &Error) -> Option<String> {
    match err {
        Error::Connect(e) => Some(format!(
            "Connect({})",
            e.code().map_or("no SQLSTATE", |c| c.code())
        )),
        Error::PoolTimeout => Some("PoolTimeout".into()),
        Error::Database(e) => Some(format!(
            "Database(code={}, closed={})",
            e.code().map_or("none", |c| c.code()),
            e.is_closed()
        )),
        _ => None,
    }
}
