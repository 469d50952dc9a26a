//! Where a repository's rotation keys come from, and how it keeps them current.
//!
//! Three sources, in the order a deployment should consider them:
//!
//! - [`KeySource::SecretStore`]: a [`KeyRing`] the service reads from its secret store. The
//!   database never sees a key; changing keys is a configuration change rolled out to every
//!   instance (README, "Rotation keys").
//! - [`KeySource::Database`] with [`DatabaseKeys::wrapped`]: keys drawn at random and kept in
//!   `auth.rotation_keys`, each sealed (AES-256-GCM) under a wrapping key the service holds
//!   outside the database. A copy of the database (a backup, a replica, a reporting role)
//!   yields no usable key; instances pick up a new key without a restart.
//! - [`KeySource::Database`] with [`DatabaseKeys::unwrapped_for_development`]: the same, with
//!   the keys in clear. Whoever can read that table and holds any old refresh token of a
//!   session can derive the session's current token. For development only.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Error, KeyRing, MAX_KEY_ID, MAX_KEYS, RotationKey};

/// Additional data sealed with every wrapped key, before its id: a wrapped key cannot be
/// moved to another id or read as anything else.
const WRAP_LABEL: &[u8] = b"auth-sessions rotation key v1\0";

/// Where a [`crate::SessionRepo`] takes its rotation keys from ([`crate::SessionPolicy`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// Keys from the service's secret store, never stored in the database. Every instance
    /// must hold the same keys; see [`KeyRing`] for changing them. The production choice.
    SecretStore(KeyRing),
    /// Keys kept in `auth.rotation_keys`, shared by every instance through the database.
    Database(DatabaseKeys),
}

/// How a repository keeps its rotation keys in the database: [`KeySource::Database`].
///
/// The first instance that needs a key and finds none stores a random one (on the primary;
/// readers such as [`crate::SessionRepo::validate`] only read, so they work on a hot standby
/// once a key exists). [`crate::SessionRepo::add_rotation_key`] stores the next key, which
/// becomes the active one: every instance notices it within
/// [`DatabaseKeys::refresh_every`], or at once when it meets a token it signed.
#[derive(Clone)]
pub struct DatabaseKeys {
    wrapping: Option<WrappingKey>,
    refresh_every: Duration,
}

impl DatabaseKeys {
    /// Keys sealed under `wrapping`, which the service keeps outside the database (a secret
    /// store, a key management service). What the table holds is useless without it.
    pub fn wrapped(wrapping: WrappingKey) -> Self {
        Self {
            wrapping: Some(wrapping),
            refresh_every: Duration::from_secs(60),
        }
    }

    /// Keys stored in clear. **Development only**: anyone who can read `auth.rotation_keys`
    /// (a backup, a replica, a role granted `SELECT ON ALL TABLES`) and holds any old refresh
    /// token of a session (an old device backup, a log) can derive that session's current
    /// token and use it. The repository logs a warning when it loads such keys.
    pub fn unwrapped_for_development() -> Self {
        Self {
            wrapping: None,
            refresh_every: Duration::from_secs(60),
        }
    }

    /// How often the stored keys are read again, so that a key added elsewhere becomes this
    /// instance's signing key. Default: 60 s. Verifying never waits for it: a token signed by
    /// a key above the highest known makes the repository read the keys at once.
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Whether the keys are sealed under a wrapping key.
    pub fn is_wrapped(&self) -> bool {
        self.wrapping.is_some()
    }
}

impl fmt::Debug for DatabaseKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseKeys")
            .field("wrapped", &self.is_wrapped())
            .field("refresh_every", &self.refresh_every)
            .finish()
    }
}

/// The key that seals the rotation keys kept in the database ([`DatabaseKeys::wrapped`]).
/// `Debug` prints no key.
#[derive(Clone)]
pub struct WrappingKey([u8; 32]);

