//! Distribution on Citus: users and sessions sharded by user id, co-located, and the session
//! functions pushed down to the shard of their user-id argument.

use deadpool_postgres::Pool;

use crate::Error;

/// The tables distributed by user id, with their distribution column, in the order they are
/// distributed (the referenced table first).
const TABLES: [(&str, &str); 2] = [("auth.users", "id"), ("auth.user_sessions", "user_id")];

/// Tables every node needs whole: the rotation key, read by rotations on any worker.
const REFERENCE_TABLES: [&str; 1] = ["auth.rotation_keys"];

/// The functions that run where their first argument, the user id, lives.
const ROUTED_FUNCTIONS: [&str; 2] = ["create_session", "rotate_session"];

/// What [`distribute`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DistributionReport {
    /// Tables distributed by this run.
    pub tables: Vec<&'static str>,
    /// Tables found distributed already.
    pub tables_already: Vec<&'static str>,
    /// Tables made reference tables (a copy on every node) by this run.
    pub reference_tables: Vec<&'static str>,
    /// Functions distributed on their user-id argument by this run.
    pub functions: Vec<&'static str>,
    /// Functions found distributed on their user-id argument already.
    pub functions_already: Vec<&'static str>,
}

/// Distributes a migrated database on Citus: `auth.users` by `id` and `auth.user_sessions` by
/// `user_id`, co-located (with `shard_count` shards, or Citus's `citus.shard_count`), then
/// `auth.create_session` and `auth.rotate_session` on their user-id argument, so that each
/// call runs on the worker holding that user's shard; `auth.rotation_keys` becomes a reference
/// table, so a rotation on any worker reads the key. Existing rows are copied into the shards
/// and the coordinator's local copies truncated. Safe to run again: what is distributed
/// already is left alone.
///
/// # Errors
///
/// [`Error::CitusUnavailable`] when the database has no `citus` extension (nothing is
/// changed); [`Error::InvalidInput`] for a zero `shard_count`; database and pool errors.
pub async fn distribute(
    pool: &Pool,
    shard_count: Option<u32>,
) -> Result<DistributionReport, Error> {
    if shard_count == Some(0) {
        return Err(Error::InvalidInput {
            field: "shard_count",
            problem: crate::InputProblem::OutOfRange,
        });
    }
    let mut client = pool.get().await?;
    let has_citus = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'citus'", &[])
        .await?
        .is_some();
    if !has_citus {
        return Err(Error::CitusUnavailable);
    }
    let shard_count = shard_count.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let mut report = DistributionReport::default();
    for (table, column) in TABLES {
        let distributed = client
            .query_opt(
                "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::text::regclass",
                &[&table],
            )
            .await?
            .is_some();
        if distributed {
            report.tables_already.push(table);
            continue;
        }
        // The first table gets the shard count; the next one joins its co-location group.
        let (statement, params): (&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) =
            if report.tables.is_empty() && report.tables_already.is_empty() {
                (
                    "SELECT create_distributed_table($1::text::regclass, $2,
                         shard_count => coalesce($3, current_setting('citus.shard_count')::integer),
                         colocate_with => 'none')",
                    vec![&table, &column, &shard_count],
                )
            } else {
                (
                    "SELECT create_distributed_table($1::text::regclass, $2,
                         colocate_with => 'auth.users')",
                    vec![&table, &column],
                )
            };
        // schema/015 puts row triggers on auth.user_sessions (the pushed session endings), and
        // Citus distributes a table with triggers, copying them onto every shard, only with
        // citus.enable_unsafe_triggers on (Citus 11 and later; older ones lack the setting).
        // It is turned on for this transaction only, so the pooled connection does not keep it:
        // Citus checks it when a table is distributed and when a trigger is created, not when
        // the triggers fire. Citus hides it from pg_settings: current_setting says whether it
        // exists.
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT set_config('citus.enable_unsafe_triggers', 'on', true)
             WHERE current_setting('citus.enable_unsafe_triggers', true) IS NOT NULL",
            &[],
        )
        .await?;
        tx.execute(statement, &params).await?;
        tx.commit().await?;
        report.tables.push(table);
    }
    for table in REFERENCE_TABLES {
        let distributed = client
            .query_opt(
                "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::text::regclass",
                &[&table],
            )
            .await?
            .is_some();
        if !distributed {
            client
                .execute(
                    "SELECT create_reference_table($1::text::regclass)",
                    &[&table],
                )
                .await?;
            report.reference_tables.push(table);
        }
    }
    // The rows are in the shards now; drop the coordinator's local copies (referencing table
    // first). Citus keeps them until asked.
    for table in report.tables.iter().rev().chain(&report.reference_tables) {
        client
            .execute(
                "SELECT truncate_local_data_after_distributing_table($1::text::regclass)",
                &[table],
            )
            .await?;
    }
    for function in ROUTED_FUNCTIONS {
        let distributed = client
            .query_opt(
                "SELECT 1 FROM pg_dist_object o JOIN pg_proc p ON p.oid = o.objid
                 WHERE o.classid = 'pg_proc'::regclass
                   AND p.pronamespace = 'auth'::regnamespace AND p.proname = $1
                   AND o.distribution_argument_index = 0",
                &[&function],
            )
            .await?
            .is_some();
        if distributed {
            report.functions_already.push(function);
            continue;
        }
        client
            .execute(
                "SELECT create_distributed_function(p.oid::regprocedure, '$1',
                     colocate_with => 'auth.user_sessions')
                 FROM pg_proc p
                 WHERE p.pronamespace = 'auth'::regnamespace AND p.proname = $1",
                &[&function],
            )
            .await?;
        report.functions.push(function);
    }
    Ok(report)
}
