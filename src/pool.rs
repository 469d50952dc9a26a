//! Building a connection pool: explicit timeouts (deadpool's defaults wait forever), TLS as
//! libpq's `sslmode` and `sslrootcert` describe it (see [`TlsSettings`]), and the isolation
//! level the statements rely on.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, WeakPool};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::Error;

/// The database URL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// Every pooled connection runs its statements at READ COMMITTED, whatever the server's or the
/// database's `default_transaction_isolation`: rotation (`auth.rotate_session`) relies on each
/// statement of the function taking a fresh snapshot, so callers that queued on a session's
/// row lock see the first caller's rotation; under REPEATABLE READ they would fail with
/// SQLSTATE 40001 instead.
const ISOLATION_OPTION: &str = r"-c default_transaction_isolation=read\ committed";

/// TCP keepalive and user timeout of every connection the crate opens, unless the
/// configuration says otherwise (see [`build_pool_with_tls`]). An idle connection whose peer
/// is gone is found after about 30 s + 3 × 10 s of unanswered probes, and data that stays
/// unacknowledged for 30 s closes the connection, instead of TCP's own retries (about 15
/// minutes on Linux) or keepalive's 2 hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a cancel request may take when the pool names no create timeout.
const CANCEL_LIMIT: Duration = Duration::from_secs(5);

/// Every pooled connection plans prepared statements as PostgreSQL does by default, whatever
/// the server's, the database's or the role's `plan_cache_mode`: on Citus, a statement that is
/// not a single-table filter on the distribution column (a CTE that writes, a subquery,
/// anything that visits every shard) has no generic plan, and under `force_generic_plan` it
/// fails with SQLSTATE 0A000 ("could not create distributed plan"). Under `auto` Citus prices
/// such plans out of reach, so PostgreSQL uses custom plans for them and generic plans where
/// they work.
const PLAN_CACHE_OPTION: &str = "-c plan_cache_mode=auto";

/// Pool size and timeouts. Every timeout is finite.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections open at once. Default: 16.
    pub max_size: usize,
    /// Longest wait for a free connection. Default: 5 s.
    pub wait_timeout: Duration,
    /// Longest time to open a new connection. Default: 5 s.
    pub create_timeout: Duration,
    /// Longest time to check a returned connection. Default: 5 s.
    pub recycle_timeout: Duration,
    /// Server-side limit on every statement of the pool's connections (`statement_timeout`,
    /// whole milliseconds); a statement past it fails with
    /// [`crate::Error::StatementTimeout`]. `None` keeps the server's setting. Default: `None`.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

impl PoolSettings {
    /// Sets the largest number of open connections.
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Sets the longest wait for a free connection.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets the longest time to open a connection.
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// Sets the server-side statement timeout of every connection.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Sets the longest time to check a returned connection.
    pub fn recycle_timeout(mut self, timeout: Duration) -> Self {
        self.recycle_timeout = timeout;
        self
    }
}

/// Whether and how connections use TLS: libpq's `sslmode` (without `allow`). See
/// [`TlsSettings`] for the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, plaintext when it refuses; the certificate is not
    /// checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked, unless the root certificates are
    /// a file ([`RootCerts::File`]): then its chain is, as with [`SslMode::VerifyCa`] (libpq
    /// does the same).
    Require,
    /// TLS, and the server's certificate must chain to a trusted root; its host names are not
    /// checked.
    VerifyCa,
    /// TLS, and the server's certificate must chain to a trusted root and be issued for the
    /// host connected to.
    VerifyFull,
}

impl SslMode {
    /// The `sslmode` value: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Error> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(Error::Config(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ))),
        }
    }
}

/// The certificates a server's certificate chain must end in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RootCerts {
    /// The operating system's store (`sslrootcert=system`, or no `sslrootcert`).
    #[default]
    System,
    /// The certificates of a PEM file (`sslrootcert=/path/to/root.crt`).
    File(PathBuf),
}

