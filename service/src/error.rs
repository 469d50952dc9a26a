//! `ApiError`: every failure of the JSON API as one status and a short JSON body
//! `{"error": code, "message": text}`. Never a database message, never a secret.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (body, field, path); the message says what.
    #[error("{0}")]
    BadRequest(String),
    /// The body is not `application/json`.
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// The body is larger than the service accepts.
    #[error("request body too large")]
    PayloadTooLarge,
    /// Unknown e-mail or wrong password: one answer for both.
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// No usable access token, or its session is no longer live.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The refresh token was refused; the code says why (`token_reused`, `revoked`, ...).
    #[error("refresh token refused: {0}")]
    RefreshRefused(&'static str),
    /// No such session of this user.
    #[error("no such session")]
    NotFound,
    /// The e-mail address is taken (user creation).
    #[error("this e-mail address is already registered")]
    EmailTaken,
    /// Too many login attempts (see the README's throttling section); retry after this many
    /// seconds (the `Retry-After` header).
    #[error("too many login attempts, try again later")]
    RateLimited(u64),
    /// A state-changing request from another origin (see `plumbing::origin`).
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// The database is unreachable or busy.
    #[error("service temporarily unavailable")]
    Unavailable,
    /// Anything else: logged, never described to the client.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidCredentials | Self::Unauthorized(_) | Self::RefreshRefused(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::EmailTaken => StatusCode::CONFLICT,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::CrossOrigin => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthorized(_) => "unauthorized",
            Self::RefreshRefused(code) => code,
            Self::NotFound => "not_found",
            Self::EmailTaken => "email_taken",
            Self::RateLimited(_) => "rate_limited",
            Self::CrossOrigin => "cross_origin",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// A JSON error response for a bare status (used for responses produced by middleware).
    pub fn body_for(status: StatusCode, message: &str) -> Response {
        (
            status,
            Json(json!({"error": status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"), "message": message})),
        )
            .into_response()
    }
}

impl ApiError {
    /// Adds this error's `Retry-After` (a 429's) to `response`, e.g. a page rendering it.
    pub fn add_retry_after(&self, response: &mut Response) {
        if let Self::RateLimited(secs) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*secs),
            );
        }
    }

    /// This error's body with another status (the fallback's 404).
    pub fn with_status(self, status: StatusCode) -> Response {
        let mut response = self.into_response();
        *response.status_mut() = status;
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(json!({"error": self.code(), "message": self.to_string()})),
        )
            .into_response();
        self.add_retry_after(&mut response);
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<auth_sessions::Error> for ApiError {
    fn from(err: auth_sessions::Error) -> Self {
        use auth_sessions::Error as E;
        match err {
            E::InvalidInput { field, problem } => {
                Self::BadRequest(format!("invalid {field}: {problem}"))
            }
            E::MalformedToken => Self::RefreshRefused("malformed_token"),
            E::UnknownUser => Self::Unauthorized("unknown user"),
            E::PoolTimeout
            | E::Connect(_)
            | E::Pool(_)
            | E::StatementTimeout
            | E::DeadlineExceeded => {
                tracing::warn!(error = %ErrorChain(&err), "database unavailable");
                Self::Unavailable
            }
            err => {
                tracing::error!(error = %ErrorChain(&err), "session store error");
                Self::Internal
            }
        }
    }
}

impl From<deadpool_postgres_error::PoolError> for ApiError {
    fn from(err: deadpool_postgres_error::PoolError) -> Self {
        tracing::warn!(error = %ErrorChain(&err), "database pool unavailable");
        Self::Unavailable
    }
}

impl From<deadpool_postgres_error::PgError> for ApiError {
    fn from(err: deadpool_postgres_error::PgError) -> Self {
        tracing::error!(error = %ErrorChain(&err), "database error");
        Self::Internal
    }
}

mod deadpool_postgres_error {
    pub use auth_sessions::deadpool_postgres::PoolError;
    pub use auth_sessions::deadpool_postgres::tokio_postgres::Error as PgError;
}

/// Displays an error with its sources, `a: b: c`, for logs. The crate's errors and the
/// driver's carry no secrets (tokens are never part of a statement's text or an error).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
