//! Settings, shared state, the router and its middleware, and the extractors the handlers use.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use auth_sessions::deadpool_postgres::Pool;
use auth_sessions::{RefreshToken, Rotation, Session, SessionKey, SessionRepo};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Router, middleware};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::jwt::AccessTokens;
use crate::password::Passwords;
use crate::telemetry;
use crate::{api, pages};

/// Everything configurable. `Debug` prints no secret.
#[derive(Clone)]
pub struct Settings {
    /// The HS256 secret of access tokens (at least 32 bytes).
    pub jwt_secret: Vec<u8>,
    /// Lifetime of access tokens. Default 5 minutes.
    pub access_ttl: Duration,
    /// Absolute lifetime of a session (its refresh tokens). Default 30 days.
    pub refresh_ttl: Duration,
    /// A header set by a trusted reverse proxy with the client address (its last entry is
    /// used, e.g. `X-Forwarded-For`). `None`: the socket's peer address.
    pub trusted_proxy_header: Option<HeaderName>,
    /// Login attempts per client address: a burst, replenished at this many per minute.
    pub login_per_minute: NonZeroU32,
    /// Burst size of the login limiter.
    pub login_burst: NonZeroU32,
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
            .field("login_per_minute", &self.login_per_minute)
            .field("login_burst", &self.login_burst)
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
            login_per_minute: NonZeroU32::new(10).unwrap(),
            login_burst: NonZeroU32::new(5).unwrap(),
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
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Bounds the argon2id verifications running at once (each holds `m` KiB of memory):
    /// twice the cores; further logins wait their turn.
    hashing: Arc<tokio::sync::Semaphore>,
}

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
        let quota = Quota::per_minute(settings.login_per_minute).allow_burst(settings.login_burst);
        Ok(Self {
            repo,
            tokens: Arc::new(tokens),
            passwords: Arc::new(passwords),
            limiter: Arc::new(RateLimiter::keyed(quota)),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            settings: Arc::new(settings),
        })
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        self.repo.pool()
    }

    /// Refuses a login attempt from `ip` beyond the limiter's quota.
    pub fn check_login_rate(
        &self,
        ip: Option<IpAddr>,
        route: &'static str,
    ) -> Result<(), ApiError> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        let key = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.limiter.check_key(&key).map_err(|_| {
            metrics::counter!(telemetry::RATE_LIMITED, "route" => route).increment(1);
            tracing::info!(target: "security", client = %key, "login rate limited");
            ApiError::RateLimited
        })
    }

    /// Checks that the session an access token names is still live, in one routed statement
    /// that also records activity (throttled by the crate). No cache: a revocation by any
    /// instance is seen at the next request.
    pub async fn authorise(&self, key: SessionKey, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match self.repo.record_activity(key, ip).await? {
            Some(_) => Ok(()),
            None => {
                metrics::counter!(telemetry::DEAD_SESSIONS).increment(1);
                Err(ApiError::Unauthorized("session revoked or expired"))
            }
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
        self.check_login_rate(ip, route)?;
        let checked = (|| {
            let email = crate::users::normalise_email(email)?;
            crate::users::check_password(password)?;
            let device = match device {
                Some(device) => Some(check_device_label(device)?),
                None => user_agent.map(|ua| truncate(ua, auth_sessions::MAX_DEVICE_INFO_CHARS)),
            };
            Ok::<_, ApiError>((email, device))
        })();
        let (email, device) = checked.inspect_err(|_| {
            metrics::counter!(telemetry::LOGIN_FAILURES, "reason" => "bad_request").increment(1);
        })?;
        let found = crate::users::find_credentials(self.pool(), &email).await?;
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
        let (session, token) = self.repo.create(&new).await?;
        let access = self
            .tokens
            .issue(session.key())
            .map_err(|_| ApiError::Internal)?;
        metrics::counter!(telemetry::LOGINS).increment(1);
        tracing::info!(user_id = %session.user_id, session_id = %session.id, "login");
        Ok((session, token, access))
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

/// The router of one instance: the JSON API, the devices page, `/metrics`, with tower-http's
/// request ids, tracing (Authorization, Cookie and Set-Cookie marked sensitive), timeout and
/// body limit.
pub fn router(state: AppState) -> Router {
    let timeout = state.settings.request_timeout;
    let limit = state.settings.body_limit;
    Router::new()
        .route("/login", post(api::login))
        .route("/refresh", post(api::refresh))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/sessions", get(api::sessions))
        .route("/sessions/revoke-others", post(api::revoke_others))
        .route("/sessions/{id}", delete(api::revoke_one))
        .route("/", get(|| async { Redirect::to("/devices") }))
        .route("/devices", get(pages::devices))
        .route("/devices/login", get(pages::login_form).post(pages::login))
        .route("/devices/logout", post(pages::logout))
        .route("/devices/revoke-others", post(pages::revoke_others))
        .route("/devices/{id}/revoke", post(pages::revoke))
        .route("/refresh/page", get(pages::refresh))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::body_for(StatusCode::NOT_FOUND, "no such endpoint") })
        // Each `Router::layer` wraps every route (and the fallback) again, innermost first:
        // the JSON error bodies see the body limit's 413 and the timeout's 408.
        .layer(middleware::from_fn(telemetry::track))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    AUTHORIZATION,
                    COOKIE,
                ]))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
                        let id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|id| id.to_str().ok())
                            .unwrap_or("-");
                        // The path only: never the query string, never a header.
                        tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id = %id,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE])),
        )
        .with_state(state)
}

