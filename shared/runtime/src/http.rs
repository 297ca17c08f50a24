//! The HTTP surface every service has: `GET /healthz` (the process is alive),
//! `GET /readyz` (its dependencies answer) and `GET /metrics` (Prometheus text). A service
//! merges its own routes into [`router`] and serves with [`serve`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::readiness::Readiness;

/// What the common endpoints need.
#[derive(Clone)]
pub struct Probes {
    /// The dependency checks behind `/readyz`.
    pub readiness: Readiness,
    /// The registry behind `/metrics`.
    pub registry: Arc<Registry>,
}

/// The router with `/healthz`, `/readyz` and `/metrics`.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"alive"}"#)
}

async fn readyz(State(probes): State<Probes>) -> Response {
    let report = probes.readiness.report().await;
    let status = if report.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report)).into_response()
}

async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], crate::metrics::render(&probes.registry))
}

/// Serves `router` on an already bound `listener` until `shutdown` resolves, then lets
/// requests in flight finish (axum's graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP server listening.");
    }
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// Listens on `addr` (the service's `HTTP_ADDR`); the error says which variable and,
/// when the address is taken, what to do about it.
pub async fn listen(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    listen_as("HTTP_ADDR", addr).await
}

/// Listens on `addr`, the setting `variable`, with [`listen`]'s errors.
pub async fn listen_as(variable: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|error| {
        let what = format!("cannot listen on {variable}={addr}");
        let hint = match error.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "; another program listens there (`ss -ltnp 'sport = :{}'` names it): stop it, or set {variable} to a free address",
                addr.port()
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                "; no interface of this machine has that address: use 0.0.0.0 or one of its own".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need privileges: use a port of 1024 or more".to_owned()
            }
            _ => String::new(),
        };
        anyhow::Error::new(error).context(format!("{what}{hint}"))
    })
}

/// `<service> healthcheck`: asks the service's own `/healthz` on `addr` (a wildcard host
/// is asked on 127.0.0.1) and says whether it answered 200 within two seconds. Container
/// health checks use it, so images need no shell and no curl.
pub fn healthcheck(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let limit = Duration::from_secs(2);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, limit) else { return false };
    let _ = stream.set_read_timeout(Some(limit));
    let _ = stream.set_write_timeout(Some(limit));
    if stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let read = stream.read(&mut head).unwrap_or(0);
    head[..read].starts_with(b"HTTP/1.0 200") || head[..read].starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use futures::future::BoxFuture;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::readiness::Check;

    struct Never;

    /// A check with a fixed outcome.
    struct Fixed(&'static str, Result<String, String>);

    impl Check for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self) -> BoxFuture<'_, Result<String, String>> {
            let outcome = self.1.clone();
            Box::pin(async move { outcome })
        }
    }

    impl Check for Never {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn check(&self) -> BoxFuture<'_, Result<String, String>> {
            Box::pin(futures::future::pending())
        }
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap_or_default();
        let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn probes(readiness: impl FnOnce(Readiness) -> Readiness) -> Probes {
        let registry = Arc::new(crate::metrics::registry());
        let base = Readiness::new(&registry, Duration::from_millis(50));
        Probes { readiness: readiness(base), registry }
    }

    #[tokio::test]
    async fn the_healthcheck_command_sees_a_live_server_and_a_dead_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, router(probes(|r| r)), token.clone().cancelled_owned()));
        let wildcard: std::net::SocketAddr = format!("0.0.0.0:{}", addr.port()).parse().unwrap_or(addr);
        let alive = tokio::task::spawn_blocking(move || healthcheck(wildcard)).await.unwrap_or(false);
        token.cancel();
        let _ = server.await;
        let dead = tokio::task::spawn_blocking(move || healthcheck(addr)).await.unwrap_or(true);
        assert!(alive && !dead, "alive {alive}, dead {dead}");
    }

    #[tokio::test]
    async fn healthz_answers_without_checking_dependencies() {
        let (status, body) = get(router(probes(|r| r.with(Never))), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"status":"alive"}"#));
    }

    #[tokio::test]
    async fn readyz_names_each_check_and_times_out_slow_ones() {
        let progress = Fixed("progress", Ok("caught up".to_owned()));
        let (status, body) = get(router(probes(|r| r.with(progress).with(Never))), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"status": "not_ready", "checks": [
                {"name": "progress", "ok": true, "detail": "caught up"},
                {"name": "slow", "ok": false, "detail": "no answer within 50ms"}
            ]})
        );
    }

    #[tokio::test]
    async fn metrics_export_check_states_in_prometheus_text() {
        let router = router(probes(|r| r.with(Fixed("progress", Err("starting".to_owned())))));
        let _ = get(router.clone(), "/readyz").await;
        let (status, body) = get(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("service_check_up{check=\"progress\"} 0"), "{body}");
    }
}

/// A listener that holds at most `max` connections open at once: at the limit it accepts
/// no more until one closes (new ones wait in the kernel's backlog), so a flood of
/// connections cannot exhaust the process's file descriptors or memory.
pub struct LimitedListener {
    listener: TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
}

impl LimitedListener {
    /// `listener`, limited to `max` open connections (at least one).
    pub fn new(listener: TcpListener, max: usize) -> LimitedListener {
        LimitedListener { listener, permits: Arc::new(tokio::sync::Semaphore::new(max.max(1))) }
    }

    /// Connections that may still be opened now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// A connection of a [`LimitedListener`]; closing it frees its place.
pub struct LimitedStream {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match Arc::clone(&self.permits).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await, // the semaphore is never closed
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (LimitedStream { stream, _permit: permit }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl tokio::io::AsyncRead for LimitedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod limited_tests {
    use std::time::Duration;

    use axum::serve::Listener as _;

    use super::*;

    #[tokio::test]
    async fn at_the_limit_the_next_connection_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
        let mut limited = LimitedListener::new(listener, 1);
        let _first_client = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
        let (first, _) = limited.accept().await;
        assert_eq!(limited.available(), 0);
        let _second_client = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
        let waiting = tokio::time::timeout(Duration::from_millis(300), limited.accept()).await;
        assert!(waiting.is_err(), "a second connection was accepted beyond the limit");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), limited.accept()).await;
        assert!(second.is_ok(), "the second connection was not accepted once the first closed");
    }
}
