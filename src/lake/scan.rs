//! The day scan: the one reader of request logs, exposed to DataFusion as a table.
//!
//! [`DayInput::open`] lists the partitions that can hold rows of the report day
//! (SPEC 1.1 lateness), reads every file's footer once and checks its columns
//! against the mapping, reporting every problem in every file at once before any
//! work starts. [`DayInput::table`] then serves the day as the normalized
//! request table (see [`super::schema`]), with:
//!
//! - projection pushdown: only the leaves a query needs are decoded;
//! - row-group pruning on `ts` statistics, and the day window `[start, end)` as a
//!   Parquet row filter evaluated on `ts` alone, so other columns are decoded
//!   only for rows of the day; where the statistics put every row group of an
//!   object's share wholly inside the window (and on one side of its
//!   partition's day, for the late and early counts) the filter is left out
//!   and `ts` is not decoded for it, and a decoded `ts` that belies them
//!   fails the read;
//! - rows with a null in a required column rejected (and counted), checked only
//!   where column statistics admit nulls; likewise rows with a token count
//!   above [`MAX_TOKENS`] (no model reads or writes that much in one request:
//!   such a value is a logging bug, and summing it would overflow);
//! - virtual columns `_pos` (object key order, row number) and `_trace_key`
//!   (64-bit hash of `trace_id`), and an optional key filter that decodes wide
//!   columns only for rows whose key is in a given set.
//!
//! It never buffers a day's rows: each partition streams row groups in turn.
//! It knows nothing of prices, metrics or outputs.

