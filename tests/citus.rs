//! The whole `SessionRepo` API on a Citus cluster (distributed PostgreSQL).
//!
//! Ignored by default: these tests need a Citus coordinator, which the normal suite's
//! per-test databases cannot provide (Citus does not propagate `CREATE DATABASE`). Create one
//! database by hand with the `citus` extension in it on the coordinator and on every worker,
//! and the workers added (`citus_add_node`), then run
//!
//! ```text
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/<db> \
//!     cargo test --test citus -- --ignored --test-threads=1
//! ```
//!
//! The test that connects through a worker uses CITUS_WORKER_URL (the same database on one
//! worker) when it is set, otherwise the first active worker the coordinator lists in
//! `pg_dist_node`, with CITUS_URL's user, password, database and TLS settings.
//!
//! Every test migrates that database, distributes it with 8 shards (both idempotent) and then
//! EMPTIES `auth.users` and `auth.user_sessions`: point CITUS_URL at a scratch database only.
//! The tests also serialize themselves on a lock, so they never see each other's rows.
//!
//! Without CITUS_URL an ignored test run fails loudly rather than passing silently.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::{
    CapPolicy, Error, PoolSettings, RefreshToken, RevokeReason, Rotation, Session, SessionKey,
    SessionPolicy, SessionRepo, Validation, build_pool, distribute, migrate,
};
use db::queries::sessions as q;
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;
use tokio_postgres::{Config, NoTls};
use uuid::Uuid;

#[path = "common/tokens.rs"]
mod tokens;

#[path = "common/citus.rs"]
mod cluster;
#[path = "common/outcomes.rs"]
mod outcomes;

