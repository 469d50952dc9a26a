//! `SessionRepo` as the sections measure it: pools of a given size, the benchmark's policy,
//! warmed connections, and the calls the sections time on it (the counterparts of `hand`'s).

use std::sync::Arc;

use auth_sessions::{
    NewSession, PoolSettings, RefreshToken, Rotation, SessionKey, SessionPolicy, SessionRepo,
    build_pool_with_config,
};
use tokio_postgres::Config;
use uuid::Uuid;

use crate::BoxError;
use crate::callers::{Chain, Revocations, Shared, presented};
use crate::data::{DAY, bench_key};

pub(crate) fn repo_for(
    config: &Config,
    size: usize,
    policy: SessionPolicy,
) -> Result<SessionRepo, BoxError> {
    let pool = build_pool_with_config(config.clone(), &PoolSettings::default().max_size(size))?;
    Ok(SessionRepo::with_policy(pool, policy)?)
}

pub(crate) fn ops_policy() -> SessionPolicy {
    SessionPolicy::default().rotation_key(bench_key())
}

pub(crate) async fn warm(
    repo: &SessionRepo,
    size: usize,
    tokens: &Arc<Vec<RefreshToken>>,
) -> Result<(), BoxError> {
    // Open every connection and prepare the lookup on each.
    let calls = (0..size).map(|i| {
        let (repo, tokens) = (repo.clone(), tokens.clone());
        async move { repo.find_by_token(tokens[i].expose_secret()).await }
    });
    for result in futures::future::join_all(calls).await {
        result?;
    }
    Ok(())
}

/// Rotates the next session of `chain` with `repo` and keeps its new token.
pub(crate) async fn rotate_next(repo: &SessionRepo, chain: &Shared<Chain>) -> Result<(), BoxError> {
    let (i, current) = Chain::take(chain);
    let rotation = repo.rotate(&current).await?;
    let Rotation::Rotated { token, .. } = rotation else {
        return Err(format!("rotation failed: {rotation:?}").into());
    };
    Chain::put(chain, i, token.expose_secret().to_owned());
    Ok(())
}

/// `find_by_token` of a token picked by `seed`, which must be found.
pub(crate) async fn lookup(repo: SessionRepo, tokens: Arc<Vec<RefreshToken>>, seed: u64) {
    let found = repo
        .find_by_token(presented(&tokens, seed))
        .await
        .expect("lookup");
    assert!(found.is_some());
}

/// `create` for `user`, with the device details `hand::create` binds.
pub(crate) async fn create(repo: SessionRepo, user: Uuid) {
    let new = NewSession::new(user, DAY)
        .with_device_info("bench device")
        .with_ip_address("192.0.2.1".parse().expect("ip"))
        .with_user_agent("Bench/1.0");
    repo.create(&new).await.expect("create");
}

/// `rotate` of the chain's next session.
pub(crate) async fn rotate(repo: SessionRepo, chain: Shared<Chain>) {
    rotate_next(&repo, &chain).await.expect("rotate");
}

/// `record_activity` on a live session, throttled as the repository's policy says.
pub(crate) async fn activity(repo: SessionRepo, key: SessionKey) {
    repo.record_activity(key, None)
        .await
        .expect("activity")
        .expect("live");
}

/// `list_devices` of `user`.
pub(crate) async fn list(repo: SessionRepo, user: Uuid) {
    std::hint::black_box(repo.list_devices(user).await.expect("list"));
}

/// `count_live` of `user`.
pub(crate) async fn count(repo: SessionRepo, user: Uuid) {
    std::hint::black_box(repo.count_live(user).await.expect("count"));
}

/// `revoke` of the next live session of `list`.
pub(crate) async fn revoke(repo: SessionRepo, list: Revocations) {
    assert!(repo.revoke(list.next()).await.expect("revoke"));
}
