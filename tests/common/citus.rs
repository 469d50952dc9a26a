//! A Citus cluster for the Citus tests (tests/citus_*.rs): the database CITUS_URL names,
//! migrated, distributed and emptied for one test at a time ([`Cluster`]), with what the tests
//! ask of it (users, shard placements, rows counted on a worker, plans, notices) and the
//! fixtures they share.
//!
//! Included by each Citus test file with `#[path]` (it does not use the per-test databases of
//! `mod.rs`, which Citus cannot clone).

#![allow(dead_code)] // Each Citus test file uses a different part of this module.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::{
    NewSession, PoolSettings, RotationKey, SessionKey, SessionPolicy, SessionRepo, build_pool,
    build_pool_with_tls, distribute, migrate, parse_database_url,
};
use tokio::sync::MutexGuard;
use tokio_postgres::{AsyncMessage, Config, NoTls};
use uuid::Uuid;

pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The shard count the tests distribute with.
pub const SHARDS: u32 = 8;

/// Serializes the tests of this file: they share one database and empty it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn citus_url() -> String {
    match std::env::var("CITUS_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "CITUS_URL is not set. These tests need a Citus coordinator: create a scratch \
             database with the citus extension on the coordinator and every worker and the \
             workers added, then run \
             `CITUS_URL=postgres://USER@HOST:PORT/DB cargo test --test 'citus_*' -- --ignored \
             --test-threads=1`. The tests empty that database's auth tables."
        ),
    }
}

