//! `auth-service-loadtest`: the service as it is deployed (the `auth-service serve` binary, its
//! own process) under load from another process (`wrk`), with the server's CPU time and the
//! database's transactions counted per request.
//!
//! ```text
//! cargo build --release --bins
//! target/release/auth-service-loadtest --seconds 5
//! ```
//!
//! It creates a database of its own on the server of `DATABASE_URL` (default
//! `postgres://postgres@localhost:5432/postgres`), migrates it, creates the users, starts
//! `auth-service serve` (found next to this binary) on a free loopback port, and drops the
//! database at the end. Sessions are created directly through the crate with the server's own
//! rotation keys; access tokens come from the server (`POST /refresh`). For each number of
//! clients it runs, with `wrk` (Debian package `wrk`) on `--threads` threads:
//!
//! - `GET /me`, an authorised request, round the access tokens of `--sessions` sessions;
//! - `POST /refresh`, each token presented once (the successor goes back into the queue);
//! - `POST /login`, round the users (argon2id at the service's defaults).
//!
//! The server's CPU per request is its process's user + system time (`/proc/PID/stat`) over the
//! run divided by the requests; the database transactions per request come from
//! `pg_stat_database` (commits + rollbacks of the bench database, read 11 s after the load
//! stops, when every backend has reported; the figure includes the server's background work
//! meanwhile: heartbeats, activity batches, cleanup, and the reading's own transaction).
//!
//! `--variant LABEL=ARGS` (repeatable) runs the whole set once per variant, starting the server
//! with the extra `serve` arguments ARGS (space-separated); the default is one variant with
//! none.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth_service::{keys::parse_rotation_keys, password::Passwords, users};
use auth_sessions::deadpool_postgres::{Pool, tokio_postgres};
use auth_sessions::{KeySource, NewSession, PoolSettings, SessionPolicy, SessionRepo};
use base64::Engine as _;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Seconds per figure.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections of the load generator, one figure each.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32])]
    clients: Vec<usize>,
    /// Load-generator threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Sessions the authorised requests and refreshes go round.
    #[arg(long, default_value_t = 256)]
    sessions: usize,
    /// Users (sessions are spread over them; logins go round them).
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Operations to run (me, refresh, login).
    #[arg(long, value_delimiter = ',', default_values_t = ["me".to_owned(), "refresh".to_owned(), "login".to_owned()])]
    operations: Vec<String>,
    /// `LABEL=ARGS`: a server configuration (extra `serve` arguments, space-separated).
    #[arg(long = "variant")]
    variants: Vec<String>,
    /// The load generator.
    #[arg(long, default_value = "wrk")]
    wrk: String,
    /// PostgreSQL server (a database of the load test's own is created on it).
    #[arg(long, env = "DATABASE_URL", default_value = auth_sessions::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
}

const PASSWORD: &str = "load test password";
const JWT_SECRET: &str = "load-test-secret-load-test-secret-load-test";
/// How long after the load the database's statistics are read.
const STATISTICS_SETTLE: Duration = Duration::from_secs(11);
/// Linux's clock ticks per second for `/proc/PID/stat` times (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server's process, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `wrk` run as read from its report.
struct Run {
    requests: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    cpu_us_per_request: f64,
    transactions_per_request: f64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let (admin_config, _) = auth_sessions::parse_database_url(&args.database_url)?;
    let name = format!("auth_service_load_{}", std::process::id());
    let (admin, connection) = admin_config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let workdir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&workdir)?;
    let result = run(&args, &name, &workdir).await;
    let _ = std::fs::remove_dir_all(&workdir);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

