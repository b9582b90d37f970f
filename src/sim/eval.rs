//! Detection quality: a pipeline's alerts scored against the simulator's
//! labelled faults (`floe eval`).
//!
//! A labelled fault is **detected** when its device has a firing alert of
//! one of the fault's rules between the fault's start and its end plus a
//! grace period (an alert that needs time to confirm may come just after a
//! short fault ends). Its **lead time** is from the fault's start to that
//! first alert. A firing alert that explains no labelled fault of its
//! device is **false**; alerts during benign events (deliveries, spikes:
//! labels without rules) are false too. Precision is the share of firing
//! alerts that explain a fault.

use super::Label;
use crate::event::time;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A firing alert, as far as scoring goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    pub key: String,
    pub rule: String,
    pub time: i64,
    /// When the condition began: for a threshold, when the value first
    /// crossed the limit (of its level, for a threshold with levels).
    pub episode_start: i64,
    /// `rule@severity`, which a breach may name to mean the rule's first
    /// alert at that severity (`too_warm@critical`).
    pub at_severity: Option<String>,
}

/// An early-warning rule scored against the breach it warns of: how long
/// before `breach`'s condition began did `rule` fire?
#[derive(Clone, Debug)]
pub struct Warning {
    pub rule: String,
    pub breach: String,
    /// The warning a user needs: leads shorter than this count as late.
    pub needed: i64,
}

/// A fault with its times parsed.
#[derive(Clone, Debug)]
pub struct Fault {
    pub device: String,
    pub kind: String,
    pub start: i64,
    pub end: i64,
    pub rules: Vec<String>,
}

impl Fault {
    pub fn from_label(label: &Label) -> Result<Fault, String> {
        let parse = |t: &str| time::parse_rfc3339(t).ok_or_else(|| format!("bad time `{t}`"));
        Ok(Fault {
            device: label.device.clone(),
            kind: label.fault.clone(),
            start: parse(&label.start)?,
            end: parse(&label.end)?,
            rules: label.rules.clone(),
        })
    }
}

/// How to score.
#[derive(Clone, Debug)]
pub struct Scoring {
    /// How long after a fault's end an alert still counts for it.
    pub grace: i64,
    /// Faults starting less than this before the end of the run are left
    /// out: the run ended before they could show.
    pub settle: i64,
    /// Entities observed and for how long, for the false-alert rate.
    pub entities: usize,
    pub hours: f64,
    pub warnings: Vec<Warning>,
}

/// The scores of one fault type.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub fault: String,
    pub faults: usize,
    pub detected: usize,
    pub recall: f64,
    /// Seconds from fault start to the first alert; `None` if none detected.
    pub median_lead_s: Option<f64>,
    pub worst_lead_s: Option<f64>,
}

/// Everything `floe eval` reports.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub faults: Vec<Row>,
    pub firing_alerts: usize,
    pub false_alerts: usize,
    /// False alerts per rule.
    pub false_by_rule: BTreeMap<String, usize>,
    pub false_per_1000_entity_hours: f64,
    pub precision: f64,
    /// Faults left out because they began too close to the end of the run.
    pub unsettled: usize,
    pub entities: usize,
    pub hours: f64,
    /// Early warnings, per fault type; empty unless asked for.
    pub warnings: Vec<WarningRow>,
}

/// How one early-warning rule did for one fault type.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WarningRow {
    pub rule: String,
    pub breach: String,
    pub fault: String,
    /// Faults of this type whose breach rule fired.
    pub breaches: usize,
    /// Of those, warned at least the needed time before the breach.
    pub warned_in_time: usize,
    pub share_in_time: f64,
    /// Seconds from the first warning to the breach (0 when unwarned).
    pub median_lead_s: Option<f64>,
    pub worst_lead_s: Option<f64>,
}

