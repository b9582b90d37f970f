//! `--http`: Prometheus metrics scraped while a replay runs, health and
//! readiness, and the bearer token.

mod support;

use std::path::Path;
use std::time::Duration;
use support::broker::{Floe, free_port, wait_for};
use support::{rfc3339, write};

const START: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z

/// A paced replay (an hour of readings in about twelve seconds), so that
/// it is still running while the test scrapes.
const PIPELINE: &str = r#"
name: observed
sources:
  trucks:
    type: file
    path: in.jsonl
    key: device
    time: ts
    speed: 300
operators:
  too_warm:
    type: threshold
    inputs: [trucks]
    field: temperature_c
    above: 4.0
    severity: critical
sinks:
  alerts:
    type: file
    inputs: [too_warm]
    path: alerts.jsonl
dead_letter:
  type: file
  path: dead.jsonl
"#;

/// Ten trucks reporting every 5 s for an hour; each goes warm for a minute
/// every ten; every 500th line is not JSON.
fn recording(dir: &Path) {
    let mut lines = Vec::new();
    for i in 0..720 {
        let t = START + i * 5_000;
        for truck in 0..10 {
            let warm = (i + truck * 7) % 120 < 12;
            let temp = if warm { 6.5 } else { 2.0 };
            lines.push(format!(
                r#"{{"device":"truck-{truck}","ts":"{}","temperature_c":{temp}}}"#,
                rfc3339(t)
            ));
            if lines.len() % 500 == 0 {
                lines.push("{not json".to_string());
            }
        }
    }
    write(dir, "in.jsonl", lines.join("\n") + "\n");
}

fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let client = reqwest::blocking::Client::new();
    let mut request = client.get(url).timeout(Duration::from_secs(5));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().map_err(|e| eprintln!("{url}: {e:?}")).ok()?;
    let status = response.status().as_u16();
    Some((
        status,
        response
            .text()
            .map_err(|e| eprintln!("{url}: {e:?}"))
            .ok()?,
    ))
}

/// Parses an exposition, failing on any line that is neither a comment
/// nor a sample.
fn parse(text: &str) -> prometheus_parse::Scrape {
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let parsed = prometheus_parse::LineInfo::parse(line);
        assert!(
            matches!(parsed, prometheus_parse::LineInfo::Sample { .. }),
            "not a sample: {line}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

/// The value of `metric` whose labels include all of `labels`; 0 for
/// one not there (a family shows a label set only once it has counted).
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match sample.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        Some(prometheus_parse::Value::Untyped(v)) => *v,
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            buckets.iter().map(|b| b.count).fold(0.0, f64::max)
        }
        None => 0.0,
        other => panic!("{metric} {labels:?}: {other:?}"),
    }
}

#[test]
fn metrics_move_during_a_replay_and_health_and_ready_answer() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.yaml", PIPELINE);
    recording(dir.path());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml", "--http", &addr]);

    let up = wait_for(Duration::from_secs(20), || {
        get(&format!("{base}/health"), None).is_some_and(|(s, _)| s == 200)
    });
    assert!(up, "/health never answered:\n{}", floe.log());
    let (status, body) = get(&format!("{base}/ready"), None).expect("/ready answers");
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let trucks = [("pipeline", "observed"), ("component", "trucks")];
    let scrape = || parse(&get(&format!("{base}/metrics"), None).expect("/metrics").1);
    let mut first = 0.0;
    let started = wait_for(Duration::from_secs(20), || {
        first = value(&scrape(), "floe_source_events_total", &trucks);
        first > 0.0
    });
    assert!(started, "no events counted:\n{}", floe.log());
    let moved = wait_for(Duration::from_secs(20), || {
        value(&scrape(), "floe_source_events_total", &trucks) > first
    });
    assert!(moved, "the events counter did not move");

    // Once a few minutes of readings are in, every kind of metric has
    // something to say.
    let warm = [("component", "too_warm"), ("state", "firing")];
    let alerted = wait_for(Duration::from_secs(20), || {
        let s = scrape();
        value(&s, "floe_alerts_total", &warm) > 0.0
            && value(&s, "floe_dead_letters_total", &[("reason", "bad_json")]) > 0.0
    });
    assert!(alerted, "no alert or dead letter counted");
    let s = scrape();
    let events_in = value(
        &s,
        "floe_operator_events_in_total",
        &[("component", "too_warm")],
    );
    assert!(events_in > 0.0 && events_in <= value(&s, "floe_source_events_total", &trucks));
    assert!(value(&s, "floe_source_bytes_total", &trucks) > 0.0);
    assert!(value(&s, "floe_source_decode_failures_total", &trucks) > 0.0);
    assert!(value(&s, "floe_sink_records_total", &[("component", "alerts")]) > 0.0);
    assert!(value(&s, "floe_emit_latency_seconds", &[("pipeline", "observed")]) > 0.0);
    assert_eq!(value(&s, "floe_source_connected", &trucks), 1.0);

    let (code, _) = floe.stop();
    assert_eq!(code, 0);
}

