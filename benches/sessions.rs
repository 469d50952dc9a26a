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
//! recreated on every run. Sections:
//! 1. token lookup, `SessionRepo` vs hand-written tokio-postgres (prepared statement, same SQL)
//!    vs `pgbench -M prepared` (same SQL), at 1, 8 and 32 concurrent callers;
//! 2. create, activity (throttled and not), rotation, list, revoke vs hand-written;
//! 3. cleanup of expired sessions: rows/s, and lookup p99 during cleanup / without;
//! 4. storage per session;
//! 5. round trips per repository call, counted on the wire.

#[path = "../tests/common/relay.rs"]
mod relay;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{
    DEFAULT_DATABASE_URL, NewSession, PoolSettings, RefreshToken, Rotation, RotationKey,
    SessionPolicy, SessionRepo, TokenHash, build_pool_with_config, migrate,
};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BENCH_DB: &str = "auth_sessions_bench";
/// The default idle timeout of `SessionPolicy`, in seconds: the hand-written queries pass the
/// same value.
const IDLE_SECONDS: i64 = 14 * 24 * 60 * 60;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

struct Args {
    sessions: i64,
    seconds: f64,
    expired: i64,
    cleanup_batch: u32,
    cleanup_pause_ms: u64,
    only_cleanup: bool,
    only_lookups: bool,
}

