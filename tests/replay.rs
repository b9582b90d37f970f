//! Replaying recordings through `floe run`: alert episodes, determinism,
//! ordering within `max_out_of_orderness`, and malformed input.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use support::{Lcg, json_lines, rfc3339, run_in, stderr, write};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z
const STEP: i64 = 10_000;
const SLOT: i64 = 30 * 60_000;

const PIPELINE: &str = r#"
name: replay
sources:
  trucks:
    type: file
    path: in.jsonl
    key: device
    time: ts
    max_out_of_orderness: 30s
operators:
  too_warm:
    type: threshold
    inputs: [trucks]
    field: temperature_c
    above: 4.0
    for: 2m
    clear_below: 3.5
    severity: critical
sinks:
  alerts:
    type: file
    inputs: [too_warm]
    path: alerts.jsonl
  events:
    type: file
    inputs: [trucks]
    path: events.jsonl
dead_letter:
  type: file
  path: dead.jsonl
"#;

/// What happens to a truck's cargo during one half-hour slot.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Normal,
    /// Above the limit for this many readings, long enough to fire.
    Excursion(i64),
    /// Above the limit for fewer readings than `for: 2m` needs.
    Short(i64),
    /// One wild reading.
    Spike,
}

/// A recording of `trucks` trucks for `slots` half-hours, and the alerts a
/// correct pipeline raises: (key, state, event time).
fn recording(trucks: usize, slots: i64, seed: u64) -> (Vec<String>, Vec<(String, String, i64)>) {
    let mut rng = Lcg(seed);
    let plans: Vec<Vec<Slot>> = (0..trucks)
        .map(|_| {
            (0..slots)
                .map(|_| match rng.below(4) {
                    0 => Slot::Normal,
                    1 => Slot::Excursion(13 + rng.below(100) as i64),
                    2 => Slot::Short(1 + rng.below(11) as i64),
                    _ => Slot::Spike,
                })
                .collect()
        })
        .collect();
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    let readings_per_slot = SLOT / STEP;
    for i in 0..slots * readings_per_slot {
        let t = START + i * STEP;
        let (slot, offset) = (i / readings_per_slot, i % readings_per_slot);
        // Excursions start a few minutes into their slot.
        let into = offset - 30;
        for (n, plan) in plans.iter().enumerate() {
            let device = format!("truck-{n:03}");
            let noise = rng.unit() * 0.6 - 0.3;
            let temperature = match plan[slot as usize] {
                Slot::Excursion(len) | Slot::Short(len) if (0..len).contains(&into) => 5.5 + noise,
                Slot::Spike if into == 0 => 9.0,
                _ => 2.5 + noise,
            };
            if let Slot::Excursion(len) = plan[slot as usize] {
                if into == 12 {
                    expected.push((device.clone(), "firing".to_string(), t));
                }
                if into == len {
                    expected.push((device.clone(), "resolved".to_string(), t));
                }
            }
            lines.push(format!(
                r#"{{"device":"{device}","ts":"{}","kind":"reefer","temperature_c":{temperature:.2},"setpoint_c":2.0}}"#,
                rfc3339(t)
            ));
        }
    }
    (lines, expected)
}

fn run_pipeline(dir: &Path, lines: &[String]) -> Vec<Value> {
    write(dir, "pipeline.yaml", PIPELINE);
    write(dir, "in.jsonl", lines.join("\n") + "\n");
    let _ = std::fs::remove_file(dir.join("alerts.jsonl"));
    let out = run_in(dir, &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "floe run failed: {}", stderr(&out));
    json_lines(&dir.join("alerts.jsonl"))
}

/// Alerts as (key, state, event time) in a stable order.
fn episodes(alerts: &[Value]) -> Vec<(String, String, i64)> {
    let mut seen: Vec<_> = alerts
        .iter()
        .map(|a| {
            let time =
                floe::event::time::parse_rfc3339(a["event_time"].as_str().unwrap_or_default());
            (
                a["key"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
                time.unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    seen
}

/// Alerts without their wall-clock field, keyed by id.
fn without_emitted_at(alerts: &[Value]) -> BTreeMap<String, Value> {
    alerts
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.as_object_mut().map(|o| o.remove("emitted_at"));
            (a["alert_id"].as_str().unwrap_or_default().to_string(), a)
        })
        .collect()
}

#[test]
fn one_firing_and_one_resolved_per_long_excursion_and_none_for_short_ones_or_spikes() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, mut expected) = recording(20, 8, 42);
    expected.sort();
    let alerts = run_pipeline(dir.path(), &lines);
    assert!(
        expected.len() >= 40,
        "the recording should hold many excursions"
    );
    assert_eq!(episodes(&alerts), expected);
    for alert in &alerts {
        for field in [
            "alert_id",
            "pipeline",
            "rule",
            "severity",
            "emitted_at",
            "value",
            "message",
        ] {
            assert!(alert.get(field).is_some(), "{field} missing in {alert}");
        }
        assert_eq!(alert["rule"], "too_warm");
        assert_eq!(alert["severity"], "critical");
    }
}

