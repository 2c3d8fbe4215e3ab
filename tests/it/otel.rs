//! Logs written with OpenTelemetry GenAI attribute names, read through the
//! `otel_genai` preset: integer nanosecond timestamps, dotted column names,
//! failures as a non-empty `error.type`.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tokenledger::config::{Config, Overrides};

use crate::fixture::{self, report};

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
    let config = Config::from_sources(
        "[columns]\npreset = \"otel_genai\"\n",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.path().to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let summary = tokenledger::pipeline::run(&config, fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.requests, 3);
    // 0.00325 + 0.0014 + 0.00045
    assert_eq!(summary.cost_usd, "0.005100");
    let ops = report(lake.path(), "ops_daily.csv");
    let row: Vec<&str> = ops.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[4], "0.333333333333", "error_rate from error.type");
    assert_eq!(row[5], "200", "p50 latency from duration_ms");
}
