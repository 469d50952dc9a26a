//! The router of one instance and its middleware: which path goes to which handler.

use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::response::{Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Router, middleware};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::plumbing::AppState;
use crate::plumbing::conn::{ConnLimits, serve_connections};
use crate::plumbing::origin;
use crate::{api, pages, telemetry};

/// The router of one instance: the JSON API and the devices page, with the same-origin rule,
/// the security headers, tower-http's request ids, tracing (Authorization, Cookie and
/// Set-Cookie marked sensitive), timeout and body limit. `/metrics` is not here: it has a
/// listener of its own ([`metrics_router`]).
pub fn router(state: AppState) -> Router {
    let timeout = state.settings.request_timeout;
    let limit = state.settings.body_limit;
    let csrf = middleware::from_fn_with_state(state.clone(), origin::same_origin);
    let headers = middleware::from_fn_with_state(state.clone(), origin::security_headers);
    Router::new()
        .route("/login", post(api::login))
        .route("/refresh", post(api::refresh))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/sessions", get(api::sessions))
        .route("/sessions/revoke-others", post(api::revoke_others))
        .route("/sessions/revoke-all", post(api::revoke_all))
        .route("/sessions/{id}", delete(api::revoke_one))
        .route("/", get(|| async { Redirect::to("/devices") }))
        .route("/devices", get(pages::devices))
        .route("/devices/login", get(pages::login_form).post(pages::login))
        .route(
            "/devices/logout",
            get(pages::logout_form).post(pages::logout),
        )
        .route("/devices/revoke-others", post(pages::revoke_others))
        .route(
            "/devices/revoke-all",
            get(pages::revoke_all_form).post(pages::revoke_all),
        )
        .route("/devices/{id}/revoke", post(pages::revoke))
        .route("/refresh/page", get(pages::refresh))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::body_for(StatusCode::NOT_FOUND, "no such endpoint") })
        // Each `Router::layer` wraps every route (and the fallback) again, innermost first:
        // the JSON error bodies see the body limit's 413 and the timeout's 408, and every
        // response gets the security headers.
        .layer(csrf)
        .layer(middleware::from_fn(telemetry::track))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(headers)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    AUTHORIZATION,
                    COOKIE,
                ]))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
                        let id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|id| id.to_str().ok())
                            .unwrap_or("-");
                        // The path only: never the query string, never a header.
                        tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id = %id,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE])),
        )
        .with_state(state)
}

/// Gives every error response without a body type of ours (axum's rejections, the timeout,
/// the body limit, 405) a JSON body `{"error", "message"}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let typed = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if typed {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let mut fresh = ApiError::body_for(status, &message);
    for (name, value) in parts.headers.iter() {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// The metrics listener's router: `GET /metrics` (Prometheus text format) and nothing else.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(api::metrics))
        .fallback(|| async { ApiError::body_for(StatusCode::NOT_FOUND, "no such endpoint") })
}

/// Serves `app` on `listener` within `limits` (header-read timeout, connection cap) until
/// `shutdown` completes, with peer addresses available.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_connections(listener, app, limits, shutdown).await
}

/// Starts an instance on `127.0.0.1:0`: its address and its task (for tests and the bench).
pub async fn spawn_on_loopback(
    state: AppState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut limits = state.settings.connections.clone();
    limits.exempt = state.settings.trusted_proxies.clone();
    let app = router(state);
    let task = tokio::spawn(serve(listener, app, limits, std::future::pending()));
    Ok((addr, task))
}

/// Starts a metrics listener on `127.0.0.1:0`: its address (for tests).
pub async fn spawn_metrics_on_loopback() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(
        listener,
        metrics_router(),
        ConnLimits::default(),
        std::future::pending(),
    ));
    Ok(addr)
}
