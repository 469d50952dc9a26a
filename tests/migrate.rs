//! The migration runner: idempotent, safe when several processes start at once, and strict about
//! migrations edited after they were applied.

mod common;

use auth_sessions::{Error, MIGRATIONS, migrate};
use common::EmptyDb;

#[tokio::test]
async fn migrating_twice_applies_once() {
    let db = EmptyDb::new("twice").await;
    let pool = db.pool();
    let first = migrate(&pool).await.unwrap();
    assert_eq!(first.applied, MIGRATIONS);
    assert!(first.already_applied.is_empty());
    let second = migrate(&pool).await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, MIGRATIONS);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn concurrent_runs_apply_each_migration_exactly_once() {
    let db = EmptyDb::new("concurrent").await;
    let pools: Vec<_> = (0..6).map(|_| db.pool()).collect();
    let runs = futures::future::join_all(pools.iter().map(migrate)).await;
    let mut applied = 0;
    for run in runs {
        applied += run.unwrap().applied.len();
    }
    assert_eq!(
        applied,
        MIGRATIONS.len(),
        "each migration applied by exactly one runner"
    );
    let client = pools[0].get().await.unwrap();
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM auth.session_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, MIGRATIONS.len() as i64);
    drop(client);
    for pool in pools {
        pool.close();
    }
    db.drop_now().await;
}

