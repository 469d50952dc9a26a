//! Several service instances on one database, and restarts: with the default policy (no key
//! configured) every instance derives the same successor, because the rotation key is kept by
//! the database. An instance is a separate process here (this test binary, run again), since
//! a key drawn per process would be shared by every repository of one process and hide the
//! failure.

mod common;

use std::process::Command;
use std::time::Duration;

use auth_sessions::{NewSession, PoolSettings, RefreshToken, Rotation, SessionRepo, build_pool};
use common::TestDb;

const URL_VAR: &str = "AUTH_SESSIONS_INSTANCE_URL";
const TOKEN_VAR: &str = "AUTH_SESSIONS_INSTANCE_TOKEN";

/// One instance: rotates the token it is given with the default policy and prints the outcome.
/// Run by the tests below as a separate process, never on its own.
#[tokio::test]
#[ignore = "an instance process started by the other tests"]
async fn instance_process() {
    let url = std::env::var(URL_VAR).expect("started by a test, with the database URL");
    let token = std::env::var(TOKEN_VAR).expect("started by a test, with a token");
    let pool = build_pool(&url, &PoolSettings::default()).expect("pool");
    let repo = SessionRepo::new(pool);
    match repo.rotate(&token).await.expect("rotate") {
        Rotation::Rotated { token, .. } => println!("ROTATED {}", token.expose_secret()),
        other => println!("OUTCOME {other:?}"),
    }
}

/// Rotates `token` in a new process, as another instance (or this one after a restart).
async fn rotate_in_another_process(url: String, token: String) -> Result<RefreshToken, String> {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe().expect("test binary"))
            .args(["instance_process", "--exact", "--ignored", "--nocapture"])
            .env(URL_VAR, url)
            .env(TOKEN_VAR, token)
            .output()
            .expect("start the instance")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "instance failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|line| line.starts_with("ROTATED ") || line.starts_with("OUTCOME "))
        .unwrap_or_else(|| panic!("no outcome printed: {stdout}"));
    match line.strip_prefix("ROTATED ") {
        Some(text) => Ok(RefreshToken::parse(text).expect("a token")),
        None => Err(line.to_owned()),
    }
}

#[tokio::test]
async fn two_processes_racing_one_refresh_converge_and_a_restart_retries_to_the_same_token() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, token) = db
        .repo
        .create(&NewSession::new(user, Duration::from_secs(3600)))
        .await
        .expect("create");

    // This process and another one refresh the same token at once.
    let here = {
        let repo = db.repo.clone();
        let text = token.expose_secret().to_owned();
        tokio::spawn(async move { repo.rotate(&text).await })
    };
    let there = rotate_in_another_process(db.url(), token.expose_secret().to_owned());
    let (here, there) = tokio::join!(here, there);
    let Rotation::Rotated { token: ours, .. } = here.expect("join").expect("rotate") else {
        panic!("this instance did not rotate");
    };
    let theirs = there.expect("the other instance rotated (or replayed the grace window)");
    assert_eq!(ours, theirs, "both instances hand out the same successor");

    // A new process (a restart) retrying the original token within the grace window.
    let retried = rotate_in_another_process(db.url(), token.expose_secret().to_owned())
        .await
        .expect("the retry is answered, not treated as theft");
    assert_eq!(retried, ours);

    let row = db
        .client()
        .await
        .query_one(
            "SELECT generation, revoked_at IS NULL FROM auth.user_sessions \
             WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.id],
        )
        .await
        .expect("read back");
    assert_eq!(row.get::<_, i32>(0), 1, "one rotation, not three");
    assert!(row.get::<_, bool>(1), "not revoked");
}

#[tokio::test]
async fn repositories_with_separate_pools_converge_on_one_successor() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (_, token) = db
        .repo
        .create(&NewSession::new(user, Duration::from_secs(3600)))
        .await
        .expect("create");
    // Eight instances, each with its own pool, none having loaded the key yet: they race to
    // store it as well as to rotate.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = common::pool_for(db.config(), &PoolSettings::default());
        let repo = SessionRepo::new(pool);
        let text = token.expose_secret().to_owned();
        tasks.push(tokio::spawn(async move { repo.rotate(&text).await }));
    }
    let mut successors = Vec::new();
    for task in tasks {
        match task.await.expect("join").expect("rotate") {
            Rotation::Rotated { token, .. } => successors.push(token),
            other => panic!("an instance failed to converge: {other:?}"),
        }
    }
    assert!(successors.windows(2).all(|pair| pair[0] == pair[1]));
    let keys: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM auth.rotation_keys", &[])
        .await
        .expect("count keys")
        .get(0);
    assert_eq!(keys, 1, "one key stored, whoever stored it");
}
