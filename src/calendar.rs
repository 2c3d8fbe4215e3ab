//! The report day in a time zone: its UTC window, its length (23, 24 or 25
//! hours around DST changes), and the partitions that can hold its rows.
//! Pure logic: no I/O, no clock (the caller passes "now").

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// One report day in one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub zone: Tz,
    /// First instant of the day.
    pub start: DateTime<Utc>,
    /// First instant of the next day.
    pub end: DateTime<Utc>,
}

/// The first instant of local `date` in `zone`: local midnight, or where a DST
/// gap swallows midnight, the first local time after it that exists.
pub fn local_midnight(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    match zone.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        // Midnight happens twice (clocks went back at 01:00 -> 00:00): the
        // day starts at the first one.
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // Midnight does not exist (clocks jumped forward at 00:00): walk
            // forward minute by minute to the first local time that does.
            (1..=24 * 60)
                .find_map(|m| {
                    let t = midnight + chrono::Duration::minutes(m);
                    zone.from_local_datetime(&t).earliest()
                })
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| midnight.and_utc())
        }
    }
}

impl Day {
    pub fn new(date: NaiveDate, zone: Tz) -> Day {
        let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
        Day {
            date,
            zone,
            start: local_midnight(date, zone),
            end: local_midnight(next, zone),
        }
    }

    /// Seconds in the day (86400, or 82800 / 90000 on DST change days).
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }

    /// The UTC-dated partitions that can hold rows of this day (SPEC 1.1):
    /// from the day before the UTC date of the first instant (rows written
    /// early by a skewed clock) through the UTC date of the last instant plus
    /// `late_days` (rows that arrived late).
    pub fn partitions(&self, late_days: u32) -> Vec<NaiveDate> {
        let first = self
            .start
            .date_naive()
            .pred_opt()
            .unwrap_or(self.start.date_naive());
        let last_instant = self.end - chrono::Duration::nanoseconds(1);
        let last = last_instant
            .date_naive()
            .checked_add_days(Days::new(late_days as u64))
            .unwrap_or(last_instant.date_naive());
        first.iter_days().take_while(|d| *d <= last).collect()
    }

    /// The day as nanosecond bounds for the scan.
    pub fn window(&self) -> crate::lake::scan::DayWindow {
        crate::lake::scan::DayWindow {
            start_ns: self.start.timestamp_nanos_opt().unwrap_or(i64::MIN),
            end_ns: self.end.timestamp_nanos_opt().unwrap_or(i64::MAX),
        }
    }
}

/// The day before `now`'s date in `zone`: what a nightly job reports on.
pub fn yesterday(now: DateTime<Utc>, zone: Tz) -> NaiveDate {
    let today = now.with_timezone(&zone).date_naive();
    today.pred_opt().unwrap_or(today)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn utc_day_and_partitions() {
        let day = Day::new(d("2026-03-10"), chrono_tz::UTC);
        assert_eq!(day.seconds(), 86_400);
        assert_eq!(day.start.to_rfc3339(), "2026-03-10T00:00:00+00:00");
        assert_eq!(
            day.partitions(1),
            vec![d("2026-03-09"), d("2026-03-10"), d("2026-03-11")]
        );
        assert_eq!(day.partitions(0), vec![d("2026-03-09"), d("2026-03-10")]);
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(Day::new(d("2026-03-08"), ny).seconds(), 23 * 3600);
        assert_eq!(Day::new(d("2026-11-01"), ny).seconds(), 25 * 3600);
        assert_eq!(Day::new(d("2026-07-01"), ny).seconds(), 24 * 3600);
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(Day::new(d("2026-03-29"), berlin).seconds(), 23 * 3600);
        assert_eq!(Day::new(d("2026-10-25"), berlin).seconds(), 25 * 3600);
    }

    #[test]
    fn zones_west_and_east_of_utc_list_the_right_partitions() {
        // New York: [03-10 04:00Z, 03-11 04:00Z) -> 03-09 .. 03-11 + 1 late day
        let ny = Day::new(d("2026-03-10"), chrono_tz::America::New_York);
        assert_eq!(ny.start.to_rfc3339(), "2026-03-10T04:00:00+00:00");
        assert_eq!(
            ny.partitions(1),
            vec![
                d("2026-03-09"),
                d("2026-03-10"),
                d("2026-03-11"),
                d("2026-03-12")
            ]
        );
        // Tokyo: [03-09 15:00Z, 03-10 15:00Z) -> 03-08 .. 03-10 + 1
        let tokyo = Day::new(d("2026-03-10"), chrono_tz::Asia::Tokyo);
        assert_eq!(
            tokyo.partitions(1),
            vec![
                d("2026-03-08"),
                d("2026-03-09"),
                d("2026-03-10"),
                d("2026-03-11")
            ]
        );
    }

    #[test]
    fn midnight_in_a_dst_gap_starts_the_day_at_the_first_existing_minute() {
        // America/Santiago jumped from 24:00 to 01:00 on 2023-09-03.
        let day = Day::new(d("2023-09-03"), chrono_tz::America::Santiago);
        assert_eq!(day.start.to_rfc3339(), "2023-09-03T04:00:00+00:00");
        assert_eq!(day.seconds(), 23 * 3600);
    }

    #[test]
    fn yesterday_is_in_the_zone() {
        let now = DateTime::parse_from_rfc3339("2026-03-10T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(yesterday(now, chrono_tz::UTC), d("2026-03-09"));
        // Still 03-09 in New York, so the report day is 03-08.
        assert_eq!(
            yesterday(now, chrono_tz::America::New_York),
            d("2026-03-08")
        );
    }
}