use std::collections::{BTreeMap, HashSet};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::error::ArrowError;
use chrono::NaiveDate;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::{
    ArrowPredicate, ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::{ProjectionMask, RowNumber};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use super::schema::{
    CANDIDATE_INDEX, Col, ColumnMapping, FileColumns, IntTsUnit, POS_INDEX, POS_ROW_BITS,
    TRACE_KEY_INDEX, normalize, normalize_col, request_schema, resolve, ts_nanos,
};
use super::{ObjectInfo, SkipKind, Stores, is_data_file, partition_dir};
use crate::error::{Error, Problems, Result};
use crate::lake::Location;

const ROW_NUMBER: &str = "__tokenledger_row_number";
const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The report day as UTC instants in nanoseconds: `[start_ns, end_ns)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayWindow {
    pub start_ns: i64,
    pub end_ns: i64,
}

/// One input object of the day, checked and with its footer in memory.
pub struct InputFile {
    pub info: ObjectInfo,
    /// The UTC date of the partition the object sits in.
    pub partition_date: NaiveDate,
    /// Position in the day's objects sorted by key (the `_pos` high bits).
    pub ordinal: u32,
    /// Rows in the object (from its footer).
    pub rows: u64,
    metadata: ArrowReaderMetadata,
    cols: FileColumns,
}

impl InputFile {
    /// Whether the object can hold rows of `window`: some row group's `ts`
    /// statistics overlap it, or do not say (then it might).
    pub fn may_hold(&self, window: DayWindow) -> bool {
        (0..self.metadata.metadata().num_row_groups()).any(|rg| match ts_stats(self, rg) {
            Some((min, max, _)) => max >= window.start_ns && min < window.end_ns,
            None => true,
        })
    }
}

impl fmt::Debug for InputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputFile")
            .field("location", &self.info.location)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Why rows of the listed objects were not kept, counted by the scan that
/// reads every column the run needs (see [`ScanOptions::counters`]).
#[derive(Debug, Default)]
pub struct ScanCounters {
    /// Rows whose `ts` lies outside the report day.
    pub outside_window: AtomicU64,
    /// Rows with a null `ts`.
    pub null_ts: AtomicU64,
    /// Rows of the day rejected for a null in a required column, by column.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Rows of the day found in a partition after their UTC date (arrived late).
    pub late_rows: AtomicU64,
    /// Rows of the day found in a partition before their UTC date (clock skew).
    pub early_rows: AtomicU64,
    /// Up to a few examples (object key, row) per rejection reason.
    examples: Mutex<BTreeMap<&'static str, Vec<String>>>,
}

impl ScanCounters {
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }
    pub fn examples(&self) -> BTreeMap<&'static str, Vec<String>> {
        self.examples.lock().map(|m| m.clone()).unwrap_or_default()
    }
    /// Add another scan's counts (a partition's, at its end) to these.
    /// Examples are kept as the first few in text order, so which ones a
    /// run shows does not depend on which partition met them first.
    pub fn merge_from(&self, other: &ScanCounters) {
        for (mine, theirs) in [
            (&self.outside_window, &other.outside_window),
            (&self.null_ts, &other.null_ts),
            (&self.late_rows, &other.late_rows),
            (&self.early_rows, &other.early_rows),
        ] {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if let Ok(mut m) = self.rejected.lock() {
            for (col, n) in other.rejected() {
                *m.entry(col).or_default() += n;
            }
        }
        if let Ok(mut m) = self.examples.lock() {
            for (col, list) in other.examples() {
                let mine = m.entry(col).or_default();
                mine.extend(list);
                mine.sort();
                mine.truncate(EXAMPLES);
            }
        }
    }

    /// Record these counts as the scan node's metrics (named `tl_*`, per
    /// partition): how they cross from a worker to the coordinator.
    pub fn publish(&self, metrics: &ExecutionPlanMetricsSet, partition: usize) {
        use datafusion::physical_plan::metrics::{Label, MetricBuilder};
        for (name, value) in [
            (METRIC_OUTSIDE, &self.outside_window),
            (METRIC_NULL_TS, &self.null_ts),
            (METRIC_LATE, &self.late_rows),
            (METRIC_EARLY, &self.early_rows),
        ] {
            MetricBuilder::new(metrics)
                .counter(name, partition)
                .add(value.load(Ordering::Relaxed) as usize);
        }
        for (col, n) in self.rejected() {
            MetricBuilder::new(metrics)
                .with_label(Label::new("column", col))
                .counter(METRIC_REJECTED, partition)
                .add(n as usize);
        }
        for (col, list) in self.examples() {
            for (i, text) in list.into_iter().enumerate() {
                MetricBuilder::new(metrics)
                    .with_label(Label::new("column", col))
                    .with_label(Label::new("n", i.to_string()))
                    .with_label(Label::new("example", text))
                    .counter(METRIC_EXAMPLE, partition)
                    .add(1);
            }
        }
    }

    /// The counts a scan recorded with [`ScanCounters::publish`], summed
    /// over every partition and task in `metrics` (a distributed plan's,
    /// gathered back from its workers).
    pub fn from_metrics<'a>(metrics: impl IntoIterator<Item = &'a MetricsSet>) -> ScanCounters {
        use datafusion::physical_plan::metrics::MetricValue;
        let counters = ScanCounters::default();
        let label = |m: &datafusion::physical_plan::metrics::Metric, name: &str| {
            m.labels()
                .iter()
                .find(|l| l.name() == name)
                .map(|l| l.value().to_string())
        };
        let column = |m: &datafusion::physical_plan::metrics::Metric| {
            label(m, "column")
                .and_then(|c| Col::ALL.iter().find(|k| k.name() == c).map(|k| k.name()))
        };
        for set in metrics {
            for m in set.iter() {
                let MetricValue::Count { name, count } = m.value() else {
                    continue;
                };
                let n = count.value() as u64;
                match name.as_ref() {
                    METRIC_OUTSIDE => counters.outside_window.fetch_add(n, Ordering::Relaxed),
                    METRIC_NULL_TS => counters.null_ts.fetch_add(n, Ordering::Relaxed),
                    METRIC_LATE => counters.late_rows.fetch_add(n, Ordering::Relaxed),
                    METRIC_EARLY => counters.early_rows.fetch_add(n, Ordering::Relaxed),
                    METRIC_REJECTED => {
                        if let (Some(col), Ok(mut map)) = (column(m), counters.rejected.lock()) {
                            *map.entry(col).or_default() += n;
                        }
                        0
                    }
                    METRIC_EXAMPLE => {
                        if let (Some(col), Some(text), Ok(mut map)) =
                            (column(m), label(m, "example"), counters.examples.lock())
                        {
                            let list = map.entry(col).or_default();
                            list.extend(std::iter::repeat_n(text, n as usize));
                        }
                        0
                    }
                    _ => 0,
                };
            }
        }
        if let Ok(mut map) = counters.examples.lock() {
            for list in map.values_mut() {
                list.sort();
                list.truncate(EXAMPLES);
            }
        }
        counters
    }

    fn reject(&self, col: &'static str, example: impl FnOnce() -> String) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(col).or_default() += 1;
        }
        if let Ok(mut m) = self.examples.lock() {
            let list = m.entry(col).or_default();
            if list.len() < EXAMPLES {
                list.push(example());
            }
        }
    }
}

/// Examples kept per rejection reason.
const EXAMPLES: usize = 3;
const METRIC_OUTSIDE: &str = "tl_outside_window";
const METRIC_NULL_TS: &str = "tl_null_ts";
const METRIC_LATE: &str = "tl_late_rows";
const METRIC_EARLY: &str = "tl_early_rows";
const METRIC_REJECTED: &str = "tl_rejected";
const METRIC_EXAMPLE: &str = "tl_reject_example";

/// A set of `_trace_key`s, asked of every row of the finance scan. A bitmap
/// of ~32 bits a key stands in front of the hash set: a day's candidates
/// are ~1% of its rows, and the bitmap (128 KB for 27K keys, in cache)
/// answers "no" for all but ~3% of the others without hashing the key
/// again and probing the set (perf: the check was ~4% of a 5M-row day's
/// samples).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashSet<u64, ahash::RandomState>,
    /// Bit `slot(k)` set for every key `k`; empty for an empty set.
    bits: Vec<u64>,
    /// `64 - log2(bits)`: a slot is the top bits of a multiplicative hash.
    shift: u32,
}

impl KeySet {
    /// Bits at most: 2^27 (16 MiB), for a day of millions of candidates.
    const MAX_BITS: usize = 1 << 27;

    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    pub fn contains(&self, key: u64) -> bool {
        if self.bits.is_empty() {
            return false;
        }
        let s = self.slot(key);
        self.bits[s / 64] & (1 << (s % 64)) != 0 && self.keys.contains(&key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in no order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().copied()
    }
}

impl FromIterator<u64> for KeySet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let keys: HashSet<u64, ahash::RandomState> = iter.into_iter().collect();
        if keys.is_empty() {
            return KeySet::default();
        }
        let bits = (keys.len() * 32)
            .next_power_of_two()
            .clamp(64, Self::MAX_BITS);
        let mut set = KeySet {
            bits: vec![0; bits / 64],
            shift: 64 - bits.trailing_zeros(),
            keys,
        };
        for k in set.keys.iter().copied().collect::<Vec<_>>() {
            let s = set.slot(k);
            set.bits[s / 64] |= 1 << (s % 64);
        }
        set
    }
}

/// Which rows a scan keeps by their `_trace_key`.
#[derive(Clone, Debug)]
pub struct KeyFilter {
    pub keys: Arc<KeySet>,
    /// `true`: only the rows whose key is in `keys` (decided on `trace_id`
    /// alone, as a Parquet row filter: the other columns are decoded for
    /// those rows only); `false`: every row, those marked `_candidate`
    /// (not dropped: the finance query skips them).
    pub inside: bool,
}

/// What a table instance over the day's input does besides reading.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Count dropped rows here. Give counters to exactly one scan per run, one
    /// that reads the whole day (the metrics scan), so every row counts once.
    pub counters: Option<Arc<ScanCounters>>,
    /// Set aside the rows whose `_trace_key` is a duplicate candidate: they
    /// go to the sink (with the columns of [`dup_rows_schema`]), not
    /// downstream, so they can be resolved before they are counted.
    pub divert: Option<Divert>,
    /// Keep rows by their trace key (how a distributed run splits the
    /// duplicate candidates from the other rows: no node writes them aside).
    pub keys: Option<KeyFilter>,
}

/// Where diverted duplicate candidates go.
#[derive(Clone, Debug)]
pub struct Divert {
    pub keys: Arc<KeySet>,
    pub sink: Arc<DivertSink>,
}

/// Arrow IPC files in a local directory, one per scan partition that met a
/// candidate: bounded memory however many rows are set aside.
#[derive(Debug)]
pub struct DivertSink {
    dir: std::path::PathBuf,
    next: std::sync::atomic::AtomicUsize,
    rows: AtomicU64,
    /// Rows written to each bucket (by trace key): every copy of a trace
    /// id lands in one bucket, so buckets are resolved one at a time.
    bucket_rows: Vec<AtomicU64>,
}

impl DivertSink {
    /// A sink writing under `dir`, in `buckets` buckets (at least one).
    pub fn new(dir: std::path::PathBuf, buckets: usize) -> Self {
        DivertSink {
            dir,
            next: std::sync::atomic::AtomicUsize::new(0),
            rows: AtomicU64::new(0),
            bucket_rows: (0..buckets.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The buckets for `keys` duplicate candidate keys, `per_bucket` a
    /// bucket (`run.duplicate_bucket_keys`, default 65536: a resolution's
    /// working set well under 100 MiB), at most [`MAX_BUCKETS`] (each scan
    /// partition keeps a file open per bucket).
    pub fn buckets_for(keys: usize, per_bucket: usize) -> usize {
        keys.div_ceil(per_bucket.max(1)).clamp(1, MAX_BUCKETS)
    }

    /// The directory holding the files (`b<bucket>/*.arrow`).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Rows set aside so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The directories of the buckets that hold rows, in bucket order.
    pub fn bucket_dirs(&self) -> Vec<std::path::PathBuf> {
        self.bucket_rows
            .iter()
            .enumerate()
            .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
            .map(|(b, _)| self.bucket_dir(b))
            .collect()
    }

    fn bucket_dir(&self, bucket: usize) -> std::path::PathBuf {
        self.dir.join(format!("b{bucket:02}"))
    }

    /// Write every batch of `stream` (rows of [`dup_rows_schema`]) into
    /// new files of the sink (one per bucket): how a distributed run
    /// brings the candidates its workers found to the coordinator.
    pub async fn write_stream(
        self: &Arc<Self>,
        mut stream: SendableRecordBatchStream,
    ) -> DfResult<()> {
        let part = PartitionSink::new(Arc::clone(self));
        let schema = dup_rows_schema();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            // The same columns by name, in the sink's schema.
            let batch = RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec())?;
            part.write(&batch)?;
        }
        part.finish()
    }

    fn create(
        &self,
        bucket: usize,
    ) -> std::io::Result<arrow::ipc::writer::FileWriter<std::io::BufWriter<std::fs::File>>> {
        let dir = self.bucket_dir(bucket);
        std::fs::create_dir_all(&dir)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let file = std::fs::File::create(dir.join(format!("diverted-{n:05}.arrow")))?;
        arrow::ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), &dup_rows_schema())
            .map_err(std::io::Error::other)
    }
}

/// The most buckets a [`DivertSink`] has.
pub const MAX_BUCKETS: usize = 16;

type IpcWriter = arrow::ipc::writer::FileWriter<std::io::BufWriter<std::fs::File>>;

/// Rows a bucket's file takes at a time. A scan batch holds a few
/// candidates, split again by bucket: written as they come, each few-row
/// batch would cost an IPC message (~4 KB of headers and padding for
/// 20 columns) and be read back as a batch of its own, which made a
/// bucket's resolution cost ~0.1 s whatever its size.
const DIVERT_BATCH_ROWS: usize = 2048;

/// One bucket's file in a partition: its rows gathered into whole batches
/// (string views copied into compact buffers) before they are written.
struct BucketFile {
    rows: arrow::compute::BatchCoalescer,
    writer: IpcWriter,
}

impl BucketFile {
    fn drain(&mut self) -> std::result::Result<(), ArrowError> {
        while let Some(batch) = self.rows.next_completed_batch() {
            self.writer.write(&batch)?;
        }
        Ok(())
    }
}

/// One partition's writers into the sink, one per bucket, each opened on
/// its bucket's first candidate.
struct PartitionSink {
    sink: Arc<DivertSink>,
    buckets: std::sync::Mutex<Vec<Option<BucketFile>>>,
}

impl PartitionSink {
    fn new(sink: Arc<DivertSink>) -> Self {
        let buckets = sink.bucket_rows.len();
        PartitionSink {
            sink,
            buckets: std::sync::Mutex::new((0..buckets).map(|_| None).collect()),
        }
    }

    fn write(&self, batch: &RecordBatch) -> DfResult<()> {
        let buckets = self.sink.bucket_rows.len();
        if buckets == 1 {
            return self.write_bucket(0, batch.clone());
        }
        let ids = batch
            .column_by_name("trace_id")
            .ok_or_else(|| DataFusionError::Internal("diverted rows without trace_id".into()))?
            .as_string_view();
        let hasher = trace_hasher();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); buckets];
        for (i, id) in ids.iter().enumerate() {
            let b = (hasher.hash_one(id.unwrap_or_default().as_bytes()) % buckets as u64) as usize;
            rows[b].push(i as u32);
        }
        for (b, idx) in rows.into_iter().enumerate() {
            if !idx.is_empty() {
                let part = arrow::compute::take_record_batch(
                    batch,
                    &arrow::array::UInt32Array::from(idx),
                )?;
                self.write_bucket(b, part)?;
            }
        }
        Ok(())
    }

    fn write_bucket(&self, bucket: usize, batch: RecordBatch) -> DfResult<()> {
        let mut guard = self
            .buckets
            .lock()
            .map_err(|_| DataFusionError::Internal("divert sink poisoned".into()))?;
        let slot = &mut guard[bucket];
        if slot.is_none() {
            *slot = Some(BucketFile {
                rows: arrow::compute::BatchCoalescer::new(dup_rows_schema(), DIVERT_BATCH_ROWS),
                writer: self
                    .sink
                    .create(bucket)
                    .map_err(|e| sink_error(&self.sink, e))?,
            });
        }
        let file = slot.as_mut().expect("opened above");
        let n = batch.num_rows() as u64;
        file.rows.push_batch(batch)?;
        file.drain()?;
        self.sink.rows.fetch_add(n, Ordering::Relaxed);
        self.sink.bucket_rows[bucket].fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    fn finish(&self) -> DfResult<()> {
        let mut guard = self
            .buckets
            .lock()
            .map_err(|_| DataFusionError::Internal("divert sink poisoned".into()))?;
        for slot in guard.iter_mut() {
            if let Some(mut file) = slot.take() {
                file.rows.finish_buffered_batch()?;
                file.drain()?;
                file.writer.finish()?;
                use std::io::Write;
                file.writer
                    .into_inner()?
                    .flush()
                    .map_err(|e| sink_error(&self.sink, e))?;
            }
        }
        Ok(())
    }
}

fn sink_error(sink: &DivertSink, e: std::io::Error) -> DataFusionError {
    DataFusionError::External(Box::new(Error::Io {
        what: format!("writing duplicate candidates under {}", sink.dir.display()),
        source: e,
    }))
}

/// Indices in [`request_schema`] of the columns a diverted row keeps: the
/// columns the job reads, the trace id and the position.
fn dup_rows_indices() -> Vec<usize> {
    let mut idx: Vec<usize> = Col::ALL
        .iter()
        .enumerate()
        // route feeds the route mix (ops counts of the dropped rows), not a
        // conflict: sql/dup_resolution.sql compares the metric columns only
        .filter(|(_, c)| c.read_by_metrics() || matches!(**c, Col::TraceId | Col::Route))
        .map(|(i, _)| i)
        .collect();
    idx.push(POS_INDEX);
    idx
}

/// The schema of diverted rows (`sql/dup_resolution.sql` reads them as `dup_rows`).
pub fn dup_rows_schema() -> SchemaRef {
    Arc::new(
        request_schema()
            .project(&dup_rows_indices())
            .expect("indices are in the schema"),
    )
}

/// The objects that can hold rows of one report day, opened and checked.
pub struct DayInput {
    stores: Arc<Stores>,
    files: Vec<Arc<InputFile>>,
    /// Objects of the listed partitions that are not read, and why.
    skipped: Vec<(Location, SkipKind, String)>,
    window: DayWindow,
    batch_size: usize,
    /// The mapping the objects' columns were resolved with.
    mapping: ColumnMapping,
}

impl fmt::Debug for DayInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DayInput")
            .field("files", &self.files.len())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The hash behind `_trace_key`: fixed seeds, so stable within a build.
fn trace_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x746f_6b65_6e6c_6564,
        0x6765_725f_7472_6163,
        0x655f_6b65_795f_7631,
        0x0123_4567_89ab_cdef,
    )
}

/// Whether a listed object of a partition is read, and if not, why. Data
/// files are decided by the Hadoop/Spark/Hive conventions and by content,
/// not by one suffix: hidden, marker and temporary paths (files *and*
/// folders starting with `_` or `.`) are skipped; a `*.parquet` object is
/// read (and must be Parquet); an object of another name is read when it
/// ends with the Parquet magic (`part-00000`, `part-0.snappy` as Hive,
/// Athena and Spark write them), and skipped as not Parquet otherwise.
async fn classify(
    stores: &Stores,
    info: &ObjectInfo,
    partition: &Location,
) -> Result<Option<(SkipKind, String)>> {
    if let Some(why) = super::hidden_reason(&info.location, partition) {
        return Ok(Some((SkipKind::Hidden, why.to_string())));
    }
    if is_data_file(&info.location) || stores.has_parquet_magic(&info.location, info.size).await? {
        return Ok(None);
    }
    Ok(Some((
        SkipKind::NotParquet,
        format!(
            "not Parquet: no `PAR1` magic at the end of its {} byte(s)",
            info.size
        ),
    )))
}

/// Hash a trace id as the scan does (for tests and tools).
pub fn trace_key(trace_id: &str) -> u64 {
    trace_hasher().hash_one(trace_id.as_bytes())
}

impl DayInput {
    /// List the partitions `dates` under `requests`, read every object's footer
    /// and check its columns. Every unreadable object and every missing or
    /// mistyped column in every object is reported in one error.
    pub async fn open(
        stores: Arc<Stores>,
        requests: &Location,
        dates: &[NaiveDate],
        mapping: &ColumnMapping,
        window: DayWindow,
    ) -> Result<DayInput> {
        let mut listed: Vec<(ObjectInfo, NaiveDate)> = Vec::new();
        let mut skipped = Vec::new();
        for &date in dates {
            let prefix = requests.join(&partition_dir(date));
            for info in stores.list(&prefix).await? {
                match classify(&stores, &info, &prefix).await? {
                    None => listed.push((info, date)),
                    Some((kind, reason)) => skipped.push((info.location, kind, reason)),
                }
            }
        }
        let mut input = Self::open_objects(stores, listed, mapping, window).await?;
        input.skipped = skipped;
        Ok(input)
    }

    /// Objects listed in the day's partitions and not read: location, kind
    /// and reason.
    pub fn skipped(&self) -> &[(Location, SkipKind, String)] {
        &self.skipped
    }

    /// Open exactly these objects (each with the partition date it was
    /// listed under), e.g. the ones a manifest names for a replay.
    pub async fn open_objects(
        stores: Arc<Stores>,
        mut listed: Vec<(ObjectInfo, NaiveDate)>,
        mapping: &ColumnMapping,
        window: DayWindow,
    ) -> Result<DayInput> {
        listed.sort_by(|a, b| a.0.location.cmp(&b.0.location));
        let numbered = listed
            .into_iter()
            .enumerate()
            .map(|(ordinal, (info, date))| (ordinal as u32, info, date))
            .collect();
        Self::open_numbered(stores, numbered, mapping, window).await
    }

    /// Open objects whose ordinals (the `_pos` high bits) are already
    /// given: a worker opening its share of a coordinator's day.
    pub(super) async fn open_numbered(
        stores: Arc<Stores>,
        listed: Vec<(u32, ObjectInfo, NaiveDate)>,
        mapping: &ColumnMapping,
        window: DayWindow,
    ) -> Result<DayInput> {
        let footers: Vec<_> = futures::stream::iter(listed)
            .map(|(ordinal, info, date)| {
                let stores = Arc::clone(&stores);
                async move {
                    let res = read_footer(&stores, &info).await;
                    (ordinal, info, date, res)
                }
            })
            .buffered(16)
            .collect()
            .await;

        let mut problems = Problems::new();
        let mut files = Vec::with_capacity(footers.len());
        for (ordinal, info, partition_date, res) in footers {
            let key = info.location.to_string();
            let (metadata, stored_schema) = match res {
                Ok(m) => m,
                Err(FooterError::Storage(e)) => return Err(e),
                Err(FooterError::Parquet(msg)) => {
                    problems.push(format!("{key}: not a readable Parquet file: {msg}"));
                    continue;
                }
            };
            let parquet_schema = metadata.metadata().file_metadata().schema_descr_ptr();
            match resolve(&key, &stored_schema, &parquet_schema, mapping) {
                Ok(cols) => {
                    let rows = metadata.metadata().file_metadata().num_rows().max(0) as u64;
                    files.push(Arc::new(InputFile {
                        info,
                        partition_date,
                        ordinal,
                        rows,
                        metadata,
                        cols,
                    }));
                }
                Err(errs) => errs.into_iter().for_each(|e| problems.push(e)),
            }
        }
        if !problems.is_empty() {
            return Err(Error::InputSchema { problems });
        }
        Ok(DayInput {
            skipped: Vec::new(),
            stores,
            files,
            window,
            batch_size: 8192,
            mapping: mapping.clone(),
        })
    }

    /// Rows per decoded batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub(super) fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The column mapping the objects were resolved with.
    pub fn mapping(&self) -> &ColumnMapping {
        &self.mapping
    }

    /// The storage clients the objects are read through.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    pub fn files(&self) -> &[Arc<InputFile>] {
        &self.files
    }

    pub fn window(&self) -> DayWindow {
        self.window
    }

    /// Optional columns that none of the day's objects has: each with the
    /// source it is read from. (An optional column missing from some
    /// objects is null there, as the SPEC allows.)
    pub fn absent_everywhere(&self, mapping: &super::schema::ColumnMapping) -> Vec<(Col, String)> {
        if self.files.is_empty() {
            return Vec::new();
        }
        Col::ALL
            .iter()
            .copied()
            .filter(|&c| !c.required() && self.files.iter().all(|f| f.cols.leaves_of(c).is_empty()))
            .map(|c| (c, mapping.source(c).to_string()))
            .collect()
    }

    /// Objects in which `col` is absent and derived from other columns.
    pub fn derived_objects(&self, col: Col) -> usize {
        self.files.iter().filter(|f| f.cols.is_derived(col)).count()
    }

    /// Rows in all listed objects.
    pub fn rows_listed(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// The day as a DataFusion table with the normalized request schema.
    pub fn table(self: &Arc<Self>, options: ScanOptions) -> Arc<dyn TableProvider> {
        Arc::new(DayTable {
            input: Arc::clone(self),
            options,
        })
    }

    /// Where `_pos` points: (object, row number).
    pub fn describe_pos(&self, pos: i64) -> String {
        let ordinal = (pos >> POS_ROW_BITS) as usize;
        let row = pos & ((1 << POS_ROW_BITS) - 1);
        match self.files.get(ordinal) {
            Some(f) => format!("{} row {row}", f.info.location),
            None => format!("position {pos}"),
        }
    }
}

/// Reads byte ranges of one object for the Parquet decoder. Storage failures
/// travel as [`Error::Storage`] inside the Parquet error, so they keep their
/// exit code (runtime, retryable) apart from undecodable data (input).
struct ObjectReader {
    store: Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    location: String,
    size: u64,
}

impl ObjectReader {
    fn new(stores: &Stores, info: &ObjectInfo) -> Result<Self> {
        Ok(ObjectReader {
            store: stores.store(&info.location)?,
            path: info.location.path(),
            location: info.location.to_string(),
            size: info.size,
        })
    }

    fn storage_error(&self, e: object_store::Error) -> ParquetError {
        ParquetError::External(Box::new(Error::storage(self.location.clone(), e)))
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        async move {
            use object_store::ObjectStoreExt;
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| self.storage_error(e))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| self.storage_error(e))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The storage error inside a Parquet error, if that is what it is.
fn storage_cause(e: ParquetError) -> Result<Error, ParquetError> {
    match e {
        ParquetError::External(inner) => match inner.downcast::<Error>() {
            Ok(err) => Ok(*err),
            Err(other) => Err(ParquetError::External(other)),
        },
        other => Err(other),
    }
}

enum FooterError {
    Storage(Error),
    Parquet(String),
}

/// The footer of an object: metadata that decodes strings as views, and the
/// object's own Arrow schema (what its columns are checked against).
async fn read_footer(
    stores: &Stores,
    info: &ObjectInfo,
) -> Result<(ArrowReaderMetadata, SchemaRef), FooterError> {
    let mut reader = ObjectReader::new(stores, info).map_err(FooterError::Storage)?;
    let row_number =
        Arc::new(Field::new(ROW_NUMBER, DataType::Int64, false).with_extension_type(RowNumber));
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Skip)
        .with_virtual_columns(vec![row_number])
        .map_err(|e| FooterError::Parquet(e.to_string()))?;
    let natural = ArrowReaderMetadata::load_async(&mut reader, options.clone())
        .await
        .map_err(|e| match storage_cause(e) {
            Ok(storage) => FooterError::Storage(storage),
            Err(other) => FooterError::Parquet(other.to_string()),
        })?;
    // Decode strings straight into views (no per-value copy, no cast later).
    let stored: arrow::datatypes::Fields = natural
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != ROW_NUMBER)
        .cloned()
        .collect();
    let views = Arc::new(arrow::datatypes::Schema::new_with_metadata(
        view_types(&stored),
        natural.schema().metadata().clone(),
    ));
    let stored = Arc::new(arrow::datatypes::Schema::new(stored));
    let metadata =
        ArrowReaderMetadata::try_new(Arc::clone(natural.metadata()), options.with_schema(views))
            .map_err(|e| FooterError::Parquet(e.to_string()))?;
    Ok((metadata, stored))
}

/// `fields` with every UTF-8 string (also inside structs) read as `Utf8View`.
fn view_types(fields: &arrow::datatypes::Fields) -> arrow::datatypes::Fields {
    fields
        .iter()
        .map(|f| {
            let dt = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                DataType::Struct(children) => DataType::Struct(view_types(children)),
                other => other.clone(),
            };
            Arc::new(f.as_ref().clone().with_data_type(dt))
        })
        .collect()
}

#[derive(Debug)]
struct DayTable {
    input: Arc<DayInput>,
    options: ScanOptions,
}

#[async_trait::async_trait]
impl TableProvider for DayTable {
    fn schema(&self) -> SchemaRef {
        request_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let full = request_schema();
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..full.fields().len()).collect(),
        };
        let schema = Arc::new(full.project(&projection)?);
        let partitions = state.config().target_partitions().max(1);
        let plan = Arc::new(ScanPlan {
            source: Source::Open(Arc::clone(&self.input)),
            projection,
            schema,
            options: self.options.clone(),
        });
        let units = assign_units(&self.input, partitions);
        Ok(Arc::new(DayScanExec::new(plan, units)))
    }
}

/// Row groups of one object assigned to one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unit {
    pub(super) file: usize,
    pub(super) row_groups: Vec<usize>,
}

/// Spread the row groups over `partitions` by compressed size (largest first,
/// to the least loaded), deterministically; group each partition's row groups
/// by object so each object is opened once per partition.
fn assign_units(input: &DayInput, partitions: usize) -> Vec<Vec<Unit>> {
    let mut groups: Vec<(u64, usize, usize)> = Vec::new();
    for (fi, f) in input.files.iter().enumerate() {
        for (ri, rg) in f.metadata.metadata().row_groups().iter().enumerate() {
            groups.push((rg.compressed_size().max(1) as u64, fi, ri));
        }
    }
    groups.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut load = vec![0u64; partitions];
    let mut per: Vec<BTreeMap<usize, Vec<usize>>> = vec![BTreeMap::new(); partitions];
    for (size, fi, ri) in groups {
        let (p, _) = load
            .iter()
            .enumerate()
            .min_by_key(|(i, l)| (**l, *i))
            .expect("at least one partition");
        load[p] += size;
        per[p].entry(fi).or_default().push(ri);
    }
    per.into_iter()
        .map(|m| {
            m.into_iter()
                .map(|(file, mut row_groups)| {
                    row_groups.sort_unstable();
                    Unit { file, row_groups }
                })
                .collect()
        })
        .collect()
}

/// Where a scan's objects come from.
pub(super) enum Source {
    /// Opened by this process (footers read, columns resolved).
    Open(Arc<DayInput>),
    /// Named by a coordinator: opened on first use by the worker that runs
    /// the scan, with its own storage clients (see [`super::wire`]).
    Remote(Arc<super::wire::RemoteInput>),
}

impl Source {
    async fn input(&self) -> DfResult<Arc<DayInput>> {
        match self {
            Source::Open(input) => Ok(Arc::clone(input)),
            Source::Remote(remote) => remote.open().await,
        }
    }
}

/// What every partition of one scan shares.
pub(super) struct ScanPlan {
    pub(super) source: Source,
    pub(super) projection: Vec<usize>,
    pub(super) schema: SchemaRef,
    pub(super) options: ScanOptions,
}

/// The day scan as a plan node: a leaf whose partitions each read a list of
/// [`Unit`]s. It is what makes the scan distributable: a coordinator splits
/// its row groups into one variant per task ([`DayScanExec::split`]) and
/// [`super::wire`] sends each to a worker; the counts of rows dropped travel
/// back as the node's metrics ([`ScanCounters::publish`]).
pub struct DayScanExec {
    plan: Arc<ScanPlan>,
    partitions: Vec<Vec<Unit>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for DayScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DayScanExec")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl DayScanExec {
    pub(super) fn new(plan: Arc<ScanPlan>, mut partitions: Vec<Vec<Unit>>) -> DayScanExec {
        if partitions.is_empty() {
            partitions.push(Vec::new());
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&plan.schema)),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        DayScanExec {
            plan,
            partitions,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    pub(super) fn plan(&self) -> &Arc<ScanPlan> {
        &self.plan
    }

    pub(super) fn partitions(&self) -> &[Vec<Unit>] {
        &self.partitions
    }

    /// Row groups this node reads.
    pub fn row_groups(&self) -> usize {
        self.partitions
            .iter()
            .flatten()
            .map(|u| u.row_groups.len())
            .sum()
    }

    /// Whether this node can run elsewhere: not when it writes rows aside
    /// to this machine's disk.
    pub fn distributable(&self) -> bool {
        self.plan.options.divert.is_none() && matches!(self.plan.source, Source::Open(_))
    }

    /// The same scan split into `tasks` variants with disjoint row groups,
    /// each with as many partitions as this node (a task's share spread
    /// over them); `None` for a scan that is not [`Self::distributable`].
    pub fn split(&self, tasks: usize) -> Option<Vec<DayScanExec>> {
        let Source::Open(input) = &self.plan.source else {
            return None;
        };
        if !self.distributable() {
            return None;
        }
        let per_task = self.partitions.len();
        let mut all = assign_units(input, tasks.max(1) * per_task).into_iter();
        Some(
            (0..tasks.max(1))
                .map(|_| {
                    let mine: Vec<Vec<Unit>> = all.by_ref().take(per_task).collect();
                    DayScanExec::new(Arc::clone(&self.plan), mine)
                })
                .collect(),
        )
    }
}

impl DisplayAs for DayScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let files: std::collections::BTreeSet<usize> =
            self.partitions.iter().flatten().map(|u| u.file).collect();
        write!(
            f,
            "DayScanExec: partitions={}, objects={}, row_groups={}",
            self.partitions.len(),
            files.len(),
            self.row_groups()
        )?;
        if let Some(k) = &self.plan.options.keys {
            let which = if k.inside { "only" } else { "without" };
            write!(f, ", {which} {} trace keys", k.keys.len())?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DayScanExec {
    fn name(&self) -> &str {
        "DayScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let units = self.partitions.get(partition).cloned().unwrap_or_default();
        let plan = Arc::clone(&self.plan);
        let sink = plan
            .options
            .divert
            .as_ref()
            .map(|d| Arc::new(PartitionSink::new(Arc::clone(&d.sink))));
        // This partition's own counts: added to the run's (local) and to the
        // node's metrics (what a worker sends back) once all its rows are read.
        let counters = plan
            .options
            .counters
            .as_ref()
            .map(|_| Arc::new(ScanCounters::default()));
        let closing = (sink.clone(), counters.clone(), Arc::clone(&plan));
        let metrics = self.metrics.clone();
        let body = async move {
            let input = plan.source.input().await?;
            let units = futures::stream::iter(units).then(move |unit| {
                let plan = Arc::clone(&plan);
                let input = Arc::clone(&input);
                let sink = sink.clone();
                let counters = counters.clone();
                async move { open_unit(plan, input, unit, sink, counters).await }
            });
            Ok::<_, DataFusionError>(units.try_flatten())
        };
        let stream = futures::stream::once(body).try_flatten().chain(
            futures::stream::once(async move {
                let (sink, counters, plan) = closing;
                if let Some(sink) = sink {
                    sink.finish()?;
                }
                if let Some(mine) = counters {
                    mine.publish(&metrics, partition);
                    if let Some(run) = &plan.options.counters {
                        run.merge_from(&mine);
                    }
                }
                Ok(None)
            })
            .filter_map(|r: DfResult<Option<RecordBatch>>| async move { r.transpose() }),
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.plan.schema),
            stream,
        )))
    }
}

fn input_error(file: &InputFile, message: impl fmt::Display) -> DataFusionError {
    DataFusionError::External(Box::new(Error::CorruptInput {
        key: file.info.location.to_string(),
        message: message.to_string(),
    }))
}

/// Min and max `ts` of a row group in nanoseconds, and its null count, when
/// the statistics give them exactly.
fn ts_stats(file: &InputFile, rg: usize) -> Option<(i64, i64, u64)> {
    let resolved = file.cols.get(Col::Ts)?;
    let per_unit: i64 = match (&resolved.source_type, file.cols.ts_unit) {
        (DataType::Timestamp(unit, _), _) => match unit {
            arrow::datatypes::TimeUnit::Second => 1_000_000_000,
            arrow::datatypes::TimeUnit::Millisecond => 1_000_000,
            arrow::datatypes::TimeUnit::Microsecond => 1_000,
            arrow::datatypes::TimeUnit::Nanosecond => 1,
        },
        (_, Some(u)) => match u {
            IntTsUnit::S => 1_000_000_000,
            IntTsUnit::Ms => 1_000_000,
            IntTsUnit::Us => 1_000,
            IntTsUnit::Ns => 1,
        },
        _ => return None,
    };
    let chunk = file.metadata.metadata().row_group(rg).column(resolved.leaf);
    match chunk.statistics()? {
        // INT96 timestamps and unsigned ints have no usable ordering here.
        Statistics::Int64(s) if resolved.source_type != DataType::UInt64 => {
            let (min, max) = (*s.min_opt()?, *s.max_opt()?);
            let nulls = s.null_count_opt()?;
            Some((
                min.saturating_mul(per_unit),
                max.saturating_mul(per_unit),
                nulls,
            ))
        }
        Statistics::Int32(s) if resolved.source_type.is_signed_integer() => {
            let (min, max) = (*s.min_opt()? as i64, *s.max_opt()? as i64);
            let nulls = s.null_count_opt()?;
            Some((
                min.saturating_mul(per_unit),
                max.saturating_mul(per_unit),
                nulls,
            ))
        }
        _ => None,
    }
}

/// Whether the statistics of a row group promise no nulls in `col`.
/// The largest token count a request may log (per token column): 10^9, a
/// thousand times today's largest context windows.
pub const MAX_TOKENS: i64 = 1_000_000_000;

/// Whether the statistics of a row group prove `col` at most `limit`.
fn max_at_most(file: &InputFile, rg: usize, col: Col, limit: i64) -> bool {
    use parquet::file::statistics::Statistics;
    let Some(resolved) = file.cols.get(col) else {
        return true;
    };
    let chunk = file.metadata.metadata().row_group(rg).column(resolved.leaf);
    // Unsigned columns keep their statistics in signed physical types: a
    // UINT_64 of 2^63 or more reads as negative, so compare as unsigned.
    let unsigned = matches!(
        resolved.source_type,
        DataType::UInt64 | DataType::UInt32 | DataType::UInt16 | DataType::UInt8
    );
    match chunk.statistics() {
        Some(Statistics::Int64(s)) if unsigned => {
            s.max_opt().is_some_and(|m| (*m as u64) <= limit as u64)
        }
        Some(Statistics::Int64(s)) => s.max_opt().is_some_and(|m| *m <= limit),
        Some(Statistics::Int32(s)) if unsigned => s
            .max_opt()
            .is_some_and(|m| u64::from(*m as u32) <= limit as u64),
        Some(Statistics::Int32(s)) => s.max_opt().is_some_and(|m| i64::from(*m) <= limit),
        _ => false,
    }
}

/// Whether the statistics of a row group prove that no `trace_id` is empty
/// or whitespace only: every value starts with the first byte of the
/// minimum or more and of the maximum or less, and both are printable,
/// non-space ASCII (as hex, UUID and W3C trace ids are).
fn no_blank_trace_ids(file: &InputFile, rg: usize) -> bool {
    use parquet::file::statistics::Statistics;
    let Some(resolved) = file.cols.get(Col::TraceId) else {
        return false;
    };
    let chunk = file.metadata.metadata().row_group(rg).column(resolved.leaf);
    let printable = |b: Option<&u8>| b.is_some_and(|b| (0x21..0x7f).contains(b));
    match chunk.statistics() {
        Some(Statistics::ByteArray(s)) => {
            s.min_opt().is_some_and(|m| printable(m.data().first()))
                && s.max_opt().is_some_and(|m| printable(m.data().first()))
        }
        _ => false,
    }
}

/// A trace id that is empty or whitespace only identifies nothing: like a
/// null, it would merge distinct requests into one.
fn is_blank(id: &str) -> bool {
    id.trim().is_empty()
}

fn no_nulls(file: &InputFile, rg: usize, col: Col) -> bool {
    let Some(resolved) = file.cols.get(col) else {
        return false;
    };
    let chunk = file.metadata.metadata().row_group(rg).column(resolved.leaf);
    chunk
        .statistics()
        .and_then(|s| s.null_count_opt())
        .is_some_and(|n| n == 0)
}

async fn open_unit(
    plan: Arc<ScanPlan>,
    input: Arc<DayInput>,
    unit: Unit,
    sink: Option<Arc<PartitionSink>>,
    counters: Option<Arc<ScanCounters>>,
) -> DfResult<BoxStream<'static, DfResult<RecordBatch>>> {
    let file = Arc::clone(input.files.get(unit.file).ok_or_else(|| {
        DataFusionError::Internal(format!(
            "scan unit names object #{} of {}",
            unit.file,
            input.files.len()
        ))
    })?);
    let row_groups = in_window(&file, &unit.row_groups, input.window, counters.as_deref());
    if row_groups.is_empty() {
        return Ok(futures::stream::empty().boxed());
    }
    let parquet_schema = file.metadata.metadata().file_metadata().schema_descr_ptr();
    let mut predicates: Vec<Box<dyn ArrowPredicate>> = Vec::new();
    // Where statistics settle the window, `ts` is not decoded for it (the
    // scans that do not read it, as the duplicate keys', skip it).
    let by_statistics = inside_window(&file, &row_groups, input.window);
    match &by_statistics {
        Some(leans) => {
            if let Some(c) = &counters {
                c.late_rows.fetch_add(leans.late, Ordering::Relaxed);
                c.early_rows.fetch_add(leans.early, Ordering::Relaxed);
            }
        }
        None => predicates.push(window_predicate(&file, input.window, counters.clone())),
    }
    predicates.extend(required_predicate(&file, &row_groups, counters.clone()));
    predicates.extend(token_predicate(&file, &row_groups, counters));
    if let Some(filter) = plan.options.keys.as_ref().filter(|k| k.inside) {
        predicates.push(key_predicate(&file, Arc::clone(&filter.keys)));
    }
    let leaves = output_leaves(&plan, &file.cols);

    let reader = ObjectReader::new(&input.stores, &file.info)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut builder =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, file.metadata.clone())
            .with_row_groups(row_groups)
            .with_projection(ProjectionMask::leaves(&parquet_schema, leaves))
            .with_batch_size(input.batch_size);
    if !predicates.is_empty() {
        builder = builder.with_row_filter(RowFilter::new(predicates));
    }
    let stream = builder.build().map_err(|e| input_error(&file, e))?;

    let plan2 = Arc::clone(&plan);
    let file2 = Arc::clone(&file);
    let window = by_statistics.is_some().then_some(input.window);
    Ok(stream
        .map(move |res| {
            let batch = res.map_err(|e| read_error(&file2, e))?;
            let candidates = match (&plan2.options.divert, &sink, &plan2.options.keys) {
                (Some(divert), Some(sink), _) => set_aside(&divert.keys, sink, &file2, &batch)?,
                (_, _, Some(filter)) if !filter.inside => candidates(&filter.keys, &file2, &batch)?,
                _ => None,
            };
            let out = project(
                &plan2.projection,
                &plan2.schema,
                &file2,
                &batch,
                candidates.as_ref(),
            )?;
            if let Some(window) = window {
                statistics_held(&file2, &out, window)?;
            }
            Ok(out)
        })
        .boxed())
}

/// Where the window was settled by statistics and the batch holds `ts`,
/// check that they told the truth: a row outside the window fails the
/// read (as a null its statistics deny does) instead of joining the day.
fn statistics_held(file: &InputFile, batch: &RecordBatch, window: DayWindow) -> DfResult<()> {
    let Some(ts) = batch.column_by_name(Col::Ts.name()) else {
        return Ok(());
    };
    let Some(ts) = ts.as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>() else {
        return Ok(());
    };
    let (min, max) = (
        arrow::compute::min(ts).unwrap_or(window.start_ns),
        arrow::compute::max(ts).unwrap_or(window.start_ns),
    );
    if ts.null_count() > 0 || min < window.start_ns || max >= window.end_ns {
        return Err(input_error(
            file,
            "column `ts` holds values its Parquet statistics deny (corrupt statistics)",
        ));
    }
    Ok(())
}

/// Predicate 4 (scans of the duplicate candidates only): the row's trace
/// key is in `keys`, decided on `trace_id` alone.
fn key_predicate(file: &InputFile, keys: Arc<KeySet>) -> Box<dyn ArrowPredicate> {
    let parquet_schema = file.metadata.metadata().file_metadata().schema_descr_ptr();
    let trace = file
        .cols
        .get(Col::TraceId)
        .expect("trace_id is required and was resolved")
        .clone();
    let ts_unit = file.cols.ts_unit;
    Box::new(ArrowPredicateFn::new(
        ProjectionMask::leaves(&parquet_schema, [trace.leaf]),
        move |batch: RecordBatch| {
            let ids = normalize(&batch, Col::TraceId, Some(&trace), ts_unit)
                .map_err(ArrowError::ComputeError)?;
            let hasher = trace_hasher();
            Ok(ids
                .as_string_view()
                .iter()
                .map(|v| Some(keys.contains(hasher.hash_one(v.unwrap_or_default().as_bytes()))))
                .collect())
        },
    ))
}

/// Which rows of `batch` have their trace key in `keys` (`None`: none).
fn candidates(
    keys: &KeySet,
    file: &InputFile,
    batch: &RecordBatch,
) -> DfResult<Option<BooleanArray>> {
    let cols = &file.cols;
    let ids = normalize(batch, Col::TraceId, cols.get(Col::TraceId), cols.ts_unit)
        .map_err(|e| input_error(file, e))?;
    let ids = ids.as_string_view();
    let hasher = trace_hasher();
    let marks = arrow::buffer::BooleanBuffer::collect_bool(ids.len(), |i| {
        let id: &[u8] = if ids.is_valid(i) {
            ids.value(i).as_bytes()
        } else {
            b""
        };
        keys.contains(hasher.hash_one(id))
    });
    Ok((marks.count_set_bits() > 0).then(|| BooleanArray::new(marks, None)))
}

/// The row groups of `candidates` that may hold rows of the day: those
/// wholly outside it (by statistics) are not read at all, their rows
/// counted as outside the window (or without a timestamp).
fn in_window(
    file: &InputFile,
    candidates: &[usize],
    window: DayWindow,
    counters: Option<&ScanCounters>,
) -> Vec<usize> {
    let mut row_groups = Vec::with_capacity(candidates.len());
    for &rg in candidates {
        match ts_stats(file, rg) {
            Some((min, max, nulls)) if max < window.start_ns || min >= window.end_ns => {
                if let Some(c) = counters {
                    let rows = file.metadata.metadata().row_group(rg).num_rows() as u64;
                    c.null_ts.fetch_add(nulls, Ordering::Relaxed);
                    c.outside_window
                        .fetch_add(rows - nulls.min(rows), Ordering::Relaxed);
                }
            }
            _ => row_groups.push(rg),
        }
    }
    row_groups
}

/// Rows of the day that lie before their partition's UTC day (late) or
/// after it (early).
#[derive(Debug, Default, PartialEq, Eq)]
struct Leans {
    late: u64,
    early: u64,
}

/// Whether the `ts` statistics of every one of `row_groups` put all its
/// rows inside the day window, none null, and each row group wholly
/// before, inside or after its partition's UTC day: then the window
/// predicate would keep every row and the late and early rows are known
/// without reading `ts`; they are returned. `None`: some row group needs
/// the predicate (as the late partition's, which hold rows of two days).
/// The statistics are trusted as they are for pruning row groups wholly
/// outside the window.
fn inside_window(file: &InputFile, row_groups: &[usize], window: DayWindow) -> Option<Leans> {
    let part_start = file
        .partition_date
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_nanos_opt()?;
    let part_end = part_start.checked_add(NANOS_PER_DAY)?;
    let mut leans = Leans::default();
    for &rg in row_groups {
        let (min, max, nulls) = ts_stats(file, rg)?;
        if nulls > 0 || min < window.start_ns || max >= window.end_ns {
            return None;
        }
        let rows = file.metadata.metadata().row_group(rg).num_rows() as u64;
        if max < part_start {
            leans.late += rows;
        } else if min >= part_end {
            leans.early += rows;
        } else if min < part_start || max >= part_end {
            return None;
        }
    }
    Some(leans)
}

/// Predicate 1: the day window, on `ts` alone; counts the rows outside it,
/// without a timestamp, and late or early for their partition.
fn window_predicate(
    file: &InputFile,
    window: DayWindow,
    counters: Option<Arc<ScanCounters>>,
) -> Box<dyn ArrowPredicate> {
    let parquet_schema = file.metadata.metadata().file_metadata().schema_descr_ptr();
    let ts = file
        .cols
        .get(Col::Ts)
        .expect("ts is required and was resolved")
        .clone();
    let ts_unit = file.cols.ts_unit;
    let part_start = file
        .partition_date
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp_nanos_opt().unwrap_or(i64::MIN))
        .unwrap_or(i64::MIN);
    Box::new(ArrowPredicateFn::new(
        ProjectionMask::leaves(&parquet_schema, [ts.leaf]),
        move |batch: RecordBatch| {
            let v = ts_nanos(&batch, &ts, ts_unit).map_err(ArrowError::ComputeError)?;
            let mut keep = Vec::with_capacity(v.len());
            let (mut nulls, mut outside, mut late, mut early) = (0u64, 0u64, 0u64, 0u64);
            for i in 0..v.len() {
                if v.is_null(i) {
                    nulls += 1;
                    keep.push(false);
                    continue;
                }
                let t = v.value(i);
                let inside = t >= window.start_ns && t < window.end_ns;
                if inside {
                    if t < part_start {
                        late += 1;
                    } else if t >= part_start.saturating_add(NANOS_PER_DAY) {
                        early += 1;
                    }
                } else {
                    outside += 1;
                }
                keep.push(inside);
            }
            if let Some(c) = &counters {
                c.null_ts.fetch_add(nulls, Ordering::Relaxed);
                c.outside_window.fetch_add(outside, Ordering::Relaxed);
                c.late_rows.fetch_add(late, Ordering::Relaxed);
                c.early_rows.fetch_add(early, Ordering::Relaxed);
            }
            Ok(BooleanArray::from(keep))
        },
    ))
}

/// Predicate 2: required columns non-null (and `trace_id` not blank), for
/// those whose statistics admit nulls; each row set aside is counted with an
/// example naming the object.
fn required_predicate(
    file: &InputFile,
    row_groups: &[usize],
    counters: Option<Arc<ScanCounters>>,
) -> Option<Box<dyn ArrowPredicate>> {
    let cols = &file.cols;
    let ts_unit = cols.ts_unit;
    let nullable: Vec<Col> = Col::ALL
        .iter()
        .copied()
        // A derived `cache_hit` is never null: nothing to check.
        .filter(|&c| c.required() && c != Col::Ts && cols.get(c).is_some())
        .filter(|&c| {
            !row_groups.iter().all(|&rg| {
                no_nulls(file, rg, c) && (c != Col::TraceId || no_blank_trace_ids(file, rg))
            })
        })
        .collect();
    if nullable.is_empty() {
        return None;
    }
    {
        let checked: Vec<(Col, super::schema::Resolved)> = nullable
            .iter()
            .map(|&c| {
                (
                    c,
                    cols.get(c).expect("required columns are resolved").clone(),
                )
            })
            .collect();
        let leaves: Vec<usize> = checked.iter().map(|(_, r)| r.leaf).collect();
        let key = file.info.location.to_string();
        let parquet_schema = file.metadata.metadata().file_metadata().schema_descr_ptr();
        Some(Box::new(ArrowPredicateFn::new(
            ProjectionMask::leaves(&parquet_schema, leaves),
            move |batch: RecordBatch| {
                let mut keep = vec![true; batch.num_rows()];
                for (col, resolved) in &checked {
                    let arr = normalize(&batch, *col, Some(resolved), ts_unit)
                        .map_err(ArrowError::ComputeError)?;
                    if *col == Col::TraceId {
                        let ids = arr.as_string_view();
                        for (i, k) in keep.iter_mut().enumerate() {
                            if *k && (ids.is_null(i) || is_blank(ids.value(i))) {
                                *k = false;
                                if let Some(c) = &counters {
                                    let what = if ids.is_null(i) {
                                        "null"
                                    } else {
                                        "empty or blank"
                                    };
                                    c.reject(col.name(), || {
                                        format!("{key} ({what} `trace_id` in a row of the day)")
                                    });
                                }
                            }
                        }
                        continue;
                    }
                    if arr.null_count() == 0 {
                        continue;
                    }
                    for (i, k) in keep.iter_mut().enumerate() {
                        if *k && arr.is_null(i) {
                            *k = false;
                            if let Some(c) = &counters {
                                c.reject(col.name(), || {
                                    format!("{key} (null `{}` in a row of the day)", col.name())
                                });
                            }
                        }
                    }
                }
                Ok(BooleanArray::from(keep))
            },
        )))
    }
}

/// Predicate 3: token counts within [`MAX_TOKENS`], where statistics allow
/// more (the integer columns are the token counts).
fn token_predicate(
    file: &InputFile,
    row_groups: &[usize],
    counters: Option<Arc<ScanCounters>>,
) -> Option<Box<dyn ArrowPredicate>> {
    let cols = &file.cols;
    let ts_unit = cols.ts_unit;
    let unbounded: Vec<(Col, super::schema::Resolved)> = Col::ALL
        .iter()
        .copied()
        .filter(|c| c.kind() == super::schema::Kind::Int)
        .filter(|&c| {
            !row_groups
                .iter()
                .all(|&rg| max_at_most(file, rg, c, MAX_TOKENS))
        })
        .filter_map(|c| cols.get(c).map(|r| (c, r.clone())))
        .collect();
    if unbounded.is_empty() {
        return None;
    }
    {
        let leaves: Vec<usize> = unbounded.iter().map(|(_, r)| r.leaf).collect();
        let key = file.info.location.to_string();
        let parquet_schema = file.metadata.metadata().file_metadata().schema_descr_ptr();
        Some(Box::new(ArrowPredicateFn::new(
            ProjectionMask::leaves(&parquet_schema, leaves),
            move |batch: RecordBatch| {
                let mut keep = vec![true; batch.num_rows()];
                for (col, resolved) in &unbounded {
                    let arr = normalize(&batch, *col, Some(resolved), ts_unit)
                        .map_err(ArrowError::ComputeError)?;
                    let arr = arr.as_primitive::<arrow::datatypes::Int64Type>();
                    for (i, k) in keep.iter_mut().enumerate() {
                        if *k && arr.is_valid(i) && arr.value(i) > MAX_TOKENS {
                            *k = false;
                            if let Some(c) = &counters {
                                let v = arr.value(i);
                                c.reject(col.name(), || {
                                    format!(
                                        "{key} (`{}` = {v} in a row of the day; at most {MAX_TOKENS})",
                                        col.name()
                                    )
                                });
                            }
                        }
                    }
                }
                Ok(BooleanArray::from(keep))
            },
        )))
    }
}

/// The Parquet leaves to decode for the scan's output (and, when the scan
/// sets duplicate candidates aside, for the rows it writes).
fn output_leaves(plan: &ScanPlan, cols: &super::schema::FileColumns) -> Vec<usize> {
    let mut leaves: Vec<usize> = Vec::new();
    let mut need_trace = false;
    for &i in &plan.projection {
        if i < POS_INDEX {
            leaves.extend(cols.leaves_of(Col::ALL[i]));
        } else if i == TRACE_KEY_INDEX {
            need_trace = true;
        }
    }
    let drops_keys = plan.options.keys.as_ref().is_some_and(|k| !k.inside);
    if need_trace || plan.options.divert.is_some() || drops_keys {
        leaves.push(cols.get(Col::TraceId).expect("trace_id is required").leaf);
    }
    if plan.options.divert.is_some() {
        for &i in &dup_rows_indices() {
            if let Some(&c) = Col::ALL.get(i) {
                leaves.extend(cols.leaves_of(c));
            }
        }
    }
    leaves.sort_unstable();
    leaves.dedup();
    leaves
}

fn read_error(file: &InputFile, e: ParquetError) -> DataFusionError {
    match storage_cause(e) {
        Ok(storage) => DataFusionError::External(Box::new(storage)),
        Err(other) => input_error(file, other),
    }
}

/// The row's `_pos` values of a decoded batch.
fn positions(file: &InputFile, batch: &RecordBatch) -> DfResult<Int64Array> {
    let rn = batch
        .column_by_name(ROW_NUMBER)
        .ok_or_else(|| input_error(file, "row numbers missing from decoded batch"))?;
    let rn = rn.as_primitive::<arrow::datatypes::Int64Type>();
    let high = (file.ordinal as i64) << POS_ROW_BITS;
    Ok(Int64Array::from_iter_values(
        rn.values().iter().map(|r| high | r),
    ))
}

/// Send the rows whose trace key is a candidate to the sink, and say which
/// they are (`None`: none). The batch goes on whole, the candidates marked
/// (`_candidate`): dropping them would copy every batch of the day.
fn set_aside(
    keys: &KeySet,
    sink: &PartitionSink,
    file: &InputFile,
    batch: &RecordBatch,
) -> DfResult<Option<BooleanArray>> {
    let Some(candidate) = candidates(keys, file, batch)? else {
        return Ok(None);
    };
    let aside = arrow::compute::filter_record_batch(batch, &candidate)?;
    let aside = project(&dup_rows_indices(), &dup_rows_schema(), file, &aside, None)?;
    // A filtered string view still points into the whole decoded batch's
    // buffers; compact it, or each few-row batch would carry them all.
    let compact: Vec<ArrayRef> = aside
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => Arc::new(c.as_string_view().gc()) as ArrayRef,
            _ => Arc::clone(c),
        })
        .collect();
    sink.write(&RecordBatch::try_new(aside.schema(), compact)?)?;
    Ok(Some(candidate))
}

/// Build an output batch of `schema` (the request-schema columns at
/// `projection`, normalized) from a decoded one; `_candidate` is
/// `candidates`, or false throughout.
fn project(
    projection: &[usize],
    schema: &SchemaRef,
    file: &InputFile,
    batch: &RecordBatch,
    candidates: Option<&BooleanArray>,
) -> DfResult<RecordBatch> {
    let cols = &file.cols;
    let mut out: Vec<ArrayRef> = Vec::with_capacity(projection.len());
    for &i in projection {
        let arr: ArrayRef = if i < POS_INDEX {
            let col = Col::ALL[i];
            let arr = normalize_col(batch, col, cols).map_err(|e| input_error(file, e))?;
            if col.required() && arr.null_count() > 0 {
                return Err(input_error(
                    file,
                    format!(
                        "column `{}` holds nulls its Parquet statistics deny (corrupt statistics)",
                        col.name()
                    ),
                ));
            }
            arr
        } else if i == POS_INDEX {
            Arc::new(positions(file, batch)?)
        } else if i == CANDIDATE_INDEX {
            match candidates {
                Some(c) => Arc::new(c.clone()),
                None => Arc::new(BooleanArray::new(
                    arrow::buffer::BooleanBuffer::new_unset(batch.num_rows()),
                    None,
                )),
            }
        } else {
            debug_assert_eq!(i, TRACE_KEY_INDEX);
            let ids = normalize(batch, Col::TraceId, cols.get(Col::TraceId), cols.ts_unit)
                .map_err(|e| input_error(file, e))?;
            let hasher = trace_hasher();
            let ids = ids.as_string_view();
            Arc::new(UInt64Array::from_iter_values(
                ids.iter()
                    .map(|v| hasher.hash_one(v.unwrap_or_default().as_bytes())),
            ))
        };
        out.push(arr);
    }
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        out,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bitmap in front of the set never hides a member, and the set
    /// behind it refuses what the bitmap lets through.
    #[test]
    fn a_key_set_holds_exactly_its_keys() {
        let members: Vec<u64> = (0..27_000u64)
            .map(|i| trace_key(&format!("t-{i}")))
            .collect();
        let set: KeySet = members.iter().copied().collect();
        assert_eq!(set.len(), members.len());
        assert!(members.iter().all(|&k| set.contains(k)));
        let others: Vec<u64> = (0..200_000u64)
            .map(|i| trace_key(&format!("o-{i}")))
            .collect();
        assert!(!others.iter().any(|&k| set.contains(k)));
        // ~1/32 of non-members pass the bitmap; only the set stops them
        let through = others
            .iter()
            .filter(|&&k| {
                let s = set.slot(k);
                set.bits[s / 64] & (1 << (s % 64)) != 0
            })
            .count();
        assert!((2_000..12_000).contains(&through), "{through}");
        // small keys and the empty set
        let small: KeySet = [1u64, 2, 3].into_iter().collect();
        assert!(small.contains(2) && !small.contains(4) && !small.contains(0));
        assert!(!KeySet::default().contains(0) && KeySet::default().is_empty());
        let mut listed: Vec<u64> = small.iter().collect();
        listed.sort_unstable();
        assert_eq!(listed, [1, 2, 3]);
    }

    /// Candidate rows of [`dup_rows_schema`] with these trace ids: the
    /// other columns null where they may be, the row number where not.
    fn candidates(ids: &[String]) -> RecordBatch {
        use arrow::array::{ArrayRef, new_null_array};
        let schema = dup_rows_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == "trace_id" {
                    Arc::new(arrow::array::StringViewArray::from_iter_values(ids)) as ArrayRef
                } else if f.is_nullable() {
                    new_null_array(f.data_type(), ids.len())
                } else {
                    let n = Int64Array::from_iter_values(0..ids.len() as i64);
                    arrow::compute::cast(&n, f.data_type()).unwrap()
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// Candidates written in buckets: every copy of a trace id in one
    /// bucket, every row in some bucket, empty buckets without a folder.
    #[tokio::test]
    async fn the_divert_sink_puts_every_copy_of_a_trace_id_in_one_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..400).map(|i| format!("trace-{}", i % 100)).collect();
        let batch = candidates(&ids);
        assert_eq!(DivertSink::buckets_for(100, 30), 4);
        assert_eq!(DivertSink::buckets_for(0, 30), 1);
        assert_eq!(DivertSink::buckets_for(1_000_000, 1), MAX_BUCKETS);
        let sink = Arc::new(DivertSink::new(dir.path().join("aside"), 4));
        let part = PartitionSink::new(Arc::clone(&sink));
        part.write(&batch).unwrap();
        part.write(&batch.slice(0, 10)).unwrap();
        part.finish().unwrap();
        assert_eq!(sink.rows(), 410);
        let dirs = sink.bucket_dirs();
        assert!(dirs.len() > 1, "{dirs:?}");
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut rows = 0;
        for (b, d) in dirs.iter().enumerate() {
            for f in std::fs::read_dir(d).unwrap() {
                let file = std::fs::File::open(f.unwrap().path()).unwrap();
                for batch in arrow::ipc::reader::FileReader::try_new(file, None).unwrap() {
                    let batch = batch.unwrap();
                    rows += batch.num_rows();
                    let col = batch.column_by_name("trace_id").unwrap().as_string_view();
                    for id in col.iter().flatten() {
                        let bucket = *seen.entry(id.to_string()).or_insert(b);
                        assert_eq!(bucket, b, "{id} in two buckets");
                    }
                }
            }
        }
        assert_eq!(rows, 410);
        assert_eq!(seen.len(), 100);
    }

    /// Candidates arrive a few rows per scan batch; a bucket's file holds
    /// them as whole batches of [`DIVERT_BATCH_ROWS`] (the last one
    /// short), in arrival order, with compact string buffers: read back,
    /// a bucket is a few batches, not one per scan batch.
    #[tokio::test]
    async fn few_row_writes_reach_a_bucket_file_as_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        // 5,000 rows in 1,000 writes of 5 rows each, slices of a bigger
        // batch whose string buffer every slice still points into.
        let ids: Vec<String> = (0..5_000)
            .map(|i| format!("trace-id-{i:06}-of-a-long-run"))
            .collect();
        let batch = candidates(&ids);
        let sink = Arc::new(DivertSink::new(dir.path().join("aside"), 1));
        let part = PartitionSink::new(Arc::clone(&sink));
        for start in (0..ids.len()).step_by(5) {
            part.write(&batch.slice(start, 5)).unwrap();
        }
        part.finish().unwrap();
        assert_eq!(sink.rows(), 5_000);
        let dirs = sink.bucket_dirs();
        assert_eq!(dirs.len(), 1);
        let files: Vec<_> = std::fs::read_dir(&dirs[0]).unwrap().collect();
        assert_eq!(files.len(), 1);
        let path = files[0].as_ref().unwrap().path();
        let sizes: Vec<usize> =
            arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&path).unwrap(), None)
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .collect();
        assert_eq!(sizes, vec![2048, 2048, 904]);
        let read: Vec<String> =
            arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&path).unwrap(), None)
                .unwrap()
                .flat_map(|b| {
                    let b = b.unwrap();
                    let col = b.column_by_name("trace_id").unwrap().as_string_view();
                    col.iter()
                        .map(|v| v.unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
        assert_eq!(read, ids, "rows in arrival order");
        // Each written slice pointed into the whole 5,000-id buffer
        // (140 KB): copied compact, a batch's ids take their own bytes.
        for b in arrow::ipc::reader::FileReader::try_new(std::fs::File::open(&path).unwrap(), None)
            .unwrap()
        {
            let b = b.unwrap();
            let col = b.column_by_name("trace_id").unwrap().as_string_view();
            let bytes: usize = col.data_buffers().iter().map(|d| d.len()).sum();
            let own = b.num_rows() * ids[0].len();
            assert!(
                bytes <= own,
                "{bytes} bytes of ids for {own} of {} rows",
                b.num_rows()
            );
        }
    }

    /// The UTC day of `date`.
    fn utc_day(date: NaiveDate) -> DayWindow {
        let start = date.and_hms_opt(0, 0, 0).unwrap().and_utc();
        DayWindow {
            start_ns: start.timestamp_nanos_opt().unwrap(),
            end_ns: (start + chrono::Duration::days(1))
                .timestamp_nanos_opt()
                .unwrap(),
        }
    }

    /// The day input of the lake under `dir` (its `requests` prefix).
    async fn open_day(dir: &std::path::Path, dates: &[NaiveDate], window: DayWindow) -> DayInput {
        let requests = Location::parse(dir.join("requests").to_str().unwrap(), None).unwrap();
        DayInput::open(
            Arc::new(Stores::new(Default::default())),
            &requests,
            dates,
            &ColumnMapping::default(),
            window,
        )
        .await
        .unwrap()
    }

    /// The window is settled by statistics only where every row group lies
    /// wholly inside it and wholly on one side of its partition's day; the
    /// late and early rows are then counted from the row counts.
    #[tokio::test]
    async fn statistics_settle_the_window_only_for_row_groups_wholly_inside() {
        let dir = tempfile::tempdir().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let next = date.succ_opt().unwrap();
        let shape = crate::synth::DayShape {
            duplicate_share: 0.0,
            conflict_share: 0.0,
            late_share: 0.1,
        };
        let day = crate::synth::generate_day(date, 2_000, shape, 11);
        let following = crate::synth::generate_day(next, 500, shape, 12);
        assert!(!day.late.is_empty());
        let write = |date: NaiveDate, name: &str, rows: &[crate::synth::LogRow]| {
            let part = dir.path().join("requests").join(partition_dir(date));
            std::fs::create_dir_all(&part).unwrap();
            let bytes = crate::synth::to_parquet(rows, 400).unwrap();
            std::fs::write(part.join(name), bytes).unwrap();
        };
        write(date, "a-on-time.parquet", &day.on_time);
        // The next partition: the day's late rows alone, then mixed with
        // rows of the next day in the same row groups.
        write(next, "b-late.parquet", &day.late);
        // The partition before: rows of the day written early (ahead of
        // their UTC day's partition), all of them.
        let before = date.pred_opt().unwrap();
        write(before, "d-early.parquet", &day.on_time[..900]);
        let mixed: Vec<_> = day.late.iter().chain(&following.on_time).cloned().collect();
        write(next, "c-mixed.parquet", &mixed);
        let window = utc_day(date);
        let input = open_day(dir.path(), &[before, date, next], window).await;
        let file = |name: &str| {
            input
                .files
                .iter()
                .find(|f| f.info.location.to_string().ends_with(name))
                .unwrap()
        };
        // The row groups a scan reads: those wholly outside are pruned first.
        let all = |f: &InputFile| {
            let every: Vec<usize> = (0..f.metadata.metadata().num_row_groups()).collect();
            in_window(f, &every, window, None)
        };
        let on_time = file("a-on-time.parquet");
        assert_eq!(
            inside_window(on_time, &all(on_time), window),
            Some(Leans::default())
        );
        let late = file("b-late.parquet");
        assert_eq!(
            inside_window(late, &all(late), window),
            Some(Leans {
                late: day.late.len() as u64,
                early: 0
            })
        );
        // One row group holds the last late rows and the next day's first.
        assert_ne!(day.late.len() % 400, 0);
        let mixed = file("c-mixed.parquet");
        assert_eq!(
            all(mixed).len(),
            day.late.len().div_ceil(400),
            "the next day's row groups are pruned, the straddling one kept"
        );
        assert_eq!(inside_window(mixed, &all(mixed), window), None);
        let late_only = &all(mixed)[..day.late.len() / 400];
        assert_eq!(
            inside_window(mixed, late_only, window),
            Some(Leans {
                late: (late_only.len() * 400) as u64,
                early: 0
            })
        );
        // A window that cuts the on-time rows needs the predicate.
        let half = DayWindow {
            start_ns: window.start_ns + 12 * 3_600_000_000_000,
            end_ns: window.end_ns,
        };
        assert_eq!(inside_window(on_time, &all(on_time), half), None);
        let early = file("d-early.parquet");
        assert_eq!(
            inside_window(early, &all(early), window),
            Some(Leans {
                late: 0,
                early: 900
            })
        );
    }

    /// A batch whose `ts` leaves the window its statistics promised fails,
    /// naming the object; one inside passes.
    #[test]
    fn a_ts_its_statistics_deny_fails_the_read() {
        use arrow::array::TimestampNanosecondArray;
        let window = utc_day(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        let schema = Arc::new(request_schema().project(&[0]).unwrap());
        let batch = |ts: Vec<i64>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(
                    TimestampNanosecondArray::from(ts).with_timezone("UTC"),
                )],
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let day = crate::synth::generate_day(date, 50, crate::synth::DayShape::default(), 5);
        let part = dir.path().join("requests").join(partition_dir(date));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(
            part.join("x.parquet"),
            crate::synth::to_parquet(&day.on_time, 50).unwrap(),
        )
        .unwrap();
        let input =
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(open_day(dir.path(), &[date], window));
        let file = &input.files[0];
        statistics_held(
            file,
            &batch(vec![window.start_ns, window.end_ns - 1]),
            window,
        )
        .unwrap();
        let err = statistics_held(file, &batch(vec![window.start_ns, window.end_ns]), window)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.parquet") && err.contains("corrupt statistics"),
            "{err}"
        );
        let err = statistics_held(file, &batch(vec![window.start_ns - 1]), window)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ts`"), "{err}");
    }

    /// One big object is read by every partition, row group by row group:
    /// a day in one object uses every core, not one.
    #[tokio::test]
    async fn the_row_groups_of_one_object_are_spread_over_every_partition() {
        let dir = tempfile::tempdir().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let shape = crate::synth::DayShape {
            duplicate_share: 0.0,
            conflict_share: 0.0,
            late_share: 0.0,
        };
        let day = crate::synth::generate_day(date, 4_000, shape, 7);
        let rows = day.on_time.len();
        // 500 rows per row group: 8 of them, in one object.
        let bytes = crate::synth::to_parquet(&day.on_time, 500).unwrap();
        let part = dir.path().join("requests").join(partition_dir(date));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("part-0.parquet"), bytes).unwrap();

        let window = utc_day(date);
        let input = open_day(dir.path(), &[date], window).await;
        assert_eq!(input.files.len(), 1);
        let groups = input.files[0].metadata.metadata().num_row_groups();
        assert_eq!(groups, rows.div_ceil(500));

        let spread = assign_units(&input, 2);
        assert_eq!(spread.len(), 2);
        let mut seen: Vec<usize> = Vec::new();
        for units in &spread {
            // Each partition opens the object once, for its share of groups.
            assert_eq!(units.len(), 1, "{spread:?}");
            assert!(units[0].row_groups.len() >= groups / 2 - 1, "{spread:?}");
            seen.extend(&units[0].row_groups);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..groups).collect::<Vec<_>>(),
            "every row group once"
        );
        // Deterministic: the same spread every time.
        assert_eq!(
            format!("{:?}", assign_units(&input, 2)),
            format!("{spread:?}")
        );
    }

    /// A coordinator's split: every row group in exactly one task, each
    /// task with as many partitions as the scan; what travels to a worker
    /// decodes to the same units, keys and options, and a scan that writes
    /// rows aside is neither split nor sent.
    #[tokio::test]
    async fn a_scan_splits_into_disjoint_tasks_that_travel_intact() {
        let dir = tempfile::tempdir().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let day = crate::synth::generate_day(date, 3_000, crate::synth::DayShape::default(), 3);
        let part = dir.path().join("requests").join(partition_dir(date));
        std::fs::create_dir_all(&part).unwrap();
        for (i, chunk) in day.on_time.chunks(1_000).enumerate() {
            let bytes = crate::synth::to_parquet(chunk, 300).unwrap();
            std::fs::write(part.join(format!("part-{i}.parquet")), bytes).unwrap();
        }
        let requests =
            Location::parse(dir.path().join("requests").to_str().unwrap(), None).unwrap();
        let window = utc_day(date);
        let stores = Arc::new(Stores::new(Default::default()));
        let input = Arc::new(
            DayInput::open(
                Arc::clone(&stores),
                &requests,
                &[date],
                &ColumnMapping::default(),
                window,
            )
            .await
            .unwrap(),
        );
        let groups: usize = input
            .files
            .iter()
            .map(|f| f.metadata.metadata().num_row_groups())
            .sum();
        assert!(groups >= 9, "{groups} row groups");
        let keys: KeySet = [3u64, 1, 2].into_iter().collect();
        let plan = Arc::new(ScanPlan {
            source: Source::Open(Arc::clone(&input)),
            projection: vec![0, 1, POS_INDEX],
            schema: Arc::new(request_schema().project(&[0, 1, POS_INDEX]).unwrap()),
            options: ScanOptions {
                counters: Some(Arc::new(ScanCounters::default())),
                divert: None,
                keys: Some(KeyFilter {
                    keys: Arc::new(keys),
                    inside: false,
                }),
            },
        });
        let scan = DayScanExec::new(Arc::clone(&plan), assign_units(&input, 2));
        assert!(scan.distributable());
        assert_eq!(scan.row_groups(), groups);
        let tasks = scan.split(3).unwrap();
        assert_eq!(tasks.len(), 3);
        let mut seen: Vec<(u32, usize)> = Vec::new();
        for task in &tasks {
            assert_eq!(task.partitions().len(), 2);
            assert!(task.row_groups() >= 3, "balanced: {:?}", task.partitions());
            for u in task.partitions().iter().flatten() {
                for &rg in &u.row_groups {
                    seen.push((input.files[u.file].ordinal, rg));
                }
            }
        }
        seen.sort_unstable();
        let all: Vec<(u32, usize)> = input
            .files
            .iter()
            .flat_map(|f| {
                (0..f.metadata.metadata().num_row_groups()).map(move |rg| (f.ordinal, rg))
            })
            .collect();
        assert_eq!(seen, all, "every row group in exactly one task");

        for task in &tasks {
            let mut buf = Vec::new();
            super::super::wire::encode(task, &mut buf).unwrap();
            let mut again = Vec::new();
            super::super::wire::encode(task, &mut again).unwrap();
            assert_eq!(buf, again, "the same plan encodes to the same bytes");
            let back = super::super::wire::decode(&buf, Arc::clone(&stores)).unwrap();
            let Source::Remote(remote) = &back.plan().source else {
                panic!("decoded as remote");
            };
            let opened = remote.open().await.unwrap();
            // Units name the same objects and row groups as before.
            let named = |exec: &DayScanExec,
                         files: &[Arc<InputFile>]|
             -> Vec<Vec<(String, u32, Vec<usize>)>> {
                exec.partitions()
                    .iter()
                    .map(|units| {
                        units
                            .iter()
                            .map(|u| {
                                let f = &files[u.file];
                                (f.info.location.to_string(), f.ordinal, u.row_groups.clone())
                            })
                            .collect()
                    })
                    .collect()
            };
            assert_eq!(named(&back, opened.files()), named(task, input.files()));
            assert_eq!(back.plan().projection, plan.projection);
            assert_eq!(back.plan().schema, plan.schema);
            assert!(back.plan().options.counters.is_some());
            let k = back.plan().options.keys.as_ref().unwrap();
            assert!(!k.inside);
            assert_eq!(*k.keys, [1u64, 2, 3].into_iter().collect::<KeySet>());
            assert_eq!(opened.window(), window);
            assert!(!back.distributable(), "a decoded scan is not sent on");
        }
        assert!(
            super::super::wire::decode(b"TLSCAN9\0junk", Arc::clone(&stores)).is_err(),
            "another format version is refused"
        );

        // Rows set aside to this machine's disk: not split, not sent.
        let sink = Arc::new(DivertSink::new(dir.path().join("aside"), 1));
        let local = DayScanExec::new(
            Arc::new(ScanPlan {
                source: Source::Open(Arc::clone(&input)),
                projection: vec![0],
                schema: Arc::new(request_schema().project(&[0]).unwrap()),
                options: ScanOptions {
                    divert: Some(Divert {
                        keys: Arc::new(KeySet::default()),
                        sink,
                    }),
                    ..Default::default()
                },
            }),
            assign_units(&input, 2),
        );
        assert!(!local.distributable());
        assert!(local.split(2).is_none());
        let err = super::super::wire::encode(&local, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("cannot run on another node"),
            "{err}"
        );
    }
}
