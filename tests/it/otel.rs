//! Logs written with OpenTelemetry GenAI attribute names, read through the
//! `otel_genai` preset: integer nanosecond timestamps, dotted column names,
//! failures as a non-empty `error.type`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tokenledger::config::{Config, Overrides};

use crate::fixture::{self, report};

/// Run the fixture day on `lake` under the `otel_genai` preset.
async fn run_otel(lake: &std::path::Path) -> tokenledger::pipeline::RunSummary {
    let config = Config::from_sources(
        "[columns]\npreset = \"otel_genai\"\n",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap();
    tokenledger::pipeline::run(&config, fixture::date())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_genai_preset_reads_otel_attribute_columns() {
    let lake = tempfile::tempdir().unwrap();
    let ns = |t: &str| fixture::us(t) * 1000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("start_time_unix_nano", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("gen_ai.request.model", DataType::Utf8, false),
        Field::new("gen_ai.provider.name", DataType::Utf8, false),
        Field::new("gen_ai.usage.input_tokens", DataType::Int64, false),
        Field::new("gen_ai.usage.output_tokens", DataType::Int64, false),
        Field::new(
            "gen_ai.usage.cache_read.input_tokens",
            DataType::Int64,
            true,
        ),
        Field::new("error.type", DataType::Utf8, true),
        Field::new("cache_hit", DataType::Boolean, false),
        Field::new("duration_ms", DataType::Float64, true),
    ]));
    // o1: old price, 200 of 1000 input tokens cached:
    //     800*0.0025 + 200*0.00125 + 100*0.01, /1000 = 0.00325
    // o2: a timeout (error.type set), new price: 500*0.002 + 50*0.008, /1000 = 0.0014
    // o3: error.type empty is no error: 100*0.003 + 10*0.015, /1000 = 0.00045
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![
                ns("2026-03-08T01:00:00Z"),
                ns("2026-03-08T13:00:00Z"),
                ns("2026-03-08T14:00:00Z"),
            ])) as ArrayRef,
            Arc::new(StringArray::from(vec!["o1", "o2", "o3"])),
            Arc::new(StringArray::from(vec!["gpt-4o", "gpt-4o", "claude-sonnet"])),
            Arc::new(StringArray::from(vec!["openai", "openai", "anthropic"])),
            Arc::new(Int64Array::from(vec![1000, 500, 100])),
            Arc::new(Int64Array::from(vec![100, 50, 10])),
            Arc::new(Int64Array::from(vec![Some(200), None, None])),
            Arc::new(StringArray::from(vec![None, Some("timeout"), Some("")])),
            Arc::new(BooleanArray::from(vec![false, false, false])),
            Arc::new(Float64Array::from(vec![100.0, 30000.0, 200.0])),
        ],
    )
    .unwrap();
    let part = lake.path().join("requests/date=2026-03-08");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("spans.parquet"), fixture::parquet_of(&batch)).unwrap();
    std::fs::write(lake.path().join("prices.csv"), fixture::PRICES).unwrap();
    let summary = run_otel(lake.path()).await;
    assert_eq!(summary.requests, 3);
    // 0.00325 + 0.0014 + 0.00045
    assert_eq!(summary.cost_usd, "0.005100");
    let ops = report(lake.path(), "ops_daily.csv");
    let row: Vec<&str> = ops.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[4], "0.333333333333", "error_rate from error.type");
    assert_eq!(row[5], "200", "p50 latency from duration_ms");
}

