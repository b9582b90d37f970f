//! Durable state under `--state-dir`: checkpoints of every key's operator
//! state with the sources' positions ([`store`]), and the write-ahead
//! journal that lets an MQTT source acknowledge messages before a
//! checkpoint covers them ([`journal`]), and the spool in which a sink
//! keeps what it has not delivered yet ([`spool`]); and the format in
//! which a Kafka changelog keeps the state of a partition's keys
//! ([`changelog`]).
//!
//! This module only reads and writes files and encodings; the runtime
//! decides what goes in them and when (see `runtime::checkpoint`).

pub mod changelog;
pub mod codec;
pub mod journal;
pub mod spool;
pub mod store;

pub use codec::CodecError;
pub use store::{Component, Manifest, Restored, StateError, Store};
