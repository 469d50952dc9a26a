//! Creating, finding, listing and touching sessions, against a real PostgreSQL: every field
//! round-trips, expiry is the database's clock, activity moves `last_active_at`. Revoking is in
//! tests/revocation.rs, error variants in tests/errors.rs, tampered tokens in
//! tests/forged_tokens.rs.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use auth_sessions::{
    Error, NewSession, Rotation, SessionKey, SessionPolicy, SessionRepo, TOKEN_PREFIX, Validation,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestDb;
use common::fixtures::{DAY, RETENTION_SECONDS, laptop};
use common::outcomes::{all_rows, assert_unknown_and_inert};
use db::queries::sessions as q;
use sha2::{Digest, Sha256};
use uuid::Uuid;

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
