//! TLS to PostgreSQL: `sslmode` and `sslrootcert` against real servers.
//!
//! - A private server of the test's own with `ssl = on` and a self-signed certificate for
//!   `localhost`, as Debian's package sets up its server (with its "snakeoil" certificate):
//!   the tests read the certificate the server uses and trust exactly that one. Neither
//!   `DATABASE_URL` nor a server on port 5432 is needed.
//! - A private server of the test's own (`initdb` in a temporary directory, a free port)
//!   accepts only TLS connections (`hostssl` in `pg_hba.conf`, no `host` line), with a
//!   certificate for `localhost` from a certificate authority the test generates.

mod common;

use common::server::PrivateServer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::{
    Error, NewSession, PoolSettings, RotationKey, SessionPolicy, SessionRepo, SslMode, TlsSettings,
    build_pool, build_pool_with_tls, migrate,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn settings() -> PoolSettings {
    PoolSettings::default()
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .wait_timeout(Duration::from_secs(5))
}

/// Whether the pool's connection is encrypted, as the server sees it (`pg_stat_ssl`).
async fn ssl_in_use(pool: &Pool) -> Result<bool, Error> {
    let client = pool.get().await?;
    Ok(client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0))
}

/// The error and its sources, `: `-separated.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// Asserts a connection failure that is a typed [`Error::Connect`], and returns its text.
fn expect_connect_error(result: Result<bool, Error>, what: &str) -> String {
    match result {
        Err(err @ Error::Connect(_)) => {
            let text = chain(&err);
            println!("{what}: {text}");
            text
        }
        other => panic!("{what}: expected Error::Connect, got {other:?}"),
    }
}

/// The DNS names a PEM certificate is issued for.
fn dns_names(pem_path: &Path) -> Vec<String> {
    let der = CertificateDer::from_pem_file(pem_path)
        .unwrap_or_else(|err| panic!("read {}: {err}", pem_path.display()));
    let cert = webpki::EndEntityCert::try_from(&der).expect("parse the server certificate");
    cert.valid_dns_names().map(str::to_owned).collect()
}

/// A certificate authority of the test's own, and certificates it signs.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` and its private key, both PEM.
    fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "auth-sessions test server");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `text` to a new file in `dir` and returns its path.
fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    path
}

// ---------------------------------------------------------------------------------------------
// A server with its own certificate
// ---------------------------------------------------------------------------------------------

/// A private server ([`PrivateServer`]) with `ssl = on` and a self-signed certificate for
/// `localhost` (as Debian's "snakeoil" one is), taking both TLS and plaintext over TCP: the
/// tests trust exactly the certificate the server presents.
struct CertServer {
    server: PrivateServer,
    ip: IpAddr,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: String,
    /// A copy of the server's `ssl_cert_file`, in `_cert_dir`.
    cert: PathBuf,
    /// The DNS names that certificate is issued for.
    cert_names: Vec<String>,
    _cert_dir: tempfile::TempDir,
}

impl CertServer {
    async fn get() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("make a self-signed certificate");
        let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
        let cert_dir = tempfile::tempdir().expect("create a temporary directory");
        let cert = write_file(cert_dir.path(), "server.crt", &cert_pem);
        let server = tokio::task::spawn_blocking(move || {
            PrivateServer::start_with(
                |data| {
                    write_file(data, "server.crt", &cert_pem);
                    let key_file = write_file(data, "server.key", &key_pem);
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                        .expect("chmod 0600 server.key");
                },
                "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            )
        })
        .await
        .expect("start the private server");
        let ssl: String = server
            .client()
            .await
            .query_one("SHOW ssl", &[])
            .await
            .expect("SHOW ssl")
            .get(0);
        assert_eq!(ssl, "on", "the private server runs without TLS");
        let cert_names = dns_names(&cert);
        let config = server.config();
        Self {
            ip: IpAddr::from([127, 0, 0, 1]),
            port: server.port,
            user: config.get_user().unwrap_or("postgres").to_owned(),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
            cert,
            cert_names,
            _cert_dir: cert_dir,
            server,
        }
    }

