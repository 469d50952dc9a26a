//! Applies the migrations of `schema/`, embedded in the binary.
//!
//! Applied migrations are recorded in `auth.session_migrations` with a SHA-256 of their text
//! (line endings normalised, so a CRLF checkout records the same migration). The bookkeeping
//! lives in schema `auth`, beside the tables it describes: PostgreSQL 15 lets only the database
//! owner create in `public`, and a least-privilege role that owns schema `auth` must be able to
//! migrate. A run takes a transaction-scoped advisory lock first, so two processes starting at once
//! apply each migration exactly once; the second waits, then finds nothing to do. All pending
//! migrations apply in one transaction: a failure leaves the database as it was. The pool's
//! `statement_timeout` does not apply to that transaction, nor `lock_timeout` to the wait for
//! the advisory lock.
//!
//! Hand-written rather than refinery: refinery requires `V1__name.sql` file names, while this
//! project numbers its migrations `001_name.sql`, and the whole runner is one transaction.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use crate::Error;

/// One migration of `schema/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The number its file name starts with.
    pub version: u32,
    /// Its file name, without the number and extension.
    pub name: &'static str,
    /// Its SQL text.
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the text with CRLF line endings read as LF: the same migration checked out
    /// on Windows (or through a `core.autocrlf` setting) keeps its checksum.
    fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.replace("\r\n", "\n").as_bytes()))
    }
}

/// Every migration of `schema/`, in order. A test checks this list against the directory.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../schema/001_foundation.sql"),
    },
    Migration {
        version: 9,
        name: "user_sessions",
        sql: include_str!("../schema/009_user_sessions.sql"),
    },
    Migration {
        version: 10,
        name: "session_lifecycle",
        sql: include_str!("../schema/010_session_lifecycle.sql"),
    },
    Migration {
        version: 11,
        name: "rotation_key",
        sql: include_str!("../schema/011_rotation_key.sql"),
    },
    Migration {
        version: 14,
        name: "plan_cache_mode",
        sql: include_str!("../schema/014_plan_cache_mode.sql"),
    },
    Migration {
        version: 15,
        name: "session_end_notify",
        sql: include_str!("../schema/015_session_end_notify.sql"),
    },
];

/// Key of the advisory lock that serializes migration runs (an arbitrary constant).
const LOCK_KEY: i64 = 0x6175_7468_7365_7373; // "authsess"

/// What a migration run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Migrations applied by this run, in order.
    pub applied: Vec<Migration>,
    /// Migrations found already applied.
    pub already_applied: Vec<Migration>,
}

/// Applies every pending migration, in order, in one transaction.
///
/// # Errors
///
/// [`Error::MigrationChanged`] when an applied migration's text differs from the embedded one;
/// database and pool errors otherwise. Nothing is applied when it fails.
pub async fn migrate(pool: &Pool) -> Result<MigrationReport, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The pool's statement_timeout (PoolSettings::statement_timeout) is meant for the
    // repository's statements: it would cut off both the wait for another instance's
    // migration and long DDL, so it is off for this transaction. So is lock_timeout while
    // waiting for the advisory lock (waiting is how a second instance finds the work done);
    // the DDL then runs under the session's own lock_timeout again, so a deployment that set
    // one to avoid queueing behind long transactions keeps that protection (a migration that
    // hits it rolls back whole, with SQLSTATE 55P03, and can be retried).
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = 0; \
         SET LOCAL lock_timeout = 0; \
         SELECT pg_advisory_xact_lock({LOCK_KEY}); \
         SET LOCAL lock_timeout TO DEFAULT"
    ))
    .await?;
    // Conditional rather than `CREATE SCHEMA IF NOT EXISTS`, which demands CREATE on the
    // database even when the schema exists (a role owning only `auth` lacks it).
    tx.batch_execute(
        "DO $$
         BEGIN
             IF to_regnamespace('auth') IS NULL THEN
                 CREATE SCHEMA auth;
             END IF;
         END
         $$;
         CREATE TABLE IF NOT EXISTS auth.session_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             checksum   text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let rows = tx
        .query("SELECT version, checksum FROM auth.session_migrations", &[])
        .await?;
    let mut report = MigrationReport::default();
    for migration in MIGRATIONS {
        let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
        let recorded = rows.iter().find(|row| row.get::<_, i32>(0) == version);
        match recorded {
            Some(row) if row.get::<_, &str>(1) == migration.checksum() => {
                report.already_applied.push(*migration);
            }
            Some(_) => {
                return Err(Error::MigrationChanged {
                    version: migration.version,
                });
            }
            None => {
                tx.batch_execute(migration.sql).await?;
                tx.execute(
                    "INSERT INTO auth.session_migrations (version, name, checksum) \
                     VALUES ($1, $2, $3)",
                    &[&version, &migration.name, &migration.checksum()],
                )
                .await?;
                report.applied.push(*migration);
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// Whether one embedded migration is applied to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The migration.
    pub migration: Migration,
    /// When it was applied, or `None` while pending.
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Lists every embedded migration with the time it was applied, if it was. Changes nothing.
///
/// # Errors
///
/// [`Error::MigrationChanged`] when an applied migration's text differs from the embedded one;
/// pool and database errors.
pub async fn migration_status(pool: &Pool) -> Result<Vec<MigrationStatus>, Error> {
    let client = pool.get().await?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('auth.session_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    let rows = if exists {
        client
            .query(
                "SELECT version, checksum, applied_at FROM auth.session_migrations",
                &[],
            )
            .await?
    } else {
        Vec::new()
    };
    MIGRATIONS
        .iter()
        .map(|migration| {
            let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
            let row = rows.iter().find(|row| row.get::<_, i32>(0) == version);
            match row {
                Some(row) if row.get::<_, &str>(1) != migration.checksum() => {
                    Err(Error::MigrationChanged {
                        version: migration.version,
                    })
                }
                _ => Ok(MigrationStatus {
                    migration: *migration,
                    applied_at: row.map(|r| r.get(2)),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crlf_checkout_keeps_each_checksum() {
        for migration in MIGRATIONS {
            let crlf = migration.sql.replace("\r\n", "\n").replace('\n', "\r\n");
            let checked_out = Migration {
                sql: Box::leak(crlf.into_boxed_str()),
                ..*migration
            };
            assert_ne!(checked_out.sql, migration.sql);
            assert_eq!(checked_out.checksum(), migration.checksum());
        }
        let edited = Migration {
            sql: "SELECT 2;\r\n",
            ..MIGRATIONS[0]
        };
        let original = Migration {
            sql: "SELECT 1;\n",
            ..MIGRATIONS[0]
        };
        assert_ne!(edited.checksum(), original.checksum());
    }

    #[test]
    fn embedded_list_matches_the_schema_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:03}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(embedded, on_disk);
        for (migration, name) in MIGRATIONS.iter().zip(&on_disk) {
            let text = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("schema")
                    .join(name),
            )
            .unwrap();
            assert_eq!(migration.sql, text);
        }
    }
}
