//! UTC timestamps for SigV4: the ISO 8601 basic format (`20150830T123600Z`) used by
//! `X-Amz-Date` and the string to sign, and the HTTP `Date` header format
//! (`Mon, 09 Sep 2011 23:36:00 GMT`) accepted as a fallback.
//!
//! Times are whole seconds since the Unix epoch; dates before 1970 are not representable,
//! which no SigV4 request can legitimately carry anyway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch of `t`, or 0 for a time before the epoch.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The `SystemTime` `secs` seconds after the Unix epoch.
pub(crate) fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Formats `secs` as `YYYYMMDDTHHMMSSZ`.
pub(crate) fn format_amz(secs: u64) -> String {
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Parses `YYYYMMDDTHHMMSSZ` strictly (exactly 16 characters, valid calendar date).
pub(crate) fn parse_amz(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[4..6])?;
    let day = digits(&b[6..8])?;
    let hour = digits(&b[9..11])?;
    let min = digits(&b[11..13])?;
    let sec = digits(&b[13..15])?;
    to_secs(year, month, day, hour, min, sec)
}

/// Parses an HTTP date in the IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`), also
/// accepting a one-digit day, a missing weekday, and the zones `UTC`, `+0000` and `-0000`
/// (botocore writes `-0000` when it signs with a `Date` header).
pub(crate) fn parse_http_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((_weekday, rest)) => rest.trim_start(),
        None => s,
    };
    let mut parts = s.split_ascii_whitespace();
    let day = digits(parts.next()?.as_bytes())?;
    let month = month_number(parts.next()?)?;
    let year_text = parts.next()?;
    if year_text.len() != 4 {
        return None;
    }
    let year = digits(year_text.as_bytes())?;
    let clock = parts.next()?;
    let zone = parts.next()?;
    if parts.next().is_some() || !matches!(zone, "GMT" | "UTC" | "+0000" | "-0000") {
        return None;
    }
    let mut hms = clock.split(':');
    let hour = two_digits(hms.next()?)?;
    let min = two_digits(hms.next()?)?;
    let sec = two_digits(hms.next()?)?;
    if hms.next().is_some() {
        return None;
    }
    to_secs(year, month, day, hour, min, sec)
}

fn two_digits(s: &str) -> Option<u64> {
    if s.len() == 2 {
        digits(s.as_bytes())
    } else {
        None
    }
}

fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
    })
}

fn month_number(name: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let index = MONTHS.iter().position(|m| *m == name)?;
    u64::try_from(index + 1).ok()
}

fn to_secs(year: u64, month: u64, day: u64, hour: u64, min: u64, sec: u64) -> Option<u64> {
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date with `year >= 1970`
/// (Howard Hinnant's `days_from_civil`, restricted to non-negative results).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` days after 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_round_trip() {
        // 2015-08-30T12:36:00Z, the AWS test-suite time.
        assert_eq!(format_amz(1_440_938_160), "20150830T123600Z");
        assert_eq!(parse_amz("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(format_amz(0), "19700101T000000Z");
        assert_eq!(parse_amz("20000229T235959Z"), Some(951_868_799));
        assert_eq!(format_amz(951_868_799), "20000229T235959Z");
        for secs in (0..4_102_444_800u64).step_by(7_777_777) {
            assert_eq!(parse_amz(&format_amz(secs)), Some(secs));
        }
    }

    #[test]
    fn amz_rejects_malformed() {
        for bad in [
            "",
            "20150830T123600",
            "20150830123600Z",
            "2015-08-30T12:36:00Z",
            "20150230T123600Z",
            "20150830T243600Z",
            "20150830T126000Z",
            "20151330T123600Z",
            "19690830T123600Z",
            "2015083OT123600Z",
            "+0150830T123600Z",
        ] {
            assert_eq!(parse_amz(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        let t = Some(1_315_611_360); // 2011-09-09T23:36:00Z
        assert_eq!(parse_http_date("Mon, 09 Sep 2011 23:36:00 GMT"), t);
        assert_eq!(parse_http_date("Fri, 09 Sep 2011 23:36:00 -0000"), t);
        assert_eq!(parse_http_date("9 Sep 2011 23:36:00 UTC"), t);
        assert_eq!(parse_http_date("Mon, 09 Sep 2011 23:36:00 +0200"), None);
        assert_eq!(parse_http_date("Mon, 09 Sept 2011 23:36:00 GMT"), None);
        assert_eq!(parse_http_date("Mon, 09 Sep 2011 23:36 GMT"), None);
        assert_eq!(parse_http_date("20110909T233600Z"), None);
    }
}
