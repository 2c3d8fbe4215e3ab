//! The hand-computed fixture lake: a handful of requests on Sunday
//! 2026-03-08 that exercise every trap of SPEC 1-2. The expected numbers in
//! `metrics.rs` are worked out by hand from the rows below (see the comments
//! next to each row).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMillisecondArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate};
use tokenledger::synth::{LogRow, to_parquet};

pub const DATE: &str = "2026-03-08";

pub fn date() -> NaiveDate {
    NaiveDate::parse_from_str(DATE, "%Y-%m-%d").unwrap()
}

/// Microseconds since the epoch of an RFC 3339 instant.
pub fn us(t: &str) -> i64 {
    DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros()
}

pub const PRICES: &str = "\
provider,model,input_usd_per_1k,output_usd_per_1k,cache_read_usd_per_1k,cache_write_usd_per_1k,valid_from,valid_to
openai,gpt-4o,0.0025,0.01,0.00125,,2024-01-01,2026-03-08T12:00:00Z
openai,gpt-4o,0.002,0.008,0.001,,2026-03-08T12:00:00Z,
anthropic,claude-sonnet,0.003,0.015,0.0003,0.00375,2024-01-01,
";

/// EUR on Thursday, Friday and Monday: the Sunday report date uses Friday's.
pub const FX: &str = "\
date,currency,usd_per_unit
2026-03-05,EUR,1.08
2026-03-06,EUR,1.10
2026-03-09,EUR,1.20
";

fn tags(r: &mut LogRow, dept: Option<&str>, project: Option<&str>, task: Option<&str>) {
    r.dept = dept.map(str::to_string);
    r.project = project.map(str::to_string);
    r.task = task.map(str::to_string);
}

fn row(
    ts: &str,
    trace: &str,
    provider: &str,
    model: &str,
    input: i64,
    output: i64,
    latency: f64,
) -> LogRow {
    let mut r = LogRow::new(us(ts), trace, provider, model, input, output);
    r.latency_ms = Some(latency);
    r
}

/// Invoices in three real formats (see `reconcile.rs` for the expected lines):
/// OpenAI bills the provider as a whole (0.04 USD on the 8th, 1.00 on the
/// 7th); Anthropic by token type in cents, exactly our split of
/// claude-sonnet (uncached input 0.0132 = r4 4000 + r8 300 + r9 100 tokens at
/// 0.003/1k; cache read 0.0012 = 4000 at 0.0003/1k; cache write 0.0075 =
/// 2000 at 0.00375/1k; output 0.03075 = 2000 + 30 + 20 at 0.015/1k);
/// mistral in EUR (0.20 at Friday's 1.10 = 0.22 USD, all its usage unpriced);
/// cohere billed without any usage (and a line of February, outside the
/// month to date).
pub const INVOICES_NORMALIZED: &str = "\
provider,date,model,amount,currency
mistral,2026-03-08,,0.20,EUR
cohere,2026-03-08,,0.50,USD
cohere,2026-02-27,,9.00,USD
";

pub const INVOICES_OPENAI: &str = r#"{"object": "page", "data": [
 {"object": "bucket", "start_time": 1772841600, "end_time": 1772928000, "results": [
  {"object": "organization.costs.result", "amount": {"value": 1.0, "currency": "usd"}, "line_item": null, "project_id": null}]},
 {"object": "bucket", "start_time": 1772928000, "end_time": 1773014400, "results": [
  {"object": "organization.costs.result", "amount": {"value": 0.04, "currency": "usd"}, "line_item": null, "project_id": null}]}
], "has_more": false, "next_page": null}"#;

pub const INVOICES_ANTHROPIC: &str = r#"{"data": [{"starting_at": "2026-03-08T00:00:00Z", "ending_at": "2026-03-09T00:00:00Z", "results": [
 {"currency": "USD", "amount": "1.32", "model": "claude-sonnet", "cost_type": "tokens", "token_type": "uncached_input_tokens"},
 {"currency": "USD", "amount": "0.12", "model": "claude-sonnet", "cost_type": "tokens", "token_type": "cache_read_input_tokens"},
 {"currency": "USD", "amount": "0.75", "model": "claude-sonnet", "cost_type": "tokens", "token_type": "cache_creation.ephemeral_5m_input_tokens"},
 {"currency": "USD", "amount": "3.075", "model": "claude-sonnet", "cost_type": "tokens", "token_type": "output_tokens"}
]}], "has_more": false, "next_page": null}"#;

