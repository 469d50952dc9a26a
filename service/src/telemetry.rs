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
/// Logins that waited for their turn (throttled per account and network), by route.
pub const LOGIN_DELAYS: &str = "auth_service_login_delays_total";
/// Connections open now (public listener).
pub const OPEN_CONNECTIONS: &str = "auth_service_open_connections";
/// argon2id verifications run.
pub const PASSWORD_VERIFICATIONS: &str = "auth_service_password_verifications_total";
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
            metrics::describe_counter!(LOGIN_DELAYS, "Logins that waited for their turn.");
            metrics::describe_gauge!(OPEN_CONNECTIONS, "Connections open now.");
            metrics::describe_counter!(PASSWORD_VERIFICATIONS, "argon2id verifications run.");
            metrics::describe_counter!(REFRESHES, "Refresh requests by outcome.");
            metrics::describe_counter!(
                DEAD_SESSIONS,
                "Authorised requests refused because their session is no longer live."
            );
            handle
        })
        .clone()
}

/// Middleware: counts every request by method (a fixed set, others `other`), matched route
/// (never the raw path, which would make a label per session id; no route: `unmatched`) and
/// status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_SECONDS, "route" => route.clone()).record(start.elapsed());
    metrics::counter!(REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// The method as a label: one of a fixed set, any other `other` (hyper accepts any token as a
/// method, and each would be a new series).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), with tokio-postgres capped at info
/// whatever `RUST_LOG` says (see [`loggable`]).
pub fn init_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter.and(Quiet)),
        )
        .try_init();
}

/// The service's own filter under `RUST_LOG`: [`loggable`], and none of the server's `NOTICE`s
/// (every start reruns the migrations' `IF NOT EXISTS`, each a notice tokio-postgres logs at
/// info). The server's warnings still reach the log.
struct Quiet;

impl<S> tracing_subscriber::layer::Filter<S> for Quiet {
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        loggable(metadata)
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let target = event.metadata().target();
        if !target.starts_with("tokio_postgres") {
            return true;
        }
        let mut notice = NoticeProbe(false);
        event.record(&mut notice);
        !notice.0
    }
}

/// Finds whether an event's message is a server notice (`NOTICE: ...`).
struct NoticeProbe(bool);

impl tracing::field::Visit for NoticeProbe {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}").starts_with("NOTICE:");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.starts_with("NOTICE:");
        }
    }
}

/// Whether an event may reach the log whatever `RUST_LOG` says: tokio-postgres logs every
/// statement's bind parameters (e-mail addresses, password and token hashes, user and session
/// ids) at debug level, so it is capped at info, as the `auth-sessions` command caps it.
fn loggable(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    let driver = target == "tokio_postgres" || target.starts_with("tokio_postgres::");
    !driver || *metadata.level() <= tracing::Level::INFO
}
