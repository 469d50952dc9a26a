//! The `auth-sessions` command-line tool, end to end against a real PostgreSQL.

mod common;

use std::time::Duration;

use assert_cmd::Command;
use auth_sessions::NewSession;
use common::TestDb;
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

    let stats = stdout(&cli(&db).arg("stats").output().unwrap());
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
        .args(["cleanup", "--batch-size", "3"])
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
            .find_by_token(
                auth_sessions::RefreshToken::generate(user)
                    .unwrap()
                    .expose_secret()
            )
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

#[tokio::test]
async fn cleanup_every_stops_cleanly_on_interrupt() {
    let db = TestDb::new().await;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("auth-sessions"))
        .env_remove("DATABASE_URL")
        .args(["--database-url", &db.url(), "cleanup", "--every", "100ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // SIGINT, as Ctrl-C sends.
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "cleanup did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status:?}\n{out}");
    assert!(
        out.matches("deleted 0 session(s)").count() >= 2,
        "several rounds ran:\n{out}"
    );
    assert!(
        out.contains("interrupted: stopped after the current batch"),
        "{out}"
    );
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &["revoke", "--user", "not-a-uuid", "--all"][..],
        &["revoke", "--user", "00000000-0000-0000-0000-000000000000"][..],
        &[
            "revoke",
            "--user",
            "00000000-0000-0000-0000-000000000000",
            "--all",
            "--session",
            "00000000-0000-0000-0000-000000000000",
        ][..],
        &["cleanup", "--batch-size", "0"][..],
        &["cleanup", "--every", "soon"][..],
        &["frobnicate"][..],
    ] {
        let output = Command::cargo_bin("auth-sessions")
            .unwrap()
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error:") && stderr.contains("--help"),
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