/// `requests/date=2026-03-08/part-a.parquet`
pub fn part_a() -> Vec<LogRow> {
    let mut rows = Vec::new();
    // r1: exactly midnight (in the day), old gpt-4o price: 1000*0.0025/1000 + 500*0.01/1000 = 0.0075.
    // total_tokens 1600 disagrees with 1000 + 500.
    let mut r1 = row(
        "2026-03-08T00:00:00Z",
        "t1",
        "openai",
        "gpt-4o",
        1000,
        500,
        100.0,
    );
    tags(&mut r1, Some("research"), Some("alpha"), Some("chat"));
    r1.total_tokens = Some(1600);
    r1.citation_rate = Some(0.8);
    r1.human_reviewed = Some(true);
    r1.human_approved = Some(true);
    r1.cost_actual = Some(0.0075);
    r1.currency = Some("USD".into());
    rows.push(r1);
    // r2: a microsecond before the price change; 1000 of 2000 input tokens
    // from the prompt cache: 1000*0.0025 + 1000*0.00125 + 100*0.01, /1000 = 0.00475.
    // Logged 0.005 EUR at Friday's 1.10 = 0.0055 USD.
    let mut r2 = row(
        "2026-03-08T11:59:59.999999Z",
        "t2",
        "openai",
        "gpt-4o",
        2000,
        100,
        200.0,
    );
    tags(&mut r2, Some("research"), Some("alpha"), Some("chat"));
    r2.cache_read_input_tokens = Some(1000);
    r2.citation_rate = Some(0.6);
    r2.human_reviewed = Some(true);
    r2.human_approved = Some(false);
    r2.cost_actual = Some(0.005);
    r2.currency = Some("EUR".into());
    rows.push(r2);
    // r3: exactly at the price change, new price: 1000*0.002 + 1000*0.008, /1000 = 0.01.
    // Logged in GBP, which has no FX rate: left out of logged_cost_usd.
    let mut r3 = row(
        "2026-03-08T12:00:00Z",
        "t3",
        "openai",
        "gpt-4o",
        1000,
        1000,
        300.0,
    );
    tags(&mut r3, Some("research"), Some("beta"), Some("summarize"));
    r3.cost_actual = Some(0.01);
    r3.currency = Some("gbp".into());
    rows.push(r3);
    // r4: untagged, an error (priced like any request), cache read and write:
    // 4000*0.003 + 4000*0.0003 + 2000*0.00375 + 2000*0.015, /1000 = 0.0507.
    let mut r4 = row(
        "2026-03-08T13:00:00Z",
        "t4",
        "anthropic",
        "claude-sonnet",
        10000,
        2000,
        400.0,
    );
    r4.error = true;
    r4.cache_read_input_tokens = Some(4000);
    r4.cache_creation_input_tokens = Some(2000);
    rows.push(r4);
    // r5: a formula-looking dept, null task; a gateway cache hit: cost 0,
    // savings 500*0.003 + 200*0.015, /1000 = 0.0045.
    let mut r5 = row(
        "2026-03-08T14:00:00Z",
        "t5",
        "anthropic",
        "claude-sonnet",
        500,
        200,
        10.0,
    );
    tags(
        &mut r5,
        Some("=HYPERLINK(\"http://x\",\"y\")"),
        Some("beta"),
        None,
    );
    r5.cache_hit = true;
    r5.cost_actual = Some(0.0);
    r5.currency = Some("USD".into());
    rows.push(r5);
    // r6: a model without a price row: unpriced.
    let mut r6 = row(
        "2026-03-08T15:00:00Z",
        "t6",
        "mistral",
        "mistral-large",
        100,
        50,
        500.0,
    );
    tags(&mut r6, Some("research"), Some("alpha"), Some("chat"));
    r6.cost_actual = Some(0.0003);
    r6.currency = Some("USD".into());
    rows.push(r6);
    // r7: delivered twice, identically: 100*0.002 + 100*0.008, /1000 = 0.001.
    let mut r7 = row(
        "2026-03-08T16:00:00Z",
        "t7",
        "openai",
        "gpt-4o",
        100,
        100,
        50.0,
    );
    tags(&mut r7, Some("research"), Some("alpha"), Some("chat"));
    rows.push(r7.clone());
    rows.push(r7);
    // r13: same minute as r7 (qps_peak 2/60); cache read beyond input tokens: a
    // token-invariant violation; uncached max(100-150, 0) = 0:
    // 150*0.001 + 10*0.008, /1000 = 0.00023.
    let mut r13 = row(
        "2026-03-08T16:00:30Z",
        "t13",
        "openai",
        "gpt-4o",
        100,
        10,
        20.0,
    );
    tags(&mut r13, Some("ops"), Some("gamma"), Some("chat"));
    r13.cache_read_input_tokens = Some(150);
    rows.push(r13);
    // r8 (loser): the earlier of two conflicting records of t8.
    let mut r8 = row(
        "2026-03-08T17:00:00Z",
        "t8",
        "anthropic",
        "claude-sonnet",
        300,
        0,
        700.0,
    );
    tags(&mut r8, Some("ops"), Some("gamma"), Some("chat"));
    rows.push(r8);
    // r10 (loser): same ts and tokens as its copy in part-b; part-b's key is greater.
    let mut r10 = row(
        "2026-03-08T19:00:00Z",
        "t10",
        "openai",
        "gpt-4o",
        50,
        5,
        80.0,
    );
    tags(&mut r10, Some("ops"), Some("gamma"), Some("chat"));
    rows.push(r10);
    // r11: the day before, in this day's partition: not in the day.
    rows.push(row(
        "2026-03-07T23:59:59.999Z",
        "t11",
        "openai",
        "gpt-4o",
        1,
        1,
        1.0,
    ));
    // r12: the next midnight: not in the day.
    rows.push(row(
        "2026-03-09T00:00:00Z",
        "t12",
        "openai",
        "gpt-4o",
        1,
        1,
        1.0,
    ));
    // r17: 5 tokens at the old price: 5*0.0025/1000 = 0.0000125, a tie that
    // rounds half to even to 0.000012.
    let mut r17 = row("2026-03-08T10:00:00Z", "t17", "openai", "gpt-4o", 5, 0, 5.0);
    tags(&mut r17, Some("ops"), Some("delta"), Some("classify"));
    rows.push(r17);
    rows
}

