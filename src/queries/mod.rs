//! The metric queries: `sql/*.sql`, embedded at build time.
//!
//! Each file is one `SELECT`, named after the view or table it defines; the
//! files chain by name (`kept` -> `priced` -> `cube` -> outputs). This module
//! parses them at start-up ([`parse_all`]), plans them all against empty
//! inputs of the real schemas ([`check_all`], run by `tokenledger check` and
//! before every run), and runs them with the run's parameters (`$date`,
//! `$seconds`, the day's `$price_cuts`, ...). Which tables exist and what
//! they hold is the pipeline's business; this module only knows the SQL
//! and its order.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};

use crate::error::{Error, Result};

#[cfg(test)]
mod cube_tests;
pub mod functions;
pub mod repeated;
pub mod rows;

pub use rows::{Row, Typed};

/// One embedded SQL file.
#[derive(Debug)]
pub struct SqlFile {
    /// File stem: `sql/<name>.sql`; also the name its result is registered under.
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! sql_files {
    ($($name:literal),* $(,)?) => {
        &[$(SqlFile { name: $name, text: include_str!(concat!("../../sql/", $name, ".sql")) }),*]
    };
}

/// Every SQL file, in the order the pipeline runs them (see
/// `pipeline::flow` for which table each reads and where its result goes).
pub static FILES: &[SqlFile] = sql_files!(
    "dup_keys",
    "day_sums",
    "dup_resolution",
    "dup_counts",
    "dup_losers",
    "dup_winners",
    "model_pairs",
    "priced",
    "cube",
    "ops_counts",
    "finance_lines",
    "latency_percentiles",
    "hourly",
    "ops_daily",
    "ops_by_model",
    "finance_by_dimension",
    "data_quality",
    "logged_currencies",
    "rollup_daily",
    "rollup_latency",
    "focus_costs",
    "evidence",
);

/// How a query's result is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Registered as a view: evaluated, streaming, by whatever reads it.
    View,
    /// Run once; its (small) result registered as an in-memory table.
    Table,
    /// Run once; its result is read by the pipeline (an output or a fact).
    Result,
    /// Run once; its result written to local Parquet in the run's spill
    /// directory and registered as a table (bounded memory whatever its size).
    Spill,
}

/// The embedded file called `name`.
pub fn file(name: &str) -> Result<&'static SqlFile> {
    FILES
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| Error::Internal(format!("no SQL file sql/{name}.sql")))
}

/// Parse every file: each must hold exactly one query.
pub fn parse_all() -> Result<()> {
    for f in FILES {
        let statements = DFParser::parse_sql(f.text).map_err(|e| Error::Sql {
            file: format!("{}.sql", f.name),
            message: e.to_string(),
        })?;
        let ok = statements.len() == 1
            && matches!(statements.front(), Some(Statement::Statement(s)) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)));
        if !ok {
            return Err(Error::Sql {
                file: format!("{}.sql", f.name),
                message: "expected exactly one SELECT statement".into(),
            });
        }
    }
    Ok(())
}

/// The run's query parameters.
#[derive(Debug, Clone)]
pub struct Params {
    /// The report date (`$date`).
    pub date: NaiveDate,
    /// Seconds in the report day in its time zone (`$seconds`).
    pub seconds: f64,
    /// The day's first instant, nanoseconds since the epoch (`$day_start_ns`).
    pub day_start_ns: i64,
    /// The next day's first instant (`$day_end_ns`).
    pub day_end_ns: i64,
    /// Where the prices in force during the day change, nanoseconds since
    /// the epoch, sorted (`$price_cuts`, a list; see
    /// [`crate::pricing::PriceTable::cuts`]). Empty until the prices are
    /// known ([`Params::with_price_cuts`]).
    pub price_cuts: Arc<[i64]>,
}

impl Params {
    /// The parameters of a report day.
    pub fn of(day: &crate::calendar::Day) -> Params {
        Params {
            date: day.date,
            seconds: day.seconds() as f64,
            day_start_ns: day.window().start_ns,
            day_end_ns: day.window().end_ns,
            price_cuts: Arc::from(Vec::new()),
        }
    }

