//! Synthetic but realistic request logs, for `tokenledger demo` and `gen`.
//!
//! Token lengths follow the empirical distributions of real traces (Azure LLM
//! inference traces for chat and code, Mooncake's Kimi trace for long-context
//! RAG and agents, including its ~37% prompt-prefix reuse); the quantile tables
//! below were computed offline by `benches/calibrate_traces.py`, and no trace
//! is read at run time. Arrivals follow a diurnal curve and a weekly pattern
//! with bursty minutes. Gateways log real-world mess: dated model snapshots,
//! provider-specific names, an unpriced model, duplicate deliveries (identical
//! and conflicting), rows that arrive a partition late, costs in EUR, and a
//! gateway price table that lags a price change.
//!
//! Pure generation: rows in, Parquet bytes out; the caller writes them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StructArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate, Weekday};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use crate::error::{Error, Result};

/// The SPEC 1.1 request-log layout, as gateways write it.
pub fn log_schema() -> SchemaRef {
    let tags = Fields::from(vec![
        Field::new("dept", DataType::Utf8, true),
        Field::new("project", DataType::Utf8, true),
        Field::new("task", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("tags", DataType::Struct(tags), true),
        Field::new("model", DataType::Utf8, false),
        Field::new("provider", DataType::Utf8, false),
        Field::new("route", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("error", DataType::Boolean, false),
        Field::new("cache_hit", DataType::Boolean, false),
        Field::new("citation_rate", DataType::Float64, true),
        Field::new("human_reviewed", DataType::Boolean, true),
        Field::new("human_approved", DataType::Boolean, true),
        Field::new("input_tokens", DataType::Int64, false),
        Field::new("output_tokens", DataType::Int64, false),
        Field::new("total_tokens", DataType::Int64, true),
        Field::new("cache_read_input_tokens", DataType::Int64, true),
        Field::new("cache_creation_input_tokens", DataType::Int64, true),
        Field::new("reasoning_output_tokens", DataType::Int64, true),
        Field::new("cost_per_1k", DataType::Float64, true),
        Field::new("cost_actual", DataType::Float64, true),
        Field::new("currency", DataType::Utf8, true),
    ]))
}

/// One logged request (a row of [`log_schema`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub ts_us: i64,
    pub trace_id: String,
    pub dept: Option<String>,
    pub project: Option<String>,
    pub task: Option<String>,
    pub model: String,
    pub provider: String,
    pub route: Option<String>,
    pub region: Option<String>,
    pub latency_ms: Option<f64>,
    pub error: bool,
    pub cache_hit: bool,
    pub citation_rate: Option<f64>,
    pub human_reviewed: Option<bool>,
    pub human_approved: Option<bool>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: Option<i64>,
    pub cache_read_input_tokens: Option<i64>,
    pub cache_creation_input_tokens: Option<i64>,
    pub reasoning_output_tokens: Option<i64>,
    pub cost_per_1k: Option<f64>,
    pub cost_actual: Option<f64>,
    pub currency: Option<String>,
}

impl LogRow {
    /// A plain successful request (for tests and fixtures).
    pub fn new(
        ts_us: i64,
        trace_id: &str,
        provider: &str,
        model: &str,
        input: i64,
        output: i64,
    ) -> Self {
        LogRow {
            ts_us,
            trace_id: trace_id.to_string(),
            dept: None,
            project: None,
            task: None,
            model: model.to_string(),
            provider: provider.to_string(),
            route: None,
            region: None,
            latency_ms: None,
            error: false,
            cache_hit: false,
            citation_rate: None,
            human_reviewed: None,
            human_approved: None,
            input_tokens: input,
            output_tokens: output,
            total_tokens: Some(input + output),
            cache_read_input_tokens: None,
            cache_creation_input_tokens: None,
            reasoning_output_tokens: None,
            cost_per_1k: None,
            cost_actual: None,
            currency: None,
        }
    }
}

