//! floe: a real-time stream processor for IoT telemetry.
//!
//! Telemetry flows from [`sources`] through keyed, event-time [`operators`]
//! to [`sinks`], as a pipeline file ([`config`]) describes; the [`runtime`]
//! runs it. See README.md for the user's view.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod event;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod operators;
pub mod pace;
pub mod rng;
pub mod runtime;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod state;
