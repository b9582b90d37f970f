//! The `webhook` sink against a real HTTP receiver the test starts on a
//! free port: alerts that wait out a receiver that is down, across a
//! kill -9 of floe; permanent refusals dead-lettered; `Retry-After`
//! honoured; header secrets kept out of every output.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use support::broker::{Floe, wait_for};
use support::receiver::Receiver;
use support::{json_lines, rfc3339, write};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z

/// Twenty trucks reporting every 10 s for `minutes`; each warm for two
/// minutes out of every ten, at its own phase.
fn recording(dir: &Path, minutes: i64) {
    let mut lines = Vec::new();
    for i in 0..minutes * 6 {
        for truck in 0..20 {
            let warm = (i + truck * 3) % 60 < 12;
            let temp = if warm { 6.0 } else { 2.0 };
            lines.push(format!(
                r#"{{"device":"t{truck}","ts":"{}","temperature_c":{temp}}}"#,
                rfc3339(START + i * 10_000)
            ));
        }
    }
    write(dir, "in.jsonl", lines.join("\n") + "\n");
}

fn pipeline(url: &str, extra: &str) -> String {
    format!(
        r#"
name: hooks
{extra}
sources:
  trucks: {{type: file, path: in.jsonl, key: device, time: ts, speed: SPEED}}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, clear_below: 3.0}}
sinks:
  archive: {{type: file, inputs: [too_warm], path: alerts.jsonl}}
  page:
    type: webhook
    inputs: [too_warm]
    url: "{url}"
    headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
    retry: {{initial: 50ms, max: 500ms}}
dead_letter: {{type: file, path: dead.jsonl}}
"#
    )
}

/// The alerts a receiver got, each request's body being one alert or an
/// array of them.
fn alerts_received(receiver: &Receiver) -> Vec<Value> {
    let mut alerts = Vec::new();
    for request in receiver.received() {
        match serde_json::from_str(&request.body) {
            Ok(Value::Array(many)) => alerts.extend(many),
            Ok(one) => alerts.push(one),
            Err(e) => panic!("not JSON ({e}): {}", request.body),
        }
    }
    alerts
}

/// Per key, the alert ids in the order first seen.
fn order_per_key(alerts: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for alert in alerts {
        let id = alert["alert_id"].as_str().unwrap_or_default().to_string();
        if seen.insert(id.clone()) {
            let key = alert["key"].as_str().unwrap_or_default().to_string();
            order.entry(key).or_default().push(id);
        }
    }
    order
}

const TOKEN: &str = "s3cr3t-hook-token";

/// Runs `dir/p.yaml` (with the token in the environment) until its input
/// ends; returns its log.
fn run_to_the_end(dir: &Path) -> String {
    let env = [("HOOK_TOKEN", TOKEN)];
    let mut floe = Floe::run_with(dir, "floe.log", &["run", "p.yaml"], &env);
    let (code, log) = floe.wait();
    assert_eq!(code, 0, "{log}");
    log
}

#[test]
fn alerts_wait_out_a_receiver_that_is_down_across_a_kill_9_and_arrive_once_each_in_order() {
    let mut receiver = Receiver::down();
    let dir = tempfile::tempdir().unwrap();
    recording(dir.path(), 60);
    let yaml = pipeline(&receiver.url("/alerts/{rule}/{key}"), "state: {dir: state}")
        .replace("SPEED", "120");
    write(dir.path(), "p.yaml", yaml);
    let env = [("HOOK_TOKEN", TOKEN)];
    let archive = dir.path().join("alerts.jsonl");

    // The receiver is down for the whole first run, killed mid-replay.
    let floe = Floe::run_with(dir.path(), "floe-0.log", &["run", "p.yaml"], &env);
    let raised = wait_for(Duration::from_secs(30), || json_lines(&archive).len() >= 40);
    let mut logs = floe.kill();
    assert!(raised, "too few alerts:\n{logs}");

    // Up again, with the receiver still down while 40 more alerts (about
    // ten minutes of the replay) are raised.
    let mut floe = Floe::run_with(dir.path(), "floe-1.log", &["run", "p.yaml"], &env);
    floe.wait_for_log("restored checkpoint");
    let before = json_lines(&archive).len();
    let more = wait_for(Duration::from_secs(30), || {
        json_lines(&archive).len() >= before + 40
    });
    assert!(more, "no more alerts raised:\n{}", floe.log());
    receiver.up();
    let (code, log) = floe.wait();
    logs += &log;
    assert_eq!(code, 0, "{logs}");

    let expected = order_per_key(&json_lines(&archive));
    let delivered = wait_for(Duration::from_secs(20), || {
        order_per_key(&alerts_received(&receiver)) == expected
    });
    let got = order_per_key(&alerts_received(&receiver));
    assert!(
        delivered,
        "delivered {} keys, expected {}:\n{logs}",
        got.len(),
        expected.len()
    );
    assert!(expected.values().map(Vec::len).sum::<usize>() > 40);
    // Each request went to its alert's own URL, with the token.
    for request in receiver.received().iter().take(5) {
        let alert: Value = serde_json::from_str(&request.body).unwrap();
        let key = alert["key"].as_str().unwrap();
        assert_eq!(request.path, format!("/alerts/too_warm/{key}"));
        let auth = request.headers.get("authorization").unwrap();
        assert_eq!(auth.to_str().unwrap(), format!("Bearer {TOKEN}"));
    }
    assert!(!logs.contains(TOKEN), "the token was logged");
}

