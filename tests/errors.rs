//! Every error variant of the repository, against a real PostgreSQL: each failure is its own
//! variant, bad input is refused before the database, and no error prints a secret or a row.

mod common;

use std::time::{Duration, Instant};

use auth_sessions::{
    Error, InputProblem, MAX_DEVICE_INFO_CHARS, MAX_USER_AGENT_CHARS, NewSession, PoolSettings,
    SessionRepo, build_pool,
};
use common::TestDb;
use common::fixtures::{DAY, laptop};
use common::outcomes::rotated;
use uuid::Uuid;

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
