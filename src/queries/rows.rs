//! The row types of the query outputs Rust reads: one per `sql/*.sql`
//! output, declared once, here.
//!
//! A row type lists the columns Rust reads from an output and the kind of
//! each (text, integer, real, decimal, ...); the rest of the output goes to
//! its CSV untouched. The declaration is the contract between a SQL file and
//! its readers: [`check`] holds a planned query's schema to it (every step
//! checks it when it is planned, so `tokenledger check` and the start of
//! every run fail naming the file and column, never a reader at run time),
//! and [`decode`] turns result batches into rows. Stored rollups are decoded
//! with the same types: a column added after rollups were first written is
//! declared [`Later`], and is absent, not an error, in an older object.
//!
//! Pure: no I/O, no knowledge of the pipeline.

use std::marker::PhantomData;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampNanosecondType,
    UInt64Type,
};

use crate::error::{Error, Result};

/// What a column must hold for its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    UInt64,
    Real,
    Decimal,
    Boolean,
    Timestamp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Integer => "an integer",
            Kind::UInt64 => "UInt64",
            Kind::Real => "a float",
            Kind::Decimal => "a decimal",
            Kind::Boolean => "a boolean",
            Kind::Timestamp => "a timestamp (ns)",
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        match self {
            Kind::Text => match t {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
                DataType::Dictionary(key, value) => key.is_integer() && Kind::Text.accepts(value),
                _ => false,
            },
            Kind::Integer => t.is_integer(),
            Kind::UInt64 => *t == DataType::UInt64,
            Kind::Real => matches!(t, DataType::Float64 | DataType::Float32),
            Kind::Decimal => matches!(t, DataType::Decimal128(..)),
            Kind::Boolean => *t == DataType::Boolean,
            Kind::Timestamp => matches!(t, DataType::Timestamp(TimeUnit::Nanosecond, _)),
        }
    }

    /// The one array type cells of this kind are read from.
    /// (Kinds without a fixed type, and columns already of it, are taken
    /// as they are: [`Kind::accepts`] has checked them.)
    fn canonical(self, col: &ArrayRef) -> std::result::Result<ArrayRef, arrow::error::ArrowError> {
        match fixed_type(self) {
            Some(to) if *col.data_type() != to => arrow::compute::cast(col, &to),
            _ => Ok(std::sync::Arc::clone(col)),
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Added after rollups were first written: may be absent from a stored
    /// object (never from today's SQL).
    pub later: bool,
}

/// An exact decimal cell: `value * 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    pub value: i128,
    pub scale: i8,
}

impl Dec {
    /// The value at `scale` (rounded half to even when it shrinks).
    pub fn at(self, scale: i8) -> i128 {
        crate::money::rescale(self.value, self.scale, scale)
    }
}

impl std::fmt::Display for Dec {
    /// Every digit of the scale, as the CSVs write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::money::format_scaled(self.value, self.scale))
    }
}

/// A column declared [`Column::later`]: `Later(None)` when the object read
/// predates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Later<T>(pub Option<T>);

/// A Rust type a cell is read into.
pub trait Cell: Sized {
    const KIND: Kind;
    const LATER: bool = false;
    /// The cell at row `i` of `col`, already of the kind's canonical type
    /// ([`decode`] casts and checks it). `col` is `None` only for an absent
    /// [`Later`] column; any other type reads as null, never a panic.
    fn read(col: Option<&ArrayRef>, i: usize) -> Self;
}

impl Cell for Option<String> {
    const KIND: Kind = Kind::Text;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        let c = col?.as_string_opt::<i32>()?;
        c.is_valid(i).then(|| c.value(i).to_string())
    }
}

/// Text; a null reads as `""`.
impl Cell for String {
    const KIND: Kind = Kind::Text;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        <Option<String>>::read(col, i).unwrap_or_default()
    }
}

