//! The state one instance shares between requests: settings, the repository, the access-token
//! issuer, the password hasher and the login limiter, with the operations both front ends (the
//! JSON API and the devices page) perform: log in, rotate, authorise.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::{
    CapPolicy, Device, LiveSessions, RefreshToken, Rotation, Session, SessionKey, SessionRepo,
};
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use uuid::Uuid;

use super::conn::ConnLimits;
use super::throttle::{Limiter, Quota, Slot, network_of, retry_after_secs};

use crate::error::ApiError;
use crate::jwt::AccessTokens;
use crate::password::Passwords;
use crate::telemetry;

use super::naming;

/// What a login did: the new session and its tokens, and the devices it signed out. No
/// `Debug`: it holds the refresh token.
pub struct LoggedIn {
    /// The new session.
    pub session: Session,
    /// Its refresh token.
    pub refresh: RefreshToken,
    /// Its first access token.
    pub access: String,
    /// The devices (named in words) the new session pushed out at the per-user cap, least
    /// recently active first.
    pub evicted: Vec<String>,
}

/// Everything configurable. `Debug` prints no secret.
#[derive(Clone)]
pub struct Settings {
    /// The HS256 secret of access tokens (at least 32 bytes).
    pub jwt_secret: Vec<u8>,
    /// Lifetime of access tokens. Default 5 minutes.
    pub access_ttl: Duration,
    /// Absolute lifetime of a session (its refresh tokens). Default 30 days.
    pub refresh_ttl: Duration,
    /// A header set by a trusted reverse proxy with the client address, e.g.
    /// `X-Forwarded-For`. It is read only on connections from [`Self::trusted_proxies`], and
    /// the right-most address in it that is not itself a trusted proxy is the client's. `None`:
    /// the socket's peer address.
    pub trusted_proxy_header: Option<HeaderName>,
    /// The reverse proxies (networks) whose `trusted_proxy_header` is believed. Empty: none.
    pub trusted_proxies: Vec<IpNet>,
    /// The service's own origin as browsers see it (`https://auth.example.com`): state-changing
    /// requests must come from it (see `plumbing::same_origin`). `None`: the origin of the
    /// request's `Host` (either scheme). An `https` origin also turns on
    /// `Strict-Transport-Security`.
    pub public_origin: Option<String>,
    /// Failed logins per network (an IPv4 address, an IPv6 /64) per minute, after the burst;
    /// beyond, 429, except for accounts with a live session from that network.
    pub login_per_minute: NonZeroU32,
    /// Burst of failed logins per network.
    pub login_burst: NonZeroU32,
    /// Failed logins per account (from anywhere) per minute, after the burst; beyond, 429,
    /// except from networks the account has a live session from.
    pub account_per_minute: NonZeroU32,
    /// Burst of failed logins per account.
    pub account_burst: NonZeroU32,
    /// Failed logins per account and network per minute, after the burst; beyond, each
    /// attempt (a right password too) waits for its turn, up to `login_max_delay`, then 429.
    pub pair_per_minute: NonZeroU32,
    /// Burst of failed logins per account and network.
    pub pair_burst: NonZeroU32,
    /// Longest a login waits for its turn before it is answered 429 instead.
    pub login_max_delay: Duration,
    /// Connection bounds: header-read (and idle) timeout, open connections.
    pub connections: ConnLimits,
    /// argon2id parameters for new hashes and the dummy hash.
    pub argon2: argon2::Params,
    /// Longest time a request may take. Default 10 s.
    pub request_timeout: Duration,
    /// Largest request body. Default 16 KiB.
    pub body_limit: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("jwt_secret", &"[redacted]")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("trusted_proxy_header", &self.trusted_proxy_header)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("public_origin", &self.public_origin)
            .field("login_per_minute", &self.login_per_minute)
            .field("login_burst", &self.login_burst)
            .field("account_per_minute", &self.account_per_minute)
            .field("account_burst", &self.account_burst)
            .field("pair_per_minute", &self.pair_per_minute)
            .field("pair_burst", &self.pair_burst)
            .field("login_max_delay", &self.login_max_delay)
            .field("connections", &self.connections)
            .field("argon2", &self.argon2)
            .field("request_timeout", &self.request_timeout)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Settings {
    /// The defaults, with `jwt_secret`.
    pub fn new(jwt_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            jwt_secret: jwt_secret.into(),
            access_ttl: Duration::from_secs(5 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            trusted_proxy_header: None,
            trusted_proxies: Vec::new(),
            public_origin: None,
            login_per_minute: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            login_burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            account_per_minute: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            account_burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            pair_per_minute: NonZeroU32::new(12).unwrap_or(NonZeroU32::MIN),
            pair_burst: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            login_max_delay: Duration::from_secs(5),
            connections: ConnLimits::default(),
            argon2: argon2::Params::default(),
            request_timeout: Duration::from_secs(10),
            body_limit: 16 * 1024,
        }
    }
}

/// Startup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The JWT secret is too short.
    #[error("the JWT secret must be at least 32 bytes")]
    ShortSecret,
    /// argon2 refused the parameters.
    #[error(transparent)]
    Hash(#[from] crate::password::HashError),
}

/// Shared state of one service instance: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The session repository (holds the pool).
    pub repo: SessionRepo,
    /// The settings.
    pub settings: Arc<Settings>,
    /// Access-token issuer and checker.
    pub tokens: Arc<AccessTokens>,
    /// Password hasher.
    pub passwords: Arc<Passwords>,
    throttle: Arc<Throttle>,
    /// Bounds the argon2id verifications running at once (each holds `m` KiB of memory):
    /// twice the cores; further logins wait their turn.
    hashing: Arc<tokio::sync::Semaphore>,
    /// Sessions checked from memory, every ending pushed by the database; `None`: every
    /// authorised request asks the database.
    live: Option<LiveSessions>,
}

