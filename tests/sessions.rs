//! Every repository method and every error variant, against a real PostgreSQL.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use auth_sessions::{
    Error, InputProblem, MAX_DEVICE_INFO_CHARS, MAX_USER_AGENT_CHARS, NewSession, PoolSettings,
    RefreshToken, RevokeReason, Rotation, SessionKey, SessionPolicy, SessionRepo, TOKEN_PREFIX,
    Validation, build_pool,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestDb;
use common::outcomes::{all_rows, assert_unknown_and_inert, rotated};
use db::queries::sessions as q;
use sha2::{Digest, Sha256};
use tokens::{Fields, with_other_user};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The default tombstone retention, in seconds (7 days).
const RETENTION_SECONDS: i64 = 7 * 24 * 60 * 60;

/// Key 1 of those the database keeps, once a call of `db.repo` stored it.
async fn stored_key(db: &TestDb) -> Vec<u8> {
    let client = db.client().await;
    client
        .query_one("SELECT key FROM auth.rotation_keys WHERE id = 1", &[])
        .await
        .expect("a stored key")
        .get(0)
}

/// Whether a session's row is revoked (a tombstone), read directly.
async fn is_revoked(db: &TestDb, session: SessionKey) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT revoked_at IS NOT NULL FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.session_id],
        )
        .await
        .unwrap()
        .get(0)
}

fn laptop(user_id: Uuid) -> NewSession {
    NewSession::new(user_id, DAY)
        .with_device_info("Firefox on Linux")
        .with_ip_address(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
        .with_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
}

#[tokio::test]
async fn create_then_find_by_token_round_trips_every_field() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let new = laptop(user);
    let (created, token) = db.repo.create(&new).await.unwrap();

    assert_eq!(created.user_id, user);
    assert_eq!(created.device_info, new.device_info);
    assert_eq!(created.ip_address, new.ip_address);
    assert_eq!(created.user_agent, new.user_agent);
    assert_eq!(
        created.expires_at - created.created_at,
        chrono::Duration::days(1)
    );
    assert_eq!(created.last_active_at, created.created_at);

    // The token carries the session's key and starts at generation 0.
    assert_eq!(token.session_key(), created.key());
    assert_eq!((token.user_id(), token.session_id()), (user, created.id));
    assert_eq!(token.generation(), 0);
    assert!(token.expose_secret().starts_with(TOKEN_PREFIX));
    assert_eq!(token.expose_secret().len(), 125);

    let found = db.repo.find_by_token(token.expose_secret()).await.unwrap();
    assert_eq!(found.as_ref(), Some(&created));
    let found = db.repo.find_by_token(token.expose_secret()).await.unwrap();
    assert_eq!(found, Some(created.clone()), "lookups change nothing");

    // Only the hash is stored, never the token, under the key the token carries.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT refresh_token_hash, generation FROM auth.user_sessions \
             WHERE user_id = $1 AND id = $2",
            &[&user, &created.id],
        )
        .await
        .unwrap();
    let stored: String = row.get(0);
    let generation: i32 = row.get(1);
    assert_eq!(stored, token.hash().as_str());
    assert_eq!(stored, hex::encode(Sha256::digest(token.expose_secret())));
    assert_ne!(stored, token.expose_secret());
    assert_eq!(generation, 0);
}

#[tokio::test]
async fn unknown_tokens_are_none_and_malformed_tokens_are_rejected() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (_, real) = db.repo.create(&laptop(user)).await.unwrap();
    // Well formed but never stored: for a user that does not exist, and for a real user.
    for stranger in [
        db.repo.mint_token(Uuid::new_v4()).await.unwrap(),
        db.repo.mint_token(user).await.unwrap(),
    ] {
        assert_unknown_and_inert(
            &db.client().await,
            &db.repo,
            stranger.expose_secret(),
            "a token never stored",
        )
        .await;
    }

    let text = real.expose_secret();
    let mut flipped = text.as_bytes().to_vec();
    flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        String::new(),
        "short".to_owned(),
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!".to_owned(),
        "a\0b".to_owned(),
        // The previous format: 43 characters of base64url.
        URL_SAFE_NO_PAD.encode([7u8; 32]),
        format!("{TOKEN_PREFIX}{}", "!".repeat(120)),
        text[..text.len() - 1].to_owned(),
        format!("{text}A"),
        format!("asr1_{}", &text[TOKEN_PREFIX.len()..]),
        format!(" {}", &text[1..]),
        text.to_uppercase(),
        flipped,
    ] {
        assert!(
            matches!(
                db.repo.find_by_token(&bad).await,
                Err(Error::MalformedToken)
            ),
            "find_by_token({bad:?})"
        );
        assert!(
            matches!(db.repo.validate(&bad).await, Err(Error::MalformedToken)),
            "validate({bad:?})"
        );
        assert!(
            matches!(db.repo.rotate(&bad).await, Err(Error::MalformedToken)),
            "rotate({bad:?})"
        );
    }
    assert!(db.repo.find_by_token(text).await.unwrap().is_some());
}

