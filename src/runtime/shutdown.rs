//! Cooperative shutdown: Ctrl-C, SIGTERM or SIGHUP asks sources to stop;
//! everything downstream then drains and flushes as if the input had ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A shared stop flag. Blocking sources poll it; async ones await it.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    requested: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::Relaxed)
    }

    /// Resolves once shutdown has been requested.
    pub async fn requested(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Requests shutdown on the first Ctrl-C, SIGTERM or SIGHUP; a second one exits
    /// at once, for when draining takes longer than the user will wait.
    pub fn on_signals(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            signal().await;
            tracing::info!("shutting down: finishing in-flight events and flushing sinks");
            shutdown.request();
            signal().await;
            eprintln!("second interrupt: exiting without flushing");
            std::process::exit(130);
        });
    }
}

/// Ctrl-C, SIGTERM or SIGHUP. SIGHUP (a closed terminal, or `kill -HUP`)
/// would otherwise kill the process on the spot, without the drain and the
/// last checkpoint.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
