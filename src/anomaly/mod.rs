//! Cost anomalies (source document section 4): what moved today against a
//! seasonal baseline, how much it cost, and why.
//!
//! Pure logic over daily rollups (today's from the run, earlier days' from
//! storage; never raw logs). For each group at each level (total, provider,
//! provider+model, dept, dept+project, dept+project+task) and each metric
//! (cost, requests, tokens per request, cost per 1k tokens, error rate, cache
//! hit rate) the baseline is the median of the same weekday's values in the
//! trailing window (the days of the same kind, weekday or weekend, when
//! fewer than three such weekdays have data), the scale the median absolute deviation (times
//! 1.4826, floored so a flat series does not make every wobble infinite),
//! and the score the robust z-score. Noise guards (volume, $ impact or %
//! change) keep small groups quiet. A flagged group's cost change is split
//! into causes by a log-mean Divisia index over its models (volume,
//! errors/retries, model mix, cache-hit change, tokens per request, price
//! change): exact, order-free, and each cause in dollars. No I/O here.

pub mod incident;
pub mod quality;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::error::Problems;
use crate::money::{OUT_SCALE, PRICE_SCALE, format_scaled, rescale};
use crate::queries::rows::RollupDaily;

/// One rollup row's additive measures (money exact at the rollups' scale).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub requests: i64,
    pub errors: i64,
    pub cache_hits: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Input + output tokens of priced requests that reached the provider.
    pub priced_tokens: i64,
    pub cost: i128,
    /// Requests without a price (not in `cost`).
    pub unpriced_requests: i64,
}

impl Cell {
    fn add(&mut self, o: &Cell) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.cache_hits += o.cache_hits;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.priced_tokens += o.priced_tokens;
        self.cost += o.cost;
        self.unpriced_requests += o.unpriced_requests;
    }
    fn usd(&self) -> f64 {
        self.cost as f64 / 10f64.powi(PRICE_SCALE as i32)
    }
}

/// The finest grain of a rollup: dept, project, task, provider, model.
pub type Grain = [String; 5];

/// A day's rollup rows.
pub type DayRows = Vec<(Grain, Cell)>;

/// The rows of a `rollup_daily` result or stored rollup.
pub fn rows_of(rows: &[RollupDaily]) -> DayRows {
    rows.iter()
        .map(|r| {
            (
                [
                    r.dept.clone(),
                    r.project.clone(),
                    r.task.clone(),
                    r.provider.clone(),
                    r.model.clone(),
                ],
                Cell {
                    requests: r.requests.unwrap_or(0),
                    errors: r.errors.unwrap_or(0),
                    cache_hits: r.cache_hits.unwrap_or(0),
                    input_tokens: r.input_tokens.unwrap_or(0),
                    output_tokens: r.output_tokens.unwrap_or(0),
                    priced_tokens: r.priced_tokens.unwrap_or(0),
                    cost: r.cost_usd.map_or(0, |c| c.at(PRICE_SCALE)),
                    unpriced_requests: r.unpriced_requests.unwrap_or(0),
                },
            )
        })
        .collect()
}

/// The levels anomalies are looked for at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Total,
    Provider,
    Model,
    Dept,
    DeptProject,
    DeptProjectTask,
}

impl Level {
    /// The group of a grain row as a filter (dept, project, task, provider, model).
    pub fn filter(self, g: &Grain) -> [Option<String>; 5] {
        let keep = match self {
            Level::Total => [false; 5],
            Level::Provider => [false, false, false, true, false],
            Level::Model => [false, false, false, true, true],
            Level::Dept => [true, false, false, false, false],
            Level::DeptProject => [true, true, false, false, false],
            Level::DeptProjectTask => [true, true, true, false, false],
        };
        std::array::from_fn(|i| keep[i].then(|| g[i].clone()))
    }

    pub const ALL: [Level; 6] = [
        Level::Total,
        Level::Provider,
        Level::Model,
        Level::Dept,
        Level::DeptProject,
        Level::DeptProjectTask,
    ];

    /// SPEC 3's `dimension`: the grouping columns joined by `+`.
    pub fn dimension(self) -> &'static str {
        match self {
            Level::Total => "total",
            Level::Provider => "provider",
            Level::Model => "provider+model",
            Level::Dept => "dept",
            Level::DeptProject => "dept+project",
            Level::DeptProjectTask => "dept+project+task",
        }
    }

    /// SPEC 3's `key`: the group's values joined by `/`.
    pub fn key(self, g: &Grain) -> String {
        match self {
            Level::Total => "all".into(),
            Level::Provider => g[3].clone(),
            Level::Model => format!("{}/{}", g[3], g[4]),
            Level::Dept => g[0].clone(),
            Level::DeptProject => format!("{}/{}", g[0], g[1]),
            Level::DeptProjectTask => format!("{}/{}/{}", g[0], g[1], g[2]),
        }
    }
}