#[tokio::test]
async fn expiry_boundary_is_decided_by_the_database_clock() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, token) = db.repo.create(&laptop(user)).await.unwrap();
    let hash = token.hash();

    // Inside one transaction now() is fixed, so the boundary can be hit exactly.
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    let set_expiry =
        "UPDATE auth.user_sessions SET expires_at = now() + $2::text::interval WHERE id = $1";
    tx.execute(set_expiry, &[&session.id, &"0 seconds"])
        .await
        .unwrap();
    let at_now = q::get_session_by_token()
        .bind(&tx, &user, &session.id, &hash.as_str(), &None)
        .opt()
        .await
        .unwrap();
    assert!(
        at_now.is_none(),
        "a session expiring exactly now is expired"
    );
    tx.execute(set_expiry, &[&session.id, &"1 microsecond"])
        .await
        .unwrap();
    let just_after = q::get_session_by_token()
        .bind(&tx, &user, &session.id, &hash.as_str(), &None)
        .opt()
        .await
        .unwrap();
    assert_eq!(just_after.map(|row| row.id), Some(session.id));
    tx.execute(set_expiry, &[&session.id, &"0 seconds"])
        .await
        .unwrap();
    let deleted = q::delete_expired_sessions()
        .bind(&tx, &None, &RETENTION_SECONDS)
        .one()
        .await
        .unwrap();
    assert_eq!(deleted, 1, "cleanup deletes a session expiring exactly now");
    tx.rollback().await.unwrap();

    // Through the repository: an expired session is invisible everywhere, then cleaned up.
    db.expire(session.id).await;
    assert_eq!(
        db.repo.find_by_token(token.expose_secret()).await.unwrap(),
        None
    );
    assert_eq!(
        db.repo.record_activity(session.key(), None).await.unwrap(),
        None
    );
    assert_eq!(
        db.repo.validate(token.expose_secret()).await.unwrap(),
        Validation::Expired
    );
    assert_eq!(
        db.repo.rotate(token.expose_secret()).await.unwrap(),
        Rotation::Expired
    );
    assert_eq!(db.repo.count_live(user).await.unwrap(), 0);
    assert!(db.repo.list_devices(user).await.unwrap().is_empty());
    assert_eq!(db.repo.delete_expired().await.unwrap(), 1);
    assert_eq!(db.session_rows().await, 0);
}

#[tokio::test]
async fn listing_shows_live_devices_most_recent_first_without_secrets() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let other_user = db.user().await;
    let (old, _) = db
        .repo
        .create(&laptop(user).with_device_info("old phone"))
        .await
        .unwrap();
    let (phone, _) = db
        .repo
        .create(&laptop(user).with_device_info("phone"))
        .await
        .unwrap();
    let (gone, gone_token) = db
        .repo
        .create(&laptop(user).with_device_info("gone"))
        .await
        .unwrap();
    let (_, other_token) = db.repo.create(&laptop(other_user)).await.unwrap();
    db.expire(gone.id).await;
    db.repo
        .record_activity(phone.key(), None)
        .await
        .unwrap()
        .unwrap();

    let devices = db.repo.list_devices(user).await.unwrap();
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        [phone.id, old.id],
        "live devices, most recently active first"
    );
    assert_eq!(devices[0].device_info.as_deref(), Some("phone"));

    let printed = format!("{devices:?}");
    for secret in [
        gone_token.hash().as_str(),
        other_token.hash().as_str(),
        "Mozilla/5.0",
    ] {
        assert!(!printed.contains(secret), "listing leaks {secret}");
    }
    assert!(
        db.repo
            .list_devices(Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn record_activity_moves_last_active_and_updates_the_address() {
    let db = TestDb::new().await;
    let user = db.user().await;
    // Unthrottled: every call writes.
    let repo = SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().activity_interval(Duration::ZERO),
    )
    .unwrap();
    let (session, token) = repo.create(&laptop(user)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let at = repo
        .record_activity(session.key(), None)
        .await
        .unwrap()
        .expect("live session");
    assert!(at.written);
    let at = at.last_active_at;
    assert!(at > session.last_active_at);
    let found = repo
        .find_by_token(token.expose_secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_active_at, at);
    assert_eq!(
        found.ip_address, session.ip_address,
        "no address given: unchanged"
    );
    assert_eq!(
        found.expires_at, session.expires_at,
        "activity never extends the expiry"
    );

    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42));
    db.repo
        .record_activity(session.key(), Some(v6))
        .await
        .unwrap()
        .unwrap();
    let found = repo
        .find_by_token(token.expose_secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.ip_address, Some(v6));

    // A key that names no session of its user matches nothing and writes nothing: an unknown
    // session id, and this session's id under another (real) user.
    let other_user = db.user().await;
    repo.create(&laptop(other_user)).await.unwrap();
    let before = all_rows(&db.client().await).await;
    for key in [
        SessionKey::new(user, Uuid::new_v4()),
        SessionKey::new(other_user, session.id),
        SessionKey::new(Uuid::new_v4(), session.id),
    ] {
        assert_eq!(
            repo.record_activity(key, Some(v6)).await.unwrap(),
            None,
            "{key:?}"
        );
    }
    assert_eq!(all_rows(&db.client().await).await, before);
}