/// TLS settings of a pool: `sslmode` and `sslrootcert`.
///
/// A URL (or key=value string) may carry libpq's `sslmode` and `sslrootcert`;
/// [`parse_database_url`] takes them out and hands the rest to [`tokio_postgres::Config`],
/// whose own parser knows only `disable`, `prefer` and `require`.
///
/// | `sslmode` | encrypted | certificate checked |
/// |---|---|---|
/// | `disable` | never | - |
/// | `prefer` | when the server offers TLS, else plaintext | no |
/// | `require` | always | no (its chain, when `sslrootcert` names a file, as libpq does) |
/// | `verify-ca` | always | chain to a trusted root, whatever host it names |
/// | `verify-full` | always | chain to a trusted root, and issued for the host connected to |
///
/// `sslrootcert` names a PEM file of trusted roots; absent (or `system`) means the operating
/// system's store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured). Unix-socket connections
/// never use TLS, as with libpq. Client certificates are not supported.
///
/// **The default, when nothing names a mode,** is `verify-full` against the system's roots
/// for a remote host: a deployment is encrypted and its server authenticated without asking,
/// and plaintext happens only when asked for. The one exception is a server on this machine:
/// when every host is a loopback address (`localhost`, `127.0.0.0/8`, `::1`) or a Unix
/// socket, the default is `disable`. That traffic never leaves the machine, so TLS would
/// protect it from no one (whoever can read loopback traffic can read the process), local
/// servers seldom hold a certificate for `localhost`, and local proxies (an SSH tunnel, or
/// PgBouncer or a cloud SQL proxy beside the service, which encrypt onwards themselves) speak
/// plaintext. An `sslrootcert` without `sslmode` means `verify-full`, wherever the server is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TlsSettings {
    /// Whether and how to use TLS.
    pub mode: SslMode,
    /// The trusted roots, for the modes that check certificates.
    pub root_certs: RootCerts,
}

impl TlsSettings {
    /// `mode` with the system's root certificates.
    pub fn new(mode: SslMode) -> Self {
        Self {
            mode,
            root_certs: RootCerts::System,
        }
    }

    /// Trusts the certificates of a PEM file instead of the system's.
    pub fn root_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certs = RootCerts::File(path.into());
        self
    }

    /// The settings for a configuration that says nothing more than tokio-postgres can:
    /// its `disable` and `require` stand, and `prefer`, which is also what a configuration
    /// that names no mode holds, follows the default rule (see [`TlsSettings`]): `disable`
    /// when every host is on this machine, `verify-full` otherwise.
    pub fn default_for(config: &tokio_postgres::Config) -> Self {
        match config.get_ssl_mode() {
            PgSslMode::Disable => Self::new(SslMode::Disable),
            PgSslMode::Require => Self::new(SslMode::Require),
            _ if only_local_hosts(config) => Self::new(SslMode::Disable),
            _ => Self::new(SslMode::VerifyFull),
        }
    }
}

/// Parses a `postgres://` URL or a key=value connection string into a connection
/// configuration and its TLS settings, taking `sslmode` and `sslrootcert` out first
/// ([`TlsSettings`] describes them and the default).
///
/// # Errors
///
/// [`Error::Config`] when the string does not parse, `sslmode` has another value, or
/// `sslrootcert=system` comes with a mode weaker than `verify-full` (as libpq refuses it).
pub fn parse_database_url(url: &str) -> Result<(tokio_postgres::Config, TlsSettings), Error> {
    let split = split_tls_params(url);
    let config = tokio_postgres::Config::from_str(&split.rest)
        .map_err(|err| Error::Config(format!("database URL: {err}")))?;
    let root_cert = split.sslrootcert.filter(|value| !value.is_empty());
    let mode = match split.sslmode.as_deref() {
        Some(value) => value
            .parse::<SslMode>()
            .map_err(|err| Error::Config(format!("database URL: {}", config_message(err))))?,
        None if root_cert.is_some() => SslMode::VerifyFull,
        None => TlsSettings::default_for(&config).mode,
    };
    let root_certs = match root_cert {
        None => RootCerts::System,
        Some(value) if value == "system" => {
            if mode != SslMode::VerifyFull {
                return Err(Error::Config(format!(
                    "database URL: sslmode {} may not be used with sslrootcert=system \
                     (use verify-full)",
                    mode.as_str()
                )));
            }
            RootCerts::System
        }
        Some(path) => RootCerts::File(PathBuf::from(path)),
    };
    Ok((config, TlsSettings { mode, root_certs }))
}

