//! `auth-service`: serve the API and the devices page, migrate, create users.

use std::io::BufRead;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use auth_service::{AppState, Settings, migrate, password::Passwords, users};
use auth_sessions::{
    CapPolicy, CleanupSettings, KeySource, LiveSettings, PoolSettings, SessionPolicy, SessionRepo,
    build_pool,
};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "auth-service",
    version,
    about = "Reference auth service on auth-sessions"
)]
struct Cli {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = auth_sessions::DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at startup: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Migrate, then serve HTTP until Ctrl-C.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// HS256 secret of access tokens (32 bytes or more). Prefer --jwt-secret-file or the
        /// variable AUTH_SERVICE_JWT_SECRET: a flag's value shows in the process list to every
        /// user of the machine.
        #[arg(long, env = "AUTH_SERVICE_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// A file holding the HS256 secret of access tokens (a mounted secret; one trailing
        /// newline is ignored). Used in preference to --jwt-secret and the variable.
        #[arg(long)]
        jwt_secret_file: Option<std::path::PathBuf>,
        /// A file holding the refresh-token rotation keys (a mounted secret): `ID:BASE64`
        /// entries (32 random bytes or more each), one per line or comma-separated, the first
        /// signing, the others verifying. Without it they are read from the variable
        /// AUTH_SERVICE_ROTATION_KEYS (never a flag: a flag's value shows in the process list).
        #[arg(long)]
        rotation_keys_file: Option<std::path::PathBuf>,
        /// Access-token lifetime, seconds.
        #[arg(long, default_value_t = 300)]
        access_ttl_secs: u64,
        /// Session (refresh-token) lifetime, seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        refresh_ttl_secs: u64,
        /// Most devices (live sessions) one user may have at once; a sign-in beyond it signs out
        /// the user's least recently active device, and the devices page says so. 0: no cap.
        #[arg(long, default_value_t = 10)]
        max_sessions_per_user: u32,
        /// A device unused for this long is signed out, seconds (default 14 days). 0: never.
        /// Must exceed 60 (activity is recorded at most once a minute).
        #[arg(long, default_value_t = 14 * 24 * 3600)]
        idle_timeout_secs: u64,
        /// How long a just-replaced refresh token still rotates to the same successor
        /// (concurrent or retried refreshes), seconds; after it a replay revokes the session.
        #[arg(long, default_value_t = 10)]
        rotation_grace_secs: u64,
        /// Address of a second listener serving only GET /metrics (Prometheus), e.g.
        /// 127.0.0.1:9090. Without it, metrics are not served.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// The service's public origin as browsers see it, e.g. https://auth.example.com:
        /// state-changing requests must come from it (Sec-Fetch-Site same-origin, or this
        /// Origin), and an https origin turns on Strict-Transport-Security. Without it, the
        /// origin of the request's Host header.
        #[arg(long)]
        public_origin: Option<String>,
        /// Header holding the client address, set by a trusted reverse proxy (e.g.
        /// X-Forwarded-For). Read only from the --trusted-proxy peers; the right-most address
        /// in it that is not a trusted proxy is the client's.
        #[arg(long, requires = "trusted_proxy")]
        trusted_proxy_header: Option<String>,
        /// A reverse proxy (an address or a CIDR network) whose --trusted-proxy-header is
        /// believed; repeat for several.
        #[arg(long, value_name = "CIDR")]
        trusted_proxy: Vec<String>,
        /// Failed logins per network (an IPv4 address, an IPv6 /64) per minute after the burst;
        /// beyond, 429, except for accounts signed in from that network.
        #[arg(long, default_value_t = NonZeroU32::new(20).unwrap())]
        login_per_minute: NonZeroU32,
        /// Burst of failed logins per network.
        #[arg(long, default_value_t = NonZeroU32::new(20).unwrap())]
        login_burst: NonZeroU32,
        /// Failed logins per account per minute after the burst; beyond, 429, except from
        /// networks the account is signed in from.
        #[arg(long, default_value_t = NonZeroU32::new(10).unwrap())]
        account_per_minute: NonZeroU32,
        /// Burst of failed logins per account.
        #[arg(long, default_value_t = NonZeroU32::new(20).unwrap())]
        account_burst: NonZeroU32,
        /// Failed logins per account and network per minute after the burst; beyond, each
        /// attempt waits its turn (up to --login-max-delay-secs, then 429).
        #[arg(long, default_value_t = NonZeroU32::new(12).unwrap())]
        pair_per_minute: NonZeroU32,
        /// Burst of failed logins per account and network.
        #[arg(long, default_value_t = NonZeroU32::new(5).unwrap())]
        pair_burst: NonZeroU32,
        /// Longest a login waits for its turn before the answer is 429, seconds.
        #[arg(long, default_value_t = 5)]
        login_max_delay_secs: u64,
        /// Longest wait for a complete request head, seconds: a slow sender, a connection that
        /// sends nothing and an idle kept-alive connection are closed after it.
        #[arg(long, default_value_t = 10)]
        header_timeout_secs: u64,
        /// Most connections open at once (at most the open-files limit less 256); beyond,
        /// new connections wait in the listen backlog.
        #[arg(long, default_value_t = 10_000)]
        max_connections: usize,
        /// Most connections open at once from one address (an IPv4 address, an IPv6 /64);
        /// beyond, its new connections are closed at once. The trusted proxies have no limit.
        /// Raise it if many users reach the service directly through one NAT address.
        #[arg(long, default_value_t = 1000)]
        max_connections_per_address: usize,
        /// How an authorised request learns that its session is still live: `memory` answers
        /// from this instance's memory, every ending (logout, revocation, eviction, cleanup)
        /// pushed by the database to every instance, activity written in batches; `database`
        /// runs one statement per request. See the README, "Authorising requests".
        #[arg(long, value_enum, default_value_t = SessionCheck::Memory)]
        session_check: SessionCheck,
        /// With `--session-check memory`: the longest a session that ended may still be
        /// accepted when the instance cannot hear the database (its listening connection lost,
        /// a restart, a failover), milliseconds; past it every check asks the database.
        #[arg(long, default_value_t = 5000)]
        staleness_bound_ms: u64,
        #[command(flatten)]
        argon: ArgonArgs,
    },
    /// Apply the crate's and the service's migrations.
    Migrate,
    /// Create a user; the password is read from AUTH_SERVICE_PASSWORD or the first line of stdin.
    CreateUser {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        argon: ArgonArgs,
    },
}

