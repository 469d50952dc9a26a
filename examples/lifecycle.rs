//! Walks one user's session lifecycle against PostgreSQL and prints what happens:
//! four devices log in, list, activity, token rotation (a prompt retry, then a replayed stolen
//! token that revokes its session), revoke one, revoke the others, cleanup of expired sessions
//! and old tombstones.
//!
//! ```text
//! cargo run --example lifecycle
//! ```
//!
//! Uses `DATABASE_URL`; when it is unset, the default server
//! (`postgres://postgres@localhost:5432/postgres`) if it can be used, else a throwaway server it
//! starts from the installed PostgreSQL binaries (one line on stderr says so; the tests share
//! it). Migrates that database and removes the user it creates when done.

// The server helper of the tests: one implementation for both.
#[path = "../tests/common/server.rs"]
mod server;

use std::time::Duration;

use auth_sessions::{
    NewSession, PoolSettings, RefreshToken, Rotation, SessionKey, SessionPolicy, SessionRepo,
    TOKEN_PREFIX, Validation, build_pool, migrate,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = server::database_url();
    let pool = build_pool(&url, &PoolSettings::default())?;
    let report = migrate(&pool).await?;
    println!(
        "migrations: {} applied now, {} already applied",
        report.applied.len(),
        report.already_applied.len()
    );

    let client = pool.get().await?;
    let email = format!("demo-{}@example.test", std::process::id());
    let user: uuid::Uuid = client
        .query_one(
            "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
            &[&email],
        )
        .await?
        .get(0);
    drop(client);
    println!("user {user} ({email})");

    // Activity is normally written at most once a minute; write every call for the demo.
    let policy = SessionPolicy::default().activity_interval(Duration::ZERO);
    let repo = SessionRepo::with_policy(pool.clone(), policy)?;
    let month = Duration::from_secs(30 * 24 * 60 * 60);
    let devices = [
        (
            "Firefox on Linux",
            "203.0.113.7",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("iPhone app", "2001:db8::42", "AuthApp/3.1 iOS/18.1"),
        (
            "Chrome on Windows",
            "198.51.100.23",
            "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0",
        ),
        ("Android app", "192.0.2.55", "AuthApp/3.1 Android/15"),
    ];
    let mut sessions = Vec::new();
    for (label, ip, agent) in devices {
        let new = NewSession::new(user, month)
            .with_device_info(label)
            .with_ip_address(ip.parse()?)
            .with_user_agent(agent);
        let (session, token) = repo.create(&new).await?;
        println!(
            "login: {label:<18} session {} ({} token of {} chars handed to the device; only its \
             SHA-256 is stored)",
            session.id,
            TOKEN_PREFIX,
            token.expose_secret().len()
        );
        sessions.push((session, token));
    }

    let (laptop, laptop_token) = &sessions[0];
    // The token carries its session's key (user and session ids, readable by whoever holds it)
    // and its generation; the lookup goes straight to that row and compares the stored hash.
    println!(
        "the laptop's token names user {}, session {}, generation {}",
        laptop_token.user_id(),
        laptop_token.session_id(),
        laptop_token.generation()
    );
    let found = repo.find_by_token(laptop_token.expose_secret()).await?;
    println!(
        "lookup by refresh token: {}",
        found.map_or("none".into(), |s| s.id.to_string())
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    let iphone = sessions[1].0.key();
    let at = repo
        .record_activity(iphone, Some("2001:db8::99".parse()?))
        .await?;
    println!(
        "activity on the iPhone at {} (written: {})",
        at.map_or("-".into(), |a| a.last_active_at.to_rfc3339()),
        at.is_some_and(|a| a.written)
    );

    print_devices(&repo, user).await?;

    // Rotation: the laptop refreshes, and a retry of the same request gets the same new token.
    let old_token = laptop_token.clone();
    let new_token = rotated(&repo, &old_token).await?;
    println!(
        "laptop refreshes: its token is rotated to generation {} (same session {})",
        new_token.generation(),
        new_token.session_id()
    );
    let retry = repo.rotate(old_token.expose_secret()).await?;
    let same = matches!(&retry, Rotation::Rotated { token, .. } if *token == new_token);
    println!("a retry with the old token within 10 s gets the same new token: {same}");
    match repo.validate(new_token.expose_secret()).await? {
        Validation::Valid(session) => println!("new token validates: session {}", session.id),
        other => println!("new token: {other:?}"),
    }

    // Theft: Chrome's token is copied, Chrome keeps refreshing, then the thief presents the copy.
    let stolen = sessions[2].1.clone();
    let chrome_now = rotated(&repo, &rotated(&repo, &stolen).await?).await?;
    match repo.rotate(stolen.expose_secret()).await? {
        Rotation::TokenReused {
            session_id,
            user_id,
        } => println!(
            "a stolen Chrome token (generation {}) replayed after two rotations: reuse detected, \
             session {session_id} of user {user_id} revoked",
            stolen.generation()
        ),
        other => return Err(format!("expected reuse detection, got {other:?}").into()),
    }
    println!(
        "Chrome's own current token now: {:?}",
        repo.validate(chrome_now.expose_secret()).await?
    );

    let android = sessions[3].0.key();
    println!("revoke the Android app: {}", repo.revoke(android).await?);
    let wrong_owner = repo
        .revoke(SessionKey::new(uuid::Uuid::new_v4(), iphone.session_id))
        .await?;
    println!("revoke the iPhone's session id under another user: {wrong_owner} (nothing revoked)");
    println!("live sessions: {}", repo.count_live(user).await?);

    let others = repo.revoke_all_except(laptop.key()).await?.unwrap_or(0);
    println!("log out other devices (keep the laptop): {others} revoked");
    print_devices(&repo, user).await?;

    let (short, _) = repo
        .create(&NewSession::new(user, Duration::from_secs(1)))
        .await?;
    println!(
        "short-lived session {} expires in 1 s; waiting...",
        short.id
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    println!(
        "cleanup: {} expired session(s) deleted; the 3 revoked ones stay as tombstones for {} \
         days, so their tokens still validate as revoked",
        repo.delete_expired().await?,
        repo.policy().tombstone_retention.as_secs() / 86_400
    );
    println!(
        "the Android app's old token: {:?}",
        repo.validate(sessions[3].1.expose_secret()).await?
    );
    println!("live sessions: {}", repo.count_live(user).await?);

    println!(
        "log out everywhere: {} revoked",
        repo.revoke_all(user).await?
    );
    let client = pool.get().await?;
    client
        .execute("DELETE FROM auth.users WHERE id = $1", &[&user])
        .await?;
    println!("removed the demo user (and, by cascade, its sessions)");
    Ok(())
}

async fn rotated(repo: &SessionRepo, token: &RefreshToken) -> Result<RefreshToken, BoxError> {
    match repo.rotate(token.expose_secret()).await? {
        Rotation::Rotated { token, .. } => Ok(token),
        other => Err(format!("expected a rotation, got {other:?}").into()),
    }
}

async fn print_devices(repo: &SessionRepo, user: uuid::Uuid) -> Result<(), BoxError> {
    println!("devices (most recent first, no token hash, no user agent):");
    for device in repo.list_devices(user).await? {
        println!(
            "  {}  {:<18} {:<15} last active {}",
            device.id,
            device.device_info.as_deref().unwrap_or("-"),
            device.ip_address.map_or("-".into(), |ip| ip.to_string()),
            device.last_active_at.format("%H:%M:%S%.3f"),
        );
    }
    Ok(())
}