/// Builds a pool for `url` (a `postgres://` URL or a key=value connection string, with
/// libpq's `sslmode` and `sslrootcert`; see [`TlsSettings`]). Loads the
/// root certificates TLS needs but opens no connection: the first call does.
///
/// # Errors
///
/// [`Error::Config`] when the URL does not parse, the settings are invalid, or the root
/// certificates cannot be read.
pub fn build_pool(url: &str, settings: &PoolSettings) -> Result<Pool, Error> {
    let (config, tls) = parse_database_url(url)?;
    build_pool_with_tls(config, &tls, settings)
}

/// Builds a pool from an already parsed connection configuration, with the TLS settings
/// [`TlsSettings::default_for`] derives from it (a [`tokio_postgres::Config`] cannot express
/// `verify-ca`, `verify-full` or root certificates: use [`build_pool_with_tls`] for those).
/// Opens no connection.
///
/// # Errors
///
/// [`Error::Config`] when the settings are invalid or the system's root certificates cannot
/// be read.
pub fn build_pool_with_config(
    config: tokio_postgres::Config,
    settings: &PoolSettings,
) -> Result<Pool, Error> {
    let tls = TlsSettings::default_for(&config);
    build_pool_with_tls(config, &tls, settings)
}

/// Builds a pool from a connection configuration and explicit TLS settings; the
/// configuration's own `ssl_mode` is replaced. Opens no connection.
///
/// Every connection also gets `default_transaction_isolation = 'read committed'` (rotation
/// relies on it, whatever the server's default), `plan_cache_mode = auto` (on Citus, several
/// statements cannot run as generic plans, see [`crate::Error::ForcedGenericPlan`]) and the
/// settings' `statement_timeout`, after any `options` the configuration carries.
///
/// Every TCP connection (cancel requests too) has keepalive on, with probes after 30 s idle,
/// every 10 s, 3 of them (`keepalives_idle`, `keepalives_interval`, `keepalives_retries`), and
/// a `tcp_user_timeout` of 30 s (Linux: data unacknowledged that long closes the connection),
/// so a connection whose server vanished is closed within about a minute rather than TCP's
/// 15 minutes. A value the configuration sets (for example `?keepalives_idle=120` or
/// `keepalives=0` in the URL) stands; a value equal to tokio-postgres's own default (an idle
/// time of 2 hours) counts as unset. These bound idle and bulk connections; the hot-path
/// calls also have a deadline ([`crate::SessionRepo::with_deadline`]). A failed TLS handshake (a certificate that does
/// not verify) or a server that refuses the connection's encryption fails the call that
/// needed the connection with [`Error::Connect`].
///
/// # Errors
///
/// [`Error::Config`] when the settings are invalid or the root certificates cannot be read.
pub fn build_pool_with_tls(
    mut config: tokio_postgres::Config,
    tls: &TlsSettings,
    settings: &PoolSettings,
) -> Result<Pool, Error> {
    config.connect_timeout(settings.create_timeout);
    detect_dead_peers(&mut config);
    append_option(&mut config, ISOLATION_OPTION);
    append_option(&mut config, PLAN_CACHE_OPTION);
    if let Some(timeout) = settings.statement_timeout {
        let millis = timeout.as_millis().max(1);
        append_option(&mut config, &format!("-c statement_timeout={millis}"));
    }
    config.ssl_mode(if only_unix_sockets(&config) {
        PgSslMode::Disable
    } else {
        match tls.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    });
    let connector = connector(tls)?;
    let listen_config = config.clone();
    let manager = Manager::from_config(
        config,
        connector.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.create_timeout))
        .recycle_timeout(Some(settings.recycle_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| Error::Config(format!("pool: {err}")))?;
    register_connector(&pool, listen_config, connector);
    Ok(pool)
}

