//! The queries of one day, in order, and what they return: typed results.
//!
//! [`flow`] registers the day's rows and runs the SQL files pass by pass
//! (duplicate keys, ops counts, the finance pass, duplicate resolution, the
//! outputs); [`evidence`] is the narrow top-k scan the reconciliation and
//! the incidents use; [`check_queries`] runs all of it over empty tables of
//! the real schemas (`tokenledger check`). Every output Rust reads comes
//! back as a [`Typed`] result of its row type (`queries::rows`), so no
//! caller looks a result up by name.
//!
//! It knows the query order and the tables between them; it does not load
//! inputs, write outputs or format anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use datafusion::common::runtime::SpawnedTask;
use datafusion::execution::context::SessionContext;

use crate::calendar::Day;
use crate::error::{Error, Result};
use crate::fx::FxTable;
use crate::lake::scan::{
    DayInput, Divert, DivertSink, KeyFilter, KeySet, ScanCounters, ScanOptions,
};
use crate::lake::schema::request_schema;
use crate::pricing::{AliasRules, PriceTable};
use crate::queries::rows::{
    DataQuality, DupKey, FinanceByDimension, FocusCost, Hourly, LoggedCurrency, ModelPair,
    OpsByModel, OpsCount, OpsDaily, RollupDaily, RollupLatency,
};
use crate::queries::{self, Params, Row, Typed, Use, step};

/// Where the queries read the day's rows from.
#[derive(Clone, Copy)]
pub(super) enum Rows<'a> {
    /// The day's objects in the lake.
    Lake(&'a Arc<DayInput>),
    /// No rows: `check` runs every query over empty tables of the real schemas.
    Empty,
}

impl Rows<'_> {
    /// The day's rows as the `requests` table.
    fn plain(&self) -> Arc<dyn datafusion::catalog::TableProvider> {
        self.with(ScanOptions::default())
    }

    fn with(&self, options: ScanOptions) -> Arc<dyn datafusion::catalog::TableProvider> {
        match self {
            Rows::Lake(input) => input.table(options),
            Rows::Empty => empty_table(request_schema()),
        }
    }
}

fn empty_table(schema: SchemaRef) -> Arc<dyn datafusion::catalog::TableProvider> {
    Arc::new(datafusion::catalog::MemTable::try_new(schema, vec![Vec::new()]).expect("empty table"))
}

/// The day's outputs, one field per SQL file Rust reads.
#[derive(Debug)]
pub struct DayResults {
    pub hourly: Typed<Hourly>,
    pub ops_daily: Typed<OpsDaily>,
    pub ops_by_model: Typed<OpsByModel>,
    pub finance_by_dimension: Typed<FinanceByDimension>,
    pub data_quality: Typed<DataQuality>,
    pub logged_currencies: Typed<LoggedCurrency>,
    pub rollup_daily: Typed<RollupDaily>,
    pub rollup_latency: Typed<RollupLatency>,
    pub focus_costs: Typed<FocusCost>,
}

