//! `floe bench`: every reading sent makes one alert, in process and
//! through a broker, and the results come as JSON.

mod support;

use support::broker::Mosquitto;
use support::run_in;

/// Runs `floe bench ARGS --json` and returns its one result.
fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &[&["bench", "--json"], args].concat());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn check(result: &serde_json::Value, sent: u64, via: &str) {
    assert_eq!(result["via"], via, "{result}");
    assert_eq!(result["sent"], sent, "{result}");
    assert_eq!(
        result["alerts"], sent,
        "every reading makes an alert: {result}"
    );
    assert_eq!(result["lost"], 0, "{result}");
    let (p50, p99, max) = (
        result["p50_ms"].as_f64().unwrap(),
        result["p99_ms"].as_f64().unwrap(),
        result["max_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{result}");
}

#[test]
fn in_process_every_reading_makes_one_alert_and_is_timed() {
    let result = bench(&["--rate", "2000", "--duration", "1s", "--devices", "50"]);
    check(&result, 2000, "process");
}

#[test]
fn through_mosquitto_nothing_is_lost() {
    let broker = Mosquitto::start();
    let url = broker.url();
    let result = bench(&["--rate", "1000", "--duration", "1s", "--via", &url]);
    check(&result, 1000, "mqtt");
}

#[test]
fn a_bad_rate_or_via_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["bench", "--rate", "0"],
        vec!["bench", "--rate", "nan"],
        vec!["bench", "--via", "amqp://127.0.0.1:5672"],
        vec!["bench", "--via", "kafka://127.0.0.1:9092"],
        vec!["bench", "--devices", "0"],
    ] {
        let out = run_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn several_rates_give_a_row_each_and_a_plot_of_latency_against_rate() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "--rate", "500,1000", "--duration", "500ms"];
    let out = run_in(
        dir.path(),
        &[&args[..], &["--plot", "latency.svg"]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 3, "a header and a row per rate:\n{table}");
    assert!(rows[1].trim_start().starts_with("500 ") && rows[2].trim_start().starts_with("1000 "));
    let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Four percentiles, a point per rate each.
    assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    assert_eq!(svg.matches("<circle").count(), 8, "{svg}");
}
