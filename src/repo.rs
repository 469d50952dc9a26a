//! `SessionRepo`: one method per query of `queries/sessions.sql`.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use db::queries::sessions as q;
use deadpool_postgres::Pool;
use tracing::instrument;
use uuid::Uuid;

use crate::outcome::State;
use crate::{
    Activity, CapPolicy, Device, Error, NewSession, RefreshToken, Rotation, RotationKey, Session,
    SessionPolicy, SessionStats, TokenHash, Validation,
};

/// The rotation key of a policy that names none: drawn once per process.
static PROCESS_ROTATION_KEY: OnceLock<RotationKey> = OnceLock::new();

/// The session store. Cheap to clone: clones share one pool.
///
/// Every method takes one pooled connection and makes exactly one round trip on it once the
/// connection has prepared the statement (each query returns rows, so the generated code uses
/// the pool's statement cache).
#[derive(Clone)]
pub struct SessionRepo {
    pool: Pool,
    policy: Arc<SessionPolicy>,
}

impl std::fmt::Debug for SessionRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRepo")
            .field("pool", &self.pool.status())
            .field("policy", &self.policy)
            .finish()
    }
}

impl SessionRepo {
    /// A repository over `pool` (see [`crate::build_pool`]) with the default
    /// [`SessionPolicy`]. The schema must be migrated ([`crate::migrate`]).
    pub fn new(pool: Pool) -> Self {
        Self::with_policy(pool, SessionPolicy::default())
    }

    /// A repository over `pool` with the given policies.
    pub fn with_policy(pool: Pool, policy: SessionPolicy) -> Self {
        Self {
            pool,
            policy: Arc::new(policy),
        }
    }

    /// The policies in force.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Runs one repository call on a pooled connection. When the caller drops the call's
    /// future while a statement is in flight, the connection does not go back to the pool
    /// (it would still be busy with that statement and stall the next caller): it is
    /// detached and closed, and the server is asked to cancel the statement, which then rolls
    /// back unless it had already committed. Each call is one statement, so either way
    /// nothing is left half done and no transaction stays open.
    ///
    /// It also records on the caller's span how many rows the call returned or changed.
    async fn with_client<T: Affected>(
        &self,
        op: impl AsyncFnOnce(&deadpool_postgres::Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut checkout = Checkout {
            object: Some(self.pool.get().await?),
            complete: false,
        };
        let Some(client) = checkout.object.as_ref() else {
            return Err(Error::UnexpectedResponse("pooled connection missing"));
        };
        let result = op(client).await;
        checkout.complete = true;
        if let Ok(value) = &result {
            tracing::Span::current().record("rows", value.rows());
        }
        result
    }

    /// The pool this repository uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates a session with a fresh refresh token. Returns the session and the token, which
    /// the caller hands to the device; only the token's hash is stored.
    ///
    /// With a per-user cap ([`SessionPolicy::max_sessions_per_user`]), a user at the cap loses
    /// their least recently active sessions (revoked as `Evicted`) or the call is refused, by
    /// [`CapPolicy`]. Concurrent logins of one user are serialized on the user's row, so the cap
    /// holds under concurrency.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for text with a NUL byte or over its limit, or a lifetime out of
    /// range (before any database call); [`Error::UnknownUser`] when `user_id` does not exist;
    /// [`Error::SessionCapReached`] at the cap under [`CapPolicy::Refuse`]; pool and database
    /// errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn create(&self, new: &NewSession) -> Result<(Session, RefreshToken), Error> {
        let ttl_seconds = new.validate()?;
        let token = RefreshToken::generate()?;
        let session = self.insert(new, &token.hash(), ttl_seconds).await?;
        Ok((session, token))
    }

