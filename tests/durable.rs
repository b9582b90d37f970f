//! Durable state: floe killed with SIGKILL and started again on the same
//! state dir loses no reading, fires no episode twice, and goes on with
//! its windows and models as if it had never stopped.

mod support;

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;
use support::broker::{Floe, Mosquitto, wait_for};
use support::kafka::{Tansu, produce_with};
use support::{rfc3339, write};

/// The JSON lines of a file; a line cut short by a killed process is
/// skipped.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn alert_ids(path: &Path) -> BTreeSet<String> {
    lines(path)
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The newest checkpoint's number in a state dir.
fn checkpoint_seq(state: &Path) -> u64 {
    std::fs::read_dir(state)
        .map(|files| {
            files
                .flatten()
                .filter_map(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("checkpoint-")?.parse().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Waits until the state dir holds a checkpoint started after now.
fn wait_for_checkpoint(state: &Path) {
    let now = checkpoint_seq(state);
    let taken = wait_for(Duration::from_secs(20), || checkpoint_seq(state) >= now + 2);
    assert!(taken, "no checkpoint after {now} in {}", state.display());
}

/// A reading of device `d`: its number `i`, every second of event time;
/// hot (8 C) in spells of 50 readings.
fn reading(d: u32, i: u32) -> String {
    let temp = if (i / 50) % 2 == 1 { 8.0 } else { 2.0 };
    format!(
        r#"{{"device":"m{d}","seq":{},"ts":"{}","temp":{temp}}}"#,
        i * 10 + d,
        rfc3339(1_795_000_000_000 + i as i64 * 1000)
    )
}

fn mqtt_pipeline(url: &str) -> String {
    format!(
        r#"
name: durable
state: {{dir: state, interval: 200ms}}
sources:
  readings:
    type: mqtt
    url: {url}
    topics: [plant/+/reading]
    qos: 1
    key: device
    time: ts
operators:
  # Names `seq`, so the decoder keeps it.
  numbered: {{type: filter, inputs: [readings], condition: seq >= 0}}
  hot: {{type: threshold, inputs: [readings], field: temp, above: 4, clear_below: 3.5}}
  # A reading the broker sends again after a kill (journaled, not yet
  # acknowledged) is counted once.
  once: {{type: dedup, inputs: [readings], field: seq, ttl: 10m}}
  # Counts every reading: one whose effect was lost shows as a short count,
  # one counted twice as a long one.
  per_100s: {{type: window, inputs: [once], size: 100s, aggregates: {{n: count()}}}}
sinks:
  seen: {{type: file, inputs: [numbered], path: readings.jsonl}}
  alerts: {{type: file, inputs: [hot], path: alerts.jsonl}}
  windows: {{type: file, inputs: [per_100s], path: windows.jsonl}}
dead_letter: {{type: file, path: dead.jsonl}}
"#
    )
}

/// Publishes `per_device` readings of each of `devices` at QoS 1 at a
/// steady `rate` per second, waiting for the broker's acknowledgements.
fn publish_paced(port: u16, devices: u32, per_device: u32, rate: u32) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut options = rumqttc::MqttOptions::new("durable-test-publisher", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = rumqttc::AsyncClient::new(options, 1024);
        let total = u64::from(devices * per_device);
        let poller = tokio::spawn(async move {
            let mut acked = 0u64;
            while acked < total {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("publisher: {e}"),
                }
            }
        });
        let per_tick = (rate / 100).max(1);
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0;
        for i in 0..per_device {
            for d in 0..devices {
                if sent % per_tick == 0 {
                    ticker.tick().await;
                }
                let topic = format!("plant/m{d}/reading");
                let payload = reading(d, i).into_bytes();
                client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
                sent += 1;
            }
        }
        tokio::time::timeout(Duration::from_secs(60), poller)
            .await
            .expect("the broker acknowledged every reading")
            .unwrap();
    });
}

/// The `seq`s floe wrote to readings.jsonl, with how often each appears.
fn seqs(dir: &Path) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    for reading in lines(&dir.join("readings.jsonl")) {
        if let Some(seq) = reading["seq"].as_f64() {
            *counts.entry(seq as u64).or_default() += 1;
        }
    }
    counts
}

