//! The crate's one error type.

use std::fmt;
use std::sync::Arc;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// Name of the primary key of `auth.user_sessions`, `(user_id, id)` (schema/009).
pub(crate) const SESSIONS_PKEY: &str = "user_sessions_pkey";
/// Name of the foreign key from `auth.user_sessions.user_id` to `auth.users` (schema/009).
pub(crate) const USER_ID_FKEY: &str = "user_sessions_user_id_fkey";
/// SQLSTATE `auth.create_session` raises at the per-user cap (schema/010). A code of its own
/// survives relaying from a Citus worker, where constraint names are lost.
pub(crate) const PER_USER_CAP: &str = "AS001";

/// Everything that can go wrong in this crate. Absent rows are `Ok(None)`, never an error.
///
/// No variant carries a refresh token, its hash, or user-supplied text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session with this user and session id (the ids a refresh token carries) already
    /// exists.
    #[error("a session with this id already exists")]
    DuplicateSession,
    /// The session's `user_id` names no row of `auth.users`.
    #[error("unknown user")]
    UnknownUser,
    /// The user already has the maximum number of live sessions and the policy is
    /// [`crate::CapPolicy::Refuse`].
    #[error("the user has reached the maximum number of sessions")]
    SessionCapReached,
    /// A presented refresh token (or token hash) is not well formed. Detected before any
    /// database call.
    #[error("malformed refresh token")]
    MalformedToken,
    /// An input value breaks a documented limit. Detected before any database call.
    #[error("invalid {field}: {problem}")]
    InvalidInput {
        /// The offending input.
        field: &'static str,
        /// What is wrong with it.
        problem: InputProblem,
    },
    /// No pooled connection became available within the pool's wait (or create, or recycle)
    /// timeout.
    #[error("timed out waiting for a database connection")]
    PoolTimeout,
    /// A new connection could not be opened: the server is down, unreachable or refusing us.
    #[error("cannot connect to the database")]
    Connect(#[source] DatabaseError),
    /// The pool cannot hand out connections at all (closed, or misconfigured).
    #[error("connection pool unusable")]
    Pool(#[source] PoolError),
    /// The database URL or pool settings are invalid.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The database has no `citus` extension, so it cannot be distributed.
    #[error("the database has no citus extension (CREATE EXTENSION citus on every node first)")]
    CitusUnavailable,
    /// A migration that was already applied differs from the one embedded in this build.
    #[error("migration {version} was changed after it was applied")]
    MigrationChanged {
        /// The migration's number.
        version: u32,
    },
    /// The server canceled the statement: `statement_timeout` (see
    /// [`crate::PoolSettings::statement_timeout`]) or a cancel request. The connection stays
    /// usable.
    #[error("the database canceled the statement (statement timeout)")]
    StatementTimeout,
    /// On Citus, a statement that has no generic plan (a CTE that writes, a subquery, a
    /// statement that visits every shard) ran on a connection whose `plan_cache_mode` is
    /// `force_generic_plan`, and Citus refused it (SQLSTATE 0A000, "could not create
    /// distributed plan"). The pools of [`crate::build_pool`] plan under `auto` whatever the
    /// server says; a pool built otherwise needs `plan_cache_mode` `auto` (the default) or
    /// `force_custom_plan` on its connections.
    #[error(
        "citus cannot run this statement as a generic plan and the connection forces them \
         (plan_cache_mode = force_generic_plan)"
    )]
    ForcedGenericPlan(#[source] DatabaseError),
    /// Any other database failure (query error, lost connection...).
    #[error("database error")]
    Database(#[source] DatabaseError),
    /// A hot-path call had a connection but got no answer within its deadline
    /// ([`crate::SessionRepo::deadline`]), or it was queued on a shared connection behind a
    /// call that got none: the server or the network stopped answering (a crashed host, a
    /// partition, a half-open connection), or a statement waited longer than the deadline
    /// (for example on a row lock).
    ///
    /// The connection was closed rather than reused, and the server asked to cancel its
    /// statement; the statement may or may not have committed. Retryable
    /// ([`Error::is_retryable`]): a retry runs on another connection. A call that got no
    /// connection within its deadline fails with [`Error::PoolTimeout`] instead.
    #[error("no answer from the database within the call's deadline")]
    DeadlineExceeded,
    /// The database answered in a way this build does not understand (for example a schema
    /// function from another version).
    #[error("unexpected response from the database: {0}")]
    UnexpectedResponse(&'static str),
    /// A rotation key kept by the database cannot be used with this repository's
    /// [`crate::KeySource`]: sealed under another wrapping key, stored in clear where a
    /// wrapping key is configured, or sealed where none is.
    #[error("rotation key {id} cannot be used: {reason}")]
    RotationKeyUnusable {
        /// The key's id.
        id: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The call needs keys kept by the database, but the repository takes its keys from the
    /// service's secret store ([`crate::KeySource::SecretStore`]).
    #[error("rotation keys come from the secret store, not the database")]
    KeysNotInDatabase,
    /// The operating system's random number generator failed.
    #[error("cannot draw random bytes for a refresh token")]
    Randomness(#[source] getrandom::Error),
}

/// What is wrong with an input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputProblem {
    /// The text contains a NUL byte, which PostgreSQL text cannot store.
    NulByte,
    /// The text is longer than the limit, in characters.
    TooLong {
        /// The limit, in characters.
        max_chars: usize,
    },
    /// The value is outside its allowed range.
    OutOfRange,
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NulByte => f.write_str("contains a NUL byte"),
            Self::TooLong { max_chars } => write!(f, "longer than {max_chars} characters"),
            Self::OutOfRange => f.write_str("out of range"),
        }
    }
}

/// A failure reported by tokio-postgres, printed without the server's DETAIL line (which can
/// quote row values, such as a token hash). The SQLSTATE, message and constraint stay available.
///
/// Cheap to clone: callers that shared one failed connect attempt each get the same error.
#[derive(Clone)]
pub struct DatabaseError(Arc<tokio_postgres::Error>);

impl DatabaseError {
    pub(crate) fn new(err: tokio_postgres::Error) -> Self {
        Self(Arc::new(err))
    }

    /// The SQLSTATE, when the server reported the error.
    pub fn code(&self) -> Option<&SqlState> {
        self.0.code()
    }

    /// The violated constraint, when the server names one.
    pub fn constraint(&self) -> Option<&str> {
        self.0.as_db_error().and_then(|db| db.constraint())
    }

    /// True when the connection behind the error is gone: closed, or ended by the server
    /// (SQLSTATE class 57P: shutdown, crash, termination of the backend), so the call can be
    /// retried on another connection.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
            || self
                .code()
                .is_some_and(|code| code.code().starts_with("57P"))
    }

    /// True when the same call, run again, may succeed: a transaction that lost a race rather
    /// than one that was wrong. That is SQLSTATE 40001 (`serialization_failure`), 40P01
    /// (`deadlock_detected`), 55P03 (`lock_not_available`: `NOWAIT` or `lock_timeout`), and a
    /// closed connection ([`DatabaseError::is_closed`]), which the pool replaces.
    ///
    /// After a closed connection the statement may or may not have committed: retry only
    /// calls that are safe to repeat. Rotation is (a retry of the same token within the grace
    /// window gets the same successor), and so is creating a session with a token the caller
    /// minted (a repeat is [`Error::DuplicateSession`]).
    pub fn is_retryable(&self) -> bool {
        self.is_closed()
            || matches!(
                self.code(),
                Some(
                    &SqlState::T_R_SERIALIZATION_FAILURE
                        | &SqlState::T_R_DEADLOCK_DETECTED
                        | &SqlState::LOCK_NOT_AVAILABLE
                )
            )
    }
}

