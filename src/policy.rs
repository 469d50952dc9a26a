//! The session policies: lifetimes, rotation, per-user cap and activity throttling.

use std::time::Duration;

use crate::RotationKey;

/// What to do when a user already has the maximum number of live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CapPolicy {
    /// Revoke the least recently active sessions to make room (reason `evicted`). The default.
    #[default]
    EvictLeastRecentlyActive,
    /// Refuse the new session with [`crate::Error::SessionCapReached`].
    Refuse,
}

/// Every configurable policy of a [`crate::SessionRepo`], with documented defaults.
///
/// Durations are used in whole seconds (fractions are dropped).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionPolicy {
    /// A session unused for longer than this is invalid on lookup and rotation and is removed
    /// by cleanup. `None`: no idle timeout. Default: 14 days. Keep it far above
    /// `activity_interval`, since activity is recorded at most that often.
    pub idle_timeout: Option<Duration>,
    /// How long a just-replaced refresh token still rotates to the same successor (concurrent
    /// refreshes, a retried request whose response was lost). After it, presenting the replaced
    /// token revokes the session. Default: 10 s.
    pub rotation_grace: Duration,
    /// Most live sessions per user. `None`: no cap. Default: 10.
    pub max_sessions_per_user: Option<u32>,
    /// What creating one more session than the cap does. Default: evict the least recently
    /// active.
    pub at_cap: CapPolicy,
    /// Activity is written only when the stored `last_active_at` is at least this old (or the
    /// client's address changed). Default: 60 s.
    pub activity_interval: Duration,
    /// How long a revoked session stays as a tombstone, so that its token is reported as
    /// revoked (and a replayed one as reused) rather than unknown; cleanup deletes it after
    /// that. Tombstones never slow the live path (a partial index skips them); this bounds how
    /// many accumulate. Default: 7 days.
    pub tombstone_retention: Duration,
    /// The server-side key that derives a rotated token's successor; every instance serving
    /// one database must use the same. `None`: the key kept by the database
    /// (`auth.rotation_keys`), stored at random by the first instance that needs it and shared
    /// by all, so several instances and restarts converge with no configuration. Supply a key
    /// (from a secret store) to keep it out of the database: see the README's threat model.
    /// Default: `None`.
    pub rotation_key: Option<RotationKey>,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(14 * 24 * 60 * 60)),
            rotation_grace: Duration::from_secs(10),
            max_sessions_per_user: Some(10),
            at_cap: CapPolicy::EvictLeastRecentlyActive,
            activity_interval: Duration::from_secs(60),
            tombstone_retention: Duration::from_secs(7 * 24 * 60 * 60),
            rotation_key: None,
        }
    }
}

impl SessionPolicy {
    /// Sets the idle timeout (`None` disables it).
    pub fn idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the rotation grace window.
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
    }

    /// Sets the per-user cap (`None` disables it) and what happens at the cap.
    pub fn max_sessions_per_user(mut self, max: Option<u32>, at_cap: CapPolicy) -> Self {
        self.max_sessions_per_user = max;
        self.at_cap = at_cap;
        self
    }

    /// Sets the activity write interval (zero writes on every call).
    pub fn activity_interval(mut self, interval: Duration) -> Self {
        self.activity_interval = interval;
        self
    }

    /// Sets how long revoked sessions are kept as tombstones.
    pub fn tombstone_retention(mut self, retention: Duration) -> Self {
        self.tombstone_retention = retention;
        self
    }

    /// Sets the rotation key shared by every instance.
    pub fn rotation_key(mut self, key: RotationKey) -> Self {
        self.rotation_key = Some(key);
        self
    }

    pub(crate) fn idle_seconds(&self) -> Option<i64> {
        self.idle_timeout.map(|d| seconds(d).max(1))
    }

    pub(crate) fn grace_seconds(&self) -> i64 {
        seconds(self.rotation_grace)
    }

    pub(crate) fn retention_seconds(&self) -> i64 {
        seconds(self.tombstone_retention)
    }

    pub(crate) fn activity_seconds(&self) -> i64 {
        seconds(self.activity_interval)
    }

    pub(crate) fn cap(&self) -> Option<i32> {
        self.max_sessions_per_user
            .map(|max| i32::try_from(max).unwrap_or(i32::MAX))
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
