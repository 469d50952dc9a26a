//! Metrics (Prometheus, through the `metrics` facade the crate also uses) and logging.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::span;
use tracing_subscriber::layer::Context;

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
/// Connections closed at once, by reason (`per_address`).
pub const CONNECTIONS_REFUSED: &str = "auth_service_connections_refused_total";
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
            metrics::describe_counter!(CONNECTIONS_REFUSED, "Connections closed at once.");
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
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(
            QuietNotices(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .with_filter(filter.and(filter_fn(loggable))),
        )
        .try_init();
}

/// A layer that passes everything to `inner` but the server's `NOTICE`s (every start reruns
/// the migrations' `IF NOT EXISTS`, each a notice tokio-postgres logs at info). The server's
/// warnings and errors still reach the log. (tokio-postgres logs through the `log` crate,
/// whose bridge skips `event_enabled`: the notice is dropped here, in `on_event`.)
struct QuietNotices<L>(L);

impl<S, L> tracing_subscriber::Layer<S> for QuietNotices<L>
where
    S: tracing::Subscriber,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(metadata)
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, cx)
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx);
    }
    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(span, values, cx);
    }
    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, cx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, cx);
    }
    fn event_enabled(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }
    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) {
        let mut probe = NoticeProbe::default();
        event.record(&mut probe);
        if !(probe.driver && probe.notice) {
            self.0.on_event(event, cx);
        }
    }
    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx);
    }
    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx);
    }
    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx);
    }
    fn on_id_change(&self, old: &span::Id, new: &span::Id, cx: Context<'_, S>) {
        self.0.on_id_change(old, new, cx);
    }
}

/// Whether an event is a server notice tokio-postgres logged (`NOTICE: ...`).
#[derive(Default)]
struct NoticeProbe {
    driver: bool,
    notice: bool,
}

impl NoticeProbe {
    fn see(&mut self, name: &str, value: &str) {
        match name {
            "message" => self.notice = value.starts_with("NOTICE:"),
            "log.target" => self.driver = value.starts_with("tokio_postgres"),
            _ => {}
        }
    }
}

impl tracing::field::Visit for NoticeProbe {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "message" | "log.target") {
            let text = format!("{value:?}");
            self.see(field.name(), text.trim_matches('"'));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.see(field.name(), value);
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
