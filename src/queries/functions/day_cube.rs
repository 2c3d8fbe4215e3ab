//! `day_cube(keep, sums, counts, key, ...)`: the grouped sums of
//! `sql/day_sums.sql` as one aggregate over the whole day, returned as a
//! list of group rows (the pipeline reads it as a table). Pure logic: no
//! I/O.
//!
//! Only the rows where `keep` is true count, as under `WHERE keep`: the
//! finance scan marks the duplicate candidates instead of copying every
//! batch without them.
//!
//! The `key` arguments are the grouping columns (each row's field named
//! and as nullable as its argument, as `GROUP BY` keeps them); each
//! distinct combination is a group, nulls a value of their own, kept by
//! DataFusion's own [`GroupValues`] (what `GROUP BY` uses). Per group it
//! gives
//! - `requests`: the rows, as `count(*)`;
//! - for each field of `counts` (BOOLEAN): the rows where it is true, as
//!   `count(*) FILTER (WHERE c)` (null is not true);
//! - for each field of `sums` (BIGINT or DECIMAL(38, s)): the sum of the
//!   non-null values, null where there is none, wrapping on overflow, as
//!   DataFusion's `sum` (of the same type: a DECIMAL(38, s) sum is one).
//!
//! Why not `GROUP BY`: DataFusion runs one aggregation per scan, and the
//! finance scan must also feed `ops_histogram`, a global aggregate. As a
//! global aggregate itself the cube sits beside it over one scan. Its
//! partial state (over the wire from a worker too) is the same list of
//! group rows, merged by key; the groups are few (the day's tag, model,
//! currency, cache and price-key combinations), so a state is small. A
//! unit test holds it to the `GROUP BY` it replaced.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Int64Array, ListArray, StructArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DataType, Decimal128Type, Field, FieldRef, Fields, Int64Type, Schema,
};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Signature, Volatility,
};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

/// `day_cube`, for registration in a session.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(DayCube {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DayCube {
    signature: Signature,
}

/// The fields of one group row: the keys (as nullable as given: a key of
/// non-null columns stays one, as with `GROUP BY`), `requests`, the counts,
/// the sums.
fn row_fields(keys: &[FieldRef], sums: &Fields, counts: &Fields) -> Fields {
    let count = |name: &str| Arc::new(Field::new(name, DataType::Int64, false));
    let mut fields: Vec<FieldRef> = keys
        .iter()
        .map(|f| Arc::new(Field::new(f.name(), f.data_type().clone(), f.is_nullable())))
        .collect();
    fields.push(count("requests"));
    fields.extend(counts.iter().map(|f| count(f.name())));
    fields.extend(
        sums.iter()
            .map(|f| Arc::new(Field::new(f.name(), f.data_type().clone(), true))),
    );
    Fields::from(fields)
}

fn struct_fields(t: &DataType) -> Option<&Fields> {
    match t {
        DataType::Struct(fields) => Some(fields),
        _ => None,
    }
}

impl AggregateUDFImpl for DayCube {
    fn name(&self) -> &str {
        "day_cube"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        // The keys' names and nullability are in their fields only.
        exec_err!("day_cube: return_type called instead of return_field")
    }
    fn return_field(&self, args: &[FieldRef]) -> DfResult<FieldRef> {
        let usage = "day_cube(keep BOOLEAN, sums STRUCT of BIGINT or DECIMAL(38, s), \
                     counts STRUCT of BOOLEAN, key, ...)";
        let types: Vec<&DataType> = args.iter().map(|f| f.data_type()).collect();
        let (Some(DataType::Boolean), Some(sums), Some(counts), Some(keys)) = (
            args.first().map(|f| f.data_type()),
            args.get(1).and_then(|f| struct_fields(f.data_type())),
            args.get(2).and_then(|f| struct_fields(f.data_type())),
            args.get(3..).filter(|k| !k.is_empty()),
        ) else {
            return exec_err!("{usage}, called with {types:?}");
        };
        let sum_ok = |t: &DataType| {
            matches!(t, DataType::Int64)
                || matches!(t, DataType::Decimal128(p, _) if *p == DECIMAL128_MAX_PRECISION)
        };
        if !sums.iter().all(|f| sum_ok(f.data_type()))
            || !counts.iter().all(|f| f.data_type() == &DataType::Boolean)
        {
            return exec_err!("{usage}, called with {types:?}");
        }
        let item = Field::new(
            "item",
            DataType::Struct(row_fields(keys, sums, counts)),
            false,
        );
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::List(Arc::new(item)),
            false,
        )))
    }
    fn is_nullable(&self) -> bool {
        false
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let DataType::List(item) = args.return_field.data_type() else {
            return exec_err!("day_cube: return type is not a list");
        };
        let sums = args.exprs[1].data_type(args.schema)?;
        let Some(sums) = struct_fields(&sums) else {
            return exec_err!("day_cube: sums must be a struct");
        };
        let keys = args.exprs.len() - 3;
        Ok(Box::new(Cube::new(Arc::clone(item), keys, sums)?))
    }
}