#[tokio::test]
async fn an_applied_migration_that_changed_is_refused() {
    let db = EmptyDb::new("changed").await;
    let pool = db.pool();
    migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();
    client
        .execute(
            "UPDATE auth.session_migrations SET checksum = 'edited' WHERE version = 9",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let err = migrate(&pool).await.unwrap_err();
    assert!(
        matches!(err, Error::MigrationChanged { version: 9 }),
        "{err:?}"
    );
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn the_migrated_schema_keys_sessions_by_user_and_keeps_no_token_history() {
    let db = EmptyDb::new("shape").await;
    let pool = db.pool();
    migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();
    let text_rows = async |sql: &str| -> Vec<String> {
        client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };

    // One session table, the rotation key and the migration bookkeeping; the rotation history
    // table of the previous design is gone.
    assert_eq!(
        text_rows(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'auth' ORDER BY 1"
        )
        .await,
        [
            "rotation_keys",
            "session_migrations",
            "user_sessions",
            "users"
        ]
    );
    // Primary key (user_id, id): the ids a refresh token carries, the routing key first.
    assert_eq!(
        text_rows(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'auth.user_sessions'::regclass AND contype = 'p'"
        )
        .await,
        ["PRIMARY KEY (user_id, id)"]
    );
    // No index on the token hash (lookups go by primary key and compare it), a partial index
    // of live rows per user, and the two cleanup indexes.
    assert_eq!(
        text_rows(
            "SELECT indexdef FROM pg_indexes \
             WHERE schemaname = 'auth' AND tablename = 'user_sessions' ORDER BY indexname"
        )
        .await,
        [
            "CREATE INDEX user_sessions_expires_at_idx ON auth.user_sessions \
             USING btree (expires_at)",
            "CREATE INDEX user_sessions_live_user_id_idx ON auth.user_sessions \
             USING btree (user_id, expires_at) WHERE (revoked_at IS NULL)",
            "CREATE UNIQUE INDEX user_sessions_pkey ON auth.user_sessions \
             USING btree (user_id, id)",
            "CREATE INDEX user_sessions_revoked_at_idx ON auth.user_sessions \
             USING btree (revoked_at) WHERE (revoked_at IS NOT NULL)",
        ]
    );
    // The generation of the current token, from 0.
    assert_eq!(
        text_rows(
            "SELECT format('%s %s %s', data_type, is_nullable, column_default) \
             FROM information_schema.columns \
             WHERE table_schema = 'auth' AND table_name = 'user_sessions' \
               AND column_name = 'generation'"
        )
        .await,
        ["integer NO 0"]
    );
    assert_eq!(
        text_rows(
            "SELECT unnest(reloptions) FROM pg_class \
             WHERE oid = 'auth.user_sessions'::regclass"
        )
        .await,
        ["fillfactor=80"]
    );
    drop(client);
    pool.close();
    db.drop_now().await;
}

/// The service owns its users: an `auth.users` it created, with more columns and keys of its
/// own, is used as it is, and the migrations neither fail on it nor change it.
#[tokio::test]
async fn an_existing_user_table_of_the_service_is_used_and_left_alone() {
    let db = EmptyDb::new("service_users").await;
    let pool = db.pool();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA auth;
             CREATE TABLE auth.users (
                 id            uuid PRIMARY KEY,
                 login         text NOT NULL UNIQUE,
                 password_hash text NOT NULL,
                 disabled      boolean NOT NULL DEFAULT false
             );
             COMMENT ON TABLE auth.users IS 'The service''s accounts.';
             INSERT INTO auth.users (id, login, password_hash)
             VALUES ('6f1c2a4e-0d55-4b8e-9a59-2f0c7c1e3b11', 'ada', 'argon2id$...');",
        )
        .await
        .unwrap();
    let shape =
        "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position),
                        obj_description('auth.users'::regclass, 'pg_class'),
                        (SELECT string_agg(conname, ', ' ORDER BY conname) FROM pg_constraint
                         WHERE conrelid = 'auth.users'::regclass)
                 FROM information_schema.columns
                 WHERE table_schema = 'auth' AND table_name = 'users'";
    let before = client.query_one(shape, &[]).await.unwrap();
    let before: (String, String, String) = (before.get(0), before.get(1), before.get(2));

    let report = migrate(&pool)
        .await
        .expect("migrations run beside the service's table");
    assert_eq!(report.applied.len(), MIGRATIONS.len());
    let after = client.query_one(shape, &[]).await.unwrap();
    assert_eq!(before, (after.get(0), after.get(1), after.get(2)));

    // And sessions work against it.
    let repo = auth_sessions::SessionRepo::new(pool.clone());
    let user: uuid::Uuid = "6f1c2a4e-0d55-4b8e-9a59-2f0c7c1e3b11".parse().unwrap();
    let (session, token) = repo
        .create(&auth_sessions::NewSession::new(
            user,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert_eq!(
        repo.find_by_token(token.expose_secret())
            .await
            .unwrap()
            .map(|s| s.id),
        Some(session.id)
    );
    drop(client);
    pool.close();
    db.drop_now().await;
}

/// A least-privilege deployment: the service's role is no superuser, owns schema `auth` and
/// nothing else, and may not create in `public` (PostgreSQL 15's default, made explicit here
/// for older servers). It migrates, and the sessions work; nothing lands in `public`.
#[tokio::test]
async fn a_role_owning_only_schema_auth_migrates() {
    let db = EmptyDb::new("least_privilege").await;
    let role = format!("auth_sessions_owner_{}", common::run_tag());
    // A server that asks for passwords (the tests' throwaway one) gets one.
    let password = uuid::Uuid::new_v4().simple().to_string();
    let admin = common::admin().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'"
        ))
        .await
        .unwrap();
    let superuser = db.pool();
    superuser
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             REVOKE CREATE ON DATABASE {db} FROM PUBLIC;
             CREATE SCHEMA auth AUTHORIZATION {role};",
            db = db.name
        ))
        .await
        .unwrap();

    let pool = common::pool_for(
        common::server_config()
            .dbname(&db.name)
            .user(&role)
            .password(&password)
            .clone(),
        &auth_sessions::PoolSettings::default(),
    );
    let outcome = migrate(&pool).await;
    let report = outcome.expect("the owner of schema auth migrates");
    assert_eq!(report.applied, MIGRATIONS);
    assert!(
        migrate(&pool).await.unwrap().applied.is_empty(),
        "and finds the work done the second time"
    );
    let statuses = auth_sessions::migration_status(&pool).await.unwrap();
    assert!(statuses.iter().all(|status| status.applied_at.is_some()));

    let client = superuser.get().await.unwrap();
    let in_public: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_public, 0, "nothing created in public");
    let user: uuid::Uuid = client
        .query_one("INSERT INTO auth.users DEFAULT VALUES RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);

    let repo = auth_sessions::SessionRepo::new(pool.clone());
    let (session, token) = repo
        .create(&auth_sessions::NewSession::new(
            user,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert!(matches!(
        repo.rotate(token.expose_secret()).await.unwrap(),
        auth_sessions::Rotation::Rotated { .. }
    ));
    assert_eq!(repo.revoke_all(user).await.unwrap(), 1);
    assert_eq!(repo.count_live(session.user_id).await.unwrap(), 0);

    pool.close();
    superuser.close();
    db.drop_now().await;
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}
