//! The response workflow (source document 4.2): each event (the day's
//! high-severity anomalies that share a cause, see [`events`]) becomes one
//! incident record holding what a responder needs the morning after: the anomaly and its causes, the window, a snapshot of the
//! configuration in force (price rows, model mix and cache hit rates before
//! and after), the costliest traces, a suggested action and the RCA due time.
//!
//! Pure: the grouping, the record's shape and contents. Its id is a digest
//! of the day and its lead anomaly's level, key and metric, so a rerun finds
//! the same record and never files a second one. The pipeline writes it and posts it to the webhook.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Anomaly, Cell, Severity, causes_text};
use crate::money::{OUT_SCALE, PRICE_SCALE, format_scaled, rescale};
use crate::pricing::PriceTable;

/// Requests by route (`""` for none) of each `provider/model` (from the
/// latency rollups).
pub type RouteCounts = BTreeMap<String, BTreeMap<String, i64>>;

/// The stable id of an anomaly's incident.
pub fn id(date: chrono::NaiveDate, a: &Anomaly) -> String {
    let mut h = Sha256::new();
    h.update(format!("{date}|{}|{}|{}", a.level, a.key, a.metric.name()).as_bytes());
    format!("inc-{date}-{}", &hex::encode(h.finalize())[..12])
}

/// Whether an anomaly opens an incident (alone or as part of an event).
pub fn opens(a: &Anomaly) -> bool {
    a.severity == Severity::High
}

/// A share of a group's cost change that a narrower group must carry to
/// explain it: 80%.
pub const EXPLAINS: f64 = 0.8;

/// The high-severity anomalies of one day that share a cause: one incident,
/// one page. `lead` is the anomaly of the most specific group that explains
/// the event's cost change; `related` the others (its own other metrics,
/// and the wider or crossing groups it explains).
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub lead: &'a Anomaly,
    pub related: Vec<&'a Anomaly>,
}

/// Whether group `outer` contains group `inner` (filters of dept, project,
/// task, provider, model: every value `outer` fixes, `inner` fixes alike).
fn contains(outer: &[Option<String>; 5], inner: &[Option<String>; 5]) -> bool {
    outer.iter().zip(inner).all(|(o, i)| o.is_none() || o == i)
}

/// Whether two groups share requests (no field both fix differently).
fn overlap(a: &[Option<String>; 5], b: &[Option<String>; 5]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.is_none() || y.is_none() || x == y)
}

fn specificity(f: &[Option<String>; 5]) -> usize {
    f.iter().filter(|v| v.is_some()).count()
}

/// A group's cost change, baseline (mean day) to today, USD.
fn delta(a: &Anomaly) -> f64 {
    let sum = |m: &BTreeMap<String, Cell>| m.values().map(Cell::usd).sum::<f64>();
    sum(&a.models_after) - sum(&a.models_before)
}

/// The cost (today plus the baseline day) of group `a`, and of the part of
/// it that lies in group `b` too: equal when `b` does not narrow `a`.
fn costs(a: &Anomaly, b: &Anomaly) -> (f64, f64) {
    let sum = |m: &BTreeMap<String, Cell>| m.values().map(Cell::usd).sum::<f64>();
    let whole = sum(&a.models_after) + sum(&a.models_before);
    if contains(&b.filter, &a.filter) {
        return (whole, whole);
    }
    if contains(&a.filter, &b.filter) {
        return (whole, sum(&b.models_after) + sum(&b.models_before));
    }
    let (org, model) = if a.filter[3].is_none() && a.filter[4].is_none() {
        (a, b)
    } else {
        (b, a)
    };
    let part = in_model_scope(org, model, |c| c.usd(), true)
        + in_model_scope(org, model, |c| c.usd(), false);
    (whole, part)
}

/// Sum of `f` over the cells of organisational group `org` (today's, or
/// the baseline's) whose model lies in the provider/model group `model`.
fn in_model_scope(org: &Anomaly, model: &Anomaly, f: impl Fn(&Cell) -> f64, today: bool) -> f64 {
    let cells = if today {
        &org.models_after
    } else {
        &org.models_before
    };
    cells
        .iter()
        .filter(|(name, _)| {
            let (provider, m) = name.split_once('/').unwrap_or((name.as_str(), ""));
            model.filter[3].as_deref().is_none_or(|p| p == provider)
                && model.filter[4].as_deref().is_none_or(|x| x == m)
        })
        .map(|(_, c)| f(c))
        .sum()
}

