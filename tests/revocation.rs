//! Revoking and removing sessions, against a real PostgreSQL: only the owner revokes, the
//! bulk revocations spare the current session and other users, cleanup removes expired rows
//! and tombstones past their retention, and deleting a user takes their sessions.

mod common;

use std::time::Duration;

use auth_sessions::{RevokeReason, Rotation, SessionKey, SessionPolicy, SessionRepo, Validation};
use common::TestDb;
use common::fixtures::{RETENTION_SECONDS, is_revoked, laptop};
use common::outcomes::all_rows;
use uuid::Uuid;

#[tokio::test]
async fn revoke_needs_the_owner() {
    let db = TestDb::new().await;
    let owner = db.user().await;
    let intruder = db.user().await;
    let (session, token) = db.repo.create(&laptop(owner)).await.unwrap();

    db.repo.create(&laptop(intruder)).await.unwrap();
    let before = all_rows(&db.client().await).await;
    assert!(
        !db.repo
            .revoke(SessionKey::new(intruder, session.id))
            .await
            .unwrap(),
        "wrong user revokes nothing"
    );
    assert!(
        !db.repo
            .revoke(SessionKey::new(owner, Uuid::new_v4()))
            .await
            .unwrap(),
        "unknown session id revokes nothing"
    );
    assert_eq!(all_rows(&db.client().await).await, before);
    assert!(
        db.repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert!(db.repo.revoke(session.key()).await.unwrap());
    assert!(
        db.repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    // The row stays as a tombstone, so the token is reported as revoked, not unknown.
    assert_eq!(
        db.repo.validate(token.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::User)
    );
    assert_eq!(
        db.repo.rotate(token.expose_secret()).await.unwrap(),
        Rotation::Revoked(RevokeReason::User)
    );
    assert!(is_revoked(&db, session.key()).await);
    assert!(
        !db.repo.revoke(session.key()).await.unwrap(),
        "already revoked"
    );
    assert_eq!(db.repo.count_live(intruder).await.unwrap(), 1);
}

#[tokio::test]
async fn revoke_all_except_keeps_the_current_session_and_other_users() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let neighbour = db.user().await;
    let (current, current_token) = db.repo.create(&laptop(user)).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(db.repo.create(&laptop(user)).await.unwrap().0);
    }
    let (expired, _) = db.repo.create(&laptop(user)).await.unwrap();
    db.expire(expired.id).await;
    let (theirs, _) = db.repo.create(&laptop(neighbour)).await.unwrap();

    assert_eq!(
        db.repo.revoke_all_except(current.key()).await.unwrap(),
        Some(3)
    );
    for other in &others {
        assert!(is_revoked(&db, other.key()).await);
    }
    assert!(
        !is_revoked(&db, expired.key()).await,
        "expired sessions are left to cleanup"
    );
    assert!(!is_revoked(&db, theirs.key()).await);
    assert_eq!(db.repo.count_live(user).await.unwrap(), 1);
    assert!(
        db.repo
            .find_by_token(current_token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(db.repo.count_live(neighbour).await.unwrap(), 1);
    assert_eq!(
        db.repo.revoke_all_except(current.key()).await.unwrap(),
        Some(0)
    );

    // Keeping a session that is not the user's (a typo, another user's id) revokes nothing:
    // with this user's session id and the neighbour's user id, both users keep everything.
    assert_eq!(
        db.repo
            .revoke_all_except(SessionKey::new(neighbour, current.id))
            .await
            .unwrap(),
        None
    );
    assert!(!is_revoked(&db, current.key()).await);
    assert!(!is_revoked(&db, theirs.key()).await);
    assert_eq!(db.repo.count_live(user).await.unwrap(), 1);
    assert_eq!(db.repo.count_live(neighbour).await.unwrap(), 1);
    // A revoked session cannot be the one kept either.
    let (extra, _) = db.repo.create(&laptop(neighbour)).await.unwrap();
    assert!(db.repo.revoke(extra.key()).await.unwrap());
    assert_eq!(db.repo.revoke_all_except(extra.key()).await.unwrap(), None);
    assert_eq!(db.repo.count_live(neighbour).await.unwrap(), 1);
}

#[tokio::test]
async fn revoke_all_revokes_every_unexpired_session_of_the_user_only() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let neighbour = db.user().await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(db.repo.create(&laptop(user)).await.unwrap().1);
    }
    let (expired, _) = db.repo.create(&laptop(user)).await.unwrap();
    db.expire(expired.id).await;
    db.repo.create(&laptop(neighbour)).await.unwrap();

    assert_eq!(
        db.repo.revoke_all(user).await.unwrap(),
        3,
        "expired sessions are left to cleanup"
    );
    assert!(!is_revoked(&db, expired.key()).await);
    for token in &tokens {
        assert!(is_revoked(&db, token.session_key()).await);
        assert_eq!(
            db.repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Revoked(RevokeReason::User)
        );
    }
    assert_eq!(db.repo.count_live(user).await.unwrap(), 0);
    assert_eq!(db.repo.count_live(neighbour).await.unwrap(), 1);
    assert_eq!(db.repo.revoke_all(user).await.unwrap(), 0, "nothing left");
    assert_eq!(db.repo.revoke_all(Uuid::new_v4()).await.unwrap(), 0);
    // Cleanup removes the expired one; the tombstones stay for their retention.
    assert_eq!(db.repo.delete_expired().await.unwrap(), 1);
    assert_eq!(db.session_rows().await, 4);
}

