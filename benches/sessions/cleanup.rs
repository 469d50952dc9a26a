//! Section 8: cleanup of expired sessions: rows per second, and lookup p99 during cleanup
//! against without.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::SessionPolicy;
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::args::Args;
use crate::data::{Bulk, DAY_S, Data, bulk_sessions};
use crate::measure::{Run, measure};
use crate::repo::{self, repo_for, warm};

pub(crate) async fn run(
    args: &Args,
    config: &Config,
    admin: &Client,
    data: &Data,
) -> Result<(), BoxError> {
    println!("## 8. Cleanup of {} expired sessions\n", args.expired);
    let started = Instant::now();
    bulk_sessions(
        admin,
        &data.users,
        args.expired.max(0) as usize,
        Bulk {
            last_active_ago: 2 * DAY_S,
            expires_in: -DAY_S,
            created_ago: 3 * DAY_S,
            revoked_ago: None,
            details: false,
        },
        false,
    )
    .await?;
    admin
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    println!("(inserted in {:.1} s)\n", started.elapsed().as_secs_f64());

    let tokens = data.lookup.clone();
    let lookup_repo = repo_for(config, 8, SessionPolicy::default())?;
    warm(&lookup_repo, 8, &tokens).await?;
    let lookup = move |repo, seed| repo::lookup(repo, tokens.clone(), seed);
    let quiet = measure(args.seconds, vec![lookup_repo.clone(); 8], lookup.clone()).await;

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
                .expect("cleanup batch")
                .deleted();
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
        let slice = measure(0.5, vec![lookup_repo.clone(); 8], lookup.clone()).await;
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
