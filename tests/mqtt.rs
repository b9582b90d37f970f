//! The `mqtt` source and sink against a real mosquitto that each test
//! starts on a free port: alerts end to end, no loss across broker and floe
//! restarts, bad payloads, TLS, authentication, shared subscriptions.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::broker::{Floe, Mosquitto, wait_for};
use support::{json_lines, rfc3339, write};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z

/// Held by the tests that stop a broker under load, so they do not run at
/// the same time. They stop mosquitto with SIGTERM, which saves what it
/// holds: it acknowledges a QoS 1 publish before it is on disk, so a
/// SIGKILL loses, by the broker's design, what arrived since its last save
/// and was not yet delivered, and a floe starved of CPU (by a parallel
/// test, or a loaded CI machine) leaves such messages queued there. What
/// these tests check is floe's part: nothing unacknowledged is given up.
static LOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn load_test() -> std::sync::MutexGuard<'static, ()> {
    LOAD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reading(device: &str, minute: i64, temperature: f64) -> String {
    format!(
        r#"{{"device":"{device}","ts":"{}","temperature_c":{temperature}}}"#,
        rfc3339(START + minute * 60_000)
    )
}

/// A cold-chain rule fed from MQTT, keyed by a topic level, alerting to a
/// file and back to the broker.
fn alerting_pipeline(url: &str, version: &str) -> String {
    format!(
        r#"
name: e2e
sources:
  trucks:
    type: mqtt
    url: {url}
    version: {version}
    topics: [fleet/+/telemetry]
    key: topic[1]
    time: ts
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
  archive:
    type: file
    inputs: [too_warm]
    path: alerts.jsonl
  dispatch:
    type: mqtt
    inputs: [too_warm]
    url: {url}
    version: {version}
    topic: "alerts/{{rule}}/{{key}}"
dead_letter:
  type: file
  path: dead.jsonl
"#
    )
}

/// Collects `count` messages from `filter` with mosquitto's own client.
fn subscribe(broker: &Mosquitto, filter: &str, count: usize) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args([
            "-t",
            filter,
            "-v",
            "-q",
            "1",
            "-C",
            &count.to_string(),
            "-W",
            "30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs")
}