/// Longest an instance waits to hear back the endings it made itself before it empties its
/// memory instead ([`LiveSessions::caught_up`]).
const CATCH_UP: Duration = Duration::from_millis(250);

impl AppState {
    /// The state for `repo` and `settings`.
    pub fn new(repo: SessionRepo, settings: Settings) -> Result<Self, SetupError> {
        if settings.jwt_secret.len() < 32 {
            return Err(SetupError::ShortSecret);
        }
        // The recorder first, so the crate's counters are kept from the first call.
        let _ = telemetry::prometheus();
        let passwords = Passwords::new(settings.argon2.clone())?;
        let tokens = AccessTokens::new(&settings.jwt_secret, settings.access_ttl);
        let throttle = Throttle {
            networks: Limiter::new(Quota::new(settings.login_per_minute, settings.login_burst)),
            accounts: Limiter::new(Quota::new(
                settings.account_per_minute,
                settings.account_burst,
            )),
            pairs: Limiter::new(Quota::new(settings.pair_per_minute, settings.pair_burst)),
            delayed: AtomicU64::new(0),
        };
        Ok(Self {
            repo,
            tokens: Arc::new(tokens),
            passwords: Arc::new(passwords),
            throttle: Arc::new(throttle),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            settings: Arc::new(settings),
            live: None,
        })
    }

    /// Authorises requests from memory with `live` (see [`AppState::authorise`]).
    pub fn with_live_sessions(mut self, live: LiveSessions) -> Self {
        self.live = Some(live);
        self
    }

    /// The in-memory session check, when the instance uses one.
    pub fn live_sessions(&self) -> Option<&LiveSessions> {
        self.live.as_ref()
    }

    /// After this instance ended sessions itself: its own next check refuses them (the push
    /// reaches it a moment later; this waits for it, or empties memory).
    async fn ended_here(&self) {
        if let Some(live) = &self.live {
            live.caught_up(CATCH_UP).await;
        }
    }

    /// Revokes one session of a user (`false`: none live by that key), seen at once by this
    /// instance's next request and pushed to the others.
    pub async fn revoke(&self, key: SessionKey) -> Result<bool, ApiError> {
        let revoked = self.repo.revoke(key).await?;
        self.ended_here().await;
        Ok(revoked)
    }

