//! The JSON API.

use auth_sessions::{RefreshToken, Session, SessionKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{ApiJson, AppState, Authed, ClientIp};
use crate::error::ApiError;

/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// The only path the browser sends the refresh cookie to (`/refresh` and `/refresh/page`).
pub const REFRESH_PATH: &str = "/refresh";
/// Longest refresh token accepted before parsing (a real one is 125 characters).
const MAX_REFRESH_TOKEN_CHARS: usize = 256;

/// `POST /login`. `device` defaults to the `User-Agent`; `cookie: true` (browsers) puts the
/// refresh token in an HttpOnly cookie instead of the body. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    cookie: bool,
}

/// `POST /refresh`: the token in the body (native clients) or, when absent, the cookie.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The refresh cookie: HttpOnly, Secure, SameSite=Strict, sent only to the refresh path.
pub fn refresh_cookie(token: &RefreshToken, state: &AppState) -> Cookie<'static> {
    Cookie::build((REFRESH_COOKIE, token.expose_secret().to_owned()))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path(REFRESH_PATH)
        .max_age(time::Duration::seconds(
            state.settings.refresh_ttl.as_secs() as i64,
        ))
        .build()
}

/// Removes the refresh cookie (same name and path).
pub fn without_refresh_cookie(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(REFRESH_COOKIE).path(REFRESH_PATH))
}

fn token_body(
    session: &Session,
    access: &str,
    refresh: Option<&RefreshToken>,
    state: &AppState,
) -> Value {
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": state.tokens.ttl().as_secs(),
        "user_id": session.user_id,
        "session_id": session.id,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = Value::from(refresh.expose_secret());
    }
    body
}

/// The `User-Agent` header, when it is text.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok())
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let (session, refresh, access) = state
        .login(
            ip,
            user_agent(&headers),
            &body.email,
            &body.password,
            body.device.as_deref(),
            "login",
        )
        .await?;
    if body.cookie {
        let jar = jar.add(refresh_cookie(&refresh, &state));
        Ok((jar, Json(token_body(&session, &access, None, &state))).into_response())
    } else {
        Ok(Json(token_body(&session, &access, Some(&refresh), &state)).into_response())
    }
}

/// `POST /refresh`: rotation. A reused token answers 401 `token_reused` and its session is
/// revoked; a retry within the grace window gets the same new token.
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Response {
    let (presented, via_cookie) = match body.refresh_token {
        Some(token) => (token, false),
        None => match jar.get(REFRESH_COOKIE) {
            Some(cookie) => (cookie.value().to_owned(), true),
            None => {
                return ApiError::BadRequest(
                    "no refresh token: send refresh_token in the body or the refresh cookie".into(),
                )
                .into_response();
            }
        },
    };
    if presented.len() > MAX_REFRESH_TOKEN_CHARS || presented.contains('\0') {
        return ApiError::RefreshRefused("malformed_token").into_response();
    }
    match state.rotate(&presented, ip).await {
        Ok((session, token, access)) if via_cookie => {
            let jar = jar.add(refresh_cookie(&token, &state));
            (jar, Json(token_body(&session, &access, None, &state))).into_response()
        }
        Ok((session, token, access)) => {
            Json(token_body(&session, &access, Some(&token), &state)).into_response()
        }
        Err(err @ ApiError::RefreshRefused(_)) if via_cookie => {
            (without_refresh_cookie(jar), err).into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// `POST /logout`: revokes the caller's session and clears the refresh cookie.
pub async fn logout(
    State(state): State<AppState>,
    auth: Authed,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    state.repo.revoke(auth.key).await?;
    Ok((without_refresh_cookie(jar), StatusCode::NO_CONTENT).into_response())
}

/// `GET /me`: who the access token names (the cheapest authorised call).
pub async fn me(auth: Authed) -> Json<Value> {
    Json(json!({"user_id": auth.key.user_id, "session_id": auth.key.session_id}))
}

/// `GET /sessions`: the caller's live sessions, most recently active first, current marked.
pub async fn sessions(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<Value>, ApiError> {
    let devices = state.repo.list_devices(auth.key.user_id).await?;
    let list: Vec<Value> = devices
        .iter()
        .map(|device| {
            json!({
                "id": device.id,
                "device": device.device_info,
                "ip_address": device.ip_address.map(|ip| ip.to_string()),
                "last_active_at": device.last_active_at,
                "created_at": device.created_at,
                "expires_at": device.expires_at,
                "current": device.id == auth.key.session_id,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": list })))
}

/// Parses a session id from the path: 400 with a JSON message otherwise.
pub fn parse_session_id(id: &str) -> Result<Uuid, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::BadRequest("invalid session id".into()));
    }
    Uuid::parse_str(id).map_err(|_| ApiError::BadRequest("invalid session id: not a UUID".into()))
}

/// `DELETE /sessions/{id}`: revokes one of the caller's sessions (204), 404 if none.
pub async fn revoke_one(
    State(state): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_session_id(&id)?;
    if state
        .repo
        .revoke(SessionKey::new(auth.key.user_id, id))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// `POST /sessions/revoke-others`: revokes every other session of the caller.
pub async fn revoke_others(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<Value>, ApiError> {
    match state.repo.revoke_all_except(auth.key).await? {
        Some(revoked) => Ok(Json(json!({ "revoked": revoked }))),
        None => Err(ApiError::Unauthorized("session revoked or expired")),
    }
}

/// `GET /metrics`: Prometheus text format, the crate's counters and the service's.
pub async fn metrics() -> Response {
    let handle = crate::telemetry::prometheus();
    handle.run_upkeep();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
