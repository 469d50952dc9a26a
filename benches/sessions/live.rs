//! Section 11: live sessions (`SessionRepo::live_sessions`, `--only-live` runs this alone):
//! the check answered from memory against `find_by_token` (one statement per call), and
//! activity recorded in memory and written in batches against `record_activity` (one
//! statement per call), at 1 and 8 callers, in alternating slices of one run.

use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{LiveSessions, LiveSettings, SessionKey, SessionPolicy};
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::args::Args;
use crate::data::{Data, activity_keys, mark_active};
use crate::measure::{compare, row};
use crate::repo::{self, repo_for, warm};

/// Sessions each run checks: every one is read once first, so memory holds them all.
const KEYS: usize = 10_000;

pub(crate) async fn run(
    args: &Args,
    config: &Config,
    client: &Client,
    data: &Data,
) -> Result<(), BoxError> {
    println!("## 11. Live sessions: checks and activity from memory\n");
    println!("| callers | call | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let keys: Arc<Vec<SessionKey>> =
        Arc::new(activity_keys(data).iter().take(KEYS).copied().collect());
    for concurrency in [1usize, 8] {
        let repo = repo_for(config, concurrency, SessionPolicy::default())?;
        warm(&repo, concurrency, &data.lookup).await?;
        let live = repo.live_sessions(LiveSettings::default().capacity(keys.len()))?;
        if !live.listening(Duration::from_secs(10)).await {
            return Err(format!("live sessions not listening: {:?}", live.status()).into());
        }
        for key in keys.iter() {
            live.check(*key)
                .await?
                .ok_or("a session of the data set is not live")?;
        }

        let before = live.status();
        let t = data.lookup.clone();
        let lookups = (vec![repo.clone(); concurrency], move |repo, seed| {
            repo::lookup(repo, t.clone(), seed)
        });
        let checks = (
            vec![(live.clone(), keys.clone()); concurrency],
            |(live, keys): (LiveSessions, Arc<Vec<SessionKey>>), seed: u64| async move {
                let key = keys[(seed % keys.len() as u64) as usize];
                assert!(live.check(key).await.expect("check").is_some());
            },
        );
        let (lookup, check) = compare(args.seconds, lookups, checks).await;
        let after = live.status();
        println!(
            "{}",
            row(
                &format!("{concurrency} | find_by_token (a statement)"),
                &lookup,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | LiveSessions::check (memory)"),
                &check,
                Some(&lookup)
            )
        );
        println!(
            "| {concurrency} | **check / find_by_token** | | | | **{:.1}** ({} of {} checks read the database) |",
            check.throughput() / lookup.throughput(),
            after.database_answers - before.database_answers,
            check.calls,
        );

        // Activity on sessions active just now: `record_activity` runs its statement and
        // writes nothing; the batched one sends nothing at all (memory knows no write is due).
        mark_active(client, &keys).await?;
        let before = live.status();
        let k = keys.clone();
        let statements = (vec![repo.clone(); concurrency], move |repo, seed: u64| {
            let key = k[(seed % k.len() as u64) as usize];
            repo::activity(repo, key)
        });
        let batched = (
            vec![(live.clone(), keys.clone()); concurrency],
            |(live, keys): (LiveSessions, Arc<Vec<SessionKey>>), seed: u64| async move {
                let key = keys[(seed % keys.len() as u64) as usize];
                live.record_activity(key, None);
            },
        );
        let (statement, memory) = compare(args.seconds, statements, batched).await;
        live.flush().await?;
        let after = live.status();
        println!(
            "{}",
            row(
                &format!("{concurrency} | record_activity (a statement)"),
                &statement,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | LiveSessions::record_activity (batched)"),
                &memory,
                Some(&statement)
            )
        );
        println!(
            "| {concurrency} | **batched / statement** | | | | **{:.1}** ({} activity statements for {} calls) |",
            memory.throughput() / statement.throughput(),
            after.activity_batches - before.activity_batches,
            memory.calls,
        );
        live.shutdown().await;
        repo.pool().close();
    }
    println!();
    Ok(())
}
