//! How the schema lies on a Citus cluster (distributed PostgreSQL) and what the planner does
//! with every statement: the tables are co-located and distributed idempotently, the hot
//! path's statements reach exactly one shard, cleanup and stats fan out by design, and the two
//! functions are pushed down to the worker of their user.
//!
//! Ignored by default: these tests need a Citus coordinator, which the normal suite's
//! per-test databases cannot provide (Citus does not propagate `CREATE DATABASE`). Create one
//! database by hand with the `citus` extension in it on the coordinator and on every worker,
//! and the workers added (`citus_add_node`), then run every Citus file (`tests/citus_*.rs`)
//!
//! ```text
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/<db> \
//!     cargo test --test 'citus_*' -- --ignored --test-threads=1
//! ```
//!
//! or one of them with `--test citus_plans`. Every test migrates that database, distributes it with
//! 8 shards (both idempotent) and then EMPTIES `auth.users` and `auth.user_sessions`: point
//! CITUS_URL at a scratch database only. The tests serialize themselves on a lock, so they
//! never see each other's rows, and cargo runs one test file after another. The cluster handle
//! and its fixtures are in tests/common/citus.rs.
//!
//! Without CITUS_URL an ignored test run fails loudly rather than passing silently.

use std::collections::BTreeSet;

use auth_sessions::{Error, distribute, migrate};
use db::queries::sessions as q;
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[path = "common/citus.rs"]
mod cluster;

use cluster::{Cluster, SHARDS};

/// The statements of queries/sessions.sql that must reach exactly one shard.
const ROUTED: &[&str] = &[
    "create_session",
    "get_session_by_token",
    "get_user_sessions",
    "count_user_sessions",
    "update_session_activity",
    "revoke_session",
    "revoke_all_sessions_except_current",
    "revoke_all_user_sessions",
    "rotate_session",
    "validate_session",
    "get_live_session_by_key",
];
/// The statements that visit every shard by design: cleanup and stats.
const FAN_OUT: &[&str] = &[
    "delete_expired_sessions",
    "delete_expired_sessions_batch",
    "delete_revoked_sessions_batch",
    "find_idle_sessions_in_key_window",
    "delete_idle_sessions_in_key_range",
    "session_stats",
    // Live sessions' activity, one statement per batch of sessions of many users.
    "record_activity_batch",
];
/// Statements on the rotation keys kept by the database (a reference table), run when a
/// repository reads its keys, not per request: they must not fan out.
const ONCE: &[&str] = &[
    "list_rotation_keys",
    "insert_rotation_key",
    "delete_rotation_key",
];
/// The functions `distribute` pushes down to the worker of their first argument.
const DELEGATED: &[&str] = &["create_session", "rotate_session"];

