//! Two instances of the service (two apps, two pools) on one database.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use auth_sessions::SessionPolicy;
use common::{TestDb, http, login, me, settings, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn two_instances(db: &TestDb) -> (String, String) {
    let (a, _) = start(db.pool.clone(), SessionPolicy::default(), settings()).await;
    let (b, _) = start(db.another_pool(), SessionPolicy::default(), settings()).await;
    (a, b)
}

async fn refresh(base: &str, token: &str) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{base}/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn concurrent_refreshes_on_both_instances_converge_on_one_token() {
    let db = TestDb::new().await;
    db.user("gu@example.test").await;
    let (a, b) = two_instances(&db).await;
    for round in 0..5 {
        let session = login(&a, "gu@example.test").await;
        let token = session["refresh_token"].as_str().unwrap().to_owned();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let base = if i % 2 == 0 { a.clone() } else { b.clone() };
                let token = token.clone();
                tokio::spawn(async move { refresh(&base, &token).await })
            })
            .collect();
        let mut tokens = BTreeSet::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "round {round}: {body}");
            tokens.insert(body["refresh_token"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            tokens.len(),
            1,
            "round {round}: every caller gets the same new token"
        );
        let new = tokens.into_iter().next().unwrap();
        assert_ne!(new, token);
        // The new token works on either instance.
        let (status, _) = refresh(&b, &new).await;
        assert_eq!(status, StatusCode::OK);
    }
    db.drop().await;
}

#[tokio::test]
async fn a_refresh_retried_on_the_other_instance_gets_the_same_answer() {
    let db = TestDb::new().await;
    db.user("ha@example.test").await;
    let (a, b) = two_instances(&db).await;
    let session = login(&a, "ha@example.test").await;
    let token = session["refresh_token"].as_str().unwrap();
    let (status, first) = refresh(&a, token).await;
    assert_eq!(status, StatusCode::OK);
    // The answer was "lost": the client retries on B, within the grace window (10 s).
    let (status, retry) = refresh(&b, token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["refresh_token"], retry["refresh_token"]);
    assert_eq!(first["session_id"], retry["session_id"]);
    assert_eq!(
        me(&b, retry["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    db.drop().await;
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_refused_by_the_other_at_the_next_request() {
    let db = TestDb::new().await;
    db.user("io@example.test").await;
    let (a, b) = two_instances(&db).await;
    let mut waits = Vec::new();
    for _ in 0..10 {
        let victim = login(&a, "io@example.test").await;
        let keeper = login(&b, "io@example.test").await;
        let access = victim["access_token"].as_str().unwrap();
        assert_eq!(me(&b, access).await, StatusCode::OK);
        let start = Instant::now();
        let response = http()
            .delete(format!(
                "{a}/sessions/{}",
                victim["session_id"].as_str().unwrap()
            ))
            .bearer_auth(keeper["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        // The very next request on B is refused: no cache to wait for.
        assert_eq!(me(&b, access).await, StatusCode::UNAUTHORIZED);
        waits.push(start.elapsed());
        // And B refuses its refresh token too.
        let (status, body) = refresh(&b, victim["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "revoked");
    }
    waits.sort();
    eprintln!(
        "revoke on A until B refuses: max {:?}",
        waits.last().unwrap()
    );
    assert!(*waits.last().unwrap() < Duration::from_secs(5));
    db.drop().await;
}
