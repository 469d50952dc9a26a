//! `SessionRepo`: one method per query of `queries/sessions.sql`.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use db::queries::sessions as q;
use deadpool_postgres::Pool;
use tracing::instrument;
use uuid::Uuid;

use crate::{Device, Error, NewSession, RefreshToken, Session, TokenHash};

/// The session store. Cheap to clone: clones share one pool.
///
/// Every method takes one pooled connection and makes exactly one round trip on it once the
/// connection has prepared the statement (each query returns rows, so the generated code uses
/// the pool's statement cache).
#[derive(Clone)]
pub struct SessionRepo {
    pool: Pool,
}

impl std::fmt::Debug for SessionRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRepo")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl SessionRepo {
    /// A repository over `pool` (see [`crate::build_pool`]). The schema must be migrated
    /// ([`crate::migrate`]).
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The pool this repository uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates a session with a fresh refresh token. Returns the session and the token, which
    /// the caller hands to the device; only the token's hash is stored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for text with a NUL byte or over its limit, or a lifetime out of
    /// range (before any database call); [`Error::UnknownUser`] when `user_id` does not exist;
    /// pool and database errors.
    #[instrument(skip_all, err(Display))]
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
    #[instrument(skip_all, err(Display))]
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
        let client = self.pool.get().await?;
        let row = q::create_session()
            .bind(
                &client,
                &new.user_id,
                &hash.as_str(),
                &new.device_info.as_deref(),
                &new.ip_address,
                &new.user_agent.as_deref(),
                &ttl_seconds,
            )
            .one()
            .await?;
        Ok(row.into())
    }

    /// Finds the unexpired session of a refresh token presented by a device.
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] when `presented` is not a well-formed token (before any
    /// database call); pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn find_by_token(&self, presented: &str) -> Result<Option<Session>, Error> {
        let token = RefreshToken::parse(presented)?;
        self.find_by_token_hash(&token.hash()).await
    }

    /// Finds the session holding this token hash, only if `expires_at > now()` on the database
    /// clock. `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<Session>, Error> {
        let client = self.pool.get().await?;
        let row = q::get_session_by_token_hash()
            .bind(&client, &hash.as_str())
            .opt()
            .await?;
        Ok(row.map(Session::from))
    }

    /// Lists a user's unexpired sessions, most recently active first, without token hashes or
    /// raw user agents. Empty for an unknown user.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn list_devices(&self, user_id: Uuid) -> Result<Vec<Device>, Error> {
        let client = self.pool.get().await?;
        let rows = q::get_user_sessions().bind(&client, &user_id).all().await?;
        Ok(rows.into_iter().map(Device::from).collect())
    }

    /// Records activity on an unexpired session: `last_active_at` becomes now and, when given,
    /// `ip_address` the client's current address. Returns the new activity time, or `None`
    /// when the session does not exist or has expired.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn record_activity(
        &self,
        session_id: Uuid,
        ip_address: Option<IpAddr>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let client = self.pool.get().await?;
        let at = q::update_session_activity()
            .bind(&client, &ip_address, &session_id)
            .opt()
            .await?;
        Ok(at)
    }

    /// Revokes one session, only if it belongs to `user_id`. Returns whether a session was
    /// deleted; a session of another user is left alone and gives `false`.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn revoke(&self, session_id: Uuid, user_id: Uuid) -> Result<bool, Error> {
        let client = self.pool.get().await?;
        let deleted = q::delete_session()
            .bind(&client, &session_id, &user_id)
            .opt()
            .await?;
        Ok(deleted.is_some())
    }

    /// Revokes every session of `user_id` except `current_session_id` ("log out my other
    /// devices"). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn revoke_all_except(
        &self,
        user_id: Uuid,
        current_session_id: Uuid,
    ) -> Result<u64, Error> {
        let client = self.pool.get().await?;
        let deleted = q::delete_all_sessions_except_current()
            .bind(&client, &user_id, &current_session_id)
            .one()
            .await?;
        Ok(count(deleted))
    }

    /// Revokes every session of `user_id` ("log out everywhere"). Returns how many were
    /// deleted.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn revoke_all(&self, user_id: Uuid) -> Result<u64, Error> {
        let client = self.pool.get().await?;
        let deleted = q::delete_all_user_sessions()
            .bind(&client, &user_id)
            .one()
            .await?;
        Ok(count(deleted))
    }

    /// Deletes every session whose `expires_at` has passed (database clock). Returns how many
    /// were deleted.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        let client = self.pool.get().await?;
        let deleted = q::delete_expired_sessions().bind(&client).one().await?;
        Ok(count(deleted))
    }

    /// Counts a user's unexpired sessions.
    ///
    /// # Errors
    ///
    /// Pool and database errors.
    #[instrument(skip_all, err(Display))]
    pub async fn count_live(&self, user_id: Uuid) -> Result<u64, Error> {
        let client = self.pool.get().await?;
        let live = q::count_user_sessions()
            .bind(&client, &user_id)
            .one()
            .await?;
        Ok(count(live))
    }
}

/// `count(*)` is never negative.
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
