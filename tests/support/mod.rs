//! Helpers shared by the integration tests: running the real `floe` binary
//! on files in a temporary directory.

#![allow(dead_code)]

pub mod broker;
pub mod kafka;
pub mod receiver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn floe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floe"))
}

/// Runs `floe` with `args` in `dir`, returning its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    floe()
        .args(args)
        .current_dir(dir)
        .env("FLOE_LOG", "warn")
        .output()
        .expect("the floe binary runs")
}

/// Runs `floe` with `args` in `dir` until it catches `signal` (`TERM`,
/// `HUP`, `INT`: its handlers are in place) and, if given, has written a
/// line to `dir/written`; then sends it that signal and returns its output.
pub fn run_until_signal(dir: &Path, args: &[&str], signal: &str, written: Option<&str>) -> Output {
    let child = floe()
        .args(args)
        .current_dir(dir)
        .env("FLOE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the floe binary starts");
    let number = match signal {
        "HUP" => 1,
        "INT" => 2,
        "TERM" => 15,
        other => panic!("no signal number for {other}"),
    };
    let wrote =
        |name: &str| std::fs::read_to_string(dir.join(name)).is_ok_and(|text| text.contains('\n'));
    let caught = broker::wait_for(std::time::Duration::from_secs(20), || {
        catches(child.id(), number) && written.is_none_or(wrote)
    });
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let output = child.wait_with_output().expect("floe ends");
    assert!(
        caught,
        "floe never handled SIG{signal}: {}",
        stderr(&output)
    );
    output
}

/// Whether process `pid` has a handler for signal `number` (Linux's
/// `SigCgt` mask in /proc).
fn catches(pid: u32, number: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << (number - 1)) != 0
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// Parses a JSON-lines file; a missing file reads as empty.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A tiny deterministic generator, so tests need no `rand`.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 42) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// RFC 3339 for epoch milliseconds, as recordings write it.
pub fn rfc3339(ms: i64) -> String {
    floe::event::time::format_rfc3339(ms)
}