/// The part of group `a`'s cost change that falls in group `b` as well.
/// Nested groups: `b`'s own change. Crossing groups (a department and a
/// model): the change of the department's cells of that model, read from
/// the department's per-model cells.
fn shared_delta(a: &Anomaly, b: &Anomaly) -> f64 {
    if contains(&a.filter, &b.filter) {
        return delta(b);
    }
    if contains(&b.filter, &a.filter) {
        return delta(a);
    }
    // One fixes organisation fields, the other provider/model fields.
    let (org, model) = if a.filter[3].is_none() && a.filter[4].is_none() {
        (a, b)
    } else {
        (b, a)
    };
    in_model_scope(org, model, |c| c.usd(), true) - in_model_scope(org, model, |c| c.usd(), false)
}

/// Group the opening anomalies of one day into events, so a person is
/// paged once per event, not once per (group, metric):
///
/// 1. Each group's explainer is the most specific other group, not wider
///    than it, that carries at least [`EXPLAINS`] of its cost change (same
///    direction); following explainers leads to its root, the group nothing
///    narrower explains. Crossing groups that explain each other (a
///    department using one model alone) resolve to the organisational one.
/// 2. Roots inside one department join the department's outermost root: a
///    department whose traffic tripled is one event, however its projects
///    and tasks split it (one owner, one page).
/// 3. A group outside any department (total, provider, model) that no one
///    group explains, but that disjoint events explain together (two
///    departments' spikes add up in the total), joins the largest of them.
///
/// A group whose cost did not move is its own event. The lead of an event
/// is its own group's cost anomaly if flagged, else its largest impact; the
/// others are `related`. Deterministic for the same anomalies.
pub fn events<'a>(opening: &[&'a Anomaly]) -> Vec<Event<'a>> {
    // Distinct groups, each with a representative anomaly (any metric:
    // the cost change is the group's, not the metric's).
    let mut groups: Vec<&'a Anomaly> = Vec::new();
    for a in opening {
        if !groups.iter().any(|g| g.filter == a.filter) {
            groups.push(a);
        }
    }
    let n = groups.len();
    let share = |i: usize, j: usize| -> Option<f64> {
        let d = delta(groups[i]);
        (d.abs() >= 1e-9).then(|| shared_delta(groups[i], groups[j]) / d)
    };
    // `j` may explain `i`: it shares requests with `i`, is not wider, and
    // either lies inside `i` or, crossing it (a model of a department),
    // leaves part of `i` out: a model a department uses alone says no more
    // than the department.
    let part_of = |i: usize, j: usize| {
        j != i
            && overlap(&groups[i].filter, &groups[j].filter)
            && !contains(&groups[j].filter, &groups[i].filter)
    };
    // A team's change is explained by a model it uses only when the model's
    // price moved: routing, volume, retries, cache and prompts are the
    // team's own doing, and two teams switching to one model are two events.
    let priced_out = |i: usize| {
        groups[i]
            .causes
            .first()
            .is_some_and(|(c, _)| *c == super::Cause::PriceChange)
    };
    let organisational = |i: usize| groups[i].filter[3].is_none() && groups[i].filter[4].is_none();
    let narrower = |i: usize, j: usize| {
        part_of(i, j) && {
            let (whole, part) = costs(groups[i], groups[j]);
            let nested = contains(&groups[i].filter, &groups[j].filter);
            let crossing_ok = !organisational(i) || organisational(j) || priced_out(i);
            nested || (crossing_ok && part < whole * (1.0 - 1e-9))
        }
    };
    // 1. Single explainers and roots.
    let next: Vec<Option<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| narrower(i, j))
                .filter_map(|j| share(i, j).filter(|s| *s >= EXPLAINS).map(|s| (j, s)))
                .max_by(|(x, sx), (y, sy)| {
                    specificity(&groups[*x].filter)
                        .cmp(&specificity(&groups[*y].filter))
                        .then(sx.total_cmp(sy))
                        .then(groups[*y].key.cmp(&groups[*x].key))
                })
                .map(|(j, _)| j)
        })
        .collect();
    let root = |start: usize| -> usize {
        let mut path = vec![start];
        let mut at = start;
        while let Some(nx) = next[at] {
            if let Some(pos) = path.iter().position(|&p| p == nx) {
                let cycle = &path[pos..];
                return cycle
                    .iter()
                    .copied()
                    .find(|&c| organisational(c))
                    .unwrap_or(cycle[0]);
            }
            path.push(nx);
            at = nx;
        }
        at
    };
    let roots: Vec<usize> = (0..n).map(root).collect();
    let is_root = |j: usize| roots.contains(&j);
    // 2. One event per department: the outermost root of the department.
    let mut key: Vec<usize> = roots
        .iter()
        .map(|&r| {
            if !organisational(r) || groups[r].filter[0].is_none() {
                return r;
            }
            (0..n)
                .filter(|&j| {
                    is_root(j)
                        && organisational(j)
                        && groups[j].filter[0] == groups[r].filter[0]
                        && contains(&groups[j].filter, &groups[r].filter)
                })
                .min_by_key(|&j| (specificity(&groups[j].filter), groups[j].key.clone()))
                .unwrap_or(r)
        })
        .collect();
    // 3. Totals, providers and models that disjoint events explain together.
    let mut keys: Vec<usize> = key.clone();
    keys.sort_unstable();
    keys.dedup();
    // Narrowest first (models, then providers, then the total), each
    // against the events still standing: a model two departments share
    // joins one of them before the total is weighed.
    keys.sort_by_key(|&k| std::cmp::Reverse(specificity(&groups[k].filter)));
    let mut redirect: BTreeMap<usize, usize> = BTreeMap::new();
    for &k in &keys {
        if groups[k].filter[0].is_some() || next[k].is_some() {
            continue;
        }
        let mut parts: Vec<(usize, f64)> = keys
            .iter()
            .copied()
            .filter(|j| !redirect.contains_key(j))
            .filter(|&j| part_of(k, j))
            .filter_map(|j| share(k, j).filter(|s| *s > 0.0).map(|s| (j, s)))
            .collect();
        parts
            .sort_by(|(x, sx), (y, sy)| sy.total_cmp(sx).then(groups[*x].key.cmp(&groups[*y].key)));
        let mut chosen: Vec<usize> = Vec::new();
        let mut covered = 0.0;
        for (j, s) in &parts {
            if chosen
                .iter()
                .all(|&c| !overlap(&groups[c].filter, &groups[*j].filter))
            {
                chosen.push(*j);
                covered += s;
            }
        }
        if covered >= EXPLAINS
            && let Some(&largest) = chosen.first()
        {
            redirect.insert(k, largest);
        }
    }
    for k in key.iter_mut() {
        let mut seen = vec![*k];
        while let Some(&to) = redirect.get(k) {
            if seen.contains(&to) {
                break;
            }
            seen.push(to);
            *k = to;
        }
    }

    assemble(opening, &groups, &key)
}

