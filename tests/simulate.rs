//! `floe simulate` and `floe demo`: reproducible output, labels that match
//! what the example pipelines detect, and a demo that shows real alerts.

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use support::{json_lines, run_in, stderr, stdout};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_of(label: &Value) -> Vec<&str> {
    let rules = label["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    rules.iter().filter_map(Value::as_str).collect()
}

fn time(value: &Value) -> i64 {
    floe::event::time::parse_rfc3339(value.as_str().unwrap_or_default()).unwrap_or_default()
}

#[test]
fn a_seeded_run_at_a_fixed_rate_writes_exactly_rate_times_duration_lines_and_the_same_bytes_again()
{
    let dir = tempfile::tempdir().unwrap();
    let scenario = root().join("simulators/trucks.yaml");
    let scenario = scenario.to_str().unwrap();
    let run = |name: &str| {
        let out = run_in(
            dir.path(),
            &[
                "simulate",
                scenario,
                "--to",
                &format!("file:{name}.jsonl"),
                "--rate",
                "50000",
                "--duration",
                "2s",
            ]
            .into_iter()
            .chain(["--seed", "7", "--labels", &format!("{name}.labels")])
            .collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        (
            std::fs::read(dir.path().join(format!("{name}.jsonl"))).unwrap(),
            std::fs::read(dir.path().join(format!("{name}.labels"))).unwrap(),
        )
    };
    let (first, first_labels) = run("a");
    let (second, second_labels) = run("b");
    assert_eq!(first.iter().filter(|&&b| b == b'\n').count(), 100_000);
    assert!(first == second, "the same seed gives the same bytes");
    assert_eq!(first_labels, second_labels);
    let line: Value = serde_json::from_slice(first.split(|&b| b == b'\n').next().unwrap()).unwrap();
    for field in [
        "device",
        "ts",
        "kind",
        "temperature_c",
        "setpoint_c",
        "door_open",
        "lat",
        "lon",
    ] {
        assert!(line.get(field).is_some(), "{field} missing in {line}");
    }
}

#[test]
fn bad_scenarios_and_outputs_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    support::write(
        dir.path(),
        "s.yaml",
        "kind: trucks\ntrucks: 10\nfaults:\n  compresor_failure: {per_day: 1}\n",
    );
    let out = run_in(
        dir.path(),
        &["simulate", "s.yaml", "--to", "stdout", "--duration", "1s"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "s.yaml:4:3: unknown field `compresor_failure`, did you mean `compressor_failure`?"
        ),
        "{}",
        stderr(&out)
    );
    let scenario = root().join("simulators/factory.yaml");
    let out = run_in(
        dir.path(),
        &[
            "simulate",
            scenario.to_str().unwrap(),
            "--to",
            "amqp://127.0.0.1:9/t",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("expected stdout, file:PATH, mqtt://HOST:PORT/TOPIC or kafka://"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rates_and_speeds_must_be_finite_and_not_negative() {
    let scenario = root().join("simulators/trucks.yaml");
    let scenario = scenario.to_str().unwrap();
    for (option, value) in [
        ("--rate", "0"),
        ("--rate", "-5"),
        ("--rate", "nan"),
        ("--rate", "inf"),
        ("--speed", "-1"),
        ("--speed", "NaN"),
        ("--speed", "infinity"),
        ("--speed", "fast"),
    ] {
        let args = ["simulate", scenario, "--to", "stdout", option, value];
        let out = run_in(root(), &args);
        assert_eq!(out.status.code(), Some(1), "{option} {value}");
        let text = stderr(&out);
        let expected = format!("error: invalid value '{value}' for '{option} <");
        assert!(text.starts_with(&expected), "{option} {value}: {text}");
        assert!(
            text.contains("must be a finite number") || text.contains("not a number"),
            "{text}"
        );
    }
    let out = run_in(root(), &["demo", "--speed", "nan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// A rate so low that the next message is due after the end of time is a
/// valid rate: with `--duration`, rate x duration rounds to no messages
/// and the run ends at once; without, the first message goes out and the
/// run waits for Ctrl-C or SIGTERM.
#[test]
fn a_vanishing_rate_ends_with_its_duration_or_at_sigterm_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = root().join("simulators/trucks.yaml");
    let scenario = scenario.to_str().unwrap();
    let started = std::time::Instant::now();
    let args = [
        "simulate",
        scenario,
        "--to",
        "file:timed.jsonl",
        "--rate",
        "1e-20",
    ];
    let out = run_in(dir.path(), &[&args[..], &["--duration", "1s"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(std::fs::read(dir.path().join("timed.jsonl")).unwrap(), b"");

    for (option, value) in [("--rate", "1e-20"), ("--speed", "1e-300")] {
        let args = [
            "simulate",
            scenario,
            "--to",
            "file:open.jsonl",
            option,
            value,
        ];
        let out = support::run_until_signal(dir.path(), &args, "TERM", Some("open.jsonl"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{option} {value}: {}",
            stderr(&out)
        );
        let lines = json_lines(&dir.path().join("open.jsonl"));
        assert_eq!(lines.len(), 1, "{option} {value}");
    }
}

/// One simulated hour of 500 trucks through pipelines/cold-chain.yaml:
/// every compressor failure and door left open that had time to show is
/// alerted by one of the rules its label names, and nothing fires for a
/// delivery or a sensor spike.
#[test]
fn the_cold_chain_pipeline_raises_what_the_labels_say_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = root().join("tests/fixtures/sim/trucks-500.yaml");
    let args = [
        "simulate",
        scenario.to_str().unwrap(),
        "--to",
        "file:run.jsonl",
        "--speed",
        "0",
    ];
    let args: Vec<&str> = args
        .into_iter()
        .chain([
            "--duration",
            "1h",
            "--seed",
            "7",
            "--labels",
            "labels.jsonl",
        ])
        .collect();
    let out = run_in(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let pipeline = root().join("pipelines/cold-chain.yaml");
    let out = run_in(
        dir.path(),
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--input",
            "trucks=file:run.jsonl",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alerts: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let labels = json_lines(&dir.path().join("labels.jsonl"));

    // The scenario starts at 06:00; the run covers one hour.
    let end = floe::event::time::parse_rfc3339("2026-11-23T07:00:00Z").unwrap();
    let mut firing: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for a in alerts.iter().filter(|a| a["state"] == "firing") {
        firing
            .entry(a["key"].as_str().unwrap())
            .or_default()
            .push((a["rule"].as_str().unwrap(), time(&a["event_time"])));
    }
    let alerted = |label: &Value, rules: &[&str], after: i64| {
        firing
            .get(label["device"].as_str().unwrap())
            .is_some_and(|hits| {
                hits.iter().any(|(rule, t)| {
                    rules.contains(rule) && (time(&label["start"]) - 60_000..=after).contains(t)
                })
            })
    };

    // Faults that had time to show: a compressor needs ~25 minutes to raise
    // a sustained warming trend, an open door five minutes.
    let mut checked = HashMap::new();
    for (fault, needs) in [("compressor_failure", 25), ("door_left_open", 6)] {
        for label in labels
            .iter()
            .filter(|l| l["fault"] == fault && time(&l["start"]) + needs * 60_000 <= end)
        {
            let rules = rules_of(label);
            assert!(
                alerted(label, &rules, time(&label["end"]) + 3_600_000),
                "not alerted: {label}"
            );
            *checked.entry(fault).or_insert(0) += 1;
        }
    }
    assert!(
        checked["compressor_failure"] >= 10 && checked["door_left_open"] >= 15,
        "{checked:?}"
    );

    // Every alert that fired is explained by a fault of its truck.
    for a in alerts.iter().filter(|a| a["state"] == "firing") {
        let at = time(&a["event_time"]);
        let explained = labels.iter().any(|l| {
            l["device"] == a["key"]
                && rules_of(l).contains(&a["rule"].as_str().unwrap())
                && (time(&l["start"]) - 60_000..=time(&l["end"]) + 3_600_000).contains(&at)
        });
        assert!(explained, "a false alert: {a}");
    }
    let benign = labels
        .iter()
        .filter(|l| l["fault"] == "delivery" || l["fault"] == "sensor_spike")
        .count();
    assert!(
        benign > 200,
        "the hour holds many deliveries and spikes: {benign}"
    );
}

#[test]
fn the_demo_shows_alerts_of_both_pipelines_within_30_seconds() {
    let out = run_in(root(), &["demo", "--duration", "30s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for pipeline in ["cold-chain", "factory"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("  {pipeline} ")) && l.contains("FIRING")),
            "no {pipeline} alert in:\n{text}"
        );
    }
    let json = run_in(
        root(),
        &["demo", "--duration", "3s", "--json", "--speed", "600"],
    );
    assert!(json.status.success(), "{}", stderr(&json));
    let first = stdout(&json)
        .lines()
        .next()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .unwrap();
    assert!(first.get("alert_id").is_some());
}

/// Waits at most `limit` for `child` to exit; a child still running then
/// is killed and the test fails, so a hang cannot hang the test.
fn exits_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("floe status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("floe ends");
            panic!("{what}: still running after {limit:?}:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("floe output")
}

fn simulate(dir: &Path, args: &[&str]) -> Child {
    let scenario = root().join("simulators/factory.yaml");
    support::floe()
        .arg("simulate")
        .arg(scenario)
        .args(args)
        .current_dir(dir)
        .env("FLOE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("floe starts")
}

/// `--to mqtt://` a port nothing listens on: the first connection is given
/// up after `--connect-timeout` with one line naming the broker (exit 2),
/// and SIGINT or SIGTERM stops the run at once, whether it is connecting
/// and backing off or waiting at the end to deliver what it made.
#[test]
fn an_unreachable_broker_is_given_up_on_and_a_signal_stops_the_wait_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = format!("127.0.0.1:{}", support::broker::free_port());
    let to = format!("mqtt://{broker}");

    let started = Instant::now();
    let args = ["--to", &to, "--duration", "1s", "--connect-timeout", "2s"];
    let out = exits_within(
        simulate(dir.path(), &args),
        Duration::from_secs(20),
        "timeout",
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up too soon"
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    let last = text.lines().last().unwrap_or_default();
    let expected = format!("error: writing {to}: cannot connect to {broker}: ");
    assert!(last.starts_with(&expected), "{text}");
    assert!(last.ends_with("(gave up after 2s)"), "{text}");

    for (signal, args) in [
        // Publishing at a rate while connecting and backing off.
        ("INT", vec!["--to", &to, "--rate", "100000"]),
        ("TERM", vec!["--to", &to, "--rate", "100000"]),
        // Done simulating, waiting to deliver what it made.
        ("TERM", vec!["--to", &to, "--duration", "200ms"]),
    ] {
        let child = simulate(
            dir.path(),
            &[&args[..], &["--connect-timeout", "1h"]].concat(),
        );
        std::thread::sleep(Duration::from_millis(1500));
        let pid = child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(sent.expect("kill runs").success());
        let signalled = Instant::now();
        let out = exits_within(child, Duration::from_secs(10), signal);
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "SIG{signal} {args:?}: {took:?}"
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let expected = format!("error: writing {to}: stopped before {broker} could be reached: ");
        assert!(
            stderr(&out).lines().any(|l| l.starts_with(&expected)),
            "{}",
            stderr(&out)
        );
    }
}
