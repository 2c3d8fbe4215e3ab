//! The report model: one typed view of a day that the dashboards, the mail
//! and the index page all render from, built from the very result batches the
//! CSV exports are written from (and the exact rollup rows), so HTML and CSV
//! cannot disagree. Comparisons with earlier days come from the rollups
//! (`crate::history`), never from raw logs. Formatting for people happens
//! here (`report::format`); charts are drawn from this model. Pure logic.

use std::collections::BTreeMap;

use chrono::{Datelike, Days};
use serde::Serialize;

use crate::calendar::Day;
use crate::error::{Error, Result};
use crate::history::{DayTotals, History, ROLLUP_MONEY_SCALE, percentile};
use crate::queries::rows::{DataQuality, Dec, Hourly, OpsByModel, OpsDaily, RollupDaily};
use crate::report::alerts::{Alert, AlertRules, Rates, breaches};
use crate::report::format;

/// A KPI tile: the day, the trailing 7 days and the change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Tile {
    pub key: String,
    pub label: String,
    pub value: String,
    pub trailing: String,
    pub change: String,
    pub alert: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelRow {
    pub provider: String,
    pub model: String,
    pub requests: String,
    pub qps_avg: String,
    pub qps_peak: String,
    pub error_rate: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub cache_hit_rate: String,
    pub citation_rate: String,
    pub reviewed: String,
    pub review_pass_rate: String,
    pub duplicates_dropped: String,
    /// Metrics over their thresholds for this model.
    pub alerts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HourRow {
    /// Local start time of the hour (`00:00`; DST days skip or repeat one).
    pub label: String,
    pub requests: i64,
    pub error_rate: Option<f64>,
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ops {
    pub tiles: Vec<Tile>,
    pub models: Vec<ModelRow>,
    pub hours: Vec<HourRow>,
    /// Days of rollups behind the trailing values (up to 7).
    pub trailing_days: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Share {
    pub label: String,
    pub requests: String,
    /// `—` when none of the requests was priced.
    pub amount: String,
    pub share: String,
    pub unpriced_requests: String,
    /// The priced amount, for the charts (0 without one).
    #[serde(skip)]
    pub value: f64,
    #[serde(skip)]
    pub priced: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelCost {
    pub provider: String,
    pub model: String,
    pub requests: String,
    pub spend: String,
    pub cost_per_1k: String,
    pub cache_savings: String,
    pub citation_rate: String,
    pub per_approved: String,
    pub unpriced_requests: String,
    #[serde(skip)]
    pub cost_per_1k_value: Option<f64>,
    #[serde(skip)]
    pub citation_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Driver {
    pub dept: String,
    pub project: String,
    pub task: String,
    pub provider: String,
    pub model: String,
    pub requests: String,
    pub spend: String,
    pub share: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrendPoint {
    pub date: String,
    pub amount: Option<String>,
    #[serde(skip)]
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finance {
    pub total: String,
    /// The exact total to 6 decimals (the CSVs' precision).
    pub total_exact: String,
    pub day_before: String,
    pub change_day_over_day: String,
    pub month_to_date: String,
    /// Days of the month so far with a rollup (the report day included).
    pub month_days: usize,
    pub month_days_missing: Vec<String>,
    pub requests: String,
    pub unpriced_requests: String,
    pub cache_savings: String,
    pub per_approved: String,
    pub approved: String,
    pub by_dept: Vec<Share>,
    pub by_project: Vec<Share>,
    pub per_model: Vec<ModelCost>,
    pub drivers: Vec<Driver>,
    pub trend: Vec<TrendPoint>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnpricedRow {
    pub provider: String,
    pub model: String,
    pub requests: String,
}

/// Facts about the input the manifest carries.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InputFacts {
    pub rows_listed: u64,
    pub late_rows: u64,
    pub early_rows: u64,
    pub rejected_rows: u64,
    pub logged_unconverted: BTreeMap<String, u64>,
    /// Objects listed among the inputs and not read: (key, reason, hidden).
    pub skipped_objects: Vec<(String, String, bool)>,
    /// Optional columns absent from every object of the day.
    pub absent_columns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Quality {
    pub unpriced: Vec<UnpricedRow>,
    pub unpriced_total: String,
    pub duplicates_dropped: String,
    pub duplicate_conflicts: String,
    pub late_rows: String,
    pub early_rows: String,
    pub token_violations: String,
    pub total_tokens_mismatch: String,
    pub rejected_rows: String,
    pub logged_unconverted: Vec<(String, String)>,
    /// Objects listed and not read: key and reason.
    pub skipped_objects: Vec<(String, String)>,
    /// Optional columns absent from every object of the day.
    pub absent_columns: Vec<String>,
    /// Nothing to report.
    pub clean: bool,
}

/// The finance dashboard's reconciliation section (from [`crate::reconcile`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReconSection {
    pub day: Vec<ReconLine>,
    pub month_to_date: Vec<ReconLine>,
    /// `1 – 7 Mar 2026`.
    pub month_label: String,
    /// Days of the month without a rollup (their usage is missing from the
    /// month-to-date computed side).
    pub days_without_usage: Vec<String>,
    pub logged: Vec<DriftView>,
    /// Lines (day and month to date) that are not `ok`.
    pub not_ok: usize,
}

/// A reconciliation line for people.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReconLine {
    pub provider: String,
    pub model: String,
    pub computed: String,
    pub invoiced: String,
    pub delta: String,
    pub delta_pct: String,
    pub status: String,
    pub explanation: String,
}

/// Logged against computed cost for one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftView {
    pub provider: String,
    pub model: String,
    pub requests: String,
    pub computed: String,
    pub logged: String,
    pub delta: String,
    pub status: String,
}

/// The reconciliation section of a day.
pub fn reconciliation(r: &crate::reconcile::Reconciliation) -> ReconSection {
    use crate::money::OUT_SCALE;
    let lines = |ls: &[crate::reconcile::Line]| -> Vec<ReconLine> {
        ls.iter()
            .map(|l| ReconLine {
                provider: l.provider.clone(),
                model: if l.model.is_empty() {
                    "(all models)".into()
                } else {
                    l.model.clone()
                },
                computed: l
                    .computed_usd
                    .map_or("—".into(), |v| format::usd(v, OUT_SCALE)),
                invoiced: l
                    .invoiced_usd
                    .map_or("—".into(), |v| format::usd(v, OUT_SCALE)),
                delta: l
                    .delta_usd
                    .map_or("—".into(), |v| format::usd(v, OUT_SCALE)),
                delta_pct: l.delta_pct.map_or("—".into(), |p| format!("{p:+.2}%")),
                status: l.status.as_str().replace('_', " "),
                explanation: l.explanation.clone(),
            })
            .collect()
    };
    let month_label = match (r.month_start, r.date) {
        (Some(a), Some(b)) if a == b => b.format("%-d %b %Y").to_string(),
        (Some(a), Some(b)) => format!("{} – {}", a.format("%-d"), b.format("%-d %b %Y")),
        _ => String::new(),
    };
    ReconSection {
        day: lines(&r.day),
        month_to_date: lines(&r.month_to_date),
        month_label,
        days_without_usage: r.days_without_usage.iter().map(|d| d.to_string()).collect(),
        logged: r
            .logged
            .iter()
            .map(|l| DriftView {
                provider: l.provider.clone(),
                model: l.model.clone(),
                requests: format::int(l.requests),
                computed: format::usd(l.computed_usd, OUT_SCALE),
                logged: format::usd(l.logged_usd, OUT_SCALE),
                delta: format::usd(l.delta_usd, OUT_SCALE),
                status: l.status.to_string(),
            })
            .collect(),
        not_ok: r.not_ok(),
    }
}

/// Anomalies listed on a page (all of them are in anomalies.csv).
pub const ANOMALIES_SHOWN: usize = 25;

fn anomaly_line(a: &crate::anomaly::Anomaly) -> AnomalyLine {
    use crate::anomaly::Metric;
    let show = |v: f64, exact: Option<i128>| match (a.metric, exact) {
        (Metric::CostUsd, Some(usd)) => format::usd(usd, crate::money::PRICE_SCALE),
        (Metric::CostUsd, None) => format::usd((v * 1e6).round() as i128, 6),
        (Metric::CostPer1kUsd, _) => format!("${v:.4}"),
        (Metric::Requests, _) => format::int(v.round() as i64),
        (Metric::TokensPerRequest, _) => format!("{v:.0}"),
        (Metric::ErrorRate | Metric::CacheHitRate, _) => format::percent(v, 2),
    };
    AnomalyLine {
        dimension: a.level.to_string(),
        key: a.key.clone(),
        metric: a.metric.name().to_string(),
        value: show(a.value, a.exact.map(|e| e.0)),
        baseline: show(a.baseline, a.exact.map(|e| e.1)),
        change: a
            .change
            .map_or("—".into(), |c| format!("{:+.0}%", c * 100.0)),
        impact: format::usd(a.impact_usd, crate::money::OUT_SCALE),
        severity: a.severity.name().to_string(),
        likely_cause: a.likely_cause.name().to_string(),
        causes: crate::anomaly::causes_text(&a.causes),
    }
}

/// A flagged anomaly (filled by the anomaly stage).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnomalyLine {
    pub dimension: String,
    pub key: String,
    pub metric: String,
    pub value: String,
    pub baseline: String,
    pub change: String,
    pub impact: String,
    pub severity: String,
    pub likely_cause: String,
    pub causes: String,
}

/// Everything the dashboards and mails of one day show.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub date: String,
    pub date_long: String,
    pub zone: String,
    pub hours_in_day: i64,
    /// Preliminary or final, and what a restatement replaces.
    pub standing: String,
    pub alerts: Vec<Alert>,
    pub ops: Ops,
    pub finance: Finance,
    pub quality: Quality,
    pub reconciliation: ReconSection,
    pub anomalies: Vec<AnomalyLine>,
    /// All anomalies flagged (the pages show the first [`ANOMALIES_SHOWN`]).
    pub anomalies_total: usize,
    /// Each configured budget on the day.
    pub budgets: Vec<BudgetLine>,
    /// Raw headline figures (for mail subjects and the index).
    pub headline_requests: i64,
    pub headline_spend: String,
}

/// What the model is built from.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub day: &'a Day,
    /// Preliminary or final, and what a restatement replaces (one sentence).
    pub standing: String,
    pub ops_daily: &'a [OpsDaily],
    pub ops_by_model: &'a [OpsByModel],
    pub hourly: &'a [Hourly],
    pub data_quality: &'a [DataQuality],
    pub rollup_daily: &'a [RollupDaily],
    /// Rollups of earlier days (at least the 30 days before).
    pub history: &'a History,
    pub facts: &'a InputFacts,
    pub rules: &'a AlertRules,
    /// `None` where a report is built without invoices (tests of other sections).
    pub reconciliation: Option<&'a crate::reconcile::Reconciliation>,
    pub anomalies: &'a [crate::anomaly::Anomaly],
    pub budgets: &'a [crate::budget::Row],
}

/// A budget on the day, for people (`budgets.csv` has the exact figures).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetLine {
    pub name: String,
    /// `dept=research`, or `all spend`.
    pub scope: String,
    pub dept: Option<String>,
    pub month: String,
    pub budget: String,
    pub actual: String,
    /// Month to date over budget: `82%`.
    pub actual_share: String,
    pub forecast: String,
    pub low: String,
    pub high: String,
    pub forecast_share: String,
    /// `ok`, `at_risk` or `over` (as in `budgets.csv`).
    pub status: String,
    /// `on track`, `at risk`, `over budget`.
    pub status_label: String,
    pub unpriced_requests: String,
    pub days: String,
    pub note: String,
    /// Key of its burn-up chart in the page's charts.
    pub chart: String,
    #[serde(skip)]
    pub burn: Vec<crate::budget::Burn>,
    #[serde(skip)]
    pub budget_usd: f64,
}

fn budget_line(i: usize, r: &crate::budget::Row) -> BudgetLine {
    use crate::budget::Status;
    let m = |v: i128| format::usd(v, crate::money::OUT_SCALE);
    BudgetLine {
        name: shorten(&r.name),
        scope: shorten(&r.scope.describe()),
        dept: r.scope.dept.clone(),
        month: r.month.clone(),
        budget: m(r.budget),
        actual: m(r.mtd_actual),
        actual_share: format::percent(r.mtd_actual as f64 / r.budget as f64, 0),
        forecast: m(r.forecast),
        low: m(r.forecast_low),
        high: m(r.forecast_high),
        forecast_share: format::percent(r.forecast_share(), 0),
        status: r.status.name().to_string(),
        status_label: match r.status {
            Status::Ok => "on track",
            Status::AtRisk => "at risk",
            Status::Over => "over budget",
        }
        .to_string(),
        unpriced_requests: format::int(r.mtd_unpriced_requests),
        days: format!("{} of {}", r.days_elapsed, r.days_in_month),
        note: r.note(),
        chart: format!("budget_{}", i + 1),
        burn: r.burn.clone(),
        budget_usd: r.budget as f64 / 1e6,
    }
}

/// Longest text (in characters) shown whole on dashboards and in mail.
pub const MAX_LABEL_CHARS: usize = 200;

/// A logged value for display: whole when short; else its first
/// [`MAX_LABEL_CHARS`] characters, its length and a digest, so that two long
/// values stay apart. The CSVs hold every value whole.
///
/// Control characters (line breaks, tabs, C0 and C1 controls) and the
/// Unicode line, paragraph and bidirectional controls are shown escaped
/// (`\n`, `\u{202e}`): a logged value must not forge a line in the
/// plain-text mail nor reorder the text around it.
pub fn shorten(value: &str) -> String {
    let chars = value.chars().count();
    if chars <= MAX_LABEL_CHARS {
        return escape_controls(value);
    }
    let head: String = value.chars().take(MAX_LABEL_CHARS).collect();
    let digest = &crate::manifest::sha256(value.as_bytes())[..8];
    format!(
        "{}… ({chars} characters, #{digest})",
        escape_controls(&head)
    )
}

/// `value` with control and bidirectional characters written as escapes.
pub fn escape_controls(value: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !value.chars().any(hidden) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

const S: i8 = ROLLUP_MONEY_SCALE;

fn usd(v: Option<i128>) -> String {
    v.map(|v| format::usd(v, S)).unwrap_or_else(|| "—".into())
}

fn as_f64(v: i128) -> f64 {
    v as f64 / 10f64.powi(S as i32)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "—".into())
}

// ---- building ------------------------------------------------------------------

/// One exact rollup row.
#[derive(Debug, Clone, Default)]
struct Line {
    dept: String,
    project: String,
    task: String,
    provider: String,
    model: String,
    requests: i64,
    cost: Option<i128>,
    savings: Option<i128>,
    priced_tokens: i64,
    approved: i64,
    citation_sum: i128,
    citation_requests: i64,
    unpriced: i64,
}

/// The exact rollup rows, their labels shortened for display.
fn lines(rows: &[RollupDaily]) -> Vec<Line> {
    let money = |d: Option<Dec>| d.map(|d| d.at(S));
    rows.iter()
        .map(|r| Line {
            dept: shorten(&r.dept),
            project: shorten(&r.project),
            task: shorten(&r.task),
            provider: shorten(&r.provider),
            model: shorten(&r.model),
            requests: r.requests.unwrap_or(0),
            cost: money(r.cost_usd),
            savings: money(r.cache_savings_usd),
            priced_tokens: r.priced_tokens.unwrap_or(0),
            approved: r.human_approved.unwrap_or(0),
            citation_sum: r.citation_sum.map_or(0, |d| d.at(15)),
            citation_requests: r.citation_requests.unwrap_or(0),
            unpriced: r.unpriced_requests.unwrap_or(0),
        })
        .collect()
}

fn add(a: Option<i128>, b: Option<i128>) -> Option<i128> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// Totals by a key, largest spend first (ties by label); keys whose
/// requests were all unpriced come last, with no amount (never $0).
fn shares(lines: &[Line], key: impl Fn(&Line) -> String, total: Option<i128>) -> Vec<Share> {
    // (cost, requests, unpriced requests) by key.
    type Acc = (Option<i128>, i64, i64);
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for l in lines {
        let e = by.entry(key(l)).or_insert((None, 0, 0));
        e.0 = add(e.0, l.cost);
        e.1 += l.requests;
        e.2 += l.unpriced;
    }
    let mut v: Vec<(String, Acc)> = by.into_iter().collect();
    // Priced before unpriced (None sorts first ascending, so compare reversed).
    v.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    v.into_iter()
        .map(|(label, (cost, requests, unpriced))| Share {
            requests: format::int(requests),
            amount: usd(cost),
            share: match (cost, total) {
                (Some(c), Some(t)) if t > 0 => format::percent(c as f64 / t as f64, 1),
                _ => "—".into(),
            },
            unpriced_requests: format::int(unpriced),
            value: cost.map(as_f64).unwrap_or(0.0),
            priced: cost.is_some(),
            label,
        })
        .collect()
}

/// Build the model of a day.
pub fn build(inp: &Inputs<'_>) -> Result<Report> {
    let day = inp.day;
    let date = day.date;
    let today = crate::history::totals_of(inp.rollup_daily);
    let ops_today = inp
        .ops_daily
        .first()
        .ok_or_else(|| Error::Internal("report: ops_daily is empty".into()))?;
    let mut alerts = Vec::new();
    let (tiles, trailing_days) = tiles(inp, ops_today, &mut alerts);
    let models = model_rows(inp, &mut alerts);
    let finance = finance(inp, &today);
    Ok(Report {
        date: date.to_string(),
        date_long: date.format("%A %-d %B %Y").to_string(),
        zone: day.zone.to_string(),
        hours_in_day: day.seconds() / 3600,
        standing: inp.standing.clone(),
        alerts,
        ops: Ops {
            tiles,
            models,
            hours: hours(day, inp.hourly),
            trailing_days,
        },
        headline_requests: ops_today.requests.unwrap_or(0),
        headline_spend: finance.total.clone(),
        finance,
        quality: quality(inp, &today),
        reconciliation: inp.reconciliation.map(reconciliation).unwrap_or_default(),
        anomalies: inp
            .anomalies
            .iter()
            .take(ANOMALIES_SHOWN)
            .map(anomaly_line)
            .collect(),
        anomalies_total: inp.anomalies.len(),
        budgets: inp
            .budgets
            .iter()
            .enumerate()
            .map(|(i, b)| budget_line(i, b))
            .collect(),
    })
}

/// The ops tiles: the day against the 7 days before it; the day's alerts
/// go to `alerts`. Returns the tiles and the days behind the trailing values.
fn tiles(inp: &Inputs<'_>, o: &OpsDaily, alerts: &mut Vec<Alert>) -> (Vec<Tile>, usize) {
    let day = inp.day;
    let date = day.date;
    let week_from = date.checked_sub_days(Days::new(7)).unwrap_or(date);
    let week_to = date.pred_opt().unwrap_or(date);
    let (week, week_days) = inp.history.total(week_from, week_to);
    let week_seconds: i64 = inp
        .history
        .days
        .range(week_from..=week_to)
        .map(|(d, _)| Day::new(*d, day.zone).seconds())
        .sum();
    let p95_week = percentile(&inp.history.latency(week_from, week_to), 0.95);
    let rate_tile =
        |key: &str, label: &str, now: Option<f64>, before: Option<f64>, alert: bool| Tile {
            key: key.into(),
            label: label.into(),
            value: opt(now, |v| format::percent(v, 2)),
            trailing: opt(before, |v| format::percent(v, 2)),
            change: match (now, before) {
                (Some(n), Some(b)) => format::change_pp(n, b),
                _ => String::new(),
            },
            alert,
        };
    let day_rates = Rates {
        error_rate: o.error_rate,
        p95: o.latency_p95_ms,
        cache_hit_rate: o.cache_hit_rate,
        citation_rate: o.citation_rate_mean,
        review_pass_rate: o.human_review_pass_rate,
    };
    let day_breaches = breaches(&day_rates, &inp.rules.global);
    let fired: Vec<bool> = day_breaches.iter().map(Option::is_some).collect();
    for a in day_breaches.into_iter().flatten() {
        alerts.push(a.at("all models"));
    }
    let requests_today = o.requests.unwrap_or(0);
    let week_avg = (week_days > 0).then(|| week.requests as f64 / week_days as f64);
    let qps_week = (week_seconds > 0).then(|| week.requests as f64 / week_seconds as f64);
    let change = |now: Option<f64>, before: Option<f64>| match (now, before) {
        (Some(n), Some(w)) => format::change(n, w).unwrap_or_default(),
        _ => String::new(),
    };
    let tiles = vec![
        Tile {
            key: "requests".into(),
            label: "Requests".into(),
            value: format::int(requests_today),
            trailing: opt(week_avg, |v| {
                format!("{} / day", format::int(v.round() as i64))
            }),
            change: change(Some(requests_today as f64), week_avg),
            alert: false,
        },
        Tile {
            key: "qps".into(),
            label: "QPS (avg / peak)".into(),
            value: format!(
                "{} / {}",
                opt(o.qps_avg, format::qps),
                opt(o.qps_peak, format::qps)
            ),
            trailing: opt(qps_week, format::qps),
            change: change(o.qps_avg, qps_week),
            alert: false,
        },
        rate_tile(
            "error_rate",
            "Error rate",
            o.error_rate,
            week.error_rate(),
            fired[0],
        ),
        Tile {
            key: "p95".into(),
            label: "p95 latency".into(),
            value: opt(o.latency_p95_ms, format::ms),
            trailing: opt(p95_week, format::ms),
            change: change(o.latency_p95_ms, p95_week),
            alert: fired[1],
        },
        rate_tile(
            "cache_hit_rate",
            "Cache hit rate",
            o.cache_hit_rate,
            week.cache_hit_rate(),
            fired[2],
        ),
        rate_tile(
            "citation_rate",
            "Citation rate",
            o.citation_rate_mean,
            week.citation_rate_mean(),
            fired[3],
        ),
        rate_tile(
            "review_pass_rate",
            "Review pass rate",
            o.human_review_pass_rate,
            week.review_pass_rate(),
            fired[4],
        ),
    ];
    (tiles, week_days)
}

/// The per-model table; each model's alerts go to `alerts` too.
fn model_rows(inp: &Inputs<'_>, alerts: &mut Vec<Alert>) -> Vec<ModelRow> {
    let mut models = Vec::new();
    for r in inp.ops_by_model {
        let (provider, model) = (shorten(&r.provider), shorten(&r.model));
        let t = inp.rules.for_model(&provider, &model);
        let scope = format!("{provider}/{model}");
        let rates = Rates {
            error_rate: r.error_rate,
            p95: r.latency_p95_ms,
            cache_hit_rate: r.cache_hit_rate,
            citation_rate: r.citation_rate_mean,
            review_pass_rate: r.human_review_pass_rate,
        };
        let mut model_alerts = Vec::new();
        for a in breaches(&rates, &t).into_iter().flatten() {
            model_alerts.push(a.metric.to_string());
            alerts.push(a.at(&scope));
        }
        models.push(ModelRow {
            requests: opt(r.requests, format::int),
            qps_avg: opt(r.qps_avg, format::qps),
            qps_peak: opt(r.qps_peak, format::qps),
            error_rate: opt(r.error_rate, |v| format::percent(v, 2)),
            p50: opt(r.latency_p50_ms, format::ms),
            p95: opt(r.latency_p95_ms, format::ms),
            p99: opt(r.latency_p99_ms, format::ms),
            cache_hit_rate: opt(r.cache_hit_rate, |v| format::percent(v, 2)),
            citation_rate: opt(r.citation_rate_mean, |v| format::percent(v, 1)),
            reviewed: opt(r.human_reviewed, format::int),
            review_pass_rate: opt(r.human_review_pass_rate, |v| format::percent(v, 1)),
            duplicates_dropped: opt(r.duplicates_dropped, format::int),
            alerts: model_alerts,
            provider,
            model,
        });
    }
    models
}

/// Every hour of the day, those without requests at zero (no error rate or
/// latency: a gap in the charts, not a zero).
fn hours(day: &Day, hourly: &[Hourly]) -> Vec<HourRow> {
    let by_hour: BTreeMap<i64, &Hourly> = hourly.iter().map(|h| (h.hour, h)).collect();
    (0..day.seconds().div_euclid(3600))
        .map(|h| {
            let start = day.start + chrono::Duration::hours(h);
            let (requests, error_rate, p95_ms) = by_hour.get(&h).map_or((0, None, None), |r| {
                (r.requests, r.error_rate, r.latency_p95_ms)
            });
            HourRow {
                label: start.with_timezone(&day.zone).format("%H:%M").to_string(),
                requests,
                error_rate,
                p95_ms,
            }
        })
        .collect()
}

/// Spend by model: the exact rollup lines summed per (provider, model).
fn per_model(lines: &[Line]) -> Vec<ModelCost> {
    let mut per_model: BTreeMap<(String, String), Line> = BTreeMap::new();
    for l in lines {
        let e = per_model
            .entry((l.provider.clone(), l.model.clone()))
            .or_default();
        e.requests += l.requests;
        e.cost = add(e.cost, l.cost);
        e.savings = add(e.savings, l.savings);
        e.priced_tokens += l.priced_tokens;
        e.approved += l.approved;
        e.citation_sum += l.citation_sum;
        e.citation_requests += l.citation_requests;
        e.unpriced += l.unpriced;
    }
    per_model
        .into_iter()
        .map(|((provider, model), l)| {
            let cpk = match l.cost {
                Some(c) if l.priced_tokens > 0 => Some(crate::money::div_half_even(
                    c * 1000,
                    l.priced_tokens as i128,
                )),
                _ => None,
            };
            let citation = (l.citation_requests > 0)
                .then(|| l.citation_sum as f64 / 1e15 / l.citation_requests as f64);
            ModelCost {
                requests: format::int(l.requests),
                spend: usd(l.cost),
                cost_per_1k: cpk
                    .map(|v| format::usd6(v, S))
                    .unwrap_or_else(|| "—".into()),
                cache_savings: usd(l.savings),
                citation_rate: opt(citation, |v| format::percent(v, 1)),
                per_approved: match l.cost {
                    Some(c) if l.approved > 0 => format::usd(c / l.approved as i128, S),
                    _ => "—".into(),
                },
                unpriced_requests: format::int(l.unpriced),
                cost_per_1k_value: cpk.map(as_f64),
                citation_value: citation,
                provider,
                model,
            }
        })
        .collect()
}

/// The ten costliest rollup lines, each with its share of the day.
fn drivers(lines: &[Line], total: Option<i128>) -> Vec<Driver> {
    let mut drivers: Vec<&Line> = lines.iter().filter(|l| l.cost.is_some()).collect();
    drivers.sort_by(|a, b| {
        b.cost.cmp(&a.cost).then_with(|| {
            (&a.dept, &a.project, &a.task, &a.provider, &a.model).cmp(&(
                &b.dept,
                &b.project,
                &b.task,
                &b.provider,
                &b.model,
            ))
        })
    });
    drivers
        .into_iter()
        .take(10)
        .map(|l| Driver {
            dept: l.dept.clone(),
            project: l.project.clone(),
            task: l.task.clone(),
            provider: l.provider.clone(),
            model: l.model.clone(),
            requests: format::int(l.requests),
            spend: usd(l.cost),
            share: match (l.cost, total) {
                (Some(c), Some(t)) if t > 0 => format::percent(c as f64 / t as f64, 1),
                _ => "—".into(),
            },
        })
        .collect()
}

/// The 30-day spend trend ending on the day (days without a rollup: no amount).
fn trend(inp: &Inputs<'_>, total: Option<i128>) -> Vec<TrendPoint> {
    let date = inp.day.date;
    let trend_from = date.checked_sub_days(Days::new(29)).unwrap_or(date);
    trend_from
        .iter_days()
        .take_while(|d| *d <= date)
        .map(|d| {
            let cost = if d == date {
                total
            } else {
                inp.history.days.get(&d).and_then(|t| t.cost_usd)
            };
            TrendPoint {
                date: d.format("%m-%d").to_string(),
                amount: cost.map(|c| format::usd(c, S)),
                value: cost.map(as_f64),
            }
        })
        .collect()
}

/// The finance section, from the exact rollup rows and earlier rollups.
fn finance(inp: &Inputs<'_>, today: &DayTotals) -> Finance {
    let date = inp.day.date;
    let lines = lines(inp.rollup_daily);
    let total = today.cost_usd;
    let before = inp
        .history
        .days
        .get(&date.pred_opt().unwrap_or(date))
        .and_then(|t| t.cost_usd);
    let month_start = date.with_day(1).unwrap_or(date);
    let mut month = today.clone();
    let mut month_days = 1;
    let mut missing = Vec::new();
    for d in month_start.iter_days().take_while(|d| *d < date) {
        match inp.history.days.get(&d) {
            Some(t) => {
                month = DayTotals::sum([&month, t]);
                month_days += 1;
            }
            None => missing.push(d.to_string()),
        }
    }
    Finance {
        total: usd(total),
        total_exact: total
            .map(|t| format::usd6(crate::money::rescale(t, S, 6), 6))
            .unwrap_or_else(|| "—".into()),
        day_before: usd(before),
        change_day_over_day: match (total, before) {
            (Some(t), Some(b)) => format::change(as_f64(t), as_f64(b)).unwrap_or_default(),
            _ => String::new(),
        },
        month_to_date: usd(month.cost_usd),
        month_days,
        month_days_missing: missing,
        requests: format::int(today.requests),
        unpriced_requests: format::int(today.unpriced_requests),
        cache_savings: usd(today.cache_savings_usd),
        per_approved: match total {
            Some(t) if today.human_approved > 0 => format::usd(t / today.human_approved as i128, S),
            _ => "—".into(),
        },
        approved: format::int(today.human_approved),
        by_dept: shares(&lines, |l| l.dept.clone(), total),
        by_project: shares(&lines, |l| format!("{}/{}", l.dept, l.project), total),
        per_model: per_model(&lines),
        drivers: drivers(&lines, total),
        trend: trend(inp, total),
    }
}

/// The data-quality section.
fn quality(inp: &Inputs<'_>, today: &DayTotals) -> Quality {
    let mut unpriced = Vec::new();
    let (mut token_violations, mut mismatch, mut conflicts, mut dups) = (0, 0, 0, 0);
    for r in inp.data_quality {
        if r.unpriced_requests > 0 {
            unpriced.push(UnpricedRow {
                provider: shorten(&r.provider),
                model: shorten(&r.model),
                requests: format::int(r.unpriced_requests),
            });
        }
        token_violations += r.token_violations;
        mismatch += r.total_tokens_mismatch;
        conflicts += r.duplicate_conflicts;
        dups += r.duplicates_dropped;
    }
    let f = inp.facts;
    Quality {
        clean: unpriced.is_empty()
            && token_violations == 0
            && mismatch == 0
            && f.rejected_rows == 0
            && f.logged_unconverted.is_empty()
            && f.skipped_objects.iter().all(|(_, _, hidden)| *hidden)
            && f.absent_columns.is_empty(),
        unpriced,
        unpriced_total: format::int(today.unpriced_requests),
        duplicates_dropped: format::int(dups),
        duplicate_conflicts: format::int(conflicts),
        late_rows: format::int(f.late_rows as i64),
        early_rows: format::int(f.early_rows as i64),
        token_violations: format::int(token_violations),
        total_tokens_mismatch: format::int(mismatch),
        rejected_rows: format::int(f.rejected_rows as i64),
        logged_unconverted: f
            .logged_unconverted
            .iter()
            .map(|(c, n)| (c.clone(), format::int(*n as i64)))
            .collect(),
        skipped_objects: f
            .skipped_objects
            .iter()
            .map(|(k, r, _)| (k.clone(), r.clone()))
            .collect(),
        absent_columns: f.absent_columns.clone(),
    }
}

/// One line of a department's showback.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SliceLine {
    pub project: String,
    pub task: String,
    pub provider: String,
    pub model: String,
    pub requests: String,
    pub spend: String,
    pub cost_per_1k: String,
}