impl DayResults {
    /// Every output's schema, by SQL file (the golden schema test).
    fn schemas(&self) -> [(&'static str, &SchemaRef); 9] {
        [
            ("hourly", &self.hourly.schema),
            ("ops_daily", &self.ops_daily.schema),
            ("ops_by_model", &self.ops_by_model.schema),
            ("finance_by_dimension", &self.finance_by_dimension.schema),
            ("data_quality", &self.data_quality.schema),
            ("logged_currencies", &self.logged_currencies.schema),
            ("rollup_daily", &self.rollup_daily.schema),
            ("rollup_latency", &self.rollup_latency.schema),
            ("focus_costs", &self.focus_costs.schema),
        ]
    }
}

/// What the queries produced for one day.
pub(super) struct Flow {
    pub results: DayResults,
    pub counters: Arc<ScanCounters>,
    /// Rows of the day, duplicates included.
    pub in_day: u64,
    /// Duplicate rows dropped.
    pub dropped: u64,
    pub resolutions: Vec<crate::pricing::Resolution>,
    pub chosen_rates: Vec<crate::fx::ChosenRate>,
    /// Seconds per pass: keys, ops, finance, duplicates, outputs.
    pub timings: Vec<(&'static str, f64)>,
}

/// What a day's queries read besides the rows.
pub(super) struct Reference<'a> {
    pub day: &'a Day,
    /// Duplicate trace ids resolved at once (`run.duplicate_bucket_keys`).
    pub bucket_keys: usize,
    pub aliases: &'a AliasRules,
    pub prices: &'a PriceTable,
    pub fx: &'a FxTable,
}

/// Requests of the `minute` grouping set of an `ops_counts` result: each
/// row counted once (negative counts, impossible, count 0). Folded batch
/// by batch: the result is mostly latency histogram rows.
fn minute_requests(ops: &Typed<OpsCount>) -> Result<u64> {
    ops.fold(0u64, |sum, r| {
        if r.grouping_set == "minute" {
            sum + r.requests.max(0) as u64
        } else {
            sum
        }
    })
}

/// What `sql/day_sums.sql` gives over a set of rows: the cube's groups
/// (`cube_groups`) and the ops histogram's rows (`ops_parts`), each a
/// table of the list's struct fields.
struct Sums {
    groups: RecordBatch,
    ops: RecordBatch,
}

impl Sums {
    /// The one row of a `day_sums` result, its two lists as tables.
    fn of(batches: &[RecordBatch]) -> Result<Sums> {
        Ok(Sums {
            groups: queries::list_rows("day_sums", batches, 0, "cube")?,
            ops: queries::list_rows("day_sums", batches, 1, "ops")?,
        })
    }

