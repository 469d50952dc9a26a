//! Metrics (Prometheus, through the `metrics` facade the crate also uses) and logging.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HTTP requests by method, route and status.
pub const REQUESTS: &str = "auth_service_requests_total";
/// HTTP request durations by route.
pub const REQUEST_SECONDS: &str = "auth_service_request_duration_seconds";
/// Failed logins by reason (`invalid_credentials`, `bad_request`).
pub const LOGIN_FAILURES: &str = "auth_service_login_failures_total";
/// Successful logins.
pub const LOGINS: &str = "auth_service_logins_total";
/// Requests refused by a rate limiter, by route.
pub const RATE_LIMITED: &str = "auth_service_rate_limited_total";
/// Refreshes by outcome.
pub const REFRESHES: &str = "auth_service_refreshes_total";
/// Authorised requests refused because the session is no longer live.
pub const DEAD_SESSIONS: &str = "auth_service_dead_session_refusals_total";

/// The process's Prometheus recorder, installed on first use (one per process: every app in
/// it, such as the two instances of a test, renders the same registry).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .expect("static buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            auth_sessions::metrics::describe();
            metrics::describe_counter!(REQUESTS, "HTTP requests by method, route and status.");
            metrics::describe_histogram!(REQUEST_SECONDS, "HTTP request durations by route.");
            metrics::describe_counter!(LOGIN_FAILURES, "Failed logins by reason.");
            metrics::describe_counter!(LOGINS, "Successful logins.");
            metrics::describe_counter!(RATE_LIMITED, "Requests refused by a rate limiter.");
            metrics::describe_counter!(REFRESHES, "Refresh requests by outcome.");
            metrics::describe_counter!(
                DEAD_SESSIONS,
                "Authorised requests refused because their session is no longer live."
            );
            handle
        })
        .clone()
}

/// Middleware: counts every request by method, matched route (never the raw path, which
/// would make a label per session id) and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_SECONDS, "route" => route.clone()).record(start.elapsed());
    metrics::counter!(REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), with tokio-postgres capped at info
/// whatever `RUST_LOG` says (see [`loggable`]).
pub fn init_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter.and(filter_fn(loggable))),
        )
        .try_init();
}

/// Whether an event may reach the log whatever `RUST_LOG` says: tokio-postgres logs every
/// statement's bind parameters (e-mail addresses, password and token hashes, user and session
/// ids) at debug level, so it is capped at info, as the `auth-sessions` command caps it.
fn loggable(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    let driver = target == "tokio_postgres" || target.starts_with("tokio_postgres::");
    !driver || *metadata.level() <= tracing::Level::INFO
}
