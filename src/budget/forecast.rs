//! The month-end forecast of one scope's daily spend: a weekday-seasonal
//! run-rate with a linear trend, fitted on the last [`FIT_DAYS`] days of
//! daily totals, and an 80% prediction interval from the model's own past
//! errors (backtests at the same horizon).
//!
//! The forecast is a statistical estimate, so it is computed in `f64`; the
//! caller adds it to the exact month-to-date actual and rounds once. Pure
//! and deterministic: the series is a `BTreeMap`, every sum runs in date
//! order. No I/O, no money formatting.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};

/// Days of daily totals a fit reads (eight weeks: each weekday eight times).
pub const FIT_DAYS: u64 = 56;
/// Fewest days for weekday factors and a trend (and each weekday twice).
pub const MIN_SEASONAL_DAYS: usize = 14;
/// Past origins tried for the interval's errors.
pub const BACKTESTS: u64 = 21;
/// Fewest past errors for an interval from them; fewer and the interval is
/// the wide fallback, and the row says so.
pub const MIN_BACKTESTS: usize = 10;
/// Days of rollups a forecast can use: the fits of the furthest backtest on
/// the first day of a 31-day month.
pub const HISTORY_DAYS: u64 = FIT_DAYS + 30 + BACKTESTS;
/// Rounds of the alternating fit at most (it converges in a few).
const MAX_ITERATIONS: usize = 100;
/// z of the 90th percentile of a normal distribution.
const Z80: f64 = 1.281_551_565_545;

/// Spend per day (USD); a day without a rollup is absent, never zero.
pub type Series = BTreeMap<NaiveDate, f64>;

/// A fitted model: `season[weekday] * (level + slope * x)` for a day `x`
/// days after `origin`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub origin: NaiveDate,
    pub level: f64,
    pub slope: f64,
    /// Weekday factors (Monday first), mean 1; all 1 without seasonality.
    pub season: [f64; 7],
    /// Days of the fit window that had a total.
    pub days: usize,
    /// Whether weekday factors and a trend were fitted.
    pub seasonal: bool,
    /// Standard deviation of the relative daily residuals.
    pub spread: f64,
    /// Days the fit kept, the mean of their `x` and the sum of squares of
    /// `x` about it (for the standard error of the fitted line).
    pub kept: usize,
    pub x_mean: f64,
    pub sxx: f64,
}

impl Model {
    /// The expected spend of `date`.
    pub fn predict(&self, date: NaiveDate) -> f64 {
        let x = (date - self.origin).num_days() as f64;
        let w = date.weekday().num_days_from_monday() as usize;
        self.season[w] * (self.level + self.slope * x).max(0.0)
    }

    /// The expected spend of `dates`, summed in order.
    pub fn predict_sum(&self, dates: impl Iterator<Item = NaiveDate>) -> f64 {
        dates.map(|d| self.predict(d)).sum()
    }

    /// Standard deviation of the spend of `dates` around its prediction:
    /// the fitted line's own error (level and slope from `kept` noisy
    /// days) and each day's noise, both from the residual spread.
    pub fn sd_of_sum(&self, dates: &[NaiveDate]) -> f64 {
        let mean_level = (self.level + self.slope * self.x_mean).max(0.0);
        let (mut s, mut sx, mut noise) = (0.0, 0.0, 0.0);
        for d in dates {
            let x = (*d - self.origin).num_days() as f64;
            let f = self.season[d.weekday().num_days_from_monday() as usize];
            s += f;
            sx += f * (x - self.x_mean);
            noise += self.predict(*d).powi(2);
        }
        let n = self.kept.max(1) as f64;
        let line = if self.seasonal && self.sxx > 0.0 {
            s * s / n + sx * sx / self.sxx
        } else {
            s * s / n
        };
        self.spread * (mean_level * mean_level * line + noise).sqrt()
    }
}

fn days_after(from: NaiveDate, n: u64) -> impl Iterator<Item = NaiveDate> {
    from.iter_days().skip(1).take(n as usize)
}

