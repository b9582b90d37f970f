//! A real HTTP receiver for webhook tests, on a free port of 127.0.0.1:
//! records every request, answers from a script (200 once it runs out),
//! and can go down (nothing listens) and come back on the same port.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Answers for the next requests: status, and a `Retry-After`.
    script: VecDeque<(u16, Option<u64>)>,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// A receiver that is up.
    pub fn start() -> Receiver {
        let mut receiver = Receiver::down();
        receiver.up();
        receiver
    }

    /// A receiver on a port of its own that does not listen yet.
    pub fn down() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        Receiver {
            port: super::broker::free_port(),
            shared: Arc::default(),
            runtime,
            stop: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts listening.
    pub fn up(&mut self) {
        let app = Router::new()
            .fallback(record)
            .with_state(self.shared.clone());
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .expect("the receiver's port");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.runtime.spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            let _ = serve.await;
        });
        self.stop = Some(stop);
    }

    /// Stops listening: connections are refused until [`up`](Self::up).
    pub fn down_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let port = self.port;
        super::broker::wait_for(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        });
    }

    /// The next requests get these answers, in order.
    pub fn answer(&self, script: &[(u16, Option<u64>)]) {
        self.lock().script.extend(script.iter().copied());
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn record(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.received.push(Received {
        at: Instant::now(),
        path: uri.path().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, retry_after) = shared.script.pop_front().unwrap_or((200, None));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    match retry_after {
        Some(seconds) => {
            (status, [("retry-after", seconds.to_string())], "slow down").into_response()
        }
        None => (status, format!("answered {status}")).into_response(),
    }
}