    /// Revokes every other session of `current`'s user (`None`: `current` is not live).
    pub async fn revoke_all_except(&self, current: SessionKey) -> Result<Option<u64>, ApiError> {
        let revoked = self.repo.revoke_all_except(current).await?;
        self.ended_here().await;
        Ok(revoked)
    }

    /// Revokes every session of the user: how many.
    pub async fn revoke_all(&self, user_id: Uuid) -> Result<u64, ApiError> {
        let revoked = self.repo.revoke_all(user_id).await?;
        self.ended_here().await;
        Ok(revoked)
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        self.repo.pool()
    }

    /// Logins that waited for their turn (throttled per account and network) so far.
    pub fn delayed_logins(&self) -> u64 {
        self.throttle.delayed.load(Ordering::Relaxed)
    }

    /// Reserves a login attempt's slots in the three limits, waiting for its turn when the
    /// account and network are over their quota: the slots to give back if the login
    /// succeeds, or 429 with the seconds to wait.
    async fn throttle(
        &self,
        email: &str,
        ip: Option<IpAddr>,
        user_id: Option<Uuid>,
        route: &'static str,
    ) -> Result<Reserved, ApiError> {
        let network = network_of(ip.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let now = Instant::now();
        let throttle = &self.throttle;
        let mut reserved = Reserved {
            network: None,
            account: None,
            pair: (email.to_owned(), network),
        };
        let mut over = None;
        match throttle.networks.reserve(&network, now, Duration::ZERO) {
            Slot::After(_) => reserved.network = Some(network),
            Slot::Refused(wait) => over = Some(("network", wait)),
        }
        match throttle
            .accounts
            .reserve(&reserved.pair.0, now, Duration::ZERO)
        {
            Slot::After(_) => reserved.account = Some(reserved.pair.0.clone()),
            Slot::Refused(wait) => {
                over =
                    Some(over.map_or(("account", wait), |(limit, other)| (limit, other.max(wait))))
            }
        }
        if let Some((limit, wait)) = over {
            let known = match user_id {
                Some(user_id) => self.known_network(user_id, network).await?,
                None => false,
            };
            if !known {
                self.release(&reserved, false);
                return Err(self.limited(route, limit, network, wait));
            }
        }
        match throttle
            .pairs
            .reserve(&reserved.pair, now, self.settings.login_max_delay)
        {
            Slot::After(wait) if wait.is_zero() => {}
            Slot::After(wait) => {
                throttle.delayed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(telemetry::LOGIN_DELAYS, "route" => route).increment(1);
                tokio::time::sleep(wait).await;
            }
            Slot::Refused(wait) => {
                self.release(&reserved, false);
                return Err(self.limited(route, "account_network", network, wait));
            }
        }
        Ok(reserved)
    }

    fn limited(
        &self,
        route: &'static str,
        limit: &'static str,
        network: IpNet,
        wait: Duration,
    ) -> ApiError {
        metrics::counter!(telemetry::RATE_LIMITED, "route" => route, "limit" => limit).increment(1);
        tracing::info!(target: "security", client = %network, limit, "login rate limited");
        ApiError::RateLimited(retry_after_secs(wait))
    }

    /// Gives reserved slots back: those of the network and account, and the pair's if `pair`.
    fn release(&self, reserved: &Reserved, pair: bool) {
        if let Some(network) = &reserved.network {
            self.throttle.networks.release(network);
        }
        if let Some(account) = &reserved.account {
            self.throttle.accounts.release(account);
        }
        if pair {
            self.throttle.pairs.release(&reserved.pair);
        }
    }

    /// Whether the user has a live session from `network`: their own network, exempt from the
    /// per-network and per-account limits (which an attacker could otherwise fill to lock the
    /// owner out).
    async fn known_network(&self, user_id: Uuid, network: IpNet) -> Result<bool, ApiError> {
        let devices = self.repo.list_devices(user_id).await?;
        Ok(devices
            .iter()
            .filter_map(|device| device.ip_address)
            .any(|ip| network_of(ip) == network))
    }

    /// Checks that the session an access token names is still live, and records activity.
    ///
    /// With live sessions ([`AppState::with_live_sessions`]): from memory for a session this
    /// instance met recently, every ending pushed by the database within the configured
    /// staleness bound, activity written in batches; no statement per request. Without: one
    /// routed statement per request (`record_activity`, which writes rarely). Either way a
    /// revocation by any instance is refused by every instance, at once or within the bound.
    pub async fn authorise(&self, key: SessionKey, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let live = match &self.live {
            Some(live) => match live.check(key).await? {
                Some(_) => {
                    live.record_activity(key, ip);
                    true
                }
                None => false,
            },
            None => self.repo.record_activity(key, ip).await?.is_some(),
        };
        if live {
            Ok(())
        } else {
            metrics::counter!(telemetry::DEAD_SESSIONS).increment(1);
            Err(ApiError::Unauthorized("session revoked or expired"))
        }
    }

    /// Verifies a password and creates a session: the login of both the API and the page.
    pub async fn login(
        &self,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
        email: &str,
        password: &str,
        device: Option<&str>,
        route: &'static str,
    ) -> Result<(Session, RefreshToken, String), ApiError> {
        let done = self
            .login_replacing(ip, user_agent, email, password, device, route, None)
            .await?;
        Ok((done.session, done.refresh, done.access))
    }

    /// Verifies a password and creates a session, first revoking session `replaces` when it is
    /// one of this user's (the session a browser still holds when it signs in again), so that
    /// it neither stays live nor counts against the per-user cap. Reports the devices the new
    /// session pushed out at the cap.
    #[allow(clippy::too_many_arguments)]
    pub async fn login_replacing(
        &self,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
        email: &str,
        password: &str,
        device: Option<&str>,
        route: &'static str,
        replaces: Option<Uuid>,
    ) -> Result<LoggedIn, ApiError> {
        let checked = (|| {
            let email = crate::users::normalise_email(email)?;
            crate::users::check_login_password(password)?;
            let device = match device {
                Some(device) => Some(check_device_label(device)?),
                None => user_agent.map(|ua| {
                    naming::device_in_words(ua)
                        .unwrap_or_else(|| truncate(ua, auth_sessions::MAX_DEVICE_INFO_CHARS))
                }),
            };
            Ok::<_, ApiError>((email, device))
        })();
        let (email, device) = checked.inspect_err(|_| {
            metrics::counter!(telemetry::LOGIN_FAILURES, "reason" => "bad_request").increment(1);
        })?;
        let found = crate::users::find_credentials(self.pool(), &email).await?;
        let reserved = self
            .throttle(&email, ip, found.as_ref().map(|(id, _)| *id), route)
            .await?;
        let passwords = Arc::clone(&self.passwords);
        let stored = found.as_ref().map(|(_, hash)| hash.clone());
        let attempt = password.to_owned();
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::Internal)?;
        let matches =
            tokio::task::spawn_blocking(move || passwords.verify(&attempt, stored.as_deref()))
                .await
                .map_err(|_| ApiError::Internal)?;
        let Some((user_id, _)) = found.filter(|_| matches) else {
            metrics::counter!(telemetry::LOGIN_FAILURES, "reason" => "invalid_credentials")
                .increment(1);
            tracing::info!(target: "security", client = ?ip, "login failed");
            return Err(ApiError::InvalidCredentials);
        };
        // Only failures count: a successful login gives its slots back.
        self.release(&reserved, true);
        let mut new = auth_sessions::NewSession::new(user_id, self.settings.refresh_ttl);
        if let Some(device) = device {
            new = new.with_device_info(device);
        }
        if let Some(ip) = ip {
            new = new.with_ip_address(ip);
        }
        if let Some(ua) = user_agent {
            new = new.with_user_agent(truncate(ua, auth_sessions::MAX_USER_AGENT_CHARS));
        }
        if let Some(old) = replaces {
            self.revoke(SessionKey::new(user_id, old)).await?;
        }
        let at_cap = self.devices_at_cap(user_id).await?;
        let (session, token) = self.repo.create(&new).await?;
        let evicted = match at_cap {
            Some(before) => {
                // The evicted device's access token is refused here at once too.
                self.ended_here().await;
                let after = self.repo.list_devices(user_id).await?;
                before
                    .iter()
                    .rev()
                    .filter(|old| !after.iter().any(|now| now.id == old.id))
                    .map(|old| naming::device_label(old.device_info.as_deref()))
                    .collect()
            }
            None => Vec::new(),
        };
        let access = self
            .tokens
            .issue(session.key())
            .map_err(|_| ApiError::Internal)?;
        metrics::counter!(telemetry::LOGINS).increment(1);
        tracing::info!(
            user_id = %session.user_id,
            session_id = %session.id,
            replaced = replaces.is_some(),
            evicted = evicted.len(),
            "login"
        );
        Ok(LoggedIn {
            session,
            refresh: token,
            access,
            evicted,
        })
    }

