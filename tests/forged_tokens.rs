//! Tokens that were forged or tampered with, against a real PostgreSQL: a token the server did
//! not issue, one whose user id was altered, or one at the last generation is unknown, and
//! changes nothing.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use auth_sessions::{RefreshToken, Rotation, SessionKey, Validation};
use common::TestDb;
use common::fixtures::{laptop, stored_key};
use common::outcomes::{all_rows, assert_unknown_and_inert, rotated};
use tokens::{Fields, with_other_user};
use uuid::Uuid;

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