/// A migrated, distributed, emptied database on the cluster, held by one test at a time.
pub struct Cluster {
    pub url: String,
    pub pool: Pool,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    pub async fn new() -> Self {
        let url = citus_url();
        let serial = SERIAL.lock().await;
        // A test that failed while it forced a plan cache mode on the database left it set.
        Self::set_plan_cache_mode_on(&url, None).await;
        let pool = build_pool(&url, &PoolSettings::default()).expect("CITUS_URL must parse");
        let client = match pool.get().await {
            Ok(client) => client,
            Err(err) => panic!("cannot reach the Citus coordinator at CITUS_URL={url}: {err:?}"),
        };
        let version: Option<String> = client
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'citus'",
                &[],
            )
            .await
            .expect("read extensions")
            .map(|row| row.get(0));
        assert!(
            version.is_some(),
            "CITUS_URL={url} has no citus extension: CREATE EXTENSION citus there and on \
             every worker, and add the workers"
        );
        let workers: i64 = client
            .query_one("SELECT count(*) FROM citus_get_active_worker_nodes()", &[])
            .await
            .expect("list workers")
            .get(0);
        assert!(
            workers >= 1,
            "the coordinator at {url} has no active worker"
        );
        drop(client);
        if let Err(err) = migrate(&pool).await {
            panic!(
                "migrate on Citus failed: {err:?}. (A database migrated by another version of \
                 schema/ gives MigrationChanged: recreate the scratch database.)"
            );
        }
        distribute(&pool, Some(SHARDS))
            .await
            .expect("distribute on Citus");
        pool.get()
            .await
            .unwrap()
            .batch_execute("TRUNCATE auth.user_sessions, auth.users")
            .await
            .expect("empty the auth tables");
        Self {
            url,
            pool,
            _serial: serial,
        }
    }

    /// Sets (or, with `None`, resets) the database's default `plan_cache_mode` on the
    /// coordinator and on every node its `pg_dist_node` lists. Citus 13.2 passes `ALTER
    /// DATABASE ... SET` on to the workers itself; 13.0 does not (seen on 13.0.5), so the
    /// statement is also run on each node, with Citus's own propagation off there. Connections
    /// opened afterwards start with it.
    pub async fn set_plan_cache_mode_on(url: &str, mode: Option<&str>) {
        let config = Config::from_str(url).unwrap();
        let database = config.get_dbname().expect("CITUS_URL names a database");
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        let sql = match mode {
            Some(mode) => format!("ALTER DATABASE {quoted} SET plan_cache_mode = {mode}"),
            None => format!("ALTER DATABASE {quoted} RESET plan_cache_mode"),
        };
        let (client, connection) = config
            .connect(NoTls)
            .await
            .unwrap_or_else(|err| panic!("cannot reach the Citus coordinator at {url}: {err}"));
        tokio::spawn(connection);
        client
            .batch_execute(&sql)
            .await
            .expect("set plan_cache_mode");
        let nodes = client
            .query(
                "SELECT nodename, nodeport FROM pg_dist_node
                 WHERE isactive AND noderole = 'primary' AND groupid <> 0",
                &[],
            )
            .await
            .expect("list the nodes");
        for node in nodes {
            let (host, port): (String, i32) = (node.get(0), node.get(1));
            let (worker, connection) = on_node(&config, &host, port)
                .connect(NoTls)
                .await
                .unwrap_or_else(|err| panic!("cannot reach the node {host}:{port}: {err}"));
            tokio::spawn(connection);
            worker
                .batch_execute(&format!("SET citus.enable_ddl_propagation = off; {sql}"))
                .await
                .unwrap_or_else(|err| panic!("set plan_cache_mode on {host}:{port}: {err}"));
        }
    }

    pub async fn set_database_plan_cache_mode(&self, mode: Option<&str>) {
        Self::set_plan_cache_mode_on(&self.url, mode).await;
    }

    /// A pool on one worker: CITUS_WORKER_URL when set, otherwise the first active worker of
    /// `pg_dist_node`, with CITUS_URL's user, password, database, options and TLS settings.
    pub async fn worker_pool(&self) -> Pool {
        if let Ok(url) = std::env::var("CITUS_WORKER_URL")
            && !url.trim().is_empty()
        {
            return build_pool(&url, &PoolSettings::default())
                .expect("CITUS_WORKER_URL must parse");
        }
        let row = self
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT nodename, nodeport FROM pg_dist_node
                 WHERE isactive AND noderole = 'primary' AND shouldhaveshards
                   AND groupid <> 0
                 ORDER BY nodeid LIMIT 1",
                &[],
            )
            .await
            .expect("the coordinator lists no active worker in pg_dist_node");
        let (host, port): (String, i32) = (row.get(0), row.get(1));
        let (base, tls) = parse_database_url(&self.url).unwrap();
        let config = on_node(&base, &host, port);
        eprintln!("CITUS_WORKER_URL unset: using the worker {host}:{port} from pg_dist_node");
        build_pool_with_tls(config, &tls, &PoolSettings::default()).unwrap()
    }

    pub fn repo(&self) -> SessionRepo {
        SessionRepo::new(self.pool.clone())
    }

    pub fn repo_with(&self, policy: SessionPolicy) -> SessionRepo {
        SessionRepo::with_policy(self.pool.clone(), policy).unwrap()
    }

    /// A plain connection to the coordinator, outside the pool, whose notices (such as
    /// `citus.log_remote_commands` output, with their DETAIL line) are collected.
    pub async fn client_with_notices(&self) -> (tokio_postgres::Client, Arc<Mutex<Vec<String>>>) {
        let config = Config::from_str(&self.url).unwrap();
        let (client, mut connection) = config.connect(NoTls).await.expect("connect");
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = notices.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                match message {
                    Ok(AsyncMessage::Notice(notice)) => sink.lock().unwrap().push(format!(
                        "{} | {}",
                        notice.message(),
                        notice.detail().unwrap_or("")
                    )),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        (client, notices)
    }

    /// Inserts a user and returns its id.
    pub async fn user(&self) -> Uuid {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
                &[&format!("{}@example.test", Uuid::new_v4())],
            )
            .await
            .expect("insert user")
            .get(0)
    }

    /// At least `n` users, with at least one on each of two different workers (when the
    /// cluster has two).
    pub async fn users_on_every_worker(&self, n: usize) -> Vec<Uuid> {
        let workers: i64 = self
            .pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM citus_get_active_worker_nodes()", &[])
            .await
            .unwrap()
            .get(0);
        let wanted = usize::try_from(workers.min(2)).unwrap();
        let mut users = Vec::new();
        let mut nodes = BTreeSet::new();
        while users.len() < n || nodes.len() < wanted {
            let user = self.user().await;
            nodes.insert(self.node_of(user).await);
            users.push(user);
            assert!(users.len() < 200, "users never reached {wanted} workers");
        }
        users
    }

    /// The node (host:port) holding `user_id`'s shard of `auth.user_sessions`, and the shard.
    pub async fn placement(&self, user_id: Uuid) -> (String, i32, i64) {
        let row = self
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT p.nodename, p.nodeport, p.shardid
                 FROM pg_dist_shard_placement p
                 WHERE p.shardid = get_shard_id_for_distribution_column(
                     'auth.user_sessions', $1::uuid)",
                &[&user_id],
            )
            .await
            .expect("find the user's shard");
        (row.get(0), row.get(1), row.get(2))
    }

    pub async fn node_of(&self, user_id: Uuid) -> String {
        let (host, port, _) = self.placement(user_id).await;
        format!("{host}:{port}")
    }

    /// Rows of `user_id` in its shard, counted on the worker that holds it (not through the
    /// coordinator).
    pub async fn rows_in_shard(&self, user_id: Uuid) -> i64 {
        let (host, port, shard) = self.placement(user_id).await;
        let config = on_node(&Config::from_str(&self.url).unwrap(), &host, port);
        let (client, connection) = config.connect(NoTls).await.expect("connect to worker");
        tokio::spawn(connection);
        client
            .query_one(
                &format!("SELECT count(*) FROM auth.user_sessions_{shard} WHERE user_id = $1"),
                &[&user_id],
            )
            .await
            .expect("count rows in the shard on its worker")
            .get(0)
    }

    /// Moves a session's expiry one hour into the past (database clock).
    pub async fn expire(&self, key: SessionKey) {
        let updated = self
            .pool
            .get()
            .await
            .unwrap()
            .execute(
                "UPDATE auth.user_sessions SET created_at = now() - interval '2 hours', \
                 expires_at = now() - interval '1 hour' WHERE user_id = $1 AND id = $2",
                &[&key.user_id, &key.session_id],
            )
            .await
            .expect("expire session");
        assert_eq!(updated, 1, "no session {key:?} to expire");
    }

    /// A plain connection to the coordinator, outside the pool.
    pub async fn client(&self) -> tokio_postgres::Client {
        let config = Config::from_str(&self.url).unwrap();
        let (client, connection) = config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .get(0)
    }

    pub async fn explain(&self, sql: &str) -> String {
        let rows = self
            .pool
            .get()
            .await
            .unwrap()
            .query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
            .await
            .unwrap_or_else(|err| panic!("EXPLAIN failed: {err:?}\n{sql}"));
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `base` (CITUS_URL's settings) pointed at the node `host:port`: the same user, password,
/// database and options.
fn on_node(base: &Config, host: &str, port: i32) -> Config {
    // Config::host and ::port append to the URL's lists: start from an empty config.
    let mut config = Config::new();
    config.host(host).port(u16::try_from(port).unwrap());
    if let Some(user) = base.get_user() {
        config.user(user);
    }
    if let Some(password) = base.get_password() {
        config.password(password);
    }
    if let Some(dbname) = base.get_dbname() {
        config.dbname(dbname);
    }
    if let Some(options) = base.get_options() {
        config.options(options);
    }
    config
}

pub fn new_session(user_id: Uuid, device: &str) -> NewSession {
    NewSession::new(user_id, DAY)
        .with_device_info(device)
        .with_ip_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        .with_user_agent(format!("agent of {device}"))
}

/// A fixed rotation key, shared by every repository of a test.
pub fn key() -> RotationKey {
    RotationKey::from_bytes(&[42; 32]).unwrap()
}