#[tokio::test]
async fn ipv4_and_ipv6_addresses_round_trip() {
    let db = TestDb::new().await;
    let user = db.user().await;
    for ip in [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0x85a3, 0, 0, 0x8a2e, 0x370, 0x7334,
        )),
        "::ffff:192.0.2.1".parse().unwrap(),
    ] {
        let (session, token) = db
            .repo
            .create(&NewSession::new(user, DAY).with_ip_address(ip))
            .await
            .unwrap();
        assert_eq!(session.ip_address, Some(ip));
        let found = db
            .repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.ip_address, Some(ip));
    }
    let (bare, _) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert_eq!(
        (bare.ip_address, bare.device_info, bare.user_agent),
        (None, None, None)
    );
}

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

#[tokio::test]
async fn duplicate_session_is_its_own_error_and_prints_no_secret() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let token = db.repo.mint_token(user).await.unwrap();
    let created = db
        .repo
        .create_with_token(&laptop(user), &token)
        .await
        .unwrap();
    assert_eq!(created.key(), token.session_key());
    assert_eq!(
        db.repo.find_by_token(token.expose_secret()).await.unwrap(),
        Some(created.clone())
    );
    let err = db
        .repo
        .create_with_token(&laptop(user), &token)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateSession), "{err:?}");
    let printed = format!("{err} {err:?}");
    assert!(!printed.contains(token.hash().as_str()) && !printed.contains(token.expose_secret()));

    // Any token of the session's chain names the same session: its successor, and the
    // original once replaced.
    let next = rotated(&db.repo, &token).await;
    assert_eq!(next.session_key(), token.session_key());
    for again in [&next, &token] {
        let err = db
            .repo
            .create_with_token(&laptop(user), again)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DuplicateSession), "{err:?}");
    }
    assert_eq!(db.session_rows().await, 1);
    // The failed creates left the session as it was: live under its current token.
    let found = db
        .repo
        .find_by_token(next.expose_secret())
        .await
        .unwrap()
        .expect("still live");
    assert_eq!(
        (found.key(), found.expires_at, found.device_info),
        (created.key(), created.expires_at, created.device_info)
    );

    // A token minted for another user is refused, and nothing is written.
    let other = db.user().await;
    let foreign = db.repo.mint_token(other).await.unwrap();
    let err = db
        .repo
        .create_with_token(&laptop(user), &foreign)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { field: "token", .. }),
        "{err:?}"
    );
    assert_eq!(db.session_rows().await, 1);
}

#[tokio::test]
async fn unknown_user_is_its_own_error() {
    let db = TestDb::new().await;
    let err = db.repo.create(&laptop(Uuid::new_v4())).await.unwrap_err();
    assert!(matches!(err, Error::UnknownUser), "{err:?}");
    assert_eq!(db.session_rows().await, 0);
}

