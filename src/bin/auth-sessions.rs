//! `auth-sessions`: operate the session store without writing SQL.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad arguments, 3 the database is
//! unreachable or the URL is invalid, 4 nothing matched (`revoke --session`, `--all-except`
//! naming no session of the user, or `rotation-keys retire` of no key or the active one), 130 a
//! second Ctrl-C during `cleanup`.
//! `cleanup --every` reports a failed batch and retries it next round; it exits (1 or 3, by
//! the last failure) only after `--max-failures` failed batches in a row.
//! `distribute` on a database without Citus exits with 2: the command does not apply there.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::{
    DEFAULT_DATABASE_URL, DatabaseKeys, Error, KeySource, PoolSettings, SessionKey, SessionPolicy,
    SessionRepo, WrappingKey, build_pool, distribute, migrate, migration_status,
};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

/// Operate the auth-sessions store: migrations, cleanup, statistics and support work.
#[derive(Debug, Parser)]
#[command(name = "auth-sessions", version, about)]
struct Cli {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    database_url: String,

    /// Idle timeout the service uses ("14days", "12h", or "none"): sessions idle for longer
    /// count as dead. Required by cleanup, which deletes them. Without it, list and stats
    /// apply none (every unexpired, unrevoked session counts as live) and say so.
    #[arg(long, value_parser = parse_idle, global = true)]
    idle_timeout: Option<IdleTimeout>,