/// `DATABASE_URL` with the database replaced by `name`.
fn database_url(base: &str, name: &str) -> Result<String, BoxError> {
    let mut url = reqwest::Url::parse(base)?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

fn random_key_text() -> Result<String, BoxError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

async fn run(args: &Args, name: &str, workdir: &Path) -> Result<(), BoxError> {
    let url = database_url(&args.database_url, name)?;
    let pool = auth_sessions::build_pool(&url, &PoolSettings::default())?;
    auth_service::migrate::migrate(&pool).await?;
    let keys = random_key_text()?;
    let policy =
        SessionPolicy::default().rotation_keys(KeySource::SecretStore(parse_rotation_keys(&keys)?));
    let repo = SessionRepo::with_policy(pool.clone(), policy)?;

    let params = argon2::Params::default();
    let hash = Passwords::new(params.clone())?.hash(PASSWORD)?;
    let mut user_ids = Vec::new();
    for i in 0..args.users {
        let email = format!("user{i}@load.test");
        user_ids.push(
            users::create_user(&pool, &email, &hash)
                .await
                .map_err(|err| err.to_string())?,
        );
    }
    for (file, text) in [
        ("me.lua", include_str!("../../bench/me.lua")),
        ("refresh.lua", include_str!("../../bench/refresh.lua")),
        ("login.lua", include_str!("../../bench/login.lua")),
    ] {
        std::fs::write(workdir.join(file), text)?;
    }
    let server_binary = std::env::current_exe()?
        .parent()
        .map(|dir| dir.join("auth-service"))
        .filter(|path| path.exists())
        .ok_or("auth-service is not built next to this binary: cargo build --release --bins")?;

    let variants: Vec<(String, Vec<String>)> = if args.variants.is_empty() {
        vec![("default".to_owned(), Vec::new())]
    } else {
        args.variants
            .iter()
            .map(|variant| {
                let (label, rest) = variant.split_once('=').unwrap_or((variant, ""));
                (
                    label.to_owned(),
                    rest.split_whitespace().map(str::to_owned).collect(),
                )
            })
            .collect()
    };

    println!(
        "server: the auth-service binary in its own process; load: {} ({} threads) in another; \
         {} s per figure; {} users, {} sessions; argon2id m={} KiB, t={}, p={}; {} cores",
        args.wrk,
        args.threads,
        args.seconds,
        args.users,
        args.sessions,
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!();
    println!(
        "| server | operation | clients | requests/s | p50 ms | p99 ms | requests | failed | server CPU µs/request | database transactions/request |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let http = reqwest::Client::new();
    for (label, extra) in &variants {
        let server = start_server(&server_binary, &url, &keys, extra, &http).await?;
        for &clients in &args.clients {
            for operation in &args.operations {
                let run = match operation.as_str() {
                    "me" => {
                        let file = workdir.join("access.txt");
                        let tokens = fresh_refresh_tokens(&repo, &user_ids, args.sessions).await?;
                        let mut access = Vec::new();
                        for token in tokens {
                            let body: Value = http
                                .post(format!("{}/refresh", server.base))
                                .json(&json!({ "refresh_token": token }))
                                .send()
                                .await?
                                .error_for_status()?
                                .json()
                                .await?;
                            access.push(
                                body["access_token"]
                                    .as_str()
                                    .ok_or("no access token")?
                                    .to_owned(),
                            );
                        }
                        std::fs::write(&file, access.join("\n") + "\n")?;
                        measure(
                            args,
                            &server,
                            &pool,
                            workdir,
                            clients,
                            "me.lua",
                            &[path_arg(&file)],
                        )
                        .await?
                    }
                    "refresh" => {
                        let file = workdir.join("refresh.txt");
                        let tokens = fresh_refresh_tokens(&repo, &user_ids, args.sessions).await?;
                        std::fs::write(&file, tokens.join("\n") + "\n")?;
                        let threads = args.threads.to_string();
                        measure(
                            args,
                            &server,
                            &pool,
                            workdir,
                            clients,
                            "refresh.lua",
                            &[path_arg(&file), threads],
                        )
                        .await?
                    }
                    "login" => {
                        let users = args.users.to_string();
                        measure(
                            args,
                            &server,
                            &pool,
                            workdir,
                            clients,
                            "login.lua",
                            &[users, PASSWORD.to_owned()],
                        )
                        .await?
                    }
                    other => return Err(format!("unknown operation {other}").into()),
                };
                println!(
                    "| {label} | {operation} | {clients} | {:.0} | {:.2} | {:.2} | {} | {} | {:.1} | {:.3} |",
                    run.rate,
                    run.p50_ms,
                    run.p99_ms,
                    run.requests,
                    run.failed,
                    run.cpu_us_per_request,
                    run.transactions_per_request,
                );
            }
        }
        drop(server);
    }
    pool.close();
    Ok(())
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

async fn start_server(
    binary: &PathBuf,
    url: &str,
    keys: &str,
    extra: &[String],
    http: &reqwest::Client,
) -> Result<Server, BoxError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(binary)
        .args(["serve", "--listen", &listen, "--access-ttl-secs", "3600"])
        .args(["--login-per-minute", "1000000", "--login-burst", "1000000"])
        .args(extra)
        .env("DATABASE_URL", url)
        .env("AUTH_SERVICE_JWT_SECRET", JWT_SECRET)
        .env("AUTH_SERVICE_ROTATION_KEYS", keys)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        base: format!("http://{listen}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(format!("{}/healthz", server.base)).send().await
            && response.status().is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            return Err("the server did not answer /healthz within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `count` new sessions spread over the users: their refresh tokens.
async fn fresh_refresh_tokens(
    repo: &SessionRepo,
    users: &[uuid::Uuid],
    count: usize,
) -> Result<Vec<String>, BoxError> {
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let new = NewSession::new(users[i % users.len()], Duration::from_secs(3600))
            .with_device_info("load");
        let (_, token) = repo.create(&new).await?;
        tokens.push(token.expose_secret().to_owned());
    }
    Ok(tokens)
}

/// The server process's user + system CPU time.
fn cpu_time(server: &Server) -> Result<Duration, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id()))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("unreadable /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND))
}

/// Transactions the bench database has finished, once the server's backends have reported
/// them: a backend that goes idle within a second of its last report holds the rest back for
/// ten seconds (PostgreSQL's idle statistics interval), so this waits eleven first.
async fn transactions(pool: &Pool) -> Result<i64, BoxError> {
    tokio::time::sleep(STATISTICS_SETTLE).await;
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database \
             WHERE datname = current_database()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn measure(
    args: &Args,
    server: &Server,
    pool: &Pool,
    workdir: &Path,
    clients: usize,
    script: &str,
    script_args: &[String],
) -> Result<Run, BoxError> {
    let transactions_before = transactions(pool).await?;
    let cpu_before = cpu_time(server)?;
    let output = Command::new(&args.wrk)
        .arg(format!("-t{}", args.threads.min(clients)))
        .arg(format!("-c{clients}"))
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency")
        .arg("-s")
        .arg(workdir.join(script))
        .arg(&server.base)
        .arg("--")
        .args(script_args)
        .output()
        .map_err(|err| format!("cannot run {}: {err} (apt-get install wrk)", args.wrk))?;
    let cpu = cpu_time(server)?.saturating_sub(cpu_before);
    let transactions_after = transactions(pool).await?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {report} {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let requests = find_number(&report, "requests in").ok_or("no request count in wrk's report")?;
    let run = Run {
        requests: requests as u64,
        rate: find_after(&report, "Requests/sec:").ok_or("no rate in wrk's report")?,
        p50_ms: latency(&report, "50%").ok_or("no p50 in wrk's report")?,
        p99_ms: latency(&report, "99%").ok_or("no p99 in wrk's report")?,
        failed: find_after(&report, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64
            + socket_errors(&report),
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / requests.max(1.0),
        transactions_per_request: (transactions_after - transactions_before) as f64
            / requests.max(1.0),
    };
    Ok(run)
}

/// The number right after `label` on its line.
fn find_after(report: &str, label: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.trim_end_matches(',').parse().ok())
}

/// wrk's "Socket errors: connect 0, read 0, write 0, timeout 0", summed (absent: none).
fn socket_errors(report: &str) -> u64 {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Socket errors:"))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .filter_map(|number| number.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// The number right before `label` (wrk's "12345 requests in 5.00s").
fn find_number(report: &str, label: &str) -> Option<f64> {
    report.lines().find_map(|line| {
        let (before, _) = line.split_once(label)?;
        before.split_whitespace().last()?.parse().ok()
    })
}

/// A latency percentile of wrk's distribution, in milliseconds.
fn latency(report: &str, percentile: &str) -> Option<f64> {
    let value = report
        .lines()
        .find_map(|line| line.trim().strip_prefix(percentile))?
        .trim();
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}