/// Rows as one Arrow batch of [`log_schema`].
pub fn to_batch(rows: &[LogRow]) -> RecordBatch {
    let n = rows.len();
    let mut ts = Vec::with_capacity(n);
    let mut trace = StringBuilder::with_capacity(n, n * 32);
    let (mut dept, mut project, mut task) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut model, mut provider, mut route, mut region, mut currency) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut latency, mut citation, mut cpk, mut cost) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let (mut error, mut hit, mut reviewed, mut approved) = (
        BooleanBuilder::with_capacity(n),
        BooleanBuilder::with_capacity(n),
        BooleanBuilder::with_capacity(n),
        BooleanBuilder::with_capacity(n),
    );
    let mut ints: [Int64Builder; 6] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    for r in rows {
        ts.push(r.ts_us);
        trace.append_value(&r.trace_id);
        dept.append_option(r.dept.as_deref());
        project.append_option(r.project.as_deref());
        task.append_option(r.task.as_deref());
        model.append_value(&r.model);
        provider.append_value(&r.provider);
        route.append_option(r.route.as_deref());
        region.append_option(r.region.as_deref());
        currency.append_option(r.currency.as_deref());
        latency.append_option(r.latency_ms);
        citation.append_option(r.citation_rate);
        cpk.append_option(r.cost_per_1k);
        cost.append_option(r.cost_actual);
        error.append_value(r.error);
        hit.append_value(r.cache_hit);
        reviewed.append_option(r.human_reviewed);
        approved.append_option(r.human_approved);
        ints[0].append_value(r.input_tokens);
        ints[1].append_value(r.output_tokens);
        ints[2].append_option(r.total_tokens);
        ints[3].append_option(r.cache_read_input_tokens);
        ints[4].append_option(r.cache_creation_input_tokens);
        ints[5].append_option(r.reasoning_output_tokens);
    }
    let schema = log_schema();
    let DataType::Struct(tag_fields) = schema.field(2).data_type().clone() else {
        unreachable!("tags is a struct")
    };
    let tags = StructArray::new(
        tag_fields,
        vec![
            Arc::new(dept.finish()) as ArrayRef,
            Arc::new(project.finish()),
            Arc::new(task.finish()),
        ],
        None,
    );
    let [i0, i1, i2, i3, i4, i5] = ints.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            Arc::new(trace.finish()),
            Arc::new(tags),
            Arc::new(model.finish()),
            Arc::new(provider.finish()),
            Arc::new(route.finish()),
            Arc::new(region.finish()),
            Arc::new(latency.finish()),
            Arc::new(error.finish()),
            Arc::new(hit.finish()),
            Arc::new(citation.finish()),
            Arc::new(reviewed.finish()),
            Arc::new(approved.finish()),
            i0,
            i1,
            i2,
            i3,
            i4,
            i5,
            Arc::new(cpk.finish()),
            Arc::new(cost.finish()),
            Arc::new(currency.finish()),
        ],
    )
    .expect("columns match the log schema")
}

/// Rows as a Parquet file (snappy, row groups of `row_group` rows).
pub fn to_parquet(rows: &[LogRow], row_group: usize) -> Result<Vec<u8>> {
    let mut w = ArrowWriter::try_new(Vec::new(), log_schema(), Some(writer_properties(row_group)))
        .map_err(parquet_error)?;
    for chunk in rows.chunks(SINK_BATCH) {
        w.write(&to_batch(chunk)).map_err(parquet_error)?;
    }
    w.into_inner().map_err(parquet_error)
}

fn writer_properties(row_group: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group.max(1)))
        .build()
}

/// Rows written as a Parquet file as they come (snappy, row groups of
/// `row_group` rows): only the encoded bytes and one batch of rows are
/// held, so an object of any size can be generated. The bytes equal
/// [`to_parquet`]'s for the same rows.
pub struct ParquetSink {
    writer: ArrowWriter<Vec<u8>>,
    pending: Vec<LogRow>,
    rows: usize,
}

/// Rows per batch handed to the Parquet writer.
const SINK_BATCH: usize = 65_536;

