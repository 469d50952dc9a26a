//! Secrets stay out of logs, `Debug` output and error bodies; a reused refresh token is logged
//! as a security event. Its own test binary: it installs the process's log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_sessions::SessionPolicy;
use common::{PASSWORD, SECRET, TestDb, http, settings, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn reuse_is_a_security_event_and_no_secret_is_logged() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace,tokio_postgres=debug,hyper=info,h2=info,reqwest=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let db = TestDb::new().await;
    db.user("ki@example.test").await;
    let policy = SessionPolicy::default().rotation_grace(Duration::from_secs(1));
    let (base, state) = start(db.pool.clone(), policy, settings()).await;

    let response = http()
        .post(format!("{base}/login"))
        .json(&json!({"email": "ki@example.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let session: Value = response.json().await.unwrap();
    let first = session["refresh_token"].as_str().unwrap().to_owned();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let rotated: Value = http()
        .post(format!("{base}/refresh"))
        .json(&json!({"refresh_token": first}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    http()
        .get(format!("{base}/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    // A wrong password (its text must not be logged either).
    let wrong = "a-wrong-password-that-must-not-be-logged";
    let response = http()
        .post(format!("{base}/login"))
        .json(&json!({"email": "ki@example.test", "password": wrong}))
        .send()
        .await
        .unwrap();
    let failure = response.text().await.unwrap();
    assert!(!failure.contains(wrong));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = http()
        .post(format!("{base}/refresh"))
        .json(&json!({"refresh_token": first}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = response.text().await.unwrap();
    assert!(body.contains("token_reused"));
    assert!(!body.contains(&first));

    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let event = text
        .lines()
        .find(|line| line.contains("suspected theft"))
        .unwrap_or_else(|| panic!("no reuse event in the logs:\n{text}"));
    assert!(
        event.contains("WARN") && event.contains("security"),
        "{event}"
    );
    assert!(event.contains(session["session_id"].as_str().unwrap()));
    for secret in [
        first.as_str(),
        second.as_str(),
        access.as_str(),
        PASSWORD,
        wrong,
        SECRET,
    ] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
    // Debug output of the state's parts prints no secret.
    let debug = format!(
        "{:?} {:?} {:?}",
        state.settings, state.tokens, state.passwords
    );
    assert!(!debug.contains(SECRET));
    assert!(debug.contains("[redacted]"));
    db.drop().await;
}
