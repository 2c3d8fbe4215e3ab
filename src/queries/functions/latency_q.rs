//! `latency_q(latency_ms) -> DOUBLE`: a latency rounded to 4 significant
//! digits, the value `sql/day_sums.sql` counts in its exact histograms
//! (percentiles then come out at most 0.05% off, and the same whatever the
//! row order). Pure logic: no I/O.
//!
//! It computes exactly what this SQL computes, operation for operation
//! (the same `f64` functions DataFusion's `abs`, `trunc`, `signum`,
//! `round`, `floor`, `log10` and `power` call, in the same order), so the
//! histograms and every percentile are bit for bit those of the SQL; a
//! unit test holds the two together over edge and random values:
//!
//! ```sql
//! CASE
//!     -- null, NaN and infinite latencies take no part in percentiles
//!     WHEN x IS NULL OR NOT (abs(x) <= 1e300) THEN NULL
//!     -- whole milliseconds below 10 s already have at most 4 digits
//!     WHEN abs(x) < 10000 AND x = trunc(x) THEN x
//!     WHEN x = 0 THEN 0.0
//!     WHEN abs(x) >= 10000 THEN signum(x)
//!         * round(abs(x) / power(10.0, floor(log10(abs(x))) - 3))
//!         * power(10.0, floor(log10(abs(x))) - 3)
//!     ELSE signum(x)
//!         * round(abs(x) * power(10.0, 3 - floor(log10(abs(x)))))
//!         / power(10.0, 3 - floor(log10(abs(x))))
//! END
//! ```
//!
//! Why a function: evaluated as that `CASE`, the rounding cost ~60 ns a
//! row (0.6 s of CPU at 10M rows, each branch an array pass of its own).

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `latency_q`, for registration in a session.
pub fn udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(LatencyQ {
        signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct LatencyQ {
    signature: Signature,
}

/// DataFusion's `signum`: 0 for zero, else the sign.
fn signum(x: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x.signum() }
}

/// The latency `x` rounded to 4 significant digits (see the module text);
/// `None` for NaN, infinite and absurd (> 1e300) latencies.
pub fn quantize(x: f64) -> Option<f64> {
    let a = x.abs();
    // NOT (abs(x) <= 1e300): NaN, infinite or absurd
    if a.is_nan() || a > 1e300 {
        return None;
    }
    if a < 10000.0 && x == x.trunc() {
        return Some(x);
    }
    if x == 0.0 {
        return Some(0.0);
    }
    let digits = a.log10().floor();
    Some(if a >= 10000.0 {
        let scale = 10.0f64.powf(digits - 3.0);
        signum(x) * (a / scale).round() * scale
    } else {
        let scale = 10.0f64.powf(3.0 - digits);
        signum(x) * (a * scale).round() / scale
    })
}

impl ScalarUDFImpl for LatencyQ {
    fn name(&self) -> &str {
        "latency_q"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if args != [DataType::Float64] {
            return exec_err!("latency_q(latency_ms: DOUBLE), called with {args:?}");
        }
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let x = args.args[0].to_array(args.number_rows)?;
        let x = x.as_primitive::<Float64Type>();
        let out: Float64Array = if x.null_count() == 0 {
            x.values().iter().map(|&v| quantize(v)).collect()
        } else {
            x.iter().map(|v| v.and_then(quantize)).collect()
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::RecordBatch;
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// The `CASE` that `sql/ops_counts.sql` evaluated before this function.
    const CASE: &str = "SELECT CASE
        WHEN x IS NULL OR NOT (abs(x) <= 1e300) THEN NULL
        WHEN abs(x) < 10000 AND x = trunc(x) THEN x
        WHEN x = 0 THEN 0.0
        WHEN abs(x) >= 10000 THEN signum(x)
            * round(abs(x) / power(10.0, floor(log10(abs(x))) - 3))
            * power(10.0, floor(log10(abs(x))) - 3)
        ELSE signum(x)
            * round(abs(x) * power(10.0, 3 - floor(log10(abs(x)))))
            / power(10.0, 3 - floor(log10(abs(x))))
    END AS q FROM t ORDER BY i";

    /// Edges (zeros, ties, decade bounds, the 1e300 limit, NaN, infinities,
    /// subnormals, null) and 40,000 values from a fixed stream: log-uniform
    /// magnitudes from 1e-9 to 1e12 of either sign, whole and half
    /// milliseconds around 10 s.
    fn values() -> Vec<Option<f64>> {
        let mut v: Vec<Option<f64>> = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1.5,
            2.5,
            9999.0,
            9999.5,
            -9999.5,
            10000.0,
            10000.5,
            12345.0,
            12345.5,
            99995.0,
            99985.0,
            0.12345,
            0.00012345,
            1234.5,
            1234.25,
            1e300,
            -1e300,
            1e301,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]
        .into_iter()
        .map(Some)
        .collect();
        v.push(None);
        let mut s = 7u64;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20_000 {
            let sign = if next() < 0.3 { -1.0 } else { 1.0 };
            v.push(Some(sign * 10f64.powf(next() * 21.0 - 9.0)));
        }
        for _ in 0..20_000 {
            v.push(Some((next() * 40_000.0).round() / 2.0));
        }
        v
    }

    #[tokio::test]
    async fn latency_q_is_the_case_it_replaced_bit_for_bit() {
        let values = values();
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::Int64Array::from_iter_values(
                    0..values.len() as i64,
                )),
                Arc::new(Float64Array::from(values.clone())),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let column = |sql: &str| {
            let ctx = ctx.clone();
            let sql = sql.to_string();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                batches
                    .iter()
                    .flat_map(|b| {
                        let q = b.column(0).as_primitive::<Float64Type>().clone();
                        (0..q.len())
                            .map(move |i| q.is_valid(i).then(|| q.value(i).to_bits()))
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<Option<u64>>>()
            }
        };
        let by_case = column(CASE).await;
        let by_function = column("SELECT latency_q(x) AS q FROM t ORDER BY i").await;
        assert_eq!(by_case.len(), values.len());
        for ((x, a), b) in values.iter().zip(&by_case).zip(&by_function) {
            assert_eq!(a, b, "latency_q({x:?}): CASE {a:?}, function {b:?}");
        }
        // The test is not vacuous: it rounds, keeps whole ms and drops.
        let q = |x: f64| quantize(x);
        assert_eq!(q(12345.5), Some(12350.0));
        assert_eq!(q(0.000123456), Some(0.0001235));
        assert_eq!(q(1234.5), Some(1235.0));
        assert_eq!(q(1234.0), Some(1234.0));
        assert_eq!(q(-98765.0), Some(-98770.0));
        assert_eq!(q(f64::NAN), None);
        assert_eq!(q(1e301), None);
        assert_eq!(q(-0.0).map(f64::to_bits), Some((-0.0f64).to_bits()));
        assert!(by_case.iter().filter(|v| v.is_none()).count() >= 5);
    }
}
