//! Side-by-side benchmark of the session store, printed as ratios against baselines measured
//! in the same run (these machines are shared and noisy: only ratios mean much).
//!
//! ```text
//! cargo bench --bench sessions               # 1,000,000 sessions for 100,000 users
//! cargo bench --bench sessions -- --quick    # 100,000 sessions, shorter runs
//! cargo bench --bench sessions -- --sessions 500000 --seconds 3
//! ```
//!
//! It builds its own data set in a database `auth_sessions_bench` on the server named by
//! `DATABASE_URL` (default `postgres://postgres@localhost:5432/postgres`), dropped and
//! recreated on every run. Every session row carries a real refresh token minted with the
//! benchmark's rotation key (`RotationKey::mint`): it keeps the token texts, bulk-loads the
//! rows (with the SHA-256 of each text) by COPY, and presents the texts as a device would.
//! Sections:
//! 1. storage per session on the freshly built table;
//! 2. token lookup, `SessionRepo` vs hand-written tokio-postgres (prepared statement, same SQL)
//!    vs `pgbench -M prepared` (same SQL), at 1, 8 and 32 concurrent callers;
//! 3. create, activity (throttled and not), list, count, revoke vs hand-written;
//! 4. rotations per second at 1 and 8 callers, each rotating its own sessions;
//! 5. what one call writes: rows, HOT updates, index entries and WAL bytes;
//! 6. a user with 10,000 tombstones against a fresh user: create, list, count;
//! 7. round trips per repository call, counted on the wire;
//! 8. cleanup of expired sessions: rows/s, and lookup p99 during cleanup / without;
//! 9. the hot path, exclusive against pipelined (`--only-pipelined` runs this alone): lookups
//!    at 1, 8 and 32 callers and the other operations at 8, hand-written one connection per
//!    caller vs `SessionRepo` over the pool vs `SessionRepo` on shared, pipelined connections
//!    (`--pipeline-connections N`, default 2) vs pgbench, with the server connections each
//!    used;
//! 10. the reuse proof (`--only-reuse-proof` runs this alone): `rotate` and `validate` of a
//!     forged generation-0 token against a session at generation 10,000, beside a forged parent,
//!     a genuine refresh and a lookup (`benches/sessions/reuse_proof.rs`).

#[path = "../../tests/common/relay.rs"]
mod relay;

use std::collections::HashMap;
use std::future::Future;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{
    DEFAULT_DATABASE_URL, HotPath, NewSession, PipelineSettings, PoolSettings, RefreshToken,
    Rotation, RotationKey, SessionKey, SessionPolicy, SessionRepo, build_pool_with_config, migrate,
};
use chrono::{SecondsFormat, Utc};
use futures::SinkExt;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

mod reuse_proof;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BENCH_DB: &str = "auth_sessions_bench";
/// The default idle timeout of `SessionPolicy`, in seconds: the hand-written queries pass the
/// same value.
const IDLE_SECONDS: i64 = 14 * 24 * 60 * 60;
/// The default rotation grace window of `SessionPolicy`, in seconds.
const GRACE_SECONDS: i64 = 10;
/// The default per-user cap of `SessionPolicy`.
const CAP: i32 = 10;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const HOUR_S: i64 = 60 * 60;
const DAY_S: i64 = 24 * HOUR_S;
/// Sessions each rotating caller owns and rotates in turn.
const ROTATION_SESSIONS_PER_CALLER: usize = 80;
/// Calls per run of the write measurements (section 5), and runs of each.
const WRITE_CALLS: usize = 1000;
const WRITE_RUNS: usize = 3;
/// Calls per run for the measurements right after a checkpoint (each on its own page).
const FIRST_TOUCH_CALLS: usize = 500;
/// Upper bound on revocations per second for one caller, to size the revoke data set.
const REVOKE_RATE_BOUND: f64 = 8000.0;

struct Args {
    sessions: i64,
    seconds: f64,
    expired: i64,
    tombstones: usize,
    cleanup_batch: u32,
    cleanup_pause_ms: u64,
    only_cleanup: bool,
    only_lookups: bool,
    only_pipelined: bool,
    only_reuse_proof: bool,
    pipeline_connections: usize,
}

fn args() -> Args {
    let mut args = Args {
        sessions: 1_000_000,
        seconds: 5.0,
        expired: 1_000_000,
        tombstones: 10_000,
        cleanup_batch: 1000,
        cleanup_pause_ms: 50,
        only_cleanup: false,
        only_lookups: false,
        only_pipelined: false,
        only_reuse_proof: false,
        pipeline_connections: 2,
    };
    let mut it = std::env::args().skip(1);
    fn value<T: FromStr>(it: &mut impl Iterator<Item = String>, flag: &str) -> T {
        it.next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                args.sessions = 100_000;
                args.expired = 100_000;
                args.seconds = 2.0;
            }
            "--sessions" => args.sessions = value(&mut it, "--sessions"),
            "--expired" => args.expired = value(&mut it, "--expired"),
            "--seconds" => args.seconds = value(&mut it, "--seconds"),
            "--tombstones" => args.tombstones = value(&mut it, "--tombstones"),
            "--cleanup-batch" => args.cleanup_batch = value(&mut it, "--cleanup-batch"),
            "--cleanup-pause-ms" => args.cleanup_pause_ms = value(&mut it, "--cleanup-pause-ms"),
            "--only-cleanup" => args.only_cleanup = true,
            "--only-lookups" => args.only_lookups = true,
            "--only-pipelined" => args.only_pipelined = true,
            "--only-reuse-proof" => args.only_reuse_proof = true,
            "--pipeline-connections" => {
                args.pipeline_connections = value(&mut it, "--pipeline-connections")
            }
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() -> Result<(), BoxError> {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// Latencies of one measured run.
struct Run {
    calls: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Run {
    fn empty() -> Self {
        Self {
            calls: 0,
            elapsed: Duration::ZERO,
            latencies_us: Vec::new(),
        }
    }

    fn absorb(&mut self, other: Run) {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
    }

    fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index] as f64 / 1000.0
    }
}

/// Runs one worker per state, each calling `op` with (a clone of) its state in a loop for
/// `seconds`, and collects every call's latency.
async fn measure<S, F, Fut>(seconds: f64, states: Vec<S>, op: F) -> Run
where
    S: Clone + Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(worker, state)| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut seed = 0x9E37_79B9_7F4A_7C15u64
                    ^ (worker as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                while Instant::now() < deadline {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let call = Instant::now();
                    op(state.clone(), seed).await;
                    latencies.push(call.elapsed().as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.expect("worker"));
    }
    Run {
        calls: latencies_us.len() as u64,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

/// Measures a baseline and a contender in alternating slices (baseline, contender, baseline,
/// contender...), so that drift in the machine's load hits both alike.
async fn compare<S1, F1, Fut1, S2, F2, Fut2>(
    seconds: f64,
    baseline: (Vec<S1>, F1),
    contender: (Vec<S2>, F2),
) -> (Run, Run)
where
    S1: Clone + Send + 'static,
    F1: Fn(S1, u64) -> Fut1 + Send + Sync + Clone + 'static,
    Fut1: Future<Output = ()> + Send,
    S2: Clone + Send + 'static,
    F2: Fn(S2, u64) -> Fut2 + Send + Sync + Clone + 'static,
    Fut2: Future<Output = ()> + Send,
{
    const SLICES: u32 = 4;
    let slice = seconds / f64::from(SLICES);
    let (mut a, mut b) = (Run::empty(), Run::empty());
    for _ in 0..SLICES {
        a.absorb(measure(slice, baseline.0.clone(), baseline.1.clone()).await);
        b.absorb(measure(slice, contender.0.clone(), contender.1.clone()).await);
    }
    (a, b)
}

/// One query of `queries/sessions.sql` with its named parameters turned into `$n` in order of
/// first appearance (as the generated code binds them), and the names in that order.
fn query(name: &str) -> (String, Vec<String>) {
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/sessions.sql"))
            .expect("queries/sessions.sql");
    let start = file
        .find(&format!("--! {name} "))
        .or_else(|| file.find(&format!("--! {name}\n")))
        .expect("query");
    let body: Vec<&str> = file[start..]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("--"))
        .collect();
    let body = body.join("\n");
    let text = &body[..body.find(';').expect("query end")];
    let (mut sql, mut names) = (String::new(), Vec::<String>::new());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_param = chars[i] == ':'
            && (i == 0 || chars[i - 1] != ':')
            && chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase());
        if starts_param {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_ascii_lowercase() || chars[j] == '_' || chars[j].is_ascii_digit())
            {
                j += 1;
            }
            let param: String = chars[i + 1..j].iter().collect();
            let index = names.iter().position(|n| *n == param).unwrap_or_else(|| {
                names.push(param.clone());
                names.len() - 1
            });
            sql.push_str(&format!("${}", index + 1));
            i = j;
        } else {
            sql.push(chars[i]);
            i += 1;
        }
    }
    (sql, names)
}

/// A query's SQL, checking that its parameters are the expected ones in the expected order.
fn query_with(name: &str, params: &[&str]) -> String {
    let (sql, names) = query(name);
    assert_eq!(names, params, "parameters of {name}");
    sql
}

