//! The normalized request schema (SPEC 1.1) and the mapping from logged columns.
//!
//! Real logs name and type their columns their own way. A [`ColumnMapping`]
//! (a preset plus per-column overrides from the config) says where each
//! normalized column comes from; [`resolve`] checks one Parquet file against it
//! and reports every missing or mistyped column at once, naming the object, the
//! column, and the expected and found types. [`normalize`] turns a decoded batch
//! into the normalized schema. Pure logic: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StructArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::schema::types::SchemaDescriptor;
use serde::{Deserialize, Serialize};

/// A column of the normalized request table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Col {
    Ts,
    TraceId,
    Dept,
    Project,
    Task,
    Provider,
    Model,
    Route,
    Region,
    LatencyMs,
    Error,
    CacheHit,
    CitationRate,
    HumanReviewed,
    HumanApproved,
    InputTokens,
    OutputTokens,
    TotalTokens,
    CacheReadInputTokens,
    CacheCreationInputTokens,
    ReasoningOutputTokens,
    CostPer1k,
    CostActual,
    Currency,
}

/// The kind of values a column holds; decides which source types are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Timestamp,
    Text,
    Bool,
    Int,
    Real,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Timestamp => "a timestamp (ms, us or ns; or an integer with columns.ts_unit)",
            Kind::Text => "a string",
            Kind::Bool => "a boolean",
            Kind::Int => "an integer",
            Kind::Real => "a number",
        }
    }
}

impl Col {
    pub const ALL: [Col; 24] = [
        Col::Ts,
        Col::TraceId,
        Col::Dept,
        Col::Project,
        Col::Task,
        Col::Provider,
        Col::Model,
        Col::Route,
        Col::Region,
        Col::LatencyMs,
        Col::Error,
        Col::CacheHit,
        Col::CitationRate,
        Col::HumanReviewed,
        Col::HumanApproved,
        Col::InputTokens,
        Col::OutputTokens,
        Col::TotalTokens,
        Col::CacheReadInputTokens,
        Col::CacheCreationInputTokens,
        Col::ReasoningOutputTokens,
        Col::CostPer1k,
        Col::CostActual,
        Col::Currency,
    ];

    /// The name in the normalized table (and in SQL).
    pub fn name(self) -> &'static str {
        match self {
            Col::Ts => "ts",
            Col::TraceId => "trace_id",
            Col::Dept => "dept",
            Col::Project => "project",
            Col::Task => "task",
            Col::Provider => "provider",
            Col::Model => "model",
            Col::Route => "route",
            Col::Region => "region",
            Col::LatencyMs => "latency_ms",
            Col::Error => "error",
            Col::CacheHit => "cache_hit",
            Col::CitationRate => "citation_rate",
            Col::HumanReviewed => "human_reviewed",
            Col::HumanApproved => "human_approved",
            Col::InputTokens => "input_tokens",
            Col::OutputTokens => "output_tokens",
            Col::TotalTokens => "total_tokens",
            Col::CacheReadInputTokens => "cache_read_input_tokens",
            Col::CacheCreationInputTokens => "cache_creation_input_tokens",
            Col::ReasoningOutputTokens => "reasoning_output_tokens",
            Col::CostPer1k => "cost_per_1k",
            Col::CostActual => "cost_actual",
            Col::Currency => "currency",
        }
    }

    pub fn from_name(name: &str) -> Option<Col> {
        Col::ALL.iter().copied().find(|c| c.name() == name)
    }

    pub fn kind(self) -> Kind {
        match self {
            Col::Ts => Kind::Timestamp,
            Col::TraceId
            | Col::Dept
            | Col::Project
            | Col::Task
            | Col::Provider
            | Col::Model
            | Col::Route
            | Col::Region
            | Col::Currency => Kind::Text,
            Col::Error | Col::CacheHit | Col::HumanReviewed | Col::HumanApproved => Kind::Bool,
            Col::InputTokens
            | Col::OutputTokens
            | Col::TotalTokens
            | Col::CacheReadInputTokens
            | Col::CacheCreationInputTokens
            | Col::ReasoningOutputTokens => Kind::Int,
            Col::LatencyMs | Col::CitationRate | Col::CostPer1k | Col::CostActual => Kind::Real,
        }
    }

    /// Required columns must exist in every file and be non-null in every row
    /// (SPEC 1.1 "null? no"); a row with a null in one is rejected and counted.
    pub fn required(self) -> bool {
        matches!(
            self,
            Col::Ts
                | Col::TraceId
                | Col::Provider
                | Col::Model
                | Col::Error
                | Col::CacheHit
                | Col::InputTokens
                | Col::OutputTokens
        )
    }

    /// Whether a metric reads this column. Duplicates are compared on these
    /// columns (SPEC 2: "identical in every column the job reads").
    pub fn read_by_metrics(self) -> bool {
        !matches!(
            self,
            Col::TraceId | Col::Route | Col::Region | Col::CostPer1k | Col::ReasoningOutputTokens
        )
    }

    fn data_type(self) -> DataType {
        match self.kind() {
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            Kind::Text => DataType::Utf8View,
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Real => DataType::Float64,
        }
    }
}

