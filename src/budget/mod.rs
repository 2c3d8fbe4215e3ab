//! Budgets: `[[budgets]]` settings and their validation, each budget's
//! month to date (exact, from the month's rollup rows), its month-end
//! forecast ([`forecast`]), its status, and the alert thresholds it
//! crosses. Pure: rollup rows in, rows out. Reading rollups and alert
//! records is the pipeline's; `report::budgets` lays the rows out as
//! `budgets.csv`; the dashboards and letters show them.

pub mod forecast;
pub mod quality;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::anomaly::{DayRows, Grain};
use crate::error::Problems;
use crate::money::{OUT_SCALE, PRICE_SCALE, div_half_even, pow10};

/// `[[budgets]]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub name: Option<String>,
    pub dept: Option<String>,
    pub project: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub monthly_usd: Option<RawUsd>,
    #[serde(default)]
    pub months: Vec<RawBudgetMonth>,
    pub alert_at: Option<Vec<f64>>,
}

/// `[[budgets.months]]`: the amount of one month.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetMonth {
    pub month: Option<String>,
    pub usd: Option<RawUsd>,
}

/// An amount as written: a number or a decimal string.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawUsd {
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawUsd {
    /// Micro-dollars, or why not: positive, at most 6 decimals.
    fn micros(&self) -> Result<i128, String> {
        let text = match self {
            RawUsd::Int(i) => i.to_string(),
            // Rust prints the shortest text that reads back as the same
            // float: `1500.1` stays `1500.1`.
            RawUsd::Float(f) if f.is_finite() => f.to_string(),
            RawUsd::Float(f) => return Err(format!("{f} is not an amount")),
            RawUsd::Text(t) => t.trim().to_string(),
        };
        let d = Decimal::from_str(&text)
            .map_err(|_| format!("{text:?} is not a decimal amount of USD"))?;
        if d <= Decimal::ZERO {
            return Err(format!("{text} is not a positive amount"));
        }
        if d.scale() > OUT_SCALE as u32 {
            return Err(format!("{text} has more than {OUT_SCALE} decimals"));
        }
        let mut d = d;
        d.rescale(OUT_SCALE as u32);
        Ok(d.mantissa())
    }
}

/// What spend a budget covers: rollup rows whose dept, project, provider
/// and model equal the given ones (exact, as in `finance_by_dimension`);
/// none given is all spend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub dept: Option<String>,
    pub project: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
}

impl Scope {
    /// Whether a rollup row of grain (dept, project, task, provider, model) is in scope.
    pub fn holds(&self, g: &Grain) -> bool {
        let is = |want: &Option<String>, have: &String| want.as_ref().is_none_or(|w| w == have);
        is(&self.dept, &g[0])
            && is(&self.project, &g[1])
            && is(&self.provider, &g[3])
            && is(&self.model, &g[4])
    }

    /// `dept=research, model=gpt-4o`, or `all spend`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("dept", &self.dept),
            ("project", &self.project),
            ("provider", &self.provider),
            ("model", &self.model),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        if parts.is_empty() {
            "all spend".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A validated budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub name: String,
    pub scope: Scope,
    /// Micro-dollars a month, unless `months` names the month.
    pub monthly_micros: i128,
    /// `YYYY-MM` to micro-dollars.
    pub months: BTreeMap<String, i128>,
    /// Shares of the budget whose crossing by the actual is alerted, ascending.
    pub alert_at: Vec<Decimal>,
}

impl Budget {
    /// The budget of `month` (`YYYY-MM`), in micro-dollars.
    pub fn micros_for(&self, month: &str) -> i128 {
        self.months
            .get(month)
            .copied()
            .unwrap_or(self.monthly_micros)
    }
}

/// The budgets of `[[budgets]]`; every problem goes to `p`.
pub fn validate(raw: &[RawBudget], p: &mut Problems) -> Vec<Budget> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, b) in raw.iter().enumerate() {
        let at = match &b.name {
            Some(n) => format!("budgets[{i}] ({n:?})"),
            None => format!("budgets[{i}]"),
        };
        let name = match b.name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                p.push(format!("{at}.name: required (a unique, non-empty name)"));
                String::new()
            }
        };
        if !name.is_empty() && !names.insert(name.clone()) {
            p.push(format!("{at}.name: {name:?} is used by an earlier budget"));
        }
        let mut field = |key: &str, v: &Option<String>| match v {
            Some(s) if s.trim().is_empty() => {
                p.push(format!(
                    "{at}.{key}: empty (leave it out to cover every {key})"
                ));
                None
            }
            v => v.clone(),
        };
        let scope = Scope {
            dept: field("dept", &b.dept),
            project: field("project", &b.project),
            provider: field("provider", &b.provider),
            model: field("model", &b.model),
        };
        let monthly = match &b.monthly_usd {
            Some(v) => v.micros().unwrap_or_else(|e| {
                p.push(format!("{at}.monthly_usd: {e}"));
                0
            }),
            None => {
                p.push(format!("{at}.monthly_usd: required (USD a month)"));
                0
            }
        };
        let months = months_of(&at, &b.months, p);
        let alert_at = alert_shares(&at, b.alert_at.as_deref(), p);
        out.push(Budget {
            name,
            scope,
            monthly_micros: monthly,
            months,
            alert_at,
        });
    }
    out
}