use cluster::{Cluster, DAY, SHARDS, key, new_session};
use outcomes::{all_rows, assert_unknown_and_inert, rotated};
use tokens::with_other_user;

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
];
/// The statements that visit every shard by design: cleanup and stats.
const FAN_OUT: &[&str] = &[
    "delete_expired_sessions",
    "delete_expired_sessions_batch",
    "delete_revoked_sessions_batch",
    "find_idle_sessions_in_key_window",
    "delete_idle_sessions_in_key_range",
    "session_stats",
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

// ---------------------------------------------------------------------------------------------
// The repository over Citus
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_create_find_list_count_and_activity() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(6).await;
    let mut created: Vec<(Session, RefreshToken)> = Vec::new();
    for (n, &user) in users.iter().enumerate() {
        for device in ["phone", "laptop"] {
            let (session, token) = repo
                .create(&new_session(user, &format!("{device} {n}")))
                .await
                .expect("create on Citus");
            assert_eq!(session.user_id, user);
            assert_eq!(token.user_id(), user);
            assert_eq!(token.session_id(), session.id);
            assert_eq!(token.generation(), 0);
            created.push((session, token));
        }
    }
    for (session, token) in &created {
        let found = repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .expect("find_by_token on Citus");
        assert_eq!(&found, session);
        assert_eq!(
            repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Valid(session.clone())
        );
    }
    let nodes: BTreeSet<String> = {
        let mut nodes = BTreeSet::new();
        for &user in &users {
            nodes.insert(cluster.node_of(user).await);
            // The rows are in the user's shard on its worker, read there directly.
            assert_eq!(cluster.rows_in_shard(user).await, 2);
        }
        nodes
    };
    eprintln!("{} users' sessions on workers {nodes:?}", users.len());

    for &user in &users {
        let devices = repo.list_devices(user).await.unwrap();
        assert_eq!(devices.len(), 2);
        assert!(devices[0].last_active_at >= devices[1].last_active_at);
        let listed: BTreeSet<Uuid> = devices.iter().map(|d| d.id).collect();
        let expected: BTreeSet<Uuid> = created
            .iter()
            .filter(|(s, _)| s.user_id == user)
            .map(|(s, _)| s.id)
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(repo.count_live(user).await.unwrap(), 2);
    }
    assert!(repo.list_devices(Uuid::new_v4()).await.unwrap().is_empty());
    assert_eq!(repo.count_live(Uuid::new_v4()).await.unwrap(), 0);

    // Activity: within the interval only a new address writes.
    let (session, _) = &created[0];
    let moved = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let first = repo
        .record_activity(session.key(), Some(moved))
        .await
        .unwrap()
        .expect("live session");
    assert!(first.written, "a new address is written");
    assert!(first.last_active_at >= session.last_active_at);
    let again = repo
        .record_activity(session.key(), Some(moved))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !again.written,
        "same address within the interval writes nothing"
    );
    assert_eq!(again.last_active_at, first.last_active_at);
    let device = repo
        .list_devices(session.user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == session.id)
        .unwrap();
    assert_eq!(device.ip_address, Some(moved));
    assert_eq!(device.last_active_at, first.last_active_at);
    let eager = cluster.repo_with(SessionPolicy::default().activity_interval(Duration::ZERO));
    let written = eager
        .record_activity(session.key(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(written.written && written.last_active_at > first.last_active_at);
    assert_eq!(
        repo.record_activity(SessionKey::new(session.user_id, Uuid::new_v4()), None)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_a_token_with_a_tampered_user_id_is_unknown_and_changes_nothing() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let victim = cluster.user().await;
    let (victim_session, victim_token) = repo.create(&new_session(victim, "victim")).await.unwrap();
    // Another existing user, on another worker where there is one, with a session of its own.
    let mut other = cluster.user().await;
    for _ in 0..100 {
        if cluster.node_of(other).await != cluster.node_of(victim).await {
            break;
        }
        other = cluster.user().await;
    }
    repo.create(&new_session(other, "other")).await.unwrap();
    // The attacker's own session, whose token is re-encoded to claim the victim's id...
    let (_, attacker_token) = repo.create(&new_session(other, "attacker")).await.unwrap();
    let claims_victim = with_other_user(&attacker_token, victim);
    // ...and the victim's token re-encoded to another user, existing or not.
    let moved_to_other = with_other_user(&victim_token, other);
    let moved_to_nobody = with_other_user(&victim_token, Uuid::new_v4());
    for (presented, what) in [
        (
            &claims_victim,
            "attacker token claiming the victim's user id",
        ),
        (
            &moved_to_other,
            "victim token moved to another existing user",
        ),
        (&moved_to_nobody, "victim token moved to an unknown user"),
    ] {
        assert_unknown_and_inert(&cluster.client().await, &repo, presented, what).await;
    }
    // The genuine token still works.
    assert_eq!(
        repo.find_by_token(victim_token.expose_secret())
            .await
            .unwrap(),
        Some(victim_session)
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_rotation_grace_replay_and_stale_ancestors() {
    let cluster = Cluster::new().await;
    let graceful = cluster.repo_with(SessionPolicy::default().rotation_key(key()));
    let strict = cluster.repo_with(
        SessionPolicy::default()
            .rotation_key(key())
            .rotation_grace(Duration::ZERO),
    );
    let user = cluster.user().await;

    // Rotate, then present the replaced token: within the grace window it gets the same
    // successor, after it (strict: no window) the session is revoked.
    let (session, t0) = graceful.create(&new_session(user, "phone")).await.unwrap();
    let t1 = match graceful.rotate(t0.expose_secret()).await.unwrap() {
        Rotation::Rotated { session: s, token } => {
            assert_eq!(s.id, session.id);
            assert!(s.last_active_at >= session.last_active_at);
            token
        }
        other => panic!("expected Rotated, got {other:?}"),
    };
    assert_eq!(t1.generation(), 1);
    assert_eq!(t1.session_key(), t0.session_key());
    assert_eq!(
        graceful.find_by_token(t0.expose_secret()).await.unwrap(),
        None
    );
    assert!(
        graceful
            .find_by_token(t1.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        rotated(&graceful, &t0).await,
        t1,
        "grace: the same successor"
    );
    assert!(matches!(
        graceful.validate(t0.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
    assert_eq!(
        strict.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        graceful.validate(t1.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::TokenReused)
    );
    assert_eq!(
        graceful.rotate(t1.expose_secret()).await.unwrap(),
        Rotation::Revoked(RevokeReason::TokenReused)
    );
    assert_eq!(
        graceful.find_by_token(t1.expose_secret()).await.unwrap(),
        None
    );

    // An older ancestor: proven by its tag, and the same routed statement revokes the session.
    let (second, s0) = graceful.create(&new_session(user, "laptop")).await.unwrap();
    let s1 = rotated(&graceful, &s0).await;
    let s2 = rotated(&graceful, &s1).await;
    let s3 = rotated(&graceful, &s2).await;
    assert_eq!(s3.generation(), 3);
    assert_eq!(
        graceful.validate(s0.expose_secret()).await.unwrap(),
        Validation::TokenReused {
            session_id: second.id,
            user_id: user
        }
    );
    assert!(matches!(
        graceful.validate(s3.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
    assert_eq!(
        graceful.rotate(s0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: second.id,
            user_id: user
        }
    );
    assert_eq!(
        graceful.validate(s3.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::TokenReused)
    );

    // A forged later token of a live session is unknown and changes nothing.
    let (_, f0) = graceful.create(&new_session(user, "tablet")).await.unwrap();
    let forged = tokens::forged(user, f0.session_id(), 5);
    let before = all_rows(&cluster.client().await).await;
    assert_eq!(graceful.rotate(&forged).await.unwrap(), Rotation::Unknown);
    assert_eq!(
        graceful.validate(&forged).await.unwrap(),
        Validation::Unknown
    );
    assert_eq!(all_rows(&cluster.client().await).await, before);
    assert!(
        graceful
            .find_by_token(f0.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_eight_concurrent_rotations_of_one_token_converge_on_one_successor() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo_with(SessionPolicy::default().rotation_key(key()));
    let user = cluster.user().await;
    let (session, token) = repo.create(&new_session(user, "phone")).await.unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let repo = repo.clone();
            let barrier = barrier.clone();
            let presented = token.expose_secret().to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                repo.rotate(&presented).await
            })
        })
        .collect();
    let mut successors = BTreeSet::new();
    for task in tasks {
        match task.await.unwrap().expect("rotate on Citus") {
            Rotation::Rotated { session: s, token } => {
                assert_eq!(s.id, session.id);
                assert_eq!(token.generation(), 1);
                successors.insert(token.expose_secret().to_owned());
            }
            other => panic!("expected Rotated for every concurrent caller, got {other:?}"),
        }
    }
    assert_eq!(
        successors.len(),
        1,
        "concurrent rotations forked the session"
    );
    let successor = successors.into_iter().next().unwrap();
    let generation = cluster
        .scalar(&format!(
            "SELECT generation::bigint FROM auth.user_sessions \
             WHERE user_id = '{user}' AND id = '{}'",
            session.id
        ))
        .await;
    assert_eq!(generation, 1, "exactly one rotation was written");
    assert!(repo.find_by_token(&successor).await.unwrap().is_some());
    assert_eq!(
        repo.find_by_token(token.expose_secret()).await.unwrap(),
        None
    );
    let next = rotated(&repo, &RefreshToken::parse(&successor).unwrap()).await;
    assert_eq!(next.generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_per_user_cap_refuses_and_evicts() {
    let cluster = Cluster::new().await;
    let refuse = cluster
        .repo_with(SessionPolicy::default().max_sessions_per_user(Some(3), CapPolicy::Refuse));
    let evict = cluster.repo_with(
        SessionPolicy::default()
            .max_sessions_per_user(Some(3), CapPolicy::EvictLeastRecentlyActive),
    );

    // Refuse: the fourth login fails with the cap's own error, and writes nothing.
    let user = cluster.user().await;
    for n in 0..3 {
        refuse
            .create(&new_session(user, &format!("device {n}")))
            .await
            .unwrap();
    }
    match refuse.create(&new_session(user, "one too many")).await {
        Err(Error::SessionCapReached) => {}
        other => panic!("expected SessionCapReached on Citus, got {other:?}"),
    }
    assert_eq!(refuse.count_live(user).await.unwrap(), 3);
    assert_eq!(cluster.rows_in_shard(user).await, 3);

    // Evict: the fourth login revokes the least recently active session.
    let user = cluster.user().await;
    let mut tokens = Vec::new();
    for n in 0..3 {
        tokens.push(
            evict
                .create(&new_session(user, &format!("device {n}")))
                .await
                .unwrap()
                .1,
        );
    }
    evict.create(&new_session(user, "newest")).await.unwrap();
    assert_eq!(evict.count_live(user).await.unwrap(), 3);
    assert_eq!(
        evict.validate(tokens[0].expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::Evicted)
    );
    assert!(
        evict
            .find_by_token(tokens[1].expose_secret())
            .await
            .unwrap()
            .is_some()
    );

    // Concurrent logins of one user: the cap holds (the user's row serializes them).
    let user = cluster.user().await;
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let repo = refuse.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                repo.create(&new_session(user, &format!("racer {n}"))).await
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(Error::SessionCapReached) => refused += 1,
            Err(other) => panic!("unexpected error under concurrent logins: {other:?}"),
        }
    }
    assert_eq!((created, refused), (3, 5));
    assert_eq!(refuse.count_live(user).await.unwrap(), 3);

    let user = cluster.user().await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let repo = evict.clone();
            tokio::spawn(
                async move { repo.create(&new_session(user, &format!("racer {n}"))).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("evicting logins all succeed");
    }
    assert_eq!(evict.count_live(user).await.unwrap(), 3);
    assert_eq!(cluster.rows_in_shard(user).await, 8);
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_unknown_user_and_duplicate_session_are_their_own_errors() {
    let cluster = Cluster::new().await;
    let nobody = Uuid::new_v4();
    for (policy, what) in [
        (SessionPolicy::default(), "with the default cap"),
        (
            SessionPolicy::default().max_sessions_per_user(None, CapPolicy::Refuse),
            "without a cap",
        ),
        (
            SessionPolicy::default().max_sessions_per_user(Some(3), CapPolicy::Refuse),
            "with a refusing cap",
        ),
    ] {
        match cluster
            .repo_with(policy)
            .create(&new_session(nobody, "ghost"))
            .await
        {
            Err(Error::UnknownUser) => {}
            other => panic!("expected UnknownUser {what} on Citus, got {other:?}"),
        }
    }
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions")
            .await,
        0
    );

    let repo = cluster.repo();
    let user = cluster.user().await;
    let token = repo.mint_token(user).await.unwrap();
    repo.create_with_token(&new_session(user, "first"), &token)
        .await
        .unwrap();
    match repo
        .create_with_token(&new_session(user, "again"), &token)
        .await
    {
        Err(Error::DuplicateSession) => {}
        other => panic!("expected DuplicateSession on Citus, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_revoke_revoke_all_except_and_revoke_all() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(2).await;
    let (a, b) = (users[0], users[users.len() - 1]);
    let mut mine = Vec::new();
    for n in 0..4 {
        mine.push(
            repo.create(&new_session(a, &format!("a{n}")))
                .await
                .unwrap(),
        );
    }
    let (b_session, _) = repo.create(&new_session(b, "b0")).await.unwrap();
    repo.create(&new_session(b, "b1")).await.unwrap();

    let (s0, t0) = &mine[0];
    assert!(repo.revoke(s0.key()).await.unwrap());
    assert!(!repo.revoke(s0.key()).await.unwrap(), "already revoked");
    assert!(
        !repo.revoke(SessionKey::new(a, b_session.id)).await.unwrap(),
        "another user's session id under my user id matches nothing"
    );
    assert_eq!(
        repo.validate(t0.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::User)
    );
    assert_eq!(repo.find_by_token(t0.expose_secret()).await.unwrap(), None);
    assert_eq!(repo.count_live(a).await.unwrap(), 3);

    // A session to keep that is not an unrevoked session of the user revokes nothing: another
    // user's session, a revoked one, an unknown one.
    for keep in [
        SessionKey::new(a, b_session.id),
        s0.key(),
        SessionKey::new(a, Uuid::new_v4()),
    ] {
        assert_eq!(repo.revoke_all_except(keep).await.unwrap(), None);
    }
    assert_eq!(repo.count_live(a).await.unwrap(), 3);

    let current = mine[1].0.key();
    assert_eq!(repo.revoke_all_except(current).await.unwrap(), Some(2));
    let devices = repo.list_devices(a).await.unwrap();
    assert_eq!(
        devices.iter().map(|d| d.id).collect::<Vec<_>>(),
        [current.session_id]
    );
    assert_eq!(repo.revoke_all_except(current).await.unwrap(), Some(0));
    assert_eq!(repo.revoke_all(a).await.unwrap(), 1);
    assert_eq!(repo.count_live(a).await.unwrap(), 0);
    assert_eq!(repo.revoke_all(a).await.unwrap(), 0);
    // The other user, maybe on another worker, is untouched.
    assert_eq!(repo.count_live(b).await.unwrap(), 2);
    assert_eq!(repo.revoke_all(b).await.unwrap(), 2);
    // Tombstones stay until cleanup.
    assert_eq!(cluster.rows_in_shard(a).await, 4);

    // Deleting a user cascades to its sessions, inside its shard.
    cluster
        .pool
        .get()
        .await
        .unwrap()
        .execute("DELETE FROM auth.users WHERE id = $1", &[&a])
        .await
        .unwrap();
    assert_eq!(cluster.rows_in_shard(a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_cleanup_in_batches_with_two_concurrent_cleaners() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(12).await;
    let (mut expired, mut live, mut tombstones) = (0i64, 0i64, 0i64);
    for &user in &users {
        for n in 0..10 {
            let (session, _) = repo
                .create(&new_session(user, &format!("device {n}")))
                .await
                .unwrap();
            match n {
                0..6 => {
                    cluster.expire(session.key()).await;
                    expired += 1;
                }
                6..8 => {
                    assert!(repo.revoke(session.key()).await.unwrap());
                    tombstones += 1;
                }
                _ => live += 1,
            }
        }
    }
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions WHERE expires_at <= now()")
            .await,
        expired
    );

    // One bounded batch deletes exactly its limit.
    assert_eq!(repo.delete_expired_batch(10).await.unwrap().expired, 10);
    let mut deleted = 10;

    // Two cleaners at once, in small batches, each going on until no expired row is left:
    // no error, no deadlock, every expired row deleted exactly once. (On Citus two multi-shard
    // deletes are serialized by the coordinator; a cleaner that waited finds its batch gone
    // and deletes nothing, which is counted here as a collision.)
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let repo = repo.clone();
            let pool = cluster.pool.clone();
            tokio::spawn(async move {
                let (mut mine, mut batches, mut collisions) = (0u64, 0u64, 0u64);
                loop {
                    let n = repo.delete_expired_batch(7).await?.deleted();
                    batches += 1;
                    mine += n;
                    if n == 0 {
                        let left: i64 = pool
                            .get()
                            .await
                            .unwrap()
                            .query_one(
                                "SELECT count(*) FROM auth.user_sessions \
                                 WHERE expires_at <= now()",
                                &[],
                            )
                            .await
                            .unwrap()
                            .get(0);
                        if left == 0 {
                            return Ok::<_, Error>((mine, batches, collisions));
                        }
                        collisions += 1;
                    }
                    assert!(batches < 1000, "cleaners make no progress");
                }
            })
        })
        .collect();
    for cleaner in cleaners {
        let (mine, batches, collisions) = cleaner
            .await
            .unwrap()
            .expect("a concurrent cleaner failed on Citus");
        eprintln!(
            "cleaner: {mine} rows in {batches} batches, {collisions} empty while rows remained"
        );
        deleted += mine;
    }
    assert_eq!(deleted, expired as u64);
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions WHERE expires_at <= now()")
            .await,
        0
    );
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions")
            .await,
        live + tombstones,
        "cleanup deleted only expired rows"
    );
    for &user in &users {
        assert_eq!(repo.count_live(user).await.unwrap(), 2);
    }

    // Tombstones go once past their retention.
    let no_retention =
        cluster.repo_with(SessionPolicy::default().tombstone_retention(Duration::ZERO));
    assert_eq!(
        no_retention
            .delete_expired_batch(1000)
            .await
            .unwrap()
            .tombstones,
        tombstones as u64
    );
    // The unbounded form.
    let (session, _) = repo.create(&new_session(users[0], "late")).await.unwrap();
    cluster.expire(session.key()).await;
    assert_eq!(repo.delete_expired().await.unwrap(), 1);
    assert_eq!(repo.delete_expired().await.unwrap(), 0);
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions")
            .await,
        live
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_stats_count_every_shard_and_size_the_shards() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(6).await;
    // User n has n + 1 sessions.
    let mut per_user = Vec::new();
    for (n, &user) in users.iter().take(6).enumerate() {
        let mut sessions = Vec::new();
        for d in 0..=n {
            sessions.push(
                repo.create(&new_session(user, &format!("device {d}")))
                    .await
                    .unwrap()
                    .0,
            );
        }
        per_user.push(sessions);
    }
    for &user in users.iter().skip(6) {
        repo.create(&new_session(user, "extra")).await.unwrap();
    }
    let extra = users.len() as u64 - 6;
    assert!(repo.revoke(per_user[5][0].key()).await.unwrap());
    cluster.expire(per_user[4][0].key()).await;

    let before = cluster
        .scalar("SELECT citus_table_size('auth.user_sessions')")
        .await;
    let stats = repo.stats().await.expect("stats on Citus");
    let after = cluster
        .scalar("SELECT citus_table_size('auth.user_sessions')")
        .await;
    let total_before_after = cluster
        .scalar("SELECT citus_total_relation_size('auth.user_sessions')")
        .await;
    let shell = cluster
        .scalar("SELECT pg_table_size('auth.user_sessions')")
        .await;
    eprintln!(
        "stats: {stats:?}; citus_table_size {before}/{after}, citus_total_relation_size \
         {total_before_after}, coordinator shell table {shell}"
    );
    assert_eq!(stats.total, 21 + extra);
    assert_eq!(stats.revoked, 1);
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.live, 19 + extra);
    assert_eq!(stats.users, users.len() as u64);
    assert_eq!(stats.max_live_per_user, 5);
    assert!(stats.table_bytes > 0, "table_bytes must count the shards");
    let (low, high) = (before.min(after) as u64, before.max(after) as u64);
    assert!(
        (low..=high).contains(&stats.table_bytes),
        "table_bytes {} must be citus_table_size ({before}, {after})",
        stats.table_bytes
    );
    assert!(
        stats.table_bytes > shell as u64,
        "table_bytes must reflect the shards, not the coordinator's empty shell ({shell})"
    );
    assert!(stats.index_bytes > 0);
    assert_eq!(
        stats.table_bytes + stats.index_bytes,
        total_before_after as u64,
        "index_bytes must be citus_total_relation_size - citus_table_size"
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_the_rotation_key_kept_by_the_database_is_shared_by_repositories() {
    let cluster = Cluster::new().await;
    let user = cluster.user().await;
    // Default policies: no configured key, so both read the one in auth.rotation_keys.
    let first = cluster.repo();
    let second = SessionRepo::new(build_pool(&cluster.url, &PoolSettings::default()).unwrap());
    let (_, t0) = first.create(&new_session(user, "phone")).await.unwrap();
    let t1 = rotated(&first, &t0).await;
    assert_eq!(
        rotated(&second, &t0).await,
        t1,
        "a second repository on its own pool derives the same successor"
    );
    let t2 = rotated(&second, &t1).await;
    assert_eq!(rotated(&first, &t1).await, t2);
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.rotation_keys")
            .await,
        1
    );
}

/// A service connected to a worker (Citus can serve clients on every node) with the default
/// policy reads the rotation key there too: `distribute` made `auth.rotation_keys` a reference
/// table. The worker is CITUS_WORKER_URL when set, otherwise the first active worker the
/// coordinator lists, reached with CITUS_URL's user, password, database and TLS settings.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_rotation_through_a_worker_uses_the_shared_key() {
    let cluster = Cluster::new().await;
    let user = cluster.user().await;
    let coordinator = cluster.repo();
    let worker = SessionRepo::new(cluster.worker_pool().await);
    let (_, t0) = coordinator
        .create(&new_session(user, "phone"))
        .await
        .unwrap();
    let t1 = rotated(&worker, &t0).await;
    assert_eq!(
        rotated(&coordinator, &t0).await,
        t1,
        "the coordinator's retry within the grace window converges on the worker's successor"
    );
    assert!(matches!(
        worker.validate(t1.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// Plan cache modes
// ---------------------------------------------------------------------------------------------

/// Executions of each statement per mode: more than the five custom plans PostgreSQL makes of
/// a prepared statement before it may switch to a generic one.
const RUNS: usize = 6;

/// `result`'s value, or a panic naming the plan cache mode and the call.
fn ok<T, E: std::fmt::Debug>(mode: &str, what: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|err| panic!("plan_cache_mode = {mode}: {what} failed: {err:?}"))
}

/// Every call of the API, each of its statements executed at least [`RUNS`] times on the one
/// connection of `pool`: logins within a cap (eviction and refusal), lookups, validation,
/// listing, counting, activity, rotation (rotated, grace, reuse, a stale ancestor), the three
/// revocations, cleanup batches, the unbounded cleanup, stats, and the rotation key kept by
/// the database (loaded by [`RUNS`] fresh repositories).
async fn every_call_of_the_api(cluster: &Cluster, pool: &Pool, mode: &str) {
    let capped = |at_cap| {
        SessionRepo::with_policy(
            pool.clone(),
            SessionPolicy::default()
                .max_sessions_per_user(Some(3), at_cap)
                .activity_interval(Duration::ZERO)
                .idle_timeout(Some(DAY)),
        )
        .unwrap()
    };
    let repo = capped(CapPolicy::EvictLeastRecentlyActive);
    let refusing = capped(CapPolicy::Refuse);
    let strict = SessionRepo::with_policy(
        pool.clone(),
        SessionPolicy::default().rotation_grace(Duration::ZERO),
    )
    .unwrap();
    let users = cluster.users_on_every_worker(RUNS).await;
    assert!(users.len() >= RUNS);
    for (n, &user) in users.iter().enumerate() {
        // Four logins at a cap of three: the fourth evicts the least recently active.
        let mut tokens = Vec::new();
        for device in 0..4 {
            let (_, token) = ok(
                mode,
                "create",
                repo.create(&new_session(user, &format!("device {device}")))
                    .await,
            );
            tokens.push(token);
        }
        assert!(
            matches!(
                ok(
                    mode,
                    "validate",
                    repo.validate(tokens[0].expose_secret()).await
                ),
                Validation::Revoked(RevokeReason::Evicted)
            ),
            "{mode}: the fourth login evicts the first"
        );
        let refused = refusing.create(&new_session(user, "one too many")).await;
        assert!(
            matches!(refused, Err(Error::SessionCapReached)),
            "{mode}: {refused:?}"
        );
        let (a0, b0) = (tokens[1].clone(), tokens[2].clone());

        // The key kept by the database, read by a repository of its own.
        let fresh = SessionRepo::new(pool.clone());
        let Validation::Valid(session) =
            ok(mode, "validate", fresh.validate(a0.expose_secret()).await)
        else {
            panic!("{mode}: a live session must validate");
        };
        assert_eq!(
            ok(
                mode,
                "find_by_token",
                repo.find_by_token(a0.expose_secret()).await
            ),
            Some(session.clone())
        );
        assert_eq!(
            ok(mode, "list_devices", repo.list_devices(user).await).len(),
            3
        );
        assert_eq!(ok(mode, "count_live", repo.count_live(user).await), 3);
        let activity = ok(
            mode,
            "record_activity",
            repo.record_activity(session.key(), None).await,
        )
        .expect("a live session records activity");
        assert!(activity.written, "{mode}: a zero interval always writes");

        // Rotation: rotated, then the same successor inside the grace window, then reuse.
        let a1 = rotated(&repo, &a0).await;
        assert_eq!(rotated(&repo, &a0).await, a1, "{mode}: grace");
        assert_eq!(
            ok(
                mode,
                "rotate (reuse)",
                strict.rotate(a0.expose_secret()).await
            ),
            Rotation::TokenReused {
                session_id: session.id,
                user_id: user
            }
        );
        // A stale ancestor: proven, then revoked by the second statement.
        let b1 = rotated(&repo, &b0).await;
        rotated(&repo, &b1).await;
        assert!(
            matches!(
                ok(
                    mode,
                    "rotate (stale)",
                    repo.rotate(b0.expose_secret()).await
                ),
                Rotation::TokenReused { .. }
            ),
            "{mode}: a stale ancestor is reuse"
        );

        // Revocations: one, all but the current one, all.
        let current = tokens[3].session_key();
        let (gone, _) = ok(
            mode,
            "create",
            repo.create(&new_session(user, "gone")).await,
        );
        let (_, other) = ok(
            mode,
            "create",
            repo.create(&new_session(user, "other")).await,
        );
        assert!(ok(mode, "revoke", repo.revoke(gone.key()).await));
        assert_eq!(
            ok(
                mode,
                "revoke_all_except",
                repo.revoke_all_except(current).await
            ),
            Some(1)
        );
        assert!(matches!(
            ok(mode, "validate", repo.validate(other.expose_secret()).await),
            Validation::Revoked(RevokeReason::User)
        ));
        assert_eq!(ok(mode, "revoke_all", repo.revoke_all(user).await), 1);
        assert_eq!(ok(mode, "count_live", repo.count_live(user).await), 0);

        // Something for cleanup: one more session, expired.
        let (doomed, _) = ok(
            mode,
            "create",
            repo.create(&new_session(user, "doomed")).await,
        );
        cluster.expire(doomed.key()).await;
        eprintln!("{mode}: user {n} done");
    }
    // Cleanup and stats: expired, tombstone and idle batches, the unbounded delete, stats.
    let mut deleted = 0;
    for _ in 0..RUNS {
        deleted += ok(
            mode,
            "delete_expired_batch",
            repo.delete_expired_batch(1).await,
        )
        .deleted();
        let stats = ok(mode, "stats", repo.stats().await);
        assert_eq!(stats.live, 0, "{mode}: {stats:?}");
        ok(mode, "delete_expired", repo.delete_expired().await);
    }
    assert!(
        deleted >= 1,
        "{mode}: the batches deleted the expired sessions"
    );
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions WHERE expires_at <= now()")
            .await,
        0,
        "{mode}: every expired session is deleted"
    );
}

/// The whole API on a database whose every node defaults to `force_generic_plan`, then to
/// `force_custom_plan` (`ALTER DATABASE ... SET plan_cache_mode`, which Citus passes on to the
/// workers), through a pool of one connection opened after the change, so that every
/// statement is prepared once and executed more than five times, and the functions delegated
/// to the workers run there under the workers' setting. PostgreSQL's own `auto` is what every
/// other test runs under.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_every_statement_works_under_force_generic_plan_and_force_custom_plan() {
    let cluster = Cluster::new().await;
    for mode in ["force_generic_plan", "force_custom_plan"] {
        cluster.set_database_plan_cache_mode(Some(mode)).await;
        // A plain connection opened now (no option of the crate) and the workers' new
        // connections see the database's setting.
        let (client, _) = cluster.client_with_notices().await;
        let shown: String = client
            .query_one("SHOW plan_cache_mode", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(shown, mode);
        let on_workers: Vec<String> = client
            .query(
                "SELECT result FROM run_command_on_workers('SHOW plan_cache_mode')",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(
            !on_workers.is_empty() && on_workers.iter().all(|shown| shown == mode),
            "{on_workers:?}"
        );
        let pool = build_pool(&cluster.url, &PoolSettings::default().max_size(1)).unwrap();
        every_call_of_the_api(&cluster, &pool, mode).await;
        pool.close();
        cluster
            .pool
            .get()
            .await
            .unwrap()
            .batch_execute("TRUNCATE auth.user_sessions, auth.users")
            .await
            .unwrap();
    }
    cluster.set_database_plan_cache_mode(None).await;
}

/// A pool built without [`build_pool`] whose connections force generic plans: the calls whose
/// statements Citus can route generically work (and so do the session functions, which plan
/// under `auto` whatever the caller asks, and the read of the stored rotation keys), the others
/// fail with
/// [`Error::ForcedGenericPlan`], which says what to change, rather than with a bare database
/// error.
#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_a_pool_of_its_own_that_forces_generic_plans_is_refused_with_a_clear_error() {
    let cluster = Cluster::new().await;
    let mut config = Config::from_str(&cluster.url).unwrap();
    config.options("-c plan_cache_mode=force_generic_plan");
    let manager = auth_sessions::deadpool_postgres::Manager::new(config, NoTls);
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let shown: String = pool
        .get()
        .await
        .unwrap()
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "force_generic_plan");
    let repo = SessionRepo::with_policy(
        pool.clone(),
        SessionPolicy::default()
            .rotation_key(key())
            .max_sessions_per_user(Some(1), CapPolicy::EvictLeastRecentlyActive),
    )
    .unwrap();
    let user = cluster.user().await;
    for _ in 0..RUNS {
        // Routed generically, or a session function: these work.
        let (session, token) = repo.create(&new_session(user, "phone")).await.unwrap();
        assert_eq!(
            repo.find_by_token(token.expose_secret()).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(repo.count_live(user).await.unwrap(), 1, "the cap evicted");
        rotated(&repo, &token).await;
        assert!(repo.revoke(session.key()).await.unwrap());
        // The keys kept by the database: a plain read of a reference table (and, the first
        // time, an insert into it), which Citus plans generically.
        let stored = SessionRepo::new(pool.clone());
        let minted = stored.mint_token(user).await.unwrap();
        assert_eq!(
            stored.rotate(minted.expose_secret()).await.unwrap(),
            Rotation::Unknown,
            "a minted token whose session was never created"
        );
        // No generic plan on Citus: refused, with the reason.
        for (call, result) in [
            ("revoke_all", repo.revoke_all(user).await.map(|_| ())),
            (
                "validate",
                repo.validate(token.expose_secret()).await.map(|_| ()),
            ),
            ("stats", repo.stats().await.map(|_| ())),
            (
                "delete_expired_batch",
                repo.delete_expired_batch(10)
                    .await
                    .map(|_| ())
                    .map_err(Error::from),
            ),
        ] {
            match result {
                Err(err @ Error::ForcedGenericPlan(_)) => {
                    assert!(err.to_string().contains("plan_cache_mode"), "{call}: {err}");
                    assert!(!err.is_retryable(), "{call}");
                }
                other => panic!("{call}: expected ForcedGenericPlan, got {other:?}"),
            }
        }
    }
}