/// Where authorised requests check their session.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SessionCheck {
    /// From memory, endings pushed by the database.
    Memory,
    /// One statement per request.
    Database,
}

#[derive(clap::Args)]
struct ArgonArgs {
    /// argon2id memory, KiB.
    #[arg(long, default_value_t = argon2::Params::DEFAULT_M_COST)]
    argon2_m_kib: u32,
    /// argon2id iterations.
    #[arg(long, default_value_t = argon2::Params::DEFAULT_T_COST)]
    argon2_t: u32,
    /// argon2id parallelism.
    #[arg(long, default_value_t = argon2::Params::DEFAULT_P_COST)]
    argon2_p: u32,
}

impl ArgonArgs {
    fn params(&self) -> Result<argon2::Params, String> {
        argon2::Params::new(self.argon2_m_kib, self.argon2_t, self.argon2_p, None)
            .map_err(|err| format!("invalid argon2 parameters: {err}"))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An origin: `http(s)://host[:port]`, no path, no trailing slash.
fn check_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim().trim_end_matches('/');
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("--public-origin must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err("--public-origin is scheme://host[:port], without a path".into());
    }
    Ok(origin.to_ascii_lowercase())
}

/// A network (`10.0.0.0/8`) or a single address (`10.0.0.1`, as a /32 or /128).
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("invalid --trusted-proxy {text:?}: not an address or CIDR network"))
}

