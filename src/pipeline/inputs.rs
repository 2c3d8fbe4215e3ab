//! Loading a day's inputs: the price and FX tables, the invoices, and the
//! request objects that can hold the day's rows (opened, footers read,
//! columns checked), with every object listed and not read named.
//!
//! Storage reads only: no query runs here and nothing is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use tracing::{info, warn};

use super::Selection;
use crate::calendar::Day;
use crate::config::Config;
use crate::error::{Error, Problems, Result};
use crate::fx::FxTable;
use crate::lake::scan::DayInput;
use crate::lake::schema::Col;
use crate::lake::{Location, ObjectInfo, Stores, partition_dir};
use crate::manifest::{InputObject, SkipKind, SkippedObject, sha256};
use crate::pricing::PriceTable;
use crate::reconcile::UsdLine;
use crate::tabular::TextTable;

pub(super) fn object(
    info: &ObjectInfo,
    lake: &Location,
    rows: u64,
    digest: Option<String>,
    partition: Option<String>,
) -> InputObject {
    // Each digest goes to the field named after its algorithm.
    let (blake3, sha256) = match digest {
        Some(d) if crate::lake::DigestAlgo::of(&d) == Some(crate::lake::DigestAlgo::Blake3) => {
            (Some(d), None)
        }
        d => (None, d),
    };
    InputObject {
        key: info
            .location
            .relative_to(lake)
            .unwrap_or_else(|| info.location.to_string()),
        size: info.size,
        etag: info.e_tag.clone(),
        version: info.version.clone(),
        rows,
        sha256,
        blake3,
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

/// Everything a day is computed from, loaded and checked.
pub(super) struct Loaded {
    pub prices_obj: InputObject,
    pub prices: PriceTable,
    pub fx_obj: Option<InputObject>,
    pub fx: FxTable,
    pub invoices: Invoices,
    pub requests: Arc<DayInput>,
    /// The partitions listed (`date=D`).
    pub partitions: Vec<String>,
    /// Every object listed and not read (requests and invoices), sorted.
    pub skipped: Vec<SkippedObject>,
    /// Mapped columns absent from every object, and columns derived.
    pub absent_columns: Vec<String>,
}

/// Load the day's inputs: the tables, the invoices (every problem at once),
/// and the request objects of the partitions that can hold the day's rows
/// (or exactly those `sel` names). A day without rows is
/// [`Error::EmptyDay`].
pub(super) async fn load(
    stores: &Arc<Stores>,
    config: &Config,
    day: &Day,
    sel: &Selection,
) -> Result<Loaded> {
    let (prices_obj, prices) = load_prices(stores, config).await?;
    let alias_problems = config.aliases.check_targets(&prices);
    if !alias_problems.is_empty() {
        return Err(Error::config("pricing.aliases", alias_problems));
    }
    let (fx_obj, fx) = load_fx(stores, config).await?;
    let invoices = match &sel.invoices {
        Some(list) => read_invoices(stores, config, list.clone(), Some(&fx)).await?,
        None => load_invoices(stores, config, Some(&fx)).await?,
    };
    info!(
        objects = invoices.objects.len(),
        lines = invoices.lines.len(),
        "invoices read"
    );
    let partitions = day.partitions(config.late_days);
    let requests = Arc::new(open_requests(stores, config, day, &partitions, sel).await?);
    let partitions: Vec<String> = partitions.iter().map(|d| partition_dir(*d)).collect();
    info!(objects = requests.files().len(), rows = requests.rows_listed(), partitions = ?partitions, "inputs listed");
    let mut skipped = skipped_requests(config, &requests);
    skipped.extend(invoices.unread.iter().cloned());
    skipped.sort();
    if let Some(recorded) = &sel.skipped {
        skipped = recorded.clone();
    }
    let absent_columns = absent_columns(config, &requests);
    if requests.rows_listed() == 0 {
        return Err(Error::EmptyDay {
            date: day.date.to_string(),
            zone: config.timezone.to_string(),
            detail: format!(
                "no rows in {} Parquet object(s) under {} in partitions {}",
                requests.files().len(),
                config.requests,
                partitions.join(", ")
            ),
        });
    }
    Ok(Loaded {
        prices_obj,
        prices,
        fx_obj,
        fx,
        invoices,
        requests,
        partitions,
        skipped,
        absent_columns,
    })
}

/// The request objects of `partitions`, or exactly those `sel` names (a
/// replay: each must still be there).
async fn open_requests(
    stores: &Arc<Stores>,
    config: &Config,
    day: &Day,
    partitions: &[chrono::NaiveDate],
    sel: &Selection,
) -> Result<DayInput> {
    let Some(objects) = &sel.requests else {
        return DayInput::open(
            Arc::clone(stores),
            &config.requests,
            partitions,
            &config.columns,
            day.window(),
        )
        .await;
    };
    let mut listed = Vec::with_capacity(objects.len());
    for (loc, date) in objects {
        let info = stores.head(loc).await?.ok_or_else(|| Error::Replay {
            problems: Problems(vec![format!("{loc}: the object is gone")]),
        })?;
        listed.push((info, *date));
    }
    DayInput::open_objects(Arc::clone(stores), listed, &config.columns, day.window()).await
}

/// Every request object listed and not read, named (log, manifest,
/// finance page): markers and hidden files at info, the rest as warnings.
fn skipped_requests(config: &Config, input: &DayInput) -> Vec<SkippedObject> {
    input
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
        .collect()
}

/// Optional columns absent from every object of the day, and columns
/// derived where absent: said where a person looks (a derived column is
/// not a logged one).
fn absent_columns(config: &Config, input: &DayInput) -> Vec<String> {
    let objects = input.files().len();
    let mut out: Vec<String> = input
        .absent_everywhere(&config.columns)
        .into_iter()
        .map(|(col, source)| {
            warn!(column = col.name(), source = %source, "optional column absent from every object of the day");
            format!(
                "`{}` (read from `{source}`): in none of the day's {objects} object(s)",
                col.name()
            )
        })
        .collect();
    for col in [Col::Error, Col::CacheHit, Col::LatencyMs] {
        let derived = input.derived_objects(col);
        if let (true, Some(how)) = (derived > 0, config.columns.derivation(col)) {
            out.push(format!(
                "`{}` (read from `{}`): absent from {derived} of the day's {objects} object(s), derived there as {how}",
                col.name(),
                config.columns.source(col),
            ));
            info!(column = col.name(), objects = derived, derived_as = %how, "column derived (columns.preset)");
        }
    }
    out
}

/// A local lake's request objects are recorded by content (their etags
/// follow inode and mtime, so a copy or restore would look changed to a
/// replay), hashed with BLAKE3 on blocking threads while the queries run
/// (SHA-256 here cost ~6% of a 10M-row day's CPU; BLAKE3 a fraction).
pub(super) fn spawn_local_digests(
    input: &DayInput,
) -> tokio::task::JoinHandle<Result<Vec<Option<String>>>> {
    let paths: Vec<Option<std::path::PathBuf>> = input
        .files()
        .iter()
        .map(|f| f.info.location.local_path())
        .collect();
    tokio::spawn(async move {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(paths.into_iter().map(|p| async move {
            match p {
                Some(p) => crate::lake::file_digest(&p, crate::lake::DigestAlgo::Blake3)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }))
        .buffered(4)
        .try_collect::<Vec<Option<String>>>()
        .await
    })
}

/// Days of rollups read for comparisons (the 30-day spend trend).
const HISTORY_DAYS: u64 = 30;

/// Earlier days from their rollups (the dashboards' comparisons, the month
/// to date, the anomaly baselines): the 30 days before `date` (more if the
/// anomaly window is longer), or exactly the days `sel` names. Rollups cut
/// in another time zone are left out, with a warning.
pub(super) async fn load_history(
    stores: &Stores,
    config: &Config,
    date: chrono::NaiveDate,
    sel: &Selection,
) -> Result<LoadedHistory> {
    // Budgets' forecasts read the daily rollups further back (not the
    // latency ones, which only the comparisons and the route mix use).
    let compare = HISTORY_DAYS.max(u64::from(config.anomaly.window_days));
    let back = compare.max(crate::budget::history_days(&config.budgets));
    let days = sel.history.clone().unwrap_or_else(|| {
        (date - chrono::Days::new(back))
            .iter_days()
            .take_while(|d| *d < date)
            .collect()
    });
    let latency_from = date - chrono::Days::new(compare);
    let started = std::time::Instant::now();
    let history = read_history(
        stores,
        &config.rollups,
        &days,
        latency_from,
        config.timezone.name(),
    )
    .await?;
    tracing::debug!(
        objects = history.read.len(),
        latency_bytes = history
            .latency
            .fetched
            .iter()
            .map(|f| f.2.len())
            .sum::<usize>(),
        seconds = started.elapsed().as_secs_f64(),
        "history read"
    );
    for (d, zone) in &history.history.other_zone {
        warn!(date = %d, rollup_zone = %zone, zone = %config.timezone, "a rollup cut in another time zone is left out of the comparisons and the month to date");
    }
    Ok(history)
}

/// Earlier days' rollups, and every rollup object read with its SHA-256
/// (for the manifest).
pub(super) struct LoadedHistory {
    /// The daily rollups (the latency ones are added once summed:
    /// [`LatencyRollups::add_to`]).
    pub history: crate::history::History,
    pub read: Vec<(ObjectInfo, String)>,
    pub latency: LatencyRollups,
}

/// The stored latency rollups of the comparison window, fetched and
/// digested while the day's queries run and decoded only when summed
/// ([`LatencyRollups::add_to`]): a few MB of compressed bytes held beside
/// the scans' peak, nothing decoded.
#[derive(Debug, Default)]
pub(super) struct LatencyRollups {
    /// Each day's object and its bytes, in day order.
    pub fetched: Vec<(chrono::NaiveDate, Location, bytes::Bytes)>,
}

impl LatencyRollups {
    /// Decode each day's object and sum it into its histogram and route
    /// counts, added to `history` (on the blocking threads, a few objects
    /// at a time; a decoded object is dropped once summed).
    pub(super) async fn add_to(self, history: &mut crate::history::History) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        let summed: Vec<_> = futures::stream::iter(self.fetched.into_iter().map(
            |(date, loc, bytes)| async move {
                tokio::task::spawn_blocking(move || day_latency(&loc, bytes))
                    .await
                    .map_err(|e| Error::Internal(format!("summing a latency rollup: {e}")))?
                    .map(|(histogram, routes)| (date, histogram, routes))
            },
        ))
        .buffered(4)
        .try_collect()
        .await?;
        for (date, histogram, routes) in summed {
            history.add_latency(date, histogram, routes);
        }
        Ok(())
    }
}

/// One stored latency rollup's histogram and, if it kept routes, route
/// counts ([`crate::history::day_latency`]).
fn day_latency(
    loc: &Location,
    bytes: bytes::Bytes,
) -> Result<(
    crate::history::Histogram,
    Option<crate::history::RouteCounts>,
)> {
    use crate::queries::rows::{RollupLatency, conform};
    let corrupt = |message: String| Error::CorruptInput {
        key: loc.to_string(),
        message,
    };
    let (schema, batches, _) = decode_rollup(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (batches, routes_kept) = conform::<RollupLatency>(loc.as_str(), &schema, &batches)?;
    crate::history::day_latency(&batches, routes_kept).map_err(corrupt)
}

/// A stored rollup's rows and the time zone its footer records.
type Rollup<T> = Option<(Vec<T>, Option<String>)>;

/// A stored rollup's schema, batches and the time zone its footer records.
type RollupBatches = Option<(SchemaRef, Vec<RecordBatch>, Option<String>)>;

/// Read one stored rollup's batches (absent: `None`), recording it in `read`.
async fn read_rollup_batches(
    stores: &Stores,
    loc: &Location,
    read: &mut Vec<(ObjectInfo, String)>,
) -> Result<RollupBatches> {
    let Some((info, bytes)) = stores.get_opt_info(loc).await? else {
        return Ok(None);
    };
    // Digest and decode off the async threads: the objects of a window
    // decode on every core at once.
    let key = loc.to_string();
    let (digest, decoded) = tokio::task::spawn_blocking(move || {
        let digest = sha256(&bytes);
        (digest, decode_rollup(bytes))
    })
    .await
    .map_err(|e| Error::Internal(format!("decoding {key}: {e}")))?;
    read.push((info, digest));
    let (schema, batches, zone) = decoded.map_err(|e| Error::CorruptInput {
        key,
        message: e.to_string(),
    })?;
    Ok(Some((schema, batches, zone)))
}

/// A stored rollup's schema, batches and recorded time zone. Its text
/// columns are read as dictionaries (the parquet pages' own dictionaries,
/// kept): a day's latency rollup is ~90K rows of a few dozen names, and a
/// window of them decoded string by string was most of what history cost a
/// run.
fn decode_rollup(
    bytes: bytes::Bytes,
) -> parquet::errors::Result<(SchemaRef, Vec<RecordBatch>, Option<String>)> {
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::{
        ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    };
    let stored = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new())?;
    let zone = rollup_zone(stored.metadata());
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let fields: Vec<Field> = stored
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            t if text(t) => f.as_ref().clone().with_data_type(DataType::Dictionary(
                Box::new(DataType::Int32),
                Box::new(DataType::Utf8),
            )),
            _ => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        stored.schema().metadata().clone(),
    ));
    let options = ArrowReaderOptions::new().with_schema(Arc::clone(&schema));
    let meta = ArrowReaderMetadata::try_new(Arc::clone(stored.metadata()), options)?;
    // Batches of DataFusion's size, not the reader's default 1,024 rows: a
    // window of latency rollups is millions of rows for SQL to sum.
    let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
        .with_batch_size(8192)
        .build()?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches, zone))
}

