//! History from the daily rollups, never from raw logs.
//!
//! The dashboards compare a day with the days before it (trailing 7 days,
//! day over day, month to date, the 30-day trend). Those figures come from
//! `rollups/daily/date=D/` and `rollups/latency/date=D/`, which every run
//! writes; a day without a rollup is absent (never zero). [`DayTotals`] are
//! exact: money stays a scaled integer until it is displayed.
//!
//! Pure data: the daily rollups arrive as rows (`queries::rows::RollupDaily`),
//! an earlier day's latency rollup as its decoded columns ([`day_latency`]
//! sums them column by column: never 90K rows a day decoded one by one);
//! today's route mix from `RollupLatency` rows. Reading them from storage is
//! the pipeline's.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use arrow::array::{Array, AsArray, Int64Array, PrimitiveArray, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};

use crate::queries::rows::{Dec, RollupDaily, RollupLatency};

/// Scale of money in the rollups (exact per-token prices times tokens).
pub const ROLLUP_MONEY_SCALE: i8 = crate::money::PRICE_SCALE;

/// One day's totals over every dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub requests: i64,
    pub errors: i64,
    pub cache_hits: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub priced_tokens: i64,
    pub unpriced_requests: i64,
    /// USD at [`ROLLUP_MONEY_SCALE`]; `None` when no request was priced.
    pub cost_usd: Option<i128>,
    pub cache_savings_usd: Option<i128>,
    pub logged_cost_usd: Option<i128>,
    /// Sum of citation rates at scale 15, and how many requests had one.
    pub citation_sum: i128,
    pub citation_requests: i64,
    pub human_reviewed: i64,
    pub human_approved: i64,
    pub duplicates_dropped: i64,
}

impl DayTotals {
    fn add(&mut self, o: &DayTotals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.cache_hits += o.cache_hits;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.priced_tokens += o.priced_tokens;
        self.unpriced_requests += o.unpriced_requests;
        let add = |a: Option<i128>, b: Option<i128>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.cost_usd = add(self.cost_usd, o.cost_usd);
        self.cache_savings_usd = add(self.cache_savings_usd, o.cache_savings_usd);
        self.logged_cost_usd = add(self.logged_cost_usd, o.logged_cost_usd);
        self.citation_sum += o.citation_sum;
        self.citation_requests += o.citation_requests;
        self.human_reviewed += o.human_reviewed;
        self.human_approved += o.human_approved;
        self.duplicates_dropped += o.duplicates_dropped;
    }

    /// The sum of several days.
    pub fn sum<'a>(days: impl IntoIterator<Item = &'a DayTotals>) -> DayTotals {
        let mut t = DayTotals::default();
        for d in days {
            t.add(d);
        }
        t
    }

    pub fn error_rate(&self) -> Option<f64> {
        ratio(self.errors, self.requests)
    }
    pub fn cache_hit_rate(&self) -> Option<f64> {
        ratio(self.cache_hits, self.requests)
    }
    pub fn citation_rate_mean(&self) -> Option<f64> {
        (self.citation_requests > 0)
            .then(|| self.citation_sum as f64 / 1e15 / self.citation_requests as f64)
    }
    pub fn review_pass_rate(&self) -> Option<f64> {
        ratio(self.human_approved, self.human_reviewed)
    }
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Sum of money cells at `scale`; `None` when every cell is null.
fn money_sum(cells: impl Iterator<Item = Option<Dec>>, scale: i8) -> Option<i128> {
    cells.flatten().map(|d| d.at(scale)).reduce(|a, b| a + b)
}

