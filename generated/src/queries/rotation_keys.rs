// This file was generated with `cornucopia`. Do not modify.

#[derive(Debug)]
pub struct InsertRotationKeyParams<T1: crate::BytesSql, T2: crate::BytesSql> {
    pub key_id: i16,
    pub key: T1,
    pub nonce: Option<T2>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub id: i16,
    pub key: Vec<u8>,
    pub nonce: Option<Vec<u8>>,
}
pub struct StoredKeyBorrowed<'a> {
    pub id: i16,
    pub key: &'a [u8],
    pub nonce: Option<&'a [u8]>,
}
impl<'a> From<StoredKeyBorrowed<'a>> for StoredKey {
    fn from(StoredKeyBorrowed { id, key, nonce }: StoredKeyBorrowed<'a>) -> Self {
        Self {
            id,
            key: key.into(),
            nonce: nonce.map(|v| v.into()),
        }
    }
}
use crate::client::async_::GenericClient;
use futures::{self, StreamExt, TryStreamExt};
pub struct StoredKeyQuery<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<StoredKeyBorrowed, tokio_postgres::Error>,
    mapper: fn(StoredKeyBorrowed) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> StoredKeyQuery<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(StoredKeyBorrowed) -> R) -> StoredKeyQuery<'c, 'a, 's, C, R, N> {
        StoredKeyQuery {
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
pub struct I16Query<'c, 'a, 's, C: GenericClient, T, const N: usize> {
    client: &'c C,
    params: [&'a (dyn postgres_types::ToSql + Sync); N],
    query: &'static str,
    cached: Option<&'s tokio_postgres::Statement>,
    extractor: fn(&tokio_postgres::Row) -> Result<i16, tokio_postgres::Error>,
    mapper: fn(i16) -> T,
}
impl<'c, 'a, 's, C, T: 'c, const N: usize> I16Query<'c, 'a, 's, C, T, N>
where
    C: GenericClient,
{
    pub fn map<R>(self, mapper: fn(i16) -> R) -> I16Query<'c, 'a, 's, C, R, N> {
        I16Query {
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
pub struct ListRotationKeysStmt(&'static str, Option<tokio_postgres::Statement>);
/// Every stored rotation key, lowest id first. Read-only: works on a hot standby.
pub fn list_rotation_keys() -> ListRotationKeysStmt {
    ListRotationKeysStmt(
        "SELECT id, key, nonce FROM auth.rotation_keys ORDER BY id",
        None,
    )
}
impl ListRotationKeysStmt {
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
    ) -> StoredKeyQuery<'c, 'a, 's, C, StoredKey, 0> {
        StoredKeyQuery {
            client,
            params: [],
            query: self.0,
            cached: self.1.as_ref(),
            extractor:
                |row: &tokio_postgres::Row| -> Result<StoredKeyBorrowed, tokio_postgres::Error> {
                    Ok(StoredKeyBorrowed {
                        id: row.try_get(0)?,
                        key: row.try_get(1)?,
                        nonce: row.try_get(2)?,
                    })
                },
            mapper: |it| StoredKey::from(it),
        }
    }
}
pub struct InsertRotationKeyStmt(&'static str, Option<tokio_postgres::Statement>);
/// Stores key `key_id` (sealed, with its `nonce`, or in clear without) unless that id is taken.
/// Returns the id, or no row when another instance stored that id first.
pub fn insert_rotation_key() -> InsertRotationKeyStmt {
    InsertRotationKeyStmt(
        "INSERT INTO auth.rotation_keys (id, key, nonce) VALUES ($1::smallint, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING id",
        None,
    )
}
impl InsertRotationKeyStmt {
    pub async fn prepare<'a, C: GenericClient>(
        mut self,
        client: &'a C,
    ) -> Result<Self, tokio_postgres::Error> {
        self.1 = Some(client.prepare(self.0).await?);
        Ok(self)
    }
    pub fn bind<'c, 'a, 's, C: GenericClient, T1: crate::BytesSql, T2: crate::BytesSql>(
        &'s self,
        client: &'c C,
        key_id: &'a i16,
        key: &'a T1,
        nonce: &'a Option<T2>,
    ) -> I16Query<'c, 'a, 's, C, i16, 3> {
        I16Query {
            client,
            params: [key_id, key, nonce],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
impl<'c, 'a, 's, C: GenericClient, T1: crate::BytesSql, T2: crate::BytesSql>
    crate::client::async_::Params<
        'c,
        'a,
        's,
        InsertRotationKeyParams<T1, T2>,
        I16Query<'c, 'a, 's, C, i16, 3>,
        C,
    > for InsertRotationKeyStmt
{
    fn params(
        &'s self,
        client: &'c C,
        params: &'a InsertRotationKeyParams<T1, T2>,
    ) -> I16Query<'c, 'a, 's, C, i16, 3> {
        self.bind(client, &params.key_id, &params.key, &params.nonce)
    }
}
pub struct DeleteRotationKeyStmt(&'static str, Option<tokio_postgres::Statement>);
/// Deletes key `key_id` unless it is the highest (the active one). Returns the id, or no row.
pub fn delete_rotation_key() -> DeleteRotationKeyStmt {
    DeleteRotationKeyStmt(
        "DELETE FROM auth.rotation_keys WHERE id = $1::smallint AND id < (SELECT max(id) FROM auth.rotation_keys) RETURNING id",
        None,
    )
}
impl DeleteRotationKeyStmt {
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
        key_id: &'a i16,
    ) -> I16Query<'c, 'a, 's, C, i16, 1> {
        I16Query {
            client,
            params: [key_id],
            query: self.0,
            cached: self.1.as_ref(),
            extractor: |row| Ok(row.try_get(0)?),
            mapper: |it| it,
        }
    }
}
