// This file was generated with `cornucopia`. Do not modify.

#[derive(Debug)]
pub struct CreateSessionParams<T1: crate::StringSql, T2: crate::StringSql, T3: crate::StringSql> {
    pub user_id: uuid::Uuid,
    pub refresh_token_hash: T1,
    pub device_info: Option<T2>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<T3>,
    pub ttl_seconds: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct UpdateSessionActivityParams {
    pub ip_address: Option<std::net::IpAddr>,
    pub id: uuid::Uuid,
}
#[derive(Clone, Copy, Debug)]
pub struct DeleteSessionParams {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
}
#[derive(Clone, Copy, Debug)]
pub struct DeleteAllSessionsExceptCurrentParams {
    pub user_id: uuid::Uuid,
    pub current_id: uuid::Uuid,
}
#[derive(Debug, Clone, PartialEq)]
pub struct AuthUserSession {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub refresh_token_hash: String,
    pub device_info: Option<String>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
pub struct AuthUserSessionBorrowed<'a> {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub refresh_token_hash: &'a str,
    pub device_info: Option<&'a str>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
impl<'a> From<AuthUserSessionBorrowed<'a>> for AuthUserSession {
    fn from(
        AuthUserSessionBorrowed {
            id,
            user_id,
            refresh_token_hash,
            device_info,
            ip_address,
            user_agent,
            last_active_at,
            expires_at,
            created_at,
        }: AuthUserSessionBorrowed<'a>,
    ) -> Self {
        Self {
            id,
            user_id,
            refresh_token_hash: refresh_token_hash.into(),
            device_info: device_info.map(|v| v.into()),
            ip_address,
            user_agent: user_agent.map(|v| v.into()),
            last_active_at,
            expires_at,
            created_at,
        }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct UserDevice {
    pub id: uuid::Uuid,
    pub device_info: Option<String>,
    pub ip_address: Option<std::net::IpAddr>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
pub struct UserDeviceBorrowed<'a> {
    pub id: uuid::Uuid,
    pub device_info: Option<&'a str>,
    pub ip_address: Option<std::net::IpAddr>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
impl<'a> From<UserDeviceBorrowed<'a>> for UserDevice {
    fn from(
        UserDeviceBorrowed {
            id,
            device_info,
            ip_address,
            last_active_at,
            expires_at,
            created_at,
        }: UserDeviceBorrowed<'a>,
    ) -> Self {
        Self {
            id,
            device_info: device_info.map(|v| v.into()),
            ip_address,
            last_active_at,
            expires_at,
            created_at,
        }
    }
}
use crate::client::async_::GenericClient;
use futures::{self, StreamExt, TryStreamExt};
pub struct AuthUserSessionQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<AuthUserSessionBorrowed, tokio_postgres::Error>,
    mapper: fn(AuthUserSessionBorrowed) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> AuthUserSessionQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(AuthUserSessionBorrowed) -> R,
    ) -> AuthUserSessionQuery<'c, 'a, 's, C, R, N> {
        AuthUserSessionQuery {
            client: self.client,
            params: self.params,
            query: self.query,
            cached: self.cached,
            extractor: self.extractor,
            mapper,
        }
    }
    pub async fn one(self) -> Result<T, tokio_postgres::Error> {
        let row =
            crate::client::async_::one(self.client, self.query, &self.params, self.cached).await?;
        Ok((self.mapper)((self.extractor)(&row)?))
    }
    pub async fn all(self) -> Result<Vec<T>, tokio_postgres::Error> {
        self.iter().await?.try_collect().await
    }
    pub async fn opt(self) -> Result<Option<T>, tokio_postgres::Error> {
        let opt_row =
            crate::client::async_::opt(self.client, self.query, &self.params, self.cached).await?;
        Ok(opt_row
            .map(|row| {
                let extracted = (self.extractor)(&row)?;
                Ok((self.mapper)(extracted))
            })
            .transpose()?)
    }
    pub async fn iter(
        self,
    ) -> Result<
        impl futures::Stream<Item = Result<T, tokio_postgres::Error>> + 'c,
        tokio_postgres::Error,
    > {
        let stream = crate::client::async_::raw(
            self.client,
            self.query,
            crate::slice_iter(&self.params),
            self.cached,
        )
        .await?;
        let mapped = stream
            .map(move |res| {
                res.and_then(|row| {
                    let extracted = (self.extractor)(&row)?;
                    Ok((self.mapper)(extracted))
                })
            })
            .into_stream();
        Ok(mapped)
    }
}
pub struct UserDeviceQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<UserDeviceBorrowed, tokio_postgres::Error>,
    mapper: fn(UserDeviceBorrowed) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> UserDeviceQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(UserDeviceBorrowed) -> R,
    ) -> UserDeviceQuery<'c, 'a, 's, C, R, N> {
        UserDeviceQuery {
            client: self.client,
            params: self.params,
            query: self.query,
            cached: self.cached,
            extractor: self.extractor,
            mapper,
        }
    }
    pub async fn one(self) -> Result<T, tokio_postgres::Error> {
        let row =
            crate::client::async_::one(self.client, self.query, &self.params, self.cached).await?;
        Ok((self.mapper)((self.extractor)(&row)?))
    }
    pub async fn all(self) -> Result<Vec<T>, tokio_postgres::Error> {
        self.iter().await?.try_collect().await
    }
    pub async fn opt(self) -> Result<Option<T>, tokio_postgres::Error> {
        let opt_row =
            crate::client::async_::opt(self.client, self.query, &self.params, self.cached).await?;
        Ok(opt_row
            .map(|row| {
                let extracted = (self.extractor)(&row)?;
                Ok((self.mapper)(extracted))
            })
            .transpose()?)
    }
    pub async fn iter(
        self,
    ) -> Result<
        impl futures::Stream<Item = Result<T, tokio_postgres::Error>> + 'c,
        tokio_postgres::Error,
    > {
        let stream = crate::client::async_::raw(
            self.client,
            self.query,
            crate::slice_iter(&self.params),
            self.cached,
        )
        .await?;
        let mapped = stream
            .map(move |res| {
                res.and_then(|row| {
                    let extracted = (self.extractor)(&row)?;
                    Ok((self.mapper)(extracted))
                })
            })
            .into_stream();
        Ok(mapped)
    }
}
pub struct ChronoDateTimechronoUtcQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor:
        fn(&tokio_postgres::Row) -> Result<chrono::DateTime<chrono::Utc>, tokio_postgres::Error>,
    mapper: fn(chrono::DateTime<chrono::Utc>) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> ChronoDateTimechronoUtcQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(chrono::DateTime<chrono::Utc>) -> R,
    ) -> ChronoDateTimechronoUtcQuery<'c, 'a, 's, C, R, N> {
        ChronoDateTimechronoUtcQuery {
            client: self.client,
            params: self.params,
            query: self.query,
            cached: self.cached,
            extractor: self.extractor,
            mapper,
        }
    }
    pub async fn one(self) -> Result<T, tokio_postgres::Error> {
        let row =
            crate::client::async_::one(self.client, self.query, &self.params, self.cached).await?;
        Ok((self.mapper)((self.extractor)(&row)?))
    }
    pub async fn all(self) -> Result<Vec<T>, tokio_postgres::Error> {
        self.iter().await?.try_collect().await
    }
    pub async fn opt(self) -> Result<Option<T>, tokio_postgres::Error> {
        let opt_row =
            crate::client::async_::opt(self.client, self.query, &self.params, self.cached).await?;
        Ok(opt_row
            .map(|row| {
                let extracted = (self.extractor)(&row)?;
                Ok((self.mapper)(extracted))
            })
            .transpose()?)
    }
    pub async fn iter(
        self,
    ) -> Result<
        impl futures::Stream<Item = Result<T, tokio_postgres::Error>> + 'c,
        tokio_postgres::Error,
    > {
        let stream = crate::client::async_::raw(
            self.client,
            self.query,
            crate::slice_iter(&self.params),
            self.cached,
        )
        .await?;
        let mapped = stream
            .map(move |res| {
                res.and_then(|row| {
                    let extracted = (self.extractor)(&row)?;
                    Ok((self.mapper)(extracted))
                })
            })
            .into_stream();
        Ok(mapped)
    }
}
pub struct UuidUuidQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<uuid::Uuid, tokio_postgres::Error>,
    mapper: fn(uuid::Uuid) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> UuidUuidQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(uuid::Uuid) -> R) -> UuidUuidQuery<'c, 'a, 's, C, R, N> {
        UuidUuidQuery {
            client: self.client,
            params: self.params,
            query: self.query,
            cached: self.cached,
            extractor: self.extractor,
            mapper,
        }
    }
    pub async fn one(self) -> Result<T, tokio_postgres::Error> {
        let row =
            crate::client::async_::one(self.client, self.query, &self.params, self.cached).await?;
        Ok((self.mapper)((self.extractor)(&row)?))
    }
    pub async fn all(self) -> Result<Vec<T>, tokio_postgres::Error> {
        self.iter().await?.try_collect().await
    }
    pub async fn opt(self) -> Result<Option<T>, tokio_postgres::Error> {
        let opt_row =
            crate::client::async_::opt(self.client, self.query, &self.params, self.cached).await?;
        Ok(opt_row
            .map(|row| {
                let extracted = (self.extractor)(&row)?;
                Ok((self.mapper)(extracted))
            })
            .transpose()?)
    }
    pub async fn iter(
        self,
    ) -> Result<
        impl futures::Stream<Item = Result<T, tokio_postgres::Error>> + 'c,
        tokio_postgres::Error,
    > {
        let stream = crate::client::async_::raw(
            self.client,
            self.query,
            crate::slice_iter(&self.params),
            self.cached,
        )
        .await?;
        let mapped = stream
            .map(move |res| {
                res.and_then(|row| {
                    let extracted = (self.extractor)(&row)?;
                    Ok((self.mapper)(extracted))
                })
            })
            .into_stream();
        Ok(mapped)
    }
}
pub struct I64Query<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<i64, tokio_postgres::Error>,
    mapper: fn(i64) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> I64Query<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(i64) -> R) -> I64Query<'c, 'a, 's, C, R, N> {
        I64Query {
            client: self.client,
            params: self.params,
            query: self.query,
            cached: self.cached,
            extractor: self.extractor,
            mapper,
        }
    }
    pub async fn one(self) -> Result<T, tokio_postgres::Error> {
        let row =
            crate::client::async_::one(self.client, self.query, &self.params, self.cached).await?;
        Ok((self.mapper)((self.extractor)(&row)?))
    }
    pub async fn all(self) -> Result<Vec<T>, tokio_postgres::Error> {
        self.iter().await?.try_collect().await
    }
    pub async fn opt(self) -> Result<Option<T>, tokio_postgres::Error> {
        let opt_row =
            crate::client::async_::opt(self.client, self.query, &self.params, self.cached).await?;
        Ok(opt_row
            .map(|row| {
                let extracted = (self.extractor)(&row)?;
                Ok((self.mapper)(extracted))
            })
            .transpose()?)
    }
    pub async fn iter(
        self,
    ) -> Result<
        impl futures::Stream<Item = Result<T, tokio_postgres::Error>> + 'c,
        tokio_postgres::Error,
    > {
        let stream = crate::client::async_::raw(
            self.client,
            self.query,
            crate::slice_iter(&self.params),
            self.cached,
        )
        .await?;
        let mapped = stream
            .map(move |res| {
                res.and_then(|row| {
                    let extracted = (self.extractor)(&row)?;
                    Ok((self.mapper)(extracted))
                })
            })
            .into_stream();
        Ok(mapped)
    }
}
pub struct CreateSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Creates a session that expires `ttl_seconds` after now (database clock). Stores only the hash
/// of the refresh token. Returns the full row.
pub fn create_session() -> CreateSessionStmt {
    CreateSessionStmt(
        "INSERT INTO auth.user_sessions (user_id, refresh_token_hash, device_info, ip_address, user_agent, expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::bigint)) RETURNING id, user_id, refresh_token_hash, device_info, ip_address, user_agent, last_active_at, expires_at, created_at",
        None,
    )
}
impl CreateSessionStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<
        'c,
        'a,
        's,
        C: GenericClient,
        T1: crate::StringSql,
        T2: crate::StringSql,
        T3: crate::StringSql,
    >(
        &'s self,
        client: &'c C,
        user_id: &'a uuid::Uuid,
        refresh_token_hash: &'a T1,
        device_info: &'a Option<T2>,
        ip_address: &'a Option<std::net::IpAddr>,
        user_agent: &'a Option<T3>,
        ttl_seconds: &'a i64,
    ) -> AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 6> {
        AuthUserSessionQuery {
            client,
            params: [
                user_id,
                refresh_token_hash,
                device_info,
                ip_address,
                user_agent,
                ttl_seconds,
            ],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |
                row: &tokio_postgres::Row,
            | -> Result<AuthUserSessionBorrowed, tokio_postgres::Error> {
                Ok(AuthUserSessionBorrowed {
                    id: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    refresh_token_hash: row.try_get(2)?,
                    device_info: row.try_get(3)?,
                    ip_address: row.try_get(4)?,
                    user_agent: row.try_get(5)?,
                    last_active_at: row.try_get(6)?,
                    expires_at: row.try_get(7)?,
                    created_at: row.try_get(8)?,
                })
            },
            mapper: |it| AuthUserSession::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient, T1: crate::StringSql, T2: crate::StringSql, T3: crate::StringSql>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        CreateSessionParams<T1, T2, T3>,
        AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 6>,
        C,
    > for CreateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a CreateSessionParams<T1, T2, T3>,
    ) -> AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 6> {
        self.bind(
            client,
            &params.user_id,
            &params.refresh_token_hash,
            &params.device_info,
            &params.ip_address,
            &params.user_agent,
            &params.ttl_seconds,
        )
    }
}
pub struct GetSessionByTokenHashStmt(&'static str, Option<tokio_postgres::Statement>);
/// Finds the live session holding this refresh token hash. Expired sessions are never returned.
pub fn get_session_by_token_hash() -> GetSessionByTokenHashStmt {
    GetSessionByTokenHashStmt(
        "SELECT id, user_id, refresh_token_hash, device_info, ip_address, user_agent, last_active_at, expires_at, created_at FROM auth.user_sessions WHERE refresh_token_hash = $1 AND expires_at > now()",
        None,
    )
}
impl GetSessionByTokenHashStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient, T1: crate::StringSql>(
        &'s self,
        client: &'c C,
        refresh_token_hash: &'a T1,
    ) -> AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 1> {
        AuthUserSessionQuery {
            client,
            params: [refresh_token_hash],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |
                row: &tokio_postgres::Row,
            | -> Result<AuthUserSessionBorrowed, tokio_postgres::Error> {
                Ok(AuthUserSessionBorrowed {
                    id: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    refresh_token_hash: row.try_get(2)?,
                    device_info: row.try_get(3)?,
                    ip_address: row.try_get(4)?,
                    user_agent: row.try_get(5)?,
                    last_active_at: row.try_get(6)?,
                    expires_at: row.try_get(7)?,
                    created_at: row.try_get(8)?,
                })
            },
            mapper: |it| AuthUserSession::from(it),
        }
    }
}
pub struct GetUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Lists a user's live sessions, most recently active first. Never returns the token hash or the
/// raw user agent.
pub fn get_user_sessions() -> GetUserSessionsStmt {
    GetUserSessionsStmt(
        "SELECT id, device_info, ip_address, last_active_at, expires_at, created_at FROM auth.user_sessions WHERE user_id = $1 AND expires_at > now() ORDER BY last_active_at DESC, id",
        None,
    )
}
impl GetUserSessionsStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
        user_id: &'a uuid::Uuid,
    ) -> UserDeviceQuery<'c, 'a, 's, C, UserDevice, 1> {
        UserDeviceQuery {
            client,
            params: [user_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor:
                |row: &tokio_postgres::Row| -> Result<UserDeviceBorrowed, tokio_postgres::Error> {
                    Ok(UserDeviceBorrowed {
                        id: row.try_get(0)?,
                        device_info: row.try_get(1)?,
                        ip_address: row.try_get(2)?,
                        last_active_at: row.try_get(3)?,
                        expires_at: row.try_get(4)?,
                        created_at: row.try_get(5)?,
                    })
                },
            mapper: |it| UserDevice::from(it),
        }
    }
}
pub struct UpdateSessionActivityStmt(&'static str, Option<tokio_postgres::Statement>);
/// Records activity on a live session: sets `last_active_at` to now and, when given, the client's
/// current IP address. Returns the new activity time, or no row when the session is gone or expired.
pub fn update_session_activity() -> UpdateSessionActivityStmt {
    UpdateSessionActivityStmt(
        "UPDATE auth.user_sessions SET last_active_at = now(), ip_address = coalesce($1, ip_address) WHERE id = $2 AND expires_at > now() RETURNING last_active_at",
        None,
    )
}
impl UpdateSessionActivityStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
        ip_address: &'a Option<std::net::IpAddr>,
        id: &'a uuid::Uuid,
    ) -> ChronoDateTimechronoUtcQuery<'c, 'a, 's, C, chrono::DateTime<chrono::Utc>, 2> {
        ChronoDateTimechronoUtcQuery {
            client,
            params: [ip_address, id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        UpdateSessionActivityParams,
        ChronoDateTimechronoUtcQuery<'c, 'a, 's, C, chrono::DateTime<chrono::Utc>, 2>,
        C,
    > for UpdateSessionActivityStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a UpdateSessionActivityParams,
    ) -> ChronoDateTimechronoUtcQuery<'c, 'a, 's, C, chrono::DateTime<chrono::Utc>, 2> {
        self.bind(client, &params.ip_address, &params.id)
    }
}
pub struct DeleteSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes one session, only when it belongs to the given user. Returns the deleted id, or no row.
pub fn delete_session() -> DeleteSessionStmt {
    DeleteSessionStmt(
        "DELETE FROM auth.user_sessions WHERE id = $1 AND user_id = $2 RETURNING id",
        None,
    )
}
impl DeleteSessionStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
        id: &'a uuid::Uuid,
        user_id: &'a uuid::Uuid,
    ) -> UuidUuidQuery<'c, 'a, 's, C, uuid::Uuid, 2> {
        UuidUuidQuery {
            client,
            params: [id, user_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        DeleteSessionParams,
        UuidUuidQuery<'c, 'a, 's, C, uuid::Uuid, 2>,
        C,
    > for DeleteSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a DeleteSessionParams,
    ) -> UuidUuidQuery<'c, 'a, 's, C, uuid::Uuid, 2> {
        self.bind(client, &params.id, &params.user_id)
    }
}
pub struct DeleteAllSessionsExceptCurrentStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes every session of a user except the current one. Returns how many were deleted.
pub fn delete_all_sessions_except_current() -> DeleteAllSessionsExceptCurrentStmt {
    DeleteAllSessionsExceptCurrentStmt(
        "WITH deleted AS ( DELETE FROM auth.user_sessions WHERE user_id = $1 AND id <> $2 RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteAllSessionsExceptCurrentStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
        user_id: &'a uuid::Uuid,
        current_id: &'a uuid::Uuid,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        I64Query {
            client,
            params: [user_id, current_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        DeleteAllSessionsExceptCurrentParams,
        I64Query<'c, 'a, 's, C, i64, 2>,
        C,
    > for DeleteAllSessionsExceptCurrentStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a DeleteAllSessionsExceptCurrentParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        self.bind(client, &params.user_id, &params.current_id)
    }
}
pub struct DeleteAllUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes every session of a user. Returns how many were deleted.
pub fn delete_all_user_sessions() -> DeleteAllUserSessionsStmt {
    DeleteAllUserSessionsStmt(
        "WITH deleted AS ( DELETE FROM auth.user_sessions WHERE user_id = $1 RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteAllUserSessionsStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
        user_id: &'a uuid::Uuid,
    ) -> I64Query<'c, 'a, 's, C, i64, 1> {
        I64Query {
            client,
            params: [user_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
pub struct DeleteExpiredSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes every expired session. Returns how many were deleted.
pub fn delete_expired_sessions() -> DeleteExpiredSessionsStmt {
    DeleteExpiredSessionsStmt(
        "WITH deleted AS ( DELETE FROM auth.user_sessions WHERE expires_at <= now() RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteExpiredSessionsStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
    ) -> I64Query<'c, 'a, 's, C, i64, 0> {
        I64Query {
            client,
            params: [],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
pub struct CountUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Counts a user's live (unexpired) sessions.
pub fn count_user_sessions() -> CountUserSessionsStmt {
    CountUserSessionsStmt(
        "SELECT count(*) AS live FROM auth.user_sessions WHERE user_id = $1 AND expires_at > now()",
        None,
    )
}
impl CountUserSessionsStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient>(
        &'s self,
        client: &'c C,
        user_id: &'a uuid::Uuid,
    ) -> I64Query<'c, 'a, 's, C, i64, 1> {
        I64Query {
            client,
            params: [user_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
