//! Section 9: the hot path, exclusive checkout against shared, pipelined connections: lookups
//! at 1, 8 and 32 callers and the other operations at 8, each beside hand-written calls on one
//! connection per caller, with pgbench and the server connections each side used.

use std::future::Future;
use std::sync::Arc;

use auth_sessions::{
    HotPath, PipelineSettings, PoolSettings, RefreshToken, SessionKey, SessionPolicy, SessionRepo,
    build_pool_with_config,
};
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::args::Args;
use crate::callers::{Chain, Revocations, Shared, picked};
use crate::data::{
    Bulk, Data, REVOKE_RATE_BOUND, ROTATION_SESSIONS_PER_CALLER, activity_keys, bench_key,
    bulk_sessions, mark_active, new_users,
};
use crate::hand::{self, Hand, Query};
use crate::measure::{Run, compare};
use crate::pgbench::pgbench;
use crate::repo::{self, ops_policy, repo_for, warm};

/// `SessionRepo`s over pools of `callers` connections: exclusive, and pipelined on
/// `connections` shared connections, read-only calls (the default) or every hot-path call.
struct HotRepos {
    exclusive: SessionRepo,
    pipelined: SessionRepo,
    pipelined_writes: SessionRepo,
}

impl HotRepos {
    fn new(
        config: &Config,
        callers: usize,
        connections: usize,
        policy: SessionPolicy,
    ) -> Result<Self, BoxError> {
        let pipelined = |writes: bool| -> Result<SessionRepo, BoxError> {
            let pool =
                build_pool_with_config(config.clone(), &PoolSettings::default().max_size(callers))?;
            Ok(
                SessionRepo::with_policy(pool, policy.clone())?.with_hot_path(
                    HotPath::Pipelined(PipelineSettings::new(connections).pipeline_writes(writes)),
                )?,
            )
        };
        Ok(Self {
            exclusive: repo_for(config, callers, policy.clone())?,
            pipelined: pipelined(false)?,
            pipelined_writes: pipelined(true)?,
        })
    }

    async fn warm(&self, callers: usize, tokens: &Arc<Vec<RefreshToken>>) -> Result<(), BoxError> {
        for repo in [&self.exclusive, &self.pipelined, &self.pipelined_writes] {
            warm(repo, callers, tokens).await?;
        }
        Ok(())
    }

    fn close(&self) {
        for repo in [&self.exclusive, &self.pipelined, &self.pipelined_writes] {
            repo.pool().close();
        }
    }
}

/// Server connections a repository holds: the pool's open ones, and the shared ones.
fn hot_connections(repo: &SessionRepo) -> String {
    let pooled = repo.pool().status().size;
    match repo.pipeline_status() {
        Some(status) if pooled > 0 => format!("{} shared + {pooled} pooled", status.open),
        Some(status) => format!("{} shared", status.open),
        None => format!("{pooled} pooled"),
    }
}

/// Client backends connected to the benchmark database now, the caller's own excluded.
async fn backends(admin: &Client) -> Result<i64, BoxError> {
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await?
        .get(0))
}

fn hot_row(label: &str, connections: &str, run: &Run, baseline: Option<&Run>) -> String {
    let ratio = baseline.map_or("1.00 (baseline)".to_owned(), |b| {
        format!("{:.2}", run.throughput() / b.throughput())
    });
    let p99_ratio = baseline.map_or(String::new(), |b| {
        format!("{:.2}", run.percentile(0.99) / b.percentile(0.99))
    });
    format!(
        "| {label} | {connections} | {:.0} | {:.3} | {:.3} | {ratio} | {p99_ratio} |",
        run.throughput(),
        run.percentile(0.5),
        run.percentile(0.99)
    )
}

/// One contender at one load, with the hand-written baseline (one connection per caller)
/// measured beside it in alternating slices.
struct Contender {
    label: &'static str,
    hand: Run,
    ours: Run,
    connections: String,
}

impl Contender {
    fn ratio(&self) -> f64 {
        self.ours.throughput() / self.hand.throughput()
    }

    fn p99_ratio(&self) -> f64 {
        self.ours.percentile(0.99) / self.hand.percentile(0.99)
    }
}

fn print_hot(label: &str, callers: usize, results: &[Contender]) {
    for result in results {
        println!(
            "{}",
            hot_row(
                &format!("{label} | hand-written, 1 connection per caller (beside the next)"),
                &callers.to_string(),
                &result.hand,
                None
            )
        );
        println!(
            "{}",
            hot_row(
                &format!("{label} | {}", result.label),
                &result.connections,
                &result.ours,
                Some(&result.hand)
            )
        );
    }
}

const EXCLUSIVE: &str = "SessionRepo, exclusive";
const PIPELINED: &str = "**SessionRepo, pipelined**";
const PIPELINED_WRITES: &str = "SessionRepo, pipelined with writes";

