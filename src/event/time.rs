//! Event-time parsing and output timestamp formatting.

use std::cell::Cell;

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp to epoch milliseconds (sub-millisecond digits are truncated).
///
/// The common shape `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)` is parsed by hand, without
/// allocation, because it runs once per event; anything else goes through chrono.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    fast_parse(s.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

thread_local! {
    /// The first 16 bytes (`YYYY-MM-DDTHH:MM`) of the last timestamp this thread parsed, and
    /// that minute's seconds since the epoch before any offset: a stream's events share their
    /// minute many times in a row, so the date need not be read again.
    static LAST_MINUTE: Cell<Option<(u128, i64)>> = const { Cell::new(None) };
}

/// Seconds since the epoch of a validated `YYYY-MM-DDTHH:MM` prefix, before any offset.
fn minute_seconds(b: &[u8]) -> Option<i64> {
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi) = (digits(&b[11..13])?, digits(&b[14..16])?);
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60)
}

fn fast_parse(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[16] != b':' {
        return None;
    }
    let prefix = u128::from_le_bytes(b[..16].try_into().expect("16 bytes"));
    let minute = match LAST_MINUTE.get() {
        Some((p, secs)) if p == prefix => secs,
        _ => {
            let secs = minute_seconds(b)?;
            LAST_MINUTE.set(Some((prefix, secs)));
            secs
        }
    };
    let sec = digits(&b[17..19])?;
    if sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 60 + om;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = minute + sec.min(59) - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats epoch milliseconds as an RFC 3339 UTC string with milliseconds, the form every
/// output timestamp uses.
pub fn format_rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_chrono() {
        for s in [
            "2026-11-27T04:35:18.123Z",
            "2026-11-27T04:35:18Z",
            "2024-02-29T23:59:59.9+05:30",
            "1969-12-31T23:59:59.999-01:00",
            "2000-01-01T00:00:00.123456789Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
            assert_eq!(fast_parse(s.as_bytes()), Some(chrono), "{s}");
        }
    }

    /// Timestamps of one minute after another, and a bad date with a cached minute's
    /// time of day: the remembered minute changes no answer.
    #[test]
    fn minutes_in_a_row_agree_with_chrono() {
        for s in [
            "2026-11-27T04:35:18.123Z",
            "2026-11-27T04:35:19.5Z",
            "2026-11-27T04:35:19.5+01:00",
            "2026-11-27T04:36:00Z",
            "2026-11-27T04:35:59.999Z",
            "2026-11-28T04:35:01Z",
        ] {
            let chrono = DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
            assert_eq!(fast_parse(s.as_bytes()), Some(chrono), "{s}");
        }
        assert_eq!(parse_rfc3339_ms("2026-11-28T04:35:61Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-02-30T04:35:01Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-28T04:35:0xZ"), None);
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "yesterday",
            "2026-11-27",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    #[test]
    fn formats_with_millis() {
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