    /// These parameters with the day's price cuts.
    pub fn with_price_cuts(&self, cuts: Vec<i64>) -> Params {
        Params {
            price_cuts: Arc::from(cuts),
            ..self.clone()
        }
    }

    fn values(&self) -> datafusion::common::ParamValues {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        let days = (self.date - epoch).num_days() as i32;
        datafusion::common::ParamValues::Map(
            [
                ("date".to_string(), ScalarValue::Date32(Some(days)).into()),
                (
                    "seconds".to_string(),
                    ScalarValue::Float64(Some(self.seconds)).into(),
                ),
                (
                    "day_start_ns".to_string(),
                    ScalarValue::Int64(Some(self.day_start_ns)).into(),
                ),
                (
                    "day_end_ns".to_string(),
                    ScalarValue::Int64(Some(self.day_end_ns)).into(),
                ),
                (
                    "price_cuts".to_string(),
                    ScalarValue::List(Arc::new(arrow::array::ListArray::from_iter_primitive::<
                        arrow::datatypes::Int64Type,
                        _,
                        _,
                    >([Some(
                        self.price_cuts.iter().map(|&c| Some(c)),
                    )])))
                    .into(),
                ),
            ]
            .into_iter()
            .collect(),
        )
    }
}

/// A DataFusion session for one run, with the money functions registered
/// and `dup_keys.sql`'s aggregate planned as [`repeated::RepeatedKeysExec`].
///
/// With `memory_limit`, operators share a fair spill pool of that many bytes
/// (sorts, aggregations and joins spill to `spill_dir` instead of growing);
/// without it memory is unbounded.
pub fn session(
    threads: usize,
    memory_limit: Option<u64>,
    spill_dir: &std::path::Path,
) -> Result<SessionContext> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let config = SessionConfig::new()
        .with_target_partitions(threads.max(1))
        .with_batch_size(8192);
    let mut runtime = RuntimeEnvBuilder::new().with_temp_file_path(spill_dir);
    if let Some(limit) = memory_limit {
        runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(limit as usize),
            std::num::NonZeroUsize::new(5).expect("5 is not zero"),
        )));
    }
    let runtime = runtime
        .build_arc()
        .map_err(|e| Error::Internal(format!("building the query runtime: {e}")))?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(repeated::RepeatedKeysRule))
        .build();
    let ctx = SessionContext::new_with_state(state);
    for udf in functions::udfs() {
        ctx.register_udf(udf);
    }
    for udaf in functions::udafs() {
        ctx.register_udaf(udaf);
    }
    Ok(ctx)
}

fn query_error(name: &str, source: datafusion::error::DataFusionError) -> Error {
    Error::Query {
        file: format!("{name}.sql"),
        source,
    }
}

/// Plan `sql/<name>.sql` with the run's parameters.
pub async fn plan(ctx: &SessionContext, name: &str, params: &Params) -> Result<DataFrame> {
    let f = file(name)?;
    let df = ctx.sql(f.text).await.map_err(|e| query_error(name, e))?;
    df.with_param_values(params.values())
        .map_err(|e| query_error(name, e))
}

/// Register a table, replacing any previous one of that name.
pub fn register(
    ctx: &SessionContext,
    name: &str,
    table: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<()> {
    ctx.deregister_table(name)
        .map_err(|e| query_error(name, e))?;
    ctx.register_table(name, table)
        .map_err(|e| query_error(name, e))?;
    Ok(())
}

/// Register in-memory batches as table `name`.
pub fn register_batches(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| query_error(name, e))?;
    register(ctx, name, Arc::new(table))
}

