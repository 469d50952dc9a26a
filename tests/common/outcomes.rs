//! Outcomes the tests assert on again and again: a rotation that must succeed, a presented
//! token that must be unknown and change nothing, and the snapshot of every session row that
//! proves "nothing".
//!
//! It needs only the library and a plain connection, so the Citus tests include it with
//! `#[path]` as well as the tests on per-test databases.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use auth_sessions::{RefreshToken, Rotation, SessionRepo, Validation};
use tokio_postgres::Client;

/// Every row of `auth.user_sessions`, every column, as text: to prove a call changed nothing.
pub async fn all_rows(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT s::text FROM auth.user_sessions s ORDER BY user_id, id",
            &[],
        )
        .await
        .expect("read all rows")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The successor of `token`, which must rotate.
pub async fn rotated(repo: &SessionRepo, token: &RefreshToken) -> RefreshToken {
    match repo.rotate(token.expose_secret()).await.unwrap() {
        Rotation::Rotated { token, .. } => token,
        other => panic!("expected Rotated, got {other:?}"),
    }
}

/// The repository finds nothing for `presented`, validation and rotation call it unknown, and
/// no row changes (read through `client`).
pub async fn assert_unknown_and_inert(
    client: &Client,
    repo: &SessionRepo,
    presented: &str,
    what: &str,
) {
    let before = all_rows(client).await;
    assert_eq!(
        repo.find_by_token(presented).await.unwrap(),
        None,
        "find_by_token: {what}"
    );
    assert_eq!(
        repo.validate(presented).await.unwrap(),
        Validation::Unknown,
        "validate: {what}"
    );
    assert_eq!(
        repo.rotate(presented).await.unwrap(),
        Rotation::Unknown,
        "rotate: {what}"
    );
    assert_eq!(all_rows(client).await, before, "rows changed: {what}");
}