#[test]
fn with_a_token_only_health_is_open_and_the_token_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pipeline = PIPELINE.replace(
        "name: observed\n",
        &format!("name: observed\nhttp:\n  listen: {port}\n  token: ${{SCRAPE_TOKEN}}\n"),
    );
    write(dir.path(), "p.yaml", pipeline);
    recording(dir.path());
    let token = "s3cret/scrape+token";
    let floe = Floe::run_with(
        dir.path(),
        "floe.log",
        &["run", "p.yaml"],
        &[("SCRAPE_TOKEN", token), ("FLOE_LOG", "debug")],
    );
    let base = format!("http://127.0.0.1:{port}");
    let up = wait_for(Duration::from_secs(20), || {
        get(&format!("{base}/health"), None).is_some_and(|(s, _)| s == 200)
    });
    assert!(
        up,
        "/health never answered without a token:\n{}",
        floe.log()
    );

    for path in ["/metrics", "/ready"] {
        let url = format!("{base}{path}");
        assert_eq!(get(&url, None).map(|r| r.0), Some(401), "{path}");
        assert_eq!(get(&url, Some("wrong")).map(|r| r.0), Some(401), "{path}");
        assert_eq!(get(&url, Some(token)).map(|r| r.0), Some(200), "{path}");
        // A browser's page passes it in the query, percent-encoded.
        let query = format!("{url}?token=s3cret%2Fscrape%2Btoken");
        assert_eq!(get(&query, None).map(|r| r.0), Some(200), "{path}");
    }
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("serving http://"), "{log}");
    assert!(!log.contains(token), "the token was logged:\n{log}");
}

/// A sink's failed attempts to reach its broker are counted while it is
/// away; a sink that had no trouble counts none.
#[test]
fn a_sink_counts_its_failures_while_its_broker_is_away() {
    let mut broker = support::broker::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let dispatch = format!(
        "  dispatch:\n    type: mqtt\n    inputs: [too_warm]\n    url: {}\n    topic: alerts\n",
        broker.url()
    );
    let pipeline = PIPELINE.replace("dead_letter:", &format!("{dispatch}dead_letter:"));
    write(dir.path(), "p.yaml", pipeline);
    recording(dir.path());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let floe = Floe::run(dir.path(), "floe.log", &["run", "p.yaml", "--http", &addr]);
    let scrape = || {
        get(&format!("http://{addr}/metrics"), None)
            .map(|(_, text)| parse(&text))
            .map(|s| {
                let of = |metric, sink| value(&s, metric, &[("component", sink)]);
                [
                    of("floe_sink_records_total", "dispatch"),
                    of("floe_sink_failures_total", "dispatch"),
                    of("floe_sink_failures_total", "alerts"),
                ]
            })
            .unwrap_or_default()
    };
    let sending = wait_for(Duration::from_secs(20), || scrape()[0] > 0.0);
    assert!(sending, "no record reached the mqtt sink:\n{}", floe.log());
    assert_eq!(scrape()[1], 0.0, "failures counted with the broker up");

    broker.kill();
    let counted = wait_for(Duration::from_secs(20), || scrape()[1] > 0.0);
    assert!(counted, "no failure counted:\n{}", floe.log());
    assert_eq!(scrape()[2], 0.0, "the file sink had no trouble");
    broker.restart();
    let (code, log) = floe.stop();
    assert_eq!(code, 0, "{log}");
}
