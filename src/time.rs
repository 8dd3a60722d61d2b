//! Wall-clock helpers: Unix seconds and the conversions between them and [`SystemTime`], RFC 3339
//! timestamps (UTC, proleptic Gregorian calendar) and human durations (`5s`, `1m30s`) in config.
//!
//! The application reads the wall clock only where it stamps something a person or another system
//! reads as a date (store rows' lifetimes, audit entries, JWT `iat`, exchange call times); protocol
//! timers use tokio's monotonic clock and pass `Instant`s into the sans-IO cores. Code that
//! decides something with the wall clock takes `now` as an argument and its caller reads it here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub type UnixSeconds = u64;

/// The tasks' monotonic time source: tokio's clock (so tests may pause it), as the `std` instant
/// the sans-IO state machines take. The call tasks and the tokio media driver read it.
pub fn runtime_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall clock as [`UnixSeconds`] (0 if the clock is before 1970).
pub fn unix_now() -> UnixSeconds {
    unix_seconds(SystemTime::now())
}

/// `t` as [`UnixSeconds`] (0 before 1970).
pub fn unix_seconds(t: SystemTime) -> UnixSeconds {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `t` as milliseconds since the Unix epoch (0 before 1970, saturating far in the future).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant `secs` seconds after the Unix epoch; `None` where the platform's [`SystemTime`]
/// cannot hold it (a number from outside must not panic the `+`).
pub fn from_unix_seconds(secs: UnixSeconds) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The instant `millis` milliseconds after the Unix epoch; `None` where it does not fit.
pub fn from_unix_millis(millis: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// `t` as RFC 3339 in UTC to the second: `2025-01-31T08:30:00Z` (the epoch before 1970).
pub fn rfc3339_seconds(t: SystemTime) -> String {
    let (date, time) = civil(unix_seconds(t));
    format!("{date}T{time}Z")
}

/// `t` as RFC 3339 in UTC to the millisecond: `2025-01-31T08:30:00.250Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let ms = unix_millis(t);
    let (date, time) = civil(ms / 1000);
    format!("{date}T{time}.{:03}Z", ms % 1000)
}

/// A date and time without zone, `YYYY-MM-DD` then `T`, `t` or a space, `HH:MM:SS` and optional
/// fraction, read as UTC. `None` for anything else (including days that do not exist).
pub fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let nanos = match &text[19..] {
        "" => 0,
        frac => {
            let digits = frac.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let n: u32 = digits.parse().ok()?;
            n * 10u32.pow(9 - digits.len() as u32)
        }
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    from_unix_seconds(secs)?.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// A duration like `5s`, `1m30s`, `1m 30s`, `100ms`, `2h`: numbers each followed by a unit
/// (`ms`, `s`, `m`, `h`, `d`, or their words), summed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_owned())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let millis_per = match unit {
            "ms" | "msec" | "millis" => 1,
            "s" | "sec" | "secs" | "second" | "seconds" => 1000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "" => return Err("a unit is missing (s, m, h…)".into()),
            other => return Err(format!("unknown unit {other:?}")),
        };
        let part = n
            .checked_mul(millis_per)
            .ok_or_else(|| "number too large".to_owned())?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| "number too large".to_owned())?;
    }
    Ok(total)
}

/// `d` the way [`parse_duration`] reads it: `10m`, `1m 30s`, `100ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut parts = Vec::new();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= per {
            parts.push(format!("{}{unit}", ms / per));
            ms %= per;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `YYYY-MM-DD` and `HH:MM:SS` of a Unix second (Howard Hinnant's `civil_from_days`).
fn civil(secs: UnixSeconds) -> (String, String) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Days since 1970-01-01 of a date on or after it (Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_panics() {
        let t = from_unix_seconds(1_700_000_000).unwrap();
        assert_eq!(unix_seconds(t), 1_700_000_000);
        assert_eq!(unix_millis(t), 1_700_000_000_000);
        assert_eq!(from_unix_millis(1500).map(unix_millis), Some(1500));
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert!(from_unix_seconds(u64::MAX).is_none());
        assert!(unix_now() > 1_700_000_000);
    }

    #[test]
    fn rfc3339_both_ways() {
        let t = from_unix_seconds(1_738_312_200).unwrap();
        assert_eq!(rfc3339_seconds(t), "2025-01-31T08:30:00Z");
        let t2 = t + Duration::from_millis(250);
        assert_eq!(rfc3339_millis(t2), "2025-01-31T08:30:00.250Z");
        assert_eq!(parse_rfc3339_utc("2025-01-31T08:30:00"), Some(t));
        assert_eq!(parse_rfc3339_utc("2025-01-31 08:30:00.25"), Some(t2));
        assert_eq!(rfc3339_seconds(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T00:00:00")
                .map(rfc3339_seconds)
                .as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        for bad in [
            "2025-02-29T00:00:00",
            "2025-13-01T00:00:00",
            "2025-01-31T24:00:00",
            "1969-12-31T23:59:59",
            "2025-01-31T08:30",
            "2025-01-31T08:30:00.",
            "2025-01-31T08:30:00+01:00",
            "+025-01-31T08:30:00",
            "２０25-01-31T08:30:00",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_both_ways() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "-5s",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