/// Run `sql/<file>.sql` and use its result as `usage` says, registered
/// under `name` (views, tables, spills); returns the result of a
/// [`Use::Table`] or [`Use::Result`] step.
pub async fn step(
    ctx: &SessionContext,
    file: &str,
    name: &str,
    usage: Use,
    params: &Params,
    spill_dir: &std::path::Path,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let started = std::time::Instant::now();
    let df = plan(ctx, file, params).await?;
    // Held to its row type before it runs: a renamed column fails here.
    rows::check(file, df.schema().as_arrow())?;
    explain_if_asked(file, &df).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = match usage {
        Use::View => {
            register(ctx, name, df.into_view())?;
            Vec::new()
        }
        Use::Table | Use::Result => {
            let task = Arc::new(df.task_ctx());
            let physical = df
                .create_physical_plan()
                .await
                .map_err(|e| query_error(file, e))?;
            let planned = started.elapsed().as_secs_f64();
            let batches = datafusion::physical_plan::collect(physical, task)
                .await
                .map_err(|e| query_error(file, e))?;
            log_step(file, started, planned, &batches);
            if usage == Use::Table {
                register_batches(ctx, name, Arc::clone(&schema), batches.clone())?;
            }
            batches
        }
        Use::Spill => {
            // A directory (trailing slash), registered with the known
            // schema: an empty result leaves an empty directory.
            let dir = format!("{}/", spill_dir.join(name).to_string_lossy());
            df.write_parquet(
                &dir,
                datafusion::dataframe::DataFrameWriteOptions::new(),
                None,
            )
            .await
            .map_err(|e| query_error(file, e))?;
            ctx.deregister_table(name)
                .map_err(|e| query_error(file, e))?;
            let options = datafusion::prelude::ParquetReadOptions::default().schema(&schema);
            ctx.register_parquet(name, &dir, options)
                .await
                .map_err(|e| query_error(file, e))?;
            log_step(file, started, f64::NAN, &[]);
            Vec::new()
        }
    };
    Ok((schema, batches))
}

/// The rows of the list in column `index` of the one row of `file`'s
/// result (an aggregate that returns its groups as a list of structs), as
/// a table of the struct's fields: their names, types and nullability
/// kept. The column must be named `name` (the SQL's column order is part
/// of its contract, as a row type's columns are).
pub fn list_rows(
    file: &str,
    batches: &[RecordBatch],
    index: usize,
    name: &str,
) -> Result<RecordBatch> {
    use arrow::array::AsArray;
    let bad = |what: String| Error::Internal(format!("sql/{file}.sql: {what}"));
    let rows: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    let [row] = rows.as_slice() else {
        return Err(bad(format!("{} rows, expected one", rows.len())));
    };
    let field = row.schema().fields().get(index).map(|f| f.name().clone());
    if field.as_deref() != Some(name) {
        return Err(bad(format!(
            "column {index} is {field:?}, expected `{name}`"
        )));
    }
    let list = row
        .column(index)
        .as_list_opt::<i32>()
        .ok_or_else(|| bad(format!("`{name}` is not a list")))?;
    let items = list.value(0);
    let items = items
        .as_struct_opt()
        .ok_or_else(|| bad(format!("`{name}` is not a list of rows")))?;
    Ok(RecordBatch::from(items.clone()))
}

/// Run `sql/<T::FILE>.sql` for its result, read as `T`'s rows.
pub async fn result<T: Row>(
    ctx: &SessionContext,
    params: &Params,
    spill_dir: &std::path::Path,
) -> Result<Typed<T>> {
    let (schema, batches) = step(ctx, T::FILE, T::FILE, Use::Result, params, spill_dir).await?;
    Ok(Typed::new(schema, batches))
}

/// `TOKENLEDGER_EXPLAIN=<step>` logs the step's plan with run-time metrics
/// (EXPLAIN ANALYZE): where the time of a slow day went. The step then runs
/// again for its result.
async fn explain_if_asked(name: &str, df: &DataFrame) -> Result<()> {
    if std::env::var("TOKENLEDGER_EXPLAIN").ok().as_deref() != Some(name) {
        return Ok(());
    }
    let batches = df
        .clone()
        .explain(false, true)
        .map_err(|e| query_error(name, e))?
        .collect()
        .await
        .map_err(|e| query_error(name, e))?;
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .map_err(|e| Error::Internal(e.to_string()))?;
    tracing::info!(step = name, "EXPLAIN ANALYZE\n{text}");
    Ok(())
}

/// `planning`: the seconds spent before the step ran (SQL to an optimized
/// physical plan; NaN where not measured apart).
fn log_step(name: &str, started: std::time::Instant, planning: f64, batches: &[RecordBatch]) {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    tracing::debug!(
        step = name,
        rows,
        seconds = started.elapsed().as_secs_f64(),
        planning,
        "query"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_on_disk_is_embedded_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".sql")
                    .to_string()
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|f| f.name.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        parse_all().unwrap();
    }
}