/// Ordinary least squares of `y` on `x`: (intercept, slope).
fn ols(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

/// (x, weekday, y) of a fit window.
type Point = (f64, usize, f64);

/// Level, slope and weekday factors by alternating the trend on the
/// deseasonalized values with the weekday means of the detrended ones.
fn solve(points: &[Point], seasonal: bool) -> (f64, f64, [f64; 7]) {
    let mut season = [1.0; 7];
    let (mut level, mut slope) = (0.0, 0.0);
    for _ in 0..MAX_ITERATIONS {
        let before = (level, slope, season);
        let z: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2 / season[p.1])).collect();
        (level, slope) = if seasonal {
            ols(&z)
        } else {
            (z.iter().map(|p| p.1).sum::<f64>() / z.len() as f64, 0.0)
        };
        if !seasonal {
            break;
        }
        let (mut sum, mut n) = ([0.0; 7], [0usize; 7]);
        for p in points {
            let base = level + slope * p.0;
            if base > f64::EPSILON {
                sum[p.1] += p.2 / base;
                n[p.1] += 1;
            }
        }
        if n.contains(&0) {
            season = [1.0; 7];
            break;
        }
        let raw: Vec<f64> = (0..7).map(|w| sum[w] / n[w] as f64).collect();
        let mean = raw.iter().sum::<f64>() / 7.0;
        if mean <= 0.0 {
            season = [1.0; 7];
            break;
        }
        for w in 0..7 {
            season[w] = raw[w] / mean;
        }
        let moved = (level - before.0).abs() + (slope - before.1).abs() * FIT_DAYS as f64;
        let moved = moved / level.abs().max(f64::MIN_POSITIVE)
            + (0..7).map(|w| (season[w] - before.2[w]).abs()).sum::<f64>();
        if moved < 1e-13 {
            break;
        }
    }
    (level, slope, season)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Fit on the [`FIT_DAYS`] days ending at `origin` (inclusive). One robust
/// pass: days further than five MADs from the median residual (a one-day
/// spike) are left out and the model fitted again. `None` without any day.
pub fn fit(series: &Series, origin: NaiveDate) -> Option<Model> {
    let from = origin - Days::new(FIT_DAYS - 1);
    let points: Vec<Point> = series
        .range(from..=origin)
        .map(|(d, y)| {
            let x = (*d - origin).num_days() as f64;
            (x, d.weekday().num_days_from_monday() as usize, *y)
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let mut per_weekday = [0usize; 7];
    for p in &points {
        per_weekday[p.1] += 1;
    }
    let seasonal = points.len() >= MIN_SEASONAL_DAYS && per_weekday.iter().all(|&c| c >= 2);
    let residuals = |m: &(f64, f64, [f64; 7]), pts: &[Point]| -> Vec<f64> {
        pts.iter()
            .map(|p| {
                let fitted = m.2[p.1] * (m.0 + m.1 * p.0);
                if fitted > f64::EPSILON {
                    p.2 / fitted - 1.0
                } else {
                    0.0
                }
            })
            .collect()
    };
    let mut m = solve(&points, seasonal);
    let mut kept = points.clone();
    let r = residuals(&m, &points);
    let mut sorted = r.clone();
    let med = median(&mut sorted);
    let mut dev: Vec<f64> = r.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev) * 1.4826;
    if mad > 0.0 {
        let keep: Vec<Point> = points
            .iter()
            .zip(&r)
            .filter(|(_, x)| (*x - med).abs() <= 5.0 * mad)
            .map(|(p, _)| *p)
            .collect();
        if keep.len() < points.len() && keep.len() >= MIN_SEASONAL_DAYS {
            let mut n = [0usize; 7];
            keep.iter().for_each(|p| n[p.1] += 1);
            if !seasonal || n.iter().all(|&c| c >= 2) {
                m = solve(&keep, seasonal);
                kept = keep;
            }
        }
    }
    let r = residuals(&m, &kept);
    let x_mean = kept.iter().map(|p| p.0).sum::<f64>() / kept.len() as f64;
    let sxx = kept.iter().map(|p| (p.0 - x_mean).powi(2)).sum::<f64>();
    let spread = if r.len() > 1 {
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Model {
        origin,
        level: m.0,
        slope: m.1,
        season: m.2,
        days: points.len(),
        seasonal,
        spread,
        kept: kept.len(),
        x_mean,
        sxx,
    })
}

/// Where an interval comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// This many past errors (at least [`MIN_BACKTESTS`]): their root
    /// mean square, or the model's standard error if that is wider.
    Backtests(usize),
    /// Too little history for that: a wide interval from the residual
    /// spread (or ±50% with under a week of days).
    Wide { days: usize, backtests: usize },
    /// No spend on any day of the fit window: nothing is forecast.
    NoSpend,
}

