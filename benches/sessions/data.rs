//! The data set: the benchmark's own database, users and sessions loaded by COPY (each with a
//! real token minted with the benchmark's key), the main set every section shares (`Data`) and
//! the sessions each mutating section has to itself (`Ops`).

use std::io::Cursor;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{
    DEFAULT_DATABASE_URL, PoolSettings, RefreshToken, RotationKey, SessionKey,
    build_pool_with_config, migrate,
};
use chrono::{SecondsFormat, Utc};
use futures::SinkExt;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

use crate::BoxError;
use crate::args::Args;

pub(crate) const BENCH_DB: &str = "auth_sessions_bench";

pub(crate) const DAY: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) const HOUR_S: i64 = 60 * 60;

pub(crate) const DAY_S: i64 = 24 * HOUR_S;

/// Sessions each rotating caller owns and rotates in turn.
pub(crate) const ROTATION_SESSIONS_PER_CALLER: usize = 80;

/// Calls per run of the write measurements (section 5), and runs of each.
pub(crate) const WRITE_CALLS: usize = 1000;

/// Upper bound on revocations per second for one caller, to size the revoke data set.
pub(crate) const REVOKE_RATE_BOUND: f64 = 8000.0;

fn bench_config() -> Result<Config, BoxError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    Ok(Config::from_str(&url)?)
}

pub(crate) async fn connect(config: &Config) -> Result<Client, BoxError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

pub(crate) fn bench_key() -> RotationKey {
    RotationKey::from_bytes(b"benchmark rotation key, 32 bytes or more").expect("key")
}

/// Sends `rows` (COPY text format, one line each) to `copy ... FROM STDIN`.
async fn copy_rows(
    client: &Client,
    sql: &str,
    rows: impl Iterator<Item = String>,
) -> Result<u64, BoxError> {
    const CHUNK: usize = 1 << 20;
    let sink = client.copy_in::<_, Cursor<Vec<u8>>>(sql).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buffer = Vec::with_capacity(CHUNK + 1024);
    for row in rows {
        buffer.extend_from_slice(row.as_bytes());
        if buffer.len() >= CHUNK {
            let full = std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK + 1024));
            sink.send(Cursor::new(full)).await?;
        }
    }
    if !buffer.is_empty() {
        sink.send(Cursor::new(buffer)).await?;
    }
    Ok(sink.as_mut().finish().await?)
}

static USER_SERIAL: AtomicU64 = AtomicU64::new(0);

/// `count` new users (random ids), loaded by COPY.
pub(crate) async fn new_users(client: &Client, count: usize) -> Result<Vec<Uuid>, BoxError> {
    let users: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    let first = USER_SERIAL.fetch_add(count as u64, Ordering::SeqCst);
    copy_rows(
        client,
        "COPY auth.users (id, email) FROM STDIN",
        users
            .iter()
            .enumerate()
            .map(|(i, id)| format!("{id}\tuser{}@bench.test\n", first + i as u64)),
    )
    .await?;
    Ok(users)
}

/// How bulk-loaded sessions look. Times are relative to the start of the load, in seconds.
#[derive(Clone, Copy)]
pub(crate) struct Bulk {
    pub(crate) last_active_ago: i64,
    /// Negative: already expired. Row `i` expires `i` microseconds later still, so that
    /// expiry order is strict.
    pub(crate) expires_in: i64,
    pub(crate) created_ago: i64,
    /// Revoked (a tombstone, reason `user`) that long ago.
    pub(crate) revoked_ago: Option<i64>,
    /// With a device label, an IPv4 address and a user agent.
    pub(crate) details: bool,
}

impl Bulk {
    /// Live: active an hour ago, expiring in 30 days, created a day ago, with details.
    pub(crate) const LIVE: Bulk = Bulk {
        last_active_ago: HOUR_S,
        expires_in: 30 * DAY_S,
        created_ago: DAY_S,
        revoked_ago: None,
        details: true,
    };
}