fn parquet_error(e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("writing Parquet: {e}"))
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl ParquetSink {
    pub fn new(row_group: usize) -> Result<Self> {
        let writer =
            ArrowWriter::try_new(Vec::new(), log_schema(), Some(writer_properties(row_group)))
                .map_err(parquet_error)?;
        Ok(ParquetSink {
            writer,
            pending: Vec::with_capacity(SINK_BATCH),
            rows: 0,
        })
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, row: LogRow) -> Result<()> {
        self.pending.push(row);
        self.rows += 1;
        if self.pending.len() == SINK_BATCH {
            self.writer
                .write(&to_batch(&self.pending))
                .map_err(parquet_error)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The whole file.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        if !self.pending.is_empty() {
            self.writer
                .write(&to_batch(&self.pending))
                .map_err(parquet_error)?;
        }
        self.writer.into_inner().map_err(parquet_error)
    }
}

// ---------------------------------------------------------------------------
// Calibrated distributions

/// Quantile knots (0, 5, 10, 20, ..., 90, 95, 99, 100 %) of token counts.
const Q_LEVELS: [f64; 14] = [
    0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
];

/// A token-length distribution given by quantile knots.
#[derive(Debug, Clone, Copy)]
struct Lengths {
    input: [f64; 14],
    output: [f64; 14],
}

/// Azure LLM inference trace, conversation (2023-11-16, 19,366 requests).
const AZURE_CONV: Lengths = Lengths {
    input: [
        2.0, 181.0, 207.0, 387.0, 403.0, 703.0, 1020.0, 1071.0, 1130.0, 1315.0, 2734.0, 4083.0,
        4142.0, 14050.0,
    ],
    output: [
        7.0, 41.0, 54.0, 77.0, 91.0, 103.0, 129.0, 177.0, 384.0, 400.0, 424.0, 451.0, 601.0, 1000.0,
    ],
};
/// Azure LLM inference trace, code (2023-11-16, 8,819 requests).
const AZURE_CODE: Lengths = Lengths {
    input: [
        3.0, 75.0, 147.0, 386.0, 770.0, 1075.0, 1469.0, 1909.0, 2433.0, 3192.0, 5188.0, 7303.0,
        7436.0, 7437.0,
    ],
    output: [
        6.0, 6.0, 7.0, 8.0, 9.0, 11.0, 13.0, 16.0, 20.0, 29.0, 55.0, 90.0, 251.0, 1899.0,
    ],
};
/// Mooncake (Kimi) conversation trace (12,031 requests).
const MOONCAKE: Lengths = Lengths {
    input: [
        891.0, 901.0, 964.0, 1662.0, 3263.0, 4993.0, 6909.0, 9570.0, 13196.0, 17869.0, 27367.0,
        39550.0, 85400.0, 126195.0,
    ],
    output: [
        1.0, 10.0, 24.0, 100.0, 213.0, 291.0, 350.0, 399.0, 447.0, 504.0, 597.0, 698.0, 1119.0,
        2000.0,
    ],
};
/// Share of prompt-prefix blocks seen before in the Mooncake trace.
const MOONCAKE_PREFIX_REUSE: f64 = 0.366;

/// Inverse CDF through the knots, interpolating in log space.
fn sample_knots(knots: &[f64; 14], u: f64) -> f64 {
    let i = Q_LEVELS.partition_point(|&q| q <= u).clamp(1, 13);
    let (q0, q1) = (Q_LEVELS[i - 1], Q_LEVELS[i]);
    let (a, b) = (knots[i - 1].max(1.0).ln(), knots[i].max(1.0).ln());
    let t = if q1 > q0 { (u - q0) / (q1 - q0) } else { 0.0 };
    (a + t * (b - a)).exp()
}

// ---------------------------------------------------------------------------
// The organisation the demo simulates

struct ModelSpec {
    provider: &'static str,
    model: &'static str,
    /// Time to first token (median, ms) and per output token (ms).
    ttft_ms: f64,
    ms_per_token: f64,
    error_rate: f64,
    /// Prompt caching: none, automatic reads (OpenAI, Gemini), or explicit
    /// reads and writes (Anthropic, Bedrock).
    caching: Caching,
    reasoning: bool,
    /// What the gateway believes the price is (USD per 1k in, out): gateways
    /// keep their own table, which can lag.
    gateway_price: (f64, f64),
}

#[derive(Clone, Copy, PartialEq)]
enum Caching {
    None,
    Reads,
    ReadsWrites,
}

const MODELS: &[ModelSpec] = &[
    ModelSpec {
        provider: "openai",
        model: "gpt-4o-mini",
        ttft_ms: 350.0,
        ms_per_token: 9.0,
        error_rate: 0.008,
        caching: Caching::Reads,
        reasoning: false,
        gateway_price: (0.00015, 0.0006),
    },
    ModelSpec {
        provider: "openai",
        model: "gpt-4o-2024-08-06",
        ttft_ms: 450.0,
        ms_per_token: 14.0,
        error_rate: 0.010,
        caching: Caching::Reads,
        reasoning: false,
        gateway_price: (0.0025, 0.01),
    },
    ModelSpec {
        provider: "openai",
        model: "o3-mini",
        ttft_ms: 1800.0,
        ms_per_token: 11.0,
        error_rate: 0.015,
        caching: Caching::Reads,
        reasoning: true,
        gateway_price: (0.0011, 0.0044),
    },
    ModelSpec {
        provider: "anthropic",
        model: "claude-sonnet-4-20250514",
        ttft_ms: 700.0,
        ms_per_token: 18.0,
        error_rate: 0.012,
        caching: Caching::ReadsWrites,
        reasoning: false,
        gateway_price: (0.003, 0.015),
    },
    ModelSpec {
        provider: "azure_openai",
        model: "gpt-4o",
        ttft_ms: 500.0,
        ms_per_token: 15.0,
        error_rate: 0.020,
        caching: Caching::Reads,
        reasoning: false,
        gateway_price: (0.0025, 0.01),
    },
    ModelSpec {
        provider: "google",
        model: "gemini-2.5-flash",
        ttft_ms: 300.0,
        ms_per_token: 5.0,
        error_rate: 0.009,
        caching: Caching::Reads,
        reasoning: false,
        gateway_price: (0.0003, 0.0025),
    },
    ModelSpec {
        provider: "bedrock",
        model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ttft_ms: 800.0,
        ms_per_token: 19.0,
        error_rate: 0.011,
        caching: Caching::ReadsWrites,
        reasoning: false,
        gateway_price: (0.0033, 0.0165),
    },
    ModelSpec {
        provider: "mistral",
        model: "mistral-large-2411",
        ttft_ms: 400.0,
        ms_per_token: 12.0,
        error_rate: 0.010,
        caching: Caching::None,
        reasoning: false,
        gateway_price: (0.002, 0.006),
    },
];

#[derive(Clone, Copy)]
enum Task {
    Chat,
    Code,
    Rag,
    Summarize,
    Classify,
    Agent,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Chat => "chat",
            Task::Code => "code",
            Task::Rag => "rag",
            Task::Summarize => "summarize",
            Task::Classify => "classify",
            Task::Agent => "agent",
        }
    }
    fn lengths(self) -> Lengths {
        match self {
            Task::Chat | Task::Summarize | Task::Classify => AZURE_CONV,
            Task::Code => AZURE_CODE,
            Task::Rag | Task::Agent => MOONCAKE,
        }
    }
    /// Model mix: (index into MODELS, weight).
    fn routes(self) -> &'static [(usize, f64)] {
        match self {
            Task::Chat => &[(0, 0.5), (3, 0.2), (5, 0.2), (4, 0.1)],
            Task::Code => &[(1, 0.4), (3, 0.4), (2, 0.2)],
            Task::Rag => &[(5, 0.4), (0, 0.4), (6, 0.2)],
            Task::Summarize => &[(0, 0.6), (7, 0.2), (5, 0.2)],
            Task::Classify => &[(0, 1.0)],
            Task::Agent => &[(3, 0.6), (1, 0.4)],
        }
    }
}