fn bench_config() -> Result<Config, BoxError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    Ok(Config::from_str(&url)?)
}

async fn connect(config: &Config) -> Result<Client, BoxError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
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
async fn new_users(client: &Client, count: usize) -> Result<Vec<Uuid>, BoxError> {
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
struct Bulk {
    last_active_ago: i64,
    /// Negative: already expired. Row `i` expires `i` microseconds later still, so that
    /// expiry order is strict.
    expires_in: i64,
    created_ago: i64,
    /// Revoked (a tombstone, reason `user`) that long ago.
    revoked_ago: Option<i64>,
    /// With a device label, an IPv4 address and a user agent.
    details: bool,
}

impl Bulk {
    /// Live: active an hour ago, expiring in 30 days, created a day ago, with details.
    const LIVE: Bulk = Bulk {
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
async fn bulk_sessions(
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
struct Data {
    /// Owners of the main sessions, ten each.
    users: Arc<Vec<Uuid>>,
    /// Tokens of the main sessions that no section changes: lookups present them.
    lookup: Arc<Vec<RefreshToken>>,
    /// Main sessions spread evenly over the table (one in `stride`), for writes to pages
    /// not yet written since a checkpoint; never looked up.
    spread: Vec<RefreshToken>,
}

async fn setup(args: &Args) -> Result<(Config, Client, Data), BoxError> {
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
struct Ops {
    /// 2,000 users with 10 live sessions each: creating one more evicts one.
    create_users: Arc<Vec<Uuid>>,
    /// Sessions to rotate: 80 per caller, for 1 + 8 callers on each side.
    rotate: Vec<RefreshToken>,
    /// Sessions to revoke, each once.
    revoke: Vec<SessionKey>,
    /// Section 5: sessions to rotate, to record activity on, to revoke; users at the cap;
    /// users without sessions.
    write_rotate: Vec<RefreshToken>,
    write_activity: Vec<SessionKey>,
    write_revoke: Vec<SessionKey>,
    write_cap_users: Vec<Uuid>,
    write_fresh_users: Vec<Uuid>,
}

async fn prepare_ops(args: &Args, client: &Client) -> Result<Ops, BoxError> {
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

async fn run(args: Args) -> Result<(), BoxError> {
    let (config, client, data) = setup(&args).await?;
    if args.only_lookups {
        return lookups(&args, &config, &data).await;
    }
    if args.only_pipelined {
        return pipelined(&args, &config, &client, &data).await;
    }
    if args.only_reuse_proof {
        return reuse_proof::reuse_proof(&args, &config, &client).await;
    }
    if !args.only_cleanup {
        storage(&client).await?;
        let ops = prepare_ops(&args, &client).await?;
        lookups(&args, &config, &data).await?;
        operations(&args, &config, &client, &data, &ops).await?;
        rotations(&args, &config, &ops).await?;
        writes(&config, &client, &data, &ops).await?;
        tombstones(&args, &config, &client).await?;
        round_trips(&config, &client).await?;
    }
    cleanup(&args, &config, &client, &data).await?;
    if !args.only_cleanup {
        pipelined(&args, &config, &client, &data).await?;
        reuse_proof::reuse_proof(&args, &config, &client).await?;
    }
    Ok(())
}

fn repo_for(config: &Config, size: usize, policy: SessionPolicy) -> Result<SessionRepo, BoxError> {
    let pool = build_pool_with_config(config.clone(), &PoolSettings::default().max_size(size))?;
    Ok(SessionRepo::with_policy(pool, policy)?)
}

fn ops_policy() -> SessionPolicy {
    SessionPolicy::default().rotation_key(bench_key())
}

async fn warm(
    repo: &SessionRepo,
    size: usize,
    tokens: &Arc<Vec<RefreshToken>>,
) -> Result<(), BoxError> {
    // Open every connection and prepare the lookup on each.
    let calls = (0..size).map(|i| {
        let (repo, tokens) = (repo.clone(), tokens.clone());
        async move { repo.find_by_token(tokens[i].expose_secret()).await }
    });
    for result in futures::future::join_all(calls).await {
        result?;
    }
    Ok(())
}

fn row(name: &str, run: &Run, baseline: Option<&Run>) -> String {
    let ratio = baseline.map_or("1.00 (baseline)".to_owned(), |b| {
        format!("{:.2}", run.throughput() / b.throughput())
    });
    format!(
        "| {name} | {:.0} | {:.3} | {:.3} | {ratio} |",
        run.throughput(),
        run.percentile(0.5),
        run.percentile(0.99)
    )
}

/// The lookup SQL, parameters `$1` user id, `$2` session id, `$3` token hash, `$4` idle seconds.
fn lookup_sql() -> String {
    query_with(
        "get_session_by_token",
        &["user_id", "id", "refresh_token_hash", "idle_seconds"],
    )
}

/// A hand-written lookup: parse the presented text and hash it (as `SessionRepo` does), then
/// the prepared statement, decoding the fields `SessionRepo` returns.
async fn hand_lookup(client: &Client, statement: &tokio_postgres::Statement, presented: &str) {
    let token = RefreshToken::parse(presented).expect("well-formed token");
    let hash = token.hash();
    let row = client
        .query_opt(
            statement,
            &[
                &token.user_id(),
                &token.session_id(),
                &hash.as_str(),
                &Some(IDLE_SECONDS),
            ],
        )
        .await
        .expect("lookup")
        .expect("found");
    std::hint::black_box(HandSession::from_row(&row));
}

async fn lookups(args: &Args, config: &Config, data: &Data) -> Result<(), BoxError> {
    println!("## 2. Token lookup (the hot path)\n");
    println!("| callers | implementation | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let sql = lookup_sql();
    let tokens = data.lookup.clone();
    let n = tokens.len() as u64;
    for concurrency in [1usize, 8, 32] {
        // Hand-written: one connection per caller, the same SQL prepared once on each.
        let mut states = Vec::new();
        for _ in 0..concurrency {
            states.push(hand(config, &sql).await?);
        }
        let t = tokens.clone();
        let handwritten_calls = (states, move |h: Arc<Hand>, seed| {
            let t = t.clone();
            async move {
                hand_lookup(
                    &h.client,
                    &h.statement,
                    t[(seed % n) as usize].expose_secret(),
                )
                .await;
            }
        });

        let repo = repo_for(config, concurrency, SessionPolicy::default())?;
        warm(&repo, concurrency, &tokens).await?;
        let t = tokens.clone();
        let ours = (
            vec![repo.clone(); concurrency],
            move |repo: SessionRepo, seed| {
                let t = t.clone();
                async move {
                    let found = repo
                        .find_by_token(t[(seed % n) as usize].expose_secret())
                        .await
                        .expect("lookup");
                    assert!(found.is_some());
                }
            },
        );
        let (handwritten, ours) = compare(args.seconds, handwritten_calls.clone(), ours).await;
        repo.pool().close();

        // Where the difference lies: hand-written calls over the same kind of pool.
        let pool = build_pool_with_config(
            config.clone(),
            &PoolSettings::default().max_size(concurrency),
        )?;
        let pooled_sql: Arc<str> = Arc::from(sql.as_str());
        let t = tokens.clone();
        let pooled = (
            vec![pool.clone(); concurrency],
            move |pool: deadpool_postgres::Pool, seed| {
                let (sql, t) = (pooled_sql.clone(), t.clone());
                async move {
                    let client = pool.get().await.expect("pooled connection");
                    let statement = client.prepare_cached(&sql).await.expect("prepare");
                    hand_lookup(&client, &statement, t[(seed % n) as usize].expose_secret()).await;
                }
            },
        );
        let (_, pooled) = compare(args.seconds / 2.0, handwritten_calls, pooled).await;
        pool.close();

        let pgbench = pgbench(config, &sql, &tokens, concurrency, args.seconds).await?;
        println!(
            "{}",
            row(
                &format!("{concurrency} | pgbench -M prepared"),
                &pgbench,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | hand-written tokio-postgres"),
                &handwritten,
                Some(&pgbench)
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | SessionRepo"),
                &ours,
                Some(&pgbench)
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | hand-written over a deadpool pool (prepare_cached)"),
                &pooled,
                Some(&pgbench)
            )
        );
        println!(
            "| {concurrency} | **SessionRepo / hand-written** | | | | **{:.2}** (target >= 0.95) |",
            ours.throughput() / handwritten.throughput()
        );
        println!(
            "| {concurrency} | SessionRepo / hand-written over the pool | | | | {:.2} |",
            ours.throughput() / pooled.throughput()
        );
        println!(
            "| {concurrency} | **SessionRepo / pgbench** | | | | **{:.2}** (target >= 0.80) |",
            ours.throughput() / pgbench.throughput()
        );
    }
    println!();
    Ok(())
}

/// Keys pgbench draws from (the most scripts pgbench takes): a sample spread over the whole
/// lookup set.
const PGBENCH_KEYS: usize = 128;

/// Seconds pgbench runs before its transactions count.
const PGBENCH_WARMUP_S: u64 = 2;

/// The lookup SQL with the key of `token` (and the idle timeout) in place of its parameters.
fn literal_lookup(sql: &str, token: &RefreshToken) -> String {
    sql.replace("$4", &IDLE_SECONDS.to_string())
        .replace("$3", &format!("'{}'", token.hash().as_str()))
        .replace("$2", &format!("'{}'", token.session_id()))
        .replace("$1", &format!("'{}'", token.user_id()))
        .replace('\n', " ")
}

/// `pgbench -M prepared` on the same SQL. pgbench can bind only numbers it draws itself, not
/// a token's ids and hash, so it gets 128 scripts of equal weight, each the lookup with one
/// real key's values as literals, and picks one at random for every transaction (each
/// statement prepared once per connection, in a warm-up that is not counted). The server does
/// the same work per call as for the other two sides, but over 128 rows that stay in shared
/// buffers, where the other sides draw from the whole table: this favours pgbench.
async fn pgbench(
    config: &Config,
    sql: &str,
    tokens: &[RefreshToken],
    concurrency: usize,
    seconds: f64,
) -> Result<Run, BoxError> {
    let count = tokens.len().min(PGBENCH_KEYS);
    let step = tokens.len() / count;
    let sample: Vec<&RefreshToken> = (0..count).map(|i| &tokens[i * step]).collect();
    let dir = tempfile::tempdir()?;
    let client = connect(config).await?;
    let mut scripts = Vec::new();
    for (i, token) in sample.iter().enumerate() {
        let statement = literal_lookup(sql, token);
        // Every script finds its session.
        let found = client.query(&statement, &[]).await?;
        assert_eq!(found.len(), 1, "the pgbench statement finds its session");
        let script = dir.path().join(format!("lookup{i}.sql"));
        std::fs::write(&script, format!("{statement};\n"))?;
        scripts.push(script);
    }
    drop(client);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let mut command = tokio::process::Command::new("pgbench");
    command
        .current_dir(dir.path())
        .args(["-n", "-M", "prepared", "-l", "--log-prefix", "lat"])
        .args([
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.min(2).to_string(),
        ])
        .args([
            "-T",
            &(seconds.ceil() as u64 + PGBENCH_WARMUP_S).to_string(),
        ])
        .args(["-h", &host, "-p", &port.to_string(), "-U", &user]);
    for script in &scripts {
        command.arg("-f").arg(script);
    }
    command.arg(BENCH_DB);
    if let Some(password) = config.get_password() {
        command.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
    }
    let output = command
        .output()
        .await
        .map_err(|err| format!("cannot run pgbench: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    // Log lines: client, transaction, latency (µs), script, end time (s, µs).
    let mut transactions: Vec<(u64, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("lat"))
        {
            for line in std::fs::read_to_string(path)?.lines() {
                let fields: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                if let [_, _, latency, _, seconds, micros] = fields[..] {
                    transactions.push((seconds * 1_000_000 + micros, latency));
                }
            }
        }
    }
    // Only transactions that end after the warm-up count: pgbench prepares each client's
    // statements synchronously on first use, stalling the other clients of its thread.
    let first = transactions
        .iter()
        .map(|t| t.0)
        .min()
        .ok_or("no transactions")?;
    let from = first + PGBENCH_WARMUP_S * 1_000_000;
    let last = transactions.iter().map(|t| t.0).max().unwrap_or(from);
    let latencies_us: Vec<u64> = transactions
        .iter()
        .filter(|t| t.0 >= from)
        .map(|t| t.1)
        .collect();
    Ok(Run {
        calls: latencies_us.len() as u64,
        elapsed: Duration::from_micros(last.saturating_sub(from).max(1)),
        latencies_us,
    })
}

/// What a hand-written lookup decodes: the fields of `auth_sessions::Session`.
#[allow(dead_code)] // Read only through black_box.
struct HandSession {
    id: Uuid,
    user_id: Uuid,
    device_info: Option<String>,
    ip_address: Option<IpAddr>,
    user_agent: Option<String>,
    last_active_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl HandSession {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            user_id: row.get(1),
            device_info: row.get(2),
            ip_address: row.get(3),
            user_agent: row.get(4),
            last_active_at: row.get(5),
            expires_at: row.get(6),
            created_at: row.get(7),
        }
    }
}

/// What a hand-written list decodes per row: the fields of `auth_sessions::Device`.
#[allow(dead_code)] // Read only through black_box.
struct HandDevice {
    id: Uuid,
    device_info: Option<String>,
    ip_address: Option<IpAddr>,
    last_active_at: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl HandDevice {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            device_info: row.get(1),
            ip_address: row.get(2),
            last_active_at: row.get(3),
            expires_at: row.get(4),
            created_at: row.get(5),
        }
    }
}

/// One caller of a hand-written operation: its own connection and prepared statement.
struct Hand {
    client: Client,
    statement: tokio_postgres::Statement,
}

async fn hand(config: &Config, sql: &str) -> Result<Arc<Hand>, BoxError> {
    let client = connect(config).await?;
    let statement = client.prepare(sql).await?;
    Ok(Arc::new(Hand { client, statement }))
}

fn bench_key() -> RotationKey {
    RotationKey::from_bytes(b"benchmark rotation key, 32 bytes or more").expect("key")
}

/// Hand-written `create`: `auth.create_session` with the parameters the repository binds.
async fn hand_create(h: &Hand, user: Uuid) {
    let token = bench_key().mint(user).expect("token");
    let hash = token.hash();
    let device: Option<&str> = Some("bench device");
    let ip: Option<IpAddr> = Some("192.0.2.1".parse().expect("ip"));
    let agent: Option<&str> = Some("Bench/1.0");
    let (generation, ttl, cap, evict) = (0i32, 86_400i64, Some(CAP), true);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
        &user,
        &token.session_id(),
        &generation,
        &hash.as_str(),
        &device,
        &ip,
        &agent,
        &ttl,
        &Some(IDLE_SECONDS),
        &cap,
        &evict,
    ];
    h.client
        .query_one(&h.statement, &params)
        .await
        .expect("create");
}

/// Hand-written `rotate` of the chain's next token, with the successor the repository derives.
async fn hand_rotate(h: &Hand, chain: &Shared<Chain>, key: &RotationKey) {
    let (i, current) = Chain::take(chain);
    let token = RefreshToken::parse(&current).expect("token");
    let next = key.successor(&token).expect("successor");
    let generation = i32::try_from(token.generation()).expect("generation");
    let row = h
        .client
        .query_opt(
            &h.statement,
            &[
                &token.user_id(),
                &token.session_id(),
                &generation,
                &token.hash().as_str(),
                &next.hash().as_str(),
                &Some(IDLE_SECONDS),
                &GRACE_SECONDS,
            ],
        )
        .await
        .expect("rotate")
        .expect("row");
    assert_eq!(row.get::<_, &str>(0), "rotated");
    Chain::put(chain, i, next.expose_secret().to_owned());
}

fn pick<T: Copy>(items: &[T], seed: u64) -> T {
    items[(seed % items.len() as u64) as usize]
}

type Shared<T> = Arc<std::sync::Mutex<T>>;

async fn operations(
    args: &Args,
    config: &Config,
    admin: &Client,
    data: &Data,
    ops: &Ops,
) -> Result<(), BoxError> {
    println!("## 3. Other operations, one caller, versus hand-written tokio-postgres\n");
    println!("| operation | implementation | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let seconds = args.seconds;
    let repo = repo_for(config, 1, ops_policy())?;
    let unthrottled = repo_for(config, 1, ops_policy().activity_interval(Duration::ZERO))?;
    let mut results: Vec<(&str, Run, Run)> = Vec::new();

    // create: users with 10 live sessions each (the cap: every login evicts one), the same SQL
    // and parameters; the token minted and hashed on both sides.
    let sql = query_with(
        "create_session",
        &[
            "user_id",
            "id",
            "generation",
            "refresh_token_hash",
            "device_info",
            "ip_address",
            "user_agent",
            "ttl_seconds",
            "idle_seconds",
            "max_sessions",
            "evict",
        ],
    );
    let h = hand(config, &sql).await?;
    let u = ops.create_users.clone();
    let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move { hand_create(&h, user).await }
    });
    let u = ops.create_users.clone();
    let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
        let user = pick(&u, seed);
        async move {
            let new = NewSession::new(user, DAY)
                .with_device_info("bench device")
                .with_ip_address("192.0.2.1".parse().expect("ip"))
                .with_user_agent("Bench/1.0");
            repo.create(&new).await.expect("create");
        }
    });
    let (handwritten, ours) = compare(seconds, handwritten, ours).await;
    results.push(("create (at the cap: evicts one)", handwritten, ours));

    // activity: throttled (recent activity: nothing written) and unthrottled (always written),
    // on main sessions (activity changes no token).
    let keys: Arc<Vec<SessionKey>> = Arc::new(
        data.lookup
            .iter()
            .step_by((data.lookup.len() / 50_000).max(1))
            .map(RefreshToken::session_key)
            .collect(),
    );
    let (user_ids, session_ids): (Vec<Uuid>, Vec<Uuid>) =
        keys.iter().map(|k| (k.user_id, k.session_id)).unzip();
    let sql = query_with(
        "update_session_activity",
        &[
            "user_id",
            "id",
            "idle_seconds",
            "ip_address",
            "min_interval_seconds",
        ],
    );
    for (label, interval, repo) in [
        ("activity, throttled 60 s", 60i64, &repo),
        ("activity, unthrottled", 0, &unthrottled),
    ] {
        admin
            .execute(
                "UPDATE auth.user_sessions SET last_active_at = now() \
                 WHERE (user_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
                &[&user_ids, &session_ids],
            )
            .await?;
        let h = hand(config, &sql).await?;
        let k = keys.clone();
        let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
            let key = pick(&k, seed);
            async move {
                let ip: Option<IpAddr> = None;
                h.client
                    .query_opt(
                        &h.statement,
                        &[
                            &key.user_id,
                            &key.session_id,
                            &Some(IDLE_SECONDS),
                            &ip,
                            &interval,
                        ],
                    )
                    .await
                    .expect("activity")
                    .expect("live");
            }
        });
        let k = keys.clone();
        let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
            let key = pick(&k, seed);
            async move {
                repo.record_activity(key, None)
                    .await
                    .expect("activity")
                    .expect("live");
            }
        });
        let (handwritten, ours) = compare(seconds, handwritten, ours).await;
        results.push((label, handwritten, ours));
    }

    // list and count: a random main user's devices (10 sessions each).
    for (label, name) in [
        ("list", "get_user_sessions"),
        ("count", "count_user_sessions"),
    ] {
        let h = hand(config, &query_with(name, &["user_id", "idle_seconds"])).await?;
        let u = data.users.clone();
        let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
            let user = pick(&u, seed);
            async move {
                let rows = h
                    .client
                    .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
                    .await
                    .expect(label);
                // Decoded as SessionRepo decodes them.
                if label == "list" {
                    for row in &rows {
                        std::hint::black_box(HandDevice::from_row(row));
                    }
                } else {
                    std::hint::black_box(rows[0].get::<_, i64>(0));
                }
            }
        });
        let u = data.users.clone();
        let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
            let user = pick(&u, seed);
            async move {
                if label == "list" {
                    std::hint::black_box(repo.list_devices(user).await.expect("list"));
                } else {
                    std::hint::black_box(repo.count_live(user).await.expect("count"));
                }
            }
        });
        let (handwritten, ours) = compare(seconds, handwritten, ours).await;
        results.push((label, handwritten, ours));
    }

    // revoke: distinct live sessions, each revoked once.
    let mut pairs = ops.revoke.clone();
    let second: Shared<Vec<SessionKey>> =
        Arc::new(std::sync::Mutex::new(pairs.split_off(pairs.len() / 2)));
    let first: Shared<Vec<SessionKey>> = Arc::new(std::sync::Mutex::new(pairs));
    let h = hand(config, &query_with("revoke_session", &["user_id", "id"])).await?;
    let handwritten = (
        vec![(h, first)],
        |(h, list): (Arc<Hand>, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            h.client
                .query_opt(&h.statement, &[&key.user_id, &key.session_id])
                .await
                .expect("revoke")
                .expect("revoked");
        },
    );
    let ours = (
        vec![(repo.clone(), second)],
        |(repo, list): (SessionRepo, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            assert!(repo.revoke(key).await.expect("revoke"));
        },
    );
    let (handwritten, ours) = compare(seconds, handwritten, ours).await;
    results.push(("revoke", handwritten, ours));

    for (name, handwritten, ours) in &results {
        println!(
            "{}",
            row(&format!("{name} | hand-written"), handwritten, None)
        );
        println!(
            "{}",
            row(&format!("{name} | SessionRepo"), ours, Some(handwritten))
        );
    }
    println!();
    repo.pool().close();
    unthrottled.pool().close();
    Ok(())
}