fn alerts_flow_end_to_end(version: &str) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        alerting_pipeline(&broker.url(), version),
    );
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to fleet/+/telemetry");
    let listener = subscribe(&broker, "alerts/#", 2);
    std::thread::sleep(Duration::from_millis(300));

    // The device name is only in the topic: the key must come from there.
    let warming = [(0, 3.0), (1, 5.0), (3, 5.2), (4, 3.0)];
    let lines = |device: &str, readings: &[(i64, f64)]| -> Vec<String> {
        let with_device = readings.iter().map(|&(m, t)| reading(device, m, t));
        with_device
            .map(|r| r.replace(&format!(r#""device":"{device}","#), ""))
            .collect()
    };
    broker.publish_lines("fleet/t1/telemetry", 1, &lines("t1", &warming));
    broker.publish_lines("fleet/t2/telemetry", 1, &lines("t2", &[(0, 3.0), (5, 3.1)]));

    let received = listener.wait_with_output().unwrap();
    let received = String::from_utf8_lossy(&received.stdout).into_owned();
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");

    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    let states: Vec<(&str, &str, &str)> = alerts
        .iter()
        .map(|a| {
            let field = |f: &str| a[f].as_str().unwrap();
            (field("key"), field("state"), field("event_time"))
        })
        .collect();
    assert_eq!(
        states,
        [
            ("t1", "firing", "2026-11-23T10:03:00.000Z"),
            ("t1", "resolved", "2026-11-23T10:04:00.000Z")
        ]
    );
    let published: Vec<(&str, Value)> = received
        .lines()
        .map(|l| {
            let (topic, payload) = l.split_once(' ').unwrap();
            (topic, serde_json::from_str(payload).unwrap())
        })
        .collect();
    assert_eq!(published.len(), 2, "{received}");
    for ((topic, alert), filed) in published.iter().zip(&alerts) {
        assert_eq!(*topic, "alerts/too_warm/t1");
        assert_eq!(alert["alert_id"], filed["alert_id"]);
    }
    assert!(
        !dir.path().join("dead.jsonl").exists()
            || json_lines(&dir.path().join("dead.jsonl")).is_empty()
    );
}

#[test]
fn alerts_flow_from_mqtt_readings_to_an_mqtt_topic() {
    alerts_flow_end_to_end("3.1.1");
}

#[test]
fn alerts_flow_over_mqtt_5() {
    alerts_flow_end_to_end("5");
}

/// Counts what reached the operators: every event once per window count,
/// and each reading by its identity (key and `ts`).
const COUNTING: &str = r#"
name: count
sources:
  readings:
    type: mqtt
    url: URL
    topics: [fleet/+/telemetry]
    qos: 1
    key: device
operators:
  identified:
    type: filter
    inputs: [readings]
    condition: exists(ts)
  counts:
    type: window
    inputs: [identified]
    size: 1d
    aggregates: {n: count()}
sinks:
  seen:
    type: file
    inputs: [identified]
    path: seen.jsonl
  totals:
    type: file
    inputs: [counts]
    path: counts.jsonl
"#;

struct Tally {
    /// Events the windows counted.
    counted: u64,
    /// Events processed, duplicates included.
    seen: usize,
    /// Distinct readings among them.
    distinct: usize,
}

fn tally(dir: &Path) -> Tally {
    let seen = json_lines(&dir.join("seen.jsonl"));
    let distinct: HashSet<(String, String)> = seen
        .iter()
        .map(|e| (e["key"].to_string(), e["ts"].to_string()))
        .collect();
    let counted = json_lines(&dir.join("counts.jsonl"))
        .iter()
        .map(|w| w["n"].as_f64().unwrap() as u64)
        .sum();
    Tally {
        counted,
        seen: seen.len(),
        distinct: distinct.len(),
    }
}

fn lines_in(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

fn batch(from: usize, count: usize) -> Vec<String> {
    (from..from + count)
        .map(|i| reading(&format!("t{}", i % 50), i as i64, 3.0))
        .collect()
}

#[test]
fn a_floe_restart_loses_nothing_published_while_it_was_down() {
    let _alone = load_test();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", COUNTING.replace("URL", &broker.url()));
    let seen = dir.path().join("seen.jsonl");

    let floe = Floe::run(dir.path(), "first.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to");
    broker.publish_lines("fleet/a/telemetry", 1, &batch(0, 100));
    assert!(wait_for(Duration::from_secs(20), || lines_in(&seen) >= 100));
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");

    // Down: the broker queues for floe's session (same client id next time).
    broker.publish_lines("fleet/a/telemetry", 1, &batch(100, 10_000));

    let floe = Floe::run(dir.path(), "second.log", &["run", "p.yaml"]);
    wait_for(Duration::from_secs(60), || lines_in(&seen) >= 10_100);
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
    let t = tally(dir.path());
    assert_eq!(t.distinct, 10_100, "readings lost across the restart");
    assert_eq!(t.counted as usize, t.seen, "windows and events disagree");
    eprintln!(
        "floe restart: {} duplicates of 10,100 readings",
        t.seen - t.distinct
    );
}

#[test]
fn a_broker_going_down_twice_mid_stream_loses_nothing() {
    let _alone = load_test();
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", COUNTING.replace("URL", &broker.url()));
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to");
    // Let the broker save floe's session before the first kill.
    std::thread::sleep(Duration::from_millis(1500));

    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim/trucks-500.yaml");
    let to = format!("{}?qos=1", broker.url());
    let log = std::fs::File::create(dir.path().join("simulate.log")).unwrap();
    let mut simulate = support::floe()
        .args(["simulate", scenario.to_str().unwrap(), "--to", &to])
        .args(["--rate", "4000", "--duration", "25s", "--seed", "3"])
        .env("FLOE_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    // Terminated, not killed (see `LOAD`).
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(5));
        broker.terminate();
        std::thread::sleep(Duration::from_millis(800));
        broker.restart();
    }
    // The simulator exits once the broker has acknowledged every message.
    let mut published = None;
    wait_for(Duration::from_secs(60), || {
        published = simulate.try_wait().unwrap();
        published.is_some()
    });
    let _ = simulate.kill();
    let simulate_log = std::fs::read_to_string(dir.path().join("simulate.log")).unwrap();
    assert!(published.is_some_and(|s| s.success()), "{simulate_log}");
    assert!(simulate_log.contains("100000 messages"), "{simulate_log}");

    let seen = dir.path().join("seen.jsonl");
    wait_for(Duration::from_secs(60), || lines_in(&seen) >= 100_000);
    std::thread::sleep(Duration::from_millis(500));
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("reconnected"), "{log}");
    let t = tally(dir.path());
    assert_eq!(t.distinct, 100_000, "readings lost:\n{log}");
    assert_eq!(t.counted as usize, t.seen, "windows and events disagree");
    eprintln!(
        "broker down twice: {} duplicates of 100,000 readings; floe said: {}",
        t.seen - t.distinct,
        log.lines().last().unwrap_or_default()
    );
}

#[test]
fn bad_payloads_are_dead_lettered_while_good_readings_flow() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    // The windows read `temperature_c` as a number, so a string there is bad.
    let pipeline = COUNTING
        .replace("URL", &broker.url())
        .replace("{n: count()}", "{n: count(), hottest: max(temperature_c)}")
        + "dead_letter:\n  type: file\n  path: dead.jsonl\n";
    write(dir.path(), "p.yaml", pipeline);
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to");

    let topic = "fleet/t1/telemetry";
    broker.publish_bytes(topic, reading("t1", 0, 3.0).as_bytes());
    broker.publish_bytes(topic, b"not json at all");
    broker.publish_bytes(
        topic,
        br#"{"device":"t1","ts":"2026-11-23T10:01:00Z","temperature_c":"hot"}"#,
    );
    let huge = format!(
        r#"{{"device":"t1","ts":"2026-11-23T10:02:00Z","pad":"{}"}}"#,
        "x".repeat(256 * 1024)
    );
    broker.publish_bytes(topic, huge.as_bytes());
    broker.publish_bytes(topic, &[0xff, 0xfe, 0x00, 0x9c, 0x01, 0x02]);
    broker.publish_bytes(topic, reading("t1", 3, 3.5).as_bytes());

    let dead = dir.path().join("dead.jsonl");
    let seen = dir.path().join("seen.jsonl");
    let arrived = wait_for(Duration::from_secs(20), || {
        lines_in(&dead) >= 3 && lines_in(&seen) >= 2
    });
    let (code, log) = floe.stop();
    assert!(arrived && code == 0, "{log}");

    let seen = json_lines(&seen);
    assert_eq!(seen.len(), 2, "both good readings are processed: {seen:?}");
    let dead = json_lines(&dead);
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(dead.len(), 4, "{reasons:?}");
    for record in &dead {
        assert_eq!(record["origin"]["topic"], topic, "{record}");
        assert_eq!(record["source"], "readings");
    }
    assert!(reasons[0].starts_with("bad JSON"), "{}", reasons[0]);
    assert_eq!(
        reasons[1],
        "field `temperature_c` must be a number, got a string"
    );
    assert!(reasons[2].starts_with("message of 262"), "{}", reasons[2]);
    assert!(
        dead[2]["payload"].as_str().unwrap().len() <= 1024,
        "a huge payload is cut"
    );
    assert!(reasons[3].starts_with("invalid UTF-8"), "{}", reasons[3]);
    assert!(dead[3]["payload_base64"].is_string());
}

