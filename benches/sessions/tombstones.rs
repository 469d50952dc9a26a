//! Section 6: a user with many tombstones against a fresh user: create, list, count.

use std::time::{Duration, Instant};

use auth_sessions::{NewSession, SessionPolicy, SessionRepo};
use tokio_postgres::{Client, Config};
use uuid::Uuid;

use crate::BoxError;
use crate::args::Args;
use crate::data::{Bulk, DAY, HOUR_S, bulk_sessions, new_users};
use crate::measure::{Run, compare, row};
use crate::repo::repo_for;

/// `create` for `user` in a loop for `seconds`, each new session deleted again (untimed) so
/// that the user's live sessions stay below the cap and no tombstone is added. Throughput is
/// calls over the time spent in `create`.
async fn timed_creates(
    repo: &SessionRepo,
    admin: &Client,
    user: Uuid,
    seconds: f64,
) -> Result<Run, BoxError> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut run = Run::empty();
    while Instant::now() < deadline {
        let new = NewSession::new(user, DAY)
            .with_device_info("bench device")
            .with_user_agent("Bench/1.0");
        let call = Instant::now();
        let (session, _) = repo.create(&new).await?;
        let took = call.elapsed();
        run.calls += 1;
        run.elapsed += took;
        run.latencies_us.push(took.as_micros() as u64);
        admin
            .execute(
                "DELETE FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
                &[&session.user_id, &session.id],
            )
            .await?;
    }
    Ok(run)
}

pub(crate) async fn run(args: &Args, config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!(
        "## 6. Tombstones: a user with {} revoked sessions against a fresh user\n",
        args.tombstones
    );
    let users = new_users(admin, 2).await?;
    let (tombstoned, fresh) = (users[0], users[1]);
    let started = Instant::now();
    bulk_sessions(
        admin,
        &[tombstoned],
        args.tombstones,
        Bulk {
            revoked_ago: Some(HOUR_S),
            ..Bulk::LIVE
        },
        false,
    )
    .await?;
    // Both have three live sessions, below the cap of 10.
    bulk_sessions(admin, &[tombstoned], 3, Bulk::LIVE, false).await?;
    bulk_sessions(admin, &[fresh], 3, Bulk::LIVE, false).await?;
    admin
        .batch_execute("VACUUM ANALYZE auth.user_sessions")
        .await?;
    let counts = |user: Uuid| async move {
        let row = admin
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE revoked_at IS NOT NULL) \
                 FROM auth.user_sessions WHERE user_id = $1",
                &[&user],
            )
            .await?;
        Ok::<_, BoxError>((row.get::<_, i64>(0), row.get::<_, i64>(1)))
    };
    let (t_rows, t_revoked) = counts(tombstoned).await?;
    let (f_rows, f_revoked) = counts(fresh).await?;
    println!(
        "(loaded in {:.1} s; tombstoned user: {t_rows} rows, {t_revoked} revoked; fresh user: \
         {f_rows} rows, {f_revoked} revoked; default policy, cap 10)\n",
        started.elapsed().as_secs_f64()
    );
    println!("| operation | user | calls/s | p50 ms | p99 ms | tombstoned / fresh |");
    println!("|---|---|---|---|---|---|");
    let repo = repo_for(config, 1, SessionPolicy::default())?;
    // Open the connection and prepare every statement before measuring.
    for user in [fresh, tombstoned] {
        let (session, _) = repo.create(&NewSession::new(user, DAY)).await?;
        admin
            .execute(
                "DELETE FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
                &[&session.user_id, &session.id],
            )
            .await?;
        repo.list_devices(user).await?;
        repo.count_live(user).await?;
    }
    let mut results = Vec::new();

    // create: alternating slices, fresh then tombstoned.
    let (mut f_run, mut t_run) = (Run::empty(), Run::empty());
    let slice = args.seconds / 4.0;
    for _ in 0..4 {
        f_run.absorb(timed_creates(&repo, admin, fresh, slice).await?);
        t_run.absorb(timed_creates(&repo, admin, tombstoned, slice).await?);
    }
    results.push((
        "create (each new session deleted again, untimed)",
        f_run,
        t_run,
    ));

    for label in ["list_devices", "count_live"] {
        let op = move |(repo, user): (SessionRepo, Uuid), _| async move {
            if label == "list_devices" {
                let devices = repo.list_devices(user).await.expect("list");
                assert_eq!(devices.len(), 3);
            } else {
                assert_eq!(repo.count_live(user).await.expect("count"), 3);
            }
        };
        let (f_run, t_run) = compare(
            args.seconds,
            (vec![(repo.clone(), fresh)], op),
            (vec![(repo.clone(), tombstoned)], op),
        )
        .await;
        results.push((label, f_run, t_run));
    }
    for (label, f_run, t_run) in &results {
        println!(
            "{}",
            row(&format!("{label} | fresh"), f_run, None).replace("1.00 (baseline)", "-")
        );
        let ratio = t_run.throughput() / f_run.throughput();
        println!(
            "| {label} | tombstoned | {:.0} | {:.3} | {:.3} | **{ratio:.2}** (target >= 0.5) |",
            t_run.throughput(),
            t_run.percentile(0.5),
            t_run.percentile(0.99)
        );
    }
    println!();
    repo.pool().close();
    Ok(())
}
