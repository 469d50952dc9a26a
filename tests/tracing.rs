//! Every repository call opens a span named after the operation with the rows it affected; no
//! span or event ever carries a token or its hash.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_sessions::{Error, NewSession, Rotation};
use common::TestDb;
use tracing_subscriber::fmt::format::FmtSpan;

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
async fn spans_name_the_operation_count_rows_and_time_it_without_secrets() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);

    let new = NewSession::new(user, Duration::from_secs(3600)).with_device_info("laptop");
    let (session, token) = db.repo.create(&new).await.unwrap();
    db.repo
        .find_by_token(token.expose_secret())
        .await
        .unwrap()
        .unwrap();
    db.repo.validate(token.expose_secret()).await.unwrap();
    let Rotation::Rotated { token: next, .. } =
        db.repo.rotate(token.expose_secret()).await.unwrap()
    else {
        panic!("rotation")
    };
    db.repo.list_devices(user).await.unwrap();
    db.repo.record_activity(session.key(), None).await.unwrap();
    db.repo.count_live(user).await.unwrap();
    // An error (the rotated token's session exists): its event must not carry the token or
    // its hash either.
    let err = db.repo.create_with_token(&new, &next).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateSession), "{err:?}");
    let stranger = db.repo.mint_token(user).await.unwrap();
    db.repo.create_with_token(&new, &stranger).await.unwrap();
    db.repo.revoke_all(user).await.unwrap();
    db.repo.delete_expired_batch(100).await.unwrap();
    drop(guard);

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    for (span, rows) in [
        ("create", "rows=1"),
        ("find_by_token", "rows=1"),
        ("validate", "rows=1"),
        ("rotate", "rows=1"),
        ("list_devices", "rows=1"),
        ("record_activity", "rows=1"),
        ("count_live", "rows=1"),
        ("revoke_all", "rows=2"),
        ("delete_expired_batch", "rows=0"),
    ] {
        let line = log
            .lines()
            .find(|line| {
                let named =
                    line.contains(&format!(" {span}{{")) || line.contains(&format!(":{span}{{"));
                named && line.contains("close")
            })
            .unwrap_or_else(|| panic!("no closed span {span} in\n{log}"));
        assert!(line.contains(rows), "{span}: {line}");
        assert!(line.contains("time.busy="), "{span} is timed: {line}");
    }
    assert!(
        log.contains("a session with this id already exists"),
        "{log}"
    );
    for token in [&token, &next, &stranger] {
        for secret in [token.expose_secret(), token.hash().as_str()] {
            assert!(!log.contains(secret), "a secret reached the log:\n{log}");
        }
    }
}

/// tokio-postgres logs every statement's bind parameters at debug level through the `log`
/// crate, which the command's subscriber forwards: whatever `RUST_LOG` says, none of it
/// reaches the output.
#[tokio::test]
async fn the_cli_logs_no_bind_parameters_whatever_rust_log_says() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let new = NewSession::new(user, Duration::from_secs(3600))
        .with_device_info("laptop")
        .with_ip_address("198.51.100.23".parse().unwrap())
        .with_user_agent("Secret-Agent/7.1");
    let (listed, listed_token) = db.repo.create(&new).await.unwrap();
    for filter in [
        "trace",
        "debug",
        "tokio_postgres=trace",
        "tokio_postgres::query=trace,auth_sessions=debug",
    ] {
        let (revoked, revoked_token) = db.repo.create(&new).await.unwrap();
        let run = |args: &[&str]| {
            let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("auth-sessions"))
                .env_remove("DATABASE_URL")
                .env("RUST_LOG", filter)
                .arg("--database-url")
                .arg(db.url())
                .args(args)
                .output()
                .unwrap();
            assert!(output.status.success(), "{filter} {args:?}: {output:?}");
            String::from_utf8_lossy(&output.stderr).into_owned()
        };
        let user_id = user.to_string();
        let log = run(&["--idle-timeout", "none", "list", "--user", &user_id])
            + &run(&[
                "revoke",
                "--user",
                &user_id,
                "--session",
                &revoked.id.to_string(),
            ]);
        if filter.contains("debug") || filter == "trace" {
            for span in ["list_devices", "revoke"] {
                assert!(
                    log.lines()
                        .any(|line| line.contains(&format!("{span}{{")) && line.contains("close")),
                    "{filter}: no closed span {span} in\n{log}"
                );
            }
        }
        for line in log.lines().filter(|line| line.contains("tokio_postgres")) {
            assert!(
                !line.contains("DEBUG") && !line.contains("TRACE"),
                "{filter}: tokio_postgres below info reached the output: {line}"
            );
        }
        for value in [
            listed.id.to_string(),
            revoked.id.to_string(),
            user_id.clone(),
            "198.51.100.23".to_owned(),
            "Secret-Agent".to_owned(),
            listed_token.hash().as_str().to_owned(),
            revoked_token.hash().as_str().to_owned(),
        ] {
            assert!(
                !log.contains(&value),
                "{filter}: a bound value ({value}) reached the log:\n{log}"
            );
        }
    }
}
