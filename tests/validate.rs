//! `floe validate`: the example pipelines are valid, and each broken
//! pipeline in `fixtures/invalid/<case>/` fails with exactly the lines in its
//! `errors.txt`.

mod support;

use std::path::Path;
use support::{run_in, stderr, stdout};

fn check_invalid(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/invalid")
        .join(case);
    let expected = std::fs::read_to_string(dir.join("errors.txt")).expect("errors.txt");
    let out = run_in(&dir, &["validate", "pipeline.yaml"]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    assert_eq!(stderr(&out).trim_end(), expected.trim_end());
}

macro_rules! invalid {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                check_invalid(stringify!($case));
            }
        )*
    };
}

invalid!(
    bad_duration,
    bad_expressions,
    bad_field_reference,
    bad_speed,
    bad_tests,
    cycle,
    dedup_options,
    detection_options,
    everything_at_once,
    missing_env,
    kafka_options,
    mqtt_options,
    placeholder_typo,
    several_problems_in_one_component,
    several_unknown_keys,
    structure,
    time_format,
    typo_option,
    unknown_input,
    yaml_syntax,
);

#[test]
fn example_pipelines_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pipelines: Vec<String> = std::fs::read_dir(root.join("pipelines"))
        .expect("pipelines/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(pipelines.len() >= 2, "{pipelines:?}");
    let mut args = vec!["validate"];
    args.extend(pipelines.iter().map(String::as_str));
    let out = run_in(root, &args);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn example_pipelines_pass_their_own_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_in(
        root,
        &[
            "test",
            "pipelines/cold-chain.yaml",
            "pipelines/factory.yaml",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn a_failing_pipeline_test_exits_1_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    support::write(
        dir.path(),
        "p.yaml",
        r#"
sources:
  trucks: {type: file, path: none.jsonl, key: device, time: ts}
operators:
  too_warm: {type: threshold, inputs: [trucks], field: temperature_c, above: 4}
tests:
  - name: expects what does not happen
    inputs:
      trucks:
        - {device: t1, ts: "2026-11-23T10:00:00Z", temperature_c: 3.0}
    expect:
      - {rule: too_warm, key: t1, state: firing}
  - name: passes
    inputs:
      trucks:
        - {device: t1, ts: "2026-11-23T10:00:00Z", temperature_c: 5.0}
    expect:
      - {rule: too_warm, key: t1, state: firing, event_time: "2026-11-23T10:00:00Z"}
  - name: reads a recording
    inputs:
      trucks: {file: data/warm.jsonl}
    expect:
      - {rule: too_warm, key: t2, state: firing}
  - name: reads a recording that is not there
    inputs:
      trucks: {file: data/gone.jsonl}
"#,
    );
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    support::write(
        &dir.path().join("data"),
        "warm.jsonl",
        "{\"device\": \"t2\", \"ts\": \"2026-11-23T10:00:00Z\", \"temperature_c\": 6.0}\n",
    );
    let out = run_in(dir.path(), &["test", "p.yaml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL  p.yaml: expects what does not happen"),
        "{text}"
    );
    assert!(
        text.contains("expected too_warm firing for key t1, not raised"),
        "{text}"
    );
    assert!(text.contains("ok    p.yaml: passes"), "{text}");
    assert!(text.contains("ok    p.yaml: reads a recording"), "{text}");
    assert!(text.contains("cannot read data/gone.jsonl"), "{text}");
    assert!(text.contains("2 passed, 2 failed"), "{text}");
}

#[test]
fn a_speed_that_is_not_a_finite_number_is_rejected_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    for speed in [".nan", ".inf", "-.inf", "1e999"] {
        support::write(
            dir.path(),
            "p.yaml",
            format!(
                "sources:\n  trucks:\n    type: file\n    path: in.jsonl\n    speed: {speed}\nsinks:\n  out: {{type: stdout, inputs: [trucks]}}\n"
            ),
        );
        let out = run_in(dir.path(), &["validate", "p.yaml"]);
        assert_eq!(out.status.code(), Some(1), "{speed}");
        assert_eq!(
            stderr(&out).trim_end(),
            format!("p.yaml:5:12: `{speed}` is not a finite number"),
        );
    }
}

/// A source keyed by a topic level gets its key from the topic each test
/// record carries, through the same decoder as the real source.
#[test]
fn a_pipeline_keyed_by_topic_is_tested_with_records_that_carry_their_topic() {
    let dir = tempfile::tempdir().unwrap();
    support::write(
        dir.path(),
        "p.yaml",
        r#"
sources:
  trucks:
    type: mqtt
    url: mqtt://127.0.0.1:1883
    topics: [fleet/+/telemetry]
    key: topic[1]
    time: ts
operators:
  too_warm: {type: threshold, inputs: [trucks], field: temperature_c, above: 4}
tests:
  - name: each truck is keyed by its topic
    inputs:
      trucks:
        - {topic: fleet/t1/telemetry, payload: {ts: "2026-11-23T10:00:00Z", temperature_c: 5.0}}
        - {topic: fleet/t2/telemetry, payload: {ts: "2026-11-23T10:00:00Z", temperature_c: 3.0}}
        - {topic: fleet/t1/telemetry, payload: {ts: "2026-11-23T10:01:00Z", temperature_c: 3.0}}
    expect:
      - {rule: too_warm, key: t1, state: firing, event_time: "2026-11-23T10:00:00Z"}
      - {rule: too_warm, key: t1, state: resolved, event_time: "2026-11-23T10:01:00Z"}
  - name: a recording of messages with their topics
    inputs:
      trucks: {file: messages.jsonl}
    expect:
      - {rule: too_warm, key: t3, state: firing}
"#,
    );
    support::write(
        dir.path(),
        "messages.jsonl",
        "{\"topic\": \"fleet/t3/telemetry\", \"payload\": {\"ts\": \"2026-11-23T10:00:00Z\", \"temperature_c\": 6.0}}\n",
    );
    let out = run_in(dir.path(), &["test", "p.yaml"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("2 passed, 0 failed"), "{text}");
}

/// The first YAML block after `heading` in README.md.
fn readme_yaml(readme: &str, heading: &str) -> String {
    let section = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"))
        .1;
    let block = section.split_once("```yaml\n").expect("a YAML block").1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

/// The README's pipeline, with the test cases the README shows for it,
/// passes: the documentation's example works as written.
#[test]
fn the_readme_example_pipeline_passes_the_readme_example_tests() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let pipeline = readme_yaml(&readme, "## A pipeline in one page");
    let tests = readme_yaml(&readme, "### Pipeline tests");
    let dir = tempfile::tempdir().unwrap();
    support::write(dir.path(), "readme.yaml", format!("{pipeline}{tests}"));
    let out = run_in(dir.path(), &["test", "readme.yaml"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("1 passed, 0 failed"), "{text}");
}

/// Every input and output URI scheme is in the help that lists them.
#[test]
fn run_and_simulate_help_list_every_uri_scheme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (command, schemes) in [
        (
            "run",
            &["file:", "sim:", "mqtt://", "kafka://", "stdout"][..],
        ),
        ("simulate", &["stdout", "file:", "mqtt://", "kafka://"][..]),
    ] {
        let out = run_in(root, &[command, "--help"]);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}");
        for scheme in schemes {
            assert!(
                text.contains(scheme),
                "floe {command} --help lacks {scheme}:\n{text}"
            );
        }
    }
}

/// `floe validate` checks a scenario file as a scenario; the commands that
/// take a pipeline say that a scenario is not one.
#[test]
fn scenarios_are_validated_as_scenarios_and_refused_as_pipelines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenarios: Vec<String> = std::fs::read_dir(root.join("simulators"))
        .expect("simulators/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(scenarios.len() >= 4, "{scenarios:?}");
    let mut args = vec!["validate", "pipelines/factory.yaml"];
    args.extend(scenarios.iter().map(String::as_str));
    let out = run_in(root, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("simulators/trucks.yaml: ok (a trucks scenario, \"trucks\")"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    support::write(
        dir.path(),
        "s.yaml",
        "# a fleet\nkind: trucks\ntrucks: 10\nfaults:\n  compresor_failure: {per_day: 1}\n",
    );
    let out = run_in(dir.path(), &["validate", "s.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "s.yaml:5:3: unknown field `compresor_failure`, did you mean `compressor_failure`?"
    );
    for command in ["run", "test"] {
        let out = run_in(root, &[command, "simulators/trucks.yaml"]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(
            stderr(&out).contains("simulators/trucks.yaml:7:7: this is a simulator scenario (it has `kind:`), not a pipeline: `floe simulate` runs it"),
            "{command}: {}",
            stderr(&out)
        );
    }
}
