//! The live dashboard: one page, embedded in the binary (the machines floe
//! runs on often have no internet, so no CDN), fed by a server-sent event
//! stream of what changed on the board.

use super::Shared;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;
use std::convert::Infallible;
use std::time::Duration;

/// How often the stream sends what changed: a tile turns red within this
/// (plus the browser's paint) of the alert, and a fleet of thousands of
/// entities costs the browser one small update per period, not one per
/// alert.
const PUSH_EVERY: Duration = Duration::from_millis(200);

const PAGE: &str = include_str!("dashboard.html");

pub(super) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The event stream: first everything on the board, then every
/// [`PUSH_EVERY`] what changed since, with each pipeline's events so far
/// (the page turns them into rates).
pub(super) async fn events(State(shared): State<Shared>) -> Response {
    if shared.telemetry.board().is_none() {
        return (axum::http::StatusCode::NOT_FOUND, "no dashboard\n").into_response();
    }
    Sse::new(changes(shared))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn changes(shared: Shared) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((shared, None), |(shared, since)| async move {
        if since.is_some() {
            tokio::time::sleep(PUSH_EVERY).await;
        }
        let telemetry = &shared.telemetry;
        let changes = telemetry.board()?.since(since.unwrap_or(0));
        let data = serde_json::json!({
            "version": changes.version,
            "tiles": changes.tiles,
            "alerts": changes.alerts,
            "events": telemetry.events_by_pipeline(),
        });
        let event = Event::default().data(data.to_string());
        Some((Ok(event), (shared, Some(changes.version))))
    })
}