    /// The rows summed: the histogram's minute set counts each once (the
    /// row accounting holds the cube to the same rows).
    fn requests(&self) -> Result<u64> {
        minute_requests(&Typed::new(self.ops.schema(), vec![self.ops.clone()]))
    }
}

/// The queries of one day, in order (see ARCHITECTURE.md, "Data flow"):
///
/// 1. `dup_keys`: the trace keys seen more than once (a narrow pass).
/// 2. The finance pass: the scan sets the duplicate candidates aside (to
///    local files) and `day_sums` sums every other row, in one scan, by
///    the cube's keys and into the ops histogram.
/// 3. `dup_resolution` over the candidates: `day_sums` of `dup_winners`,
///    the rows kept, joins the day's sums.
/// 4. Pricing: `model_pairs` (of the rows kept and of `dup_losers`) feed
///    the price map; `cube` prices the groups (`cube_groups`) and
///    `ops_counts` sums the histogram rows (`ops_parts`).
/// 5. The outputs, from `cube` and `ops_counts`.
///
/// `on_day` sees the number of rows of the day once the finance pass has
/// read them.
///
/// With `cluster` (a distributed session, `engine::Cluster::session`), the
/// passes that read the day's rows run there, split over its workers; the
/// finance pass then keeps the duplicate candidates out by their keys, and
/// a scan of the candidates alone brings them to this process's spill
/// directory, where step 3 reads them as in local mode. Everything after
/// the scans runs here, on small tables.
pub(super) async fn flow(
    ctx: &SessionContext,
    cluster: Option<&SessionContext>,
    params: &Params,
    rows: Rows<'_>,
    reference: &Reference<'_>,
    spill_dir: &std::path::Path,
    on_day: impl FnOnce(u64) -> Result<()>,
) -> Result<Flow> {
    let mut timings: Vec<(&'static str, f64)> = Vec::new();
    let mut lap = |name, started: std::time::Instant| {
        timings.push((name, started.elapsed().as_secs_f64()));
    };
    // day_sums.sql keys groups of requests by the stretch between these
    // instants that holds them; cube.sql prices each at its stretch.
    let params = &params.with_price_cuts(
        reference
            .prices
            .cuts(reference.day.start, reference.day.end),
    );
    let scans = cluster.unwrap_or(ctx);
    let pass = std::time::Instant::now();
    let keys = keys_pass(scans, params, rows, spill_dir).await?;
    lap("keys", pass);

    let pass = std::time::Instant::now();
    let (counters, sink, main) = match cluster {
        None => finance_pass(ctx, params, rows, keys, reference.bucket_keys, spill_dir).await?,
        Some(cluster) => {
            distributed_finance_pass(
                cluster,
                params,
                rows,
                keys,
                reference.bucket_keys,
                spill_dir,
            )
            .await?
        }
    };
    lap("finance", pass);
    let in_day = main.requests()? + sink.rows();
    on_day(in_day)?;

    let pass = std::time::Instant::now();
    let (kept, dropped) = duplicates_pass(ctx, params, &sink, spill_dir).await?;
    lap("duplicates", pass);

    let pass = std::time::Instant::now();
    let (resolutions, chosen_rates) =
        pricing(ctx, cluster, params, reference, [main, kept], spill_dir).await?;
    lap("pricing", pass);

    let pass = std::time::Instant::now();
    let results = outputs_pass(ctx, params, spill_dir).await?;
    // Read by the outputs only: the histogram's memory is returned before
    // the report is built.
    for table in ["ops_counts", "ops_parts", "cube_groups"] {
        ctx.deregister_table(table)
            .map_err(|e| df_error(table, e))?;
    }
    lap("outputs", pass);
    Ok(Flow {
        results,
        counters,
        in_day,
        dropped,
        resolutions,
        chosen_rates,
        timings,
    })
}

/// Pass 1: the trace keys seen more than once.
async fn keys_pass(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    spill_dir: &std::path::Path,
) -> Result<KeySet> {
    queries::register(ctx, "requests", rows.plain())?;
    let keys: Typed<DupKey> = queries::result(ctx, params, spill_dir).await?;
    Ok(keys.rows()?.into_iter().map(|k| k._trace_key).collect())
}

/// What the finance pass gives: the counts of rows dropped, the duplicate
/// candidates set aside, and the sums of every other row.
type FinancePass = (Arc<ScanCounters>, Arc<DivertSink>, Sums);

/// Pass 2 on a cluster: the sums of every row that is not a duplicate
/// candidate (the rows dropped are counted by the workers' scans and come
/// back as the scan's metrics), then the candidates alone, written to the
/// spill directory as the local scan would have set them aside.
async fn distributed_finance_pass(
    cluster: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    keys: KeySet,
    bucket_keys: usize,
    spill_dir: &std::path::Path,
) -> Result<FinancePass> {
    let keys = Arc::new(keys);
    queries::register(
        cluster,
        "requests",
        rows.with(ScanOptions {
            counters: Some(Arc::new(ScanCounters::default())),
            divert: None,
            keys: Some(KeyFilter {
                keys: Arc::clone(&keys),
                inside: false,
            }),
        }),
    )?;
    let df = queries::plan(cluster, "day_sums", params).await?;
    let (sums, metrics) =
        crate::engine::collect_with_metrics(df)
            .await
            .map_err(|e| Error::Query {
                file: "day_sums.sql".into(),
                source: e,
            })?;
    let counters = Arc::new(ScanCounters::from_metrics(&metrics));

    let sink = Arc::new(DivertSink::new(
        spill_dir.join("diverted"),
        DivertSink::buckets_for(keys.len(), bucket_keys),
    ));
    if !keys.is_empty() {
        let candidates = rows.with(ScanOptions {
            keys: Some(KeyFilter { keys, inside: true }),
            ..Default::default()
        });
        let columns: Vec<String> = crate::lake::scan::dup_rows_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let stream = cluster
            .read_table(candidates)
            .and_then(|df| {
                df.select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .map_err(|e| df_error("dup_rows", e))?
            .execute_stream()
            .await
            .map_err(|e| df_error("dup_rows", e))?;
        sink.write_stream(stream)
            .await
            .map_err(|e| df_error("dup_rows", e))?;
    }
    Ok((counters, sink, Sums::of(&sums)?))
}

/// Pass 4: the day's sums (`parts`: of the rows but the candidates, of the
/// candidates kept) registered as `cube_groups` and `ops_parts`; the price
/// map of the day's (provider, model) pairs and the FX rates of the day
/// registered (in the cluster's session too: they travel with its plans
/// as broadcast tables); `cube` and `ops_counts` made. Returns how each
/// pair was priced and the rates chosen.
async fn pricing(
    ctx: &SessionContext,
    cluster: Option<&SessionContext>,
    params: &Params,
    reference: &Reference<'_>,
    parts: [Sums; 2],
    spill_dir: &std::path::Path,
) -> Result<(Vec<crate::pricing::Resolution>, Vec<crate::fx::ChosenRate>)> {
    let [a, b] = parts;
    queries::register_batches(
        ctx,
        "cube_groups",
        a.groups.schema(),
        vec![a.groups, b.groups],
    )?;
    queries::register_batches(ctx, "ops_parts", a.ops.schema(), vec![a.ops, b.ops])?;

    let pairs: Typed<ModelPair> = queries::result(ctx, params, spill_dir).await?;
    let pairs: Vec<(String, String)> = pairs
        .rows()?
        .into_iter()
        .map(|p| (p.provider, p.model))
        .collect();
    let day = reference.day;
    let (price_map, resolutions) =
        reference
            .prices
            .price_map(reference.aliases, &pairs, day.start, day.end);
    let (fx_batch, chosen_rates) = reference.fx.rates_on(day.date);
    for session in std::iter::once(ctx).chain(cluster) {
        queries::register_batches(
            session,
            "price_map",
            crate::pricing::price_map_schema(),
            vec![price_map.clone()],
        )?;
        queries::register_batches(
            session,
            "fx_rates",
            crate::fx::fx_schema(),
            vec![fx_batch.clone()],
        )?;
    }

    // Each read by several outputs: computed once, kept as small tables.
    let cube = {
        let (ctx, params, dir) = (ctx.clone(), params.clone(), spill_dir.to_path_buf());
        SpawnedTask::spawn(
            async move { step(&ctx, "cube", "cube", Use::Table, &params, &dir).await },
        )
    };
    step(
        ctx,
        "ops_counts",
        "ops_counts",
        Use::Table,
        params,
        spill_dir,
    )
    .await?;
    joined(cube).await?;
    Ok((resolutions, chosen_rates))
}

/// Pass 2, the finance pass: the one scan that counts why rows were
/// dropped; sets the duplicate candidates aside and returns the sums of
/// every other row.
async fn finance_pass(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    keys: KeySet,
    bucket_keys: usize,
    spill_dir: &std::path::Path,
) -> Result<FinancePass> {
    let counters = Arc::new(ScanCounters::default());
    let sink = Arc::new(DivertSink::new(
        spill_dir.join("diverted"),
        DivertSink::buckets_for(keys.len(), bucket_keys),
    ));
    queries::register(
        ctx,
        "requests",
        rows.with(ScanOptions {
            counters: Some(Arc::clone(&counters)),
            divert: Some(Divert {
                keys: Arc::new(keys),
                sink: Arc::clone(&sink),
            }),
            keys: None,
        }),
    )?;
    let (_, sums) = step(ctx, "day_sums", "day_sums", Use::Result, params, spill_dir).await?;
    Ok((counters, sink, Sums::of(&sums)?))
}

/// Pass 3: the duplicate candidates resolved. Returns the sums of the rows
/// kept and the number of rows dropped.
///
/// `dup_resolution` runs once per bucket of the sink (every copy of a
/// trace id is in one bucket), each writing its part of the spilled
/// result: its sorts and its distinct rows hold one bucket at a time.
async fn duplicates_pass(
    ctx: &SessionContext,
    params: &Params,
    sink: &DivertSink,
    spill_dir: &std::path::Path,
) -> Result<(Sums, u64)> {
    let dup_rows_schema = crate::lake::scan::dup_rows_schema();
    let resolution_dir = spill_dir.join("dup_resolution");
    let buckets = sink.bucket_dirs();
    if buckets.is_empty() {
        let empty = empty_table(Arc::clone(&dup_rows_schema));
        queries::register(ctx, "dup_rows", empty)?;
        step(
            ctx,
            "dup_resolution",
            "dup_resolution",
            Use::Spill,
            params,
            spill_dir,
        )
        .await?;
    }
    let mut resolved = Vec::with_capacity(buckets.len());
    for (i, bucket) in buckets.iter().enumerate() {
        register_dirs(
            ctx,
            "dup_rows",
            std::slice::from_ref(bucket),
            Format::Arrow,
            &dup_rows_schema,
        )?;
        let dir = resolution_dir.join(format!("b{i:02}"));
        step(
            ctx,
            "dup_resolution",
            "dup_resolution",
            Use::Spill,
            params,
            &dir,
        )
        .await?;
        resolved.push(dir.join("dup_resolution"));
    }
    if !buckets.is_empty() {
        // Every bucket's rows and resolution, for the steps that join them.
        register_dirs(ctx, "dup_rows", &buckets, Format::Arrow, &dup_rows_schema)?;
        let schema = ctx
            .table("dup_resolution")
            .await
            .map_err(|e| df_error("dup_resolution", e))?
            .schema()
            .as_arrow()
            .clone();
        register_dirs(
            ctx,
            "dup_resolution",
            &resolved,
            Format::Parquet,
            &Arc::new(schema),
        )?;
    }
    for (file, usage) in [
        ("dup_counts", Use::Table),
        ("dup_losers", Use::View),
        ("dup_winners", Use::View),
    ] {
        step(ctx, file, file, usage, params, spill_dir).await?;
    }

    // The rows kept of the candidates: their sums join the day's.
    let winners = ctx
        .table("dup_winners")
        .await
        .map_err(|e| df_error("dup_winners", e))?;
    queries::register(ctx, "requests", winners.into_view())?;
    let (_, sums) = step(ctx, "day_sums", "day_sums", Use::Result, params, spill_dir).await?;
    let kept = Sums::of(&sums)?;
    let dropped = sink.rows().checked_sub(kept.requests()?).ok_or_else(|| {
        Error::Internal(format!(
            "{} duplicate candidates set aside, fewer than the rows kept of them",
            sink.rows()
        ))
    })?;
    Ok((kept, dropped))
}

/// The files of a spilled table.
#[derive(Clone, Copy)]
enum Format {
    Arrow,
    Parquet,
}

/// Register the files directly under each of `dirs` (Arrow IPC or
/// Parquet, of `schema`) as one table `name`.
fn register_dirs(
    ctx: &SessionContext,
    name: &str,
    dirs: &[std::path::PathBuf],
    format: Format,
    schema: &SchemaRef,
) -> Result<()> {
    use datafusion::datasource::file_format::{arrow::ArrowFormat, parquet::ParquetFormat};
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    let urls = dirs
        .iter()
        .map(|d| ListingTableUrl::parse(format!("{}/", d.to_string_lossy())))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| df_error(name, e))?;
    let options = match format {
        Format::Arrow => ListingOptions::new(Arc::new(ArrowFormat)).with_file_extension(".arrow"),
        Format::Parquet => {
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet")
        }
    };
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(Arc::clone(schema));
    let table = ListingTable::try_new(config).map_err(|e| df_error(name, e))?;
    queries::register(ctx, name, Arc::new(table))
}

/// Pass 5: the outputs, once `cube` and `ops_counts` hold the day.
///
/// The steps read small tables and none reads another's result (but the
/// two shared tables made first), so without a memory limit each runs on
/// its own task: their
/// planning and execution (mostly one core each) share the cores instead
/// of queueing. Each result is the same whatever the order.
async fn outputs_pass(
    ctx: &SessionContext,
    params: &Params,
    spill_dir: &std::path::Path,
) -> Result<DayResults> {
    use datafusion::execution::memory_pool::MemoryLimit;
    // Under a memory limit each step runs alone, with the whole pool: run
    // at once, their sorts and aggregates each got a fair share only, and
    // a 100M-row day's latency rollup sort (~30 MB) did not fit in its
    // share of a 1 GiB container's pool.
    if let MemoryLimit::Finite(_) = ctx.runtime_env().memory_pool.memory_limit() {
        for table in ["finance_lines", "latency_percentiles"] {
            step(ctx, table, table, Use::Table, params, spill_dir).await?;
        }
        return Ok(DayResults {
            hourly: queries::result(ctx, params, spill_dir).await?,
            ops_daily: queries::result(ctx, params, spill_dir).await?,
            ops_by_model: queries::result(ctx, params, spill_dir).await?,
            finance_by_dimension: queries::result(ctx, params, spill_dir).await?,
            data_quality: queries::result(ctx, params, spill_dir).await?,
            logged_currencies: queries::result(ctx, params, spill_dir).await?,
            rollup_daily: queries::result(ctx, params, spill_dir).await?,
            rollup_latency: queries::result(ctx, params, spill_dir).await?,
            focus_costs: queries::result(ctx, params, spill_dir).await?,
        });
    }
    // Read by several outputs each: computed once, kept as small tables
    // (a view would be evaluated again by every reader).
    let shared = ["finance_lines", "latency_percentiles"].map(|table| {
        let (ctx, params, dir) = (ctx.clone(), params.clone(), spill_dir.to_path_buf());
        SpawnedTask::spawn(async move {
            step(&ctx, table, table, Use::Table, &params, &dir)
                .await
                .map(|_| ())
        })
    });
    for task in shared {
        joined(task).await?;
    }
    let hourly = spawn_result::<Hourly>(ctx, params, spill_dir);
    let ops_daily = spawn_result::<OpsDaily>(ctx, params, spill_dir);
    let ops_by_model = spawn_result::<OpsByModel>(ctx, params, spill_dir);
    let finance_by_dimension = spawn_result::<FinanceByDimension>(ctx, params, spill_dir);
    let data_quality = spawn_result::<DataQuality>(ctx, params, spill_dir);
    let logged_currencies = spawn_result::<LoggedCurrency>(ctx, params, spill_dir);
    let rollup_daily = spawn_result::<RollupDaily>(ctx, params, spill_dir);
    let rollup_latency = spawn_result::<RollupLatency>(ctx, params, spill_dir);
    let focus_costs = spawn_result::<FocusCost>(ctx, params, spill_dir);
    Ok(DayResults {
        hourly: joined(hourly).await?,
        ops_daily: joined(ops_daily).await?,
        ops_by_model: joined(ops_by_model).await?,
        finance_by_dimension: joined(finance_by_dimension).await?,
        data_quality: joined(data_quality).await?,
        logged_currencies: joined(logged_currencies).await?,
        rollup_daily: joined(rollup_daily).await?,
        rollup_latency: joined(rollup_latency).await?,
        focus_costs: joined(focus_costs).await?,
    })
}

/// `sql/<T::FILE>.sql` for its result, on a task of its own (aborted if
/// dropped unfinished: an error elsewhere stops it).
fn spawn_result<T: Row + Send + 'static>(
    ctx: &SessionContext,
    params: &Params,
    spill_dir: &std::path::Path,
) -> SpawnedTask<Result<Typed<T>>> {
    let (ctx, params, dir) = (ctx.clone(), params.clone(), spill_dir.to_path_buf());
    SpawnedTask::spawn(async move { queries::result::<T>(&ctx, &params, &dir).await })
}

/// A spawned step's outcome (a panic in it becomes an internal error).
async fn joined<T: Send + 'static>(task: SpawnedTask<Result<T>>) -> Result<T> {
    task.join()
        .await
        .map_err(|e| Error::Internal(format!("query task: {e}")))?
}

/// sql/evidence.sql over every row of the day, once per filter (see
/// [`crate::reconcile::filter_batch`]); without filters it is only planned
/// (its schema, no rows, no scan). One batch per filter.
pub(super) async fn evidence(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    filters: &[[Option<String>; 5]],
    spill_dir: &std::path::Path,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    queries::register(ctx, "requests", rows.plain())?;
    step(ctx, "priced", "priced", Use::View, params, spill_dir).await?;
    let none = crate::reconcile::filter_batch(&[]);
    queries::register_batches(ctx, "evidence_keys", none.schema(), vec![none])?;
    let df = queries::plan(ctx, "evidence", params).await?;
    queries::rows::check("evidence", df.schema().as_arrow())?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    // One top-k per filter.
    let mut out = Vec::new();
    for f in filters {
        let k = crate::reconcile::filter_batch(std::slice::from_ref(f));
        queries::register_batches(ctx, "evidence_keys", k.schema(), vec![k])?;
        let (_, batches) =
            step(ctx, "evidence", "evidence", Use::Result, params, spill_dir).await?;
        out.push(
            arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| Error::Internal(format!("evidence: {e}")))?,
        );
    }
    Ok((schema, out))
}