    /// A configuration that connects to the server's address, naming `host` (for TLS).
    fn config(&self, host: &str) -> Config {
        let mut config = Config::new();
        config
            .host(host)
            .hostaddr(self.ip)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname);
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }

    /// The server's URL.
    fn url(&self) -> String {
        self.server.url()
    }

    /// The server's URL with extra URL parameters.
    fn url_with(&self, params: &str) -> String {
        let url = self.url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{params}")
    }
}

#[tokio::test]
async fn verify_full_with_the_servers_own_certificate_is_tls() {
    let server = CertServer::get().await;
    let name = &server.cert_names[0];
    println!(
        "server certificate {} for {:?}",
        server.cert.display(),
        server.cert_names
    );

    // Through a key=value connection string, as an operator would write it.
    let mut conninfo = format!(
        "host={name} hostaddr={} port={} user={} dbname={} sslmode=verify-full sslrootcert='{}'",
        server.ip,
        server.port,
        server.user,
        server.dbname,
        server
            .cert
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('\'', "\\'"),
    );
    if let Some(password) = &server.password {
        conninfo.push_str(&format!(
            " password='{}'",
            password.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    }
    let pool = build_pool(&conninfo, &settings()).unwrap();
    assert!(ssl_in_use(&pool).await.unwrap(), "verify-full is not TLS");
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    println!(
        "verify-full: {} {}",
        row.get::<_, String>(0),
        row.get::<_, String>(1)
    );
    drop(client);

    // And through explicit settings.
    let tls = TlsSettings::new(SslMode::VerifyFull).root_cert_file(&server.cert);
    let pool = build_pool_with_tls(server.config(name), &tls, &settings()).unwrap();
    assert!(ssl_in_use(&pool).await.unwrap());
}

#[tokio::test]
async fn verify_full_or_verify_ca_with_a_wrong_root_fails_with_a_typed_error() {
    let server = CertServer::get().await;
    let dir = tempfile::tempdir().unwrap();
    let stranger = write_file(dir.path(), "other-ca.pem", &TestCa::new("a stranger").pem());
    let name = &server.cert_names[0];
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa] {
        let tls = TlsSettings::new(mode).root_cert_file(&stranger);
        let pool = build_pool_with_tls(server.config(name), &tls, &settings()).unwrap();
        let text = expect_connect_error(ssl_in_use(&pool).await, mode.as_str());
        assert!(text.contains("certificate"), "{text}");
    }
    // The same through the URL.
    let url = server.url_with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        stranger.display()
    ));
    let pool = build_pool(&url, &settings()).unwrap();
    expect_connect_error(ssl_in_use(&pool).await, "verify-full by URL");
}

#[tokio::test]
async fn require_encrypts_without_a_root_and_disable_does_not() {
    let server = CertServer::get().await;
    let cases = [
        ("sslmode=require", true),
        ("sslmode=prefer", true),
        ("sslmode=disable", false),
    ];
    for (params, encrypted) in cases {
        let pool = build_pool(&server.url_with(params), &settings()).unwrap();
        assert_eq!(ssl_in_use(&pool).await.unwrap(), encrypted, "{params}");
    }
    // No sslmode, a loopback host: plaintext (see TlsSettings).
    if server.ip.is_loopback() && !server.url().contains("sslmode") {
        let pool = build_pool(&server.url(), &settings()).unwrap();
        assert!(!ssl_in_use(&pool).await.unwrap(), "the loopback default");
    }
}

// ---------------------------------------------------------------------------------------------
// A private server that accepts only TLS
// ---------------------------------------------------------------------------------------------

/// A private server ([`PrivateServer`]) that takes only TLS over TCP (`hostssl`, no `host`
/// line), with a certificate for `localhost` signed by `ca`; its Unix socket, for the test's
/// own observers, stays plain.
struct TlsOnlyServer {
    server: PrivateServer,
    port: u16,
    /// The CA's certificate, for `sslrootcert`.
    ca_file: PathBuf,
}