/// Scores `alerts` against `faults`; the run ends at `end` (event time).
pub fn score(faults: &[Fault], alerts: &[Fired], end: i64, scoring: &Scoring) -> Report {
    let mut by_device: HashMap<&str, Vec<&Fired>> = HashMap::new();
    for alert in alerts {
        by_device.entry(&alert.key).or_default().push(alert);
    }
    let explains = |fault: &Fault, alert: &Fired| {
        alert.key == fault.device
            && fault.rules.contains(&alert.rule)
            && (fault.start..=fault.end + scoring.grace).contains(&alert.time)
    };
    let settled = |f: &&Fault| !f.rules.is_empty() && f.start <= end - scoring.settle;
    let unsettled = faults.iter().filter(|f| !f.rules.is_empty()).count()
        - faults.iter().filter(settled).count();
    let first = |fault: &Fault, rule: Option<&str>| {
        by_device.get(fault.device.as_str()).and_then(|alerts| {
            (alerts.iter())
                .filter(|a| {
                    let named = |r: &str| a.rule == r || a.at_severity.as_deref() == Some(r);
                    explains(fault, a) && rule.is_none_or(named)
                })
                .min_by_key(|a| a.time)
                .copied()
        })
    };
    let mut leads: BTreeMap<&str, (usize, Vec<i64>)> = BTreeMap::new();
    for fault in faults.iter().filter(settled) {
        let first = first(fault, None).map(|a| a.time);
        let entry = leads.entry(&fault.kind).or_default();
        entry.0 += 1;
        entry.1.extend(first.map(|t| t - fault.start));
    }
    let mut false_by_rule = BTreeMap::new();
    for alert in alerts {
        if !faults.iter().any(|f| explains(f, alert)) {
            *false_by_rule.entry(alert.rule.clone()).or_default() += 1;
        }
    }
    let false_alerts: usize = false_by_rule.values().sum();
    let entity_hours = scoring.entities as f64 * scoring.hours;
    Report {
        faults: leads
            .into_iter()
            .map(|(kind, (n, l))| row(kind, n, l))
            .collect(),
        firing_alerts: alerts.len(),
        false_alerts,
        false_by_rule,
        false_per_1000_entity_hours: match entity_hours > 0.0 {
            true => false_alerts as f64 * 1000.0 / entity_hours,
            false => 0.0,
        },
        precision: match alerts.len() {
            0 => 1.0,
            n => (n - false_alerts) as f64 / n as f64,
        },
        unsettled,
        entities: scoring.entities,
        hours: scoring.hours,
        warnings: (scoring.warnings.iter())
            .flat_map(|w| {
                let mut by_kind: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
                for fault in faults.iter().filter(settled) {
                    let Some(breach) = first(fault, Some(&w.breach)) else {
                        continue;
                    };
                    let warned = first(fault, Some(&w.rule)).filter(|a| a.time <= breach.time);
                    let lead = warned.map_or(0, |a| (breach.episode_start - a.time).max(0));
                    by_kind.entry(&fault.kind).or_default().push(lead);
                }
                by_kind
                    .into_iter()
                    .map(|(kind, leads)| warning_row(w, kind, leads))
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

fn warning_row(w: &Warning, kind: &str, mut leads: Vec<i64>) -> WarningRow {
    leads.sort_unstable();
    let in_time = leads.iter().filter(|&&l| l >= w.needed).count();
    let seconds = |ms: i64| ms as f64 / 1000.0;
    WarningRow {
        rule: w.rule.clone(),
        breach: w.breach.clone(),
        fault: kind.to_string(),
        breaches: leads.len(),
        warned_in_time: in_time,
        share_in_time: in_time as f64 / leads.len().max(1) as f64,
        median_lead_s: leads.get(leads.len() / 2).copied().map(seconds),
        worst_lead_s: leads.first().copied().map(seconds),
    }
}

fn row(kind: &str, faults: usize, mut leads: Vec<i64>) -> Row {
    leads.sort_unstable();
    let seconds = |ms: i64| ms as f64 / 1000.0;
    Row {
        fault: kind.to_string(),
        faults,
        detected: leads.len(),
        recall: leads.len() as f64 / faults.max(1) as f64,
        median_lead_s: leads.get(leads.len() / 2).copied().map(seconds),
        worst_lead_s: leads.last().copied().map(seconds),
    }
}

impl Report {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<22} {:>7} {:>9} {:>7} {:>12} {:>12}\n",
            "fault", "faults", "detected", "recall", "median lead", "worst lead"
        );
        let minutes = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.1} min", s / 60.0));
        for r in &self.faults {
            out += &format!(
                "{:<22} {:>7} {:>9} {:>7.3} {:>12} {:>12}\n",
                r.fault,
                r.faults,
                r.detected,
                r.recall,
                minutes(r.median_lead_s),
                minutes(r.worst_lead_s)
            );
        }
        out += &format!(
            "\nfiring alerts {}, false {} ({:.2} per 1,000 entity-hours over {} entities x {:.1} h), precision {:.3}\n",
            self.firing_alerts,
            self.false_alerts,
            self.false_per_1000_entity_hours,
            self.entities,
            self.hours,
            self.precision
        );
        if !self.false_by_rule.is_empty() {
            let rules: Vec<String> = (self.false_by_rule.iter())
                .map(|(rule, n)| format!("{rule} {n}"))
                .collect();
            out += &format!("false alerts by rule: {}\n", rules.join(", "));
        }
        for w in &self.warnings {
            out += &format!(
                "{} before {} ({}): {} of {} breaches warned in time ({:.3}), median lead {}, worst {}\n",
                w.rule,
                w.breach,
                w.fault,
                w.warned_in_time,
                w.breaches,
                w.share_in_time,
                minutes(w.median_lead_s),
                minutes(w.worst_lead_s)
            );
        }
        if self.unsettled > 0 {
            out += &format!(
                "{} faults began too close to the end of the run to count\n",
                self.unsettled
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn fault(device: &str, kind: &str, start: i64, end: i64, rules: &[&str]) -> Fault {
        Fault {
            device: device.into(),
            kind: kind.into(),
            start,
            end,
            rules: rules.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn fired(key: &str, rule: &str, time: i64) -> Fired {
        Fired {
            key: key.into(),
            rule: rule.into(),
            time,
            episode_start: time,
            at_severity: None,
        }
    }

    #[test]
    fn recall_lead_times_and_false_alerts() {
        let faults = [
            fault("t1", "door", 0, 30 * MIN, &["door_left_open"]),
            fault("t2", "door", 10 * MIN, 40 * MIN, &["door_left_open"]),
            fault("t3", "door", 0, 20 * MIN, &["door_left_open"]),
            fault("t1", "delivery", 60 * MIN, 70 * MIN, &[]),
            // Begins 5 minutes before the end: left out.
            fault("t4", "door", 115 * MIN, 140 * MIN, &["door_left_open"]),
        ];
        let alerts = [
            fired("t1", "door_left_open", 5 * MIN),
            fired("t1", "door_left_open", 8 * MIN),
            fired("t2", "door_left_open", 17 * MIN),
            // Wrong rule for t3's fault; and an alert during a delivery.
            fired("t3", "too_warm", 6 * MIN),
            fired("t1", "door_left_open", 65 * MIN),
        ];
        let scoring = Scoring {
            grace: 10 * MIN,
            settle: 10 * MIN,
            entities: 4,
            hours: 2.0,
            warnings: Vec::new(),
        };
        let report = score(&faults, &alerts, 120 * MIN, &scoring);
        assert_eq!(
            report.faults,
            [Row {
                fault: "door".into(),
                faults: 3,
                detected: 2,
                recall: 2.0 / 3.0,
                median_lead_s: Some(420.0),
                worst_lead_s: Some(420.0),
            }]
        );
        assert_eq!(report.false_alerts, 2);
        assert_eq!(report.false_by_rule["too_warm"], 1);
        assert_eq!(report.false_per_1000_entity_hours, 250.0);
        assert_eq!(report.precision, 3.0 / 5.0);
        assert_eq!(report.unsettled, 1);
    }
}

#[cfg(test)]
mod warning_tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn warnings_are_timed_against_the_start_of_the_breach() {
        let fault = |device: &str| Fault {
            device: device.into(),
            kind: "compressor_failure".into(),
            start: 0,
            end: 120 * MIN,
            rules: vec!["too_warm".into(), "warming".into()],
        };
        let alert = |key: &str, rule: &str, time: i64, episode_start: i64| Fired {
            key: key.into(),
            rule: rule.into(),
            time,
            episode_start,
            at_severity: Some(format!("{rule}@critical")),
        };
        let faults = [fault("a"), fault("b"), fault("c")];
        let alerts = [
            // a: warned 20 minutes before the breach began.
            alert("a", "warming", 12 * MIN, 12 * MIN),
            alert("a", "too_warm", 34 * MIN, 32 * MIN),
            // b: warned 5 minutes ahead only.
            alert("b", "warming", 25 * MIN, 21 * MIN),
            alert("b", "too_warm", 32 * MIN, 30 * MIN),
            // c: no breach, so it does not count.
            alert("c", "warming", 30 * MIN, 26 * MIN),
        ];
        let scoring = Scoring {
            grace: 0,
            settle: 0,
            entities: 3,
            hours: 2.0,
            warnings: vec![Warning {
                rule: "warming".into(),
                breach: "too_warm".into(),
                needed: 15 * MIN,
            }],
        };
        let report = score(&faults, &alerts, 120 * MIN, &scoring);
        let row = &report.warnings[0];
        assert_eq!((row.breaches, row.warned_in_time), (2, 1));
        assert_eq!(row.median_lead_s, Some(1200.0));
        assert_eq!(row.worst_lead_s, Some(300.0));
        // A breach may name the rule at one severity; none is `warning`.
        let mut at = scoring.clone();
        at.warnings[0].breach = "too_warm@critical".into();
        let same = score(&faults, &alerts, 120 * MIN, &at);
        assert_eq!(same.warnings[0].breaches, 2);
        at.warnings[0].breach = "too_warm@warning".into();
        assert!(score(&faults, &alerts, 120 * MIN, &at).warnings.is_empty());
    }
}