/// The totals of one day from its `rollup_daily` rows.
pub fn totals_of(rows: &[RollupDaily]) -> DayTotals {
    let int = |f: fn(&RollupDaily) -> Option<i64>| rows.iter().filter_map(f).sum::<i64>();
    let money = |f: fn(&RollupDaily) -> Option<Dec>, scale| money_sum(rows.iter().map(f), scale);
    DayTotals {
        requests: int(|r| r.requests),
        errors: int(|r| r.errors),
        cache_hits: int(|r| r.cache_hits),
        input_tokens: int(|r| r.input_tokens),
        output_tokens: int(|r| r.output_tokens),
        priced_tokens: int(|r| r.priced_tokens),
        unpriced_requests: int(|r| r.unpriced_requests),
        cost_usd: money(|r| r.cost_usd, ROLLUP_MONEY_SCALE),
        cache_savings_usd: money(|r| r.cache_savings_usd, ROLLUP_MONEY_SCALE),
        logged_cost_usd: money(|r| r.logged_cost_usd, ROLLUP_MONEY_SCALE),
        citation_sum: money(|r| r.citation_sum, 15).unwrap_or(0),
        citation_requests: int(|r| r.citation_requests),
        human_reviewed: int(|r| r.human_reviewed),
        human_approved: int(|r| r.human_approved),
        duplicates_dropped: int(|r| r.duplicates_dropped),
    }
}

/// A latency histogram: (latency in ms, requests), from the latency rollups.
pub type Histogram = Vec<(f64, u64)>;

/// `quantile_cont` over a weighted histogram (sorted by value).
pub fn percentile(hist: &[(f64, u64)], p: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, u64)> = hist.iter().copied().filter(|(_, c)| *c > 0).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n: u64 = sorted.iter().map(|(_, c)| c).sum();
    if n == 0 {
        return None;
    }
    let rank = (n - 1) as f64 * p;
    let (lo_i, hi_i) = (rank.floor() as u64, rank.ceil() as u64);
    let at = |i: u64| {
        let mut cum = 0;
        for (v, c) in &sorted {
            cum += c;
            if cum > i {
                return *v;
            }
        }
        sorted[sorted.len() - 1].0
    };
    let (lo, hi) = (at(lo_i), at(hi_i));
    Some(lo + (rank - rank.floor()) * (hi - lo))
}

/// Rollups of a range of days.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub days: BTreeMap<NaiveDate, DayTotals>,
    /// Day-level latency histograms (all models merged).
    pub latency: BTreeMap<NaiveDate, Histogram>,
    /// Usage by (provider, model), for month-to-date reconciliation.
    pub usage: BTreeMap<NaiveDate, crate::reconcile::DayUsage>,
    /// The rollup rows (finest grain) of each day, for anomaly baselines.
    pub rows: BTreeMap<NaiveDate, crate::anomaly::DayRows>,
    /// Requests by route of each `provider/model`, from the latency rollups
    /// (days rolled up before routes were kept are absent).
    pub routes: BTreeMap<NaiveDate, RouteCounts>,
    /// Days whose rollup was cut in another time zone than the run's, with
    /// that zone: left out, so that a month to date never mixes zones.
    pub other_zone: Vec<(NaiveDate, String)>,
}

/// The Parquet footer key under which a rollup records the time zone its
/// day was cut in (rollups written before it have none).
pub const ZONE_KEY: &str = "tokenledger.timezone";

impl History {
    /// The totals over the days of `from..=to` that have a rollup.
    pub fn total(&self, from: NaiveDate, to: NaiveDate) -> (DayTotals, usize) {
        let days: Vec<&DayTotals> = self.days.range(from..=to).map(|(_, t)| t).collect();
        (DayTotals::sum(days.iter().copied()), days.len())
    }

    /// Requests by route of each `provider/model` over the days of
    /// `from..=to` that have them, and the number of such days.
    pub fn routes(&self, from: NaiveDate, to: NaiveDate) -> (RouteCounts, usize) {
        let mut out = RouteCounts::new();
        let mut days = 0;
        for (_, day) in self.routes.range(from..=to) {
            days += 1;
            for (model, routes) in day {
                for (route, n) in routes {
                    *out.entry(model.clone())
                        .or_default()
                        .entry(route.clone())
                        .or_default() += n;
                }
            }
        }
        (out, days)
    }

