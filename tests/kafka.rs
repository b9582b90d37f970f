//! The `kafka` source and sink and `floe simulate --to kafka://` against
//! librdkafka's mock cluster (real Kafka protocol on a local port, run by
//! this test process): alerts end to end, replay, consumer-group
//! rebalances, brokers going away, restarts, bad records.

mod support;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::broker::{Floe, wait_for};
use support::kafka::{consume, produce};
use support::{json_lines, rfc3339, run_in, stderr, write};

fn cluster(topic: &str) -> MockCluster<'static, DefaultProducerContext> {
    cluster_with(topic, 3)
}

fn cluster_with(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic(topic, partitions, 1).expect("a topic");
    cluster
}

fn simulate(dir: &Path, to: &str, rate: &str) -> std::process::Child {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim/trucks-500.yaml");
    support::floe()
        .args(["simulate", scenario.to_str().unwrap(), "--to", to])
        .args(["--rate", rate, "--duration", "4s", "--seed", "2"])
        .current_dir(dir)
        .env("FLOE_LOG", "warn")
        .stderr(std::fs::File::create(dir.join("simulate.log")).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn the_simulator_produces_keyed_readings() {
    let cluster = cluster("telemetry");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let status = simulate(dir.path(), &format!("kafka://{brokers}/telemetry"), "5000")
        .wait()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("simulate.log")).unwrap();
    assert!(status.success(), "{log}");
    let records = consume(&brokers, "telemetry", 20_000);
    assert_eq!(records.len(), 20_000);
    for (key, payload) in &records {
        let reading: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(reading["device"], key.as_str());
    }
}

#[test]
fn a_broker_away_mid_stream_loses_nothing() {
    let cluster = cluster("telemetry");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut publishing = simulate(dir.path(), &format!("kafka://{brokers}/telemetry"), "5000");
    std::thread::sleep(Duration::from_secs(1));
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    cluster.broker_up(1).unwrap();
    let status = publishing.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("simulate.log")).unwrap();
    assert!(status.success(), "{log}");
    let records = consume(&brokers, "telemetry", 20_000);
    let distinct: std::collections::HashSet<&String> = records.iter().map(|(_, p)| p).collect();
    assert_eq!(
        distinct.len(),
        20_000,
        "readings lost while the broker was down"
    );
}

#[test]
fn alerts_go_to_a_topic_keyed_by_entity() {
    let cluster = cluster("alerts");
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let start = 1_795_428_000_000i64;
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let temperature = if i % 20 > 10 { 6.0 } else { 3.0 };
            format!(
                r#"{{"device":"t{}","ts":"{}","temperature_c":{temperature}}}"#,
                i % 2,
                rfc3339(start + i / 2 * 60_000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n"));
    let pipeline = format!(
        r#"
sources:
  trucks: {{type: file, path: in.jsonl, key: device, time: ts}}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, for: 2m}}
sinks:
  archive: {{type: file, inputs: [too_warm], path: alerts.jsonl}}
  dispatch: {{type: kafka, inputs: [too_warm], brokers: "{brokers}", topic: alerts}}
"#
    );
    write(dir.path(), "p.yaml", pipeline);
    let out = run_in(dir.path(), &["run", "p.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let filed = json_lines(&dir.path().join("alerts.jsonl"));
    // Each truck warms twice, and cools down once in between.
    assert_eq!(filed.len(), 6, "{filed:?}");
    let mut produced = consume(&brokers, "alerts", filed.len());
    produced.sort();
    let mut expected: Vec<(String, String)> = filed
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_string(),
                a["alert_id"].to_string(),
            )
        })
        .collect();
    expected.sort();
    let got: Vec<(String, String)> = produced
        .iter()
        .map(|(key, payload)| {
            let alert: Value = serde_json::from_str(payload).unwrap();
            (key.clone(), alert["alert_id"].to_string())
        })
        .collect();
    assert_eq!(got, expected);
}

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z

/// Reading number `seq`: ten trucks, one reading each every 10 s, each
/// warming above 4 C for five minutes in every twenty.
fn reading(seq: u64) -> (String, String) {
    let device = format!("t{}", seq % 10);
    let minute = seq / 10 / 6;
    let temperature = if minute % 20 >= 12 && minute % 20 < 17 {
        6.0
    } else {
        3.0
    };
    let payload = format!(
        r#"{{"device":"{device}","ts":"{}","temperature_c":{temperature},"seq":{seq}}}"#,
        rfc3339(START + (seq / 10) as i64 * 10_000)
    );
    (device, payload)
}

