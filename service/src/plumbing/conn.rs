//! Connections: the accept loop with its bounds, and hyper's own error answers given the JSON
//! error body.
//!
//! - **Header reads** are bounded by [`ConnLimits::header_read_timeout`]: a connection that has
//!   not sent a complete request head by then is closed. The clock starts whenever the
//!   connection waits for a head, so it also bounds a new connection that sends nothing and a
//!   kept-alive connection idle between requests.
//! - **Open connections** are capped by [`ConnLimits::max_connections`]: at the cap the loop
//!   stops accepting (new connections wait in the kernel's backlog) until one closes.
//! - **One address's share** is capped by [`ConnLimits::max_per_address`]: a further
//!   connection from an address (an IPv4 address, an IPv6 /64) holding that many is closed at
//!   once, so one host cannot take every slot. Peers in [`ConnLimits::exempt`] (the trusted
//!   proxies, which carry everyone's connections) have no share limit.
//! - An `accept` failure (such as running out of file descriptors) is logged and retried after
//!   a short pause, never fatal.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::throttle::network_of;
use crate::telemetry;

/// Bounds of one listener's connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Longest wait for a complete request head (also the idle keep-alive bound).
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most header lines in a request (more: 431).
    pub max_headers: usize,
    /// Most connections open at once from one address (an IPv6 /64).
    pub max_per_address: usize,
    /// Peers without a per-address limit (the trusted proxies).
    pub exempt: Vec<IpNet>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_headers: 100,
            max_per_address: 1000,
            exempt: Vec::new(),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then waits for the
/// open connections to finish their requests (at most 10 s).
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shares = Arc::new(Shares::default());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_connection_error(&err) {
                        tracing::warn!(error = %err, "accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let network = network_of(peer.ip());
        let share = if limits.exempt.iter().any(|net| net.contains(&peer.ip())) {
            None
        } else {
            match shares.take(network, limits.max_per_address) {
                Some(share) => Some(share),
                None => {
                    metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "per_address")
                        .increment(1);
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.max_headers);
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(JsonErrors::new(stream)), service));
        metrics::gauge!(telemetry::OPEN_CONNECTIONS).increment(1.0);
        tokio::spawn(async move {
            let _ = connection.await;
            metrics::gauge!(telemetry::OPEN_CONNECTIONS).decrement(1.0);
            drop(share);
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// Open connections per network.
#[derive(Default)]
struct Shares(std::sync::Mutex<HashMap<IpNet, usize>>);

/// One connection's place in its network's share; gives it back when dropped.
struct Share {
    shares: Arc<Shares>,
    network: IpNet,
}

impl Shares {
    fn take(self: &Arc<Self>, network: IpNet, max: usize) -> Option<Share> {
        let mut table = match self.0.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = table.entry(network).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Share {
            shares: Arc::clone(self),
            network,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut table = match self.shares.0.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = table.get_mut(&self.network) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.network);
            }
        }
    }
}

/// Errors of one incoming connection (reset before it was accepted): no reason to pause.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The connection as hyper writes to it, with hyper's own bodiless error answers (431 for too
/// many or too large headers, 400 for an unparsable head, ...) replaced by the same answer
/// with the service's JSON error body. Everything else passes through untouched.
struct JsonErrors {
    inner: TcpStream,
    /// A replacement being written: its bytes, how many are written, and how many bytes of
    /// hyper's answer it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl JsonErrors {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// The JSON answer for one of hyper's bodiless error heads, if `head` is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?;
    let status = axum::http::StatusCode::from_bytes(code.as_bytes()).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let end = head.windows(4).position(|window| window == b"\r\n\r\n")?;
    let lower = head[..end].to_ascii_lowercase();
    // Only an empty answer: the service's own error answers always have a body.
    if !lower
        .windows(b"\r\ncontent-length: 0".len())
        .any(|window| window == b"\r\ncontent-length: 0")
    {
        return None;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if status == axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
        "request headers too large or too many"
    } else {
        reason
    };
    let body = serde_json::json!({
        "error": reason.to_lowercase().replace(' ', "_"),
        "message": message,
    })
    .to_string();
    Some(
        format!(
            "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\
             referrer-policy: no-referrer\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match replacement(buf) {
                Some(bytes) => self.pending = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        let this = &mut *self;
        loop {
            let Some((bytes, written, stands_for)) = this.pending.as_mut() else {
                return Poll::Ready(Ok(0));
            };
            if *written == bytes.len() {
                let stands_for = *stands_for;
                this.pending = None;
                return Poll::Ready(Ok(stands_for));
            }
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each answer's head as one contiguous buffer.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn hypers_empty_error_answers_get_a_json_body_and_nothing_else_changes() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let new = String::from_utf8(replacement(hyper_431).unwrap()).unwrap();
        assert!(new.starts_with("HTTP/1.1 431 "));
        assert!(new.ends_with('}'));
        assert!(new.contains("\"error\":\"request_header_fields_too_large\""));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n";
        assert!(replacement(ours).is_none());
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(ok).is_none());
    }
}
