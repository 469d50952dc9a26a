//! Per-test databases on a real PostgreSQL.
//!
//! The server is `DATABASE_URL`, else the default server, else a throwaway server of our own
//! (see `server.rs`). The first test of a process migrates a template database named after a
//! hash of the embedded migrations (so it is shared by every test process and rebuilt only when
//! `schema/` changes). Each test then gets its own database cloned from it, dropped when the
//! test ends.
//!
//! The server may be shared with other runs: other worktrees, containers, hosts. So every
//! database is named with a random tag of its run (PIDs repeat across containers) and records
//! in its comment who made it and when (`host=H pidns=N pid=P created=T`, templates
//! `used=T` for their last use). When the template is first needed, the sweep drops a test
//! database only if its creator was a process of this host (same host name and PID namespace)
//! that is gone, or it is more than a day old; and another schema's template only when it was
//! last used more than a day ago.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod cleanup;
pub mod faults;
pub mod fixtures;
pub mod locks;
pub mod outcomes;
pub mod running;
pub mod server;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use auth_sessions::{
    PoolSettings, SessionRepo, TlsSettings, build_pool_with_tls, deadpool_postgres::Pool,
    parse_database_url,
};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

pub const TEST_DB_PREFIX: &str = "auth_sessions_testdb_";
pub const TEMPLATE_PREFIX: &str = "auth_sessions_template_";
/// The names of an earlier scheme (no comment, the PID in the name), swept when a day old.
const LEGACY_PREFIXES: [&str; 2] = ["auth_sessions_test_", "auth_sessions_tpl_"];
/// Advisory lock key that serializes template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x7465_6d70_6c61_7465;
/// Past this age a database of another run is a leftover, whoever made it.
pub const LEFTOVER_AGE_SECS: i64 = 24 * 60 * 60;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The server the tests use: `DATABASE_URL`; else the default server if it can be used; else
/// a throwaway server started from the installed binaries (and stderr says so).
pub fn database_url() -> String {
    server::database_url()
}

/// The server's connection settings, without its TLS settings (see [`server_tls`]).
pub fn server_config() -> Config {
    parse_database_url(&database_url())
        .expect("DATABASE_URL must be a valid PostgreSQL URL")
        .0
}

/// The TLS settings of `DATABASE_URL` (`sslmode`, `sslrootcert`): every pool of the tests
/// that talks to that server uses them, so the suite runs over verified TLS when the URL asks
/// for it (`.ci/run` does). The tests' own administrative connections stay plain.
pub fn server_tls() -> TlsSettings {
    parse_database_url(&database_url())
        .expect("DATABASE_URL must be a valid PostgreSQL URL")
        .1
}

/// A pool for `config` (the server's, with another database or user) with the server's TLS
/// settings.
pub fn pool_for(config: Config, settings: &PoolSettings) -> Pool {
    build_pool_with_tls(config, &server_tls(), settings).expect("build pool")
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
             `pg_ctlcluster 15 main start`) or point DATABASE_URL at a server; with \
             DATABASE_URL unset the tests fall back to a server of their own.",
            database_url()
        ),
    }
}

/// This run's tag in its databases' names: random, so runs elsewhere never pick the same.
pub fn run_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| Uuid::new_v4().simple().to_string()[..12].to_owned())
}

/// A process, as the comments of its databases name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The host name.
    pub host: String,
    /// The PID namespace (its inode): containers on one host share its name, not their PIDs.
    pub pidns: String,
    pub pid: u32,
}

impl Owner {
    pub fn this_process() -> Self {
        let mut name = [0u8; 256];
        let host = if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0 {
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        } else {
            String::new()
        };
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .map(|link| {
                link.to_string_lossy()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            // Host names have no spaces, but keep the comment parseable whatever it is.
            host: host.replace(char::is_whitespace, "_"),
            pidns,
            pid: std::process::id(),
        }
    }

    /// Whether this is a process of our host (host name and PID namespace) that is gone.
    fn gone_from_here(&self, here: &Owner) -> bool {
        self.host == here.host
            && self.pidns == here.pidns
            && !std::path::Path::new("/proc")
                .join(self.pid.to_string())
                .exists()
    }

    /// The comment of a database this process made (`key` = `created`) or used (`used`) at
    /// `epoch` (seconds, on the database clock).
    pub fn comment(&self, key: &str, epoch: i64) -> String {
        format!(
            "host={} pidns={} pid={} {key}={epoch}",
            self.host, self.pidns, self.pid
        )
    }

    /// The owner and the time recorded in a comment made by [`Owner::comment`].
    pub fn parse(comment: &str) -> Option<(Self, i64)> {
        let mut fields = std::collections::HashMap::new();
        for field in comment.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            fields.insert(key, value);
        }
        let epoch = fields
            .get("created")
            .or_else(|| fields.get("used"))?
            .parse()
            .ok()?;
        let owner = Self {
            host: (*fields.get("host")?).to_owned(),
            pidns: (*fields.get("pidns")?).to_owned(),
            pid: fields.get("pid")?.parse().ok()?,
        };
        Some((owner, epoch))
    }
}