/// Measures `hand` against each repository with `ours`.
async fn hot_compare<SH, FH, FutH, S, F, Fut>(
    seconds: f64,
    hand: (Vec<SH>, FH),
    repos: &[(&'static str, &SessionRepo)],
    states: impl Fn(usize, &SessionRepo) -> Vec<S>,
    ours: F,
) -> Vec<Contender>
where
    SH: Clone + Send + 'static,
    FH: Fn(SH, u64) -> FutH + Send + Sync + Clone + 'static,
    FutH: Future<Output = ()> + Send,
    S: Clone + Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let mut results = Vec::new();
    for (i, (label, repo)) in repos.iter().enumerate() {
        let (hand_run, ours_run) =
            compare(seconds, hand.clone(), (states(i, repo), ours.clone())).await;
        results.push(Contender {
            label,
            hand: hand_run,
            ours: ours_run,
            connections: hot_connections(repo),
        });
    }
    results
}

pub(crate) async fn run(
    args: &Args,
    config: &Config,
    admin: &Client,
    data: &Data,
) -> Result<(), BoxError> {
    println!(
        "## 9. The hot path: exclusive checkout vs shared, pipelined connections ({} shared)\n",
        args.pipeline_connections
    );
    println!(
        "Ratios against hand-written tokio-postgres with one connection per caller, measured \
         in alternating slices beside each contender; p99 ratio likewise.\n"
    );
    println!(
        "| callers | operation | implementation | server connections | calls/s | p50 ms | \
         p99 ms | throughput ratio | p99 ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let sql = Query::Lookup.sql();
    let tokens = data.lookup.clone();
    let mut summary = Vec::new();
    for callers in [1usize, 8, 32] {
        let connections = args.pipeline_connections.min(callers);
        let t = tokens.clone();
        let handwritten = (
            Hand::callers(config, Query::Lookup, callers).await?,
            move |h, seed| hand::lookup(h, t.clone(), seed),
        );
        let repos = HotRepos::new(config, callers, connections, SessionPolicy::default())?;
        repos.warm(callers, &tokens).await?;
        let before = backends(admin).await?;
        let t = tokens.clone();
        let result = hot_compare(
            args.seconds,
            handwritten,
            &[(EXCLUSIVE, &repos.exclusive), (PIPELINED, &repos.pipelined)],
            |_, repo| vec![repo.clone(); callers],
            move |repo, seed| repo::lookup(repo, t.clone(), seed),
        )
        .await;
        // Every side's connections are open at once here: the hand-written callers', the
        // exclusive pool's and the shared ones.
        let seen = backends(admin).await?;
        repos.close();
        print_hot(&format!("{callers} | lookup"), callers, &result);
        let pgbench = pgbench(config, &sql, &tokens, callers, args.seconds).await?;
        println!(
            "{}",
            hot_row(
                &format!(
                    "{callers} | lookup | pgbench -M prepared (ratio: to the last hand-written)"
                ),
                &callers.to_string(),
                &pgbench,
                Some(&result[1].hand)
            )
        );
        println!(
            "| {callers} | lookup | backends of the database after warming: {before}, after \
             the runs: {seen} (every side's connections open at once) | | | | | | |"
        );
        summary.push(Summary {
            load: format!("lookup, {callers} callers"),
            exclusive: result[0].ratio(),
            pipelined: result[1].ratio(),
            pipelined_p99: result[1].p99_ratio(),
            pipelined_writes: None,
            pgbench: Some(result[1].ours.throughput() / pgbench.throughput()),
        });
    }

    // The other operations at 8 callers, each on sessions and users of its own.
    let callers = 8usize;
    let connections = args.pipeline_connections.min(callers);
    let seconds = args.seconds;
    let hot = HotRepos::new(config, callers, connections, ops_policy())?;
    hot.warm(callers, &tokens).await?;
    let repos = [
        (EXCLUSIVE, &hot.exclusive),
        (PIPELINED, &hot.pipelined),
        (PIPELINED_WRITES, &hot.pipelined_writes),
    ];
    let each = |_: usize, repo: &SessionRepo| vec![repo.clone(); callers];

    // create: users without sessions (the cap is reached after ten creates per user).
    let users = Arc::new(new_users(admin, 4000).await?);
    let handwritten = (
        Hand::callers(config, Query::Create, callers).await?,
        picked(&users, hand::create),
    );
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        each,
        picked(&users, repo::create),
    )
    .await;
    print_hot(&format!("{callers} | create"), callers, &result);
    summary.push(ops_summary("create, 8 callers", &result));

    // rotate: each caller rotates its own sessions in turn (4 sides: the hand-written
    // baseline twice, then each hot path).
    let rotate_count = 4 * callers * ROTATION_SESSIONS_PER_CALLER;
    let users = new_users(admin, rotate_count / 10).await?;
    let rotate = bulk_sessions(admin, &users, rotate_count, Bulk::LIVE, true).await?;
    let mut chunks = rotate.chunks(ROTATION_SESSIONS_PER_CALLER);
    let mut hands = Vec::new();
    for h in Hand::callers(config, Query::Rotate, callers).await? {
        hands.push((h, Chain::shared(chunks.next().expect("rotation sessions"))));
    }
    let key = Arc::new(bench_key());
    let handwritten = (hands, move |(h, chain), _| {
        hand::rotate(h, chain, key.clone())
    });
    // The hand-written callers keep their chains for both comparisons; each hot path gets
    // chains of its own.
    let ours_chains: Vec<Vec<Shared<Chain>>> = (0..3)
        .map(|_| {
            (0..callers)
                .map(|_| Chain::shared(chunks.next().expect("rotation sessions")))
                .collect()
        })
        .collect();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |side, repo| {
            ours_chains[side]
                .iter()
                .map(|chain| (repo.clone(), chain.clone()))
                .collect()
        },
        |(repo, chain), _| repo::rotate(repo, chain),
    )
    .await;
    print_hot(&format!("{callers} | rotate"), callers, &result);
    summary.push(ops_summary("rotate, 8 callers", &result));

    // activity, throttled (recent activity: nothing written), on lookup sessions.
    let keys = activity_keys(data);
    mark_active(admin, &keys).await?;
    let handwritten = (
        Hand::callers(config, Query::Activity, callers).await?,
        picked(&keys, |h, key| hand::activity(h, key, 60)),
    );
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        each,
        picked(&keys, repo::activity),
    )
    .await;
    print_hot(
        &format!("{callers} | activity (throttled)"),
        callers,
        &result,
    );
    summary.push(ops_summary("activity, 8 callers", &result));

    // list: a random main user's devices (10 sessions each).
    let users = &data.users;
    let handwritten = (
        Hand::callers(config, Query::List, callers).await?,
        picked(users, hand::list),
    );
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        each,
        picked(users, repo::list),
    )
    .await;
    print_hot(&format!("{callers} | list"), callers, &result);
    summary.push(ops_summary("list, 8 callers", &result));

    // revoke: distinct live sessions, each revoked once; a list per side.
    // Six side-seconds (the hand-written callers run beside each of the three contenders),
    // at up to twice the one-caller bound.
    let per_side = (2.0 * REVOKE_RATE_BOUND * seconds) as usize;
    let revoke_count = 6 * per_side;
    let users = new_users(admin, revoke_count / 10).await?;
    let mut revoke: Vec<SessionKey> = bulk_sessions(admin, &users, revoke_count, Bulk::LIVE, true)
        .await?
        .iter()
        .map(RefreshToken::session_key)
        .collect();
    // One side's share for each contender, the rest for the hand-written callers (in all
    // three comparisons).
    let lists: Vec<Revocations> = (0..3)
        .map(|_| Revocations::new(revoke.split_off(revoke.len() - per_side)))
        .collect();
    let hand_list = Revocations::new(revoke);
    let hands: Vec<_> = Hand::callers(config, Query::Revoke, callers)
        .await?
        .into_iter()
        .map(|h| (h, hand_list.clone()))
        .collect();
    let result = hot_compare(
        seconds,
        (hands, |(h, list), _| hand::revoke(h, list)),
        &repos,
        |side, repo| vec![(repo.clone(), lists[side].clone()); callers],
        |(repo, list), _| repo::revoke(repo, list),
    )
    .await;
    print_hot(&format!("{callers} | revoke"), callers, &result);
    summary.push(ops_summary("revoke, 8 callers", &result));
    hot.close();

    println!(
        "\n| load | exclusive / hand-written | **pipelined / hand-written** | pipelined p99 / \
         hand-written p99 | pipelined with writes / hand-written | pipelined / pgbench |"
    );
    println!("|---|---|---|---|---|---|");
    let optional = |value: Option<f64>| value.map_or(String::new(), |v| format!("{v:.2}"));
    for line in summary {
        println!(
            "| {} | {:.2} | **{:.2}** | {:.2} | {} | {} |",
            line.load,
            line.exclusive,
            line.pipelined,
            line.pipelined_p99,
            optional(line.pipelined_writes),
            optional(line.pgbench)
        );
    }
    println!();
    Ok(())
}

/// One line of section 9's summary: ratios to hand-written one connection per caller.
struct Summary {
    load: String,
    exclusive: f64,
    pipelined: f64,
    pipelined_p99: f64,
    pipelined_writes: Option<f64>,
    pgbench: Option<f64>,
}

fn ops_summary(load: &str, results: &[Contender]) -> Summary {
    Summary {
        load: load.to_owned(),
        exclusive: results[0].ratio(),
        pipelined: results[1].ratio(),
        pipelined_p99: results[1].p99_ratio(),
        pipelined_writes: results.get(2).map(Contender::ratio),
        pgbench: None,
    }
}