impl TlsOnlyServer {
    /// Creates and starts a server. Blocking (run it with `spawn_blocking` inside a runtime).
    fn start() -> Self {
        let ca = TestCa::new("auth-sessions test CA");
        let mut ca_file = PathBuf::new();
        let server = PrivateServer::start_with(
            |data| {
                ca_file = write_file(data, "ca.pem", &ca.pem());
                let (cert, key) = ca.server_cert(&["localhost"]);
                write_file(data, "server.crt", &cert);
                let key_file = write_file(data, "server.key", &key);
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
        );
        Self {
            port: server.port,
            server,
            ca_file,
        }
    }

    /// A configuration for the `postgres` database over TCP, to `host` at 127.0.0.1.
    fn config(&self, host: &str) -> Config {
        self.config_at(host, self.port)
    }

    fn config_at(&self, host: &str, port: u16) -> Config {
        let mut config = Config::new();
        config
            .host(host)
            .hostaddr(IpAddr::from([127, 0, 0, 1]))
            .port(port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// A plaintext connection over the Unix socket, outside any pool.
    async fn socket_client(&self) -> Client {
        let (client, connection) = self
            .server
            .socket_config()
            .connect(NoTls)
            .await
            .expect("connect to the private server's socket");
        tokio::spawn(connection);
        client
    }
}

async fn tls_only_server() -> TlsOnlyServer {
    tokio::task::spawn_blocking(TlsOnlyServer::start)
        .await
        .expect("start the private server")
}

#[tokio::test]
async fn a_tls_only_server_refuses_plaintext_and_accepts_tls() {
    let server = tls_only_server().await;
    let pool_for = |host: &str, tls: TlsSettings| {
        build_pool_with_tls(server.config(host), &tls, &settings()).unwrap()
    };

    // Plaintext: refused by pg_hba.conf, a typed error with the server's SQLSTATE.
    let pool = pool_for("localhost", TlsSettings::new(SslMode::Disable));
    match ssl_in_use(&pool).await {
        Err(Error::Connect(err)) => {
            println!("disable: {err}");
            assert_eq!(
                err.code(),
                Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
                "{err}"
            );
            assert!(!err.is_retryable());
        }
        other => panic!("disable against a TLS-only server: {other:?}"),
    }

    // Every mode that encrypts gets in, and the server sees TLS.
    let ca = &server.ca_file;
    for (host, tls) in [
        ("localhost", TlsSettings::new(SslMode::Prefer)),
        ("localhost", TlsSettings::new(SslMode::Require)),
        (
            "localhost",
            TlsSettings::new(SslMode::VerifyCa).root_cert_file(ca),
        ),
        (
            "localhost",
            TlsSettings::new(SslMode::VerifyFull).root_cert_file(ca),
        ),
        // The certificate names only localhost: verify-ca does not look at names.
        (
            "127.0.0.1",
            TlsSettings::new(SslMode::VerifyCa).root_cert_file(ca),
        ),
        ("127.0.0.1", TlsSettings::new(SslMode::Require)),
    ] {
        let what = format!("{} to {host}", tls.mode.as_str());
        let encrypted = ssl_in_use(&pool_for(host, tls))
            .await
            .unwrap_or_else(|err| panic!("{what}: {}", chain(&err)));
        assert!(encrypted, "{what}");
    }

    // verify-full checks the name: 127.0.0.1 is not in the certificate.
    let pool = pool_for(
        "127.0.0.1",
        TlsSettings::new(SslMode::VerifyFull).root_cert_file(ca),
    );
    let text = expect_connect_error(ssl_in_use(&pool).await, "verify-full to 127.0.0.1");
    assert!(text.contains("certificate"), "{text}");

    // Without the test CA (the system's roots), the certificate is unknown.
    let pool = pool_for("localhost", TlsSettings::new(SslMode::VerifyFull));
    let text = expect_connect_error(ssl_in_use(&pool).await, "verify-full, system roots");
    assert!(text.contains("certificate"), "{text}");

    // The URL form says the same.
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        server.port,
        ca.display()
    );
    assert!(
        ssl_in_use(&build_pool(&url, &settings()).unwrap())
            .await
            .unwrap()
    );
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        server.port
    );
    expect_connect_error(
        ssl_in_use(&build_pool(&url, &settings()).unwrap()).await,
        "disable by URL",
    );
}

// ---------------------------------------------------------------------------------------------
// A cancel request over TLS
// ---------------------------------------------------------------------------------------------

/// A TCP relay that records how each connection through it opens: `ssl` (an SSLRequest: TLS
/// follows, and whatever comes next is encrypted), `cancel` (a plaintext CancelRequest),
/// `gss` or `startup` (a plaintext startup message).
struct OpeningRelay {
    port: u16,
    openings: Arc<Mutex<Vec<&'static str>>>,
}

impl OpeningRelay {
    async fn start(upstream_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let openings: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let seen = openings.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = [0u8; 8];
                    client.read_exact(&mut head).await?;
                    let code = u32::from_be_bytes(head[4..].try_into().unwrap());
                    let kind = match code {
                        80_877_103 => "ssl",
                        80_877_102 => "cancel",
                        80_877_104 => "gss",
                        _ => "startup",
                    };
                    seen.lock().unwrap().push(kind);
                    let mut server =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await?;
                    server.write_all(&head).await?;
                    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        Self { port, openings }
    }