    /// Server-side limit on each statement ("30s", "2m", or "none" for the server's setting).
    /// Default: 30s; for migrate and distribute, which may rewrite or move whole tables, none.
    #[arg(long, value_parser = parse_statement_timeout, global = true)]
    statement_timeout: Option<StatementTimeout>,

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatementTimeout(Option<Duration>);

/// The statement timeout of every command but migrate and distribute.
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

fn parse_statement_timeout(text: &str) -> Result<StatementTimeout, String> {
    if text == "none" {
        return Ok(StatementTimeout(None));
    }
    match humantime::parse_duration(text).map_err(|err| err.to_string())? {
        Duration::ZERO => Err("must be longer than zero (none keeps the server's setting)".into()),
        timeout => Ok(StatementTimeout(Some(timeout))),
    }
}

/// The shortest `cleanup --every`: shorter would query the database in a tight loop.
const MIN_EVERY: Duration = Duration::from_millis(100);

fn parse_every(text: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if every < MIN_EVERY {
        return Err(format!(
            "must be at least {}",
            humantime::format_duration(MIN_EVERY)
        ));
    }
    Ok(every)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the embedded schema/ migrations and report what was applied.
    Migrate {
        /// List applied and pending migrations instead; apply nothing.
        #[arg(long)]
        status: bool,
    },
    /// Delete expired and idle sessions and old tombstones in bounded batches. Requires
    /// --idle-timeout and --tombstone-retention (the service's).
    Cleanup {
        /// Most rows one batch deletes, and most rows one step of the walk for idle sessions
        /// examines.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Pause after each batch that leaves more to do, yielding to live traffic ("0s" for
        /// none).
        #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
        pause: Duration,
        /// Repeat every DURATION (for example "30s", "5m"; at least 100ms) until interrupted
        /// with Ctrl-C: the first lets the running batch finish, a second exits at once (130).
        /// A failed batch is reported and retried after DURATION.
        #[arg(long, value_parser = parse_every)]
        every: Option<Duration>,
        /// With --every: exit after this many failed batches in a row (a success in between
        /// starts the count again).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        max_failures: u32,
        /// How long revoked sessions stay as tombstones before cleanup deletes them: the
        /// service's `tombstone_retention` ("7days", at most 10 years). Required: a shorter
        /// one than the service's turns revoked tokens into unknown ones early.
        #[arg(long, value_parser = humantime::parse_duration)]
        tombstone_retention: Option<Duration>,
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
    /// The refresh-token rotation keys kept by the database, for a service that keeps them
    /// there: list their ids, add the next one (it signs from then on; older keys still verify,
    /// so nobody is logged out), or retire an old one. Keys sealed under a wrapping key need it
    /// in AUTH_SESSIONS_WRAPPING_KEY (standard base64 of 32 bytes or more, the service's);
    /// without it the keys are taken in clear, which is for development only.
    RotationKeys {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// The ids of the stored keys, the active (signing) one first. Stores key 1 when there is
    /// none, as a service's first call would.
    List,
    /// Store the next key, drawn at random; it becomes the active one.
    Add,
    /// Delete a key that no session may still hold a token of (not the active one): once
    /// every session has rotated, expired or idled out since the next key became active.
    Retire {
        /// The key's id.
        id: u16,
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
/// A second Ctrl-C: 128 + SIGINT, as shells report a process that SIGINT ended.
const EXIT_INTERRUPTED: u8 = 130;

impl Cli {
    /// The policy matching the service's, as far as the flags tell, validated before any
    /// connection. The command records no activity, so its activity interval is zero and any
    /// idle timeout from one second up is accepted.
    fn policy(&self) -> Result<SessionPolicy, clap::Error> {
        let idle_timeout = match (self.idle_timeout, &self.command) {
            (Some(IdleTimeout(idle)), _) => idle,
            (None, Command::Cleanup { .. }) => {
                return Err(Cli::command().error(
                    ErrorKind::MissingRequiredArgument,
                    "cleanup deletes sessions idle for longer than the service's idle timeout, \
                     so it needs that timeout: pass --idle-timeout DURATION (for example \
                     14days), or --idle-timeout none if the service has none",
                ));
            }
            (None, _) => None,
        };
        let mut policy = SessionPolicy::default()
            .idle_timeout(idle_timeout)
            .activity_interval(Duration::ZERO);
        if let Command::Cleanup {
            tombstone_retention,
            ..
        } = self.command
        {
            let Some(retention) = tombstone_retention else {
                return Err(Cli::command().error(
                    ErrorKind::MissingRequiredArgument,
                    "cleanup deletes revoked sessions kept longer than the service's tombstone \
                     retention, so it needs that retention: pass --tombstone-retention \
                     DURATION (for example 7days, the library's default)",
                ));
            };
            policy = policy.tombstone_retention(retention);
        }
        policy.validate().map_err(|err| {
            let message = match &err {
                Error::InvalidInput {
                    field: "idle_timeout",
                    ..
                } => "--idle-timeout is out of range: from 1s to 10 years, or none".to_owned(),
                Error::InvalidInput {
                    field: "tombstone_retention",
                    ..
                } => "--tombstone-retention is out of range: at most 10 years".to_owned(),
                other => other.to_string(),
            };
            Cli::command().error(ErrorKind::ValueValidation, message)
        })?;
        Ok(policy)
    }

    /// The statement timeout: as given, else none for migrate and distribute (which may
    /// rewrite or move whole tables) and [`DEFAULT_STATEMENT_TIMEOUT`] for the rest.
    fn statement_timeout(&self) -> Option<Duration> {
        match (self.statement_timeout, &self.command) {
            (Some(StatementTimeout(timeout)), _) => timeout,
            (None, Command::Migrate { .. } | Command::Distribute { .. }) => None,
            (None, _) => Some(DEFAULT_STATEMENT_TIMEOUT),
        }
    }
}

/// Whether an event may reach the output whatever `RUST_LOG` says: tokio-postgres logs every
/// statement's bind parameters (user and session ids, token hashes, addresses) at debug
/// level, so it is capped at info.
fn loggable(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    let driver = target == "tokio_postgres" || target.starts_with("tokio_postgres::");
    !driver || *metadata.level() <= tracing::Level::INFO
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let policy = cli.policy().unwrap_or_else(|err| err.exit());
    // Silent unless RUST_LOG asks (for example RUST_LOG=auth_sessions=debug): errors are
    // reported below, once. Span durations appear when a span closes.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_span_events(FmtSpan::CLOSE)
                .with_filter(filter.and(filter_fn(loggable))),
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
    match runtime.block_on(run(cli, policy)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The exit code of a command that failed with `err`.
fn exit_code(err: &Error) -> u8 {
    match err {
        Error::Connect(_) | Error::Config(_) | Error::PoolTimeout | Error::DeadlineExceeded => {
            EXIT_UNAVAILABLE
        }
        // The command does not apply to this database: a usage error.
        Error::CitusUnavailable => EXIT_USAGE,
        _ => EXIT_FAILED,
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

async fn run(cli: Cli, policy: SessionPolicy) -> Result<ExitCode, Error> {
    let mut settings = PoolSettings::default()
        .max_size(4)
        .create_timeout(Duration::from_secs(5))
        .wait_timeout(Duration::from_secs(10));
    if let Some(timeout) = cli.statement_timeout() {
        settings = settings.statement_timeout(timeout);
    }
    let pool = build_pool(&cli.database_url, &settings)?;
    // Without the service's idle timeout, list and stats count idle sessions as live: a
    // superset of what the service accepts, which hides none of them.
    let idle_note = || {
        if cli.idle_timeout.is_none() {
            eprintln!(
                "note: no --idle-timeout: sessions count as live however long they were idle; \
                 pass the service's idle timeout (or none) to match what it accepts"
            );
        }
    };
    let repo = SessionRepo::with_policy(pool.clone(), policy.clone())?;
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
            max_failures,
            tombstone_retention: _,
        } => {
            let rounds = Rounds {
                batch_size,
                pause,
                every,
                max_failures,
            };
            return Ok(cleanup(&repo, rounds).await);
        }
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
            idle_note();
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
            idle_note();
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
        Command::RotationKeys { action } => {
            let keys = stored_keys()?;
            let repo = SessionRepo::with_policy(pool, policy.rotation_keys(keys))?;
            match action {
                KeyAction::List => {
                    let ids = repo.rotation_key_ids().await?;
                    for (i, id) in ids.iter().enumerate() {
                        println!("{id}{}", if i == 0 { "  active" } else { "" });
                    }
                    println!("{} key(s)", ids.len());
                }
                KeyAction::Add => {
                    println!(
                        "added key {}: it signs from now on",
                        repo.add_rotation_key().await?
                    );
                }
                KeyAction::Retire { id } => {
                    if !repo.retire_rotation_key(id).await? {
                        eprintln!("no key {id}, or it is the active one: nothing retired");
                        return Ok(ExitCode::from(EXIT_NOT_FOUND));
                    }
                    println!("retired key {id}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The rotation keys kept by the database, sealed under the wrapping key of
/// AUTH_SESSIONS_WRAPPING_KEY, or in clear without it (development).
fn stored_keys() -> Result<KeySource, Error> {
    use base64::Engine as _;
    let Ok(encoded) = std::env::var("AUTH_SESSIONS_WRAPPING_KEY") else {
        eprintln!(
            "note: no AUTH_SESSIONS_WRAPPING_KEY: rotation keys are kept in clear (development only)"
        );
        return Ok(KeySource::Database(
            DatabaseKeys::unwrapped_for_development(),
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| Error::Config("AUTH_SESSIONS_WRAPPING_KEY is not base64".to_owned()))?;
    Ok(KeySource::Database(DatabaseKeys::wrapped(
        WrappingKey::from_bytes(&bytes)?,
    )))
}

/// Ctrl-C (SIGINT), as a stream: every interrupt after the first call to `listen` is seen,
/// including one that arrives while the previous is being handled.
#[cfg(unix)]
struct Interrupts(tokio::signal::unix::Signal);

#[cfg(unix)]
impl Interrupts {
    fn listen() -> std::io::Result<Self> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map(Self)
    }

    async fn next(&mut self) {
        if self.0.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
struct Interrupts;

#[cfg(not(unix))]
impl Interrupts {
    fn listen() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How `cleanup` runs its rounds.
struct Rounds {
    batch_size: u32,
    pause: Duration,
    every: Option<Duration>,
    max_failures: u32,
}

/// Cleanup rounds: batches until one has caught up; with `every`, again after each pause until
/// Ctrl-C, which lets the running batch finish. A second Ctrl-C exits at once with
/// [`EXIT_INTERRUPTED`], abandoning the batch in flight: the server ends its statement (at
/// the latest at the statement timeout), and what it deleted was dead either way.
///
/// A failed batch ends its round with a line on stderr, and what it deleted before failing is
/// counted. Without `every` the command then exits; with it the next round retries, and the
/// command exits after `max_failures` failed batches in a row (a restart or failover of the
/// database lasting a few rounds does not end it).
async fn cleanup(repo: &SessionRepo, rounds: Rounds) -> ExitCode {
    let Rounds {
        batch_size,
        pause,
        every,
        max_failures,
    } = rounds;
    // Listening starts before the first batch, so Ctrl-C never ends the process unannounced.
    let mut interrupts = match Interrupts::listen() {
        Ok(interrupts) => interrupts,
        Err(err) => {
            eprintln!("error: cannot listen for Ctrl-C: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let notify = Arc::new(tokio::sync::Notify::new());
    {
        let (flag, wake, bar) = (interrupted.clone(), notify.clone(), progress.clone());
        tokio::spawn(async move {
            interrupts.next().await;
            flag.store(true, Ordering::SeqCst);
            wake.notify_one();
            let notice = "interrupted: finishing the current batch (Ctrl-C again to exit at once)";
            match &bar {
                Some(bar) => bar.println(notice),
                None => eprintln!("{notice}"),
            }
            interrupts.next().await;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            eprintln!("interrupted again: exiting without waiting for the batch");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        });
    }
    let say = |line: &str, to_stderr: bool| match (&progress, to_stderr) {
        (Some(bar), _) => bar.println(line),
        (None, true) => eprintln!("{line}"),
        (None, false) => println!("{line}"),
    };
    let mut failures_in_a_row = 0u32;
    let code = loop {
        let started = Instant::now();
        let (mut deleted, mut batches) = (0u64, 0u64);
        let mut failure = None;
        loop {
            let outcome = repo.delete_expired_batch(batch_size).await;
            batches += 1;
            let caught_up = match outcome {
                Ok(batch) => {
                    failures_in_a_row = 0;
                    deleted += batch.deleted();
                    batch.caught_up
                }
                Err(err) => {
                    deleted += err.deleted.deleted();
                    failure = Some(err.error);
                    true
                }
            };
            if let Some(bar) = &progress {
                bar.set_message(format!(
                    "deleted {deleted} rows ({:.0} rows/s)",
                    rate(deleted, started)
                ));
            }
            if caught_up || interrupted.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                () = notify.notified() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        say(
            &format!(
                "deleted {deleted} session(s) in {batches} batch(es), {:.2} s, {:.0} rows/s",
                started.elapsed().as_secs_f64(),
                rate(deleted, started)
            ),
            false,
        );
        if let Some(err) = failure {
            failures_in_a_row += 1;
            let Some(every) = every else {
                say(
                    &format!("error: cleanup batch failed: {}", describe(&err)),
                    true,
                );
                break exit_code(&err);
            };
            if failures_in_a_row >= max_failures {
                say(
                    &format!("error: cleanup batch failed: {}", describe(&err)),
                    true,
                );
                say(
                    &format!("error: {failures_in_a_row} failed batches in a row: giving up"),
                    true,
                );
                break exit_code(&err);
            }
            say(
                &format!(
                    "error: cleanup batch failed ({failures_in_a_row} of at most {max_failures} \
                     in a row; retrying in {}): {}",
                    humantime::format_duration(every),
                    describe(&err)
                ),
                true,
            );
        }
        let Some(every) = every else { break 0 };
        if interrupted.load(Ordering::SeqCst) {
            break 0;
        }
        tokio::select! {
            () = notify.notified() => break 0,
            () = tokio::time::sleep(every) => {}
        }
    };
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if interrupted.load(Ordering::SeqCst) {
        println!("interrupted: stopped after the current batch");
    }
    ExitCode::from(code)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("auth-sessions").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_arguments_are_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statements_time_out_after_30s_unless_they_may_rewrite_whole_tables() {
        let user = "00000000-0000-0000-0000-000000000000";
        for args in [
            &["stats"][..],
            &["list", "--user", user],
            &["revoke", "--user", user, "--all"],
            &["cleanup", "--idle-timeout", "none"],
        ] {
            assert_eq!(
                parse(args).statement_timeout(),
                Some(Duration::from_secs(30)),
                "{args:?}"
            );
        }
        for args in [&["migrate"][..], &["migrate", "--status"], &["distribute"]] {
            assert_eq!(parse(args).statement_timeout(), None, "{args:?}");
        }
        assert_eq!(
            parse(&["--statement-timeout", "2m", "migrate"]).statement_timeout(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse(&["stats", "--statement-timeout", "none"]).statement_timeout(),
            None
        );
    }

    #[test]
    fn the_policy_follows_the_flags_and_records_no_activity() {
        let policy = parse(&[
            "cleanup",
            "--idle-timeout",
            "30s",
            "--tombstone-retention",
            "1h",
        ])
        .policy()
        .unwrap();
        assert_eq!(policy.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(policy.tombstone_retention, Duration::from_secs(3600));
        assert_eq!(policy.activity_interval, Duration::ZERO);
        assert_eq!(parse(&["stats"]).policy().unwrap().idle_timeout, None);
        for args in [
            &["cleanup"][..],
            &["cleanup", "--tombstone-retention", "7days"],
            &["cleanup", "--idle-timeout", "14days"],
        ] {
            let missing = parse(args).policy().unwrap_err();
            assert_eq!(
                missing.kind(),
                ErrorKind::MissingRequiredArgument,
                "{args:?}"
            );
            assert_eq!(missing.exit_code(), 2);
        }
    }
}
