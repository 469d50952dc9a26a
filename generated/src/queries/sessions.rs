// This file was generated with `cornucopia`. Do not modify.

#[derive(Debug)]
pub struct CreateSessionParams<T1: crate::StringSql, T2: crate::StringSql, T3: crate::StringSql> {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub generation: i32,
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
pub struct GetSessionByTokenParams<T1: crate::StringSql> {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub refresh_token_hash: T1,
    pub idle_seconds: Option<i64>,
}
#[derive(Clone, Copy, Debug)]
pub struct GetUserSessionsParams {
    pub user_id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
}
#[derive(Clone, Copy, Debug)]
pub struct CountUserSessionsParams {
    pub user_id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
}
#[derive(Clone, Copy, Debug)]
pub struct UpdateSessionActivityParams {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
    pub ip_address: Option<std::net::IpAddr>,
    pub min_interval_seconds: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct RevokeSessionParams {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
}
#[derive(Clone, Copy, Debug)]
pub struct RevokeAllSessionsExceptCurrentParams {
    pub user_id: uuid::Uuid,
    pub current_id: uuid::Uuid,
}
#[derive(Debug)]
pub struct RotateSessionParams<T1: crate::StringSql, T2: crate::StringSql> {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub generation: i32,
    pub presented_hash: T1,
    pub successor_hash: T2,
    pub idle_seconds: Option<i64>,
    pub grace_seconds: i64,
}
#[derive(Debug)]
pub struct ValidateSessionParams<T1: crate::StringSql> {
    pub generation: i32,
    pub presented_hash: T1,
    pub grace_seconds: i64,
    pub idle_seconds: Option<i64>,
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
}
#[derive(Clone, Copy, Debug)]
pub struct DeleteExpiredSessionsParams {
    pub idle_seconds: Option<i64>,
    pub retention_seconds: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct DeleteRevokedSessionsBatchParams {
    pub retention_seconds: i64,
    pub batch_size: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct FindIdleSessionsInKeyWindowParams {
    pub from_user_id: uuid::Uuid,
    pub from_id: uuid::Uuid,
    pub window_size: i64,
    pub idle_seconds: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct DeleteIdleSessionsInKeyRangeParams {
    pub from_user_id: uuid::Uuid,
    pub from_id: uuid::Uuid,
    pub to_user_id: uuid::Uuid,
    pub to_id: uuid::Uuid,
    pub idle_seconds: i64,
}
#[derive(Clone, Copy, Debug)]
pub struct GetLiveSessionByKeyParams {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub idle_seconds: Option<i64>,
}
#[derive(Debug)]
pub struct RecordActivityBatchParams<
    T1: crate::ArraySql<Item = uuid::Uuid>,
    T2: crate::ArraySql<Item = uuid::Uuid>,
    T3: crate::StringSql,
    T4: crate::ArraySql<Item = T3>,
> {
    pub user_ids: T1,
    pub ids: T2,
    pub ip_addresses: T4,
    pub idle_seconds: Option<i64>,
    pub min_interval_seconds: i64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct NewSessionRow {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub device_info: Option<String>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub evicted: i64,
}
pub struct NewSessionRowBorrowed<'a> {
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub device_info: Option<&'a str>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub evicted: i64,
}
impl<'a> From<NewSessionRowBorrowed<'a>> for NewSessionRow {
    fn from(
        NewSessionRowBorrowed {
            id,
            user_id,
            device_info,
            ip_address,
            user_agent,
            last_active_at,
            expires_at,
            created_at,
            evicted,
        }: NewSessionRowBorrowed<'a>,
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
            evicted,
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
pub struct RevokedOthers {
    pub found: bool,
    pub revoked: i64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOutcome {
    pub outcome: String,
    pub state: String,
    pub current_hash: Option<String>,
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub device_info: Option<String>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_reason: Option<String>,
}
pub struct SessionOutcomeBorrowed<'a> {
    pub outcome: &'a str,
    pub state: &'a str,
    pub current_hash: Option<&'a str>,
    pub id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub device_info: Option<&'a str>,
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<&'a str>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_reason: Option<&'a str>,
}
impl<'a> From<SessionOutcomeBorrowed<'a>> for SessionOutcome {
    fn from(
        SessionOutcomeBorrowed {
            outcome,
            state,
            current_hash,
            id,
            user_id,
            device_info,
            ip_address,
            user_agent,
            last_active_at,
            expires_at,
            created_at,
            revoked_reason,
        }: SessionOutcomeBorrowed<'a>,
    ) -> Self {
        Self {
            outcome: outcome.into(),
            state: state.into(),
            current_hash: current_hash.map(|v| v.into()),
            id,
            user_id,
            device_info: device_info.map(|v| v.into()),
            ip_address,
            user_agent: user_agent.map(|v| v.into()),
            last_active_at,
            expires_at,
            created_at,
            revoked_reason: revoked_reason.map(|v| v.into()),
        }
    }
}
#[derive(Debug, Clone, PartialEq, Copy)]
pub struct IdleWindow {
    pub examined: i64,
    pub idle: i64,
    pub last_user_id: Option<uuid::Uuid>,
    pub last_id: Option<uuid::Uuid>,
    pub next_user_id: Option<uuid::Uuid>,
    pub next_id: Option<uuid::Uuid>,
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
#[derive(Debug, Clone, PartialEq, Copy)]
pub struct LiveSessionByKey {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub ip_address: Option<std::net::IpAddr>,
    pub db_now: chrono::DateTime<chrono::Utc>,
}
#[derive(Debug, Clone, PartialEq, Copy)]
pub struct BatchActivity {
    pub user_id: uuid::Uuid,
    pub id: uuid::Uuid,
    pub last_active_at: chrono::DateTime<chrono::Utc>,
    pub written: bool,
}
use crate::client::async_::GenericClient;
use futures::{self, StreamExt, TryStreamExt};
pub struct NewSessionRowQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<NewSessionRowBorrowed, tokio_postgres::Error>,
    mapper: fn(NewSessionRowBorrowed) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> NewSessionRowQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(NewSessionRowBorrowed) -> R,
    ) -> NewSessionRowQuery<'c, 'a, 's, C, R, N> {
        NewSessionRowQuery {
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
pub struct RevokedOthersQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<RevokedOthers, tokio_postgres::Error>,
    mapper: fn(RevokedOthers) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> RevokedOthersQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(RevokedOthers) -> R) -> RevokedOthersQuery<'c, 'a, 's, C, R, N> {
        RevokedOthersQuery {
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
pub struct IdleWindowQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<IdleWindow, tokio_postgres::Error>,
    mapper: fn(IdleWindow) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> IdleWindowQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(IdleWindow) -> R) -> IdleWindowQuery<'c, 'a, 's, C, R, N> {
        IdleWindowQuery {
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
pub struct LiveSessionByKeyQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<LiveSessionByKey, tokio_postgres::Error>,
    mapper: fn(LiveSessionByKey) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> LiveSessionByKeyQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(
        self,
        mapper: fn(LiveSessionByKey) -> R,
    ) -> LiveSessionByKeyQuery<'c, 'a, 's, C, R, N> {
        LiveSessionByKeyQuery {
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
pub struct BatchActivityQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<BatchActivity, tokio_postgres::Error>,
    mapper: fn(BatchActivity) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> BatchActivityQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(BatchActivity) -> R) -> BatchActivityQuery<'c, 'a, 's, C, R, N> {
        BatchActivityQuery {
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
/// Creates session (`user_id`, `id`) at `generation`, expiring `ttl_seconds` after now (database
/// clock) and storing only the hash of its refresh token. With `max_sessions`, the user's live
/// sessions are held to that cap: at the cap the least recently active are revoked (`evict`) or
/// the call fails with SQLSTATE AS001. `evicted` counts the sessions revoked to make room.
pub fn create_session() -> CreateSessionStmt {
    CreateSessionStmt(
        "SELECT id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at, evicted FROM auth.create_session($1, $2, $3::integer, $4, $5, $6, $7, $8::bigint, $9::bigint, $10::integer, $11::boolean)",
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
        id: &'a uuid::Uuid,
        generation: &'a i32,
        refresh_token_hash: &'a T1,
        device_info: &'a Option<T2>,
        ip_address: &'a Option<std::net::IpAddr>,
        user_agent: &'a Option<T3>,
        ttl_seconds: &'a i64,
        idle_seconds: &'a Option<i64>,
        max_sessions: &'a Option<i32>,
        evict: &'a bool,
    ) -> NewSessionRowQuery<'c, 'a, 's, C, NewSessionRow, 11> {
        NewSessionRowQuery {
            client,
            params: [
                user_id,
                id,
                generation,
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
            extractor:
                |row: &tokio_postgres::Row| -> Result<NewSessionRowBorrowed, tokio_postgres::Error> {
                    Ok(NewSessionRowBorrowed {
                        id: row.try_get(0)?,
                        user_id: row.try_get(1)?,
                        device_info: row.try_get(2)?,
                        ip_address: row.try_get(3)?,
                        user_agent: row.try_get(4)?,
                        last_active_at: row.try_get(5)?,
                        expires_at: row.try_get(6)?,
                        created_at: row.try_get(7)?,
                        evicted: row.try_get(8)?,
                    })
                },
            mapper: |it| NewSessionRow::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient, T1: crate::StringSql, T2: crate::StringSql, T3: crate::StringSql>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        CreateSessionParams<T1, T2, T3>,
        NewSessionRowQuery<'c, 'a, 's, C, NewSessionRow, 11>,
        C,
    > for CreateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a CreateSessionParams<T1, T2, T3>,
    ) -> NewSessionRowQuery<'c, 'a, 's, C, NewSessionRow, 11> {
        self.bind(
            client,
            &params.user_id,
            &params.id,
            &params.generation,
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
pub struct GetSessionByTokenStmt(&'static str, Option<tokio_postgres::Statement>);
/// Finds session (`user_id`, `id`) by its primary key when it holds this refresh token hash and
/// is live: not revoked, `expires_at > now()`, and (with `idle_seconds`) active within that many
/// seconds. The hot path: returns only what the caller uses.
pub fn get_session_by_token() -> GetSessionByTokenStmt {
    GetSessionByTokenStmt(
        "SELECT id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at FROM auth.user_sessions WHERE user_id = $1 AND id = $2 AND refresh_token_hash = $3 AND auth.session_is_live(revoked_at, expires_at, last_active_at, $4::bigint, now())",
        None,
    )
}
impl GetSessionByTokenStmt {
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
        user_id: &'a uuid::Uuid,
        id: &'a uuid::Uuid,
        refresh_token_hash: &'a T1,
        idle_seconds: &'a Option<i64>,
    ) -> LiveSessionQuery<'c, 'a, 's, C, LiveSession, 4> {
        LiveSessionQuery {
            client,
            params: [user_id, id, refresh_token_hash, idle_seconds],
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
        GetSessionByTokenParams<T1>,
        LiveSessionQuery<'c, 'a, 's, C, LiveSession, 4>,
        C,
    > for GetSessionByTokenStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a GetSessionByTokenParams<T1>,
    ) -> LiveSessionQuery<'c, 'a, 's, C, LiveSession, 4> {
        self.bind(
            client,
            &params.user_id,
            &params.id,
            &params.refresh_token_hash,
            &params.idle_seconds,
        )
    }
}
pub struct GetUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Lists a user's live sessions, most recently active first, along the partial index of live
/// rows. Never returns the token hash or the raw user agent.
pub fn get_user_sessions() -> GetUserSessionsStmt {
    GetUserSessionsStmt(
        "SELECT id, device_info, ip_address, last_active_at, expires_at, created_at FROM auth.user_sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND auth.session_is_live(revoked_at, expires_at, last_active_at, $2::bigint, now()) ORDER BY last_active_at DESC, id",
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
pub struct CountUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Counts a user's live sessions (not revoked, not expired, not idle).
pub fn count_user_sessions() -> CountUserSessionsStmt {
    CountUserSessionsStmt(
        "SELECT count(*) AS live FROM auth.user_sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() AND auth.session_is_live(revoked_at, expires_at, last_active_at, $2::bigint, now())",
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
pub struct UpdateSessionActivityStmt(&'static str, Option<tokio_postgres::Statement>);
/// Records activity on live session (`user_id`, `id`), writing only when `last_active_at` is at
/// least `min_interval_seconds` old or the client's address changed; most calls write nothing.
/// The write re-checks liveness on the newest row version, so it never touches a session
/// revoked meanwhile. Returns the activity time and whether it was written, or no row when the
/// session is not live.
pub fn update_session_activity() -> UpdateSessionActivityStmt {
    UpdateSessionActivityStmt(
        "WITH live AS ( SELECT id, last_active_at, ip_address FROM auth.user_sessions WHERE user_id = $1 AND id = $2 AND auth.session_is_live(revoked_at, expires_at, last_active_at, $3::bigint, now()) ), touched AS ( UPDATE auth.user_sessions s SET last_active_at = now(), ip_address = coalesce($4, s.ip_address) WHERE s.user_id = $1 AND s.id = $2 AND auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at, $3::bigint, now()) AND (s.last_active_at <= now() - make_interval(secs => $5::bigint) OR s.ip_address IS DISTINCT FROM coalesce($4, s.ip_address)) RETURNING s.last_active_at ) SELECT coalesce((SELECT last_active_at FROM touched), live.last_active_at) AS last_active_at, EXISTS (SELECT 1 FROM touched) AS written FROM live",
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
        user_id: &'a uuid::Uuid,
        id: &'a uuid::Uuid,
        idle_seconds: &'a Option<i64>,
        ip_address: &'a Option<std::net::IpAddr>,
        min_interval_seconds: &'a i64,
    ) -> SessionActivityQuery<'c, 'a, 's, C, SessionActivity, 5> {
        SessionActivityQuery {
            client,
            params: [user_id, id, idle_seconds, ip_address, min_interval_seconds],
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
        SessionActivityQuery<'c, 'a, 's, C, SessionActivity, 5>,
        C,
    > for UpdateSessionActivityStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a UpdateSessionActivityParams,
    ) -> SessionActivityQuery<'c, 'a, 's, C, SessionActivity, 5> {
        self.bind(
            client,
            &params.user_id,
            &params.id,
            &params.idle_seconds,
            &params.ip_address,
            &params.min_interval_seconds,
        )
    }
}
pub struct RevokeSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Revokes session (`user_id`, `id`): the user is its owner by construction. Returns its id, or
/// no row when that user has no such unrevoked session.
pub fn revoke_session() -> RevokeSessionStmt {
    RevokeSessionStmt(
        "UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
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
        user_id: &'a uuid::Uuid,
        id: &'a uuid::Uuid,
    ) -> UuidUuidQuery<'c, 'a, 's, C, uuid::Uuid, 2> {
        UuidUuidQuery {
            client,
            params: [user_id, id],
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
        self.bind(client, &params.user_id, &params.id)
    }
}
pub struct RevokeAllSessionsExceptCurrentStmt(&'static str, Option<tokio_postgres::Statement>);
/// Revokes every unexpired session of a user except the current one, only when the current one
/// is an unrevoked session of that user (a mistyped id must not log out every device). Returns
/// whether the current session was found and how many were revoked. (Expired rows are left to
/// cleanup, so the two never wait on each other.)
pub fn revoke_all_sessions_except_current() -> RevokeAllSessionsExceptCurrentStmt {
    RevokeAllSessionsExceptCurrentStmt(
        "WITH current_session AS ( SELECT id FROM auth.user_sessions WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL ), revoked AS ( UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > now() AND EXISTS (SELECT 1 FROM current_session) RETURNING 1 ) SELECT EXISTS (SELECT 1 FROM current_session) AS found, (SELECT count(*) FROM revoked) AS revoked",
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
    ) -> RevokedOthersQuery<'c, 'a, 's, C, RevokedOthers, 2> {
        RevokedOthersQuery {
            client,
            params: [user_id, current_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row: &tokio_postgres::Row| -> Result<RevokedOthers, tokio_postgres::Error> {
                Ok(RevokedOthers {
                    found: row.try_get(0)?,
                    revoked: row.try_get(1)?,
                })
            },
            mapper: |it| RevokedOthers::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        RevokeAllSessionsExceptCurrentParams,
        RevokedOthersQuery<'c, 'a, 's, C, RevokedOthers, 2>,
        C,
    > for RevokeAllSessionsExceptCurrentStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a RevokeAllSessionsExceptCurrentParams,
    ) -> RevokedOthersQuery<'c, 'a, 's, C, RevokedOthers, 2> {
        self.bind(client, &params.user_id, &params.current_id)
    }
}
pub struct RevokeAllUserSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Revokes every unexpired session of a user. Returns how many were revoked.
pub fn revoke_all_user_sessions() -> RevokeAllUserSessionsStmt {
    RevokeAllUserSessionsStmt(
        "WITH revoked AS ( UPDATE auth.user_sessions SET revoked_at = now(), revoked_reason = 'user' WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING 1 ) SELECT count(*) AS revoked FROM revoked",
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
pub struct RotateSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Rotates the refresh token of session (`user_id`, `id`) in one atomic step (see
/// auth.rotate_session), for a token whose tag the caller verified: `outcome` is rotated, grace
/// (`current_hash` is the successor to hand out), token_reused (the session is now revoked),
/// revoked, expired or idle_timed_out; no row when the token is not one of the session's.
pub fn rotate_session() -> RotateSessionStmt {
    RotateSessionStmt(
        "SELECT outcome, state, current_hash, id, user_id, device_info, ip_address, user_agent, last_active_at, expires_at, created_at, revoked_reason FROM auth.rotate_session($1, $2, $3::integer, $4, $5, $6::bigint, $7::bigint)",
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
        user_id: &'a uuid::Uuid,
        id: &'a uuid::Uuid,
        generation: &'a i32,
        presented_hash: &'a T1,
        successor_hash: &'a T2,
        idle_seconds: &'a Option<i64>,
        grace_seconds: &'a i64,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 7> {
        SessionOutcomeQuery {
            client,
            params: [
                user_id,
                id,
                generation,
                presented_hash,
                successor_hash,
                idle_seconds,
                grace_seconds,
            ],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |
                row: &tokio_postgres::Row,
            | -> Result<SessionOutcomeBorrowed, tokio_postgres::Error> {
                Ok(SessionOutcomeBorrowed {
                    outcome: row.try_get(0)?,
                    state: row.try_get(1)?,
                    current_hash: row.try_get(2)?,
                    id: row.try_get(3)?,
                    user_id: row.try_get(4)?,
                    device_info: row.try_get(5)?,
                    ip_address: row.try_get(6)?,
                    user_agent: row.try_get(7)?,
                    last_active_at: row.try_get(8)?,
                    expires_at: row.try_get(9)?,
                    created_at: row.try_get(10)?,
                    revoked_reason: row.try_get(11)?,
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
        SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 7>,
        C,
    > for RotateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a RotateSessionParams<T1, T2>,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 7> {
        self.bind(
            client,
            &params.user_id,
            &params.id,
            &params.generation,
            &params.presented_hash,
            &params.successor_hash,
            &params.idle_seconds,
            &params.grace_seconds,
        )
    }
}
pub struct ValidateSessionStmt(&'static str, Option<tokio_postgres::Statement>);
/// Classifies a presented token of session (`user_id`, `id`), whose tag the caller verified,
/// without changing anything, with the outcomes of rotate_session: the current token gives the
/// session's state; an older one gives the state when the session is not live, else grace (the
/// parent, inside the window) or token_reused; no row when the token is not one of the
/// session's. (Generations are compared as `stored - 1`, which cannot overflow, rather than
/// `presented + 1`, which can.)
pub fn validate_session() -> ValidateSessionStmt {
    ValidateSessionStmt(
        "SELECT c.outcome, c.state, NULL::varchar AS current_hash, c.id, c.user_id, c.device_info, c.ip_address, c.user_agent, c.last_active_at, c.expires_at, c.created_at, c.revoked_reason FROM ( SELECT CASE WHEN s.generation = $1::integer AND s.refresh_token_hash = $2 THEN st.state WHEN s.generation > $1::integer THEN CASE WHEN st.state <> 'live' THEN st.state WHEN s.generation - 1 = $1::integer AND s.rotated_at > now() - make_interval(secs => $3::bigint) THEN 'grace' ELSE 'token_reused' END END AS outcome, st.state, s.id, s.user_id, s.device_info, s.ip_address, s.user_agent, s.last_active_at, s.expires_at, s.created_at, s.revoked_reason FROM auth.user_sessions s CROSS JOIN LATERAL ( SELECT auth.session_state(s.revoked_at, s.expires_at, s.last_active_at, $4::bigint, now()) AS state ) st WHERE s.user_id = $5 AND s.id = $6 ) c WHERE c.outcome IS NOT NULL",
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
        generation: &'a i32,
        presented_hash: &'a T1,
        grace_seconds: &'a i64,
        idle_seconds: &'a Option<i64>,
        user_id: &'a uuid::Uuid,
        id: &'a uuid::Uuid,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 6> {
        SessionOutcomeQuery {
            client,
            params: [
                generation,
                presented_hash,
                grace_seconds,
                idle_seconds,
                user_id,
                id,
            ],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |
                row: &tokio_postgres::Row,
            | -> Result<SessionOutcomeBorrowed, tokio_postgres::Error> {
                Ok(SessionOutcomeBorrowed {
                    outcome: row.try_get(0)?,
                    state: row.try_get(1)?,
                    current_hash: row.try_get(2)?,
                    id: row.try_get(3)?,
                    user_id: row.try_get(4)?,
                    device_info: row.try_get(5)?,
                    ip_address: row.try_get(6)?,
                    user_agent: row.try_get(7)?,
                    last_active_at: row.try_get(8)?,
                    expires_at: row.try_get(9)?,
                    created_at: row.try_get(10)?,
                    revoked_reason: row.try_get(11)?,
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
        SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 6>,
        C,
    > for ValidateSessionStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a ValidateSessionParams<T1>,
    ) -> SessionOutcomeQuery<'c, 'a, 's, C, SessionOutcome, 6> {
        self.bind(
            client,
            &params.generation,
            &params.presented_hash,
            &params.grace_seconds,
            &params.idle_seconds,
            &params.user_id,
            &params.id,
        )
    }
}
pub struct DeleteExpiredSessionsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes every session past `expires_at`, (with `idle_seconds`) unrevoked and idle for longer,
/// or revoked longer than `retention_seconds` ago (a tombstone outlives its idle timeout). Unbounded: prefer the batches below on large tables.
/// Returns how many were deleted.
pub fn delete_expired_sessions() -> DeleteExpiredSessionsStmt {
    DeleteExpiredSessionsStmt(
        "WITH deleted AS ( DELETE FROM auth.user_sessions WHERE expires_at <= now() OR (revoked_at IS NULL AND last_active_at <= now() - make_interval(secs => $1::bigint)) OR revoked_at <= now() - make_interval(secs => $2::bigint) RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
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
        retention_seconds: &'a i64,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        I64Query {
            client,
            params: [idle_seconds, retention_seconds],
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
        DeleteExpiredSessionsParams,
        I64Query<'c, 'a, 's, C, i64, 2>,
        C,
    > for DeleteExpiredSessionsStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a DeleteExpiredSessionsParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        self.bind(client, &params.idle_seconds, &params.retention_seconds)
    }
}
pub struct DeleteExpiredSessionsBatchStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes up to `batch_size` sessions past `expires_at`, oldest expiry first (walking the expiry
/// index), re-checking the expiry inside the delete. Takes no row lock before the delete (Citus
/// supports none across shards): a second cleaner racing for the same rows waits for them and
/// then skips them, in the same index order, so cleaners never deadlock each other. Returns how
/// many were deleted.
pub fn delete_expired_sessions_batch() -> DeleteExpiredSessionsBatchStmt {
    DeleteExpiredSessionsBatchStmt(
        "WITH doomed AS ( SELECT user_id, id FROM auth.user_sessions WHERE expires_at <= now() ORDER BY expires_at LIMIT $1::bigint ), deleted AS ( DELETE FROM auth.user_sessions s USING doomed WHERE s.user_id = doomed.user_id AND s.id = doomed.id AND s.expires_at <= now() RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
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
pub struct DeleteRevokedSessionsBatchStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes up to `batch_size` tombstones revoked at least `retention_seconds` ago, oldest first
/// (walking the partial index of revoked rows). Returns how many were deleted.
pub fn delete_revoked_sessions_batch() -> DeleteRevokedSessionsBatchStmt {
    DeleteRevokedSessionsBatchStmt(
        "WITH doomed AS ( SELECT user_id, id FROM auth.user_sessions WHERE revoked_at <= now() - make_interval(secs => $1::bigint) ORDER BY revoked_at LIMIT $2::bigint ), deleted AS ( DELETE FROM auth.user_sessions s USING doomed WHERE s.user_id = doomed.user_id AND s.id = doomed.id AND s.revoked_at <= now() - make_interval(secs => $1::bigint) RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteRevokedSessionsBatchStmt {
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
        retention_seconds: &'a i64,
        batch_size: &'a i64,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        I64Query {
            client,
            params: [retention_seconds, batch_size],
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
        DeleteRevokedSessionsBatchParams,
        I64Query<'c, 'a, 's, C, i64, 2>,
        C,
    > for DeleteRevokedSessionsBatchStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a DeleteRevokedSessionsBatchParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 2> {
        self.bind(client, &params.retention_seconds, &params.batch_size)
    }
}
pub struct FindIdleSessionsInKeyWindowStmt(&'static str, Option<tokio_postgres::Statement>);
/// One step of the walk that finds idle sessions, changing nothing: reads the next
/// `window_size` sessions in primary-key order, from key (`from_user_id`, `from_id`) on.
/// `last_active_at` is in no index (to keep activity updates HOT), so no index finds idle rows;
/// walking the primary key a window at a time bounds what one statement reads (`window_size`
/// + 1 rows, per shard or partition), however large the table. Returns how many sessions were
/// examined and how many of them are unrevoked and idle for at least `idle_seconds`, the last
/// key examined, and the key the next window starts from: none when the walk reached the end
/// of the table.
pub fn find_idle_sessions_in_key_window() -> FindIdleSessionsInKeyWindowStmt {
    FindIdleSessionsInKeyWindowStmt(
        "WITH walked AS ( SELECT user_id, id, revoked_at, last_active_at FROM auth.user_sessions WHERE (user_id, id) >= ($1, $2) ORDER BY user_id, id LIMIT $3::bigint + 1 ), examined AS ( SELECT user_id, id, revoked_at, last_active_at FROM walked ORDER BY user_id, id LIMIT $3::bigint ), last_key AS ( SELECT user_id, id FROM examined ORDER BY user_id DESC, id DESC LIMIT 1 ), next_key AS ( SELECT user_id, id FROM walked ORDER BY user_id, id OFFSET $3::bigint LIMIT 1 ) SELECT (SELECT count(*) FROM examined) AS examined, (SELECT count(*) FROM examined WHERE revoked_at IS NULL AND last_active_at <= now() - make_interval(secs => $4::bigint)) AS idle, (SELECT user_id FROM last_key) AS last_user_id, (SELECT id FROM last_key) AS last_id, (SELECT user_id FROM next_key) AS next_user_id, (SELECT id FROM next_key) AS next_id",
        None,
    )
}
impl FindIdleSessionsInKeyWindowStmt {
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
        from_user_id: &'a uuid::Uuid,
        from_id: &'a uuid::Uuid,
        window_size: &'a i64,
        idle_seconds: &'a i64,
    ) -> IdleWindowQuery<'c, 'a, 's, C, IdleWindow, 4> {
        IdleWindowQuery {
            client,
            params: [from_user_id, from_id, window_size, idle_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row: &tokio_postgres::Row| -> Result<IdleWindow, tokio_postgres::Error> {
                Ok(IdleWindow {
                    examined: row.try_get(0)?,
                    idle: row.try_get(1)?,
                    last_user_id: row.try_get(2)?,
                    last_id: row.try_get(3)?,
                    next_user_id: row.try_get(4)?,
                    next_id: row.try_get(5)?,
                })
            },
            mapper: |it| IdleWindow::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        FindIdleSessionsInKeyWindowParams,
        IdleWindowQuery<'c, 'a, 's, C, IdleWindow, 4>,
        C,
    > for FindIdleSessionsInKeyWindowStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a FindIdleSessionsInKeyWindowParams,
    ) -> IdleWindowQuery<'c, 'a, 's, C, IdleWindow, 4> {
        self.bind(
            client,
            &params.from_user_id,
            &params.from_id,
            &params.window_size,
            &params.idle_seconds,
        )
    }
}
pub struct DeleteIdleSessionsInKeyRangeStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes the unrevoked sessions idle for at least `idle_seconds` (tombstones go by their
/// retention instead) whose primary key lies from (`from_user_id`, `from_id`) to
/// (`to_user_id`, `to_id`), both included: a window find_idle_sessions_in_key_window has just
/// examined, so this reads about as many rows, along the primary key. The bounds are
/// parameters, not the result of a subquery, so that every shard or partition scans only its
/// part of the range whatever join a planner would choose. Idleness is checked on the newest
/// version of each row. Returns how many were deleted.
pub fn delete_idle_sessions_in_key_range() -> DeleteIdleSessionsInKeyRangeStmt {
    DeleteIdleSessionsInKeyRangeStmt(
        "WITH deleted AS ( DELETE FROM auth.user_sessions WHERE (user_id, id) >= ($1, $2) AND (user_id, id) <= ($3, $4) AND revoked_at IS NULL AND last_active_at <= now() - make_interval(secs => $5::bigint) RETURNING 1 ) SELECT count(*) AS deleted FROM deleted",
        None,
    )
}
impl DeleteIdleSessionsInKeyRangeStmt {
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
        from_user_id: &'a uuid::Uuid,
        from_id: &'a uuid::Uuid,
        to_user_id: &'a uuid::Uuid,
        to_id: &'a uuid::Uuid,
        idle_seconds: &'a i64,
    ) -> I64Query<'c, 'a, 's, C, i64, 5> {
        I64Query {
            client,
            params: [from_user_id, from_id, to_user_id, to_id, idle_seconds],
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
        DeleteIdleSessionsInKeyRangeParams,
        I64Query<'c, 'a, 's, C, i64, 5>,
        C,
    > for DeleteIdleSessionsInKeyRangeStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a DeleteIdleSessionsInKeyRangeParams,
    ) -> I64Query<'c, 'a, 's, C, i64, 5> {
        self.bind(
            client,
            &params.from_user_id,
            &params.from_id,
            &params.to_user_id,
            &params.to_id,
            &params.idle_seconds,
        )
    }
}
pub struct SessionStatsStmt(&'static str, Option<tokio_postgres::Statement>);
/// Sessions in total, live, expired, revoked; users with sessions; the largest per-user count of
/// live sessions; table and index sizes in bytes (summed over shards or partitions).
pub fn session_stats() -> SessionStatsStmt {
    SessionStatsStmt(
        "WITH per_user AS ( SELECT user_id, count(*) FILTER ( WHERE auth.session_is_live(revoked_at, expires_at, last_active_at, $1::bigint, now()) ) AS live, count(*) FILTER (WHERE expires_at <= now()) AS expired, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked, count(*) AS total FROM auth.user_sessions GROUP BY user_id ), totals AS ( SELECT coalesce(sum(total), 0)::bigint AS total, coalesce(sum(live), 0)::bigint AS live, coalesce(sum(expired), 0)::bigint AS expired, coalesce(sum(revoked), 0)::bigint AS revoked, count(*) AS users, coalesce(max(live), 0)::bigint AS max_live_per_user FROM per_user ) SELECT totals.total, totals.live, totals.expired, totals.revoked, totals.users, totals.max_live_per_user, storage.table_bytes, storage.index_bytes FROM totals CROSS JOIN auth.session_storage() storage",
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
pub struct GetLiveSessionByKeyStmt(&'static str, Option<tokio_postgres::Statement>);
/// Reads live session (`user_id`, `id`) by its primary key, for a caller that already
/// authenticated the key (an access token it verified): its expiry, last activity and address,
/// with the database clock (`db_now`) the answer was decided at. No row when it is not live.
pub fn get_live_session_by_key() -> GetLiveSessionByKeyStmt {
    GetLiveSessionByKeyStmt(
        "SELECT user_id, id, expires_at, last_active_at, ip_address, now() AS db_now FROM auth.user_sessions WHERE user_id = $1 AND id = $2 AND auth.session_is_live(revoked_at, expires_at, last_active_at, $3::bigint, now())",
        None,
    )
}
impl GetLiveSessionByKeyStmt {
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
        id: &'a uuid::Uuid,
        idle_seconds: &'a Option<i64>,
    ) -> LiveSessionByKeyQuery<'c, 'a, 's, C, LiveSessionByKey, 3> {
        LiveSessionByKeyQuery {
            client,
            params: [user_id, id, idle_seconds],
            query: self.0,
            cached: self.1.as_ref(),
            extractor:
                |row: &tokio_postgres::Row| -> Result<LiveSessionByKey, tokio_postgres::Error> {
                    Ok(LiveSessionByKey {
                        user_id: row.try_get(0)?,
                        id: row.try_get(1)?,
                        expires_at: row.try_get(2)?,
                        last_active_at: row.try_get(3)?,
                        ip_address: row.try_get(4)?,
                        db_now: row.try_get(5)?,
                    })
                },
            mapper: |it| LiveSessionByKey::from(it),
        }
    }
}
impl<'c, 'a, 's, C: GenericClient>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        GetLiveSessionByKeyParams,
        LiveSessionByKeyQuery<'c, 'a, 's, C, LiveSessionByKey, 3>,
        C,
    > for GetLiveSessionByKeyStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a GetLiveSessionByKeyParams,
    ) -> LiveSessionByKeyQuery<'c, 'a, 's, C, LiveSessionByKey, 3> {
        self.bind(client, &params.user_id, &params.id, &params.idle_seconds)
    }
}
pub struct RecordActivityBatchStmt(&'static str, Option<tokio_postgres::Statement>);
/// Records activity on many live sessions in one statement: the sessions (`user_ids[i]`,
/// `ids[i]`), each with its client's address as text (`ip_addresses[i]`, empty when unknown).
/// As update_session_activity, a session is written only when its `last_active_at` is at least
/// `min_interval_seconds` old or its address changed, and only while live. Returns every live
/// session of the batch with its activity time (the new one when written) and whether it was
/// written, so the caller learns what is stored even when nothing was due. Callers pass keys
/// sorted, so concurrent batches lock shared rows in one order.
pub fn record_activity_batch() -> RecordActivityBatchStmt {
    RecordActivityBatchStmt(
        "WITH batch AS ( SELECT b.user_id, b.id, nullif(b.ip, '')::inet AS ip FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS b(user_id, id, ip) ), touched AS ( UPDATE auth.user_sessions s SET last_active_at = now(), ip_address = coalesce(b.ip, s.ip_address) FROM batch b WHERE s.user_id = b.user_id AND s.id = b.id AND auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at, $4::bigint, now()) AND (s.last_active_at <= now() - make_interval(secs => $5::bigint) OR s.ip_address IS DISTINCT FROM coalesce(b.ip, s.ip_address)) RETURNING s.user_id, s.id, s.last_active_at ) SELECT s.user_id, s.id, coalesce(t.last_active_at, s.last_active_at) AS last_active_at, t.id IS NOT NULL AS written FROM batch b JOIN auth.user_sessions s ON s.user_id = b.user_id AND s.id = b.id LEFT JOIN touched t ON t.user_id = s.user_id AND t.id = s.id WHERE t.id IS NOT NULL OR auth.session_is_live(s.revoked_at, s.expires_at, s.last_active_at, $4::bigint, now())",
        None,
    )
}
impl RecordActivityBatchStmt {
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
        T1: crate::ArraySql<Item = uuid::Uuid>,
        T2: crate::ArraySql<Item = uuid::Uuid>,
        T3: crate::StringSql,
        T4: crate::ArraySql<Item = T3>,
    >(
        &'s self,
        client: &'c C,
        user_ids: &'a T1,
        ids: &'a T2,
        ip_addresses: &'a T4,
        idle_seconds: &'a Option<i64>,
        min_interval_seconds: &'a i64,
    ) -> BatchActivityQuery<'c, 'a, 's, C, BatchActivity, 5> {
        BatchActivityQuery {
            client,
            params: [
                user_ids,
                ids,
                ip_addresses,
                idle_seconds,
                min_interval_seconds,
            ],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row: &tokio_postgres::Row| -> Result<BatchActivity, tokio_postgres::Error> {
                Ok(BatchActivity {
                    user_id: row.try_get(0)?,
                    id: row.try_get(1)?,
                    last_active_at: row.try_get(2)?,
                    written: row.try_get(3)?,
                })
            },
            mapper: |it| BatchActivity::from(it),
        }
    }
}
impl<
    'c,
    'a,
    's,
    C: GenericClient,
    T1: crate::ArraySql<Item = uuid::Uuid>,
    T2: crate::ArraySql<Item = uuid::Uuid>,
    T3: crate::StringSql,
    T4: crate::ArraySql<Item = T3>,
>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        RecordActivityBatchParams<T1, T2, T3, T4>,
        BatchActivityQuery<'c, 'a, 's, C, BatchActivity, 5>,
        C,
    > for RecordActivityBatchStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a RecordActivityBatchParams<T1, T2, T3, T4>,
    ) -> BatchActivityQuery<'c, 'a, 's, C, BatchActivity, 5> {
        self.bind(
            client,
            &params.user_ids,
            &params.ids,
            &params.ip_addresses,
            &params.idle_seconds,
            &params.min_interval_seconds,
        )
    }
}
