//! Per-test databases and service instances on loopback.
//!
//! The server is `DATABASE_URL`, else `postgres://postgres@localhost:5432/postgres` (the crate's
//! convention); an unreachable server is a loud failure. Each test creates its own database
//! (`auth_service_testdb_*`, migrated by the service) and drops it at the end; leftovers of
//! runs more than an hour old are swept when a test starts.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auth_service::{AppState, Settings, password::Passwords, users};
use auth_sessions::{
    PoolSettings, SessionPolicy, SessionRepo, build_pool, deadpool_postgres::Pool,
};
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

pub const PREFIX: &str = "auth_service_testdb_";
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const PASSWORD: &str = "correct horse battery staple";

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| auth_sessions::DEFAULT_DATABASE_URL.to_owned())
}

/// The server's connection settings for the tests' own plain connections; the service's pools
/// take the URL whole, TLS settings (`sslmode`, `sslrootcert`) included.
fn server_config() -> Config {
    auth_sessions::parse_database_url(&server_url())
        .expect("a valid DATABASE_URL")
        .0
}

async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|err| {
        panic!(
            "cannot reach PostgreSQL at {} ({err}); start it or set DATABASE_URL",
            server_url()
        )
    });
    tokio::spawn(connection);
    client
}

/// A database of one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: Pool,
    dropped: bool,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    pub async fn new() -> Self {
        let admin = connect(&server_config()).await;
        sweep(&admin).await;
        let name = format!(
            "{PREFIX}{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {name} IS 'created={}'",
                chrono_now()
            ))
            .await
            .expect("COMMENT ON DATABASE");
        let url = with_dbname(&server_url(), &name);
        let pool = build_pool(&url, &PoolSettings::default()).expect("pool");
        auth_service::migrate::migrate(&pool)
            .await
            .expect("migrate");
        Self {
            name,
            url,
            pool,
            dropped: false,
        }
    }

    /// A second pool on the same database (another instance).
    pub fn another_pool(&self) -> Pool {
        build_pool(&self.url, &PoolSettings::default()).expect("pool")
    }

    /// A plain client on this database, for checks.
    pub async fn client(&self) -> Client {
        let mut config = server_config();
        config.dbname(&self.name);
        connect(&config).await
    }

    /// Creates a user with [`PASSWORD`].
    pub async fn user(&self, email: &str) -> Uuid {
        let hash = passwords().hash(PASSWORD).unwrap();
        users::create_user(&self.pool, email, &hash)
            .await
            .expect("create user")
    }

    /// The address stored with the only session of this database.
    pub async fn stored_address(&self) -> String {
        self.client()
            .await
            .query_one("SELECT host(ip_address) FROM auth.user_sessions", &[])
            .await
            .expect("one session")
            .get(0)
    }

    /// Everything the service stores, as one text: equal before and after means nothing changed.
    pub async fn snapshot(&self) -> String {
        let client = self.client().await;
        let row = client
            .query_one(
                "SELECT coalesce((SELECT string_agg(s::text, '|' ORDER BY s.user_id, s.id) FROM auth.user_sessions s), '')
                     || '#' || coalesce((SELECT string_agg(u::text, '|' ORDER BY u.id) FROM auth.users u), '')
                     || '#' || coalesce((SELECT string_agg(c::text, '|' ORDER BY c.email) FROM auth.user_credentials c), '')",
                &[],
            )
            .await
            .expect("snapshot");
        row.get(0)
    }

    /// Drops the database (other pools on it are cut off: FORCE).
    pub async fn drop(mut self) {
        self.dropped = true;
        self.pool.close();
        let admin = connect(&server_config()).await;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("DROP DATABASE");
    }
}

/// A test that failed before [`TestDb::drop`] still drops its database, from a thread of its
/// own (the test's runtime may be gone).
impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.pool.close();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok((client, connection)) = server_config().connect(NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Drops test databases of earlier runs older than an hour.
async fn sweep(admin: &Client) {
    let rows = admin
        .query(
            "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database
             WHERE datname LIKE 'auth\\_service\\_testdb\\_%'",
            &[],
        )
        .await
        .expect("list databases");
    for row in rows {
        let name: String = row.get(0);
        let comment: String = row.get(1);
        let pid: Option<u32> = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse().ok());
        // Ours, or just created and not yet commented: never a leftover.
        if pid == Some(std::process::id()) {
            continue;
        }
        let created: Option<u64> = comment
            .strip_prefix("created=")
            .and_then(|t| t.parse().ok());
        let alive =
            pid.is_some_and(|pid| std::path::Path::new("/proc").join(pid.to_string()).exists());
        let old = created.is_some_and(|created| chrono_now().saturating_sub(created) > 3600);
        if old || (created.is_none() && !alive) {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The hasher with the service's default parameters.
pub fn passwords() -> Passwords {
    Passwords::new(argon2::Params::default()).unwrap()
}

/// Settings for tests: the defaults with generous login limits (tests of the limits set
/// their own).
pub fn settings() -> Settings {
    let many = std::num::NonZeroU32::new(10_000).unwrap();
    let mut settings = Settings::new(SECRET);
    settings.login_per_minute = many;
    settings.login_burst = many;
    settings.account_per_minute = many;
    settings.account_burst = many;
    settings.pair_per_minute = many;
    settings.pair_burst = many;
    settings
}

/// Starts an instance on loopback with its own repository on `pool`.
pub async fn start(pool: Pool, policy: SessionPolicy, settings: Settings) -> (String, AppState) {
    let repo = SessionRepo::with_policy(pool, policy).expect("policy");
    let state = AppState::new(repo, settings).expect("state");
    let (addr, _task): (SocketAddr, _) = auth_service::routes::spawn_on_loopback(state.clone())
        .await
        .expect("bind loopback");
    (format!("http://{addr}"), state)
}

/// Starts an instance like [`start`] that checks sessions from memory, every ending pushed by
/// the database (the `serve` default), once it listens.
pub async fn start_live(
    pool: Pool,
    policy: SessionPolicy,
    settings: Settings,
    bound: std::time::Duration,
) -> (String, AppState) {
    let repo = SessionRepo::with_policy(pool, policy).expect("policy");
    let live = repo
        .live_sessions(auth_sessions::LiveSettings::default().staleness_bound(bound))
        .expect("live sessions");
    assert!(
        live.listening(std::time::Duration::from_secs(10)).await,
        "live sessions not listening: {:?}",
        live.status()
    );
    let state = AppState::new(repo, settings)
        .expect("state")
        .with_live_sessions(live);
    let (addr, _task): (SocketAddr, _) = auth_service::routes::spawn_on_loopback(state.clone())
        .await
        .expect("bind loopback");
    (format!("http://{addr}"), state)
}

/// An HTTP client that keeps no cookies unless asked.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST /login` with [`PASSWORD`] as a native client: the token answer (asserted 200).
pub async fn login(base: &str, email: &str) -> serde_json::Value {
    let response = http()
        .post(format!("{base}/login"))
        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

/// `GET /me` with `access`: the status.
pub async fn me(base: &str, access: &str) -> reqwest::StatusCode {
    http()
        .get(format!("{base}/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}
