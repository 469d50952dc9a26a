//! The JSON API.

use auth_sessions::{RefreshToken, Session, SessionKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::plumbing::cookies::{REFRESH_COOKIE, refresh_cookie, without_refresh_cookie};
use crate::plumbing::{ApiJson, AppState, Authed, ClientIp, parse_session_id, user_agent};

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
    state.revoke(auth.key).await?;
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

/// `DELETE /sessions/{id}`: revokes one of the caller's sessions (204), 404 if none.
pub async fn revoke_one(
    State(state): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_session_id(&id)?;
    if state.revoke(SessionKey::new(auth.key.user_id, id)).await? {
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
    match state.revoke_all_except(auth.key).await? {
        Some(revoked) => Ok(Json(json!({ "revoked": revoked }))),
        None => Err(ApiError::Unauthorized("session revoked or expired")),
    }
}

/// `POST /sessions/revoke-all`: signs the caller out everywhere: every session of the caller,
/// this one included (`{"revoked": n}`).
pub async fn revoke_all(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<Value>, ApiError> {
    let revoked = state.revoke_all(auth.key.user_id).await?;
    tracing::info!(target: "security", user_id = %auth.key.user_id, revoked, "signed out everywhere");
    Ok(Json(json!({ "revoked": revoked })))
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
