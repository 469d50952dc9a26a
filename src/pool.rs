//! Building a connection pool with explicit timeouts (deadpool's defaults wait forever).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::Error;

/// The database URL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// Pool size and timeouts. Every timeout is finite.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections open at once. Default: 16.
    pub max_size: usize,
    /// Longest wait for a free connection. Default: 5 s.
    pub wait_timeout: Duration,
    /// Longest time to open a new connection. Default: 5 s.
    pub create_timeout: Duration,
    /// Longest time to check a returned connection. Default: 5 s.
    pub recycle_timeout: Duration,
    /// Server-side limit on every statement of the pool's connections (`statement_timeout`,
    /// whole milliseconds); a statement past it fails with
    /// [`crate::Error::StatementTimeout`]. `None` keeps the server's setting. Default: `None`.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

impl PoolSettings {
    /// Sets the largest number of open connections.
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Sets the longest wait for a free connection.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets the longest time to open a connection.
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// Sets the server-side statement timeout of every connection.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets the longest time to check a returned connection.
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.recycle_timeout = timeout;
        self
    }
}

/// Builds a pool for `url` (a `postgres://` URL or a key=value connection string). Opens no
/// connection: the first call does.
///
/// # Errors
///
/// [`Error::Config`] when the URL does not parse or the settings are invalid.
pub fn build_pool(url: &str, settings: &PoolSettings) -> Result<Pool, Error> {
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|err| Error::Config(format!("database URL: {err}")))?;
    build_pool_with_config(config, settings)
}

/// Builds a pool from an already parsed connection configuration. Opens no connection.
///
/// # Errors
///
/// [`Error::Config`] when the settings are invalid.
pub fn build_pool_with_config(
    mut config: tokio_postgres::Config,
    settings: &PoolSettings,
) -> Result<Pool, Error> {
    config.connect_timeout(settings.create_timeout);
    if let Some(timeout) = settings.statement_timeout {
        let options = config.get_options().unwrap_or_default();
        let millis = timeout.as_millis().max(1);
        config.options(format!("{options} -c statement_timeout={millis}").trim());
    }
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.create_timeout))
        .recycle_timeout(Some(settings.recycle_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| Error::Config(format!("pool: {err}")))
}