fn months_of(at: &str, raw: &[RawBudgetMonth], p: &mut Problems) -> BTreeMap<String, i128> {
    let mut out = BTreeMap::new();
    for (j, m) in raw.iter().enumerate() {
        let at = format!("{at}.months[{j}]");
        let month = match m.month.as_deref().map(str::trim) {
            Some(s) if parse_month(s).is_some() => s.to_string(),
            Some(s) => {
                p.push(format!("{at}.month: {s:?} is not a month (YYYY-MM)"));
                continue;
            }
            None => {
                p.push(format!("{at}.month: required (YYYY-MM)"));
                continue;
            }
        };
        let usd = match &m.usd {
            Some(v) => match v.micros() {
                Ok(v) => v,
                Err(e) => {
                    p.push(format!("{at}.usd: {e}"));
                    continue;
                }
            },
            None => {
                p.push(format!("{at}.usd: required"));
                continue;
            }
        };
        if out.insert(month.clone(), usd).is_some() {
            p.push(format!("{at}.month: {month} is given twice"));
        }
    }
    out
}

fn alert_shares(at: &str, raw: Option<&[f64]>, p: &mut Problems) -> Vec<Decimal> {
    let raw = raw.unwrap_or(&[0.8, 1.0]);
    let mut out = BTreeSet::new();
    for x in raw {
        match Decimal::from_str(&x.to_string()) {
            Ok(d) if x.is_finite() && *x > 0.0 && *x <= 10.0 => {
                if !out.insert(d.normalize()) {
                    p.push(format!("{at}.alert_at: {x} is given twice"));
                }
            }
            _ => p.push(format!(
                "{at}.alert_at: {x} is not a share of the budget in (0, 10]"
            )),
        }
    }
    out.into_iter().collect()
}

/// The first day of `YYYY-MM`.
pub fn parse_month(s: &str) -> Option<NaiveDate> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)
}

/// A budget's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    Ok,
    /// The forecast is above the budget.
    AtRisk,
    /// The actual is above the budget.
    Over,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::AtRisk => "at_risk",
            Status::Over => "over",
        }
    }
}

/// One budget on one day: `budgets.csv`'s row, and what the burn-up chart draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub scope: Scope,
    /// `YYYY-MM` of the report day.
    pub month: String,
    pub budget: i128,
    /// Micro-dollars (exact sum of the month's rollups, rounded once).
    pub mtd_actual: i128,
    pub forecast: i128,
    pub forecast_low: i128,
    pub forecast_high: i128,
    pub status: Status,
    /// Requests of the month to date in scope that had no price (not in the actual).
    pub mtd_unpriced_requests: i64,
    pub days_elapsed: u32,
    pub days_in_month: u32,
    /// Days of the month to date without a rollup: forecast, not actual.
    pub days_missing: Vec<NaiveDate>,
    pub basis: forecast::Basis,
    /// Days of the fit window with a total.
    pub fit_days: usize,
    /// Cumulative actual (USD) by day of the month to date (missing days as
    /// their forecast), then cumulative expected, low and high to month end.
    pub burn: Vec<Burn>,
}