/// A caller's own sessions, rotated in turn: the current token text of each.
struct Chain {
    tokens: Vec<String>,
    next: usize,
}

impl Chain {
    fn shared(tokens: &[RefreshToken]) -> Shared<Chain> {
        Arc::new(std::sync::Mutex::new(Chain {
            tokens: tokens
                .iter()
                .map(|t| t.expose_secret().to_owned())
                .collect(),
            next: 0,
        }))
    }

    /// The next session's index and current token.
    fn take(chain: &Shared<Chain>) -> (usize, String) {
        let mut chain = chain.lock().unwrap();
        let i = chain.next;
        chain.next = (i + 1) % chain.tokens.len();
        (i, chain.tokens[i].clone())
    }

    fn put(chain: &Shared<Chain>, i: usize, token: String) {
        chain.lock().unwrap().tokens[i] = token;
    }
}

async fn rotations(args: &Args, config: &Config, ops: &Ops) -> Result<(), BoxError> {
    println!(
        "## 4. Rotation: rotations/s, each caller rotating its own {ROTATION_SESSIONS_PER_CALLER} \
         sessions in turn\n"
    );
    println!("| callers | implementation | rotations/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let sql = query_with(
        "rotate_session",
        &[
            "user_id",
            "id",
            "generation",
            "presented_hash",
            "successor_hash",
            "idle_seconds",
            "grace_seconds",
        ],
    );
    let mut sessions = ops.rotate.chunks(ROTATION_SESSIONS_PER_CALLER);
    let key = Arc::new(bench_key());
    for callers in [1usize, 8] {
        let mut hand_states = Vec::new();
        for _ in 0..callers {
            hand_states.push((
                hand(config, &sql).await?,
                Chain::shared(sessions.next().expect("rotation sessions")),
            ));
        }
        let k = key.clone();
        let handwritten = (
            hand_states,
            move |(h, chain): (Arc<Hand>, Shared<Chain>), _| {
                let key = k.clone();
                async move { hand_rotate(&h, &chain, &key).await }
            },
        );
        let repo = repo_for(config, callers, ops_policy())?;
        let ours_states: Vec<_> = (0..callers)
            .map(|_| {
                (
                    repo.clone(),
                    Chain::shared(sessions.next().expect("rotation sessions")),
                )
            })
            .collect();
        let ours = (
            ours_states,
            |(repo, chain): (SessionRepo, Shared<Chain>), _| async move {
                let (i, current) = Chain::take(&chain);
                let rotation = repo.rotate(&current).await.expect("rotate");
                let Rotation::Rotated { token, .. } = rotation else {
                    panic!("rotation failed: {rotation:?}")
                };
                Chain::put(&chain, i, token.expose_secret().to_owned());
            },
        );
        let (handwritten, ours) = compare(args.seconds, handwritten, ours).await;
        repo.pool().close();
        println!(
            "{}",
            row(
                &format!("{callers} | hand-written tokio-postgres"),
                &handwritten,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{callers} | SessionRepo::rotate"),
                &ours,
                Some(&handwritten)
            )
        );
    }
    println!();
    Ok(())
}

