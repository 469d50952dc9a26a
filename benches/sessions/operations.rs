//! Section 3: create, activity (throttled and not), list, count and revoke, one caller,
//! against hand-written tokio-postgres.

use std::sync::Arc;
use std::time::Duration;

use auth_sessions::SessionRepo;
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::args::Args;
use crate::callers::{Revocations, picked};
use crate::data::{Data, Ops, activity_keys, mark_active};
use crate::hand::{self, Hand, Query};
use crate::measure::{Run, compare, row};
use crate::repo::{self, ops_policy, repo_for};

pub(crate) async fn run(
    args: &Args,
    config: &Config,
    admin: &Client,
    data: &Data,
    ops: &Ops,
) -> Result<(), BoxError> {
    println!("## 3. Other operations, one caller, versus hand-written tokio-postgres\n");
    println!("| operation | implementation | calls/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let seconds = args.seconds;
    let repo = repo_for(config, 1, ops_policy())?;
    let unthrottled = repo_for(config, 1, ops_policy().activity_interval(Duration::ZERO))?;
    let one = async |query| Hand::callers(config, query, 1).await;
    let mut results: Vec<(&str, Run, Run)> = Vec::new();

    // create: users with 10 live sessions each (the cap: every login evicts one), the same SQL
    // and parameters; the token minted and hashed on both sides.
    let users = &ops.create_users;
    let (handwritten, ours) = compare(
        seconds,
        (one(Query::Create).await?, picked(users, hand::create)),
        (vec![repo.clone()], picked(users, repo::create)),
    )
    .await;
    results.push(("create (at the cap: evicts one)", handwritten, ours));

    // activity: throttled (recent activity: nothing written) and unthrottled (always written),
    // on main sessions (activity changes no token).
    let keys = activity_keys(data);
    for (label, interval, repo) in [
        ("activity, throttled 60 s", 60i64, &repo),
        ("activity, unthrottled", 0, &unthrottled),
    ] {
        mark_active(admin, &keys).await?;
        let (handwritten, ours) = compare(
            seconds,
            (
                one(Query::Activity).await?,
                picked(&keys, move |h: Arc<Hand>, key| {
                    hand::activity(h, key, interval)
                }),
            ),
            (vec![repo.clone()], picked(&keys, repo::activity)),
        )
        .await;
        results.push((label, handwritten, ours));
    }

    // list and count: a random main user's devices (10 sessions each).
    let users = &data.users;
    let (handwritten, ours) = compare(
        seconds,
        (one(Query::List).await?, picked(users, hand::list)),
        (vec![repo.clone()], picked(users, repo::list)),
    )
    .await;
    results.push(("list", handwritten, ours));
    let (handwritten, ours) = compare(
        seconds,
        (one(Query::Count).await?, picked(users, hand::count)),
        (vec![repo.clone()], picked(users, repo::count)),
    )
    .await;
    results.push(("count", handwritten, ours));

    // revoke: distinct live sessions, each revoked once.
    let mut first = ops.revoke.clone();
    let second = Revocations::new(first.split_off(first.len() / 2));
    let first = Revocations::new(first);
    let hands: Vec<_> = one(Query::Revoke)
        .await?
        .into_iter()
        .map(|h| (h, first.clone()))
        .collect();
    let (handwritten, ours) = compare(
        seconds,
        (hands, |(h, list), _| hand::revoke(h, list)),
        (
            vec![(repo.clone(), second)],
            |(repo, list): (SessionRepo, Revocations), _| repo::revoke(repo, list),
        ),
    )
    .await;
    results.push(("revoke", handwritten, ours));

    for (name, handwritten, ours) in &results {
        println!(
            "{}",
            row(&format!("{name} | hand-written"), handwritten, None)
        );
        println!(
            "{}",
            row(&format!("{name} | SessionRepo"), ours, Some(handwritten))
        );
    }
    println!();
    repo.pool().close();
    unthrottled.pool().close();
    Ok(())
}