/// `requests/date=2026-03-08/part-b.parquet`
pub fn part_b() -> Vec<LogRow> {
    let mut rows = Vec::new();
    // r8 (winner): the latest ts of t8: 300*0.003 + 30*0.015, /1000 = 0.00135; logged 0.0014 USD.
    let mut r8 = row(
        "2026-03-08T17:00:05Z",
        "t8",
        "anthropic",
        "claude-sonnet",
        300,
        30,
        800.0,
    );
    tags(&mut r8, Some("ops"), Some("gamma"), Some("chat"));
    r8.cost_actual = Some(0.0014);
    r8.currency = Some("USD".into());
    rows.push(r8);
    // r9: two records of t9 with the same ts; the one with more tokens wins:
    // 100*0.003 + 20*0.015, /1000 = 0.0006.
    let mut r9a = row(
        "2026-03-08T18:00:00Z",
        "t9",
        "anthropic",
        "claude-sonnet",
        100,
        10,
        60.0,
    );
    tags(&mut r9a, Some("ops"), Some("gamma"), Some("chat"));
    let mut r9b = r9a.clone();
    r9b.output_tokens = 20;
    r9b.total_tokens = Some(120);
    r9b.latency_ms = Some(70.0);
    rows.push(r9b);
    rows.push(r9a);
    // r10 (winner): ties on ts and tokens with part-a's copy; greater key wins:
    // 50*0.002 + 5*0.008, /1000 = 0.00014.
    let mut r10 = row(
        "2026-03-08T19:00:00Z",
        "t10",
        "openai",
        "gpt-4o",
        50,
        5,
        90.0,
    );
    tags(&mut r10, Some("ops"), Some("gamma"), Some("chat"));
    rows.push(r10);
    rows
}

