//! History from the daily rollups, never from raw logs.
//!
//! The dashboards compare a day with the days before it (trailing 7 days,
//! day over day, month to date, the 30-day trend). Those figures come from
//! `rollups/daily/date=D/` and `rollups/latency/date=D/`, which every run
//! writes; a day without a rollup is absent (never zero). [`DayTotals`] are
//! exact: money stays a scaled integer until it is displayed.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::lake::{Location, ObjectInfo, Stores, partition_dir};

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

fn i64_col(b: &RecordBatch, name: &str) -> Result<i64> {
    let col = b
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("rollup column `{name}` missing")))?;
    let col = arrow::compute::cast(col, &DataType::Int64)
        .map_err(|e| Error::Internal(format!("rollup column `{name}`: {e}")))?;
    Ok(col
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .flatten()
        .sum())
}

/// Sum of a decimal column rescaled to `scale`; `None` when every cell is null.
fn money_col(b: &RecordBatch, name: &str, scale: i8) -> Result<Option<i128>> {
    let col = b
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("rollup column `{name}` missing")))?;
    let DataType::Decimal128(_, from) = col.data_type() else {
        return Err(Error::Internal(format!(
            "rollup column `{name}` is not a decimal"
        )));
    };
    let values: Vec<i128> = col
        .as_primitive::<Decimal128Type>()
        .iter()
        .flatten()
        .collect();
    Ok((!values.is_empty()).then(|| {
        values
            .into_iter()
            .map(|v| crate::money::rescale(v, *from, scale))
            .sum()
    }))
}

/// The totals of one day from its `rollup_daily` batches.
pub fn totals_of(batches: &[RecordBatch]) -> Result<DayTotals> {
    let mut t = DayTotals::default();
    for b in batches {
        t.add(&DayTotals {
            requests: i64_col(b, "requests")?,
            errors: i64_col(b, "errors")?,
            cache_hits: i64_col(b, "cache_hits")?,
            input_tokens: i64_col(b, "input_tokens")?,
            output_tokens: i64_col(b, "output_tokens")?,
            priced_tokens: i64_col(b, "priced_tokens")?,
            unpriced_requests: i64_col(b, "unpriced_requests")?,
            cost_usd: money_col(b, "cost_usd", ROLLUP_MONEY_SCALE)?,
            cache_savings_usd: money_col(b, "cache_savings_usd", ROLLUP_MONEY_SCALE)?,
            logged_cost_usd: money_col(b, "logged_cost_usd", ROLLUP_MONEY_SCALE)?,
            citation_sum: money_col(b, "citation_sum", 15)?.unwrap_or(0),
            citation_requests: i64_col(b, "citation_requests")?,
            human_reviewed: i64_col(b, "human_reviewed")?,
            human_approved: i64_col(b, "human_approved")?,
            duplicates_dropped: i64_col(b, "duplicates_dropped")?,
        });
    }
    Ok(t)
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
    /// Every rollup object read, with its SHA-256 (for the manifest).
    pub read: Vec<(ObjectInfo, String)>,
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

async fn read_parquet(
    stores: &Stores,
    loc: &Location,
    read: &mut Vec<(ObjectInfo, String)>,
) -> Result<Option<(Vec<RecordBatch>, Option<String>)>> {
    let Some((info, bytes)) = stores.get_opt_info(loc).await? else {
        return Ok(None);
    };
    read.push((info, crate::manifest::sha256(&bytes)));
    let corrupt = |e: parquet::errors::ParquetError| Error::CorruptInput {
        key: loc.to_string(),
        message: e.to_string(),
    };
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(corrupt)?;
    let zone = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == ZONE_KEY))
        .and_then(|e| e.value.clone());
    let reader = builder.build().map_err(corrupt)?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.into()))?;
    Ok(Some((batches, zone)))
}

/// Requests by route (`""` for none) of each `provider/model`.
pub type RouteCounts = BTreeMap<String, BTreeMap<String, i64>>;