    /// The user's devices when they fill the cap and a new session would evict one; `None`
    /// otherwise (no cap, a refusing cap, or room left).
    async fn devices_at_cap(&self, user_id: Uuid) -> Result<Option<Vec<Device>>, ApiError> {
        let policy = self.repo.policy();
        let Some(cap) = policy.max_sessions_per_user else {
            return Ok(None);
        };
        if policy.at_cap != CapPolicy::EvictLeastRecentlyActive {
            return Ok(None);
        }
        let devices = self.repo.list_devices(user_id).await?;
        Ok((devices.len() as u64 >= u64::from(cap)).then_some(devices))
    }

    /// Rotates a refresh token: the new refresh token and a new access token, or why not. A
    /// reused token is logged as a security event (the crate has revoked the session).
    pub async fn rotate(
        &self,
        presented: &str,
        ip: Option<IpAddr>,
    ) -> Result<(Session, RefreshToken, String), ApiError> {
        let outcome = match self.repo.rotate(presented).await {
            Ok(outcome) => outcome,
            Err(auth_sessions::Error::MalformedToken) => {
                metrics::counter!(telemetry::REFRESHES, "outcome" => "malformed").increment(1);
                return Err(ApiError::RefreshRefused("malformed_token"));
            }
            Err(err) => return Err(err.into()),
        };
        let refused = match outcome {
            Rotation::Rotated { session, token } => {
                metrics::counter!(telemetry::REFRESHES, "outcome" => "rotated").increment(1);
                let access = self
                    .tokens
                    .issue(session.key())
                    .map_err(|_| ApiError::Internal)?;
                return Ok((session, token, access));
            }
            Rotation::TokenReused {
                session_id,
                user_id,
            } => {
                tracing::warn!(
                    target: "security",
                    %user_id,
                    %session_id,
                    client = ?ip,
                    "refresh token reused: session revoked (suspected theft)"
                );
                self.ended_here().await;
                "token_reused"
            }
            Rotation::Expired => "expired",
            Rotation::IdleTimedOut => "idle_timed_out",
            Rotation::Revoked(_) => "revoked",
            Rotation::Unknown => "unknown_token",
            _ => "refused",
        };
        metrics::counter!(telemetry::REFRESHES, "outcome" => refused).increment(1);
        Err(ApiError::RefreshRefused(refused))
    }
}

/// The login limits of one instance.
#[derive(Debug)]
struct Throttle {
    networks: Limiter<IpNet>,
    accounts: Limiter<String>,
    pairs: Limiter<(String, IpNet)>,
    delayed: AtomicU64,
}

/// The slots one login attempt holds.
struct Reserved {
    network: Option<IpNet>,
    account: Option<String>,
    pair: (String, IpNet),
}

fn check_device_label(device: &str) -> Result<String, ApiError> {
    if device.contains('\0') {
        return Err(ApiError::BadRequest(
            "invalid device: contains a NUL byte".into(),
        ));
    }
    if device.chars().count() > auth_sessions::MAX_DEVICE_INFO_CHARS {
        return Err(ApiError::BadRequest(format!(
            "invalid device: longer than {} characters",
            auth_sessions::MAX_DEVICE_INFO_CHARS
        )));
    }
    Ok(device.to_owned())
}

/// At most `max` characters of `text`.
pub fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl IntoResponse for SetupError {
    fn into_response(self) -> Response {
        ApiError::Internal.into_response()
    }
}
