//! Section 10: the reuse proof costs a constant. Against one session at generation 10,000:
//! `rotate` and `validate` of a forged generation-0 token (the session's ids, a valid check, a
//! tag no key gave) beside a forged parent (generation 9,999) and, for scale, a genuine refresh
//! and a lookup, in one run. Before the tag, the forged far ancestor made the repository derive
//! forward 10,000 HMAC steps (about 7.5 ms of CPU) per call; now both forgeries are refused
//! after one HMAC, before any statement, so their ratio is about 1.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use std::time::Duration;

use auth_sessions::{NewSession, RefreshToken, Rotation};
use tokio_postgres::{Client, Config};

use crate::BoxError;
use crate::args::Args;
use crate::callers::{Chain, Shared};
use crate::data::{DAY_S, bench_key, new_users};
use crate::measure::{Run, compare, measure};
use crate::repo::{ops_policy, repo_for, rotate_next};

/// The session's generation.
const GENERATION: u32 = 10_000;

pub(crate) async fn run(args: &Args, config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!(
        "## 10. The reuse proof: forged tokens against a session at generation {GENERATION}, one \
         caller\n"
    );
    let repo = repo_for(config, 1, ops_policy())?;
    let user = new_users(admin, 1).await?[0];
    let (session, first) = repo
        .create(&NewSession::new(user, Duration::from_secs(DAY_S as u64)))
        .await?;
    // The genuine token at generation 10,000, derived in memory, stored as the session's.
    let key = bench_key();
    let mut current = first.clone();
    while current.generation() < GENERATION {
        current = key.successor(&current)?;
    }
    admin
        .execute(
            "UPDATE auth.user_sessions SET generation = $3, refresh_token_hash = $4 \
             WHERE user_id = $1 AND id = $2",
            &[
                &user,
                &session.id,
                &(GENERATION as i32),
                &current.hash().as_str(),
            ],
        )
        .await?;
    let far = forge(&current, 0);
    let parent = forge(&current, GENERATION - 1);
    for (what, forged) in [("far", &far), ("parent", &parent)] {
        if repo.rotate(forged).await? != Rotation::Unknown {
            return Err(format!("the forged {what} token was not unknown").into());
        }
    }

    println!("| call | presented token | calls/s | p50 ms | p99 ms | ratio to the forged parent |");
    println!("|---|---|---|---|---|---|");
    let seconds = args.seconds;
    let rotate = |text: String| {
        let repo = repo.clone();
        move |_: (), _| {
            let (repo, text) = (repo.clone(), text.clone());
            async move {
                repo.rotate(&text).await.expect("rotate");
            }
        }
    };
    let validate = |text: String| {
        let repo = repo.clone();
        move |_: (), _| {
            let (repo, text) = (repo.clone(), text.clone());
            async move {
                repo.validate(&text).await.expect("validate");
            }
        }
    };
    let (parent_run, far_run) = compare(
        seconds,
        (vec![()], rotate(parent.clone())),
        (vec![()], rotate(far.clone())),
    )
    .await;
    print_row(
        "rotate",
        "forged, generation 9,999 (parent)",
        &parent_run,
        &parent_run,
    );
    print_row("rotate", "forged, generation 0", &far_run, &parent_run);
    let (parent_check, far_check) = compare(
        seconds,
        (vec![()], validate(parent)),
        (vec![()], validate(far)),
    )
    .await;
    print_row(
        "validate",
        "forged, generation 9,999 (parent)",
        &parent_check,
        &parent_check,
    );
    print_row(
        "validate",
        "forged, generation 0",
        &far_check,
        &parent_check,
    );

    // For scale: what a genuine refresh and a lookup of the same session cost.
    let chain = Chain::shared(std::slice::from_ref(&current));
    let genuine = measure(seconds, vec![chain.clone()], {
        let repo = repo.clone();
        move |chain: Shared<Chain>, _| {
            let repo = repo.clone();
            async move { rotate_next(&repo, &chain).await.expect("refresh") }
        }
    })
    .await;
    print_row("rotate", "genuine (current)", &genuine, &parent_run);
    let (_, latest) = Chain::take(&chain);
    let lookup = measure(seconds, vec![()], {
        let repo = repo.clone();
        move |_: (), _| {
            let (repo, latest) = (repo.clone(), latest.clone());
            async move {
                repo.find_by_token(&latest).await.expect("lookup");
            }
        }
    })
    .await;
    print_row("find_by_token", "genuine (current)", &lookup, &parent_run);
    println!();
    Ok(())
}

fn print_row(call: &str, token: &str, run: &Run, parent: &Run) {
    println!(
        "| {call} | {token} | {:.0} | {:.3} | {:.3} | {:.2} |",
        run.throughput(),
        run.percentile(0.5),
        run.percentile(0.99),
        parent.throughput() / run.throughput(),
    );
}

/// `token` at `generation`, with a tag no key gave and the check recomputed: well formed, with
/// the real session's ids, as anyone who read them off a token could forge it.
fn forge(token: &RefreshToken, generation: u32) -> String {
    let prefix = auth_sessions::TOKEN_PREFIX;
    let mut body = URL_SAFE_NO_PAD
        .decode(&token.expose_secret()[prefix.len()..])
        .expect("a token's body");
    body[32..36].copy_from_slice(&generation.to_be_bytes());
    body[54..86].fill(0x5a);
    let check = Sha256::new()
        .chain_update(prefix.as_bytes())
        .chain_update(&body[..86])
        .finalize();
    body[86..].copy_from_slice(&check[..4]);
    let text = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&body));
    RefreshToken::parse(&text).expect("a well-formed forgery");
    text
}
