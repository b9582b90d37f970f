//! `time_format`: how a source writes its event times, when not in the
//! RFC 3339 or epoch milliseconds floe reads by default.

use super::{
    days_from_civil, days_in_month, digits, fraction_millis, offset_minutes, parse_rfc3339,
};
use std::fmt;

/// How a source writes its event times (`time_format`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TimeFormat {
    /// RFC 3339 strings, or epoch milliseconds as numbers.
    #[default]
    Auto,
    Rfc3339,
    /// Epoch time in a unit, as a number or a numeric string; fractions
    /// allowed.
    Epoch(EpochUnit),
    Pattern(Pattern),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

const KEYWORDS: &[(&str, TimeFormat)] = &[
    ("auto", TimeFormat::Auto),
    ("rfc3339", TimeFormat::Rfc3339),
    ("epoch_s", TimeFormat::Epoch(EpochUnit::Seconds)),
    ("epoch_ms", TimeFormat::Epoch(EpochUnit::Millis)),
    ("epoch_us", TimeFormat::Epoch(EpochUnit::Micros)),
    ("epoch_ns", TimeFormat::Epoch(EpochUnit::Nanos)),
];

impl TimeFormat {
    /// Reads a `time_format` value: a keyword, or a pattern with `%`.
    pub fn parse(text: &str) -> Result<TimeFormat, String> {
        if text.contains('%') {
            return Pattern::parse(text).map(TimeFormat::Pattern);
        }
        if let Some((_, format)) = KEYWORDS.iter().find(|(name, _)| *name == text) {
            return Ok(format.clone());
        }
        let names = KEYWORDS.iter().map(|(name, _)| *name);
        let hint = crate::config::did_you_mean(text, names.clone());
        let hint = if hint.is_empty() {
            format!(
                ", expected one of: {}, or a pattern like `%Y-%m-%d %H:%M:%S`",
                names.collect::<Vec<_>>().join(", ")
            )
        } else {
            hint
        };
        Err(format!("unknown time_format `{text}`{hint}"))
    }

    /// Epoch ms of a time written as a string.
    pub fn parse_str(&self, s: &str) -> Option<i64> {
        match self {
            TimeFormat::Auto | TimeFormat::Rfc3339 => parse_rfc3339(s),
            TimeFormat::Epoch(unit) => match s.trim().parse::<i64>() {
                Ok(n) => unit.exact_ms(n),
                Err(_) => unit.ms(s.trim().parse().ok()?),
            },
            TimeFormat::Pattern(pattern) => pattern.parse_str(s),
        }
    }

    /// Epoch ms of a time written as a number.
    pub fn parse_num(&self, n: f64) -> Option<i64> {
        match self {
            TimeFormat::Auto => EpochUnit::Millis.ms(n),
            TimeFormat::Epoch(unit) => unit.ms(n),
            TimeFormat::Rfc3339 | TimeFormat::Pattern(_) => None,
        }
    }
}

impl fmt::Display for TimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TimeFormat::Pattern(pattern) => f.write_str(&pattern.text),
            format => {
                let name = KEYWORDS.iter().find(|(_, k)| k == format);
                f.write_str(name.map_or("auto", |(name, _)| name))
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for TimeFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TimeFormat::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl EpochUnit {
    /// All of them, for hints.
    pub const ALL: [EpochUnit; 4] = [
        EpochUnit::Seconds,
        EpochUnit::Millis,
        EpochUnit::Micros,
        EpochUnit::Nanos,
    ];

    fn exact_ms(self, n: i64) -> Option<i64> {
        match self {
            EpochUnit::Seconds => n.checked_mul(1000),
            EpochUnit::Millis => Some(n),
            EpochUnit::Micros => Some(n.div_euclid(1000)),
            EpochUnit::Nanos => Some(n.div_euclid(1_000_000)),
        }
    }

    /// Epoch ms of `n` of this unit, rounded down. Whole numbers convert
    /// exactly; a fraction is first rounded to the microsecond, so that
    /// `1795428000.123` seconds is 123 ms past the second although binary
    /// floating point holds it as a hair less.
    pub fn ms(self, n: f64) -> Option<i64> {
        // Far beyond any time floe accepts in any unit, and within i64.
        if !n.is_finite() || n.abs() >= 9e18 {
            return None;
        }
        if n.fract() == 0.0 {
            return self.exact_ms(n as i64);
        }
        let micros = match self {
            EpochUnit::Seconds => n * 1e6,
            EpochUnit::Millis => n * 1e3,
            EpochUnit::Micros => n,
            EpochUnit::Nanos => n / 1e3,
        };
        Some((micros.round() as i64).div_euclid(1000))
    }

    /// The unit's name, for hints.
    pub fn name(self) -> &'static str {
        match self {
            EpochUnit::Seconds => "seconds",
            EpochUnit::Millis => "milliseconds",
            EpochUnit::Micros => "microseconds",
            EpochUnit::Nanos => "nanoseconds",
        }
    }
}

