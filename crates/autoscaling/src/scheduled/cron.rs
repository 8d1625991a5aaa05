//! The `Recurrence` of a scheduled action: a 5-field Unix cron expression
//! (`minute hour day-of-month month day-of-week`) and the time zones it may be read in.
//!
//! Fields accept `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month
//! names `JAN`–`DEC` and day names `SUN`–`SAT` (0 and 7 are both Sunday). As in Vixie cron,
//! when both day-of-month and day-of-week are restricted a day matches if either does.
//! Time zones: only fixed-offset zones can be computed here without a zone database
//! (`UTC`, `Etc/UTC`, `GMT`, `Etc/GMT±N`, …); other IANA names are refused with a clear error.

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day-of-month field was `*` (unrestricted).
    any_day: bool,
    /// Day-of-week field was `*`.
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

fn parse_value(s: &str, names: &[&str], base: u32) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + base)
}

/// Parses one field into a bit set of the values in `[lo, hi]`.
fn parse_field(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u64, CronError> {
    let bad = || CronError(format!("invalid cron field '{field}' (values {lo}-{hi})"));
    let mut set = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                parse_value(a, names, name_base).ok_or_else(bad)?,
                parse_value(b, names, name_base).ok_or_else(bad)?,
            )
        } else {
            let a = parse_value(range, names, name_base).ok_or_else(bad)?;
            // `5/10` means from 5 to the end in steps of 10.
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(bad());
        }
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "'{expr}' is not a cron expression of 5 fields (minute hour day-of-month month day-of-week)"
            )));
        }
        let mut weekdays = parse_field(fields[4], 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            minutes: parse_field(fields[0], 0, 59, &[], 0)?,
            hours: parse_field(fields[1], 0, 23, &[], 0)? as u32,
            days: parse_field(fields[2], 1, 31, &[], 0)? as u32,
            months: parse_field(fields[3], 1, 12, &MONTHS, 1)? as u16,
            weekdays: weekdays as u8,
            any_day: fields[2].starts_with('*'),
            any_weekday: fields[4].starts_with('*'),
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute at or after `from_ms` (epoch ms, UTC), reading the
    /// expression in a zone `offset_minutes` east of UTC. `None` if none within 8 years.
    pub fn next_at_or_after(&self, from_ms: i64, offset_minutes: i64) -> Option<i64> {
        let local_min = (from_ms + offset_minutes * 60_000 + 59_999).div_euclid(60_000);
        let first_day = local_min.div_euclid(1440);
        let mut start_minute = local_min.rem_euclid(1440);
        for day in first_day..first_day + 366 * 8 {
            let (_, month, dom) = civil_from_days(day);
            let weekday = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if self.months & (1 << month) != 0 && self.day_matches(dom, weekday) {
                for minute_of_day in start_minute..1440 {
                    let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                    if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                        let local = (day * 1440 + minute_of_day) * 60_000;
                        return Some(local - offset_minutes * 60_000);
                    }
                }
            }
            start_minute = 0;
        }
        None
    }
}

