//! Message templates: `"{key} reefer at {value:.1} C"`.
//!
//! A placeholder names a built-in (`key`, `value`, `rule`, `severity`,
//! `event_time`), a variable the operator provides (the threshold's
//! `limit`), or a field of the event (dotted for a nested one:
//! `{reefer.setpoint_c}`). `:.N` rounds a number to N decimals;
//! `{{` and `}}` are literal braces.

use crate::event::Value;
use serde::Deserialize;
use std::fmt::Write;

/// Placeholders every alerting operator fills in.
pub const BUILT_INS: &[&str] = &["key", "value", "rule", "severity", "event_time"];

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Var {
        name: String,
        decimals: Option<usize>,
    },
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                    parts.push(parse_var(&inner)?);
                }
                '}' => return Err("unmatched `}` in template (write `}}` for a brace)".into()),
                c => literal.push(c),
            }
        }
        parts.push(Part::Text(literal));
        parts.retain(|p| !matches!(p, Part::Text(t) if t.is_empty()));
        Ok(Template { parts })
    }

    /// Names of all placeholders, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills in placeholders; one `lookup` misses renders as `?`.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<Value>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { name, decimals } => match (lookup(name), decimals) {
                    (Some(Value::Num(n)), Some(d)) => {
                        let _ = write!(out, "{n:.d$}", d = *d);
                    }
                    (Some(Value::Num(n)), None) => {
                        let _ = write!(out, "{n}");
                    }
                    (Some(Value::Bool(b)), _) => {
                        let _ = write!(out, "{b}");
                    }
                    (Some(Value::Str(s)), _) => out.push_str(&s),
                    (None, _) => out.push('?'),
                },
            }
        }
        out
    }
}

fn parse_var(inner: &str) -> Result<Part, String> {
    let (name, format) = inner.split_once(':').unwrap_or((inner, ""));
    let name = name.trim();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    if name.is_empty() || !name.chars().all(word) {
        return Err(format!("bad placeholder `{{{inner}}}` in template"));
    }
    let decimals = match format {
        "" => None,
        f => Some(
            f.strip_prefix('.')
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| {
                    format!("bad format `{f}` in `{{{inner}}}`: use `.N` for N decimals")
                })?,
        ),
    };
    Ok(Part::Var {
        name: name.to_string(),
        decimals,
    })
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Template::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<Value> {
        match name {
            "key" => Some(Value::Str("truck-1".into())),
            "value" => Some(Value::Num(4.5678)),
            _ => None,
        }
    }

    #[test]
    fn renders_placeholders_with_precision_and_escapes() {
        let t = Template::parse("{key} at {value:.1} C {{raw}} {missing}").unwrap();
        assert_eq!(t.render(lookup), "truck-1 at 4.6 C {raw} ?");
        assert_eq!(t.vars().collect::<Vec<_>>(), ["key", "value", "missing"]);
        let nested = Template::parse("set to {reefer.setpoint_c}").unwrap();
        assert_eq!(nested.vars().collect::<Vec<_>>(), ["reefer.setpoint_c"]);
    }

    #[test]
    fn rejects_malformed_templates() {
        for bad in ["{}", "{a b}", "x }", "{value:x}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