/// Cumulative row counts of the session table from `pg_stat_user_tables`.
#[derive(Clone, Copy, Default)]
struct TableCounts {
    inserted: i64,
    updated: i64,
    hot: i64,
    deleted: i64,
}

impl TableCounts {
    fn minus(self, other: TableCounts) -> TableCounts {
        TableCounts {
            inserted: self.inserted - other.inserted,
            updated: self.updated - other.updated,
            hot: self.hot - other.hot,
            deleted: self.deleted - other.deleted,
        }
    }

    fn plus(self, other: TableCounts) -> TableCounts {
        TableCounts {
            inserted: self.inserted + other.inserted,
            updated: self.updated + other.updated,
            hot: self.hot + other.hot,
            deleted: self.deleted + other.deleted,
        }
    }
}

async fn table_counts(admin: &Client) -> Result<TableCounts, BoxError> {
    let row = admin
        .query_one(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables \
             WHERE relid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await?;
    Ok(TableCounts {
        inserted: row.get(0),
        updated: row.get(1),
        hot: row.get(2),
        deleted: row.get(3),
    })
}

async fn wal_lsn(admin: &Client) -> Result<String, BoxError> {
    Ok(admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0))
}

async fn wal_bytes(admin: &Client, from: &str, to: &str) -> Result<i64, BoxError> {
    Ok(admin
        .query_one(
            "SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::bigint",
            &[&from, &to],
        )
        .await?
        .get(0))
}

/// Makes the repository's (only) connection publish its pending table statistics: PostgreSQL
/// 15 flushes them when the backend next goes idle, that is before this call returns.
async fn flush_stats(repo: &SessionRepo) -> Result<(), BoxError> {
    let client = repo.pool().get().await?;
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await?;
    Ok(())
}

/// How many indexes of the session table hold an entry for the current version of session
/// `key`: the unconditional ones, and the partial ones whose predicate the row satisfies.
async fn indexes_holding(admin: &Client, key: SessionKey) -> Result<(i64, i64), BoxError> {
    let indexes = admin
        .query(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index \
             WHERE indrelid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await?;
    let mut holding = 0;
    for index in &indexes {
        let predicate: Option<String> = index.get(0);
        let found: i64 = admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM auth.user_sessions WHERE user_id = $1 AND id = $2 \
                     AND ({})",
                    predicate.as_deref().unwrap_or("true")
                ),
                &[&key.user_id, &key.session_id],
            )
            .await?
            .get(0);
        holding += found;
    }
    Ok((holding, indexes.len() as i64))
}

