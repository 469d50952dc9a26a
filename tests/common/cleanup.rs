//! What the cleanup tests share (tests/cleanup.rs, tests/cleanup_idle.rs,
//! tests/cleanup_cli.rs): sessions inserted in bulk straight in SQL or created through the
//! repository, batches run until caught up, and the text of a query with literals for its
//! parameters.

use auth_sessions::{Error, NewSession, RefreshToken, SessionRepo};
use uuid::Uuid;

use super::TestDb;
use super::fixtures::DAY;

/// Inserts `count` sessions for `users` fresh users, expiring `expires_in` from now (negative:
/// already expired), straight in SQL.
pub async fn bulk_sessions(db: &TestDb, users: i32, count: i32, expires_in: &str) {
    bulk_sessions_with(db, users, count, expires_in, "2 days", None).await;
}

/// Inserts `count` sessions for `users` fresh users, straight in SQL: created 40 days ago,
/// expiring `expires_in` from now (negative: already expired), last active `idle_for` ago, and
/// revoked `revoked_ago` ago (`None`: not revoked).
pub async fn bulk_sessions_with(
    db: &TestDb,
    users: i32,
    count: i32,
    expires_in: &str,
    idle_for: &str,
    revoked_ago: Option<&str>,
) {
    let client = db.client().await;
    let tag = format!("{}@bulk.test", Uuid::new_v4());
    client
        .execute(
            "INSERT INTO auth.users (email) \
             SELECT g || '.' || $2 FROM generate_series(1, $1) g",
            &[&users, &tag],
        )
        .await
        .unwrap();
    let inserted = client
        .execute(
            "WITH u AS (SELECT array_agg(id) AS ids FROM auth.users WHERE email LIKE '%.' || $5) \
             INSERT INTO auth.user_sessions \
                 (user_id, id, generation, refresh_token_hash, created_at, last_active_at, \
                  expires_at, revoked_at, revoked_reason) \
             SELECT u.ids[1 + g % array_length(u.ids, 1)], gen_random_uuid(), 0, \
                    encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), \
                    now() - interval '40 days', now() - $3::text::interval, \
                    now() + $2::text::interval + g * interval '1 millisecond', \
                    now() - $4::text::interval, \
                    CASE WHEN $4::text IS NOT NULL THEN 'user' END \
             FROM generate_series(1, $1) g, u",
            &[&count, &expires_in, &idle_for, &revoked_ago, &tag],
        )
        .await
        .unwrap();
    assert_eq!(inserted, u64::try_from(count).unwrap());
}

/// Runs `repo.delete_expired_batch(limit)` until a batch has caught up; returns the total.
/// (A short batch only means another cleaner took some rows, or the idle walk is mid-table.)
pub async fn clean_until_empty(repo: &SessionRepo, limit: u32) -> Result<u64, Error> {
    let mut deleted = 0;
    loop {
        let batch = repo.delete_expired_batch(limit).await?;
        assert!(
            batch.deleted() <= u64::from(limit) && batch.examined <= u64::from(limit),
            "a batch deleted or examined more than {limit}: {batch:?}"
        );
        deleted += batch.deleted();
        if batch.caught_up {
            return Ok(deleted);
        }
    }
}

/// Creates `count` sessions of one new user through the repository; returns their tokens.
pub async fn live_sessions(db: &TestDb, count: usize) -> Vec<RefreshToken> {
    let user = db.user().await;
    let mut tokens = Vec::new();
    for _ in 0..count {
        tokens.push(db.repo.create(&NewSession::new(user, DAY)).await.unwrap().1);
    }
    tokens
}

/// Runs one statement on the test database; returns the rows it changed.
pub async fn sql(db: &TestDb, statement: &str, ids: &[Uuid]) -> u64 {
    db.client().await.execute(statement, &[&ids]).await.unwrap()
}

/// Session ids of these tokens.
pub fn ids(tokens: &[RefreshToken]) -> Vec<Uuid> {
    tokens.iter().map(RefreshToken::session_id).collect()
}

/// The text of one query of `queries/sessions.sql`, comments dropped and named parameters
/// replaced by literals.
pub fn query_text(name: &str, params: &[(&str, &str)]) -> String {
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/queries/sessions.sql"))
            .unwrap();
    let start = [format!("--! {name}\n"), format!("--! {name} ")]
        .iter()
        .find_map(|header| file.find(header.as_str()))
        .unwrap_or_else(|| panic!("no query {name}"));
    let body: Vec<&str> = file[start..]
        .lines()
        .filter(|line| !line.starts_with("--"))
        .collect();
    let body = body.join("\n");
    let mut sql = body[..body.find(';').unwrap()].to_owned();
    for (param, value) in params {
        sql = sql.replace(&format!(":{param}"), value);
    }
    sql
}