impl fmt::Display for Col {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Virtual column: the row's place in the day's input, `file ordinal << 36 | row
/// number in file`. Files are ordered by object key, so ordering by `_pos` is
/// ordering by (object key, row position): the last de-duplication tie-break.
pub const POS: &str = "_pos";
/// Virtual column: a 64-bit hash of `trace_id`, the cheap key that finds
/// duplicate candidates (collisions are resolved on the full `trace_id`).
pub const TRACE_KEY: &str = "_trace_key";
/// Bits of `_pos` that hold the row number within a file.
pub const POS_ROW_BITS: u32 = 36;
/// Virtual column: true where the scan found the row's trace key among the
/// duplicate candidates (a scan that sets candidates aside, or keeps them
/// out by key, marks them instead of copying every batch without them);
/// false in every other scan. `sql/day_sums.sql`, the only query over such
/// a scan, counts the rows where it is false.
pub const CANDIDATE: &str = "_candidate";

/// The normalized request table: every [`Col`] in order, then `_pos`,
/// `_trace_key` and `_candidate`.
pub fn request_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let mut fields: Vec<Field> = Col::ALL
            .iter()
            .map(|c| Field::new(c.name(), c.data_type(), !c.required()))
            .collect();
        fields.push(Field::new(POS, DataType::Int64, false));
        fields.push(Field::new(TRACE_KEY, DataType::UInt64, false));
        fields.push(Field::new(CANDIDATE, DataType::Boolean, false));
        Arc::new(Schema::new(fields))
    });
    Arc::clone(&SCHEMA)
}

/// Index of `_pos` in [`request_schema`].
pub const POS_INDEX: usize = Col::ALL.len();
/// Index of `_trace_key` in [`request_schema`].
pub const TRACE_KEY_INDEX: usize = Col::ALL.len() + 1;
/// Index of `_candidate` in [`request_schema`].
pub const CANDIDATE_INDEX: usize = Col::ALL.len() + 2;

/// Unit of an integer timestamp column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntTsUnit {
    S,
    Ms,
    Us,
    Ns,
}

impl IntTsUnit {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "s" => Some(IntTsUnit::S),
            "ms" => Some(IntTsUnit::Ms),
            "us" => Some(IntTsUnit::Us),
            "ns" => Some(IntTsUnit::Ns),
            _ => None,
        }
    }
    fn nanos(self) -> i64 {
        match self {
            IntTsUnit::S => 1_000_000_000,
            IntTsUnit::Ms => 1_000_000,
            IntTsUnit::Us => 1_000,
            IntTsUnit::Ns => 1,
        }
    }
}

/// Built-in column mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// SPEC 1.1 names: `ts`, `trace_id`, `tags.dept`, ...
    Default,
    /// OpenTelemetry GenAI semantic-convention attribute names, flattened to columns.
    OtelGenai,
}

