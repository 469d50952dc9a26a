//! The races and inputs that broke the first data model, each reproduced as it was found.
//!
//! The races are made deterministic with a second connection that holds a row lock in an
//! open transaction: the repository call blocks on that row (observed in `pg_stat_activity`),
//! then the other transaction commits, and the call resumes against the newest row version.

mod common;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/tokens.rs"]
mod tokens;

use std::time::Duration;

use auth_sessions::{
    CapPolicy, Error, NewSession, RevokeReason, Rotation, RotationKey, SessionPolicy, SessionRepo,
    Validation,
};
use common::TestDb;
use common::locks::until_one_waits;
use tokio_postgres::Client;
use uuid::Uuid;

fn new_session(user: Uuid) -> NewSession {
    NewSession::new(user, Duration::from_secs(3600)).with_device_info("laptop")
}

/// A repository with the tests' key and no grace window: a replaced token is reuse at once.
fn without_grace(db: &TestDb) -> SessionRepo {
    SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default()
            .rotation_key(key())
            .rotation_grace(Duration::ZERO),
    )
    .unwrap()
}

fn key() -> RotationKey {
    RotationKey::from_bytes(&[42; 32]).expect("key")
}

/// Defect 3: a session deleted (by cleanup) while a rotation waits for its row made the old
/// rotation function return an all-NULL row, and `rotate` failed with `Error::Database`.
#[tokio::test]
async fn rotating_a_session_deleted_meanwhile_is_unknown_not_an_error() {
    let db = TestDb::new().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_key(key()),
    )
    .unwrap();
    let user = db.user().await;
    let (session, token) = repo.create(&new_session(user)).await.expect("create");

    let mut holder = db.client().await;
    let observer = db.client().await;
    let tx = holder.transaction().await.expect("begin");
    let deleted = tx
        .execute(
            "DELETE FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.id],
        )
        .await
        .expect("delete");
    assert_eq!(deleted, 1);

    let rotating = tokio::spawn({
        let repo = repo.clone();
        let text = token.expose_secret().to_owned();
        async move { repo.rotate(&text).await }
    });
    until_one_waits(&observer, "the call").await;
    tx.commit().await.expect("commit the delete");
    let outcome = rotating
        .await
        .expect("task")
        .expect("rotation is not an error");
    assert_eq!(outcome, Rotation::Unknown);
}

/// Defect 4: an activity update that waited for a row being revoked wrote to the revoked row
/// and reported `written: true`.
#[tokio::test]
async fn activity_never_writes_to_a_session_revoked_meanwhile() {
    let db = TestDb::new().await;
    // Every call would write: no throttling.
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().activity_interval(Duration::ZERO),
    )
    .unwrap();
    let user = db.user().await;
    let (session, _) = repo.create(&new_session(user)).await.expect("create");

    let mut holder = db.client().await;
    let observer = db.client().await;
    let tx = holder.transaction().await.expect("begin");
    tx.execute(
        "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' \
         WHERE user_id = $1 AND id = $2",
        &[&session.user_id, &session.id],
    )
    .await
    .expect("revoke");
    let revoked_at: chrono::DateTime<chrono::Utc> =
        tx.query_one("SELECT now()", &[]).await.expect("now").get(0);

    let touching = tokio::spawn({
        let repo = repo.clone();
        let key = session.key();
        async move {
            repo.record_activity(key, Some("198.51.100.9".parse().unwrap()))
                .await
        }
    });
    until_one_waits(&observer, "the call").await;
    tx.commit().await.expect("commit the revocation");
    let activity = touching.await.expect("task").expect("activity");
    // Ordered before the revocation (the statement's snapshot saw the session live), the call
    // may report the old activity, but it must not have written.
    if let Some(activity) = activity {
        assert!(!activity.written, "wrote to a revoked session");
    }
    let row = db
        .client()
        .await
        .query_one(
            "SELECT last_active_at, host(ip_address), revoked_reason FROM auth.user_sessions \
             WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.id],
        )
        .await
        .expect("read back");
    let last_active: chrono::DateTime<chrono::Utc> = row.get(0);
    assert!(
        last_active <= revoked_at,
        "activity written after the revocation"
    );
    assert_eq!(row.get::<_, Option<String>>(1), None, "address written");
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("user"));
}

