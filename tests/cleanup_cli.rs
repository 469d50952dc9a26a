//! The command's cleanup (`auth-sessions cleanup`): idle sessions under `--idle-timeout`, the
//! background mode that survives failed batches and exits after five in a row, and the
//! tombstone retention it requires.

mod common;

use std::time::Duration;

use common::TestDb;
use common::cleanup::{ids, live_sessions, sql};
use common::running::Running;
use uuid::Uuid;

fn cli(db: &TestDb) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("auth-sessions").unwrap();
    cmd.env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .arg("--database-url")
        .arg(db.url());
    cmd.timeout(Duration::from_secs(60));
    cmd
}

#[tokio::test]
async fn the_cli_cleanup_deletes_idle_sessions_under_its_idle_timeout() {
    let db = TestDb::new().await;
    let idle = live_sessions(&db, 5).await;
    let live = live_sessions(&db, 3).await;
    sql(
        &db,
        "UPDATE auth.user_sessions SET last_active_at = now() - interval '2 hours' \
         WHERE id = ANY($1)",
        &ids(&idle),
    )
    .await;

    let stdout = |output: std::process::Output| {
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // A 14-day idle timeout (the library's default) leaves them.
    let text = stdout(
        cli(&db)
            .args(["cleanup", "--idle-timeout", "14days", "--batch-size", "2"])
            .args(["--tombstone-retention", "7days"])
            .output()
            .unwrap(),
    );
    // Eight sessions, two examined per batch.
    assert!(
        text.contains("deleted 0 session(s) in 4 batch(es)"),
        "{text}"
    );
    assert_eq!(db.session_rows().await, 8);

    // `--idle-timeout 1h` deletes them, in batches of two.
    let text = stdout(
        cli(&db)
            .args(["--idle-timeout", "1h", "cleanup", "--batch-size", "2"])
            .args(["--tombstone-retention", "7days"])
            .output()
            .unwrap(),
    );
    assert!(
        text.contains("deleted 5 session(s) in 4 batch(es)"),
        "{text}"
    );
    assert_eq!(db.session_rows().await, 3);
    for token in &live {
        assert!(
            db.repo
                .find_by_token(token.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
    }
    // `--idle-timeout none` after the cleanup: nothing left to delete.
    let text = stdout(
        cli(&db)
            .args(["cleanup", "--idle-timeout", "none"])
            .args(["--tombstone-retention", "7days"])
            .output()
            .unwrap(),
    );
    assert!(text.contains("deleted 0 session(s)"), "{text}");
    assert_eq!(db.session_rows().await, 3);
}

/// How long the background command may take to exit before the test fails.
const DAEMON_DEADLINE: Duration = Duration::from_secs(30);

/// Five sessions idle for two hours and three live ones; returns the idle ones' ids.
async fn idle_and_live(db: &TestDb) -> Vec<Uuid> {
    let idle = ids(&live_sessions(db, 5).await);
    live_sessions(db, 3).await;
    sql(
        db,
        "UPDATE auth.user_sessions SET last_active_at = now() - interval '2 hours' \
         WHERE id = ANY($1)",
        &idle,
    )
    .await;
    idle
}

/// Starts a transaction that holds the lock of one of these sessions: a cleanup statement
/// that reaches it waits, and fails at its statement timeout.
async fn hold_one(client: &mut tokio_postgres::Client, ids: &[Uuid]) {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT 1 FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
            &[&ids[0]],
        )
        .await
        .unwrap();
}

const DAEMON_ARGS: &[&str] = &[
    "cleanup",
    "--idle-timeout",
    "1h",
    "--tombstone-retention",
    "7days",
    "--every",
    "100ms",
    "--statement-timeout",
    "100ms",
];

#[tokio::test]
async fn idle_cleanup_daemon_survives_failed_batches() {
    let db = TestDb::new().await;
    let idle = idle_and_live(&db).await;
    let mut holder = db.client().await;
    hold_one(&mut holder, &idle).await;

    let mut daemon = Running::spawn(&db, DAEMON_ARGS);
    daemon
        .wait_for("two failed batches", |_, err| {
            err.matches("cleanup batch failed").count() >= 2
        })
        .await;
    // The database answers again: the next round deletes the idle sessions.
    holder.batch_execute("ROLLBACK").await.unwrap();
    let deadline = tokio::time::Instant::now() + DAEMON_DEADLINE;
    while db.session_rows().await > 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle sessions were never deleted: {:?}",
            daemon.output()
        );
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "the daemon exited: {:?}",
            daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.interrupt();
    let status = daemon.exit_status(DAEMON_DEADLINE).await;
    let (out, err) = daemon.output();
    assert!(status.success(), "{status:?}\n{out}\n{err}");
    assert!(
        out.contains("interrupted: stopped after the current batch"),
        "{out}"
    );
}

#[tokio::test]
async fn idle_cleanup_daemon_exits_after_5_failed_batches_in_a_row() {
    let db = TestDb::new().await;
    let idle = idle_and_live(&db).await;
    let mut holder = db.client().await;
    hold_one(&mut holder, &idle).await;

    let mut daemon = Running::spawn(&db, DAEMON_ARGS);
    let status = daemon.exit_status(DAEMON_DEADLINE).await;
    let (out, err) = daemon.output();
    assert_eq!(status.code(), Some(1), "{status:?}\n{out}\n{err}");
    assert_eq!(
        err.matches("cleanup batch failed").count(),
        5,
        "one line per failure:\n{err}"
    );
    assert!(err.contains("5 failed batches in a row"), "{err}");
    holder.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn idle_cleanup_cli_requires_the_tombstone_retention() {
    let db = TestDb::new().await;
    let refused = cli(&db)
        .args(["cleanup", "--idle-timeout", "14days"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--tombstone-retention"), "{err}");
}