impl Preset {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Preset::Default),
            "otel_genai" => Some(Preset::OtelGenai),
            _ => None,
        }
    }

    fn source(self, col: Col) -> &'static str {
        match (self, col) {
            (_, Col::Dept) => "tags.dept",
            (_, Col::Project) => "tags.project",
            (_, Col::Task) => "tags.task",
            (Preset::Default, c) => c.name(),
            (Preset::OtelGenai, c) => match c {
                Col::Ts => "start_time_unix_nano",
                // One GenAI call is one span; a trace holds many of them.
                Col::TraceId => "span_id",
                Col::Model => "gen_ai.request.model",
                Col::Provider => "gen_ai.provider.name",
                Col::InputTokens => "gen_ai.usage.input_tokens",
                Col::OutputTokens => "gen_ai.usage.output_tokens",
                Col::CacheReadInputTokens => "gen_ai.usage.cache_read.input_tokens",
                Col::CacheCreationInputTokens => "gen_ai.usage.cache_creation.input_tokens",
                Col::ReasoningOutputTokens => "gen_ai.usage.reasoning.output_tokens",
                Col::Error => "error.type",
                Col::Route => "http.route",
                Col::Region => "cloud.region",
                Col::LatencyMs => "duration_ms",
                other => other.name(),
            },
        }
    }

    fn ts_unit(self) -> Option<IntTsUnit> {
        match self {
            Preset::Default => None,
            Preset::OtelGenai => Some(IntTsUnit::Ns),
        }
    }
}

/// Where each normalized column comes from in the logged files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMapping {
    pub preset: Preset,
    /// Source column path (a top-level name, which may contain dots, or a
    /// dotted path into struct columns) for every normalized column.
    pub sources: BTreeMap<Col, String>,
    /// Unit of an integer `ts` column (timestamps typed as such need none).
    pub ts_unit: Option<IntTsUnit>,
    /// Columns the config maps by name (`[columns]`): their source must
    /// exist in every object, optional or not (a typo must not turn every
    /// request into `(untagged)`).
    pub explicit: std::collections::BTreeSet<Col>,
    /// Older names a preset's source is still written under, tried in
    /// order where an object lacks it (OTel: `gen_ai.system` before
    /// `gen_ai.provider.name`). Not used for explicitly mapped columns.
    pub fallbacks: BTreeMap<Col, Vec<String>>,
    /// Where an object has no `cache_hit` column, take every row as no
    /// gateway cache hit: an OTel GenAI client span records a call to the
    /// provider, and a response served from the gateway's cache makes none
    /// (a provider's *prompt* cache, `cache_read` tokens, is a billed call,
    /// not a hit). Off for the default preset and when `cache_hit` is
    /// mapped explicitly (a gateway that logs its cache hits as spans).
    pub derive_cache_hit: bool,
    /// Where an object has no latency column, derive it as this end-time
    /// column minus `ts`, in ms (OTel spans: `end_time_unix_nano`). Off for
    /// the default preset and when `latency_ms` is mapped explicitly.
    pub latency_from_end: Option<String>,
    /// Where an object has no error column, derive `error` from this span
    /// status column: OTLP `STATUS_CODE_ERROR` (2, or that name as text).
    /// OTel exports write `error.type` only on failed spans, so an object
    /// without a failure may lack it. Off for the default preset and when
    /// `error` is mapped explicitly.
    pub error_from_status: Option<String>,
}

impl ColumnMapping {
    pub fn preset(preset: Preset) -> Self {
        ColumnMapping {
            preset,
            sources: Col::ALL
                .iter()
                .map(|&c| (c, preset.source(c).to_string()))
                .collect(),
            ts_unit: preset.ts_unit(),
            explicit: Default::default(),
            fallbacks: match preset {
                Preset::Default => BTreeMap::new(),
                Preset::OtelGenai => BTreeMap::from([
                    (Col::Provider, vec!["gen_ai.system".to_string()]),
                    (Col::TraceId, vec!["trace_id".to_string()]),
                ]),
            },
            derive_cache_hit: preset == Preset::OtelGenai,
            latency_from_end: (preset == Preset::OtelGenai)
                .then(|| "end_time_unix_nano".to_string()),
            error_from_status: (preset == Preset::OtelGenai).then(|| "status.code".to_string()),
        }
    }

    /// Map `col` to `source` explicitly (from `[columns]`).
    pub fn map(&mut self, col: Col, source: String) {
        self.sources.insert(col, source);
        self.explicit.insert(col);
        self.fallbacks.remove(&col);
        if col == Col::CacheHit {
            self.derive_cache_hit = false;
        }
        if col == Col::LatencyMs {
            self.latency_from_end = None;
        }
        if col == Col::Error {
            self.error_from_status = None;
        }
    }