    /// The merged latency histogram of `from..=to`.
    pub fn latency(&self, from: NaiveDate, to: NaiveDate) -> Histogram {
        let mut merged: BTreeMap<u64, u64> = BTreeMap::new();
        for (_, h) in self.latency.range(from..=to) {
            for (v, c) in h {
                *merged.entry(v.to_bits()).or_default() += c;
            }
        }
        merged
            .into_iter()
            .map(|(b, c)| (f64::from_bits(b), c))
            .collect()
    }
}

pub use crate::anomaly::incident::RouteCounts;

/// The route counts of `rollup_latency` rows, or `None` for a rollup
/// written before it had a `route` column.
pub fn routes_of(rows: &[RollupLatency]) -> Option<RouteCounts> {
    let mut out = RouteCounts::new();
    for r in rows {
        let (Some(p), Some(m), Some(route)) = (&r.provider.0, &r.model.0, &r.route.0) else {
            return None;
        };
        add_route(
            &mut out,
            p,
            m,
            route.as_deref().unwrap_or_default(),
            r.requests.unwrap_or(0),
        );
    }
    Some(out)
}

/// Add `n` requests of `route` to `provider/model`'s counts: how today's
/// route mix ([`routes_of`]) and an earlier day's ([`day_latency`]) key a
/// route (no route is the empty one).
fn add_route(out: &mut RouteCounts, provider: &str, model: &str, route: &str, n: i64) {
    *out.entry(format!("{provider}/{model}"))
        .or_default()
        .entry(route.to_string())
        .or_default() += n;
}

