//! The service's own schema, beside the crate's: credentials keyed by e-mail.
//!
//! The crate's migration 001 creates `auth.users (id, email, created_at)` when absent, and says
//! that e-mail uniqueness is the service's concern: a unique key without `id` cannot exist on
//! a table distributed by `id` (Citus). So the service keeps its credentials in a table of its
//! own, keyed by the normalised e-mail address and referencing `auth.users(id)`; it also writes
//! the address into `auth.users.email` as the operators' label.
//!
//! [`migrate`] runs the crate's migrations, then the service's, each once, in one transaction
//! under an advisory lock, recorded in `auth.service_migrations` (not in `public`). Running it
//! again, or from several instances at once, is harmless.

use auth_sessions::deadpool_postgres::Pool;

use crate::error::ErrorChain;

/// The service's migrations, applied in order, never edited once shipped.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "user_credentials",
    r#"
CREATE TABLE IF NOT EXISTS auth.user_credentials (
    email         text        NOT NULL,
    user_id       uuid        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_credentials_pkey PRIMARY KEY (email),
    CONSTRAINT user_credentials_user_id_key UNIQUE (user_id),
    CONSTRAINT user_credentials_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT user_credentials_email_check
        CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254 AND strpos(email, '@') > 1),
    CONSTRAINT user_credentials_password_hash_check CHECK (password_hash LIKE '$argon2id$%')
);
COMMENT ON TABLE auth.user_credentials IS
    'Login credentials of auth.users, keyed by the lower-cased e-mail address (auth-service).';
"#,
)];

/// Advisory lock key of the service's migrations ("authsvc1").
const LOCK: i64 = 0x6175_7468_7376_6331;

/// What [`migrate`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Migrations of the crate applied now.
    pub crate_applied: usize,
    /// Migrations of the service applied now.
    pub service_applied: Vec<i32>,
}

/// Migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The crate's migrations failed.
    #[error("session schema migration failed")]
    Sessions(#[source] auth_sessions::Error),
    /// The service's migrations failed.
    #[error("service schema migration failed")]
    Service(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Applies the crate's migrations, then the service's pending ones.
pub async fn migrate(pool: &Pool) -> Result<Report, MigrateError> {
    let sessions = auth_sessions::migrate(pool)
        .await
        .map_err(MigrateError::Sessions)?;
    let service = migrate_service(pool).await.map_err(MigrateError::Service)?;
    for version in &service {
        tracing::info!(version, "applied service migration");
    }
    Ok(Report {
        crate_applied: sessions.applied.len(),
        service_applied: service,
    })
}

async fn migrate_service(
    pool: &Pool,
) -> Result<Vec<i32>, Box<dyn std::error::Error + Send + Sync>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.query("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS auth.service_migrations (
             version    integer     NOT NULL,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now(),
             CONSTRAINT service_migrations_pkey PRIMARY KEY (version)
         )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM auth.service_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut now = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|err| format!("migration {version} ({name}): {}", ErrorChain(&err)))?;
        tx.query(
            "INSERT INTO auth.service_migrations (version, name) VALUES ($1, $2) RETURNING version",
            &[version, name],
        )
        .await?;
        now.push(*version);
    }
    tx.commit().await?;
    Ok(now)
}