/// Who calls, for what, and how much: (dept, project, task, weight).
type Workload = (
    Option<&'static str>,
    Option<&'static str>,
    Option<Task>,
    f64,
);

/// `None` dept: an untagged caller.
const WORKLOADS: &[Workload] = &[
    (
        Some("support"),
        Some("helpdesk-bot"),
        Some(Task::Chat),
        0.22,
    ),
    (Some("support"), Some("helpdesk-bot"), Some(Task::Rag), 0.12),
    (
        Some("support"),
        Some("ticket-triage"),
        Some(Task::Classify),
        0.10,
    ),
    (
        Some("engineering"),
        Some("code-assist"),
        Some(Task::Code),
        0.14,
    ),
    (
        Some("engineering"),
        Some("ci-agent"),
        Some(Task::Agent),
        0.05,
    ),
    (Some("research"), Some("lit-review"), Some(Task::Rag), 0.08),
    (
        Some("research"),
        Some("lit-review"),
        Some(Task::Summarize),
        0.05,
    ),
    (Some("sales"), Some("crm-assist"), Some(Task::Chat), 0.08),
    (
        Some("sales"),
        Some("crm-assist"),
        Some(Task::Summarize),
        0.04,
    ),
    (
        Some("marketing"),
        Some("content-gen"),
        Some(Task::Chat),
        0.06,
    ),
    (Some("marketing"), None, Some(Task::Summarize), 0.03),
    (None, None, None, 0.03),
];