/// What [`WRITE_RUNS`] runs of sequential calls wrote: table counts summed over the runs,
/// and the WAL of each run.
struct WriteCost {
    calls: usize,
    counts: TableCounts,
    wal: Vec<i64>,
}

/// Runs `op(run, 0..calls)` for runs 1 to [`WRITE_RUNS`] on `repo` (a pool of one connection,
/// so that the statistics of that one backend can be flushed) and measures what each run
/// wrote: `pg_stat_user_tables` deltas and `pg_current_wal_lsn()` before and after. With
/// `checkpoint`, a `CHECKPOINT` precedes every run, so that each call's first write to a page
/// carries a full-page image; without, an unmeasured run 0 writes to the same pages first,
/// so that no measured call does.
async fn write_cost(
    admin: &Client,
    repo: &SessionRepo,
    calls: usize,
    checkpoint: bool,
    mut op: impl AsyncFnMut(usize, usize) -> Result<(), BoxError>,
) -> Result<WriteCost, BoxError> {
    let mut cost = WriteCost {
        calls: WRITE_RUNS * calls,
        counts: TableCounts::default(),
        wal: Vec::new(),
    };
    if !checkpoint {
        for j in 0..calls {
            op(0, j).await?;
        }
    }
    for run in 1..=WRITE_RUNS {
        if checkpoint {
            admin.batch_execute("CHECKPOINT").await?;
        }
        admin
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await?;
        flush_stats(repo).await?;
        let before = table_counts(admin).await?;
        let start = wal_lsn(admin).await?;
        for j in 0..calls {
            op(run, j).await?;
        }
        let end = wal_lsn(admin).await?;
        flush_stats(repo).await?;
        let after = table_counts(admin).await?;
        cost.counts = cost.counts.plus(after.minus(before));
        cost.wal.push(wal_bytes(admin, &start, &end).await?);
    }
    Ok(cost)
}

fn print_write_cost(label: &str, cost: &WriteCost, holding: (i64, i64)) {
    let per = |v: i64| v as f64 / cost.calls as f64;
    let c = cost.counts;
    let index_entries = (c.inserted + c.updated - c.hot) * holding.0;
    let per_run = (cost.calls / cost.wal.len().max(1)) as f64;
    let least = cost.wal.iter().min().copied().unwrap_or(0);
    let runs: Vec<String> = cost
        .wal
        .iter()
        .map(|w| format!("{:.0}", *w as f64 / per_run))
        .collect();
    println!(
        "| {label} | {} x {per_run} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} of {} | {:.2} | **{:.0}** | {} |",
        cost.wal.len(),
        per(c.inserted + c.updated + c.deleted),
        per(c.inserted),
        per(c.updated),
        per(c.hot),
        per(c.deleted),
        holding.0,
        holding.1,
        per(index_entries),
        least as f64 / per_run,
        runs.join(" / "),
    );
}

/// Rotates the next session of `chain` with `repo` and keeps its new token.
async fn rotate_next(repo: &SessionRepo, chain: &Shared<Chain>) -> Result<(), BoxError> {
    let (i, current) = Chain::take(chain);
    let Rotation::Rotated { token, .. } = repo.rotate(&current).await? else {
        return Err("rotation failed".into());
    };
    Chain::put(chain, i, token.expose_secret().to_owned());
    Ok(())
}

async fn writes(config: &Config, admin: &Client, data: &Data, ops: &Ops) -> Result<(), BoxError> {
    println!("## 5. What one call writes\n");
    println!(
        "Sequential calls on one connection, {WRITE_RUNS} measured runs each. Rows from \
         `pg_stat_user_tables` deltas (statistics flushed with `pg_stat_force_next_flush()`); \
         index entries = (inserts + non-HOT updates) x the indexes that hold the written row \
         version; WAL from `pg_current_wal_lsn()` before and after each run \
         (`pg_wal_lsn_diff`). WAL is counted server-wide, so other databases' writes can only \
         add to a run: the least run is the figure. Rows without \"checkpoint\" in their name \
         follow an unmeasured run over the same pages (no full-page images); those with it \
         follow a `CHECKPOINT` and write to pages not written since.\n"
    );
    println!(
        "| operation | runs x calls | rows written / call | inserted | updated | of which HOT | \
         deleted | indexes holding the row | index entries / call | WAL bytes / call (least \
         run) | WAL bytes / call, each run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // Connections of earlier sections publish their last statistics as they exit.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let repo = repo_for(config, 1, ops_policy())?;
    let unthrottled = repo_for(config, 1, ops_policy().activity_interval(Duration::ZERO))?;

    // Rotation: 100 sessions, each rotated ten times a run.
    let chain = Chain::shared(&ops.write_rotate);
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, _| {
        rotate_next(&repo, &chain).await
    })
    .await?;
    let holding = indexes_holding(admin, ops.write_rotate[0].session_key()).await?;
    print_write_cost("rotate", &cost, holding);

    // Rotation of sessions spread over the table (one per page), after a checkpoint.
    let half = data.spread.len() / 2;
    let spread_calls = FIRST_TOUCH_CALLS.min(half);
    let chain = Chain::shared(&data.spread[..spread_calls]);
    let cost = write_cost(admin, &repo, spread_calls, true, async |_, _| {
        rotate_next(&repo, &chain).await
    })
    .await?;
    let holding = indexes_holding(admin, data.spread[0].session_key()).await?;
    print_write_cost(
        "rotate, first write to its page since a checkpoint",
        &cost,
        holding,
    );

    // Activity, unthrottled (always written) and throttled (recently written: nothing).
    let keys = &ops.write_activity;
    let cost = write_cost(admin, &unthrottled, WRITE_CALLS, false, async |_, j| {
        let activity = unthrottled
            .record_activity(keys[j % keys.len()], None)
            .await?
            .ok_or("not live")?;
        assert!(activity.written);
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, keys[0]).await?;
    print_write_cost("record_activity, unthrottled", &cost, holding);

    let spread: Vec<SessionKey> = data.spread[half..half + spread_calls]
        .iter()
        .map(RefreshToken::session_key)
        .collect();
    let cost = write_cost(admin, &unthrottled, spread_calls, true, async |_, j| {
        unthrottled
            .record_activity(spread[j], None)
            .await?
            .ok_or("not live")?;
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, spread[0]).await?;
    print_write_cost(
        "record_activity, unthrottled, first write to its page since a checkpoint",
        &cost,
        holding,
    );

    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, j| {
        let activity = repo
            .record_activity(keys[j % keys.len()], None)
            .await?
            .ok_or("not live")?;
        assert!(!activity.written);
        Ok(())
    })
    .await?;
    print_write_cost("record_activity, throttled 60 s", &cost, holding);

    // Revocation of distinct live sessions: groups of four neighbours of one user, one per
    // run, so that every run writes to the same pages.
    let revoked = &ops.write_revoke;
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |run, j| {
        assert!(repo.revoke(revoked[4 * j + run]).await?);
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, revoked[0]).await?;
    print_write_cost("revoke", &cost, holding);

    // Creation below the cap (eight logins in all for each of 500 fresh users) and at it (100
    // users with 10 live sessions: each login evicts one).
    let fresh = &ops.write_fresh_users;
    let mut last = None;
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, j| {
        let new = NewSession::new(fresh[j % fresh.len()], DAY).with_device_info("bench device");
        let (session, _) = repo.create(&new).await?;
        last = Some(session.key());
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, last.expect("created")).await?;
    print_write_cost("create, below the cap", &cost, holding);

    let at_cap = &ops.write_cap_users;
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, j| {
        let new = NewSession::new(at_cap[j % at_cap.len()], DAY).with_device_info("bench device");
        let (session, _) = repo.create(&new).await?;
        last = Some(session.key());
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, last.expect("created")).await?;
    print_write_cost("create, at the cap (evicts one)", &cost, holding);
    println!();
    repo.pool().close();
    unthrottled.pool().close();
    Ok(())
}

/// `create` for `user` in a loop for `seconds`, each new session deleted again (untimed) so
/// that the user's live sessions stay below the cap and no tombstone is added. Throughput is
/// calls over the time spent in `create`.
async fn timed_creates(
    repo: &SessionRepo,
    admin: &Client,
    user: Uuid,
    seconds: f64,
) -> Result<Run, BoxError> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut run = Run::empty();
    while Instant::now() < deadline {
        let new = NewSession::new(user, DAY)
            .with_device_info("bench device")
            .with_user_agent("Bench/1.0");
        let call = Instant::now();
        let (session, _) = repo.create(&new).await?;
        let took = call.elapsed();
        run.calls += 1;
        run.elapsed += took;
        run.latencies_us.push(took.as_micros() as u64);
        admin
            .execute(
                "DELETE FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
                &[&session.user_id, &session.id],
            )
            .await?;
    }
    Ok(run)
}