/// `wanted` connections, or fewer if the process may not open that many files: the soft
/// `RLIMIT_NOFILE` is first raised to the hard limit, then the cap is lowered to it less 256
/// (the database pool, logs, the listeners) if that is smaller. Raise the hard limit
/// (`ulimit -Hn`, systemd's `LimitNOFILE=`) for more.
fn within_open_files_limit(wanted: usize) -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read or raise the open-files limit");
            return wanted;
        }
    };
    let allowed = usize::try_from(soft.saturating_sub(256))
        .unwrap_or(usize::MAX)
        .max(1);
    if wanted > allowed {
        tracing::warn!(
            wanted,
            allowed,
            open_files_limit = soft,
            "--max-connections lowered to fit the open-files limit"
        );
        return allowed;
    }
    wanted
}

#[tokio::main]
async fn main() -> ExitCode {
    auth_service::telemetry::init_logging();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", auth_service::error::ErrorChain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let pool = build_pool(&cli.database_url, &PoolSettings::default())?;
    match cli.command {
        Command::Migrate => {
            let report = migrate::migrate(&pool).await?;
            println!(
                "{} session migration(s) and {} service migration(s) applied",
                report.crate_applied,
                report.service_applied.len()
            );
        }
        Command::CreateUser { email, argon } => {
            let password = match std::env::var("AUTH_SERVICE_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let email = users::normalise_email(&email).map_err(|err| err.to_string())?;
            users::check_password(&password).map_err(|err| err.to_string())?;
            migrate::migrate(&pool).await?;
            let passwords = Passwords::new(argon.params()?)?;
            let hash = passwords.hash(&password)?;
            let id = users::create_user(&pool, &email, &hash)
                .await
                .map_err(|err| err.to_string())?;
            tracing::info!(user_id = %id, "user created");
            println!("created user {id} ({email})");
        }
        Command::Serve {
            listen,
            jwt_secret,
            jwt_secret_file,
            rotation_keys_file,
            access_ttl_secs,
            refresh_ttl_secs,
            metrics_listen,
            public_origin,
            max_sessions_per_user,
            idle_timeout_secs,
            rotation_grace_secs,
            trusted_proxy_header,
            trusted_proxy,
            login_per_minute,
            login_burst,
            account_per_minute,
            account_burst,
            pair_per_minute,
            pair_burst,
            login_max_delay_secs,
            header_timeout_secs,
            max_connections,
            max_connections_per_address,
            session_check,
            staleness_bound_ms,
            argon,
        } => {
            let jwt_secret = match (jwt_secret_file, jwt_secret) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    text.strip_suffix('\r').unwrap_or(text).to_owned()
                }
                (None, Some(secret)) => secret,
                (None, None) => {
                    return Err("a JWT secret is required: --jwt-secret-file or \
                                AUTH_SERVICE_JWT_SECRET (see --help)"
                        .into());
                }
            };
            let public_origin = public_origin
                .map(|origin| check_origin(&origin))
                .transpose()?;
            if login_max_delay_secs >= 10 {
                return Err("--login-max-delay-secs must be under the 10 s request timeout".into());
            }
            let trusted_proxies = trusted_proxy
                .iter()
                .map(|text| parse_network(text))
                .collect::<Result<Vec<_>, _>>()?;
            migrate::migrate(&pool).await?;
            let mut settings = Settings::new(jwt_secret.into_bytes());
            settings.access_ttl = Duration::from_secs(access_ttl_secs);
            settings.refresh_ttl = Duration::from_secs(refresh_ttl_secs);
            settings.trusted_proxy_header = trusted_proxy_header
                .map(|name| name.parse())
                .transpose()
                .map_err(|_| "invalid --trusted-proxy-header")?;
            settings.trusted_proxies = trusted_proxies;
            settings.public_origin = public_origin;
            settings.login_per_minute = login_per_minute;
            settings.login_burst = login_burst;
            settings.account_per_minute = account_per_minute;
            settings.account_burst = account_burst;
            settings.pair_per_minute = pair_per_minute;
            settings.pair_burst = pair_burst;
            settings.login_max_delay = Duration::from_secs(login_max_delay_secs);
            settings.connections.header_read_timeout = Duration::from_secs(header_timeout_secs);
            settings.connections.max_connections = within_open_files_limit(max_connections);
            settings.connections.max_per_address = max_connections_per_address.max(1);
            settings.argon2 = argon.params()?;
            let keys = match (
                std::env::var("AUTH_SERVICE_ROTATION_KEYS"),
                rotation_keys_file,
            ) {
                (_, Some(path)) => std::fs::read_to_string(&path)
                    .map_err(|err| format!("cannot read {}: {err}", path.display()))?,
                (Ok(keys), None) => keys,
                (Err(_), None) => {
                    return Err(
                        "rotation keys are required: set AUTH_SERVICE_ROTATION_KEYS or \
                                --rotation-keys-file (see --help)"
                            .into(),
                    );
                }
            };
            let ring = auth_service::keys::parse_rotation_keys(&keys)?;
            let policy = SessionPolicy::default()
                .rotation_keys(KeySource::SecretStore(ring))
                .max_sessions_per_user(
                    (max_sessions_per_user > 0).then_some(max_sessions_per_user),
                    CapPolicy::EvictLeastRecentlyActive,
                )
                .idle_timeout(
                    (idle_timeout_secs > 0).then(|| Duration::from_secs(idle_timeout_secs)),
                )
                .rotation_grace(Duration::from_secs(rotation_grace_secs));
            let repo = SessionRepo::with_policy(pool, policy)
                .map_err(|err| format!("invalid session settings: {err}"))?;
            tracing::info!(
                max_sessions_per_user,
                idle_timeout_secs,
                rotation_grace_secs,
                refresh_ttl_secs,
                "session policy"
            );
            let mut state = AppState::new(repo.clone(), settings)?;
            let live = match session_check {
                SessionCheck::Memory => {
                    let bound = Duration::from_millis(staleness_bound_ms);
                    let live = repo
                        .live_sessions(LiveSettings::default().staleness_bound(bound))
                        .map_err(|err| format!("invalid --staleness-bound-ms: {err}"))?;
                    tracing::info!(staleness_bound_ms, "sessions checked from memory");
                    state = state.with_live_sessions(live.clone());
                    Some(live)
                }
                SessionCheck::Database => None,
            };
            let (stop_cleanup, cleanup_stopped) = tokio::sync::oneshot::channel::<()>();
            let cleanup = auth_sessions::spawn_cleanup(repo, CleanupSettings::default(), async {
                let _ = cleanup_stopped.await;
            });
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = stop.send(true);
            });
            let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let metrics = match metrics_listen {
                Some(address) => {
                    let listener = tokio::net::TcpListener::bind(&address).await?;
                    tracing::info!(address = %listener.local_addr()?, "metrics listening");
                    Some(tokio::spawn(auth_service::serve(
                        listener,
                        auth_service::routes::metrics_router(),
                        auth_service::plumbing::conn::ConnLimits::default(),
                        until_stopped(stopped.clone()),
                    )))
                }
                None => None,
            };
            let mut limits = state.settings.connections.clone();
            limits.exempt = state.settings.trusted_proxies.clone();
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            auth_service::serve(
                listener,
                auth_service::router(state),
                limits,
                until_stopped(stopped),
            )
            .await?;
            if let Some(metrics) = metrics {
                let _ = metrics.await;
            }
            if let Some(live) = live {
                // Stops listening and writes the activity still pending.
                live.shutdown().await;
            }
            let _ = stop_cleanup.send(());
            let _ = cleanup.await;
        }
    }
    Ok(())
}
