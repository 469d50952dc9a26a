//! The service's logger as `auth-service` installs it: `RUST_LOG=debug` must not print the
//! bind parameters tokio-postgres logs at debug level (e-mail addresses, password hashes,
//! token hashes, user and session ids).

mod common;

use common::{PASSWORD, TestDb};

#[tokio::test]
async fn debug_logging_prints_no_bind_parameters() {
    let db = TestDb::new().await;
    let email = "bind-parameter-canary@example.test";
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "debug")
        .env("AUTH_SERVICE_PASSWORD", PASSWORD)
        .args(["--database-url", &db.url, "create-user", "--email", email])
        .args(["--argon2-m-kib", "8", "--argon2-t", "1", "--argon2-p", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The address went to the database as a bind parameter of the insert.
    assert!(stdout.contains(email), "{stdout}");
    assert!(
        db.client()
            .await
            .query_opt("SELECT 1 FROM auth.users WHERE email = $1", &[&email])
            .await
            .unwrap()
            .is_some()
    );
    // The logger is on (the service's own info line), and tokio-postgres does not reach it at
    // debug, where it prints every statement with its bind parameters.
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|line| line.contains("DEBUG") && line.contains("tokio_postgres")),
        "{stderr}"
    );
    for secret in [email, "$argon2id$", "parameters"] {
        assert!(
            !stderr.contains(secret),
            "debug logging printed {secret:?}:\n{stderr}"
        );
    }
    db.drop().await;
}

/// Starting again on a migrated database logs none of PostgreSQL's NOTICEs (`IF NOT EXISTS`
/// of the migrations and the like) at INFO.
#[tokio::test]
async fn a_second_start_logs_no_server_notices() {
    let db = TestDb::new().await;
    let mut stderr = String::new();
    for _ in 0..2 {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info")
            .args(["--database-url", &db.url, "migrate"])
            .output()
            .unwrap();
        assert!(output.status.success());
        stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    }
    assert!(!stderr.contains("NOTICE"), "{stderr}");
    db.drop().await;
}
