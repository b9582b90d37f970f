//! What floe does with keys and clocks it cannot trust: readings stamped
//! far in the future, devices that go quiet for good, more devices than
//! the pipeline allows.

mod support;

use serde_json::Value;
use std::path::Path;
use support::broker::{Floe, Mosquitto, wait_for};
use support::{json_lines, rfc3339, run_in, stderr, write};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z
const MINUTE: i64 = 60_000;

fn reading(device: &str, at: i64, temp: f64) -> String {
    format!(
        r#"{{"device":"{device}","ts":"{}","temperature_c":{temp}}}"#,
        rfc3339(at)
    )
}

/// A replay pipeline with `source_extra` added to its source.
fn pipeline(source_extra: &str) -> String {
    format!(
        r#"
name: keys
sources:
  trucks:
    type: file
    path: in.jsonl
    key: device
    time: ts
{source_extra}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, clear_below: 3.5}}
  silent: {{type: absence, inputs: [trucks], timeout: 5m}}
  per_10m: {{type: window, inputs: [trucks], size: 10m, aggregates: {{n: count()}}}}
sinks:
  alerts: {{type: file, inputs: [too_warm, silent], path: alerts.jsonl}}
  windows: {{type: file, inputs: [per_10m], path: windows.jsonl}}
dead_letter: {{type: file, path: dead.jsonl}}
"#
    )
}

fn reasons(dir: &Path) -> Vec<String> {
    json_lines(&dir.join("dead.jsonl"))
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn alerts(dir: &Path) -> Vec<(String, String, String)> {
    json_lines(&dir.join("alerts.jsonl"))
        .iter()
        .map(|a| {
            let text = |f: &str| a[f].as_str().unwrap_or_default().to_string();
            (text("rule"), text("key"), text("state"))
        })
        .collect()
}

#[test]
fn a_reading_dated_2099_is_dead_lettered_and_its_device_and_the_fleet_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for m in 0..30 {
        for truck in ["t1", "t2", "t3"] {
            lines.push(reading(truck, START + m * MINUTE, 2.0));
        }
        if m == 10 {
            lines.push(reading("t1", 4_070_908_800_000, 9.0)); // 2099-01-01
        }
    }
    write(dir.path(), "in.jsonl", lines.join("\n"));
    write(dir.path(), "p.yaml", pipeline(""));
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reasons = reasons(dir.path());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with("future: ")
            && reasons[0].ends_with(
                "ahead of the key's clock, and its next event did not follow (max_future 1h)"
            ),
        "{}",
        reasons[0]
    );
    // Nothing else happened: no reading of t1 was late after it, and the
    // fleet's clock did not jump to 2099 (every truck would be silent).
    assert!(alerts(dir.path()).is_empty(), "{:?}", alerts(dir.path()));
    let t1_windows = json_lines(&dir.path().join("windows.jsonl"))
        .iter()
        .filter(|w| w["key"] == "t1")
        .map(|w| w["n"].as_f64().unwrap_or_default())
        .sum::<f64>();
    assert_eq!(t1_windows, 30.0);
}

#[test]
fn a_gap_longer_than_max_future_in_a_recording_is_a_jump_not_a_wrong_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for m in (0..30).chain(300..330) {
        for truck in ["t1", "t2"] {
            lines.push(reading(truck, START + m * MINUTE, 2.0));
        }
    }
    // A last reading far ahead, with nothing after it to follow it.
    lines.push(reading("t2", START + 1000 * MINUTE, 2.0));
    write(dir.path(), "in.jsonl", lines.join("\n"));
    write(dir.path(), "p.yaml", pipeline(""));
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let payload = dead[0]["payload"].as_str().unwrap_or_default();
    assert!(payload.contains("2026-11-24T02:40:00"), "{payload}");
    let counted: f64 = json_lines(&dir.path().join("windows.jsonl"))
        .iter()
        .map(|w| w["n"].as_f64().unwrap_or_default())
        .sum();
    assert_eq!(counted, 120.0);
}

#[test]
fn live_readings_far_ahead_of_the_wall_clock_are_dead_lettered() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline("    max_future: 10m").replace(
        "    type: file\n    path: in.jsonl",
        &format!(
            "    type: mqtt\n    url: {}\n    topics: [fleet/+/t]\n    qos: 1",
            broker.url()
        ),
    );
    write(dir.path(), "p.yaml", yaml);
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to");
    let now = floe::event::time::now_ms();
    let lines = [
        reading("t1", now, 2.0),
        reading("t1", now + 3_600_000, 9.0),
        reading("t1", now + 1000, 9.0),
    ];
    broker.publish_lines("fleet/t1/t", 1, &lines);
    let seen = wait_for(std::time::Duration::from_secs(20), || {
        !reasons(dir.path()).is_empty() && !alerts(dir.path()).is_empty()
    });
    let (code, log) = floe.stop();
    assert!(seen && code == 0, "{log}");
    let reasons = reasons(dir.path());
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("ahead of the wall clock (max_future 10m)"),
        "{}",
        reasons[0]
    );
    // The reading after it was in time, and fired.
    assert_eq!(
        alerts(dir.path()),
        [("too_warm".into(), "t1".into(), "firing".into())]
    );
}