/// Defect 5: eviction at the per-user cap relabelled a logout that committed while it waited
/// for the row as `evicted`.
#[tokio::test]
async fn eviction_keeps_the_reason_of_a_logout_that_committed_meanwhile() {
    let db = TestDb::new().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default()
            .max_sessions_per_user(Some(2), CapPolicy::EvictLeastRecentlyActive),
    )
    .unwrap();
    let user = db.user().await;
    let (oldest, _) = repo.create(&new_session(user)).await.expect("first");
    let (_second, _) = repo.create(&new_session(user)).await.expect("second");

    let mut holder = db.client().await;
    let observer = db.client().await;
    let tx = holder.transaction().await.expect("begin");
    let revoked = tx
        .execute(
            "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' \
             WHERE user_id = $1 AND id = $2",
            &[&oldest.user_id, &oldest.id],
        )
        .await
        .expect("log out the oldest session");
    assert_eq!(revoked, 1);

    let creating = tokio::spawn({
        let repo = repo.clone();
        async move { repo.create(&new_session(user)).await }
    });
    until_one_waits(&observer, "the call").await;
    tx.commit().await.expect("commit the logout");
    creating.await.expect("task").expect("third login");

    let reason: Option<String> = db
        .client()
        .await
        .query_one(
            "SELECT revoked_reason FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&oldest.user_id, &oldest.id],
        )
        .await
        .expect("read back")
        .get(0);
    assert_eq!(reason.as_deref(), Some("user"), "the logout was relabelled");
    assert_eq!(repo.count_live(user).await.expect("count"), 2);
}

/// Defect 6: `create_with_token` accepted a token whose hash was in the history, and that
/// session could never rotate (a primary-key violation surfaced as `Error::Database`). Now a
/// token names its session: any token of an existing session's chain is a typed duplicate, and
/// the existing session keeps rotating.
#[tokio::test]
async fn creating_with_a_token_of_an_existing_chain_is_a_typed_duplicate() {
    let db = TestDb::new().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_key(key()),
    )
    .unwrap();
    let user = db.user().await;
    let (_, first) = repo.create(&new_session(user)).await.expect("create");
    let Rotation::Rotated { token: second, .. } =
        repo.rotate(first.expose_secret()).await.expect("rotate")
    else {
        panic!("first rotation");
    };
    for token in [&first, &second] {
        let err = repo
            .create_with_token(&new_session(user), token)
            .await
            .expect_err("duplicate");
        assert!(matches!(err, Error::DuplicateSession), "{err:?}");
    }
    let Rotation::Rotated { token: third, .. } =
        repo.rotate(second.expose_secret()).await.expect("rotate")
    else {
        panic!("the session still rotates");
    };
    assert_eq!(third.generation(), 2);
    assert_eq!(db.session_rows().await, 1);
}

/// Rows in the session table and their total stored size.
async fn row_size(client: &Client) -> tokio_postgres::Row {
    client
        .query_one(
            "SELECT count(*), coalesce(sum(pg_column_size(s.*)), 0)::bigint \
             FROM auth.user_sessions s",
            &[],
        )
        .await
        .expect("size")
}

/// Defect 1: every rotation added a history row, forever (about 930 KB per month-long session
/// refreshed every 15 minutes). Now 1,000 rotations leave one row, and the first token is still
/// detected as reused (by its tag).
#[tokio::test]
async fn a_thousand_rotations_leave_one_row_and_the_first_token_is_still_reuse() {
    let db = TestDb::new().await;
    let repo = without_grace(&db);
    let user = db.user().await;
    let (session, first) = repo.create(&new_session(user)).await.expect("create");
    let client = db.client().await;
    // The first rotation fills `rotated_at`; from then on the row keeps its size.
    let Rotation::Rotated {
        token: mut current, ..
    } = repo.rotate(first.expose_secret()).await.expect("rotate")
    else {
        panic!("first rotation");
    };
    let before = row_size(&client).await;
    for _ in 1..1000 {
        match repo.rotate(current.expose_secret()).await.expect("rotate") {
            Rotation::Rotated { token, .. } => current = token,
            other => panic!("rotation failed: {other:?}"),
        }
    }
    assert_eq!(current.generation(), 1000);
    let after = row_size(&client).await;
    assert_eq!(after.get::<_, i64>(0), 1, "one row for the session");
    assert_eq!(
        after.get::<_, i64>(1),
        before.get::<_, i64>(1),
        "the stored row did not grow"
    );
    assert!(matches!(
        repo.validate(current.expose_secret())
            .await
            .expect("validate"),
        Validation::Valid(_)
    ));
    assert_eq!(
        repo.validate(first.expose_secret())
            .await
            .expect("validate"),
        Validation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        repo.rotate(first.expose_secret()).await.expect("replay"),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        repo.rotate(current.expose_secret())
            .await
            .expect("the holder's next refresh"),
        Rotation::Revoked(RevokeReason::TokenReused)
    );
}