#[test]
fn mqtt_readings_survive_three_kill_9s_and_alerts_keep_their_ids() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", mqtt_pipeline(&broker.url()));
    let (devices, per_device) = (10, 2000);
    let total = u64::from(devices * per_device);

    let mut floe = Floe::run(dir.path(), "floe-0.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to");
    let port = broker.port;
    let publisher = std::thread::spawn(move || publish_paced(port, devices, per_device, 2000));
    let mut logs = String::new();
    for (round, at) in [3000u64, 8000, 13000].into_iter().enumerate() {
        let reached = wait_for(Duration::from_secs(60), || {
            seqs(dir.path()).len() as u64 >= at
        });
        assert!(
            reached,
            "floe never processed {at} readings:\n{}",
            floe.log()
        );
        logs += &floe.kill();
        let log = format!("floe-{}.log", round + 1);
        floe = Floe::run(dir.path(), &log, &["run", "p.yaml"]);
    }
    publisher.join().expect("the publisher finished");
    let all_in = wait_for(Duration::from_secs(60), || {
        seqs(dir.path()).len() as u64 >= total
    });
    let (code, log) = floe.stop();
    logs += &log;
    assert!(all_in && code == 0, "exit {code}\n{logs}");
    let counts = seqs(dir.path());
    let missing: Vec<u64> = (0..total).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} readings lost: {:?}\n{logs}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(logs.matches("restored checkpoint").count(), 3, "{logs}");

    // The alerts equal those of the same readings replayed from a file,
    // id for id: a duplicate is only ever a repeated id.
    let replay = tempfile::tempdir().unwrap();
    let readings: Vec<String> = (0..per_device)
        .flat_map(|i| (0..devices).map(move |d| reading(d, i)))
        .collect();
    write(replay.path(), "all.jsonl", readings.join("\n"));
    write(
        replay.path(),
        "p.yaml",
        mqtt_pipeline(&broker.url()).replace("state: {dir: state, interval: 200ms}", ""),
    );
    let out = support::run_in(
        replay.path(),
        &["run", "p.yaml", "--input", "readings=file:all.jsonl"],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let expected = alert_ids(&replay.path().join("alerts.jsonl"));
    // Per device 20 hot spells: 20 firings, 19 resolves (the last spell
    // is still hot at the end).
    assert_eq!(expected.len(), devices as usize * 39);
    assert_eq!(alert_ids(&dir.path().join("alerts.jsonl")), expected);
    // And every window counts every reading once; the last ones, still open
    // when the live run was stopped, wait for its next run.
    let windows = |dir: &Path| -> BTreeSet<String> {
        let end = rfc3339(1_795_000_000_000 + i64::from(per_device) * 1000);
        (lines(&dir.join("windows.jsonl")).iter())
            .filter(|w| w["event_time"].as_str() != Some(end.as_str()))
            .map(|w| format!("{} {} {}", w["key"], w["event_time"], w["n"]))
            .collect()
    };
    let expected = windows(replay.path());
    assert_eq!(expected.len(), devices as usize * 19);
    assert_eq!(windows(dir.path()), expected, "{logs}");
}

/// Three hours of one machine, a reading every 10 s: hot from 50 to 100
/// minutes, and one vibration spike at 150 minutes.
fn machine_readings() -> Vec<String> {
    (0..3 * 360)
        .map(|i: i64| {
            let minute = i / 6;
            let temp = if (50..100).contains(&minute) {
                45.0
            } else {
                20.0 + (i % 5) as f64 * 0.1
            };
            let vibration = if i == 150 * 6 {
                3.0
            } else {
                1.0 + (i % 7) as f64 * 0.01
            };
            format!(
                r#"{{"device":"press-1","ts":"{}","temp":{temp},"vibration":{vibration}}}"#,
                rfc3339(1_795_000_000_000 + i * 10_000)
            )
        })
        .collect()
}

