//! Per-test databases on a real PostgreSQL.
//!
//! The first test of a process migrates a template database named after a hash of the embedded
//! migrations (so it is shared by every test process and rebuilt only when `schema/` changes).
//! Each test then gets its own database cloned from it, dropped when the test ends. Databases
//! left by dead test processes are swept when the template is first needed.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use auth_sessions::{PoolSettings, SessionRepo, build_pool_with_config, deadpool_postgres::Pool};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

const TEST_DB_PREFIX: &str = "auth_sessions_test_";
const TEMPLATE_PREFIX: &str = "auth_sessions_tpl_";
/// Advisory lock key that serializes template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x7465_6d70_6c61_7465;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The server the tests use: `DATABASE_URL`, or the crate's default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| auth_sessions::DEFAULT_DATABASE_URL.into())
}

pub fn server_config() -> Config {
    Config::from_str(&database_url()).expect("DATABASE_URL must be a valid PostgreSQL URL")
}

/// A connection to the server's maintenance database. Panics with instructions when there is
/// no server: a missing server is a loud failure, never a skipped test.
pub async fn admin() -> Client {
    match server_config().connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(err) => panic!(
            "cannot reach PostgreSQL at {} ({err}). Start it (for example \
             `pg_ctlcluster 15 main start`) or point DATABASE_URL at a server.",
            database_url()
        ),
    }
}

/// A database of its own for one test, cloned from the migrated template.
pub struct TestDb {
    pub name: String,
    pub pool: Pool,
    pub repo: SessionRepo,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::with_settings(PoolSettings::default()).await
    }

    pub async fn with_settings(settings: PoolSettings) -> Self {
        let template = TEMPLATE.get_or_init(create_template).await;
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("create test database");
        let pool = build_pool_with_config(server_config().dbname(&name).clone(), &settings)
            .expect("build pool");
        let repo = SessionRepo::new(pool.clone());
        Self { name, pool, repo }
    }

    /// The connection settings of this test's database.
    pub fn config(&self) -> Config {
        server_config().dbname(&self.name).clone()
    }

    /// A URL for this test's database: `DATABASE_URL` with the database name replaced.
    pub fn url(&self) -> String {
        url_for(&self.name)
    }

    /// A plain connection to this test's database, outside the pool.
    pub async fn client(&self) -> Client {
        let (client, connection) = self.config().connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
    }

    /// Inserts a user and returns its id.
    pub async fn user(&self) -> Uuid {
        let client = self.pool.get().await.expect("pooled connection");
        let row = client
            .query_one(
                "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
                &[&format!("{}@example.test", Uuid::new_v4())],
            )
            .await
            .expect("insert user");
        row.get(0)
    }

    /// Moves a session's expiry one hour into the past (database clock).
    pub async fn expire(&self, session_id: Uuid) {
        let client = self.pool.get().await.expect("pooled connection");
        let updated = client
            .execute(
                "UPDATE auth.user_sessions SET created_at = now() - interval '2 hours', \
                 expires_at = now() - interval '1 hour' WHERE id = $1",
                &[&session_id],
            )
            .await
            .expect("expire session");
        assert_eq!(updated, 1, "no session {session_id} to expire");
    }

    /// Rows in `auth.user_sessions`, whatever their state.
    pub async fn session_rows(&self) -> i64 {
        let client = self.pool.get().await.expect("pooled connection");
        client
            .query_one("SELECT count(*) FROM auth.user_sessions", &[])
            .await
            .expect("count")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = admin().await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) && !std::thread::panicking() {
            panic!("could not drop test database {}", self.name);
        }
    }
}

/// Creates (once per schema version) the migrated template, sweeping leftovers first.
async fn create_template() -> String {
    let mut hasher = Sha256::new();
    for migration in auth_sessions::MIGRATIONS {
        hasher.update(migration.version.to_be_bytes());
        hasher.update(migration.sql.as_bytes());
    }
    let template = format!("{TEMPLATE_PREFIX}{}", &hex::encode(hasher.finalize())[..16]);

    let admin = admin().await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("lock");
    sweep(&admin, &template).await;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .expect("look up template")
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            admin.batch_execute(&sql).await.expect("create template");
        }
        let pool = build_pool_with_config(
            server_config().dbname(&building).clone(),
            &PoolSettings::default(),
        )
        .expect("pool");
        auth_sessions::migrate(&pool)
            .await
            .expect("migrate template");
        pool.close();
        for sql in [
            format!("ALTER DATABASE {building} RENAME TO {template}"),
            format!("ALTER DATABASE {template} IS_TEMPLATE true"),
        ] {
            admin.batch_execute(&sql).await.expect("publish template");
        }
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("unlock");
    template
}

/// Drops test databases of processes that no longer run, and templates of other schemas.
async fn sweep(admin: &Client, current_template: &str) {
    let rows = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) OR starts_with(datname, $2)",
            &[&TEST_DB_PREFIX, &TEMPLATE_PREFIX],
        )
        .await
        .expect("list databases");
    for row in rows {
        let name: String = row.get(0);
        let stale = if let Some(rest) = name.strip_prefix(TEST_DB_PREFIX) {
            let pid = rest.split('_').next().unwrap_or_default();
            !std::path::Path::new("/proc").join(pid).exists()
        } else {
            name != current_template
        };
        if stale {
            for sql in [
                format!("ALTER DATABASE {name} IS_TEMPLATE false"),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ] {
                admin
                    .batch_execute(&sql)
                    .await
                    .expect("sweep leftover database");
            }
        }
    }
}

/// `DATABASE_URL` with the database name replaced by `name`.
pub fn url_for(name: &str) -> String {
    let url = database_url();
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// An empty database of its own (not cloned from the migrated template), for tests of the
/// migrations themselves. Drop it with [`EmptyDb::drop_now`].
pub struct EmptyDb {
    pub name: String,
}

impl EmptyDb {
    pub async fn new(tag: &str) -> Self {
        let name = format!("{TEST_DB_PREFIX}{}_{tag}", std::process::id());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create empty database");
        Self { name }
    }

    pub fn url(&self) -> String {
        url_for(&self.name)
    }

    pub fn pool(&self) -> Pool {
        build_pool_with_config(
            server_config().dbname(&self.name).clone(),
            &PoolSettings::default(),
        )
        .expect("build pool")
    }

    pub async fn drop_now(self) {
        admin()
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop empty database");
    }
}
