//! `auth-service-bench`: the service over HTTP on loopback against the same operation called
//! directly on `SessionRepo`, in one run, with 8 and 32 concurrent clients; then the time from a
//! revocation on instance A until instance B refuses the session.
//!
//! ```text
//! cargo run --release --bin auth-service-bench -- --seconds 3
//! ```
//!
//! Creates its own database on the server of `DATABASE_URL` (default
//! `postgres://postgres@localhost:5432/postgres`) and drops it at the end. Server and load
//! generator share the process (and the machine).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_service::{AppState, Settings, password::Passwords, users};
use auth_sessions::{
    LiveSettings, NewSession, PoolSettings, RefreshToken, Rotation, SessionKey, SessionRepo,
};
use clap::Parser;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Seconds per figure.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Only the propagation figures and the login times (the throughput figures are better
    /// taken by auth-service-loadtest, with the load from another process).
    #[arg(long)]
    only_propagation: bool,
    /// Revocations timed for the propagation figure.
    #[arg(long, default_value_t = 200)]
    revocations: usize,
    /// PostgreSQL server (a database of the bench's own is created on it).
    #[arg(long, env = "DATABASE_URL", default_value = auth_sessions::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
}

const USERS: usize = 64;
const PASSWORD: &str = "benchmark password";
const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Stats {
    ops: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut latencies: Vec<Duration>, elapsed: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        ops: latencies.len(),
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Runs `clients` workers until the deadline; each returns its latencies.
async fn drive<F, Fut>(clients: usize, seconds: u64, worker: F) -> Stats
where
    F: Fn(usize, Instant) -> Fut,
    Fut: Future<Output = Vec<Duration>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(worker(i, deadline)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    stats(all, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let (admin_config, _) = auth_sessions::parse_database_url(&args.database_url)?;
    let name = format!("auth_service_bench_{}", std::process::id());
    let (admin, connection) = admin_config
        .connect(auth_sessions::deadpool_postgres::tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let mut config = admin_config.clone();
    config.dbname(&name);
    let result = run(&args, config).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

async fn run(
    args: &Args,
    config: auth_sessions::deadpool_postgres::tokio_postgres::Config,
) -> Result<(), BoxError> {
    let tls = auth_sessions::TlsSettings::default_for(&config);
    let pool_a =
        auth_sessions::build_pool_with_tls(config.clone(), &tls, &PoolSettings::default())?;
    let pool_b = auth_sessions::build_pool_with_tls(config, &tls, &PoolSettings::default())?;
    auth_service::migrate::migrate(&pool_a).await?;

    let params = argon2::Params::default();
    println!(
        "argon2id m={} KiB, t={}, p={} (the service's defaults); {} users; {} s per figure; \
         server and clients in one process, tokio worker threads = cores = {}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        USERS,
        args.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );
    let passwords = Arc::new(Passwords::new(params.clone())?);
    let mut user_ids = Vec::new();
    for i in 0..USERS {
        let hash = passwords.hash(PASSWORD)?;
        let email = format!("user{i}@bench.test");
        user_ids.push(
            users::create_user(&pool_a, &email, &hash)
                .await
                .map_err(|err| err.to_string())?,
        );
    }

    let mut verify_times = Vec::new();
    let sample = passwords.hash(PASSWORD)?;
    for _ in 0..10 {
        let t = Instant::now();
        assert!(passwords.verify(PASSWORD, Some(&sample)));
        verify_times.push(t.elapsed());
    }
    let verify = stats(verify_times, Duration::from_secs(1));
    println!(
        "one argon2id verification on one thread, alone: p50 {} ms (so at most about {:.0} logins/s per core)",
        ms(verify.p50),
        1.0 / verify.p50.as_secs_f64()
    );

    let mut settings = Settings::new(b"bench-secret-bench-secret-bench-secret!!".to_vec());
    let unlimited = std::num::NonZeroU32::new(1_000_000).unwrap();
    settings.login_per_minute = unlimited;
    settings.login_burst = unlimited;
    settings.account_per_minute = unlimited;
    settings.account_burst = unlimited;
    settings.pair_per_minute = unlimited;
    settings.pair_burst = unlimited;
    settings.argon2 = params;
    let repo_a = SessionRepo::new(pool_a.clone());
    let repo_b = SessionRepo::new(pool_b.clone());
    let settings_for_live = settings.clone();
    let state_a = AppState::new(repo_a.clone(), settings.clone())?;
    let state_b = AppState::new(repo_b, settings)?;
    let (addr_a, _) = auth_service::routes::spawn_on_loopback(state_a.clone()).await?;
    let (addr_b, _) = auth_service::routes::spawn_on_loopback(state_b).await?;
    let base_a = format!("http://{addr_a}");
    let base_b = format!("http://{addr_b}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    println!();
    println!(
        "| operation | clients | HTTP ops/s | HTTP p50 ms | HTTP p99 ms | direct ops/s | direct p50 ms | direct p99 ms | HTTP/direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let line = |op: &str, clients: usize, h: &Stats, d: &Stats| {
        println!(
            "| {op} | {clients} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2} |",
            h.rate,
            ms(h.p50),
            ms(h.p99),
            d.rate,
            ms(d.p50),
            ms(d.p99),
            h.rate / d.rate
        );
        eprintln!(
            "  ({op}, {clients} clients: {} HTTP and {} direct operations)",
            h.ops, d.ops
        );
    };

    let client_counts: &[usize] = if args.only_propagation { &[] } else { &[8, 32] };
    for &clients in client_counts {
        // Logins: POST /login against find credentials + argon2id verify + SessionRepo::create.
        let http_stats = drive(clients, args.seconds, |i, deadline| {
            let http = http.clone();
            let base = base_a.clone();
            async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let response = http
                        .post(format!("{base}/login"))
                        .json(&json!({"email": format!("user{}@bench.test", i % USERS), "password": PASSWORD, "device": "bench"}))
                        .send()
                        .await
                        .expect("login");
                    assert!(response.status().is_success(), "login: {}", response.status());
                    let _ = response.bytes().await;
                    lat.push(t.elapsed());
                }
                lat
            }
        })
        .await;
        let direct = drive(clients, args.seconds, |i, deadline| {
            let repo = repo_a.clone();
            let pool = pool_a.clone();
            let passwords = Arc::clone(&passwords);
            async move {
                let mut lat = Vec::new();
                let email = format!("user{}@bench.test", i % USERS);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (user, hash) = users::find_credentials(&pool, &email)
                        .await
                        .expect("credentials")
                        .expect("user");
                    let passwords = Arc::clone(&passwords);
                    let ok = tokio::task::spawn_blocking(move || {
                        passwords.verify(PASSWORD, Some(&hash))
                    })
                    .await
                    .unwrap();
                    assert!(ok);
                    let new = NewSession::new(user, Duration::from_secs(3600))
                        .with_device_info("bench")
                        .with_ip_address(LOCALHOST);
                    repo.create(&new).await.expect("create");
                    lat.push(t.elapsed());
                }
                lat
            }
        })
        .await;
        line("login", clients, &http_stats, &direct);

        // Refreshes: each client rotates its own session's token, over HTTP and directly.
        let tokens = fresh_tokens(&repo_a, &user_ids, clients).await;
        let http_stats = drive(clients, args.seconds, |i, deadline| {
            let http = http.clone();
            let base = base_a.clone();
            let mut token = tokens[i].expose_secret().to_owned();
            async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let body: Value = http
                        .post(format!("{base}/refresh"))
                        .json(&json!({"refresh_token": token}))
                        .send()
                        .await
                        .expect("refresh")
                        .json()
                        .await
                        .expect("refresh body");
                    token = body["refresh_token"].as_str().expect("rotated").to_owned();
                    lat.push(t.elapsed());
                }
                lat
            }
        })
        .await;
        let tokens = fresh_tokens(&repo_a, &user_ids, clients).await;
        let direct = drive(clients, args.seconds, |i, deadline| {
            let repo = repo_a.clone();
            let mut token = RefreshToken::parse(tokens[i].expose_secret()).unwrap();
            async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match repo.rotate(token.expose_secret()).await.expect("rotate") {
                        Rotation::Rotated { token: next, .. } => token = next,
                        other => panic!("rotation: {other:?}"),
                    }
                    lat.push(t.elapsed());
                }
                lat
            }
        })
        .await;
        line("refresh", clients, &http_stats, &direct);

        // Authorised requests: GET /me (JWT check + record_activity) against record_activity.
        let tokens = fresh_tokens(&repo_a, &user_ids, clients).await;
        let keys: Vec<SessionKey> = tokens.iter().map(RefreshToken::session_key).collect();
        let http_stats = drive(clients, args.seconds, |i, deadline| {
            let http = http.clone();
            let base = base_a.clone();
            let access = state_a.tokens.issue(keys[i]).unwrap();
            async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let response = http
                        .get(format!("{base}/me"))
                        .bearer_auth(&access)
                        .send()
                        .await
                        .expect("me");
                    assert!(response.status().is_success(), "me: {}", response.status());
                    let _ = response.bytes().await;
                    lat.push(t.elapsed());
                }
                lat
            }
        })
        .await;
        let direct = drive(clients, args.seconds, |i, deadline| {
            let repo = repo_a.clone();
            let key = keys[i];
            async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    repo.record_activity(key, Some(LOCALHOST))
                        .await
                        .expect("activity")
                        .expect("live");
                    lat.push(t.elapsed());
                }
                lat
            }
        })
        .await;
        line("authorised request", clients, &http_stats, &direct);
    }

    // Propagation: revoke on A (POST /logout), then poll B (GET /me) until it refuses; with
    // sessions checked by a statement per request, then from memory with endings pushed.
    println!();
    let checks = [
        ("a statement per request", None),
        ("memory, endings pushed", Some(())),
    ];
    for (label, memory) in checks {
        let (a, b) = match memory {
            None => (base_a.clone(), base_b.clone()),
            Some(()) => {
                let bound = Duration::from_secs(5);
                let mut bases = Vec::new();
                for pool in [&pool_a, &pool_b] {
                    let repo = SessionRepo::new(pool.clone());
                    let live =
                        repo.live_sessions(LiveSettings::default().staleness_bound(bound))?;
                    if !live.listening(Duration::from_secs(10)).await {
                        return Err("live sessions did not start listening".into());
                    }
                    let state =
                        AppState::new(repo, settings_for_live.clone())?.with_live_sessions(live);
                    let (addr, _) = auth_service::routes::spawn_on_loopback(state).await?;
                    bases.push(format!("http://{addr}"));
                }
                (bases[0].clone(), bases[1].clone())
            }
        };
        let (s, max, polls) = propagation(
            &http,
            &repo_a,
            &state_a,
            &a,
            &b,
            &user_ids,
            args.revocations,
        )
        .await?;
        println!(
            "revocation on A until B refuses, sessions checked by {label} ({} revocations, \
             sequential): p50 {} ms, p99 {} ms, max {} ms; requests to B until refused: {:.2} on \
             average (1 = the very next request)",
            s.ops,
            ms(s.p50),
            ms(s.p99),
            ms(max),
            polls,
        );
    }

    // An unknown e-mail against a wrong password: the same answer in the same time (the tests
    // prove the same work by counting argon2id runs; this measures it).
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for i in 0..21 {
        for (email, times) in [
            ("nobody@bench.test".to_owned(), &mut unknown),
            (format!("user{}@bench.test", i % USERS), &mut wrong),
        ] {
            let start = Instant::now();
            let status = http
                .post(format!("{base_a}/login"))
                .json(&json!({"email": email, "password": "not the password"}))
                .send()
                .await?
                .status();
            times.push(start.elapsed());
            assert_eq!(status.as_u16(), 401);
        }
    }
    let (u, w) = (
        stats(unknown, Duration::from_secs(1)),
        stats(wrong, Duration::from_secs(1)),
    );
    println!();
    println!(
        "failed login, 21 each, alternating: unknown e-mail p50 {} ms, wrong password p50 {} ms \
         (ratio {:.2})",
        ms(u.p50),
        ms(w.p50),
        u.p50.as_secs_f64() / w.p50.as_secs_f64()
    );
    pool_a.close();
    pool_b.close();
    Ok(())
}

