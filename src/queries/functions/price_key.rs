//! The two functions with which `sql/day_sums.sql` groups and `sql/cube.sql`
//! prices groups of requests instead of each request. Pure logic: no I/O.
//!
//! The price row a request finds (`sql/priced.sql`, SPEC 1.2) depends on
//! its (provider, model), on the instant `ts` and on four yes/no tests of
//! its tokens. Between two consecutive price cuts (`$price_cuts`:
//! [`crate::pricing::PriceTable::cuts`], every instant where a price row in
//! force during the day begins or ends) every price-map row is in force
//! throughout or not at all, so the instant matters only by its segment:
//! how many cuts are at or before it.
//!
//! - `price_key(ts_ns, cuts, has_output, has_cache_read, has_cache_write,
//!   has_uncached_input) -> INT` packs the segment and the four tests in
//!   one small integer, `segment * 16 + bits`, the bits
//!   [`OUTPUT`] (8), [`CACHE_READ`] (4), [`CACHE_WRITE`] (2) and
//!   [`UNCACHED_INPUT`] (1), a null test as no (the pricing rule treats a
//!   null test as it treats false). One grouping column instead of five:
//!   A grouping aggregate pays per grouping column and row.
//! - `price_key_instant(price_key, cuts) -> TIMESTAMP` is an instant of the
//!   key's segment (its first cut, or the earliest instant for segment
//!   0): the instant at which the group's price row is looked up.
//!
//! The tests themselves are SQL (`sql/day_sums.sql`); these functions only pack
//! and unpack them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The bit of `price_key` for output tokens.
pub const OUTPUT: i32 = 8;
/// The bit of `price_key` for cache-read tokens.
pub const CACHE_READ: i32 = 4;
/// The bit of `price_key` for cache-write tokens.
pub const CACHE_WRITE: i32 = 2;
/// The bit of `price_key` for uncached input tokens.
pub const UNCACHED_INPUT: i32 = 1;