/// One `sums` field's running sums, by group, and whether any value was seen.
#[derive(Debug)]
enum Sums {
    Int(Vec<i64>, Vec<bool>),
    Dec(Vec<i128>, Vec<bool>, DataType),
}

impl Sums {
    fn resize(&mut self, groups: usize) {
        match self {
            Sums::Int(v, seen) => {
                v.resize(groups, 0);
                seen.resize(groups, false);
            }
            Sums::Dec(v, seen, _) => {
                v.resize(groups, 0);
                seen.resize(groups, false);
            }
        }
    }

    /// Add each non-null value of `values` (of the rows in `keep`, if
    /// given) to its row's group.
    fn add(
        &mut self,
        ids: &[usize],
        values: &ArrayRef,
        keep: Option<&BooleanBuffer>,
    ) -> DfResult<()> {
        let counted = |nulls: Option<&NullBuffer>| -> Option<NullBuffer> {
            match (nulls, keep) {
                (None, None) => None,
                (Some(n), None) => Some(n.clone()),
                (None, Some(k)) => Some(NullBuffer::new(k.clone())),
                (Some(n), Some(k)) => Some(NullBuffer::new(n.inner() & k)),
            }
        };
        fn fold<T: Copy>(
            sums: &mut [T],
            seen: &mut [bool],
            ids: &[usize],
            values: &[T],
            nulls: Option<&NullBuffer>,
            add: impl Fn(T, T) -> T,
        ) {
            match nulls {
                None => {
                    for (&g, &v) in ids.iter().zip(values) {
                        sums[g] = add(sums[g], v);
                        seen[g] = true;
                    }
                }
                Some(nulls) => {
                    for i in nulls.valid_indices() {
                        let g = ids[i];
                        sums[g] = add(sums[g], values[i]);
                        seen[g] = true;
                    }
                }
            }
        }
        match self {
            Sums::Int(sums, seen) => {
                let Some(a) = values.as_primitive_opt::<Int64Type>() else {
                    return exec_err!("day_cube: a BIGINT sum got {}", values.data_type());
                };
                let counted = counted(a.nulls());
                fold(
                    sums,
                    seen,
                    ids,
                    a.values(),
                    counted.as_ref(),
                    i64::wrapping_add,
                );
            }
            Sums::Dec(sums, seen, _) => {
                let Some(a) = values.as_primitive_opt::<Decimal128Type>() else {
                    return exec_err!("day_cube: a DECIMAL sum got {}", values.data_type());
                };
                let counted = counted(a.nulls());
                fold(
                    sums,
                    seen,
                    ids,
                    a.values(),
                    counted.as_ref(),
                    i128::wrapping_add,
                );
            }
        }
        Ok(())
    }

    fn array(&self) -> DfResult<ArrayRef> {
        let nulls = |seen: &[bool]| Some(NullBuffer::from(seen.to_vec()));
        Ok(match self {
            Sums::Int(v, seen) => Arc::new(Int64Array::new(v.clone().into(), nulls(seen))),
            Sums::Dec(v, seen, t) => Arc::new(
                Decimal128Array::new(v.clone().into(), nulls(seen)).with_data_type(t.clone()),
            ),
        })
    }

