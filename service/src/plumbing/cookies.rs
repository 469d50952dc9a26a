//! The browser's cookies: the refresh token (sent only to the refresh path), the page's access
//! token, the id of the browser's session (no secret: it lets a new page login replace the
//! session this browser still holds) and a one-time notice for the next page.

use auth_sessions::RefreshToken;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use uuid::Uuid;

use super::state::AppState;

/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// The only path the browser sends the refresh cookie to (`/refresh` and `/refresh/page`).
pub const REFRESH_PATH: &str = "/refresh";

/// The page's access-token cookie.
pub const ACCESS_COOKIE: &str = "access_token";

/// The cookie naming the browser's session: its id, no secret. A page login revokes the
/// session it names, when that session is the signing-in user's.
pub const SESSION_COOKIE: &str = "session_id";
/// The pages the session and notice cookies are sent to.
pub const PAGES_PATH: &str = "/devices";
/// A notice the next page shows once (what the last action did), then removes.
pub const NOTICE_COOKIE: &str = "notice";

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

/// Removes the refresh cookie (same name and path). Always sent, even from paths the cookie
/// never reaches (`/logout`, `/devices/logout`): a jar's `remove` would only remove a cookie
/// the request carried.
pub fn without_refresh_cookie(jar: CookieJar) -> CookieJar {
    jar.add(removal(REFRESH_COOKIE, REFRESH_PATH))
}

/// A cookie that makes the browser drop `name` at `path`: empty, expired, `Max-Age=0`.
fn removal(name: &'static str, path: &'static str) -> Cookie<'static> {
    let mut cookie = Cookie::build((name, ""))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path(path)
        .build();
    cookie.make_removal();
    cookie
}

/// The page's access cookie: HttpOnly, Secure, SameSite=Strict, as long as the token lives.
pub fn access_cookie(access: &str, state: &AppState) -> Cookie<'static> {
    Cookie::build((ACCESS_COOKIE, access.to_owned()))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(time::Duration::seconds(state.tokens.ttl().as_secs() as i64))
        .build()
}

/// The session-id cookie: HttpOnly, Secure, SameSite=Strict, sent to the pages, as long as the
/// session may live.
pub fn session_cookie(session_id: Uuid, state: &AppState) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, session_id.to_string()))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .path(PAGES_PATH)
        .max_age(time::Duration::seconds(
            state.settings.refresh_ttl.as_secs() as i64,
        ))
        .build()
}

/// The session the browser's session-id cookie names, if it holds a well-formed one.
pub fn session_named(jar: &CookieJar) -> Option<Uuid> {
    jar.get(SESSION_COOKIE)
        .and_then(|cookie| Uuid::parse_str(cookie.value()).ok())
}

/// A one-time notice (cookie-safe text) for the next page: HttpOnly, Secure, SameSite=Strict,
/// a minute at most.
pub fn with_notice(jar: CookieJar, value: String) -> CookieJar {
    jar.add(
        Cookie::build((NOTICE_COOKIE, value))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Strict)
            .path(PAGES_PATH)
            .max_age(time::Duration::seconds(60))
            .build(),
    )
}

/// Removes the notice once shown.
pub fn without_notice(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(NOTICE_COOKIE).path(PAGES_PATH))
}

/// Removes the session's cookies (refresh, access, session id), whether the request carried
/// them or not.
pub fn signed_out(jar: CookieJar) -> CookieJar {
    without_refresh_cookie(jar)
        .add(removal(ACCESS_COOKIE, "/"))
        .add(removal(SESSION_COOKIE, PAGES_PATH))
}

/// Sets the session's cookies (refresh, access, session id).
pub fn signed_in(
    jar: CookieJar,
    session_id: Uuid,
    refresh: &RefreshToken,
    access: &str,
    state: &AppState,
) -> CookieJar {
    jar.add(refresh_cookie(refresh, state))
        .add(access_cookie(access, state))
        .add(session_cookie(session_id, state))
}