/// Sets TCP keepalive and `tcp_user_timeout` (see [`build_pool_with_tls`]) where the
/// configuration left tokio-postgres's defaults: keepalive on after 2 hours idle, no
/// interval or retry count of its own, no user timeout.
fn detect_dead_peers(config: &mut tokio_postgres::Config) {
    let defaults = tokio_postgres::Config::new();
    if config.get_keepalives() {
        if config.get_keepalives_idle() == defaults.get_keepalives_idle() {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

fn append_option(config: &mut tokio_postgres::Config, option: &str) {
    let options = config.get_options().unwrap_or_default();
    config.options(format!("{options} {option}").trim());
}

/// The message of an [`Error::Config`], without its prefix.
fn config_message(err: Error) -> String {
    match err {
        Error::Config(message) => message,
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Connection string handling
// ---------------------------------------------------------------------------------------------

/// A connection string with `sslmode` and `sslrootcert` taken out.
#[derive(Debug, PartialEq, Eq)]
struct SplitUrl {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn split_tls_params(url: &str) -> SplitUrl {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        split_key_value(url)
    }
}

/// URL form: the parameters after `?`, `&`-separated and percent-encoded.
fn split_url(url: &str) -> SplitUrl {
    let mut split = SplitUrl {
        rest: url.to_owned(),
        sslmode: None,
        sslrootcert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return split;
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match percent_decode(key).as_deref() {
            Some("sslmode") => split.sslmode = percent_decode(value),
            Some("sslrootcert") => split.sslrootcert = percent_decode(value),
            // Anything else, well formed or not, is tokio-postgres' to judge.
            _ => kept.push(pair),
        }
    }
    split.rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    split
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8 or an escape is malformed (the
/// text then goes to tokio-postgres untouched, which reports it).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// key=value form, with libpq's quoting (`'...'`, backslash escapes). The two parameters are
/// cut out of the text; everything else stays as written. A string this scanner cannot read
/// goes to tokio-postgres as it is, to report.
fn split_key_value(text: &str) -> SplitUrl {
    let mut split = SplitUrl {
        rest: String::with_capacity(text.len()),
        sslmode: None,
        sslrootcert: None,
    };
    let Some(params) = scan_key_value(text) else {
        split.rest = text.to_owned();
        return split;
    };
    let mut copied = 0;
    for (range, key, value) in params {
        let slot = match key {
            "sslmode" => &mut split.sslmode,
            "sslrootcert" => &mut split.sslrootcert,
            _ => continue,
        };
        *slot = Some(value);
        split.rest.push_str(&text[copied..range.start]);
        split.rest.push(' ');
        copied = range.end;
    }
    split.rest.push_str(&text[copied..]);
    split
}

/// Each parameter's byte range, keyword and unescaped value, as tokio-postgres (and libpq)
/// read them; `None` on a syntax error.
fn scan_key_value(text: &str) -> Option<Vec<(std::ops::Range<usize>, &str, String)>> {
    let mut params = Vec::new();
    let mut chars = text.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            return Some(params);
        };
        while chars
            .next_if(|&(_, c)| !c.is_whitespace() && c != '=')
            .is_some()
        {}
        let key_end = chars.peek().map_or(text.len(), |&(i, _)| i);
        let key = &text[start..key_end];
        skip_ws(&mut chars);
        chars.next_if(|&(_, c)| c == '=')?;
        skip_ws(&mut chars);
        let mut value = String::new();
        let quoted = chars.next_if(|&(_, c)| c == '\'').is_some();
        let end = loop {
            match chars.peek().copied() {
                None if quoted => return None,
                None => break text.len(),
                Some((i, '\'')) if quoted => {
                    chars.next();
                    break i + 1;
                }
                Some((i, c)) if !quoted && c.is_whitespace() => break i,
                Some((_, '\\')) => {
                    chars.next();
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                Some((_, c)) => {
                    chars.next();
                    value.push(c);
                }
            }
        };
        if !quoted && value.is_empty() {
            return None;
        }
        params.push((start..end, key, value));
    }
}

/// True when every host the configuration names is a loopback address, `localhost` or a Unix
/// socket (and so is every `hostaddr`).
fn only_local_hosts(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }) && config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
}

/// True when every host is a Unix socket: PostgreSQL has no TLS on those.
fn only_unix_sockets(config: &tokio_postgres::Config) -> bool {
    !config.get_hosts().is_empty()
        && config.get_hostaddrs().is_empty()
        && config.get_hosts().iter().all(|host| match host {
            Host::Tcp(_) => false,
            #[cfg(unix)]
            Host::Unix(_) => true,
        })
}

// ---------------------------------------------------------------------------------------------
// The TLS connector
// ---------------------------------------------------------------------------------------------

/// The rustls connector for `tls`. Every pool has one, also with `disable` (unused then), so
/// that connections and cancel requests share one code path.
fn connector(tls: &TlsSettings) -> Result<MakeRustlsConnect, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, &tls.root_certs) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, RootCerts::System) => {
            Arc::new(ChainVerifier {
                roots: None,
                provider: provider.clone(),
            })
        }
        (SslMode::Require, RootCerts::File(_)) | (SslMode::VerifyCa, _) => {
            Arc::new(ChainVerifier {
                roots: Some(Arc::new(root_store(&tls.root_certs)?)),
                provider: provider.clone(),
            })
        }
        (SslMode::VerifyFull, _) => rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(root_store(&tls.root_certs)?),
            provider.clone(),
        )
        .build()
        .map_err(|err| Error::Config(format!("tls: {err}")))?,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Config(format!("tls: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What PostgreSQL 17 expects (and older servers ignore).
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::Config(
                    "tls: no root certificates in the system's store (install them, or name a \
                     file with sslrootcert)"
                        .into(),
                ));
            }
        }
        RootCerts::File(path) => {
            let unreadable = |err: &dyn std::fmt::Display| {
                Error::Config(format!("sslrootcert {}: {err}", show(path)))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|err| unreadable(&err))? {
                let cert = cert.map_err(|err| unreadable(&err))?;
                store.add(cert).map_err(|err| unreadable(&err))?;
            }
            if store.is_empty() {
                return Err(unreadable(&"no certificate in the file"));
            }
        }
    }
    Ok(store)
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Checks the server's certificate chain against `roots` without looking at its names
/// (`verify-ca`), or nothing at all when `roots` is `None` (`prefer`, `require`). The
/// handshake's signatures are always checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct ChainVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// The pools this crate built: cancel requests and listening connections
// ---------------------------------------------------------------------------------------------