/// One fresh session (token) per client, spread over the users.
async fn fresh_tokens(repo: &SessionRepo, users: &[Uuid], clients: usize) -> Vec<RefreshToken> {
    let mut tokens = Vec::new();
    for i in 0..clients {
        let new = NewSession::new(users[(i * 7 + 3) % users.len()], Duration::from_secs(3600))
            .with_device_info("bench");
        tokens.push(repo.create(&new).await.expect("create").1);
    }
    tokens
}

/// Revokes `count` sessions on A one after another and polls B after each until it refuses:
/// the times, the longest, and the requests to B per revocation.
async fn propagation(
    http: &reqwest::Client,
    repo: &SessionRepo,
    state: &AppState,
    base_a: &str,
    base_b: &str,
    users: &[Uuid],
    count: usize,
) -> Result<(Stats, Duration, f64), BoxError> {
    let mut times = Vec::new();
    let mut polls_total = 0usize;
    for i in 0..count {
        let user = users[i % users.len()];
        let (session, _) = repo
            .create(&NewSession::new(user, Duration::from_secs(3600)).with_device_info("victim"))
            .await?;
        let access = state.tokens.issue(session.key())?;
        for _ in 0..2 {
            // Twice: the second answer comes from memory where there is one.
            let warm = http
                .get(format!("{base_b}/me"))
                .bearer_auth(&access)
                .send()
                .await?;
            if !warm.status().is_success() {
                return Err(format!("B refused a live session: {}", warm.status()).into());
            }
        }
        let start = Instant::now();
        let revoked = http
            .post(format!("{base_a}/logout"))
            .bearer_auth(&access)
            .send()
            .await?;
        if revoked.status().as_u16() != 204 {
            return Err(format!("logout on A: {}", revoked.status()).into());
        }
        let mut polls = 0;
        loop {
            polls += 1;
            let status = http
                .get(format!("{base_b}/me"))
                .bearer_auth(&access)
                .send()
                .await?
                .status();
            if status.as_u16() == 401 {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("B never refused".into());
            }
        }
        polls_total += polls;
        times.push(start.elapsed());
    }
    let max = times.iter().copied().max().unwrap_or_default();
    Ok((
        stats(times, Duration::from_secs(1)),
        max,
        polls_total as f64 / count.max(1) as f64,
    ))
}