/// Spans as an OpenTelemetry collector's export lays them out: one row per
/// span with `trace_id`/`span_id`, unsigned nanosecond start and end times,
/// the status code, and the GenAI attributes flattened to dotted columns,
/// with no `cache_hit`, no duration and (on spans that did not fail) no
/// `error.type`. One object still uses the older `gen_ai.system`. A span is
/// a provider call: no gateway cache hit, even with prompt-cache reads.
///
/// Hand-computed: a1 (01:00, old gpt-4o price) 1000*0.0025 + 100*0.01 =
/// 3.5; a2 (status ERROR) 500*0.0025 = 1.25; b1 (claude-sonnet, 40 of 100
/// input tokens cache reads) 60*0.003 + 40*0.0003 + 10*0.015 = 0.342; per
/// 1K: 0.0035 + 0.00125 + 0.000342 = 0.005092. a1 and a2 share a trace
/// (one agent step, two calls): two requests, never a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otel_collector_span_export_reads_with_derived_columns() {
    use arrow::array::{Int32Array, UInt64Array};
    let lake = tempfile::tempdir().unwrap();
    let ns = |t: &str| (fixture::us(t) * 1000) as u64;
    let part = lake.path().join("requests/date=2026-03-08");
    std::fs::create_dir_all(&part).unwrap();

    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let old = Arc::new(Schema::new(vec![
        text("trace_id", false),
        text("span_id", false),
        text("parent_span_id", true),
        text("name", false),
        Field::new("kind", DataType::Int32, false),
        Field::new("start_time_unix_nano", DataType::UInt64, false),
        Field::new("end_time_unix_nano", DataType::UInt64, false),
        Field::new("status.code", DataType::Int32, false),
        text("gen_ai.system", false),
        text("gen_ai.operation.name", false),
        text("gen_ai.request.model", false),
        Field::new("gen_ai.usage.input_tokens", DataType::Int64, false),
        Field::new("gen_ai.usage.output_tokens", DataType::Int64, false),
    ]));
    let a = RecordBatch::try_new(
        old,
        vec![
            Arc::new(StringArray::from(vec![
                "4bf92f3577b34da6a3ce929d0e0e4736";
                2
            ])) as ArrayRef,
            Arc::new(StringArray::from(vec![
                "00f067aa0ba902b7",
                "53995c3f42cd8ad8",
            ])),
            Arc::new(StringArray::from(vec![Some("a3ce929d0e0e4736"); 2])),
            Arc::new(StringArray::from(vec!["chat gpt-4o"; 2])),
            Arc::new(Int32Array::from(vec![3, 3])),
            Arc::new(UInt64Array::from(vec![
                ns("2026-03-08T01:00:00Z"),
                ns("2026-03-08T01:00:01Z"),
            ])),
            Arc::new(UInt64Array::from(vec![
                ns("2026-03-08T01:00:00.250Z"),
                ns("2026-03-08T01:00:01.750Z"),
            ])),
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["openai"; 2])),
            Arc::new(StringArray::from(vec!["chat"; 2])),
            Arc::new(StringArray::from(vec!["gpt-4o"; 2])),
            Arc::new(Int64Array::from(vec![1000, 500])),
            Arc::new(Int64Array::from(vec![100, 0])),
        ],
    )
    .unwrap();
    std::fs::write(part.join("spans-0001.parquet"), fixture::parquet_of(&a)).unwrap();

    let new = Arc::new(Schema::new(vec![
        text("trace_id", false),
        text("span_id", false),
        Field::new("start_time_unix_nano", DataType::UInt64, false),
        Field::new("end_time_unix_nano", DataType::UInt64, false),
        text("status.code", false),
        text("gen_ai.provider.name", false),
        text("gen_ai.request.model", false),
        Field::new("gen_ai.usage.input_tokens", DataType::Int64, false),
        Field::new("gen_ai.usage.output_tokens", DataType::Int64, false),
        Field::new(
            "gen_ai.usage.cache_read.input_tokens",
            DataType::Int64,
            true,
        ),
        text("error.type", true),
    ]));
    let b = RecordBatch::try_new(
        new,
        vec![
            Arc::new(StringArray::from(vec!["0af7651916cd43dd8448eb211c80319c"])) as ArrayRef,
            Arc::new(StringArray::from(vec!["b7ad6b7169203331"])),
            Arc::new(UInt64Array::from(vec![ns("2026-03-08T14:00:00Z")])),
            Arc::new(UInt64Array::from(vec![ns("2026-03-08T14:00:01Z")])),
            Arc::new(StringArray::from(vec!["STATUS_CODE_UNSET"])),
            Arc::new(StringArray::from(vec!["anthropic"])),
            Arc::new(StringArray::from(vec!["claude-sonnet"])),
            Arc::new(Int64Array::from(vec![100])),
            Arc::new(Int64Array::from(vec![10])),
            Arc::new(Int64Array::from(vec![Some(40)])),
            Arc::new(StringArray::from(vec![None::<&str>])),
        ],
    )
    .unwrap();
    std::fs::write(part.join("spans-0002.parquet"), fixture::parquet_of(&b)).unwrap();
    std::fs::write(lake.path().join("prices.csv"), fixture::PRICES).unwrap();

    let summary = run_otel(lake.path()).await;
    assert_eq!(
        summary.requests, 3,
        "two spans of one trace are two requests"
    );
    assert_eq!(
        summary.cost_usd,
        "0.005092",
        "{}",
        report(lake.path(), "finance_by_dimension.csv")
    );
    let ops = report(lake.path(), "ops_daily.csv");
    let header: Vec<&str> = ops.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = ops.lines().nth(1).unwrap().split(',').collect();
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(cell("duplicates_dropped"), "0");
    assert_eq!(cell("error_rate"), "0.333333333333", "a2's status code 2");
    // Prompt-cache reads are billed calls, not gateway cache hits.
    assert_eq!(cell("cache_hit_rate"), "0");
    assert_eq!(cell("latency_p50_ms"), "750", "span end minus start");
    let by_model = report(lake.path(), "ops_by_model.csv");
    assert!(
        by_model.contains(",anthropic,claude-sonnet,1,"),
        "{by_model}"
    );
    assert!(by_model.contains(",openai,gpt-4o,2,"), "{by_model}");

    // Said where a person looks: what was derived, and from what.
    let absent = &summary_manifest(lake.path())["data_quality"]["absent_columns"];
    let absent: Vec<&str> = absent
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        absent.contains(&"`error` (read from `error.type`): absent from 1 of the day's 2 object(s), derived there as `status.code` = STATUS_CODE_ERROR (2)"),
        "{absent:?}"
    );
    assert!(
        absent.contains(&"`cache_hit` (read from `cache_hit`): absent from 2 of the day's 2 object(s), derived there as false (a GenAI span is a call to the provider; map `cache_hit` if the gateway logs its cache hits as spans)"),
        "{absent:?}"
    );
    assert!(
        absent.contains(&"`latency_ms` (read from `duration_ms`): absent from 2 of the day's 2 object(s), derived there as `end_time_unix_nano` - `start_time_unix_nano`"),
        "{absent:?}"
    );
}

fn summary_manifest(lake: &std::path::Path) -> serde_json::Value {
    let m = lake.join("reports/date=2026-03-08/manifest.json");
    serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap()
}
