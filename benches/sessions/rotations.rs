//! Section 4: rotations per second at 1 and 8 callers, each rotating its own sessions.

use std::sync::Arc;

use tokio_postgres::Config;

use crate::BoxError;
use crate::args::Args;
use crate::callers::Chain;
use crate::data::{Ops, ROTATION_SESSIONS_PER_CALLER, bench_key};
use crate::hand::{self, Hand, Query};
use crate::measure::{compare, row};
use crate::repo::{self, ops_policy, repo_for};

pub(crate) async fn run(args: &Args, config: &Config, ops: &Ops) -> Result<(), BoxError> {
    println!(
        "## 4. Rotation: rotations/s, each caller rotating its own {ROTATION_SESSIONS_PER_CALLER} \
         sessions in turn\n"
    );
    println!("| callers | implementation | rotations/s | p50 ms | p99 ms | throughput ratio |");
    println!("|---|---|---|---|---|---|");
    let mut sessions = ops.rotate.chunks(ROTATION_SESSIONS_PER_CALLER);
    let key = Arc::new(bench_key());
    for callers in [1usize, 8] {
        let mut hand_states = Vec::new();
        for h in Hand::callers(config, Query::Rotate, callers).await? {
            hand_states.push((
                h,
                Chain::shared(sessions.next().expect("rotation sessions")),
            ));
        }
        let k = key.clone();
        let handwritten = (hand_states, move |(h, chain), _| {
            hand::rotate(h, chain, k.clone())
        });
        let repo = repo_for(config, callers, ops_policy())?;
        let ours_states: Vec<_> = (0..callers)
            .map(|_| {
                (
                    repo.clone(),
                    Chain::shared(sessions.next().expect("rotation sessions")),
                )
            })
            .collect();
        let ours = (ours_states, |(repo, chain), _| repo::rotate(repo, chain));
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
