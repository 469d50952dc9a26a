//! Proof, on plain PostgreSQL, that every statement reaches one shard.
//!
//! Citus routes a statement to one shard when it filters the distribution column by equality.
//! Hash partitioning by the same column is the closest thing one PostgreSQL offers: this test
//! builds the schema with `auth.users` and `auth.user_sessions` each `PARTITION BY HASH` into
//! 8 partitions, runs every statement of `queries/sessions.sql` as a prepared statement under
//! `plan_cache_mode = force_generic_plan` (the plan a pooled connection reuses, where the user
//! id is a parameter), and reads every plan, those of the statements inside the PL/pgSQL
//! functions included, from `auto_explain`. Each must touch exactly one partition of the
//! session table (and at most one of the user table), except the statements of an explicit
//! allow-list. It also checks that every key of the session tables contains `user_id`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use auth_sessions::{MIGRATIONS, NewSession, PoolSettings, SessionRepo};
use common::{EmptyDb, TestDb, server_config};
use futures::StreamExt;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const PARTITIONS: usize = 8;

/// Statements allowed to touch every partition, because their job is the whole table:
const FAN_OUT_ALLOWED: &[&str] = &[
    // cleanup: finds dead rows of every user, oldest first, in bounded batches;
    "delete_expired_sessions",
    "delete_expired_sessions_batch",
    "delete_revoked_sessions_batch",
    "find_idle_sessions_in_key_window",
    "delete_idle_sessions_in_key_range",
    // stats: counts every user's sessions for operators.
    "session_stats",
    // live sessions' activity: one statement for the sessions of many users, so of many
    // partitions by design (each key reaches its own by the primary key).
    "record_activity_batch",
];

/// One statement of `queries/sessions.sql`: its name and SQL with `$n` parameters, and the
/// parameter names in order.
struct Statement {
    name: String,
    sql: String,
    params: Vec<String>,
}

/// Splits `queries/sessions.sql` into its statements (the text after each `--!` line, without
/// comment lines) and numbers the `:name` parameters in order of first appearance, as
/// Cornucopia does.
fn statements() -> Vec<Statement> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/queries/sessions.sql"))
            .expect("read queries/sessions.sql");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("--!") {
            let name = header.split_whitespace().next().expect("a query name");
            out.push((name.to_owned(), String::new()));
        } else if !line.trim_start().starts_with("--")
            && let Some((_, sql)) = out.last_mut()
        {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out.into_iter()
        .map(|(name, sql)| {
            let (sql, params) = number_parameters(&sql);
            Statement { name, sql, params }
        })
        .collect()
}

fn number_parameters(sql: &str) -> (String, Vec<String>) {
    let chars: Vec<char> = sql.chars().collect();
    let mut params: Vec<String> = Vec::new();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let is_param = chars[i] == ':'
            && chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase())
            && (i == 0 || chars[i - 1] != ':');
        if !is_param {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        let name: String = chars[start..end].iter().collect();
        let index = match params.iter().position(|p| *p == name) {
            Some(index) => index,
            None => {
                params.push(name);
                params.len() - 1
            }
        };
        out.push_str(&format!("${}", index + 1));
        i = end;
    }
    (out, params)
}

/// The migrations, with the two tables hash-partitioned into [`PARTITIONS`] partitions.
fn partitioned_schema() -> String {
    let mut sql = String::new();
    for migration in MIGRATIONS {
        let text = match migration.version {
            1 => replace_once(
                migration.sql,
                "CONSTRAINT users_pkey PRIMARY KEY (id)\n        );",
                "CONSTRAINT users_pkey PRIMARY KEY (id)\n        ) PARTITION BY HASH (id);",
            ),
            // Partitioned tables take no storage parameters; their partitions get the fillfactor.
            9 => replace_once(
                migration.sql,
                "WITH (fillfactor = 80);",
                "PARTITION BY HASH (user_id);",
            ),
            _ => migration.sql.to_owned(),
        };
        sql.push_str(&text);
        sql.push('\n');
        if migration.version == 1 {
            for i in 0..PARTITIONS {
                sql.push_str(&format!(
                    "CREATE TABLE auth.users_p{i} PARTITION OF auth.users \
                     FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i});\n"
                ));
            }
        }
        if migration.version == 9 {
            for i in 0..PARTITIONS {
                sql.push_str(&format!(
                    "CREATE TABLE auth.user_sessions_p{i} PARTITION OF auth.user_sessions \
                     FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i}) \
                     WITH (fillfactor = 80);\n"
                ));
            }
        }
    }
    sql
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the migration no longer contains {from:?}: update this test"
    );
    text.replace(from, to)
}

/// A connection whose server log lines (auto_explain's plans) are collected.
async fn explaining_client(db: &str) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = server_config()
        .dbname(db)
        .connect(NoTls)
        .await
        .expect("connect");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                let _ = sender.send(notice.message().to_owned());
            }
        }
    });
    client
        .batch_execute(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_level = 'notice';
             SET plan_cache_mode = force_generic_plan;",
        )
        .await
        .expect("load auto_explain");
    (client, receiver)
}