/// A CA, a broker certificate for 127.0.0.1 and a client certificate,
/// made with openssl; and a second CA that signed neither.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let key = format!("{ca}.key");
        let pem = format!("{ca}.pem");
        let subject = format!("/CN=floe test {ca}");
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ]);
        openssl(&args);
    }
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    for (name, subject) in [("server", "/CN=localhost"), ("client", "/CN=floe")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
    }
}

#[test]
fn tls_with_a_private_ca_and_a_client_certificate_and_a_wrong_ca_fails_clearly() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let c = certs.path().display();
    let broker = Mosquitto::with_config(|tls_port| {
        format!(
            "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {c}/ca.pem\n\
             certfile {c}/server.pem\nkeyfile {c}/server.key\nrequire_certificate true\n"
        )
    });
    let tls_port = broker.spare_port;
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let tls = |ca: &str| {
        format!("    tls: {{ca: {c}/{ca}, cert: {c}/client.pem, key: {c}/client.key}}\n")
    };
    // Both the source and the sink connect over TLS.
    let good = alerting_pipeline(&url, "3.1.1")
        .replace(
            "    key: topic[1]\n",
            &(tls("ca.pem") + "    key: topic[1]\n"),
        )
        .replace(
            "    topic: \"alerts",
            &(tls("ca.pem") + "    topic: \"alerts"),
        );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", good);
    let floe = Floe::run(dir.path(), "good.log", &["run", "good.yaml"]);
    floe.wait_for_log("subscribed to");
    let listener = subscribe(&broker, "alerts/#", 1);
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<String> = [(0, 3.0), (1, 5.0), (3, 5.0)]
        .iter()
        .map(|&(m, t)| reading("t1", m, t))
        .collect();
    broker.publish_lines("fleet/t1/telemetry", 1, &lines);
    let received = listener.wait_with_output().unwrap();
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
    let received = String::from_utf8_lossy(&received.stdout);
    assert!(
        received.starts_with("alerts/too_warm/t1 {"),
        "over TLS both ways: {received:?}\n{log}"
    );

    let wrong = COUNTING
        .replace("URL", &url)
        .replace("    qos: 1\n", &(tls("other-ca.pem") + "    qos: 1\n"));
    write(dir.path(), "wrong.yaml", wrong);
    let mut floe = Floe::run(dir.path(), "wrong.log", &["run", "wrong.yaml"]);
    let (code, log) = floe.wait();
    assert_eq!(code, 2, "{log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        error.contains(&format!("source \"readings\": 127.0.0.1:{tls_port}: TLS"))
            && error.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
}

