//! End to end against a real Kafka-compatible broker, tansu, which the test
//! starts on a free port (in memory): simulator -> Kafka -> floe -> Kafka
//! alerts topic. Install it with
//! `cargo install --locked tansu --features dynostore` (.ci/run does).

mod support;

use std::path::Path;
use std::time::Duration;
use support::broker::{Floe, wait_for};
use support::kafka::{Tansu, consume};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kafka")
        .join(name);
    path.to_string_lossy().into_owned()
}

/// `floe simulate` of three simulated hours of 50 trucks, as fast as it goes.
fn simulate(dir: &Path, to: &str) {
    let out = support::floe()
        .args(["simulate", &fixture("trucks-50.yaml"), "--to", to])
        .args(["--speed", "0", "--duration", "3h", "--seed", "3"])
        .current_dir(dir)
        .env("FLOE_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
}

/// `(key, alert_id, state)` of `count` alerts on `topic`, sorted.
fn alerts_on(brokers: &str, topic: &str, count: usize) -> Vec<(String, String, String)> {
    let mut alerts: Vec<_> = consume(brokers, topic, count)
        .into_iter()
        .map(|(key, payload)| {
            let alert: serde_json::Value = serde_json::from_str(&payload).unwrap();
            let text = |f: &str| alert[f].as_str().unwrap_or_default().to_string();
            assert_eq!(text("key"), key, "alerts are keyed by entity");
            (key, text("alert_id"), text("state"))
        })
        .collect();
    alerts.sort();
    alerts
}

#[test]
fn simulator_to_kafka_to_floe_to_a_kafka_alerts_topic() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path());
    let brokers = tansu.brokers();
    for topic in ["telemetry", "alerts", "expected"] {
        tansu.create_topic(topic, 3);
    }
    simulate(dir.path(), &format!("kafka://{brokers}/telemetry"));
    simulate(dir.path(), "file:readings.jsonl");

    // What the pipeline raises from the same readings read from a file.
    let pipeline = fixture("cold-chain.yaml");
    let out = support::floe()
        .args(["run", &pipeline, "--input", "trucks=file:readings.jsonl"])
        .current_dir(dir.path())
        .envs([
            ("KAFKA_BROKERS", brokers.as_str()),
            ("KAFKA_GROUP", "unused"),
        ])
        .env("ALERTS_TOPIC", "expected")
        .output()
        .unwrap();
    let summary = support::stderr(&out);
    assert!(out.status.success(), "{summary}");
    let expected_count: usize = summary
        .split(" alerts")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no alert count in {summary}"));
    assert!(expected_count > 20, "{summary}");

    let envs = [
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_GROUP", "live"),
        ("ALERTS_TOPIC", "alerts"),
    ];
    let floe = Floe::run_with(dir.path(), "floe.log", &["run", &pipeline], &envs);
    // Stop once every reading is read (the lag log says so); the last
    // alerts come as the stop releases what was held back for ordering.
    let caught_up = wait_for(Duration::from_secs(120), || {
        floe.log()
            .lines()
            .any(|line| (0..3).all(|p| line.contains(&format!("telemetry/{p} 0 records"))))
    });
    let (code, log) = floe.stop();
    assert!(caught_up && code == 0, "exit {code}\n{log}");
    let live = alerts_on(&brokers, "alerts", expected_count);
    assert_eq!(live.len(), expected_count, "{log}");
    assert_eq!(live, alerts_on(&brokers, "expected", expected_count));
}

#[test]
fn producing_to_a_topic_the_broker_does_not_have_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(dir.path());
    let to = format!("kafka://{}/missing", tansu.brokers());
    let out = support::floe()
        .args(["simulate", &fixture("trucks-50.yaml"), "--to", &to])
        .args(["--speed", "0", "--duration", "1m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = support::stderr(&out);
    assert!(stderr.contains("topic missing does not exist"), "{stderr}");
}