    /// How `col` is derived where an object lacks it, as the data-quality
    /// section says it (`None`: it is not).
    pub fn derivation(&self, col: Col) -> Option<String> {
        match col {
            Col::CacheHit if self.derive_cache_hit => Some(
                "false (a GenAI span is a call to the provider; map `cache_hit` if the gateway logs its cache hits as spans)"
                    .to_string(),
            ),
            Col::LatencyMs => self
                .latency_from_end
                .as_ref()
                .map(|end| format!("`{end}` - `{}`", self.source(Col::Ts))),
            Col::Error => self
                .error_from_status
                .as_ref()
                .map(|status| format!("`{status}` = STATUS_CODE_ERROR (2)")),
            _ => None,
        }
    }

    pub fn source(&self, col: Col) -> &str {
        self.sources
            .get(&col)
            .map(String::as_str)
            .unwrap_or(col.name())
    }
}

impl Default for ColumnMapping {
    fn default() -> Self {
        ColumnMapping::preset(Preset::Default)
    }
}

/// How one normalized column is found in one file.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Field names from the root column down to the leaf.
    pub path: Vec<String>,
    /// Index of the leaf in the Parquet schema (for projection masks).
    pub leaf: usize,
    /// The leaf's Arrow type as decoded.
    pub source_type: DataType,
}

/// The columns of one file, resolved against the mapping.
#[derive(Clone, Debug)]
pub struct FileColumns {
    /// By [`Col`] position; `None` for an optional column the file lacks
    /// (and for `cache_hit` when it is derived).
    pub cols: Vec<Option<Resolved>>,
    pub ts_unit: Option<IntTsUnit>,
    /// `cache_hit` is absent and taken as false
    /// ([`ColumnMapping::derive_cache_hit`]).
    pub derived_cache_hit: bool,
    /// The latency column is absent and derived as this end-time column
    /// minus `ts` ([`ColumnMapping::latency_from_end`]).
    pub latency_end: Option<Resolved>,
    /// The error column is absent and derived from this span status
    /// column ([`ColumnMapping::error_from_status`]).
    pub error_status: Option<Resolved>,
}

impl FileColumns {
    pub fn get(&self, col: Col) -> Option<&Resolved> {
        self.cols[col as usize].as_ref()
    }

    /// Whether `col` is absent from the file and derived from other columns.
    pub fn is_derived(&self, col: Col) -> bool {
        match col {
            Col::CacheHit => self.derived_cache_hit,
            Col::LatencyMs => self.latency_end.is_some(),
            Col::Error => self.error_status.is_some(),
            _ => false,
        }
    }

    /// The Parquet leaves to decode for `col`: its own, or for a derived
    /// column those it is computed from.
    pub fn leaves_of(&self, col: Col) -> Vec<usize> {
        match self.get(col) {
            Some(r) => vec![r.leaf],
            None if col == Col::Error => self.error_status.iter().map(|r| r.leaf).collect(),
            None if col == Col::LatencyMs => match (&self.latency_end, self.get(Col::Ts)) {
                (Some(end), Some(ts)) => vec![end.leaf, ts.leaf],
                _ => Vec::new(),
            },
            None => Vec::new(),
        }
    }
}