fn machine_pipeline(state: bool) -> String {
    let state = match state {
        true => "state: {dir: state, interval: 200ms}",
        false => "",
    };
    format!(
        r#"
name: press
{state}
sources:
  machine: {{type: file, path: machine.jsonl, speed: 600, key: device, time: ts}}
operators:
  too_hot: {{type: threshold, inputs: [machine], field: temp, above: 40, for: 1m, clear_below: 30, severity: critical}}
  shaking: {{type: anomaly, inputs: [machine], field: vibration, method: zscore, warmup: 1h, threshold: 6}}
  five_min: {{type: window, inputs: [machine], size: 5m, aggregates: {{n: count(), t: mean(temp)}}}}
sinks:
  alerts: {{type: file, inputs: [too_hot, shaking], path: alerts.jsonl}}
  windows: {{type: file, inputs: [five_min], path: windows.jsonl}}
"#
    )
}

#[test]
fn a_restart_keeps_the_firing_episode_the_open_window_and_the_warmed_model() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "machine.jsonl", machine_readings().join("\n"));
    write(dir.path(), "p.yaml", machine_pipeline(true));
    let floe = Floe::run(dir.path(), "first.log", &["run", "p.yaml"]);
    let alerts = dir.path().join("alerts.jsonl");
    let fired = wait_for(Duration::from_secs(30), || {
        lines(&alerts).iter().any(|a| a["rule"] == "too_hot")
    });
    assert!(fired, "too_hot never fired:\n{}", floe.log());
    // Killed mid-episode (it resolves at 100 minutes, 5 s of replay later)
    // once a checkpoint holds the firing.
    wait_for_checkpoint(&dir.path().join("state"));
    let first_log = floe.kill();
    assert!(
        !lines(&alerts).iter().any(|a| a["state"] == "resolved"),
        "killed too late:\n{first_log}"
    );
    let mut floe = Floe::run(dir.path(), "second.log", &["run", "p.yaml"]);
    let (code, log) = floe.wait();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("restored checkpoint"), "{log}");

    let reference = tempfile::tempdir().unwrap();
    write(
        reference.path(),
        "machine.jsonl",
        machine_readings().join("\n"),
    );
    write(
        reference.path(),
        "p.yaml",
        machine_pipeline(false).replace("speed: 600", "speed: 0"),
    );
    let out = support::run_in(reference.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", support::stderr(&out));

    let all = lines(&alerts);
    let firings: Vec<&Value> = all
        .iter()
        .filter(|a| a["rule"] == "too_hot" && a["state"] == "firing")
        .collect();
    assert_eq!(
        firings.len(),
        1,
        "the episode fired again after the restart:\n{log}"
    );
    let resolved: Vec<&Value> = all
        .iter()
        .filter(|a| a["rule"] == "too_hot" && a["state"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{log}");
    assert_eq!(resolved[0]["episode_start"], firings[0]["episode_start"]);
    // The spike at 150 minutes is scored by the model warmed before the
    // kill: a fresh one would still be warming up until the end.
    assert!(
        all.iter()
            .any(|a| a["rule"] == "shaking" && a["state"] == "firing"),
        "the anomaly model lost its warm-up:\n{log}"
    );
    assert_eq!(
        alert_ids(&alerts),
        alert_ids(&reference.path().join("alerts.jsonl"))
    );
    // Every 5-minute window, the one open at the kill included, counts
    // what an uninterrupted run counts.
    let windows = |dir: &Path| -> BTreeSet<String> {
        lines(&dir.join("windows.jsonl"))
            .iter()
            .map(|w| w.to_string())
            .collect()
    };
    let expected = windows(reference.path());
    // Three hours, not aligned to the 5-minute boundaries.
    assert_eq!(expected.len(), 37);
    assert_eq!(windows(dir.path()), expected);
}

/// Readings of `trucks` trucks, one every 10 s each, numbered by `seq`:
/// hot (5 C) in spells of 30 readings.
fn fleet_readings(trucks: u64, per_truck: u64) -> Vec<(String, Vec<u8>)> {
    (0..trucks * per_truck)
        .map(|seq| {
            let (truck, i) = (seq % trucks, seq / trucks);
            let temp = if (i / 30) % 2 == 1 { 5.0 } else { 2.0 };
            let json = format!(
                r#"{{"device":"t{truck}","seq":{seq},"ts":"{}","temperature_c":{temp}}}"#,
                rfc3339(1_795_000_000_000 + i as i64 * 10_000)
            );
            (format!("t{truck}"), json.into_bytes())
        })
        .collect()
}

/// A pipeline of a consumer group member (with a state dir), or of the
/// same rules over a file (without); `ordering` is its
/// `max_out_of_orderness`.
fn kafka_pipeline(brokers: &str, member: bool, ordering: &str) -> String {
    let state = match member {
        true => "state: {dir: state, interval: 200ms}",
        false => "",
    };
    format!(
        r#"
name: fleet
{state}
sources:
  trucks:
    type: kafka
    brokers: "{brokers}"
    topics: [telemetry]
    group_id: fleet
    key: device
    time: ts
    max_out_of_orderness: {ordering}
    # A killed member is noticed in seconds, not librdkafka's 45.
    options: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
operators:
  numbered: {{type: filter, inputs: [trucks], condition: seq >= 0}}
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, for: 1m, clear_below: 3.5}}
  five_min: {{type: window, inputs: [trucks], size: 5m, aggregates: {{n: count()}}}}
sinks:
  readings: {{type: file, inputs: [numbered], path: readings.jsonl}}
  alerts: {{type: file, inputs: [too_warm], path: alerts.jsonl}}
  windows: {{type: file, inputs: [five_min], path: windows.jsonl}}
"#
    )
}