fn df_error(name: &str, source: datafusion::error::DataFusionError) -> Error {
    Error::Query {
        file: format!("{name} (registration)"),
        source,
    }
}

/// Run every query of a day over empty tables of the real schemas: catches
/// unknown columns, type errors and bad function calls without any data,
/// and holds every output Rust reads to its row type. Returns the schema of
/// every output of the day's flow and of `evidence`, by name.
pub async fn check_queries() -> Result<BTreeMap<&'static str, SchemaRef>> {
    queries::parse_all()?;
    let spill = spill_dir(None)?;
    let ctx = queries::session(1, None, spill.path())?;
    let date = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    let day = Day::new(date, chrono_tz::UTC);
    let params = Params::of(&day);
    let reference = Reference {
        day: &day,
        bucket_keys: crate::config::DEFAULT_BUCKET_KEYS,
        aliases: &AliasRules::default(),
        prices: &PriceTable::default(),
        fx: &FxTable::default(),
    };
    let flow = flow(
        &ctx,
        None,
        &params,
        Rows::Empty,
        &reference,
        spill.path(),
        |_| Ok(()),
    )
    .await?;
    let filter = [
        None,
        None,
        Some("t".to_string()),
        Some("p".into()),
        Some("m".into()),
    ];
    let (evidence, _) = evidence(&ctx, &params, Rows::Empty, &[filter], spill.path()).await?;
    let mut schemas: BTreeMap<&'static str, SchemaRef> = flow
        .results
        .schemas()
        .into_iter()
        .map(|(name, schema)| (name, Arc::clone(schema)))
        .collect();
    schemas.insert("evidence", evidence);
    Ok(schemas)
}

