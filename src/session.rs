//! Domain types: what the repository takes and returns. Generated row types stay inside.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, InputProblem};

/// Longest accepted `device_info`, in characters (also a CHECK in schema/009).
pub const MAX_DEVICE_INFO_CHARS: usize = 256;
/// Longest accepted `user_agent`, in characters (also a CHECK in schema/009).
pub const MAX_USER_AGENT_CHARS: usize = 1024;
/// Longest accepted session lifetime: ten years.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 24 * 60 * 60);

/// Names one session: its user (the routing key) and its id. Every statement about one
/// session filters by both, so it reaches one shard, and a session of another user is never
/// touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The session's owner.
    pub user_id: Uuid,
    /// The session's id.
    pub session_id: Uuid,
}

impl SessionKey {
    /// The key of session `session_id` of user `user_id`.
    pub fn new(user_id: Uuid, session_id: Uuid) -> Self {
        Self {
            user_id,
            session_id,
        }
    }
}

/// A login session, as the service sees it. Holds no token and no token hash.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// Session identifier, safe to show to its user.
    pub id: Uuid,
    /// The user the session belongs to.
    pub user_id: Uuid,
    /// Human-readable device label, such as "Firefox on Linux".
    pub device_info: Option<String>,
    /// Client IP address at login or at the last recorded activity.
    pub ip_address: Option<IpAddr>,
    /// Raw `User-Agent` header at login.
    pub user_agent: Option<String>,
    /// Last recorded activity (database clock).
    pub last_active_at: DateTime<Utc>,
    /// Absolute expiry (database clock).
    pub expires_at: DateTime<Utc>,
    /// Creation time (database clock).
    pub created_at: DateTime<Utc>,
}

impl Session {
    /// The session's user and id, to record activity or revoke it with.
    pub fn key(&self) -> SessionKey {
        SessionKey::new(self.user_id, self.id)
    }
}

/// One entry of a user's device list: no token hash and no raw user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// Session identifier, to revoke this device with.
    pub id: Uuid,
    /// Human-readable device label.
    pub device_info: Option<String>,
    /// Client IP address at login or at the last recorded activity.
    pub ip_address: Option<IpAddr>,
    /// Last recorded activity (database clock).
    pub last_active_at: DateTime<Utc>,
    /// Absolute expiry (database clock).
    pub expires_at: DateTime<Utc>,
    /// Creation time (database clock).
    pub created_at: DateTime<Utc>,
}

/// Counts for operators ([`crate::SessionRepo::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Rows in `auth.user_sessions`, whatever their state.
    pub total: u64,
    /// Live sessions: not revoked, not expired, not idle.
    pub live: u64,
    /// Sessions past their absolute expiry, waiting for cleanup.
    pub expired: u64,
    /// Revoked sessions: tombstones, kept until their retention passes or they expire.
    pub revoked: u64,
    /// Users with at least one row.
    pub users: u64,
    /// The most live sessions any one user has.
    pub max_live_per_user: u64,
    /// Heap size of the session table, in bytes (summed over shards or partitions).
    pub table_bytes: u64,
    /// Size of their indexes, in bytes.
    pub index_bytes: u64,
}

/// What recording activity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Activity {
    /// The session's activity time after the call (database clock).
    pub last_active_at: DateTime<Utc>,
    /// Whether the call wrote it; `false` when the stored time was recent enough.
    pub written: bool,
}

/// What a new session needs. Build it with [`NewSession::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Owner of the session; must exist in `auth.users`.
    pub user_id: Uuid,
    /// Human-readable device label, at most [`MAX_DEVICE_INFO_CHARS`] characters, no NUL.
    pub device_info: Option<String>,
    /// Client IP address.
    pub ip_address: Option<IpAddr>,
    /// Raw `User-Agent` header, at most [`MAX_USER_AGENT_CHARS`] characters, no NUL.
    pub user_agent: Option<String>,
    /// Lifetime from creation, whole seconds, from one second to [`MAX_TTL`].
    pub ttl: Duration,
}