/// The connection configuration and TLS connector of every live pool this process built, so
/// that a cancel request, or a listening connection, goes out with the same settings as the
/// pool's connections (the pool's manager keeps them private). Keyed by the manager's address, which is stable and unique while the
/// pool lives; entries of dropped pools are pruned on the next registration.
static CONNECTORS: Mutex<Vec<(usize, WeakPool, tokio_postgres::Config, MakeRustlsConnect)>> =
    Mutex::new(Vec::new());

fn pool_address(pool: &Pool) -> usize {
    std::ptr::from_ref(pool.manager()) as usize
}

fn register_connector(pool: &Pool, config: tokio_postgres::Config, connector: MakeRustlsConnect) {
    let mut connectors = CONNECTORS.lock().unwrap_or_else(PoisonError::into_inner);
    connectors.retain(|(_, weak, _, _)| weak.upgrade().is_some());
    connectors.push((pool_address(pool), pool.weak(), config, connector));
}

/// The TLS connector of the pool `client` came from; `None` when that pool was not built by
/// this crate (or is gone), and the cancel request then goes out in plaintext.
pub(crate) fn cancel_connector(client: &deadpool_postgres::Client) -> Option<MakeRustlsConnect> {
    let pool = deadpool_postgres::Object::pool(client)?;
    pool_connector(&pool)
}