fn timestamp(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Loads `count` sessions, session `i` owned by `users[i % users.len()]` (so a user's
/// sessions lie apart in the table, as sessions created over time do), each with a token
/// minted by the benchmark's key (`RotationKey::mint`) and stored as the SHA-256 of its text,
/// at generation 0.
/// Returns the tokens when `keep`.
pub(crate) async fn bulk_sessions(
    client: &Client,
    users: &[Uuid],
    count: usize,
    spec: Bulk,
    keep: bool,
) -> Result<Vec<RefreshToken>, BoxError> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let now = Utc::now();
    let ago = |seconds: i64| timestamp(now - chrono::Duration::seconds(seconds));
    let (last_active, created) = (ago(spec.last_active_ago), ago(spec.created_ago));
    let revoked = spec
        .revoked_ago
        .map_or("\\N\t\\N".to_owned(), |s| format!("{}\tuser", ago(s)));
    let first = SERIAL.fetch_add(count as u64, Ordering::SeqCst);
    let mut kept = Vec::with_capacity(if keep { count } else { 0 });
    let rows = (0..count).map(|i| {
        let user = users[i % users.len()];
        let token = bench_key().mint(user).expect("token");
        let expires = timestamp(
            now + chrono::Duration::seconds(spec.expires_in)
                + chrono::Duration::microseconds(i as i64),
        );
        let details = if spec.details {
            let serial = first + i as u64;
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + serial as u32);
            format!("device {serial}\t{ip}\tMozilla/5.0 (X11; Linux x86_64) Bench/1.0")
        } else {
            "\\N\t\\N\t\\N".to_owned()
        };
        let row = format!(
            "{user}\t{}\t0\t{}\t{details}\t{last_active}\t{expires}\t{created}\t{revoked}\n",
            token.session_id(),
            token.hash().as_str(),
        );
        if keep {
            kept.push(token);
        }
        row
    });
    copy_rows(
        client,
        "COPY auth.user_sessions (user_id, id, generation, refresh_token_hash, device_info, \
         ip_address, user_agent, last_active_at, expires_at, created_at, revoked_at, \
         revoked_reason) FROM STDIN",
        rows,
    )
    .await?;
    Ok(kept)
}

/// The data set the sections share.
pub(crate) struct Data {
    /// Owners of the main sessions, ten each.
    pub(crate) users: Arc<Vec<Uuid>>,
    /// Tokens of the main sessions that no section changes: lookups present them.
    pub(crate) lookup: Arc<Vec<RefreshToken>>,
    /// Main sessions spread evenly over the table (one in `stride`), for writes to pages
    /// not yet written since a checkpoint; never looked up.
    pub(crate) spread: Vec<RefreshToken>,
}