impl NewSession {
    /// A session for `user_id` that lives for `ttl`, with no device details.
    pub fn new(user_id: Uuid, ttl: Duration) -> Self {
        Self {
            user_id,
            device_info: None,
            ip_address: None,
            user_agent: None,
            ttl,
        }
    }

    /// Sets the human-readable device label.
    pub fn with_device_info(mut self, device_info: impl Into<String>) -> Self {
        self.device_info = Some(device_info.into());
        self
    }

    /// Sets the client IP address.
    pub fn with_ip_address(mut self, ip_address: IpAddr) -> Self {
        self.ip_address = Some(ip_address);
        self
    }

    /// Sets the raw `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Checks every limit; returns the lifetime in whole seconds.
    pub(crate) fn validate(&self) -> Result<i64, Error> {
        check_text(
            "device_info",
            self.device_info.as_deref(),
            MAX_DEVICE_INFO_CHARS,
        )?;
        check_text(
            "user_agent",
            self.user_agent.as_deref(),
            MAX_USER_AGENT_CHARS,
        )?;
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_TTL {
            return Err(Error::InvalidInput {
                field: "ttl",
                problem: InputProblem::OutOfRange,
            });
        }
        i64::try_from(self.ttl.as_secs()).map_err(|_| Error::InvalidInput {
            field: "ttl",
            problem: InputProblem::OutOfRange,
        })
    }
}

fn check_text(field: &'static str, text: Option<&str>, max_chars: usize) -> Result<(), Error> {
    let Some(text) = text else { return Ok(()) };
    if text.contains('\0') {
        return Err(Error::InvalidInput {
            field,
            problem: InputProblem::NulByte,
        });
    }
    // Cheap bound first: a string of at most `max_chars` bytes has at most that many characters.
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(Error::InvalidInput {
            field,
            problem: InputProblem::TooLong { max_chars },
        });
    }
    Ok(())
}

/// `From<row> for Session` for the generated row types that carry a session's fields.
macro_rules! session_from_row {
    ($($row:ident),+) => {$(
        impl From<db::queries::sessions::$row> for Session {
            fn from(row: db::queries::sessions::$row) -> Self {
                Self {
                    id: row.id,
                    user_id: row.user_id,
                    device_info: row.device_info,
                    ip_address: row.ip_address,
                    user_agent: row.user_agent,
                    last_active_at: row.last_active_at,
                    expires_at: row.expires_at,
                    created_at: row.created_at,
                }
            }
        }
    )+};
}

session_from_row!(NewSessionRow, LiveSession, SessionOutcome);

impl From<db::queries::sessions::UserDevice> for Device {
    fn from(row: db::queries::sessions::UserDevice) -> Self {
        Self {
            id: row.id,
            device_info: row.device_info,
            ip_address: row.ip_address,
            last_active_at: row.last_active_at,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new() -> NewSession {
        NewSession::new(Uuid::nil(), Duration::from_secs(60))
    }

    #[test]
    fn limits_are_counted_in_characters() {
        let at_limit = "é".repeat(MAX_DEVICE_INFO_CHARS);
        assert_eq!(
            new().with_device_info(at_limit.clone()).validate().unwrap(),
            60
        );
        let over = at_limit + "é";
        assert!(matches!(
            new().with_device_info(over).validate(),
            Err(Error::InvalidInput {
                field: "device_info",
                problem: InputProblem::TooLong { max_chars: 256 }
            })
        ));
    }

    #[test]
    fn nul_bytes_and_bad_ttls_are_rejected() {
        assert!(matches!(
            new().with_user_agent("a\0b").validate(),
            Err(Error::InvalidInput {
                field: "user_agent",
                problem: InputProblem::NulByte
            })
        ));
        for ttl in [
            Duration::ZERO,
            Duration::from_millis(999),
            MAX_TTL + Duration::from_secs(1),
        ] {
            let mut session = new();
            session.ttl = ttl;
            assert!(matches!(
                session.validate(),
                Err(Error::InvalidInput {
                    field: "ttl",
                    problem: InputProblem::OutOfRange
                })
            ));
        }
    }
}