#[tokio::test]
async fn bad_text_is_rejected_before_the_database_and_writes_nothing() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let cases = [
        (
            laptop(user).with_device_info("tab\0let"),
            "device_info",
            InputProblem::NulByte,
        ),
        (
            laptop(user).with_user_agent("\0"),
            "user_agent",
            InputProblem::NulByte,
        ),
        (
            laptop(user).with_device_info("x".repeat(MAX_DEVICE_INFO_CHARS + 1)),
            "device_info",
            InputProblem::TooLong {
                max_chars: MAX_DEVICE_INFO_CHARS,
            },
        ),
        (
            laptop(user).with_user_agent("ü".repeat(MAX_USER_AGENT_CHARS + 1)),
            "user_agent",
            InputProblem::TooLong {
                max_chars: MAX_USER_AGENT_CHARS,
            },
        ),
        (
            NewSession::new(user, Duration::ZERO),
            "ttl",
            InputProblem::OutOfRange,
        ),
    ];
    for (new, expected_field, expected_problem) in cases {
        match db.repo.create(&new).await {
            Err(Error::InvalidInput { field, problem }) => {
                assert_eq!((field, problem), (expected_field, expected_problem));
            }
            other => panic!("expected InvalidInput for {expected_field}, got {other:?}"),
        }
    }
    assert_eq!(db.session_rows().await, 0);

    // Right at the limits, in characters (multi-byte included), everything is stored intact.
    let device = "ü".repeat(MAX_DEVICE_INFO_CHARS);
    let agent = "🦀".repeat(MAX_USER_AGENT_CHARS);
    let (session, token) = db
        .repo
        .create(
            &NewSession::new(user, DAY)
                .with_device_info(device.clone())
                .with_user_agent(agent.clone()),
        )
        .await
        .unwrap();
    let found = db
        .repo
        .find_by_token(token.expose_secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.device_info.as_deref(), Some(device.as_str()));
    assert_eq!(found.user_agent.as_deref(), Some(agent.as_str()));
    assert_eq!(found.id, session.id);
}

#[tokio::test]
async fn an_exhausted_pool_times_out_within_its_bound() {
    let wait = Duration::from_millis(200);
    let db = TestDb::with_settings(PoolSettings::default().max_size(1).wait_timeout(wait)).await;
    let held = db.pool.get().await.unwrap();
    let started = Instant::now();
    let err = db.repo.count_live(Uuid::new_v4()).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::PoolTimeout), "{err:?}");
    assert!(waited >= wait && waited < wait * 5, "waited {waited:?}");
    drop(held);
    assert_eq!(
        db.repo.count_live(Uuid::new_v4()).await.unwrap(),
        0,
        "usable again"
    );
}

