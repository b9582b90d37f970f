//! Durations as written in pipelines: `500ms`, `30s`, `5m`, `1h`, `1d`, or
//! several parts together (`1h30m`).

use serde::Deserialize;
use std::fmt;

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub i64);

impl Duration {
    pub fn ms(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Duration(0));
        }
        let mut total: i64 = 0;
        let mut rest = text;
        if rest.is_empty() {
            return Err("empty duration".into());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let unit_len = rest[digits..]
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
            let scale = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ if digits == 0 || unit.is_empty() => {
                    return Err(format!(
                        "invalid duration `{text}`: use a whole number and a unit, like 500ms, 30s, 5m, 1h"
                    ));
                }
                _ => {
                    return Err(format!(
                        "invalid duration `{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"
                    ));
                }
            };
            let n: i64 = number
                .parse()
                .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
            total = n
                .checked_mul(scale)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("invalid duration `{text}`: too long"))?;
            rest = &rest[digits + unit_len..];
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ms = self.0;
        for (unit, scale) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms != 0 && ms % scale == 0 {
                return write!(f, "{}{unit}", ms / scale);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(Duration::parse("500ms"), Ok(Duration(500)));
        assert_eq!(Duration::parse("30s"), Ok(Duration(30_000)));
        assert_eq!(Duration::parse("5m"), Ok(Duration(300_000)));
        assert_eq!(Duration::parse("1h30m"), Ok(Duration(5_400_000)));
        assert_eq!(Duration::parse("0"), Ok(Duration(0)));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "5", "5x", "m", "1.5s", "-5s", "99999999999999999999s"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Duration(300_000).to_string(), "5m");
        assert_eq!(Duration(1_500).to_string(), "1500ms");
    }
}