/// (year, month 1–12, day 1–31) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Minutes east of UTC of a time zone this module can compute, or an error naming it.
pub fn zone_offset_minutes(zone: &str) -> Result<i64, CronError> {
    let fixed = [
        "UTC",
        "Etc/UTC",
        "GMT",
        "Etc/GMT",
        "Etc/GMT0",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "GMT0",
        "Etc/Universal",
        "Universal",
        "Etc/Zulu",
        "Zulu",
        "Etc/Greenwich",
        "Greenwich",
        "Etc/UCT",
        "UCT",
    ];
    if fixed.iter().any(|z| z.eq_ignore_ascii_case(zone)) {
        return Ok(0);
    }
    // POSIX-style signs: Etc/GMT+5 is five hours *behind* UTC.
    if let Some(rest) = zone.strip_prefix("Etc/GMT") {
        let (sign, digits) = match rest.split_at_checked(1) {
            Some(("+", d)) => (-1, d),
            Some(("-", d)) => (1, d),
            _ => (0, ""),
        };
        if let Ok(h) = digits.parse::<i64>()
            && sign != 0
            && (0..=14).contains(&h)
        {
            return Ok(sign * h * 60);
        }
    }
    Err(CronError(format!(
        "Time zone '{zone}' is not supported here: use UTC or a fixed-offset zone such as Etc/GMT+5 (openami has no time zone database)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn at(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        // days from civil (inverse of civil_from_days)
        let y2 = if mo <= 2 { y - 1 } else { y };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let mp = (mo + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days * 1440 + h * 60 + mi) * MIN
    }

    #[test]
    fn fields_and_errors() {
        assert!(Cron::parse("* * * *").is_err());
        assert!(Cron::parse("60 * * * *").is_err());
        assert!(Cron::parse("* 24 * * *").is_err());
        assert!(Cron::parse("* * 0 * *").is_err());
        assert!(Cron::parse("*/0 * * * *").is_err());
        assert!(Cron::parse("5-1 * * * *").is_err());
        assert!(Cron::parse("x * * * *").is_err());
        let c = Cron::parse("*/15 9-17 * JAN-mar mon-FRI").unwrap();
        assert_eq!(c.minutes, (1 << 0) | (1 << 15) | (1 << 30) | (1 << 45));
        assert_eq!(c.months, 0b1110);
        assert_eq!(c.weekdays, 0b0011_1110);
        assert_eq!(Cron::parse("0 0 * * 7").unwrap().weekdays, 1, "7 is Sunday");
        assert_eq!(
            Cron::parse("5/20 * * * *").unwrap().minutes,
            (1 << 5) | (1 << 25) | (1 << 45)
        );
    }

    #[test]
    fn next_occurrences() {
        let every = Cron::parse("* * * * *").unwrap();
        let t = at(2026, 12, 1, 17, 44) + 1_500;
        assert_eq!(every.next_at_or_after(t, 0), Some(at(2026, 12, 1, 17, 45)));
        assert_eq!(
            every.next_at_or_after(at(2026, 12, 1, 17, 44), 0),
            Some(at(2026, 12, 1, 17, 44))
        );

        let daily = Cron::parse("30 8 * * *").unwrap();
        assert_eq!(daily.next_at_or_after(t, 0), Some(at(2026, 12, 2, 8, 30)));
        // 2026-12-01 is a Tuesday; next Monday 00:00 is 2026-12-07.
        let monday = Cron::parse("0 0 * * MON").unwrap();
        assert_eq!(monday.next_at_or_after(t, 0), Some(at(2026, 12, 7, 0, 0)));
        // Leap day.
        let leap = Cron::parse("0 12 29 2 *").unwrap();
        assert_eq!(leap.next_at_or_after(t, 0), Some(at(2028, 2, 29, 12, 0)));
        // Day-of-month OR day-of-week when both are restricted: the 15th or a Sunday.
        let either = Cron::parse("0 0 15 * SUN").unwrap();
        assert_eq!(either.next_at_or_after(t, 0), Some(at(2026, 12, 6, 0, 0)));
        // Year wrap.
        let newyear = Cron::parse("0 0 1 1 *").unwrap();
        assert_eq!(newyear.next_at_or_after(t, 0), Some(at(2027, 1, 1, 0, 0)));
        // Impossible date: never.
        assert_eq!(
            Cron::parse("0 0 31 2 *").unwrap().next_at_or_after(t, 0),
            None
        );
    }

    #[test]
    fn zones() {
        assert_eq!(zone_offset_minutes("UTC").unwrap(), 0);
        assert_eq!(zone_offset_minutes("Etc/UTC").unwrap(), 0);
        assert_eq!(zone_offset_minutes("Etc/GMT+5").unwrap(), -300);
        assert_eq!(zone_offset_minutes("Etc/GMT-10").unwrap(), 600);
        assert!(zone_offset_minutes("Etc/GMT+99").is_err());
        assert!(zone_offset_minutes("Europe/Paris").is_err());
        // 08:30 in UTC-5 is 13:30 UTC.
        let daily = Cron::parse("30 8 * * *").unwrap();
        let t = at(2026, 12, 1, 12, 0);
        assert_eq!(
            daily.next_at_or_after(t, -300),
            Some(at(2026, 12, 1, 13, 30))
        );
    }
}
