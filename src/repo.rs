//! `SessionRepo`: one method per query of `queries/sessions.sql`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use db::queries::sessions as q;
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{BorrowToSql, ToSql};
use tokio_postgres::{Row, RowStream, Statement, ToStatement};
use tracing::instrument;
use uuid::Uuid;

use crate::cleanup::IdleWalk;
use crate::keys::Keys;
use crate::outcome::Refusal;
use crate::pipeline::{
    DEFAULT_DEADLINE, HotPath, MAX_DEADLINE, Pipeline, PipelineSettings, PipelineStatus,
};
use crate::{
    Activity, CapPolicy, CleanupBatch, CleanupError, Device, Error, KeyRing, KeySource, NewSession,
    RefreshToken, Rotation, RotationKey, Session, SessionKey, SessionPolicy, SessionStats,
    Validation,
};

/// The session store. Cheap to clone: clones share one pool (and, when the hot path is
/// pipelined, its shared connections: see [`SessionRepo::with_hot_path`]).
///
/// Every method takes one connection (pooled, or shared when pipelined) and makes one round
/// trip on it once the connection
/// has prepared the statement (each query returns rows, so the generated code uses the pool's
/// statement cache). The exceptions: [`SessionRepo::delete_expired_batch`] runs up to four
/// statements while its batch has room; a token whose tag does not verify costs no statement
/// at all; and with keys kept by the database ([`KeySource::Database`]) the calls that sign
/// or verify tokens read the stored keys on a pooled connection when they have not been read
/// for [`crate::DatabaseKeys::refresh_every`], or when a token names a key not yet seen.
#[derive(Clone)]
pub struct SessionRepo {
    pool: Pool,
    /// The shared connections of [`HotPath::Pipelined`]; `None` for [`HotPath::Exclusive`].
    pipeline: Option<Arc<Pipeline>>,
    hot_path: HotPath,
    /// How long each hot-path call may take ([`SessionRepo::with_deadline`]).
    deadline: Duration,
    /// Where [`SessionRepo::delete_expired_batch`]'s walk for idle sessions resumes.
    idle_walk: Arc<IdleWalk>,
    policy: Arc<SessionPolicy>,
    /// The rotation keys, from the policy's source.
    keys: Arc<Keys>,
}

impl std::fmt::Debug for SessionRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRepo")
            .field("pool", &self.pool.status())
            .field("hot_path", &self.hot_path)
            .field("deadline", &self.deadline)
            .field(
                "pipeline",
                &self.pipeline.as_ref().map(|pipeline| pipeline.status()),
            )
            .field("policy", &self.policy)
            .finish()
    }
}

impl SessionRepo {
    /// A repository over `pool` (see [`crate::build_pool`]) with the default
    /// [`SessionPolicy`]. The schema must be migrated ([`crate::migrate`]).
    ///
    /// On Citus, the connections of a pool built otherwise must not force generic plans
    /// (`plan_cache_mode = force_generic_plan`, from the connection, the role or the database):
    /// the calls whose statements Citus cannot plan generically then fail with
    /// [`Error::ForcedGenericPlan`]. The pools of [`crate::build_pool`] plan under `auto`.
    pub fn new(pool: Pool) -> Self {
        Self::with_valid_policy(pool, SessionPolicy::default())
    }

    /// A repository over `pool` with the given policies, once [`SessionPolicy::validate`]
    /// accepts them (checked here, before any database call).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`], naming the offending policy field, for a policy outside its
    /// allowed range: for example an idle timeout not strictly longer than the activity
    /// interval, a duration over 10 years, or a per-user cap of 0.
    pub fn with_policy(pool: Pool, policy: SessionPolicy) -> Result<Self, Error> {
        policy.validate()?;
        Ok(Self::with_valid_policy(pool, policy))
    }

    fn with_valid_policy(pool: Pool, policy: SessionPolicy) -> Self {
        Self {
            pool,
            pipeline: None,
            hot_path: HotPath::Exclusive,
            keys: Arc::new(Keys::new(policy.rotation_keys.clone())),
            deadline: DEFAULT_DEADLINE,
            idle_walk: Arc::default(),
            policy: Arc::new(policy),
        }
    }

    /// A repository over `pool` with the default [`SessionPolicy`] whose hot-path calls run
    /// on `settings.connections` shared, pipelined connections; shorthand for
    /// `SessionRepo::new(pool).with_hot_path(HotPath::Pipelined(settings))`.
    ///
    /// # Errors
    ///
    /// As [`SessionRepo::with_hot_path`].
    pub fn pipelined(pool: Pool, settings: PipelineSettings) -> Result<Self, Error> {
        Self::new(pool).with_hot_path(HotPath::Pipelined(settings))
    }