    fn size(&self) -> usize {
        match self {
            Sums::Int(v, seen) => v.capacity() * 8 + seen.capacity(),
            Sums::Dec(v, seen, _) => v.capacity() * 16 + seen.capacity(),
        }
    }
}

/// `v[i]` moved to `v[to[i]]` (`to` a permutation).
fn permute<T: Copy + Default>(v: &mut Vec<T>, to: &[usize]) {
    let mut moved = vec![T::default(); v.len()];
    for (i, &t) in to.iter().enumerate() {
        moved[t] = v[i];
    }
    *v = moved;
}

/// The groups of one partition (or of the whole day, once merged).
struct Cube {
    item: FieldRef,
    keys: usize,
    /// In a mutex only to be `Sync`, as an accumulator must; reached
    /// through `&mut self` (`get_mut`), never locked.
    groups: std::sync::Mutex<Box<dyn GroupValues>>,
    ids: Vec<usize>,
    requests: Vec<i64>,
    counts: Vec<Vec<i64>>,
    sums: Vec<Sums>,
    /// Whether batches are first reduced to their distinct key tuples
    /// ([`distinct_rows`]); off for good once a batch has too many.
    by_tuples: bool,
}

impl std::fmt::Debug for Cube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cube")
            .field("groups", &self.requests.len())
            .finish()
    }
}