/// One department's slice of the day (showback mail).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Slice {
    pub dept: String,
    pub spend: String,
    pub share: String,
    pub requests: String,
    pub unpriced: String,
    pub lines: Vec<SliceLine>,
}

/// The slice of `dept` from the day's exact rollup rows, by project, task,
/// provider and model, largest spend first. A department without requests
/// that day spent $0.00.
pub fn showback(rollup_daily: &[RollupDaily], dept: &str) -> Slice {
    let all = lines(rollup_daily);
    let total = all.iter().fold(None, |t, l| add(t, l.cost));
    let mut by: BTreeMap<(String, String, String, String), Line> = BTreeMap::new();
    for l in all.iter().filter(|l| l.dept == dept) {
        let e = by
            .entry((
                l.project.clone(),
                l.task.clone(),
                l.provider.clone(),
                l.model.clone(),
            ))
            .or_default();
        e.requests += l.requests;
        e.cost = add(e.cost, l.cost);
        e.priced_tokens += l.priced_tokens;
        e.unpriced += l.unpriced;
    }
    let spend = by.values().fold(None, |t, l| add(t, l.cost));
    let requests: i64 = by.values().map(|l| l.requests).sum();
    let unpriced: i64 = by.values().map(|l| l.unpriced).sum();
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then_with(|| a.0.cmp(&b.0)));
    Slice {
        dept: dept.to_string(),
        spend: if requests == 0 {
            format::usd(0, S)
        } else {
            usd(spend)
        },
        share: match (spend, total) {
            (Some(c), Some(t)) if t > 0 => format::percent(c as f64 / t as f64, 1),
            _ => "—".into(),
        },
        requests: format::int(requests),
        unpriced: format::int(unpriced),
        lines: rows
            .into_iter()
            .map(|((project, task, provider, model), l)| SliceLine {
                project,
                task,
                provider,
                model,
                requests: format::int(l.requests),
                spend: usd(l.cost),
                cost_per_1k: match l.cost {
                    Some(c) if l.priced_tokens > 0 => format::usd6(
                        crate::money::div_half_even(c * 1000, l.priced_tokens as i128),
                        S,
                    ),
                    _ => "—".into(),
                },
            })
            .collect(),
    }
}