/// The events of `opening`: anomalies whose groups share an event key
/// (`key[g]` of group `g`) form one event, in order of first appearance;
/// its lead is an anomaly of the key's own group (its cost anomaly if
/// flagged, else its largest impact).
fn assemble<'a>(opening: &[&'a Anomaly], groups: &[&'a Anomaly], key: &[usize]) -> Vec<Event<'a>> {
    let mut out: Vec<Event<'a>> = Vec::new();
    let mut order: Vec<usize> = Vec::new();
    for a in opening {
        let g = groups
            .iter()
            .position(|g| g.filter == a.filter)
            .expect("every anomaly has its group");
        let k = key[g];
        match order.iter().position(|&o| o == k) {
            Some(e) => out[e].related.push(a),
            None => {
                order.push(k);
                out.push(Event {
                    lead: a,
                    related: Vec::new(),
                });
            }
        }
    }
    // The lead is an anomaly of the event's own group.
    for (e, &k) in out.iter_mut().zip(&order) {
        let group = &groups[k].filter;
        let all: Vec<&'a Anomaly> = std::iter::once(e.lead)
            .chain(e.related.iter().copied())
            .collect();
        let lead = all
            .iter()
            .copied()
            .filter(|a| &a.filter == group)
            .max_by(|x, y| {
                (x.metric == super::Metric::CostUsd)
                    .cmp(&(y.metric == super::Metric::CostUsd))
                    .then(x.impact_usd.abs().cmp(&y.impact_usd.abs()))
                    .then(y.metric.cmp(&x.metric))
            })
            .unwrap_or(e.lead);
        e.related = all
            .into_iter()
            .filter(|a| !std::ptr::eq(*a, lead))
            .collect();
        e.lead = lead;
    }
    out
}

/// One anomaly of an event besides its lead, as the incident lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Related {
    pub dimension: String,
    pub key: String,
    pub metric: String,
    pub value: f64,
    pub baseline: f64,
    pub change_pct: Option<f64>,
    pub impact_usd: String,
}

impl Related {
    fn of(a: &Anomaly) -> Self {
        Related {
            dimension: a.level.to_string(),
            key: a.key.clone(),
            metric: a.metric.name().to_string(),
            value: a.value,
            baseline: a.baseline,
            change_pct: a.change.map(|c| c * 100.0),
            impact_usd: format_scaled(a.impact_usd, OUT_SCALE),
        }
    }
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
    counts: &RouteCounts,
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
    /// The day's other high-severity anomalies of the same event (other
    /// metrics of this group, wider or crossing groups it explains).
    pub related: Vec<Related>,
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
    event: &Event<'_>,
    opened_at: DateTime<Utc>,
    window: (DateTime<Utc>, DateTime<Utc>),
    routes: (Vec<RouteShare>, Vec<RouteShare>),
    price_rows: Vec<PriceRowView>,
    top_traces: Vec<Trace>,
    suggested_action: String,
) -> Incident {
    let a = event.lead;
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
        related: event.related.iter().map(|r| Related::of(r)).collect(),
    }
}