/// The run's own spill directory (removed when dropped), under `parent` or
/// the system temporary directory.
pub(super) fn spill_dir(parent: Option<&std::path::Path>) -> Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("tokenledger-");
    match parent {
        Some(dir) => b.tempdir_in(dir).map_err(|e| Error::Io {
            what: format!(
                "creating a spill directory in {} (run.spill_dir)",
                dir.display()
            ),
            source: e,
        }),
        None => b.tempdir().map_err(|e| Error::Io {
            what: "creating a spill directory in the system temporary directory (TMPDIR)".into(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    /// Every output's columns and types, pinned: a column renamed, dropped or
    /// retyped in `sql/` changes this text and fails here, before any run.
    #[tokio::test]
    async fn every_query_runs_over_empty_tables_of_the_real_schemas() {
        let schemas = super::check_queries().await.unwrap();
        let mut text = String::new();
        for (name, schema) in &schemas {
            text.push_str(name);
            text.push('\n');
            for f in schema.fields() {
                text.push_str(&format!(
                    "  {}: {}{}\n",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "" } else { " not null" }
                ));
            }
        }
        let golden = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/query_schemas.txt"
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden, &text).unwrap();
        }
        let want = std::fs::read_to_string(golden).unwrap();
        assert_eq!(text, want, "query output schemas differ from {golden}");
    }
}