/// A strftime-like pattern for times without a zone of their own:
/// `%Y-%m-%d %H:%M:%S`. Only the directives users of telemetry need:
/// `%Y` (4 digits), `%m %d %H %M %S` (1 or 2 digits), `%.f` (an optional
/// fraction of a second), `%z` (`Z`, `+01:00`, `+0100` or `+01`) and `%%`.
/// Without `%z` the time is UTC.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    text: Box<str>,
    items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
enum Item {
    Literal(Box<str>),
    /// A number of 1 to `max` digits, and which part of the time it is.
    Number(Part, usize),
    Fraction,
    Offset,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        let mut items = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let item = match chars.next() {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('Y') => Item::Number(Part::Year, 4),
                Some('m') => Item::Number(Part::Month, 2),
                Some('d') => Item::Number(Part::Day, 2),
                Some('H') => Item::Number(Part::Hour, 2),
                Some('M') => Item::Number(Part::Minute, 2),
                Some('S') => Item::Number(Part::Second, 2),
                Some('z') => Item::Offset,
                Some('.') if chars.next() == Some('f') => Item::Fraction,
                other => {
                    let directive: String = other.map_or("%".into(), |c| format!("%{c}"));
                    return Err(format!(
                        "time_format: `{directive}` is not a directive floe reads (it reads %Y %m %d %H %M %S %.f %z and %%)"
                    ));
                }
            };
            if !literal.is_empty() {
                items.push(Item::Literal(std::mem::take(&mut literal).into()));
            }
            if items.contains(&item) {
                return Err(format!("time_format: `{}` appears twice", directive(&item)));
            }
            items.push(item);
        }
        if !literal.is_empty() {
            items.push(Item::Literal(literal.into()));
        }
        for part in [Part::Year, Part::Month, Part::Day] {
            if !items
                .iter()
                .any(|i| matches!(i, Item::Number(p, _) if *p == part))
            {
                return Err(format!(
                    "time_format: a pattern needs the date (%Y, %m and %d); `{text}` has no {}",
                    directive(&Item::Number(part, 0))
                ));
            }
        }
        Ok(Pattern {
            text: text.into(),
            items,
        })
    }

    /// Epoch ms of `s`, if it matches the whole pattern.
    fn parse_str(&self, s: &str) -> Option<i64> {
        let b = s.as_bytes();
        let mut at = 0;
        // Year, month, day, hour, minute, second.
        let mut parts = [0, 1, 1, 0, 0, 0];
        let (mut millis, mut offset) = (0, 0);
        for item in &self.items {
            let rest = &b[at..];
            at += match item {
                Item::Literal(text) => rest.starts_with(text.as_bytes()).then_some(text.len())?,
                Item::Number(part, max) => {
                    let n = rest
                        .iter()
                        .take(*max)
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                    // A year is all four digits; other parts may drop a leading 0.
                    if n == 0 || *part == Part::Year && n < 4 {
                        return None;
                    }
                    parts[*part as usize] = digits(&rest[..n])?;
                    n
                }
                Item::Fraction => {
                    let (ms, n) = fraction_millis(rest)?;
                    millis = ms;
                    n
                }
                Item::Offset => {
                    let (minutes, n) = offset_minutes(rest)?;
                    offset = minutes;
                    n
                }
            };
        }
        let [year, month, day, hour, minute, second] = parts;
        let valid = at == b.len()
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour <= 23
            && minute <= 59
            && second <= 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
        Some(seconds * 1000 + millis)
    }
}