#[test]
fn a_refused_alert_is_dead_lettered_once_and_retry_after_is_honoured() {
    let receiver = Receiver::start();
    // First request: slow down for a second; second: refused for good.
    receiver.answer(&[(429, Some(1)), (400, None)]);
    let dir = tempfile::tempdir().unwrap();
    recording(dir.path(), 20);
    let yaml = pipeline(&receiver.url("/alerts"), "").replace("SPEED", "0");
    write(dir.path(), "p.yaml", yaml);
    let log = run_to_the_end(dir.path());

    let requests = receiver.received();
    let archived = json_lines(&dir.path().join("alerts.jsonl"));
    // Every alert was asked for once, but the first twice.
    assert_eq!(requests.len(), archived.len() + 1, "{log}");
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(requests[0].body, requests[1].body);

    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("400") && reason.contains("answered"),
        "{reason}"
    );
    assert_eq!(dead[0]["origin"]["sink"], "page");
    let payload: Value = serde_json::from_str(dead[0]["payload"].as_str().unwrap()).unwrap();
    // The refused alert is the one first sent (the workers' batches reach
    // each sink in their own order, so not necessarily the file's first).
    let first: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(payload["alert_id"], first["alert_id"]);

    let outputs = log + &std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert!(!outputs.contains(TOKEN), "the token leaked:\n{outputs}");
}

/// An alert the rule's notification policy held back is recorded by the
/// file sink and not sent by the webhook.
#[test]
fn alerts_held_back_by_a_cooldown_are_recorded_but_not_sent() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    // Warm at minutes 0 and 5, each for a minute: the second episode
    // starts 4 minutes after the first resolved.
    let lines: Vec<String> = [(0, 6.0), (1, 2.0), (5, 6.0), (6, 2.0), (20, 6.0)]
        .iter()
        .map(|(minute, temp)| {
            format!(
                r#"{{"device":"t1","ts":"{}","temperature_c":{temp}}}"#,
                rfc3339(START + minute * 60_000)
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", lines.join("\n") + "\n");
    let yaml = pipeline(&receiver.url("/alerts"), "")
        .replace("SPEED", "0")
        .replace("clear_below: 3.0}", "clear_below: 3.0, cooldown: 10m}");
    write(dir.path(), "p.yaml", yaml);
    run_to_the_end(dir.path());

    let archived = json_lines(&dir.path().join("alerts.jsonl"));
    let recorded: Vec<(&str, &str)> = (archived.iter())
        .map(|a| {
            let why = a["suppressed"].as_str().unwrap_or("-");
            (a["state"].as_str().unwrap_or_default(), why)
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("firing", "-"),
            ("resolved", "-"),
            ("firing", "cooldown"),
            ("resolved", "cooldown"),
            ("firing", "-")
        ]
    );
    let sent: Vec<Value> = alerts_received(&receiver);
    let sent_ids: Vec<&Value> = sent.iter().map(|a| &a["alert_id"]).collect();
    let expected: Vec<&Value> = (archived.iter())
        .filter(|a| a["suppressed"].is_null())
        .map(|a| &a["alert_id"])
        .collect();
    assert_eq!(sent_ids, expected);
}

/// `body:` sends a template of the alert's fields instead of the alert.
#[test]
fn a_body_template_is_what_the_receiver_gets() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    recording(dir.path(), 10);
    let yaml = pipeline(&receiver.url("/chat"), "").replace("SPEED", "0").replace(
        "    retry:",
        "    body: '{{\"text\": \"{message}\", \"truck\": \"{key}\", \"state\": \"{state}\"}}'\n    retry:",
    );
    write(dir.path(), "p.yaml", yaml);
    let log = run_to_the_end(dir.path());
    let archived = json_lines(&dir.path().join("alerts.jsonl"));
    let sent: Vec<Value> = (receiver.received().iter())
        .map(|r| serde_json::from_str(&r.body).expect(&r.body))
        .collect();
    assert_eq!(sent.len(), archived.len(), "{log}");
    assert!(!sent.is_empty());
    // Order is kept per key; the workers' batches interleave per sink.
    let fields = |alerts: &[Value], names: [&str; 3]| {
        let mut all: Vec<String> = (alerts.iter())
            .map(|a| names.map(|n| a[n].to_string()).join(" "))
            .collect();
        all.sort();
        all
    };
    assert_eq!(
        fields(&sent, ["text", "truck", "state"]),
        fields(&archived, ["message", "key", "state"])
    );
}
