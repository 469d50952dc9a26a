//! Section 7: round trips per repository call, counted on the wire by a relay.

use auth_sessions::{NewSession, PoolSettings, SessionRepo, build_pool_with_config};
use tokio_postgres::Client;
use tokio_postgres::Config;
use tokio_postgres::config::Host;

use crate::BoxError;
use crate::data::{BENCH_DB, DAY, new_users};
use crate::relay;
use crate::repo::ops_policy;

pub(crate) async fn run(config: &Config, admin: &Client) -> Result<(), BoxError> {
    println!("## 7. Round trips per repository call (warm connection, counted on the wire)\n");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let relay = relay::CountingRelay::start((host, port)).await;
    let mut through = Config::new();
    through.host("127.0.0.1").port(relay.port).dbname(BENCH_DB);
    if let Some(user) = config.get_user() {
        through.user(user);
    }
    if let Some(password) = config.get_password() {
        through.password(password);
    }
    let pool = build_pool_with_config(through, &PoolSettings::default().max_size(1))?;
    let repo = SessionRepo::with_policy(pool, ops_policy())?;
    let user = new_users(admin, 1).await?[0];
    println!("| call | round trips |");
    println!("|---|---|");
    for pass in 0..2 {
        let mut counts = Vec::new();
        macro_rules! count {
            ($name:literal, $call:expr) => {{
                let before = relay.count();
                let result = $call.await?;
                counts.push(($name, relay.count() - before));
                result
            }};
        }
        let (session, token) = count!("create", repo.create(&NewSession::new(user, DAY)));
        let minted = repo.mint_token(user).await?;
        count!(
            "create_with_token",
            repo.create_with_token(&NewSession::new(user, DAY), &minted)
        );
        count!("find_by_token", repo.find_by_token(token.expose_secret()));
        count!("validate", repo.validate(token.expose_secret()));
        count!("record_activity", repo.record_activity(session.key(), None));
        count!("list_devices", repo.list_devices(user));
        count!("count_live", repo.count_live(user));
        count!("rotate", repo.rotate(token.expose_secret()));
        count!("revoke_all_except", repo.revoke_all_except(session.key()));
        count!("revoke", repo.revoke(session.key()));
        count!("revoke_all", repo.revoke_all(user));
        count!("delete_expired", repo.delete_expired());
        count!("delete_expired_batch", repo.delete_expired_batch(1000));
        if pass == 1 {
            for (name, trips) in counts {
                println!("| {name} | {trips} |");
            }
        }
    }
    println!();
    repo.pool().close();
    Ok(())
}
