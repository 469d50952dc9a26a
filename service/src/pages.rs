//! "Your devices": plain server-rendered HTML.
//!
//! The page's browser session is two cookies, both `HttpOnly`, `Secure` and `SameSite=Strict`:
//! the access token (path `/`, lives as long as the token) and the refresh token (path
//! `/refresh` only). When the access cookie is missing or its session is no longer live,
//! `/devices` redirects to `/refresh/page`, the one page the refresh cookie is sent to, which
//! rotates it and comes back, or, when the refresh token is refused, sends the browser to the
//! login form.
//!
//! CSRF: every state change is a POST, and the cookies are `SameSite=Strict`, so a request
//! started by another site carries none of them and is refused as unauthenticated. Requests
//! whose `Sec-Fetch-Site` says `cross-site` are refused outright as well.

use std::net::IpAddr;

use auth_sessions::{Device, SessionKey};
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use html_escape::encode_text;
use serde::Deserialize;

use crate::error::ApiError;
use crate::plumbing::cookies::{ACCESS_COOKIE, REFRESH_COOKIE, signed_in, signed_out};
use crate::plumbing::{AppState, ClientIp, parse_session_id, user_agent};

/// The login form's fields. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%}}td,th{{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}}\
         .current{{background:#eef6ee}}.error{{color:#a00}}form.inline{{display:inline}}\
         label{{display:block;margin:.5rem 0}}</style></head><body>{body}</body></html>",
        title = encode_text(title),
    );
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        page,
    )
        .into_response()
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|text| format!("<p class=\"error\" id=\"error\">{}</p>", encode_text(text)))
        .unwrap_or_default();
    html(
        status,
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{message}\
             <form method=\"post\" action=\"/devices/login\" id=\"login\">\
             <label>E-mail <input type=\"email\" name=\"email\" id=\"email\" required autocomplete=\"username\"></label>\
             <label>Password <input type=\"password\" name=\"password\" id=\"password\" required autocomplete=\"current-password\"></label>\
             <button type=\"submit\" id=\"sign-in\">Sign in</button></form>"
        ),
    )
}

fn device_row(device: &Device, current: bool) -> String {
    let label = device.device_info.as_deref().unwrap_or("unknown device");
    let address = device
        .ip_address
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    let last = device.last_active_at.format("%Y-%m-%d %H:%M:%S UTC");
    let (class, marker, action) = if current {
        (
            "device current",
            " <strong>(this device)</strong>",
            "<form class=\"inline\" method=\"post\" action=\"/devices/logout\">\
             <button type=\"submit\" class=\"sign-out\">Sign out</button></form>"
                .to_owned(),
        )
    } else {
        (
            "device",
            "",
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/devices/{}/revoke\">\
                 <button type=\"submit\" class=\"sign-out\">Sign out</button></form>",
                device.id
            ),
        )
    };
    format!(
        "<tr class=\"{class}\" data-session=\"{id}\"><td class=\"label\">{label}{marker}</td>\
         <td class=\"address\">{address}</td><td class=\"last-active\">{last}</td><td>{action}</td></tr>",
        id = device.id,
        label = encode_text(label),
        address = encode_text(&address),
    )
}

/// Who the page's access cookie names, if its session is still live.
async fn page_session(
    state: &AppState,
    jar: &CookieJar,
    ip: Option<IpAddr>,
) -> Result<Option<SessionKey>, ApiError> {
    let Some(key) = jar
        .get(ACCESS_COOKIE)
        .and_then(|cookie| state.tokens.verify(cookie.value()))
    else {
        return Ok(None);
    };
    match state.authorise(key, ip).await {
        Ok(()) => Ok(Some(key)),
        Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("cross-site"))
}

fn error_page(err: ApiError) -> Response {
    html(
        err.status(),
        "Error",
        &format!("<p class=\"error\">{}</p>", encode_text(&err.to_string())),
    )
}