#[test]
fn credentials_come_from_the_environment_and_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["floe", "s3cret-pass"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success());
    let broker = Mosquitto::with_config(|_| {
        format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        )
    });
    let pipeline = COUNTING.replace("URL", &broker.url()).replace(
        "    qos: 1\n",
        "    qos: 1\n    username: floe\n    password: ${MQTT_PASSWORD}\n",
    );
    write(dir.path(), "p.yaml", pipeline);
    let run = |password: &str| {
        support::floe()
            .args(["run", "p.yaml"])
            .current_dir(dir.path())
            .env("MQTT_PASSWORD", password)
            .env("FLOE_LOG", "warn")
            .output()
            .unwrap()
    };
    let refused = run("wrong-pass");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refused the connection"), "{stderr}");
    assert!(
        !stderr.contains("wrong-pass"),
        "a secret was printed: {stderr}"
    );

    let mut floe = support::floe()
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .env("MQTT_PASSWORD", "s3cret-pass")
        .env("FLOE_LOG", "info")
        .stderr(std::fs::File::create(dir.path().join("ok.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("ok.log")).unwrap_or_default();
    let subscribed = wait_for(Duration::from_secs(20), || log().contains("subscribed to"));
    let _ = floe.kill();
    let _ = floe.wait();
    assert!(subscribed, "{}", log());
}

#[test]
fn a_shared_subscription_splits_the_stream_between_instances() {
    let broker = Mosquitto::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut instances = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let pipeline = COUNTING.replace("URL", &broker.url()).replace(
            "    topics: [fleet/+/telemetry]\n",
            &format!("    topics: [$share/floe/fleet/+/telemetry]\n    client_id: floe-{i}\n"),
        );
        write(dir.path(), "p.yaml", pipeline);
        let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
        floe.wait_for_log("subscribed to");
        instances.push(floe);
    }
    broker.publish_lines("fleet/a/telemetry", 1, &batch(0, 1000));
    let seen = |d: &tempfile::TempDir| lines_in(&d.path().join("seen.jsonl"));
    wait_for(Duration::from_secs(20), || {
        seen(&dirs[0]) + seen(&dirs[1]) >= 1000
    });
    for floe in instances {
        let (code, log) = floe.stop();
        assert_eq!(code, 0, "{log}");
    }
    let shares = [tally(dirs[0].path()), tally(dirs[1].path())];
    assert_eq!(shares[0].distinct + shares[1].distinct, 1000);
    assert!(
        shares.iter().all(|s| s.distinct > 100),
        "both instances take a share"
    );
}

#[test]
fn the_mqtt_sink_loses_nothing_when_the_broker_goes_down_and_returns() {
    let _alone = load_test();
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    // Downstream: counts what arrives on copy/+.
    let counter = COUNTING
        .replace("URL", &broker.url())
        .replace("[fleet/+/telemetry]", "[copy/+]")
        .replace("key: device", "key: key");
    write(dir.path(), "count.yaml", counter);
    let counting = Floe::run(dir.path(), "count.log", &["run", "count.yaml"]);
    counting.wait_for_log("subscribed to");
    std::thread::sleep(Duration::from_millis(1500));

    // Upstream: 500 simulated trucks at 100x real time, about 5,000 events
    // a second for ten seconds, every reading relayed with its `ts`.
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim/trucks-500.yaml");
    let relay = format!(
        r#"
name: relay
sources:
  trucks: {{type: sim, scenario: {}, speed: 100, duration: 17m, seed: 5, key: device}}
operators:
  stamped: {{type: filter, inputs: [trucks], condition: exists(ts)}}
sinks:
  copy: {{type: mqtt, inputs: [stamped], url: {}, topic: "copy/{{key}}"}}
"#,
        scenario.display(),
        broker.url()
    );
    write(dir.path(), "relay.yaml", relay);
    let mut relaying = Floe::run(dir.path(), "relay.log", &["run", "relay.yaml"]);
    std::thread::sleep(Duration::from_secs(4));
    // Terminated, not killed (see `LOAD`).
    broker.terminate();
    std::thread::sleep(Duration::from_millis(800));
    broker.restart();
    let (code, relay_log) = relaying.wait();
    assert_eq!(code, 0, "{relay_log}");
    assert!(relay_log.contains("reconnected"), "{relay_log}");
    // The summary: "floe: relay: N events in ..., 0 alerts, M outputs, ...".
    let relayed: usize = relay_log
        .lines()
        .find_map(|l| l.strip_prefix("floe: relay: "))
        .and_then(|l| l.split(", ").find_map(|part| part.strip_suffix(" outputs")))
        .and_then(|n| n.parse().ok())
        .expect("the relay's summary");
    assert!(relayed > 40_000, "{relay_log}");

    let seen = dir.path().join("seen.jsonl");
    wait_for(Duration::from_secs(30), || lines_in(&seen) >= relayed);
    let (code, log) = counting.stop();
    assert_eq!(code, 0, "{log}");
    let t = tally(dir.path());
    assert_eq!(
        t.distinct, relayed,
        "events lost between the sink and the broker:\n{relay_log}"
    );
    eprintln!(
        "mqtt sink, broker killed: {} duplicates of {relayed}",
        t.seen - t.distinct
    );
}

/// `floe simulate --to mqtt://` stops at once on SIGTERM: with its broker
/// there, after the broker has acknowledged what it sent (exit 0); with
/// the broker gone mid-run, without waiting for it to come back (exit 2,
/// saying what was left unacknowledged).
#[test]
fn simulate_stops_at_once_on_sigterm_with_its_broker_there_or_gone() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulators/factory.yaml");
    let args = [
        "simulate",
        scenario.to_str().unwrap(),
        "--to",
        &broker.url(),
        "--rate",
        "2000",
    ];
    for broker_gone in [false, true] {
        let simulating = Floe::run(dir.path(), "simulate.log", &args);
        simulating.wait_for_log("simulate: connected to");
        std::thread::sleep(Duration::from_millis(500));
        if broker_gone {
            broker.kill();
            std::thread::sleep(Duration::from_millis(1000));
        }
        let signalled = std::time::Instant::now();
        let (code, log) = simulating.stop();
        let took = signalled.elapsed();
        assert!(took < Duration::from_secs(4), "{took:?}:\n{log}");
        match broker_gone {
            false => assert_eq!(code, 0, "{log}"),
            true => {
                assert_eq!(code, 2, "{log}");
                let error = log.lines().last().unwrap_or_default();
                assert!(error.contains("messages unacknowledged"), "{log}");
            }
        }
    }
}