/// The forecast of the spend of some days to come.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Expected spend of the days forecast (not of the month to date).
    pub expected: f64,
    /// The 80% interval of that spend.
    pub low: f64,
    pub high: f64,
    pub basis: Basis,
    /// Days of the fit window with a total.
    pub fit_days: usize,
    /// The model fitted at `today` (`None` without any day), for callers
    /// that draw its path.
    pub model: Option<Model>,
}

/// Relative errors (`actual / forecast - 1`) of the model fitted at each of
/// the [`BACKTESTS`] origins before `today - horizon`, forecasting the
/// `horizon` days after its origin (which all have totals).
pub fn backtest_errors(series: &Series, today: NaiveDate, horizon: u64) -> Vec<f64> {
    let mut errors = Vec::new();
    for k in 0..BACKTESTS {
        let origin = today - Days::new(horizon + k);
        let Some(m) = fit(series, origin) else {
            continue;
        };
        let actual: Option<f64> = days_after(origin, horizon)
            .map(|d| series.get(&d).copied())
            .sum();
        let predicted = m.predict_sum(days_after(origin, horizon));
        if let Some(actual) = actual
            && predicted > f64::EPSILON
            && m.seasonal
        {
            errors.push(actual / predicted - 1.0);
        }
    }
    errors
}