fn produce_readings(brokers: &str, topic: &str, seqs: std::ops::Range<u64>) {
    let records = seqs.map(|seq| {
        let (key, payload) = reading(seq);
        (key, payload.into_bytes())
    });
    produce(brokers, topic, records);
}

/// A pipeline reading `topic` as group `group`: every reading to
/// events.jsonl (with its `seq`), alerts to alerts.jsonl.
fn kafka_pipeline(brokers: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        r#"
name: reefer
sources:
  trucks:
    type: kafka
    brokers: "{brokers}"
    topics: [{topic}]
    group_id: {group}
    key: device
    time: ts
    commit_interval: 200ms
    options: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
{extra}
operators:
  seen: {{type: filter, inputs: [trucks], condition: seq >= 0}}
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, for: 2m}}
sinks:
  events: {{type: file, inputs: [seen], path: events.jsonl}}
  alerts: {{type: file, inputs: [too_warm], path: alerts.jsonl}}
dead_letter: {{type: file, path: dead.jsonl}}
"#
    )
}

/// The `seq`s in `dir/events.jsonl` and how often each appears. A line cut
/// short by a killed process is skipped.
fn seen(dir: &Path, counts: &mut HashMap<u64, u32>) {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    for line in text.lines() {
        if let Ok(event) = serde_json::from_str::<Value>(line) {
            let seq = event["seq"].as_f64().expect("a seq") as u64;
            *counts.entry(seq).or_default() += 1;
        }
    }
}

fn seen_in(dirs: &[&Path]) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    dirs.iter().for_each(|d| seen(d, &mut counts));
    counts
}

/// Asserts every reading below `n` was processed; returns the duplicates.
fn assert_all_seen(counts: &HashMap<u64, u32>, n: u64, logs: &str) -> u64 {
    let missing: Vec<u64> = (0..n).filter(|s| !counts.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} readings lost, first {:?}\n{logs}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    counts.values().map(|&c| u64::from(c) - 1).sum()
}

fn wait_until_seen(dirs: &[&Path], n: u64) -> bool {
    wait_for(Duration::from_secs(60), || seen_in(dirs).len() as u64 >= n)
}

/// Writes the test pipeline for group `g`, with `change` (from, to)
/// applied, and runs floe on it until it has its partitions.
fn start_floe(dir: &Path, brokers: &str, change: (&str, &str), log: &str) -> Floe {
    let pipeline = kafka_pipeline(brokers, "telemetry", "g", "");
    write(dir, "p.yaml", pipeline.replace(change.0, change.1));
    let floe = Floe::run(dir, log, &["run", "p.yaml"]);
    floe.wait_for_log("assigned telemetry/0");
    floe
}

fn alert_ids(path: &Path) -> Vec<String> {
    let mut ids: Vec<String> = json_lines(path)
        .iter()
        .map(|a| format!("{} {} {}", a["alert_id"], a["key"], a["state"]))
        .collect();
    ids.sort();
    ids
}