impl Cell for Option<i64> {
    const KIND: Kind = Kind::Integer;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        let c = col?.as_primitive_opt::<Int64Type>()?;
        c.is_valid(i).then(|| c.value(i))
    }
}

/// An integer; a null reads as 0.
impl Cell for i64 {
    const KIND: Kind = Kind::Integer;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        <Option<i64>>::read(col, i).unwrap_or(0)
    }
}

/// A `UInt64` (hash keys); a null reads as 0.
impl Cell for u64 {
    const KIND: Kind = Kind::UInt64;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        col.and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .filter(|c| c.is_valid(i))
            .map_or(0, |c| c.value(i))
    }
}

impl Cell for Option<f64> {
    const KIND: Kind = Kind::Real;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        let c = col?.as_primitive_opt::<Float64Type>()?;
        c.is_valid(i).then(|| c.value(i))
    }
}

impl Cell for Option<Dec> {
    const KIND: Kind = Kind::Decimal;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        let c = col?;
        let DataType::Decimal128(_, scale) = c.data_type() else {
            return None;
        };
        let c = c.as_primitive_opt::<Decimal128Type>()?;
        c.is_valid(i).then(|| Dec {
            value: c.value(i),
            scale: *scale,
        })
    }
}

/// A boolean; a null reads as `false`.
impl Cell for bool {
    const KIND: Kind = Kind::Boolean;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        col.and_then(|c| c.as_boolean_opt())
            .is_some_and(|c| c.is_valid(i) && c.value(i))
    }
}

/// An instant, nanoseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nanos(pub i64);

impl Cell for Option<Nanos> {
    const KIND: Kind = Kind::Timestamp;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        let c = col?.as_primitive_opt::<TimestampNanosecondType>()?;
        c.is_valid(i).then(|| Nanos(c.value(i)))
    }
}

impl<T: Cell> Cell for Later<T> {
    const KIND: Kind = T::KIND;
    const LATER: bool = true;
    fn read(col: Option<&ArrayRef>, i: usize) -> Self {
        Later(col.map(|c| T::read(Some(c), i)))
    }
}

/// A query output's row type.
pub trait Row: Sized {
    /// `sql/<FILE>.sql`.
    const FILE: &'static str;
    /// The columns read, in field order.
    const COLUMNS: &'static [Column];
    /// Row `i`, from `cols` in [`Row::COLUMNS`] order.
    fn read(cols: &[Option<ArrayRef>], i: usize) -> Self;
}

macro_rules! rows {
    ($(
        $(#[$meta:meta])*
        $name:ident from $file:literal {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)?
        }
    )*) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $name {
                $($(#[$fmeta])* pub $field: $ty),*
            }

            impl Row for $name {
                const FILE: &'static str = $file;
                const COLUMNS: &'static [Column] = &[$(Column {
                    name: stringify!($field),
                    kind: <$ty as Cell>::KIND,
                    later: <$ty as Cell>::LATER,
                }),*];
                fn read(cols: &[Option<ArrayRef>], i: usize) -> Self {
                    let mut at = cols.iter();
                    $name {
                        $($field: <$ty as Cell>::read(at.next().and_then(Option::as_ref), i)),*
                    }
                }
            }
        )*

        /// Every declared output: its file and columns.
        pub const CONTRACTS: &[(&str, &[Column])] = &[$(($file, <$name as Row>::COLUMNS)),*];
    };
}