/// Relative traffic of a UTC hour: night trough, a European morning and an
/// American afternoon.
fn hourly_weight(hour: u32) -> f64 {
    let h = hour as f64;
    let eu = (-((h - 10.0) / 3.0).powi(2)).exp();
    let us = (-((h - 17.0) / 3.5).powi(2)).exp();
    0.12 + eu + 1.2 * us
}

fn weekday_factor(date: NaiveDate) -> f64 {
    match date.weekday() {
        Weekday::Sat => 0.45,
        Weekday::Sun => 0.38,
        Weekday::Mon => 1.05,
        _ => 1.0,
    }
}

/// Gateway-logged EUR per USD (the EU gateway logs costs in EUR).
const GATEWAY_EUR_PER_USD: f64 = 0.92;

/// Knobs of one generated day.
#[derive(Debug, Clone, Copy)]
pub struct DayShape {
    /// Share of requests delivered twice, identically.
    pub duplicate_share: f64,
    /// Share of requests delivered twice with different content (a retry record).
    pub conflict_share: f64,
    /// Share of the last two hours' requests that arrive in the next partition.
    pub late_share: f64,
}

impl Default for DayShape {
    fn default() -> Self {
        DayShape {
            duplicate_share: 0.004,
            conflict_share: 0.0005,
            late_share: 0.03,
        }
    }
}

/// One generated day: rows for the day's own partition and rows that arrive
/// in the next one, each sorted by time.
#[derive(Debug, Default)]
pub struct GeneratedDay {
    pub on_time: Vec<LogRow>,
    pub late: Vec<LogRow>,
}

const US_PER_DAY: i64 = 86_400_000_000;

/// Generate `requests` requests on UTC `date` (plus duplicate deliveries),
/// collected; for small days (the demo, tests).
pub fn generate_day(date: NaiveDate, requests: usize, shape: DayShape, seed: u64) -> GeneratedDay {
    let mut out = GeneratedDay::default();
    generate_day_with(date, requests, shape, seed, &mut |row, late| {
        if late {
            out.late.push(row);
        } else {
            out.on_time.push(row);
        }
    });
    out.on_time.sort_by_key(|r| r.ts_us);
    out.late.sort_by_key(|r| r.ts_us);
    out
}