#[test]
fn the_same_input_gives_the_same_alert_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, _) = recording(10, 6, 7);
    let first = without_emitted_at(&run_pipeline(dir.path(), &lines));
    let second = without_emitted_at(&run_pipeline(dir.path(), &lines));
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[test]
fn events_shuffled_within_max_out_of_orderness_give_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (lines, _) = recording(10, 6, 99);
    let sorted = without_emitted_at(&run_pipeline(dir.path(), &lines));
    // Shuffle within blocks of 3 readings of every truck: no event moves
    // more than 20 s from its place, inside the 30 s tolerance.
    let mut rng = Lcg(5);
    let mut shuffled = lines.clone();
    for block in shuffled.chunks_mut(30) {
        for i in (1..block.len()).rev() {
            block.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    assert_ne!(shuffled, lines);
    let reordered = without_emitted_at(&run_pipeline(dir.path(), &shuffled));
    assert!(!sorted.is_empty());
    assert_eq!(reordered, sorted);
    assert!(
        json_lines(&dir.path().join("dead.jsonl")).is_empty(),
        "nothing should be late"
    );
}

#[test]
fn events_beyond_max_out_of_orderness_are_dead_lettered_as_late() {
    let dir = tempfile::tempdir().unwrap();
    let line = |t: i64| {
        format!(
            r#"{{"device":"t1","ts":"{}","temperature_c":2.0}}"#,
            rfc3339(t)
        )
    };
    let lines = [
        line(START),
        line(START + 60_000),
        line(START + 20_000),
        line(START + 45_000),
    ];
    run_pipeline(dir.path(), &lines);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("late: 40s behind"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[0]["origin"]["position"], 3);
    assert_eq!(json_lines(&dir.path().join("events.jsonl")).len(), 3);
}

#[test]
fn malformed_lines_are_dead_lettered_with_reason_and_line_and_good_lines_all_processed() {
    let dir = tempfile::tempdir().unwrap();
    let good = |n: i64| {
        format!(
            r#"{{"device":"t{n}","ts":"{}","temperature_c":3.0}}"#,
            rfc3339(START + n * STEP)
        )
        .into_bytes()
    };
    let mut huge = br#"{"device":"t9","ts":"2026-11-23T10:00:00Z","note":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    huge.extend_from_slice(br#""}"#);
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "bad JSON"),
        (
            br#"{"ts":"2026-11-23T10:00:00Z","temperature_c":3.0}"#.to_vec(),
            "missing key field `device`",
        ),
        (
            br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":"warm"}"#.to_vec(),
            "field `temperature_c` must be a number, got a string",
        ),
        (
            br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":NaN}"#.to_vec(),
            "bad JSON",
        ),
        (
            br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":"NaN"}"#.to_vec(),
            "must be a number",
        ),
        (Vec::new(), "empty message"),
        (huge, "exceeds the limit"),
        (
            b"{\"device\":\"t\xff\xfe\",\"ts\":\"2026-11-23T10:00:00Z\"}".to_vec(),
            "invalid UTF-8",
        ),
        (
            br#"{"device":"t1","ts":"3026-11-23T10:00:00Z","temperature_c":3.0}"#.to_vec(),
            "outside 2000-01-01..2100-01-01",
        ),
        (
            br#"{"device":"t1","ts":"not a time","temperature_c":3.0}"#.to_vec(),
            "not an RFC 3339 timestamp",
        ),
        (br#"[1,2,3]"#.to_vec(), "bad JSON"),
    ];
    let mut file = Vec::new();
    let mut bad_lines = BTreeMap::new();
    let mut line_no = 0;
    for (n, (line, reason)) in bad.iter().enumerate() {
        for g in 0..3 {
            file.extend(good(n as i64 * 3 + g));
            file.push(b'\n');
            line_no += 1;
        }
        file.extend(line);
        file.push(b'\n');
        line_no += 1;
        bad_lines.insert(line_no, *reason);
    }
    std::fs::write(dir.path().join("in.jsonl"), &file).unwrap();
    write(dir.path(), "pipeline.yaml", PIPELINE);
    let out = run_in(dir.path(), &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let processed = json_lines(&dir.path().join("events.jsonl"));
    assert_eq!(
        processed.len(),
        bad.len() * 3,
        "every good line is processed"
    );
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for record in &dead {
        let line = record["origin"]["line"].as_u64().unwrap_or_default();
        let expected = bad_lines
            .get(&line)
            .unwrap_or_else(|| panic!("unexpected dead letter {record}"));
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(expected),
            "line {line}: {reason:?} should mention {expected:?}"
        );
        assert_eq!(record["source"], "trucks");
        assert!(record.get("payload").is_some() || record.get("payload_base64").is_some());
    }
}