// ---------------------------------------------------------------------------------------------
// Distribution
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_distribution_is_colocated_and_idempotent() {
    let cluster = Cluster::new().await;
    // Both steps ran in Cluster::new: running them again changes nothing.
    let migrated = migrate(&cluster.pool).await.unwrap();
    assert!(migrated.applied.is_empty(), "{migrated:?}");
    let report = distribute(&cluster.pool, Some(SHARDS)).await.unwrap();
    assert!(report.tables.is_empty(), "{report:?}");
    assert_eq!(
        report.tables_already,
        ["auth.users", "auth.user_sessions"],
        "{report:?}"
    );
    assert!(report.functions.is_empty(), "{report:?}");
    assert_eq!(
        report.functions_already,
        ["create_session", "rotate_session"],
        "{report:?}"
    );
    assert!(matches!(
        distribute(&cluster.pool, Some(0)).await,
        Err(Error::InvalidInput {
            field: "shard_count",
            ..
        })
    ));

    let client = cluster.pool.get().await.unwrap();
    let tables = client
        .query(
            "SELECT logicalrelid::text, partmethod::text, colocationid,
                    column_to_column_name(logicalrelid, partkey),
                    (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid)
             FROM pg_dist_partition p
             WHERE logicalrelid IN ('auth.users'::regclass, 'auth.user_sessions'::regclass)
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(tables.len(), 2);
    let colocation: i32 = tables[0].get(2);
    for row in &tables {
        let table: String = row.get(0);
        assert_eq!(row.get::<_, String>(1), "h", "{table} is hash-distributed");
        assert_eq!(row.get::<_, i32>(2), colocation, "{table} is co-located");
        assert_eq!(row.get::<_, i64>(4), i64::from(SHARDS), "{table} shards");
        let column: String = row.get(3);
        match table.as_str() {
            "auth.users" => assert_eq!(column, "id"),
            "auth.user_sessions" => assert_eq!(column, "user_id"),
            other => panic!("unexpected table {other}"),
        }
    }
    let functions = client
        .query(
            "SELECT p.proname::text, o.distribution_argument_index, o.colocationid
             FROM pg_dist_object o JOIN pg_proc p ON p.oid = o.objid
             WHERE o.classid = 'pg_proc'::regclass
               AND p.pronamespace = 'auth'::regnamespace
               AND o.distribution_argument_index IS NOT NULL
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let functions: Vec<(String, i32, i32)> = functions
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        functions,
        [
            ("create_session".to_owned(), 0, colocation),
            ("rotate_session".to_owned(), 0, colocation),
        ]
    );
    // The shards live on the workers, none on the coordinator.
    let nodes: i64 = client
        .query_one(
            "SELECT count(DISTINCT (nodename, nodeport)) FROM citus_shards
             WHERE table_name = 'auth.user_sessions'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let workers: i64 = client
        .query_one("SELECT count(*) FROM citus_get_active_worker_nodes()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nodes, workers.min(i64::from(SHARDS)));
    eprintln!("distribution: {SHARDS} shards per table over {nodes} worker(s), co-located");
}

// ---------------------------------------------------------------------------------------------
// Plans: one shard for the hot path, a pushed-down call for the two functions
// ---------------------------------------------------------------------------------------------

/// The statements of every file of queries/: (name, SQL with `:param` placeholders).
fn statements() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/queries");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read queries/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    let text: String = files
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("read a query file"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut statements: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("--! ") {
            let name = header.split([' ', '(']).next().unwrap().to_owned();
            statements.push((name, String::new()));
        } else if line.starts_with("--") {
            continue;
        } else if let Some((_, sql)) = statements.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    for (_, sql) in &mut statements {
        *sql = sql.trim().trim_end_matches(';').to_owned();
    }
    statements
}

/// `sql` with every `:name` parameter (not a `::type` cast) replaced by a literal value.
fn substitute(sql: &str, literal: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ':' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&':') {
            chars.next();
            out.push_str("::");
            continue;
        }
        let mut name = String::new();
        while let Some(&next) = chars.peek() {
            if next.is_ascii_alphanumeric() || next == '_' {
                name.push(next);
                chars.next();
            } else {
                break;
            }
        }
        assert!(!name.is_empty(), "a lone ':' in {sql}");
        out.push_str(&literal(&name));
    }
    out
}

fn task_counts(plan: &str) -> Vec<u32> {
    plan.lines()
        .filter_map(|line| line.trim().strip_prefix("Task Count: "))
        .map(|count| count.trim().parse().unwrap())
        .collect()
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_hot_path_statements_reach_one_shard_and_functions_are_pushed_down() {
    let cluster = Cluster::new().await;
    let user = cluster.user().await;
    let session = Uuid::new_v4();
    let hash = hex::encode(Sha256::digest(b"presented"));
    let successor = hex::encode(Sha256::digest(b"successor"));
    let literal = |name: &str| -> String {
        match name {
            "user_id" => format!("'{user}'::uuid"),
            "id" => format!("'{session}'::uuid"),
            "current_id" => format!("'{}'::uuid", Uuid::new_v4()),
            "generation" => "0".into(),
            "refresh_token_hash" | "presented_hash" => format!("'{hash}'::varchar"),
            "successor_hash" => format!("'{successor}'::varchar"),
            "device_info" => "'laptop'::text".into(),
            "ip_address" => "'192.0.2.1'::inet".into(),
            "user_agent" => "'agent'::text".into(),
            "ttl_seconds" => "86400".into(),
            "idle_seconds" => "1209600".into(),
            "max_sessions" => "10".into(),
            "evict" => "true".into(),
            "min_interval_seconds" => "60".into(),
            "grace_seconds" => "10".into(),
            "user_ids" => format!("ARRAY['{user}']"),
            "ids" => format!("ARRAY['{session}']"),
            "ip_addresses" => "ARRAY['192.0.2.1']".into(),
            "retention_seconds" => "604800".into(),
            "batch_size" | "window_size" => "1000".into(),
            "from_user_id" | "from_id" => format!("'{}'::uuid", Uuid::nil()),
            "to_user_id" | "to_id" => format!("'{}'::uuid", Uuid::max()),
            "key_id" => "1".into(),
            "key" => format!("'\\x{}'::bytea", "00".repeat(32)),
            "nonce" => "NULL::bytea".into(),
            other => panic!("no literal for parameter :{other}: add one to this test"),
        }
    };
    let statements = statements();
    let names: BTreeSet<&str> = statements.iter().map(|(name, _)| name.as_str()).collect();
    let classified: BTreeSet<&str> = ROUTED.iter().chain(FAN_OUT).chain(ONCE).copied().collect();
    assert_eq!(
        names, classified,
        "every statement of queries/ must be classified here as routed, fan-out or once"
    );
    let mut report = Vec::new();
    for (name, sql) in &statements {
        let sql = substitute(sql, &literal);
        let plan = cluster.explain(&sql).await;
        let counts = task_counts(&plan);
        eprintln!("---- {name}: Task Count {counts:?}\n{plan}\n");
        if ROUTED.contains(&name.as_str()) {
            assert_eq!(
                counts,
                [1],
                "{name} must be routed to exactly one shard in one task; plan:\n{plan}"
            );
            assert!(
                plan.starts_with("Custom Scan (Citus Adaptive)"),
                "{name} must be planned by Citus as one distributed task; plan:\n{plan}"
            );
            assert!(
                !plan.contains("Distributed Subplan"),
                "{name} must not need a subplan (a second round trip); plan:\n{plan}"
            );
            if let Some(function) = DELEGATED.iter().find(|function| *function == name) {
                // Pushed down: the whole call is the single task, run on a worker. Not pushed
                // down, the plan would be a bare "Function Scan" on the coordinator.
                let task = plan
                    .split_once("->  Task")
                    .map(|(_, task)| task)
                    .unwrap_or("");
                assert!(
                    task.contains(&format!("Function Scan on {function}")),
                    "the call of auth.{function} must be delegated to a worker; plan:\n{plan}"
                );
            }
        } else if ONCE.contains(&name.as_str()) {
            // A local table of the coordinator (no Citus node in the plan) or a reference
            // table (one task): either way one node, never every shard.
            assert!(
                counts.iter().all(|&count| count <= 1),
                "{name} must not fan out; plan:\n{plan}"
            );
        } else {
            assert!(
                counts.contains(&SHARDS),
                "{name} is expected to visit all {SHARDS} shards; plan:\n{plan}"
            );
        }
        report.push(format!("{name}: Task Count {counts:?}"));
    }
    eprintln!("Task Count per statement:\n{}", report.join("\n"));
}

/// Ten executions of one prepared statement each for `create_session` and `rotate_session` (as
/// the pool's statement cache runs them, past the point where PostgreSQL may switch to a generic
/// plan) with `citus.log_remote_commands` on: what the coordinator sent to the workers.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_prepared_function_calls_are_delegated_to_the_users_worker() {
    let cluster = Cluster::new().await;
    let user = cluster.user().await;
    let (client, notices) = cluster.client_with_notices().await;
    client
        .batch_execute("SET citus.log_remote_commands = on")
        .await
        .unwrap();
    let (host, port, _) = cluster.placement(user).await;
    let worker = format!("{host}:{port}");
    let hash = |n: u32| hex::encode(Sha256::digest(format!("token {n}")));

    let create = q::create_session().prepare(&client).await.unwrap();
    let mut sessions = Vec::new();
    for n in 0..10u32 {
        let id = Uuid::new_v4();
        let row = create
            .bind(
                &client,
                &user,
                &id,
                &0,
                &hash(n * 100),
                &Some("device"),
                &None,
                &None::<&str>,
                &86_400,
                &Some(1_209_600),
                &Some(100),
                &true,
            )
            .one()
            .await
            .unwrap();
        assert_eq!(row.id, id);
        sessions.push(id);
    }
    let create_log = std::mem::take(&mut *notices.lock().unwrap());

    let rotate = q::rotate_session().prepare(&client).await.unwrap();
    let id = sessions[0];
    for generation in 0..10u32 {
        let row = rotate
            .bind(
                &client,
                &user,
                &id,
                &(generation as i32),
                &hash(generation),
                &hash(generation + 1),
                &Some(1_209_600),
                &10,
            )
            .opt()
            .await
            .unwrap()
            .expect("a rotation outcome");
        assert_eq!(row.outcome, "rotated", "generation {generation}");
        assert_eq!(row.state, "live", "generation {generation}");
    }
    let rotate_log = std::mem::take(&mut *notices.lock().unwrap());

    for (function, log) in [
        ("create_session", create_log),
        ("rotate_session", rotate_log),
    ] {
        let issued: Vec<&String> = log
            .iter()
            .filter(|notice| notice.starts_with("issuing "))
            .collect();
        let calls = issued
            .iter()
            .filter(|notice| notice.contains(&format!("auth.{function}(")))
            .count();
        eprintln!(
            "{function}: {} remote commands for 10 executions, {calls} of them the call itself",
            issued.len()
        );
        for notice in &issued {
            eprintln!("  {}", notice.chars().take(160).collect::<String>());
        }
        assert_eq!(
            calls, 10,
            "every execution of auth.{function} must be sent whole to a worker; sent:\n{issued:#?}"
        );
        assert!(
            issued.iter().all(|notice| notice.contains(&worker)),
            "every call must go to {worker}, the worker of the user's shard; sent:\n{issued:#?}"
        );
        assert!(
            !issued
                .iter()
                .any(|notice| notice.contains("auth.user_sessions_")
                    || notice.contains("auth.users_")),
            "the coordinator must not run the function body against shards; sent:\n{issued:#?}"
        );
    }
}
