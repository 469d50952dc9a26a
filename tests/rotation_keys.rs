//! Where rotation keys come from and how they change: read without writing, versioned keys that
//! every instance picks up without a restart, and keys that a copy of the database does not
//! reveal when they are wrapped.

mod common;

use std::time::Duration;

use auth_sessions::{
    DatabaseKeys, Error, KeyRing, KeySource, NewSession, PoolSettings, Rotation, RotationKey,
    SessionPolicy, SessionRepo, Validation, WrappingKey, build_pool_with_config,
};
use common::TestDb;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn new_session(user: Uuid) -> NewSession {
    NewSession::new(user, DAY).with_device_info("laptop")
}

fn repo(db: &TestDb, source: KeySource) -> SessionRepo {
    SessionRepo::with_policy(
        db.pool.clone(),
        SessionPolicy::default().rotation_keys(source),
    )
    .expect("policy")
}

fn wrapping() -> WrappingKey {
    WrappingKey::from_bytes(b"the wrapping key, held outside the database").expect("key")
}

async fn rotated(
    repo: &SessionRepo,
    token: &auth_sessions::RefreshToken,
) -> auth_sessions::RefreshToken {
    match repo.rotate(token.expose_secret()).await.expect("rotate") {
        Rotation::Rotated { token, .. } => token,
        other => panic!("rotation: {other:?}"),
    }
}

async fn stored_keys(db: &TestDb) -> Vec<(i16, Vec<u8>, Option<Vec<u8>>)> {
    db.client()
        .await
        .query(
            "SELECT id, key, nonce FROM auth.rotation_keys ORDER BY id",
            &[],
        )
        .await
        .expect("read keys")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// `validate` is on the read path, which operators point at replicas: it used to load the key
/// kept by the database with `INSERT ... ON CONFLICT` every time a repository started, which a
/// hot standby or a read-only transaction refuses (SQLSTATE 25006). Now it reads, and writes
/// only when no key exists at all.
#[tokio::test]
async fn rotation_key_is_read_without_writing_on_a_read_only_connection() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let writer = repo(&db, KeySource::Database(DatabaseKeys::wrapped(wrapping())));
    let (session, token) = writer.create(&new_session(user)).await.expect("create");
    let next = rotated(&writer, &token).await;

    let mut config = db.config();
    config.options("-c default_transaction_read_only=on");
    let read_only = build_pool_with_config(config, &PoolSettings::default()).expect("pool");
    let reader = SessionRepo::with_policy(
        read_only,
        SessionPolicy::default()
            .rotation_keys(KeySource::Database(DatabaseKeys::wrapped(wrapping()))),
    )
    .expect("policy");
    let valid = reader.validate(next.expose_secret()).await;
    assert!(
        matches!(&valid, Ok(Validation::Valid(s)) if s.id == session.id),
        "{valid:?}"
    );
    assert!(matches!(
        reader.validate(token.expose_secret()).await,
        Ok(Validation::Valid(_))
    ));
    // With no key stored yet, the first use must write, and says why it cannot.
    let empty = TestDb::new().await;
    let mut config = empty.config();
    config.options("-c default_transaction_read_only=on");
    let read_only = build_pool_with_config(config, &PoolSettings::default()).expect("pool");
    let err = SessionRepo::new(read_only)
        .validate(next.expose_secret())
        .await
        .unwrap_err();
    let Error::Database(inner) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        inner.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
}

/// Changing the key logs nobody out, across instances that learn of it at different times:
/// `add_rotation_key` on one repository makes a new key active there; a second repository
/// that read the keys before verifies the tokens it signs at once, converges on the same
/// successor inside the grace window, keeps signing with the old key until it reads the keys
/// again, and reuse is still detected across the change. (Replacing the stored key used to log
/// a retried refresh out: `Unknown`.)
#[tokio::test]
async fn rotation_key_added_on_one_instance_logs_nobody_out_on_another() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let source = KeySource::Database(
        DatabaseKeys::wrapped(wrapping()).refresh_every(Duration::from_secs(3600)),
    );
    let first = repo(&db, source.clone());
    let second = repo(&db, source);
    let (session, t0) = first.create(&new_session(user)).await.expect("create");
    // The second instance reads the keys now (key 1 only), and keeps them for an hour.
    assert_eq!(second.rotation_key_ids().await.unwrap(), [1]);
    let t1 = rotated(&second, &t0).await;
    assert_eq!(t1.key_id(), 1);

    // The operator adds key 2 on the first instance; it signs with it at once.
    assert_eq!(first.add_rotation_key().await.expect("add key"), 2);
    assert_eq!(first.rotation_key_ids().await.unwrap(), [2, 1]);
    let t2 = rotated(&first, &t1).await;
    assert_eq!(t2.key_id(), 2);

    // The second instance has not read the keys again, yet verifies the new token (it reads
    // them when a token names a key it does not know)...
    assert!(matches!(
        second.validate(t2.expose_secret()).await.unwrap(),
        Validation::Valid(s) if s.id == session.id
    ));
    // ... and a refresh retried there inside the grace window gets the same successor.
    assert_eq!(rotated(&second, &t1).await, t2);
    let t3 = rotated(&second, &t2).await;
    assert_eq!(t3.key_id(), 2);

    // A third instance that started before the change and still signs with key 1.
    let third = repo(&db, KeySource::Database(DatabaseKeys::wrapped(wrapping())));
    let (other, o0) = third.create(&new_session(user)).await.expect("create");
    let o1 = rotated(&third, &o0).await;
    assert_eq!(o1.key_id(), 2, "a fresh instance signs with the newest key");

    // Old tokens signed by key 1, replayed after the change: reuse, and the session revoked.
    assert_eq!(
        first.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        second.validate(t3.expose_secret()).await.unwrap(),
        Validation::Revoked(auth_sessions::RevokeReason::TokenReused)
    );
    // The other session was never touched.
    assert!(matches!(
        first.validate(o1.expose_secret()).await.unwrap(),
        Validation::Valid(s) if s.id == other.id
    ));

    // Key 1 can be retired once no session holds a token it signed; the active key cannot.
    assert!(!first.retire_rotation_key(2).await.unwrap());
    assert!(first.retire_rotation_key(1).await.unwrap());
    assert_eq!(stored_keys(&db).await.len(), 1);
}

