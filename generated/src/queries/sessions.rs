// This file was generated with `cornucopia`. Do not modify.

#[derive(Debug)]
pub struct CreateSessionParams<T1: crate::StringSql, T2: crate::StringSql, T3: crate::StringSql> {
    pub user_id: uuid::Uuid,
    pub refresh_token_hash: T1,
    pub device_info: Option<T2>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<T3>,
    pub ttl_seconds: i64,
    pub idle_seconds: Option<i64>,
    pub max_sessions: Option<i32>,
    pub evict: bool,
}
#[derive(Debug)]
pub struct GetSessionByTokenHashParams<T1: crate::StringSql> {
    pub refresh_token_hash: T1,
    pub idle_seconds: Option<i64>,
}
#[derive(Clone, Copy, Debug)]
pub struct GetUserSessionsParams {
    pub user_id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
}
#[derive(Clone, Copy, Debug)]
pub struct UpdateSessionActivityParams {
    pub id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
    pub ip_address: Option<std::net::IpAddr>,
    pub min_interval_seconds: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct RevokeSessionParams {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
}
#[derive(Clone, Copy, Debug)]
pub struct RevokeAllSessionsExceptCurrentParams {
    pub user_id: uuid::Uuid,
    pub current_id: uuid::Uuid,
}
#[derive(Clone, Copy, Debug)]
pub struct DeleteIdleSessionsBatchParams {
    pub idle_seconds: i64,
    pub batch_size: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct CountUserSessionsParams {
    pub user_id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
}
#[derive(Debug)]
pub struct RotateSessionParams<T1: crate::StringSql, T2: crate::StringSql> {
    pub presented_hash: T1,
    pub successor_hash: T2,
    pub idle_seconds: Option<i64>,
    pub grace_seconds: i64,
}
#[derive(Debug)]
pub struct ValidateSessionParams<T1: crate::StringSql> {
    pub presented_hash: T1,
    pub idle_seconds: Option<i64>,
    pub grace_seconds: i64,
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
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_reason: Option<String>,
    pub rotated_at: Option<chrono::DateTime<chrono::Utc>>,
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
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_reason: Option<&'a str>,
    pub rotated_at: Option<chrono::DateTime<chrono::Utc>>,
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
            revoked_at,
            revoked_reason,
            rotated_at,
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
            revoked_at,
            revoked_reason: revoked_reason.map(|v| v.into()),
            rotated_at,
        }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSession {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub device_info: Option<String>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
pub struct LiveSessionBorrowed<'a> {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub device_info: Option<&'a str>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
impl<'a> From<LiveSessionBorrowed<'a>> for LiveSession {
    fn from(
        LiveSessionBorrowed {
            id,
            user_id,
            device_info,
            ip_address,
            user_agent,
            last_active_at,
            expires_at,
            created_at,
        }: LiveSessionBorrowed<'a>,
    ) -> Self {
        Self {
            id,
            user_id,
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
#[derive(Debug, Clone, PartialEq, Copy)]
pub struct SessionActivity {
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub written: bool,
}
#[derive(Debug, Clone, PartialEq, Copy)]
pub struct SessionStats {
    pub total: i64,
    pub live: i64,
    pub expired: i64,
    pub revoked: i64,
    pub users: i64,
    pub max_live_per_user: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOutcome {
    pub outcome: String,
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub refresh_token_hash: String,
    pub device_info: Option<String>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_reason: Option<String>,
    pub rotated_at: Option<chrono::DateTime<chrono::Utc>>,
}
pub struct SessionOutcomeBorrowed<'a> {
    pub outcome: &'a str,
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub refresh_token_hash: &'a str,
    pub device_info: Option<&'a str>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_reason: Option<&'a str>,
    pub rotated_at: Option<chrono::DateTime<chrono::Utc>>,
}
impl<'a> From<SessionOutcomeBorrowed<'a>> for SessionOutcome {
    fn from(
        SessionOutcomeBorrowed {
            outcome,
            id,
            user_id,
            refresh_token_hash,
            device_info,
            ip_address,
            user_agent,
            last_active_at,
            expires_at,
            created_at,
            revoked_at,
            revoked_reason,
            rotated_at,
        }: SessionOutcomeBorrowed<'a>,
    ) -> Self {
        Self {
            outcome: outcome.into(),
            id,
            user_id,
            refresh_token_hash: refresh_token_hash.into(),
            device_info: device_info.map(|v| v.into()),
            ip_address,
            user_agent: user_agent.map(|v| v.into()),
            last_active_at,
            expires_at,
            created_at,
            revoked_at,
            revoked_reason: revoked_reason.map(|v| v.into()),
            rotated_at,
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
pub struct LiveSessionQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<LiveSessionBorrowed, tokio_postgres::Error>,
    mapper: fn(LiveSessionBorrowed) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> LiveSessionQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(LiveSessionBorrowed) -> R,
    ) -> LiveSessionQuery<'c, 'a, 's, C, R, N> {
        LiveSessionQuery {
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
pub struct SessionActivityQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<SessionActivity, tokio_postgres::Error>,
    mapper: fn(SessionActivity) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> SessionActivityQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(SessionActivity) -> R,
    ) -> SessionActivityQuery<'c, 'a, 's, C, R, N> {
        SessionActivityQuery {
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
pub struct SessionStatsQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<SessionStats, tokio_postgres::Error>,
    mapper: fn(SessionStats) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> SessionStatsQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(SessionStats) -> R) -> SessionStatsQuery<'c, 'a, 's, C, R, N> {
        SessionStatsQuery {
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
pub struct SessionOutcomeQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<SessionOutcomeBorrowed, tokio_postgres::Error>,
    mapper: fn(SessionOutcomeBorrowed) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> SessionOutcomeQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(SessionOutcomeBorrowed) -> R,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, R, N> {
        SessionOutcomeQuery {
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
/// Creates a session that expires `ttl_seconds` after now (database clock), storing only the hash
/// of its refresh token. With `max_sessions`, the user's live sessions are held to that cap:
/// at the cap the least recently active are revoked (`evict`) or the call fails with a check
/// violation named `user_sessions_per_user_cap`. Returns the full row.
pub fn create_session() -> CreateSessionStmt {
    CreateSessionStmt(
        "SELECT id, user_id, refresh_token_hash, device_info, ip_address, user_agent, last_active_at, expires_at, created_at, revoked_at, revoked_reason, rotated_at FROM auth.create_session($1, $2, $3, $4, $5, $6::bigint, $7::bigint, $8::integer, $9::boolean)",
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
        idle_seconds: &'a Option<i64>,
        max_sessions: &'a Option<i32>,
        evict: &'a bool,
    ) -> AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 9> {
        AuthUserSessionQuery {
            client,
            params: [
                user_id,
                refresh_token_hash,
                device_info,
                ip_address,
                user_agent,
                ttl_seconds,
                idle_seconds,
                max_sessions,
                evict,
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
                    revoked_at: row.try_get(9)?,
                    revoked_reason: row.try_get(10)?,
                    rotated_at: row.try_get(11)?,
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
        AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 9>,
        C,
    > for CreateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a CreateSessionParams<T1, T2, T3>,
    ) -> AuthUserSessionQuery<'c, 'a, 's, C, AuthUserSession, 9> {
        self.bind(
            client,
            &params.user_id,
            &params.refresh_token_hash,
            &params.device_info,
            &params.ip_address,
            &params.user_agent,
            &params.ttl_seconds,
            &params.idle_seconds,
            &params.max_sessions,
            &params.evict,
        )
    }
}
pub struct GetSessionByTokenHashStmt(&'static str, Option<tokio_postgres::Statement>);
/// Finds the live session holding this refresh token hash: not revoked, `expires_at > now()`,
/// and (with `idle_seconds`) active within that many seconds. The hot path: returns only what
/// the caller uses (no hash, no revocation columns, which are NULL for a live session).
pub fn get_session_by_token_hash() -> GetSessionByTokenHashStmt {
    GetSessionByTokenHashStmt(
        "SELECT id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at FROM auth.user_sessions WHERE refresh_token_hash = $1 AND expires_at > now() AND revoked_at IS NULL AND (last_active_at > now() - make_interval(secs => $2::bigint)) IS NOT FALSE",
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
        idle_seconds: &'a Option<i64>,
    ) -> LiveSessionQuery<'c, 'a, 's, C, LiveSession, 2> {
        LiveSessionQuery {
            client,
            params: [refresh_token_hash, idle_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor:
                |row: &tokio_postgres::Row| -> Result<LiveSessionBorrowed, tokio_postgres::Error> {
                    Ok(LiveSessionBorrowed {
                        id: row.try_get(0)?,
                        user_id: row.try_get(1)?,
                        device_info: row.try_get(2)?,
                        ip_address: row.try_get(3)?,
                        user_agent: row.try_get(4)?,
                        last_active_at: row.try_get(5)?,
                        expires_at: row.try_get(6)?,
                        created_at: row.try_get(7)?,
                    })
                },
            mapper: |it| LiveSession::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient, T1: crate::StringSql>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        GetSessionByTokenHashParams<T1>,
        LiveSessionQuery<'c, 'a, 's, C, LiveSession, 2>,
        C,
    > for GetSessionByTokenHashStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a GetSessionByTokenHashParams<T1>,
    ) -> LiveSessionQuery<'c, 'a, 's, C, LiveSession, 2> {
        self.bind(client, &params.refresh_token_hash, &params.idle_seconds)
    }
}
pub struct GetUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Lists a user's live sessions, most recently active first. Never returns the token hash or the
/// raw user agent.
pub fn get_user_sessions() -> GetUserSessionsStmt {
    GetUserSessionsStmt(
        "SELECT id, device_info, ip_address, last_active_at, expires_at, created_at FROM auth.user_sessions WHERE user_id = $1 AND expires_at > now() AND revoked_at IS NULL AND (last_active_at > now() - make_interval(secs => $2::bigint)) IS NOT FALSE ORDER BY last_active_at DESC, id",
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
        idle_seconds: &'a Option<i64>,
    ) -> UserDeviceQuery<'c, 'a, 's, C, UserDevice, 2> {
        UserDeviceQuery {
            client,
            params: [user_id, idle_seconds],
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
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        GetUserSessionsParams,
        UserDeviceQuery<'c, 'a, 's, C, UserDevice, 2>,
        C,
    > for GetUserSessionsStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a GetUserSessionsParams,
    ) -> UserDeviceQuery<'c, 'a, 's, C, UserDevice, 2> {
        self.bind(client, &params.user_id, &params.idle_seconds)
    }
}
pub struct UpdateSessionActivityStmt(&'static str, Option<tokio_postgres::Statement>);
/// Records activity on a live session, writing only when `last_active_at` is at least
/// `min_interval_seconds` old or the client's address changed; most calls write nothing.
/// Returns the activity time and whether it was written, or no row when the session is not live.
pub fn update_session_activity() -> UpdateSessionActivityStmt {
    UpdateSessionActivityStmt(
        "WITH live AS ( SELECT id, last_active_at, ip_address FROM auth.user_sessions WHERE id = $1 AND expires_at > now() AND revoked_at IS NULL AND (last_active_at > now() - make_interval(secs => $2::bigint)) IS NOT FALSE ), touched AS ( UPDATE auth.user_sessions s SET last_active_at = now(), ip_address = coalesce($3, live.ip_address) FROM live WHERE s.id = live.id AND (live.last_active_at <= now() - make_interval(secs => $4::bigint) OR live.ip_address IS DISTINCT FROM coalesce($3, live.ip_address)) RETURNING s.last_active_at ) SELECT coalesce((SELECT last_active_at FROM touched), live.last_active_at) AS last_active_at, EXISTS (SELECT 1 FROM touched) AS written FROM live",
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
        id: &'a uuid::Uuid,
        idle_seconds: &'a Option<i64>,
        ip_address: &'a Option<std::net::IpAddr>,
        min_interval_seconds: &'a i64,
    ) -> SessionActivityQuery<'c, 'a, 's, C, SessionActivity, 4> {
        SessionActivityQuery {
            client,
            params: [id, idle_seconds, ip_address, min_interval_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor:
                |row: &tokio_postgres::Row| -> Result<SessionActivity, tokio_postgres::Error> {
                    Ok(SessionActivity {
                        last_active_at: row.try_get(0)?,
                        written: row.try_get(1)?,
                    })
                },
            mapper: |it| SessionActivity::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        UpdateSessionActivityParams,
        SessionActivityQuery<'c, 'a, 's, C, SessionActivity, 4>,
        C,
    > for UpdateSessionActivityStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a UpdateSessionActivityParams,
    ) -> SessionActivityQuery<'c, 'a, 's, C, SessionActivity, 4> {
        self.bind(
            client,
            &params.id,
            &params.idle_seconds,
            &params.ip_address,
            &params.min_interval_seconds,
        )
    }
}
pub struct RevokeSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Revokes one session, only when it belongs to the given user. Returns its id, or no row when
/// there is no such unrevoked session of that user.
pub fn revoke_session() -> RevokeSessionStmt {
    RevokeSessionStmt(
        "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id",
        None,
    )
}
impl RevokeSessionStmt {
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
        RevokeSessionParams,
        UuidUuidQuery<'c, 'a, 's, C, uuid::Uuid, 2>,
        C,
    > for RevokeSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a RevokeSessionParams,
    ) -> UuidUuidQuery<'c, 'a, 's, C, uuid::Uuid, 2> {
        self.bind(client, &params.id, &params.user_id)
    }
}
pub struct RevokeAllSessionsExceptCurrentStmt(&'static str, Option<tokio_postgres::Statement>);
/// Revokes every session of a user except the current one. Returns how many were revoked.
pub fn revoke_all_sessions_except_current() -> RevokeAllSessionsExceptCurrentStmt {
    RevokeAllSessionsExceptCurrentStmt(
        "WITH revoked AS ( UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING 1 ) SELECT count(*) AS revoked FROM revoked",
        None,
    )
}
impl RevokeAllSessionsExceptCurrentStmt {
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
        RevokeAllSessionsExceptCurrentParams,
        I64Query<'c, 'a, 's, C, i64, 2>,
        C,
    > for RevokeAllSessionsExceptCurrentStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a RevokeAllSessionsExceptCurrentParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        self.bind(client, &params.user_id, &params.current_id)
    }
}
pub struct RevokeAllUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Revokes every session of a user. Returns how many were revoked.
pub fn revoke_all_user_sessions() -> RevokeAllUserSessionsStmt {
    RevokeAllUserSessionsStmt(
        "WITH revoked AS ( UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' WHERE user_id = $1 AND revoked_at IS NULL RETURNING 1 ) SELECT count(*) AS revoked FROM revoked",
        None,
    )
}
impl RevokeAllUserSessionsStmt {
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
/// Deletes every session that is past `expires_at` or (with `idle_seconds`) idle for longer.
/// Revoked sessions stay, as tombstones that report "revoked", until they expire. Returns how
/// many were deleted.
pub fn delete_expired_sessions() -> DeleteExpiredSessionsStmt {
    DeleteExpiredSessionsStmt(
        "WITH deleted AS ( DELETE FROM auth.user_sessions WHERE expires_at <= now() OR last_active_at <= now() - make_interval(secs => $1::bigint) RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
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
        idle_seconds: &'a Option<i64>,
    ) -> I64Query<'c, 'a, 's, C, i64, 1> {
        I64Query {
            client,
            params: [idle_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
pub struct DeleteExpiredSessionsBatchStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes up to `batch_size` sessions past `expires_at`, oldest expiry first (walking the expiry
/// index), skipping rows another cleaner holds, and re-checking the expiry inside the delete.
/// Several cleaners can run at once without deadlock; lookups never wait for them. Returns how
/// many were deleted.
pub fn delete_expired_sessions_batch() -> DeleteExpiredSessionsBatchStmt {
    DeleteExpiredSessionsBatchStmt(
        "WITH doomed AS ( SELECT id FROM auth.user_sessions WHERE expires_at <= now() ORDER BY expires_at LIMIT $1::bigint FOR UPDATE SKIP LOCKED ), deleted AS ( DELETE FROM auth.user_sessions s USING doomed WHERE s.id = doomed.id AND s.expires_at <= now() RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteExpiredSessionsBatchStmt {
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
        batch_size: &'a i64,
    ) -> I64Query<'c, 'a, 's, C, i64, 1> {
        I64Query {
            client,
            params: [batch_size],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
pub struct DeleteIdleSessionsBatchStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes up to `batch_size` unexpired sessions idle for at least `idle_seconds`, skipping rows
/// another cleaner holds and re-checking idleness inside the delete. `last_active_at` is in no
/// index (to keep activity updates HOT), so this scans. Returns how many were deleted.
pub fn delete_idle_sessions_batch() -> DeleteIdleSessionsBatchStmt {
    DeleteIdleSessionsBatchStmt(
        "WITH doomed AS ( SELECT id FROM auth.user_sessions WHERE last_active_at <= now() - make_interval(secs => $1::bigint) LIMIT $2::bigint FOR UPDATE SKIP LOCKED ), deleted AS ( DELETE FROM auth.user_sessions s USING doomed WHERE s.id = doomed.id AND s.last_active_at <= now() - make_interval(secs => $1::bigint) RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteIdleSessionsBatchStmt {
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
        idle_seconds: &'a i64,
        batch_size: &'a i64,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        I64Query {
            client,
            params: [idle_seconds, batch_size],
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
        DeleteIdleSessionsBatchParams,
        I64Query<'c, 'a, 's, C, i64, 2>,
        C,
    > for DeleteIdleSessionsBatchStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a DeleteIdleSessionsBatchParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        self.bind(client, &params.idle_seconds, &params.batch_size)
    }
}
pub struct SessionStatsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Sessions in total, live, expired, revoked; users with sessions; the largest per-user count of
/// live sessions; table and index sizes in bytes (the token history included).
pub fn session_stats() -> SessionStatsStmt {
    SessionStatsStmt(
        "WITH per_user AS ( SELECT user_id, count(*) FILTER ( WHERE expires_at > now() AND revoked_at IS NULL AND (last_active_at > now() - make_interval(secs => $1::bigint)) IS NOT FALSE ) AS live, count(*) FILTER (WHERE expires_at <= now()) AS expired, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked, count(*) AS total FROM auth.user_sessions GROUP BY user_id ) SELECT coalesce(sum(total), 0)::bigint AS total, coalesce(sum(live), 0)::bigint AS live, coalesce(sum(expired), 0)::bigint AS expired, coalesce(sum(revoked), 0)::bigint AS revoked, count(*) AS users, coalesce(max(live), 0)::bigint AS max_live_per_user, (pg_table_size('auth.user_sessions') + pg_table_size('auth.session_token_history'))::bigint AS table_bytes, (pg_indexes_size('auth.user_sessions') + pg_indexes_size('auth.session_token_history'))::bigint AS index_bytes FROM per_user",
        None,
    )
}
impl SessionStatsStmt {
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
        idle_seconds: &'a Option<i64>,
    ) -> SessionStatsQuery<'c, 'a, 's, C, SessionStats, 1> {
        SessionStatsQuery {
            client,
            params: [idle_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row: &tokio_postgres::Row| -> Result<SessionStats, tokio_postgres::Error> {
                Ok(SessionStats {
                    total: row.try_get(0)?,
                    live: row.try_get(1)?,
                    expired: row.try_get(2)?,
                    revoked: row.try_get(3)?,
                    users: row.try_get(4)?,
                    max_live_per_user: row.try_get(5)?,
                    table_bytes: row.try_get(6)?,
                    index_bytes: row.try_get(7)?,
                })
            },
            mapper: |it| SessionStats::from(it),
        }
    }
}
pub struct CountUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Counts a user's live sessions (not revoked, not expired, not idle).
pub fn count_user_sessions() -> CountUserSessionsStmt {
    CountUserSessionsStmt(
        "SELECT count(*) AS live FROM auth.user_sessions WHERE user_id = $1 AND expires_at > now() AND revoked_at IS NULL AND (last_active_at > now() - make_interval(secs => $2::bigint)) IS NOT FALSE",
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
        idle_seconds: &'a Option<i64>,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        I64Query {
            client,
            params: [user_id, idle_seconds],
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
        CountUserSessionsParams,
        I64Query<'c, 'a, 's, C, i64, 2>,
        C,
    > for CountUserSessionsStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a CountUserSessionsParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        self.bind(client, &params.user_id, &params.idle_seconds)
    }
}
pub struct RotateSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Rotates a refresh token in one atomic step (see auth.rotate_session): `outcome` is rotated,
/// token_reused (the session is now revoked), revoked, expired or idle_timed_out; no row when
/// no session ever held the token.
pub fn rotate_session() -> RotateSessionStmt {
    RotateSessionStmt(
        "SELECT r.outcome, (r.session).id, (r.session).user_id, (r.session).refresh_token_hash, (r.session).device_info, (r.session).ip_address, (r.session).user_agent, (r.session).last_active_at, (r.session).expires_at, (r.session).created_at, (r.session).revoked_at, (r.session).revoked_reason, (r.session).rotated_at FROM auth.rotate_session($1, $2, $3::bigint, $4::bigint) r",
        None,
    )
}
impl RotateSessionStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient, T1: crate::StringSql, T2: crate::StringSql>(
        &'s self,
        client: &'c C,
        presented_hash: &'a T1,
        successor_hash: &'a T2,
        idle_seconds: &'a Option<i64>,
        grace_seconds: &'a i64,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 4> {
        SessionOutcomeQuery {
            client,
            params: [presented_hash, successor_hash, idle_seconds, grace_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |
                row: &tokio_postgres::Row,
            | -> Result<SessionOutcomeBorrowed, tokio_postgres::Error> {
                Ok(SessionOutcomeBorrowed {
                    outcome: row.try_get(0)?,
                    id: row.try_get(1)?,
                    user_id: row.try_get(2)?,
                    refresh_token_hash: row.try_get(3)?,
                    device_info: row.try_get(4)?,
                    ip_address: row.try_get(5)?,
                    user_agent: row.try_get(6)?,
                    last_active_at: row.try_get(7)?,
                    expires_at: row.try_get(8)?,
                    created_at: row.try_get(9)?,
                    revoked_at: row.try_get(10)?,
                    revoked_reason: row.try_get(11)?,
                    rotated_at: row.try_get(12)?,
                })
            },
            mapper: |it| SessionOutcome::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient, T1: crate::StringSql, T2: crate::StringSql>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        RotateSessionParams<T1, T2>,
        SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 4>,
        C,
    > for RotateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a RotateSessionParams<T1, T2>,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 4> {
        self.bind(
            client,
            &params.presented_hash,
            &params.successor_hash,
            &params.idle_seconds,
            &params.grace_seconds,
        )
    }
}
pub struct ValidateSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Classifies a presented token without changing anything: live (a token replaced less than
/// `grace_seconds` ago by the current one counts as live), token_reused, revoked, expired or
/// idle_timed_out; no row when no session ever held the token.
pub fn validate_session() -> ValidateSessionStmt {
    ValidateSessionStmt(
        "SELECT r.outcome, (r.session).id, (r.session).user_id, (r.session).refresh_token_hash, (r.session).device_info, (r.session).ip_address, (r.session).user_agent, (r.session).last_active_at, (r.session).expires_at, (r.session).created_at, (r.session).revoked_at, (r.session).revoked_reason, (r.session).rotated_at FROM auth.validate_session($1, $2::bigint, $3::bigint) r",
        None,
    )
}
impl ValidateSessionStmt {
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
        presented_hash: &'a T1,
        idle_seconds: &'a Option<i64>,
        grace_seconds: &'a i64,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 3> {
        SessionOutcomeQuery {
            client,
            params: [presented_hash, idle_seconds, grace_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |
                row: &tokio_postgres::Row,
            | -> Result<SessionOutcomeBorrowed, tokio_postgres::Error> {
                Ok(SessionOutcomeBorrowed {
                    outcome: row.try_get(0)?,
                    id: row.try_get(1)?,
                    user_id: row.try_get(2)?,
                    refresh_token_hash: row.try_get(3)?,
                    device_info: row.try_get(4)?,
                    ip_address: row.try_get(5)?,
                    user_agent: row.try_get(6)?,
                    last_active_at: row.try_get(7)?,
                    expires_at: row.try_get(8)?,
                    created_at: row.try_get(9)?,
                    revoked_at: row.try_get(10)?,
                    revoked_reason: row.try_get(11)?,
                    rotated_at: row.try_get(12)?,
                })
            },
            mapper: |it| SessionOutcome::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient, T1: crate::StringSql>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        ValidateSessionParams<T1>,
        SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 3>,
        C,
    > for ValidateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a ValidateSessionParams<T1>,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 3> {
        self.bind(
            client,
            &params.presented_hash,
            &params.idle_seconds,
            &params.grace_seconds,
        )
    }
}