/// `price_key` and `price_key_instant`, for registration in a session.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(PriceKey {
            signature: Signature::any(6, Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(PriceKeyInstant {
            signature: Signature::any(2, Volatility::Immutable),
        }),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PriceKey {
    signature: Signature,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PriceKeyInstant {
    signature: Signature,
}

/// Whether `t` can be the cuts argument: a list of BIGINT, or `Null`
/// while the `$price_cuts` parameter is not yet bound.
fn cuts_type(t: &DataType) -> bool {
    match t {
        DataType::List(item) => item.data_type() == &DataType::Int64,
        DataType::Null => true,
        _ => false,
    }
}

/// The cuts argument: one sorted list for every row (a parameter).
fn cuts(arg: &ColumnarValue, function: &str) -> DfResult<Vec<i64>> {
    let ColumnarValue::Scalar(ScalarValue::List(list)) = arg else {
        return exec_err!("{function}: the cuts must be one list for every row, got {arg:?}");
    };
    if list.is_null(0) {
        return exec_err!("{function}: the cuts are null");
    }
    let values = list.value(0);
    let values = values.as_primitive::<Int64Type>();
    if values.null_count() > 0 || values.values().windows(2).any(|w| w[0] > w[1]) {
        return exec_err!("{function}: the cuts must be sorted and not null, got {values:?}");
    }
    Ok(values.values().to_vec())
}

/// The segment of `t`: how many cuts are at or before it. A day has few
/// cuts: counted without branches below 32 of them, else by binary search
/// (the cuts are sorted, so the two agree).
fn segment(cuts: &[i64], t: i64) -> i32 {
    if cuts.len() < 32 {
        cuts.iter().map(|&c| i32::from(c <= t)).sum()
    } else {
        cuts.partition_point(|&c| c <= t) as i32
    }
}

impl ScalarUDFImpl for PriceKey {
    fn name(&self) -> &str {
        "price_key"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        let ok = matches!(args[0], DataType::Int64 | DataType::Null)
            && cuts_type(&args[1])
            && args[2..]
                .iter()
                .all(|t| matches!(t, DataType::Boolean | DataType::Null));
        if !ok {
            return exec_err!(
                "price_key(ts_ns: BIGINT, cuts: BIGINT[], has_output, has_cache_read, \
                 has_cache_write, has_uncached_input: BOOLEAN), called with {args:?}"
            );
        }
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let cuts = cuts(&args.args[1], "price_key")?;
        let ts = args.args[0].to_array(rows)?;
        let ts = ts.as_primitive::<Int64Type>();
        let tests = args.args[2..]
            .iter()
            .map(|a| {
                let a = a.to_array(rows)?;
                let a: &BooleanArray = a.as_boolean();
                // a null test is no
                Ok(match a.nulls() {
                    Some(n) => a.values() & n.inner(),
                    None => a.values().clone(),
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        // Column at a time (EXPLAIN cube at 10M rows: 34 ns a row row by
        // row, with a binary search per row): every row's segment, then
        // each test's bit set on the rows where it holds.
        let mut keys: Vec<i32> = ts
            .values()
            .iter()
            .map(|&t| segment(&cuts, t) * 16)
            .collect();
        let bits = [OUTPUT, CACHE_READ, CACHE_WRITE, UNCACHED_INPUT];
        for (test, bit) in tests.iter().zip(bits) {
            for i in test.set_indices() {
                keys[i] |= bit;
            }
        }
        let out = Int32Array::new(keys.into(), ts.nulls().cloned());
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

impl ScalarUDFImpl for PriceKeyInstant {
    fn name(&self) -> &str {
        "price_key_instant"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !(matches!(args[0], DataType::Int32 | DataType::Null) && cuts_type(&args[1])) {
            return exec_err!(
                "price_key_instant(price_key: INT, cuts: BIGINT[]), called with {args:?}"
            );
        }
        Ok(DataType::Timestamp(
            TimeUnit::Nanosecond,
            Some("UTC".into()),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let cuts = cuts(&args.args[1], "price_key_instant")?;
        let keys = args.args[0].to_array(rows)?;
        let keys = keys.as_primitive::<Int32Type>();
        let mut out = Vec::with_capacity(rows);
        for key in keys.iter() {
            out.push(match key {
                None => None,
                Some(k) if k < 0 || (k / 16) as usize > cuts.len() => {
                    return exec_err!(
                        "price_key_instant: key {k} names no segment of {} cuts",
                        cuts.len()
                    );
                }
                Some(k) => Some(match (k / 16) as usize {
                    0 => i64::MIN,
                    s => cuts[s - 1],
                }),
            });
        }
        let out = arrow::array::TimestampNanosecondArray::from(out).with_timezone("UTC");
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    /// Few cuts are counted, many searched: both are "how many at or
    /// before", ties (an instant on a cut) included.
    #[test]
    fn a_segment_counts_the_cuts_at_or_before_the_instant() {
        for n in [0usize, 1, 5, 31, 32, 40] {
            let cuts: Vec<i64> = (0..n as i64).map(|i| i * 10).collect();
            for t in -5..(n as i64 * 10 + 5) {
                let want = cuts.iter().filter(|&&c| c <= t).count() as i32;
                assert_eq!(segment(&cuts, t), want, "{n} cuts, t = {t}");
            }
        }
        assert_eq!(segment(&[10, 10, 20], 10), 2);
    }

    fn call(f: &dyn ScalarUDFImpl, args: Vec<ColumnarValue>, rows: usize) -> DfResult<ArrayRef> {
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let ret = f.return_type(
            &args
                .iter()
                .map(ColumnarValue::data_type)
                .collect::<Vec<_>>(),
        )?;
        f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new("r", ret, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })?
        .to_array(rows)
    }

    fn cut_list(cuts: &[i64]) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::List(Arc::new(
            arrow::array::ListArray::from_iter_primitive::<Int64Type, _, _>([Some(
                cuts.iter().map(|&c| Some(c)),
            )]),
        )))
    }

    fn bools(v: &[Option<bool>]) -> ColumnarValue {
        ColumnarValue::Array(Arc::new(BooleanArray::from(v.to_vec())))
    }

    #[test]
    fn keys_pack_the_segment_and_the_tests_and_unpack_to_the_segments_first_cut() {
        let key = PriceKey {
            signature: Signature::any(6, Volatility::Immutable),
        };
        let cuts = [100, 200];
        // before, on and after each cut; a null instant
        let ts = Int64Array::from(vec![
            Some(99),
            Some(100),
            Some(199),
            Some(200),
            Some(5000),
            None,
        ]);
        let keys = call(
            &key,
            vec![
                ColumnarValue::Array(Arc::new(ts)),
                cut_list(&cuts),
                bools(&[
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                    Some(true),
                    Some(true),
                ]),
                bools(&[
                    Some(false),
                    Some(true),
                    None,
                    Some(false),
                    Some(true),
                    Some(true),
                ]),
                bools(&[
                    None,
                    Some(false),
                    Some(true),
                    Some(false),
                    Some(true),
                    Some(true),
                ]),
                bools(&[
                    Some(true),
                    Some(false),
                    Some(false),
                    Some(false),
                    Some(true),
                    Some(true),
                ]),
            ],
            6,
        )
        .unwrap();
        let keys = keys.as_primitive::<Int32Type>();
        // segment * 16 + 8 output + 4 read + 2 write + 1 uncached; null as no
        let want = [
            Some(9),
            Some(16 + 4),
            Some(16 + 2),
            Some(32 + 8),
            Some(32 + 15),
            None,
        ];
        assert_eq!(keys.iter().collect::<Vec<_>>(), want);

        let instant = PriceKeyInstant {
            signature: Signature::any(2, Volatility::Immutable),
        };
        let at = call(
            &instant,
            vec![
                ColumnarValue::Array(Arc::new(keys.clone())),
                cut_list(&cuts),
            ],
            6,
        )
        .unwrap();
        let at = at.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let want = [
            Some(i64::MIN),
            Some(100),
            Some(100),
            Some(200),
            Some(200),
            None,
        ];
        assert_eq!(at.iter().collect::<Vec<_>>(), want);

        // A key past the last segment, unsorted cuts, and cuts per row are
        // errors, never a guess.
        let past = ColumnarValue::Array(Arc::new(Int32Array::from(vec![3 * 16])));
        let err = call(&instant, vec![past, cut_list(&cuts)], 1).unwrap_err();
        assert!(err.to_string().contains("names no segment"), "{err}");
        let ts = ColumnarValue::Array(Arc::new(Int64Array::from(vec![1])));
        let yes = bools(&[Some(true)]);
        let err = call(
            &key,
            vec![
                ts.clone(),
                cut_list(&[200, 100]),
                yes.clone(),
                yes.clone(),
                yes.clone(),
                yes.clone(),
            ],
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("sorted"), "{err}");
        let per_row =
            ColumnarValue::Array(Arc::new(arrow::array::ListArray::from_iter_primitive::<
                Int64Type,
                _,
                _,
            >([Some([Some(1)])])));
        let err = call(
            &key,
            vec![ts, per_row, yes.clone(), yes.clone(), yes.clone(), yes],
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("one list for every row"), "{err}");
    }
}