/// A genuine ancestor of any age is reuse and revokes the session (the proof is its tag, not a
/// walk bounded in generations); a forged token of a real session (right ids, a tag of another
/// key) is unknown and revokes nothing.
#[tokio::test]
async fn reuse_proof_an_ancestor_of_any_age_revokes_and_a_forgery_is_unknown() {
    let db = TestDb::new().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_key(key()),
    )
    .unwrap();
    let user = db.user().await;
    let (session, first) = repo.create(&new_session(user)).await.expect("create");
    // Another key's successor: right ids, chain and generation, wrong tag.
    let foreign = RotationKey::from_bytes(&[7; 32]).expect("key");
    let forged = foreign.successor(&first).expect("successor");
    let Rotation::Rotated { .. } = repo.rotate(first.expose_secret()).await.expect("rotate") else {
        panic!("rotation");
    };
    assert_eq!(
        repo.rotate(forged.expose_secret()).await.expect("forged"),
        Rotation::Unknown
    );
    assert_eq!(
        repo.validate(forged.expose_secret()).await.expect("forged"),
        Validation::Unknown
    );
    let client = db.client().await;
    let reason = async || -> Option<String> {
        client
            .query_one(
                "SELECT revoked_reason FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
                &[&session.user_id, &session.id],
            )
            .await
            .expect("read back")
            .get(0)
    };
    assert_eq!(reason().await, None, "the forgery revoked nothing");

    // Jump the stored generation far past the old proof bound of 10,000 derivations.
    client
        .execute(
            "UPDATE auth.user_sessions SET generation = generation + 1000000 \
             WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.id],
        )
        .await
        .expect("jump generations");
    assert_eq!(
        repo.validate(first.expose_secret()).await.expect("old"),
        Validation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        repo.rotate(first.expose_secret()).await.expect("old"),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(reason().await.as_deref(), Some("token_reused"));
}

/// Defect 2: tombstones (revoked rows) slowed their user's logins and counts, scanned under the
/// user's lock. Now the per-user statements walk a partial index of live rows: with 10,000
/// tombstones, counting and listing read only the live rows.
#[tokio::test]
async fn tombstones_cost_the_live_path_nothing() {
    let db = TestDb::new().await;
    let repo = SessionRepo::new(db.pool.clone());
    let user = db.user().await;
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO auth.user_sessions
                 (user_id, id, refresh_token_hash, expires_at, revoked_at, revoked_reason)
             SELECT $1, gen_random_uuid(), repeat('a', 64), now() + interval '1 day',
                    now(), 'evicted'
             FROM generate_series(1, 10000)",
            &[&user],
        )
        .await
        .expect("tombstones");
    for _ in 0..3 {
        repo.create(&new_session(user)).await.expect("create");
    }
    client
        .batch_execute("ANALYZE auth.user_sessions")
        .await
        .expect("analyze");
    assert_eq!(repo.count_live(user).await.expect("count"), 3);
    assert_eq!(repo.list_devices(user).await.expect("list").len(), 3);

    // The statements the repository runs, with this user's id, as EXPLAIN ANALYZE sees them.
    for (what, sql) in [
        (
            "count",
            "SELECT count(*) FROM auth.user_sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > now() \
             AND auth.session_is_live(revoked_at, expires_at, last_active_at, 1209600, now())",
        ),
        (
            "list",
            "SELECT id FROM auth.user_sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > now() \
             AND auth.session_is_live(revoked_at, expires_at, last_active_at, 1209600, now()) \
             ORDER BY last_active_at DESC, id",
        ),
    ] {
        let plan: String = client
            .query(
                &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"),
                &[&user],
            )
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            plan.contains("user_sessions_live_user_id_idx"),
            "{what} does not use the live index:\n{plan}"
        );
        assert!(
            plan.contains("actual rows=3 "),
            "{what} reads more than the 3 live rows:\n{plan}"
        );
        assert!(
            !plan.contains("Rows Removed"),
            "{what} filters rows:\n{plan}"
        );
    }
}