impl WrappingKey {
    /// A wrapping key from secret bytes (at least 32; longer input is hashed down to 32).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] (field `wrapping_key`) for fewer than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        crate::token::secret_key(bytes, "wrapping_key").map(Self)
    }

    fn aead(&self) -> Result<LessSafeKey, Error> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| Error::Config("the wrapping key is unusable".to_owned()))
    }

    /// `key` sealed: the ciphertext with its tag, and the nonce.
    fn seal(&self, key: &RotationKey) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(Error::Randomness)?;
        let mut sealed = key.as_bytes().to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(key.id())),
                &mut sealed,
            )
            .map_err(|_| Error::Config("cannot seal a rotation key".to_owned()))?;
        Ok((sealed, nonce.to_vec()))
    }

    /// Key `id` from what [`WrappingKey::seal`] stored, or `None` when it does not open (another
    /// wrapping key, or altered bytes).
    fn open(&self, id: u16, sealed: &[u8], nonce: &[u8]) -> Option<RotationKey> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .aead()
            .ok()?
            .open_in_place(nonce, Aad::from(aad(id)), &mut buffer)
            .ok()?;
        RotationKey::new(id, plain).ok()
    }
}

impl fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappingKey(<redacted>)")
    }
}

fn aad(id: u16) -> Vec<u8> {
    let mut aad = WRAP_LABEL.to_vec();
    aad.extend_from_slice(&id.to_be_bytes());
    aad
}

