//! `pgbench -M prepared` on the lookup SQL: the scripts, the run, and its log read back as a
//! `Run`.

use std::time::Duration;

use auth_sessions::RefreshToken;
use tokio_postgres::Config;
use tokio_postgres::config::Host;

use crate::BoxError;
use crate::data::{BENCH_DB, connect};
use crate::hand::IDLE_SECONDS;
use crate::measure::Run;

/// Keys pgbench draws from (the most scripts pgbench takes): a sample spread over the whole
/// lookup set.
pub(crate) const PGBENCH_KEYS: usize = 128;

/// Seconds pgbench runs before its transactions count.
pub(crate) const PGBENCH_WARMUP_S: u64 = 2;

/// The lookup SQL with the key of `token` (and the idle timeout) in place of its parameters.
pub(crate) fn literal_lookup(sql: &str, token: &RefreshToken) -> String {
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
pub(crate) async fn pgbench(
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
