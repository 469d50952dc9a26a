//! Section 5: what one call writes: rows, HOT updates, index entries and WAL bytes.

use std::time::Duration;

use auth_sessions::{NewSession, RefreshToken, SessionKey, SessionRepo};
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::callers::Chain;
use crate::data::{DAY, Data, Ops, WRITE_CALLS};
use crate::repo::{ops_policy, repo_for, rotate_next};

const WRITE_RUNS: usize = 3;

/// Calls per run for the measurements right after a checkpoint (each on its own page).
const FIRST_TOUCH_CALLS: usize = 500;

/// Cumulative row counts of the session table from `pg_stat_user_tables`.
#[derive(Clone, Copy, Default)]
struct TableCounts {
    inserted: i64,
    updated: i64,
    hot: i64,
    deleted: i64,
}

impl TableCounts {
    fn minus(self, other: TableCounts) -> TableCounts {
        TableCounts {
            inserted: self.inserted - other.inserted,
            updated: self.updated - other.updated,
            hot: self.hot - other.hot,
            deleted: self.deleted - other.deleted,
        }
    }

    fn plus(self, other: TableCounts) -> TableCounts {
        TableCounts {
            inserted: self.inserted + other.inserted,
            updated: self.updated + other.updated,
            hot: self.hot + other.hot,
            deleted: self.deleted + other.deleted,
        }
    }
}

async fn table_counts(admin: &Client) -> Result<TableCounts, BoxError> {
    let row = admin
        .query_one(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables \
             WHERE relid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await?;
    Ok(TableCounts {
        inserted: row.get(0),
        updated: row.get(1),
        hot: row.get(2),
        deleted: row.get(3),
    })
}

async fn wal_lsn(admin: &Client) -> Result<String, BoxError> {
    Ok(admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0))
}

async fn wal_bytes(admin: &Client, from: &str, to: &str) -> Result<i64, BoxError> {
    Ok(admin
        .query_one(
            "SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::bigint",
            &[&from, &to],
        )
        .await?
        .get(0))
}

/// Makes the repository's (only) connection publish its pending table statistics: PostgreSQL
/// 15 flushes them when the backend next goes idle, that is before this call returns.
async fn flush_stats(repo: &SessionRepo) -> Result<(), BoxError> {
    let client = repo.pool().get().await?;
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await?;
    Ok(())
}

/// How many indexes of the session table hold an entry for the current version of session
/// `key`: the unconditional ones, and the partial ones whose predicate the row satisfies.
async fn indexes_holding(admin: &Client, key: SessionKey) -> Result<(i64, i64), BoxError> {
    let indexes = admin
        .query(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index \
             WHERE indrelid = 'auth.user_sessions'::regclass",
            &[],
        )
        .await?;
    let mut holding = 0;
    for index in &indexes {
        let predicate: Option<String> = index.get(0);
        let found: i64 = admin
            .query_one(
                &format!(
                    "SELECT count(*) FROM auth.user_sessions WHERE user_id = $1 AND id = $2 \
                     AND ({})",
                    predicate.as_deref().unwrap_or("true")
                ),
                &[&key.user_id, &key.session_id],
            )
            .await?
            .get(0);
        holding += found;
    }
    Ok((holding, indexes.len() as i64))
}

/// What [`WRITE_RUNS`] runs of sequential calls wrote: table counts summed over the runs,
/// and the WAL of each run.
struct WriteCost {
    calls: usize,
    counts: TableCounts,
    wal: Vec<i64>,
}

/// Runs `op(run, 0..calls)` for runs 1 to [`WRITE_RUNS`] on `repo` (a pool of one connection,
/// so that the statistics of that one backend can be flushed) and measures what each run
/// wrote: `pg_stat_user_tables` deltas and `pg_current_wal_lsn()` before and after. With
/// `checkpoint`, a `CHECKPOINT` precedes every run, so that each call's first write to a page
/// carries a full-page image; without, an unmeasured run 0 writes to the same pages first,
/// so that no measured call does.
async fn write_cost(
    admin: &Client,
    repo: &SessionRepo,
    calls: usize,
    checkpoint: bool,
    mut op: impl AsyncFnMut(usize, usize) -> Result<(), BoxError>,
) -> Result<WriteCost, BoxError> {
    let mut cost = WriteCost {
        calls: WRITE_RUNS * calls,
        counts: TableCounts::default(),
        wal: Vec::new(),
    };
    if !checkpoint {
        for j in 0..calls {
            op(0, j).await?;
        }
    }
    for run in 1..=WRITE_RUNS {
        if checkpoint {
            admin.batch_execute("CHECKPOINT").await?;
        }
        admin
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await?;
        flush_stats(repo).await?;
        let before = table_counts(admin).await?;
        let start = wal_lsn(admin).await?;
        for j in 0..calls {
            op(run, j).await?;
        }
        let end = wal_lsn(admin).await?;
        flush_stats(repo).await?;
        let after = table_counts(admin).await?;
        cost.counts = cost.counts.plus(after.minus(before));
        cost.wal.push(wal_bytes(admin, &start, &end).await?);
    }
    Ok(cost)
}

