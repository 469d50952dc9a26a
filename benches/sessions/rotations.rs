//! Section 4: rotations per second at 1 and 8 callers, each rotating its own sessions.

use std::sync::Arc;

use auth_sessions::{Rotation, SessionRepo};
use tokio_postgres::Config;

use crate::BoxError;
use crate::args::Args;
use crate::callers::{Chain, Shared};
use crate::data::{Ops, ROTATION_SESSIONS_PER_CALLER, bench_key};
use crate::hand::{Hand, hand, hand_rotate, query_with};
use crate::measure::{compare, row};
use crate::repo::{ops_policy, repo_for};

pub(crate) async fn run(args: &Args, config: &Config, ops: &Ops) -> Result<(), BoxError> {
    println!(
        "## 4. Rotation: rotations/s, each caller rotating its own {ROTATION_SESSIONS_PER_CALLER} \
         sessions in turn\n"
    );
    println!("| callers | implementation | rotations/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let sql = query_with(
        "rotate_session",
        &[
            "user_id",
            "id",
            "generation",
            "presented_hash",
            "successor_hash",
            "idle_seconds",
            "grace_seconds",
        ],
    );
    let mut sessions = ops.rotate.chunks(ROTATION_SESSIONS_PER_CALLER);
    let key = Arc::new(bench_key());
    for callers in [1usize, 8] {
        let mut hand_states = Vec::new();
        for _ in 0..callers {
            hand_states.push((
                hand(config, &sql).await?,
                Chain::shared(sessions.next().expect("rotation sessions")),
            ));
        }
        let k = key.clone();
        let handwritten = (
            hand_states,
            move |(h, chain): (Arc<Hand>, Shared<Chain>), _| {
                let key = k.clone();
                async move { hand_rotate(&h, &chain, &key).await }
            },
        );
        let repo = repo_for(config, callers, ops_policy())?;
        let ours_states: Vec<_> = (0..callers)
            .map(|_| {
                (
                    repo.clone(),
                    Chain::shared(sessions.next().expect("rotation sessions")),
                )
            })
            .collect();
        let ours = (
            ours_states,
            |(repo, chain): (SessionRepo, Shared<Chain>), _| async move {
                let (i, current) = Chain::take(&chain);
                let rotation = repo.rotate(&current).await.expect("rotate");
                let Rotation::Rotated { token, .. } = rotation else {
                    panic!("rotation failed: {rotation:?}")
                };
                Chain::put(&chain, i, token.expose_secret().to_owned());
            },
        );
        let (handwritten, ours) = compare(args.seconds, handwritten, ours).await;
        repo.pool().close();
        println!(
            "{}",
            row(
                &format!("{callers} | hand-written tokio-postgres"),
                &handwritten,
                None
            )
        );
        println!(
            "{}",
            row(
                &format!("{callers} | SessionRepo::rotate"),
                &ours,
                Some(&handwritten)
            )
        );
    }
    println!();
    Ok(())
}
