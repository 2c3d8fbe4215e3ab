//! The daily job, end to end; the only module that knows every stage.
//!
//! 1. Load and validate the price table and FX table (config errors, exit 2).
//! 2. List the partitions that can hold the day's rows; read every footer and
//!    check every file's columns (input errors, exit 3) before any work.
//! 3. The queries ([`flow`]): duplicate keys, ops counts, the finance pass
//!    (duplicate candidates set aside and resolved), then every output.
//! 4. Render everything in memory: CSVs, rollups, the dashboards and charts
//!    ([`dashboards`]); apply the data-quality gates; publish with the
//!    manifest last; rebuild the report index.
//! 5. Mail each audience once ([`crate::deliver::mail`]); a failed send is
//!    exit 5 with everything published.
//!
//! The day's rows are never collected: they stream through DataFusion.
//! ARCHITECTURE.md walks through the data flow step by step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, SchemaRef, UInt64Type};
use chrono::{NaiveDate, SecondsFormat, Utc};
use tracing::{info, warn};

use crate::calendar::Day;
use crate::config::Config;
use crate::deliver::{Output, publish};
use crate::error::{Error, ExitKind, Problems, Result};
use crate::fx::FxTable;
use crate::lake::scan::{
    DayInput, Divert, DivertSink, KeySet, ScanCounters, ScanOptions, dup_rows_schema,
};
use crate::lake::schema::{Col, request_schema};
use crate::lake::{Location, ObjectInfo, Stores, partition_dir};
use crate::manifest::{
    DataQuality, FxFacts, Headline, InputObject, Inputs, Manifest, PricingFacts, RowCounts,
    SkipKind, SkippedObject, sha256,
};
use crate::pricing::PriceTable;
use crate::queries::{self, Params};
use crate::reconcile::{Reconciliation, UsdLine};
use crate::tabular::TextTable;
use datafusion::execution::context::SessionContext;

pub mod audit;
pub mod dashboards;
pub mod prices;
pub mod settle;

use crate::deliver::mail::{self, Deliveries};
use crate::report::model::InputFacts;
use dashboards::{Dashboards, LetterContext};

/// The names of the CSV exports in `reports/date=D/`.
pub const CSV_OUTPUTS: [&str; 11] = [
    "ops_daily",
    "ops_by_model",
    "finance_by_dimension",
    "data_quality",
    "reconciliation",
    "reconciliation_mtd",
    "reconciliation_by_token_type",
    "logged_vs_computed",
    "reconciliation_evidence",
    "focus_costs",
    "anomalies",
];

/// Days of rollups read for comparisons (the 30-day spend trend).
const HISTORY_DAYS: u64 = 30;

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
    /// Mail sent, skipped and failed (`None` when mail is off).
    pub deliveries: Option<Deliveries>,
    /// The model the dashboards and mails were rendered from.
    pub report: crate::report::model::Report,
    pub reconciliation: Reconciliation,
    pub run_id: String,
    /// Seconds per stage.
    pub stages: Stages,
    /// Earlier days this run restated (late rows).
    pub restated: Vec<settle::Restatement>,
}

/// How to run a day.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's id in logs, lease and manifest (default: a new one).
    pub run_id: Option<String>,
    /// Mail every audience again, even those already mailed for the day.
    pub resend: bool,
    /// Exit with [`ExitKind::Mismatch`] when a reconciliation line is not
    /// `ok` (also `reconcile.fail_on_mismatch`).
    pub fail_on_mismatch: bool,
    /// Replace a day published in another time zone (else a usage error).
    pub replace_zone: bool,
}

/// Which inputs a computation reads. The default lists the day's partitions,
/// the invoice sources and the rollups of the 30 days before, as a nightly
/// run does; a replay names exactly the objects a manifest lists, and a
/// reprice swaps the price table.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Request-log objects with the partition date each was listed under.
    pub requests: Option<Vec<(Location, NaiveDate)>>,
    /// Invoice objects and how to read each.
    pub invoices: Option<Vec<(Location, crate::reconcile::invoices::Adapter)>>,
    /// Days whose rollups are read as history.
    pub history: Option<Vec<NaiveDate>>,
    /// Another price table (`reprice`).
    pub prices: Option<Location>,
    /// The run's id (default: a new one).
    pub run_id: Option<String>,
    /// The objects the run listed and did not read (a replay reports what
    /// the run reported; default: what this listing skips).
    pub skipped: Option<Vec<SkippedObject>>,
    /// The day's status and what the publication restates (a replay: as
    /// recorded; a restatement: the run it replaces; default: the status at
    /// this run's start, restating nothing).
    pub standing: Option<settle::Standing>,
}

