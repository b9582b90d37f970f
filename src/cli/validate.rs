//! `floe validate`: load every pipeline (or simulator scenario), print
//! every problem.

use super::Failure;
use crate::config::{Pipeline, yaml};
use crate::sim::Scenario;
use std::path::{Path, PathBuf};

pub fn validate(paths: &[PathBuf]) -> Result<(), Failure> {
    let mut ok = true;
    for path in paths {
        let checked = match is_scenario(path) {
            true => Scenario::load(path)
                .map(|s| format!("ok (a {} scenario, \"{}\")", s.kind(), s.name)),
            false => Pipeline::load(path).map(|p| {
                format!(
                    "ok ({} sources, {} operators, {} sinks, {} tests)",
                    p.sources.len(),
                    p.operators.len(),
                    p.sinks.len(),
                    p.tests.len()
                )
            }),
        };
        match checked {
            Ok(summary) => println!("{}: {summary}", path.display()),
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                ok = false;
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::Invalid(String::new()))
    }
}

/// Scenarios live beside pipelines and are YAML too: one given to
/// `validate` is checked as what it is. A file that cannot be read or
/// parsed is left to the pipeline loader to report.
fn is_scenario(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    yaml::parse(&text).is_ok_and(|root| Pipeline::is_scenario(&root))
}
