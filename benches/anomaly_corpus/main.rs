//! Detection quality on real-world-like recordings, scored the way the
//! Numenta Anomaly Benchmark scores: every detector configuration runs over
//! every recording of [`corpus`] at each threshold of its sweep, through
//! floe's own pipeline (the file source's decoder, per-key ordering, the
//! `anomaly` operator, a sink), and [`nab`] scores the firing alerts
//! against the labelled windows. One threshold per configuration for the
//! whole corpus: the best one, per profile.
//!
//! ```sh
//! cargo bench --bench anomaly_corpus                        # the table for BENCHMARKS.md
//! cargo bench --bench anomaly_corpus -- --detail            # and each sweep, and every recording
//! cargo bench --bench anomaly_corpus -- cusum likelihood    # only configurations named so
//! cargo bench --bench anomaly_corpus -- --write /tmp/corpus # the recordings and labels as files
//! ```

mod corpus;
mod nab;

use corpus::Recording;
use floe::config::Pipeline;
use floe::event::decode::Envelope;
use floe::event::time::{format_rfc3339, parse_rfc3339};
use floe::runtime::{BATCH, Core, KeyCounts, Plan};
use nab::{LOW_FP, Profile, STANDARD, Tally};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A detector configuration to compare.
struct Detector {
    /// Its row in the table; arguments select configurations by it.
    name: &'static str,
    /// The `anomaly` options but `field`, `inputs` and `threshold`, as YAML.
    options: &'static str,
    /// The thresholds tried, on the configuration's own score scale.
    sweep: Vec<f64>,
}

/// The configurations compared: the four methods with their defaults but
/// for two suited to readings every few minutes: a warm-up of 6 h (36 to
/// 360 readings), and for `ewma` a smoothing of 30 m (the default 30 s is
/// shorter than one reading: the chart would be a z-score capped at 4). A
/// new detector is one more entry: its options, and a sweep on its score's
/// scale, e.g. a likelihood in [0, 1] `&[0.99, 0.999, 0.9999, 0.99999]`.
fn detectors() -> Vec<Detector> {
    let raw = log_scale(2.0, 40.0, 14);
    let detector = |name, options, sweep: &[f64]| Detector {
        name,
        options,
        sweep: sweep.to_vec(),
    };
    let likely = [0.99, 0.999, 0.9999, 0.99999, 0.999999];
    vec![
        detector("zscore", "method: zscore\nwarmup: 6h", &raw),
        detector("ewma", "method: ewma\nsmoothing: 30m\nwarmup: 6h", &raw),
        detector("mad", "method: mad\nwarmup: 6h", &raw),
        detector("cusum", "method: cusum\nwarmup: 6h", &raw),
        detector(
            "zscore likelihood",
            "method: zscore\nlikelihood: true\nwarmup: 6h",
            &likely,
        ),
        detector(
            "ewma likelihood",
            "method: ewma\nsmoothing: 30m\nlikelihood: true\nwarmup: 6h",
            &likely,
        ),
        detector(
            "mad likelihood",
            "method: mad\nlikelihood: true\nwarmup: 6h",
            &likely,
        ),
        detector(
            "cusum likelihood",
            "method: cusum\nlikelihood: true\nwarmup: 6h",
            &likely,
        ),
        detector(
            "zscore cycle",
            "method: zscore\ncycle: 1d\nwarmup: 6h",
            &raw,
        ),
        detector(
            "zscore cycle likelihood",
            "method: zscore\ncycle: 1d\nlikelihood: true\nwarmup: 6h",
            &likely,
        ),
    ]
}

/// `n` thresholds from `lo` to `hi` in equal ratios, to two significant
/// digits.
fn log_scale(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let two_digits = |x: f64| {
        let scale = 10f64.powf(1.0 - x.log10().floor());
        (x * scale).round() / scale
    };
    (0..n)
        .map(|i| two_digits(lo * (hi / lo).powf(i as f64 / (n - 1) as f64)))
        .collect()
}

fn pipeline(detector: &Detector, threshold: f64) -> String {
    let options: String = (detector.options.lines())
        .map(|line| format!("    {line}\n"))
        .collect();
    format!(
        "name: anomaly_corpus
sources:
  recording: {{type: file, path: never-opened.jsonl, key: device, time: ts, max_out_of_orderness: 10s}}
operators:
  detector:
    type: anomaly
    inputs: [recording]
    field: value
    threshold: {threshold}
{options}sinks:
  alerts: {{type: file, path: never-opened.jsonl, inputs: [detector]}}
"
    )
}

