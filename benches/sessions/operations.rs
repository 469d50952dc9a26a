//! Section 3: create, activity (throttled and not), list, count and revoke, one caller,
//! against hand-written tokio-postgres.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{NewSession, RefreshToken, SessionKey, SessionRepo};
use tokio_postgres::{Client, Config};
use uuid::Uuid;

use crate::BoxError;
use crate::args::Args;
use crate::callers::{Shared, pick};
use crate::data::{DAY, Data, Ops};
use crate::hand::{Hand, HandDevice, IDLE_SECONDS, hand, hand_create, query_with};
use crate::measure::{Run, compare, row};
use crate::repo::{ops_policy, repo_for};

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
    let mut results: Vec<(&str, Run, Run)> = Vec::new();

    // create: users with 10 live sessions each (the cap: every login evicts one), the same SQL
    // and parameters; the token minted and hashed on both sides.
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
    let h = hand(config, &sql).await?;
    let u = ops.create_users.clone();
    let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
        let user = pick(&u, seed);
        async move { hand_create(&h, user).await }
    });
    let u = ops.create_users.clone();
    let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
        let user = pick(&u, seed);
        async move {
            let new = NewSession::new(user, DAY)
                .with_device_info("bench device")
                .with_ip_address("192.0.2.1".parse().expect("ip"))
                .with_user_agent("Bench/1.0");
            repo.create(&new).await.expect("create");
        }
    });
    let (handwritten, ours) = compare(seconds, handwritten, ours).await;
    results.push(("create (at the cap: evicts one)", handwritten, ours));

    // activity: throttled (recent activity: nothing written) and unthrottled (always written),
    // on main sessions (activity changes no token).
    let keys: Arc<Vec<SessionKey>> = Arc::new(
        data.lookup
            .iter()
            .step_by((data.lookup.len() / 50_000).max(1))
            .map(RefreshToken::session_key)
            .collect(),
    );
    let (user_ids, session_ids): (Vec<Uuid>, Vec<Uuid>) =
        keys.iter().map(|k| (k.user_id, k.session_id)).unzip();
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
    for (label, interval, repo) in [
        ("activity, throttled 60 s", 60i64, &repo),
        ("activity, unthrottled", 0, &unthrottled),
    ] {
        admin
            .execute(
                "UPDATE auth.user_sessions SET last_active_at = now() \
                 WHERE (user_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
                &[&user_ids, &session_ids],
            )
            .await?;
        let h = hand(config, &sql).await?;
        let k = keys.clone();
        let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
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
                            &interval,
                        ],
                    )
                    .await
                    .expect("activity")
                    .expect("live");
            }
        });
        let k = keys.clone();
        let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
            let key = pick(&k, seed);
            async move {
                repo.record_activity(key, None)
                    .await
                    .expect("activity")
                    .expect("live");
            }
        });
        let (handwritten, ours) = compare(seconds, handwritten, ours).await;
        results.push((label, handwritten, ours));
    }

    // list and count: a random main user's devices (10 sessions each).
    for (label, name) in [
        ("list", "get_user_sessions"),
        ("count", "count_user_sessions"),
    ] {
        let h = hand(config, &query_with(name, &["user_id", "idle_seconds"])).await?;
        let u = data.users.clone();
        let handwritten = (vec![h], move |h: Arc<Hand>, seed| {
            let user = pick(&u, seed);
            async move {
                let rows = h
                    .client
                    .query(&h.statement, &[&user, &Some(IDLE_SECONDS)])
                    .await
                    .expect(label);
                // Decoded as SessionRepo decodes them.
                if label == "list" {
                    for row in &rows {
                        std::hint::black_box(HandDevice::from_row(row));
                    }
                } else {
                    std::hint::black_box(rows[0].get::<_, i64>(0));
                }
            }
        });
        let u = data.users.clone();
        let ours = (vec![repo.clone()], move |repo: SessionRepo, seed| {
            let user = pick(&u, seed);
            async move {
                if label == "list" {
                    std::hint::black_box(repo.list_devices(user).await.expect("list"));
                } else {
                    std::hint::black_box(repo.count_live(user).await.expect("count"));
                }
            }
        });
        let (handwritten, ours) = compare(seconds, handwritten, ours).await;
        results.push((label, handwritten, ours));
    }

    // revoke: distinct live sessions, each revoked once.
    let mut pairs = ops.revoke.clone();
    let second: Shared<Vec<SessionKey>> =
        Arc::new(std::sync::Mutex::new(pairs.split_off(pairs.len() / 2)));
    let first: Shared<Vec<SessionKey>> = Arc::new(std::sync::Mutex::new(pairs));
    let h = hand(config, &query_with("revoke_session", &["user_id", "id"])).await?;
    let handwritten = (
        vec![(h, first)],
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
    let ours = (
        vec![(repo.clone(), second)],
        |(repo, list): (SessionRepo, Shared<Vec<SessionKey>>), _| async move {
            let key = list
                .lock()
                .unwrap()
                .pop()
                .expect("enough sessions to revoke: raise REVOKE_RATE_BOUND");
            assert!(repo.revoke(key).await.expect("revoke"));
        },
    );
    let (handwritten, ours) = compare(seconds, handwritten, ours).await;
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
