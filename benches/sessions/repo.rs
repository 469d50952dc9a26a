//! `SessionRepo` as the sections measure it: pools of a given size, the benchmark's policy,
//! warmed connections.

use std::sync::Arc;

use auth_sessions::{
    PoolSettings, RefreshToken, Rotation, SessionPolicy, SessionRepo, build_pool_with_config,
};
use tokio_postgres::Config;

use crate::BoxError;
use crate::callers::{Chain, Shared};
use crate::data::bench_key;

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
    let Rotation::Rotated { token, .. } = repo.rotate(&current).await? else {
        return Err("rotation failed".into());
    };
    Chain::put(chain, i, token.expose_secret().to_owned());
    Ok(())
}