/// The part of an alert line the scorer needs.
#[derive(Deserialize)]
struct AlertLine {
    state: String,
    event_time: String,
}

/// Replays `recording` through a fresh worker core, as `floe run` replays
/// a file: timers after each batch, held events released at the end.
/// Returns the event times of the firing alerts.
fn firings(plan: &Plan, recording: &Recording) -> Vec<i64> {
    let flow = &plan.flow;
    let operators = plan.operators.iter().map(|o| o.fork()).collect();
    let mut core = Core::new(flow, operators, 1, KeyCounts::new(flow.sources));
    let mut fired = Vec::new();
    let mut collect = |core: &mut Core| {
        for record in core.outbox[0].drain(..).filter(|r| r.is_alert) {
            let alert: AlertLine = serde_json::from_str(&record.line).expect("an alert line");
            if alert.state == "firing" {
                fired.push(parse_rfc3339(&alert.event_time).expect("an RFC 3339 time"));
            }
        }
    };
    for (i, line) in recording.lines.iter().enumerate() {
        let event = (plan.decoders[0].decode_message(line.as_bytes(), &Envelope::at(i as u64)))
            .unwrap_or_else(|e| panic!("{}: line {i}: {e}", recording.name));
        core.accept(flow, event);
        if i % BATCH == BATCH - 1 {
            core.tick_event_time(flow);
            collect(&mut core);
        }
    }
    core.source_ended(flow, 0);
    core.end(flow);
    collect(&mut core);
    // Duplicates, reordering within seconds and gaps are all the runtime's
    // to take: a refused reading means the corpus or the runner is wrong.
    if let Some((event, why)) = core.rejected.first() {
        panic!(
            "{}: reading at {} refused: {why:?}",
            recording.name, event.time
        );
    }
    fired.sort_unstable();
    fired
}

/// One configuration at one threshold: a tally per recording.
struct Point {
    threshold: f64,
    tallies: Vec<Tally>,
    total: Tally,
}

fn sweep(detector: &Detector, corpus: &[Recording]) -> Vec<Point> {
    (detector.sweep.iter())
        .map(|&threshold| {
            let yaml = pipeline(detector, threshold);
            let parsed = Pipeline::parse(Path::new("anomaly_corpus.yaml"), &yaml);
            let pipeline = parsed.unwrap_or_else(|e| panic!("{}: {e:?}\n{yaml}", detector.name));
            let plan = Plan::new(&pipeline);
            let tallies: Vec<Tally> = (corpus.iter())
                .map(|r| Tally::new(&r.windows, &firings(&plan, r)))
                .collect();
            let mut total = Tally::default();
            tallies.iter().for_each(|&t| total += t);
            Point {
                threshold,
                tallies,
                total,
            }
        })
        .collect()
}

/// The point with the best corpus score under `profile` (the lowest
/// threshold of a tie).
fn best<'p>(points: &'p [Point], profile: &Profile) -> &'p Point {
    let score = |p: &Point| p.total.score(profile).unwrap_or(f64::NEG_INFINITY);
    (points.iter())
        .reduce(|best, p| if score(p) > score(best) { p } else { best })
        .expect("a sweep has thresholds")
}

fn or_dash(x: Option<f64>, decimals: usize) -> String {
    x.map_or("–".into(), |x| format!("{x:.decimals$}"))
}

/// What the command line asks for.
#[derive(Default)]
struct Args {
    detail: bool,
    /// Where to write the recordings and their labels instead of scoring.
    write: Option<PathBuf>,
    /// Configurations to run, by part of their name; all without.
    names: Vec<String>,
}

fn usage() -> ! {
    eprintln!("usage: cargo bench --bench anomaly_corpus -- [--detail] [--write DIR] [NAME...]");
    std::process::exit(2)
}

fn args() -> Args {
    let mut args = Args::default();
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            // What `cargo bench` passes every benchmark.
            "--bench" => {}
            "--detail" => args.detail = true,
            "--write" => args.write = Some(given.next().unwrap_or_else(|| usage()).into()),
            flag if flag.starts_with('-') => usage(),
            _ => args.names.push(arg),
        }
    }
    args
}

