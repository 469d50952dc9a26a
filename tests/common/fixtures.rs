//! A typical new session, and direct reads of what the repository stored: shared by the files
//! that test the repository's methods one concern each (tests/sessions.rs, tests/revocation.rs,
//! tests/errors.rs, tests/forged_tokens.rs), with the durations the cleanup tests use too.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use auth_sessions::{NewSession, SessionKey};
use uuid::Uuid;

use super::TestDb;

pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

pub const HOUR: Duration = Duration::from_secs(60 * 60);

/// The default tombstone retention, in seconds (7 days).
pub const RETENTION_SECONDS: i64 = 7 * 24 * 60 * 60;

/// Key 1 of those the database keeps, once a call of `db.repo` stored it.
pub async fn stored_key(db: &TestDb) -> Vec<u8> {
    let client = db.client().await;
    client
        .query_one("SELECT key FROM auth.rotation_keys WHERE id = 1", &[])
        .await
        .expect("a stored key")
        .get(0)
}

/// Whether a session's row is revoked (a tombstone), read directly.
pub async fn is_revoked(db: &TestDb, session: SessionKey) -> bool {
    db.client()
        .await
        .query_one(
            "SELECT revoked_at IS NOT NULL FROM auth.user_sessions WHERE user_id = $1 AND id = $2",
            &[&session.user_id, &session.session_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// A day-long session of `user_id` with every optional field set.
pub fn laptop(user_id: Uuid) -> NewSession {
    NewSession::new(user_id, DAY)
        .with_device_info("Firefox on Linux")
        .with_ip_address(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
        .with_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
}