#[test]
fn a_device_silent_past_idle_timeout_is_forgotten_and_starts_afresh_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lines, mut t1_readings) = (Vec::new(), 0.0);
    for s in 0..120 * 12 {
        let at = START + s * 5_000;
        lines.push(reading("t2", at, 2.0));
        // t1 is hot for its first 3 minutes, then silent for an hour and
        // a half, then back, hot again.
        if !(3 * MINUTE..100 * MINUTE).contains(&(at - START)) {
            lines.push(reading("t1", at, 9.0));
            t1_readings += 1.0;
        }
    }
    write(dir.path(), "in.jsonl", lines.join("\n"));
    write(dir.path(), "p.yaml", pipeline("    idle_timeout: 1h"));
    // One worker: in a replay, timers run on the event time their worker
    // has seen, and t2 must keep t1's worker's clock going.
    let out = run_in(dir.path(), &["run", "p.yaml", "--workers", "1"]);
    let summary = stderr(&out);
    assert!(out.status.success(), "{summary}");
    assert!(summary.contains("1 idle keys forgotten"), "{summary}");
    let t1: Vec<(String, String)> = alerts(dir.path())
        .into_iter()
        .filter(|(_, key, _)| key == "t1")
        .map(|(rule, _, state)| (rule, state))
        .collect();
    // Silent for 5 minutes: `silent` fires. Forgotten after an hour: its
    // too_warm episode is gone, so the hot return fires a new one (and
    // `silent` does not resolve: the key it fired for was forgotten).
    assert_eq!(
        t1,
        [
            ("too_warm".to_string(), "firing".to_string()),
            ("silent".to_string(), "firing".to_string()),
            ("too_warm".to_string(), "firing".to_string()),
        ]
    );
    // Its open window was emitted when it was forgotten, not lost.
    let t1_windows: f64 = json_lines(&dir.path().join("windows.jsonl"))
        .iter()
        .filter(|w| w["key"] == "t1")
        .map(|w| w["n"].as_f64().unwrap_or_default())
        .sum();
    assert_eq!(t1_windows, t1_readings);
}

#[test]
fn beyond_max_keys_new_devices_are_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..10)
        .flat_map(|m| (1..=5).map(move |t| reading(&format!("t{t}"), START + m * MINUTE, 2.0)))
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n"));
    write(dir.path(), "p.yaml", pipeline("    max_keys: 3"));
    let out = support::floe()
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .env("FLOE_LOG", "warn")
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(log.matches("3 keys reached (max_keys)").count(), 1, "{log}");
    assert!(
        log.contains("20 events of new keys refused (max_keys)"),
        "{log}"
    );
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 20, "two devices for ten minutes\n{log}");
    // Which two depends on which worker met its new key first.
    let mut per_key = std::collections::BTreeMap::<String, usize>::new();
    for d in &dead {
        let payload: Value = serde_json::from_str(d["payload"].as_str().unwrap()).unwrap();
        *per_key
            .entry(payload["key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_key.values().collect::<Vec<_>>(),
        [&10, &10],
        "{per_key:?}"
    );
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("max_keys: the source already has 3 keys"),
        "{}",
        dead[0]
    );
}

#[test]
fn live_a_quiet_devices_held_reading_is_processed_without_waiting_for_its_next() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline("    max_out_of_orderness: 2s").replace(
        "    type: file\n    path: in.jsonl",
        &format!(
            "    type: mqtt\n    url: {}\n    topics: [fleet/+/t]\n    qos: 1",
            broker.url()
        ),
    );
    write(dir.path(), "p.yaml", yaml);
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to");
    let now = floe::event::time::now_ms();
    // One warm reading, then silence: held back for ordering, it is
    // processed once nothing has come for 2 s of wall clock.
    broker.publish_lines("fleet/t1/t", 1, &[reading("t1", now, 9.0)]);
    let fired = wait_for(std::time::Duration::from_secs(15), || {
        !alerts(dir.path()).is_empty()
    });
    assert!(
        fired,
        "the held reading was never processed:\n{}",
        floe.log()
    );
    // A reading older than it, still within the tolerance of the key's
    // clock, comes too late now.
    broker.publish_lines("fleet/t1/t", 1, &[reading("t1", now - 1000, 9.0)]);
    let dead = wait_for(std::time::Duration::from_secs(15), || {
        !reasons(dir.path()).is_empty()
    });
    let (code, log) = floe.stop();
    assert!(dead && code == 0, "{log}");
    assert_eq!(
        alerts(dir.path()),
        [("too_warm".into(), "t1".into(), "firing".into())]
    );
    assert_eq!(
        reasons(dir.path()),
        [
            "late: 1s behind the key's latest event (max_out_of_orderness 2s), which was processed when the key went quiet"
        ]
    );
}
