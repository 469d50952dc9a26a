//! The extractors the handlers take: the client's address, an authorised request, a JSON body.

use std::net::{IpAddr, SocketAddr};

use auth_sessions::SessionKey;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::USER_AGENT;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::state::AppState;
use crate::error::ApiError;

/// The client's address: the socket's peer, or, when the peer is a trusted proxy and the
/// trusted proxy header is configured, the right-most address in that header that is not
/// itself a trusted proxy (the one the first trusted hop saw).
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
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())?;
    let settings = &state.settings;
    let Some(name) = &settings.trusted_proxy_header else {
        return Some(peer);
    };
    Some(through_proxies(
        peer,
        headers,
        name,
        &settings.trusted_proxies,
    ))
}

/// The client behind a chain of trusted proxies: walking the header's entries from the right
/// (the nearest hop first), the first address that is not a trusted proxy. A peer that is no
/// trusted proxy, or an entry that is not an address, stops the walk at the last trusted hop.
pub fn through_proxies(
    peer: IpAddr,
    headers: &HeaderMap,
    name: &HeaderName,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all(name).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for entry in value.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                return client;
            };
            client = canonical(ip);
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
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
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
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