#[test]
fn alerts_from_a_topic_match_a_replay_of_the_same_readings() {
    let cluster = cluster("telemetry");
    let brokers = cluster.bootstrap_servers();
    let n = 12_000;
    produce_readings(&brokers, "telemetry", 0..n);

    let live = tempfile::tempdir().unwrap();
    write(
        live.path(),
        "p.yaml",
        kafka_pipeline(&brokers, "telemetry", "live", ""),
    );
    let floe = Floe::run(live.path(), "floe.log", &["run", "p.yaml"]);
    let all_in = wait_until_seen(&[live.path()], n);
    let (code, log) = floe.stop();
    assert!(all_in && code == 0, "exit {code}\n{log}");
    assert_all_seen(&seen_in(&[live.path()]), n, &log);
    assert!(
        log.contains("assigned telemetry/0, telemetry/1, telemetry/2"),
        "{log}"
    );

    // The same readings from a file, and the topic replayed from the start
    // under another group: the same alerts, with the same ids.
    let lines: Vec<String> = (0..n).map(|s| reading(s).1).collect();
    let file = tempfile::tempdir().unwrap();
    write(file.path(), "in.jsonl", lines.join("\n"));
    write(
        file.path(),
        "p.yaml",
        kafka_pipeline(&brokers, "telemetry", "unused", ""),
    );
    let out = run_in(
        file.path(),
        &["run", "p.yaml", "--input", "trucks=file:in.jsonl"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let replay = tempfile::tempdir().unwrap();
    write(
        replay.path(),
        "p.yaml",
        kafka_pipeline(&brokers, "telemetry", "live", ""),
    );
    let uri = format!("trucks=kafka://{brokers}/telemetry?from=earliest&group=replay");
    let floe = Floe::run(
        replay.path(),
        "floe.log",
        &["run", "p.yaml", "--input", &uri],
    );
    let all_in = wait_until_seen(&[replay.path()], n);
    let (code, log) = floe.stop();
    assert!(all_in && code == 0, "exit {code}\n{log}");

    let expected = alert_ids(&file.path().join("alerts.jsonl"));
    // Ten trucks, each warm 5 minutes in every 20: one firing and one
    // resolved alert per 20 minutes.
    let cycles = (n / 10 / 6 / 20) as usize;
    assert_eq!(expected.len(), 10 * cycles * 2, "{expected:?}");
    assert_eq!(alert_ids(&live.path().join("alerts.jsonl")), expected);
    assert_eq!(alert_ids(&replay.path().join("alerts.jsonl")), expected);
}

/// Produces readings `seqs` at about `per_second`, from a thread.
fn produce_paced(
    brokers: &str,
    topic: &str,
    seqs: std::ops::Range<u64>,
    per_second: u64,
) -> std::thread::JoinHandle<()> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let started = Instant::now();
        let chunk = (per_second / 10).max(1);
        let mut from = seqs.start;
        while from < seqs.end {
            let to = (from + chunk).min(seqs.end);
            produce_readings(&brokers, &topic, from..to);
            from = to;
            let due = Duration::from_millis((from - seqs.start) * 1000 / per_second);
            std::thread::sleep(due.saturating_sub(started.elapsed()));
        }
    })
}

#[test]
fn a_restart_after_a_crash_resumes_from_the_committed_offsets() {
    let cluster = cluster("telemetry");
    let brokers = cluster.bootstrap_servers();
    let n = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let change = ("key: device", "key: record.key");
    let first = start_floe(dir.path(), &brokers, change, "first.log");
    let producing = produce_paced(&brokers, "telemetry", 0..n, 6_000);
    assert!(wait_until_seen(&[dir.path()], 8_000));
    // SIGKILL: no draining, no last commit; what was read after the last
    // commit is read again.
    let log = first.kill();
    let before = seen_in(&[dir.path()]).len();
    let second = Floe::run(dir.path(), "second.log", &["run", "p.yaml"]);
    producing.join().unwrap();
    let all_in = wait_until_seen(&[dir.path()], n);
    let (code, log2) = second.stop();
    assert!(all_in && code == 0, "exit {code}\n{log}\n{log2}");
    let duplicates = assert_all_seen(&seen_in(&[dir.path()]), n, &log2);
    println!("{before} readings before the crash, {duplicates} read twice");
    // Commits come every 200 ms: what is read twice is what the first run
    // read since its last commit, not the whole topic.
    assert!(duplicates < 5_000, "{duplicates} duplicates\n{log2}");

    // A clean stop commits everything: a third run reads nothing again.
    let third = Floe::run(dir.path(), "third.log", &["run", "p.yaml"]);
    third.wait_for_log("assigned telemetry/0");
    std::thread::sleep(Duration::from_secs(2));
    let (code, log3) = third.stop();
    assert_eq!(code, 0, "{log3}");
    assert!(log3.contains(" 0 events"), "{log3}");
}