/// Forecast the spend of `dates` (days to come, and days of the month to
/// date without a rollup) from the series up to `today`. The interval's
/// errors are those of forecasting `horizon` days ahead.
pub fn forecast(series: &Series, today: NaiveDate, dates: &[NaiveDate], horizon: u64) -> Forecast {
    let Some(m) = fit(series, today) else {
        return Forecast {
            expected: 0.0,
            low: 0.0,
            high: 0.0,
            basis: Basis::Wide {
                days: 0,
                backtests: 0,
            },
            fit_days: 0,
            model: None,
        };
    };
    let from = today - Days::new(FIT_DAYS - 1);
    if series.range(from..=today).all(|(_, y)| *y == 0.0) {
        return Forecast {
            expected: 0.0,
            low: 0.0,
            high: 0.0,
            basis: Basis::NoSpend,
            fit_days: m.days,
            model: Some(m),
        };
    }
    let expected = m.predict_sum(dates.iter().copied());
    let errors = if m.seasonal && horizon > 0 {
        backtest_errors(series, today, horizon)
    } else {
        Vec::new()
    };
    // The past errors overlap (neighbouring origins share most of their
    // fit window), so their spread understates the error of a new fit:
    // the interval is the wider of their root mean square and the model's
    // own standard error (fitted line plus daily noise).
    let model_sd = m.sd_of_sum(dates) / expected.max(f64::MIN_POSITIVE);
    let (low, high, basis) = if errors.len() >= MIN_BACKTESTS {
        let rms = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        let half = Z80 * rms.max(model_sd);
        let (lo, hi) = (-half, half);
        (
            expected * (1.0 + lo).max(0.0),
            expected * (1.0 + hi).max(0.0),
            Basis::Backtests(errors.len()),
        )
    } else {
        // Daily residuals over the days to come, doubled for the level and
        // trend the short history cannot pin down; at least ±10%, and ±50%
        // with under a week of days.
        let h = dates.len().max(1) as f64;
        let half = if m.days < 7 {
            0.5
        } else {
            (2.0 * Z80 * m.spread / h.sqrt()).max(0.1)
        };
        (
            expected * (1.0 - half).max(0.0),
            expected * (1.0 + half),
            Basis::Wide {
                days: m.days,
                backtests: errors.len(),
            },
        )
    };
    Forecast {
        expected,
        low,
        high,
        basis,
        fit_days: m.days,
        model: Some(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_flat_series_forecasts_its_level() {
        // 2026-11-11 .. 2026-11-30: 10 a day. Level 10, no slope, every
        // weekday factor 1: the 2 days after forecast 20.
        let s: Series = d("2026-11-11")
            .iter_days()
            .take(20)
            .map(|x| (x, 10.0))
            .collect();
        let m = fit(&s, d("2026-11-30")).expect("fits");
        assert!(m.seasonal);
        assert!((m.level - 10.0).abs() < 1e-9 && m.slope.abs() < 1e-12);
        for f in m.season {
            assert!((f - 1.0).abs() < 1e-12);
        }
        let f = forecast(&s, d("2026-11-30"), &[d("2026-12-01"), d("2026-12-02")], 2);
        assert!((f.expected - 20.0).abs() < 1e-9);
        // 20 days: only the origins 11-24 .. 11-28 have the 14 days a
        // seasonal fit needs, 5 past errors: the wide fallback, at least ±10%.
        assert!(matches!(f.basis, Basis::Wide { .. }));
        assert!((f.low - 18.0).abs() < 1e-9 && (f.high - 22.0).abs() < 1e-9);
    }

    #[test]
    fn weekday_factors_and_trend_are_recovered_exactly() {
        // y = s[w] * (100 + 2x), weekends at 0.4 of a weekday, over six
        // weeks ending Sunday 2026-11-29 (x = 0). Factors normalised to mean
        // 1: weekday 7/5.8 = 1.206897, weekend 0.4 * that = 0.482759.
        let today = d("2026-11-29");
        let wk = 7.0 / 5.8;
        let s: Series = (0..42)
            .map(|i| {
                let date = today - Days::new(41 - i);
                let x = (date - today).num_days() as f64;
                let w = date.weekday().num_days_from_monday();
                let f = if w >= 5 { 0.4 * wk } else { wk };
                (date, f * (100.0 + 2.0 * x))
            })
            .collect();
        let m = fit(&s, today).expect("fits");
        assert!((m.level - 100.0).abs() < 1e-6, "{m:?}");
        assert!((m.slope - 2.0).abs() < 1e-6, "{m:?}");
        assert!((m.season[0] - wk).abs() < 1e-6 && (m.season[6] - 0.4 * wk).abs() < 1e-6);
        // Monday 2026-11-30 (x = 1): 1.206897 * 102 = 123.103448.
        assert!((m.predict(d("2026-11-30")) - wk * 102.0).abs() < 1e-6);
        // Saturday 2026-12-05 (x = 6): 0.482759 * 112 = 54.068966.
        assert!((m.predict(d("2026-12-05")) - 0.4 * wk * 112.0).abs() < 1e-6);
    }

    #[test]
    fn a_one_day_spike_is_left_out_of_the_fit() {
        let today = d("2026-11-29");
        let mut s: Series = (0..42).map(|i| (today - Days::new(i), 50.0)).collect();
        s.insert(d("2026-11-20"), 500.0);
        let m = fit(&s, today).expect("fits");
        assert!((m.level - 50.0).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn past_errors_give_the_interval_once_there_are_enough() {
        // A flat series of 100 days: every backtest is exact (error 0), and
        // the interval is theirs: no width.
        let start = d("2026-08-01");
        let s: Series = start.iter_days().take(100).map(|x| (x, 10.0)).collect();
        let today = start + Days::new(99);
        let dates: Vec<NaiveDate> = days_after(today, 5).collect();
        let f = forecast(&s, today, &dates, 5);
        assert_eq!(f.basis, Basis::Backtests(BACKTESTS as usize));
        assert!((f.expected - 50.0).abs() < 1e-9);
        assert!((f.low - 50.0).abs() < 1e-9 && (f.high - 50.0).abs() < 1e-9);
    }
}
