//! The same-origin rule (CSRF), once for the API and the page alike, and the security headers
//! of every response.
//!
//! A state-changing request (any method but GET, HEAD and OPTIONS) is accepted when:
//! 1. `Sec-Fetch-Site` is `same-origin` or `none` (the browser says the user or the service's
//!    own page started it); else
//! 2. `Origin` is present and equals the public origin (`Settings::public_origin`; without one,
//!    the origin of the request's `Host`, either scheme); any other `Origin` is refused, a
//!    same-site sibling's included; else
//! 3. with neither header (not a browser, or a very old one), it is accepted only when a
//!    cross-site page could not have sent it: it carries no `Cookie` and its body is not of a
//!    type an HTML form can send (`application/x-www-form-urlencoded`, `multipart/form-data`,
//!    `text/plain`). So an API call authorised by a Bearer header, or a JSON login, passes; a
//!    request relying on cookies, or a form post (login CSRF), is refused.
//!
//! Refusals are 403 with the JSON error body (`cross_origin`), or a short HTML page for a
//! browser that asked for HTML.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, ORIGIN, REFERRER_POLICY, RETRY_AFTER,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::error::ApiError;

/// Middleware: refuses state-changing requests from another origin (see the module).
pub async fn same_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if allowed(
        request.method(),
        request.headers(),
        state.settings.public_origin.as_deref(),
    ) {
        return next.run(request).await;
    }
    tracing::info!(
        target: "security",
        method = %request.method(),
        path = %request.uri().path(),
        "cross-origin request refused"
    );
    let wants_html = request
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        (
            StatusCode::FORBIDDEN,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Refused</title>\
             </head><body><h1>Request refused</h1><p>This form was sent from another site.</p>\
             <p><a href=\"/devices\">Back to your devices</a></p></body></html>",
        )
            .into_response()
    } else {
        ApiError::CrossOrigin.into_response()
    }
}

/// Whether a request passes the same-origin rule.
pub fn allowed(method: &Method, headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site")
        && (site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return true;
    }
    if let Some(origin) = text(ORIGIN.as_str()) {
        let origin = origin.trim().trim_end_matches('/');
        return match public_origin {
            Some(public) => origin.eq_ignore_ascii_case(public.trim_end_matches('/')),
            None => text(HOST.as_str()).is_some_and(|host| {
                let host = host.trim();
                ["http://", "https://"].iter().any(|scheme| {
                    origin
                        .strip_prefix(scheme)
                        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
                })
            }),
        };
    }
    if headers.get("sec-fetch-site").is_some() {
        // Fetch Metadata of another site and no Origin: refused.
        return false;
    }
    let formable = text(CONTENT_TYPE.as_str()).is_some_and(|value| {
        let mime = value.split(';').next().unwrap_or("").trim();
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "text/plain",
        ]
        .iter()
        .any(|form| mime.eq_ignore_ascii_case(form))
    });
    !headers.contains_key(COOKIE) && !formable
}

/// Middleware: `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on every
/// response, `Cache-Control: no-store` unless the response chose otherwise (every answer is
/// someone's: tokens, sessions, pages), `Strict-Transport-Security` when the public origin is
/// https, and `Retry-After` on a 429 that has none.
pub async fn security_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state
        .settings
        .public_origin
        .as_deref()
        .is_some_and(|origin| origin.to_ascii_lowercase().starts_with("https://"))
    {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if response.status() == StatusCode::TOO_MANY_REQUESTS
        && !response.headers().contains_key(RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("60"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::allowed;
    use axum::http::{HeaderMap, Method};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_rule() {
        let public = Some("https://auth.example.com");
        let post = Method::POST;
        assert!(allowed(
            &Method::GET,
            &headers(&[("sec-fetch-site", "cross-site")]),
            public
        ));
        assert!(allowed(
            &post,
            &headers(&[("sec-fetch-site", "same-origin")]),
            public
        ));
        assert!(allowed(
            &post,
            &headers(&[("sec-fetch-site", "none")]),
            public
        ));
        assert!(!allowed(
            &post,
            &headers(&[("sec-fetch-site", "same-site")]),
            public
        ));
        assert!(allowed(
            &post,
            &headers(&[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://auth.example.com")
            ]),
            public
        ));
        assert!(!allowed(
            &post,
            &headers(&[("origin", "https://evil.example.com")]),
            public
        ));
        assert!(!allowed(
            &post,
            &headers(&[("origin", "http://auth.example.com")]),
            public
        ));
        // Neither header: a Bearer or JSON call passes, cookies or a form do not.
        assert!(allowed(
            &post,
            &headers(&[("authorization", "Bearer x")]),
            public
        ));
        assert!(allowed(
            &post,
            &headers(&[("content-type", "application/json")]),
            public
        ));
        assert!(!allowed(
            &post,
            &headers(&[("cookie", "access_token=x")]),
            public
        ));
        assert!(!allowed(
            &post,
            &headers(&[("content-type", "application/x-www-form-urlencoded")]),
            public
        ));
        // No public origin: the Host's.
        let host = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(allowed(&post, &host, None));
        let other = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9")]);
        assert!(!allowed(&post, &other, None));
    }
}