fn args() -> Args {
    let mut args = Args {
        sessions: 1_000_000,
        seconds: 5.0,
        expired: 1_000_000,
        cleanup_batch: 1000,
        cleanup_pause_ms: 50,
        only_cleanup: false,
        only_lookups: false,
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
            "--cleanup-batch" => args.cleanup_batch = value(&mut it, "--cleanup-batch"),
            "--cleanup-pause-ms" => args.cleanup_pause_ms = value(&mut it, "--cleanup-pause-ms"),
            "--only-cleanup" => args.only_cleanup = true,
            "--only-lookups" => args.only_lookups = true,
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

fn bench_config() -> Result<Config, BoxError> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    Ok(Config::from_str(&url)?)
}

async fn connect(config: &Config) -> Result<Client, BoxError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn synthetic_hash(i: u64) -> TokenHash {
    TokenHash::from_hex(&format!("{i:064x}")).expect("64 hex digits")
}

async fn setup(args: &Args) -> Result<(Config, Client), BoxError> {
    let server = bench_config()?;
    let admin = connect(&server).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {BENCH_DB}"))
        .await?;
    let config = server.clone().dbname(BENCH_DB).clone();
    let pool = build_pool_with_config(config.clone(), &PoolSettings::default())?;
    migrate(&pool).await?;
    pool.close();
    let client = connect(&config).await?;
    let users = (args.sessions / 10).max(1);
    let started = Instant::now();
    client
        .execute(
            "INSERT INTO auth.users (id, email) \
             SELECT gen_random_uuid(), 'user' || g || '@bench.test' FROM generate_series(1, $1::bigint) g",
            &[&users],
        )
        .await?;
    // Session i: synthetic hash i (64 hex digits), user i mod users, activity an hour ago.
    client
        .execute(
            "WITH u AS (SELECT array_agg(id ORDER BY email) AS ids FROM auth.users) \
             INSERT INTO auth.user_sessions (user_id, refresh_token_hash, device_info, ip_address, \
                 user_agent, last_active_at, expires_at, created_at) \
             SELECT u.ids[1 + g % $2::bigint], lpad(to_hex(g), 64, '0'), 'device ' || g, \
                 '10.0.0.0'::inet + g, 'Mozilla/5.0 (X11; Linux x86_64) Bench/1.0', \
                 now() - interval '1 hour', now() + interval '30 days', now() - interval '1 day' \
             FROM generate_series(1, $1::bigint) g, u",
            &[&args.sessions, &users],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE auth.users").await?;
    client
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    println!(
        "data set: {} sessions for {} users, built in {:.1} s\n",
        args.sessions,
        users,
        started.elapsed().as_secs_f64()
    );
    Ok((config, client))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let (config, client) = setup(&args).await?;
    if args.only_lookups {
        return lookups(&args, &config).await;
    }
    if !args.only_cleanup {
        lookups(&args, &config).await?;
        operations(&args, &config, &client).await?;
        storage(&client).await?;
        round_trips(&config, &client).await?;
    }
    cleanup(&args, &config, &client).await?;
    Ok(())
}

fn repo_for(config: &Config, size: usize, policy: SessionPolicy) -> Result<SessionRepo, BoxError> {
    let pool = build_pool_with_config(config.clone(), &PoolSettings::default().max_size(size))?;
    Ok(SessionRepo::with_policy(pool, policy))
}

async fn warm(repo: &SessionRepo, size: usize) -> Result<(), BoxError> {
    // Open every connection and prepare the lookup on each.
    let calls = (0..size).map(|i| repo.find_by_token_hash_owned(synthetic_hash(i as u64 + 1)));
    for result in futures::future::join_all(calls).await {
        result?;
    }
    Ok(())
}

trait FindOwned {
    fn find_by_token_hash_owned(
        &self,
        hash: TokenHash,
    ) -> impl Future<Output = Result<Option<auth_sessions::Session>, auth_sessions::Error>> + Send;
}

impl FindOwned for SessionRepo {
    fn find_by_token_hash_owned(
        &self,
        hash: TokenHash,
    ) -> impl Future<Output = Result<Option<auth_sessions::Session>, auth_sessions::Error>> + Send
    {
        let repo = self.clone();
        async move { repo.find_by_token_hash(&hash).await }
    }
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

async fn lookups(args: &Args, config: &Config) -> Result<(), BoxError> {
    println!("## 1. Token lookup (the hot path)\n");
    println!("| callers | implementation | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let (sql, names) = query("get_session_by_token_hash");
    assert_eq!(names, ["refresh_token_hash", "idle_seconds"]);
    let n = args.sessions as u64;
    for concurrency in [1usize, 8, 32] {
        // Hand-written: one connection per caller, the same SQL prepared once on each.
        let mut states = Vec::new();
        for _ in 0..concurrency {
            states.push(hand(config, &sql).await?);
        }
        let handwritten_calls = (states, move |h: Arc<Hand>, seed| async move {
            let hash = format!("{:064x}", 1 + seed % n);
            let row = h
                .client
                .query_opt(&h.statement, &[&hash, &Some(IDLE_SECONDS)])
                .await
                .expect("lookup")
                .expect("found");
            // Decoded into the same fields SessionRepo returns, as a service would.
            std::hint::black_box(HandSession::from_row(&row));
        });

        let repo = repo_for(config, concurrency, SessionPolicy::default())?;
        warm(&repo, concurrency).await?;
        let ours = (
            vec![repo.clone(); concurrency],
            move |repo: SessionRepo, seed| async move {
                let found = repo
                    .find_by_token_hash(&synthetic_hash(1 + seed % n))
                    .await
                    .expect("lookup");
                assert!(found.is_some());
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
        let pooled = (
            vec![pool.clone(); concurrency],
            move |pool: deadpool_postgres::Pool, seed| {
                let sql = pooled_sql.clone();
                async move {
                    let hash = format!("{:064x}", 1 + seed % n);
                    let client = pool.get().await.expect("pooled connection");
                    let statement = client.prepare_cached(&sql).await.expect("prepare");
                    let row = client
                        .query_opt(&statement, &[&hash, &Some(IDLE_SECONDS)])
                        .await
                        .expect("lookup")
                        .expect("found");
                    std::hint::black_box(HandSession::from_row(&row));
                }
            },
        );
        let (_, pooled) = compare(args.seconds / 2.0, handwritten_calls, pooled).await;
        pool.close();

        let pgbench = pgbench(config, &sql, n, concurrency, args.seconds).await?;
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

/// `pgbench -M prepared` on the same SQL, the hash built in SQL from a random number.
async fn pgbench(
    config: &Config,
    sql: &str,
    n: u64,
    concurrency: usize,
    seconds: f64,
) -> Result<Run, BoxError> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("lookup.sql");
    let statement = sql
        .replace("$1", "lpad(to_hex(:i::bigint), 64, '0')")
        .replace("$2", &IDLE_SECONDS.to_string())
        .replace('\n', " ");
    std::fs::write(&script, format!("\\set i random(1, {n})\n{statement};\n"))?;
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
        .args(["-T", &(seconds.ceil() as u64).to_string()])
        .args(["-h", &host, "-p", &port.to_string(), "-U", &user, "-f"])
        .arg(&script)
        .arg(BENCH_DB);
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
    let mut latencies_us = Vec::new();
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("lat"))
        {
            for line in std::fs::read_to_string(path)?.lines() {
                if let Some(latency) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                    latencies_us.push(latency);
                }
            }
        }
    }
    Ok(Run {
        calls: latencies_us.len() as u64,
        elapsed: Duration::from_secs_f64(seconds.ceil()),
        latencies_us,
    })
}

/// What a hand-written lookup decodes: the fields of `auth_sessions::Session`.
#[allow(dead_code)] // Read only through black_box.
struct HandSession {
    id: Uuid,
    user_id: Uuid,
    device_info: Option<String>,
    ip_address: Option<std::net::IpAddr>,
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

async fn ids(client: &Client, sql: &str, limit: i64) -> Result<Vec<Uuid>, BoxError> {
    Ok(client
        .query(sql, &[&limit])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

fn pick<T: Copy>(items: &[T], seed: u64) -> T {
    items[(seed % items.len() as u64) as usize]
}

type Shared<T> = Arc<std::sync::Mutex<T>>;

async fn operations(args: &Args, config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!("## 2. Other operations, one caller, versus hand-written tokio-postgres\n");
    println!("| operation | implementation | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let seconds = args.seconds;
    let policy = SessionPolicy::default().rotation_key(bench_key());
    let repo = repo_for(config, 1, policy.clone())?;
    let unthrottled = repo_for(config, 1, policy.clone().activity_interval(Duration::ZERO))?;
    let users: Arc<Vec<Uuid>> = Arc::new(
        ids(
            admin,
            "SELECT id FROM auth.users ORDER BY email LIMIT $1",
            20_000,
        )
        .await?,
    );
    let mut results: Vec<(&str, Run, Run)> = Vec::new();

    // create: the same SQL and parameters (per-user cap 10, evicting); token drawn and hashed.
    let h = hand(config, &query("create_session").0).await?;
    let u = users.clone();
    let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move {
            let hash = RefreshToken::generate().expect("token").hash();
            let device: Option<&str> = Some("bench device");
            let ip: Option<std::net::IpAddr> = Some("192.0.2.1".parse().expect("ip"));
            let agent: Option<&str> = Some("Bench/1.0");
            let (ttl, cap, evict) = (86_400i64, Some(10i32), true);
            let hash = hash.as_str();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
                &user,
                &hash,
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
    });
    let u = users.clone();
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
    results.push(("create", handwritten, ours));

    // activity: throttled (recent activity: nothing written) and unthrottled (always written).
    let session_ids: Arc<Vec<Uuid>> = Arc::new(
        ids(
            admin,
            "SELECT id FROM auth.user_sessions WHERE revoked_at IS NULL LIMIT $1",
            50_000,
        )
        .await?,
    );
    for (label, interval, repo) in [
        ("activity, throttled 60 s", 60i64, &repo),
        ("activity, unthrottled", 0, &unthrottled),
    ] {
        admin
            .execute(
                "UPDATE auth.user_sessions SET last_active_at = now() WHERE id = ANY($1)",
                &[&*session_ids],
            )
            .await?;
        let h = hand(config, &query("update_session_activity").0).await?;
        let i = session_ids.clone();
        let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
            let id = pick(&i, seed);
            async move {
                let ip: Option<std::net::IpAddr> = None;
                h.client
                    .query_opt(&h.statement, &[&id, &Some(IDLE_SECONDS), &ip, &interval])
                    .await
                    .expect("activity");
            }
        });
        let i = session_ids.clone();
        let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
            let id = pick(&i, seed);
            async move {
                repo.record_activity(id, None).await.expect("activity");
            }
        });
        let (handwritten, ours) = compare(seconds, handwritten, ours).await;
        results.push((label, handwritten, ours));
    }

    // rotate: each side rotates its own session's token again and again.
    let (_, token_h) = repo.create(&NewSession::new(users[0], DAY)).await?;
    let (_, token_r) = repo.create(&NewSession::new(users[0], DAY)).await?;
    let h = hand(config, &query("rotate_session").0).await?;
    let chain: Shared<RefreshToken> = Arc::new(std::sync::Mutex::new(token_h));
    let key = Arc::new(bench_key());
    let handwritten = (
        vec![(h, chain, key)],
        |(h, chain, key): (Arc<Hand>, Shared<RefreshToken>, Arc<RotationKey>), _| async move {
            let current = chain.lock().unwrap().clone();
            let next = key.successor(&current);
            let (old_hash, new_hash) = (current.hash(), next.hash());
            let row = h
                .client
                .query_opt(
                    &h.statement,
                    &[
                        &old_hash.as_str(),
                        &new_hash.as_str(),
                        &Some(IDLE_SECONDS),
                        &10i64,
                    ],
                )
                .await
                .expect("rotate")
                .expect("row");
            assert_eq!(row.get::<_, &str>(0), "rotated");
            *chain.lock().unwrap() = next;
        },
    );
    let chain: Shared<RefreshToken> = Arc::new(std::sync::Mutex::new(token_r));
    let ours = (
        vec![(repo.clone(), chain)],
        |(repo, chain): (SessionRepo, Shared<RefreshToken>), _| async move {
            let current = chain.lock().unwrap().clone();
            let rotation = repo.rotate(current.expose_secret()).await.expect("rotate");
            let Rotation::Rotated { token, .. } = rotation else {
                panic!("rotation failed")
            };
            *chain.lock().unwrap() = token;
        },
    );
    let (handwritten, ours) = compare(seconds, handwritten, ours).await;
    results.push(("rotate", handwritten, ours));

    // list: a random user's devices (10 sessions each in the data set).
    let h = hand(config, &query("get_user_sessions").0).await?;
    let u = users.clone();
    let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move {
            h.client
                .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
                .await
                .expect("list");
        }
    });
    let u = users.clone();
    let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
        let user = pick(&u, seed);
        async move {
            repo.list_devices(user).await.expect("list");
        }
    });
    let (handwritten, ours) = compare(seconds, handwritten, ours).await;
    results.push(("list", handwritten, ours));

    // revoke: distinct live sessions, each revoked once, owners known beforehand.
    let rows = admin
        .query(
            "SELECT id, user_id FROM auth.user_sessions WHERE revoked_at IS NULL ORDER BY id LIMIT $1",
            &[&200_000i64],
        )
        .await?;
    let mut pairs: Vec<(Uuid, Uuid)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let second: Shared<Vec<(Uuid, Uuid)>> =
        Arc::new(std::sync::Mutex::new(pairs.split_off(pairs.len() / 2)));
    let first: Shared<Vec<(Uuid, Uuid)>> = Arc::new(std::sync::Mutex::new(pairs));
    let h = hand(config, &query("revoke_session").0).await?;
    let handwritten = (
        vec![(h, first)],
        |(h, list): (Arc<Hand>, Shared<Vec<(Uuid, Uuid)>>), _| async move {
            let (id, user) = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke");
            h.client
                .query_opt(&h.statement, &[&id, &user])
                .await
                .expect("revoke")
                .expect("revoked");
        },
    );
    let ours = (
        vec![(repo.clone(), second)],
        |(repo, list): (SessionRepo, Shared<Vec<(Uuid, Uuid)>>), _| async move {
            let (id, user) = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke");
            assert!(repo.revoke(id, user).await.expect("revoke"));
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
    Ok(())
}

async fn storage(admin: &Client) -> Result<(), BoxError> {
    println!("## 4. Storage\n");
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
    println!("## 5. Round trips per repository call (warm connection, counted on the wire)\n");
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
    let repo = SessionRepo::with_policy(pool, SessionPolicy::default().rotation_key(bench_key()));
    let user: Uuid = admin
        .query_one("SELECT id FROM auth.users ORDER BY email DESC LIMIT 1", &[])
        .await?
        .get(0);
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
        count!("find_by_token_hash", repo.find_by_token_hash(&token.hash()));
        count!("validate", repo.validate(token.expose_secret()));
        count!("record_activity", repo.record_activity(session.id, None));
        count!("list_devices", repo.list_devices(user));
        count!("count_live", repo.count_live(user));
        count!("rotate", repo.rotate(token.expose_secret()));
        count!("revoke", repo.revoke(session.id, user));
        count!(
            "revoke_all_except",
            repo.revoke_all_except(user, session.id)
        );
        count!("revoke_all", repo.revoke_all(user));
        count!("delete_expired", repo.delete_expired());
        if pass == 1 {
            for (name, trips) in counts {
                println!("| {name} | {trips} |");
            }
        }
    }
    println!();
    Ok(())
}