    /// Creates a session for a refresh token the caller already issued (for example when
    /// importing sessions from another store).
    ///
    /// # Errors
    ///
    /// As [`SessionRepo::create`], plus [`Error::DuplicateTokenHash`] when a session already
    /// holds this token.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn create_with_token(
        &self,
        new: &NewSession,
        token: &RefreshToken,
    ) -> Result<Session, Error> {
        let ttl_seconds = new.validate()?;
        self.insert(new, &token.hash(), ttl_seconds).await
    }

    async fn insert(
        &self,
        new: &NewSession,
        hash: &TokenHash,
        ttl_seconds: i64,
    ) -> Result<Session, Error> {
        self.with_client(async |client| {
            let row = q::create_session()
                .bind(
                    client,
                    &new.user_id,
                    &hash.as_str(),
                    &new.device_info.as_deref(),
                    &new.ip_address,
                    &new.user_agent.as_deref(),
                    &ttl_seconds,
                    &self.policy.idle_seconds(),
                    &self.policy.cap(),
                    &(self.policy.at_cap == CapPolicy::EvictLeastRecentlyActive),
                )
                .one()
                .await?;
            Ok(row.into())
        })
        .await
    }

    /// Finds the unexpired session of a refresh token presented by a device.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] when `presented` is not a well-formed token (before any
    /// database call); pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn find_by_token(&self, presented: &str) -> Result<Option<Session>, Error> {
        let token = RefreshToken::parse(presented)?;
        self.find_by_token_hash(&token.hash()).await
    }

    /// Finds the live session holding this token hash: not revoked, `expires_at > now()` and
    /// not idle for longer than the idle timeout, on the database clock. `Ok(None)` otherwise;
    /// [`SessionRepo::validate`] says why.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<Session>, Error> {
        self.with_client(async |client| {
            let row = q::get_session_by_token_hash()
                .bind(client, &hash.as_str(), &self.policy.idle_seconds())
                .opt()
                .await?;
            Ok(row.map(Session::from))
        })
        .await
    }

    /// Lists a user's live sessions, most recently active first, without token hashes or
    /// raw user agents. Empty for an unknown user.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn list_devices(&self, user_id: Uuid) -> Result<Vec<Device>, Error> {
        self.with_client(async |client| {
            let rows = q::get_user_sessions()
                .bind(client, &user_id, &self.policy.idle_seconds())
                .all()
                .await?;
            Ok(rows.into_iter().map(Device::from).collect())
        })
        .await
    }

    /// Records activity on a live session. Writes only when the stored `last_active_at` is at
    /// least [`SessionPolicy::activity_interval`] old or `ip_address` differs from the stored
    /// one, decided in the same statement, so most calls write nothing. `None` when the
    /// session is not live.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn record_activity(
        &self,
        session_id: Uuid,
        ip_address: Option<IpAddr>,
    ) -> Result<Option<Activity>, Error> {
        self.with_client(async |client| {
            let row = q::update_session_activity()
                .bind(
                    client,
                    &session_id,
                    &self.policy.idle_seconds(),
                    &ip_address,
                    &self.policy.activity_seconds(),
                )
                .opt()
                .await?;
            Ok(row.map(|row| Activity {
                last_active_at: row.last_active_at,
                written: row.written,
            }))
        })
        .await
    }

    /// Revokes one session, only if it belongs to `user_id`. Returns whether a session was
    /// revoked; a session of another user is left alone and gives `false`. The row stays as a
    /// tombstone (its token then validates as [`Validation::Revoked`]) until cleanup.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn revoke(&self, session_id: Uuid, user_id: Uuid) -> Result<bool, Error> {
        self.with_client(async |client| {
            let revoked = q::revoke_session()
                .bind(client, &session_id, &user_id)
                .opt()
                .await?;
            Ok(revoked.is_some())
        })
        .await
    }

    /// Revokes every session of `user_id` except `current_session_id` ("log out my other
    /// devices"). Returns how many were revoked.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn revoke_all_except(
        &self,
        user_id: Uuid,
        current_session_id: Uuid,
    ) -> Result<u64, Error> {
        self.with_client(async |client| {
            let revoked = q::revoke_all_sessions_except_current()
                .bind(client, &user_id, &current_session_id)
                .one()
                .await?;
            Ok(count(revoked))
        })
        .await
    }

    /// Revokes every session of `user_id` ("log out everywhere"). Returns how many were
    /// revoked.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn revoke_all(&self, user_id: Uuid) -> Result<u64, Error> {
        self.with_client(async |client| {
            let revoked = q::revoke_all_user_sessions()
                .bind(client, &user_id)
                .one()
                .await?;
            Ok(count(revoked))
        })
        .await
    }

    /// Deletes every session past its absolute expiry or idle for longer than the idle timeout
    /// (database clock), revoked ones included. Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        self.with_client(async |client| {
            let deleted = q::delete_expired_sessions()
                .bind(client, &self.policy.idle_seconds())
                .one()
                .await?;
            Ok(count(deleted))
        })
        .await
    }

    /// Deletes at most `limit` dead sessions in one bounded batch: first those past their
    /// absolute expiry (oldest first, along the expiry index), then, with an idle timeout and
    /// room left in the batch, those idle for longer (a second statement). Rows another
    /// cleaner holds are skipped and every condition is re-checked inside the delete, so
    /// several cleaners can run at once without deadlock and live lookups never wait. Returns
    /// how many were deleted; fewer than `limit` means nothing is left for now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a zero `limit`; pool and database errors.
    #[instrument(skip_all, fields(limit, rows = tracing::field::Empty), err(Display))]
    pub async fn delete_expired_batch(&self, limit: u32) -> Result<u64, Error> {
        if limit == 0 {
            return Err(Error::InvalidInput {
                field: "limit",
                problem: crate::InputProblem::OutOfRange,
            });
        }
        self.with_client(async |client| {
            let limit = i64::from(limit);
            let mut deleted = q::delete_expired_sessions_batch()
                .bind(client, &limit)
                .one()
                .await?;
            if let Some(idle) = self.policy.idle_seconds()
                && deleted < limit
            {
                deleted += q::delete_idle_sessions_batch()
                    .bind(client, &idle, &(limit - deleted))
                    .one()
                    .await?;
            }
            Ok(count(deleted))
        })
        .await
    }

    /// Counts for operators: sessions by state, users, the largest per-user count, sizes.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn stats(&self) -> Result<SessionStats, Error> {
        self.with_client(async |client| {
            let row = q::session_stats()
                .bind(client, &self.policy.idle_seconds())
                .one()
                .await?;
            Ok(SessionStats {
                total: count(row.total),
                live: count(row.live),
                expired: count(row.expired),
                revoked: count(row.revoked),
                users: count(row.users),
                max_live_per_user: count(row.max_live_per_user),
                table_bytes: count(row.table_bytes),
                index_bytes: count(row.index_bytes),
            })
        })
        .await
    }

    /// Counts a user's live sessions.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn count_live(&self, user_id: Uuid) -> Result<u64, Error> {
        self.with_client(async |client| {
            let live = q::count_user_sessions()
                .bind(client, &user_id, &self.policy.idle_seconds())
                .one()
                .await?;
            Ok(count(live))
        })
        .await
    }

    /// Classifies a token presented by a device, changing nothing: valid (with the session),
    /// expired, idle-timed-out, revoked, reused or unknown. A token replaced less than the
    /// grace window ago by the session's current token is valid.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] before any database call; pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn validate(&self, presented: &str) -> Result<Validation, Error> {
        let token = RefreshToken::parse(presented)?;
        self.with_client(async |client| {
            let row = q::validate_session()
                .bind(
                    client,
                    &token.hash().as_str(),
                    &self.policy.idle_seconds(),
                    &self.policy.grace_seconds(),
                )
                .opt()
                .await?;
            let Some(row) = row else {
                return Ok(Validation::Unknown);
            };
            Ok(
                match State::parse(&row.outcome, row.revoked_reason.as_deref())? {
                    State::Live => Validation::Valid(row.into()),
                    State::Expired => Validation::Expired,
                    State::IdleTimedOut => Validation::IdleTimedOut,
                    State::Revoked(reason) => Validation::Revoked(reason),
                    State::TokenReused => Validation::TokenReused {
                        session_id: row.id,
                        user_id: row.user_id,
                    },
                },
            )
        })
        .await
    }

    /// Rotates a presented refresh token in one atomic statement: the session's stored hash
    /// becomes the hash of a new token, which is returned, and activity is recorded.
    ///
    /// The new token is derived from the presented one with the policy's rotation key, so
    /// concurrent callers presenting the same token (tabs, a retried request) within
    /// [`SessionPolicy::rotation_grace`] all receive the same new token and the session never
    /// forks. Presenting a replaced token after that revokes the whole session and returns
    /// [`Rotation::TokenReused`] (RFC 9700, 4.14.2).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] before any database call; [`Error::Randomness`] when no
    /// rotation key is configured and none can be drawn; pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn rotate(&self, presented: &str) -> Result<Rotation, Error> {
        let token = RefreshToken::parse(presented)?;
        let successor = self.rotation_key()?.successor(&token);
        self.with_client(async |client| {
            let row = q::rotate_session()
                .bind(
                    client,
                    &token.hash().as_str(),
                    &successor.hash().as_str(),
                    &self.policy.idle_seconds(),
                    &self.policy.grace_seconds(),
                )
                .opt()
                .await?;
            let Some(row) = row else {
                return Ok(Rotation::Unknown);
            };
            Ok(
                match State::parse(&row.outcome, row.revoked_reason.as_deref())? {
                    State::Live => Rotation::Rotated {
                        session: row.into(),
                        token: successor,
                    },
                    State::Expired => Rotation::Expired,
                    State::IdleTimedOut => Rotation::IdleTimedOut,
                    State::Revoked(reason) => Rotation::Revoked(reason),
                    State::TokenReused => {
                        tracing::warn!(session_id = %row.id, user_id = %row.user_id,
                        "refresh token reused after rotation: session revoked");
                        Rotation::TokenReused {
                            session_id: row.id,
                            user_id: row.user_id,
                        }
                    }
                },
            )
        })
        .await
    }

    fn rotation_key(&self) -> Result<&RotationKey, Error> {
        if let Some(key) = &self.policy.rotation_key {
            return Ok(key);
        }
        if let Some(key) = PROCESS_ROTATION_KEY.get() {
            return Ok(key);
        }
        // Two threads may race here; the first key set wins and both use it.
        let _ = PROCESS_ROTATION_KEY.set(RotationKey::generate()?);
        PROCESS_ROTATION_KEY
            .get()
            .ok_or(Error::UnexpectedResponse("rotation key unset"))
    }
}

