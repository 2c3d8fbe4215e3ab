//! The SQL functions the queries use beyond DataFusion's own, registered in
//! every session that plans or runs a `sql/*.sql` file (the coordinator's
//! and each worker's): the money functions (`crate::money`) and
//! the two aggregates of `sql/day_sums.sql`, the finance pass: `ops_histogram`,
//! the exact histogram behind `sql/ops_counts.sql`, with the latency
//! rounding it counts by ([`latency_q`]), and [`day_cube`], the cube's
//! sums by group; the percentiles of those histograms ([`hist_quantiles`],
//! `sql/latency_percentiles.sql`), and the price keys of the cube
//! ([`price_key`]) with its null rules ([`nulls`]). Pure logic: no I/O.
//!
//! `ops_histogram(provider, model, route, latency_q, minute, hour, error,
//! keep)` counts requests and errors of the rows where `keep` is true (as
//! under `WHERE keep`: the finance scan marks the duplicate candidates
//! rather than copying every batch without them) in three sets at once
//! and returns them as a list of rows, exactly what
//! `GROUP BY GROUPING SETS ((provider, model, route, latency_q), (provider,
//! model, minute), (hour, latency_q))` with `count(*)` and
//! `count(*) FILTER (WHERE error)` gives (`grouping_set` naming the set;
//! keys outside their set null; a null `latency_q` a group of its own;
//! floats grouped by value, `-0` with `0` as DataFusion's hash aggregate
//! groups them, and given as `0`).
//! Why not that SQL: ~400K groups at 10M rows made DataFusion's generic
//! grouping-sets aggregate the day's largest cost (4.4 s of CPU computing
//! group ids over seven columns per set row). Here each row's text is
//! interned once per batch by its string views, and the three counts are
//! keyed by integers, mostly in dense blocks ([`dense`]): per route and
//! per hour for whole milliseconds below 10 s, per pair for the minutes.
//! A row without `minute` or `hour` (never from the scan, which refuses a
//! null `ts`) is an error, not a guess. The state between partial and
//! final aggregation (and over the wire from a worker) is the same list of
//! rows; `evaluate` returns it sorted, so the same rows give the same list
//! whatever the partitions.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray,
    StringArray, StringViewArray, StringViewBuilder, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type, Int32Type, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ScalarUDF, Signature, Volatility,
};

pub mod day_cube;
mod dense;
pub mod hist_quantiles;
pub mod latency_q;
pub mod nulls;
pub mod price_key;

use dense::{ByLatency, ByMinute};

/// Every scalar function the SQL files call that DataFusion does not define.
pub fn udfs() -> Vec<ScalarUDF> {
    let mut udfs = crate::money::udfs();
    udfs.extend(price_key::udfs());
    udfs.push(latency_q::udf());
    udfs.extend(nulls::udfs());
    udfs
}

/// Every aggregate function the SQL files call that DataFusion does not define.
pub fn udafs() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::new_from_impl(OpsHistogram {
            signature: Signature::any(8, Volatility::Immutable),
        }),
        hist_quantiles::udaf(),
        day_cube::udaf(),
    ]
}

/// Names of the sets, as `grouping_set` says them.
const LATENCY: &str = "latency";
const MINUTE: &str = "minute";
const HOUR: &str = "hour";

#[derive(Debug, PartialEq, Eq, Hash)]
struct OpsHistogram {
    signature: Signature,
}

/// The fields of one histogram row; `minute` has the type of the argument.
fn row_fields(minute: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("grouping_set", DataType::Utf8, false),
        Field::new("provider", DataType::Utf8View, true),
        Field::new("model", DataType::Utf8View, true),
        Field::new("route", DataType::Utf8View, true),
        Field::new("latency_q", DataType::Float64, true),
        Field::new("minute", minute.clone(), true),
        Field::new("hour", DataType::Int32, true),
        Field::new("requests", DataType::Int64, false),
        Field::new("errors", DataType::Int64, false),
    ])
}

fn item_field(minute: &DataType) -> FieldRef {
    Arc::new(Field::new(
        "item",
        DataType::Struct(row_fields(minute)),
        false,
    ))
}