#[tokio::test]
async fn a_dead_server_is_a_connect_error() {
    let settings = PoolSettings::default().create_timeout(Duration::from_secs(2));
    let pool = build_pool("postgres://postgres@127.0.0.1:1/postgres", &settings).unwrap();
    let repo = SessionRepo::new(pool);
    let err = repo.count_live(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn a_malformed_url_is_a_config_error() {
    let err = build_pool("postgres://host:notaport/db", &PoolSettings::default()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_closed_pool_is_a_pool_error() {
    let db = TestDb::new().await;
    db.pool.close();
    let err = db.repo.count_live(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, Error::Pool(_)), "{err:?}");
}

#[tokio::test]
async fn other_database_failures_are_database_errors_without_row_values() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (_, token) = db.repo.create(&laptop(user)).await.unwrap();
    let client = db.client().await;
    // A constraint the repository does not map: its DETAIL would quote the row, hash included.
    client
        .batch_execute(
            "ALTER TABLE auth.user_sessions ADD CONSTRAINT no_firefox \
             CHECK (device_info <> 'Firefox on Linux') NOT VALID",
        )
        .await
        .unwrap();
    let again = db.repo.mint_token(user).await.unwrap();
    let err = db
        .repo
        .create_with_token(&laptop(user), &again)
        .await
        .unwrap_err();
    let Error::Database(inner) = &err else {
        panic!("expected Database, got {err:?}")
    };
    assert_eq!(
        inner.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    assert_eq!(inner.constraint(), Some("no_firefox"));
    let mut printed = format!("{err} {err:?} {inner}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        printed.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(printed.contains("no_firefox"), "{printed}");
    for secret in [
        again.hash().as_str(),
        again.expose_secret(),
        token.hash().as_str(),
    ] {
        assert!(!printed.contains(secret), "error leaks a secret: {printed}");
    }
}

#[tokio::test]
async fn a_forged_token_for_an_existing_session_is_unknown_and_revokes_nothing() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, token) = db.repo.create(&laptop(user)).await.unwrap();
    let forge = |generation: u32| tokens::forged(user, session.id, generation);

    // The session's ids and current generation with another tag; and later generations.
    for generation in [0, 1, 2, 1000] {
        assert_unknown_and_inert(&db.client().await, &db.repo, &forge(generation), "forged").await;
    }
    // After two rotations, an older generation is reuse only when its tag verifies; a forged
    // one is unknown and revokes nothing.
    let current = rotated(&db.repo, &rotated(&db.repo, &token).await).await;
    assert_eq!(current.generation(), 2);
    for generation in [0, 1, 2, 3] {
        assert_unknown_and_inert(
            &db.client().await,
            &db.repo,
            &forge(generation),
            "forged, after rotations",
        )
        .await;
    }
    assert_eq!(
        db.repo
            .find_by_token(current.expose_secret())
            .await
            .unwrap()
            .map(|s| s.key()),
        Some(session.key())
    );
}

#[tokio::test]
async fn a_token_whose_user_id_was_altered_finds_nothing_and_changes_nothing() {
    let db = TestDb::new().await;
    let victim = db.user().await;
    let other = db.user().await;
    let (session, token) = db.repo.create(&laptop(victim)).await.unwrap();
    // The other user is real and has sessions of their own.
    let (others_session, others_token) = db.repo.create(&laptop(other)).await.unwrap();
    db.repo.create(&laptop(other)).await.unwrap();

    // To a user that does not exist, and to the real other user.
    for user in [Uuid::new_v4(), other] {
        assert_unknown_and_inert(
            &db.client().await,
            &db.repo,
            &with_other_user(&token, user),
            "altered user",
        )
        .await;
    }
    // The other user's token moved to the victim's id does not reach the victim's session.
    assert_unknown_and_inert(
        &db.client().await,
        &db.repo,
        &with_other_user(&others_token, victim),
        "altered to the victim",
    )
    .await;

    // Even when the other user has a session with the very same session id (the primary key is
    // (user_id, id)), the altered token's hash differs from that session's.
    let twin = Fields {
        user: other,
        session: session.id,
        generation: 0,
        key_id: 1,
        chain: [0x11; 16],
        tag: [0; 32],
    }
    .signed(&stored_key(&db).await)
    .encode();
    let twin = RefreshToken::parse(&twin).unwrap();
    let twin_session = db
        .repo
        .create_with_token(&laptop(other), &twin)
        .await
        .unwrap();
    assert_eq!(twin_session.key(), SessionKey::new(other, session.id));
    assert_unknown_and_inert(
        &db.client().await,
        &db.repo,
        &with_other_user(&token, other),
        "same session id, generation 0",
    )
    .await;
    // Or a later generation: the altered token then claims an older one, but its tag does not
    // verify, so nothing is revoked.
    let twin_current = rotated(&db.repo, &rotated(&db.repo, &twin).await).await;
    assert_unknown_and_inert(
        &db.client().await,
        &db.repo,
        &with_other_user(&token, other),
        "same session id, stale generation",
    )
    .await;
    let next = rotated(&db.repo, &token).await;
    assert_unknown_and_inert(
        &db.client().await,
        &db.repo,
        &with_other_user(&next, other),
        "same session id, rotated token",
    )
    .await;

    // Every real token still opens its own session, and only its own.
    for (presented, key) in [
        (&next, session.key()),
        (&others_token, others_session.key()),
        (&twin_current, twin_session.key()),
    ] {
        let found = db
            .repo
            .find_by_token(presented.expose_secret())
            .await
            .unwrap()
            .expect("live");
        assert_eq!(found.key(), key);
    }
    assert_eq!(db.repo.count_live(victim).await.unwrap(), 1);
    assert_eq!(db.repo.count_live(other).await.unwrap(), 3);
}

#[tokio::test]
async fn a_well_formed_token_at_the_last_generation_is_unknown_and_cannot_rotate() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, token) = db.repo.create(&laptop(user)).await.unwrap();
    // For a session that does not exist, and for the ids of a real one.
    for (owner, id) in [(Uuid::new_v4(), Uuid::new_v4()), (user, session.id)] {
        let presented = tokens::forged(owner, id, auth_sessions::MAX_GENERATION);
        assert_eq!(
            RefreshToken::parse(&presented).unwrap().generation(),
            auth_sessions::MAX_GENERATION
        );
        let before = all_rows(&db.client().await).await;
        assert_eq!(db.repo.find_by_token(&presented).await.unwrap(), None);
        let validated = db.repo.validate(&presented).await;
        assert!(
            matches!(validated, Ok(Validation::Unknown)),
            "validate: {validated:?}"
        );
        // Unknown, as validate says (it was once an input error, answered 400 by a service).
        let rotated = db.repo.rotate(&presented).await;
        assert!(
            matches!(rotated, Ok(Rotation::Unknown)),
            "rotate: {rotated:?}"
        );
        assert_eq!(all_rows(&db.client().await).await, before);
    }
    assert!(
        db.repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
}