/// The route counts in `rollup_latency` batches, or `None` for a rollup
/// written before it had a `route` column.
pub fn routes_of(batches: &[RecordBatch]) -> Result<Option<RouteCounts>> {
    let mut out = RouteCounts::new();
    for b in batches {
        let (Some(p), Some(m), Some(r), Some(n)) = (
            b.column_by_name("provider"),
            b.column_by_name("model"),
            b.column_by_name("route"),
            b.column_by_name("requests"),
        ) else {
            return Ok(None);
        };
        let text = |c: &arrow::array::ArrayRef| -> Result<arrow::array::ArrayRef> {
            arrow::compute::cast(c, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))
        };
        let (p, m, r) = (text(p)?, text(m)?, text(r)?);
        let (p, m, r) = (
            p.as_string::<i32>(),
            m.as_string::<i32>(),
            r.as_string::<i32>(),
        );
        let n = arrow::compute::cast(n, &DataType::Int64)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let n = n.as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            let route = if r.is_null(i) { "" } else { r.value(i) };
            *out.entry(format!("{}/{}", p.value(i), m.value(i)))
                .or_default()
                .entry(route.to_string())
                .or_default() += n.value(i);
        }
    }
    Ok(Some(out))
}

/// Day-level histogram from `rollup_latency` batches.
pub fn histogram_of(batches: &[RecordBatch]) -> Result<Histogram> {
    let mut merged: BTreeMap<u64, u64> = BTreeMap::new();
    for b in batches {
        let (Some(v), Some(n)) = (b.column_by_name("latency_ms"), b.column_by_name("requests"))
        else {
            return Err(Error::Internal(
                "latency rollup without latency_ms/requests".into(),
            ));
        };
        let v = v.as_primitive::<Float64Type>();
        let n = arrow::compute::cast(n, &DataType::Int64)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let n = n.as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            if !v.is_null(i) && !n.is_null(i) {
                *merged.entry(v.value(i).to_bits()).or_default() += n.value(i).max(0) as u64;
            }
        }
    }
    Ok(merged
        .into_iter()
        .map(|(b, c)| (f64::from_bits(b), c))
        .collect())
}

/// Read the rollups of `days` (days without one are absent), a few objects
/// at a time. `History::read` lists every object read with its digest.
/// Read the rollups of `days` cut in `zone` (rollups that record another
/// zone are listed in [`History::other_zone`] and not used; rollups that
/// record none predate the record and are used).
pub async fn load(
    stores: &Stores,
    rollups: &Location,
    days: &[NaiveDate],
    zone: &str,
) -> Result<History> {
    use futures::{StreamExt, TryStreamExt};
    let read = days.iter().map(|date| async move {
        let part = partition_dir(*date);
        let mut read = Vec::new();
        let daily = read_parquet(
            stores,
            &rollups.join("daily").join(&part).join("part-0.parquet"),
            &mut read,
        )
        .await?;
        let latency = read_parquet(
            stores,
            &rollups.join("latency").join(&part).join("part-0.parquet"),
            &mut read,
        )
        .await?;
        Ok::<_, Error>((*date, daily, latency, read))
    });
    let loaded: Vec<_> = futures::stream::iter(read)
        .buffered(8)
        .try_collect()
        .await?;
    let mut history = History::default();
    for (date, daily, latency, read) in loaded {
        history.read.extend(read);
        let foreign = [&daily, &latency]
            .into_iter()
            .flatten()
            .find_map(|(_, z)| z.as_deref().filter(|z| *z != zone));
        if let Some(other) = foreign {
            history.other_zone.push((date, other.to_string()));
            continue;
        }
        let (daily, latency) = (daily.map(|d| d.0), latency.map(|l| l.0));
        if let Some(b) = daily {
            history.days.insert(date, totals_of(&b)?);
            history.usage.insert(date, crate::reconcile::usage_of(&b)?);
            history.rows.insert(date, crate::anomaly::rows_of(&b)?);
        }
        if let Some(b) = latency {
            history.latency.insert(date, histogram_of(&b)?);
            if let Some(routes) = routes_of(&b)? {
                history.routes.insert(date, routes);
            }
        }
    }
    Ok(history)
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
