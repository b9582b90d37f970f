//! What the live dashboard shows: a tile per entity, coloured by its worst
//! firing alert, and the latest alerts.
//!
//! Workers tell the board about new keys and about alerts once per batch;
//! each dashboard connection asks for what changed since the version it
//! last saw, so a slow browser costs nothing to the pipeline.

use crate::event::{AlertState, Key, Severity};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Alerts the feed keeps.
const FEED: usize = 100;

/// An alert as the board takes it.
#[derive(Clone, Debug)]
pub struct Raised {
    pub rule: Arc<str>,
    pub key: Key,
    pub state: AlertState,
    pub severity: Severity,
    /// The alert's JSON, as sinks get it.
    pub line: Arc<str>,
}

/// A tile's colour: its entity's worst firing alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Info,
    Warning,
    Critical,
}

impl From<Severity> for Level {
    fn from(severity: Severity) -> Level {
        match severity {
            Severity::Info => Level::Info,
            Severity::Warning => Level::Warning,
            Severity::Critical => Level::Critical,
        }
    }
}

#[derive(Debug, Default)]
struct Tile {
    /// The rules firing for this entity, with their severity.
    firing: Vec<(Arc<str>, Severity)>,
    /// The board's version when it last changed.
    changed: u64,
}

impl Tile {
    fn level(&self) -> Level {
        let worst = self.firing.iter().map(|(_, s)| Level::from(*s)).max();
        worst.unwrap_or(Level::Ok)
    }
}

#[derive(Debug, Default)]
struct Inner {
    version: u64,
    /// By (pipeline, key).
    tiles: BTreeMap<(Arc<str>, Key), Tile>,
    /// (version, alert JSON), oldest first.
    feed: VecDeque<(u64, Arc<str>)>,
}

#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Inner>,
}

/// What changed on the board since a version.
#[derive(Debug, serde::Serialize)]
pub struct Changes {
    pub version: u64,
    /// (pipeline, key, level) of each tile that changed.
    pub tiles: Vec<(String, Key, Level)>,
    /// The alerts since, oldest first.
    pub alerts: Vec<serde_json::Value>,
}

impl Board {
    /// Adds what a worker's batch brought: keys seen for the first time,
    /// and alerts. `keys` and `raised` are emptied.
    pub fn update(&self, pipeline: &Arc<str>, keys: &mut Vec<Key>, raised: &mut Vec<Raised>) {
        if keys.is_empty() && raised.is_empty() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.version += 1;
        let version = inner.version;
        for key in keys.drain(..) {
            let tile = inner.tiles.entry((pipeline.clone(), key)).or_default();
            tile.changed = version;
        }
        for alert in raised.drain(..) {
            let tile = (inner.tiles.entry((pipeline.clone(), alert.key))).or_default();
            tile.firing.retain(|(rule, _)| *rule != alert.rule);
            if alert.state == AlertState::Firing {
                tile.firing.push((alert.rule, alert.severity));
            }
            tile.changed = version;
            inner.feed.push_back((version, alert.line));
            if inner.feed.len() > FEED {
                inner.feed.pop_front();
            }
        }
    }

    /// What changed after `since` (everything, from 0).
    pub fn since(&self, since: u64) -> Changes {
        let Ok(inner) = self.inner.lock() else {
            return Changes {
                version: since,
                tiles: Vec::new(),
                alerts: Vec::new(),
            };
        };
        let tiles = (inner.tiles.iter())
            .filter(|(_, tile)| tile.changed > since)
            .map(|((pipeline, key), tile)| (pipeline.to_string(), key.clone(), tile.level()))
            .collect();
        let alerts = (inner.feed.iter())
            .filter(|(v, _)| *v > since)
            .filter_map(|(_, line)| serde_json::from_str(line).ok())
            .collect();
        Changes {
            version: inner.version,
            tiles,
            alerts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, key: &str, state: AlertState, severity: Severity) -> Raised {
        Raised {
            rule: rule.into(),
            key: key.into(),
            state,
            severity,
            line: format!(r#"{{"rule":"{rule}","key":"{key}"}}"#).into(),
        }
    }

    #[test]
    fn a_tile_shows_its_worst_firing_alert_until_it_resolves() {
        let board = Board::default();
        let p: Arc<str> = "cold-chain".into();
        board.update(&p, &mut vec!["t1".into(), "t2".into()], &mut vec![]);
        let all = board.since(0);
        assert_eq!(all.tiles.len(), 2);
        assert!(all.tiles.iter().all(|t| t.2 == Level::Ok));

        let firing = AlertState::Firing;
        let mut raised = vec![
            alert("warm", "t1", firing, Severity::Warning),
            alert("hot", "t1", firing, Severity::Critical),
        ];
        board.update(&p, &mut vec![], &mut raised);
        let changes = board.since(all.version);
        assert_eq!(
            changes.tiles,
            [(p.to_string(), "t1".into(), Level::Critical)]
        );
        assert_eq!(changes.alerts.len(), 2);

        let mut resolved = vec![alert("hot", "t1", AlertState::Resolved, Severity::Critical)];
        board.update(&p, &mut vec![], &mut resolved);
        let changes = board.since(changes.version);
        assert_eq!(
            changes.tiles,
            [(p.to_string(), "t1".into(), Level::Warning)]
        );
        assert!(board.since(changes.version).tiles.is_empty());
    }
}