#[test]
fn csv_recordings_replay_like_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("device,ts,temperature_c\n");
    for i in 0..20 {
        let temperature = if (3..15).contains(&i) { 5.0 } else { 2.0 };
        csv.push_str(&format!(
            "t1,{},{temperature}\n",
            rfc3339(START + i * 30_000)
        ));
    }
    write(dir.path(), "in.csv", csv);
    write(dir.path(), "pipeline.yaml", PIPELINE);
    let out = run_in(
        dir.path(),
        &["run", "pipeline.yaml", "--input", "trucks=file:in.csv"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    let expected = vec![
        ("t1".to_string(), "firing".to_string(), START + 7 * 30_000),
        (
            "t1".to_string(),
            "resolved".to_string(),
            START + 15 * 30_000,
        ),
    ];
    assert_eq!(episodes(&alerts), expected);
}

#[test]
fn a_device_that_reconnects_with_an_hour_of_backlog_is_processed_in_its_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let line = |device: &str, t: i64, temperature: f64| {
        format!(
            r#"{{"device":"{device}","ts":"{}","temperature_c":{temperature}}}"#,
            rfc3339(t)
        )
    };
    let minute = 60_000;
    let mut lines = Vec::new();
    // Both trucks report for the first hour; then truck b goes offline.
    for m in 0..60 {
        lines.push(line("a", START + m * minute, 2.0));
        lines.push(line("b", START + m * minute, 2.0));
    }
    // During b's second hour only a is heard from, and a warms up at 1:30.
    for m in 60..120 {
        lines.push(line(
            "a",
            START + m * minute,
            if m >= 90 { 6.0 } else { 2.0 },
        ));
    }
    // b reconnects and sends its buffered second hour: it warmed at 1:10.
    for m in 60..120 {
        lines.push(line(
            "b",
            START + m * minute,
            if (70..80).contains(&m) { 6.0 } else { 2.0 },
        ));
    }
    let alerts = run_pipeline(dir.path(), &lines);
    let expected = vec![
        ("a".to_string(), "firing".to_string(), START + 92 * minute),
        ("b".to_string(), "firing".to_string(), START + 72 * minute),
        ("b".to_string(), "resolved".to_string(), START + 80 * minute),
    ];
    assert_eq!(episodes(&alerts), expected);
    assert!(json_lines(&dir.path().join("dead.jsonl")).is_empty());
}