/// One key column's raw values, as 128-bit words equal where the values
/// are equal within one batch: a string view (equal views are equal text;
/// equal text may have two views), a boolean or an integer; null is all
/// ones, which no view (its length would be 2^32 - 1) and no other value is.
enum Raw<'a> {
    Views(&'a arrow::array::StringViewArray),
    Bool(&'a BooleanArray),
    I32(&'a arrow::array::Int32Array),
    I64(&'a Int64Array),
}

impl Raw<'_> {
    fn of(a: &ArrayRef) -> Option<Raw<'_>> {
        Some(match a.data_type() {
            DataType::Utf8View => Raw::Views(a.as_string_view()),
            DataType::Boolean => Raw::Bool(a.as_boolean()),
            DataType::Int32 => Raw::I32(a.as_primitive()),
            DataType::Int64 => Raw::I64(a.as_primitive()),
            _ => return None,
        })
    }

    fn at(&self, i: usize) -> u128 {
        let (valid, v) = match self {
            Raw::Views(a) => (a.is_valid(i), a.views()[i]),
            Raw::Bool(a) => (a.is_valid(i), u128::from(a.value(i))),
            Raw::I32(a) => (a.is_valid(i), u128::from(a.value(i) as u32)),
            Raw::I64(a) => (a.is_valid(i), u128::from(a.value(i) as u64)),
        };
        if valid { v } else { u128::MAX }
    }
}

/// A batch's rows by their tuple of raw key values: each row's tuple
/// (an index into the second list) and the first row of each tuple, in
/// row order; `None` for key types it does not read (the caller interns
/// the rows themselves). A tuple that a direct-mapped cache of 1,024
/// slots has lost is taken again as new: two entries of one tuple intern
/// to one group all the same.
fn distinct_rows(keys: &[ArrayRef]) -> Option<(Vec<u32>, Vec<u32>)> {
    let raws: Vec<Raw> = keys.iter().map(Raw::of).collect::<Option<_>>()?;
    let rows = keys.first().map_or(0, |k| k.len());
    let width = raws.len();
    let mut of_row = Vec::with_capacity(rows);
    let mut firsts: Vec<u32> = Vec::new();
    // the first rows' raw tuples, `width` words each
    let mut tuples: Vec<u128> = Vec::new();
    let mut recent = [u32::MAX; 1024];
    let mut tuple = vec![0u128; width];
    for i in 0..rows {
        let mut h = 0u64;
        for (w, r) in tuple.iter_mut().zip(&raws) {
            *w = r.at(i);
            h = (h ^ (*w as u64) ^ ((*w >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        let slot = (h >> 54) as usize;
        let t = recent[slot];
        if t != u32::MAX && tuples[t as usize * width..][..width] == tuple[..] {
            of_row.push(t);
            continue;
        }
        let t = u32::try_from(firsts.len()).ok()?;
        firsts.push(u32::try_from(i).ok()?);
        tuples.extend_from_slice(&tuple);
        recent[slot] = t;
        of_row.push(t);
    }
    Some((of_row, firsts))
}

impl Cube {
    fn new(item: FieldRef, keys: usize, sums: &Fields) -> DfResult<Cube> {
        let Some(fields) = struct_fields(item.data_type()) else {
            return exec_err!("day_cube: list item is not a struct");
        };
        let counts = fields.len() - keys - 1 - sums.len();
        let schema = Arc::new(Schema::new(fields[..keys].to_vec()));
        let sums = sums
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Sums::Int(Vec::new(), Vec::new()),
                t => Sums::Dec(Vec::new(), Vec::new(), t.clone()),
            })
            .collect();
        Ok(Cube {
            keys,
            groups: std::sync::Mutex::new(new_group_values(schema, &GroupOrdering::None)?),
            ids: Vec::new(),
            requests: Vec::new(),
            counts: vec![Vec::new(); counts],
            sums,
            item,
            by_tuples: true,
        })
    }

    fn groups(&mut self) -> &mut Box<dyn GroupValues> {
        self.groups
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Intern `keys`, rows into `self.ids`, and grow the measures to the groups.
    ///
    /// A batch is first reduced to one row of each distinct tuple of raw
    /// key values ([`distinct_rows`]), and only those rows go through
    /// `GroupValues`: a day's batch holds a few hundred tuples in 8,192
    /// rows, and DataFusion's multi-column interning (hashing and comparing
    /// six string columns a row) was ~7% of a 5M-row day's samples. The
    /// first row of each group is always one of those rows, so groups get
    /// the same ids in the same order either way.
    fn intern(&mut self, keys: &[ArrayRef]) -> DfResult<()> {
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        let rows = keys.first().map_or(0, |k| k.len());
        match self.by_tuples.then(|| distinct_rows(keys)).flatten() {
            Some((of_row, firsts)) => {
                // a batch of mostly distinct tuples gains nothing from this
                self.by_tuples = firsts.len() * 2 <= rows;
                let firsts = arrow::array::UInt32Array::from(firsts);
                let columns = keys
                    .iter()
                    .map(|k| arrow::compute::take(k, &firsts, None))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut first_ids = Vec::with_capacity(firsts.len());
                self.groups().intern(&columns, &mut first_ids)?;
                ids.extend(of_row.iter().map(|&t| first_ids[t as usize]));
            }
            None => self.groups().intern(keys, &mut ids)?,
        }
        self.ids = ids;
        let n = self.groups().len();
        self.requests.resize(n, 0);
        for c in &mut self.counts {
            c.resize(n, 0);
        }
        for s in &mut self.sums {
            s.resize(n);
        }
        Ok(())
    }

    /// Add counted values (`Int64`, non-null) to their rows' groups.
    fn add_counts(counts: &mut [i64], ids: &[usize], values: &ArrayRef) -> DfResult<()> {
        let Some(a) = values.as_primitive_opt::<Int64Type>() else {
            return exec_err!("day_cube: a count state is {}", values.data_type());
        };
        for (&g, &v) in ids.iter().zip(a.values()) {
            counts[g] += v;
        }
        Ok(())
    }

    /// The group rows, as one struct array; the groups stay as they were.
    fn rows(&mut self) -> DfResult<StructArray> {
        let Some(fields) = struct_fields(self.item.data_type()).cloned() else {
            return exec_err!("day_cube: list item is not a struct");
        };
        let groups = self.groups();
        let mut columns = groups.emit(EmitTo::All)?;
        // Emitting takes the group values (not their index: cleared here,
        // as DataFusion's aggregate does): intern the same rows again, in
        // the same order, so that the state can still be read or added to.
        groups.clear_shrink(columns.first().map_or(0, |c| c.len()));
        let mut ids = Vec::with_capacity(self.requests.len());
        self.groups().intern(&columns, &mut ids)?;
        let count = |v: &Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v.clone())) };
        columns.push(count(&self.requests));
        columns.extend(self.counts.iter().map(count));
        for s in &self.sums {
            columns.push(s.array()?);
        }
        // A group made only by rows not counted (see `update_batch`) is none.
        let counted = BooleanArray::from_iter(self.requests.iter().map(|&n| Some(n > 0)));
        // The groups come back in order but where two rows' hashes meet
        // (DataFusion places those after the rest): the measures follow.
        if ids.iter().enumerate().any(|(i, &g)| i != g) {
            permute(&mut self.requests, &ids);
            for c in &mut self.counts {
                permute(c, &ids);
            }
            for s in &mut self.sums {
                match s {
                    Sums::Int(v, seen) => {
                        permute(v, &ids);
                        permute(seen, &ids);
                    }
                    Sums::Dec(v, seen, _) => {
                        permute(v, &ids);
                        permute(seen, &ids);
                    }
                }
            }
        }
        let rows = StructArray::try_new(fields, columns, None)?;
        if counted.false_count() == 0 {
            return Ok(rows);
        }
        Ok(arrow::compute::filter(&rows, &counted)?.as_struct().clone())
    }

    fn as_list(&mut self) -> DfResult<ScalarValue> {
        let rows = self.rows()?;
        let list = ListArray::try_new(
            Arc::clone(&self.item),
            OffsetBuffer::from_lengths([rows.len()]),
            Arc::new(rows),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn merge_rows(&mut self, rows: &StructArray) -> DfResult<()> {
        let columns = rows.columns();
        self.intern(&columns[..self.keys])?;
        let ids = std::mem::take(&mut self.ids);
        let mut at = self.keys;
        Self::add_counts(&mut self.requests, &ids, &columns[at])?;
        at += 1;
        for c in &mut self.counts {
            Self::add_counts(c, &ids, &columns[at])?;
            at += 1;
        }
        for s in &mut self.sums {
            s.add(&ids, &columns[at], None)?;
            at += 1;
        }
        self.ids = ids;
        Ok(())
    }
}

impl Accumulator for Cube {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let (Some(keep), Some(sums), Some(counts)) = (
            values[0].as_boolean_opt(),
            values[1].as_struct_opt(),
            values[2].as_struct_opt(),
        ) else {
            return exec_err!("day_cube: keep must be a boolean, sums and counts structs");
        };
        // The rows to count: true and not null. Every row is interned (the
        // others may make a group of none, left out when the groups are read).
        let keep = match keep.nulls() {
            None => keep.values().clone(),
            Some(n) => keep.values() & n.inner(),
        };
        let keep = (keep.count_set_bits() < keep.len()).then_some(keep);
        self.intern(&values[3..])?;
        let ids = std::mem::take(&mut self.ids);
        match &keep {
            None => {
                for &g in &ids {
                    self.requests[g] += 1;
                }
            }
            Some(k) => {
                for i in k.set_indices() {
                    self.requests[ids[i]] += 1;
                }
            }
        }
        for (c, values) in self.counts.iter_mut().zip(counts.columns()) {
            let values: &BooleanArray = values.as_boolean();
            // true and not null
            let mut trues = match values.nulls() {
                None => values.values().clone(),
                Some(n) => values.values() & n.inner(),
            };
            if let Some(k) = &keep {
                trues = &trues & k;
            }
            for i in trues.set_indices() {
                c[ids[i]] += 1;
            }
        }
        for (s, values) in self.sums.iter_mut().zip(sums.columns()) {
            s.add(&ids, values, keep.as_ref())?;
        }
        self.ids = ids;
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.as_list()
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.groups.lock().map_or(0, |g| g.size())
            + self.ids.capacity() * 8
            + self.requests.capacity() * 8
            + self.counts.iter().map(|c| c.capacity() * 8).sum::<usize>()
            + self.sums.iter().map(Sums::size).sum::<usize>()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.as_list()?])
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
mod tests {
    //! `day_cube` against the `GROUP BY` it replaces, on null and long text
    //! keys, null booleans, null and negative values, several batches and
    //! partitions (partial states merged), and a state read mid-way.

    use super::*;
    use arrow::array::{RecordBatch, StringViewArray};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("k1", DataType::Utf8View, true),
            Field::new("k2", DataType::Boolean, true),
            Field::new("k3", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(38, 4), true),
            Field::new("b", DataType::Boolean, true),
        ]))
    }

    /// `n` batches of `rows` rows; `spread` distinct values of `k3`.
    fn batches(seed: u64, n: usize, rows: usize, spread: u64) -> Vec<RecordBatch> {
        let mut s = seed;
        let mut next = move |n: u64| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) % n
        };
        let texts = [
            Some("eng"),
            Some("a-department-name-longer-than-twelve-bytes"),
            Some(""),
            None,
        ];
        (0..n)
            .map(|_| {
                let (mut k1, mut k2, mut k3, mut v, mut d, mut b) =
                    (vec![], vec![], vec![], vec![], vec![], vec![]);
                for _ in 0..rows {
                    k1.push(texts[next(4) as usize]);
                    k2.push([None, Some(true), Some(false)][next(3) as usize]);
                    k3.push((next(spread + 1) != 0).then(|| next(spread) as i64 - 3));
                    v.push((next(5) != 0).then(|| next(2_000_001) as i64 - 1_000_000));
                    d.push((next(4) != 0).then(|| i128::from(next(10_000_000)) - 5_000_000));
                    b.push([None, Some(true), Some(false)][next(3) as usize]);
                }
                RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(StringViewArray::from(k1)),
                        Arc::new(BooleanArray::from(k2)),
                        Arc::new(Int64Array::from(k3)),
                        Arc::new(Int64Array::from(v)),
                        Arc::new(
                            Decimal128Array::from(d).with_data_type(DataType::Decimal128(38, 4)),
                        ),
                        Arc::new(BooleanArray::from(b)),
                    ],
                )
                .unwrap()
            })
            .collect()
    }

    fn session(partitions: Vec<Vec<RecordBatch>>) -> SessionContext {
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(partitions.len().max(1)),
        );
        ctx.register_udaf(udaf());
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema(), partitions).unwrap()),
        )
        .unwrap();
        ctx
    }

    /// `day_cube` over `t`, counting the rows where `keep` (SQL) holds.
    fn new_sql(keep: &str) -> String {
        format!(
            "SELECT get_field(c, 'k1') AS k1, get_field(c, 'k2') AS k2, get_field(c, 'k3') AS k3, \
             get_field(c, 'requests') AS requests, get_field(c, 'b') AS b, get_field(c, 'vn') AS vn, \
             get_field(c, 'v') AS v, get_field(c, 'd') AS d, get_field(c, 'vf') AS vf \
             FROM (SELECT unnest(day_cube({keep}, \
                 named_struct('v', v, 'd', CAST(d AS DECIMAL(38, 4)), 'vf', CASE WHEN b IS NOT NULL THEN v END), \
                 named_struct('b', b, 'vn', v IS NOT NULL), \
                 k1, k2, k3)) AS c FROM t)"
        )
    }

    /// The `GROUP BY` it replaces, over the rows where `keep` holds.
    fn old_sql(keep: &str) -> String {
        format!(
            "SELECT k1, k2, k3, count(*) AS requests, count(*) FILTER (WHERE b) AS b, \
             count(v) AS vn, sum(v) AS v, sum(d) AS d, sum(v) FILTER (WHERE b IS NOT NULL) AS vf \
             FROM t WHERE {keep} GROUP BY k1, k2, k3"
        )
    }

    /// Each row as text, sorted; and the result's column types.
    async fn rows(ctx: &SessionContext, sql: &str) -> (Vec<String>, Vec<DataType>) {
        let df = ctx.sql(sql).await.unwrap();
        let types = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let batches = df.collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| {
                        let v = ScalarValue::try_from_array(c, i).unwrap();
                        if v.is_null() {
                            "null".into()
                        } else {
                            v.to_string()
                        }
                    })
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out.sort();
        (out, types)
    }

    #[tokio::test]
    async fn the_cube_gives_exactly_the_group_by_rows() {
        let data = batches(5, 12, 600, 9);
        let ctx = session(data.chunks(4).map(<[RecordBatch]>::to_vec).collect());
        let (new, new_types) = rows(&ctx, &new_sql("true")).await;
        let (old, old_types) = rows(&ctx, &old_sql("true")).await;
        assert!(old.len() > 100, "many groups: {}", old.len());
        assert!(old.iter().any(|r| r.starts_with("null|null|null|")));
        assert_eq!(new, old);
        // sums keep their type; counts are BIGINT
        assert_eq!(new_types[3..], old_types[3..]);
        assert_eq!(new_types[..3], old_types[..3]);

        // Rows not kept count nowhere: within a group (b null), and a group
        // of such rows only (k2 null) is no group at all.
        let keep = "k2 IS NOT NULL AND b IS NOT NULL";
        let (new, _) = rows(&ctx, &new_sql(keep)).await;
        let (old, _) = rows(&ctx, &old_sql(keep)).await;
        assert!(!old.iter().any(|r| r.split('|').nth(1) == Some("null")));
        assert!(old.len() > 50, "groups kept: {}", old.len());
        assert_eq!(new, old);
    }

    /// Batches of mostly distinct key tuples (the reduction to distinct
    /// tuples turns itself off after the first) give the same rows too.
    #[tokio::test]
    async fn mostly_distinct_keys_give_the_group_by_rows() {
        let data = batches(7, 6, 600, 1_000_000);
        let ctx = session(data.chunks(3).map(<[RecordBatch]>::to_vec).collect());
        let (new, _) = rows(&ctx, &new_sql("true")).await;
        let (old, _) = rows(&ctx, &old_sql("true")).await;
        assert!(old.len() > 3_000, "groups: {}", old.len());
        assert_eq!(new, old);
    }

    /// A batch by its tuples, by hand: equal text under two views is two
    /// tuples (they intern to one group), null apart from every value.
    #[test]
    fn rows_are_reduced_to_their_first_tuples() {
        let long = "a-department-name-longer-than-twelve-bytes";
        let k1: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("eng"),
            Some(long),
            Some("eng"),
            None,
            Some(long),
            Some("eng"),
            None,
        ]));
        let k2: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![
            Some(1),
            Some(1),
            Some(1),
            Some(0),
            Some(1),
            Some(2),
            None,
        ]));
        let (of_row, firsts) = distinct_rows(&[k1, k2]).unwrap();
        // rows 1 and 4 hold the same text in two views
        assert_eq!(firsts, [0, 1, 3, 4, 5, 6]);
        assert_eq!(of_row, [0, 1, 0, 2, 3, 4, 5]);
        let utf8: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["x"]));
        assert!(distinct_rows(&[utf8]).is_none(), "a type it does not read");
    }

    #[tokio::test]
    async fn an_empty_input_gives_no_groups() {
        let ctx = session(vec![vec![]]);
        assert!(rows(&ctx, &new_sql("true")).await.0.is_empty());
    }

    /// A key of non-null columns stays non-null, as `GROUP BY` keeps it (the
    /// rollups' Parquet schemas say so); sums are nullable, counts not.
    #[test]
    fn keys_keep_their_names_and_nullability() {
        let sums = Fields::from(vec![Field::new("v", DataType::Int64, true)]);
        let counts = Fields::from(vec![Field::new("b", DataType::Boolean, true)]);
        let fields: Vec<FieldRef> = vec![
            Arc::new(Field::new("keep", DataType::Boolean, false)),
            Arc::new(Field::new("s", DataType::Struct(sums), true)),
            Arc::new(Field::new("c", DataType::Struct(counts), true)),
            Arc::new(Field::new("provider", DataType::Utf8View, false)),
            Arc::new(Field::new("dept", DataType::Utf8View, true)),
        ];
        let out = udaf().return_field(&fields).unwrap();
        let DataType::List(item) = out.data_type() else {
            panic!("{out}")
        };
        let row = struct_fields(item.data_type()).unwrap();
        let said: Vec<(&str, bool)> = row
            .iter()
            .map(|f| (f.name().as_str(), f.is_nullable()))
            .collect();
        assert_eq!(
            said,
            vec![
                ("provider", false),
                ("dept", true),
                ("requests", false),
                ("b", false),
                ("v", true)
            ]
        );
        // a bad sum type is refused, naming the call
        let mut bad = fields.clone();
        bad[1] = Arc::new(Field::new(
            "s",
            DataType::Struct(Fields::from(vec![Field::new("x", DataType::Float64, true)])),
            true,
        ));
        let e = udaf().return_field(&bad).unwrap_err().to_string();
        assert!(e.contains("day_cube(keep BOOLEAN, sums STRUCT"), "{e}");
    }

    #[test]
    fn permuting_moves_each_value_to_its_new_place() {
        let mut v = vec![10, 11, 12, 13];
        permute(&mut v, &[2, 0, 3, 1]);
        assert_eq!(v, vec![11, 13, 10, 12]);
    }

    /// Reading the state (which emits the groups and interns them again,
    /// maybe under other ids) and then adding rows gives the same groups as
    /// adding every row first: the measures follow their groups.
    #[tokio::test]
    async fn a_state_read_mid_way_loses_nothing() {
        let data = batches(17, 6, 2000, 3000);
        let ctx = session(vec![data.clone()]);
        let (whole, _) = rows(&ctx, &new_sql("k2 IS NOT NULL")).await;
        assert!(whole.len() > 2000, "many groups: {}", whole.len());

        let args = |b: &RecordBatch| -> Vec<ArrayRef> {
            let col = |n: &str| Arc::clone(b.column_by_name(n).unwrap());
            let st = |names: &[&str], cols: Vec<ArrayRef>| -> ArrayRef {
                let fields: Vec<Field> = names
                    .iter()
                    .zip(&cols)
                    .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                    .collect();
                Arc::new(StructArray::new(Fields::from(fields), cols, None))
            };
            let b_valid = arrow::compute::is_not_null(&col("b")).unwrap();
            let vf =
                arrow::compute::nullif(&col("v"), &arrow::compute::not(&b_valid).unwrap()).unwrap();
            let vn: ArrayRef = Arc::new(arrow::compute::is_not_null(&col("v")).unwrap());
            let keep: ArrayRef = Arc::new(arrow::compute::is_not_null(&col("k2")).unwrap());
            vec![
                keep,
                st(&["v", "d", "vf"], vec![col("v"), col("d"), vf]),
                st(&["b", "vn"], vec![col("b"), vn]),
                col("k1"),
                col("k2"),
                col("k3"),
            ]
        };
        let first = args(&data[0]);
        let fields: Vec<FieldRef> = ["keep", "sums", "counts", "k1", "k2", "k3"]
            .iter()
            .zip(&first)
            .map(|(n, a)| Arc::new(Field::new(*n, a.data_type().clone(), true)))
            .collect();
        let item = match udaf().return_field(&fields).unwrap().data_type() {
            DataType::List(item) => Arc::clone(item),
            t => panic!("{t}"),
        };
        let sums = struct_fields(fields[1].data_type()).unwrap().clone();
        let mut cube = Cube::new(item, 3, &sums).unwrap();
        for (i, b) in data.iter().enumerate() {
            cube.update_batch(&args(b)).unwrap();
            if i % 2 == 0 {
                cube.state().unwrap();
            }
        }
        let ScalarValue::List(list) = cube.evaluate().unwrap() else {
            panic!("not a list")
        };
        let table = RecordBatch::from(list.value(0).as_struct().clone());
        let ctx = SessionContext::new();
        ctx.register_batch("c", table).unwrap();
        let (piecewise, _) =
            rows(&ctx, "SELECT k1, k2, k3, requests, b, vn, v, d, vf FROM c").await;
        assert_eq!(piecewise, whole);
    }
}
