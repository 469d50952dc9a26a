//! Side-by-side benchmark of the session store, printed as ratios against baselines measured
//! in the same run (these machines are shared and noisy: only ratios mean much).
//!
//! ```text
//! cargo bench --bench sessions               # 1,000,000 sessions for 100,000 users
//! cargo bench --bench sessions -- --quick    # 100,000 sessions, shorter runs
//! cargo bench --bench sessions -- --sessions 500000 --seconds 3
//! ```
//!
//! It builds its own data set in a database `auth_sessions_bench` on the server named by
//! `DATABASE_URL` (default `postgres://postgres@localhost:5432/postgres`), dropped and
//! recreated on every run. Every session row carries a real refresh token minted with the
//! benchmark's rotation key (`RotationKey::mint`): it keeps the token texts, bulk-loads the
//! rows (with the SHA-256 of each text) by COPY, and presents the texts as a device would.
//! Sections:
//! 1. storage per session on the freshly built table;
//! 2. token lookup, `SessionRepo` vs hand-written tokio-postgres (prepared statement, same SQL)
//!    vs `pgbench -M prepared` (same SQL), at 1, 8 and 32 concurrent callers;
//! 3. create, activity (throttled and not), list, count, revoke vs hand-written;
//! 4. rotations per second at 1 and 8 callers, each rotating its own sessions;
//! 5. what one call writes: rows, HOT updates, index entries and WAL bytes;
//! 6. a user with 10,000 tombstones against a fresh user: create, list, count;
//! 7. round trips per repository call, counted on the wire;
//! 8. cleanup of expired sessions: rows/s, and lookup p99 during cleanup / without;
//! 9. the hot path, exclusive against pipelined (`--only-pipelined` runs this alone): lookups
//!    at 1, 8 and 32 callers and the other operations at 8, hand-written one connection per
//!    caller vs `SessionRepo` over the pool vs `SessionRepo` on shared, pipelined connections
//!    (`--pipeline-connections N`, default 2) vs pgbench, with the server connections each
//!    used;
//! 10. the reuse proof (`--only-reuse-proof` runs this alone): `rotate` and `validate` of a
//!     forged generation-0 token against a session at generation 10,000, beside a forged parent,
//!     a genuine refresh and a lookup (`benches/sessions/reuse_proof.rs`);
//! 11. live sessions (`--only-live` runs this alone): `LiveSessions::check` from memory against
//!     `find_by_token`, and activity recorded in memory and written in batches against
//!     `record_activity`, at 1 and 8 callers (`benches/sessions/live.rs`).
//!
//! Where things are: `args` (the flags), `measure` (runs, slices, report rows), `data` (the
//! database and the sessions loaded into it), `hand` (the hand-written baseline), `repo`
//! (`SessionRepo` as measured), `callers` (what a caller carries between calls), `pgbench`,
//! and one module per section, named for it. A row of a table is added in its section's module.

#[path = "../../tests/common/relay.rs"]
mod relay;

mod args;
mod callers;
mod data;
mod hand;
mod measure;
mod pgbench;
mod repo;

mod cleanup;
mod hot_path;
mod live;
mod lookups;
mod operations;
mod reuse_proof;
mod rotations;
mod round_trips;
mod storage;
mod tombstones;
mod writes;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args = args::args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// The sections in order, or the one an `--only-...` flag names.
async fn run(args: args::Args) -> Result<(), BoxError> {
    let (config, client, data) = data::setup(&args).await?;
    if args.only_lookups {
        return lookups::run(&args, &config, &data).await;
    }
    if args.only_pipelined {
        return hot_path::run(&args, &config, &client, &data).await;
    }
    if args.only_reuse_proof {
        return reuse_proof::run(&args, &config, &client).await;
    }
    if args.only_live {
        return live::run(&args, &config, &client, &data).await;
    }
    if !args.only_cleanup {
        storage::run(&client).await?;
        let ops = data::prepare_ops(&args, &client).await?;
        lookups::run(&args, &config, &data).await?;
        operations::run(&args, &config, &client, &data, &ops).await?;
        rotations::run(&args, &config, &ops).await?;
        writes::run(&config, &client, &data, &ops).await?;
        tombstones::run(&args, &config, &client).await?;
        round_trips::run(&config, &client).await?;
    }
    cleanup::run(&args, &config, &client, &data).await?;
    if !args.only_cleanup {
        hot_path::run(&args, &config, &client, &data).await?;
        reuse_proof::run(&args, &config, &client).await?;
        live::run(&args, &config, &client, &data).await?;
    }
    Ok(())
}