/// The reuse proof costs a constant: a forged token (the ids of a real session read off any of
/// its tokens, any generation, a valid check, a tag no key gave) is refused by one HMAC before
/// any statement, however far behind the session's generation it claims to be, and revokes
/// nothing. (It used to cost a statement and then up to 10,000 HMAC steps on the async worker,
/// and its response time told how often the session refreshes.) Counted on the wire.
#[tokio::test]
async fn reuse_proof_of_a_forged_token_costs_no_statement_at_any_generation() {
    let db = TestDb::new().await;
    let relay = relay::CountingRelay::start(db.upstream()).await;
    let repo = SessionRepo::with_policy(
        auth_sessions::build_pool_with_config(
            db.config_through(relay.port),
            &auth_sessions::PoolSettings::default().max_size(1),
        )
        .expect("pool"),
        SessionPolicy::default().rotation_key(key()),
    )
    .unwrap();
    let user = db.user().await;
    let (session, first) = repo.create(&new_session(user)).await.expect("create");
    let Rotation::Rotated { token: current, .. } =
        repo.rotate(first.expose_secret()).await.expect("rotate")
    else {
        panic!("rotation");
    };
    // The session at generation 10,000 (its stored hash is no token's: nothing here needs it).
    db.client()
        .await
        .execute(
            "UPDATE auth.user_sessions SET generation = 10000 WHERE user_id = $1 AND id = $2",
            &[&user, &session.id],
        )
        .await
        .expect("jump generations");
    for generation in [
        0,
        1,
        9_998,
        9_999,
        10_000,
        10_001,
        auth_sessions::MAX_GENERATION,
    ] {
        let forged = tokens::forged(user, session.id, generation);
        let before = relay.count();
        assert_eq!(
            repo.rotate(&forged).await.expect("rotate"),
            Rotation::Unknown
        );
        assert_eq!(
            repo.validate(&forged).await.expect("validate"),
            Validation::Unknown
        );
        assert_eq!(
            relay.count() - before,
            0,
            "a forged token at generation {generation} reached the database"
        );
    }
    // Nothing was revoked: the session is as it was.
    let row = db
        .client()
        .await
        .query_one(
            "SELECT revoked_at IS NULL, generation FROM auth.user_sessions \
             WHERE user_id = $1 AND id = $2",
            &[&user, &session.id],
        )
        .await
        .expect("read back");
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i32>(1)), (true, 10000));
    drop(current);
}

/// A rotation that finds the presented token old waits for the session's row to revoke it; a
/// logout (`revoke`) or a deletion of the user committing meanwhile left the old function's
/// record all NULL: `rotate` failed with "error deserializing column 2" (a service answered
/// 500) and the theft signal was lost. Now the reuse is reported with the session's ids.
#[tokio::test]
async fn reuse_after_a_logout_committed_meanwhile_is_still_reported() {
    reuse_with_a_held_change(
        "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' \
         WHERE user_id = $1 AND id = $2",
        Some("user"),
    )
    .await;
}

#[tokio::test]
async fn reuse_after_the_user_was_deleted_meanwhile_is_still_reported() {
    reuse_with_a_held_change(
        "DELETE FROM auth.users WHERE id = $1 AND $2::uuid IS NOT NULL",
        None,
    )
    .await;
}

/// Rotates a session once, holds `held` (on the session's row) in an open transaction, replays
/// the replaced token after the grace window, commits once the replay waits for the row, and
/// expects `TokenReused`; then the row holds `reason`, or is gone when `reason` is `None`.
async fn reuse_with_a_held_change(held: &str, reason: Option<&str>) {
    let db = TestDb::new().await;
    let repo = without_grace(&db);
    let user = db.user().await;
    let (session, first) = repo.create(&new_session(user)).await.expect("create");
    let Rotation::Rotated { .. } = repo.rotate(first.expose_secret()).await.expect("rotate") else {
        panic!("rotation");
    };
    let mut holder = db.client().await;
    let transaction = holder.transaction().await.expect("begin");
    transaction
        .execute(held, &[&user, &session.id])
        .await
        .expect("held change");
    let replay = tokio::spawn({
        let repo = repo.clone();
        let text = first.expose_secret().to_owned();
        async move { repo.rotate(&text).await }
    });
    until_one_waits(&db.client().await, "the replay").await;
    transaction.commit().await.expect("commit");
    let replayed = replay.await.expect("join");
    assert!(
        matches!(
            replayed,
            Ok(Rotation::TokenReused { session_id, user_id })
                if session_id == session.id && user_id == user
        ),
        "{replayed:?}"
    );
    let stored: Option<Option<String>> = db
        .client()
        .await
        .query_opt(
            "SELECT revoked_reason FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&user, &session.id],
        )
        .await
        .expect("read back")
        .map(|row| row.get(0));
    assert_eq!(stored, reason.map(|reason| Some(reason.to_owned())));
}
