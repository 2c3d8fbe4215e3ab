//! How well the month-end forecast works, measured: the synthetic histories
//! of the anomaly bench (`anomaly::quality::generate`: weekly seasonality,
//! growth, noise, optionally anomalies), every group, department and the
//! total forecast on day 10 and day 20 of each month that has enough
//! history before it, against the month's actual end. Pure and seeded.
//! `benches/budget_forecast.rs` prints the table; a test holds the goals.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use super::forecast::{self, Basis, Series};
use super::month_end;
use crate::anomaly::DayRows;
use crate::money::PRICE_SCALE;

/// Errors of forecasts made on one day of the month.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    pub forecasts: usize,
    /// Mean absolute percentage error of the month-end forecast.
    pub mape: f64,
    /// The same of the naive run-rate (month to date / days × days in month).
    pub naive_mape: f64,
    /// Share of month ends inside the 80% interval.
    pub coverage: f64,
    /// Forecasts whose interval came from past errors.
    pub from_backtests: usize,
}

/// The series of every group (`dept/project/task`), department and the
/// total in a synthetic lake.
pub fn scopes(lake: &BTreeMap<NaiveDate, DayRows>) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for (date, rows) in lake {
        for (g, c) in rows {
            let usd = c.cost as f64 / 10f64.powi(PRICE_SCALE as i32);
            for key in [
                format!("group {}/{}/{}", g[0], g[1], g[2]),
                format!("dept {}", g[0]),
                "total".to_string(),
            ] {
                *out.entry(key).or_default().entry(*date).or_default() += usd;
            }
        }
    }
    out
}

/// Forecast each month end of `series` from day `day` of the month, for
/// the months whose first day has `min_history` days before it in the
/// series and whose last day is in it.
pub fn measure(scopes: &BTreeMap<String, Series>, day: u32, min_history: u64) -> Accuracy {
    let mut a = Accuracy::default();
    let (mut err, mut naive, mut inside) = (0.0, 0.0, 0usize);
    for series in scopes.values() {
        let (Some(first), Some(last)) = (series.keys().next(), series.keys().next_back()) else {
            continue;
        };
        let mut month = first.with_day(1).expect("day 1");
        while month <= *last {
            let end = month_end(month);
            let today = month.with_day(day).expect("day of month");
            let next = end.succ_opt().expect("in range");
            if (month - *first).num_days() < min_history as i64 || end > *last {
                month = next;
                continue;
            }
            let known: Series = series.range(..=today).map(|(d, v)| (*d, *v)).collect();
            let mtd: f64 = series.range(month..=today).map(|(_, v)| v).sum();
            let actual: f64 = series.range(month..=end).map(|(_, v)| v).sum();
            let ahead: Vec<NaiveDate> = today
                .iter_days()
                .skip(1)
                .take_while(|d| *d <= end)
                .collect();
            let f = forecast::forecast(&known, today, &ahead, ahead.len() as u64);
            let predicted = mtd + f.expected;
            let run_rate = mtd / f64::from(day) * f64::from(end.day());
            err += ((predicted - actual) / actual).abs();
            naive += ((run_rate - actual) / actual).abs();
            if (mtd + f.low..=mtd + f.high).contains(&actual) {
                inside += 1;
            }
            if matches!(f.basis, Basis::Backtests(_)) {
                a.from_backtests += 1;
            }
            a.forecasts += 1;
            month = next;
        }
    }
    let n = a.forecasts.max(1) as f64;
    a.mape = err / n;
    a.naive_mape = naive / n;
    a.coverage = inside as f64 / n;
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::quality::generate;

    #[test]
    fn the_forecast_meets_its_goals_on_synthetic_histories() {
        // 40 groups, 2026-01-01 .. 2026-07-31; May, June and July have the
        // history a forecast reads (93 days) before them.
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let (lake, _) = generate(7, 40, start, 212, 30, 0.0);
        let scopes = scopes(&lake);
        for (day, goal) in [(10, 0.08), (20, 0.04)] {
            let a = measure(&scopes, day, forecast::HISTORY_DAYS);
            assert!(a.forecasts >= 100, "{a:?}");
            assert!(a.mape <= goal, "day {day}: {a:?}");
            assert!(a.mape <= 0.7 * a.naive_mape, "day {day}: {a:?}");
            assert!((0.7..=0.9).contains(&a.coverage), "day {day}: {a:?}");
        }
    }
}
