//! The extractors the handlers take: the client's address, an authorised request, a JSON body.

use std::net::{IpAddr, SocketAddr};

use auth_sessions::SessionKey;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::USER_AGENT;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::state::AppState;
use crate::error::ApiError;

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

/// The `User-Agent` header, when it is text.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok())
}

/// Parses a session id from the path: 400 with a JSON message otherwise.
pub fn parse_session_id(id: &str) -> Result<Uuid, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::BadRequest("invalid session id".into()));
    }
    Uuid::parse_str(id).map_err(|_| ApiError::BadRequest("invalid session id: not a UUID".into()))
}