/// The metrics watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    CostUsd,
    Requests,
    TokensPerRequest,
    CostPer1kUsd,
    ErrorRate,
    CacheHitRate,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::CostUsd,
        Metric::Requests,
        Metric::TokensPerRequest,
        Metric::CostPer1kUsd,
        Metric::ErrorRate,
        Metric::CacheHitRate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::CostUsd => "cost_usd",
            Metric::Requests => "requests",
            Metric::TokensPerRequest => "tokens_per_request",
            Metric::CostPer1kUsd => "cost_per_1k_usd",
            Metric::ErrorRate => "error_rate",
            Metric::CacheHitRate => "cache_hit_rate",
        }
    }

    fn of(self, c: &Cell) -> Option<f64> {
        let per = |a: f64, b: i64| (b > 0).then(|| a / b as f64);
        match self {
            Metric::CostUsd => Some(c.usd()),
            Metric::Requests => Some(c.requests as f64),
            Metric::TokensPerRequest => per((c.input_tokens + c.output_tokens) as f64, c.requests),
            Metric::CostPer1kUsd => per(1000.0 * c.usd(), c.priced_tokens),
            Metric::ErrorRate => per(c.errors as f64, c.requests),
            Metric::CacheHitRate => per(c.cache_hits as f64, c.requests),
        }
    }

    /// The smallest scale a score divides by: a flat history must not make
    /// every small move an anomaly.
    fn floor(self, median: f64) -> f64 {
        match self {
            Metric::ErrorRate | Metric::CacheHitRate => 0.01,
            _ => (0.05 * median.abs()).max(1e-9),
        }
    }
}

/// Why a group's cost moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Volume,
    ErrorsRetries,
    ModelMix,
    CacheHitChange,
    TokensPerRequest,
    PriceChange,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Volume => "volume",
            Cause::ErrorsRetries => "errors/retries",
            Cause::ModelMix => "model mix",
            Cause::CacheHitChange => "cache-hit change",
            Cause::TokensPerRequest => "tokens per request",
            Cause::PriceChange => "price change",
        }
    }
}

/// Severity of an anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// Detection settings (`[anomaly]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Days of history the baseline looks back over.
    pub window_days: u32,
    /// |score| at or above which a value is unusual.
    pub min_score: f64,
    /// Noise guard: the group's requests (today or baseline) at least this.
    pub min_requests: i64,
    /// Noise guard: flagged only when |$ impact| >= this (USD), or |change|
    /// >= `min_change` with |$ impact| >= `min_change_impact_usd`.
    pub min_impact_usd: f64,
    pub min_change: f64,
    pub min_change_impact_usd: f64,
    /// `high` from this $ impact or this relative change.
    pub high_impact_usd: f64,
    pub high_change: f64,
}

/// `[anomaly]`: the seasonal baseline and the noise guards.
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnomaly {
    pub window_days: Option<i64>,
    pub min_score: Option<f64>,
    pub min_requests: Option<i64>,
    pub min_impact_usd: Option<f64>,
    pub min_change: Option<f64>,
    pub min_change_impact_usd: Option<f64>,
    pub high_impact_usd: Option<f64>,
    pub high_change: Option<f64>,
    /// Where each new incident is POSTed as JSON (none: no webhook).
    pub webhook_url: Option<String>,
    pub webhook_timeout_secs: Option<u64>,
    pub webhook_attempts: Option<u32>,
    /// All of a run's webhook calls end within this many seconds (default
    /// 120); the incidents left are sent by the next run (exit 5).
    pub webhook_budget_secs: Option<u64>,
    /// Build the rollups missing from the baseline window before a run
    /// (default true): a first run on a lake with history flags anomalies
    /// without a separate `backfill`.
    pub backfill_missing: Option<bool>,
}