/// Gives every error response without a body type of ours (axum's rejections, the timeout,
/// the body limit, 405) a JSON body `{"error", "message"}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let typed = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if typed {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let mut fresh = ApiError::body_for(status, &message);
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// Serves `app` on `listener` until `shutdown` completes, with peer addresses available.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Starts an instance on `127.0.0.1:0`: its address and its task (for tests and the bench).
pub async fn spawn_on_loopback(
    state: AppState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(serve(listener, app, std::future::pending()));
    Ok((addr, task))
}

// ---------------------------------------------------------------------------------------------
// Extractors
// ---------------------------------------------------------------------------------------------

/// The client's address: the trusted proxy header's last entry when configured and valid, else
/// the socket's peer.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(state, &parts.headers, parts)))
    }
}

fn client_ip(state: &AppState, headers: &HeaderMap, parts: &Parts) -> Option<IpAddr> {
    if let Some(name) = &state.settings.trusted_proxy_header
        && let Some(ip) = headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
    {
        return Some(ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// A request authorised by a bearer access token whose session is still live.
#[derive(Debug, Clone, Copy)]
pub struct Authed {
    /// The session (and user) the token names.
    pub key: SessionKey,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing bearer access token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized("malformed Authorization header"))?;
        let key = state
            .tokens
            .verify(token.trim())
            .ok_or(ApiError::Unauthorized("invalid or expired access token"))?;
        let ip = client_ip(state, &parts.headers, parts);
        state.authorise(key, ip).await?;
        Ok(Self { key })
    }
}

/// A JSON body: `Content-Type: application/json`, within the body limit, deserialised with the
/// failing field's path in the message and never the offending value (it may be a secret).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("cannot read the request body".into())
                }
            })?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            ApiError::BadRequest(describe_json_error(&path, &inner))
        })?;
        deserializer
            .end()
            .map_err(|err| ApiError::BadRequest(describe_json_error(".", &err)))?;
        Ok(Self(value))
    }
}

fn describe_json_error(path: &str, err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!(
                "malformed JSON at line {} column {}",
                err.line(),
                err.column()
            )
        }
        Category::Data => {
            let text = err.to_string();
            // serde names missing and unknown fields without echoing any value.
            if text.starts_with("missing field") || text.starts_with("unknown field") {
                let text = text.split(" at line ").next().unwrap_or(&text);
                format!("invalid JSON body: {text}")
            } else {
                format!("invalid JSON body: wrong type or value at `{path}`")
            }
        }
    }
}

impl IntoResponse for SetupError {
    fn into_response(self) -> Response {
        ApiError::Internal.into_response()
    }
}