#[test]
fn a_second_instance_joining_the_group_loses_nothing() {
    let cluster = cluster_with("telemetry", 6);
    let brokers = cluster.bootstrap_servers();
    let n = 40_000;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        write(
            dir.path(),
            "p.yaml",
            kafka_pipeline(&brokers, "telemetry", "shared", ""),
        );
    }
    let producing = produce_paced(&brokers, "telemetry", 0..n, 5_000);
    let first = Floe::run(a.path(), "floe.log", &["run", "p.yaml"]);
    assert!(wait_for(Duration::from_secs(30), || seen_in(&[a.path()])
        .len()
        > 5_000));
    let second = Floe::run(b.path(), "floe.log", &["run", "p.yaml"]);
    // The group rebalances: the first instance commits and hands over some
    // partitions, which the second takes up from the committed offsets.
    first.wait_for_log("revoked");
    second.wait_for_log("assigned telemetry/");
    producing.join().unwrap();
    let all_in = wait_until_seen(&[a.path(), b.path()], n);
    let (code_a, log_a) = first.stop();
    let (code_b, log_b) = second.stop();
    let logs = format!("{log_a}\n{log_b}");
    assert!(all_in && code_a == 0 && code_b == 0, "{logs}");
    let duplicates = assert_all_seen(&seen_in(&[a.path(), b.path()]), n, &logs);
    let (in_a, in_b) = (seen_in(&[a.path()]).len(), seen_in(&[b.path()]).len());
    println!("first {in_a}, second {in_b}, {duplicates} read twice");
    assert!(in_b > 5_000, "the second instance took no share: {logs}");
}

#[test]
fn a_broker_away_mid_stream_loses_nothing_read() {
    let cluster = cluster("telemetry");
    let brokers = cluster.bootstrap_servers();
    let n = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let change = ("time: ts", "time: record.timestamp");
    let floe = start_floe(dir.path(), &brokers, change, "floe.log");
    let producing = produce_paced(&brokers, "telemetry", 0..n, 6_000);
    assert!(wait_until_seen(&[dir.path()], 6_000));
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    cluster.broker_up(1).unwrap();
    producing.join().unwrap();
    let all_in = wait_until_seen(&[dir.path()], n);
    let (code, log) = floe.stop();
    assert!(all_in && code == 0, "exit {code}\n{log}");
    let duplicates = assert_all_seen(&seen_in(&[dir.path()]), n, &log);
    println!("{duplicates} read twice");
}

