//! Configuration errors: each names a position in the pipeline file.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in a pipeline file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(line: u64, col: u64) -> Self {
        Loc {
            line: line.try_into().unwrap_or(u32::MAX),
            col: col.try_into().unwrap_or(u32::MAX),
        }
    }
}

/// One problem in a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// `None` only for problems with the file as a whole (it cannot be read).
    pub loc: Option<Loc>,
    pub message: String,
}

impl ConfigError {
    pub fn new(loc: Option<Loc>, message: impl Into<String>) -> Self {
        ConfigError {
            loc,
            message: message.into(),
        }
    }

    pub fn at(loc: Loc, message: impl Into<String>) -> Self {
        ConfigError::new(Some(loc), message)
    }

    /// Adds a hint to an "unknown field" error when the word is a typo of
    /// one of `keys`: keys another part of the component handles, which
    /// the deserializer that met the word did not know.
    pub fn hint_field(mut self, keys: &[&str]) -> Self {
        let unknown = self
            .message
            .strip_prefix("unknown field `")
            .and_then(|m| m.strip_suffix('`'));
        if let Some(word) = unknown {
            let hint = did_you_mean(word, keys.iter().copied());
            self.message.push_str(&hint);
        }
        self
    }

    /// Prefixes the message with the component it is about.
    pub fn in_component(mut self, what: &str, id: &str) -> Self {
        self.message = format!("{what} \"{id}\": {}", self.message);
        self
    }
}

/// Every problem found in one file, printed one per line as
/// `file:line:col: message`.
#[derive(Debug, thiserror::Error)]
pub struct Diagnostics {
    pub path: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl Diagnostics {
    pub fn new(path: &Path, mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| e.loc);
        errors.dedup();
        Diagnostics {
            path: path.to_path_buf(),
            errors,
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let loc = e.loc.unwrap_or(Loc { line: 1, col: 1 });
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                loc.line,
                loc.col,
                e.message
            )?;
        }
        Ok(())
    }
}

/// `, did you mean `x`?` when some candidate is close to `word`, else "".
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!(", did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The candidate `word` is most likely a typo of: a few edits away (a
/// third of its length), or one it begins.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1) || c.starts_with(word) && word.len() >= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["threshold", "window", "filter"];
        assert_eq!(
            did_you_mean("thresold", names),
            ", did you mean `threshold`?"
        );
        assert_eq!(did_you_mean("windw", names), ", did you mean `window`?");
        assert_eq!(did_you_mean("banana", names), "");
    }

    #[test]
    fn prints_one_line_per_problem_in_file_order() {
        let d = Diagnostics::new(
            Path::new("p.yaml"),
            vec![
                ConfigError::at(Loc { line: 9, col: 3 }, "second"),
                ConfigError::at(Loc { line: 2, col: 5 }, "first"),
            ],
        );
        assert_eq!(d.to_string(), "p.yaml:2:5: first\np.yaml:9:3: second");
    }
}