rows! {
    /// `sql/dup_keys.sql`: the trace keys seen more than once (`lake::schema::TRACE_KEY`).
    DupKey from "dup_keys" {
        _trace_key: u64,
    }

    /// `sql/ops_counts.sql`: the ops counts of every row, by grouping set.
    OpsCount from "ops_counts" {
        grouping_set: String,
        requests: i64,
    }

    /// `sql/model_pairs.sql`: the day's logged (provider, model) pairs.
    ModelPair from "model_pairs" {
        provider: String,
        model: String,
    }

    /// `sql/ops_daily.sql`: the day's one row of operational metrics.
    OpsDaily from "ops_daily" {
        requests: Option<i64>,
        qps_avg: Option<f64>,
        qps_peak: Option<f64>,
        error_rate: Option<f64>,
        latency_p95_ms: Option<f64>,
        cache_hit_rate: Option<f64>,
        citation_rate_mean: Option<f64>,
        human_review_pass_rate: Option<f64>,
        duplicates_dropped: i64,
        duplicate_conflicts: i64,
    }

    /// `sql/ops_by_model.sql`: operational metrics by (provider, model).
    OpsByModel from "ops_by_model" {
        provider: String,
        model: String,
        requests: Option<i64>,
        qps_avg: Option<f64>,
        qps_peak: Option<f64>,
        error_rate: Option<f64>,
        latency_p50_ms: Option<f64>,
        latency_p95_ms: Option<f64>,
        latency_p99_ms: Option<f64>,
        cache_hit_rate: Option<f64>,
        citation_rate_mean: Option<f64>,
        human_reviewed: Option<i64>,
        human_review_pass_rate: Option<f64>,
        duplicates_dropped: Option<i64>,
    }

    /// `sql/hourly.sql`: requests, errors and latency by hour of the day.
    Hourly from "hourly" {
        hour: i64,
        requests: i64,
        error_rate: Option<f64>,
        latency_p95_ms: Option<f64>,
    }

    /// `sql/finance_by_dimension.sql`, as the showback attachments filter it.
    FinanceByDimension from "finance_by_dimension" {
        dept: String,
    }

    /// `sql/data_quality.sql`: problems by (provider, model).
    DataQuality from "data_quality" {
        provider: String,
        model: String,
        unpriced_requests: i64,
        token_violations: i64,
        total_tokens_mismatch: i64,
        logged_cost_invalid: i64,
        citation_rate_invalid: i64,
        duplicates_dropped: i64,
        duplicate_conflicts: i64,
    }

    /// `sql/logged_currencies.sql`: logged costs by currency.
    LoggedCurrency from "logged_currencies" {
        currency: Option<String>,
        logged_requests: i64,
        has_rate: bool,
    }

    /// `sql/rollup_daily.sql`, and the stored daily rollups: the day at its
    /// finest grain, money exact.
    RollupDaily from "rollup_daily" {
        dept: String,
        project: String,
        task: String,
        provider: String,
        model: String,
        requests: Option<i64>,
        errors: Option<i64>,
        cache_hits: Option<i64>,
        input_tokens: Option<i64>,
        output_tokens: Option<i64>,
        priced_tokens: Option<i64>,
        unpriced_requests: Option<i64>,
        cost_usd: Option<Dec>,
        cache_savings_usd: Option<Dec>,
        logged_cost_usd: Option<Dec>,
        citation_sum: Option<Dec>,
        citation_requests: Option<i64>,
        human_reviewed: Option<i64>,
        human_approved: Option<i64>,
        duplicates_dropped: Option<i64>,
        cost_uncached_input_usd: Later<Option<Dec>>,
        cost_cache_read_usd: Later<Option<Dec>>,
        cost_cache_write_usd: Later<Option<Dec>>,
        cost_output_usd: Later<Option<Dec>>,
        logged_compared_requests: Later<Option<i64>>,
        logged_compared_usd: Later<Option<Dec>>,
        computed_compared_usd: Later<Option<Dec>>,
    }

    /// `sql/rollup_latency.sql`, and the stored latency rollups: requests
    /// by latency value (and by model and route since routes were kept).
    RollupLatency from "rollup_latency" {
        provider: Later<String>,
        model: Later<String>,
        route: Later<Option<String>>,
        latency_ms: Option<f64>,
        requests: Option<i64>,
    }

    /// `sql/focus_costs.sql`, as `report::focus` completes it (FOCUS
    /// column names).
    #[allow(non_snake_case)]
    FocusCost from "focus_costs" {
        ProviderName: String,
        ListCost: Option<Dec>,
        dept: Option<String>,
        project: Option<String>,
        task: Option<String>,
    }

    /// `sql/evidence.sql`: the costliest requests of a filter, in cost order.
    Evidence from "evidence" {
        provider: String,
        model: String,
        trace_id: String,
        ts: Option<Nanos>,
        cost_usd: Option<Dec>,
    }
}

