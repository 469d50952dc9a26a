#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cleanup;
mod distribute;
mod error;
mod keys;
mod live;
pub mod metrics;
mod migrate;
mod outcome;
mod pipeline;
mod policy;
mod pool;
mod repo;
mod session;
mod token;

pub use cleanup::{
    CleanupBatch, CleanupError, CleanupReport, CleanupSettings, run_cleanup, spawn_cleanup,
};
pub use distribute::{DistributionReport, distribute};
pub use error::{DatabaseError, Error, InputProblem};
pub use keys::{DatabaseKeys, KeySource, WrappingKey};
pub use live::{
    ENDED_CHANNEL, LiveSession, LiveSessions, LiveSettings, LiveStatus, MAX_ACTIVITY_BATCH,
    MAX_LIVE_CAPACITY, MAX_STALENESS_BOUND,
};
pub use migrate::{
    MIGRATIONS, Migration, MigrationReport, MigrationStatus, migrate, migration_status,
};
pub use outcome::{RevokeReason, Rotation, Validation};
pub use pipeline::{
    DEFAULT_DEADLINE, HotPath, MAX_DEADLINE, MAX_PIPELINE_CONNECTIONS, PipelineSettings,
    PipelineStatus,
};
pub use policy::{CapPolicy, SessionPolicy};
pub use pool::{
    DEFAULT_DATABASE_URL, PoolSettings, RootCerts, SslMode, TlsSettings, build_pool,
    build_pool_with_config, build_pool_with_tls, parse_database_url,
};
pub use repo::SessionRepo;
pub use session::{
    Activity, Device, MAX_DEVICE_INFO_CHARS, MAX_TTL, MAX_USER_AGENT_CHARS, NewSession, Session,
    SessionKey, SessionStats,
};
pub use token::{
    KeyRing, MAX_GENERATION, MAX_KEY_ID, MAX_KEYS, RefreshToken, RotationKey, TOKEN_LEN,
    TOKEN_PREFIX, TokenHash,
};

/// Re-exported so services can name the pool type without a direct dependency.
pub use deadpool_postgres;