/// The TLS connector `pool` was built with; `None` when this crate did not build it.
pub(crate) fn pool_connector(pool: &Pool) -> Option<MakeRustlsConnect> {
    pool_connect_settings(pool).map(|(_, connector)| connector)
}

/// The configuration (with the options, keepalives and TLS mode every pooled connection gets)
/// and TLS connector `pool` opens its connections with, for connections that are not the
/// pool's own but must be opened exactly like them (the listening connections of
/// [`crate::LiveSessions`]); `None` when this crate did not build it.
pub(crate) fn pool_connect_settings(
    pool: &Pool,
) -> Option<(tokio_postgres::Config, MakeRustlsConnect)> {
    let address = pool_address(pool);
    let connectors = CONNECTORS.lock().unwrap_or_else(PoisonError::into_inner);
    // While `pool` is held, no other pool can have its address: an entry with that address
    // whose pool is gone is a stale one.
    connectors
        .iter()
        .find(|(entry, weak, _, _)| *entry == address && weak.upgrade().is_some())
        .map(|(_, _, config, connector)| (config.clone(), connector.clone()))
}

/// The longest a cancel request to `pool`'s server may take: its create timeout (opening the
/// cancel request's connection is what takes time).
pub(crate) fn cancel_limit(pool: Option<&Pool>) -> Duration {
    pool.and_then(|pool| pool.timeouts().create)
        .unwrap_or(CANCEL_LIMIT)
}