/// `requests/date=2026-03-09/late.parquet`: another writer's layout:
/// millisecond naive timestamps, Int32 tokens, no optional columns but
/// latency, no tags.
pub fn late_file() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("provider", DataType::Utf8, false),
        Field::new("error", DataType::Boolean, false),
        Field::new("cache_hit", DataType::Boolean, false),
        Field::new("input_tokens", DataType::Int32, false),
        Field::new("output_tokens", DataType::Int32, false),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("extra_prompt_text", DataType::Utf8, true),
    ]));
    // r14: a late row of the day (23:30), arrived in the next partition:
    // 400*0.002 + 100*0.008, /1000 = 0.0016. r15: the next day.
    let ts = |t: &str| us(t) / 1000;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMillisecondArray::from(vec![
                ts("2026-03-08T23:30:00Z"),
                ts("2026-03-09T01:00:00Z"),
            ])) as ArrayRef,
            Arc::new(StringArray::from(vec!["t14", "t15"])),
            Arc::new(StringArray::from(vec!["gpt-4o", "gpt-4o"])),
            Arc::new(StringArray::from(vec!["openai", "openai"])),
            Arc::new(BooleanArray::from(vec![false, false])),
            Arc::new(BooleanArray::from(vec![false, false])),
            Arc::new(Int32Array::from(vec![400, 1])),
            Arc::new(Int32Array::from(vec![100, 1])),
            Arc::new(Float64Array::from(vec![150.0, 1.0])),
            Arc::new(StringArray::from(vec![Some("never read"), None])),
        ],
    )
    .unwrap();
    parquet_of(&batch)
}

/// `requests/date=2026-03-07/old.parquet`: nanosecond timestamps; a row of
/// the day before.
pub fn old_file() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+01:00".into())),
            false,
        ),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("provider", DataType::Utf8, false),
        Field::new("error", DataType::Boolean, false),
        Field::new("cache_hit", DataType::Boolean, false),
        Field::new("input_tokens", DataType::Int32, false),
        Field::new("output_tokens", DataType::Int32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampNanosecondArray::from(vec![us("2026-03-07T12:00:00Z") * 1000])
                    .with_timezone("+01:00"),
            ) as ArrayRef,
            Arc::new(StringArray::from(vec!["t16"])),
            Arc::new(StringArray::from(vec!["gpt-4o"])),
            Arc::new(StringArray::from(vec!["openai"])),
            Arc::new(BooleanArray::from(vec![false])),
            Arc::new(BooleanArray::from(vec![false])),
            Arc::new(Int32Array::from(vec![7])),
            Arc::new(Int32Array::from(vec![7])),
        ],
    )
    .unwrap();
    parquet_of(&batch)
}

pub fn parquet_of(batch: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

/// Every object of the fixture lake, by key.
pub fn objects() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "requests/date=2026-03-08/part-a.parquet".into(),
            to_parquet(&part_a(), 4).unwrap(),
        ),
        (
            "requests/date=2026-03-08/part-b.parquet".into(),
            to_parquet(&part_b(), 1024).unwrap(),
        ),
        ("requests/date=2026-03-08/_SUCCESS".into(), Vec::new()),
        ("requests/date=2026-03-09/late.parquet".into(), late_file()),
        ("requests/date=2026-03-07/old.parquet".into(), old_file()),
        ("prices.csv".into(), PRICES.as_bytes().to_vec()),
        ("fx.csv".into(), FX.as_bytes().to_vec()),
        (
            "invoices/normalized/2026-03.csv".into(),
            INVOICES_NORMALIZED.as_bytes().to_vec(),
        ),
        (
            "invoices/openai/costs-2026-03.json".into(),
            INVOICES_OPENAI.as_bytes().to_vec(),
        ),
        (
            "invoices/anthropic/cost_report-2026-03-08.json".into(),
            INVOICES_ANTHROPIC.as_bytes().to_vec(),
        ),
    ]
}

/// Write the fixture lake under `dir`.
pub fn write_lake(dir: &Path) {
    for (key, bytes) in objects() {
        let path = dir.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// A fresh fixture lake in a temporary directory.
pub fn lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    dir
}

/// Read a published report.
pub fn report(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("reports").join(format!("date={DATE}")).join(name)).unwrap()
}

/// Whether a report of the day was published.
pub fn report_exists(dir: &Path, name: &str) -> bool {
    dir.join("reports")
        .join(format!("date={DATE}"))
        .join(name)
        .exists()
}
