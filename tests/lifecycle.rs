//! Rotation with reuse detection, idle and absolute lifetimes, the per-user cap and throttled
//! activity, against a real PostgreSQL.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{
    CapPolicy, Error, NewSession, PoolSettings, RefreshToken, RevokeReason, Rotation, RotationKey,
    SessionKey, SessionPolicy, SessionRepo, Validation,
};
use common::TestDb;
use common::outcomes::rotated;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn key() -> RotationKey {
    RotationKey::from_bytes(b"a test rotation key of at least 32 bytes").unwrap()
}

fn repo(db: &TestDb, policy: SessionPolicy) -> SessionRepo {
    SessionRepo::with_policy(db.pool.clone(), policy.rotation_key(key())).unwrap()
}

/// Moves the session's last rotation `seconds` into the past (out of the grace window).
async fn age_rotation(db: &TestDb, session: SessionKey, seconds: i32) {
    let client = db.client().await;
    let updated = client
        .execute(
            "UPDATE auth.user_sessions \
             SET rotated_at = rotated_at - make_interval(secs => $3) \
             WHERE user_id = $1 AND id = $2 AND rotated_at IS NOT NULL",
            &[&session.user_id, &session.session_id, &f64::from(seconds)],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1, "no rotated session to age");
}

/// The stored generation and hash of one session, and how many rows it has.
async fn stored(db: &TestDb, session: SessionKey) -> (i32, String, i64) {
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT max(generation), max(refresh_token_hash), count(*) \
             FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.session_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The tables of the `auth` schema, sorted.
async fn auth_tables(db: &TestDb) -> Vec<String> {
    db.client()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'auth' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn rotation_replaces_the_token_and_a_prompt_retry_gets_the_same_successor() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;
    let (session, t0) = repo.create(&NewSession::new(user, DAY)).await.unwrap();

    let Rotation::Rotated {
        session: after,
        token: t1,
    } = repo.rotate(t0.expose_secret()).await.unwrap()
    else {
        panic!("first rotation must succeed")
    };
    assert_eq!(after.id, session.id);
    assert_ne!(t1, t0);
    assert_eq!(
        after.expires_at, session.expires_at,
        "rotation never extends the expiry"
    );
    assert!(
        repo.find_by_token(t0.expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        repo.find_by_token(t1.expose_secret())
            .await
            .unwrap()
            .map(|s| s.id),
        Some(session.id)
    );

    // A retry with the old token inside the grace window: same successor, nothing forks.
    assert_eq!(rotated(&repo, &t0).await, t1);
    assert!(
        matches!(repo.validate(t0.expose_secret()).await.unwrap(), Validation::Valid(s) if s.id == session.id)
    );
    assert!(matches!(
        repo.validate(t1.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));

    // The successor is derived: same ids, the next generation, the rotation key's secret.
    assert_eq!(key().successor(&t0).unwrap(), t1);
    assert_eq!(t1.session_key(), session.key());
    assert_eq!((t0.generation(), t1.generation()), (0, 1));

    // Only the current hash is stored, in the session's one row; no history is kept anywhere
    // (the schema holds users, sessions, the rotation key and the migration bookkeeping).
    assert_eq!(
        stored(&db, session.key()).await,
        (1, t1.hash().as_str().to_owned(), 1)
    );
    assert_eq!(
        auth_tables(&db).await,
        [
            "rotation_keys",
            "session_migrations",
            "user_sessions",
            "users"
        ]
    );
}

#[tokio::test]
async fn a_replaced_token_after_the_grace_window_revokes_the_session() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;
    let (session, t0) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let t1 = rotated(&repo, &t0).await;
    age_rotation(&db, session.key(), 11).await;

    assert_eq!(
        repo.validate(t0.expose_secret()).await.unwrap(),
        Validation::TokenReused {
            session_id: session.id,
            user_id: user
        },
        "validation reports the reuse without acting on it"
    );
    assert!(matches!(
        repo.validate(t1.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));

    assert_eq!(
        repo.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    // The whole session is gone for everyone, the legitimate holder of t1 included.
    assert_eq!(
        repo.rotate(t1.expose_secret()).await.unwrap(),
        Rotation::Revoked(RevokeReason::TokenReused)
    );
    assert_eq!(
        repo.validate(t1.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::TokenReused)
    );
    assert!(
        repo.find_by_token(t1.expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(repo.count_live(user).await.unwrap(), 0);
}

#[tokio::test]
async fn a_token_two_generations_old_is_reuse_even_inside_the_grace_window() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;
    let (session, t0) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let t1 = rotated(&repo, &t0).await;
    let _t2 = rotated(&repo, &t1).await;
    assert_eq!(
        repo.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
}

#[tokio::test]
async fn a_different_rotation_key_cannot_claim_the_grace_window() {
    let db = TestDb::new().await;
    let repo_a = repo(&db, SessionPolicy::default());
    let other_key = RotationKey::from_bytes(&[42; 32]).unwrap();
    let repo_b = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_key(other_key),
    )
    .unwrap();
    let user = db.user().await;
    let (session, t0) = repo_a.create(&NewSession::new(user, DAY)).await.unwrap();
    let t1 = rotated(&repo_a, &t0).await;
    // Another key derives another successor for the same token, which the session never held:
    // the token cannot be proven part of the chain, so it is unknown. No fork: the session
    // keeps answering to t1 only, and nothing is revoked.
    assert_eq!(
        repo_b.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::Unknown
    );
    assert_eq!(
        repo_b.validate(t0.expose_secret()).await.unwrap(),
        Validation::Unknown
    );
    assert_eq!(
        stored(&db, session.key()).await,
        (1, t1.hash().as_str().to_owned(), 1)
    );
    assert!(matches!(
        repo_a.validate(t1.expose_secret()).await.unwrap(),
        Validation::Valid(s) if s.id == session.id
    ));
    assert_eq!(rotated(&repo_a, &t1).await.generation(), 2);
}

/// A token with this session's ids, the check recomputed, and a tag of our choosing: what
/// someone who read the ids off a token (they are in clear) could forge.
fn forge(session: SessionKey, generation: u32, tag: [u8; 32]) -> String {
    let text = tokens::Fields {
        user: session.user_id,
        session: session.session_id,
        generation,
        key_id: 1,
        chain: [7; 16],
        tag,
    }
    .encode();
    let parsed = RefreshToken::parse(&text).expect("a well-formed forgery");
    assert_eq!(
        (parsed.session_key(), parsed.generation()),
        (session, generation)
    );
    text
}

#[tokio::test]
async fn a_forged_token_of_a_real_session_is_unknown_and_revokes_nothing() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;
    let (session, t0) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let t1 = rotated(&repo, &t0).await;
    let t2 = rotated(&repo, &t1).await;
    age_rotation(&db, session.key(), 3600).await;

    // Older, current, parent and future generations, none of them a real token of the chain.
    for generation in [0, 1, 2, 3, 7] {
        let forged = forge(session.key(), generation, [7; 32]);
        assert_eq!(
            repo.validate(&forged).await.unwrap(),
            Validation::Unknown,
            "generation {generation}"
        );
        assert_eq!(
            repo.rotate(&forged).await.unwrap(),
            Rotation::Unknown,
            "generation {generation}"
        );
        assert!(repo.find_by_token(&forged).await.unwrap().is_none());
    }
    // Nothing was revoked or rotated: the real current token still works.
    assert_eq!(
        stored(&db, session.key()).await,
        (2, t2.hash().as_str().to_owned(), 1)
    );
    assert!(matches!(
        repo.validate(t2.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
    // While the real first token, proven an ancestor by deriving forward, is reuse.
    assert_eq!(
        repo.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        repo.validate(t2.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::TokenReused)
    );
}

#[tokio::test]
async fn parallel_rotations_of_one_token_all_receive_the_one_successor() {
    const CALLERS: usize = 12;
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, t0) = repo(&db, SessionPolicy::default())
        .create(&NewSession::new(user, DAY))
        .await
        .unwrap();

    // One pool (so one connection) per caller, all released at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut tasks = Vec::new();
    for _ in 0..CALLERS {
        let pool = common::pool_for(db.config(), &PoolSettings::default().max_size(1));
        drop(pool.get().await.unwrap()); // Connect before the race starts.
        let repo =
            SessionRepo::with_policy(pool, SessionPolicy::default().rotation_key(key())).unwrap();
        let barrier = barrier.clone();
        let presented = t0.expose_secret().to_owned();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            repo.rotate(&presented).await
        }));
    }
    let results = tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(tasks))
        .await
        .expect("no caller waits unboundedly (no deadlock)");
    let mut successors = Vec::new();
    for result in results {
        match result.unwrap().unwrap() {
            Rotation::Rotated { session: s, token } => {
                assert_eq!(s.id, session.id);
                successors.push(token);
            }
            other => panic!("every caller inside the grace window is served, got {other:?}"),
        }
    }
    assert_eq!(successors.len(), CALLERS);
    assert!(
        successors.iter().all(|t| *t == successors[0]),
        "one successor for everybody"
    );

    // Exactly one live token afterwards, and one rotation happened (generation 1): the
    // others were served by the grace window.
    assert_eq!(successors[0].generation(), 1);
    assert_eq!(
        stored(&db, session.key()).await,
        (1, successors[0].hash().as_str().to_owned(), 1)
    );
}

#[tokio::test]
async fn every_outcome_of_validate_and_rotate() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;

    let stranger = key().mint(user).unwrap();
    assert_eq!(
        repo.validate(stranger.expose_secret()).await.unwrap(),
        Validation::Unknown
    );
    assert_eq!(
        repo.rotate(stranger.expose_secret()).await.unwrap(),
        Rotation::Unknown
    );
    assert!(matches!(
        repo.validate("not a token").await,
        Err(Error::MalformedToken)
    ));
    assert!(matches!(
        repo.rotate("not a token").await,
        Err(Error::MalformedToken)
    ));

    let (expired, expired_token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    db.expire(expired.id).await;
    assert_eq!(
        repo.validate(expired_token.expose_secret()).await.unwrap(),
        Validation::Expired
    );
    assert_eq!(
        repo.rotate(expired_token.expose_secret()).await.unwrap(),
        Rotation::Expired
    );

    let (idle, idle_token) = repo.create(&NewSession::new(user, DAY * 30)).await.unwrap();
    let client = db.client().await;
    client
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() - interval '14 days 1 second', \
             created_at = now() - interval '15 days' WHERE id = $1",
            &[&idle.id],
        )
        .await
        .unwrap();
    assert_eq!(
        repo.validate(idle_token.expose_secret()).await.unwrap(),
        Validation::IdleTimedOut
    );
    assert_eq!(
        repo.rotate(idle_token.expose_secret()).await.unwrap(),
        Rotation::IdleTimedOut
    );
    assert!(
        repo.find_by_token(idle_token.expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        repo.record_activity(idle.key(), None).await.unwrap(),
        None,
        "idle sessions stay idle"
    );

    let (revoked, revoked_token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert!(repo.revoke(revoked.key()).await.unwrap());
    assert_eq!(
        repo.validate(revoked_token.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::User)
    );
    assert_eq!(
        repo.rotate(revoked_token.expose_secret()).await.unwrap(),
        Rotation::Revoked(RevokeReason::User)
    );

    let (live, live_token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert!(
        matches!(repo.validate(live_token.expose_secret()).await.unwrap(), Validation::Valid(s) if s.id == live.id)
    );
    assert_eq!(
        repo.count_live(user).await.unwrap(),
        1,
        "only the live one counts"
    );
    assert_eq!(repo.list_devices(user).await.unwrap().len(), 1);

    // Cleanup removes the expired and the idle session; the revoked tombstone stays until it
    // expires, so its token still reports Revoked.
    assert_eq!(repo.delete_expired().await.unwrap(), 2);
    assert_eq!(
        repo.validate(revoked_token.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::User)
    );
    assert_eq!(
        repo.validate(idle_token.expose_secret()).await.unwrap(),
        Validation::Unknown
    );
}

#[tokio::test]
async fn no_idle_timeout_means_old_activity_is_fine() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default().idle_timeout(None));
    let user = db.user().await;
    let (session, token) = repo
        .create(&NewSession::new(user, DAY * 400))
        .await
        .unwrap();
    let client = db.client().await;
    client
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() - interval '300 days', \
             created_at = now() - interval '300 days' WHERE id = $1",
            &[&session.id],
        )
        .await
        .unwrap();
    assert!(matches!(
        repo.validate(token.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
    assert_eq!(repo.delete_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn the_cap_evicts_the_least_recently_active_session() {
    let db = TestDb::new().await;
    let policy = SessionPolicy::default()
        .max_sessions_per_user(Some(3), CapPolicy::EvictLeastRecentlyActive)
        .activity_interval(Duration::ZERO);
    let repo = repo(&db, policy);
    let user = db.user().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(repo.create(&NewSession::new(user, DAY)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    repo.record_activity(sessions[0].0.key(), None)
        .await
        .unwrap()
        .unwrap();
    let (newest, _) = repo.create(&NewSession::new(user, DAY)).await.unwrap();

    assert_eq!(repo.count_live(user).await.unwrap(), 3);
    assert_eq!(
        repo.validate(sessions[1].1.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::Evicted),
        "the least recently active one made room"
    );
    let live: Vec<Uuid> = repo
        .list_devices(user)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert!(
        live.contains(&sessions[0].0.id)
            && live.contains(&sessions[2].0.id)
            && live.contains(&newest.id)
    );
}

async fn parallel_creates(policy: CapPolicy) -> (TestDb, Uuid, Vec<Result<(), Error>>) {
    const CALLERS: usize = 20;
    let db = TestDb::with_settings(PoolSettings::default().max_size(CALLERS)).await;
    let repo = repo(
        &db,
        SessionPolicy::default().max_sessions_per_user(Some(5), policy),
    );
    let user = db.user().await;
    // Open every connection of the pool first, so that the callers race with their statements
    // rather than with connection setups (each far slower than a statement).
    let warm = futures::future::try_join_all((0..CALLERS).map(|_| db.pool.get()))
        .await
        .expect("open the pool's connections");
    drop(warm);
    let status = db.pool.status();
    assert_eq!(
        (status.size, status.available),
        (CALLERS, CALLERS),
        "the pool is warm before the race"
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let repo = repo.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let new = NewSession::new(user, DAY).with_device_info(format!("device {i}"));
                repo.create(&new).await.map(|_| ())
            })
        })
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(tasks))
        .await
        .expect("no deadlock");
    (db, user, results.into_iter().map(|r| r.unwrap()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_logins_with_cap_five_leave_exactly_five() {
    let (db, user, results) = parallel_creates(CapPolicy::EvictLeastRecentlyActive).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(db.repo.count_live(user).await.unwrap(), 5);
    let client = db.client().await;
    let evicted: i64 = client
        .query_one(
            "SELECT count(*) FROM auth.user_sessions WHERE revoked_reason = 'evicted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(evicted, 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_logins_with_a_refusing_cap_admit_exactly_five() {
    let (db, user, results) = parallel_creates(CapPolicy::Refuse).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::SessionCapReached)))
        .count();
    assert_eq!((admitted, refused), (5, 15), "{results:?}");
    assert_eq!(db.repo.count_live(user).await.unwrap(), 5);
    assert_eq!(db.session_rows().await, 5, "refused logins write nothing");
}

#[tokio::test]
async fn activity_writes_only_when_stale_or_the_address_changes() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default()); // 60 s interval
    let user = db.user().await;
    let new = NewSession::new(user, DAY).with_ip_address("192.0.2.1".parse().unwrap());
    let (session, _) = repo.create(&new).await.unwrap();

    let first = repo
        .record_activity(session.key(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(!first.written, "fresh activity is not written again");
    assert_eq!(first.last_active_at, session.last_active_at);
    let same_ip = repo
        .record_activity(session.key(), new.ip_address)
        .await
        .unwrap()
        .unwrap();
    assert!(!same_ip.written);

    let moved = repo
        .record_activity(session.key(), Some("192.0.2.99".parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(moved.written, "a new address is written at once");

    let client = db.client().await;
    client
        .execute(
            "UPDATE auth.user_sessions SET last_active_at = now() - interval '61 seconds' WHERE id = $1",
            &[&session.id],
        )
        .await
        .unwrap();
    let stale = repo
        .record_activity(session.key(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(stale.written, "activity older than the interval is written");
    let again = repo
        .record_activity(session.key(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(!again.written);
    assert_eq!(again.last_active_at, stale.last_active_at);
}

#[tokio::test]
async fn an_unexpected_outcome_is_a_typed_error() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, token) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let client = db.client().await;
    // A schema function from some other version that answers with an outcome we do not know.
    client
        .batch_execute(
            "DROP FUNCTION auth.rotate_session(uuid, uuid, integer, varchar, varchar, bigint, \
                 bigint); \
             CREATE FUNCTION auth.rotate_session(p_user_id uuid, p_id uuid, \
                 p_generation integer, p_presented_hash varchar, p_successor_hash varchar, \
                 p_idle_seconds bigint, p_grace_seconds bigint) \
             RETURNS TABLE (outcome text, state text, current_hash varchar, \
                 id uuid, user_id uuid, device_info text, ip_address inet, user_agent text, \
                 last_active_at timestamptz, expires_at timestamptz, created_at timestamptz, \
                 revoked_reason text) \
             LANGUAGE sql AS \
             $$ SELECT 'haunted'::text, 'live'::text, NULL::varchar, s.id, \
                    s.user_id, s.device_info, s.ip_address, s.user_agent, s.last_active_at, \
                    s.expires_at, s.created_at, s.revoked_reason \
                FROM auth.user_sessions s WHERE s.user_id = p_user_id AND s.id = p_id $$",
        )
        .await
        .unwrap();
    let err = db.repo.rotate(token.expose_secret()).await.unwrap_err();
    assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");

    // A revocation reason from some other version: validation cannot classify it either.
    client
        .batch_execute(
            "ALTER TABLE auth.user_sessions \
             DROP CONSTRAINT user_sessions_revoked_reason_check",
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'haunted' \
             WHERE user_id = $1 AND id = $2",
            &[&user, &session.id],
        )
        .await
        .unwrap();
    let err = db.repo.validate(token.expose_secret()).await.unwrap_err();
    assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");
}
