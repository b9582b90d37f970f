//! The `kafka` sink and `floe simulate --to kafka://` against librdkafka's
//! mock cluster (real Kafka protocol on a local port, run by this test
//! process): keyed records, alerts, and a broker that goes away mid-stream.

mod support;

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::{json_lines, rfc3339, run_in, stderr, write};

fn cluster(topic: &str) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic(topic, 3, 1).expect("a topic");
    cluster
}

/// Reads `count` records of `topic` from the start: (key, payload).
fn consume(brokers: &str, topic: &str, count: usize) -> Vec<(String, String)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "floe-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("a consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut records = Vec::new();
        while records.len() < count {
            let next = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await;
            let Ok(Ok(m)) = next else { break };
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            records.push((text(m.key()), text(m.payload())));
        }
        records
    })
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
