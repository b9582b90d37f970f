//! The `floe` command line.
//!
//! Exit codes: 0 success, 1 invalid input (pipeline, arguments), 2 runtime
//! failure. Errors are one line each on stderr.

mod bench;
mod demo;
mod eval;
mod run;
mod serve;
mod simulate;
mod test;
mod validate;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "floe",
    version,
    about = "Real-time stream processing for IoT telemetry"
)]
struct Cli {
    /// How log lines are written to stderr: `text` (coloured only on a
    /// terminal) or `json` (one JSON object per line, for log collectors).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FLOE_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Zero-setup demo: the simulator feeds the example pipelines, alerts on stdout.
    Demo(demo::Args),
    /// Run a pipeline until its sources end or Ctrl-C / SIGTERM.
    Run(run::Args),
    /// Publish simulated telemetry from a scenario.
    Simulate(simulate::Args),
    /// Score alerts against the simulator's labelled faults.
    Eval(eval::Args),
    /// Load test: generated readings at a fixed rate through a pipeline,
    /// in process or through a broker; throughput, loss and latency.
    Bench(bench::Args),
    /// Check pipelines; exit 0 if all are valid, 1 if not.
    Validate {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Run the test cases pipelines carry under `tests:`.
    Test {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
}

/// What a command failed with, mapped to the exit code.
pub enum Failure {
    /// Bad pipeline, arguments or test failures: exit 1.
    Invalid(String),
    /// The run itself failed: exit 2.
    Runtime(String),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Demo(args) => demo::demo(args),
        Command::Eval(args) => eval::eval(args),
        Command::Bench(args) => bench::bench(args),
        Command::Run(args) => run::run(args),
        Command::Simulate(args) => simulate::simulate(args),
        Command::Validate { pipelines } => validate::validate(&pipelines),
        Command::Test { pipelines } => test::test(&pipelines),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(1)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; `FLOE_LOG` (or `RUST_LOG`) sets the filter.
/// Colours only on a terminal: in a file or a log collector the escape
/// sequences are noise.
fn init_logging(format: LogFormat) {
    let filter = std::env::var("FLOE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.with_ansi(false).json().init(),
    }
}

/// A multi-threaded runtime with `workers` threads.
fn tokio_runtime(workers: usize) -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))
}