/// Read one stored rollup's rows (absent: `None`), recording it in `read`.
pub(super) async fn read_rollup<T: crate::queries::Row>(
    stores: &Stores,
    loc: &Location,
    read: &mut Vec<(ObjectInfo, String)>,
) -> Result<Rollup<T>> {
    let Some((schema, batches, zone)) = read_rollup_batches(stores, loc, read).await? else {
        return Ok(None);
    };
    let rows = crate::queries::rows::decode_from(loc.as_str(), &schema, &batches)?;
    Ok(Some((rows, zone)))
}

/// Fetch one stored latency rollup (absent: `None`), recording it in
/// `read`: its bytes, undecoded, and the time zone its footer records.
async fn fetch_latency_rollup(
    stores: &Stores,
    loc: &Location,
    read: &mut Vec<(ObjectInfo, String)>,
) -> Result<Option<(bytes::Bytes, Option<String>)>> {
    let Some((info, bytes)) = stores.get_opt_info(loc).await? else {
        return Ok(None);
    };
    let key = loc.to_string();
    let (digest, zone, bytes) = tokio::task::spawn_blocking(move || {
        let digest = sha256(&bytes);
        let zone = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map(|m| rollup_zone(&m));
        (digest, zone, bytes)
    })
    .await
    .map_err(|e| Error::Internal(format!("reading {key}: {e}")))?;
    read.push((info, digest));
    let zone = zone.map_err(|e| Error::CorruptInput {
        key,
        message: e.to_string(),
    })?;
    Ok(Some((bytes, zone)))
}

