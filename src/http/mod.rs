//! The HTTP server of `--http ADDR`: `/metrics` for Prometheus, `/health`
//! and `/ready` for orchestrators, and the live dashboard at `/`.
//!
//! With a token, every path but `/health` wants `Authorization: Bearer
//! TOKEN` (or `?token=TOKEN`, which is how a browser's dashboard page and
//! its event stream can carry it): a liveness probe should not need a
//! secret, and nothing else is for anonymous eyes.

mod dashboard;

use crate::config::Secret;
use crate::runtime::Telemetry;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// OpenMetrics, which is what prometheus-client writes and Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running server; it stops when dropped.
pub struct Server {
    /// Where it listens (the port chosen, when asked for port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
pub(crate) struct Shared {
    telemetry: Arc<Telemetry>,
    token: Option<Secret>,
}

/// Binds `addr` and serves in the background.
pub async fn start(
    addr: SocketAddr,
    token: Option<Secret>,
    telemetry: Arc<Telemetry>,
) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Shared { telemetry, token };
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/", get(dashboard::page))
        .route("/events", get(dashboard::events))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authorize));
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .merge(guarded)
        .with_state(shared);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("http: {e}");
        }
    });
    Ok(Server { addr, task })
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let text = shared.telemetry.render();
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// 200 once every run has restored its state and its sources are
/// connected; 503 naming what is not, otherwise.
async fn ready(State(shared): State<Shared>) -> Response {
    match shared.telemetry.not_ready() {
        waiting if waiting.is_empty() => (StatusCode::OK, "ready\n".to_string()).into_response(),
        waiting => {
            let text = format!("not connected: {}\n", waiting.join(", "));
            (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenParam {
    token: Option<String>,
}

async fn authorize(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &shared.token else {
        return next.run(request).await;
    };
    let from_header = (request.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Decoded, as the page's encodeURIComponent wrote it.
    let from_query = Query::<TokenParam>::try_from_uri(request.uri())
        .ok()
        .and_then(|q| q.0.token);
    let given = from_header.or(from_query.as_deref());
    match given.is_some_and(|g| same(g.as_bytes(), token.expose().as_bytes())) {
        true => next.run(request).await,
        false => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response(),
    }
}

/// Compares in time that does not depend on where the inputs differ, so a
/// client cannot guess the token a byte at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3cres"));
        assert!(!same(b"s3cret", b"s3cret!"));
        assert!(!same(b"", b"x"));
    }
}