#[test]
fn sigterm_stops_a_paced_replay_cleanly_and_flushes_what_was_processed() {
    let dir = tempfile::tempdir().unwrap();
    // One reading a second for an hour, replayed in real time: far longer
    // than the test waits.
    let lines: Vec<String> = (0..3600)
        .map(|s| {
            format!(
                r#"{{"device":"t1","ts":"{}","temperature_c":9.0}}"#,
                rfc3339(START + s * 1000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    write(
        dir.path(),
        "pipeline.yaml",
        PIPELINE.replace("path: in.jsonl", "path: in.jsonl\n    speed: 1"),
    );
    let out = support::run_until_signal(dir.path(), &["run", "pipeline.yaml"], "TERM", None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let processed = json_lines(&dir.path().join("events.jsonl")).len();
    assert!((1..3600).contains(&processed), "processed {processed}");
    assert!(
        stderr(&out).contains(&format!("{processed} events")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sighup_stops_a_run_with_a_drain_not_on_the_spot() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..3600)
        .map(|s| {
            format!(
                r#"{{"device":"t1","ts":"{}","temperature_c":9.0}}"#,
                rfc3339(START + s * 1000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    write(
        dir.path(),
        "pipeline.yaml",
        PIPELINE.replace("path: in.jsonl", "path: in.jsonl\n    speed: 1"),
    );
    let out = support::run_until_signal(dir.path(), &["run", "pipeline.yaml"], "HUP", None);
    // Killed by the signal there would be no exit code and no summary.
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(" events in "), "{}", stderr(&out));
}

#[test]
fn dedup_after_the_source_makes_redelivered_readings_count_once() {
    let dir = tempfile::tempdir().unwrap();
    // Two trucks, one warm reading a minute each for five minutes, every
    // line delivered twice (as a broker does after a reconnect), one id
    // written `2.0` the second time.
    let mut lines = Vec::new();
    for minute in 0..5 {
        for device in ["t1", "t2"] {
            let line = |seq: &str| {
                format!(
                    r#"{{"device":"{device}","ts":"{}","seq":{seq},"temperature_c":5.0}}"#,
                    rfc3339(START + minute * 60_000)
                )
            };
            let seq = minute.to_string();
            lines.push(line(&seq));
            lines.push(line(if minute == 2 { "2.0" } else { &seq }));
        }
    }
    lines.push(r#"{"device":"t1","ts":"2026-11-23T10:05:00Z","temperature_c":5.0}"#.into());
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    write(
        dir.path(),
        "pipeline.yaml",
        r#"
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts}
operators:
  once: {type: dedup, inputs: [trucks], field: seq, ttl: 10m}
  readings:
    type: window
    inputs: [once]
    size: 10m
    aggregates: {n: count()}
sinks:
  events: {type: file, inputs: [once], path: events.jsonl}
  counts: {type: file, inputs: [readings], path: counts.jsonl}
"#,
    );
    let out = run_in(dir.path(), &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Each reading once, and the one without an id.
    assert_eq!(json_lines(&dir.path().join("events.jsonl")).len(), 11);
    let counts = json_lines(&dir.path().join("counts.jsonl"));
    let mut counts: Vec<_> = counts
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["n"].as_f64().unwrap(),
            )
        })
        .collect();
    counts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(counts, [("t1".into(), 6.0), ("t2".into(), 5.0)]);
}

#[test]
fn a_condition_of_twenty_thousand_terms_validates_and_filters_and_one_nested_too_deep_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let condition = vec!["temperature_c > 4"; 20_000].join(" && ");
    let pipeline = |condition: &str| {
        format!(
            r#"
sources:
  trucks: {{type: file, path: in.jsonl, key: device, time: ts}}
operators:
  warm:
    type: filter
    inputs: [trucks]
    condition: "{condition}"
sinks:
  events: {{type: file, inputs: [warm], path: events.jsonl}}
"#
        )
    };
    write(dir.path(), "long.yaml", pipeline(&condition));
    let lines: Vec<String> = [5.0, 3.0, 6.0]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                r#"{{"device":"t1","ts":"{}","temperature_c":{t}}}"#,
                rfc3339(START + i as i64 * 1000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    let out = run_in(dir.path(), &["validate", "long.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run_in(dir.path(), &["run", "long.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let passed = json_lines(&dir.path().join("events.jsonl"));
    let temps: Vec<f64> = passed
        .iter()
        .map(|e| e["temperature_c"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [5.0, 6.0]);

    let deep = "(".repeat(10_000) + "temperature_c > 4" + &")".repeat(10_000);
    write(dir.path(), "deep.yaml", pipeline(&deep));
    let out = run_in(dir.path(), &["validate", "deep.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "deep.yaml:8:80: operator \"warm\": bad condition: too deeply nested (more than 64 levels of parentheses, `not` or unary `-`)"
    );
}

#[test]
fn a_replay_too_slow_for_the_clock_waits_for_sigterm_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..3)
        .map(|s| {
            format!(
                r#"{{"device":"t1","ts":"{}","temperature_c":9.0}}"#,
                rfc3339(START + s * 3_600_000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    // Readings an hour apart: at 1e-12 the second is due in a hundred
    // million years; at 1e-300, later than the clock can count.
    for speed in ["1e-12", "1e-300"] {
        let _ = std::fs::remove_file(dir.path().join("events.jsonl"));
        write(
            dir.path(),
            "pipeline.yaml",
            PIPELINE.replace(
                "path: in.jsonl",
                &format!("path: in.jsonl\n    speed: {speed}"),
            ),
        );
        let out = run_in(dir.path(), &["validate", "pipeline.yaml"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let out = support::run_until_signal(dir.path(), &["run", "pipeline.yaml"], "TERM", None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "speed {speed}: {}",
            stderr(&out)
        );
        let processed = json_lines(&dir.path().join("events.jsonl")).len();
        assert_eq!(processed, 1, "speed {speed}");
    }
}

#[test]
fn dotted_names_read_fields_inside_objects() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = [2.0, 5.0, 6.0, 3.0]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                r#"{{"meta":{{"device":"t1","ts":"{}"}},"reefer":{{"temp_c":{t},"setpoint_c":2,"door":{{"open":false}}}},"gps":[52.1,4.9]}}"#,
                rfc3339(START + i as i64 * 60_000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    write(
        dir.path(),
        "pipeline.yaml",
        r#"
sources:
  trucks: {type: file, path: in.jsonl, key: meta.device, time: meta.ts}
operators:
  too_warm:
    type: threshold
    inputs: [trucks]
    field: reefer.temp_c
    above: 4
    message: "{key} at {value} C (setpoint {reefer.setpoint_c} C)"
sinks:
  alerts: {type: file, inputs: [too_warm], path: alerts.jsonl}
dead_letter: {type: file, path: dead.jsonl}
"#,
    );
    let out = run_in(dir.path(), &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_lines(&dir.path().join("dead.jsonl")).is_empty());
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    assert_eq!(
        episodes(&alerts),
        [
            ("t1".to_string(), "firing".to_string(), START + 60_000),
            ("t1".to_string(), "resolved".to_string(), START + 3 * 60_000),
        ]
    );
    assert_eq!(alerts[0]["message"], "t1 at 5 C (setpoint 2 C)");
}

#[test]
fn time_format_reads_epoch_seconds_and_local_timestamps_and_auto_hints_at_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let seconds = START / 1000;
    // Warm from minute 2 to 4: fires at 4 (`for: 2m`), resolves at 5.
    let temperature = |i: i64| if (2..5).contains(&i) { 5.0 } else { 3.0 };
    let lines: Vec<String> = (0..6)
        .map(|i| {
            let t = temperature(i);
            format!(
                r#"{{"device":"t1","ts":{}.5,"temperature_c":{t}}}"#,
                seconds + i * 60
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    let mut csv = String::from("device,ts,temperature_c\n");
    for i in 0..6 {
        let t = temperature(i);
        csv.push_str(&format!("t1,2026-11-23 10:0{i}:00.5,{t}\n"));
    }
    write(dir.path(), "in.csv", csv);
    let pipeline = |time_format: &str| {
        PIPELINE.replace(
            "    time: ts\n",
            &format!("    time: ts\n    time_format: {time_format}\n"),
        )
    };
    for (time_format, input) in [
        ("epoch_s", "trucks=file:in.jsonl"),
        ("\"%Y-%m-%d %H:%M:%S%.f\"", "trucks=file:in.csv"),
    ] {
        let _ = std::fs::remove_file(dir.path().join("alerts.jsonl"));
        write(dir.path(), "pipeline.yaml", pipeline(time_format));
        let out = run_in(dir.path(), &["run", "pipeline.yaml", "--input", input]);
        assert!(out.status.success(), "{time_format}: {}", stderr(&out));
        assert!(json_lines(&dir.path().join("dead.jsonl")).is_empty());
        let alerts = json_lines(&dir.path().join("alerts.jsonl"));
        assert_eq!(
            episodes(&alerts),
            [
                ("t1".into(), "firing".into(), START + 4 * 60_000 + 500),
                ("t1".into(), "resolved".into(), START + 5 * 60_000 + 500),
            ],
            "{time_format}"
        );
    }

    // Without time_format, seconds are read as milliseconds of January 1970.
    write(dir.path(), "pipeline.yaml", PIPELINE);
    let out = run_in(dir.path(), &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 6);
    assert_eq!(
        dead[0]["reason"],
        format!(
            "time field `ts`: {seconds}.5 is outside 2000-01-01..2100-01-01 as epoch milliseconds; if it is epoch seconds, set `time_format: epoch_s`"
        )
    );
}

#[test]
fn whole_numbers_in_outputs_are_written_as_integers() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = [3, 5, 5, 4]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                r#"{{"device":"t1","ts":"{}","temperature_c":{t}}}"#,
                rfc3339(START + i as i64 * 60_000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    write(
        dir.path(),
        "pipeline.yaml",
        r#"
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts}
operators:
  too_warm: {type: threshold, inputs: [trucks], field: temperature_c, above: 4}
  stats:
    type: window
    inputs: [trucks]
    size: 10m
    aggregates: {n: count(), mean: mean(temperature_c), top: max(temperature_c)}
sinks:
  alerts: {type: file, inputs: [too_warm], path: alerts.jsonl}
  windows: {type: file, inputs: [stats], path: windows.jsonl}
"#,
    );
    let out = run_in(dir.path(), &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let windows = std::fs::read_to_string(dir.path().join("windows.jsonl")).unwrap();
    assert!(
        windows
            .trim_end()
            .ends_with(r#","n":4,"mean":4.25,"top":5}"#),
        "{windows}"
    );
    let alerts = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    let firing = alerts.lines().next().unwrap_or_default();
    assert!(
        firing.contains(r#""value":5,"message":"t1 temperature_c is 5, above 4","limit":4}"#),
        "{firing}"
    );
}

#[test]
fn a_field_no_event_carries_is_warned_about_once_naming_the_closest_field_seen() {
    let dir = tempfile::tempdir().unwrap();
    let line = |i: i64| {
        format!(
            r#"{{"device":"t{}","ts":"{}","temperature_c":3.5,"reefer":{{"door":false}}}}"#,
            i % 3,
            rfc3339(START + i * 1000)
        )
    };
    let lines: Vec<String> = (0..1200).map(line).collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    write(dir.path(), "short.jsonl", lines[..3].join("\n") + "\n");
    write(
        dir.path(),
        "pipeline.yaml",
        r#"
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts}
operators:
  closed: {type: filter, inputs: [trucks], condition: "reefer.door == false"}
  temp_5m:
    type: window
    inputs: [closed]
    size: 5m
    aggregates: {temp_mean: mean(temperatur_c)}
  too_warm: {type: threshold, inputs: [temp_5m], field: temp_mean, above: 4}
  warm_now: {type: threshold, inputs: [closed], field: temperatur_c, above: 4}
sinks:
  alerts: {type: file, inputs: [too_warm, warm_now], path: alerts.jsonl}
"#,
    );
    let warning = |events: &str| {
        format!(
            "source \"trucks\": no event has field \"temperatur_c\" after {events} (read by operators \"temp_5m\", \"warm_now\"; fields seen: device, reefer.door, temperature_c, ts), did you mean \"temperature_c\"?"
        )
    };
    for (input, events) in [("in.jsonl", "1000 events"), ("short.jsonl", "3 events")] {
        let out = run_in(
            dir.path(),
            &[
                "run",
                "pipeline.yaml",
                "--input",
                &format!("trucks=file:{input}"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let log = stderr(&out);
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("no event has")).collect();
        assert_eq!(warnings.len(), 1, "{log}");
        assert!(warnings[0].ends_with(&warning(events)), "{log}");
    }

    // Spelled right, nothing to say; nor in the pipeline's own tests.
    let fixed = std::fs::read_to_string(dir.path().join("pipeline.yaml"))
        .unwrap()
        .replace("temperatur_c", "temperature_c");
    let with_tests = fixed.clone()
        + r#"tests:
  - name: a record without the door
    inputs:
      trucks:
        - {device: t1, ts: "2026-11-23T10:00:00Z", temperature_c: 5.0}
"#;
    write(dir.path(), "pipeline.yaml", fixed);
    let out = run_in(dir.path(), &["run", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("no event has"), "{}", stderr(&out));
    write(dir.path(), "pipeline.yaml", with_tests);
    let out = run_in(dir.path(), &["test", "pipeline.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("no event has"), "{}", stderr(&out));
}

/// A pipeline whose sinks must not be written by a replay: an alert file,
/// the live MQTT broker (a port nothing listens on here), a dead-letter file.
fn live_pipeline() -> String {
    let port = support::broker::free_port();
    format!(
        r#"
name: live
sources:
  trucks: {{type: mqtt, url: "mqtt://127.0.0.1:{port}", topics: [fleet/+/telemetry], key: device, time: ts}}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0}}
sinks:
  archive: {{type: file, inputs: [too_warm], path: live-alerts.jsonl}}
  dispatch: {{type: mqtt, inputs: [too_warm], url: "mqtt://127.0.0.1:{port}"}}
dead_letter: {{type: file, path: live-dead.jsonl}}
"#
    )
}

const REPLAYED: &str = concat!(
    "{\"device\":\"t1\",\"ts\":\"2026-11-23T10:00:00Z\",\"temperature_c\":5.0}\n",
    "{\"device\":\"t1\",\"ts\":\"2026-11-23T10:01:00Z\",\"temperature_c\":\"hot\"}\n",
    "{\"device\":\"t1\",\"ts\":\"2026-11-23T10:02:00Z\",\"temperature_c\":3.0}\n",
);

#[test]
fn a_replay_writes_to_the_sinks_given_by_sink_and_a_dry_run_to_stdout_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", live_pipeline());
    write(dir.path(), "in.jsonl", REPLAYED);
    let live = ["live-alerts.jsonl", "live-dead.jsonl"];

    let out = run_in(
        dir.path(),
        &[
            "run",
            "p.yaml",
            "--input",
            "trucks=file:in.jsonl",
            "--sink",
            "archive=file:replayed.jsonl",
            "--sink",
            "dispatch=stdout",
            "--sink",
            "dead_letter=file:replayed-dead.jsonl",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alerts = json_lines(&dir.path().join("replayed.jsonl"));
    let states: Vec<_> = alerts.iter().map(|a| a["state"].clone()).collect();
    assert_eq!(states, ["firing", "resolved"]);
    assert_eq!(support::stdout(&out).lines().count(), 2);
    let dead = json_lines(&dir.path().join("replayed-dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(live.iter().all(|f| !dir.path().join(f).exists()));

    let out = run_in(
        dir.path(),
        &[
            "run",
            "p.yaml",
            "--input",
            "trucks=file:in.jsonl",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Each alert once, though two sinks take it; the dead letter on stderr.
    let printed: Vec<Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let states: Vec<_> = printed.iter().map(|a| a["state"].clone()).collect();
    assert_eq!(states, ["firing", "resolved"]);
    assert!(
        stderr(&out).contains("must be a number"),
        "{}",
        stderr(&out)
    );
    assert!(live.iter().all(|f| !dir.path().join(f).exists()));

    for (args, error) in [
        (
            vec!["--sink", "archiv=stdout"],
            "--sink archiv=stdout: the pipeline has no sink \"archiv\", did you mean `archive`?",
        ),
        (
            vec!["--sink", "archive=ftp://x"],
            "--sink archive=ftp://x: expected stdout, file:PATH, mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC",
        ),
    ] {
        let out = run_in(dir.path(), &[&["run", "p.yaml"][..], &args].concat());
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr(&out).trim_end(), error);
    }
    let out = run_in(
        dir.path(),
        &["run", "p.yaml", "--dry-run", "--sink", "archive=stdout"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn zero_workers_are_refused_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", live_pipeline());
    for (value, why) in [("0", "must be at least 1"), ("two", "not a whole number")] {
        let out = run_in(dir.path(), &["run", "p.yaml", "--workers", value]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let expected = format!("error: invalid value '{value}' for '--workers <WORKERS>': {why}");
        assert!(stderr(&out).starts_with(&expected), "{}", stderr(&out));
    }
}

/// Runs a replay with a state dir (it logs checkpoints) twice, stderr to a
/// file as a service manager would; returns what was logged.
fn logged(dir: &Path, flags: &[&str], envs: &[(&str, &str)]) -> String {
    let log = dir.join("stderr.log");
    let status = support::floe()
        .args(["run", "p.yaml", "--state-dir", "state"])
        .args(flags)
        .current_dir(dir)
        .env("FLOE_LOG", "debug")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .expect("floe runs");
    assert!(status.success());
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn logs_to_a_file_have_no_colours_and_json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = r#"
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts}
operators:
  too_warm: {type: threshold, inputs: [trucks], field: temperature_c, above: 4.0}
sinks:
  out: {type: stdout, inputs: [too_warm]}
"#;
    write(dir.path(), "p.yaml", pipeline);
    write(dir.path(), "in.jsonl", REPLAYED);
    let text = logged(dir.path(), &[], &[]);
    assert!(text.contains("DEBUG checkpoint 1"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape sequences in {text:?}");

    for (flags, envs) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[], &[("FLOE_LOG_FORMAT", "json")]),
    ] {
        let text = logged(dir.path(), flags, envs);
        // The run's summary is a report, not a log line.
        let logs: Vec<&str> = text.lines().filter(|l| !l.starts_with("floe: ")).collect();
        assert!(logs.len() >= 2, "{text}");
        for line in logs {
            let log: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(
                log["level"].is_string() && log["fields"]["message"].is_string(),
                "{line}"
            );
        }
    }
    let out = run_in(dir.path(), &["--log-format", "xml", "run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

/// `trace:` names the field with a correlation id: each alert carries the
/// id of the reading that changed its state (a W3C traceparent gives its
/// trace id), and a dead letter the id of the event it rejected.
#[test]
fn alerts_and_dead_letters_carry_the_trace_id_of_their_event() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = PIPELINE
        .replace(
            "    max_out_of_orderness: 30s\n",
            "    max_out_of_orderness: 30s\n    trace: meta.request\n",
        )
        .replace("    for: 2m\n", "");
    write(dir.path(), "p.yaml", pipeline);
    let trace = "4bf92f3577b34da6a3ce929d0e0736aa";
    let line = |i: i64, temp: f64, request: &str| {
        format!(
            r#"{{"device":"t1","ts":"{}","temperature_c":{temp},"meta":{{"request":"{request}"}}}}"#,
            rfc3339(START + i * STEP)
        )
    };
    let lines = [
        line(0, 2.0, "r-0"),
        line(1, 5.0, "r-1"),
        line(2, 5.0, "r-2"),
        line(3, 3.0, &format!("00-{trace}-00f067aa0ba902b7-01")),
        // 60 s behind the latest: late, and dead-lettered with its id.
        line(-3, 2.0, "r-late"),
    ];
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    let ids: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap(),
                a["trace_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(ids, [("firing", "r-1"), ("resolved", trace)]);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["origin"]["trace_id"], "r-late", "{:?}", dead[0]);
}

/// `inhibit_when`: no temperature alert is sent for a truck while its
/// door is open; one that outlasts the open door is sent when it closes.
#[test]
fn a_rule_is_inhibited_for_a_key_while_its_inhibitor_fires_for_that_key() {
    let dir = tempfile::tempdir().unwrap();
    let readings = [
        // t1: the door opens, then it warms: held back; the door closes
        // while it is still warm: sent then.
        ("t1", 0, 1, 2.0),
        ("t1", 1, 1, 5.0),
        ("t1", 2, 0, 5.0),
        ("t1", 3, 0, 2.0),
        // An episode wholly within an open door: neither alert is sent.
        ("t1", 5, 1, 2.0),
        ("t1", 6, 1, 5.0),
        ("t1", 7, 1, 2.0),
        ("t1", 8, 0, 2.0),
        // t2's door is closed: its alerts go out.
        ("t2", 1, 0, 5.0),
        ("t2", 2, 0, 2.0),
    ];
    let lines: Vec<String> = (readings.iter())
        .map(|(truck, minute, door, temp)| {
            format!(
                r#"{{"device":"{truck}","ts":"{}","door":{door},"temp":{temp}}}"#,
                rfc3339(1_795_428_000_000 + minute * 60_000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n"));
    let pipeline = r#"
name: inhibited
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts}
operators:
  door_open: {type: threshold, inputs: [trucks], field: door, above: 0.5}
  too_warm: {type: threshold, inputs: [trucks], field: temp, above: 4, inhibit_when: door_open}
sinks:
  alerts: {type: file, inputs: [too_warm], path: alerts.jsonl}
"#;
    write(dir.path(), "p.yaml", pipeline);
    let out = support::run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    let seen: Vec<String> = (alerts.iter())
        .map(|a| {
            let minute = a["event_time"].as_str().unwrap_or_default()[14..16].to_string();
            let why = a["suppressed"].as_str().unwrap_or("sent");
            format!(
                "{} {} {minute} {why}",
                a["key"].as_str().unwrap_or("?"),
                a["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut by_key = seen.clone();
    by_key.sort_by_key(|line| line.starts_with("t2"));
    assert_eq!(
        by_key,
        [
            "t1 firing 01 inhibited by door_open",
            "t1 firing 01 sent",
            "t1 resolved 03 sent",
            "t1 firing 06 inhibited by door_open",
            "t1 resolved 07 inhibited by door_open",
            "t2 firing 01 sent",
            "t2 resolved 02 sent",
        ]
    );

    let typo = pipeline.replace("inhibit_when: door_open", "inhibit_when: door_opn");
    write(dir.path(), "typo.yaml", typo);
    let out = support::run_in(dir.path(), &["validate", "typo.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        support::stderr(&out).contains("\"door_opn\" is not an operator that raises alerts"),
        "{}",
        support::stderr(&out)
    );
}