fn directive(item: &Item) -> &'static str {
    match item {
        Item::Number(Part::Year, _) => "%Y",
        Item::Number(Part::Month, _) => "%m",
        Item::Number(Part::Day, _) => "%d",
        Item::Number(Part::Hour, _) => "%H",
        Item::Number(Part::Minute, _) => "%M",
        Item::Number(Part::Second, _) => "%S",
        Item::Fraction => "%.f",
        Item::Offset => "%z",
        Item::Literal(_) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z

    fn format(text: &str) -> TimeFormat {
        TimeFormat::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn epoch_units_take_numbers_and_numeric_strings() {
        let seconds = format("epoch_s");
        assert_eq!(seconds.parse_num(1_795_428_000.0), Some(UTC));
        assert_eq!(seconds.parse_num(1_795_428_000.123), Some(UTC + 123));
        assert_eq!(seconds.parse_str("1795428000.5"), Some(UTC + 500));
        assert_eq!(seconds.parse_str(" 1795428000 "), Some(UTC));
        assert_eq!(seconds.parse_str("soon"), None);
        assert_eq!(seconds.parse_num(f64::INFINITY), None);
        assert_eq!(format("epoch_ms").parse_num(UTC as f64 + 0.9), Some(UTC));
        assert_eq!(
            format("epoch_us").parse_num(1_795_428_000_123_456.0),
            Some(UTC + 123)
        );
        let nanos = format("epoch_ns");
        assert_eq!(nanos.parse_str("1795428000123999999"), Some(UTC + 123));
        assert_eq!(nanos.parse_num(1.795428000123e18), Some(UTC + 123));
        assert_eq!(format("rfc3339").parse_num(UTC as f64), None);
        assert_eq!(TimeFormat::Auto.parse_num(UTC as f64), Some(UTC));
        assert_eq!(TimeFormat::Auto.parse_str("1795428000000"), None);
    }

    #[test]
    fn patterns_read_the_directives_they_name() {
        let cases = [
            ("%Y-%m-%d %H:%M:%S", "2026-11-23 10:00:00", Some(UTC)),
            (
                "%Y-%m-%d %H:%M:%S%.f",
                "2026-11-23 10:00:00.25",
                Some(UTC + 250),
            ),
            ("%Y-%m-%d %H:%M:%S%.f", "2026-11-23 10:00:00", Some(UTC)),
            ("%d/%m/%Y %H:%M", "23/11/2026 10:00", Some(UTC)),
            ("%d/%m/%Y %H:%M", "3/1/2026 9:05", Some(1_767_431_100_000)),
            ("%Y%m%dT%H%M%S", "20261123T100000", Some(UTC)),
            ("%Y-%m-%d", "2026-11-23", Some(UTC - 10 * 3_600_000)),
            (
                "%Y-%m-%d %H:%M:%S %z",
                "2026-11-23 11:00:00 +01:00",
                Some(UTC),
            ),
            ("%Y-%m-%d %H:%M:%S%z", "2026-11-23 05:00:00-0500", Some(UTC)),
            ("%Y-%m-%d %H:%M:%S%z", "2026-11-23 10:00:00Z", Some(UTC)),
            (
                "100%% %Y-%m-%d",
                "100% 2026-11-23",
                Some(UTC - 10 * 3_600_000),
            ),
            ("%Y-%m-%d %H:%M:%S", "2026-11-23T10:00:00", None),
            ("%Y-%m-%d %H:%M:%S", "2026-11-23 10:00:00 ", None),
            ("%Y-%m-%d %H:%M:%S", "2026-11-23 10:00", None),
            ("%Y-%m-%d %H:%M:%S", "26-11-23 10:00:00", None),
            ("%Y-%m-%d %H:%M:%S", "2026-02-30 10:00:00", None),
            ("%Y-%m-%d %H:%M:%S", "2026-11-23 24:00:00", None),
            ("%Y-%m-%d %H:%M:%S%.f", "2026-11-23 10:00:00.", None),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                format(pattern).parse_str(text),
                expected,
                "{pattern} {text}"
            );
            assert_eq!(format(pattern).parse_num(1.0), None);
        }
    }

    #[test]
    fn bad_formats_are_refused_with_a_reason() {
        let err = |text: &str| TimeFormat::parse(text).unwrap_err();
        assert_eq!(
            err("epoch_sec"),
            "unknown time_format `epoch_sec`, did you mean `epoch_s`?"
        );
        assert_eq!(
            err("iso"),
            "unknown time_format `iso`, expected one of: auto, rfc3339, epoch_s, epoch_ms, epoch_us, epoch_ns, or a pattern like `%Y-%m-%d %H:%M:%S`"
        );
        assert_eq!(
            err("%Y-%b-%d"),
            "time_format: `%b` is not a directive floe reads (it reads %Y %m %d %H %M %S %.f %z and %%)"
        );
        assert_eq!(
            err("%Y-%m-%d %"),
            "time_format: `%` is not a directive floe reads (it reads %Y %m %d %H %M %S %.f %z and %%)"
        );
        assert_eq!(err("%Y-%m-%d %H:%H"), "time_format: `%H` appears twice");
        assert_eq!(
            err("%H:%M:%S"),
            "time_format: a pattern needs the date (%Y, %m and %d); `%H:%M:%S` has no %Y"
        );
        for name in ["auto", "rfc3339", "epoch_s", "epoch_ns", "%Y-%m-%d %H:%M"] {
            assert_eq!(format(name).to_string(), name);
        }
    }
}