async fn tombstones(args: &Args, config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!(
        "## 6. Tombstones: a user with {} revoked sessions against a fresh user\n",
        args.tombstones
    );
    let users = new_users(admin, 2).await?;
    let (tombstoned, fresh) = (users[0], users[1]);
    let started = Instant::now();
    bulk_sessions(
        admin,
        &[tombstoned],
        args.tombstones,
        Bulk {
            revoked_ago: Some(HOUR_S),
            ..Bulk::LIVE
        },
        false,
    )
    .await?;
    // Both have three live sessions, below the cap of 10.
    bulk_sessions(admin, &[tombstoned], 3, Bulk::LIVE, false).await?;
    bulk_sessions(admin, &[fresh], 3, Bulk::LIVE, false).await?;
    admin
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    let counts = |user: Uuid| async move {
        let row = admin
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE revoked_at IS NOT NULL) \
                 FROM auth.user_sessions WHERE user_id = $1",
                &[&user],
            )
            .await?;
        Ok::<_, BoxError>((row.get::<_, i64>(0), row.get::<_, i64>(1)))
    };
    let (t_rows, t_revoked) = counts(tombstoned).await?;
    let (f_rows, f_revoked) = counts(fresh).await?;
    println!(
        "(loaded in {:.1} s; tombstoned user: {t_rows} rows, {t_revoked} revoked; fresh user: \
         {f_rows} rows, {f_revoked} revoked; default policy, cap 10)\n",
        started.elapsed().as_secs_f64()
    );
    println!("| operation | user | calls/s | p50 ms | p99 ms | tombstoned / fresh |");
    println!("|---|---|---|---|---|---|");
    let repo = repo_for(config, 1, SessionPolicy::default())?;
    // Open the connection and prepare every statement before measuring.
    for user in [fresh, tombstoned] {
        let (session, _) = repo.create(&NewSession::new(user, DAY)).await?;
        admin
            .execute(
                "DELETE FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
                &[&session.user_id, &session.id],
            )
            .await?;
        repo.list_devices(user).await?;
        repo.count_live(user).await?;
    }
    let mut results = Vec::new();

    // create: alternating slices, fresh then tombstoned.
    let (mut f_run, mut t_run) = (Run::empty(), Run::empty());
    let slice = args.seconds / 4.0;
    for _ in 0..4 {
        f_run.absorb(timed_creates(&repo, admin, fresh, slice).await?);
        t_run.absorb(timed_creates(&repo, admin, tombstoned, slice).await?);
    }
    results.push((
        "create (each new session deleted again, untimed)",
        f_run,
        t_run,
    ));

    for label in ["list_devices", "count_live"] {
        let op = move |(repo, user): (SessionRepo, Uuid), _| async move {
            if label == "list_devices" {
                let devices = repo.list_devices(user).await.expect("list");
                assert_eq!(devices.len(), 3);
            } else {
                assert_eq!(repo.count_live(user).await.expect("count"), 3);
            }
        };
        let (f_run, t_run) = compare(
            args.seconds,
            (vec![(repo.clone(), fresh)], op),
            (vec![(repo.clone(), tombstoned)], op),
        )
        .await;
        results.push((label, f_run, t_run));
    }
    for (label, f_run, t_run) in &results {
        println!(
            "{}",
            row(&format!("{label} | fresh"), f_run, None).replace("1.00 (baseline)", "-")
        );
        let ratio = t_run.throughput() / f_run.throughput();
        println!(
            "| {label} | tombstoned | {:.0} | {:.3} | {:.3} | **{ratio:.2}** (target >= 0.5) |",
            t_run.throughput(),
            t_run.percentile(0.5),
            t_run.percentile(0.99)
        );
    }
    println!();
    repo.pool().close();
    Ok(())
}