impl Settings {
    /// The settings of `[anomaly]`; every problem goes to `p`.
    pub fn validate(raw: &RawAnomaly, p: &mut Problems) -> Settings {
        let d = Settings::default();
        let positive = |name: &str, v: Option<f64>, default: f64, p: &mut Problems| match v {
            None => default,
            Some(x) if x.is_finite() && x >= 0.0 => x,
            Some(x) => {
                p.push(format!("anomaly.{name}: {x} must be a number >= 0"));
                default
            }
        };
        let window_days = match raw.window_days {
            None => d.window_days,
            Some(n @ 7..=366) => n as u32,
            Some(n) => {
                p.push(format!("anomaly.window_days: {n} is out of range 7..=366"));
                d.window_days
            }
        };
        let min_requests = match raw.min_requests {
            None => d.min_requests,
            Some(n) if n >= 0 => n,
            Some(n) => {
                p.push(format!("anomaly.min_requests: {n} must be >= 0"));
                d.min_requests
            }
        };
        Settings {
            window_days,
            min_score: positive("min_score", raw.min_score, d.min_score, p),
            min_requests,
            min_impact_usd: positive("min_impact_usd", raw.min_impact_usd, d.min_impact_usd, p),
            min_change: positive("min_change", raw.min_change, d.min_change, p),
            min_change_impact_usd: positive(
                "min_change_impact_usd",
                raw.min_change_impact_usd,
                d.min_change_impact_usd,
                p,
            ),
            high_impact_usd: positive("high_impact_usd", raw.high_impact_usd, d.high_impact_usd, p),
            high_change: positive("high_change", raw.high_change, d.high_change, p),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_days: 28,
            min_score: 6.0,
            min_requests: 50,
            min_impact_usd: 10.0,
            min_change: 0.3,
            min_change_impact_usd: 1.0,
            high_impact_usd: 50.0,
            high_change: 1.0,
        }
    }
}

/// A flagged anomaly.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub level: &'static str,
    pub key: String,
    pub metric: Metric,
    pub value: f64,
    pub baseline: f64,
    pub score: f64,
    /// (value - baseline) / baseline; `None` when the baseline is 0.
    pub change: Option<f64>,
    /// Estimated dollars the move cost (negative: saved), USD at 6 decimals.
    pub impact_usd: i128,
    pub severity: Severity,
    pub likely_cause: Cause,
    /// The group's cost change split by cause, USD at 6 decimals, largest first.
    pub causes: Vec<(Cause, i128)>,
    /// For `cost_usd`: today's cost and the baseline median, exact USD at
    /// the rollups' scale (what the CSV and pages show).
    #[serde(skip)]
    pub exact: Option<(i128, i128)>,
    /// Baseline days used.
    pub baseline_days: usize,
    /// The group as a filter of (dept, project, task, provider, model).
    #[serde(skip)]
    pub filter: [Option<String>; 5],
    /// The group's models: the mean baseline day, and today.
    #[serde(skip)]
    pub models_before: BTreeMap<String, Cell>,
    #[serde(skip)]
    pub models_after: BTreeMap<String, Cell>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The exact median of money at [`PRICE_SCALE`] (two middles: their mean,
/// half to even).
fn median_exact(mut v: Vec<i128>) -> i128 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        crate::money::div_half_even(v[n / 2 - 1] + v[n / 2], 2)
    }
}

/// Median and robust scale (1.4826 * MAD, floored).
pub fn robust(values: &[f64], metric: Metric) -> (f64, f64) {
    let mut v = values.to_vec();
    let med = median(&mut v);
    let mut dev: Vec<f64> = values.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev);
    (med, (1.4826 * mad).max(metric.floor(med)))
}

fn weekend(d: NaiveDate) -> bool {
    d.weekday().number_from_monday() >= 6
}

/// The spread of a series around its weekly pattern, from every day of the
/// window: the differences between consecutive values of the same weekday
/// (week over week) have twice the variance of one value, so the spread is
/// 1.4826 * median(|difference|) / sqrt(2): robust, and free of the weekly
/// pattern. Four same-weekday values alone say too little about the spread.
/// `None` with fewer than eight differences.
pub fn pooled_scale(values: impl Iterator<Item = (NaiveDate, f64)>) -> Option<f64> {
    let mut by_day: BTreeMap<u32, Vec<(NaiveDate, f64)>> = BTreeMap::new();
    for (d, v) in values {
        by_day
            .entry(d.weekday().num_days_from_monday())
            .or_default()
            .push((d, v));
    }
    let mut diffs = Vec::new();
    for vals in by_day.values_mut() {
        vals.sort_by_key(|(d, _)| *d);
        diffs.extend(vals.windows(2).map(|w| (w[1].1 - w[0].1).abs()));
    }
    (diffs.len() >= 8).then(|| 1.4826 * median(&mut diffs) / std::f64::consts::SQRT_2)
}