impl Error {
    /// True when the same call, run again, may succeed: [`Error::Database`] or
    /// [`Error::Connect`] with an error that [`DatabaseError::is_retryable`] (a serialization
    /// failure, a deadlock, a lock not available, or a closed connection), and
    /// [`Error::DeadlineExceeded`] (its connection was closed; a retry gets another). Pool
    /// timeouts, statement timeouts and refused connections are not: retrying them at once
    /// adds load to an overloaded or unreachable server.
    ///
    /// After a closed connection or a missed deadline the statement may or may not have
    /// committed: retry only calls that are safe to repeat (see
    /// [`DatabaseError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::DeadlineExceeded)
            || matches!(self, Self::Database(err) | Self::Connect(err) if err.is_retryable())
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(
                f,
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            ),
            None => fmt::Display::fmt(&*self.0, f),
        }
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseError({self})")
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // A server error's chain would print DETAIL; other errors (I/O, closed) are safe.
        match self.0.as_db_error() {
            Some(_) => None,
            None => std::error::Error::source(&*self.0),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    /// Classifies by SQLSTATE. The constraint name is only a second check: a name that is
    /// present must be ours, an absent one (errors relayed by Citus workers lose it) is
    /// accepted, since the statements that can raise these codes touch no other constraint.
    fn from(err: tokio_postgres::Error) -> Self {
        let constraint = err.as_db_error().and_then(|db| db.constraint());
        let names = |ours: &str| constraint.is_none_or(|name| name == ours);
        match err.code() {
            Some(&SqlState::UNIQUE_VIOLATION) if names(SESSIONS_PKEY) => Self::DuplicateSession,
            Some(&SqlState::FOREIGN_KEY_VIOLATION) if names(USER_ID_FKEY) => Self::UnknownUser,
            Some(code) if code.code() == PER_USER_CAP => Self::SessionCapReached,
            Some(&SqlState::QUERY_CANCELED) => Self::StatementTimeout,
            _ => Self::Database(DatabaseError::new(err)),
        }
    }
}

impl From<PoolError> for Error {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Timeout(_) => Self::PoolTimeout,
            PoolError::Backend(err) => Self::Connect(DatabaseError::new(err)),
            other => Self::Pool(other),
        }
    }
}