fn print_write_cost(label: &str, cost: &WriteCost, holding: (i64, i64)) {
    let per = |v: i64| v as f64 / cost.calls as f64;
    let c = cost.counts;
    let index_entries = (c.inserted + c.updated - c.hot) * holding.0;
    let per_run = (cost.calls / cost.wal.len().max(1)) as f64;
    let least = cost.wal.iter().min().copied().unwrap_or(0);
    let runs: Vec<String> = cost
        .wal
        .iter()
        .map(|w| format!("{:.0}", *w as f64 / per_run))
        .collect();
    println!(
        "| {label} | {} x {per_run} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} of {} | {:.2} | **{:.0}** | {} |",
        cost.wal.len(),
        per(c.inserted + c.updated + c.deleted),
        per(c.inserted),
        per(c.updated),
        per(c.hot),
        per(c.deleted),
        holding.0,
        holding.1,
        per(index_entries),
        least as f64 / per_run,
        runs.join(" / "),
    );
}

pub(crate) async fn run(
    config: &Config,
    admin: &Client,
    data: &Data,
    ops: &Ops,
) -> Result<(), BoxError> {
    println!("## 5. What one call writes\n");
    println!(
        "Sequential calls on one connection, {WRITE_RUNS} measured runs each. Rows from \
         `pg_stat_user_tables` deltas (statistics flushed with `pg_stat_force_next_flush()`); \
         index entries = (inserts + non-HOT updates) x the indexes that hold the written row \
         version; WAL from `pg_current_wal_lsn()` before and after each run \
         (`pg_wal_lsn_diff`). WAL is counted server-wide, so other databases' writes can only \
         add to a run: the least run is the figure. Rows without \"checkpoint\" in their name \
         follow an unmeasured run over the same pages (no full-page images); those with it \
         follow a `CHECKPOINT` and write to pages not written since.\n"
    );
    println!(
        "| operation | runs x calls | rows written / call | inserted | updated | of which HOT | \
         deleted | indexes holding the row | index entries / call | WAL bytes / call (least \
         run) | WAL bytes / call, each run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // Connections of earlier sections publish their last statistics as they exit.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let repo = repo_for(config, 1, ops_policy())?;
    let unthrottled = repo_for(config, 1, ops_policy().activity_interval(Duration::ZERO))?;

    // Rotation: 100 sessions, each rotated ten times a run.
    let chain = Chain::shared(&ops.write_rotate);
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, _| {
        rotate_next(&repo, &chain).await
    })
    .await?;
    let holding = indexes_holding(admin, ops.write_rotate[0].session_key()).await?;
    print_write_cost("rotate", &cost, holding);

    // Rotation of sessions spread over the table (one per page), after a checkpoint.
    let half = data.spread.len() / 2;
    let spread_calls = FIRST_TOUCH_CALLS.min(half);
    let chain = Chain::shared(&data.spread[..spread_calls]);
    let cost = write_cost(admin, &repo, spread_calls, true, async |_, _| {
        rotate_next(&repo, &chain).await
    })
    .await?;
    let holding = indexes_holding(admin, data.spread[0].session_key()).await?;
    print_write_cost(
        "rotate, first write to its page since a checkpoint",
        &cost,
        holding,
    );

    // Activity, unthrottled (always written) and throttled (recently written: nothing).
    let keys = &ops.write_activity;
    let cost = write_cost(admin, &unthrottled, WRITE_CALLS, false, async |_, j| {
        let activity = unthrottled
            .record_activity(keys[j % keys.len()], None)
            .await?
            .ok_or("not live")?;
        assert!(activity.written);
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, keys[0]).await?;
    print_write_cost("record_activity, unthrottled", &cost, holding);

    let spread: Vec<SessionKey> = data.spread[half..half + spread_calls]
        .iter()
        .map(RefreshToken::session_key)
        .collect();
    let cost = write_cost(admin, &unthrottled, spread_calls, true, async |_, j| {
        unthrottled
            .record_activity(spread[j], None)
            .await?
            .ok_or("not live")?;
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, spread[0]).await?;
    print_write_cost(
        "record_activity, unthrottled, first write to its page since a checkpoint",
        &cost,
        holding,
    );

    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, j| {
        let activity = repo
            .record_activity(keys[j % keys.len()], None)
            .await?
            .ok_or("not live")?;
        assert!(!activity.written);
        Ok(())
    })
    .await?;
    print_write_cost("record_activity, throttled 60 s", &cost, holding);

    // Revocation of distinct live sessions: groups of four neighbours of one user, one per
    // run, so that every run writes to the same pages.
    let revoked = &ops.write_revoke;
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |run, j| {
        assert!(repo.revoke(revoked[4 * j + run]).await?);
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, revoked[0]).await?;
    print_write_cost("revoke", &cost, holding);

    // Creation below the cap (eight logins in all for each of 500 fresh users) and at it (100
    // users with 10 live sessions: each login evicts one).
    let fresh = &ops.write_fresh_users;
    let mut last = None;
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, j| {
        let new = NewSession::new(fresh[j % fresh.len()], DAY).with_device_info("bench device");
        let (session, _) = repo.create(&new).await?;
        last = Some(session.key());
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, last.expect("created")).await?;
    print_write_cost("create, below the cap", &cost, holding);

    let at_cap = &ops.write_cap_users;
    let cost = write_cost(admin, &repo, WRITE_CALLS, false, async |_, j| {
        let new = NewSession::new(at_cap[j % at_cap.len()], DAY).with_device_info("bench device");
        let (session, _) = repo.create(&new).await?;
        last = Some(session.key());
        Ok(())
    })
    .await?;
    let holding = indexes_holding(admin, last.expect("created")).await?;
    print_write_cost("create, at the cap (evicts one)", &cost, holding);
    println!();
    repo.pool().close();
    unthrottled.pool().close();
    Ok(())
}