/// The time zone a rollup's footer records (none: written before rollups
/// recorded it).
fn rollup_zone(meta: &parquet::file::metadata::ParquetMetaData) -> Option<String> {
    meta.file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == crate::history::ZONE_KEY))
        .and_then(|e| e.value.clone())
}

/// Read the rollups of `days` cut in `zone` (rollups that record another
/// zone are listed in `History::other_zone` and not used; rollups that
/// record none predate the record and are used), a few objects at a time;
/// the latency rollups only from `latency_from` on.
async fn read_history(
    stores: &Stores,
    rollups: &Location,
    days: &[chrono::NaiveDate],
    latency_from: chrono::NaiveDate,
    zone: &str,
) -> Result<LoadedHistory> {
    use crate::queries::rows::RollupDaily;
    use futures::{StreamExt, TryStreamExt};
    let read = days.iter().map(|date| async move {
        let part = partition_dir(*date);
        let at = |kind: &str| rollups.join(kind).join(&part).join("part-0.parquet");
        let mut read = Vec::new();
        let daily: Rollup<RollupDaily> = read_rollup(stores, &at("daily"), &mut read).await?;
        let latency = if *date >= latency_from {
            fetch_latency_rollup(stores, &at("latency"), &mut read)
                .await?
                .map(|(bytes, zone)| (at("latency"), bytes, zone))
        } else {
            None
        };
        Ok::<_, Error>((*date, daily, latency, read))
    });
    let loaded: Vec<_> = futures::stream::iter(read)
        .buffered(8)
        .try_collect()
        .await?;
    let mut history = crate::history::History::default();
    let mut latency_rollups = LatencyRollups::default();
    let mut objects = Vec::new();
    for (date, daily, latency, read) in loaded {
        objects.extend(read);
        let zones = [daily.as_ref().map(|d| &d.1), latency.as_ref().map(|l| &l.2)];
        let foreign = zones
            .into_iter()
            .flatten()
            .find_map(|z| z.as_deref().filter(|z| *z != zone));
        if let Some(other) = foreign {
            history.other_zone.push((date, other.to_string()));
            continue;
        }
        if let Some((rows, _)) = &daily {
            history.add_daily(date, rows);
        }
        if let Some((loc, bytes, _)) = latency {
            latency_rollups.fetched.push((date, loc, bytes));
        }
    }
    Ok(LoadedHistory {
        history,
        read: objects,
        latency: latency_rollups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Array, ArrayRef, DictionaryArray, Float64Array, Int64Array, StringViewArray,
    };
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    /// A latency rollup as the rollup writer stores it (string views, the
    /// zone in the footer), with or without its later `route` column.
    fn stored(with_route: bool) -> bytes::Bytes {
        let text = |v: &[&str]| Arc::new(StringViewArray::from(v.to_vec())) as ArrayRef;
        let mut cols = vec![
            ("provider", text(&["openai", "openai", "anthropic"])),
            ("model", text(&["gpt-4o", "gpt-4o", "claude-sonnet-4"])),
        ];
        if with_route {
            cols.push(("route", text(&["/v1/chat", "/v1/chat", "/v1/messages"])));
        }
        cols.push((
            "latency_ms",
            Arc::new(Float64Array::from(vec![12.0, 30.0, 12.0])),
        ));
        cols.push(("requests", Arc::new(Int64Array::from(vec![7, 1, 5]))));
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), cols.into_iter().map(|c| c.1).collect())
                .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                crate::history::ZONE_KEY.to_string(),
                "Europe/Berlin".to_string(),
            )]))
            .build();
        let mut out = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        out.into()
    }

    fn texts(col: &ArrayRef) -> Vec<String> {
        let dict = col
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .expect("text read as a dictionary");
        let values = dict
            .values()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        dict.keys()
            .iter()
            .map(|k| values.value(k.unwrap() as usize).to_string())
            .collect()
    }

    /// Text comes back as dictionaries of the stored values, the zone from
    /// the footer, and the rollup as its day's histogram and route counts.
    #[test]
    fn a_stored_latency_rollup_decodes_to_dictionaries_and_its_days_latency() {
        let bytes = stored(true);
        let (schema, batches, zone) = decode_rollup(bytes.clone()).unwrap();
        assert_eq!(zone.as_deref(), Some("Europe/Berlin"));
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(schema.field(0).data_type(), &dict);
        assert_eq!(schema.field(3).data_type(), &DataType::Float64);
        assert_eq!(
            texts(batches[0].column(1)),
            ["gpt-4o", "gpt-4o", "claude-sonnet-4"]
        );

        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .unwrap();
        assert_eq!(rollup_zone(&meta).as_deref(), Some("Europe/Berlin"));

        let loc =
            Location::parse("/lake/rollups/latency/date=2026-03-02/part-0.parquet", None).unwrap();
        // (12 ms, 7) (30 ms, 1) (12 ms, 5): see `stored`.
        let (histogram, routes) = day_latency(&loc, bytes).unwrap();
        assert_eq!(histogram, vec![(12.0, 12), (30.0, 1)]);
        let routes = routes.expect("the rollup kept routes");
        assert_eq!(routes["openai/gpt-4o"]["/v1/chat"], 8);
        assert_eq!(routes["anthropic/claude-sonnet-4"]["/v1/messages"], 5);

        // Written before routes were kept: the same histogram, no routes.
        let (old, routes) = day_latency(&loc, stored(false)).unwrap();
        assert_eq!(old, histogram);
        assert_eq!(routes, None);
    }

    /// A torn object is an error naming it, not an empty day.
    #[test]
    fn a_torn_latency_rollup_is_named() {
        let bytes = stored(true);
        let torn = bytes.slice(0..bytes.len() / 2);
        let loc =
            Location::parse("/lake/rollups/latency/date=2026-03-02/part-0.parquet", None).unwrap();
        match day_latency(&loc, torn) {
            Err(Error::CorruptInput { key, .. }) => {
                assert!(key.ends_with("date=2026-03-02/part-0.parquet"), "{key}")
            }
            other => panic!("expected a corrupt input, got {other:?}"),
        }
    }
}