impl AggregateUDFImpl for OpsHistogram {
    fn name(&self) -> &str {
        "ops_histogram"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::Null);
        let ok = args.len() == 8
            && args[..3].iter().all(text)
            && matches!(args[3], DataType::Float64 | DataType::Null)
            && matches!(args[4], DataType::Timestamp(..))
            && matches!(args[5], DataType::Int32)
            && matches!(args[6], DataType::Boolean | DataType::Null)
            && matches!(args[7], DataType::Boolean);
        if !ok {
            return exec_err!(
                "ops_histogram(provider, model, route: text, latency_q: DOUBLE, minute: TIMESTAMP, \
                 hour: INT, error: BOOLEAN, keep: BOOLEAN), called with {args:?}"
            );
        }
        Ok(DataType::List(item_field(&args[4])))
    }
    fn is_nullable(&self) -> bool {
        false
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let DataType::List(item) = args.return_field.data_type() else {
            return exec_err!("ops_histogram: return type is not a list");
        };
        Ok(Box::new(Histogram::new(Arc::clone(item))))
    }
}

/// Requests and errors of one group.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: i64,
    errors: i64,
}

impl Counts {
    fn add(&mut self, requests: i64, errors: i64) {
        self.requests += requests;
        self.errors += errors;
    }
}

type Text = Option<Box<str>>;
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// A float grouped by value (null apart), as DataFusion groups floats:
/// by its bits, with `-0` made `0` (and any NaN one NaN).
type FloatKey = Option<u64>;

fn float_key(v: f64) -> u64 {
    if v == 0.0 {
        0.0f64.to_bits()
    } else if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

#[derive(Debug)]
struct Histogram {
    item: FieldRef,
    /// Interned (provider, model, route) tuples and (provider, model) pairs.
    routes: Vec<[Text; 3]>,
    route_ids: Map<[Text; 3], u32>,
    pairs: Vec<[Text; 2]>,
    pair_ids: Map<[Text; 2], u32>,
    /// The pair of each route.
    route_pair: Vec<u32>,
    latency: ByLatency<u32>,
    minute: ByMinute,
    hour: ByLatency<i32>,
}

fn map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
}

fn text_views(a: &ArrayRef) -> DfResult<StringViewArray> {
    Ok(arrow::compute::cast(a, &DataType::Utf8View)?
        .as_string_view()
        .clone())
}

fn owned(a: &StringViewArray, i: usize) -> Text {
    a.is_valid(i).then(|| a.value(i).into())
}

