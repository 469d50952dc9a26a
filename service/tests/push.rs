//! Authorised requests checked from memory (`--session-check memory`, the default of `serve`),
//! every ending of a session pushed by the database: what two instances on one database see.

mod common;

use std::time::{Duration, Instant};

use auth_service::AppState;
use auth_sessions::{LiveStatus, SessionPolicy};
use common::{TestDb, http, login, me, settings, start_live};
use reqwest::StatusCode;
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(5);

async fn post(base: &str, path: &str, access: &str) -> StatusCode {
    http()
        .post(format!("{base}{path}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

fn status(state: &AppState) -> LiveStatus {
    state.live_sessions().expect("live sessions").status()
}

fn access(session: &Value) -> String {
    session["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn push_a_logout_on_one_instance_is_refused_by_the_other_from_memory() {
    let db = TestDb::new().await;
    db.user("pa@example.test").await;
    let (a, _) = start_live(db.pool.clone(), SessionPolicy::default(), settings(), BOUND).await;
    let (b, state_b) = start_live(
        db.another_pool(),
        SessionPolicy::default(),
        settings(),
        BOUND,
    )
    .await;
    let token = access(&login(&a, "pa@example.test").await);
    assert_eq!(me(&b, &token).await, StatusCode::OK);
    assert_eq!(me(&b, &token).await, StatusCode::OK);
    let before = status(&state_b);
    assert!(before.memory_answers >= 1, "the second request from memory");

    assert_eq!(post(&a, "/logout", &token).await, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + BOUND;
    while me(&b, &token).await == StatusCode::OK {
        assert!(Instant::now() < deadline, "b still accepts after the bound");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let after = status(&state_b);
    assert!(after.endings_heard > before.endings_heard, "heard by push");
    assert_eq!(
        after.database_answers, before.database_answers,
        "b refused it from memory, with no statement"
    );
    db.drop().await;
}

#[tokio::test]
async fn push_an_instances_own_revocations_are_refused_at_its_very_next_request() {
    let db = TestDb::new().await;
    db.user("po@example.test").await;
    let (a, state) = start_live(db.pool.clone(), SessionPolicy::default(), settings(), BOUND).await;
    let laptop = access(&login(&a, "po@example.test").await);
    let phone = access(&login(&a, "po@example.test").await);
    let tablet = access(&login(&a, "po@example.test").await);
    for token in [&laptop, &phone, &tablet] {
        assert_eq!(me(&a, token).await, StatusCode::OK);
        assert_eq!(me(&a, token).await, StatusCode::OK);
    }
    let warm = status(&state);

    // Not "eventually": the very next request, on the instance that made the change.
    assert_eq!(post(&a, "/logout", &tablet).await, StatusCode::NO_CONTENT);
    assert_eq!(me(&a, &tablet).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(&a, "/sessions/revoke-others", &laptop).await,
        StatusCode::OK
    );
    assert_eq!(me(&a, &phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&a, &laptop).await, StatusCode::OK);
    assert_eq!(
        post(&a, "/sessions/revoke-all", &laptop).await,
        StatusCode::OK
    );
    assert_eq!(me(&a, &laptop).await, StatusCode::UNAUTHORIZED);
    let after = status(&state);
    assert_eq!(
        after.endings_heard - warm.endings_heard,
        3,
        "each heard before the answer"
    );
    db.drop().await;
}

#[tokio::test]
async fn push_authorised_requests_from_memory_cost_no_statement_each() {
    const REQUESTS: u64 = 200;
    let db = TestDb::new().await;
    db.user("pm@example.test").await;
    let (a, state) = start_live(db.pool.clone(), SessionPolicy::default(), settings(), BOUND).await;
    let token = access(&login(&a, "pm@example.test").await);
    assert_eq!(me(&a, &token).await, StatusCode::OK);
    let live = state.live_sessions().unwrap();
    live.flush().await.unwrap();
    let before = live.status();
    for _ in 0..REQUESTS {
        assert_eq!(me(&a, &token).await, StatusCode::OK);
    }
    live.flush().await.unwrap();
    let after = live.status();
    assert_eq!(after.memory_answers - before.memory_answers, REQUESTS);
    assert_eq!(
        after.database_answers, before.database_answers,
        "no check read the database"
    );
    // The activity of all those requests: at most one statement, and none when the stored
    // activity was already recent.
    assert!(
        after.activity_batches - before.activity_batches <= 1,
        "{} activity statements for {REQUESTS} requests",
        after.activity_batches - before.activity_batches
    );
    db.drop().await;
}

#[tokio::test]
async fn push_revoking_through_the_state_is_reflected_by_its_next_authorisation_at_once() {
    let db = TestDb::new().await;
    db.user("ps@example.test").await;
    let (a, state) = start_live(db.pool.clone(), SessionPolicy::default(), settings(), BOUND).await;
    for round in 0..20 {
        let session = login(&a, "ps@example.test").await;
        let key = auth_sessions::SessionKey::new(
            session["user_id"].as_str().unwrap().parse().unwrap(),
            session["session_id"].as_str().unwrap().parse().unwrap(),
        );
        state.authorise(key, None).await.expect("live");
        state.authorise(key, None).await.expect("live, from memory");
        // No request in between for the push to arrive: the revocation waits for it.
        assert!(state.revoke(key).await.unwrap());
        assert!(
            state.authorise(key, None).await.is_err(),
            "round {round}: accepted right after its own revocation"
        );
    }
    db.drop().await;
}
