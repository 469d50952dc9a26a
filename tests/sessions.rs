//! Every repository method and every error variant, against a real PostgreSQL.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use auth_sessions::{
    Error, InputProblem, MAX_DEVICE_INFO_CHARS, MAX_USER_AGENT_CHARS, NewSession, PoolSettings,
    RefreshToken, SessionPolicy, SessionRepo, TokenHash, build_pool,
};
use common::TestDb;
use db::queries::sessions as q;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

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

    let found = db.repo.find_by_token(token.expose_secret()).await.unwrap();
    assert_eq!(found.as_ref(), Some(&created));
    let by_hash = db.repo.find_by_token_hash(&token.hash()).await.unwrap();
    assert_eq!(by_hash, Some(created.clone()));

    // Only the hash is stored, never the token.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT refresh_token_hash FROM auth.user_sessions WHERE id = $1",
            &[&created.id],
        )
        .await
        .unwrap();
    let stored: String = row.get(0);
    assert_eq!(stored, token.hash().as_str());
    assert_ne!(stored, token.expose_secret());
}

#[tokio::test]
async fn unknown_tokens_are_none_and_malformed_tokens_are_rejected() {
    let db = TestDb::new().await;
    let stranger = RefreshToken::generate().unwrap();
    assert_eq!(
        db.repo
            .find_by_token(stranger.expose_secret())
            .await
            .unwrap(),
        None
    );
    for bad in [
        "",
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "a\0b",
    ] {
        assert!(matches!(
            db.repo.find_by_token(bad).await,
            Err(Error::MalformedToken)
        ));
    }
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
    let at_now = q::get_session_by_token_hash()
        .bind(&tx, &hash.as_str(), &None)
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
    let just_after = q::get_session_by_token_hash()
        .bind(&tx, &hash.as_str(), &None)
        .opt()
        .await
        .unwrap();
    assert_eq!(just_after.map(|row| row.id), Some(session.id));
    tx.execute(set_expiry, &[&session.id, &"0 seconds"])
        .await
        .unwrap();
    let deleted = q::delete_expired_sessions()
        .bind(&tx, &None)
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
        db.repo.record_activity(session.id, None).await.unwrap(),
        None
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
        .record_activity(phone.id, None)
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
    );
    let (session, token) = repo.create(&laptop(user)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let at = repo
        .record_activity(session.id, None)
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
        .record_activity(session.id, Some(v6))
        .await
        .unwrap()
        .unwrap();
    let found = repo
        .find_by_token(token.expose_secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.ip_address, Some(v6));

    assert_eq!(
        repo.record_activity(Uuid::new_v4(), None).await.unwrap(),
        None
    );
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

    assert!(
        !db.repo.revoke(session.id, intruder).await.unwrap(),
        "wrong user deletes nothing"
    );
    assert!(
        db.repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert!(db.repo.revoke(session.id, owner).await.unwrap());
    assert!(
        db.repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !db.repo.revoke(session.id, owner).await.unwrap(),
        "already gone"
    );
}

#[tokio::test]
async fn revoke_all_except_keeps_the_current_session_and_other_users() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let neighbour = db.user().await;
    let (current, current_token) = db.repo.create(&laptop(user)).await.unwrap();
    for _ in 0..3 {
        db.repo.create(&laptop(user)).await.unwrap();
    }
    db.repo.create(&laptop(neighbour)).await.unwrap();

    assert_eq!(
        db.repo.revoke_all_except(user, current.id).await.unwrap(),
        3
    );
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
        db.repo.revoke_all_except(user, current.id).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn revoke_all_removes_every_session_of_the_user_only() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let neighbour = db.user().await;
    for _ in 0..3 {
        db.repo.create(&laptop(user)).await.unwrap();
    }
    let (expired, _) = db.repo.create(&laptop(user)).await.unwrap();
    db.expire(expired.id).await;
    db.repo.create(&laptop(neighbour)).await.unwrap();

    assert_eq!(
        db.repo.revoke_all(user).await.unwrap(),
        4,
        "expired ones go too"
    );
    assert_eq!(db.repo.count_live(user).await.unwrap(), 0);
    assert_eq!(db.repo.count_live(neighbour).await.unwrap(), 1);
    assert_eq!(db.repo.revoke_all(Uuid::new_v4()).await.unwrap(), 0);
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
async fn duplicate_token_hash_is_its_own_error_and_prints_no_secret() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let token = RefreshToken::generate().unwrap();
    db.repo
        .create_with_token(&laptop(user), &token)
        .await
        .unwrap();
    let err = db
        .repo
        .create_with_token(&laptop(user), &token)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateTokenHash), "{err:?}");
    let printed = format!("{err} {err:?}");
    assert!(!printed.contains(token.hash().as_str()) && !printed.contains(token.expose_secret()));
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
    let again = RefreshToken::generate().unwrap();
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
async fn token_hashes_from_elsewhere_are_validated() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, token) = db.repo.create(&laptop(user)).await.unwrap();
    let parsed = TokenHash::from_hex(token.hash().as_str()).unwrap();
    let found = db.repo.find_by_token_hash(&parsed).await.unwrap().unwrap();
    assert_eq!(found.id, session.id);
    assert!(matches!(
        TokenHash::from_hex(&token.hash().as_str().to_uppercase()),
        Err(Error::MalformedToken)
    ));
}
