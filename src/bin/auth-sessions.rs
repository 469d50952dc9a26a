//! `auth-sessions`: operate the session store without writing SQL.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad arguments, 3 the database is
//! unreachable or the URL is invalid, 4 nothing matched (`revoke --session`, or
//! `--all-except` naming no session of the user). `distribute` on a
//! database without Citus exits with 2: the command does not apply there.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{
    DEFAULT_DATABASE_URL, Error, PoolSettings, SessionKey, SessionPolicy, SessionRepo, build_pool,
    distribute, migrate, migration_status,
};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

/// Operate the auth-sessions store: migrations, cleanup, statistics and support work.
#[derive(Debug, Parser)]
#[command(name = "auth-sessions", version, about)]
struct Cli {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    database_url: String,

    /// Idle timeout the service uses ("14days", "12h", or "none"): sessions idle for longer
    /// count as dead.
    #[arg(long, default_value = "14days", value_parser = parse_idle, global = true)]
    idle_timeout: IdleTimeout,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy)]
struct IdleTimeout(Option<Duration>);

fn parse_idle(text: &str) -> Result<IdleTimeout, String> {
    if text == "none" {
        return Ok(IdleTimeout(None));
    }
    humantime::parse_duration(text)
        .map(|d| IdleTimeout(Some(d)))
        .map_err(|err| err.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the embedded schema/ migrations and report what was applied.
    Migrate {
        /// List applied and pending migrations instead; apply nothing.
        #[arg(long)]
        status: bool,
    },
    /// Delete expired and idle sessions in bounded batches.
    Cleanup {
        /// Most rows one statement deletes.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Pause after each full batch, yielding to live traffic ("0s" for none).
        #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
        pause: Duration,
        /// Repeat every DURATION (for example "30s", "5m") until interrupted with Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<Duration>,
    },
    /// Session counts, the largest per-user count, table and index sizes.
    Stats,
    /// On a database with the citus extension: distribute users and sessions by user id
    /// (co-located) and the session functions on their user-id argument. Run after migrate.
    Distribute {
        /// Shards per table (default: Citus's citus.shard_count).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        shard_count: Option<u32>,
    },
    /// A user's live sessions (never a token hash).
    List {
        /// The user.
        #[arg(long)]
        user: Uuid,
    },
    /// Revoke one, all, or all but one of a user's sessions.
    Revoke {
        /// The user whose sessions to revoke.
        #[arg(long)]
        user: Uuid,
        #[command(flatten)]
        target: RevokeTarget,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RevokeTarget {
    /// Revoke this session.
    #[arg(long, value_name = "SESSION")]
    session: Option<Uuid>,
    /// Revoke every session of the user.
    #[arg(long)]
    all: bool,
    /// Revoke every session of the user but this one.
    #[arg(long, value_name = "SESSION")]
    all_except: Option<Uuid>,
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNAVAILABLE: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Silent unless RUST_LOG asks (for example RUST_LOG=auth_sessions=debug): errors are
    // reported below, once. Span durations appear when a span closes.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            let code = match err {
                Error::Connect(_) | Error::Config(_) | Error::PoolTimeout => EXIT_UNAVAILABLE,
                // The command does not apply to this database: a usage error.
                Error::CitusUnavailable => EXIT_USAGE,
                _ => EXIT_FAILED,
            };
            ExitCode::from(code)
        }
    }
}