/// `GET /devices`: the list, or a detour through `/refresh/page`.
pub async fn devices(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
) -> Response {
    let key = match page_session(&state, &jar, ip).await {
        Ok(Some(key)) => key,
        Ok(None) => return Redirect::to("/refresh/page").into_response(),
        Err(err) => return error_page(err),
    };
    let devices = match state.repo.list_devices(key.user_id).await {
        Ok(devices) => devices,
        Err(err) => return error_page(err.into()),
    };
    let rows: String = devices
        .iter()
        .map(|device| device_row(device, device.id == key.session_id))
        .collect();
    html(
        StatusCode::OK,
        "Your devices",
        &format!(
            "<h1>Your devices</h1><p id=\"count\">{count} signed-in device(s)</p>\
             <table id=\"devices\"><thead><tr><th>Device</th><th>Address</th>\
             <th>Last active</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
             <p><form method=\"post\" action=\"/devices/revoke-others\">\
             <button type=\"submit\" id=\"revoke-others\">Sign out all other devices</button></form></p>",
            count = devices.len(),
        ),
    )
}

/// `GET /devices/login`: the form.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// `POST /devices/login`: signs the browser in (both cookies) and shows the devices.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return login_page(StatusCode::FORBIDDEN, Some("cross-site request refused"));
    }
    let Ok(Form(form)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("enter an e-mail address and a password"),
        );
    };
    match state
        .login(
            ip,
            user_agent(&headers),
            &form.email,
            &form.password,
            None,
            "page_login",
        )
        .await
    {
        Ok((_, refresh, access)) => (
            signed_in(jar, &refresh, &access, &state),
            Redirect::to("/devices"),
        )
            .into_response(),
        Err(err) => {
            let mut page = login_page(err.status(), Some(&err.to_string()));
            err.add_retry_after(&mut page);
            page
        }
    }
}

/// `GET /refresh/page`: rotates the refresh cookie and returns to `/devices`, or signs out.
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
) -> Response {
    let Some(presented) = jar
        .get(REFRESH_COOKIE)
        .map(|cookie| cookie.value().to_owned())
    else {
        return (signed_out(jar), Redirect::to("/devices/login")).into_response();
    };
    match state.rotate(&presented, ip).await {
        Ok((_, refresh, access)) => (
            signed_in(jar, &refresh, &access, &state),
            Redirect::to("/devices"),
        )
            .into_response(),
        Err(ApiError::RefreshRefused(_)) => {
            (signed_out(jar), Redirect::to("/devices/login")).into_response()
        }
        Err(err) => error_page(err),
    }
}

async fn with_session(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    ip: Option<IpAddr>,
) -> Result<SessionKey, Response> {
    if cross_site(headers) {
        return Err(error_page(ApiError::BadRequest(
            "cross-site request refused".into(),
        )));
    }
    match page_session(state, jar, ip).await {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(Redirect::to("/refresh/page").into_response()),
        Err(err) => Err(error_page(err)),
    }
}

/// `POST /devices/{id}/revoke`: signs one device out.
pub async fn revoke(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    let key = match with_session(&state, &headers, &jar, ip).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let id = match parse_session_id(&id) {
        Ok(id) => id,
        Err(err) => return error_page(err),
    };
    if let Err(err) = state.repo.revoke(SessionKey::new(key.user_id, id)).await {
        return error_page(err.into());
    }
    if id == key.session_id {
        return (signed_out(jar), Redirect::to("/devices/login")).into_response();
    }
    Redirect::to("/devices").into_response()
}

/// `POST /devices/revoke-others`: signs every other device out.
pub async fn revoke_others(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let key = match with_session(&state, &headers, &jar, ip).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    match state.repo.revoke_all_except(key).await {
        Ok(_) => Redirect::to("/devices").into_response(),
        Err(err) => error_page(err.into()),
    }
}

/// `POST /devices/logout`: signs this browser out.
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let key = match with_session(&state, &headers, &jar, ip).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    if let Err(err) = state.repo.revoke(key).await {
        return error_page(err.into());
    }
    (signed_out(jar), Redirect::to("/devices/login")).into_response()
}
