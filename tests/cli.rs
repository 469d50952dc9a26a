//! The `auth-sessions` command-line tool, end to end against a real PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use assert_cmd::Command;
use auth_sessions::NewSession;
use common::TestDb;
use common::running::{DEADLINE, Running};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn cli(db: &TestDb) -> Command {
    let mut cmd = Command::cargo_bin("auth-sessions").unwrap();
    cmd.env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .arg("--database-url")
        .arg(db.url());
    cmd.timeout(Duration::from_secs(60));
    cmd
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn migrate_reports_what_it_applied_and_status_lists_pending() {
    let db = common::EmptyDb::new("cli_migrate").await;
    let url = db.url();
    let run = |args: &[&str]| {
        let mut cmd = Command::cargo_bin("auth-sessions").unwrap();
        cmd.env_remove("DATABASE_URL")
            .env("DATABASE_URL", &url)
            .args(args);
        cmd.output().unwrap()
    };
    let status = run(&["migrate", "--status"]);
    assert!(status.status.success(), "{status:?}");
    let text = stdout(&status);
    assert_eq!(
        text.matches("pending").count(),
        auth_sessions::MIGRATIONS.len(),
        "{text}"
    );

    let applied = run(&["migrate"]);
    assert!(applied.status.success());
    let text = stdout(&applied);
    assert!(
        text.contains("applied 001_foundation") && text.contains("applied 010_session_lifecycle"),
        "{text}"
    );
    let count = auth_sessions::MIGRATIONS.len();
    assert!(
        text.contains(&format!("{count} applied, 0 already applied")),
        "{text}"
    );

    let again = stdout(&run(&["migrate"]));
    assert!(
        again.contains(&format!("0 applied, {count} already applied")),
        "{again}"
    );
    let status = stdout(&run(&["migrate", "--status"]));
    assert_eq!(status.matches("applied 20").count(), count, "{status}");
    assert!(!status.contains("pending"));

    db.drop_now().await;
}

#[tokio::test]
async fn list_and_revoke_print_readable_tables_without_secrets() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let mut sessions = Vec::new();
    for device in ["Firefox on Linux", "iPhone app", "Chrome on Windows"] {
        let new = NewSession::new(user, DAY)
            .with_device_info(device)
            .with_ip_address("2001:db8::7".parse().unwrap())
            .with_user_agent("Secret-Agent/1.0");
        sessions.push(db.repo.create(&new).await.unwrap());
    }
    // An expired session: never listed, and left to cleanup by every kind of revoke.
    let (expired, _) = db
        .repo
        .create(&NewSession::new(user, DAY).with_device_info("Old tablet"))
        .await
        .unwrap();
    db.expire(expired.id).await;

    let list = cli(&db)
        .args(["list", "--user", &user.to_string()])
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = stdout(&list);
    assert!(
        text.contains("SESSION") && text.contains("DEVICE") && text.contains("iPhone app"),
        "{text}"
    );
    assert!(
        text.contains("2001:db8::7") && text.contains("3 live session(s)"),
        "{text}"
    );
    for (session, token) in &sessions {
        assert!(text.contains(&session.id.to_string()));
        assert!(!text.contains(token.hash().as_str()) && !text.contains(token.expose_secret()));
    }
    assert!(
        !text.contains("Secret-Agent"),
        "no raw user agent in listings"
    );
    assert!(
        !text.contains(&expired.id.to_string()) && !text.contains("Old tablet"),
        "{text}"
    );

    let one = cli(&db)
        .args([
            "revoke",
            "--user",
            &user.to_string(),
            "--session",
            &sessions[0].0.id.to_string(),
        ])
        .output()
        .unwrap();
    assert!(one.status.success());
    assert!(stdout(&one).contains("revoked 1 session"));

    let wrong_user = cli(&db)
        .args([
            "revoke",
            "--user",
            &Uuid::new_v4().to_string(),
            "--session",
            &sessions[1].0.id.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(wrong_user.status.code(), Some(4), "nothing matched");
    assert_eq!(db.repo.count_live(user).await.unwrap(), 2);

    // A mistyped session to keep revokes nothing and says so.
    let typo = cli(&db)
        .args([
            "revoke",
            "--user",
            &user.to_string(),
            "--all-except",
            &Uuid::new_v4().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(4), "{typo:?}");
    assert!(String::from_utf8_lossy(&typo.stderr).contains("nothing revoked"));
    assert_eq!(db.repo.count_live(user).await.unwrap(), 2);

    let others = cli(&db)
        .args([
            "revoke",
            "--user",
            &user.to_string(),
            "--all-except",
            &sessions[1].0.id.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&others).contains("revoked 1 session(s)"),
        "{others:?}"
    );
    let all = cli(&db)
        .args(["revoke", "--user", &user.to_string(), "--all"])
        .output()
        .unwrap();
    assert!(stdout(&all).contains("revoked 1 session(s)"), "{all:?}");
    assert_eq!(db.repo.count_live(user).await.unwrap(), 0);
    let expired_revoked_at: Option<chrono::DateTime<chrono::Utc>> = db
        .client()
        .await
        .query_one(
            "SELECT revoked_at FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&user, &expired.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        expired_revoked_at, None,
        "revoking never touches expired sessions"
    );
}

#[tokio::test]
async fn cleanup_deletes_in_batches_and_stats_count_by_state() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let mut expired = Vec::new();
    for _ in 0..7 {
        expired.push(
            db.repo
                .create(&NewSession::new(user, DAY))
                .await
                .unwrap()
                .0
                .id,
        );
    }
    for id in &expired {
        db.expire(*id).await;
    }
    let (live, _) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let (revoked, _) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert!(db.repo.revoke(revoked.key()).await.unwrap());

    let stats = stdout(
        &cli(&db)
            .args(["--idle-timeout", "14days", "stats"])
            .output()
            .unwrap(),
    );
    for line in [
        "sessions total        9",
        "  live                1",
        "  expired             7",
        "  revoked             1",
        "users with sessions   1",
        "largest per-user live 1",
    ] {
        assert!(stats.contains(line), "missing {line:?} in\n{stats}");
    }
    assert!(stats.contains("table size") && stats.contains("bytes)"));

    let cleanup = cli(&db)
        .args(["cleanup", "--idle-timeout", "14days", "--batch-size", "3"])
        .args(["--tombstone-retention", "7days"])
        .output()
        .unwrap();
    assert!(cleanup.status.success(), "{cleanup:?}");
    let text = stdout(&cleanup);
    assert!(
        text.contains("deleted 7 session(s) in 3 batch(es)"),
        "{text}"
    );
    assert_eq!(db.session_rows().await, 2);
    assert!(
        db.repo
            .find_by_token(db.repo.mint_token(user).await.unwrap().expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(db.repo.count_live(user).await.unwrap(), 1);
    assert!(
        db.repo
            .list_devices(user)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == live.id)
    );
}

/// Moves a session's last activity `days` days into the past (database clock).
async fn make_idle(db: &TestDb, session_id: Uuid, days: i32) {
    let updated = db
        .client()
        .await
        .execute(
            "UPDATE auth.user_sessions SET created_at = now() - make_interval(days => $2), \
             last_active_at = now() - make_interval(days => $2) WHERE id = $1",
            &[&session_id, &days],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
}

#[tokio::test]
async fn cleanup_refuses_to_guess_the_idle_timeout() {
    let db = TestDb::new().await;
    let user = db.user().await;
    // Idle for 20 days: dead under the library's default 14 days, alive in a service with a
    // 30-day idle timeout or none.
    let (idle, _) = db
        .repo
        .create(&NewSession::new(user, DAY * 60))
        .await
        .unwrap();
    make_idle(&db, idle.id, 20).await;

    let refused = cli(&db).arg("cleanup").output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        stderr.starts_with("error:")
            && stderr.contains("--idle-timeout")
            && stderr.contains("none")
            && stderr.contains("--help"),
        "{stderr}"
    );
    assert_eq!(db.session_rows().await, 1, "nothing deleted");

    let none = cli(&db)
        .args([
            "cleanup",
            "--idle-timeout",
            "none",
            "--tombstone-retention",
            "7days",
        ])
        .output()
        .unwrap();
    assert!(stdout(&none).contains("deleted 0 session(s)"), "{none:?}");
    let longer = cli(&db)
        .args([
            "--idle-timeout",
            "30days",
            "cleanup",
            "--tombstone-retention",
            "7days",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&longer).contains("deleted 0 session(s)"),
        "{longer:?}"
    );
    assert_eq!(db.session_rows().await, 1);

    let shorter = cli(&db)
        .args([
            "cleanup",
            "--idle-timeout",
            "14days",
            "--tombstone-retention",
            "7days",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&shorter).contains("deleted 1 session(s)"),
        "{shorter:?}"
    );
    assert_eq!(db.session_rows().await, 0);
}

#[tokio::test]
async fn list_and_stats_without_an_idle_timeout_hide_no_session_and_say_so() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (idle, _) = db
        .repo
        .create(&NewSession::new(user, DAY * 60).with_device_info("idle tablet"))
        .await
        .unwrap();
    make_idle(&db, idle.id, 20).await;
    db.repo
        .create(&NewSession::new(user, DAY).with_device_info("phone"))
        .await
        .unwrap();
    let user = user.to_string();

    let stats = cli(&db).arg("stats").output().unwrap();
    assert!(stats.status.success(), "{stats:?}");
    assert!(
        stdout(&stats).contains("  live                2"),
        "{stats:?}"
    );
    let note = String::from_utf8_lossy(&stats.stderr);
    assert!(
        note.contains("note:") && note.contains("--idle-timeout"),
        "{note}"
    );
    let list = cli(&db).args(["list", "--user", &user]).output().unwrap();
    let text = stdout(&list);
    assert!(
        text.contains("idle tablet") && text.contains("2 live session(s)"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&list.stderr).contains("--idle-timeout"));

    let stats = cli(&db)
        .args(["--idle-timeout", "14days", "stats"])
        .output()
        .unwrap();
    assert!(
        stdout(&stats).contains("  live                1"),
        "{stats:?}"
    );
    assert!(stats.stderr.is_empty(), "{stats:?}");
    let list = cli(&db)
        .args(["list", "--user", &user, "--idle-timeout", "14days"])
        .output()
        .unwrap();
    let text = stdout(&list);
    assert!(
        !text.contains("idle tablet") && text.contains("1 live session(s)"),
        "{text}"
    );
    assert!(list.stderr.is_empty(), "{list:?}");
}

#[tokio::test]
async fn cleanup_keeps_tombstones_for_the_given_retention() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, _) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert!(db.repo.revoke(session.key()).await.unwrap());
    db.client()
        .await
        .execute(
            "UPDATE auth.user_sessions SET created_at = now() - interval '3 hours', \
             revoked_at = now() - interval '2 hours' WHERE id = $1",
            &[&session.id],
        )
        .await
        .unwrap();

    // The library's default retention (7 days) keeps it.
    let default = cli(&db)
        .args([
            "cleanup",
            "--idle-timeout",
            "none",
            "--tombstone-retention",
            "7days",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&default).contains("deleted 0 session(s)"),
        "{default:?}"
    );
    let longer = cli(&db)
        .args([
            "cleanup",
            "--idle-timeout",
            "none",
            "--tombstone-retention",
            "3h",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&longer).contains("deleted 0 session(s)"),
        "{longer:?}"
    );
    assert_eq!(db.session_rows().await, 1);
    let shorter = cli(&db)
        .args([
            "cleanup",
            "--idle-timeout",
            "none",
            "--tombstone-retention",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        stdout(&shorter).contains("deleted 1 session(s)"),
        "{shorter:?}"
    );
    assert_eq!(db.session_rows().await, 0);
}

#[tokio::test]
async fn a_statement_stuck_on_a_lock_ends_at_the_statement_timeout() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, _) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    let holder = db.client().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM auth.user_sessions WHERE user_id = $1 AND id = $2 FOR UPDATE",
            &[&user, &session.id],
        )
        .await
        .unwrap();

    let started = Instant::now();
    let revoke = cli(&db)
        .args([
            "--statement-timeout",
            "300ms",
            "revoke",
            "--user",
            &user.to_string(),
            "--session",
            &session.id.to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&revoke.stderr);
    assert_eq!(revoke.status.code(), Some(1), "{revoke:?}");
    assert!(stderr.contains("statement timeout"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(db.repo.count_live(user).await.unwrap(), 1, "not revoked");
}

#[tokio::test]
async fn cleanup_every_stops_cleanly_on_interrupt() {
    let db = TestDb::new().await;
    let mut running = Running::spawn(
        &db,
        &[
            "cleanup",
            "--idle-timeout",
            "none",
            "--tombstone-retention",
            "7days",
            "--every",
            "100ms",
        ],
    );
    // Two rounds have run (so the Ctrl-C handler is in place and the loop repeats).
    running
        .wait_for("two cleanup rounds", |out, _| {
            out.matches("deleted 0 session(s)").count() >= 2
        })
        .await;
    running.interrupt();
    let status = running.exit_status(Duration::from_secs(10)).await;
    let (out, err) = running.output();
    assert!(status.success(), "{status:?}\n{out}\n{err}");
    assert!(
        out.contains("interrupted: stopped after the current batch"),
        "{out}"
    );
    assert!(err.contains("Ctrl-C again to exit at once"), "{err}");
}

#[tokio::test]
async fn a_second_interrupt_exits_at_once_with_130() {
    let db = TestDb::new().await;
    let user = db.user().await;
    let (session, _) = db.repo.create(&NewSession::new(user, DAY)).await.unwrap();
    db.expire(session.id).await;
    // Hold the expired row's lock: the cleanup batch waits on it and cannot finish.
    let holder = db.client().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM auth.user_sessions WHERE user_id = $1 AND id = $2 FOR UPDATE",
            &[&user, &session.id],
        )
        .await
        .unwrap();

    let mut running = Running::spawn(
        &db,
        &[
            "cleanup",
            "--idle-timeout",
            "none",
            "--tombstone-retention",
            "7days",
        ],
    );
    let observer = db.client().await;
    let started = Instant::now();
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the cleanup batch never waited on the held row: {:?}",
            running.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The first Ctrl-C asks the running batch to finish; it cannot, so the command waits.
    running.interrupt();
    running
        .wait_for("the first interrupt's notice", |_, err| {
            err.contains("Ctrl-C again to exit at once")
        })
        .await;
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "the first Ctrl-C lets the batch finish: {:?}",
        running.output()
    );
    // The second one exits at once, batch or not.
    running.interrupt();
    let status = running.exit_status(Duration::from_secs(5)).await;
    assert_eq!(
        status.code(),
        Some(130),
        "{status:?} {:?}",
        running.output()
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    const USER: &str = "00000000-0000-0000-0000-000000000000";
    for (args, names) in [
        (&["revoke", "--user", "not-a-uuid", "--all"][..], "--user"),
        (&["revoke", "--user", USER][..], "--session"),
        (
            &["revoke", "--user", USER, "--all", "--session", USER][..],
            "--all",
        ),
        (
            &["cleanup", "--idle-timeout", "none", "--batch-size", "0"][..],
            "--batch-size",
        ),
        (
            &["cleanup", "--idle-timeout", "none", "--every", "soon"][..],
            "--every",
        ),
        (&["frobnicate"][..], "frobnicate"),
        // No idle timeout: cleanup would have to guess which sessions the service accepts.
        (&["cleanup"][..], "--idle-timeout"),
        (&["cleanup", "--batch-size", "10"][..], "--idle-timeout"),
        // Policies outside their ranges, refused before any statement.
        (
            &["--idle-timeout", "1000years", "stats"][..],
            "--idle-timeout",
        ),
        (
            &[
                "cleanup",
                "--idle-timeout",
                "0s",
                "--tombstone-retention",
                "7days",
            ][..],
            "--idle-timeout",
        ),
        // No tombstone retention: cleanup would delete tombstones the service still keeps.
        (
            &["cleanup", "--idle-timeout", "14days"][..],
            "--tombstone-retention",
        ),
        (
            &[
                "cleanup",
                "--idle-timeout",
                "none",
                "--tombstone-retention",
                "11years",
            ][..],
            "--tombstone-retention",
        ),
        (
            &["cleanup", "--idle-timeout", "none", "--every", "0s"][..],
            "--every",
        ),
        (
            &["--statement-timeout", "0s", "stats"][..],
            "--statement-timeout",
        ),
        (
            &["--statement-timeout", "soon", "stats"][..],
            "--statement-timeout",
        ),
    ] {
        // An unreachable server: a usage error is reported before any connection.
        let output = Command::cargo_bin("auth-sessions")
            .unwrap()
            .env_remove("RUST_LOG")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error:") && stderr.contains("--help") && stderr.contains(names),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_dead_server_or_a_malformed_url_exit_3_with_a_clear_message() {
    for (url, expected) in [
        (
            "postgres://postgres@127.0.0.1:1/postgres",
            "cannot connect to the database",
        ),
        (
            "postgres://host:notaport/db",
            "invalid database configuration",
        ),
    ] {
        for command in [
            &["stats"][..],
            &["migrate"][..],
            &["list", "--user", "00000000-0000-0000-0000-000000000000"][..],
        ] {
            let output = Command::cargo_bin("auth-sessions")
                .unwrap()
                .env("DATABASE_URL", url)
                .env_remove("RUST_LOG")
                .args(command)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(3), "{command:?} {url}: {stderr}");
            assert!(
                stderr.starts_with(&format!("error: {expected}")),
                "{stderr}"
            );
            assert!(!stderr.contains("panicked"));
        }
    }
}

/// The documented procedure for keys kept by the database, from the command line: list (which
/// stores key 1 when there is none), add key 2 (it signs; a token signed by key 1 still
/// rotates), refuse to retire the active key, retire key 1. With a wrapping key the table holds
/// only sealed keys, and a repository with that wrapping key reads them.
#[tokio::test]
async fn rotation_key_commands_list_add_and_retire_wrapped_keys() {
    use base64::Engine as _;
    let db = TestDb::new().await;
    let wrapping = [0x17u8; 32];
    let encoded = base64::engine::general_purpose::STANDARD.encode(wrapping);
    let keys = |args: &[&str]| {
        let mut cmd = cli(&db);
        cmd.env("AUTH_SESSIONS_WRAPPING_KEY", &encoded)
            .arg("rotation-keys")
            .args(args);
        cmd.output().unwrap()
    };
    let listed = keys(&["list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(stdout(&listed), "1  active\n1 key(s)\n");

    let source = auth_sessions::KeySource::Database(auth_sessions::DatabaseKeys::wrapped(
        auth_sessions::WrappingKey::from_bytes(&wrapping).unwrap(),
    ));
    let repo = auth_sessions::SessionRepo::with_policy(
        db.pool.clone(),
        auth_sessions::SessionPolicy::default().rotation_keys(source),
    )
    .unwrap();
    let user = db.user().await;
    let (_, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();
    assert_eq!(token.key_id(), 1);

    let added = keys(&["add"]);
    assert!(added.status.success(), "{added:?}");
    assert_eq!(stdout(&added), "added key 2: it signs from now on\n");
    assert_eq!(stdout(&keys(&["list"])), "2  active\n1\n2 key(s)\n");
    // A repository that reads the keys now signs with key 2; the token signed by key 1 still
    // rotates there, and the first repository (which read the keys before) learns key 2 from
    // the successor.
    let later =
        auth_sessions::SessionRepo::with_policy(db.pool.clone(), repo.policy().clone()).unwrap();
    let auth_sessions::Rotation::Rotated { token: next, .. } =
        later.rotate(token.expose_secret()).await.unwrap()
    else {
        panic!("rotation")
    };
    assert_eq!(next.key_id(), 2);
    assert!(matches!(
        repo.validate(next.expose_secret()).await.unwrap(),
        auth_sessions::Validation::Valid(_)
    ));

    let refused = keys(&["retire", "2"]);
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    let retired = keys(&["retire", "1"]);
    assert!(retired.status.success(), "{retired:?}");
    assert_eq!(stdout(&keys(&["list"])), "2  active\n1 key(s)\n");

    // Only sealed keys in the table; without the wrapping key they cannot be used.
    let nonces: Vec<Option<Vec<u8>>> = db
        .client()
        .await
        .query("SELECT nonce FROM auth.rotation_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(nonces.iter().all(Option::is_some), "{nonces:?}");
    let plain = cli(&db).args(["rotation-keys", "list"]).output().unwrap();
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("rotation key 2 cannot be used"),
        "{plain:?}"
    );
}