/// Find every normalized column in a file; returns all problems found, each
/// naming `key`, the column, and the expected and found types.
pub fn resolve(
    key: &str,
    arrow_schema: &Schema,
    parquet_schema: &SchemaDescriptor,
    mapping: &ColumnMapping,
) -> Result<FileColumns, Vec<String>> {
    let mut problems = Vec::new();
    let mut cols = Vec::with_capacity(Col::ALL.len());
    let mut derived_cache_hit = false;
    let mut latency_end = None;
    let mut error_status = None;
    for col in Col::ALL {
        let source = mapping.source(col);
        let found = std::iter::once(source)
            .chain(
                mapping
                    .fallbacks
                    .get(&col)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
            .find_map(|name| find_path(arrow_schema.fields(), name).map(|f| (name, f)));
        let Some((source, (path, dt))) = found else {
            if col == Col::CacheHit && mapping.derive_cache_hit {
                derived_cache_hit = true;
            } else if col == Col::LatencyMs
                && let Some(end) = &mapping.latency_from_end
                && let Some((path, dt)) = find_path(arrow_schema.fields(), end)
            {
                match end_time(key, end, path, dt, parquet_schema, mapping.ts_unit) {
                    Ok(r) => latency_end = Some(r),
                    Err(p) => problems.push(p),
                }
            } else if col == Col::Error
                && let Some(status) = &mapping.error_from_status
                && let Some((path, dt)) = find_path(arrow_schema.fields(), status)
            {
                match status_column(key, status, path, dt, parquet_schema) {
                    Ok(r) => error_status = Some(r),
                    Err(p) => problems.push(p),
                }
            } else if col.required() {
                problems.push(format!(
                    "{key}: required column `{}` (read from `{source}`) is missing; expected {}",
                    col.name(),
                    col.kind().expected()
                ));
            } else if mapping.explicit.contains(&col) {
                problems.push(format!(
                    "{key}: mapped column `{source}` (columns.{}) is missing; expected {}",
                    col.name(),
                    col.kind().expected()
                ));
            }
            cols.push(None);
            continue;
        };
        if !accepts(col, &dt, mapping.ts_unit) {
            problems.push(format!(
                "{key}: column `{source}` (for `{}`) has type {dt}; expected {}",
                col.name(),
                col.kind().expected()
            ));
            cols.push(None);
            continue;
        }
        let leaf = parquet_schema
            .columns()
            .iter()
            .position(|c| c.path().parts() == path.as_slice());
        match leaf {
            Some(leaf) => cols.push(Some(Resolved {
                path,
                leaf,
                source_type: dt,
            })),
            None => {
                problems.push(format!(
                    "{key}: column `{source}` (for `{}`) is not a plain Parquet column; expected {}",
                    col.name(),
                    col.kind().expected()
                ));
                cols.push(None);
            }
        }
    }
    if problems.is_empty() {
        Ok(FileColumns {
            cols,
            ts_unit: mapping.ts_unit,
            derived_cache_hit,
            latency_end,
            error_status,
        })
    } else {
        Err(problems)
    }
}

/// The span status column `error` is derived from: an integer code or text.
fn status_column(
    key: &str,
    name: &str,
    path: Vec<String>,
    dt: DataType,
    parquet_schema: &SchemaDescriptor,
) -> Result<Resolved, String> {
    if !(is_int(&dt) || is_text(&dt)) {
        return Err(format!(
            "{key}: column `{name}` (the span status, for `error`) has type {dt}; expected an integer code or a string"
        ));
    }
    let leaf = parquet_schema
        .columns()
        .iter()
        .position(|c| c.path().parts() == path.as_slice())
        .ok_or_else(|| {
            format!("{key}: column `{name}` (the span status, for `error`) is not a plain Parquet column")
        })?;
    Ok(Resolved {
        path,
        leaf,
        source_type: dt,
    })
}

/// The end-time column a latency is derived from: typed as `ts` may be.
fn end_time(
    key: &str,
    name: &str,
    path: Vec<String>,
    dt: DataType,
    parquet_schema: &SchemaDescriptor,
    ts_unit: Option<IntTsUnit>,
) -> Result<Resolved, String> {
    if !accepts(Col::Ts, &dt, ts_unit) {
        return Err(format!(
            "{key}: column `{name}` (the span end, for `latency_ms`) has type {dt}; expected {}",
            Kind::Timestamp.expected()
        ));
    }
    let leaf = parquet_schema
        .columns()
        .iter()
        .position(|c| c.path().parts() == path.as_slice())
        .ok_or_else(|| {
            format!("{key}: column `{name}` (the span end, for `latency_ms`) is not a plain Parquet column")
        })?;
    Ok(Resolved {
        path,
        leaf,
        source_type: dt,
    })
}

/// Find `path` among `fields`: an exact field name first (names may contain
/// dots, as OpenTelemetry attribute names do), else a dotted walk into structs.
fn find_path(fields: &arrow::datatypes::Fields, path: &str) -> Option<(Vec<String>, DataType)> {
    if let Some(f) = fields.iter().find(|f| f.name() == path) {
        return Some((vec![f.name().clone()], f.data_type().clone()));
    }
    for f in fields.iter() {
        if let (Some(rest), DataType::Struct(children)) = (
            path.strip_prefix(f.name().as_str())
                .and_then(|r| r.strip_prefix('.')),
            f.data_type(),
        ) && let Some((mut sub, dt)) = find_path(children, rest)
        {
            sub.insert(0, f.name().clone());
            return Some((sub, dt));
        }
    }
    None
}

fn is_int(dt: &DataType) -> bool {
    dt.is_integer()
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn accepts(col: Col, dt: &DataType, ts_unit: Option<IntTsUnit>) -> bool {
    match col.kind() {
        Kind::Timestamp => {
            matches!(dt, DataType::Timestamp(_, _)) || (is_int(dt) && ts_unit.is_some())
        }
        Kind::Text => is_text(dt),
        // OpenTelemetry records a failure as the presence of `error.type`
        // (a string); only `error` accepts a string, meaning "non-empty".
        Kind::Bool => matches!(dt, DataType::Boolean) || (col == Col::Error && is_text(dt)),
        Kind::Int => is_int(dt),
        Kind::Real => dt.is_numeric(),
    }
}

/// The column at `path` in a decoded batch.
fn column_at(batch: &RecordBatch, path: &[String]) -> Option<ArrayRef> {
    let (first, rest) = path.split_first()?;
    let mut arr = Arc::clone(batch.column_by_name(first)?);
    for name in rest {
        let s: &StructArray = arr.as_struct_opt()?;
        let child = Arc::clone(s.column_by_name(name)?);
        // A null struct makes its children null too.
        arr = match s.nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                let merged = arrow::buffer::NullBuffer::union(Some(nulls), child.nulls());
                arrow::array::make_array(
                    child
                        .into_data()
                        .into_builder()
                        .nulls(merged)
                        .build()
                        .ok()?,
                )
            }
            _ => child,
        };
    }
    Some(arr)
}

