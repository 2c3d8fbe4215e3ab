//! The scan floor of a day: what reading it costs before any metric is
//! computed. DataFusion's own Parquet scan of the columns the day's
//! metrics read (partitions D-1..D+1, the UTC day kept by `ts`), on every
//! core, and a hash de-duplication on the 64-bit trace key the run uses
//! (`lake::scan::trace_key`). No pricing, no aggregation, no output: a run
//! cannot be faster than this, and `benches/bench.py` prints the run's wall
//! time against it.
//!
//!   cargo bench --bench floor -- --lake DIR --date YYYY-MM-DD [--threads N]
//!
//! Prints one JSON line: seconds, distinct trace keys, rows whose key
//! repeats, objects and columns read (a local lake only).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::ParquetReadOptions;

/// The request columns the day's metrics read (SPEC 1.1), by their
/// default names.
const COLUMNS: &[&str] = &[
    "ts",
    "trace_id",
    "tags",
    "provider",
    "model",
    "route",
    "latency_ms",
    "error",
    "cache_hit",
    "citation_rate",
    "human_reviewed",
    "human_approved",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_actual",
    "currency",
];

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// `trace_key(trace_id, ...)`: the run's 64-bit key of the first argument
/// (`lake::scan::trace_key`); the other arguments are only decoded.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TraceKey {
    signature: Signature,
}

impl Default for TraceKey {
    fn default() -> Self {
        TraceKey {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TraceKey {
    fn name(&self) -> &str {
        "trace_key"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::UInt64)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let ids = args.args[0].to_array(args.number_rows)?;
        let ids = arrow::compute::cast(&ids, &DataType::Utf8View)?;
        let keys: UInt64Array = ids
            .as_string_view()
            .iter()
            .map(|id| id.map(tokenledger::lake::scan::trace_key))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(keys) as ArrayRef))
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench` to every target: without our flags,
    // there is nothing to measure.
    let Some(lake) = arg(&args, "--lake") else {
        eprintln!("usage: cargo bench --bench floor -- --lake DIR --date YYYY-MM-DD [--threads N]");
        return Ok(());
    };
    let date: chrono::NaiveDate = arg(&args, "--date").ok_or("--date is required")?.parse()?;
    let threads: usize = arg(&args, "--threads")
        .map(|t| t.parse())
        .transpose()?
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(floor(&lake, date, threads))
}

async fn floor(lake: &str, date: chrono::NaiveDate, threads: usize) -> Result<(), Failure> {
    let mut objects = Vec::new();
    for k in [-1i64, 0, 1] {
        let day = date + chrono::Duration::days(k);
        let dir = std::path::Path::new(lake)
            .join("requests")
            .join(format!("date={day}"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "parquet") {
                objects.push(path.canonicalize()?.to_string_lossy().into_owned());
            }
        }
    }
    objects.sort();
    let started = Instant::now();
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_target_partitions(threads)
            .with_batch_size(8192),
    );
    ctx.register_udf(ScalarUDF::new_from_impl(TraceKey::default()));
    let df = ctx
        .read_parquet(objects.clone(), ParquetReadOptions::default())
        .await?;
    let present: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| df.schema().has_column_with_unqualified_name(c))
        .collect();
    ctx.register_table("requests", df.into_view())?;
    let next = date + chrono::Duration::days(1);
    // Every column read goes into the key function, so that the scan decodes
    // each of them (a projection would drop the ones no aggregate uses);
    // the key is the hash of trace_id alone.
    let sql = format!(
        "SELECT count(*) AS trace_keys, coalesce(sum(n) FILTER (WHERE n > 1), 0) AS duplicated \
         FROM (SELECT trace_key({}) AS k, count(*) AS n FROM requests \
               WHERE ts >= TIMESTAMP '{date}T00:00:00Z' AND ts < TIMESTAMP '{next}T00:00:00Z' GROUP BY k)",
        present.join(", ")
    );
    let out = ctx.sql(&sql).await?.collect().await?;
    let (keys, duplicated) = out
        .first()
        .map(|b| {
            (
                b.column(0).as_primitive::<Int64Type>().value(0),
                b.column(1).as_primitive::<Int64Type>().value(0),
            )
        })
        .unwrap_or_default();
    println!(
        "{{\"floor_seconds\": {:.3}, \"trace_keys\": {keys}, \"rows_with_a_repeated_key\": {duplicated}, \"objects\": {}, \"columns\": {}}}",
        started.elapsed().as_secs_f64(),
        objects.len(),
        present.len()
    );
    Ok(())
}
