//! The response workflow (source document 4.2): each high-severity anomaly
//! becomes an incident record holding what a responder needs the morning
//! after: the anomaly and its causes, the window, a snapshot of the
//! configuration in force (price rows, model mix and cache hit rates before
//! and after), the costliest traces, a suggested action and the RCA due time.
//!
//! Pure: the record's shape and contents. Its id is a digest of the day,
//! level, key and metric, so a rerun finds the same record and never files a
//! second one. The pipeline writes it and posts it to the webhook.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Anomaly, Cell, Severity, causes_text};
use crate::money::{OUT_SCALE, PRICE_SCALE, format_scaled, rescale};
use crate::pricing::PriceTable;

/// The stable id of an anomaly's incident.
pub fn id(date: chrono::NaiveDate, a: &Anomaly) -> String {
    let mut h = Sha256::new();
    h.update(format!("{date}|{}|{}|{}", a.level, a.key, a.metric.name()).as_bytes());
    format!("inc-{date}-{}", &hex::encode(h.finalize())[..12])
}

/// Whether an anomaly opens an incident.
pub fn opens(a: &Anomaly) -> bool {
    a.severity == Severity::High
}

/// One model of the group, before (the mean baseline day) or after (today).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelShare {
    pub model: String,
    pub requests: i64,
    /// Share of the group's requests.
    pub share: f64,
    pub cache_hit_rate: Option<f64>,
    pub cost_usd: String,
}

/// One route of one of the group's models, before (the anomaly window's
/// days, requests per day) or after (today). Routes are rolled up per
/// provider and model, so a department's group shows its models' routing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteShare {
    pub model: String,
    /// `""` for requests logged without a route.
    pub route: String,
    pub requests: i64,
    /// Share of the model's requests.
    pub share: f64,
}

/// The route mix of `models` in `counts`, requests divided by `days`.
pub fn route_shares(
    counts: &crate::history::RouteCounts,
    models: &std::collections::BTreeSet<&String>,
    days: usize,
) -> Vec<RouteShare> {
    let mut out = Vec::new();
    for (model, routes) in counts.iter().filter(|(m, _)| models.contains(m)) {
        let total: i64 = routes.values().sum();
        for (route, n) in routes {
            out.push(RouteShare {
                model: model.clone(),
                route: route.clone(),
                requests: (*n as f64 / days.max(1) as f64).round() as i64,
                share: if total > 0 {
                    *n as f64 / total as f64
                } else {
                    0.0
                },
            });
        }
    }
    out
}

/// A price row in force for one of the group's models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriceRowView {
    pub provider: String,
    pub model: String,
    pub price_id: String,
    pub input_usd_per_1k: Option<String>,
    pub output_usd_per_1k: Option<String>,
    pub valid_from: String,
    pub valid_to: Option<String>,
}

/// One of the costliest requests of the group in the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub trace_id: String,
    pub ts: String,
    pub provider: String,
    pub model: String,
    pub cost_usd: String,
}

/// The incident record (`incidents/date=D/<id>.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub date: String,
    pub opened_at: String,
    /// When the root-cause analysis is due (24 hours after opening).
    pub rca_due: String,
    pub window_start: String,
    pub window_end: String,
    pub dimension: String,
    pub key: String,
    pub metric: String,
    pub value: f64,
    pub baseline: f64,
    pub score: f64,
    pub change_pct: Option<f64>,
    pub impact_usd: String,
    pub severity: String,
    pub likely_cause: String,
    pub causes: String,
    pub baseline_days: usize,
    pub models_before: Vec<ModelShare>,
    pub models_after: Vec<ModelShare>,
    pub cache_hit_rate_before: Option<f64>,
    pub cache_hit_rate_after: Option<f64>,
    pub routes_before: Vec<RouteShare>,
    pub routes_after: Vec<RouteShare>,
    pub price_rows: Vec<PriceRowView>,
    pub top_traces: Vec<Trace>,
    pub suggested_action: String,
}

