//! The daily job, end to end; the only module that knows every stage.
//!
//! 1. Load and validate the price table and FX table (config errors, exit 2).
//! 2. List the partitions that can hold the day's rows; read every footer and
//!    check every file's columns (input errors, exit 3) before any work.
//! 3. One narrow pass: the (provider, model) pairs of the day (for the price
//!    map) and the duplicate candidates (`sql/dup_keys.sql`).
//! 4. Only if there are candidates: their full rows (a key-filtered scan) are
//!    spilled to a local Parquet file; `sql/dup_resolution.sql` decides which
//!    rows to drop (their positions) and counts duplicates per dimension.
//! 5. The metric pass: one scan of the day that skips the dropped positions,
//!    priced by a range join, aggregated once into the cube; every output
//!    derives from the cube.
//! 6. Render everything in memory, apply the data-quality gates, publish with
//!    the manifest last.
//!
//! The day's rows are never collected: they stream through DataFusion.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, SchemaRef, UInt64Type};
use chrono::{NaiveDate, SecondsFormat, Utc};
use tracing::info;

use crate::calendar::Day;
use crate::config::Config;
use crate::deliver::{Output, publish};
use crate::error::{Error, ExitKind, Problems, Result};
use crate::fx::FxTable;
use crate::lake::scan::{DayInput, KeySet, ScanCounters, ScanOptions, SkipRows};
use crate::lake::schema::request_schema;
use crate::lake::{Location, ObjectInfo, Stores, partition_dir};
use crate::manifest::{
    DataQuality, FxFacts, InputObject, Inputs, Manifest, PricingFacts, RowCounts, sha256,
};
use crate::pricing::PriceTable;
use crate::queries::{self, Params};
use crate::tabular::TextTable;

/// The names of the CSV exports in `reports/date=D/`.
pub const CSV_OUTPUTS: [&str; 4] = [
    "ops_daily",
    "ops_by_model",
    "finance_by_dimension",
    "data_quality",
];

/// What a finished run produced.
#[derive(Debug)]
pub struct RunSummary {
    pub day: Day,
    /// `reports/date=D/`.
    pub reports: Location,
    pub manifest: Manifest,
    /// `Ok`, or `DataQuality` when a gate failed (outputs published anyway).
    pub outcome: ExitKind,
    /// Kept requests and total priced cost (6 decimals).
    pub requests: u64,
    pub cost_usd: String,
}

/// The rendered results of one day, before publishing.
#[derive(Debug)]
pub struct DayResults {
    pub results: BTreeMap<&'static str, (SchemaRef, Vec<RecordBatch>)>,
}

impl DayResults {
    fn get(&self, name: &str) -> Result<&(SchemaRef, Vec<RecordBatch>)> {
        self.results
            .get(name)
            .ok_or_else(|| Error::Internal(format!("no result for sql/{name}.sql")))
    }
}

fn object(
    info: &ObjectInfo,
    lake: &Location,
    rows: u64,
    sha: Option<String>,
    partition: Option<String>,
) -> InputObject {
    InputObject {
        key: info
            .location
            .relative_to(lake)
            .unwrap_or_else(|| info.location.to_string()),
        size: info.size,
        etag: info.e_tag.clone(),
        version: info.version.clone(),
        rows,
        sha256: sha,
        partition,
    }
}

/// Load and validate the price table.
pub async fn load_prices(stores: &Stores, config: &Config) -> Result<(InputObject, PriceTable)> {
    let (info, bytes) = stores.get(&config.prices).await?;
    let key = config.prices.to_string();
    let digest = sha256(&bytes);
    let table =
        TextTable::from_bytes(config.prices.file_name(), bytes).map_err(|e| Error::PriceTable {
            key: key.clone(),
            problems: Problems(vec![e]),
        })?;
    let prices =
        PriceTable::parse(&table).map_err(|problems| Error::PriceTable { key, problems })?;
    let rows = prices.rows().len() as u64;
    Ok((
        object(&info, &config.lake, rows, Some(digest), None),
        prices,
    ))
}