/// The same rules run once over `records` from a file, to its end: what
/// one uninterrupted instance makes of them.
fn one_run_over(records: &[(String, Vec<u8>)], brokers: &str, ordering: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let recording: Vec<String> = (records.iter())
        .map(|(_, json)| String::from_utf8_lossy(json).into_owned())
        .collect();
    write(dir.path(), "all.jsonl", recording.join("\n"));
    write(
        dir.path(),
        "p.yaml",
        kafka_pipeline(brokers, false, ordering),
    );
    let out = support::run_in(
        dir.path(),
        &["run", "p.yaml", "--input", "trucks=file:all.jsonl"],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    dir
}

#[test]
fn kafka_readings_survive_kill_9s_and_alerts_equal_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path());
    let brokers = tansu.brokers();
    tansu.create_topic("telemetry", 3);
    let total = 30_000;
    let records = fleet_readings(20, total / 20);
    write(dir.path(), "p.yaml", kafka_pipeline(&brokers, true, "30s"));

    let mut floe = Floe::run(dir.path(), "floe-0.log", &["run", "p.yaml"]);
    // Produced while floe runs, in three parts, floe killed after each.
    let mut logs = String::new();
    for (round, part) in records.chunks(10_000).enumerate() {
        // One record per batch: tansu 0.6 answers a fetch with the batches
        // that start at or after the offset asked for, so a consumer that
        // resumes in the middle of a batch never gets the batch's rest
        // (Kafka sends the whole batch; clients skip the records before
        // the offset). floe warns when that happens; here it would lose
        // what the checkpoint did not cover.
        let one_per_batch = [("batch.num.messages", "1")];
        produce_with(&brokers, "telemetry", part.iter().cloned(), &one_per_batch);
        let until = 10_000 * (round as u64 + 1) - 3_000;
        let reached = wait_for(Duration::from_secs(60), || {
            seqs(dir.path()).len() as u64 >= until
        });
        assert!(
            reached,
            "floe never read {until} readings:\n{logs}{}",
            floe.log()
        );
        logs += &floe.kill();
        floe = Floe::run(
            dir.path(),
            &format!("floe-{}.log", round + 1),
            &["run", "p.yaml"],
        );
    }
    // The last 30 s of each truck stay held back for ordering (they are
    // in the last checkpoint, for the next run).
    let held = 20 * 3;
    let all_in = wait_for(Duration::from_secs(60), || {
        seqs(dir.path()).len() as u64 >= total - held
    });
    let (code, log) = floe.stop();
    logs += &log;
    let counts = seqs(dir.path());
    let missing: Vec<u64> = (0..total).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        all_in && code == 0,
        "exit {code}, missing {missing:?}\n{logs}"
    );
    assert_eq!(logs.matches("restored checkpoint").count(), 3, "{logs}");
    assert_eq!(missing, (total - held..total).collect::<Vec<_>>(), "{logs}");

    let reference = one_run_over(&records, &brokers, "30s");
    // The live run was stopped, not ended: what the reference raised from
    // the last 30 s of each truck (held back for ordering, and released
    // only by the end of its input) is not in it.
    let before_the_end = |dir: &Path| -> BTreeSet<String> {
        let last = 1_795_000_000_000 + (total as i64 / 20 - 1) * 10_000;
        let cutoff = rfc3339(last - 60_000);
        let alerts = lines(&dir.join("alerts.jsonl"));
        (alerts.iter())
            .filter(|a| {
                a["event_time"]
                    .as_str()
                    .is_some_and(|t| t < cutoff.as_str())
            })
            .map(|a| a["alert_id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let expected = before_the_end(reference.path());
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(before_the_end(dir.path()), expected, "{logs}");
    let live = alert_ids(&dir.path().join("alerts.jsonl"));
    let all = alert_ids(&reference.path().join("alerts.jsonl"));
    assert!(
        live.is_subset(&all),
        "alerts an uninterrupted run never raised\n{logs}"
    );
}

/// A recording of two machines, both hot from the start.
fn hot_readings(from_minute: i64, minutes: i64, temp: f64) -> String {
    let lines: Vec<String> = (from_minute..from_minute + minutes)
        .flat_map(|m| {
            ["m1", "m2"].map(|d| {
                format!(
                    r#"{{"device":"{d}","ts":"{}","temp":{temp}}}"#,
                    rfc3339(1_795_000_000_000 + m * 60_000)
                )
            })
        })
        .collect();
    lines.join("\n")
}

fn two_rules(warm_above: f64) -> String {
    format!(
        r#"
name: two-rules
state: {{dir: state}}
sources:
  machines: {{type: file, path: in.jsonl, key: device, time: ts}}
operators:
  hot: {{type: threshold, inputs: [machines], field: temp, above: 40, clear_below: 30}}
  warm: {{type: threshold, inputs: [machines], field: temp, above: {warm_above}, clear_below: 25}}
sinks:
  alerts: {{type: file, inputs: [hot, warm], path: alerts.jsonl}}
"#
    )
}

#[test]
fn an_operator_whose_definition_changed_starts_afresh_and_the_others_keep_their_state() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", two_rules(35.0));
    write(dir.path(), "in.jsonl", hot_readings(0, 10, 45.0));
    let out = support::run_in(dir.path(), &["run", "p.yaml", "--workers", "2"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    // Both fired; now `warm` is edited and the machines cool down.
    // With one worker where there were two: keys find their state by
    // name, not by where they were.
    write(dir.path(), "p.yaml", two_rules(36.0));
    write(dir.path(), "next.jsonl", hot_readings(10, 10, 20.0));
    let out = support::floe()
        .args(["run", "p.yaml", "--input", "machines=file:next.jsonl"])
        .args(["--workers", "1"])
        .current_dir(dir.path())
        .env("FLOE_LOG", "info")
        .output()
        .unwrap();
    let log = support::stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        log.matches("\"warm\" changed since the checkpoint").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("\"hot\" changed"), "{log}");
    let resolved: BTreeSet<(String, String)> = lines(&dir.path().join("alerts.jsonl"))
        .iter()
        .filter(|a| a["state"] == "resolved")
        .map(|a| (a["rule"].to_string(), a["key"].to_string()))
        .collect();
    // `hot` remembered its episodes and resolves them; `warm` started
    // with none, so there is nothing for it to resolve.
    let expected: BTreeSet<(String, String)> = ["\"m1\"", "\"m2\""]
        .map(|k| ("\"hot\"".to_string(), k.to_string()))
        .into();
    assert_eq!(resolved, expected);
}

#[test]
fn a_state_dir_of_another_pipeline_or_in_use_is_refused_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", two_rules(35.0));
    write(dir.path(), "in.jsonl", hot_readings(0, 10, 45.0));
    let out = support::run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    write(
        dir.path(),
        "other.yaml",
        two_rules(35.0).replace("name: two-rules", "name: other"),
    );
    let out = support::run_in(dir.path(), &["run", "other.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = support::stderr(&out);
    assert!(
        stderr.contains("belongs to pipeline \"two-rules\", not \"other\""),
        "{stderr}"
    );
    // While one floe runs on it (a slow paced replay), a second is turned
    // away.
    write(dir.path(), "slow.jsonl", hot_readings(10, 600, 45.0));
    let paced = two_rules(35.0).replace("path: in.jsonl", "path: slow.jsonl, speed: 60");
    write(dir.path(), "paced.yaml", paced);
    let first = Floe::run(dir.path(), "paced.log", &["run", "paced.yaml"]);
    // It holds the lock once it has restored the first run's checkpoint.
    first.wait_for_log("restored checkpoint");
    let locked = wait_for(Duration::from_secs(10), || {
        let out = support::run_in(dir.path(), &["run", "p.yaml"]);
        out.status.code() == Some(1) && support::stderr(&out).contains("in use by another floe")
    });
    let (code, log) = first.stop();
    assert!(locked, "{log}");
    assert_eq!(code, 0, "{log}");
}

/// The `N events` and `N held back` of a run's summary line.
fn summary_counts(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains(" events in "))
        .unwrap_or_default();
    let number_before = |what: &str| -> u64 {
        line.split(what)
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let held = match line.contains(" held back") {
        true => number_before(" held back"),
        false => 0,
    };
    (number_before(" events in"), held)
}

fn sim_pipeline(state: bool) -> String {
    let state = match state {
        true => "state: {dir: state, interval: 200ms}",
        false => "",
    };
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka/trucks-50.yaml");
    format!(
        r#"
name: simulated
{state}
sources:
  trucks: {{type: sim, scenario: "{}", speed: 600, seed: 4, duration: 30m, key: device, time: ts, max_out_of_orderness: 30s}}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, for: 2m}}
sinks:
  alerts: {{type: file, inputs: [too_warm], path: alerts.jsonl}}
"#,
        scenario.display()
    )
}

#[test]
fn a_stopped_simulation_resumes_at_the_message_it_stopped_at() {
    let reference = tempfile::tempdir().unwrap();
    write(
        reference.path(),
        "p.yaml",
        sim_pipeline(false).replace("speed: 600", "speed: 0"),
    );
    let out = support::run_in(reference.path(), &["run", "p.yaml"]);
    let (all, _) = summary_counts(&support::stderr(&out));
    assert!(
        out.status.success() && all > 8000,
        "{}",
        support::stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", sim_pipeline(true));
    let first = Floe::run(dir.path(), "first.log", &["run", "p.yaml"]);
    wait_for_checkpoint(&dir.path().join("state"));
    let (code, first_log) = first.stop();
    assert_eq!(code, 0, "{first_log}");
    let mut second = Floe::run(dir.path(), "second.log", &["run", "p.yaml"]);
    let (code, second_log) = second.wait();
    assert_eq!(code, 0, "{second_log}");
    let (before, held) = summary_counts(&first_log);
    let (after, _) = summary_counts(&second_log);
    assert!(before > 0 && after > 0, "{first_log}\n{second_log}");
    // What the first run held back for ordering, the second processed.
    assert_eq!(
        before + after,
        all,
        "held {held}\n{first_log}\n{second_log}"
    );
    assert_eq!(
        alert_ids(&dir.path().join("alerts.jsonl")),
        alert_ids(&reference.path().join("alerts.jsonl"))
    );
}

/// One machine every 10 s for `minutes`, `temp` rising from 20 by a
/// tenth of a degree a minute.
fn rising_readings(minutes: i64) -> String {
    let lines: Vec<String> = (0..minutes * 6)
        .map(|i| {
            format!(
                r#"{{"device":"m1","ts":"{}","temp":{:.2}}}"#,
                rfc3339(1_795_000_000_000 + i * 10_000),
                20.0 + i as f64 / 60.0
            )
        })
        .collect();
    lines.join("\n") + "\n"
}

fn watched_pipeline(above: &str, speed: &str) -> String {
    format!(
        r#"
name: watched
state: {{dir: state, interval: 200ms}}
sources:
  machines: {{type: file, path: in.jsonl, key: device, time: ts, speed: {speed}}}
operators:
  hot: {{type: threshold, inputs: [machines], field: temp, above: {above}}}
  ten_min: {{type: window, inputs: [machines], size: 10m, aggregates: {{n: count(), top: max(temp)}}}}
sinks:
  alerts: {{type: file, inputs: [hot], path: alerts.jsonl}}
  windows: {{type: file, inputs: [ten_min], path: windows.jsonl}}
"#
    )
}

/// `--watch`: an edit of the threshold applies mid-run, the window open
/// meanwhile counts what an uninterrupted run counts, and an invalid edit
/// is reported with its place while the pipeline goes on.
#[test]
fn a_watched_pipeline_takes_an_edit_and_keeps_the_open_window() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.jsonl", rising_readings(120));
    // Two hours of readings at 600x: about 12 s.
    write(dir.path(), "p.yaml", watched_pipeline("100", "600"));
    let mut floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml", "--watch"]);
    let windows = dir.path().join("windows.jsonl");
    let started = wait_for(Duration::from_secs(20), || lines(&windows).len() >= 2);
    assert!(started, "no window closed:\n{}", floe.log());

    write(dir.path(), "p.yaml", "name: watched\nsources: [\n");
    floe.wait_for_log("not reloaded");
    assert!(
        floe.log().contains("p.yaml:2:10: unclosed bracket"),
        "{}",
        floe.log()
    );
    // 20 C plus a degree every ten minutes: 100 C never comes, 21 C does.
    write(dir.path(), "p.yaml", watched_pipeline("21", "600"));
    floe.wait_for_log("reloaded");
    let (code, log) = floe.wait();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("restored checkpoint"), "{log}");
    let alerts = lines(&dir.path().join("alerts.jsonl"));
    assert_eq!(alerts.len(), 1, "the new limit did not apply: {alerts:?}");

    let reference = tempfile::tempdir().unwrap();
    write(reference.path(), "in.jsonl", rising_readings(120));
    let plain = watched_pipeline("21", "0").replace("state: {dir: state, interval: 200ms}", "");
    write(reference.path(), "p.yaml", plain);
    let out = support::run_in(reference.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let expected = lines(&reference.path().join("windows.jsonl"));
    // Two hours, not aligned to the ten-minute boundaries.
    assert_eq!(expected.len(), 13);
    assert_eq!(lines(&windows), expected, "{log}");
}

#[test]
fn a_consumer_group_hands_keyed_state_over_when_a_member_dies_and_one_joins() {
    let root = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(root.path());
    let brokers = tansu.brokers();
    tansu.create_topic("telemetry", 6);
    let (trucks, per_truck) = (60, 200);
    let total = trucks * per_truck;
    let records = fleet_readings(trucks, per_truck);
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &dirs {
        write(dir.path(), "p.yaml", kafka_pipeline(&brokers, true, "0s"));
    }
    let start = |i: usize| Floe::run(dirs[i].path(), "floe.log", &["run", "p.yaml"]);
    let mut members: Vec<Option<Floe>> = (0..3).map(|i| Some(start(i))).collect();
    let seen = || -> HashMap<u64, u32> {
        let mut all = HashMap::new();
        for dir in &dirs {
            for (seq, n) in seqs(dir.path()) {
                *all.entry(seq).or_default() += n;
            }
        }
        all
    };
    let logs = |members: &[Option<Floe>]| -> String {
        members
            .iter()
            .flatten()
            .map(|m| m.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    // The producer stands for the fleet: a steady stream, in parts. One
    // record per batch, for tansu's fetch (see the kill -9 test above).
    let producing = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for part in records.chunks(200) {
                let one_per_batch = [("batch.num.messages", "1")];
                produce_with(&brokers, "telemetry", part.iter().cloned(), &one_per_batch);
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    let reached = |at: usize| wait_for(Duration::from_secs(90), || seen().len() >= at);
    // Killed in the second hot spell (its episodes fired, not resolved),
    // and a new member added once the broker has noticed. tansu 0.6 tells
    // only the member whose heartbeat found the dead one gone to rejoin:
    // the others keep their old assignment and the dead member's
    // partitions stay unread until a member joins, which makes every
    // member rejoin (Kafka tells them all at once).
    let in_spell = |i: u64| (i * trucks) as usize;
    assert!(reached(in_spell(105)), "{}", logs(&members));
    let revokes = |members: &[Option<Floe>]| logs(members).matches("revoked").count();
    let killed = members[2].take().map(Floe::kill).unwrap_or_default();
    let before = revokes(&members);
    let noticed = wait_for(Duration::from_secs(60), || revokes(&members) > before);
    assert!(noticed, "{killed}\n{}", logs(&members));
    members.push(Some(start(3)));
    producing.join().unwrap();
    let all_in = wait_for(Duration::from_secs(90), || seen().len() as u64 >= total);
    // The new member took a share, from the changelog.
    let joined = wait_for(Duration::from_secs(30), || {
        members[3]
            .as_ref()
            .is_some_and(|m| m.log().contains("keys restored from the changelog"))
    });
    let mut log = killed;
    for member in members.iter_mut().filter_map(Option::take) {
        let (code, text) = member.stop();
        assert_eq!(code, 0, "{text}");
        log += &text;
    }
    let seen = seen();
    let missing: Vec<u64> = (0..total).filter(|s| !seen.contains_key(s)).collect();
    assert!(all_in && missing.is_empty(), "missing {missing:?}\n{log}");
    assert!(joined, "{log}");
    assert!(
        lines(&dirs[3].path().join("readings.jsonl")).len() > 100,
        "the joining member read nothing\n{log}"
    );

    let reference = one_run_over(&fleet_readings(trucks, per_truck), &brokers, "0s");
    let expected = alert_ids(&reference.path().join("alerts.jsonl"));
    // Per truck 3 hot spells, each a firing and a resolve.
    assert_eq!(expected.len(), trucks as usize * 6);
    let mut alerts = BTreeSet::new();
    let mut episodes: HashMap<(String, String), Vec<(usize, String)>> = HashMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        alerts.extend(alert_ids(&dir.path().join("alerts.jsonl")));
        for a in lines(&dir.path().join("alerts.jsonl")) {
            let episode = (a["key"].to_string(), a["episode_start"].to_string());
            let state = a["state"].as_str().unwrap_or_default().to_string();
            episodes.entry(episode).or_default().push((i, state));
        }
    }
    assert_eq!(alerts, expected, "{log}");
    // Episodes open when their keys moved were resolved by the next owner.
    let handed_over = (episodes.values())
        .filter(|seen| {
            let by = |state: &str| -> BTreeSet<usize> {
                seen.iter()
                    .filter(|(_, s)| s == state)
                    .map(|(i, _)| *i)
                    .collect()
            };
            by("resolved").iter().any(|i| !by("firing").contains(i))
        })
        .count();
    assert!(
        handed_over > 0,
        "no episode was resolved by a new owner\n{log}"
    );
    // Every window (stamped with its end) closed before the last reading
    // counts what one member counts; the one still open waits.
    let cutoff = rfc3339(1_795_000_000_000 + (per_truck as i64 - 1) * 10_000);
    let windows = |dir: &Path| -> BTreeSet<String> {
        (lines(&dir.join("windows.jsonl")).iter())
            .filter(|w| {
                w["event_time"]
                    .as_str()
                    .is_some_and(|t| t < cutoff.as_str())
            })
            .map(|w| format!("{} {} {}", w["key"], w["event_time"], w["n"]))
            .collect()
    };
    let expected = windows(reference.path());
    assert_eq!(expected.len(), trucks as usize * 6);
    let live: BTreeSet<String> = dirs.iter().flat_map(|d| windows(d.path())).collect();
    assert_eq!(live, expected, "{log}");
}