/// Records in the comment of database `name` that this process made (`created`) or used
/// (`used`) it now, on the database clock.
pub async fn describe(admin: &Client, name: &str, key: &str) {
    let now: i64 = admin
        .query_one("SELECT extract(epoch FROM now())::bigint", &[])
        .await
        .expect("read the clock")
        .get(0);
    let comment = Owner::this_process().comment(key, now);
    let sql: String = admin
        .query_one(
            "SELECT format('COMMENT ON DATABASE %I IS %L', $1::text, $2::text)",
            &[&name, &comment],
        )
        .await
        .expect("format the comment")
        .get(0);
    admin
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|err| panic!("comment on database {name}: {err}"));
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
            run_tag(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("create test database");
        describe(&admin, &name, "created").await;
        let pool = pool_for(server_config().dbname(&name).clone(), &settings);
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

    /// Where a relay in front of this test's database forwards to: the server's host and port.
    pub fn upstream(&self) -> (String, u16) {
        let config = self.config();
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "localhost".to_owned(),
        };
        (host, config.get_ports().first().copied().unwrap_or(5432))
    }

    /// Connection settings for this test's database through a relay listening on `port` of
    /// this machine (plaintext: the relay is local).
    pub fn config_through(&self, port: u16) -> Config {
        let direct = self.config();
        let mut config = Config::new();
        config.host("127.0.0.1").port(port).dbname(&self.name);
        if let Some(user) = direct.get_user() {
            config.user(user);
        }
        if let Some(password) = direct.get_password() {
            config.password(password);
        }
        config
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

/// Creates (once per schema version) the migrated template, sweeping leftovers first. The
/// version covers the migrations and the runner that applies them (it creates its bookkeeping
/// table): checkouts whose runners differ never share a template.
async fn create_template() -> String {
    let mut hasher = Sha256::new();
    for migration in auth_sessions::MIGRATIONS {
        hasher.update(migration.version.to_be_bytes());
        hasher.update(migration.sql.as_bytes());
    }
    hasher.update(include_str!("../../src/migrate.rs").as_bytes());
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
        describe(&admin, &building, "used").await;
        let pool = pool_for(
            server_config().dbname(&building).clone(),
            &PoolSettings::default(),
        );
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
    // Its last use, so that runs of other schemas leave it alone for a day.
    describe(&admin, &template, "used").await;
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("unlock");
    template
}

/// Drops the leftovers of other runs, and nothing that another run may still use: a test
/// database whose creator was a process of this host that is gone, or that is more than a day
/// old; a template other than `current_template` last used more than a day ago. A database of
/// ours without a comment (an earlier naming scheme, or one whose comment is still being
/// written) is aged by its directory's time when the server lets us read it, else kept.
pub async fn sweep(admin: &Client, current_template: &str) {
    let here = Owner::this_process();
    let rows = admin
        .query(
            "SELECT datname, shobj_description(oid, 'pg_database'), \
                    extract(epoch FROM now())::bigint, \
                    CASE WHEN has_function_privilege('pg_stat_file(text, boolean)', 'EXECUTE') \
                    THEN extract(epoch FROM (pg_stat_file('base/' || oid || '/PG_VERSION', true)) \
                         .modification)::bigint END \
             FROM pg_database \
             WHERE EXISTS (SELECT FROM unnest($1::text[]) p WHERE starts_with(datname, p))",
            &[&vec![
                TEST_DB_PREFIX,
                TEMPLATE_PREFIX,
                LEGACY_PREFIXES[0],
                LEGACY_PREFIXES[1],
            ]],
        )
        .await
        .expect("list databases");
    for row in rows {
        let name: String = row.get(0);
        let comment: Option<String> = row.get(1);
        let now: i64 = row.get(2);
        let directory_time: Option<i64> = row.get(3);
        let (owner, time) = match comment.as_deref().and_then(Owner::parse) {
            Some((owner, time)) => (Some(owner), Some(time)),
            None => (None, directory_time),
        };
        let old = time.is_some_and(|time| now - time > LEFTOVER_AGE_SECS);
        let stale = if name == current_template {
            false
        } else if name.starts_with(TEST_DB_PREFIX) {
            old || owner.is_some_and(|owner| owner.gone_from_here(&here))
        } else {
            old
        };
        if stale {
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            for sql in [
                format!("ALTER DATABASE {quoted} IS_TEMPLATE false"),
                format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
            ] {
                // Another run's sweep may have dropped it meanwhile.
                if let Err(err) = admin.batch_execute(&sql).await {
                    let exists = admin
                        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                        .await
                        .expect("look up a leftover database")
                        .is_some();
                    assert!(!exists, "sweep leftover database {name}: {err}");
                    break;
                }
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
        let name = format!("{TEST_DB_PREFIX}{}_{tag}", run_tag());
        let admin = admin().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create empty database");
        describe(&admin, &name, "created").await;
        Self { name }
    }

    pub fn url(&self) -> String {
        url_for(&self.name)
    }

    pub fn pool(&self) -> Pool {
        pool_for(
            server_config().dbname(&self.name).clone(),
            &PoolSettings::default(),
        )
    }

    pub async fn drop_now(self) {
        admin()
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop empty database");
    }
}