/// The baseline days for `date`: the same weekday in the window when at
/// least three have data; else the days of the same kind (weekdays, or
/// weekend days) when at least four have; else none (too little history to
/// tell a Monday from a Sunday).
pub fn baseline_days(
    date: NaiveDate,
    have: &BTreeSet<NaiveDate>,
    window_days: u32,
) -> Vec<NaiveDate> {
    let from = date - chrono::Days::new(u64::from(window_days));
    let in_window: Vec<NaiveDate> = have.range(from..date).copied().collect();
    let same: Vec<NaiveDate> = in_window
        .iter()
        .copied()
        .filter(|d| d.weekday() == date.weekday())
        .collect();
    if same.len() >= 3 {
        return same;
    }
    let kind: Vec<NaiveDate> = in_window
        .into_iter()
        .filter(|d| weekend(*d) == weekend(date))
        .collect();
    if kind.len() >= 4 { kind } else { Vec::new() }
}

fn group<'a>(
    rows: impl Iterator<Item = &'a (Grain, Cell)>,
    level: Level,
) -> BTreeMap<String, Cell> {
    let mut out: BTreeMap<String, Cell> = BTreeMap::new();
    for (g, c) in rows {
        out.entry(level.key(g)).or_default().add(c);
    }
    out
}

/// A group's cells by model (provider/model).
fn models<'a>(
    rows: impl Iterator<Item = &'a (Grain, Cell)>,
    level: Level,
    key: &str,
) -> BTreeMap<String, Cell> {
    let mut out: BTreeMap<String, Cell> = BTreeMap::new();
    for (g, c) in rows.filter(|(g, _)| level.key(g) == key) {
        out.entry(format!("{}/{}", g[3], g[4])).or_default().add(c);
    }
    out
}

fn logmean(a: f64, b: f64) -> f64 {
    if (a - b).abs() <= 1e-12 * a.abs().max(b.abs()) {
        a
    } else {
        (a - b) / (a.ln() - b.ln())
    }
}

/// Split a group's cost change from `before` (the baseline, per model, as a
/// mean day) to `after` (today, per model) by cause, in USD: a log-mean
/// Divisia index over cost = requests x model share x billable share x
/// tokens per billable request x cost per token. Models only on one side
/// count as model mix; the requests added by errors beyond the baseline
/// error rate count as errors/retries, not volume. The causes sum to the
/// change exactly (up to floating point).
pub fn decompose(
    before: &BTreeMap<String, Cell>,
    after: &BTreeMap<String, Cell>,
) -> Vec<(Cause, f64)> {
    let total = |m: &BTreeMap<String, Cell>| {
        let mut t = Cell::default();
        m.values().for_each(|c| t.add(c));
        t
    };
    let (b, a) = (total(before), total(after));
    let mut eff: BTreeMap<Cause, f64> = BTreeMap::new();
    let factors = |c: &Cell, r: f64| -> Option<[f64; 5]> {
        let billable = (c.requests - c.cache_hits) as f64;
        let (req, tok, usd) = (c.requests as f64, c.priced_tokens as f64, c.usd());
        (req > 0.0 && billable > 0.0 && tok > 0.0 && usd > 0.0 && r > 0.0)
            .then(|| [r, req / r, billable / req, tok / billable, usd / tok])
    };
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for m in names {
        let (c0, c1) = (
            before.get(m).copied().unwrap_or_default(),
            after.get(m).copied().unwrap_or_default(),
        );
        match (
            factors(&c0, b.requests as f64),
            factors(&c1, a.requests as f64),
        ) {
            (Some(f0), Some(f1)) => {
                let w = logmean(c1.usd(), c0.usd());
                let causes = [
                    Cause::Volume,
                    Cause::ModelMix,
                    Cause::CacheHitChange,
                    Cause::TokensPerRequest,
                    Cause::PriceChange,
                ];
                for (k, cause) in causes.iter().enumerate() {
                    *eff.entry(*cause).or_default() += w * (f1[k] / f0[k]).ln();
                }
            }
            _ => *eff.entry(Cause::ModelMix).or_default() += c1.usd() - c0.usd(),
        }
    }
    // Requests beyond the baseline error rate's share of today's volume are
    // retries: their part of the volume effect is errors/retries.
    let volume = eff.get(&Cause::Volume).copied().unwrap_or(0.0);
    if b.requests > 0 && a.requests > b.requests && volume > 0.0 {
        let expected_errors = b.errors as f64 / b.requests as f64 * a.requests as f64;
        let extra = (a.errors as f64 - expected_errors).max(0.0);
        let share = (extra / (a.requests - b.requests) as f64).min(1.0);
        eff.insert(Cause::Volume, volume * (1.0 - share));
        eff.insert(Cause::ErrorsRetries, volume * share);
    }
    let mut out: Vec<(Cause, f64)> = eff.into_iter().filter(|(_, v)| v.abs() > 1e-9).collect();
    out.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
    out
}

