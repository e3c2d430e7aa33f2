//! Cron patterns for repeating jobs: 5 fields (minute hour day-of-month month day-of-week)
//! or 6 with leading seconds; `*`, lists, ranges and `/step`; evaluated in UTC.
//! Day-of-month and day-of-week follow classic cron: if both are restricted, either matches.

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    seconds: u64, // bit sets
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    dom_any: bool,
    dow_any: bool,
}

fn parse_field(field: &str, min: u32, max: u32, name: &str) -> Result<(u64, bool)> {
    let bad = || EngineError::invalid(format!("Invalid cron {name} field: '{field}'"));
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| bad())?),
            None => (part, 1),
        };
        if step == 0 || step > max {
            return Err(bad());
        }
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
        } else {
            let v: u32 = range.parse().map_err(|_| bad())?;
            (v, if part.contains('/') { max } else { v })
        };
        // Day-of-week accepts 7 as Sunday.
        let hi_allowed = if name == "day-of-week" { 7 } else { max };
        if lo < min || hi > hi_allowed || lo > hi {
            return Err(bad());
        }
        let mut v = lo;
        while v <= hi {
            let bit = if name == "day-of-week" && v == 7 {
                0
            } else {
                v
            };
            bits |= 1 << bit;
            v += step;
        }
    }
    Ok((bits, field == "*"))
}

impl CronSchedule {
    pub fn parse(pattern: &str) -> Result<Self> {
        let fields: Vec<&str> = pattern.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            _ => {
                return Err(EngineError::invalid(format!(
                    "Invalid cron pattern '{pattern}': expected 5 or 6 fields"
                )))
            }
        };
        let (seconds, _) = parse_field(sec, 0, 59, "second")?;
        let (minutes, _) = parse_field(rest[0], 0, 59, "minute")?;
        let (hours, _) = parse_field(rest[1], 0, 23, "hour")?;
        let (days, dom_any) = parse_field(rest[2], 1, 31, "day-of-month")?;
        let (months, _) = parse_field(rest[3], 1, 12, "month")?;
        let (weekdays, dow_any) = parse_field(rest[4], 0, 6, "day-of-week")?;
        Ok(Self {
            seconds,
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            dom_any,
            dow_any,
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = self.days & (1 << day) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching second strictly after `after_ms`, in ms; None if the pattern
    /// never matches within the next 5 years (e.g. 30 February).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let mut t = after_ms / 1000 + 1;
        let limit = t + 5 * 366 * 86_400;
        while t < limit {
            let days = t / 86_400;
            let (_, month, day) = civil_from_days(days as i64);
            let weekday = ((days + 4) % 7) as u32; // 1970-01-01 was a Thursday
            let secs = t % 86_400;
            let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
            if self.months & (1 << month) == 0 || !self.day_matches(day, weekday) {
                t = (days + 1) * 86_400;
            } else if self.hours & (1 << hour) == 0 {
                t = t - secs % 3600 + 3600;
            } else if self.minutes & (1 << minute) == 0 {
                t = t - second + 60;
            } else if self.seconds & (1 << second) == 0 {
                t += 1;
            } else {
                return Some(t * 1000);
            }
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    // 2024-01-01T00:00:00Z, a Monday.
    const JAN1: u64 = 1_704_067_200_000;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days((JAN1 / 86_400_000) as i64), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn every_five_minutes_and_hourly() {
        let c = CronSchedule::parse("*/5 * * * *").unwrap();
        assert_eq!(c.next_after(JAN1), Some(JAN1 + 5 * MIN));
        assert_eq!(c.next_after(JAN1 + 5 * MIN - 1), Some(JAN1 + 5 * MIN));
        let h = CronSchedule::parse("30 9 * * *").unwrap();
        assert_eq!(h.next_after(JAN1), Some(JAN1 + 9 * 60 * MIN + 30 * MIN));
    }

    #[test]
    fn weekdays_seconds_and_impossible_dates() {
        // Next Saturday 00:00 after Monday 2024-01-01 is 2024-01-06.
        let sat = CronSchedule::parse("0 0 * * 6").unwrap();
        assert_eq!(sat.next_after(JAN1), Some(JAN1 + 5 * 86_400_000));
        let every10s = CronSchedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(every10s.next_after(JAN1), Some(JAN1 + 10_000));
        assert_eq!(
            CronSchedule::parse("0 0 30 2 *").unwrap().next_after(JAN1),
            None
        );
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad}");
        }
    }
}