/// Convert the source column of `col` in a decoded batch to the normalized type.
/// `rows` is the batch length (for all-null columns the file lacks).
pub fn normalize(
    batch: &RecordBatch,
    col: Col,
    resolved: Option<&Resolved>,
    ts_unit: Option<IntTsUnit>,
) -> Result<ArrayRef, String> {
    let target = col.data_type();
    let Some(resolved) = resolved else {
        return Ok(arrow::array::new_null_array(&target, batch.num_rows()));
    };
    let arr = column_at(batch, &resolved.path).ok_or_else(|| {
        format!(
            "column `{}` missing from decoded batch",
            resolved.path.join(".")
        )
    })?;
    let safe = CastOptions::default();
    match col.kind() {
        Kind::Timestamp => {
            // Parquet stores instants (UTC) whatever zone the column declares,
            // and a naive timestamp means UTC (SPEC 1.1): scale the stored
            // integers to nanoseconds; never shift by a zone.
            let (ints, nanos_per_unit) = match arr.data_type() {
                DataType::Timestamp(unit, _) => {
                    let per = match unit {
                        TimeUnit::Second => 1_000_000_000,
                        TimeUnit::Millisecond => 1_000_000,
                        TimeUnit::Microsecond => 1_000,
                        TimeUnit::Nanosecond => 1,
                    };
                    let raw = arr
                        .to_data()
                        .into_builder()
                        .data_type(DataType::Int64)
                        .build();
                    (
                        arrow::array::make_array(raw.map_err(|e| e.to_string())?),
                        per,
                    )
                }
                _ => {
                    let unit = ts_unit.ok_or("integer timestamp without columns.ts_unit")?;
                    (
                        cast_with_options(&arr, &DataType::Int64, &safe)
                            .map_err(|e| e.to_string())?,
                        unit.nanos(),
                    )
                }
            };
            let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
            let ns: arrow::array::TimestampNanosecondArray = if nanos_per_unit == 1 {
                arrow::array::TimestampNanosecondArray::new(
                    ints.values().clone(),
                    ints.nulls().cloned(),
                )
            } else {
                // Instants beyond the year 2262 do not fit in nanoseconds: null (rejected row).
                ints.iter()
                    .map(|v| v.and_then(|v| v.checked_mul(nanos_per_unit)))
                    .collect()
            };
            Ok(Arc::new(ns.with_timezone("UTC")))
        }
        Kind::Bool if is_text(arr.data_type()) => {
            let text =
                cast_with_options(&arr, &DataType::Utf8View, &safe).map_err(|e| e.to_string())?;
            let text = text.as_string_view();
            let b: BooleanArray = text
                .iter()
                .map(|v| Some(v.is_some_and(|s| !s.is_empty())))
                .collect();
            Ok(Arc::new(b))
        }
        Kind::Int if arr.data_type() == &DataType::UInt64 => {
            // Counts of 2^63 and more do not fit: saturate, so that the
            // token bound rejects the row (and names it), as for 5·10^9.
            let u = arr.as_primitive::<arrow::datatypes::UInt64Type>();
            let i: arrow::array::Int64Array =
                arrow::compute::kernels::arity::unary(u, |v| v.min(i64::MAX as u64) as i64);
            Ok(Arc::new(i) as ArrayRef)
        }
        Kind::Int => {
            // Out-of-range values become null (and the row is rejected or the value ignored).
            cast_with_options(&arr, &DataType::Int64, &safe).map_err(|e| e.to_string())
        }
        _ => cast_with_options(&arr, &target, &safe).map_err(|e| e.to_string()),
    }
}

