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
        .query_one("SELECT count(*) FROM public.auth_sessions_migrations", &[])
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
            "UPDATE public.auth_sessions_migrations SET checksum = 'edited' WHERE version = 9",
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