async fn storage(admin: &Client) -> Result<(), BoxError> {
    println!("## 1. Storage\n");
    let row = admin
        .query_one(
            "SELECT count(*), pg_table_size('auth.user_sessions'), pg_indexes_size('auth.user_sessions') \
             FROM auth.user_sessions",
            &[],
        )
        .await?;
    let (rows, table, indexes): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let mut per_index = HashMap::new();
    for row in admin
        .query(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index \
             WHERE indrelid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await?
    {
        per_index.insert(row.get::<_, String>(0), row.get::<_, i64>(1));
    }
    println!("({rows} rows, loaded by COPY with every index in place, then VACUUM ANALYZE)\n");
    println!("| what | bytes | bytes per session |");
    println!("|---|---|---|");
    println!(
        "| table (heap, fillfactor 80) | {table} | {:.0} |",
        table as f64 / rows as f64
    );
    let mut names: Vec<_> = per_index.keys().cloned().collect();
    names.sort();
    for name in names {
        println!(
            "| index {name} | {} | {:.0} |",
            per_index[&name],
            per_index[&name] as f64 / rows as f64
        );
    }
    println!(
        "| **table + indexes** | {} | **{:.0}** |\n",
        table + indexes,
        (table + indexes) as f64 / rows as f64
    );
    Ok(())
}

async fn round_trips(config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!("## 7. Round trips per repository call (warm connection, counted on the wire)\n");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let relay = relay::CountingRelay::start((host, port)).await;
    let mut through = Config::new();
    through.host("127.0.0.1").port(relay.port).dbname(BENCH_DB);
    if let Some(user) = config.get_user() {
        through.user(user);
    }
    if let Some(password) = config.get_password() {
        through.password(password);
    }
    let pool = build_pool_with_config(through, &PoolSettings::default().max_size(1))?;
    let repo = SessionRepo::with_policy(pool, ops_policy())?;
    let user = new_users(admin, 1).await?[0];
    println!("| call | round trips |");
    println!("|---|---|");
    for pass in 0..2 {
        let mut counts = Vec::new();
        macro_rules! count {
            ($name:literal, $call:expr) => {{
                let before = relay.count();
                let result = $call.await?;
                counts.push(($name, relay.count() - before));
                result
            }};
        }
        let (session, token) = count!("create", repo.create(&NewSession::new(user, DAY)));
        let minted = repo.mint_token(user).await?;
        count!(
            "create_with_token",
            repo.create_with_token(&NewSession::new(user, DAY), &minted)
        );
        count!("find_by_token", repo.find_by_token(token.expose_secret()));
        count!("validate", repo.validate(token.expose_secret()));
        count!("record_activity", repo.record_activity(session.key(), None));
        count!("list_devices", repo.list_devices(user));
        count!("count_live", repo.count_live(user));
        count!("rotate", repo.rotate(token.expose_secret()));
        count!("revoke_all_except", repo.revoke_all_except(session.key()));
        count!("revoke", repo.revoke(session.key()));
        count!("revoke_all", repo.revoke_all(user));
        count!("delete_expired", repo.delete_expired());
        count!("delete_expired_batch", repo.delete_expired_batch(1000));
        if pass == 1 {
            for (name, trips) in counts {
                println!("| {name} | {trips} |");
            }
        }
    }
    println!();
    repo.pool().close();
    Ok(())
}

async fn cleanup(
    args: &Args,
    config: &Config,
    admin: &Client,
    data: &Data,
) -> Result<(), BoxError> {
    println!("## 8. Cleanup of {} expired sessions\n", args.expired);
    let started = Instant::now();
    bulk_sessions(
        admin,
        &data.users,
        args.expired.max(0) as usize,
        Bulk {
            last_active_ago: 2 * DAY_S,
            expires_in: -DAY_S,
            created_ago: 3 * DAY_S,
            revoked_ago: None,
            details: false,
        },
        false,
    )
    .await?;
    admin
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    println!("(inserted in {:.1} s)\n", started.elapsed().as_secs_f64());

    let tokens = data.lookup.clone();
    let n = tokens.len() as u64;
    let lookup_repo = repo_for(config, 8, SessionPolicy::default())?;
    warm(&lookup_repo, 8, &tokens).await?;
    let lookup = move |repo: SessionRepo, seed: u64| {
        let t = tokens.clone();
        async move {
            let found = repo
                .find_by_token(t[(seed % n) as usize].expose_secret())
                .await
                .expect("lookup");
            assert!(found.is_some());
        }
    };
    let quiet = measure(args.seconds, vec![lookup_repo.clone(); 8], lookup.clone()).await;

    let cleaner = repo_for(config, 1, SessionPolicy::default())?;
    let (batch, pause) = (
        args.cleanup_batch,
        Duration::from_millis(args.cleanup_pause_ms),
    );
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let cleaning_started = Instant::now();
    let cleaning = tokio::spawn(async move {
        let mut deleted = 0u64;
        loop {
            let rows = cleaner
                .delete_expired_batch(batch)
                .await
                .expect("cleanup batch")
                .deleted();
            deleted += rows;
            if rows < u64::from(batch) {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        flag.store(true, Ordering::SeqCst);
        (deleted, cleaning_started.elapsed())
    });
    // Lookups in rounds while the cleaner works.
    let mut during = Run::empty();
    while !done.load(Ordering::SeqCst) {
        let slice = measure(0.5, vec![lookup_repo.clone(); 8], lookup.clone()).await;
        during.absorb(slice);
    }
    let (deleted, took) = cleaning.await?;
    println!("| measure | value |");
    println!("|---|---|");
    println!("| rows deleted | {deleted} |");
    println!(
        "| cleanup rows/s (batches of {batch}, {} ms pause, one cleaner, lookups running) | {:.0} |",
        args.cleanup_pause_ms,
        deleted as f64 / took.as_secs_f64()
    );
    println!(
        "| lookup p99 without cleanup (8 callers) | {:.3} ms |",
        quiet.percentile(0.99)
    );
    println!(
        "| lookup p99 during cleanup (8 callers) | {:.3} ms |",
        during.percentile(0.99)
    );
    println!(
        "| **p99 during / p99 without** | **{:.2}** (target <= 1.2) |",
        during.percentile(0.99) / quiet.percentile(0.99)
    );
    println!(
        "| lookup calls/s without / during cleanup | {:.0} / {:.0} |\n",
        quiet.throughput(),
        during.throughput()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 9. The hot path: exclusive checkout against shared, pipelined connections
// ---------------------------------------------------------------------------------------------

/// `SessionRepo`s over pools of `callers` connections: exclusive, and pipelined on
/// `connections` shared connections, read-only calls (the default) or every hot-path call.
struct HotRepos {
    exclusive: SessionRepo,
    pipelined: SessionRepo,
    pipelined_writes: SessionRepo,
}

impl HotRepos {
    fn new(
        config: &Config,
        callers: usize,
        connections: usize,
        policy: SessionPolicy,
    ) -> Result<Self, BoxError> {
        let pipelined = |writes: bool| -> Result<SessionRepo, BoxError> {
            let pool =
                build_pool_with_config(config.clone(), &PoolSettings::default().max_size(callers))?;
            Ok(
                SessionRepo::with_policy(pool, policy.clone())?.with_hot_path(
                    HotPath::Pipelined(PipelineSettings::new(connections).pipeline_writes(writes)),
                )?,
            )
        };
        Ok(Self {
            exclusive: repo_for(config, callers, policy.clone())?,
            pipelined: pipelined(false)?,
            pipelined_writes: pipelined(true)?,
        })
    }

    async fn warm(&self, callers: usize, tokens: &Arc<Vec<RefreshToken>>) -> Result<(), BoxError> {
        for repo in [&self.exclusive, &self.pipelined, &self.pipelined_writes] {
            warm(repo, callers, tokens).await?;
        }
        Ok(())
    }

    fn close(&self) {
        for repo in [&self.exclusive, &self.pipelined, &self.pipelined_writes] {
            repo.pool().close();
        }
    }
}

/// Server connections a repository holds: the pool's open ones, and the shared ones.
fn hot_connections(repo: &SessionRepo) -> String {
    let pooled = repo.pool().status().size;
    match repo.pipeline_status() {
        Some(status) if pooled > 0 => format!("{} shared + {pooled} pooled", status.open),
        Some(status) => format!("{} shared", status.open),
        None => format!("{pooled} pooled"),
    }
}

/// Client backends connected to the benchmark database now, the caller's own excluded.
async fn backends(admin: &Client) -> Result<i64, BoxError> {
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await?
        .get(0))
}

fn hot_row(label: &str, connections: &str, run: &Run, baseline: Option<&Run>) -> String {
    let ratio = baseline.map_or("1.00 (baseline)".to_owned(), |b| {
        format!("{:.2}", run.throughput() / b.throughput())
    });
    let p99_ratio = baseline.map_or(String::new(), |b| {
        format!("{:.2}", run.percentile(0.99) / b.percentile(0.99))
    });
    format!(
        "| {label} | {connections} | {:.0} | {:.3} | {:.3} | {ratio} | {p99_ratio} |",
        run.throughput(),
        run.percentile(0.5),
        run.percentile(0.99)
    )
}

/// One contender at one load, with the hand-written baseline (one connection per caller)
/// measured beside it in alternating slices.
struct Contender {
    label: &'static str,
    hand: Run,
    ours: Run,
    connections: String,
}

impl Contender {
    fn ratio(&self) -> f64 {
        self.ours.throughput() / self.hand.throughput()
    }

    fn p99_ratio(&self) -> f64 {
        self.ours.percentile(0.99) / self.hand.percentile(0.99)
    }
}

fn print_hot(label: &str, callers: usize, results: &[Contender]) {
    for result in results {
        println!(
            "{}",
            hot_row(
                &format!("{label} | hand-written, 1 connection per caller (beside the next)"),
                &callers.to_string(),
                &result.hand,
                None
            )
        );
        println!(
            "{}",
            hot_row(
                &format!("{label} | {}", result.label),
                &result.connections,
                &result.ours,
                Some(&result.hand)
            )
        );
    }
}

const EXCLUSIVE: &str = "SessionRepo, exclusive";
const PIPELINED: &str = "**SessionRepo, pipelined**";
const PIPELINED_WRITES: &str = "SessionRepo, pipelined with writes";

/// Measures `hand` against each repository with `ours`.
async fn hot_compare<SH, FH, FutH, S, F, Fut>(
    seconds: f64,
    hand: (Vec<SH>, FH),
    repos: &[(&'static str, &SessionRepo)],
    states: impl Fn(usize, &SessionRepo) -> Vec<S>,
    ours: F,
) -> Vec<Contender>
where
    SH: Clone + Send + 'static,
    FH: Fn(SH, u64) -> FutH + Send + Sync + Clone + 'static,
    FutH: Future<Output = ()> + Send,
    S: Clone + Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut results = Vec::new();
    for (i, (label, repo)) in repos.iter().enumerate() {
        let (hand_run, ours_run) =
            compare(seconds, hand.clone(), (states(i, repo), ours.clone())).await;
        results.push(Contender {
            label,
            hand: hand_run,
            ours: ours_run,
            connections: hot_connections(repo),
        });
    }
    results
}

async fn pipelined(
    args: &Args,
    config: &Config,
    admin: &Client,
    data: &Data,
) -> Result<(), BoxError> {
    println!(
        "## 9. The hot path: exclusive checkout vs shared, pipelined connections ({} shared)\n",
        args.pipeline_connections
    );
    println!(
        "Ratios against hand-written tokio-postgres with one connection per caller, measured \
         in alternating slices beside each contender; p99 ratio likewise.\n"
    );
    println!(
        "| callers | operation | implementation | server connections | calls/s | p50 ms | \
         p99 ms | throughput ratio | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let sql = lookup_sql();
    let tokens = data.lookup.clone();
    let n = tokens.len() as u64;
    let mut summary = Vec::new();
    for callers in [1usize, 8, 32] {
        let connections = args.pipeline_connections.min(callers);
        let mut states = Vec::new();
        for _ in 0..callers {
            states.push(hand(config, &sql).await?);
        }
        let t = tokens.clone();
        let handwritten = (states, move |h: Arc<Hand>, seed| {
            let t = t.clone();
            async move {
                hand_lookup(
                    &h.client,
                    &h.statement,
                    t[(seed % n) as usize].expose_secret(),
                )
                .await;
            }
        });
        let repos = HotRepos::new(config, callers, connections, SessionPolicy::default())?;
        repos.warm(callers, &tokens).await?;
        let before = backends(admin).await?;
        let t = tokens.clone();
        let result = hot_compare(
            args.seconds,
            handwritten,
            &[(EXCLUSIVE, &repos.exclusive), (PIPELINED, &repos.pipelined)],
            |_, repo| vec![repo.clone(); callers],
            move |repo: SessionRepo, seed| {
                let t = t.clone();
                async move {
                    let found = repo
                        .find_by_token(t[(seed % n) as usize].expose_secret())
                        .await
                        .expect("lookup");
                    assert!(found.is_some());
                }
            },
        )
        .await;
        // Every side's connections are open at once here: the hand-written callers', the
        // exclusive pool's and the shared ones.
        let seen = backends(admin).await?;
        repos.close();
        print_hot(&format!("{callers} | lookup"), callers, &result);
        let pgbench = pgbench(config, &sql, &tokens, callers, args.seconds).await?;
        println!(
            "{}",
            hot_row(
                &format!(
                    "{callers} | lookup | pgbench -M prepared (ratio: to the last hand-written)"
                ),
                &callers.to_string(),
                &pgbench,
                Some(&result[1].hand)
            )
        );
        println!(
            "| {callers} | lookup | backends of the database after warming: {before}, after \
             the runs: {seen} (every side's connections open at once) | | | | | | |"
        );
        summary.push(Summary {
            load: format!("lookup, {callers} callers"),
            exclusive: result[0].ratio(),
            pipelined: result[1].ratio(),
            pipelined_p99: result[1].p99_ratio(),
            pipelined_writes: None,
            pgbench: Some(result[1].ours.throughput() / pgbench.throughput()),
        });
    }

    // The other operations at 8 callers, each on sessions and users of its own.
    let callers = 8usize;
    let connections = args.pipeline_connections.min(callers);
    let seconds = args.seconds;
    let hot = HotRepos::new(config, callers, connections, ops_policy())?;
    hot.warm(callers, &tokens).await?;
    let repos = [
        (EXCLUSIVE, &hot.exclusive),
        (PIPELINED, &hot.pipelined),
        (PIPELINED_WRITES, &hot.pipelined_writes),
    ];

    // create: users without sessions (the cap is reached after ten creates per user).
    let sql = query_with(
        "create_session",
        &[
            "user_id",
            "id",
            "generation",
            "refresh_token_hash",
            "device_info",
            "ip_address",
            "user_agent",
            "ttl_seconds",
            "idle_seconds",
            "max_sessions",
            "evict",
        ],
    );
    let create_users = Arc::new(new_users(admin, 4000).await?);
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push(hand(config, &sql).await?);
    }
    let u = create_users.clone();
    let handwritten = (hands, move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move { hand_create(&h, user).await }
    });
    let u = create_users.clone();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |_, repo| vec![repo.clone(); callers],
        move |repo: SessionRepo, seed| {
            let user = pick(&u, seed);
            async move {
                let new = NewSession::new(user, DAY)
                    .with_device_info("bench device")
                    .with_ip_address("192.0.2.1".parse().expect("ip"))
                    .with_user_agent("Bench/1.0");
                repo.create(&new).await.expect("create");
            }
        },
    )
    .await;
    print_hot(&format!("{callers} | create"), callers, &result);
    summary.push(ops_summary("create, 8 callers", &result));

    // rotate: each caller rotates its own sessions in turn (4 sides: the hand-written
    // baseline twice, then each hot path).
    let sql = query_with(
        "rotate_session",
        &[
            "user_id",
            "id",
            "generation",
            "presented_hash",
            "successor_hash",
            "idle_seconds",
            "grace_seconds",
        ],
    );
    let rotate_count = 4 * callers * ROTATION_SESSIONS_PER_CALLER;
    let users = new_users(admin, rotate_count / 10).await?;
    let rotate = bulk_sessions(admin, &users, rotate_count, Bulk::LIVE, true).await?;
    let mut chunks = rotate.chunks(ROTATION_SESSIONS_PER_CALLER);
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push((
            hand(config, &sql).await?,
            Chain::shared(chunks.next().expect("rotation sessions")),
        ));
    }
    let key = Arc::new(bench_key());
    let handwritten = (hands, move |(h, chain): (Arc<Hand>, Shared<Chain>), _| {
        let key = key.clone();
        async move { hand_rotate(&h, &chain, &key).await }
    });
    // The hand-written callers keep their chains for both comparisons; each hot path gets
    // chains of its own.
    let ours_chains: Vec<Vec<Shared<Chain>>> = (0..3)
        .map(|_| {
            (0..callers)
                .map(|_| Chain::shared(chunks.next().expect("rotation sessions")))
                .collect()
        })
        .collect();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |side, repo| {
            ours_chains[side]
                .iter()
                .map(|chain| (repo.clone(), chain.clone()))
                .collect()
        },
        |(repo, chain): (SessionRepo, Shared<Chain>), _| async move {
            let (i, current) = Chain::take(&chain);
            let rotation = repo.rotate(&current).await.expect("rotate");
            let Rotation::Rotated { token, .. } = rotation else {
                panic!("rotation failed: {rotation:?}")
            };
            Chain::put(&chain, i, token.expose_secret().to_owned());
        },
    )
    .await;
    print_hot(&format!("{callers} | rotate"), callers, &result);
    summary.push(ops_summary("rotate, 8 callers", &result));

    // activity, throttled (recent activity: nothing written), on lookup sessions.
    let keys: Arc<Vec<SessionKey>> = Arc::new(
        data.lookup
            .iter()
            .step_by((data.lookup.len() / 50_000).max(1))
            .map(RefreshToken::session_key)
            .collect(),
    );
    let (user_ids, session_ids): (Vec<Uuid>, Vec<Uuid>) =
        keys.iter().map(|k| (k.user_id, k.session_id)).unzip();
    admin
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() \
             WHERE (user_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
            &[&user_ids, &session_ids],
        )
        .await?;
    let sql = query_with(
        "update_session_activity",
        &[
            "user_id",
            "id",
            "idle_seconds",
            "ip_address",
            "min_interval_seconds",
        ],
    );
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push(hand(config, &sql).await?);
    }
    let k = keys.clone();
    let handwritten = (hands, move |h: Arc<Hand>, seed| {
        let key = pick(&k, seed);
        async move {
            let ip: Option<IpAddr> = None;
            h.client
                .query_opt(
                    &h.statement,
                    &[
                        &key.user_id,
                        &key.session_id,
                        &Some(IDLE_SECONDS),
                        &ip,
                        &60i64,
                    ],
                )
                .await
                .expect("activity")
                .expect("live");
        }
    });
    let k = keys.clone();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |_, repo| vec![repo.clone(); callers],
        move |repo: SessionRepo, seed| {
            let key = pick(&k, seed);
            async move {
                repo.record_activity(key, None)
                    .await
                    .expect("activity")
                    .expect("live");
            }
        },
    )
    .await;
    print_hot(
        &format!("{callers} | activity (throttled)"),
        callers,
        &result,
    );
    summary.push(ops_summary("activity, 8 callers", &result));

    // list: a random main user's devices (10 sessions each).
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push(
            hand(
                config,
                &query_with("get_user_sessions", &["user_id", "idle_seconds"]),
            )
            .await?,
        );
    }
    let u = data.users.clone();
    let handwritten = (hands, move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move {
            let rows = h
                .client
                .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
                .await
                .expect("list");
            for row in &rows {
                std::hint::black_box(HandDevice::from_row(row));
            }
        }
    });
    let u = data.users.clone();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |_, repo| vec![repo.clone(); callers],
        move |repo: SessionRepo, seed| {
            let user = pick(&u, seed);
            async move {
                std::hint::black_box(repo.list_devices(user).await.expect("list"));
            }
        },
    )
    .await;
    print_hot(&format!("{callers} | list"), callers, &result);
    summary.push(ops_summary("list, 8 callers", &result));

    // revoke: distinct live sessions, each revoked once; a list per side.
    // Six side-seconds (the hand-written callers run beside each of the three contenders),
    // at up to twice the one-caller bound.
    let per_side = (2.0 * REVOKE_RATE_BOUND * seconds) as usize;
    let revoke_count = 6 * per_side;
    let users = new_users(admin, revoke_count / 10).await?;
    let mut revoke: Vec<SessionKey> = bulk_sessions(admin, &users, revoke_count, Bulk::LIVE, true)
        .await?
        .iter()
        .map(RefreshToken::session_key)
        .collect();
    // One side's share for each contender, the rest for the hand-written callers (in all
    // three comparisons).
    let lists: Vec<Shared<Vec<SessionKey>>> = (0..3)
        .map(|_| {
            Arc::new(std::sync::Mutex::new(
                revoke.split_off(revoke.len() - per_side),
            ))
        })
        .collect();
    let hand_list: Shared<Vec<SessionKey>> = Arc::new(std::sync::Mutex::new(revoke));
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push((
            hand(config, &query_with("revoke_session", &["user_id", "id"])).await?,
            hand_list.clone(),
        ));
    }
    let handwritten = (
        hands,
        |(h, list): (Arc<Hand>, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            h.client
                .query_opt(&h.statement, &[&key.user_id, &key.session_id])
                .await
                .expect("revoke")
                .expect("revoked");
        },
    );
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |side, repo| vec![(repo.clone(), lists[side].clone()); callers],
        |(repo, list): (SessionRepo, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            assert!(repo.revoke(key).await.expect("revoke"));
        },
    )
    .await;
    print_hot(&format!("{callers} | revoke"), callers, &result);
    summary.push(ops_summary("revoke, 8 callers", &result));
    hot.close();

    println!(
        "\n| load | exclusive / hand-written | **pipelined / hand-written** | pipelined p99 / \
         hand-written p99 | pipelined with writes / hand-written | pipelined / pgbench |"
    );
    println!("|---|---|---|---|---|---|");
    let optional = |value: Option<f64>| value.map_or(String::new(), |v| format!("{v:.2}"));
    for line in summary {
        println!(
            "| {} | {:.2} | **{:.2}** | {:.2} | {} | {} |",
            line.load,
            line.exclusive,
            line.pipelined,
            line.pipelined_p99,
            optional(line.pipelined_writes),
            optional(line.pgbench)
        );
    }
    println!();
    Ok(())
}

/// One line of section 9's summary: ratios to hand-written one connection per caller.
struct Summary {
    load: String,
    exclusive: f64,
    pipelined: f64,
    pipelined_p99: f64,
    pipelined_writes: Option<f64>,
    pgbench: Option<f64>,
}

fn ops_summary(load: &str, results: &[Contender]) -> Summary {
    Summary {
        load: load.to_owned(),
        exclusive: results[0].ratio(),
        pipelined: results[1].ratio(),
        pipelined_p99: results[1].p99_ratio(),
        pipelined_writes: results.get(2).map(Contender::ratio),
        pgbench: None,
    }
}