async fn cleanup(args: &Args, config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!("## 3. Cleanup of {} expired sessions\n", args.expired);
    let users = (args.sessions / 10).max(1);
    let started = Instant::now();
    admin
        .execute(
            "WITH u AS (SELECT array_agg(id ORDER BY email) AS ids FROM auth.users) \
             INSERT INTO auth.user_sessions (user_id, refresh_token_hash, last_active_at, expires_at, created_at) \
             SELECT u.ids[1 + g % $3::bigint], lpad(to_hex($2::bigint + g), 64, '0'), \
                 now() - interval '2 days', now() - interval '1 day' + g * interval '1 microsecond', \
                 now() - interval '3 days' \
             FROM generate_series(1, $1::bigint) g, u",
            &[&args.expired, &(args.sessions + 1_000_000), &users],
        )
        .await?;
    admin
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    println!("(inserted in {:.1} s)\n", started.elapsed().as_secs_f64());

    let n = args.sessions as u64;
    let lookup_repo = repo_for(config, 8, SessionPolicy::default())?;
    warm(&lookup_repo, 8).await?;
    let lookup = move |repo: SessionRepo, seed: u64| async move {
        repo.find_by_token_hash(&synthetic_hash(1 + seed % n))
            .await
            .expect("lookup");
    };
    let quiet = measure(args.seconds, vec![lookup_repo.clone(); 8], lookup).await;

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
                .expect("cleanup batch");
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
        let slice = measure(0.5, vec![lookup_repo.clone(); 8], lookup).await;
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