/// The error with its causes, on one line.
fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let settings = PoolSettings::default()
        .max_size(4)
        .create_timeout(Duration::from_secs(5))
        .wait_timeout(Duration::from_secs(10));
    let pool = build_pool(&cli.database_url, &settings)?;
    let policy = SessionPolicy::default().idle_timeout(cli.idle_timeout.0);
    let repo = SessionRepo::with_policy(pool.clone(), policy);
    match cli.command {
        Command::Migrate { status: true } => {
            let statuses = migration_status(&pool).await?;
            println!("{:<8} {:<20} STATUS", "VERSION", "NAME");
            for status in statuses {
                let state = status.applied_at.map_or("pending".to_owned(), |at| {
                    format!("applied {}", at.format("%Y-%m-%d %H:%M:%S UTC"))
                });
                println!(
                    "{:<8} {:<20} {state}",
                    format!("{:03}", status.migration.version),
                    status.migration.name
                );
            }
        }
        Command::Migrate { status: false } => {
            let report = migrate(&pool).await?;
            for migration in &report.applied {
                println!("applied {:03}_{}", migration.version, migration.name);
            }
            println!(
                "{} applied, {} already applied",
                report.applied.len(),
                report.already_applied.len()
            );
        }
        Command::Cleanup {
            batch_size,
            pause,
            every,
        } => cleanup(&repo, batch_size, pause, every).await?,
        Command::Stats => {
            let stats = repo.stats().await?;
            println!("sessions total        {}", stats.total);
            println!("  live                {}", stats.live);
            println!("  expired             {}", stats.expired);
            println!("  revoked             {}", stats.revoked);
            println!("users with sessions   {}", stats.users);
            println!("largest per-user live {}", stats.max_live_per_user);
            println!("table size            {}", bytes(stats.table_bytes));
            println!("index size            {}", bytes(stats.index_bytes));
        }
        Command::Distribute { shard_count } => {
            let report = distribute(&pool, shard_count).await?;
            for table in &report.tables {
                println!("distributed table {table}");
            }
            for table in &report.reference_tables {
                println!("made {table} a reference table");
            }
            for function in &report.functions {
                println!("distributed function auth.{function} on its user id");
            }
            println!(
                "{} table(s) and {} function(s) distributed, {} and {} already",
                report.tables.len(),
                report.functions.len(),
                report.tables_already.len(),
                report.functions_already.len()
            );
        }
        Command::List { user } => {
            let devices = repo.list_devices(user).await?;
            println!(
                "{:<36}  {:<24}  {:<39}  {:<19}  EXPIRES (UTC)",
                "SESSION", "DEVICE", "IP ADDRESS", "LAST ACTIVE (UTC)"
            );
            for device in &devices {
                println!(
                    "{:<36}  {:<24}  {:<39}  {:<19}  {}",
                    device.id,
                    truncate(device.device_info.as_deref().unwrap_or("-"), 24),
                    device.ip_address.map_or("-".into(), |ip| ip.to_string()),
                    device.last_active_at.format("%Y-%m-%d %H:%M:%S"),
                    device.expires_at.format("%Y-%m-%d %H:%M:%S"),
                );
            }
            println!("{} live session(s)", devices.len());
        }
        Command::Revoke { user, target } => {
            if let Some(session) = target.session {
                if !repo.revoke(SessionKey::new(user, session)).await? {
                    eprintln!("no unrevoked session {session} of user {user}");
                    return Ok(ExitCode::from(EXIT_NOT_FOUND));
                }
                println!("revoked 1 session");
            } else if let Some(keep) = target.all_except {
                let Some(revoked) = repo.revoke_all_except(SessionKey::new(user, keep)).await?
                else {
                    eprintln!("no unrevoked session {keep} of user {user}: nothing revoked");
                    return Ok(ExitCode::from(EXIT_NOT_FOUND));
                };
                println!("revoked {revoked} session(s)");
            } else {
                println!("revoked {} session(s)", repo.revoke_all(user).await?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Cleanup rounds: batches until one comes back short; with `every`, again after each pause
/// until Ctrl-C, which lets the running batch finish.
async fn cleanup(
    repo: &SessionRepo,
    batch_size: u32,
    pause: Duration,
    every: Option<Duration>,
) -> Result<(), Error> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let notify = Arc::new(tokio::sync::Notify::new());
    let wake = notify.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            wake.notify_one();
        }
    });
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    loop {
        let started = Instant::now();
        let (mut deleted, mut batches) = (0u64, 0u64);
        loop {
            let rows = repo.delete_expired_batch(batch_size).await?;
            deleted += rows;
            batches += 1;
            if let Some(bar) = &progress {
                bar.set_message(format!(
                    "deleted {deleted} rows ({:.0} rows/s)",
                    rate(deleted, started)
                ));
            }
            if rows < u64::from(batch_size) || interrupted.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                () = notify.notified() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        let line = format!(
            "deleted {deleted} session(s) in {batches} batch(es), {:.2} s, {:.0} rows/s",
            started.elapsed().as_secs_f64(),
            rate(deleted, started)
        );
        match &progress {
            Some(bar) => bar.println(&line),
            None => println!("{line}"),
        }
        let Some(every) = every else { break };
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        tokio::select! {
            () = notify.notified() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if interrupted.load(Ordering::SeqCst) {
        println!("interrupted: stopped after the current batch");
    }
    Ok(())
}

fn rate(rows: u64, since: Instant) -> f64 {
    rows as f64 / since.elapsed().as_secs_f64().max(1e-9)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({n} bytes)", UNITS[unit])
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max - 1).chain(['…']).collect()
    }
}