pub(crate) async fn setup(args: &Args) -> Result<(Config, Client, Data), BoxError> {
    let server = bench_config()?;
    let admin = connect(&server).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {BENCH_DB}"))
        .await?;
    let config = server.clone().dbname(BENCH_DB).clone();
    let pool = build_pool_with_config(config.clone(), &PoolSettings::default().max_size(1))?;
    migrate(&pool).await?;
    pool.close();
    let client = connect(&config).await?;
    let sessions = args.sessions.max(1) as usize;
    let started = Instant::now();
    let users = new_users(&client, (sessions / 10).max(1)).await?;
    let tokens = bulk_sessions(&client, &users, sessions, Bulk::LIVE, true).await?;
    client.batch_execute("VACUUM ANALYZE auth.users").await?;
    client
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    println!(
        "data set: {sessions} sessions for {} users (tokens minted, hashed and loaded by COPY), \
         built in {:.1} s\n",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    let stride = (sessions / 1000).max(2);
    let (mut lookup, mut spread) = (Vec::with_capacity(sessions), Vec::new());
    for (i, token) in tokens.into_iter().enumerate() {
        if i % stride == stride / 2 && spread.len() < 1000 {
            spread.push(token);
        } else {
            lookup.push(token);
        }
    }
    Ok((
        config,
        client,
        Data {
            users: Arc::new(users),
            lookup: Arc::new(lookup),
            spread,
        },
    ))
}

/// Sessions and users the mutating sections use, each set of its own users, so that no
/// section (an eviction, a revocation, a rotation) changes another's sessions.
pub(crate) struct Ops {
    /// 2,000 users with 10 live sessions each: creating one more evicts one.
    pub(crate) create_users: Arc<Vec<Uuid>>,
    /// Sessions to rotate: 80 per caller, for 1 + 8 callers on each side.
    pub(crate) rotate: Vec<RefreshToken>,
    /// Sessions to revoke, each once.
    pub(crate) revoke: Vec<SessionKey>,
    /// Section 5: sessions to rotate, to record activity on, to revoke; users at the cap;
    /// users without sessions.
    pub(crate) write_rotate: Vec<RefreshToken>,
    pub(crate) write_activity: Vec<SessionKey>,
    pub(crate) write_revoke: Vec<SessionKey>,
    pub(crate) write_cap_users: Vec<Uuid>,
    pub(crate) write_fresh_users: Vec<Uuid>,
}

pub(crate) async fn prepare_ops(args: &Args, client: &Client) -> Result<Ops, BoxError> {
    let started = Instant::now();
    let keys = |tokens: Vec<RefreshToken>| -> Vec<SessionKey> {
        tokens.iter().map(RefreshToken::session_key).collect()
    };
    let create_users = new_users(client, 2000).await?;
    bulk_sessions(client, &create_users, 20_000, Bulk::LIVE, false).await?;
    let rotate_count = 2 * 9 * ROTATION_SESSIONS_PER_CALLER;
    let users = new_users(client, rotate_count / 10).await?;
    let rotate = bulk_sessions(client, &users, rotate_count, Bulk::LIVE, true).await?;
    let revoke_count = (2.0 * REVOKE_RATE_BOUND * args.seconds) as usize;
    let users = new_users(client, revoke_count / 10).await?;
    let revoke = keys(bulk_sessions(client, &users, revoke_count, Bulk::LIVE, true).await?);
    let users = new_users(client, 10).await?;
    let write_rotate = bulk_sessions(client, &users, 100, Bulk::LIVE, true).await?;
    let users = new_users(client, 10).await?;
    let write_activity = keys(bulk_sessions(client, &users, 100, Bulk::LIVE, true).await?);
    // Four neighbouring rows of one user for every call: one for the unmeasured run, one for
    // each measured run (see `writes`).
    let revoke_count = 4 * WRITE_CALLS;
    let users = new_users(client, revoke_count / 10).await?;
    let neighbours: Vec<Uuid> = users.iter().flat_map(|u| [*u; 4]).collect();
    let write_revoke =
        keys(bulk_sessions(client, &neighbours, revoke_count, Bulk::LIVE, true).await?);
    let write_cap_users = new_users(client, 100).await?;
    bulk_sessions(client, &write_cap_users, 1000, Bulk::LIVE, false).await?;
    let write_fresh_users = new_users(client, WRITE_CALLS / 2).await?;
    client.batch_execute("VACUUM ANALYZE auth.users").await?;
    client
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    println!(
        "sessions for the mutating sections (their own users) loaded in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    Ok(Ops {
        create_users: Arc::new(create_users),
        rotate,
        revoke,
        write_rotate,
        write_activity,
        write_revoke,
        write_cap_users,
        write_fresh_users,
    })
}

/// Keys of main sessions spread over the lookup set (up to about 50,000), for activity, which
/// changes no token.
pub(crate) fn activity_keys(data: &Data) -> Arc<Vec<SessionKey>> {
    Arc::new(
        data.lookup
            .iter()
            .step_by((data.lookup.len() / 50_000).max(1))
            .map(RefreshToken::session_key)
            .collect(),
    )
}

/// Marks the sessions of `keys` active now, so that throttled activity on them writes nothing.
pub(crate) async fn mark_active(admin: &Client, keys: &[SessionKey]) -> Result<(), BoxError> {
    let (user_ids, session_ids): (Vec<Uuid>, Vec<Uuid>) =
        keys.iter().map(|k| (k.user_id, k.session_id)).unzip();
    admin
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() \
             WHERE (user_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
            &[&user_ids, &session_ids],
        )
        .await?;
    Ok(())
}
