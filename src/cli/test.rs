//! `floe test`: run the test cases pipelines carry.

use super::Failure;
use crate::config::Pipeline;
use crate::testing;
use std::path::PathBuf;

pub fn test(paths: &[PathBuf]) -> Result<(), Failure> {
    let runtime = super::tokio_runtime(1)?;
    let (mut passed, mut failed) = (0, 0);
    for path in paths {
        let pipeline = match Pipeline::load(path) {
            Ok(p) => p,
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                failed += 1;
                continue;
            }
        };
        if pipeline.tests.is_empty() {
            println!("{}: no tests", path.display());
        }
        for case in &pipeline.tests {
            let outcome = runtime.block_on(testing::run_case(&pipeline, case));
            if outcome.failures.is_empty() {
                passed += 1;
                println!("ok    {}: {}", path.display(), outcome.name);
            } else {
                failed += 1;
                println!("FAIL  {}: {}", path.display(), outcome.name);
                for failure in &outcome.failures {
                    println!("        {failure}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::Invalid(String::new()))
    }
}