/// A new run id: UTC start time and 32 random bits (`20261128T020000Z-1a2b3c4d`).
pub fn new_run_id() -> String {
    format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Wall-clock time per stage of a run, each logged as it ends.
#[derive(Debug, Clone)]
pub struct Stages {
    last: std::time::Instant,
    pub done: Vec<(String, f64)>,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Stages {
    /// End the current stage: log and record its time.
    pub fn lap(&mut self, stage: &str) {
        let now = std::time::Instant::now();
        let seconds = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        info!(
            stage,
            seconds = (seconds * 1000.0).round() / 1000.0,
            "stage done"
        );
        self.done.push((stage.to_string(), seconds));
    }

    /// `name=1.234s name=0.5s ...`
    pub fn render(&self) -> String {
        self.done
            .iter()
            .map(|(n, t)| format!("{n}={t:.3}s"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A day computed and rendered, nothing written yet.
#[derive(Debug)]
pub struct Computed {
    pub stores: Arc<Stores>,
    pub day: Day,
    pub reports: Location,
    /// Every output but the manifest, rendered.
    pub outputs: Vec<Output>,
    pub manifest: Manifest,
    pub manifest_out: Output,
    pub kept: u64,
    pub unpriced: u64,
    pub cost_usd: String,
    pub dashboards: Dashboards,
    pub reconciliation: Reconciliation,
    pub gate_problems: Vec<String>,
    pub results: DayResults,
    pub csvs: Vec<dashboards::Csv>,
    /// Incidents for the day's high-severity anomalies.
    pub incidents: Vec<crate::anomaly::incident::Incident>,
    pub run_id: String,
    pub stages: Stages,
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
        adapter: None,
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

/// The invoices of every configured source, parsed and in USD.
#[derive(Debug, Default)]
pub struct Invoices {
    pub objects: Vec<InputObject>,
    pub lines: Vec<UsdLine>,
    /// Rows the adapters left out (taxes, other services), by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Objects under the invoice prefix or a source that were not read, and why.
    pub unread: Vec<SkippedObject>,
    /// Objects byte-identical to an earlier one (their lines count twice).
    pub duplicates: Vec<crate::manifest::DuplicateObject>,
}

/// Which invoice objects are read, by which adapter, and which are not.
#[derive(Debug, Default)]
pub struct InvoiceListing {
    pub read: Vec<(Location, crate::reconcile::invoices::Adapter)>,
    pub unread: Vec<SkippedObject>,
}

/// The objects of a source location: the object itself, or every object
/// under the prefix.
async fn invoice_objects(stores: &Stores, loc: &Location) -> Result<Vec<ObjectInfo>> {
    let name = loc.file_name();
    if name.contains('.')
        && let Some(info) = stores.head(loc).await?
    {
        return Ok(vec![info]);
    }
    stores.list(loc).await
}

/// Decide, for every object under `inputs.invoices` and under every source,
/// who reads it: the most specific source holding it; in the default layout,
/// the normalized adapter for `*.csv` directly under `inputs.invoices`
/// (SPEC 1.4). Hidden, marker and temporary objects (Hadoop conventions) and
/// objects no source reads are listed as unread with the reason, never
/// passed over.
pub async fn list_invoices(stores: &Stores, config: &Config) -> Result<InvoiceListing> {
    use crate::reconcile::invoices::{Adapter, Format};
    let mut sources: Vec<(usize, &(Location, Adapter))> =
        config.reconcile.sources.iter().enumerate().collect();
    // Most specific first: a source inside another's prefix takes its objects.
    sources.sort_by_key(|(_, (loc, _))| std::cmp::Reverse(loc.as_str().len()));
    // Each object read, with the position of its source (objects are read in
    // the order of the configured sources).
    let mut read: BTreeMap<Location, (usize, Adapter)> = BTreeMap::new();
    let mut unread: BTreeMap<Location, (SkipKind, String)> = BTreeMap::new();
    for (order, (src, adapter)) in sources {
        for o in invoice_objects(stores, src).await? {
            if read.contains_key(&o.location) {
                continue;
            }
            match crate::lake::hidden_reason(&o.location, src) {
                Some(why) => {
                    unread.insert(o.location, (SkipKind::Hidden, why.to_string()));
                }
                None => {
                    read.insert(o.location, (order, adapter.clone()));
                }
            }
        }
    }
    let root = &config.invoices;
    for o in stores.list(root).await? {
        if read.contains_key(&o.location) || unread.contains_key(&o.location) {
            continue;
        }
        if let Some(why) = crate::lake::hidden_reason(&o.location, root) {
            unread.insert(o.location, (SkipKind::Hidden, why.to_string()));
            continue;
        }
        let top_level_csv = o.location.parent().as_ref() == Some(root)
            && o.location
                .file_name()
                .to_ascii_lowercase()
                .ends_with(".csv");
        match &config.reconcile.csv_root {
            Some(csv_root) if csv_root == root && top_level_csv => {
                let last = config.reconcile.sources.len();
                read.insert(o.location, (last, Adapter::new(Format::Normalized)));
            }
            _ => {
                unread.insert(
                    o.location,
                    (
                        SkipKind::NoSource,
                        "no invoice source reads it (see [[reconcile.sources]])".to_string(),
                    ),
                );
            }
        }
    }
    let unread = unread
        .into_iter()
        .map(|(loc, (kind, reason))| SkippedObject {
            key: loc
                .relative_to(&config.lake)
                .unwrap_or_else(|| loc.to_string()),
            kind,
            reason,
        })
        .collect();
    let mut read: Vec<(usize, Location, Adapter)> = read
        .into_iter()
        .map(|(loc, (order, adapter))| (order, loc, adapter))
        .collect();
    read.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(InvoiceListing {
        read: read
            .into_iter()
            .map(|(_, loc, adapter)| (loc, adapter))
            .collect(),
        unread,
    })
}

/// Read every invoice object of every source, a few at a time; every problem
/// in every object is reported together (exit 3).
/// With `fx` None (a broken FX table in `check`) the lines are parsed and
/// checked but not converted: `lines` stays empty.
pub async fn load_invoices(
    stores: &Stores,
    config: &Config,
    fx: Option<&FxTable>,
) -> Result<Invoices> {
    let listing = list_invoices(stores, config).await?;
    for o in &listing.unread {
        if o.kind == SkipKind::Hidden {
            info!(object = %o.key, reason = %o.reason, "invoice object not read");
        } else {
            warn!(object = %o.key, reason = %o.reason, "invoice object not read");
        }
    }
    let mut invoices = read_invoices(stores, config, listing.read, fx).await?;
    invoices.unread = listing.unread;
    Ok(invoices)
}

/// Read and parse exactly these invoice objects.
pub async fn read_invoices(
    stores: &Stores,
    config: &Config,
    listed: Vec<(Location, crate::reconcile::invoices::Adapter)>,
    fx: Option<&FxTable>,
) -> Result<Invoices> {
    use futures::{StreamExt, TryStreamExt};
    let fetched: Vec<_> =
        futures::stream::iter(listed.into_iter().map(|(loc, adapter)| async move {
            let (info, bytes) = stores.get(&loc).await?;
            Ok::<_, Error>((info, adapter, bytes))
        }))
        .buffered(8)
        .try_collect()
        .await?;
    let mut problems = Problems::new();
    let mut out = Invoices::default();
    let mut lines = Vec::new();
    // The first object with each digest, and for each line the (object,
    // first object) pair when its object repeats an earlier one.
    let mut first_with: BTreeMap<String, String> = BTreeMap::new();
    let mut repeats: Vec<Option<(String, String)>> = Vec::new();
    for (info, adapter, bytes) in fetched {
        let key = info
            .location
            .relative_to(&config.lake)
            .unwrap_or_else(|| info.location.to_string());
        let digest = sha256(&bytes);
        let repeat = match first_with.get(&digest) {
            Some(first) => {
                warn!(object = %key, same_as = %first, "invoice object is byte-identical to another: its lines count twice");
                out.duplicates.push(crate::manifest::DuplicateObject {
                    key: key.clone(),
                    same_as: first.clone(),
                });
                Some((key.clone(), first.clone()))
            }
            None => {
                first_with.insert(digest.clone(), key.clone());
                None
            }
        };
        match crate::reconcile::invoices::parse(&adapter, &key, bytes) {
            Ok(parsed) => {
                let mut obj = object(
                    &info,
                    &config.lake,
                    parsed.lines.len() as u64,
                    Some(digest),
                    None,
                );
                obj.adapter = Some(adapter.format.name().to_string());
                out.objects.push(obj);
                for (reason, n) in parsed.skipped {
                    *out.skipped.entry(reason).or_default() += n;
                }
                repeats.extend(std::iter::repeat_n(repeat, parsed.lines.len()));
                lines.extend(parsed.lines);
            }
            Err(p) => problems.extend(p),
        }
    }
    match fx.map(|fx| crate::reconcile::to_usd(lines, fx)) {
        Some(Ok(mut usd)) => {
            for (l, repeat) in usd.iter_mut().zip(repeats) {
                l.duplicate_of = repeat;
            }
            out.lines = usd;
        }
        Some(Err(p)) => problems.extend(p),
        None => {}
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Invoices { problems })
    }
}

/// `tokenledger check`: config (already validated by loading it), SQL, price
/// table, FX table and alias targets; every problem in one error.
pub async fn check(config: &Config) -> Result<Vec<String>> {
    let stores = Stores::new(config.s3.clone());
    let mut problems = Problems::new();
    let mut checked = Vec::new();
    if let Err(e) = check_lake_root(config) {
        problems.push(e.to_string());
    }
    match check_queries().await {
        Ok(_) => checked.push(format!("{} SQL files parse and plan", queries::FILES.len())),
        Err(e) => problems.push(e.to_string()),
    }
    match crate::report::html::check() {
        Ok(n) => checked.push(format!("{n} templates parse")),
        Err(e) => problems.push(e.to_string()),
    }
    match load_prices(&stores, config).await {
        Ok((obj, prices)) => {
            checked.push(format!("price table {} ({} rows)", config.prices, obj.rows));
            let jumps = prices.jumps();
            if !jumps.is_empty() {
                checked.push(format!(
                    "price table: {} price move(s) of 10x or more between versions (check them; a run flags the ones in force on its day):",
                    jumps.len()
                ));
                for j in jumps.iter().take(20) {
                    checked.push(format!("  {j}"));
                }
                if jumps.len() > 20 {
                    checked.push(format!("  ... and {} more", jumps.len() - 20));
                }
            }
            let alias = config.aliases.check_targets(&prices);
            alias.0.into_iter().for_each(|p| problems.push(p));
        }
        Err(e) => problems.push(e.to_string()),
    }
    let fx = match load_fx(&stores, config).await {
        Ok((obj, fx)) => {
            checked.push(match obj {
                Some(obj) => format!("FX table {} ({} rows)", config.fx, obj.rows),
                None => format!("FX table {}: absent (only USD converts)", config.fx),
            });
            Some(fx)
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    // A broken FX table does not hide the invoices' own problems: they are
    // read and parsed all the same, only not converted to USD.
    match load_invoices(&stores, config, fx.as_ref()).await {
        Ok(inv) => {
            checked.push(format!(
                "invoices under {}: {} object(s), {} line(s)",
                config.invoices,
                inv.objects.len(),
                inv.objects.iter().map(|o| o.rows).sum::<u64>()
            ));
            // An invoice no source reads is a layout or config mistake;
            // markers and hidden files are only listed.
            for o in &inv.unread {
                if o.kind == SkipKind::Hidden {
                    checked.push(format!("invoice object {} not read: {}", o.key, o.reason));
                } else {
                    problems.push(format!("invoice object {}: {}", o.key, o.reason));
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(Error::config("tokenledger check", problems))
    }
}

/// The position of `column` in the output of `sql/{file}.sql`, checked to
/// be of the kind the caller reads (`want`). A column renamed or retyped in
/// the SQL is an internal error naming the file and column, never a zero.
fn output_column(
    file: &str,
    schema: &arrow::datatypes::Schema,
    column: &str,
    want: (&str, fn(&arrow::datatypes::DataType) -> bool),
) -> Result<usize> {
    let (i, field) = schema.column_with_name(column).ok_or_else(|| {
        Error::Internal(format!(
            "sql/{file}.sql: the output has no column `{column}` (it has: {})",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if !(want.1)(field.data_type()) {
        return Err(Error::Internal(format!(
            "sql/{file}.sql: column `{column}` is {}, expected {}",
            field.data_type(),
            want.0
        )));
    }
    Ok(i)
}

const INTEGER: (&str, fn(&arrow::datatypes::DataType) -> bool) =
    ("an integer", arrow::datatypes::DataType::is_integer);
const TEXT: (&str, fn(&arrow::datatypes::DataType) -> bool) = ("text", |t| {
    matches!(
        t,
        arrow::datatypes::DataType::Utf8
            | arrow::datatypes::DataType::LargeUtf8
            | arrow::datatypes::DataType::Utf8View
    )
});

/// Sum of an integer column of a query output (negative values count 0),
/// over the rows whose text column `filter.0` equals `filter.1`.
fn sum_int(
    file: &str,
    (schema, batches): (&SchemaRef, &[RecordBatch]),
    column: &str,
    filter: Option<(&str, &str)>,
) -> Result<u64> {
    let values_at = output_column(file, schema, column, INTEGER)?;
    let filter_at = match filter {
        Some((c, want)) => Some((output_column(file, schema, c, TEXT)?, want)),
        None => None,
    };
    let cast_error = |e: arrow::error::ArrowError| {
        Error::Internal(format!("sql/{file}.sql: column `{column}`: {e}"))
    };
    let mut total = 0u64;
    for b in batches {
        let values = arrow::compute::cast(b.column(values_at), &arrow::datatypes::DataType::Int64)
            .map_err(cast_error)?;
        let values = values.as_primitive::<Int64Type>();
        let keep = match filter_at {
            Some((at, want)) => {
                let text = arrow::compute::cast(b.column(at), &arrow::datatypes::DataType::Utf8)
                    .map_err(cast_error)?;
                let text = text.as_string::<i32>();
                Some(
                    (0..b.num_rows())
                        .map(|i| text.is_valid(i) && text.value(i) == want)
                        .collect::<Vec<_>>(),
                )
            }
            None => None,
        };
        total += (0..b.num_rows())
            .filter(|&i| keep.as_ref().is_none_or(|k| k[i]) && values.is_valid(i))
            .map(|i| values.value(i).max(0) as u64)
            .sum::<u64>();
    }
    Ok(total)
}

/// A day is published in one time zone: a run in another zone (a one-off
/// `--tz`) would replace its reports and its rollup, and the month to date
/// and baselines would then mix zones. Refused (exit 2) unless the run says
/// it replaces the day on purpose.
async fn check_published_zone(
    stores: &Stores,
    config: &Config,
    date: NaiveDate,
    day_dir: &Location,
    replace: bool,
) -> Result<()> {
    let manifest = day_dir.join("manifest.json");
    let Some(bytes) = stores.get_opt(&manifest).await? else {
        return Ok(());
    };
    let published = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| {
            m.get("timezone")
                .and_then(|z| z.as_str())
                .map(str::to_string)
        });
    match published {
        Some(zone) if zone != config.timezone.name() => {
            if replace {
                warn!(date = %date, published_zone = %zone, zone = %config.timezone, "replacing a day published in another time zone (--replace-zone)");
                Ok(())
            } else {
                Err(Error::Usage(format!(
                    "{date} is published in {zone} ({manifest}); this run is in {}: it would replace that day's reports and rollup, and the month to date would mix zones. Run in {zone}, or pass --replace-zone to replace the day on purpose",
                    config.timezone
                )))
            }
        }
        _ => Ok(()),
    }
}

/// A local lake root must be an existing directory: a typo must not become
/// an empty lake (the lease would create it) nor a retryable failure.
pub fn check_lake_root(config: &Config) -> Result<()> {
    let Some(dir) = config.lake.local_path() else {
        return Ok(());
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Usage(format!(
            "lake root {}: is a file, not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "lake root {}: no such directory",
            dir.display()
        ))),
        Err(e) => Err(Error::Usage(format!("lake root {}: {e}", dir.display()))),
    }
}

/// Run the job for one day with default options.
pub async fn run(config: &Config, date: NaiveDate) -> Result<RunSummary> {
    run_with(config, date, &RunOptions::default()).await
}

/// Run the job for one day: take the day's lease, finish what a killed run
/// left, compute, render, gate, publish, mail, release the lease.
pub async fn run_with(
    config: &Config,
    date: NaiveDate,
    options: &RunOptions,
) -> Result<RunSummary> {
    check_lake_root(config)?;
    let run_id = options.run_id.clone().unwrap_or_else(new_run_id);
    let stores = Arc::new(Stores::new(config.s3.clone()));
    let day_dir = config.reports.join(&partition_dir(date));
    let lease = crate::lake::lease::Lease::acquire(
        &stores,
        &day_dir,
        &date.to_string(),
        &run_id,
        config.lease,
    )
    .await?;
    let result = run_leased(config, date, options, &run_id, &stores, &day_dir, &lease).await;
    match lease.release(&stores).await {
        Ok(()) => result,
        // The run's own outcome matters more than a lease left to go stale.
        Err(e) if result.is_err() => {
            tracing::warn!(error = %e, "the lease was not released; it goes stale");
            result
        }
        Err(e) => Err(e),
    }
}

async fn run_leased(
    config: &Config,
    date: NaiveDate,
    options: &RunOptions,
    run_id: &str,
    stores: &Stores,
    day_dir: &Location,
    lease: &crate::lake::lease::Lease,
) -> Result<RunSummary> {
    let (installed, discarded) = crate::deliver::recover(stores, day_dir).await?;
    if installed + discarded > 0 {
        info!(
            installed,
            discarded, "recovered what earlier killed runs left in staging"
        );
    }
    check_published_zone(stores, config, date, day_dir, options.replace_zone).await?;
    // Late rows of the days before restate them first, so this day's month
    // to date and baselines read their settled rollups.
    let restated = settle::settle(config, date, run_id).await?;
    let restated_lines: Vec<String> = restated.iter().map(settle::Restatement::line).collect();
    let mut jumps = BTreeSet::new();
    if config.backfill_missing {
        jumps = history_for(config, date).await?;
    }
    let sel = Selection {
        run_id: Some(run_id.to_string()),
        ..Selection::default()
    };
    let c = compute(config, date, &sel).await?;
    jumps.extend(c.manifest.pricing.price_jumps.iter().cloned());
    warn_price_jumps(&jumps);
    let Computed {
        stores,
        day,
        reports,
        outputs,
        manifest,
        manifest_out,
        kept,
        unpriced,
        cost_usd,
        dashboards,
        reconciliation,
        gate_problems,
        results,
        csvs,
        incidents,
        run_id,
        mut stages,
    } = c;
    publish(&stores, &reports, &run_id, &outputs, &manifest_out, || {
        lease.verify(&stores)
    })
    .await?;
    info!(requests = kept, cost_usd = %cost_usd, unpriced, alerts = dashboards.report.alerts.len(), reports = %reports, "published");
    let days = dashboards::publish_index(&stores, &config.reports).await?;
    info!(days, index = %config.reports.join("index.html"), "report index written");
    stages.lap("publish");
    let rollup = &results.get("rollup_daily")?.1;
    let webhook_failed = file_incidents(&stores, config, day.date, &incidents).await?;
    if !incidents.is_empty() {
        stages.lap("incidents");
    }
    let mut outcome = if (options.fail_on_mismatch || config.reconcile.fail_on_mismatch)
        && reconciliation.not_ok() > 0
    {
        ExitKind::Mismatch
    } else if gate_problems.is_empty() {
        ExitKind::Ok
    } else {
        ExitKind::DataQuality
    };
    if webhook_failed {
        // Like a mail: published, the webhook call missing; a rerun sends it.
        outcome = ExitKind::Delivery;
    }
    let deliveries = if config.mail.enabled() {
        let (fbd_schema, fbd) = results.get("finance_by_dimension")?;
        let letters = dashboards.letters(
            &config.mail,
            &LetterContext {
                date,
                base_url: config.public_base_url.as_ref(),
                csvs: &csvs,
                rollup_daily: rollup,
                finance_by_dimension: (fbd_schema, fbd),
                quality_failed: !gate_problems.is_empty(),
                restated: &restated_lines,
            },
        )?;
        let d = mail::deliver(
            &stores,
            &config.mail,
            &letters,
            &reports.join("deliveries"),
            &partition_dir(date),
            options.resend,
            &run_id,
        )
        .await?;
        info!(
            sent = d.sent.len(),
            already_sent = d.skipped.len(),
            failed = d.failed.len(),
            "mail"
        );
        stages.lap("mail");
        if !d.failed.is_empty() {
            // The reports are published; only the mail is missing, and a
            // rerun sends just that.
            outcome = ExitKind::Delivery;
        }
        Some(d)
    } else {
        None
    };

    Ok(RunSummary {
        day,
        reports,
        outcome,
        manifest,
        requests: kept,
        cost_usd,
        deliveries,
        report: dashboards.report,
        reconciliation,
        run_id,
        stages,
        restated,
    })
}

/// One warning per price move in force on any day this run computed, however
/// many days it built (a backfill of 29 days warns once, not 29 times).
pub fn warn_price_jumps(jumps: &BTreeSet<crate::pricing::Jump>) {
    for j in jumps {
        tracing::warn!(jump = %j, "a price in force on a computed day moved 10x or more between versions");
    }
}

/// Build the rollups missing from the anomaly baseline window of `date`
/// (days with request logs only): a one-time scan of each such day, after
/// which runs read rollups alone. Days that cannot be built are skipped with
/// a warning; the baseline is then shorter. Returns the price moves in force
/// on the days built, for the run to warn about once.
async fn history_for(config: &Config, date: NaiveDate) -> Result<BTreeSet<crate::pricing::Jump>> {
    let days = i64::from(config.anomaly.window_days);
    let from = date - chrono::Duration::days(days);
    let to = date - chrono::Duration::days(1);
    let started = std::time::Instant::now();
    let done = backfill(config, from, to, false, |d, outcome| match outcome {
        Backfilled::Built { requests, .. } => {
            info!(date = %d, requests, "history: built the missing rollup")
        }
        Backfilled::Failed(e) => {
            tracing::warn!(date = %d, error = %e, "history: rollup not built; the baseline skips the day")
        }
        Backfilled::Present | Backfilled::NoLogs => {}
    })
    .await?;
    let built = done
        .iter()
        .filter(|(_, o)| matches!(o, Backfilled::Built { .. }))
        .count();
    if built > 0 {
        info!(
            built,
            seconds = started.elapsed().as_secs_f64(),
            "history: rollups built for the anomaly baseline"
        );
    }
    Ok(jumps_of(&done))
}

/// The price moves in force on the days a backfill built.
pub fn jumps_of(days: &[(NaiveDate, Backfilled)]) -> BTreeSet<crate::pricing::Jump> {
    days.iter()
        .flat_map(|(_, o)| match o {
            Backfilled::Built { price_jumps, .. } => price_jumps.as_slice(),
            _ => &[],
        })
        .cloned()
        .collect()
}

/// What `backfill` did with one day.
#[derive(Debug)]
pub enum Backfilled {
    /// The rollup was there already.
    Present,
    /// No request rows of the day (no objects in the partitions that can
    /// hold them, or only rows of neighbouring days): nothing to build.
    NoLogs,
    /// Built: the day's kept requests, and the 10x price moves in force on
    /// it (for the caller to warn about once, not once per day).
    Built {
        requests: u64,
        price_jumps: Vec<crate::pricing::Jump>,
    },
    /// Could not be built (e.g. no logs that day).
    Failed(Error),
}

/// Build the daily rollups of `from..=to` that are missing (all of them with
/// `force`), from the request logs, writing only the rollups: the history
/// that comparisons and anomaly baselines read. `progress` sees each day.
pub async fn backfill(
    config: &Config,
    from: NaiveDate,
    to: NaiveDate,
    force: bool,
    mut progress: impl FnMut(NaiveDate, &Backfilled),
) -> Result<Vec<(NaiveDate, Backfilled)>> {
    check_lake_root(config)?;
    let stores = Stores::new(config.s3.clone());
    let mut out = Vec::new();
    for date in from.iter_days().take_while(|d| *d <= to) {
        let part = partition_dir(date);
        let daily = config
            .rollups
            .join("daily")
            .join(&part)
            .join("part-0.parquet");
        let outcome = if !force && stores.exists(&daily).await? {
            Backfilled::Present
        } else if !has_logs(&stores, config, date).await? {
            Backfilled::NoLogs
        } else {
            match compute(config, date, &Selection::default()).await {
                Ok(c) => {
                    // The latency rollup first: the daily one marks the day done.
                    let mut rollups: Vec<&Output> = c
                        .outputs
                        .iter()
                        .filter(|o| o.location.as_str().starts_with(config.rollups.as_str()))
                        .collect();
                    rollups.sort_by_key(|o| o.location == daily);
                    for o in rollups {
                        stores.put(&o.location, o.bytes.clone()).await?;
                    }
                    Backfilled::Built {
                        requests: c.kept,
                        price_jumps: c.manifest.pricing.price_jumps.clone(),
                    }
                }
                Err(e @ (Error::Storage { .. } | Error::Io { .. } | Error::Internal(_))) => {
                    return Err(e);
                }
                // Objects in the partitions around the day but no row of the
                // day itself (the day before the lake's first partition, whose
                // late-row window reaches into it): a day without logs, as a
                // run's history counts it, not a failure.
                Err(Error::EmptyDay { detail, .. }) => {
                    info!(date = %date, %detail, "backfill: no request rows of the day");
                    Backfilled::NoLogs
                }
                Err(e) => Backfilled::Failed(e),
            }
        };
        progress(date, &outcome);
        out.push((date, outcome));
    }
    Ok(out)
}

/// Whether any partition that can hold rows of `date` has a data object.
async fn has_logs(stores: &Stores, config: &Config, date: NaiveDate) -> Result<bool> {
    let day = Day::new(date, config.timezone);
    for p in day.partitions(config.late_days) {
        let listed = stores
            .list(&config.requests.join(&partition_dir(p)))
            .await?;
        if listed
            .iter()
            .any(|o| crate::lake::is_data_file(&o.location))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Compute and render one day (every output in memory); write nothing.
pub async fn compute(config: &Config, date: NaiveDate, sel: &Selection) -> Result<Computed> {
    let repriced;
    let config = match &sel.prices {
        Some(prices) => {
            repriced = Config {
                prices: prices.clone(),
                ..config.clone()
            };
            &repriced
        }
        None => config,
    };
    let started = Utc::now();
    let mut stages = Stages::default();
    let run_id = sel.run_id.clone().unwrap_or_else(new_run_id);
    let day = Day::new(date, config.timezone);
    let standing = sel
        .standing
        .clone()
        .unwrap_or_else(|| settle::Standing::at(&day, config.late_days, started));
    info!(date = %date, zone = %config.timezone, start = %day.start, end = %day.end, status = standing.status, "report day");
    queries::parse_all()?;
    crate::report::html::templates()?;

    let stores = Arc::new(Stores::new(config.s3.clone()));
    let (prices_obj, prices) = load_prices(&stores, config).await?;
    let alias_problems = config.aliases.check_targets(&prices);
    if !alias_problems.is_empty() {
        return Err(Error::config("pricing.aliases", alias_problems));
    }
    let (fx_obj, fx) = load_fx(&stores, config).await?;
    let invoices = match &sel.invoices {
        Some(list) => read_invoices(&stores, config, list.clone(), Some(&fx)).await?,
        None => load_invoices(&stores, config, Some(&fx)).await?,
    };
    info!(
        objects = invoices.objects.len(),
        lines = invoices.lines.len(),
        "invoices read"
    );

    let partitions = day.partitions(config.late_days);
    let input = Arc::new(match &sel.requests {
        None => {
            DayInput::open(
                Arc::clone(&stores),
                &config.requests,
                &partitions,
                &config.columns,
                day.window(),
            )
            .await?
        }
        Some(objects) => {
            let mut listed = Vec::with_capacity(objects.len());
            for (loc, date) in objects {
                let info = stores.head(loc).await?.ok_or_else(|| Error::Replay {
                    problems: Problems(vec![format!("{loc}: the object is gone")]),
                })?;
                listed.push((info, *date));
            }
            DayInput::open_objects(Arc::clone(&stores), listed, &config.columns, day.window())
                .await?
        }
    });
    let partition_names: Vec<String> = partitions.iter().map(|d| partition_dir(*d)).collect();
    info!(objects = input.files().len(), rows = input.rows_listed(), partitions = ?partition_names, "inputs listed");
    stages.lap("inputs");
    // Every object listed and not read, named (log, manifest, finance page).
    let mut skipped: Vec<SkippedObject> = input
        .skipped()
        .iter()
        .map(|(loc, kind, reason)| {
            let key = loc
                .relative_to(&config.lake)
                .unwrap_or_else(|| loc.to_string());
            if *kind == SkipKind::Hidden {
                info!(object = %key, reason = %reason, "request object not read");
            } else {
                warn!(object = %key, reason = %reason, "request object not read");
            }
            SkippedObject {
                key,
                kind: *kind,
                reason: reason.clone(),
            }
        })
        .collect();
    skipped.extend(invoices.unread.iter().cloned());
    skipped.sort();
    if let Some(recorded) = &sel.skipped {
        skipped = recorded.clone();
    }
    let mut absent_columns: Vec<String> = input
        .absent_everywhere(&config.columns)
        .into_iter()
        .map(|(col, source)| {
            let text = format!(
                "`{}` (read from `{source}`): in none of the day's {} object(s)",
                col.name(),
                input.files().len()
            );
            warn!(column = col.name(), source = %source, "optional column absent from every object of the day");
            text
        })
        .collect();
    // Said where a person looks: a derived column is not a logged one.
    for col in [Col::Error, Col::CacheHit, Col::LatencyMs] {
        let derived = input.derived_objects(col);
        if let (true, Some(how)) = (derived > 0, config.columns.derivation(col)) {
            absent_columns.push(format!(
                "`{}` (read from `{}`): absent from {derived} of the day's {} object(s), derived there as {how}",
                col.name(),
                config.columns.source(col),
                input.files().len()
            ));
            info!(column = col.name(), objects = derived, derived_as = %how, "column derived (columns.preset)");
        }
    }
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

    // A local lake's request objects are recorded by content (their etags
    // follow inode and mtime, so a copy or restore would look changed to a
    // replay), hashed on blocking threads while the queries run.
    let local_digests = {
        let paths: Vec<Option<std::path::PathBuf>> = input
            .files()
            .iter()
            .map(|f| f.info.location.local_path())
            .collect();
        tokio::spawn(async move {
            use futures::{StreamExt, TryStreamExt};
            futures::stream::iter(paths.into_iter().map(|p| async move {
                match p {
                    Some(p) => crate::lake::file_sha256(&p).await.map(Some),
                    None => Ok(None),
                }
            }))
            .buffered(4)
            .try_collect::<Vec<Option<String>>>()
            .await
        })
    };

    let spill = spill_dir(config.spill_dir.as_deref())?;
    let ctx = queries::session(config.threads, config.memory_limit, spill.path())?;
    match config.memory_limit {
        Some(bytes) => {
            info!(threads = config.threads, memory_limit_bytes = bytes, spill_dir = %spill.path().display(), "query memory pool")
        }
        None => {
            info!(threads = config.threads, spill_dir = %spill.path().display(), "query memory unbounded (no run.memory_limit, no cgroup limit)")
        }
    }
    let params = Params {
        date,
        seconds: day.seconds() as f64,
        day_start_ns: day.window().start_ns,
        day_end_ns: day.window().end_ns,
    };
    let empty_day = |in_day: u64| {
        if in_day > 0 {
            return Ok(());
        }
        Err(Error::EmptyDay {
            date: date.to_string(),
            zone: config.timezone.to_string(),
            detail: format!(
                "{} row(s) in {} object(s), none of them in [{}, {}) with all required columns",
                input.rows_listed(),
                input.files().len(),
                day.start.to_rfc3339(),
                day.end.to_rfc3339()
            ),
        })
    };
    let Flow {
        mut results,
        counters,
        in_day,
        dropped,
        resolutions,
        chosen_rates,
        timings,
    } = flow(
        &ctx,
        &params,
        Rows::Lake(&input),
        &day,
        config,
        &prices,
        &fx,
        spill.path(),
        empty_day,
    )
    .await?;

    let stages_q: Vec<String> = timings
        .iter()
        .map(|(n, t)| format!("{n}={t:.3}s"))
        .collect();
    info!(stages = %stages_q.join(" "), "queries done");
    stages.lap("queries");

    // Price rows of the day that jumped 10x from or to a neighbour.
    let used: std::collections::BTreeSet<&str> = resolutions
        .iter()
        .flat_map(|r| r.price_ids.iter().map(String::as_str))
        .collect();
    let price_jumps: Vec<crate::pricing::Jump> = prices
        .jumps()
        .into_iter()
        .filter(|j| j.price_ids.iter().any(|id| used.contains(id.as_str())))
        .collect();
    // Warned once per run by the caller (`warn_price_jumps`), not per day.

    // Facts for the manifest and the gates.
    let ops_daily = results.get("ops_daily")?;
    let ops_daily = (&ops_daily.0, ops_daily.1.as_slice());
    let kept = sum_int("ops_daily", ops_daily, "requests", None)?;
    let duplicates_dropped = sum_int("ops_daily", ops_daily, "duplicates_dropped", None)?;
    if duplicates_dropped != dropped {
        return Err(Error::Internal(format!(
            "{dropped} duplicate rows left the ops counts but {duplicates_dropped} were counted"
        )));
    }
    let duplicate_conflicts = sum_int("ops_daily", ops_daily, "duplicate_conflicts", None)?;
    let dq_result = results.get("data_quality")?.clone();
    let dq = (&dq_result.0, dq_result.1.as_slice());
    let unpriced = sum_int("data_quality", dq, "unpriced_requests", None)?;
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

    // Earlier days from their rollups: the dashboards' comparisons and the
    // month-to-date reconciliation.
    let history_days = sel.history.clone().unwrap_or_else(|| {
        (date - chrono::Days::new(HISTORY_DAYS.max(u64::from(config.anomaly.window_days))))
            .iter_days()
            .take_while(|d| *d < date)
            .collect()
    });
    let history = crate::history::load(
        &stores,
        &config.rollups,
        &history_days,
        config.timezone.name(),
    )
    .await?;
    for (d, zone) in &history.other_zone {
        warn!(date = %d, rollup_zone = %zone, zone = %config.timezone, "a rollup cut in another time zone is left out of the comparisons and the month to date");
    }
    let today_usage = crate::reconcile::usage_of(&results.get("rollup_daily")?.1)?;
    let reconciliation = {
        let mut usage: BTreeMap<NaiveDate, crate::reconcile::DayUsage> = history
            .usage
            .range(crate::reconcile::month_start(date)..date)
            .map(|(d, u)| (*d, u.clone()))
            .collect();
        usage.insert(date, today_usage.clone());
        crate::reconcile::reconcile(date, &usage, &invoices.lines, &config.reconcile.settings)
    };
    // Evidence for the lines that are not ok: their most expensive requests
    // (one more narrow scan, only then).
    let keys = crate::reconcile::evidence_keys(
        &reconciliation,
        &today_usage,
        &config.reconcile.settings.models,
    );
    let pass = std::time::Instant::now();
    let filters: Vec<[Option<String>; 5]> =
        keys.iter().map(crate::reconcile::pair_filter).collect();
    let (schema, batches) =
        evidence(&ctx, &params, Rows::Lake(&input), &filters, spill.path()).await?;
    info!(
        pairs = keys.len(),
        rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        seconds = pass.elapsed().as_secs_f64(),
        "evidence"
    );
    let evidence = crate::reconcile::evidence_batch(date, &keys, &schema, &batches)?;
    results.results.insert(
        "reconciliation_evidence",
        (evidence.schema(), vec![evidence]),
    );
    info!(
        lines = reconciliation.day.len(),
        month_to_date = reconciliation.month_to_date.len(),
        not_ok = reconciliation.not_ok(),
        "reconciled"
    );
    for (name, batch) in [
        (
            "reconciliation",
            crate::reconcile::lines_batch(date, None, &reconciliation.day),
        ),
        (
            "reconciliation_mtd",
            crate::reconcile::lines_batch(
                date,
                Some(crate::reconcile::month_start(date)),
                &reconciliation.month_to_date,
            ),
        ),
        (
            "reconciliation_by_token_type",
            crate::reconcile::types_batch(date, &reconciliation.day),
        ),
        (
            "logged_vs_computed",
            crate::reconcile::drift_batch(date, &reconciliation.logged),
        ),
    ] {
        results.results.insert(name, (batch.schema(), vec![batch]));
    }

    // Anomalies against the seasonal baseline of the rollups.
    let anomalies = crate::anomaly::detect(
        date,
        &crate::anomaly::rows_of(&results.get("rollup_daily")?.1)?,
        &history.rows,
        &config.anomaly,
    );
    info!(
        flagged = anomalies.len(),
        high = anomalies
            .iter()
            .filter(|a| a.severity == crate::anomaly::Severity::High)
            .count(),
        "anomalies"
    );
    // Route mix: the anomaly window's days and today, from the latency rollups.
    let window_from = date - chrono::Duration::days(i64::from(config.anomaly.window_days));
    let routes = (
        history.routes(window_from, date - chrono::Duration::days(1)),
        crate::history::routes_of(&results.get("rollup_latency")?.1)?.unwrap_or_default(),
    );
    let incidents = incidents(
        &ctx,
        &params,
        Rows::Lake(&input),
        &anomalies,
        &day,
        &prices,
        &resolutions,
        &routes,
        spill.path(),
    )
    .await?;
    let batch = crate::anomaly::batch(date, &anomalies);
    results
        .results
        .insert("anomalies", (batch.schema(), vec![batch]));

    // FOCUS 1.2 rows: accounts, the billing period (the day's calendar
    // month in the report's zone, as providers invoice), Tags as JSON.
    let focus = {
        use chrono::Datelike;
        let (schema, batches) = results.get("focus_costs")?;
        let first = date.with_day(1).expect("day 1 exists");
        let next = first
            .checked_add_months(chrono::Months::new(1))
            .ok_or_else(|| Error::Internal(format!("no month after {first}")))?;
        let start_ns = |d: NaiveDate| Day::new(d, config.timezone).window().start_ns;
        crate::report::focus::finish(
            schema,
            batches,
            &config.focus,
            (start_ns(first), start_ns(next)),
        )?
    };
    results.results.insert("focus_costs", focus);

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
            crate::report::parquet_bytes_with(
                schema,
                batches,
                &[(crate::history::ZONE_KEY, config.timezone.name())],
            )?,
        ));
    }

    // The headline total: the exact sum, rounded once (not a sum of rounded rows).
    let rollup = results.get("rollup_daily")?;
    let cost_usd = total_money("rollup_daily", (&rollup.0, &rollup.1), "cost_usd")?;

    // Dashboards: the same batches, compared with the rollups of earlier days.
    let facts = InputFacts {
        rows_listed: rows.listed,
        late_rows: rows.late_rows,
        early_rows: rows.early_rows,
        rejected_rows: rejected_total,
        logged_unconverted: unconverted.clone(),
        skipped_objects: skipped
            .iter()
            .map(|o| (o.key.clone(), o.reason.clone(), o.kind == SkipKind::Hidden))
            .collect(),
        absent_columns: absent_columns.clone(),
    };
    let dashboards = Dashboards::build(&crate::report::model::Inputs {
        day: &day,
        standing: standing.note(kept, &cost_usd),
        ops_daily: &results.get("ops_daily")?.1,
        ops_by_model: &results.get("ops_by_model")?.1,
        hourly: &results.get("hourly")?.1,
        data_quality: dq.1,
        rollup_daily: &rollup.1,
        rollup_latency: &results.get("rollup_latency")?.1,
        history: &history,
        facts: &facts,
        rules: &config.alerts,
        reconciliation: Some(&reconciliation),
        anomalies: &anomalies,
    })?;
    let csvs: Vec<dashboards::Csv> = CSV_OUTPUTS
        .iter()
        .zip(&outputs)
        .map(|(name, o)| (*name, o.bytes.clone()))
        .collect();
    outputs.extend(dashboards.site(&reports)?);

    let local_digests = local_digests
        .await
        .map_err(|e| Error::Internal(format!("digest task: {e}")))??;
    let manifest = Manifest {
        manifest_version: crate::manifest::MANIFEST_VERSION,
        program: format!("tokenledger {}", env!("CARGO_PKG_VERSION")),
        run_id: run_id.clone(),
        date: date.to_string(),
        timezone: config.timezone.to_string(),
        window_start: day.start.to_rfc3339_opts(SecondsFormat::Secs, true),
        window_end: day.end.to_rfc3339_opts(SecondsFormat::Secs, true),
        seconds_in_day: day.seconds(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        config_digest: config.digest.clone(),
        status: standing.status.to_string(),
        final_after: standing
            .final_after
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        restated_from: standing.restated_from.clone(),
        headline: Headline {
            requests: kept,
            cost_usd: cost_usd.clone(),
            unpriced_requests: unpriced,
            alerts: dashboards.report.alerts.len() as u64,
            data_quality: if gate_problems.is_empty() {
                "ok"
            } else {
                "failed"
            }
            .to_string(),
        },
        inputs: Inputs {
            partitions: partition_names,
            requests: input
                .files()
                .iter()
                .zip(local_digests)
                .map(|(f, digest)| {
                    object(
                        &f.info,
                        &config.lake,
                        f.rows,
                        digest,
                        Some(partition_dir(f.partition_date)),
                    )
                })
                .collect(),
            prices: prices_obj,
            fx: fx_obj,
            invoices: invoices.objects,
            invoice_rows_skipped: invoices.skipped,
            invoice_duplicates: invoices.duplicates,
            history: history
                .read
                .iter()
                .map(|(info, sha)| object(info, &config.lake, 0, Some(sha.clone()), None))
                .collect(),
            skipped,
        },
        pricing: PricingFacts {
            priced_requests: kept - unpriced,
            unpriced_requests: unpriced,
            models: resolutions,
            price_jumps,
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
            token_invariant_violations: sum_int("data_quality", dq, "token_violations", None)?,
            total_tokens_mismatch: sum_int("data_quality", dq, "total_tokens_mismatch", None)?,
            logged_cost_invalid: sum_int("data_quality", dq, "logged_cost_invalid", None)?,
            citation_rate_invalid: sum_int("data_quality", dq, "citation_rate_invalid", None)?,
            unpriced_share,
            rejected_share,
            absent_columns,
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
    stages.lap("report");
    Ok(Computed {
        stores,
        day,
        reports,
        outputs,
        manifest,
        manifest_out,
        kept,
        unpriced,
        cost_usd,
        dashboards,
        reconciliation,
        gate_problems,
        results,
        csvs,
        incidents,
        run_id,
        stages,
    })
}

/// Exact sum of a decimal column over all rows, rounded half to even to 6
/// decimals, formatted.
fn total_money(
    file: &str,
    (schema, batches): (&SchemaRef, &[RecordBatch]),
    column: &str,
) -> Result<String> {
    let at = output_column(
        file,
        schema,
        column,
        ("a decimal", |t| {
            matches!(t, arrow::datatypes::DataType::Decimal128(..))
        }),
    )?;
    let scale = match schema.field(at).data_type() {
        arrow::datatypes::DataType::Decimal128(_, s) => *s,
        _ => crate::money::OUT_SCALE,
    };
    let mut total: i128 = 0;
    for b in batches {
        let col = b
            .column(at)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        total += col.iter().flatten().sum::<i128>();
    }
    let rounded = crate::money::rescale(total, scale, crate::money::OUT_SCALE);
    Ok(crate::money::format_scaled(
        rounded,
        crate::money::OUT_SCALE,
    ))
}

/// Where the queries read the day's rows from.
enum Rows<'a> {
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

fn empty_table(schema: arrow::datatypes::SchemaRef) -> Arc<dyn datafusion::catalog::TableProvider> {
    Arc::new(datafusion::catalog::MemTable::try_new(schema, vec![Vec::new()]).expect("empty table"))
}

/// What the queries produced for one day.
struct Flow {
    results: DayResults,
    counters: Arc<ScanCounters>,
    /// Rows of the day, duplicates included.
    in_day: u64,
    /// Duplicate rows dropped.
    dropped: u64,
    resolutions: Vec<crate::pricing::Resolution>,
    chosen_rates: Vec<crate::fx::ChosenRate>,
    /// Seconds per pass: keys, ops, finance, duplicates, outputs.
    timings: Vec<(&'static str, f64)>,
}

/// The queries of one day, in order (see ARCHITECTURE.md, "Data flow"):
///
/// 1. `dup_keys`: the trace keys seen more than once (a narrow pass).
/// 2. `ops_counts` over every row (duplicates included) -> `ops_all`; its
///    (provider, model) pairs (`model_pairs`) feed the price map.
/// 3. The finance pass: the scan sets the duplicate candidates aside (to
///    local files) and `priced` + `cube` aggregate every other row.
/// 4. `dup_resolution` over the candidates: `dup_winners` go through
///    `priced` + `cube` too (their cube rows join the day's); the counts of
///    `dup_losers` are subtracted from `ops_all` (`ops_merge`).
/// 5. The outputs, from `cube` and `ops_counts`.
///
/// `on_day` sees the number of rows of the day before the finance pass.
#[allow(clippy::too_many_arguments)]
async fn flow(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    day: &Day,
    config: &Config,
    prices: &PriceTable,
    fx: &FxTable,
    spill_dir: &std::path::Path,
    on_day: impl FnOnce(u64) -> Result<()>,
) -> Result<Flow> {
    use queries::{Use, step};

    let mut timings: Vec<(&'static str, f64)> = Vec::new();
    let pass = std::time::Instant::now();
    queries::register(ctx, "requests", rows.plain())?;
    let (_, keys) = step(ctx, "dup_keys", "dup_keys", Use::Result, params, spill_dir).await?;
    let keys: KeySet = keys
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
        .collect();
    timings.push(("keys", pass.elapsed().as_secs_f64()));

    let pass = std::time::Instant::now();
    let (ops_schema, ops_all) =
        step(ctx, "ops_counts", "ops_all", Use::Table, params, spill_dir).await?;
    let in_day = sum_int(
        "ops_counts",
        (&ops_schema, &ops_all),
        "requests",
        Some(("grouping_set", "minute")),
    )?;
    timings.push(("ops", pass.elapsed().as_secs_f64()));
    on_day(in_day)?;
    let (_, pairs_batches) = step(
        ctx,
        "model_pairs",
        "model_pairs",
        Use::Result,
        params,
        spill_dir,
    )
    .await?;
    let mut pairs = Vec::new();
    for b in &pairs_batches {
        let (p, m) = (b.column(0).as_string_view(), b.column(1).as_string_view());
        for i in 0..b.num_rows() {
            pairs.push((p.value(i).to_string(), m.value(i).to_string()));
        }
    }
    let (price_map, resolutions) = prices.price_map(&config.aliases, &pairs, day.start, day.end);
    queries::register_batches(
        ctx,
        "price_map",
        crate::pricing::price_map_schema(),
        vec![price_map],
    )?;
    let (fx_batch, chosen_rates) = fx.rates_on(day.date);
    queries::register_batches(ctx, "fx_rates", crate::fx::fx_schema(), vec![fx_batch])?;

    // The finance pass: the one scan that counts why rows were dropped.
    let pass = std::time::Instant::now();
    let counters = Arc::new(ScanCounters::default());
    let sink = Arc::new(DivertSink::new(spill_dir.join("diverted")));
    queries::register(
        ctx,
        "requests",
        rows.with(ScanOptions {
            counters: Some(Arc::clone(&counters)),
            divert: Some(Divert {
                keys: Arc::new(keys),
                sink: Arc::clone(&sink),
            }),
        }),
    )?;
    step(ctx, "priced", "priced", Use::View, params, spill_dir).await?;
    let (cube_schema, mut cube) = step(ctx, "cube", "cube", Use::Result, params, spill_dir).await?;
    timings.push(("finance", pass.elapsed().as_secs_f64()));
    let pass = std::time::Instant::now();

    // The duplicate candidates, resolved.
    if sink.rows() > 0 {
        let dir = format!("{}/", sink.dir().to_string_lossy());
        let options = datafusion::datasource::file_format::options::ArrowReadOptions {
            schema: Some(&dup_rows_schema()),
            ..Default::default()
        };
        ctx.deregister_table("dup_rows")
            .map_err(|e| df_error("dup_rows", e))?;
        ctx.register_arrow("dup_rows", &dir, options)
            .await
            .map_err(|e| df_error("dup_rows", e))?;
    } else {
        queries::register(ctx, "dup_rows", empty_table(dup_rows_schema()))?;
    }
    step(
        ctx,
        "dup_resolution",
        "dup_resolution",
        Use::Spill,
        params,
        spill_dir,
    )
    .await?;
    step(
        ctx,
        "dup_counts",
        "dup_counts",
        Use::Table,
        params,
        spill_dir,
    )
    .await?;
    step(
        ctx,
        "dup_losers",
        "dup_losers",
        Use::View,
        params,
        spill_dir,
    )
    .await?;
    step(
        ctx,
        "dup_winners",
        "dup_winners",
        Use::View,
        params,
        spill_dir,
    )
    .await?;

    // The rows kept of the candidates join the day's cube...
    let winners = ctx
        .table("dup_winners")
        .await
        .map_err(|e| df_error("dup_winners", e))?;
    queries::register(ctx, "requests", winners.into_view())?;
    step(ctx, "priced", "priced", Use::View, params, spill_dir).await?;
    let (_, cube_winners) = step(ctx, "cube", "cube", Use::Result, params, spill_dir).await?;
    cube.extend(cube_winners);
    queries::register_batches(ctx, "cube", cube_schema, cube)?;

    // ...and the rows dropped leave the ops counts.
    let losers = ctx
        .table("dup_losers")
        .await
        .map_err(|e| df_error("dup_losers", e))?;
    queries::register(ctx, "requests", losers.into_view())?;
    let (losers_schema, ops_losers) = step(
        ctx,
        "ops_counts",
        "ops_losers",
        Use::Table,
        params,
        spill_dir,
    )
    .await?;
    let dropped = sum_int(
        "ops_counts",
        (&losers_schema, &ops_losers),
        "requests",
        Some(("grouping_set", "minute")),
    )?;
    step(
        ctx,
        "ops_merge",
        "ops_counts",
        Use::Table,
        params,
        spill_dir,
    )
    .await?;
    timings.push(("duplicates", pass.elapsed().as_secs_f64()));

    let pass = std::time::Instant::now();
    let results = queries::run_steps(ctx, queries::OUTPUT_STEPS, params, spill_dir).await?;
    timings.push(("outputs", pass.elapsed().as_secs_f64()));
    Ok(Flow {
        results: DayResults {
            results: results.into_iter().map(|(n, s, b)| (n, (s, b))).collect(),
        },
        counters,
        in_day,
        dropped,
        resolutions,
        chosen_rates,
        timings,
    })
}

/// The incidents of the day's high-severity anomalies: each with its
/// group's costliest traces (sql/evidence.sql with the group as filter), the
/// price rows in force for its models, and a suggestion.
#[allow(clippy::too_many_arguments)]
async fn incidents(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    anomalies: &[crate::anomaly::Anomaly],
    day: &Day,
    prices: &PriceTable,
    resolutions: &[crate::pricing::Resolution],
    routes: &(
        (crate::history::RouteCounts, usize),
        crate::history::RouteCounts,
    ),
    spill_dir: &std::path::Path,
) -> Result<Vec<crate::anomaly::incident::Incident>> {
    use crate::anomaly::incident::{self, PriceRowView, Trace};
    let opening: Vec<&crate::anomaly::Anomaly> =
        anomalies.iter().filter(|a| incident::opens(a)).collect();
    if opening.is_empty() {
        return Ok(Vec::new());
    }
    // One incident per event, not per (group, metric): a person is paged once.
    let events = incident::events(&opening);
    let opening: Vec<&crate::anomaly::Anomaly> = events.iter().map(|e| e.lead).collect();
    // Each group's traces cost a narrow scan of the day: at most
    // EVIDENCE_PAIRS of them, for the largest impacts (`opening` is sorted so).
    let filters: Vec<[Option<String>; 5]> = opening
        .iter()
        .take(crate::reconcile::EVIDENCE_PAIRS)
        .map(|a| a.filter.clone())
        .collect();
    let (schema, mut batches) = evidence(ctx, params, rows, &filters, spill_dir).await?;
    batches.resize(opening.len(), RecordBatch::new_empty(schema));
    let opened_at = Utc::now();
    let mut out = Vec::new();
    for ((a, b), event) in opening.iter().zip(&batches).zip(&events) {
        let text = |name: &str| -> Result<Vec<String>> {
            let c = b
                .column_by_name(name)
                .ok_or_else(|| Error::Internal(format!("evidence.sql: no column {name}")))?;
            crate::report::csv_cells(c.as_ref())
        };
        let (ids, ts, prov, model, cost) = (
            text("trace_id")?,
            text("ts")?,
            text("provider")?,
            text("model")?,
            text("cost_usd")?,
        );
        let mut seen = std::collections::BTreeSet::new();
        let traces: Vec<Trace> = (0..b.num_rows())
            .filter(|&i| seen.insert(ids[i].clone()))
            .take(20)
            .map(|i| Trace {
                trace_id: ids[i].clone(),
                ts: ts[i].clone(),
                provider: prov[i].clone(),
                model: model[i].clone(),
                cost_usd: cost[i].clone(),
            })
            .collect();
        // The price rows in force today for the group's models.
        let group_models: std::collections::BTreeSet<&String> = a
            .models_before
            .keys()
            .chain(a.models_after.keys())
            .collect();
        let mut rows_in_force = Vec::new();
        let mut price_keys = Vec::new();
        for r in resolutions
            .iter()
            .filter(|r| group_models.contains(&format!("{}/{}", r.provider, r.model)))
        {
            price_keys.push((r.price_provider.clone(), r.price_model.clone()));
            for p in prices.versions(&r.price_provider, &r.price_model) {
                if r.price_ids.contains(&p.price_id) {
                    rows_in_force.push(PriceRowView {
                        provider: p.provider.clone(),
                        model: p.model.clone(),
                        price_id: p.price_id.clone(),
                        input_usd_per_1k: p.input_usd_per_1k.map(|d| d.normalize().to_string()),
                        output_usd_per_1k: p.output_usd_per_1k.map(|d| d.normalize().to_string()),
                        valid_from: p.valid_from.to_rfc3339(),
                        valid_to: p.valid_to.map(|t| t.to_rfc3339()),
                    });
                }
            }
        }
        let cheaper = price_keys.first().and_then(|(provider, _)| {
            let current: Vec<String> = price_keys
                .iter()
                .filter(|(p, _)| p == provider)
                .map(|(_, m)| m.clone())
                .collect();
            incident::cheapest(prices, provider, &current, day.start)
        });
        out.push(incident::record(
            day.date,
            event,
            opened_at,
            (day.start, day.end),
            (
                incident::route_shares(&routes.0.0, &group_models, routes.0.1),
                incident::route_shares(&routes.1, &group_models, 1),
            ),
            rows_in_force,
            traces,
            incident::suggestion(a, cheaper),
        ));
    }
    Ok(out)
}

/// Write each incident record unless one exists (a rerun never files it
/// twice), then POST those not yet delivered to the webhook and record each
/// delivery. Returns whether a webhook call failed.
async fn file_incidents(
    stores: &Stores,
    config: &Config,
    date: NaiveDate,
    incidents: &[crate::anomaly::incident::Incident],
) -> Result<bool> {
    let dir = config.incidents.join(&partition_dir(date));
    let mut failed = false;
    let mut phase = config
        .webhook
        .as_ref()
        .map(|hook| crate::deliver::Phase::new("webhook", hook.budget));
    for inc in incidents {
        let record = dir.join(&format!("{}.json", inc.id));
        if !stores.exists(&record).await? {
            let json = serde_json::to_vec_pretty(inc)
                .map_err(|e| Error::Internal(format!("incident: {e}")))?;
            stores.put(&record, bytes::Bytes::from(json)).await?;
            info!(id = %inc.id, key = %inc.key, metric = %inc.metric, "incident opened");
        }
        let (Some(hook), Some(phase)) = (&config.webhook, phase.as_mut()) else {
            continue;
        };
        let sent = dir.join(&format!("{}.webhook.json", inc.id));
        if stores.exists(&sent).await? {
            continue;
        }
        if let Some(why) = phase.refusal() {
            tracing::warn!(id = %inc.id, error = %why, "incident webhook failed; a rerun sends it");
            failed = true;
            continue;
        }
        // The stored record is what is sent (a rerun sends the first version).
        let (_, body) = stores.get(&record).await?;
        match crate::deliver::webhook::post(hook, &inc.id, body.to_vec(), phase).await {
            Ok(status) => {
                let note = serde_json::json!({
                    "id": inc.id,
                    "status": status,
                    "sent_at": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                    "sha256": sha256(&body),
                });
                stores
                    .put(&sent, bytes::Bytes::from(note.to_string()))
                    .await?;
            }
            Err(e) => {
                tracing::warn!(id = %inc.id, error = %e.message, "incident webhook failed; a rerun sends it");
                if e.no_answer {
                    phase.mark_down(format!(
                        "{} did not answer for incident {}",
                        hook.url.host_str().unwrap_or("webhook"),
                        inc.id
                    ));
                }
                failed = true;
            }
        }
    }
    Ok(failed)
}

/// sql/evidence.sql over every row of the day, once per filter (see
/// [`crate::reconcile::filter_batch`]); without filters it is only planned
/// (its schema, no rows, no scan). One batch per filter.
async fn evidence(
    ctx: &SessionContext,
    params: &Params,
    rows: Rows<'_>,
    filters: &[[Option<String>; 5]],
    spill_dir: &std::path::Path,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use queries::{Use, step};
    queries::register(ctx, "requests", rows.plain())?;
    step(ctx, "priced", "priced", Use::View, params, spill_dir).await?;
    let none = crate::reconcile::filter_batch(&[]);
    queries::register_batches(ctx, "evidence_keys", none.schema(), vec![none])?;
    let df = queries::plan(ctx, "evidence", params).await?;
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
/// unknown columns, type errors and bad function calls without any data.
/// Returns the schema of every output of the day's flow and of `evidence`,
/// by name.
pub async fn check_queries() -> Result<BTreeMap<&'static str, SchemaRef>> {
    queries::parse_all()?;
    let spill = spill_dir(None)?;
    let ctx = queries::session(1, None, spill.path())?;
    let date = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    let day = Day::new(date, chrono_tz::UTC);
    let params = Params {
        date,
        seconds: 86400.0,
        day_start_ns: day.window().start_ns,
        day_end_ns: day.window().end_ns,
    };
    let config = Config::for_lake("/").expect("a bare lake is a valid config");
    let flow = flow(
        &ctx,
        &params,
        Rows::Empty,
        &day,
        &config,
        &PriceTable::default(),
        &FxTable::default(),
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
        .results
        .into_iter()
        .map(|(name, (schema, _))| (name, schema))
        .collect();
    schemas.insert("evidence", evidence);
    Ok(schemas)
}

/// The run's own spill directory (removed when dropped), under `parent` or
/// the system temporary directory.
fn spill_dir(parent: Option<&std::path::Path>) -> Result<tempfile::TempDir> {
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
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};

    use crate::error::Error;

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

    fn batch(columns: Vec<(&str, arrow::array::ArrayRef)>) -> (Arc<Schema>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let b = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        (schema, vec![b])
    }

    #[test]
    fn a_missing_or_retyped_query_column_is_an_error_naming_file_and_column() {
        let (schema, batches) = batch(vec![
            (
                "requests",
                Arc::new(Int64Array::from(vec![Some(3), None, Some(4), Some(-1)])),
            ),
            (
                "grouping_set",
                Arc::new(StringArray::from(vec![
                    "minute", "minute", "route", "minute",
                ])),
            ),
        ]);
        let sum = |c: &str, f| super::sum_int("ops_counts", (&schema, &batches), c, f);
        assert_eq!(sum("requests", None).unwrap(), 7);
        assert_eq!(
            sum("requests", Some(("grouping_set", "minute"))).unwrap(),
            3
        );
        assert_eq!(sum("requests", Some(("grouping_set", "route"))).unwrap(), 4);
        // Renamed in the SQL: never a silent zero.
        match sum("request_count", None) {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                "sql/ops_counts.sql: the output has no column `request_count` (it has: requests, grouping_set)"
            ),
            other => panic!("{other:?}"),
        }
        // Retyped: text where a count was expected, and the filter the other way round.
        match sum("grouping_set", None) {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                "sql/ops_counts.sql: column `grouping_set` is Utf8, expected an integer"
            ),
            other => panic!("{other:?}"),
        }
        match sum("requests", Some(("requests", "x"))) {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                "sql/ops_counts.sql: column `requests` is Int64, expected text"
            ),
            other => panic!("{other:?}"),
        }
        // A money column that is not a decimal is refused too.
        match super::total_money("rollup_daily", (&schema, &batches), "requests") {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                "sql/rollup_daily.sql: column `requests` is Int64, expected a decimal"
            ),
            other => panic!("{other:?}"),
        }
        // With no rows at all, the schema is still checked.
        let none = (schema.clone(), Vec::new());
        assert!(
            super::sum_int("data_quality", (&none.0, &none.1), "token_violations", None).is_err()
        );
    }
}
