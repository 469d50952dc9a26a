//! Section 9: the hot path, exclusive checkout against shared, pipelined connections: lookups
//! at 1, 8 and 32 callers and the other operations at 8, each beside hand-written calls on one
//! connection per caller, with pgbench and the server connections each side used.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use auth_sessions::{
    HotPath, NewSession, PipelineSettings, PoolSettings, RefreshToken, Rotation, SessionKey,
    SessionPolicy, SessionRepo, build_pool_with_config,
};
use tokio_postgres::{Client, Config};
use uuid::Uuid;

use crate::BoxError;
use crate::args::Args;
use crate::callers::{Chain, Shared, pick};
use crate::data::{
    Bulk, DAY, Data, REVOKE_RATE_BOUND, ROTATION_SESSIONS_PER_CALLER, bench_key, bulk_sessions,
    new_users,
};
use crate::hand::{
    Hand, HandDevice, IDLE_SECONDS, hand, hand_create, hand_lookup, hand_rotate, lookup_sql,
    query_with,
};
use crate::measure::{Run, compare};
use crate::pgbench::pgbench;
use crate::repo::{ops_policy, repo_for, warm};

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
    let sql = lookup_sql();
    let tokens = data.lookup.clone();
    let n = tokens.len() as u64;
    let mut summary = Vec::new();
    for callers in [1usize, 8, 32] {
        let connections = args.pipeline_connections.min(callers);
        let mut states = Vec::new();
        for _ in 0..callers {
            states.push(hand(config, &sql).await?);
        }
        let t = tokens.clone();
        let handwritten = (states, move |h: Arc<Hand>, seed| {
            let t = t.clone();
            async move {
                hand_lookup(
                    &h.client,
                    &h.statement,
                    t[(seed % n) as usize].expose_secret(),
                )
                .await;
            }
        });
        let repos = HotRepos::new(config, callers, connections, SessionPolicy::default())?;
        repos.warm(callers, &tokens).await?;
        let before = backends(admin).await?;
        let t = tokens.clone();
        let result = hot_compare(
            args.seconds,
            handwritten,
            &[(EXCLUSIVE, &repos.exclusive), (PIPELINED, &repos.pipelined)],
            |_, repo| vec![repo.clone(); callers],
            move |repo: SessionRepo, seed| {
                let t = t.clone();
                async move {
                    let found = repo
                        .find_by_token(t[(seed % n) as usize].expose_secret())
                        .await
                        .expect("lookup");
                    assert!(found.is_some());
                }
            },
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

    // create: users without sessions (the cap is reached after ten creates per user).
    let sql = query_with(
        "create_session",
        &[
            "user_id",
            "id",
            "generation",
            "refresh_token_hash",
            "device_info",
            "ip_address",
            "user_agent",
            "ttl_seconds",
            "idle_seconds",
            "max_sessions",
            "evict",
        ],
    );
    let create_users = Arc::new(new_users(admin, 4000).await?);
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push(hand(config, &sql).await?);
    }
    let u = create_users.clone();
    let handwritten = (hands, move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move { hand_create(&h, user).await }
    });
    let u = create_users.clone();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |_, repo| vec![repo.clone(); callers],
        move |repo: SessionRepo, seed| {
            let user = pick(&u, seed);
            async move {
                let new = NewSession::new(user, DAY)
                    .with_device_info("bench device")
                    .with_ip_address("192.0.2.1".parse().expect("ip"))
                    .with_user_agent("Bench/1.0");
                repo.create(&new).await.expect("create");
            }
        },
    )
    .await;
    print_hot(&format!("{callers} | create"), callers, &result);
    summary.push(ops_summary("create, 8 callers", &result));

    // rotate: each caller rotates its own sessions in turn (4 sides: the hand-written
    // baseline twice, then each hot path).
    let sql = query_with(
        "rotate_session",
        &[
            "user_id",
            "id",
            "generation",
            "presented_hash",
            "successor_hash",
            "idle_seconds",
            "grace_seconds",
        ],
    );
    let rotate_count = 4 * callers * ROTATION_SESSIONS_PER_CALLER;
    let users = new_users(admin, rotate_count / 10).await?;
    let rotate = bulk_sessions(admin, &users, rotate_count, Bulk::LIVE, true).await?;
    let mut chunks = rotate.chunks(ROTATION_SESSIONS_PER_CALLER);
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push((
            hand(config, &sql).await?,
            Chain::shared(chunks.next().expect("rotation sessions")),
        ));
    }
    let key = Arc::new(bench_key());
    let handwritten = (hands, move |(h, chain): (Arc<Hand>, Shared<Chain>), _| {
        let key = key.clone();
        async move { hand_rotate(&h, &chain, &key).await }
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
        |(repo, chain): (SessionRepo, Shared<Chain>), _| async move {
            let (i, current) = Chain::take(&chain);
            let rotation = repo.rotate(&current).await.expect("rotate");
            let Rotation::Rotated { token, .. } = rotation else {
                panic!("rotation failed: {rotation:?}")
            };
            Chain::put(&chain, i, token.expose_secret().to_owned());
        },
    )
    .await;
    print_hot(&format!("{callers} | rotate"), callers, &result);
    summary.push(ops_summary("rotate, 8 callers", &result));

    // activity, throttled (recent activity: nothing written), on lookup sessions.
    let keys: Arc<Vec<SessionKey>> = Arc::new(
        data.lookup
            .iter()
            .step_by((data.lookup.len() / 50_000).max(1))
            .map(RefreshToken::session_key)
            .collect(),
    );
    let (user_ids, session_ids): (Vec<Uuid>, Vec<Uuid>) =
        keys.iter().map(|k| (k.user_id, k.session_id)).unzip();
    admin
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() \
             WHERE (user_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
            &[&user_ids, &session_ids],
        )
        .await?;
    let sql = query_with(
        "update_session_activity",
        &[
            "user_id",
            "id",
            "idle_seconds",
            "ip_address",
            "min_interval_seconds",
        ],
    );
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push(hand(config, &sql).await?);
    }
    let k = keys.clone();
    let handwritten = (hands, move |h: Arc<Hand>, seed| {
        let key = pick(&k, seed);
        async move {
            let ip: Option<IpAddr> = None;
            h.client
                .query_opt(
                    &h.statement,
                    &[
                        &key.user_id,
                        &key.session_id,
                        &Some(IDLE_SECONDS),
                        &ip,
                        &60i64,
                    ],
                )
                .await
                .expect("activity")
                .expect("live");
        }
    });
    let k = keys.clone();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |_, repo| vec![repo.clone(); callers],
        move |repo: SessionRepo, seed| {
            let key = pick(&k, seed);
            async move {
                repo.record_activity(key, None)
                    .await
                    .expect("activity")
                    .expect("live");
            }
        },
    )
    .await;
    print_hot(
        &format!("{callers} | activity (throttled)"),
        callers,
        &result,
    );
    summary.push(ops_summary("activity, 8 callers", &result));

    // list: a random main user's devices (10 sessions each).
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push(
            hand(
                config,
                &query_with("get_user_sessions", &["user_id", "idle_seconds"]),
            )
            .await?,
        );
    }
    let u = data.users.clone();
    let handwritten = (hands, move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move {
            let rows = h
                .client
                .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
                .await
                .expect("list");
            for row in &rows {
                std::hint::black_box(HandDevice::from_row(row));
            }
        }
    });
    let u = data.users.clone();
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |_, repo| vec![repo.clone(); callers],
        move |repo: SessionRepo, seed| {
            let user = pick(&u, seed);
            async move {
                std::hint::black_box(repo.list_devices(user).await.expect("list"));
            }
        },
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
    let lists: Vec<Shared<Vec<SessionKey>>> = (0..3)
        .map(|_| {
            Arc::new(std::sync::Mutex::new(
                revoke.split_off(revoke.len() - per_side),
            ))
        })
        .collect();
    let hand_list: Shared<Vec<SessionKey>> = Arc::new(std::sync::Mutex::new(revoke));
    let mut hands = Vec::new();
    for _ in 0..callers {
        hands.push((
            hand(config, &query_with("revoke_session", &["user_id", "id"])).await?,
            hand_list.clone(),
        ));
    }
    let handwritten = (
        hands,
        |(h, list): (Arc<Hand>, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            h.client
                .query_opt(&h.statement, &[&key.user_id, &key.session_id])
                .await
                .expect("revoke")
                .expect("revoked");
        },
    );
    let result = hot_compare(
        seconds,
        handwritten,
        &repos,
        |side, repo| vec![(repo.clone(), lists[side].clone()); callers],
        |(repo, list): (SessionRepo, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            assert!(repo.revoke(key).await.expect("revoke"));
        },
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
