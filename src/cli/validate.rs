//! `floe validate`: load every pipeline, print every problem.

use super::Failure;
use crate::config::Pipeline;
use std::path::PathBuf;

pub fn validate(paths: &[PathBuf]) -> Result<(), Failure> {
    let mut ok = true;
    for path in paths {
        match Pipeline::load(path) {
            Ok(p) => println!(
                "{}: ok ({} sources, {} operators, {} sinks, {} tests)",
                path.display(),
                p.sources.len(),
                p.operators.len(),
                p.sinks.len(),
                p.tests.len()
            ),
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
