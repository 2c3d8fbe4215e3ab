//! History from the daily rollups, never from raw logs.
//!
//! The dashboards compare a day with the days before it (trailing 7 days,
//! day over day, month to date, the 30-day trend). Those figures come from
//! `rollups/daily/date=D/` and `rollups/latency/date=D/`, which every run
//! writes; a day without a rollup is absent (never zero). [`DayTotals`] are
//! exact: money stays a scaled integer until it is displayed.
//!
//! Pure data: the daily rollups arrive as rows (`queries::rows::RollupDaily`),
//! the latency rollups of the window as SQL's sums of them (`HistoryLatency`,
//! `HistoryRoute`: never 90K rows a day decoded one by one); today's route
//! mix from `RollupLatency` rows. Reading them from storage is the pipeline's.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::queries::rows::{Dec, HistoryLatency, HistoryRoute, RollupDaily, RollupLatency};

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
        *out.entry(format!("{p}/{m}"))
            .or_default()
            .entry(route.clone().unwrap_or_default())
            .or_default() += r.requests.unwrap_or(0);
    }
    Some(out)
}

/// Days since 1970-01-01: how `sql/history_*.sql` name a day.
pub fn epoch_day(date: NaiveDate) -> i64 {
    (date - NaiveDate::default()).num_days()
}

impl History {
    /// Add a day's daily rollup.
    pub fn add_daily(&mut self, date: NaiveDate, rows: &[RollupDaily]) {
        self.days.insert(date, totals_of(rows));
        self.usage.insert(date, crate::reconcile::usage_of(rows));
        self.rows.insert(date, crate::anomaly::rows_of(rows));
    }

    /// Add the latency rollups of `days` (each with whether it kept routes,
    /// which rollups written before routes were kept did not), as
    /// `sql/history_latency.sql` and `sql/history_routes.sql` summed them.
    /// Every day listed gets its histogram (and route counts, if it kept
    /// routes), empty or not; rows of other days are ignored.
    pub fn add_latency(
        &mut self,
        days: &[(NaiveDate, bool)],
        bins: &[HistoryLatency],
        routes: &[HistoryRoute],
    ) {
        let by_epoch: BTreeMap<i64, NaiveDate> =
            days.iter().map(|(d, _)| (epoch_day(*d), *d)).collect();
        for (date, kept) in days {
            self.latency.insert(*date, Histogram::new());
            if *kept {
                self.routes.insert(*date, RouteCounts::new());
            }
        }
        for b in bins {
            let (Some(date), Some(v)) = (by_epoch.get(&b.epoch_day), b.latency_ms) else {
                continue;
            };
            if let Some(h) = self.latency.get_mut(date) {
                h.push((v, b.requests.max(0) as u64));
            }
        }
        for r in routes {
            let Some(day) = by_epoch
                .get(&r.epoch_day)
                .and_then(|d| self.routes.get_mut(d))
            else {
                continue;
            };
            *day.entry(format!("{}/{}", r.provider, r.model))
                .or_default()
                .entry(r.route.clone().unwrap_or_default())
                .or_default() += r.requests;
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

    #[test]
    fn latency_rollups_summed_by_sql_become_each_days_histogram_and_routes() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 3, day).unwrap();
        assert_eq!(epoch_day(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
        let bin = |day, v, n| HistoryLatency {
            epoch_day: epoch_day(d(day)),
            latency_ms: Some(v),
            requests: n,
        };
        let route = |day, p: &str, r: Option<&str>, n| HistoryRoute {
            epoch_day: epoch_day(d(day)),
            provider: p.into(),
            model: "m".into(),
            route: r.map(str::to_string),
            requests: n,
        };
        let mut h = History::default();
        // Day 3 kept routes and has none; day 2 predates routes; day 9 was
        // not read (a zone left out): its rows are ignored.
        h.add_latency(
            &[(d(1), true), (d(2), false), (d(3), true)],
            &[
                bin(1, 10.0, 2),
                bin(1, 20.0, 1),
                bin(2, 10.0, 5),
                bin(9, 1.0, 9),
            ],
            &[
                route(1, "p", Some("rag"), 2),
                route(1, "p", None, 1),
                // A null provider and an empty one are the same key.
                route(1, "", Some("x"), 1),
                route(9, "p", Some("rag"), 9),
            ],
        );
        assert_eq!(h.latency.len(), 3);
        assert!(h.latency[&d(3)].is_empty());
        assert_eq!(h.latency(d(1), d(3)), vec![(10.0, 7), (20.0, 1)]);
        assert_eq!(percentile(&h.latency(d(1), d(1)), 0.5), Some(10.0));
        assert_eq!(h.routes.keys().copied().collect::<Vec<_>>(), [d(1), d(3)]);
        let (routes, days) = h.routes(d(1), d(3));
        assert_eq!(days, 2);
        assert_eq!(routes["p/m"]["rag"], 2);
        assert_eq!(routes["p/m"][""], 1);
        assert_eq!(routes["/m"]["x"], 1);
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
