//! `--http ADDR`, as `run` and `demo` take it.

use super::Failure;
use crate::config::{HttpConfig, Secret, listen_address};
use crate::http::Server;
use crate::runtime::Telemetry;
use std::net::SocketAddr;
use std::sync::Arc;

/// The environment variable a token comes from when the pipeline names
/// none: a token on the command line would show in `ps`.
const TOKEN_VAR: &str = "FLOE_HTTP_TOKEN";

/// Where `floe demo` serves unless told: a port that is taken makes it
/// take any free one rather than fail.
const DEMO_ADDR: &str = "127.0.0.1:8080";

#[derive(clap::Args)]
pub struct HttpArgs {
    /// Serve /metrics, /health, /ready and the dashboard here: HOST:PORT,
    /// or a port alone for 127.0.0.1. Overrides the pipeline's `http:`.
    /// With FLOE_HTTP_TOKEN set, all but /health want that bearer token.
    #[arg(long, value_name = "ADDR", value_parser = listen_address)]
    http: Option<SocketAddr>,
}

impl HttpArgs {
    /// The process's telemetry: with a dashboard board when a server is
    /// asked for.
    pub fn telemetry(&self, config: Option<&HttpConfig>) -> Arc<Telemetry> {
        match self.http.is_some() || config.is_some() {
            true => Arc::new(Telemetry::with_board()),
            false => Arc::default(),
        }
    }

    /// Starts the server the flag or the pipeline asks for, if any.
    pub async fn start(
        &self,
        config: Option<&HttpConfig>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Option<Server>, Failure> {
        let from_config = config.and_then(|c| listen_address(&c.listen).ok());
        let Some(addr) = self.http.or(from_config) else {
            return Ok(None);
        };
        let token = config.and_then(|c| c.token.clone());
        serve(addr, token, telemetry).await.map(Some)
    }

    /// `floe demo`'s server: where `--http` says, else on port 8080 or,
    /// if that is taken, any free port.
    pub async fn start_demo(&self, telemetry: Arc<Telemetry>) -> Result<Server, Failure> {
        if let Some(addr) = self.http {
            return serve(addr, None, telemetry).await;
        }
        let preferred = listen_address(DEMO_ADDR).map_err(Failure::Runtime)?;
        match serve(preferred, None, telemetry.clone()).await {
            Ok(server) => Ok(server),
            Err(_) => serve(SocketAddr::new(preferred.ip(), 0), None, telemetry).await,
        }
    }
}

/// Serves on `addr`; the token is the pipeline's, else FLOE_HTTP_TOKEN's.
async fn serve(
    addr: SocketAddr,
    token: Option<Secret>,
    telemetry: Arc<Telemetry>,
) -> Result<Server, Failure> {
    let token = (token.or_else(|| std::env::var(TOKEN_VAR).ok().map(Secret::new)))
        .filter(|t| !t.expose().is_empty());
    let server = crate::http::start(addr, token, telemetry)
        .await
        .map_err(|e| Failure::Runtime(format!("http: cannot listen on {addr}: {e}")))?;
    tracing::info!(
        "serving http://{}/ (dashboard; metrics at /metrics, health at /health)",
        server.addr
    );
    Ok(server)
}
