//! The `SessionRepo` API a request uses, on a Citus cluster (distributed PostgreSQL): create,
//! find, list, activity, tampered tokens, rotation with grace and replay, concurrent rotations,
//! the per-user cap, the error variants and revocation.
//!
//! Ignored by default: these tests need a Citus coordinator, which the normal suite's
//! per-test databases cannot provide (Citus does not propagate `CREATE DATABASE`). Create one
//! database by hand with the `citus` extension in it on the coordinator and on every worker,
//! and the workers added (`citus_add_node`), then run every Citus file (`tests/citus_*.rs`)
//!
//! ```text
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/<db> \
//!     cargo test --test 'citus_*' -- --ignored --test-threads=1
//! ```
//!
//! or one of them with `--test citus_repo`. Every test migrates that database, distributes it with
//! 8 shards (both idempotent) and then EMPTIES `auth.users` and `auth.user_sessions`: point
//! CITUS_URL at a scratch database only. The tests serialize themselves on a lock, so they
//! never see each other's rows, and cargo runs one test file after another. The cluster handle
//! and its fixtures are in tests/common/citus.rs.
//!
//! Without CITUS_URL an ignored test run fails loudly rather than passing silently.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use auth_sessions::{
    CapPolicy, Error, RefreshToken, RevokeReason, Rotation, Session, SessionKey, SessionPolicy,
    Validation,
};
use tokio::sync::Barrier;
use uuid::Uuid;

#[path = "common/tokens.rs"]
mod tokens;

#[path = "common/citus.rs"]
mod cluster;
#[path = "common/outcomes.rs"]
mod outcomes;

use cluster::{Cluster, key, new_session};
use outcomes::{all_rows, assert_unknown_and_inert, rotated};
use tokens::with_other_user;