/// Sends a cancel request for `token`'s statement, with `tls` (see [`cancel_connector`]),
/// giving up after `limit`: a server that accepts connections and never answers (or a TLS
/// handshake that never completes) must not keep the task waiting.
pub(crate) async fn cancel_query(
    token: tokio_postgres::CancelToken,
    tls: Option<MakeRustlsConnect>,
    limit: Duration,
) -> Result<(), String> {
    let request = async {
        match tls {
            Some(tls) => token.cancel_query(tls).await,
            None => token.cancel_query(tokio_postgres::NoTls).await,
        }
    };
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> (tokio_postgres::Config, TlsSettings) {
        parse_database_url(url).unwrap_or_else(|err| panic!("{url}: {err}"))
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_kept() {
        let split = split_tls_params(
            "postgres://u@db.example.com/app?sslmode=verify-ca&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(
            split,
            SplitUrl {
                rest: "postgres://u@db.example.com/app?application_name=x".into(),
                sslmode: Some("verify-ca".into()),
                sslrootcert: Some("/etc/ca.pem".into()),
            }
        );
        let split = split_tls_params("postgresql://u@h/d?sslmode=require");
        assert_eq!(split.rest, "postgresql://u@h/d");
        assert_eq!(split.sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn key_value_parameters_are_taken_out_and_the_rest_kept() {
        let split = split_tls_params(
            r"host=db.example.com sslmode = verify-full  sslrootcert='/etc/my ca\'s.pem' dbname=app",
        );
        assert_eq!(split.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(split.sslrootcert.as_deref(), Some("/etc/my ca's.pem"));
        let config = tokio_postgres::Config::from_str(&split.rest).unwrap();
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(config.get_hosts(), [Host::Tcp("db.example.com".into())]);
        // Unreadable text goes to tokio-postgres untouched.
        assert_eq!(
            split_tls_params("host='unterminated").rest,
            "host='unterminated"
        );
    }

    #[test]
    fn the_default_is_verify_full_except_on_this_machine() {
        for url in [
            "postgres://u@db.example.com/app",
            "postgres://u@10.0.0.5/app",
            "postgres://u@localhost,db.example.com/app",
            "host=db.example.com user=u",
            "postgres://u@localhost/app?hostaddr=10.0.0.5",
        ] {
            assert_eq!(parse(url).1, TlsSettings::new(SslMode::VerifyFull), "{url}");
        }
        for url in [
            DEFAULT_DATABASE_URL,
            "postgres://u@127.0.0.1:5433/app",
            "postgres://u@[::1]/app",
            "postgres://u@127.0.0.2/app",
            "host=/var/run/postgresql user=u",
            "postgres://u@LOCALHOST/app?hostaddr=127.0.0.1",
        ] {
            assert_eq!(parse(url).1, TlsSettings::new(SslMode::Disable), "{url}");
        }
        // A root certificate asks for verification, wherever the server is.
        assert_eq!(
            parse("postgres://u@localhost/app?sslrootcert=/ca.pem").1,
            TlsSettings::new(SslMode::VerifyFull).root_cert_file("/ca.pem")
        );
        // An explicit mode wins.
        assert_eq!(
            parse("postgres://u@db.example.com/app?sslmode=disable").1,
            TlsSettings::new(SslMode::Disable)
        );
        assert_eq!(
            parse("postgres://u@localhost/app?sslmode=prefer").1,
            TlsSettings::new(SslMode::Prefer)
        );
        assert_eq!(
            parse("postgres://u@h/app?sslmode=verify-full&sslrootcert=system").1,
            TlsSettings::new(SslMode::VerifyFull)
        );
    }

    #[test]
    fn a_config_follows_the_same_rule() {
        let mut config = tokio_postgres::Config::new();
        config.host("db.example.com");
        assert_eq!(TlsSettings::default_for(&config).mode, SslMode::VerifyFull);
        config.ssl_mode(PgSslMode::Require);
        assert_eq!(TlsSettings::default_for(&config).mode, SslMode::Require);
        config.ssl_mode(PgSslMode::Disable);
        assert_eq!(TlsSettings::default_for(&config).mode, SslMode::Disable);
        let mut local = tokio_postgres::Config::new();
        local.host("127.0.0.1");
        assert_eq!(TlsSettings::default_for(&local).mode, SslMode::Disable);
    }

    #[test]
    fn bad_tls_parameters_are_config_errors() {
        for (url, expected) in [
            (
                "postgres://u@h/d?sslmode=allow",
                "sslmode \"allow\" is not one of",
            ),
            ("postgres://u@h/d?sslmode=VERIFY-FULL", "is not one of"),
            (
                "postgres://u@h/d?sslmode=require&sslrootcert=system",
                "sslmode require may not be used with sslrootcert=system",
            ),
            ("host=h sslmode=nope", "is not one of"),
        ] {
            match parse_database_url(url) {
                Err(Error::Config(message)) => {
                    assert!(message.contains(expected), "{url}: {message}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        match build_pool(
            "postgres://u@h/d?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
            &PoolSettings::default(),
        ) {
            Err(Error::Config(message)) => assert!(message.starts_with("sslrootcert"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn half_open_detection_keepalive_and_user_timeout_unless_configured() {
        let (mut config, _) = parse("postgres://u@db.example.com/app");
        detect_dead_peers(&mut config);
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));

        let (mut config, _) = parse(
            "host=db.example.com keepalives_idle=120 keepalives_interval=4 \
             keepalives_retries=9 tcp_user_timeout=5",
        );
        detect_dead_peers(&mut config);
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(120));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(4))
        );
        assert_eq!(config.get_keepalives_retries(), Some(9));
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));

        let (mut config, _) = parse("postgres://u@db.example.com/app?keepalives=0");
        detect_dead_peers(&mut config);
        assert!(!config.get_keepalives());
        assert_eq!(config.get_keepalives_interval(), None);
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
    }

    #[test]
    fn options_keep_the_callers_and_pin_read_committed() {
        let mut config = tokio_postgres::Config::new();
        config.options("-c search_path=app");
        append_option(&mut config, ISOLATION_OPTION);
        append_option(&mut config, "-c statement_timeout=250");
        assert_eq!(
            config.get_options(),
            Some(concat!(
                r"-c search_path=app -c default_transaction_isolation=read\ committed",
                " -c statement_timeout=250"
            ))
        );
    }
}