/// The partitions of `table` a plan scans: the partitions named on its scan nodes (an UPDATE
/// or DELETE lists every partition as a possible target, but only scans reach rows).
fn partitions(plan: &str, table: &str) -> BTreeSet<String> {
    let marker = format!("{table}_p");
    let mut found = BTreeSet::new();
    let scans: String = plan
        .lines()
        .filter(|line| line.contains("Scan"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = scans.as_str();
    while let Some(at) = rest.find(&marker) {
        let tail = &rest[at + marker.len()..];
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        // `users_p` also occurs inside `user_sessions_p`'s neighbours only with a digit.
        let preceded_by_word = at > 0 && rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        if !digits.is_empty() && !preceded_by_word {
            found.insert(format!("{table}_p{digits}"));
        }
        rest = &rest[at + marker.len()..];
    }
    found
}

#[tokio::test]
async fn every_statement_touches_one_partition_except_cleanup_and_stats() {
    let db = EmptyDb::new("partitioned").await;
    let pool = common::pool_for(
        server_config().dbname(&db.name).clone(),
        &PoolSettings::default(),
    );
    let setup = pool.get().await.expect("connection");
    setup
        .batch_execute(&partitioned_schema())
        .await
        .expect("create the hash-partitioned schema");
    let partitions_made: i64 = setup
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'auth.user_sessions'::regclass",
            &[],
        )
        .await
        .expect("count partitions")
        .get(0);
    assert_eq!(partitions_made, PARTITIONS as i64);

    // Users spread over the partitions, each with a session, made through the repository.
    let repo = SessionRepo::new(pool.clone());
    let mut sessions = Vec::new();
    for i in 0..16 {
        let user: uuid::Uuid = setup
            .query_one(
                "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
                &[&format!("p{i}@example.test")],
            )
            .await
            .expect("insert user")
            .get(0);
        let (session, token) = repo
            .create(&NewSession::new(user, Duration::from_secs(3600)))
            .await
            .expect("create");
        sessions.push((session, token));
    }
    let (session, token) = &sessions[0];

    let statements = statements();
    let names: BTreeSet<&str> = statements.iter().map(|s| s.name.as_str()).collect();
    for allowed in FAN_OUT_ALLOWED {
        assert!(
            names.contains(allowed),
            "allow-listed {allowed} is no statement"
        );
    }

    let hash = token.hash().as_str().to_owned();
    let successor = "b".repeat(64);
    let defaults: BTreeMap<&str, String> = [
        ("user_id", session.user_id.to_string()),
        ("id", session.id.to_string()),
        ("current_id", session.id.to_string()),
        ("generation", "0".into()),
        ("refresh_token_hash", hash.clone()),
        ("presented_hash", hash.clone()),
        ("successor_hash", successor.clone()),
        ("device_info", "laptop".into()),
        ("ip_address", "203.0.113.7".into()),
        ("user_agent", "agent".into()),
        ("ttl_seconds", "3600".into()),
        ("idle_seconds", "1209600".into()),
        ("max_sessions", "1".into()),
        ("evict", "true".into()),
        ("min_interval_seconds", "0".into()),
        ("grace_seconds", "10".into()),
        ("retention_seconds", "604800".into()),
        ("batch_size", "100".into()),
        ("from_user_id", uuid::Uuid::nil().to_string()),
        ("from_id", uuid::Uuid::nil().to_string()),
        ("to_user_id", uuid::Uuid::max().to_string()),
        ("to_id", uuid::Uuid::max().to_string()),
        ("window_size", "100".into()),
        ("user_ids", format!("{{{}}}", session.user_id)),
        ("ids", format!("{{{}}}", session.id)),
        ("ip_addresses", "{203.0.113.7}".into()),
    ]
    .into_iter()
    .collect();

    // Each statement runs at least once, on sessions chosen so that every path runs: creation
    // for a user at a cap of 1 (it evicts); revocations on sessions of their own; the rotation
    // three times on the first session, to take each path of auth.rotate_session (rotate; the
    // same token again: grace; again with no grace window: reuse, which revokes), last.
    let session_of = |i: usize| {
        vec![
            ("user_id", sessions[i].0.user_id.to_string()),
            ("id", sessions[i].0.id.to_string()),
            ("current_id", sessions[i].0.id.to_string()),
        ]
    };
    let mut runs: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    for statement in &statements {
        let name = statement.name.as_str();
        match name {
            "create_session" => runs.push((
                name,
                vec![
                    ("user_id", sessions[2].0.user_id.to_string()),
                    ("id", uuid::Uuid::new_v4().to_string()),
                ],
            )),
            "revoke_session" => runs.push((name, session_of(1))),
            "revoke_all_sessions_except_current" => runs.push((name, session_of(3))),
            "revoke_all_user_sessions" => runs.push((name, session_of(5))),
            "rotate_session" => {}
            _ => runs.push((name, Vec::new())),
        }
    }
    runs.push(("rotate_session", Vec::new()));
    runs.push(("rotate_session", Vec::new()));
    runs.push(("rotate_session", vec![("grace_seconds", "0".into())]));

    let (client, mut plans) = explaining_client(&db.name).await;
    let mut checked = BTreeSet::new();
    let mut fan_out = BTreeMap::new();
    for (name, overrides) in &runs {
        let statement = statements.iter().find(|s| s.name == *name).expect("known");
        let values: Vec<String> = statement
            .params
            .iter()
            .map(|param| {
                overrides
                    .iter()
                    .find(|(k, _)| k == param)
                    .map(|(_, v)| v.clone())
                    .or_else(|| defaults.get(param.as_str()).cloned())
                    .unwrap_or_else(|| panic!("no test value for parameter {param} of {name}"))
            })
            .map(|value| format!("'{value}'"))
            .collect();
        client
            .batch_execute(&format!("DEALLOCATE ALL; PREPARE q AS {}", statement.sql))
            .await
            .unwrap_or_else(|err| panic!("prepare {name}: {err}"));
        // Several executions: the generic plan is what a warm connection reuses.
        while plans.try_recv().is_ok() {}
        client
            .batch_execute(&format!("EXECUTE q({})", values.join(", ")))
            .await
            .unwrap_or_else(|err| panic!("execute {name}: {err}"));
        // A notice of our own after the plans: once it is in, so are they.
        const SENTINEL: &str = "end of the plans";
        client
            .batch_execute(&format!("DO $$ BEGIN RAISE NOTICE '{SENTINEL}'; END $$"))
            .await
            .unwrap();
        let mut logged = Vec::new();
        loop {
            let notice = tokio::time::timeout(Duration::from_secs(10), plans.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: the notices stopped before the sentinel"))
                .expect("the connection is open");
            if notice == SENTINEL {
                break;
            }
            logged.push(notice);
        }
        assert!(!logged.is_empty(), "{name}: auto_explain logged no plan");
        let all = logged.join("\n");
        assert!(
            all.contains("user_sessions"),
            "{name}: no plan names the session table:\n{all}"
        );
        let session_parts = partitions(&all, "user_sessions");
        let user_parts = partitions(&all, "users");
        if FAN_OUT_ALLOWED.contains(name) {
            fan_out.insert(*name, session_parts.len());
            checked.insert(*name);
            continue;
        }
        assert_eq!(
            session_parts.len(),
            1,
            "{name} touches {} session partitions: {session_parts:?}\n{all}",
            session_parts.len()
        );
        assert!(
            user_parts.len() <= 1,
            "{name} touches {} user partitions: {user_parts:?}\n{all}",
            user_parts.len()
        );
        checked.insert(*name);
    }
    assert_eq!(checked, names, "every statement of queries/ was checked");
    // The detector sees fan-out where there is some: stats reads every partition.
    assert_eq!(
        fan_out.get("session_stats"),
        Some(&PARTITIONS),
        "{fan_out:?}"
    );

    // The paths taken were the ones intended.
    let row = setup
        .query_one(
            "SELECT generation, revoked_reason FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.id],
        )
        .await
        .expect("read back");
    assert_eq!(row.get::<_, i32>(0), 1, "rotated once");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("token_reused"),
        "the third rotation detected reuse"
    );
    drop(setup);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn every_key_of_the_session_tables_contains_user_id() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let keys = client
        .query(
            "SELECT c.conname::text, c.contype::text,
                    array(SELECT a.attname::text FROM unnest(c.conkey) k
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k)
             FROM pg_constraint c
             WHERE c.conrelid = 'auth.user_sessions'::regclass AND c.contype IN ('p', 'u', 'f')
             UNION ALL
             SELECT i.indexrelid::regclass::text, 'unique index',
                    array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) k
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k)
             FROM pg_index i
             WHERE i.indrelid = 'auth.user_sessions'::regclass AND i.indisunique",
            &[],
        )
        .await
        .expect("list keys");
    let mut kinds = BTreeSet::new();
    for key in &keys {
        let (name, kind, columns): (String, String, Vec<String>) =
            (key.get(0), key.get(1), key.get(2));
        assert!(
            columns.iter().any(|c| c == "user_id"),
            "key {name} ({kind}) on {columns:?} lacks user_id"
        );
        kinds.insert(kind);
    }
    // The primary key, the foreign key, and the primary key's unique index were all seen.
    assert_eq!(
        kinds,
        ["f", "p", "unique index"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // The user table's only key is its id, the distribution column on Citus.
    let user_keys: Vec<String> = client
        .query(
            "SELECT c.conname::text FROM pg_constraint c
             WHERE c.conrelid = 'auth.users'::regclass AND c.contype IN ('p', 'u')",
            &[],
        )
        .await
        .expect("list user keys")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(user_keys, ["users_pkey"]);
    // No table of the schema but users, sessions, the rotation key and the migration bookkeeping
    // (no unbounded history).
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'auth' ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "rotation_keys",
            "session_migrations",
            "user_sessions",
            "users"
        ]
    );
}