fn usd6(v: f64) -> i128 {
    (v * 1e6).round() as i128
}

/// An anomaly's estimated effect on the day's cost, in USD: the change of
/// `metric` from its baseline `med` to `v`, priced at the group's cost.
fn impact_usd(metric: Metric, (v, med): (f64, f64), c1: &Cell, (mean, n): (&Cell, f64)) -> f64 {
    let per_request = |c: &Cell| {
        if c.requests > 0 {
            c.usd() / c.requests as f64
        } else {
            0.0
        }
    };
    match metric {
        Metric::CostUsd => v - med,
        Metric::Requests => (v - med) * (mean.usd() / n) / (mean.requests as f64 / n).max(1.0),
        Metric::TokensPerRequest | Metric::CostPer1kUsd => {
            if v > 0.0 {
                c1.usd() * (1.0 - med / v)
            } else {
                0.0
            }
        }
        Metric::ErrorRate => (v - med) * c1.requests as f64 * per_request(c1),
        Metric::CacheHitRate => {
            let billable = (c1.requests - c1.cache_hits).max(1) as f64;
            -(v - med) * c1.requests as f64 * c1.usd() / billable
        }
    }
}

/// High: a large impact or change; medium: a noticed impact with a big
/// change; low: the rest of what is flagged.
fn severity(settings: &Settings, impact: f64, change: Option<f64>, big_change: bool) -> Severity {
    if impact.abs() >= settings.high_impact_usd
        || change.is_some_and(|c| c.abs() >= settings.high_change)
    {
        Severity::High
    } else if impact.abs() >= settings.min_impact_usd && big_change {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// The likely cause of an anomaly of `metric`, given the group's cost causes.
fn likely_cause(metric: Metric, causes: &[(Cause, f64)]) -> Cause {
    match metric {
        Metric::ErrorRate => Cause::ErrorsRetries,
        Metric::CacheHitRate => Cause::CacheHitChange,
        Metric::TokensPerRequest => Cause::TokensPerRequest,
        Metric::Requests => causes
            .iter()
            .map(|c| c.0)
            .find(|c| matches!(c, Cause::Volume | Cause::ErrorsRetries))
            .unwrap_or(Cause::Volume),
        Metric::CostPer1kUsd => causes
            .iter()
            .map(|c| c.0)
            .find(|c| !matches!(c, Cause::Volume | Cause::ErrorsRetries))
            .unwrap_or(Cause::PriceChange),
        Metric::CostUsd => causes.first().map_or(Cause::Volume, |c| c.0),
    }
}

/// Look for anomalies on `date` in `today`, against the rollups of `history`.
pub fn detect(
    date: NaiveDate,
    today: &DayRows,
    history: &BTreeMap<NaiveDate, DayRows>,
    settings: &Settings,
) -> Vec<Anomaly> {
    let have: BTreeSet<NaiveDate> = history.keys().copied().collect();
    let days = baseline_days(date, &have, settings.window_days);
    if days.len() < 3 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for level in Level::ALL {
        let now = group(today.iter(), level);
        let past: Vec<BTreeMap<String, Cell>> = days
            .iter()
            .map(|d| group(history[d].iter(), level))
            .collect();
        // Every day of the window, for the scale (see `pooled_scale`).
        let from = date - chrono::Days::new(u64::from(settings.window_days));
        let window: Vec<(NaiveDate, BTreeMap<String, Cell>)> = history
            .range(from..date)
            .map(|(d, rows)| (*d, group(rows.iter(), level)))
            .collect();
        let keys: BTreeSet<&String> = now
            .keys()
            .chain(past.iter().flat_map(|p| p.keys()))
            .collect();
        for key in keys {
            let c1 = now.get(key).copied().unwrap_or_default();
            let cells: Vec<Cell> = past
                .iter()
                .map(|p| p.get(key).copied().unwrap_or_default())
                .collect();
            let mut reqs: Vec<f64> = cells.iter().map(|c| c.requests as f64).collect();
            let base_requests = median(&mut reqs);
            if (c1.requests as f64).max(base_requests) < settings.min_requests as f64 {
                continue;
            }
            let mut mean = Cell::default();
            cells.iter().for_each(|c| mean.add(c));
            let n = cells.len() as f64;
            for metric in Metric::ALL {
                let Some(v) = metric.of(&c1) else { continue };
                let series: Vec<f64> = cells.iter().filter_map(|c| metric.of(c)).collect();
                if series.len() < 3 {
                    continue;
                }
                let (med, own) = robust(&series, metric);
                let pooled = pooled_scale(window.iter().filter_map(|(d, g)| {
                    metric
                        .of(&g.get(key).copied().unwrap_or_default())
                        .map(|v| (*d, v))
                }));
                let scale = own.max(pooled.unwrap_or(0.0));
                let score = (v - med) / scale;
                if score.abs() < settings.min_score {
                    continue;
                }
                let change = (med != 0.0).then(|| (v - med) / med.abs());
                // Money stays exact: today's cost and the median of the baseline days'.
                let exact = (metric == Metric::CostUsd).then(|| {
                    (
                        c1.cost,
                        median_exact(cells.iter().map(|c| c.cost).collect()),
                    )
                });
                let impact = impact_usd(metric, (v, med), &c1, (&mean, n));
                let big_change = change.is_some_and(|c| c.abs() >= settings.min_change);
                let noticed = impact.abs() >= settings.min_impact_usd
                    || (big_change && impact.abs() >= settings.min_change_impact_usd);
                if !noticed {
                    continue;
                }
                let severity = severity(settings, impact, change, big_change);
                // Causes: the group's cost change over its models.
                let before: BTreeMap<String, Cell> = {
                    let mut sum: BTreeMap<String, Cell> = BTreeMap::new();
                    for d in &days {
                        for (m, c) in models(history[d].iter(), level, key) {
                            sum.entry(m).or_default().add(&c);
                        }
                    }
                    sum.into_iter()
                        .map(|(m, c)| (m, scale_cell(&c, n)))
                        .collect()
                };
                let after = models(today.iter(), level, key);
                let causes = decompose(&before, &after);
                let filter = today
                    .iter()
                    .chain(days.iter().flat_map(|d| history[d].iter()))
                    .find(|(g, _)| level.key(g) == *key)
                    .map(|(g, _)| level.filter(g))
                    .unwrap_or_default();
                let likely = likely_cause(metric, &causes);
                out.push(Anomaly {
                    level: level.dimension(),
                    key: key.clone(),
                    metric,
                    value: v,
                    baseline: med,
                    score,
                    change,
                    impact_usd: match exact {
                        Some((now, base)) => rescale(now - base, PRICE_SCALE, OUT_SCALE),
                        None => usd6(impact),
                    },
                    exact,
                    severity,
                    likely_cause: likely,
                    causes: causes.iter().map(|(c, v)| (*c, usd6(*v))).collect(),
                    baseline_days: days.len(),
                    filter,
                    models_before: before,
                    models_after: after,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(
                b.impact_usd
                    .unsigned_abs()
                    .cmp(&a.impact_usd.unsigned_abs()),
            )
            .then(a.level.cmp(b.level))
            .then(a.key.cmp(&b.key))
            .then(a.metric.cmp(&b.metric))
    });
    out
}

/// A mean day: a sum of `n` days' cells divided by `n` (money stays exact
/// enough for a baseline: rounded at the rollups' scale).
fn scale_cell(c: &Cell, n: f64) -> Cell {
    let d = |v: i64| (v as f64 / n).round() as i64;
    Cell {
        requests: d(c.requests),
        errors: d(c.errors),
        cache_hits: d(c.cache_hits),
        input_tokens: d(c.input_tokens),
        output_tokens: d(c.output_tokens),
        priced_tokens: d(c.priced_tokens),
        cost: crate::money::div_half_even(c.cost, n.round().max(1.0) as i128),
        unpriced_requests: d(c.unpriced_requests),
    }
}

/// `volume +12.30; model mix -1.05` (USD).
pub fn causes_text(causes: &[(Cause, i128)]) -> String {
    causes
        .iter()
        .map(|(c, v)| {
            let t = format_scaled(rescale(*v, OUT_SCALE, 2), 2);
            format!("{} {}{t}", c.name(), if *v >= 0 { "+" } else { "" })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
