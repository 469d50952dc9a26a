//! Counters for operators, through the `metrics` facade: the service installs the exporter
//! (Prometheus, StatsD...) of its choice; without one, recording costs next to nothing.
//!
//! | name | kind | labels | counts |
//! |---|---|---|---|
//! | `auth_sessions_rotations_total` | counter | `outcome`: rotated, grace, reused, expired, revoked, idle_timed_out, unknown | calls of `rotate` by outcome; `reused` is a security event |
//! | `auth_sessions_evictions_total` | counter | | sessions revoked to make room under the per-user cap |
//! | `auth_sessions_cap_refusals_total` | counter | | logins refused at the per-user cap |
//! | `auth_sessions_cleanup_rows_total` | counter | | sessions deleted by cleanup |
//! | `auth_sessions_cleanup_batches_total` | counter | | cleanup batches run |
//! | `auth_sessions_pool_wait_seconds` | histogram | | time each call waited for a pooled connection |
//! | `auth_sessions_pool_timeouts_total` | counter | | calls that found no connection within the pool's timeouts |
//! | `auth_sessions_live_checks_total` | counter | `answer`: memory, database | checks of [`crate::LiveSessions::check`] by where the answer came from |
//! | `auth_sessions_live_endings_total` | counter | | session endings heard by the listening connections |
//! | `auth_sessions_live_activity_batches_total` | counter | | activity statements written by [`crate::LiveSessions`] |
//! | `auth_sessions_live_activity_rows_total` | counter | | sessions those statements wrote |
//! | `auth_sessions_live_listen_failures_total` | counter | | listening connections that failed (each then empties memory when it opens again) |

use std::time::Duration;

use crate::Rotation;

/// Rotations by outcome.
pub const ROTATIONS: &str = "auth_sessions_rotations_total";
/// Sessions evicted at the per-user cap.
pub const EVICTIONS: &str = "auth_sessions_evictions_total";
/// Logins refused at the per-user cap.
pub const CAP_REFUSALS: &str = "auth_sessions_cap_refusals_total";
/// Sessions deleted by cleanup.
pub const CLEANUP_ROWS: &str = "auth_sessions_cleanup_rows_total";
/// Cleanup batches run.
pub const CLEANUP_BATCHES: &str = "auth_sessions_cleanup_batches_total";
/// Seconds each call waited for a pooled connection.
pub const POOL_WAIT: &str = "auth_sessions_pool_wait_seconds";
/// Calls that found no pooled connection in time.
pub const POOL_TIMEOUTS: &str = "auth_sessions_pool_timeouts_total";

/// Live-session checks by where the answer came from.
pub const LIVE_CHECKS: &str = "auth_sessions_live_checks_total";
/// Session endings heard by the listening connections.
pub const LIVE_ENDINGS: &str = "auth_sessions_live_endings_total";
/// Activity statements written by live sessions.
pub const LIVE_ACTIVITY_BATCHES: &str = "auth_sessions_live_activity_batches_total";
/// Sessions written by those statements.
pub const LIVE_ACTIVITY_ROWS: &str = "auth_sessions_live_activity_rows_total";
/// Listening connections that failed.
pub const LIVE_LISTEN_FAILURES: &str = "auth_sessions_live_listen_failures_total";

/// Describes every metric to the installed recorder (its help texts). Optional: counters are
/// recorded whether or not this ran.
pub fn describe() {
    metrics::describe_counter!(ROTATIONS, "Refresh-token rotations by outcome.");
    metrics::describe_counter!(
        EVICTIONS,
        "Sessions revoked to make room under the per-user cap."
    );
    metrics::describe_counter!(CAP_REFUSALS, "Logins refused at the per-user cap.");
    metrics::describe_counter!(CLEANUP_ROWS, "Sessions deleted by cleanup.");
    metrics::describe_counter!(CLEANUP_BATCHES, "Cleanup batches run.");
    metrics::describe_histogram!(
        POOL_WAIT,
        metrics::Unit::Seconds,
        "Time each call waited for a pooled connection."
    );
    metrics::describe_counter!(
        POOL_TIMEOUTS,
        "Calls that found no pooled connection in time."
    );
    metrics::describe_counter!(
        LIVE_CHECKS,
        "Live-session checks, by where the answer came from."
    );
    metrics::describe_counter!(LIVE_ENDINGS, "Session endings heard.");
    metrics::describe_counter!(LIVE_ACTIVITY_BATCHES, "Batched activity statements.");
    metrics::describe_counter!(LIVE_ACTIVITY_ROWS, "Sessions written by activity batches.");
    metrics::describe_counter!(LIVE_LISTEN_FAILURES, "Listening connections that failed.");
}

pub(crate) fn rotation(outcome: &Rotation, grace: bool) {
    let label = match outcome {
        Rotation::Rotated { .. } if grace => "grace",
        Rotation::Rotated { .. } => "rotated",
        Rotation::TokenReused { .. } => "reused",
        Rotation::Expired => "expired",
        Rotation::Revoked(_) => "revoked",
        Rotation::IdleTimedOut => "idle_timed_out",
        Rotation::Unknown => "unknown",
    };
    metrics::counter!(ROTATIONS, "outcome" => label).increment(1);
}

pub(crate) fn evictions(count: u64) {
    if count > 0 {
        metrics::counter!(EVICTIONS).increment(count);
    }
}

pub(crate) fn cap_refusal() {
    metrics::counter!(CAP_REFUSALS).increment(1);
}

pub(crate) fn cleanup_batch(rows: u64) {
    metrics::counter!(CLEANUP_BATCHES).increment(1);
    metrics::counter!(CLEANUP_ROWS).increment(rows);
}

pub(crate) fn pool_wait(waited: Duration, timed_out: bool) {
    metrics::histogram!(POOL_WAIT).record(waited.as_secs_f64());
    if timed_out {
        metrics::counter!(POOL_TIMEOUTS).increment(1);
    }
}

pub(crate) fn live_check(from_memory: bool) {
    let answer = if from_memory { "memory" } else { "database" };
    metrics::counter!(LIVE_CHECKS, "answer" => answer).increment(1);
}

pub(crate) fn live_ending() {
    metrics::counter!(LIVE_ENDINGS).increment(1);
}

pub(crate) fn live_activity_batch(rows: u64) {
    metrics::counter!(LIVE_ACTIVITY_BATCHES).increment(1);
    metrics::counter!(LIVE_ACTIVITY_ROWS).increment(rows);
}

pub(crate) fn live_listen_failure() {
    metrics::counter!(LIVE_LISTEN_FAILURES).increment(1);
}