#[tokio::test]
async fn counts_and_cleanup_exclude_and_remove_only_expired_sessions() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(db.repo.create(&laptop(user)).await.unwrap().0.id);
    }
    db.expire(ids[0]).await;
    db.expire(ids[1]).await;
    assert_eq!(db.repo.count_live(user).await.unwrap(), 3);
    assert_eq!(db.session_rows().await, 5);
    assert_eq!(db.repo.delete_expired().await.unwrap(), 2);
    assert_eq!(db.session_rows().await, 3);
    assert_eq!(db.repo.count_live(user).await.unwrap(), 3);
    assert_eq!(db.repo.delete_expired().await.unwrap(), 0);
    assert_eq!(db.repo.count_live(Uuid::new_v4()).await.unwrap(), 0);
}

#[tokio::test]
async fn cleanup_deletes_tombstones_only_after_their_retention() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().tombstone_retention(Duration::from_secs(3600)),
    )
    .unwrap();
    assert_eq!(repo.policy().tombstone_retention, Duration::from_secs(3600));
    assert_eq!(
        SessionPolicy::default().tombstone_retention,
        Duration::from_secs(RETENTION_SECONDS as u64),
        "default: 7 days"
    );
    let (live, live_token) = repo.create(&laptop(user)).await.unwrap();
    let mut tombstones = Vec::new();
    for _ in 0..3 {
        let (session, token) = repo.create(&laptop(user)).await.unwrap();
        assert!(repo.revoke(session.key()).await.unwrap());
        tombstones.push((session, token));
    }
    let age = async |session: &auth_sessions::Session, by: &str| {
        let updated = db
            .client()
            .await
            .execute(
                "UPDATE auth.user_sessions SET revoked_at = now() - $3::text::interval \
                 WHERE user_id = $1 AND id = $2",
                &[&session.user_id, &session.id, &by],
            )
            .await
            .unwrap();
        assert_eq!(updated, 1);
    };
    // One tombstone revoked two hours ago, one 59 minutes ago, one just now.
    age(&tombstones[0].0, "2 hours").await;
    age(&tombstones[1].0, "59 minutes").await;

    // The default retention (7 days) keeps all three.
    assert_eq!(db.repo.delete_expired().await.unwrap(), 0);
    assert_eq!(db.repo.delete_expired_batch(10).await.unwrap().deleted(), 0);
    assert_eq!(db.session_rows().await, 4);

    // One hour: only the oldest goes; its token is then unknown, the others' still revoked.
    assert_eq!(repo.delete_expired().await.unwrap(), 1);
    assert_eq!(db.session_rows().await, 3);
    assert_eq!(
        repo.validate(tombstones[0].1.expose_secret())
            .await
            .unwrap(),
        Validation::Unknown
    );
    for (_, token) in &tombstones[1..] {
        assert_eq!(
            repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Revoked(RevokeReason::User)
        );
    }

    // The batched cleanup applies the same retention.
    age(&tombstones[1].0, "61 minutes").await;
    assert_eq!(repo.delete_expired_batch(10).await.unwrap().deleted(), 1);
    assert_eq!(repo.delete_expired_batch(10).await.unwrap().deleted(), 0);
    assert_eq!(db.session_rows().await, 2);
    assert_eq!(
        repo.validate(tombstones[2].1.expose_secret())
            .await
            .unwrap(),
        Validation::Revoked(RevokeReason::User)
    );
    // The live session is untouched throughout.
    assert_eq!(
        repo.find_by_token(live_token.expose_secret())
            .await
            .unwrap(),
        Some(live)
    );
}

#[tokio::test]
async fn deleting_a_user_cascades_to_their_sessions() {
    let db = TestDb::new().await;
    let user = db.user().await;
    db.repo.create(&laptop(user)).await.unwrap();
    let client = db.client().await;
    client
        .execute("DELETE FROM auth.users WHERE id = $1", &[&user])
        .await
        .unwrap();
    assert_eq!(db.session_rows().await, 0);
}
