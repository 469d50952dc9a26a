//! Section 2: token lookup, `SessionRepo` against hand-written tokio-postgres (one connection
//! per caller, and over a pool) and pgbench, at 1, 8 and 32 callers.

use std::sync::Arc;

use auth_sessions::{PoolSettings, SessionPolicy, build_pool_with_config};
use tokio_postgres::Config;

use crate::BoxError;
use crate::args::Args;
use crate::callers::presented;
use crate::data::Data;
use crate::hand::{self, Hand, Query};
use crate::measure::{compare, row};
use crate::pgbench::pgbench;
use crate::repo::{self, repo_for, warm};

pub(crate) async fn run(args: &Args, config: &Config, data: &Data) -> Result<(), BoxError> {
    println!("## 2. Token lookup (the hot path)\n");
    println!("| callers | implementation | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let sql = Query::Lookup.sql();
    let tokens = data.lookup.clone();
    for concurrency in [1usize, 8, 32] {
        // Hand-written: one connection per caller, the same SQL prepared once on each.
        let t = tokens.clone();
        let handwritten_calls = (
            Hand::callers(config, Query::Lookup, concurrency).await?,
            move |h, seed| hand::lookup(h, t.clone(), seed),
        );

        let repo = repo_for(config, concurrency, SessionPolicy::default())?;
        warm(&repo, concurrency, &tokens).await?;
        let t = tokens.clone();
        let ours = (vec![repo.clone(); concurrency], move |repo, seed| {
            repo::lookup(repo, t.clone(), seed)
        });
        let (handwritten, ours) = compare(args.seconds, handwritten_calls.clone(), ours).await;
        repo.pool().close();

        // Where the difference lies: hand-written calls over the same kind of pool.
        let pool = build_pool_with_config(
            config.clone(),
            &PoolSettings::default().max_size(concurrency),
        )?;
        let pooled_sql: Arc<str> = Arc::from(sql.as_str());
        let t = tokens.clone();
        let pooled = (
            vec![pool.clone(); concurrency],
            move |pool: deadpool_postgres::Pool, seed| {
                let (sql, t) = (pooled_sql.clone(), t.clone());
                async move {
                    let client = pool.get().await.expect("pooled connection");
                    let statement = client.prepare_cached(&sql).await.expect("prepare");
                    hand::find(&client, &statement, presented(&t, seed)).await;
                }
            },
        );
        let (_, pooled) = compare(args.seconds / 2.0, handwritten_calls, pooled).await;
        pool.close();

        let pgbench = pgbench(config, &sql, &tokens, concurrency, args.seconds).await?;
        println!(
            "{}",
            row(
                &format!("{concurrency} | pgbench -M prepared"),
                &pgbench,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | hand-written tokio-postgres"),
                &handwritten,
                Some(&pgbench)
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | SessionRepo"),
                &ours,
                Some(&pgbench)
            )
        );
        println!(
            "{}",
            row(
                &format!("{concurrency} | hand-written over a deadpool pool (prepare_cached)"),
                &pooled,
                Some(&pgbench)
            )
        );
        println!(
            "| {concurrency} | **SessionRepo / hand-written** | | | | **{:.2}** (target >= 0.95) |",
            ours.throughput() / handwritten.throughput()
        );
        println!(
            "| {concurrency} | SessionRepo / hand-written over the pool | | | | {:.2} |",
            ours.throughput() / pooled.throughput()
        );
        println!(
            "| {concurrency} | **SessionRepo / pgbench** | | | | **{:.2}** (target >= 0.80) |",
            ours.throughput() / pgbench.throughput()
        );
    }
    println!();
    Ok(())
}
