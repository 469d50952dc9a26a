//! The browser's cookies: the refresh token (sent only to the refresh path) and the page's
//! access token.

use auth_sessions::RefreshToken;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::state::AppState;

/// The refresh cookie's name.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// The only path the browser sends the refresh cookie to (`/refresh` and `/refresh/page`).
pub const REFRESH_PATH: &str = "/refresh";

/// The page's access-token cookie.
pub const ACCESS_COOKIE: &str = "access_token";

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

/// Removes both cookies.
pub fn signed_out(jar: CookieJar) -> CookieJar {
    without_refresh_cookie(jar).add(removal(ACCESS_COOKIE, "/"))
}

/// Sets both cookies.
pub fn signed_in(
    jar: CookieJar,
    refresh: &RefreshToken,
    access: &str,
    state: &AppState,
) -> CookieJar {
    jar.add(refresh_cookie(refresh, state))
        .add(access_cookie(access, state))
}
