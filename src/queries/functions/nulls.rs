//! Two null rules of `sql/day_sums.sql` as plain array kernels. Pure logic: no
//! I/O.
//!
//! - `zero_if_null(x BIGINT) -> BIGINT`: `coalesce(x, 0)`;
//! - `null_where(x, cond BOOLEAN)`: `CASE WHEN NOT cond THEN x END` where
//!   `cond` is null only when `x` is (arrow's `nullif`: `x`, null where
//!   `cond` is true).
//!
//! Why functions: DataFusion rewrites `coalesce` into a `CASE`, and a
//! `CASE` over a column with nulls evaluates its branches on filtered
//! copies and scatters them back: `EXPLAIN ANALYZE` of the cube over the
//! 5M-row bench day's kept duplicates (110K rows, on busy cores) had the
//! two token `coalesce`s and the two validity `CASE`s at 15 – 140 ns a
//! row, and the cube's projections over the whole day went from 0.73 /
//! 0.95 s to 0.60 / 0.65 s of CPU with these one-pass kernels. Unit tests hold each to the SQL it replaced.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `zero_if_null` and `null_where`, for registration in a session.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(ZeroIfNull {
            signature: Signature::uniform(1, vec![DataType::Int64], Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(NullWhere {
            signature: Signature::any(2, Volatility::Immutable),
        }),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ZeroIfNull {
    signature: Signature,
}

impl ScalarUDFImpl for ZeroIfNull {
    fn name(&self) -> &str {
        "zero_if_null"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let x = args.args[0].to_array(rows)?;
        let x = x.as_primitive::<Int64Type>();
        if x.null_count() == 0 {
            return Ok(ColumnarValue::Array(Arc::new(Int64Array::new(
                x.values().clone(),
                None,
            ))));
        }
        let zeroed: Int64Array = x.iter().map(|v| Some(v.unwrap_or(0))).collect();
        Ok(ColumnarValue::Array(Arc::new(zeroed)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NullWhere {
    signature: Signature,
}

impl ScalarUDFImpl for NullWhere {
    fn name(&self) -> &str {
        "null_where"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        if !matches!(args.get(1), Some(DataType::Boolean)) {
            return exec_err!("null_where(x, cond: BOOLEAN), called with {args:?}");
        }
        Ok(args[0].clone())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let x = args.args[0].to_array(rows)?;
        let cond = args.args[1].to_array(rows)?;
        Ok(ColumnarValue::Array(arrow::compute::nullif(
            &x,
            cond.as_boolean(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// Each query's first two columns as text, row by row (floats by bits).
    async fn cells(sql: &str) -> Vec<(String, String)> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let ints = [
            Some(0),
            None,
            Some(-3),
            Some(i64::MAX),
            None,
            Some(7),
            Some(i64::MIN),
            None,
        ];
        let floats = [
            Some(0.0),
            Some(-0.0),
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(1e15),
            Some(999_999_999_999_999.9),
            Some(-1e-300),
        ];
        let with_nulls = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ints.to_vec())),
                Arc::new(Float64Array::from(floats.to_vec())),
            ],
        )
        .expect("batch");
        let ctx = SessionContext::new();
        for f in udfs() {
            ctx.register_udf(f);
        }
        // one batch without nulls in `i` (the kernel's shortcut), one with
        let no_null_ints = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Float64Array::from(vec![Some(0.5), Some(2.0), None])),
            ],
        )
        .expect("batch");
        let table = MemTable::try_new(Arc::clone(&schema), vec![vec![with_nulls, no_null_ints]])
            .expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let mut out = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let text = |c: usize| {
                    let col = b.column(c);
                    if col.is_null(r) {
                        return "null".to_string();
                    }
                    match col.data_type() {
                        DataType::Float64 => {
                            format!(
                                "{:x}",
                                col.as_primitive::<arrow::datatypes::Float64Type>()
                                    .value(r)
                                    .to_bits()
                            )
                        }
                        _ => format!("{}", col.as_primitive::<Int64Type>().value(r)),
                    }
                };
                out.push((text(0), text(1)));
            }
        }
        out
    }

    #[tokio::test]
    async fn zero_if_null_is_coalesce_with_zero() {
        let want = cells("SELECT coalesce(i, 0), i FROM t").await;
        let got = cells("SELECT zero_if_null(i), i FROM t").await;
        assert_eq!(got, want);
        assert!(
            want.iter().any(|(z, i)| z == "0" && i == "null"),
            "the fixture has nulls"
        );
    }

    /// `sql/cube.sql`'s two validity rules, as `CASE` and as `null_where`.
    #[tokio::test]
    async fn null_where_is_the_validity_case() {
        let want = cells(
            "SELECT CASE WHEN f >= 0 AND f < 1e15 THEN f END, \
                    CASE WHEN f >= 0 AND f <= 1 THEN f END FROM t",
        )
        .await;
        let got = cells(
            "SELECT null_where(f, NOT (f >= 0 AND f < 1e15)), \
                    null_where(f, NOT (f >= 0 AND f <= 1)) FROM t",
        )
        .await;
        assert_eq!(got, want);
        assert!(
            want.iter().any(|(a, _)| a == "null"),
            "some values are left out"
        );
        assert!(
            want.iter().any(|(a, _)| a != "null"),
            "some values are kept"
        );
    }
}
