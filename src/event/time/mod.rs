//! Event-time parsing and formatting.
//!
//! Timestamps are milliseconds since the Unix epoch (`i64`), the unit every
//! operator works in. Parsing is hand-written because it runs once per event
//! on the hot path and needs only a few shapes: RFC 3339, epoch numbers,
//! and the handful of strftime directives a source's `time_format` may use.

mod format;

pub use format::{EpochUnit, TimeFormat};

/// Earliest event time floe accepts (2000-01-01T00:00:00Z); anything older is
/// treated as a broken device clock rather than data.
pub const MIN_TIME: i64 = 946_684_800_000;
/// Latest event time floe accepts (2100-01-01T00:00:00Z).
pub const MAX_TIME: i64 = 4_102_444_800_000;

/// Parses an RFC 3339 timestamp (`2026-11-23T10:00:00.000Z`,
/// `2026-11-23 10:00:00+01:00`, any number of fraction digits; the offset
/// may also be written `+0100` or `+01`) into epoch ms.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let (millis, n) = fraction_millis(&b[19..])?;
    let (offset_minutes, n2) = offset_minutes(&b[19 + n..])?;
    if 19 + n + n2 != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Reads an optional `.` and fraction digits at the start of `b`: the
/// milliseconds they make, and how many bytes they took.
fn fraction_millis(b: &[u8]) -> Option<(i64, usize)> {
    if b.first() != Some(&b'.') {
        return Some((0, 0));
    }
    let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    // Only the first three digits matter at millisecond resolution.
    let millis = (0..3).fold(0, |ms, i| {
        let digit = if i < n { (b[1 + i] - b'0') as i64 } else { 0 };
        ms * 10 + digit
    });
    Some((millis, 1 + n))
}

/// Reads a UTC offset at the start of `b` (`Z`, `+01:00`, `+0100`, `+01`):
/// its minutes east of UTC, and how many bytes it took.
fn offset_minutes(b: &[u8]) -> Option<(i64, usize)> {
    let sign = match b.first()? {
        b'Z' | b'z' => return Some((0, 1)),
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = digits(b.get(1..3)?)?;
    let (minutes, len) = match b.get(3..) {
        Some([b':', m1, m2, ..]) => (digits(&[*m1, *m2])?, 6),
        Some([m1, m2, ..]) if m1.is_ascii_digit() && m2.is_ascii_digit() => {
            (digits(&[*m1, *m2])?, 5)
        }
        _ => (0, 3),
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((sign * (hours * 60 + minutes), len))
}

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form every alert uses.
pub fn format_rfc3339(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, ms);
    out
}

/// Appends the RFC 3339 form of `ms` to `out` without allocating.
pub fn write_rfc3339(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z"
    );
}

/// Wall-clock now in epoch ms. Only the runtime calls this; operators get
/// time passed in so that replays are deterministic.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since.as_millis() as i64
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as i64)
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// algorithm, exact for every representable year).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_with_millis() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-23T10:00:00.123Z"),
            Some(1_795_428_000_123)
        );
    }

    #[test]
    fn parses_offsets_and_fraction_lengths() {
        let utc = parse_rfc3339("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-11-23T11:30:00+01:30"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-23 09:00:00-01:00"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-23T10:00:00.5Z"), Some(utc + 500));
        assert_eq!(
            parse_rfc3339("2026-11-23T10:00:00.123456789Z"),
            Some(utc + 123)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-23T25:00:00Z",
            "2026-11-23T10:00:00",
            "2026-11-23T10:00:00.Z",
            "2026-11-23T10:00:00Zjunk",
            "2026-1a-23T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_offsets_may_drop_the_colon_or_the_minutes() {
        let utc = 1_795_428_000_000;
        assert_eq!(parse_rfc3339("2026-11-23T11:30:00+0130"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-23T11:00:00+01"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-23T10:00:00+24:00"), None);
    }

    #[test]
    fn format_round_trips_across_leap_years_and_negative_times() {
        for ms in [0, 951_782_400_000, 1_795_428_000_123, -1, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "{ms}");
        }
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