/// Load and validate the FX table; a lake without one converts only USD.
pub async fn load_fx(stores: &Stores, config: &Config) -> Result<(Option<InputObject>, FxTable)> {
    if !stores.exists(&config.fx).await? {
        return Ok((None, FxTable::default()));
    }
    let (info, bytes) = stores.get(&config.fx).await?;
    let key = config.fx.to_string();
    let digest = sha256(&bytes);
    let table =
        TextTable::from_bytes(config.fx.file_name(), bytes).map_err(|e| Error::FxTable {
            key: key.clone(),
            problems: Problems(vec![e]),
        })?;
    let fx = FxTable::parse(&table).map_err(|problems| Error::FxTable { key, problems })?;
    let rows = table.rows.len() as u64;
    Ok((
        Some(object(&info, &config.lake, rows, Some(digest), None)),
        fx,
    ))
}

/// `tokenledger check`: config (already validated by loading it), SQL, price
/// table, FX table and alias targets; every problem in one error.
pub async fn check(config: &Config) -> Result<Vec<String>> {
    let stores = Stores::new(config.s3.clone());
    let mut problems = Problems::new();
    let mut checked = Vec::new();
    match queries::check_all().await {
        Ok(()) => checked.push(format!("{} SQL files parse and plan", queries::FILES.len())),
        Err(e) => problems.push(e.to_string()),
    }
    match load_prices(&stores, config).await {
        Ok((obj, prices)) => {
            checked.push(format!("price table {} ({} rows)", config.prices, obj.rows));
            let alias = config.aliases.check_targets(&prices);
            alias.0.into_iter().for_each(|p| problems.push(p));
        }
        Err(e) => problems.push(e.to_string()),
    }
    match load_fx(&stores, config).await {
        Ok((Some(obj), _)) => checked.push(format!("FX table {} ({} rows)", config.fx, obj.rows)),
        Ok((None, _)) => checked.push(format!(
            "FX table {}: absent (only USD converts)",
            config.fx
        )),
        Err(e) => problems.push(e.to_string()),
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(Error::config("tokenledger check", problems))
    }
}

fn sum_u64(batches: &[RecordBatch], column: &str) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.column_by_name(column))
        .map(|c| {
            let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int64)
                .expect("integer column");
            let c = c.as_primitive::<Int64Type>();
            c.iter().flatten().map(|v| v.max(0) as u64).sum::<u64>()
        })
        .sum()
}

