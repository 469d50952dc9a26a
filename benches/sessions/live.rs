//! Section 11: live sessions (`SessionRepo::live_sessions`, `--only-live` runs this alone):
//! the check answered from memory against `find_by_token` (one statement per call), and
//! activity recorded in memory and written in batches against `record_activity` (one
//! statement per call), at 1 and 8 callers, in alternating slices of one run; then the time
//! from a revocation on one repository to its refusal by another's memory, over 300 tries.

use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{LiveSessions, LiveSettings, NewSession, SessionKey, SessionPolicy};
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::args::Args;
use crate::data::{DAY, Data, activity_keys, mark_active, new_users};
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
    push_latency(config, client).await
}

/// Revocations pushed from one instance to another: 300 sessions, each checked by `b` (so in
/// its memory), revoked by `a`, then checked by `b` until refused. Prints, over the tries, the
/// time from the start of the revocation and from its acknowledgement to the first refusal.
async fn push_latency(config: &Config, client: &Client) -> Result<(), BoxError> {
    const TRIES: usize = 300;
    let a = repo_for(config, 1, SessionPolicy::default())?;
    let b = repo_for(config, 1, SessionPolicy::default())?;
    let live = b.live_sessions(LiveSettings::default())?;
    if !live.listening(Duration::from_secs(10)).await {
        return Err(format!("live sessions not listening: {:?}", live.status()).into());
    }
    let mut keys = Vec::with_capacity(TRIES);
    for user in new_users(client, TRIES).await? {
        keys.push(a.create(&NewSession::new(user, DAY)).await?.0.key());
    }
    let (mut from_start, mut from_ack) = (Vec::new(), Vec::new());
    let reads = live.status().database_answers;
    for key in keys {
        live.check(key).await?.ok_or("a new session is not live")?;
        let started = std::time::Instant::now();
        if !a.revoke(key).await? {
            return Err("nothing revoked".into());
        }
        let acknowledged = std::time::Instant::now();
        while live.check(key).await?.is_some() {
            tokio::task::yield_now().await;
        }
        from_start.push(started.elapsed());
        from_ack.push(acknowledged.elapsed());
    }
    let status = live.status();
    live.shutdown().await;
    a.pool().close();
    b.pool().close();
    println!("### Revocation on one instance, refused by another's memory ({TRIES} tries)\n");
    println!("| measured from | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|");
    for (name, mut times) in [
        ("the revocation's start", from_start),
        ("its acknowledgement", from_ack),
    ] {
        times.sort_unstable();
        let at =
            |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    println!(
        "\n{} of the checks that waited for the push read the database (the first check of each \
         session reads it once: {TRIES}).\n",
        status.database_answers - reads
    );
    Ok(())
}
