//! The session policies: lifetimes, rotation, per-user cap and activity throttling.

use std::time::Duration;

use crate::{DatabaseKeys, Error, InputProblem, KeyRing, KeySource, MAX_TTL, RotationKey};

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
/// Durations are used in whole seconds (fractions are dropped). [`SessionPolicy::validate`]
/// lists the allowed ranges; [`crate::SessionRepo::with_policy`] refuses a policy outside
/// them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionPolicy {
    /// A session unused for longer than this is invalid on lookup and rotation and is removed
    /// by cleanup. `None`: no idle timeout. Default: 14 days. Must be strictly longer than
    /// `activity_interval` (activity is recorded at most that often, so a shorter one would
    /// time out sessions in continuous use) and at most 10 years; keep it far above.
    pub idle_timeout: Option<Duration>,
    /// How long a just-replaced refresh token still rotates to the same successor (concurrent
    /// refreshes, a retried request whose response was lost). After it, presenting the replaced
    /// token revokes the session. Default: 10 s. At most 10 years.
    pub rotation_grace: Duration,
    /// Most live sessions per user, at least 1. `None`: no cap. Default: 10.
    pub max_sessions_per_user: Option<u32>,
    /// What creating one more session than the cap does. Default: evict the least recently
    /// active.
    pub at_cap: CapPolicy,
    /// Activity is written only when the stored `last_active_at` is at least this old (or the
    /// client's address changed). Default: 60 s. At most 10 years, and shorter than
    /// `idle_timeout`.
    pub activity_interval: Duration,
    /// How long a revoked session stays as a tombstone, so that its token is reported as
    /// revoked (and a replayed one as reused) rather than unknown; cleanup deletes it after
    /// that. Tombstones never slow the live path (a partial index skips them); this bounds how
    /// many accumulate. Default: 7 days. At most 10 years (zero: deleted by the next cleanup).
    pub tombstone_retention: Duration,
    /// Where the keys that sign refresh tokens come from; every instance serving one database
    /// must see the same keys. Production: [`KeySource::SecretStore`] (keys from the service's
    /// secret store), or [`KeySource::Database`] with [`DatabaseKeys::wrapped`] (keys in the
    /// database, sealed under a key held outside it). Default:
    /// [`DatabaseKeys::unwrapped_for_development`], keys in the database in clear, so that a
    /// development setup runs with no configuration; whoever can read that table and holds an
    /// old refresh token can derive the current one (see the README's "Rotation keys").
    pub rotation_keys: KeySource,
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
            rotation_keys: KeySource::Database(DatabaseKeys::unwrapped_for_development()),
        }
    }
}

impl SessionPolicy {
    /// Checks every policy against its allowed range:
    ///
    /// - `idle_timeout` (when set): at most 10 years ([`MAX_TTL`]) and, in whole seconds,
    ///   strictly longer than `activity_interval` (so at least 1 s);
    /// - `rotation_grace`, `activity_interval`, `tombstone_retention`: at most 10 years (zero
    ///   is allowed);
    /// - `max_sessions_per_user` (when set): at least 1.
    ///
    /// Longer durations would overflow the database's timestamp arithmetic, so every
    /// statement using them would fail.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] with [`InputProblem::OutOfRange`] and the first offending
    /// field's name (`"idle_timeout"`, `"rotation_grace"`, `"activity_interval"`,
    /// `"tombstone_retention"` or `"max_sessions_per_user"`).
    pub fn validate(&self) -> Result<(), Error> {
        let out_of_range = |field| {
            Err(Error::InvalidInput {
                field,
                problem: InputProblem::OutOfRange,
            })
        };
        if self.activity_interval > MAX_TTL {
            return out_of_range("activity_interval");
        }
        if let Some(idle) = self.idle_timeout
            && (idle > MAX_TTL || idle.as_secs() <= self.activity_interval.as_secs())
        {
            return out_of_range("idle_timeout");
        }
        if self.rotation_grace > MAX_TTL {
            return out_of_range("rotation_grace");
        }
        if self.tombstone_retention > MAX_TTL {
            return out_of_range("tombstone_retention");
        }
        if self.max_sessions_per_user == Some(0) {
            return out_of_range("max_sessions_per_user");
        }
        Ok(())
    }

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

    /// Sets the one rotation key, from the service's secret store, shared by every instance:
    /// [`KeySource::SecretStore`] with a ring of that key alone.
    pub fn rotation_key(mut self, key: RotationKey) -> Self {
        self.rotation_keys = KeySource::SecretStore(KeyRing::new(key));
        self
    }