/// A day of the burn-up chart: cumulative USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    pub date: NaiveDate,
    pub actual: Option<f64>,
    pub expected: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Row {
    /// Forecast over budget.
    pub fn forecast_share(&self) -> f64 {
        self.forecast as f64 / self.budget as f64
    }

    /// Why the interval is as wide as it is, in words; empty when it comes
    /// from enough past errors and every day has a rollup.
    pub fn note(&self) -> String {
        let mut notes = Vec::new();
        if let forecast::Basis::Wide { days, backtests } = self.basis {
            notes.push(format!(
                "little history ({days} of {} days, {backtests} past errors): interval widened",
                forecast::FIT_DAYS
            ));
        }
        if self.basis == forecast::Basis::NoSpend {
            notes.push(format!(
                "no spend in scope in the last {} days: nothing forecast",
                forecast::FIT_DAYS
            ));
        }
        if !self.days_missing.is_empty() {
            let days: Vec<String> = self.days_missing.iter().map(|d| d.to_string()).collect();
            notes.push(format!(
                "no rollup for {} (forecast, not in the actual)",
                days.join(", ")
            ));
        }
        notes.join("; ")
    }
}

/// The last day of `date`'s month.
pub fn month_end(date: NaiveDate) -> NaiveDate {
    let first = date.with_day(1).expect("day 1 exists");
    first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .expect("dates in range")
}

/// USD (f64) of exact rollup money.
fn usd(v: i128) -> f64 {
    v as f64 / 10f64.powi(PRICE_SCALE as i32)
}

/// Micro-dollars of an f64 USD estimate, rounded half to even.
fn micros(v: f64) -> i128 {
    (v * 1e6).round_ties_even() as i128
}

/// A scope's exact spend (at the rollups' scale) and unpriced requests of each day.
fn daily_of(
    scope: &Scope,
    days: &BTreeMap<NaiveDate, &DayRows>,
) -> BTreeMap<NaiveDate, (i128, i64)> {
    days.iter()
        .map(|(d, rows)| {
            let mut cost = 0i128;
            let mut unpriced = 0i64;
            for (g, c) in rows.iter() {
                if scope.holds(g) {
                    cost += c.cost;
                    unpriced += c.unpriced_requests;
                }
            }
            (*d, (cost, unpriced))
        })
        .collect()
}

/// Every budget on `date`: the day's rollup rows are `today`, earlier
/// days' are `history` (days without a rollup absent).
pub fn evaluate(
    budgets: &[Budget],
    date: NaiveDate,
    today: &DayRows,
    history: &BTreeMap<NaiveDate, DayRows>,
) -> Vec<Row> {
    let mut days: BTreeMap<NaiveDate, &DayRows> =
        history.range(..date).map(|(d, r)| (*d, r)).collect();
    days.insert(date, today);
    budgets
        .iter()
        .map(|b| evaluate_one(b, date, &days))
        .collect()
}

fn evaluate_one(b: &Budget, date: NaiveDate, days: &BTreeMap<NaiveDate, &DayRows>) -> Row {
    let daily = daily_of(&b.scope, days);
    let first = date.with_day(1).expect("day 1 exists");
    let end = month_end(date);
    let month = first.format("%Y-%m").to_string();
    let budget = b.micros_for(&month);
    let (mut mtd, mut unpriced) = (0i128, 0i64);
    let mut missing = Vec::new();
    for d in first.iter_days().take_while(|d| *d <= date) {
        match daily.get(&d) {
            Some((c, u)) => {
                mtd += c;
                unpriced += u;
            }
            None => missing.push(d),
        }
    }
    let series: forecast::Series = daily.iter().map(|(d, (c, _))| (*d, usd(*c))).collect();
    let ahead: Vec<NaiveDate> = date.iter_days().skip(1).take_while(|d| *d <= end).collect();
    let mut dates = missing.clone();
    dates.extend(&ahead);
    let horizon = ahead.len() as u64;
    let f = forecast::forecast(&series, date, &dates, horizon);
    let mtd_micros = div_half_even(mtd, pow10((PRICE_SCALE - OUT_SCALE) as u32));
    let forecast = mtd_micros + micros(f.expected);
    let (low, high) = (mtd_micros + micros(f.low), mtd_micros + micros(f.high));
    let status = if mtd_micros > budget {
        Status::Over
    } else if forecast > budget {
        Status::AtRisk
    } else {
        Status::Ok
    };
    Row {
        name: b.name.clone(),
        scope: b.scope.clone(),
        month,
        budget,
        mtd_actual: mtd_micros,
        forecast,
        forecast_low: low,
        forecast_high: high,
        status,
        mtd_unpriced_requests: unpriced,
        days_elapsed: date.day(),
        days_in_month: end.day(),
        days_missing: missing,
        basis: f.basis,
        fit_days: f.fit_days,
        burn: burn(&daily, date, end, &f),
    }
}