#[test]
fn bad_records_go_to_a_dead_letter_topic_with_partition_and_offset() {
    let cluster = cluster("telemetry");
    cluster.create_topic("dlq", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let huge = format!(r#"{{"device":"t1","pad":"{}"}}"#, "x".repeat(100_000));
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"temperature=4".to_vec()),
        ("huge", huge.into_bytes()),
        (
            "wrong type",
            br#"{"device":"t1","ts":1795428000000,"temperature_c":"warm","seq":1}"#.to_vec(),
        ),
        ("binary", vec![0xff, 0xfe, 0x00, 0x01]),
    ];
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for seq in 0..100 {
        let (key, payload) = reading(seq);
        records.push((key, payload.into_bytes()));
        if seq % 25 == 0 {
            let (_, bytes) = &bad[seq as usize / 25];
            records.push(("t1".into(), bytes.clone()));
        }
    }
    produce(&brokers, "telemetry", records);
    // A null value (a tombstone) cannot go through `produce`'s payloads.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    producer
        .send(BaseRecord::<str, [u8]>::to("telemetry").key("t1"))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_pipeline(&brokers, "telemetry", "g", "").replace(
        "dead_letter: {type: file, path: dead.jsonl}",
        &format!(r#"dead_letter: {{type: kafka, brokers: "{brokers}", topic: dlq}}"#),
    );
    write(dir.path(), "p.yaml", pipeline);
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    let all_in = wait_until_seen(&[dir.path()], 100);
    let dead = consume(&brokers, "dlq", 5);
    let (code, log) = floe.stop();
    assert!(all_in && code == 0, "exit {code}\n{log}");
    assert_all_seen(&seen_in(&[dir.path()]), 100, &log);
    assert_eq!(dead.len(), 5, "{dead:?}\n{log}");
    let mut reasons = Vec::new();
    for (_, line) in &dead {
        let letter: Value = serde_json::from_str(line).unwrap();
        let origin = &letter["origin"];
        assert_eq!(origin["topic"], "telemetry", "{letter}");
        assert!(
            origin["partition"].is_u64() && origin["offset"].is_u64(),
            "{letter}"
        );
        assert_eq!(letter["source"], "trucks");
        reasons.push(letter["reason"].as_str().unwrap().to_string());
    }
    reasons.sort();
    let expected = [
        "bad JSON: expected ident at line 1 column 2",
        "field `temperature_c` must be a number, got a string",
        "invalid UTF-8 at byte 0",
        "message of 100024 bytes exceeds the limit of 65536 bytes",
        "the record has no value (a tombstone)",
    ];
    assert_eq!(reasons, expected);
}

/// `/metrics` has each assigned partition's lag, from librdkafka's
/// statistics: the records not read yet, 0 once floe has caught up.
#[test]
fn each_partitions_lag_is_a_metric() {
    let cluster = cluster_with("telemetry", 2);
    let brokers = cluster.bootstrap_servers();
    produce_readings(&brokers, "telemetry", 0..1000);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_pipeline(&brokers, "telemetry", "lag", "").replace(
        r#"heartbeat.interval.ms: "500"}"#,
        r#"heartbeat.interval.ms: "500", statistics.interval.ms: "200"}"#,
    );
    write(dir.path(), "p.yaml", pipeline);
    let addr = format!("127.0.0.1:{}", support::broker::free_port());
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml", "--http", &addr]);
    assert!(wait_until_seen(&[dir.path()], 1000), "{}", floe.log());
    let caught_up = |metrics: &str| {
        ["telemetry/0", "telemetry/1"].iter().all(|p| {
            metrics.lines().any(|l| {
                l.starts_with("floe_source_lag_records{")
                    && l.contains(&format!("partition=\"{p}\""))
                    && l.ends_with(" 0")
            })
        })
    };
    let mut metrics = String::new();
    let seen = wait_for(Duration::from_secs(20), || {
        let url = format!("http://{addr}/metrics");
        metrics = reqwest::blocking::get(url)
            .and_then(|r| r.text())
            .unwrap_or_default();
        caught_up(&metrics)
    });
    assert!(seen, "no lag of 0 for both partitions:\n{metrics}");
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
}

/// `floe bench --via kafka://`: readings produced to the topic come back
/// through a kafka source, one alert each, none lost; readings of an
/// earlier run on the same topic are not counted.
#[test]
fn bench_through_kafka_loses_nothing() {
    let cluster = cluster("bench");
    let via = format!("kafka://{}/bench", cluster.bootstrap_servers());
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let args = [
            "bench",
            "--json",
            "--rate",
            "500",
            "--duration",
            "1s",
            "--via",
            &via,
        ];
        let out = run_in(dir.path(), &args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{text}{}", stderr(&out));
        let result: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(result["via"], "kafka", "{result}");
        assert_eq!(result["sent"], 500, "{result}");
        assert_eq!(result["alerts"], 500, "{result}");
        assert_eq!(result["lost"], 0, "{result}");
    }
}

/// `trace: record.header.NAME` takes the correlation id from a record's
/// header; a W3C traceparent gives its trace id.
#[test]
fn alerts_carry_the_trace_id_from_a_records_header() {
    use rdkafka::message::{Header, OwnedHeaders};
    let cluster = cluster("traced");
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0736aa";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    for (seq, temp) in [(0, 2.0), (1, 9.0)] {
        let payload = format!(
            r#"{{"device":"t1","ts":"{}","temperature_c":{temp},"seq":{seq}}}"#,
            rfc3339(START + seq * 10_000)
        );
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(parent.as_str()),
        });
        let record = BaseRecord::to("traced")
            .key("t1")
            .payload(&payload)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = kafka_pipeline(
        &brokers,
        "traced",
        "traced",
        "    trace: record.header.traceparent\n",
    )
    .replace(", for: 2m", "");
    write(dir.path(), "p.yaml", pipeline);
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    let alerts = dir.path().join("alerts.jsonl");
    let fired = wait_for(Duration::from_secs(30), || !json_lines(&alerts).is_empty());
    assert!(fired, "no alert:\n{}", floe.log());
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(json_lines(&alerts)[0]["trace_id"], trace);

    // Only Kafka records and MQTT 5 messages have headers.
    let file = "name: x\nsources:\n  s: {type: file, path: in.jsonl, trace: record.header.traceparent}\nsinks:\n  o: {type: stdout, inputs: [s]}\n";
    write(dir.path(), "bad.yaml", file);
    let out = run_in(dir.path(), &["validate", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only kafka sources and mqtt sources with `version: 5`"),
        "{}",
        stderr(&out)
    );
}
