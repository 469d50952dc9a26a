//! `auth-service`: serve the API and the devices page, migrate, create users.

use std::io::BufRead;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

use auth_service::{AppState, Settings, migrate, password::Passwords, users};
use auth_sessions::{
    CapPolicy, CleanupSettings, KeySource, PoolSettings, SessionPolicy, SessionRepo, build_pool,
};
use clap::{Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Migrate, then serve HTTP until Ctrl-C.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// HS256 secret of access tokens (32 bytes or more).
        #[arg(long, env = "AUTH_SERVICE_JWT_SECRET", hide_env_values = true)]
        jwt_secret: String,
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
        /// Header holding the client address, set by a trusted reverse proxy (last entry used).
        #[arg(long)]
        trusted_proxy_header: Option<String>,
        /// Login attempts per client address per minute (after the burst).
        #[arg(long, default_value_t = NonZeroU32::new(10).unwrap())]
        login_per_minute: NonZeroU32,
        /// Login burst per client address.
        #[arg(long, default_value_t = NonZeroU32::new(5).unwrap())]
        login_burst: NonZeroU32,
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
            println!("created user {id} ({email})");
        }
        Command::Serve {
            listen,
            jwt_secret,
            rotation_keys_file,
            access_ttl_secs,
            refresh_ttl_secs,
            max_sessions_per_user,
            idle_timeout_secs,
            rotation_grace_secs,
            trusted_proxy_header,
            login_per_minute,
            login_burst,
            argon,
        } => {
            migrate::migrate(&pool).await?;
            let mut settings = Settings::new(jwt_secret.into_bytes());
            settings.access_ttl = Duration::from_secs(access_ttl_secs);
            settings.refresh_ttl = Duration::from_secs(refresh_ttl_secs);
            settings.trusted_proxy_header = trusted_proxy_header
                .map(|name| name.parse())
                .transpose()
                .map_err(|_| "invalid --trusted-proxy-header")?;
            settings.login_per_minute = login_per_minute;
            settings.login_burst = login_burst;
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
            let state = AppState::new(repo.clone(), settings)?;
            let (stop_cleanup, cleanup_stopped) = tokio::sync::oneshot::channel::<()>();
            let cleanup = auth_sessions::spawn_cleanup(repo, CleanupSettings::default(), async {
                let _ = cleanup_stopped.await;
            });
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            auth_service::serve(listener, auth_service::router(state), async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            let _ = stop_cleanup.send(());
            let _ = cleanup.await;
        }
    }
    Ok(())
}
