//! "Your devices": plain server-rendered HTML.
//!
//! The page's browser session is two cookies, both `HttpOnly`, `Secure` and `SameSite=Strict`:
//! the access token (path `/`, lives as long as the token) and the refresh token (path
//! `/refresh` only). When the access cookie is missing or its session is no longer live,
//! `/devices` redirects to `/refresh/page`, the one page the refresh cookie is sent to, which
//! rotates it and comes back, or, when the refresh token is refused, sends the browser to the
//! login form.
//!
//! A third cookie names the browser's session (its id, no secret) on the pages' paths, so that a
//! page login replaces the session the browser still holds instead of adding one more to the
//! per-user cap; a fourth carries a one-time notice to the next page ("2 devices signed out",
//! "signing in here signed out ..."). Signing this browser out, or every device, asks first.
//!
//! A link to `/devices` from another site arrives without the `SameSite=Strict` cookies. Such a
//! cookieless navigation (`Sec-Fetch-Site: cross-site`) gets a tiny page that navigates again
//! from this origin (a `<meta http-equiv="refresh">`: no script), which carries the cookies;
//! the second navigation is marked (`?from=link`) and never bounced again.
//!
//! CSRF: every state change is a POST, and every POST passes the service's same-origin rule
//! (`plumbing::origin`, a middleware before any handler: `Sec-Fetch-Site` same-origin or none,
//! else an `Origin` equal to the public origin). Besides, the cookies are `SameSite=Strict`, and
//! the handlers here refuse a `Sec-Fetch-Site: cross-site` POST once more (defence in depth).

use std::net::IpAddr;
use std::time::Duration;

use auth_sessions::{CapPolicy, Device, SessionKey};
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use html_escape::{encode_double_quoted_attribute, encode_text};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::plumbing::cookies::{
    ACCESS_COOKIE, NOTICE_COOKIE, REFRESH_COOKIE, session_named, signed_in, signed_out,
    with_notice, without_notice,
};
use crate::plumbing::naming::device_label;
use crate::plumbing::{AppState, ClientIp, LoggedIn, parse_session_id, user_agent};

/// The login form's fields. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

/// A confirmation step's field: `confirm=yes` once the user has said so.
#[derive(Deserialize)]
pub struct Confirm {
    #[serde(default)]
    confirm: Option<String>,
}

/// `/devices`' query: `from=link` marks the same-origin re-navigation of a cross-site link.
#[derive(Deserialize)]
pub struct DevicesQuery {
    #[serde(default)]
    from: Option<String>,
}

/// What the last action did, shown once by the next page (in a cookie, base64url JSON).
#[derive(Serialize, Deserialize, Default)]
struct Notice {
    /// How many devices an action signed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed_out: Option<u64>,
    /// The devices a sign-in pushed out at the per-user cap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evicted: Vec<String>,
}