/// `trace: record.header.NAME` on an MQTT 5 source takes the correlation
/// id from a user property, journaled with the message when there is a
/// state dir; only MQTT 5 has user properties.
#[test]
fn alerts_carry_the_trace_id_from_an_mqtt_5_user_property() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |version: &str| {
        format!(
            r#"
name: traced
state: {{dir: state}}
sources:
  trucks:
    type: mqtt
    url: {}
    version: {version}
    qos: 1
    topics: [fleet/+/telemetry]
    key: topic[1]
    time: ts
    trace: record.header.traceparent
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0}}
sinks:
  alerts: {{type: file, inputs: [too_warm], path: alerts.jsonl}}
"#,
            broker.url()
        )
    };
    write(dir.path(), "p.yaml", pipeline("5"));
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml"]);
    floe.wait_for_log("subscribed to fleet/+/telemetry");
    let trace = "4bf92f3577b34da6a3ce929d0e0736aa";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-V", "mqttv5", "-q", "1", "-t", "fleet/t1/telemetry"])
        .args(["-D", "publish", "user-property", "traceparent", &parent])
        .args(["-m", &reading("t1", 0, 9.0)])
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success());
    let alerts = dir.path().join("alerts.jsonl");
    let fired = wait_for(Duration::from_secs(20), || !json_lines(&alerts).is_empty());
    let (code, log) = floe.stop();
    assert!(fired && code == 0, "exit {code}, no alert:\n{log}");
    assert_eq!(json_lines(&alerts)[0]["trace_id"], trace);

    write(dir.path(), "v3.yaml", pipeline("3.1.1"));
    let out = support::run_in(dir.path(), &["validate", "v3.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        support::stderr(&out).contains("mqtt sources with `version: 5`"),
        "{}",
        support::stderr(&out)
    );
}