/// A repository's keys: the source, and for a database source the ring last read.
pub(crate) struct Keys {
    source: KeySource,
    loaded: RwLock<Option<Loaded>>,
    /// One reload at a time; callers that waited for it use its result.
    reloading: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Loaded {
    ring: Arc<KeyRing>,
    at: Instant,
}

impl Keys {
    pub(crate) fn new(source: KeySource) -> Self {
        let loaded = match &source {
            KeySource::SecretStore(ring) => Some(Loaded {
                ring: Arc::new(ring.clone()),
                at: Instant::now(),
            }),
            KeySource::Database(_) => None,
        };
        Self {
            source,
            loaded: RwLock::new(loaded),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn source(&self) -> &KeySource {
        &self.source
    }

    fn cached(&self) -> Option<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The ring to sign with: the cached one while it is fresh, else read again.
    pub(crate) async fn ring(&self, pool: &Pool) -> Result<Arc<KeyRing>, Error> {
        let KeySource::Database(database) = &self.source else {
            return self
                .cached()
                .map(|loaded| loaded.ring)
                .ok_or(Error::UnexpectedResponse("no rotation keys"));
        };
        match self.cached() {
            Some(loaded) if loaded.at.elapsed() < database.refresh_every => Ok(loaded.ring),
            seen => {
                self.reload(pool, database, seen.map(|loaded| loaded.at))
                    .await
            }
        }
    }

    /// The ring, read again first when it has no key `id` and `id` is above its highest: how
    /// an instance learns at once of a key another instance added. Concurrent callers share
    /// one read, so however many tokens name unknown keys, a repository has at most one such
    /// statement in flight, and each call costs at most that one.
    pub(crate) async fn ring_knowing(&self, pool: &Pool, id: u16) -> Result<Arc<KeyRing>, Error> {
        let ring = self.ring(pool).await?;
        let highest = ring.keys().map(RotationKey::id).max().unwrap_or(0);
        if ring.get(id).is_some() || id <= highest {
            return Ok(ring);
        }
        self.reread(pool).await.map(|fresh| fresh.unwrap_or(ring))
    }

    /// The ring read again now, whenever it was last read, unless a read that started after
    /// this call began completes first (`None` for a secret-store source, which never
    /// changes).
    pub(crate) async fn reread(&self, pool: &Pool) -> Result<Option<Arc<KeyRing>>, Error> {
        let KeySource::Database(database) = &self.source else {
            return Ok(None);
        };
        let seen = self.cached().map(|loaded| loaded.at);
        self.reload(pool, database, seen).await.map(Some)
    }

    /// Reads the stored keys (storing a first one when there is none), unless another caller
    /// did since `seen`.
    async fn reload(
        &self,
        pool: &Pool,
        database: &DatabaseKeys,
        seen: Option<Instant>,
    ) -> Result<Arc<KeyRing>, Error> {
        let _one_at_a_time = self.reloading.lock().await;
        if let Some(loaded) = self.cached()
            && Some(loaded.at) != seen
        {
            return Ok(loaded.ring);
        }
        let client = pool.get().await?;
        let rows = match stored_rows(&client, database).await {
            Ok(rows) => rows,
            Err(err) => return Err(crate::repo::explain_failure(&client, err).await),
        };
        let ring = Arc::new(database.ring(rows)?);
        if database.wrapping.is_none() && seen.is_none() {
            tracing::warn!(
                "rotation keys are kept unwrapped in the database (development only): whoever \
                 reads auth.rotation_keys and holds an old refresh token can derive the current one"
            );
        }
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Some(Loaded {
            ring: ring.clone(),
            at: Instant::now(),
        });
        Ok(ring)
    }
}

/// The stored keys, after storing key 1 when there is none.
async fn stored_rows(
    client: &deadpool_postgres::Client,
    database: &DatabaseKeys,
) -> Result<Vec<db::queries::rotation_keys::StoredKey>, Error> {
    let rows = db::queries::rotation_keys::list_rotation_keys()
        .bind(client)
        .all()
        .await?;
    if !rows.is_empty() {
        return Ok(rows);
    }
    // Only now a write: a reader on a hot standby never gets here once a key exists.
    let first = RotationKey::generate(1)?;
    let (stored, nonce) = database.store(&first)?;
    db::queries::rotation_keys::insert_rotation_key()
        .bind(client, &1i16, &stored.as_slice(), &nonce.as_deref())
        .opt()
        .await?;
    Ok(db::queries::rotation_keys::list_rotation_keys()
        .bind(client)
        .all()
        .await?)
}

impl DatabaseKeys {
    /// What to store for `key`: sealed with its nonce, or in clear with none.
    pub(crate) fn store(&self, key: &RotationKey) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
        match &self.wrapping {
            Some(wrapping) => wrapping
                .seal(key)
                .map(|(sealed, nonce)| (sealed, Some(nonce))),
            None => Ok((key.as_bytes().to_vec(), None)),
        }
    }

    /// The ring of the stored keys: the highest id active, the newest [`MAX_KEYS`] kept.
    fn ring(&self, rows: Vec<db::queries::rotation_keys::StoredKey>) -> Result<KeyRing, Error> {
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows.into_iter().rev().take(MAX_KEYS) {
            let id = u16::try_from(row.id)
                .ok()
                .filter(|id| (1..=MAX_KEY_ID).contains(id))
                .ok_or(Error::UnexpectedResponse("a rotation key id out of range"))?;
            let unusable = |reason| Error::RotationKeyUnusable { id, reason };
            let key = match (&self.wrapping, row.nonce) {
                (Some(wrapping), Some(nonce)) => wrapping
                    .open(id, &row.key, &nonce)
                    .ok_or_else(|| unusable("it does not open with the configured wrapping key"))?,
                (Some(_), None) => return Err(unusable("it is stored unwrapped")),
                (None, Some(_)) => {
                    return Err(unusable("it is wrapped and no wrapping key is configured"));
                }
                (None, None) => {
                    RotationKey::new(id, &row.key).map_err(|_| unusable("it is not 32 bytes"))?
                }
            };
            keys.push(key);
        }
        let mut keys = keys.into_iter();
        let active = keys
            .next()
            .ok_or(Error::UnexpectedResponse("no rotation key stored"))?;
        keys.try_fold(KeyRing::new(active), KeyRing::with_previous)
    }
}