    /// This repository with its hot-path calls run as `hot_path` says; bulk calls (cleanup,
    /// [`SessionRepo::stats`]) always check a connection out of the pool.
    ///
    /// With [`HotPath::Pipelined`], the read-only calls of this repository and its clones
    /// ([`SessionRepo::find_by_token`], [`SessionRepo::validate`],
    /// [`SessionRepo::list_devices`], [`SessionRepo::count_live`]), and the writing ones too
    /// when [`PipelineSettings::pipeline_writes`] is set, share
    /// [`PipelineSettings::connections`] connections of their own, besides the pool's, opened
    /// on first use by the pool's manager (the pool's TLS settings, statement timeout and
    /// isolation level) and each preparing a statement once. Many calls are in flight on one
    /// connection at once, answered in order, so a call waits for the statements queued
    /// before it on its connection, and one that waits for a row lock delays those behind it
    /// (on the exclusive path it delays only itself). A connection that dies fails the calls
    /// in flight on it with a retryable [`Error::Database`] (see [`Error::is_retryable`]) and
    /// is replaced on the next call. A call whose future is dropped before it completed
    /// retires its connection, so later calls never queue behind its statement; its
    /// statement is canceled when no other call shares the connection at that moment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `connections`) for a connection count of 0 or above
    /// [`crate::MAX_PIPELINE_CONNECTIONS`].
    pub fn with_hot_path(mut self, hot_path: HotPath) -> Result<Self, Error> {
        self.pipeline = match &hot_path {
            HotPath::Exclusive => None,
            HotPath::Pipelined(settings) => {
                settings.validate()?;
                Some(Arc::new(Pipeline::new(self.pool.clone(), settings)))
            }
        };
        self.hot_path = hot_path;
        Ok(self)
    }

    /// How the hot-path calls run.
    pub fn hot_path(&self) -> &HotPath {
        &self.hot_path
    }

    /// This repository with every hot-path call limited to `deadline`, from its start to its
    /// answer (default [`crate::DEFAULT_DEADLINE`], 5 s): the calls that run on the hot path
    /// (exclusive or pipelined), that is every call but cleanup and [`SessionRepo::stats`].
    ///
    /// A call that gets no connection within its deadline fails with [`Error::PoolTimeout`];
    /// one that has a connection but no answer in time fails with [`Error::DeadlineExceeded`]
    /// (retryable), however the network failed (a half-open connection, a partition, a
    /// crashed host) and also when its statement waits that long on a lock. Its connection is
    /// not reused: a pooled one is closed and its statement canceled, as for an abandoned
    /// call; a shared one is retired, and the other calls queued on it fail at once with the
    /// same error. Keep the deadline above the pool's `statement_timeout`, if any, for slow
    /// statements to end as [`Error::StatementTimeout`] on a connection that stays usable.
    ///
    /// Cleanup and [`SessionRepo::stats`], which may legitimately run long, have no deadline:
    /// they are bounded by the pool's timeouts, `statement_timeout`, and TCP keepalive and
    /// `tcp_user_timeout` on every connection (see [`crate::build_pool_with_tls`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `deadline`) for a zero deadline or one over
    /// [`crate::MAX_DEADLINE`].
    pub fn with_deadline(mut self, deadline: Duration) -> Result<Self, Error> {
        if deadline.is_zero() || deadline > MAX_DEADLINE {
            return Err(Error::InvalidInput {
                field: "deadline",
                problem: crate::InputProblem::OutOfRange,
            });
        }
        self.deadline = deadline;
        Ok(self)
    }

    /// How long each hot-path call may take (see [`SessionRepo::with_deadline`]).
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The shared connections of a pipelined hot path; `None` with [`HotPath::Exclusive`].
    pub fn pipeline_status(&self) -> Option<PipelineStatus> {
        self.pipeline.as_ref().map(|pipeline| pipeline.status())
    }