/// A pooled connection lent to one call; see [`SessionRepo::with_client`].
struct Checkout {
    object: Option<deadpool_postgres::Client>,
    complete: bool,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.complete {
            return; // Back to the pool as usual.
        }
        let Some(object) = self.object.take() else {
            return;
        };
        let cancel = object.cancel_token();
        // Detached from the pool: dropping it closes the connection.
        drop(deadpool_postgres::Object::take(object));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = cancel.cancel_query(tokio_postgres::NoTls).await {
                    tracing::debug!(error = %err, "cancel request for an abandoned call failed");
                }
            });
        }
        tracing::debug!(
            "repository call abandoned mid-flight: connection closed, statement canceled"
        );
    }
}

/// The rows a repository call returned or changed, for its span.
trait Affected {
    fn rows(&self) -> u64;
}

impl Affected for u64 {
    fn rows(&self) -> u64 {
        *self
    }
}

impl Affected for bool {
    fn rows(&self) -> u64 {
        u64::from(*self)
    }
}

impl<T> Affected for Option<T> {
    fn rows(&self) -> u64 {
        u64::from(self.is_some())
    }
}

impl<T> Affected for Vec<T> {
    fn rows(&self) -> u64 {
        self.len() as u64
    }
}

impl Affected for Session {
    fn rows(&self) -> u64 {
        1
    }
}

impl Affected for SessionStats {
    fn rows(&self) -> u64 {
        1
    }
}

impl Affected for Validation {
    fn rows(&self) -> u64 {
        u64::from(matches!(self, Validation::Valid(_)))
    }
}

impl Affected for Rotation {
    fn rows(&self) -> u64 {
        u64::from(matches!(
            self,
            Rotation::Rotated { .. } | Rotation::TokenReused { .. }
        ))
    }
}

/// `count(*)` is never negative.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
