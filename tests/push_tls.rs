//! The listening connection of live sessions is opened with the pool's own settings, TLS
//! included: against a private server that takes only TLS connections (`hostssl` in
//! `pg_hba.conf`, no `host` line), with a self-signed certificate for `localhost` that the
//! pool verifies (`verify-full`), the listener connects, is encrypted, and hears a revocation.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auth_sessions::{
    LiveSettings, NewSession, PoolSettings, SessionRepo, SslMode, TlsSettings, build_pool_with_tls,
    migrate,
};
use common::server::PrivateServer;
use tokio_postgres::{Config, NoTls};

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    path
}

#[tokio::test]
async fn the_listening_connection_uses_the_pools_tls_and_hears_a_revocation_push() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("make a self-signed certificate");
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let cert_dir = tempfile::tempdir().unwrap();
    let cert = write_file(cert_dir.path(), "server.crt", &cert_pem);
    let server = tokio::task::spawn_blocking(move || {
        PrivateServer::start_with(
            |data| {
                write_file(data, "server.crt", &cert_pem);
                let key_file = write_file(data, "server.key", &key_pem);
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod 0600 server.key");
                write_file(
                    data,
                    "pg_hba.conf",
                    "local   all all              trust\n\
                     hostssl all all 127.0.0.1/32 trust\n",
                );
            },
            "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
        )
    })
    .await
    .expect("start the private server");
    let mut config = Config::new();
    config
        .host("localhost")
        .hostaddr(IpAddr::from([127, 0, 0, 1]))
        .port(server.port)
        .user("postgres")
        .dbname("postgres");
    let tls = TlsSettings::new(SslMode::VerifyFull).root_cert_file(&cert);
    let pool = build_pool_with_tls(config, &tls, &PoolSettings::default()).unwrap();
    migrate(&pool).await.expect("migrate over TLS");
    let repo = SessionRepo::new(pool);
    let live = repo
        .live_sessions(LiveSettings::default().staleness_bound(Duration::from_secs(30)))
        .unwrap();
    assert!(
        live.listening(Duration::from_secs(10)).await,
        "{:?}",
        live.status()
    );

    let (admin, connection) = server
        .socket_config()
        .connect(NoTls)
        .await
        .expect("connect over the socket");
    tokio::spawn(connection);
    let encrypted: Vec<bool> = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.query LIKE '%auth_sessions_heartbeat_%' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(encrypted, [true], "one listening connection, encrypted");

    let user: uuid::Uuid = admin
        .query_one("INSERT INTO auth.users DEFAULT VALUES RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let key = repo
        .create(&NewSession::new(user, Duration::from_secs(3600)))
        .await
        .unwrap()
        .0
        .key();
    assert!(live.check(key).await.unwrap().is_some());
    assert!(repo.revoke(key).await.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live.status().endings_heard == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            live.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let memory = live.status().memory_answers;
    assert_eq!(live.check(key).await.unwrap(), None);
    assert_eq!(live.status().memory_answers, memory + 1);
    live.shutdown().await;
}