    /// The policies in force.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Runs one repository call: on a shared connection when the hot path is pipelined and
    /// the route is [`Route::Read`], or [`Route::Write`] with
    /// [`PipelineSettings::pipeline_writes`] (see [`SessionRepo::with_hot_path`] and
    /// [`crate::pipeline::Lease`] for what an abandoned or timed-out call does there); on a
    /// pooled connection otherwise. Hot-path calls ([`Route::Read`], [`Route::Write`]) end
    /// by their deadline ([`SessionRepo::with_deadline`]).
    ///
    /// On a pooled connection, when the call misses its deadline or the caller drops the
    /// call's future while a statement is in flight, the connection does not go back to the
    /// pool (it would still be busy with that statement, or dead, and stall the next caller):
    /// it is detached and closed, and the server is asked to cancel the statement, which then
    /// rolls back unless it had already committed. Each call's statements are autocommit
    /// statements (no call opens a transaction), so either way nothing is left half done and
    /// no transaction stays open.
    ///
    /// It also records on the caller's span how many rows the call returned or changed.
    async fn with_client<T: Affected>(
        &self,
        route: Route,
        op: impl AsyncFnOnce(&Conn<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let shared = match (&self.pipeline, route) {
            (Some(pipeline), Route::Read) => Some(pipeline),
            (Some(pipeline), Route::Write) if pipeline.writes() => Some(pipeline),
            _ => None,
        };
        let deadline = match route {
            Route::Read | Route::Write => tokio::time::Instant::now().checked_add(self.deadline),
            Route::Bulk => None,
        };
        // One timer per call, for both the connection and the answer.
        let mut limit = std::pin::pin!(until(deadline));
        let result = match shared {
            Some(pipeline) => {
                let lease = tokio::select! {
                    biased;
                    lease = pipeline.lease() => lease?,
                    () = &mut limit => return Err(Error::PoolTimeout),
                };
                let failed = lease.failed();
                let conn = Conn(lease.client());
                let answered = tokio::select! {
                    biased;
                    result = op(&conn) => Some(result),
                    () = failed => None,
                    () = &mut limit => None,
                };
                match answered {
                    Some(result) => {
                        let result = match result {
                            Err(err) => Err(explain_failure(lease.client(), err).await),
                            ok => ok,
                        };
                        lease.complete();
                        result
                    }
                    None => {
                        lease.time_out();
                        Err(Error::DeadlineExceeded)
                    }
                }
            }
            _ => self.with_pooled(limit.as_mut(), op).await,
        };
        if let Ok(value) = &result {
            tracing::Span::current().record("rows", value.rows());
        }
        result
    }

    /// Runs `op` on a pooled connection, ending when `limit` does: with
    /// [`Error::PoolTimeout`] while waiting for the connection, with
    /// [`Error::DeadlineExceeded`] after (the [`Checkout`] then closes the connection and
    /// cancels its statement).
    async fn with_pooled<T>(
        &self,
        mut limit: std::pin::Pin<&mut impl Future<Output = ()>>,
        op: impl AsyncFnOnce(&Conn<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let object = tokio::select! {
            biased;
            object = self.pool.get() => object,
            () = limit.as_mut() => Err(deadpool_postgres::PoolError::Timeout(
                deadpool_postgres::TimeoutType::Wait,
            )),
        };
        crate::metrics::pool_wait(
            started.elapsed(),
            matches!(object, Err(deadpool_postgres::PoolError::Timeout(_))),
        );
        let mut checkout = Checkout {
            object: Some(object?),
            complete: false,
        };
        let Some(client) = checkout.object.as_ref() else {
            return Err(Error::UnexpectedResponse("pooled connection missing"));
        };
        let conn = Conn(client);
        let result = tokio::select! {
            biased;
            result = op(&conn) => result,
            // Dropped incomplete, the checkout closes the connection and cancels its statement.
            () = limit => return Err(Error::DeadlineExceeded),
        };
        let result = match result {
            Err(err) => Err(explain_failure(client, err).await),
            ok => ok,
        };
        checkout.complete = true;
        result
    }

    /// The pool this repository uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates a session with a fresh refresh token (generation 0, a random session id, signed
    /// by the active rotation key).
    /// Returns the session and the token, which the caller hands to the device; only the
    /// token's hash is stored.
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
        let token = self.mint_token(new.user_id).await?;
        let session = self.insert(new, &token, ttl_seconds).await?;
        Ok((session, token))
    }

    /// A new refresh token for a new session of `user_id` (generation 0, random session id and
    /// chain), signed by the active rotation key, for [`SessionRepo::create_with_token`]. Runs
    /// no statement unless keys kept by the database must be read.
    ///
    /// # Errors
    ///
    /// [`Error::Randomness`] when the operating system cannot provide random bytes; with keys
    /// kept by the database, the errors of reading them ([`Error::RotationKeyUnusable`], pool
    /// and database errors).
    pub async fn mint_token(&self, user_id: Uuid) -> Result<RefreshToken, Error> {
        self.within_deadline(self.keys.ring(&self.pool))
            .await?
            .active()
            .mint(user_id)
    }

    /// Creates a session for a refresh token the caller already minted (with
    /// [`SessionRepo::mint_token`] or [`RotationKey::mint`]): the session takes the token's ids
    /// and generation.
    ///
    /// # Errors
    ///
    /// As [`SessionRepo::create`], plus [`Error::InvalidInput`] (field `token`) when the token
    /// was minted for another user or is not signed by one of this repository's keys, and
    /// [`Error::DuplicateSession`] when its session already exists (whichever generation of its
    /// chain the token is).
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn create_with_token(
        &self,
        new: &NewSession,
        token: &RefreshToken,
    ) -> Result<Session, Error> {
        let ttl_seconds = new.validate()?;
        if token.user_id() != new.user_id || self.verified(token).await?.is_none() {
            return Err(Error::InvalidInput {
                field: "token",
                problem: crate::InputProblem::OutOfRange,
            });
        }
        self.insert(new, token, ttl_seconds).await
    }

    async fn insert(
        &self,
        new: &NewSession,
        token: &RefreshToken,
        ttl_seconds: i64,
    ) -> Result<Session, Error> {
        let created = self
            .with_client(Route::Write, async |client| {
                let row = q::create_session()
                    .bind(
                        client,
                        &new.user_id,
                        &token.session_id(),
                        &generation(token),
                        &token.hash().as_str(),
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
                crate::metrics::evictions(count(row.evicted));
                Ok(Session::from(row))
            })
            .await;
        if matches!(created, Err(Error::SessionCapReached)) {
            crate::metrics::cap_refusal();
        }
        created
    }

    /// Finds the live session of a refresh token presented by a device: one statement, by the
    /// primary key the token carries (user id, session id), comparing the stored hash of the
    /// whole token. `Ok(None)` unless the token is the session's current one and the session
    /// is live (not revoked, `expires_at > now()`, not idle for longer than the idle timeout,
    /// on the database clock); [`SessionRepo::validate`] says why. A token whose ids were
    /// altered matches nothing: `Ok(None)`, never another user's session.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] when `presented` is not a well-formed token (before any
    /// database call); pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn find_by_token(&self, presented: &str) -> Result<Option<Session>, Error> {
        let token = RefreshToken::parse(presented)?;
        self.with_client(Route::Read, async |client| {
            let row = q::get_session_by_token()
                .bind(
                    client,
                    &token.user_id(),
                    &token.session_id(),
                    &token.hash().as_str(),
                    &self.policy.idle_seconds(),
                )
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
        self.with_client(Route::Read, async |client| {
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
    /// session is not live; a session revoked while the call waits for its row is not
    /// written.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn record_activity(
        &self,
        session: SessionKey,
        ip_address: Option<IpAddr>,
    ) -> Result<Option<Activity>, Error> {
        self.with_client(Route::Write, async |client| {
            let row = q::update_session_activity()
                .bind(
                    client,
                    &session.user_id,
                    &session.session_id,
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

    /// Revokes one session of `session.user_id`. Returns whether a session was revoked; the
    /// id of another user's session matches nothing and gives `false`. The row stays as a
    /// tombstone (its token then validates as [`Validation::Revoked`]) for
    /// [`SessionPolicy::tombstone_retention`], or until it would have expired if sooner.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn revoke(&self, session: SessionKey) -> Result<bool, Error> {
        self.with_client(Route::Write, async |client| {
            let revoked = q::revoke_session()
                .bind(client, &session.user_id, &session.session_id)
                .opt()
                .await?;
            Ok(revoked.is_some())
        })
        .await
    }

    /// Revokes every unexpired session of `current.user_id` except `current` ("log out my other
    /// devices"). Returns how many were revoked, or `None` (revoking nothing) when `current`
    /// is not an unrevoked session of that user: a mistyped or foreign id never logs out every
    /// device.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn revoke_all_except(&self, current: SessionKey) -> Result<Option<u64>, Error> {
        self.with_client(Route::Write, async |client| {
            let row = q::revoke_all_sessions_except_current()
                .bind(client, &current.user_id, &current.session_id)
                .one()
                .await?;
            Ok(row.found.then(|| count(row.revoked)))
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
        self.with_client(Route::Write, async |client| {
            let revoked = q::revoke_all_user_sessions()
                .bind(client, &user_id)
                .one()
                .await?;
            Ok(count(revoked))
        })
        .await
    }

    /// Deletes every session past its absolute expiry or unrevoked and idle for longer than the
    /// idle timeout (database clock), and every tombstone (revoked session) older than
    /// [`SessionPolicy::tombstone_retention`]. One unbounded statement: on a large table
    /// prefer [`SessionRepo::delete_expired_batch`]. Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        self.with_client(Route::Bulk, async |client| {
            let deleted = q::delete_expired_sessions()
                .bind(
                    client,
                    &self.policy.idle_seconds(),
                    &self.policy.retention_seconds(),
                )
                .one()
                .await?;
            crate::metrics::cleanup_batch(count(deleted));
            Ok(count(deleted))
        })
        .await
    }

    /// Deletes at most `limit` dead sessions in one bounded batch of up to four statements,
    /// each of which reads a bounded number of rows however large the table:
    ///
    /// 1. sessions past their absolute expiry, oldest first, along the expiry index;
    /// 2. with room left, tombstones past [`SessionPolicy::tombstone_retention`], oldest
    ///    first, along their partial index;
    /// 3. with an idle timeout and room left, one step of the idle walk: it reads the next
    ///    sessions in primary-key order, as many as there is room for, and
    /// 4. when some of them are unrevoked and idle for longer, deletes those in that key
    ///    range.
    ///
    /// No index holds `last_active_at` (activity updates stay HOT), so idle sessions are
    /// found by walking the table a window at a time; the position is kept in the repository
    /// (shared by its clones) from one batch to the next, and starts over once the walk
    /// reaches the end of the table.
    ///
    /// No statement takes a row lock before its delete, and each re-checks its condition
    /// inside it, so it works alike on one node and on Citus, and several cleaners can run at
    /// once without deadlock (a second one waits for rows the first deletes, then skips them).
    /// Run batches until one reports [`CleanupBatch::caught_up`]: a batch that deleted fewer
    /// than `limit` may still be mid-walk.
    ///
    /// # Errors
    ///
    /// [`CleanupError`], with the cause in [`CleanupError::error`]: [`Error::InvalidInput`]
    /// for a zero `limit` (before any database call), pool and database errors, for example
    /// [`Error::StatementTimeout`] when a statement waited too long for a row another
    /// transaction holds. Each statement commits on its own, so [`CleanupError::deleted`]
    /// counts what the batch's earlier statements deleted. After a failed idle step the walk
    /// stays where it was, and the next batch retries that window.
    #[instrument(skip_all, fields(limit, rows = tracing::field::Empty), err(Display))]
    pub async fn delete_expired_batch(&self, limit: u32) -> Result<CleanupBatch, CleanupError> {
        if limit == 0 {
            return Err(CleanupError::before_any(Error::InvalidInput {
                field: "limit",
                problem: crate::InputProblem::OutOfRange,
            }));
        }
        let outcome = self
            .with_client(Route::Bulk, async |client| {
                Ok(self.run_cleanup_batch(client, i64::from(limit)).await)
            })
            .await;
        let (batch, failure) = match outcome {
            Ok(BatchOutcome { batch, failure }) => (batch, failure),
            Err(err) => (CleanupBatch::default(), Some(err)),
        };
        crate::metrics::cleanup_batch(batch.deleted());
        match failure {
            None => Ok(batch),
            Some(error) => Err(CleanupError {
                deleted: batch,
                error,
            }),
        }
    }

    /// The statements of [`SessionRepo::delete_expired_batch`] on one connection: what they
    /// deleted, and the error that stopped them, if any.
    async fn run_cleanup_batch(&self, client: &Conn<'_>, limit: i64) -> BatchOutcome {
        let mut batch = CleanupBatch::default();
        let expired = q::delete_expired_sessions_batch()
            .bind(client, &limit)
            .one()
            .await;
        batch.expired = match expired {
            Ok(deleted) => count(deleted),
            Err(err) => return BatchOutcome::failed(client, batch, err.into()).await,
        };
        let mut room = limit - batch.expired as i64;
        if room > 0 {
            let tombstones = q::delete_revoked_sessions_batch()
                .bind(client, &self.policy.retention_seconds(), &room)
                .one()
                .await;
            batch.tombstones = match tombstones {
                Ok(deleted) => count(deleted),
                Err(err) => return BatchOutcome::failed(client, batch, err.into()).await,
            };
            room -= batch.tombstones as i64;
        }
        // Expired rows and tombstones are drained when neither filled its room.
        batch.caught_up = room > 0;
        if let Some(idle) = self.policy.idle_seconds()
            && room > 0
        {
            let (from_user_id, from_id) = self.idle_walk.position();
            let window = q::find_idle_sessions_in_key_window()
                .bind(client, &from_user_id, &from_id, &room, &idle)
                .one()
                .await;
            let window = match window {
                Ok(window) => window,
                Err(err) => return BatchOutcome::failed(client, batch, err.into()).await,
            };
            batch.examined = count(window.examined);
            if let (true, Some(to_user_id), Some(to_id)) =
                (window.idle > 0, window.last_user_id, window.last_id)
            {
                let deleted = q::delete_idle_sessions_in_key_range()
                    .bind(client, &from_user_id, &from_id, &to_user_id, &to_id, &idle)
                    .one()
                    .await;
                batch.idle = match deleted {
                    Ok(deleted) => count(deleted),
                    Err(err) => return BatchOutcome::failed(client, batch, err.into()).await,
                };
            }
            let next = window.next_user_id.zip(window.next_id);
            batch.caught_up = next.is_none();
            self.idle_walk.advance(next);
        }
        BatchOutcome {
            batch,
            failure: None,
        }
    }

    /// Counts for operators: sessions by state, users, the largest per-user count, sizes.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn stats(&self) -> Result<SessionStats, Error> {
        self.with_client(Route::Bulk, async |client| {
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
        self.with_client(Route::Read, async |client| {
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
    /// grace window ago by the session's current token is valid. An older token of a live
    /// session is reported as reused: its tag proves the server issued it for this session (see
    /// [`SessionRepo::rotate`]). A token whose tag does not verify is unknown, at the cost of
    /// one HMAC and no statement.
    ///
    /// Only reads, also the stored rotation keys: it works on a hot standby or in a read-only
    /// transaction once a key is stored.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] before any database call; pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn validate(&self, presented: &str) -> Result<Validation, Error> {
        let token = RefreshToken::parse(presented)?;
        if self.verified(&token).await?.is_none() {
            return Ok(Validation::Unknown);
        }
        self.with_client(Route::Read, async |client| {
            let row = q::validate_session()
                .bind(
                    client,
                    &generation(&token),
                    &token.hash().as_str(),
                    &self.policy.grace_seconds(),
                    &self.policy.idle_seconds(),
                    &token.user_id(),
                    &token.session_id(),
                )
                .opt()
                .await?;
            let Some(row) = row else {
                return Ok(Validation::Unknown);
            };
            Ok(match row.outcome.as_str() {
                "grace" => Validation::Valid(row.into()),
                "token_reused" => Validation::TokenReused {
                    session_id: row.id,
                    user_id: row.user_id,
                },
                outcome => match Refusal::parse(outcome, row.revoked_reason.as_deref())? {
                    None => Validation::Valid(row.into()),
                    Some(refusal) => refusal.into(),
                },
            })
        })
        .await
    }

    /// Rotates a presented refresh token in one atomic statement that writes one row (a HOT
    /// update) and keeps no history: the session's stored hash becomes the hash of the
    /// token's successor, which is returned, and activity is recorded.
    ///
    /// Every token carries a tag, an HMAC under the rotation key named by its key id over its
    /// ids, generation and chain. The tag is checked first, in constant time: a token that
    /// does not verify (a forgery, whatever ids and generation it claims, or one signed by a
    /// key this repository does not have) is [`Rotation::Unknown`] at the cost of one HMAC and
    /// no statement, and revokes nothing.
    ///
    /// The successor is derived from the presented token with the active rotation key (same
    /// ids and chain, next generation), so concurrent callers presenting the same token
    /// (tabs, a retried request) within [`SessionPolicy::rotation_grace`] all receive the
    /// same new token and the session never forks, also across instances whose active keys
    /// differ while a new key rolls out. A verified token older than the current one (the
    /// parent after the grace window, or any earlier generation, however old) is proven a true
    /// ancestor by its tag alone, and the same statement revokes the live session and returns
    /// [`Rotation::TokenReused`] (RFC 9700, 4.14.2). The work per call is the same whatever
    /// generation the token claims: at most one statement, two HMACs and two SHA-256 hashes
    /// (plus, inside the grace window, one HMAC per key of the ring until one matches).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] before any database call; [`Error::Randomness`] when keys
    /// kept by the database must be drawn and cannot be; [`Error::RotationKeyUnusable`] when a
    /// stored key cannot be opened; pool and database errors.
    #[instrument(skip_all, fields(rows = tracing::field::Empty), err(Display))]
    pub async fn rotate(&self, presented: &str) -> Result<Rotation, Error> {
        let token = RefreshToken::parse(presented)?;
        let Some(ring) = self.verified(&token).await? else {
            crate::metrics::rotation(&Rotation::Unknown, false);
            return Ok(Rotation::Unknown);
        };
        // A genuine token at the last generation has no successor (2^31 rotations).
        let Ok(successor) = ring.active().successor(&token) else {
            crate::metrics::rotation(&Rotation::Unknown, false);
            return Ok(Rotation::Unknown);
        };
        let row = self
            .with_client(Route::Write, async |client| {
                Ok(q::rotate_session()
                    .bind(
                        client,
                        &token.user_id(),
                        &token.session_id(),
                        &generation(&token),
                        &token.hash().as_str(),
                        &successor.hash().as_str(),
                        &self.policy.idle_seconds(),
                        &self.policy.grace_seconds(),
                    )
                    .opt()
                    .await?)
            })
            .await?;
        let grace = row.as_ref().is_some_and(|row| row.outcome == "grace");
        let rotation = match row {
            None => Rotation::Unknown,
            Some(row) => match row.outcome.as_str() {
                "rotated" => Rotation::Rotated {
                    session: row.into(),
                    token: successor,
                },
                "grace" => match self
                    .current_successor(&ring, &token, successor, &row)
                    .await?
                {
                    Some(current) => Rotation::Rotated {
                        session: row.into(),
                        token: current,
                    },
                    None => Rotation::Unknown,
                },
                "token_reused" => Rotation::TokenReused {
                    session_id: row.id,
                    user_id: row.user_id,
                },
                outcome => match Refusal::parse(outcome, row.revoked_reason.as_deref())? {
                    None => {
                        return Err(Error::UnexpectedResponse(
                            "rotation of a live session neither rotated nor refused",
                        ));
                    }
                    Some(refusal) => refusal.into(),
                },
            },
        };
        if let Rotation::TokenReused {
            session_id,
            user_id,
        } = &rotation
        {
            tracing::warn!(%session_id, %user_id,
                "refresh token reused after rotation: session revoked");
        }
        crate::metrics::rotation(&rotation, grace);
        Ok(rotation)
    }

    /// The ring that verifies `token`'s tag, or `None` for a token none of this repository's
    /// keys signed. One HMAC; with keys kept by the database, a token naming a key id above
    /// the highest known makes the keys be read again (one statement, shared by concurrent
    /// callers).
    async fn verified(&self, token: &RefreshToken) -> Result<Option<Arc<KeyRing>>, Error> {
        let ring = self
            .within_deadline(self.keys.ring_knowing(&self.pool, token.key_id()))
            .await?;
        Ok(ring.verifies(token).then_some(ring))
    }

    /// `keys` (a read of the keys kept by the database, when due) ended by the deadline of
    /// hot-path calls, with [`Error::DeadlineExceeded`].
    async fn within_deadline<T>(
        &self,
        keys: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(self.deadline, keys)
            .await
            .unwrap_or(Err(Error::DeadlineExceeded))
    }

    /// Inside the grace window: the successor of `parent` that the session now holds, signed by
    /// whichever key of the ring the instance that rotated first used (its active key, which
    /// may not be this one's while a new key rolls out): `derived`, the successor this call
    /// already signed with its active key, or else one more HMAC per other key until one
    /// matches; when none does, the keys are read again once (the parent's tag verified, so
    /// no forger gets here).
    async fn current_successor(
        &self,
        ring: &KeyRing,
        parent: &RefreshToken,
        derived: RefreshToken,
        row: &q::SessionOutcome,
    ) -> Result<Option<RefreshToken>, Error> {
        let Some(current) = row.current_hash.as_deref() else {
            return Ok(None);
        };
        if derived.hash().as_str() == current {
            return Ok(Some(derived));
        }
        let matching = |ring: &KeyRing| {
            ring.keys()
                .filter(|key| key.id() != derived.key_id())
                .filter_map(|key| key.successor(parent).ok())
                .find(|successor| successor.hash().as_str() == current)
        };
        if let Some(successor) = matching(ring) {
            return Ok(Some(successor));
        }
        Ok(self
            .within_deadline(self.keys.reread(&self.pool))
            .await?
            .and_then(|fresh| matching(&fresh)))
    }

    /// Stores a new rotation key, drawn at random, as the next id: it becomes the active key,
    /// signing new tokens and successors, while the previous keys still verify the tokens they
    /// signed, so nobody is logged out. This repository uses it at once; other instances
    /// within [`crate::DatabaseKeys::refresh_every`], or as soon as they meet a token it
    /// signed. Returns the new key's id. Run it on the primary.
    ///
    /// # Errors
    ///
    /// [`Error::KeysNotInDatabase`] when the keys come from the secret store;
    /// [`Error::InvalidInput`] (field `key_id`) when the ids are used up; [`Error::Randomness`];
    /// pool and database errors (a concurrent addition of the same id is
    /// [`Error::UnexpectedResponse`]: run it again).
    pub async fn add_rotation_key(&self) -> Result<u16, Error> {
        let KeySource::Database(database) = self.keys.source() else {
            return Err(Error::KeysNotInDatabase);
        };
        let ring = self.keys.ring(&self.pool).await?;
        let highest = ring.keys().map(RotationKey::id).max().unwrap_or(0);
        let key = RotationKey::generate(highest.saturating_add(1))?;
        let (stored, nonce) = database.store(&key)?;
        let client = self.pool.get().await?;
        db::queries::rotation_keys::insert_rotation_key()
            .bind(
                &client,
                &i16::try_from(key.id()).unwrap_or(i16::MAX),
                &stored.as_slice(),
                &nonce.as_deref(),
            )
            .opt()
            .await?
            .ok_or(Error::UnexpectedResponse(
                "another instance stored a rotation key with the same id",
            ))?;
        drop(client);
        self.keys.reread(&self.pool).await?;
        Ok(key.id())
    }

    /// Deletes stored rotation key `id`, unless it is the active (highest) one. Tokens it
    /// signed are unknown afterwards, and so are their sessions' later tokens if the session
    /// was not rotated since: retire a key only once every session has been idle-timed-out,
    /// expired or rotated since the next key became active (README, "Rotation keys").
    /// Returns whether a key was deleted.
    ///
    /// # Errors
    ///
    /// [`Error::KeysNotInDatabase`] when the keys come from the secret store; pool and database
    /// errors.
    pub async fn retire_rotation_key(&self, id: u16) -> Result<bool, Error> {
        if !matches!(self.keys.source(), KeySource::Database(_)) {
            return Err(Error::KeysNotInDatabase);
        }
        let Ok(id) = i16::try_from(id) else {
            return Ok(false);
        };
        let client = self.pool.get().await?;
        let deleted = db::queries::rotation_keys::delete_rotation_key()
            .bind(&client, &id)
            .opt()
            .await?;
        Ok(deleted.is_some())
    }

    /// The ids of the rotation keys this repository knows, the active one first (read again
    /// from the database when they are kept there and due).
    ///
    /// # Errors
    ///
    /// With keys kept by the database, the errors of reading them.
    pub async fn rotation_key_ids(&self) -> Result<Vec<u16>, Error> {
        let ring = self.keys.ring(&self.pool).await?;
        Ok(ring.keys().map(RotationKey::id).collect())
    }
}

/// The calls behind [`crate::LiveSessions`] (src/live.rs).
impl SessionRepo {
    /// Keeps the live sessions this instance meets in memory, so that most checks of a session
    /// cost no database call, with every end of a session pushed by the database: see
    /// [`crate::LiveSessions`]. Spawns its background task (listening, heartbeats, activity
    /// batches) on the current tokio runtime; stop it with [`crate::LiveSessions::shutdown`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for settings out of range ([`crate::LiveSettings`]), among them
    /// a flush interval that leaves no room under the idle timeout;
    /// [`Error::Config`] when the pool was not built by this crate (the listening connection
    /// must be opened exactly like the pool's) or no tokio runtime is running.
    pub fn live_sessions(
        &self,
        settings: crate::LiveSettings,
    ) -> Result<crate::LiveSessions, Error> {
        crate::live::LiveSessions::start(self.clone(), settings)
    }

    /// The live session (`key`) with the database clock it was read at, or `None` when it is
    /// not live. One statement, on the hot path.
    pub(crate) async fn live_session_by_key(
        &self,
        key: SessionKey,
    ) -> Result<Option<q::LiveSessionByKey>, Error> {
        self.with_client(Route::Read, async |client| {
            Ok(q::get_live_session_by_key()
                .bind(
                    client,
                    &key.user_id,
                    &key.session_id,
                    &self.policy.idle_seconds(),
                )
                .opt()
                .await?)
        })
        .await
    }

    /// Records activity on many sessions in one statement (see
    /// `queries/sessions.sql`, record_activity_batch); `batch` sorted by key. Returns every
    /// live session of the batch with its stored activity time and whether it was written.
    pub(crate) async fn record_activity_batch(
        &self,
        batch: &[(SessionKey, Option<IpAddr>)],
    ) -> Result<Vec<(SessionKey, Activity)>, Error> {
        let user_ids: Vec<Uuid> = batch.iter().map(|(key, _)| key.user_id).collect();
        let ids: Vec<Uuid> = batch.iter().map(|(key, _)| key.session_id).collect();
        let ips: Vec<String> = batch
            .iter()
            .map(|(_, ip)| ip.map(|ip| ip.to_string()).unwrap_or_default())
            .collect();
        self.with_client(Route::Write, async |client| {
            let rows = q::record_activity_batch()
                .bind(
                    client,
                    &user_ids,
                    &ids,
                    &ips,
                    &self.policy.idle_seconds(),
                    &self.policy.activity_seconds(),
                )
                .all()
                .await?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let activity = Activity {
                        last_active_at: row.last_active_at,
                        written: row.written,
                    };
                    (SessionKey::new(row.user_id, row.id), activity)
                })
                .collect())
        })
        .await
    }
}

/// `err`, or [`Error::ForcedGenericPlan`] when it is Citus refusing a generic plan: a
/// feature-not-supported error (SQLSTATE 0A000) on a connection whose `plan_cache_mode` is
/// `force_generic_plan`. The connection is asked only after such an error; when it cannot
/// answer, `err` is returned unchanged.
pub(crate) async fn explain_failure(client: &tokio_postgres::Client, err: Error) -> Error {
    match err {
        Error::Database(db) if db.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
            let forced = client
                .query_one(
                    "SELECT current_setting('plan_cache_mode') = 'force_generic_plan'",
                    &[],
                )
                .await
                .is_ok_and(|row| row.get::<_, bool>(0));
            if forced {
                Error::ForcedGenericPlan(db)
            } else {
                Error::Database(db)
            }
        }
        other => other,
    }
}

/// A pooled connection lent to one call; see [`SessionRepo::with_client`]. Dropped before
/// the call completed (abandoned, or past its deadline), it closes the connection and cancels
/// its statement.
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
        // The request goes out with the pool's TLS settings, like its connections, and gives
        // up after the pool's create timeout (the server may be unreachable).
        let tls = crate::pool::cancel_connector(&object);
        let limit = crate::pool::cancel_limit(deadpool_postgres::Object::pool(&object).as_ref());
        // Detached from the pool: dropping it closes the connection.
        drop(deadpool_postgres::Object::take(object));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = crate::pool::cancel_query(cancel, tls, limit).await {
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

/// What the statements of a cleanup batch deleted, and the error that stopped them.
struct BatchOutcome {
    batch: CleanupBatch,
    failure: Option<Error>,
}

impl BatchOutcome {
    /// The batch so far, stopped by `error` (explained as [`Error::ForcedGenericPlan`] when it
    /// is one, as [`SessionRepo::with_client`] does for the other calls).
    async fn failed(client: &Conn<'_>, batch: CleanupBatch, error: Error) -> Self {
        Self {
            batch: CleanupBatch {
                caught_up: false,
                ..batch
            },
            failure: Some(explain_failure(client.0, error).await),
        }
    }
}

impl Affected for BatchOutcome {
    fn rows(&self) -> u64 {
        self.batch.deleted()
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

/// Resolves at `deadline`, or never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A token's generation as the database stores it (`parse` bounds it to `i32`).
fn generation(token: &RefreshToken) -> i32 {
    i32::try_from(token.generation()).unwrap_or(i32::MAX)
}

/// `count(*)` is never negative.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Where a repository call runs; see [`SessionRepo::with_client`].
#[derive(Clone, Copy)]
enum Route {
    /// A single-statement call of the request path that writes nothing (lookup, validation,
    /// listing, counting): a shared connection when pipelined.
    Read,
    /// A single-statement call of the request path that may commit a write (create, rotate,
    /// activity, revocations): a shared connection only when writes are pipelined too.
    Write,
    /// Cleanup and statistics: always a pooled connection, never shared with the hot path.
    Bulk,
}

/// The connection a call's statements run on, pooled or shared: a connection with a
/// statement cache, so each query is prepared once per connection.
struct Conn<'a>(&'a deadpool_postgres::ClientWrapper);

impl db::client::GenericClient for Conn<'_> {
    fn stmt_cache() -> bool {
        true
    }

    async fn prepare(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        self.0.prepare_cached(query).await
    }

    async fn execute<T>(
        &self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        self.0.execute(query, params).await
    }

    async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        self.0.query_one(statement, params).await
    }

    async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        self.0.query_opt(statement, params).await
    }

    async fn query<T>(
        &self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
    {
        self.0.query(query, params).await
    }

    async fn query_raw<T, I>(
        &self,
        statement: &T,
        params: I,
    ) -> Result<RowStream, tokio_postgres::Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
        I: IntoIterator + Sync + Send,
        I::IntoIter: ExactSizeIterator,
        I::Item: BorrowToSql,
    {
        self.0.query_raw(statement, params).await
    }
}