// ---------------------------------------------------------------------------------------------
// The repository over Citus
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_create_find_list_count_and_activity() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(6).await;
    let mut created: Vec<(Session, RefreshToken)> = Vec::new();
    for (n, &user) in users.iter().enumerate() {
        for device in ["phone", "laptop"] {
            let (session, token) = repo
                .create(&new_session(user, &format!("{device} {n}")))
                .await
                .expect("create on Citus");
            assert_eq!(session.user_id, user);
            assert_eq!(token.user_id(), user);
            assert_eq!(token.session_id(), session.id);
            assert_eq!(token.generation(), 0);
            created.push((session, token));
        }
    }
    for (session, token) in &created {
        let found = repo
            .find_by_token(token.expose_secret())
            .await
            .unwrap()
            .expect("find_by_token on Citus");
        assert_eq!(&found, session);
        assert_eq!(
            repo.validate(token.expose_secret()).await.unwrap(),
            Validation::Valid(session.clone())
        );
    }
    let nodes: BTreeSet<String> = {
        let mut nodes = BTreeSet::new();
        for &user in &users {
            nodes.insert(cluster.node_of(user).await);
            // The rows are in the user's shard on its worker, read there directly.
            assert_eq!(cluster.rows_in_shard(user).await, 2);
        }
        nodes
    };
    eprintln!("{} users' sessions on workers {nodes:?}", users.len());

    for &user in &users {
        let devices = repo.list_devices(user).await.unwrap();
        assert_eq!(devices.len(), 2);
        assert!(devices[0].last_active_at >= devices[1].last_active_at);
        let listed: BTreeSet<Uuid> = devices.iter().map(|d| d.id).collect();
        let expected: BTreeSet<Uuid> = created
            .iter()
            .filter(|(s, _)| s.user_id == user)
            .map(|(s, _)| s.id)
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(repo.count_live(user).await.unwrap(), 2);
    }
    assert!(repo.list_devices(Uuid::new_v4()).await.unwrap().is_empty());
    assert_eq!(repo.count_live(Uuid::new_v4()).await.unwrap(), 0);

    // Activity: within the interval only a new address writes.
    let (session, _) = &created[0];
    let moved = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let first = repo
        .record_activity(session.key(), Some(moved))
        .await
        .unwrap()
        .expect("live session");
    assert!(first.written, "a new address is written");
    assert!(first.last_active_at >= session.last_active_at);
    let again = repo
        .record_activity(session.key(), Some(moved))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !again.written,
        "same address within the interval writes nothing"
    );
    assert_eq!(again.last_active_at, first.last_active_at);
    let device = repo
        .list_devices(session.user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == session.id)
        .unwrap();
    assert_eq!(device.ip_address, Some(moved));
    assert_eq!(device.last_active_at, first.last_active_at);
    let eager = cluster.repo_with(SessionPolicy::default().activity_interval(Duration::ZERO));
    let written = eager
        .record_activity(session.key(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(written.written && written.last_active_at > first.last_active_at);
    assert_eq!(
        repo.record_activity(SessionKey::new(session.user_id, Uuid::new_v4()), None)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_a_token_with_a_tampered_user_id_is_unknown_and_changes_nothing() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let victim = cluster.user().await;
    let (victim_session, victim_token) = repo.create(&new_session(victim, "victim")).await.unwrap();
    // Another existing user, on another worker where there is one, with a session of its own.
    let mut other = cluster.user().await;
    for _ in 0..100 {
        if cluster.node_of(other).await != cluster.node_of(victim).await {
            break;
        }
        other = cluster.user().await;
    }
    repo.create(&new_session(other, "other")).await.unwrap();
    // The attacker's own session, whose token is re-encoded to claim the victim's id...
    let (_, attacker_token) = repo.create(&new_session(other, "attacker")).await.unwrap();
    let claims_victim = with_other_user(&attacker_token, victim);
    // ...and the victim's token re-encoded to another user, existing or not.
    let moved_to_other = with_other_user(&victim_token, other);
    let moved_to_nobody = with_other_user(&victim_token, Uuid::new_v4());
    for (presented, what) in [
        (
            &claims_victim,
            "attacker token claiming the victim's user id",
        ),
        (
            &moved_to_other,
            "victim token moved to another existing user",
        ),
        (&moved_to_nobody, "victim token moved to an unknown user"),
    ] {
        assert_unknown_and_inert(&cluster.client().await, &repo, presented, what).await;
    }
    // The genuine token still works.
    assert_eq!(
        repo.find_by_token(victim_token.expose_secret())
            .await
            .unwrap(),
        Some(victim_session)
    );
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_rotation_grace_replay_and_stale_ancestors() {
    let cluster = Cluster::new().await;
    let graceful = cluster.repo_with(SessionPolicy::default().rotation_key(key()));
    let strict = cluster.repo_with(
        SessionPolicy::default()
            .rotation_key(key())
            .rotation_grace(Duration::ZERO),
    );
    let user = cluster.user().await;

    // Rotate, then present the replaced token: within the grace window it gets the same
    // successor, after it (strict: no window) the session is revoked.
    let (session, t0) = graceful.create(&new_session(user, "phone")).await.unwrap();
    let t1 = match graceful.rotate(t0.expose_secret()).await.unwrap() {
        Rotation::Rotated { session: s, token } => {
            assert_eq!(s.id, session.id);
            assert!(s.last_active_at >= session.last_active_at);
            token
        }
        other => panic!("expected Rotated, got {other:?}"),
    };
    assert_eq!(t1.generation(), 1);
    assert_eq!(t1.session_key(), t0.session_key());
    assert_eq!(
        graceful.find_by_token(t0.expose_secret()).await.unwrap(),
        None
    );
    assert!(
        graceful
            .find_by_token(t1.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        rotated(&graceful, &t0).await,
        t1,
        "grace: the same successor"
    );
    assert!(matches!(
        graceful.validate(t0.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
    assert_eq!(
        strict.rotate(t0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: session.id,
            user_id: user
        }
    );
    assert_eq!(
        graceful.validate(t1.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::TokenReused)
    );
    assert_eq!(
        graceful.rotate(t1.expose_secret()).await.unwrap(),
        Rotation::Revoked(RevokeReason::TokenReused)
    );
    assert_eq!(
        graceful.find_by_token(t1.expose_secret()).await.unwrap(),
        None
    );

    // An older ancestor: proven by its tag, and the same routed statement revokes the session.
    let (second, s0) = graceful.create(&new_session(user, "laptop")).await.unwrap();
    let s1 = rotated(&graceful, &s0).await;
    let s2 = rotated(&graceful, &s1).await;
    let s3 = rotated(&graceful, &s2).await;
    assert_eq!(s3.generation(), 3);
    assert_eq!(
        graceful.validate(s0.expose_secret()).await.unwrap(),
        Validation::TokenReused {
            session_id: second.id,
            user_id: user
        }
    );
    assert!(matches!(
        graceful.validate(s3.expose_secret()).await.unwrap(),
        Validation::Valid(_)
    ));
    assert_eq!(
        graceful.rotate(s0.expose_secret()).await.unwrap(),
        Rotation::TokenReused {
            session_id: second.id,
            user_id: user
        }
    );
    assert_eq!(
        graceful.validate(s3.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::TokenReused)
    );

    // A forged later token of a live session is unknown and changes nothing.
    let (_, f0) = graceful.create(&new_session(user, "tablet")).await.unwrap();
    let forged = tokens::forged(user, f0.session_id(), 5);
    let before = all_rows(&cluster.client().await).await;
    assert_eq!(graceful.rotate(&forged).await.unwrap(), Rotation::Unknown);
    assert_eq!(
        graceful.validate(&forged).await.unwrap(),
        Validation::Unknown
    );
    assert_eq!(all_rows(&cluster.client().await).await, before);
    assert!(
        graceful
            .find_by_token(f0.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_eight_concurrent_rotations_of_one_token_converge_on_one_successor() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo_with(SessionPolicy::default().rotation_key(key()));
    let user = cluster.user().await;
    let (session, token) = repo.create(&new_session(user, "phone")).await.unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let repo = repo.clone();
            let barrier = barrier.clone();
            let presented = token.expose_secret().to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                repo.rotate(&presented).await
            })
        })
        .collect();
    let mut successors = BTreeSet::new();
    for task in tasks {
        match task.await.unwrap().expect("rotate on Citus") {
            Rotation::Rotated { session: s, token } => {
                assert_eq!(s.id, session.id);
                assert_eq!(token.generation(), 1);
                successors.insert(token.expose_secret().to_owned());
            }
            other => panic!("expected Rotated for every concurrent caller, got {other:?}"),
        }
    }
    assert_eq!(
        successors.len(),
        1,
        "concurrent rotations forked the session"
    );
    let successor = successors.into_iter().next().unwrap();
    let generation = cluster
        .scalar(&format!(
            "SELECT generation::bigint FROM auth.user_sessions \
             WHERE user_id = '{user}' AND id = '{}'",
            session.id
        ))
        .await;
    assert_eq!(generation, 1, "exactly one rotation was written");
    assert!(repo.find_by_token(&successor).await.unwrap().is_some());
    assert_eq!(
        repo.find_by_token(token.expose_secret()).await.unwrap(),
        None
    );
    let next = rotated(&repo, &RefreshToken::parse(&successor).unwrap()).await;
    assert_eq!(next.generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_per_user_cap_refuses_and_evicts() {
    let cluster = Cluster::new().await;
    let refuse = cluster
        .repo_with(SessionPolicy::default().max_sessions_per_user(Some(3), CapPolicy::Refuse));
    let evict = cluster.repo_with(
        SessionPolicy::default()
            .max_sessions_per_user(Some(3), CapPolicy::EvictLeastRecentlyActive),
    );

    // Refuse: the fourth login fails with the cap's own error, and writes nothing.
    let user = cluster.user().await;
    for n in 0..3 {
        refuse
            .create(&new_session(user, &format!("device {n}")))
            .await
            .unwrap();
    }
    match refuse.create(&new_session(user, "one too many")).await {
        Err(Error::SessionCapReached) => {}
        other => panic!("expected SessionCapReached on Citus, got {other:?}"),
    }
    assert_eq!(refuse.count_live(user).await.unwrap(), 3);
    assert_eq!(cluster.rows_in_shard(user).await, 3);

    // Evict: the fourth login revokes the least recently active session.
    let user = cluster.user().await;
    let mut tokens = Vec::new();
    for n in 0..3 {
        tokens.push(
            evict
                .create(&new_session(user, &format!("device {n}")))
                .await
                .unwrap()
                .1,
        );
    }
    evict.create(&new_session(user, "newest")).await.unwrap();
    assert_eq!(evict.count_live(user).await.unwrap(), 3);
    assert_eq!(
        evict.validate(tokens[0].expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::Evicted)
    );
    assert!(
        evict
            .find_by_token(tokens[1].expose_secret())
            .await
            .unwrap()
            .is_some()
    );

    // Concurrent logins of one user: the cap holds (the user's row serializes them).
    let user = cluster.user().await;
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let repo = refuse.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                repo.create(&new_session(user, &format!("racer {n}"))).await
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(Error::SessionCapReached) => refused += 1,
            Err(other) => panic!("unexpected error under concurrent logins: {other:?}"),
        }
    }
    assert_eq!((created, refused), (3, 5));
    assert_eq!(refuse.count_live(user).await.unwrap(), 3);

    let user = cluster.user().await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let repo = evict.clone();
            tokio::spawn(
                async move { repo.create(&new_session(user, &format!("racer {n}"))).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("evicting logins all succeed");
    }
    assert_eq!(evict.count_live(user).await.unwrap(), 3);
    assert_eq!(cluster.rows_in_shard(user).await, 8);
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_unknown_user_and_duplicate_session_are_their_own_errors() {
    let cluster = Cluster::new().await;
    let nobody = Uuid::new_v4();
    for (policy, what) in [
        (SessionPolicy::default(), "with the default cap"),
        (
            SessionPolicy::default().max_sessions_per_user(None, CapPolicy::Refuse),
            "without a cap",
        ),
        (
            SessionPolicy::default().max_sessions_per_user(Some(3), CapPolicy::Refuse),
            "with a refusing cap",
        ),
    ] {
        match cluster
            .repo_with(policy)
            .create(&new_session(nobody, "ghost"))
            .await
        {
            Err(Error::UnknownUser) => {}
            other => panic!("expected UnknownUser {what} on Citus, got {other:?}"),
        }
    }
    assert_eq!(
        cluster
            .scalar("SELECT count(*) FROM auth.user_sessions")
            .await,
        0
    );

    let repo = cluster.repo();
    let user = cluster.user().await;
    let token = repo.mint_token(user).await.unwrap();
    repo.create_with_token(&new_session(user, "first"), &token)
        .await
        .unwrap();
    match repo
        .create_with_token(&new_session(user, "again"), &token)
        .await
    {
        Err(Error::DuplicateSession) => {}
        other => panic!("expected DuplicateSession on Citus, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs a Citus coordinator: set CITUS_URL"]
async fn citus_revoke_revoke_all_except_and_revoke_all() {
    let cluster = Cluster::new().await;
    let repo = cluster.repo();
    let users = cluster.users_on_every_worker(2).await;
    let (a, b) = (users[0], users[users.len() - 1]);
    let mut mine = Vec::new();
    for n in 0..4 {
        mine.push(
            repo.create(&new_session(a, &format!("a{n}")))
                .await
                .unwrap(),
        );
    }
    let (b_session, _) = repo.create(&new_session(b, "b0")).await.unwrap();
    repo.create(&new_session(b, "b1")).await.unwrap();

    let (s0, t0) = &mine[0];
    assert!(repo.revoke(s0.key()).await.unwrap());
    assert!(!repo.revoke(s0.key()).await.unwrap(), "already revoked");
    assert!(
        !repo.revoke(SessionKey::new(a, b_session.id)).await.unwrap(),
        "another user's session id under my user id matches nothing"
    );
    assert_eq!(
        repo.validate(t0.expose_secret()).await.unwrap(),
        Validation::Revoked(RevokeReason::User)
    );
    assert_eq!(repo.find_by_token(t0.expose_secret()).await.unwrap(), None);
    assert_eq!(repo.count_live(a).await.unwrap(), 3);

    // A session to keep that is not an unrevoked session of the user revokes nothing: another
    // user's session, a revoked one, an unknown one.
    for keep in [
        SessionKey::new(a, b_session.id),
        s0.key(),
        SessionKey::new(a, Uuid::new_v4()),
    ] {
        assert_eq!(repo.revoke_all_except(keep).await.unwrap(), None);
    }
    assert_eq!(repo.count_live(a).await.unwrap(), 3);

    let current = mine[1].0.key();
    assert_eq!(repo.revoke_all_except(current).await.unwrap(), Some(2));
    let devices = repo.list_devices(a).await.unwrap();
    assert_eq!(
        devices.iter().map(|d| d.id).collect::<Vec<_>>(),
        [current.session_id]
    );
    assert_eq!(repo.revoke_all_except(current).await.unwrap(), Some(0));
    assert_eq!(repo.revoke_all(a).await.unwrap(), 1);
    assert_eq!(repo.count_live(a).await.unwrap(), 0);
    assert_eq!(repo.revoke_all(a).await.unwrap(), 0);
    // The other user, maybe on another worker, is untouched.
    assert_eq!(repo.count_live(b).await.unwrap(), 2);
    assert_eq!(repo.revoke_all(b).await.unwrap(), 2);
    // Tombstones stay until cleanup.
    assert_eq!(cluster.rows_in_shard(a).await, 4);

    // Deleting a user cascades to its sessions, inside its shard.
    cluster
        .pool
        .get()
        .await
        .unwrap()
        .execute("DELETE FROM auth.users WHERE id = $1", &[&a])
        .await
        .unwrap();
    assert_eq!(cluster.rows_in_shard(a).await, 0);
}