/// Generate a day, handing each row to `emit` with whether it arrives late
/// (in the next day's partition). Rows come minute by minute, so memory stays
/// flat however large the day.
pub fn generate_day_with(
    date: NaiveDate,
    requests: usize,
    shape: DayShape,
    seed: u64,
    emit: &mut dyn FnMut(LogRow, bool),
) {
    let mut rng = SmallRng::seed_from_u64(
        seed ^ (date.num_days_from_ce() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let day_start_us = date
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_micros();

    // Per-minute weights: diurnal curve times bursty noise.
    let burst = LogNormal::new(0.0, 0.35).expect("valid lognormal");
    let mut weights: Vec<f64> = (0..1440u32)
        .map(|m| hourly_weight(m / 60) * burst.sample(&mut rng))
        .collect();
    // A few spikes: a batch job kicking off.
    for _ in 0..3 {
        let m = rng.random_range(0..1440);
        for w in weights.iter_mut().skip(m).take(4) {
            *w *= 4.0;
        }
    }
    let total: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights
        .iter()
        .map(|w| w / total * requests as f64)
        .collect();
    let mut counts: Vec<usize> = expected.iter().map(|e| e.floor() as usize).collect();
    let mut remainder = requests - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..1440).collect();
    order.sort_by(|&a, &b| {
        let fa = expected[a] - expected[a].floor();
        let fb = expected[b] - expected[b].floor();
        fb.partial_cmp(&fa)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    for &m in &order {
        if remainder == 0 {
            break;
        }
        counts[m] += 1;
        remainder -= 1;
    }

    let workload_total: f64 = WORKLOADS.iter().map(|w| w.3).sum();
    let late_from = day_start_us + US_PER_DAY - 2 * 3_600_000_000;
    let mut offsets = Vec::new();
    for (minute, &count) in counts.iter().enumerate() {
        offsets.clear();
        offsets.extend((0..count).map(|_| rng.random_range(0..60_000_000i64)));
        offsets.sort_unstable();
        for &off in &offsets {
            let ts_us = day_start_us + minute as i64 * 60_000_000 + off;
            let row = request(&mut rng, ts_us, workload_total);
            let late = ts_us >= late_from && rng.random_bool(shape.late_share);
            let dup = rng.random::<f64>();
            if dup < shape.duplicate_share {
                emit(row.clone(), late);
            } else if dup < shape.duplicate_share + shape.conflict_share {
                // A retry record: same trace, logged a moment later, other latency.
                let mut retry = row.clone();
                retry.ts_us += rng.random_range(1_000_000..5_000_000);
                retry.latency_ms = retry.latency_ms.map(|l| (l * 1.7).round());
                emit(retry, late);
            }
            emit(row, late);
        }
    }
}

fn pick<T: Copy>(rng: &mut SmallRng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|i| i.1).sum();
    let mut u = rng.random::<f64>() * total;
    for &(item, w) in items {
        if u < w {
            return item;
        }
        u -= w;
    }
    items[items.len() - 1].0
}

fn request(rng: &mut SmallRng, ts_us: i64, workload_total: f64) -> LogRow {
    let mut u = rng.random::<f64>() * workload_total;
    let mut workload = WORKLOADS[0];
    for w in WORKLOADS {
        if u < w.3 {
            workload = *w;
            break;
        }
        u -= w.3;
    }
    let (dept, project, task_opt, _) = workload;
    let task = task_opt.unwrap_or(Task::Chat);
    let spec = &MODELS[pick(rng, task.routes())];
    let lengths = task.lengths();
    let mut input = sample_knots(&lengths.input, rng.random()).round() as i64;
    let mut output = sample_knots(&lengths.output, rng.random()).round() as i64;
    match task {
        Task::Summarize => input *= 2,
        Task::Classify => output = sample_knots(&AZURE_CODE.output, rng.random()).round() as i64,
        _ => {}
    }
    let error = rng.random_bool(spec.error_rate);
    if error {
        output = 0;
    }
    // The gateway's response cache: a hit makes no provider call.
    let cache_hit = !error
        && rng.random_bool(match task {
            Task::Classify => 0.12,
            Task::Chat => 0.05,
            _ => 0.02,
        });
    let reuse = match task {
        Task::Rag | Task::Agent => MOONCAKE_PREFIX_REUSE,
        _ => 0.10,
    };
    let (mut cache_read, mut cache_write) = (None, None);
    if spec.caching != Caching::None && input >= 1024 && rng.random_bool(0.6) {
        let read =
            ((input as f64) * reuse * rng.random_range(0.5..1.5)).min(input as f64 * 0.95) as i64;
        cache_read = Some(read);
        if spec.caching == Caching::ReadsWrites {
            let write = ((input - read) as f64 * rng.random_range(0.0..0.4)) as i64;
            cache_write = Some(write);
        }
    } else if spec.caching != Caching::None {
        cache_read = Some(0);
        if spec.caching == Caching::ReadsWrites {
            cache_write = Some(0);
        }
    }
    let reasoning = spec.reasoning.then_some((output as f64 * 0.6) as i64);
    let noise = LogNormal::new(0.0, 0.3)
        .expect("valid lognormal")
        .sample(rng);
    let latency = if cache_hit {
        rng.random_range(4.0..25.0_f64).round()
    } else if error && rng.random_bool(0.3) {
        30_000.0
    } else {
        ((spec.ttft_ms + output as f64 * spec.ms_per_token) * noise).round()
    };
    let eu = rng.random_bool(0.25);
    let mut total = Some(input + output);
    if rng.random_bool(0.001) {
        // A gateway that adds reasoning tokens twice.
        total = Some(input + output + reasoning.unwrap_or(output));
    }
    // The gateway's own price table; it knows nothing of the demo's
    // gpt-4o-mini price cut and goes on logging the old price.
    let (pin, pout) = spec.gateway_price;
    let usd = if cache_hit {
        0.0
    } else {
        (input as f64 * pin + output as f64 * pout) / 1000.0
    };
    let (cost, currency) = if eu {
        (usd * GATEWAY_EUR_PER_USD, "EUR")
    } else {
        (usd, "USD")
    };
    let cost = (cost * 1e8).round() / 1e8;
    let tokens = (input + output).max(1) as f64;
    let reviewed = matches!(task, Task::Rag | Task::Summarize) && rng.random_bool(0.08);
    LogRow {
        ts_us,
        trace_id: format!("{:032x}", rng.random::<u128>()),
        dept: dept.map(str::to_string),
        project: project.map(str::to_string),
        task: task_opt.map(|t| t.name().to_string()),
        model: spec.model.to_string(),
        provider: spec.provider.to_string(),
        route: Some(match spec.provider {
            "anthropic" => "/v1/messages".to_string(),
            _ => "/v1/chat/completions".to_string(),
        }),
        region: Some(if eu { "eu-west-1" } else { "us-east-1" }.to_string()),
        latency_ms: Some(latency),
        error,
        cache_hit,
        citation_rate: matches!(task, Task::Rag).then(|| {
            let c: f64 = 0.45 + 0.55 * rng.random::<f64>().sqrt();
            (c * 1000.0).round() / 1000.0
        }),
        human_reviewed: Some(reviewed),
        human_approved: reviewed.then(|| rng.random_bool(0.86)),
        input_tokens: input,
        output_tokens: output,
        total_tokens: total,
        cache_read_input_tokens: cache_read,
        cache_creation_input_tokens: cache_write,
        reasoning_output_tokens: reasoning,
        cost_per_1k: Some(((cost / tokens * 1000.0) * 1e8).round() / 1e8),
        cost_actual: Some(cost),
        currency: Some(currency.to_string()),
    }
}

/// Requests on a day of the demo: weekday pattern and slow growth.
pub fn demo_volume(date: NaiveDate, first: NaiveDate, base: usize) -> usize {
    let growth = 1.0 + 0.01 * (date - first).num_days() as f64;
    (base as f64 * weekday_factor(date) * growth).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knots_reproduce_the_trace_quantiles() {
        assert_eq!(sample_knots(&AZURE_CONV.input, 0.5).round(), 1020.0);
        assert_eq!(sample_knots(&MOONCAKE.input, 0.0).round(), 891.0);
        assert_eq!(sample_knots(&MOONCAKE.input, 1.0).round(), 126195.0);
        let mid = sample_knots(&AZURE_CODE.output, 0.55);
        assert!(mid > 13.0 && mid < 16.0, "{mid}");
    }

    #[test]
    fn a_day_is_deterministic_sorted_and_has_the_requested_size() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 7).unwrap();
        let shape = DayShape {
            duplicate_share: 0.01,
            conflict_share: 0.01,
            ..DayShape::default()
        };
        let a = generate_day(date, 5_000, shape, 42);
        let b = generate_day(date, 5_000, shape, 42);
        assert_eq!(a.on_time, b.on_time);
        let all: usize = a.on_time.len() + a.late.len();
        let unique: std::collections::HashSet<&str> = a
            .on_time
            .iter()
            .chain(&a.late)
            .map(|r| r.trace_id.as_str())
            .collect();
        assert_eq!(unique.len(), 5_000);
        assert!(all > 5_050 && all < 5_200, "{all} rows with duplicates");
        assert!(a.on_time.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
        assert!(!a.late.is_empty());
        let start = date
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        assert!(
            a.late
                .iter()
                .all(|r| r.ts_us >= start + US_PER_DAY - 2 * 3_600_000_000)
        );
        // A day's traffic peaks in the afternoon, not at night.
        let hour = |h: i64| {
            a.on_time
                .iter()
                .filter(|r| (r.ts_us - start) / 3_600_000_000 == h)
                .count()
        };
        assert!(hour(17) > 3 * hour(3));
    }

    #[test]
    fn rows_round_trip_through_parquet() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 7).unwrap();
        let day = generate_day(date, 500, DayShape::default(), 1);
        let bytes = to_parquet(&day.on_time, 128).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap();
        assert_eq!(
            reader.metadata().num_row_groups(),
            day.on_time.len().div_ceil(128)
        );
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, day.on_time.len());
    }
}