/// The normalized column `col` of a decoded batch of a file with columns
/// `cols`: [`normalize`] of its source; a derived `cache_hit` is false, a
/// derived `error` the span status, a derived `latency_ms` the span's end
/// minus its start.
pub fn normalize_col(
    batch: &RecordBatch,
    col: Col,
    cols: &FileColumns,
) -> Result<ArrayRef, String> {
    if col == Col::CacheHit && cols.derived_cache_hit {
        return Ok(Arc::new(BooleanArray::from(vec![false; batch.num_rows()])));
    }
    if col == Col::Error
        && cols.get(col).is_none()
        && let Some(status) = &cols.error_status
    {
        // OTLP status codes: 0 unset, 1 ok, 2 error; as text, the enum name
        // (`STATUS_CODE_ERROR`) or its short form (`ERROR`, `Error`).
        let arr = column_at(batch, &status.path).ok_or_else(|| {
            format!(
                "column `{}` missing from decoded batch",
                status.path.join(".")
            )
        })?;
        let error: BooleanArray = if is_text(arr.data_type()) {
            let text = cast_with_options(&arr, &DataType::Utf8View, &CastOptions::default())
                .map_err(|e| e.to_string())?;
            text.as_string_view()
                .iter()
                .map(|v| {
                    Some(v.is_some_and(|s| {
                        s.eq_ignore_ascii_case("STATUS_CODE_ERROR")
                            || s.eq_ignore_ascii_case("ERROR")
                    }))
                })
                .collect()
        } else {
            let codes = cast_with_options(&arr, &DataType::Int64, &CastOptions::default())
                .map_err(|e| e.to_string())?;
            codes
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(|v| Some(v == Some(2)))
                .collect()
        };
        return Ok(Arc::new(error));
    }
    if col == Col::LatencyMs
        && cols.get(col).is_none()
        && let (Some(end), Some(ts)) = (&cols.latency_end, cols.get(Col::Ts))
    {
        let start = ts_nanos(batch, ts, cols.ts_unit)?;
        let end = ts_nanos(batch, end, cols.ts_unit)?;
        // Milliseconds from the span's start to its end; null where either
        // is null or the end precedes the start (a broken span).
        let ms: arrow::array::Float64Array = start
            .iter()
            .zip(end.iter())
            .map(|(s, e)| match (s, e) {
                (Some(s), Some(e)) if e >= s => Some((e - s) as f64 / 1e6),
                _ => None,
            })
            .collect();
        return Ok(Arc::new(ms));
    }
    normalize(batch, col, cols.get(col), cols.ts_unit)
}