    /// Sets where the rotation keys come from.
    pub fn rotation_keys(mut self, source: KeySource) -> Self {
        self.rotation_keys = source;
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn refused(policy: &SessionPolicy) -> &'static str {
        match policy.validate() {
            Err(Error::InvalidInput {
                field,
                problem: InputProblem::OutOfRange,
            }) => field,
            other => panic!("{policy:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn the_default_policy_is_valid() {
        SessionPolicy::default().validate().unwrap();
        let pool = crate::build_pool(crate::DEFAULT_DATABASE_URL, &Default::default()).unwrap();
        crate::SessionRepo::with_policy(pool, SessionPolicy::default()).unwrap();
    }

    #[test]
    fn durations_past_ten_years_are_refused() {
        let default = SessionPolicy::default;
        for (policy, field) in [
            (default().idle_timeout(Some(Duration::MAX)), "idle_timeout"),
            (
                default().idle_timeout(Some(MAX_TTL + SECOND)),
                "idle_timeout",
            ),
            (default().rotation_grace(Duration::MAX), "rotation_grace"),
            (default().rotation_grace(MAX_TTL + SECOND), "rotation_grace"),
            (
                default().tombstone_retention(Duration::MAX),
                "tombstone_retention",
            ),
            (
                default().tombstone_retention(MAX_TTL + SECOND),
                "tombstone_retention",
            ),
            (
                default()
                    .idle_timeout(None)
                    .activity_interval(Duration::MAX),
                "activity_interval",
            ),
            (
                default()
                    .idle_timeout(None)
                    .activity_interval(MAX_TTL + SECOND),
                "activity_interval",
            ),
        ] {
            assert_eq!(refused(&policy), field, "{policy:?}");
        }
        // Exactly ten years, and zero where zero means something, are fine.
        default()
            .idle_timeout(Some(MAX_TTL))
            .rotation_grace(MAX_TTL)
            .tombstone_retention(MAX_TTL)
            .validate()
            .unwrap();
        default()
            .idle_timeout(None)
            .activity_interval(MAX_TTL)
            .validate()
            .unwrap();
        default()
            .rotation_grace(Duration::ZERO)
            .tombstone_retention(Duration::ZERO)
            .activity_interval(Duration::ZERO)
            .validate()
            .unwrap();
    }

    #[test]
    fn an_idle_timeout_must_exceed_the_activity_interval() {
        let minute = Duration::from_secs(60);
        let policy = |idle, activity| {
            SessionPolicy::default()
                .idle_timeout(Some(idle))
                .activity_interval(activity)
        };
        assert_eq!(refused(&policy(minute, minute)), "idle_timeout");
        assert_eq!(refused(&policy(SECOND, minute)), "idle_timeout");
        // Compared in whole seconds, as they are used: 60.5 s is 60 s.
        assert_eq!(
            refused(&policy(minute + Duration::from_millis(500), minute)),
            "idle_timeout"
        );
        policy(minute + SECOND, minute).validate().unwrap();
        // Without throttling, any idle timeout of a second or more.
        assert_eq!(
            refused(&policy(Duration::ZERO, Duration::ZERO)),
            "idle_timeout"
        );
        assert_eq!(
            refused(&policy(Duration::from_millis(999), Duration::ZERO)),
            "idle_timeout"
        );
        policy(SECOND, Duration::ZERO).validate().unwrap();
        // No idle timeout: any activity interval up to the bound.
        SessionPolicy::default()
            .idle_timeout(None)
            .activity_interval(Duration::from_secs(30 * 24 * 3600))
            .validate()
            .unwrap();
    }

    #[test]
    fn a_cap_of_zero_is_refused() {
        for at_cap in [CapPolicy::EvictLeastRecentlyActive, CapPolicy::Refuse] {
            let zero = SessionPolicy::default().max_sessions_per_user(Some(0), at_cap);
            assert_eq!(refused(&zero), "max_sessions_per_user");
            for cap in [Some(1), Some(u32::MAX), None] {
                SessionPolicy::default()
                    .max_sessions_per_user(cap, at_cap)
                    .validate()
                    .unwrap();
            }
        }
    }

    #[test]
    fn with_policy_refuses_an_invalid_policy_before_any_connection() {
        // Nothing listens there: the refusal cannot come from the database.
        let pool = crate::build_pool(
            "postgres://postgres@127.0.0.1:1/postgres",
            &Default::default(),
        )
        .unwrap();
        let err = crate::SessionRepo::with_policy(
            pool,
            SessionPolicy::default().idle_timeout(Some(Duration::MAX)),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: "idle_timeout",
                    problem: InputProblem::OutOfRange
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "invalid idle_timeout: out of range");
    }
}