/// The production path: keys from the service's secret store. The database never holds one,
/// and a ring with a previous key verifies what that key signed, so a rolling change of keys
/// (add the new key as previous everywhere, then make it active) logs nobody out.
#[tokio::test]
async fn rotation_keys_from_a_secret_store_never_reach_the_database() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let old = RotationKey::new(1, b"key one from the secret store, 32+ bytes").unwrap();
    let new = RotationKey::new(2, b"key two from the secret store, 32+ bytes").unwrap();
    let before = repo(&db, KeySource::SecretStore(KeyRing::new(old.clone())));
    let (session, t0) = before.create(&new_session(user)).await.expect("create");
    let t1 = rotated(&before, &t0).await;

    // Step 1 on every instance: the new key verifies. Step 2: it signs.
    let during = repo(
        &db,
        KeySource::SecretStore(
            KeyRing::new(old.clone())
                .with_previous(new.clone())
                .unwrap(),
        ),
    );
    let after = repo(
        &db,
        KeySource::SecretStore(KeyRing::new(new).with_previous(old).unwrap()),
    );
    let t2 = rotated(&after, &t1).await;
    assert_eq!(t2.key_id(), 2);
    // A retry on an instance still signing with key 1, inside the grace window: same token.
    assert_eq!(rotated(&during, &t1).await, t2);
    assert!(matches!(
        during.validate(t2.expose_secret()).await.unwrap(),
        Validation::Valid(s) if s.id == session.id
    ));
    assert_eq!(stored_keys(&db).await, []);
    assert!(matches!(
        after.add_rotation_key().await,
        Err(Error::KeysNotInDatabase)
    ));
}

/// A read-only copy of the database (a backup, a replica, a role with `SELECT ON ALL TABLES`)
/// and any old token of a session: with keys in clear, the copy yields the key and the current
/// token follows at once (the development source's stated risk, shown here); with wrapped
/// keys, what the copy holds derives nothing, and a repository with another wrapping key, or
/// none, refuses the stored keys with a typed error.
#[tokio::test]
async fn rotation_key_wrapped_in_the_database_is_useless_to_a_copy() {
    for wrapped in [false, true] {
        let db = TestDb::new().await;
        let user = db.user().await;
        let keys = if wrapped {
            DatabaseKeys::wrapped(wrapping())
        } else {
            DatabaseKeys::unwrapped_for_development()
        };
        let service = repo(&db, KeySource::Database(keys));
        let (_, t0) = service.create(&new_session(user)).await.expect("create");
        let t1 = rotated(&service, &t0).await;

        let stored = stored_keys(&db).await;
        assert_eq!(stored.len(), 1);
        let (id, bytes, nonce) = &stored[0];
        assert_eq!(*id, 1);
        assert_eq!(nonce.is_some(), wrapped);
        // The attacker's derivation: the stored bytes as the key, applied to the old token.
        let derived = [&bytes[..], &bytes[..32]].map(|candidate| {
            RotationKey::from_bytes(candidate)
                .unwrap()
                .successor(&t0)
                .unwrap()
        });
        assert_eq!(
            derived.contains(&t1),
            !wrapped,
            "wrapped: {wrapped}: the copy derives the current token"
        );
    }

    // Keys sealed under one wrapping key: another, or none, cannot use them.
    let db = TestDb::new().await;
    let user = db.user().await;
    let service = repo(&db, KeySource::Database(DatabaseKeys::wrapped(wrapping())));
    let (_, token) = service.create(&new_session(user)).await.expect("create");
    for source in [
        DatabaseKeys::wrapped(WrappingKey::from_bytes(&[3; 32]).unwrap()),
        DatabaseKeys::unwrapped_for_development(),
    ] {
        let err = repo(&db, KeySource::Database(source))
            .validate(token.expose_secret())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::RotationKeyUnusable { id: 1, .. }),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains(token.expose_secret()));
    }
    // And keys stored in clear are refused where a wrapping key is configured.
    let plain = TestDb::new().await;
    let user = plain.user().await;
    let (_, token) = repo(
        &plain,
        KeySource::Database(DatabaseKeys::unwrapped_for_development()),
    )
    .create(&new_session(user))
    .await
    .expect("create");
    let err = repo(
        &plain,
        KeySource::Database(DatabaseKeys::wrapped(wrapping())),
    )
    .validate(token.expose_secret())
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::RotationKeyUnusable { id: 1, .. }),
        "{err:?}"
    );
}

/// Keys print no secret.
#[test]
fn rotation_key_sources_print_no_key() {
    let key = RotationKey::new(7, &[0x41; 32]).unwrap();
    let printed = format!(
        "{:?} {:?} {:?}",
        KeySource::SecretStore(KeyRing::new(key)),
        KeySource::Database(DatabaseKeys::wrapped(
            WrappingKey::from_bytes(&[0x42; 32]).unwrap()
        )),
        wrapping(),
    );
    assert!(printed.contains("active: 7"), "{printed}");
    for secret in [
        "AAAA",
        "4141",
        "65, 65",
        "66, 66",
        "BBBB",
        "wrapping key, held",
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
}
