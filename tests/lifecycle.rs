//! Rotation with reuse detection, idle and absolute lifetimes, the per-user cap and throttled
//! activity, against a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{
    CapPolicy, Error, NewSession, PoolSettings, RefreshToken, RevokeReason, Rotation, RotationKey,
    SessionPolicy, SessionRepo, Validation, build_pool_with_config,
};
use common::TestDb;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn key() -> RotationKey {
    RotationKey::from_bytes(b"a test rotation key of at least 32 bytes").unwrap()
}

fn repo(db: &TestDb, policy: SessionPolicy) -> SessionRepo {
    SessionRepo::with_policy(db.pool.clone(), policy.rotation_key(key()))
}

async fn rotated(repo: &SessionRepo, token: &RefreshToken) -> RefreshToken {
    match repo.rotate(token.expose_secret()).await.unwrap() {
        Rotation::Rotated { token, .. } => token,
        other => panic!("expected Rotated, got {other:?}"),
    }
}

/// Moves every replacement of this session's tokens `seconds` into the past.
async fn age_history(db: &TestDb, session_id: Uuid, seconds: i32) {
    let client = db.client().await;
    client
        .execute(
            "UPDATE auth.session_token_history \
             SET replaced_at = replaced_at - make_interval(secs => $2) WHERE session_id = $1",
            &[&session_id, &f64::from(seconds)],
        )
        .await
        .unwrap();
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

    // Only hashes are stored: the current one, and the replaced one in the history.
    let client = db.client().await;
    let current: String = client
        .query_one(
            "SELECT refresh_token_hash FROM auth.user_sessions WHERE id = $1",
            &[&session.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, t1.hash().as_str());
    let history: Vec<String> = client
        .query(
            "SELECT token_hash FROM auth.session_token_history WHERE session_id = $1",
            &[&session.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(history, [t0.hash().as_str().to_owned()]);
}

#[tokio::test]
async fn a_replaced_token_after_the_grace_window_revokes_the_session() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;
    let (session, t0) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let t1 = rotated(&repo, &t0).await;
    age_history(&db, session.id, 11).await;

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
    );
    let user = db.user().await;
    let (session, t0) = repo_a.create(&NewSession::new(user, DAY)).await.unwrap();
    rotated(&repo_a, &t0).await;
    // Another successor for the same token: a fork, which must not happen. Treated as reuse.
    assert_eq!(
        repo_b.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
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
        let pool =
            build_pool_with_config(db.config(), &PoolSettings::default().max_size(1)).unwrap();
        drop(pool.get().await.unwrap()); // Connect before the race starts.
        let repo = SessionRepo::with_policy(pool, SessionPolicy::default().rotation_key(key()));
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

    let client = db.client().await;
    let current: String = client
        .query_one(
            "SELECT refresh_token_hash FROM auth.user_sessions WHERE id = $1",
            &[&session.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        current,
        successors[0].hash().as_str(),
        "exactly one live token afterwards"
    );
    let replaced: i64 = client
        .query_one(
            "SELECT count(*) FROM auth.session_token_history WHERE session_id = $1",
            &[&session.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        replaced, 1,
        "one rotation happened, the others were served by the grace window"
    );
}

#[tokio::test]
async fn every_outcome_of_validate_and_rotate() {
    let db = TestDb::new().await;
    let repo = repo(&db, SessionPolicy::default());
    let user = db.user().await;

    let stranger = RefreshToken::generate().unwrap();
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
        repo.record_activity(idle.id, None).await.unwrap(),
        None,
        "idle sessions stay idle"
    );

    let (revoked, revoked_token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert!(repo.revoke(revoked.id, user).await.unwrap());
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
    repo.record_activity(sessions[0].0.id, None)
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
        .record_activity(session.id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(!first.written, "fresh activity is not written again");
    assert_eq!(first.last_active_at, session.last_active_at);
    let same_ip = repo
        .record_activity(session.id, new.ip_address)
        .await
        .unwrap()
        .unwrap();
    assert!(!same_ip.written);

    let moved = repo
        .record_activity(session.id, Some("192.0.2.99".parse().unwrap()))
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
        .record_activity(session.id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(stale.written, "activity older than the interval is written");
    let again = repo
        .record_activity(session.id, None)
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
    let (_, token) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let client = db.client().await;
    // A schema function from some other version that answers with an outcome we do not know.
    client
        .batch_execute(
            "CREATE OR REPLACE FUNCTION auth.validate_session(p_presented_hash varchar, p_idle_seconds bigint, p_grace_seconds bigint) \
             RETURNS TABLE (outcome text, session auth.user_sessions) LANGUAGE sql STABLE AS \
             $$ SELECT 'haunted'::text, s FROM auth.user_sessions s WHERE s.refresh_token_hash = $1 $$",
        )
        .await
        .unwrap();
    let err = db.repo.validate(token.expose_secret()).await.unwrap_err();
    assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");
}