    fn openings(&self) -> Vec<&'static str> {
        self.openings.lock().unwrap().clone()
    }
}

/// How many backends other than the observer wait on a lock.
async fn lock_waiters(observer: &Client) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
             AND state = 'active' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_dropped_call_is_canceled_over_tls() {
    let server = tls_only_server().await;
    let relay = OpeningRelay::start(server.port).await;
    let tls = TlsSettings::new(SslMode::VerifyFull).root_cert_file(&server.ca_file);
    let pool =
        build_pool_with_tls(server.config_at("localhost", relay.port), &tls, &settings()).unwrap();
    migrate(&pool).await.expect("migrate over TLS");
    let key = RotationKey::from_bytes(b"the TLS tests' rotation key, 32+ bytes").unwrap();
    let repo =
        SessionRepo::with_policy(pool.clone(), SessionPolicy::default().rotation_key(key)).unwrap();

    let observer = server.socket_client().await;
    let mut locker = server.socket_client().await;
    let user: uuid::Uuid = observer
        .query_one(
            "INSERT INTO auth.users (email) VALUES ('tls@example.test') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (session, token) = repo.create(&NewSession::new(user, DAY)).await.unwrap();

    // Hold the session's row lock so that a rotation waits on the server.
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM auth.user_sessions WHERE id = $1 FOR UPDATE",
        &[&session.id],
    )
    .await
    .unwrap();
    {
        let mut call = std::pin::pin!(repo.rotate(token.expose_secret()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(result) = tokio::time::timeout(Duration::from_millis(50), call.as_mut()).await
            {
                panic!("rotate should wait on the lock, got {result:?}");
            }
            if lock_waiters(&observer).await == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "rotate never waited on the lock");
        }
        // Dropped here, its statement waiting on the server.
    }
    let before_cancel = relay.openings();

    // The lock is still held, so only a cancel request can end the waiting statement (the
    // server does not notice a closed client while it waits on a lock).
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock_waiters(&observer).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned statement still waits on the lock after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.rollback().await.unwrap();
    let openings = relay.openings();
    println!("connections through the relay: {openings:?}");
    assert!(
        openings.iter().all(|kind| *kind == "ssl"),
        "a connection opened in plaintext: {openings:?}"
    );
    assert!(
        openings.len() > before_cancel.len(),
        "no connection carried the cancel request: {openings:?}"
    );
    // Canceled before it could run: the old token still works, over a new TLS connection.
    assert!(
        repo.find_by_token(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert!(ssl_in_use(&pool).await.unwrap());
}

#[test]
fn the_default_url_is_plaintext_and_a_remote_default_verifies() {
    let (_, tls) = auth_sessions::parse_database_url(auth_sessions::DEFAULT_DATABASE_URL).unwrap();
    assert_eq!(tls.mode, SslMode::Disable);
    let (_, tls) = auth_sessions::parse_database_url("postgres://app@db.example.com/app").unwrap();
    assert_eq!(tls, TlsSettings::new(SslMode::VerifyFull));
    let config = Config::from_str("host=db.example.com user=app").unwrap();
    assert_eq!(
        TlsSettings::default_for(&config),
        TlsSettings::new(SslMode::VerifyFull)
    );
}