/// Writes each recording as `DIR/<name>.jsonl`, to replay with `floe run`
/// or plot, and the windows as `DIR/labels.jsonl`.
fn write(corpus: &[Recording], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut labels = String::new();
    for r in corpus {
        std::fs::write(
            dir.join(format!("{}.jsonl", r.name)),
            r.lines.join("\n") + "\n",
        )?;
        for &(start, end) in &r.windows {
            let (start, end) = (format_rfc3339(start), format_rfc3339(end));
            let line = format!(
                r#"{{"device":"{}","start":"{start}","end":"{end}"}}"#,
                r.name
            );
            labels.extend([line.as_str(), "\n"]);
        }
    }
    std::fs::write(dir.join("labels.jsonl"), labels)
}

fn main() {
    let started = Instant::now();
    let args = args();
    let corpus = corpus::recordings();
    if let Some(dir) = &args.write {
        write(&corpus, dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        return println!("{} recordings written to {}", corpus.len(), dir.display());
    }
    let detectors: Vec<Detector> = (detectors().into_iter())
        .filter(|d| args.names.is_empty() || args.names.iter().any(|n| d.name.contains(n.as_str())))
        .collect();
    let readings: usize = corpus.iter().map(|r| r.lines.len()).sum();
    let windows: usize = corpus.iter().map(|r| r.windows.len()).sum();
    let results: Vec<Vec<Point>> = detectors.iter().map(|d| sweep(d, &corpus)).collect();

    println!(
        "{} recordings, {readings} readings, {windows} incident windows. Each configuration at \
         its best threshold for the standard profile (precision, recall and firings there), and \
         for the reward-low-FP profile at its own best threshold.\n",
        corpus.len()
    );
    println!(
        "| configuration | threshold | NAB standard | precision | recall | firings (in windows) | NAB reward low FP (threshold) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (detector, points) in detectors.iter().zip(&results) {
        let (standard, low) = (best(points, &STANDARD), best(points, &LOW_FP));
        let t = standard.total;
        println!(
            "| `{}` | {} | {} | {} | {} | {} ({}) | {} ({}) |",
            detector.options.replace('\n', ", "),
            standard.threshold,
            or_dash(t.score(&STANDARD), 1),
            or_dash(t.precision(), 2),
            or_dash(t.recall(), 2),
            t.firings,
            t.inside,
            or_dash(low.total.score(&LOW_FP), 1),
            low.threshold,
        );
    }
    if args.detail {
        for (detector, points) in detectors.iter().zip(&results) {
            print_sweep(detector, points);
        }
        print_recordings(&detectors, &results, &corpus);
    }
    let points: usize = results.iter().map(Vec::len).sum();
    println!(
        "\nwall time {:.1} s ({} recording runs, {} readings through the pipeline)",
        started.elapsed().as_secs_f64(),
        points * corpus.len(),
        points * readings
    );
}

fn print_sweep(detector: &Detector, points: &[Point]) {
    println!("\n`{}`\n", detector.name);
    println!(
        "| threshold | NAB standard | NAB reward low FP | precision | recall | firings (in windows) |"
    );
    println!("|---|---|---|---|---|---|");
    for p in points {
        let t = p.total;
        println!(
            "| {} | {} | {} | {} | {} | {} ({}) |",
            p.threshold,
            or_dash(t.score(&STANDARD), 1),
            or_dash(t.score(&LOW_FP), 1),
            or_dash(t.precision(), 2),
            or_dash(t.recall(), 2),
            t.firings,
            t.inside
        );
    }
}

/// Every recording at each configuration's best standard threshold:
/// windows detected, firings outside windows, and the recording's score.
fn print_recordings(detectors: &[Detector], results: &[Vec<Point>], corpus: &[Recording]) {
    let bests: Vec<&Point> = results.iter().map(|p| best(p, &STANDARD)).collect();
    println!(
        "\nPer recording at the best standard threshold: windows detected, false firings, NAB standard\n"
    );
    let header: String = (detectors.iter().zip(&bests))
        .map(|(d, p)| format!(" {} ({}) |", d.name, p.threshold))
        .collect();
    println!("| recording |{header}");
    println!("|---|{}", "---|".repeat(detectors.len()));
    for (i, recording) in corpus.iter().enumerate() {
        let cells: String = (bests.iter())
            .map(|p| {
                let t = p.tallies[i];
                let score = or_dash(t.score(&STANDARD), 0);
                format!(
                    " {}/{}, {} FP, {score} |",
                    t.detected,
                    t.windows,
                    t.firings - t.inside
                )
            })
            .collect();
        println!("| {} |{cells}", recording.name);
    }
}