/// A chart to draw: (name, title, alt text, spec).
pub type NamedSpec = (String, String, String, super::charts::Spec);

/// The charts of a report: the ops dashboard's, then the finance dashboard's.
pub fn chart_specs(r: &Report) -> (Vec<NamedSpec>, Vec<NamedSpec>) {
    use super::charts::Spec;
    let hour_labels: Vec<String> = r.ops.hours.iter().map(|h| h.label.clone()).collect();
    let ops = vec![
        (
            "requests-by-hour".to_string(),
            format!("Requests per hour ({})", r.zone),
            format!(
                "Requests per hour on {}: {} in all.",
                r.date,
                format::int(r.headline_requests)
            ),
            Spec::Bars {
                labels: hour_labels.clone(),
                values: r.ops.hours.iter().map(|h| h.requests as f64).collect(),
                y_unit: "requests".into(),
            },
        ),
        (
            "error-rate-by-hour".to_string(),
            format!("Error rate per hour ({})", r.zone),
            "Error rate per hour, percent of requests.".to_string(),
            Spec::Line {
                labels: hour_labels.clone(),
                values: r
                    .ops
                    .hours
                    .iter()
                    .map(|h| h.error_rate.map(|v| v * 100.0))
                    .collect(),
                y_unit: "errors, % of requests".into(),
                threshold: None,
            },
        ),
        (
            "p95-by-hour".to_string(),
            format!("p95 latency per hour ({})", r.zone),
            "95th percentile latency per hour, milliseconds.".to_string(),
            Spec::Line {
                labels: hour_labels,
                values: r.ops.hours.iter().map(|h| h.p95_ms).collect(),
                y_unit: "p95 latency, ms".into(),
                threshold: None,
            },
        ),
    ];
    let top = |v: &[Share], n: usize| -> (Vec<String>, Vec<f64>) {
        let v: Vec<&Share> = v.iter().filter(|s| s.priced).take(n).collect();
        (
            v.iter().map(|s| s.label.clone()).collect(),
            v.iter().map(|s| s.value).collect(),
        )
    };
    let (dept_l, dept_v) = top(&r.finance.by_dept, 12);
    let (proj_l, proj_v) = top(&r.finance.by_project, 12);
    let mut cpk: Vec<&ModelCost> = r
        .finance
        .per_model
        .iter()
        .filter(|m| m.cost_per_1k_value.is_some())
        .collect();
    cpk.sort_by(|a, b| {
        b.cost_per_1k_value
            .partial_cmp(&a.cost_per_1k_value)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut finance = vec![
        (
            "spend-by-dept".to_string(),
            "Spend by department".to_string(),
            format!(
                "Spend by department on {}, {} in all.",
                r.date, r.finance.total
            ),
            Spec::HBars {
                labels: dept_l,
                values: dept_v,
                x_unit: "USD".into(),
            },
        ),
        (
            "spend-by-project".to_string(),
            "Spend by project".to_string(),
            "Spend by department/project, largest twelve.".to_string(),
            Spec::HBars {
                labels: proj_l,
                values: proj_v,
                x_unit: "USD".into(),
            },
        ),
        (
            "spend-trend".to_string(),
            "Daily spend, last 30 days".to_string(),
            "Daily spend over the last 30 days; gaps are days without a rollup.".to_string(),
            Spec::Line {
                labels: r.finance.trend.iter().map(|p| p.date.clone()).collect(),
                values: r.finance.trend.iter().map(|p| p.value).collect(),
                y_unit: "USD per day".into(),
                threshold: None,
            },
        ),
        (
            "cost-per-1k-by-model".to_string(),
            "Cost per 1k tokens by model".to_string(),
            "USD per 1000 input and output tokens of priced requests, by model.".to_string(),
            Spec::HBars {
                labels: cpk
                    .iter()
                    .map(|m| format!("{}/{}", m.provider, m.model))
                    .collect(),
                values: cpk
                    .iter()
                    .map(|m| m.cost_per_1k_value.unwrap_or(0.0))
                    .collect(),
                x_unit: "USD per 1k tokens".into(),
            },
        ),
        (
            "quality-vs-cost".to_string(),
            "Cost per 1k tokens against citation rate".to_string(),
            "Each point a model: citation rate (x) against cost per 1k tokens (y).".to_string(),
            Spec::Scatter {
                points: r
                    .finance
                    .per_model
                    .iter()
                    .filter_map(|m| {
                        Some((
                            m.model.clone(),
                            m.citation_value? * 100.0,
                            m.cost_per_1k_value?,
                        ))
                    })
                    .collect(),
                x_unit: "citation rate, %".into(),
                y_unit: "USD per 1k tokens".into(),
            },
        ),
    ];
    for b in &r.budgets {
        finance.push(burn_up(b));
    }
    (ops, finance)
}

/// The burn-up chart of a budget: cumulative actual, the forecast and its
/// 80% cone to month end, the budget line.
fn burn_up(b: &BudgetLine) -> NamedSpec {
    (
        b.chart.replace('_', "-"),
        format!("{}: {} budget", b.name, b.month),
        format!(
            "Cumulative spend of {} in {} ({}) against its budget of {}: {} to date, {} forecast (80% interval {} to {}).",
            b.name, b.month, b.scope, b.budget, b.actual, b.forecast, b.low, b.high
        ),
        super::charts::Spec::BurnUp {
            labels: b
                .burn
                .iter()
                .map(|p| p.date.format("%-d").to_string())
                .collect(),
            actual: b.burn.iter().map(|p| p.actual).collect(),
            expected: b.burn.iter().map(|p| p.expected).collect(),
            low: b.burn.iter().map(|p| p.low).collect(),
            high: b.burn.iter().map(|p| p.high).collect(),
            budget: b.budget_usd,
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_values_cannot_forge_lines_or_reorder_text() {
        assert_eq!(super::shorten("plain"), "plain");
        assert_eq!(
            super::shorten("research\nTotal spend: $0.00\r\tx"),
            "research\\nTotal spend: $0.00\\r\\tx"
        );
        assert_eq!(
            super::shorten("a\u{202e}b\u{2028}c"),
            "a\\u{202e}b\\u{2028}c"
        );
        let long = format!("{}\n", "x".repeat(300));
        assert!(!super::shorten(&long).contains('\n'));
    }
}