fn shares(models: &BTreeMap<String, Cell>) -> (Vec<ModelShare>, Option<f64>) {
    let total: i64 = models.values().map(|c| c.requests).sum();
    let hits: i64 = models.values().map(|c| c.cache_hits).sum();
    let list = models
        .iter()
        .map(|(m, c)| ModelShare {
            model: m.clone(),
            requests: c.requests,
            share: if total > 0 {
                c.requests as f64 / total as f64
            } else {
                0.0
            },
            cache_hit_rate: (c.requests > 0).then(|| c.cache_hits as f64 / c.requests as f64),
            cost_usd: format_scaled(rescale(c.cost, PRICE_SCALE, OUT_SCALE), OUT_SCALE),
        })
        .collect();
    (list, (total > 0).then(|| hits as f64 / total as f64))
}

/// The cheapest model of `provider` in the price table at `at` (by input
/// plus output price per 1K; models without both prices, such as embedding
/// and image models, are not candidates), if it is cheaper than the dearest
/// of `current`.
pub fn cheapest(
    prices: &PriceTable,
    provider: &str,
    current: &[String],
    at: DateTime<Utc>,
) -> Option<(String, Decimal)> {
    let blended = |model: &str| {
        prices
            .versions(provider, model)
            .into_iter()
            .find(|r| r.in_force_at(at))
            .and_then(|r| match (r.input_usd_per_1k, r.output_usd_per_1k) {
                (Some(i), Some(o)) if !i.is_zero() && !o.is_zero() => Some(i + o),
                _ => None,
            })
    };
    let dearest = current.iter().filter_map(|m| blended(m)).max()?;
    prices
        .rows()
        .iter()
        .filter(|r| r.provider == provider && r.in_force_at(at))
        .filter_map(|r| blended(&r.model).map(|p| (r.model.clone(), p)))
        .filter(|(_, p)| *p < dearest)
        .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
}

/// The suggested action for an anomaly.
pub fn suggestion(a: &Anomaly, cheaper: Option<(String, Decimal)>) -> String {
    use super::Cause;
    let base = match a.likely_cause {
        Cause::ModelMix => {
            "Routing moved traffic to a pricier model: check the router's rules and recent deploys"
        }
        Cause::PriceChange => {
            "The price per token changed: check the price table and the provider's price list"
        }
        Cause::Volume => {
            "Traffic grew: find the caller (top traces) and check for loops or a new integration"
        }
        Cause::ErrorsRetries => {
            "Errors and retries rose: check the provider's status and the client's retry policy"
        }
        Cause::CacheHitChange => {
            "The gateway's cache hit rate changed: check the cache's health and its keys"
        }
        Cause::TokensPerRequest => "Requests grew longer: check prompt templates and context sizes",
    };
    match cheaper {
        Some((model, p)) => format!(
            "{base}; the cheapest model of the same provider in the price table is {model} ({} USD per 1K input + output)",
            p.normalize()
        ),
        None => base.to_string(),
    }
}

/// Assemble the record.
#[allow(clippy::too_many_arguments)]
pub fn record(
    date: chrono::NaiveDate,
    a: &Anomaly,
    opened_at: DateTime<Utc>,
    window: (DateTime<Utc>, DateTime<Utc>),
    routes: (Vec<RouteShare>, Vec<RouteShare>),
    price_rows: Vec<PriceRowView>,
    top_traces: Vec<Trace>,
    suggested_action: String,
) -> Incident {
    let (before, hit_before) = shares(&a.models_before);
    let (after, hit_after) = shares(&a.models_after);
    let t = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Incident {
        id: id(date, a),
        date: date.to_string(),
        opened_at: t(opened_at),
        rca_due: t(opened_at + chrono::Duration::hours(24)),
        window_start: t(window.0),
        window_end: t(window.1),
        dimension: a.level.to_string(),
        key: a.key.clone(),
        metric: a.metric.name().to_string(),
        value: a.value,
        baseline: a.baseline,
        score: a.score,
        change_pct: a.change.map(|c| c * 100.0),
        impact_usd: format_scaled(a.impact_usd, OUT_SCALE),
        severity: a.severity.name().to_string(),
        likely_cause: a.likely_cause.name().to_string(),
        causes: causes_text(&a.causes),
        baseline_days: a.baseline_days,
        models_before: before,
        models_after: after,
        cache_hit_rate_before: hit_before,
        cache_hit_rate_after: hit_after,
        routes_before: routes.0,
        routes_after: routes.1,
        price_rows,
        top_traces,
        suggested_action,
    }
}