/// Normalize the `ts` column to nanoseconds as plain i64 (for the window filter).
pub fn ts_nanos(
    batch: &RecordBatch,
    resolved: &Resolved,
    ts_unit: Option<IntTsUnit>,
) -> Result<Int64Array, String> {
    let arr = normalize(batch, Col::Ts, Some(resolved), ts_unit)?;
    let ts = arr.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    Ok(Int64Array::new(ts.values().clone(), ts.nulls().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMillisecondArray};
    use parquet::arrow::ArrowSchemaConverter;

    fn descr(schema: &Schema) -> SchemaDescriptor {
        ArrowSchemaConverter::new().convert(schema).unwrap()
    }

    fn spec_schema() -> Schema {
        Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("trace_id", DataType::Utf8, false),
            Field::new(
                "tags",
                DataType::Struct(
                    vec![
                        Field::new("dept", DataType::Utf8, true),
                        Field::new("project", DataType::Utf8, true),
                        Field::new("task", DataType::Utf8, true),
                    ]
                    .into(),
                ),
                true,
            ),
            Field::new("model", DataType::Utf8, false),
            Field::new("provider", DataType::Utf8, false),
            Field::new("error", DataType::Boolean, false),
            Field::new("cache_hit", DataType::Boolean, false),
            Field::new("input_tokens", DataType::Int32, false),
            Field::new("output_tokens", DataType::Int64, false),
            Field::new("latency_ms", DataType::Int32, true),
        ])
    }

    #[test]
    fn resolves_spec_layout_with_optional_columns_absent() {
        let s = spec_schema();
        let cols = resolve("k", &s, &descr(&s), &ColumnMapping::default()).unwrap();
        assert_eq!(cols.get(Col::Dept).unwrap().path, vec!["tags", "dept"]);
        assert!(cols.get(Col::CacheReadInputTokens).is_none());
        assert!(cols.get(Col::LatencyMs).is_some());
    }

    #[test]
    fn reports_every_problem_with_key_column_and_types() {
        let s = Schema::new(vec![
            Field::new("ts", DataType::Utf8, false),
            Field::new("trace_id", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("input_tokens", DataType::Utf8, false),
        ]);
        let errs = resolve(
            "s3://b/requests/date=2026-01-01/p.parquet",
            &s,
            &descr(&s),
            &ColumnMapping::default(),
        )
        .unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("s3://b/requests/date=2026-01-01/p.parquet: column `ts` (for `ts`) has type Utf8; expected a timestamp"), "{all}");
        assert!(
            all.contains(
                "column `input_tokens` (for `input_tokens`) has type Utf8; expected an integer"
            ),
            "{all}"
        );
        assert!(
            all.contains("required column `provider` (read from `provider`) is missing"),
            "{all}"
        );
        assert!(all.contains("required column `output_tokens`"), "{all}");
        // ts, input_tokens, provider, error, cache_hit, output_tokens
        assert_eq!(errs.len(), 6, "{all}");
    }

    #[test]
    fn otel_names_with_dots_resolve_as_top_level_columns() {
        let s = Schema::new(vec![
            Field::new("gen_ai.request.model", DataType::Utf8, false),
            Field::new("error.type", DataType::Utf8, true),
        ]);
        let found = find_path(s.fields(), "gen_ai.request.model").unwrap();
        assert_eq!(found.0, vec!["gen_ai.request.model"]);
        assert!(accepts(Col::Error, &DataType::Utf8, None));
        assert!(!accepts(Col::CacheHit, &DataType::Utf8, None));
        assert!(!accepts(Col::Ts, &DataType::Int64, None));
        assert!(accepts(Col::Ts, &DataType::Int64, Some(IntTsUnit::Ns)));
    }

    #[test]
    fn normalizes_units_and_null_structs() {
        let s = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("error.type", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            s,
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_500])),
                Arc::new(StringArray::from(vec![Some("timeout"), None])),
            ],
        )
        .unwrap();
        let r = Resolved {
            path: vec!["ts".into()],
            leaf: 0,
            source_type: DataType::Timestamp(TimeUnit::Millisecond, None),
        };
        let ns = ts_nanos(&batch, &r, None).unwrap();
        assert_eq!(ns.values().to_vec(), vec![1_000_000_000, 2_500_000_000]);
        let e = Resolved {
            path: vec!["error.type".into()],
            leaf: 1,
            source_type: DataType::Utf8,
        };
        let err = normalize(&batch, Col::Error, Some(&e), None).unwrap();
        let err = err.as_boolean();
        assert!(err.value(0) && !err.value(1));
    }
}