/// One earlier day's latency histogram (every model and route merged;
/// requests without a latency take no part, a negative count adds none),
/// sorted by latency, and, if its rollup kept routes, its requests by route
/// of each `provider/model` (a null count adds none; a null name is empty),
/// from its latency rollup's batches as `queries::rows::conform` gives them
/// (text as `Dictionary(Int32, Utf8)`).
///
/// Summed column by column, one day at a time: a day's rollup is ~90K rows
/// of ~15K latencies and a few dozen routes, so the sums are small tables
/// that stay in cache (summing a 30-day window in SQL, by day and latency,
/// hashed 2.7M rows into 400K groups). `Err` names the column that is not
/// of its conformed type.
pub fn day_latency(
    batches: &[RecordBatch],
    routes_kept: bool,
) -> Result<(Histogram, Option<RouteCounts>), String> {
    let mut bins: ahash::AHashMap<u64, u64> = ahash::AHashMap::new();
    let mut routes = routes_kept.then(RouteCounts::new);
    for b in batches {
        let latency = column(b, "latency_ms")?
            .as_primitive_opt::<Float64Type>()
            .ok_or("column `latency_ms` is not Float64")?;
        let requests = column(b, "requests")?
            .as_primitive_opt::<Int64Type>()
            .ok_or("column `requests` is not Int64")?;
        for (v, n) in latency.iter().zip(requests) {
            if let (Some(v), Some(n)) = (v, n) {
                *bins.entry(v.to_bits()).or_default() += n.max(0) as u64;
            }
        }
        if let Some(out) = routes.as_mut() {
            add_routes(b, requests, out)?;
        }
    }
    let mut histogram: Histogram = bins
        .into_iter()
        .map(|(v, n)| (f64::from_bits(v), n))
        .collect();
    histogram.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok((histogram, routes))
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, String> {
    crate::queries::rows::conformed_column::<RollupLatency>(b, name).map(|c| c.as_ref())
}

/// A text column as conformed: its dictionary keys and values.
fn text<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<(&'a PrimitiveArray<Int32Type>, &'a StringArray), String> {
    let not_text = || format!("column `{name}` is not Dictionary(Int32, Utf8)");
    let dict = column(b, name)?
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(not_text)?;
    let values = dict.values().as_string_opt::<i32>().ok_or_else(not_text)?;
    Ok((dict.keys(), values))
}

/// Add one batch's requests by (provider, model, route) to `out`. Rows of a
/// route are adjacent in a stored rollup (it is sorted), so the sums are
/// kept by run of dictionary keys and named once per run; any order gives
/// the same sums.
fn add_routes(b: &RecordBatch, requests: &Int64Array, out: &mut RouteCounts) -> Result<(), String> {
    let columns = [text(b, "provider")?, text(b, "model")?, text(b, "route")?];
    let key = |i: usize| {
        columns.map(|(keys, values)| {
            (keys.is_valid(i) && values.is_valid(keys.value(i) as usize)).then(|| keys.value(i))
        })
    };
    let name = |c: usize, k: Option<i32>| k.map_or("", |k| columns[c].1.value(k as usize));
    let mut add = |k: [Option<i32>; 3], n: i64| {
        add_route(out, name(0, k[0]), name(1, k[1]), name(2, k[2]), n);
    };
    let mut run: Option<([Option<i32>; 3], i64)> = None;
    for i in 0..b.num_rows() {
        let (k, n) = (key(i), requests.is_valid(i).then(|| requests.value(i)));
        match &mut run {
            Some((at, sum)) if *at == k => *sum += n.unwrap_or(0),
            _ => {
                if let Some((at, sum)) = run.replace((k, n.unwrap_or(0))) {
                    add(at, sum);
                }
            }
        }
    }
    if let Some((at, sum)) = run {
        add(at, sum);
    }
    Ok(())
}

impl History {
    /// Add a day's daily rollup.
    pub fn add_daily(&mut self, date: NaiveDate, rows: &[RollupDaily]) {
        self.days.insert(date, totals_of(rows));
        self.usage.insert(date, crate::reconcile::usage_of(rows));
        self.rows.insert(date, crate::anomaly::rows_of(rows));
    }

    /// Add an earlier day's latency histogram and, if its rollup kept
    /// routes (rollups written before routes were kept did not), its route
    /// counts ([`day_latency`]).
    pub fn add_latency(
        &mut self,
        date: NaiveDate,
        histogram: Histogram,
        routes: Option<RouteCounts>,
    ) {
        self.latency.insert(date, histogram);
        if let Some(routes) = routes {
            self.routes.insert(date, routes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_weighted_histogram_match_quantile_cont() {
        // 10 20 20 30 40 (n = 5): p50 at rank 2 = 20; p95 at 3.8 = 30 + 0.8 * 10 = 38.
        let h = vec![(30.0, 1), (10.0, 1), (20.0, 2), (40.0, 1), (99.0, 0)];
        assert_eq!(percentile(&h, 0.5), Some(20.0));
        assert!((percentile(&h, 0.95).unwrap() - 38.0).abs() < 1e-9);
        assert_eq!(percentile(&[], 0.5), None);
    }

    /// A stored latency row: (provider, route, latency, requests).
    type Stored<'a> = (Option<&'a str>, Option<&'a str>, Option<f64>, Option<i64>);

    /// A latency rollup's batch as `conform` gives it, the model always `m`.
    fn rollup(rows: &[Stored<'_>]) -> RecordBatch {
        use arrow::array::{ArrayRef, DictionaryArray, Float64Array};
        use std::sync::Arc;
        let text = |vals: Vec<Option<&str>>| {
            Arc::new(vals.into_iter().collect::<DictionaryArray<Int32Type>>()) as ArrayRef
        };
        RecordBatch::try_from_iter([
            ("provider", text(rows.iter().map(|r| r.0).collect())),
            ("model", text(vec![Some("m"); rows.len()])),
            ("route", text(rows.iter().map(|r| r.1).collect())),
            (
                "latency_ms",
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))) as ArrayRef,
            ),
            (
                "requests",
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    /// A day's histogram and route counts, summed over two batches, against
    /// sums worked out by hand.
    #[test]
    fn a_latency_rollup_sums_into_its_days_histogram_and_routes() {
        let p = Some("p");
        let batches = [
            rollup(&[
                // 12 ms on two routes (3 + 4), 30 ms once, 2 without a
                // latency; a null count takes no part; a negative one adds
                // no latency, and its route (met again, not adjacent) sums
                // as stored.
                (p, Some("rag"), Some(12.0), Some(3)),
                (p, Some("chat"), Some(12.0), Some(4)),
                (p, Some("chat"), Some(30.0), Some(1)),
                (p, Some("chat"), None, Some(2)),
                (p, None, Some(99.0), None),
                (p, Some("rag"), Some(40.0), Some(-2)),
            ]),
            // Another batch, its own dictionaries; a null provider is empty.
            rollup(&[
                (p, Some("chat"), Some(12.0), Some(5)),
                (None, Some("x"), Some(7.0), Some(1)),
            ]),
        ];
        let (histogram, routes) = day_latency(&batches, true).unwrap();
        assert_eq!(histogram, vec![(7.0, 1), (12.0, 12), (30.0, 1), (40.0, 0)]);
        let routes = routes.unwrap();
        assert_eq!(routes["p/m"]["rag"], 1);
        assert_eq!(routes["p/m"]["chat"], 12);
        assert_eq!(routes["p/m"][""], 0, "a null count adds nothing");
        assert_eq!(routes["/m"]["x"], 1);
        assert_eq!(routes.values().map(BTreeMap::len).sum::<usize>(), 4);
        // Written before routes were kept: a histogram, no routes.
        assert_eq!(day_latency(&batches, false).unwrap().1, None);
        assert_eq!(
            day_latency(&[], true).unwrap(),
            (vec![], Some(RouteCounts::new()))
        );
    }

    #[test]
    fn a_latency_rollup_column_of_another_type_is_named() {
        let b = rollup(&[(Some("p"), None, Some(1.0), Some(1))]);
        let (i, _) = b.schema().column_with_name("requests").unwrap();
        let mut cols = b.columns().to_vec();
        cols[i] = std::sync::Arc::new(arrow::array::Int32Array::from(vec![1]));
        let mut fields: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[i] =
            arrow::datatypes::Field::new("requests", arrow::datatypes::DataType::Int32, true);
        let b = RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            cols,
        )
        .unwrap();
        let e = day_latency(&[b], true).unwrap_err();
        assert!(e.contains("`requests`"), "{e}");
    }

    #[test]
    fn earlier_days_latency_merges_over_a_window_and_routes_count_their_days() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
        let mut h = History::default();
        let mut routes = RouteCounts::new();
        routes
            .entry("p/m".into())
            .or_default()
            .insert("rag".into(), 2);
        h.add_latency(d(1), vec![(10.0, 2), (20.0, 1)], Some(routes));
        // Day 2 predates routes; day 3 kept routes and had no requests.
        h.add_latency(d(2), vec![(10.0, 5)], None);
        h.add_latency(d(3), vec![], Some(RouteCounts::new()));
        assert_eq!(h.latency.len(), 3);
        assert_eq!(h.latency(d(1), d(3)), vec![(10.0, 7), (20.0, 1)]);
        assert_eq!(percentile(&h.latency(d(1), d(1)), 0.5), Some(10.0));
        assert_eq!(h.routes.keys().copied().collect::<Vec<_>>(), [d(1), d(3)]);
        let (routes, days) = h.routes(d(1), d(3));
        assert_eq!(days, 2);
        assert_eq!(routes["p/m"]["rag"], 2);
    }

    #[test]
    fn money_totals_stay_null_without_priced_rows() {
        let mut a = DayTotals {
            requests: 2,
            ..DayTotals::default()
        };
        a.add(&DayTotals {
            requests: 1,
            cost_usd: Some(5),
            ..DayTotals::default()
        });
        assert_eq!(a.cost_usd, Some(5));
        assert_eq!(a.cache_savings_usd, None);
        assert_eq!(a.requests, 3);
    }
}