/// The burn-up of a month: cumulative actual to `date` (a missing day adds
/// its forecast), then the cumulative forecast, its low and high end
/// spread over the days to come in proportion to the expected spend.
fn burn(
    daily: &BTreeMap<NaiveDate, (i128, i64)>,
    date: NaiveDate,
    end: NaiveDate,
    f: &forecast::Forecast,
) -> Vec<Burn> {
    let first = date.with_day(1).expect("day 1 exists");
    let predict = |d: NaiveDate| f.model.as_ref().map_or(0.0, |m| m.predict(d));
    let mut out = Vec::new();
    let mut cum = 0.0;
    for d in first.iter_days().take_while(|d| *d <= date) {
        cum += daily.get(&d).map_or_else(|| predict(d), |(c, _)| usd(*c));
        out.push(Burn {
            date: d,
            actual: Some(cum),
            expected: (d == date).then_some(cum),
            low: (d == date).then_some(cum),
            high: (d == date).then_some(cum),
        });
    }
    let (lo_r, hi_r) = if f.expected > 0.0 {
        (f.low / f.expected, f.high / f.expected)
    } else {
        (1.0, 1.0)
    };
    let mut ahead = 0.0;
    for d in date.iter_days().skip(1).take_while(|d| *d <= end) {
        ahead += predict(d);
        out.push(Burn {
            date: d,
            actual: None,
            expected: Some(cum + ahead),
            low: Some(cum + ahead * lo_r),
            high: Some(cum + ahead * hi_r),
        });
    }
    out
}

/// What crossed: the actual a share of the budget, or the forecast the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Crossed {
    Actual,
    Forecast,
}

/// A threshold of a budget crossed this month: alerted once a month, for
/// the budget amount it was crossed at (a budget changed mid-month alerts
/// its new thresholds once more).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossing {
    pub budget: String,
    pub month: String,
    pub crossed: Crossed,
    /// Share of the budget (1 for the forecast).
    pub share: Decimal,
    pub budget_micros: i128,
    /// The actual (or the forecast) in micro-dollars.
    pub value_micros: i128,
}

impl Crossing {
    /// `actual-80pct-of-1500.000000`: what the delivery record is named by.
    pub fn key(&self) -> String {
        let what = match self.crossed {
            Crossed::Actual => "actual",
            Crossed::Forecast => "forecast",
        };
        let pct = (self.share * Decimal::ONE_HUNDRED).normalize();
        format!(
            "{what}-{pct}pct-of-{}",
            crate::money::format_scaled(self.budget_micros, OUT_SCALE)
        )
    }
}

/// The thresholds the day's rows cross: each `alert_at` share the actual
/// has reached, and the forecast above the budget.
pub fn crossings(budgets: &[Budget], rows: &[Row]) -> Vec<Crossing> {
    let mut out = Vec::new();
    for (b, r) in budgets.iter().zip(rows) {
        let at = |v: i128| Decimal::from_i128_with_scale(v, OUT_SCALE as u32);
        for share in &b.alert_at {
            if at(r.mtd_actual) >= at(r.budget) * share {
                out.push(Crossing {
                    budget: r.name.clone(),
                    month: r.month.clone(),
                    crossed: Crossed::Actual,
                    share: *share,
                    budget_micros: r.budget,
                    value_micros: r.mtd_actual,
                });
            }
        }
        if r.forecast > r.budget {
            out.push(Crossing {
                budget: r.name.clone(),
                month: r.month.clone(),
                crossed: Crossed::Forecast,
                share: Decimal::ONE,
                budget_micros: r.budget,
                value_micros: r.forecast,
            });
        }
    }
    out
}

/// The days of rollups budgets need before `date` (none without budgets).
pub fn history_days(budgets: &[Budget]) -> u64 {
    if budgets.is_empty() {
        0
    } else {
        forecast::HISTORY_DAYS
    }
}

#[cfg(test)]
mod tests;