fn columns_of(schema: &arrow::datatypes::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where each declared column is in `schema` (`None`: an absent later
/// column), each checked to be of its kind. Every mismatch, named.
fn positions(
    columns: &[Column],
    schema: &arrow::datatypes::Schema,
    later_may_be_absent: bool,
) -> std::result::Result<Vec<Option<usize>>, Vec<String>> {
    let mut problems = Vec::new();
    let mut at = Vec::with_capacity(columns.len());
    for c in columns {
        match schema.column_with_name(c.name) {
            Some((i, f)) if c.kind.accepts(f.data_type()) => at.push(Some(i)),
            Some((_, f)) => problems.push(format!(
                "column `{}` is {}, expected {}",
                c.name,
                f.data_type(),
                c.kind.name()
            )),
            None if c.later && later_may_be_absent => at.push(None),
            None => problems.push(format!(
                "the output has no column `{}` (it has: {})",
                c.name,
                columns_of(schema)
            )),
        }
    }
    if problems.is_empty() {
        Ok(at)
    } else {
        Err(problems)
    }
}

/// Hold a planned query's output schema to its declared row type, if it
/// has one: a column renamed or retyped in `sql/<file>.sql` is an error
/// naming the file and column before the query runs.
pub fn check(file: &str, schema: &arrow::datatypes::Schema) -> Result<()> {
    let Some((_, columns)) = CONTRACTS.iter().find(|(f, _)| *f == file) else {
        return Ok(());
    };
    positions(columns, schema, false)
        .map(|_| ())
        .map_err(|problems| Error::Sql {
            file: format!("{file}.sql"),
            message: problems.join("; "),
        })
}

/// The rows of a result or a stored object of `T`'s output. `subject`
/// names what the batches came from in an error (`sql/x.sql`, an object key).
pub fn decode_from<T: Row>(
    subject: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<T>> {
    let at = positions(T::COLUMNS, schema, true)
        .map_err(|p| Error::Internal(format!("{subject}: {}", p.join("; "))))?;
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for b in batches {
        let cols = T::COLUMNS
            .iter()
            .zip(&at)
            .map(|(c, at)| {
                at.map(|i| c.kind.canonical(b.column(i)))
                    .transpose()
                    .map_err(|e| Error::Internal(format!("{subject}: column `{}`: {e}", c.name)))
            })
            .collect::<Result<Vec<_>>>()?;
        out.extend((0..b.num_rows()).map(|i| T::read(&cols, i)));
    }
    Ok(out)
}

/// The canonical Arrow type of a kind, where it has one fixed type
/// (decimals keep their scale and timestamps their zone, so they have none).
fn fixed_type(kind: Kind) -> Option<DataType> {
    match kind {
        Kind::Text => Some(DataType::Utf8),
        Kind::Integer => Some(DataType::Int64),
        Kind::Real => Some(DataType::Float64),
        Kind::UInt64 => Some(DataType::UInt64),
        Kind::Boolean => Some(DataType::Boolean),
        Kind::Decimal | Kind::Timestamp => None,
    }
}

/// The type [`conform`] gives a kind: its fixed type, but text dictionary
/// encoded, as stored rollups hold it (a history window is millions of
/// cells of a few dozen names: a 4-byte key each, where `Utf8` copies every
/// string; see `pipeline::inputs::decode_rollup`).
fn conformed_type(kind: Kind) -> Option<DataType> {
    match kind {
        Kind::Text => Some(DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(DataType::Utf8),
        )),
        other => fixed_type(other),
    }
}

/// The one schema [`conform`] gives `T`'s stored objects: its declared
/// columns in order, each of its kind's [`conformed_type`], all nullable.
pub fn conformed_schema<T: Row>() -> Result<SchemaRef> {
    let fields = T::COLUMNS
        .iter()
        .map(|c| {
            conformed_type(c.kind)
                .map(|t| arrow::datatypes::Field::new(c.name, t, true))
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "{}: column `{}` ({}) has no fixed type to conform to",
                        T::FILE,
                        c.name,
                        c.kind.name()
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)))
}

/// Stored objects of `T`'s output, whatever version wrote them, as batches
/// of [`conformed_schema`] (one shape for every version, read by name with
/// [`conformed_column`]):
/// the declared columns only, each cast to its kind's conformed type, an absent
/// [`Later`] column all nulls. Also says whether every later column was
/// there. `subject` names the object in an error.
pub fn conform<T: Row>(
    subject: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(Vec<RecordBatch>, bool)> {
    let at = positions(T::COLUMNS, schema, true)
        .map_err(|p| Error::Internal(format!("{subject}: {}", p.join("; "))))?;
    let to = conformed_schema::<T>()?;
    let out = batches
        .iter()
        .map(|b| {
            let cols = to
                .fields()
                .iter()
                .zip(&at)
                .map(|(f, at)| match at {
                    Some(i) => arrow::compute::cast(b.column(*i), f.data_type()),
                    None => Ok(arrow::array::new_null_array(f.data_type(), b.num_rows())),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            RecordBatch::try_new(std::sync::Arc::clone(&to), cols)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("{subject}: {e}")))?;
    Ok((out, at.iter().all(Option::is_some)))
}

/// A column of a batch [`conform`] gave for `T`, by its declared name (a
/// conformed batch holds `T::COLUMNS`, in order). `Err` names a column `T`
/// does not declare.
pub fn conformed_column<'a, T: Row>(
    batch: &'a RecordBatch,
    name: &str,
) -> std::result::Result<&'a arrow::array::ArrayRef, String> {
    T::COLUMNS
        .iter()
        .position(|c| c.name == name)
        .filter(|i| *i < batch.num_columns())
        .map(|i| batch.column(i))
        .ok_or_else(|| format!("`{}` declares no column `{name}`", T::FILE))
}

/// The rows of a query result of `T`'s output.
pub fn decode<T: Row>(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<T>> {
    decode_from(&format!("sql/{}.sql", T::FILE), schema, batches)
}

/// A query result and the row type it is read as.
#[derive(Debug, Clone)]
pub struct Typed<T> {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    row: PhantomData<fn() -> T>,
}

impl<T: Row> Typed<T> {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Typed {
            schema,
            batches,
            row: PhantomData,
        }
    }

    /// Its rows.
    pub fn rows(&self) -> Result<Vec<T>> {
        decode(&self.schema, &self.batches)
    }

    /// Its rows folded one batch at a time: for a result too large to hold
    /// as rows (the latency histogram of `ops_counts`: a million rows on a
    /// 20M-row day), only a batch of rows is decoded at once.
    pub fn fold<A>(&self, init: A, mut f: impl FnMut(A, T) -> A) -> Result<A> {
        let mut acc = init;
        for batch in &self.batches {
            for row in decode::<T>(&self.schema, std::slice::from_ref(batch))? {
                acc = f(acc, row);
            }
        }
        Ok(acc)
    }

    /// As a plain table (for the CSV and Parquet writers).
    pub fn table(&self) -> (&SchemaRef, &[RecordBatch]) {
        (&self.schema, &self.batches)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        (schema, vec![b])
    }

    #[test]
    fn rows_decode_by_name_with_nulls_as_declared() {
        let (schema, batches) = batch(vec![
            (
                "requests",
                Arc::new(Int32Array::from(vec![Some(3), None])) as ArrayRef,
            ),
            (
                "grouping_set",
                Arc::new(StringViewArray::from(vec![Some("minute"), None])),
            ),
        ]);
        let rows: Vec<OpsCount> = decode(&schema, &batches).unwrap();
        assert_eq!(
            rows,
            vec![
                OpsCount {
                    grouping_set: "minute".into(),
                    requests: 3
                },
                OpsCount {
                    grouping_set: String::new(),
                    requests: 0
                },
            ]
        );
    }

    #[test]
    fn fold_sees_every_row_of_every_batch_in_order() {
        let part = |sets: Vec<&str>, requests: Vec<i32>| {
            batch(vec![
                (
                    "grouping_set",
                    Arc::new(StringViewArray::from(sets)) as ArrayRef,
                ),
                ("requests", Arc::new(Int32Array::from(requests))),
            ])
        };
        let (schema, mut batches) = part(vec!["minute", "latency"], vec![3, 100]);
        batches.extend(part(vec!["minute", "minute"], vec![4, 5]).1);
        let typed = Typed::<OpsCount>::new(schema, batches);
        let seen = typed
            .fold(Vec::new(), |mut v, r| {
                v.push((r.grouping_set, r.requests));
                v
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![
                ("minute".to_string(), 3),
                ("latency".to_string(), 100),
                ("minute".to_string(), 4),
                ("minute".to_string(), 5),
            ]
        );
        assert_eq!(typed.rows().unwrap().len(), 4);
    }

    #[test]
    fn a_missing_or_retyped_column_is_an_error_naming_file_and_column() {
        let (schema, batches) = batch(vec![
            (
                "request_count",
                Arc::new(Int32Array::from(vec![1])) as ArrayRef,
            ),
            ("grouping_set", Arc::new(Int32Array::from(vec![1]))),
        ]);
        match check("ops_counts", &schema) {
            Err(e @ Error::Sql { .. }) => assert_eq!(
                e.to_string(),
                "SQL file sql/ops_counts.sql does not check: column `grouping_set` is Int32, expected text; the output has no column `requests` (it has: request_count, grouping_set)"
            ),
            other => panic!("{other:?}"),
        }
        match decode::<OpsCount>(&schema, &batches) {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                "sql/ops_counts.sql: column `grouping_set` is Int32, expected text; the output has no column `requests` (it has: request_count, grouping_set)"
            ),
            other => panic!("{other:?}"),
        }
        // Files without a row type are not checked.
        check("cube", &schema).unwrap();
    }

    #[test]
    fn a_later_column_may_be_absent_from_a_stored_object_but_not_from_the_sql() {
        let (schema, batches) = batch(vec![
            (
                "latency_ms",
                Arc::new(arrow::array::Float64Array::from(vec![12.5])) as ArrayRef,
            ),
            ("requests", Arc::new(Int32Array::from(vec![4]))),
        ]);
        let rows: Vec<RollupLatency> = decode_from("old.parquet", &schema, &batches).unwrap();
        assert_eq!(
            rows,
            vec![RollupLatency {
                provider: Later(None),
                model: Later(None),
                route: Later(None),
                latency_ms: Some(12.5),
                requests: Some(4),
            }]
        );
        assert!(check("rollup_latency", &schema).is_err());
        let (schema, batches) = batch(vec![
            (
                "provider",
                Arc::new(StringArray::from(vec!["p"])) as ArrayRef,
            ),
            ("model", Arc::new(StringArray::from(vec!["m"]))),
            ("route", Arc::new(StringArray::from(vec![None::<&str>]))),
            (
                "latency_ms",
                Arc::new(arrow::array::Float64Array::from(vec![None])),
            ),
            ("requests", Arc::new(Int32Array::from(vec![4]))),
        ]);
        check("rollup_latency", &schema).unwrap();
        let rows: Vec<RollupLatency> = decode(&schema, &batches).unwrap();
        assert_eq!(rows[0].provider, Later(Some("p".into())));
        assert_eq!(rows[0].route, Later(Some(None)));
        assert_eq!(rows[0].latency_ms, None);
    }

    #[test]
    fn stored_objects_of_any_version_conform_to_one_schema() {
        // An old latency rollup: no provider, model or route; Int32 counts,
        // and a column no row type declares.
        let (schema, batches) = batch(vec![
            (
                "date",
                Arc::new(StringArray::from(vec!["d", "d"])) as ArrayRef,
            ),
            (
                "latency_ms",
                Arc::new(arrow::array::Float64Array::from(vec![Some(12.5), None])),
            ),
            ("requests", Arc::new(Int32Array::from(vec![4, 1]))),
        ]);
        let (old, all_there) = conform::<RollupLatency>("old.parquet", &schema, &batches).unwrap();
        assert!(!all_there);
        let want = conformed_schema::<RollupLatency>().unwrap();
        assert_eq!(
            want.fields()
                .iter()
                .map(|f| format!("{}:{}", f.name(), f.data_type()))
                .collect::<Vec<_>>(),
            [
                "provider:Dictionary(Int32, Utf8)",
                "model:Dictionary(Int32, Utf8)",
                "route:Dictionary(Int32, Utf8)",
                "latency_ms:Float64",
                "requests:Int64"
            ]
        );
        assert_eq!(old[0].schema(), want);
        assert_eq!(old[0].column(0).null_count(), 2);
        let rows: Vec<RollupLatency> = decode(&want, &old).unwrap();
        assert_eq!(rows[0].provider, Later(Some(String::new())));
        assert_eq!(
            (rows[0].latency_ms, rows[0].requests),
            (Some(12.5), Some(4))
        );
        assert_eq!((rows[1].latency_ms, rows[1].requests), (None, Some(1)));

        // A current one: every column there, view strings cast to dictionaries.
        let (schema, batches) = batch(vec![
            ("requests", Arc::new(Int32Array::from(vec![7])) as ArrayRef),
            ("route", Arc::new(StringViewArray::from(vec![Some("rag")]))),
            ("model", Arc::new(StringArray::from(vec!["m"]))),
            ("provider", Arc::new(StringArray::from(vec!["p"]))),
            (
                "latency_ms",
                Arc::new(arrow::array::Float64Array::from(vec![3.0])),
            ),
        ]);
        let (new, all_there) = conform::<RollupLatency>("new.parquet", &schema, &batches).unwrap();
        assert!(all_there);
        assert_eq!(new[0].schema(), want);
        let rows: Vec<RollupLatency> = decode(&want, &new).unwrap();
        assert_eq!(rows[0].route, Later(Some(Some("rag".into()))));
        assert_eq!(rows[0].requests, Some(7));

        // A retyped column is an error naming the object.
        let (schema, batches) = batch(vec![
            (
                "latency_ms",
                Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
            ),
            ("requests", Arc::new(Int32Array::from(vec![1]))),
        ]);
        match conform::<RollupLatency>("bad.parquet", &schema, &batches) {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                "bad.parquet: column `latency_ms` is Utf8, expected a float"
            ),
            other => panic!("{other:?}"),
        }
        // Decimals keep their scale: no one type to conform to.
        assert!(conformed_schema::<RollupDaily>().is_err());
    }

    #[test]
    fn decimals_keep_their_scale_and_rescale_half_to_even() {
        let d = Dec {
            value: 1_250,
            scale: 4,
        };
        assert_eq!(d.to_string(), "0.1250");
        assert_eq!(d.at(2), 12);
        assert_eq!(
            Dec {
                value: 1_350,
                scale: 4
            }
            .at(2),
            14
        );
        assert_eq!(d.at(6), 125_000);
    }
}