impl Notice {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(value: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The notice a page shows (escaped HTML), and the jar without it.
    fn take(jar: CookieJar, state: &AppState) -> (CookieJar, String) {
        let Some(notice) = jar
            .get(NOTICE_COOKIE)
            .map(|cookie| Self::decode(cookie.value()))
        else {
            return (jar, String::new());
        };
        let html = notice.map(|n| n.html(state)).unwrap_or_default();
        (without_notice(jar), html)
    }

    fn html(&self, state: &AppState) -> String {
        let mut html = String::new();
        if let Some(count) = self.signed_out {
            let text = match count {
                0 => "No other device was signed in.".to_owned(),
                1 => "1 device signed out.".to_owned(),
                n => format!("{n} devices signed out."),
            };
            html.push_str(&format!(
                "<p class=\"notice\" id=\"notice\" role=\"status\">{text}</p>"
            ));
        }
        if !self.evicted.is_empty() {
            let mut names: Vec<String> = self
                .evicted
                .iter()
                .map(|name| format!("<strong>{}</strong>", encode_text(name)))
                .collect();
            let last = names.pop().unwrap_or_default();
            let (names, which) = if names.is_empty() {
                (last, "the device")
            } else {
                (format!("{} and {last}", names.join(", ")), "the devices")
            };
            let cap = state
                .repo
                .policy()
                .max_sessions_per_user
                .map(|cap| format!(": you can stay signed in on at most {cap} devices at once"))
                .unwrap_or_default();
            html.push_str(&format!(
                "<p class=\"notice warning\" id=\"evicted\" role=\"status\">Signing in here \
                 signed out {names}, {which} you had used least recently{cap}. Sign in there \
                 again if you still use it.</p>"
            ));
        }
        html
    }
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;\
line-height:1.45;color:#1d1d1f}\
h1{font-size:1.6rem;margin:0 0 1rem}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.5rem;border-bottom:1px solid #ddd;vertical-align:top}\
th{font-size:.85rem;color:#555}\
td.label{overflow-wrap:break-word}\
time{white-space:nowrap}\
tr.current{background:#eef6ee}\
.this{display:inline-block;font-size:.8rem;font-weight:600;color:#185c1d;background:#d6ecd8;\
border-radius:1rem;padding:0 .5rem;margin-left:.3rem;white-space:nowrap}\
.notice{background:#eef3fb;border-left:4px solid #3366cc;padding:.5rem .75rem}\
.warning{background:#fdf4e3;border-left-color:#c77c00}\
.error{color:#a00000}\
.muted{color:#555;font-size:.9rem}\
button,a.button{font:inherit;font-size:.95rem;padding:.35rem .8rem;border:1px solid #888;\
border-radius:.3rem;background:#f4f4f4;color:#1d1d1f;text-decoration:none;\
display:inline-block;cursor:pointer;white-space:nowrap}\
button.danger,a.danger{border-color:#a00000;color:#a00000}\
button.primary{background:#1d4ed8;border-color:#1d4ed8;color:#fff}\
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:1rem 0}\
form.inline{display:inline;margin:0}\
label{display:block;margin:.6rem 0}\
input{font:inherit;display:block;width:100%;max-width:24rem;box-sizing:border-box;\
padding:.35rem;margin-top:.2rem}\
@media (max-width:40rem){\
body{margin:1rem auto}\
table,tbody,tr,td{display:block}\
thead{display:none}\
tr.device{border:1px solid #ddd;border-radius:.5rem;margin:0 0 .75rem;padding:.6rem .75rem}\
td{border:0;padding:.15rem 0}\
td.label{font-size:1.1rem;font-weight:600}\
td[data-label]::before{content:attr(data-label) \": \";color:#555}\
td.action{padding-top:.5rem}}";

fn html_page(status: StatusCode, title: &str, head: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>",
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

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    html_page(status, title, "", body)
}

fn login_page(status: StatusCode, message: Option<&str>, email: &str, notice: &str) -> Response {
    let message = message
        .map(|text| {
            format!(
                "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>",
                encode_text(text)
            )
        })
        .unwrap_or_default();
    let autofocus = if email.is_empty() {
        ("autofocus", "")
    } else {
        ("", "autofocus")
    };
    html(
        status,
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{notice}{message}\
             <form method=\"post\" action=\"/devices/login\" id=\"login\">\
             <label>E-mail <input type=\"email\" name=\"email\" id=\"email\" required \
             autocomplete=\"username\" value=\"{email}\" {focus_email}></label>\
             <label>Password <input type=\"password\" name=\"password\" id=\"password\" required \
             autocomplete=\"current-password\" {focus_password}></label>\
             <button type=\"submit\" id=\"sign-in\" class=\"primary\">Sign in</button></form>",
            email = encode_double_quoted_attribute(email),
            focus_email = autofocus.0,
            focus_password = autofocus.1,
        ),
    )
}

/// A moment as people read it, with the exact instant for machines.
fn moment(at: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%-d %b %Y, %H:%M UTC")
    )
}

fn device_row(device: &Device, current: bool) -> String {
    let label = device_label(device.device_info.as_deref());
    let address = device
        .ip_address
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    let (class, marker, action) = if current {
        (
            "device current",
            " <span class=\"this\">this device</span>",
            "<a class=\"button sign-out\" href=\"/devices/logout\">Sign out</a>".to_owned(),
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
         <td class=\"signed-in\" data-label=\"Signed in\">{signed_in}</td>\
         <td class=\"address\" data-label=\"Last address\">{address}</td>\
         <td class=\"last-active\" data-label=\"Last active\">{last}</td>\
         <td class=\"action\">{action}</td></tr>",
        id = device.id,
        label = encode_text(&label),
        address = encode_text(&address),
        signed_in = moment(device.created_at),
        last = moment(device.last_active_at),
    )
}

/// A duration in the largest whole unit that fits ("14 days", "36 hours", "90 seconds").
fn in_words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (count, unit) = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ]
    .into_iter()
    .find(|(size, _)| seconds >= *size && seconds.is_multiple_of(*size))
    .map(|(size, unit)| (seconds / size, unit))
    .unwrap_or((seconds, "second"));
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

/// The session limits, as the user is bound by them.
fn limits(state: &AppState) -> String {
    let policy = state.repo.policy();
    let cap = match policy.max_sessions_per_user {
        Some(cap) if policy.at_cap == CapPolicy::EvictLeastRecentlyActive => format!(
            "You can stay signed in on at most {cap} devices at once: signing in on one more \
             signs out the one you used least recently."
        ),
        Some(cap) => format!(
            "You can stay signed in on at most {cap} devices at once: sign one out to sign \
             in on another."
        ),
        None => "You can stay signed in on any number of devices.".to_owned(),
    };
    let idle = policy
        .idle_timeout
        .map(|idle| format!(" A device unused for {} is signed out.", in_words(idle)))
        .unwrap_or_default();
    format!(
        "<p class=\"muted\" id=\"limits\">{cap}{idle} Every sign-in ends after {}.</p>",
        in_words(state.settings.refresh_ttl)
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
        &format!(
            "<h1>Something went wrong</h1><p class=\"error\" role=\"alert\">{}</p>\
             <p><a class=\"button\" id=\"back\" href=\"/devices\">Back to your devices</a></p>",
            encode_text(&err.to_string())
        ),
    )
}

/// The page that re-navigates a cookieless cross-site link from this origin, once.
fn renavigate() -> Response {
    html_page(
        StatusCode::OK,
        "Your devices",
        "<meta http-equiv=\"refresh\" content=\"0; url=/devices?from=link\">",
        "<p>Opening <a href=\"/devices?from=link\" id=\"continue\">your devices</a>&hellip;</p>",
    )
}

/// `GET /devices`: the list (this device first), or a detour through `/refresh/page`.
pub async fn devices(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<DevicesQuery>, QueryRejection>,
    jar: CookieJar,
) -> Response {
    let key = match page_session(&state, &jar, ip).await {
        Ok(Some(key)) => key,
        Ok(None) => {
            let relinked = query.is_ok_and(|Query(query)| query.from.as_deref() == Some("link"));
            if cross_site(&headers) && jar.get(ACCESS_COOKIE).is_none() && !relinked {
                return renavigate();
            }
            return Redirect::to("/refresh/page").into_response();
        }
        Err(err) => return error_page(err),
    };
    let mut devices = match state.repo.list_devices(key.user_id).await {
        Ok(devices) => devices,
        Err(err) => return error_page(err.into()),
    };
    // This device first, the others most recently active first (the crate's order).
    devices.sort_by_key(|device| device.id != key.session_id);
    let rows: String = devices
        .iter()
        .map(|device| device_row(device, device.id == key.session_id))
        .collect();
    let count = match devices.len() {
        1 => "You are signed in on 1 device.".to_owned(),
        n => format!("You are signed in on {n} devices."),
    };
    let (jar, notice) = Notice::take(jar, &state);
    let others = if devices.len() > 1 {
        "<form class=\"inline\" method=\"post\" action=\"/devices/revoke-others\">\
         <button type=\"submit\" id=\"revoke-others\">Sign out all other devices</button></form>"
    } else {
        ""
    };
    let page = html(
        StatusCode::OK,
        "Your devices",
        &format!(
            "<h1>Your devices</h1>{notice}<p id=\"count\">{count}</p>\
             <table id=\"devices\"><thead><tr><th>Device</th><th>Signed in</th><th>Last address</th>\
             <th>Last active</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
             <div class=\"actions\">{others}\
             <a class=\"button danger\" id=\"revoke-all\" href=\"/devices/revoke-all\">Sign out everywhere</a>\
             </div>{limits}",
            limits = limits(&state),
        ),
    );
    (jar, page).into_response()
}

/// `GET /devices/login`: the form (with the notice of a sign-out, if any).
pub async fn login_form(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (jar, notice) = Notice::take(jar, &state);
    (jar, login_page(StatusCode::OK, None, "", &notice)).into_response()
}

/// `POST /devices/login`: signs the browser in (its cookies) and shows the devices. The session
/// the browser still holds (named by its session-id or access cookie) is replaced, when it is
/// the signing-in user's.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if cross_site(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("cross-site request refused"),
            "",
            "",
        );
    }
    let Ok(Form(form)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("enter an e-mail address and a password"),
            "",
            "",
        );
    };
    let held = session_named(&jar).or_else(|| {
        jar.get(ACCESS_COOKIE)
            .and_then(|cookie| state.tokens.verify(cookie.value()))
            .map(|key| key.session_id)
    });
    match state
        .login_replacing(
            ip,
            user_agent(&headers),
            &form.email,
            &form.password,
            None,
            "page_login",
            held,
        )
        .await
    {
        Ok(LoggedIn {
            session,
            refresh,
            access,
            evicted,
        }) => {
            let mut jar = signed_in(jar, session.id, &refresh, &access, &state);
            if !evicted.is_empty() {
                let notice = Notice {
                    evicted,
                    ..Notice::default()
                };
                jar = with_notice(jar, notice.encode());
            }
            (jar, Redirect::to("/devices")).into_response()
        }
        Err(err) => {
            let mut page = login_page(err.status(), Some(&err.to_string()), &form.email, "");
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
        Ok((session, refresh, access)) => (
            signed_in(jar, session.id, &refresh, &access, &state),
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

/// Whether a confirmation step's form said yes.
fn confirmed(form: &Result<Form<Confirm>, FormRejection>) -> bool {
    matches!(form, Ok(Form(Confirm { confirm: Some(yes) })) if yes == "yes")
}

/// The question before signing out here (`action` `/devices/logout`) or everywhere.
fn confirm_page(action: &str, question: &str, detail: &str, button: &str) -> Response {
    html(
        StatusCode::OK,
        question,
        &format!(
            "<h1>{question}</h1><p>{detail}</p>\
             <form method=\"post\" action=\"{action}\" class=\"actions\">\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button type=\"submit\" id=\"confirm\" class=\"danger\">{button}</button>\
             <a class=\"button\" id=\"cancel\" href=\"/devices\">Cancel</a></form>",
            question = encode_text(question),
            detail = encode_text(detail),
            button = encode_text(button),
        ),
    )
}

fn confirm_logout() -> Response {
    confirm_page(
        "/devices/logout",
        "Sign out on this device?",
        "You will need your e-mail address and password to sign in here again. Your other \
         devices stay signed in.",
        "Sign out",
    )
}

fn confirm_revoke_all(count: usize) -> Response {
    let devices = match count {
        1 => "this device".to_owned(),
        n => format!("all {n} devices, this one included"),
    };
    confirm_page(
        "/devices/revoke-all",
        "Sign out everywhere?",
        &format!("This signs out {devices}. You will need your password to sign in again."),
        "Sign out everywhere",
    )
}

/// `POST /devices/{id}/revoke`: signs one other device out (this one: asks first).
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
    if id == key.session_id {
        return confirm_logout();
    }
    match state.revoke(SessionKey::new(key.user_id, id)).await {
        Ok(revoked) => {
            let notice = Notice {
                signed_out: Some(u64::from(revoked)),
                ..Notice::default()
            };
            (with_notice(jar, notice.encode()), Redirect::to("/devices")).into_response()
        }
        Err(err) => error_page(err),
    }
}

/// `POST /devices/revoke-others`: signs every other device out, and says how many.
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
    match state.revoke_all_except(key).await {
        Ok(Some(count)) => {
            let notice = Notice {
                signed_out: Some(count),
                ..Notice::default()
            };
            (with_notice(jar, notice.encode()), Redirect::to("/devices")).into_response()
        }
        Ok(None) => Redirect::to("/refresh/page").into_response(),
        Err(err) => error_page(err),
    }
}

/// `GET /devices/logout`: asks before signing this browser out.
pub async fn logout_form(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
) -> Response {
    match page_session(&state, &jar, ip).await {
        Ok(Some(_)) => confirm_logout(),
        Ok(None) => Redirect::to("/devices").into_response(),
        Err(err) => error_page(err),
    }
}

/// `POST /devices/logout`: signs this browser out once confirmed (`confirm=yes`), else asks.
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<Confirm>, FormRejection>,
) -> Response {
    let key = match with_session(&state, &headers, &jar, ip).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    if !confirmed(&form) {
        return confirm_logout();
    }
    if let Err(err) = state.revoke(key).await {
        return error_page(err);
    }
    (signed_out(jar), Redirect::to("/devices/login")).into_response()
}

/// `GET /devices/revoke-all`: asks before signing out every device, this one included.
pub async fn revoke_all_form(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
) -> Response {
    let key = match page_session(&state, &jar, ip).await {
        Ok(Some(key)) => key,
        Ok(None) => return Redirect::to("/devices").into_response(),
        Err(err) => return error_page(err),
    };
    match state.repo.list_devices(key.user_id).await {
        Ok(devices) => confirm_revoke_all(devices.len()),
        Err(err) => error_page(err.into()),
    }
}

/// `POST /devices/revoke-all`: once confirmed, signs out every device of the user, this one
/// included, and says how many on the sign-in form; else asks.
pub async fn revoke_all(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    form: Result<Form<Confirm>, FormRejection>,
) -> Response {
    let key = match with_session(&state, &headers, &jar, ip).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    if !confirmed(&form) {
        return match state.repo.list_devices(key.user_id).await {
            Ok(devices) => confirm_revoke_all(devices.len()),
            Err(err) => error_page(err.into()),
        };
    }
    match state.revoke_all(key.user_id).await {
        Ok(count) => {
            tracing::info!(target: "security", user_id = %key.user_id, count, "signed out everywhere");
            let notice = Notice {
                signed_out: Some(count),
                ..Notice::default()
            };
            (
                with_notice(signed_out(jar), notice.encode()),
                Redirect::to("/devices/login"),
            )
                .into_response()
        }
        Err(err) => error_page(err),
    }
}