/// Ids of the text tuples of a batch's rows where `want` holds (`u32::MAX`
/// elsewhere): each distinct tuple of string views (equal views in one
/// batch are equal text) is given to `intern` once.
fn intern_views<const N: usize>(
    cols: [&StringViewArray; N],
    want: impl Fn(usize) -> bool,
    mut intern: impl FnMut([Text; N]) -> u32,
) -> Vec<u32> {
    let mut seen: Map<[u128; N], u32> = map();
    // In front of `seen`, a direct-mapped cache of the last tuple seen in
    // each of 64 slots, found by a multiply-shift of the views: a batch
    // holds few distinct tuples, and this skips hashing 16 bytes a string
    // per row (perf: the interning was ~2.9% of a 10M-row run's samples
    // without it).
    let mut recent: [Option<([u128; N], u32)>; 64] = [None; 64];
    let slot = |k: &[u128; N]| {
        let folded = k.iter().fold(0u64, |h, v| {
            (h ^ (*v as u64) ^ ((*v >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        (folded >> 58) as usize
    };
    let view = |a: &StringViewArray, i: usize| {
        if a.is_valid(i) {
            a.views()[i]
        } else {
            // No view is all ones (its length would be 2^32 - 1).
            u128::MAX
        }
    };
    let rows = cols.first().map_or(0, |c| c.len());
    (0..rows)
        .map(|i| {
            if !want(i) {
                return u32::MAX;
            }
            let key: [u128; N] = std::array::from_fn(|c| view(cols[c], i));
            let s = slot(&key);
            if let Some((k, id)) = recent[s]
                && k == key
            {
                return id;
            }
            let id = match seen.get(&key) {
                Some(&id) => id,
                None => {
                    let id = intern(std::array::from_fn(|c| owned(cols[c], i)));
                    seen.insert(key, id);
                    id
                }
            };
            recent[s] = Some((key, id));
            id
        })
        .collect()
}

impl Histogram {
    fn new(item: FieldRef) -> Self {
        Histogram {
            item,
            routes: Vec::new(),
            route_ids: map(),
            pairs: Vec::new(),
            pair_ids: map(),
            route_pair: Vec::new(),
            latency: ByLatency::new(),
            minute: ByMinute::new(),
            hour: ByLatency::new(),
        }
    }

    fn pair_id(&mut self, pair: [Text; 2]) -> u32 {
        if let Some(&id) = self.pair_ids.get(&pair) {
            return id;
        }
        let id = self.pairs.len() as u32;
        self.pairs.push(pair.clone());
        self.pair_ids.insert(pair, id);
        id
    }

    fn route_id(&mut self, route: [Text; 3]) -> u32 {
        if let Some(&id) = self.route_ids.get(&route) {
            return id;
        }
        let pair = self.pair_id([route[0].clone(), route[1].clone()]);
        let id = self.routes.len() as u32;
        self.routes.push(route.clone());
        self.route_ids.insert(route, id);
        self.route_pair.push(pair);
        id
    }

    /// Route ids of a batch's rows: each distinct triple of string views
    /// (equal views in one batch are equal text) is interned once.
    fn route_ids_of(
        &mut self,
        p: &StringViewArray,
        m: &StringViewArray,
        r: &StringViewArray,
    ) -> Vec<u32> {
        intern_views([p, m, r], |_| true, |t| self.route_id(t))
    }

    /// The rows, in a fixed order: by set, then text, then key.
    fn rows(&self, sorted: bool) -> DfResult<StructArray> {
        let mut route_rank: Vec<u32> = (0..self.routes.len() as u32).collect();
        let mut pair_rank: Vec<u32> = (0..self.pairs.len() as u32).collect();
        if sorted {
            let mut order: Vec<usize> = (0..self.routes.len()).collect();
            order.sort_by(|&a, &b| self.routes[a].cmp(&self.routes[b]));
            for (rank, &id) in order.iter().enumerate() {
                route_rank[id] = rank as u32;
            }
            let mut order: Vec<usize> = (0..self.pairs.len()).collect();
            order.sort_by(|&a, &b| self.pairs[a].cmp(&self.pairs[b]));
            for (rank, &id) in order.iter().enumerate() {
                pair_rank[id] = rank as u32;
            }
        }
        let mut latency: Vec<((u32, FloatKey), Counts)> = self.latency.iter().collect();
        let mut minute: Vec<((u32, i64), Counts)> = self.minute.iter().collect();
        let mut hour: Vec<((i32, FloatKey), Counts)> = self.hour.iter().collect();
        if sorted {
            latency.sort_unstable_by_key(|((r, l), _)| (route_rank[*r as usize], *l));
            minute.sort_unstable_by_key(|((p, t), _)| (pair_rank[*p as usize], *t));
            hour.sort_unstable_by_key(|(k, _)| *k);
        }
        let n = latency.len() + minute.len() + hour.len();
        let mut set = Vec::with_capacity(n);
        let (mut provider, mut model, mut route) = (
            StringViewBuilder::with_capacity(n),
            StringViewBuilder::with_capacity(n),
            StringViewBuilder::with_capacity(n),
        );
        let mut latency_q: Vec<Option<f64>> = Vec::with_capacity(n);
        let mut minute_at: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut hour_of: Vec<Option<i32>> = Vec::with_capacity(n);
        let mut requests = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        for ((r, l), c) in latency {
            let [p, m, rt] = &self.routes[r as usize];
            set.push(LATENCY);
            provider.append_option(p.as_deref());
            model.append_option(m.as_deref());
            route.append_option(rt.as_deref());
            latency_q.push(l.map(f64::from_bits));
            minute_at.push(None);
            hour_of.push(None);
            requests.push(c.requests);
            errors.push(c.errors);
        }
        for ((pair, t), c) in minute {
            let [p, m] = &self.pairs[pair as usize];
            set.push(MINUTE);
            provider.append_option(p.as_deref());
            model.append_option(m.as_deref());
            route.append_null();
            latency_q.push(None);
            minute_at.push(Some(t));
            hour_of.push(None);
            requests.push(c.requests);
            errors.push(c.errors);
        }
        for ((h, l), c) in hour {
            set.push(HOUR);
            provider.append_null();
            model.append_null();
            route.append_null();
            latency_q.push(l.map(f64::from_bits));
            minute_at.push(None);
            hour_of.push(Some(h));
            requests.push(c.requests);
            errors.push(c.errors);
        }
        let DataType::Struct(fields) = self.item.data_type() else {
            return exec_err!("ops_histogram: item is not a struct");
        };
        let minute_type = fields[5].data_type().clone();
        let minute_col = arrow::compute::cast(&Int64Array::from(minute_at), &minute_type)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(set)),
            Arc::new(provider.finish()),
            Arc::new(model.finish()),
            Arc::new(route.finish()),
            Arc::new(Float64Array::from(latency_q)),
            minute_col,
            Arc::new(Int32Array::from(hour_of)),
            Arc::new(Int64Array::from(requests)),
            Arc::new(Int64Array::from(errors)),
        ];
        Ok(StructArray::try_new(fields.clone(), columns, None)?)
    }

    fn as_list(&self, sorted: bool) -> DfResult<ScalarValue> {
        let rows = self.rows(sorted)?;
        let list = ListArray::try_new(
            Arc::clone(&self.item),
            OffsetBuffer::from_lengths([rows.len()]),
            Arc::new(rows),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }

    /// Add the rows of one state (a partial histogram) to this one.
    fn merge_rows(&mut self, rows: &StructArray) -> DfResult<()> {
        let set = arrow::compute::cast(rows.column(0), &DataType::Utf8)?;
        let set = set.as_string::<i32>();
        let p = text_views(rows.column(1))?;
        let m = text_views(rows.column(2))?;
        let r = text_views(rows.column(3))?;
        let l = rows.column(4).as_primitive::<Float64Type>();
        let t = arrow::compute::cast(rows.column(5), &DataType::Int64)?;
        let t = t.as_primitive::<Int64Type>();
        let h = rows.column(6).as_primitive::<Int32Type>();
        let q = rows.column(7).as_primitive::<Int64Type>();
        let e = rows.column(8).as_primitive::<Int64Type>();
        let lat = |i: usize| l.is_valid(i).then(|| float_key(l.value(i)));
        // Each row's set, then its route or pair interned by its views, as
        // `update_batch` does: not an owned copy of its text per row.
        let sets = (0..rows.len())
            .map(|i| match set.value(i) {
                LATENCY => Ok(Set::Latency),
                MINUTE => Ok(Set::Minute),
                HOUR => Ok(Set::Hour),
                other => exec_err!("ops_histogram: a state row of set {other:?}"),
            })
            .collect::<DfResult<Vec<Set>>>()?;
        let routes = intern_views(
            [&p, &m, &r],
            |i| sets[i] == Set::Latency,
            |t| self.route_id(t),
        );
        let pairs = intern_views([&p, &m], |i| sets[i] == Set::Minute, |t| self.pair_id(t));
        for (i, kind) in sets.iter().enumerate() {
            let (requests, errors) = (q.value(i), e.value(i));
            match kind {
                Set::Latency => self.latency.add(routes[i], lat(i), requests, errors),
                Set::Minute => self.minute.add(pairs[i], t.value(i), requests, errors),
                Set::Hour => self.hour.add(h.value(i), lat(i), requests, errors),
            }
        }
        Ok(())
    }
}

/// The grouping set of a state row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Set {
    Latency,
    Minute,
    Hour,
}

impl Accumulator for Histogram {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let (p, m, r) = (
            text_views(&values[0])?,
            text_views(&values[1])?,
            text_views(&values[2])?,
        );
        let latency = arrow::compute::cast(&values[3], &DataType::Float64)?;
        let latency = latency.as_primitive::<Float64Type>();
        let minute = arrow::compute::cast(&values[4], &DataType::Int64)?;
        let minute = minute.as_primitive::<Int64Type>();
        let hour = values[5].as_primitive::<Int32Type>();
        let error = arrow::compute::cast(&values[6], &DataType::Boolean)?;
        let error: &BooleanArray = error.as_boolean();
        let keep: &BooleanArray = values[7].as_boolean();
        let keep = match keep.nulls() {
            None => keep.values().clone(),
            Some(n) => keep.values() & n.inner(),
        };
        if minute.null_count() > 0 || hour.null_count() > 0 {
            return exec_err!("ops_histogram: a row without ts (minute or hour is null)");
        }
        let ids = self.route_ids_of(&p, &m, &r);
        for (i, &id) in ids.iter().enumerate() {
            if !keep.value(i) {
                continue;
            }
            let lat = latency.is_valid(i).then(|| float_key(latency.value(i)));
            let err = i64::from(error.is_valid(i) && error.value(i));
            let pair = self.route_pair[id as usize];
            self.latency.add(id, lat, 1, err);
            self.minute.add(pair, minute.value(i), 1, err);
            self.hour.add(hour.value(i), lat, 1, err);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.as_list(true)
    }

    fn size(&self) -> usize {
        use std::mem::size_of;
        let text: usize = self
            .routes
            .iter()
            .flatten()
            .map(|t| t.as_ref().map_or(0, |s| s.len()))
            .sum();
        size_of::<Self>()
            + 2 * text
            + self.routes.capacity() * (size_of::<[Text; 3]>() * 2 + 8)
            + self.pairs.capacity() * (size_of::<[Text; 2]>() * 2 + 8)
            + self.latency.size()
            + self.minute.size()
            + self.hour.size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.as_list(false)?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let lists = states[0].as_list::<i32>();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                let rows = lists.value(i);
                self.merge_rows(rows.as_struct())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