/// Run the job for one day: compute, render, gate, publish.
pub async fn run(config: &Config, date: NaiveDate) -> Result<RunSummary> {
    let started = Utc::now();
    let run_id = format!(
        "{}-{:08x}",
        started.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    );
    let day = Day::new(date, config.timezone);
    info!(date = %date, zone = %config.timezone, start = %day.start, end = %day.end, "report day");
    queries::parse_all()?;

    let stores = Arc::new(Stores::new(config.s3.clone()));
    let (prices_obj, prices) = load_prices(&stores, config).await?;
    let alias_problems = config.aliases.check_targets(&prices);
    if !alias_problems.is_empty() {
        return Err(Error::config("pricing.aliases", alias_problems));
    }
    let (fx_obj, fx) = load_fx(&stores, config).await?;

    let partitions = day.partitions(config.late_days);
    let input = Arc::new(
        DayInput::open(
            Arc::clone(&stores),
            &config.requests,
            &partitions,
            &config.columns,
            day.window(),
        )
        .await?,
    );
    let partition_names: Vec<String> = partitions.iter().map(|d| partition_dir(*d)).collect();
    info!(objects = input.files().len(), rows = input.rows_listed(), partitions = ?partition_names, "inputs listed");
    if input.rows_listed() == 0 {
        return Err(Error::EmptyDay {
            date: date.to_string(),
            zone: config.timezone.to_string(),
            detail: format!(
                "no rows in {} Parquet object(s) under {} in partitions {}",
                input.files().len(),
                config.requests,
                partition_names.join(", ")
            ),
        });
    }

    let (results, counters, in_day, resolutions, chosen_rates) =
        compute(config, &day, &input, &prices, &fx).await?;

    // Facts for the manifest and the gates.
    let (_, ops_daily) = results.get("ops_daily")?;
    let kept = sum_u64(ops_daily, "requests");
    let duplicates_dropped = sum_u64(ops_daily, "duplicates_dropped");
    let duplicate_conflicts = sum_u64(ops_daily, "duplicate_conflicts");
    let (_, dq) = results.get("data_quality")?;
    let unpriced = sum_u64(dq, "unpriced_requests");
    let rejected: BTreeMap<String, u64> = counters
        .rejected()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let rejected_total: u64 = rejected.values().sum();
    let rows = RowCounts {
        listed: input.rows_listed(),
        outside_window: counters
            .outside_window
            .load(std::sync::atomic::Ordering::Relaxed),
        null_ts: counters.null_ts.load(std::sync::atomic::Ordering::Relaxed),
        rejected,
        in_day,
        duplicates_dropped,
        duplicate_conflicts,
        kept,
        late_rows: counters
            .late_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        early_rows: counters
            .early_rows
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    if rows.listed != rows.outside_window + rows.null_ts + rejected_total + rows.in_day
        || rows.in_day != rows.kept + rows.duplicates_dropped
    {
        return Err(Error::Internal(format!(
            "row accounting does not balance: {rows:?}"
        )));
    }

    let unpriced_share = unpriced as f64 / kept.max(1) as f64;
    let rejected_share = rejected_total as f64 / (rejected_total + in_day).max(1) as f64;
    let mut gate_problems = Vec::new();
    if let Some(max) = config.quality.max_unpriced_share
        && unpriced_share > max
    {
        gate_problems.push(format!(
            "{unpriced} of {kept} requests ({:.4}%) are unpriced; quality.max_unpriced_share is {:.4}%",
            unpriced_share * 100.0,
            max * 100.0
        ));
    }
    if rejected_share > config.quality.max_rejected_share {
        gate_problems.push(format!(
            "{rejected_total} rows of the day were rejected for nulls in required columns ({:.4}%); quality.max_rejected_share is {:.4}%",
            rejected_share * 100.0,
            config.quality.max_rejected_share * 100.0
        ));
    }
    let (_, currencies) = results.get("logged_currencies")?;
    let mut unconverted = BTreeMap::new();
    for b in currencies {
        let cur = b.column(0).as_string_view();
        let n = b.column(1).as_primitive::<Int64Type>();
        let has = b.column(2).as_boolean();
        for i in 0..b.num_rows() {
            if !has.value(i) {
                let name = if cur.is_null(i) {
                    "(none)".to_string()
                } else {
                    cur.value(i).to_string()
                };
                unconverted.insert(name, n.value(i).max(0) as u64);
            }
        }
    }

    // Render every output in memory before writing anything.
    let reports = config.reports.join(&partition_dir(date));
    let mut outputs = Vec::new();
    for name in CSV_OUTPUTS {
        let (schema, batches) = results.get(name)?;
        outputs.push(Output::new(
            reports.join(&format!("{name}.csv")),
            crate::report::csv_bytes(schema, batches)?,
        ));
    }
    for (name, dir) in [("rollup_daily", "daily"), ("rollup_latency", "latency")] {
        let (schema, batches) = results.get(name)?;
        let loc = config
            .rollups
            .join(dir)
            .join(&partition_dir(date))
            .join("part-0.parquet");
        outputs.push(Output::new(
            loc,
            crate::report::parquet_bytes(schema, batches)?,
        ));
    }

    // The headline total: the exact sum, rounded once (not a sum of rounded rows).
    let (_, rollup) = results.get("rollup_daily")?;
    let cost_usd = total_money(rollup, "cost_usd")?;
    let manifest = Manifest {
        manifest_version: 1,
        program: format!("tokenledger {}", env!("CARGO_PKG_VERSION")),
        run_id,
        date: date.to_string(),
        timezone: config.timezone.to_string(),
        window_start: day.start.to_rfc3339_opts(SecondsFormat::Secs, true),
        window_end: day.end.to_rfc3339_opts(SecondsFormat::Secs, true),
        seconds_in_day: day.seconds(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        config_digest: config.digest.clone(),
        inputs: Inputs {
            partitions: partition_names,
            requests: input
                .files()
                .iter()
                .map(|f| {
                    object(
                        &f.info,
                        &config.lake,
                        f.rows,
                        None,
                        Some(partition_dir(f.partition_date)),
                    )
                })
                .collect(),
            prices: prices_obj,
            fx: fx_obj,
        },
        pricing: PricingFacts {
            priced_requests: kept - unpriced,
            unpriced_requests: unpriced,
            models: resolutions,
        },
        fx: FxFacts {
            rates: chosen_rates,
            unconverted_requests: unconverted,
        },
        data_quality: DataQuality {
            status: if gate_problems.is_empty() {
                "ok"
            } else {
                "failed"
            }
            .to_string(),
            problems: gate_problems.clone(),
            token_invariant_violations: sum_u64(dq, "token_violations"),
            total_tokens_mismatch: sum_u64(dq, "total_tokens_mismatch"),
            logged_cost_invalid: sum_u64(dq, "logged_cost_invalid"),
            citation_rate_invalid: sum_u64(dq, "citation_rate_invalid"),
            unpriced_share,
            rejected_share,
            rejected_examples: counters
                .examples()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        },
        rows,
        outputs: outputs.iter().map(|o| o.describe(&config.lake)).collect(),
    };
    let manifest_out = Output::new(reports.join("manifest.json"), manifest.to_json());
    publish(&stores, &outputs, &manifest_out).await?;
    info!(requests = kept, cost_usd = %cost_usd, unpriced, reports = %reports, "published");

    Ok(RunSummary {
        day,
        reports,
        outcome: if gate_problems.is_empty() {
            ExitKind::Ok
        } else {
            ExitKind::DataQuality
        },
        manifest,
        requests: kept,
        cost_usd,
    })
}

/// Exact sum of a decimal column over all rows, rounded half to even to 6
/// decimals, formatted.
fn total_money(batches: &[RecordBatch], column: &str) -> Result<String> {
    let mut total: i128 = 0;
    let mut scale = crate::money::OUT_SCALE;
    for b in batches {
        let col = b
            .column_by_name(column)
            .ok_or_else(|| Error::Internal(format!("no column {column}")))?;
        if let arrow::datatypes::DataType::Decimal128(_, s) = col.data_type() {
            scale = *s;
        }
        let col = col.as_primitive::<arrow::datatypes::Decimal128Type>();
        total += col.iter().flatten().sum::<i128>();
    }
    let rounded = crate::money::rescale(total, scale, crate::money::OUT_SCALE);
    Ok(crate::money::format_scaled(
        rounded,
        crate::money::OUT_SCALE,
    ))
}

type Computed = (
    DayResults,
    Arc<ScanCounters>,
    u64,
    Vec<crate::pricing::Resolution>,
    Vec<crate::fx::ChosenRate>,
);

/// Steps 3 to 5: the queries.
async fn compute(
    config: &Config,
    day: &Day,
    input: &Arc<DayInput>,
    prices: &PriceTable,
    fx: &FxTable,
) -> Result<Computed> {
    let ctx = queries::session(config.threads);
    let params = Params {
        date: day.date,
        seconds: day.seconds() as f64,
    };

    queries::register(&ctx, "requests", input.table(ScanOptions::default()))?;
    let keys: KeySet = queries::collect_logged(&ctx, "dup_keys", &params)
        .await?
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
        .collect();
    info!(duplicate_candidates = keys.len(), "first pass");

    // Duplicate candidates: spill their full rows to local disk (never held
    // in memory: a day delivered twice makes every row a candidate), decide
    // in SQL which to drop, and keep only their positions.
    let started = std::time::Instant::now();
    let spill = tempfile::Builder::new()
        .prefix("tokenledger-")
        .tempdir()
        .map_err(|e| Error::Io {
            what: "creating a spill directory".into(),
            source: e,
        })?;
    if keys.is_empty() {
        queries::register_batches(&ctx, "dup_candidates", request_schema(), Vec::new())?;
    } else {
        queries::register(
            &ctx,
            "dup_candidates",
            input.table(ScanOptions {
                keys: Some(Arc::new(keys)),
                ..ScanOptions::default()
            }),
        )?;
    }
    let dedup = queries::run_steps(&ctx, queries::DEDUP_STEPS, &params, spill.path()).await?;
    let skip = SkipRows::from_positions(
        dedup
            .iter()
            .filter(|(name, _, _)| *name == "dup_losers")
            .flat_map(|(_, _, batches)| batches.iter())
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()),
    );
    info!(
        dropped = skip.len(),
        seconds = started.elapsed().as_secs_f64(),
        "duplicates resolved"
    );

    // The ops counts read a few columns; the finance pass reads the rest and
    // is the one scan that counts why rows were dropped.
    let dropped = skip.len() as u64;
    let skip = Arc::new(skip);
    queries::register(
        &ctx,
        "requests",
        input.table(ScanOptions {
            skip: Some(Arc::clone(&skip)),
            ..ScanOptions::default()
        }),
    )?;
    let ops = queries::run_steps(&ctx, queries::OPS_STEPS, &params, spill.path()).await?;
    let mut pairs = Vec::new();
    let mut kept = 0u64;
    for b in ops
        .iter()
        .filter(|(n, _, _)| *n == "model_pairs")
        .flat_map(|(_, _, b)| b.iter())
    {
        let (p, m, n) = (
            b.column(0).as_string_view(),
            b.column(1).as_string_view(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            pairs.push((p.value(i).to_string(), m.value(i).to_string()));
            kept += n.value(i).max(0) as u64;
        }
    }
    if kept == 0 {
        return Err(Error::EmptyDay {
            date: day.date.to_string(),
            zone: config.timezone.to_string(),
            detail: format!(
                "{} row(s) in {} object(s), none of them in [{}, {}) with all required columns",
                input.rows_listed(),
                input.files().len(),
                day.start.to_rfc3339(),
                day.end.to_rfc3339()
            ),
        });
    }
    let in_day = kept + dropped;

    let (price_map, resolutions) = prices.price_map(&config.aliases, &pairs, day.start, day.end);
    queries::register_batches(
        &ctx,
        "price_map",
        crate::pricing::price_map_schema(),
        vec![price_map],
    )?;
    let (fx_batch, chosen) = fx.rates_on(day.date);
    queries::register_batches(&ctx, "fx_rates", crate::fx::fx_schema(), vec![fx_batch])?;

    let counters = Arc::new(ScanCounters::default());
    queries::register(
        &ctx,
        "requests",
        input.table(ScanOptions {
            counters: Some(Arc::clone(&counters)),
            skip: Some(skip),
            ..ScanOptions::default()
        }),
    )?;
    let results = queries::run_steps(&ctx, queries::METRIC_STEPS, &params, spill.path()).await?;
    let results = DayResults {
        results: results.into_iter().map(|(n, s, b)| (n, (s, b))).collect(),
    };
    Ok((results, counters, in_day, resolutions, chosen))
}
