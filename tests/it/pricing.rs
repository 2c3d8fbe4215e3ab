//! Price tables as they come: LiteLLM's real history as it is, and Parquet.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tokenledger::config::{Config, Overrides};
use tokenledger::lake::Stores;

use crate::fixture::{self, DATE, report};

fn litellm_history() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litellm_price_history_2025-02_2026-07.csv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_price_history_loads_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[lake]\nroot = \"{}\"\n[inputs]\nprices = \"{}\"\n",
        dir.path().display(),
        litellm_history().display()
    );
    let config = Config::from_sources(&toml, "test", &[], &Overrides::default()).unwrap();
    let (object, prices) =
        tokenledger::pipeline::load_prices(&Stores::new(Default::default()), &config)
            .await
            .unwrap();
    assert_eq!(object.rows, 3455);
    assert_eq!(prices.rows().len(), 3455);
    // The real errors of the history are there, as published.
    let flash = prices.versions("gemini", "gemini/gemini-2.0-flash");
    assert_eq!(
        flash[0].input_usd_per_1k.unwrap().to_string(),
        "0.15",
        "listed 1000x too high"
    );
    assert_eq!(flash[1].input_usd_per_1k.unwrap().to_string(), "0.0001");
    assert_eq!(
        flash[0].valid_from.to_rfc3339(),
        "2025-02-07T00:30:08+00:00"
    );
    let sonnet = prices.versions(
        "bedrock_converse",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    );
    assert_eq!(sonnet[1].input_usd_per_1k.unwrap().to_string(), "0.033");
    // Float artifacts are kept exactly, not rounded.
    let db = prices.versions("databricks", "databricks/databricks-gemini-2-5-flash");
    assert!(
        db.iter()
            .any(|r| r.input_usd_per_1k.unwrap().to_string() == "0.00030001999999999996")
    );
    // Image models have no per-token output price; the rows still load, and
    // their labels are the lines an editor shows (the file has CRLF endings).
    let image = prices.versions("azure", "azure/gpt-image-1");
    assert!(image[0].output_usd_per_1k.is_none());
    assert_eq!(image[0].label, "line 224");
    // valid_from with a +08:00 offset is the same instant in UTC.
    let gpt = prices.versions("openai", "gpt-4o");
    assert_eq!(gpt[0].valid_from.to_rfc3339(), "2025-02-06T02:56:03+00:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_price_table_prices_like_the_csv_one() {
    let lake = fixture::lake();
    let dec = |v: Vec<Option<i128>>| {
        Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(12, 6)
                .unwrap(),
        ) as ArrayRef
    };
    let ts = |v: Vec<Option<&str>>| {
        Arc::new(
            TimestampMicrosecondArray::from(
                v.into_iter()
                    .map(|t| t.map(fixture::us))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ) as ArrayRef
    };
    let money = DataType::Decimal128(12, 6);
    let when = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("input_usd_per_1k", money.clone(), false),
        Field::new("output_usd_per_1k", money.clone(), false),
        Field::new("cache_read_usd_per_1k", money.clone(), true),
        Field::new("cache_write_usd_per_1k", money, true),
        Field::new("valid_from", when.clone(), false),
        Field::new("valid_to", when, true),
    ]));
    // The rows of fixture::PRICES, typed.
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["openai", "openai", "anthropic"])),
            Arc::new(StringArray::from(vec!["gpt-4o", "gpt-4o", "claude-sonnet"])),
            dec(vec![Some(2500), Some(2000), Some(3000)]),
            dec(vec![Some(10000), Some(8000), Some(15000)]),
            dec(vec![Some(1250), Some(1000), Some(300)]),
            dec(vec![None, None, Some(3750)]),
            ts(vec![
                Some("2024-01-01T00:00:00Z"),
                Some("2026-03-08T12:00:00Z"),
                Some("2024-01-01T00:00:00Z"),
            ]),
            ts(vec![Some("2026-03-08T12:00:00Z"), None, None]),
        ],
    )
    .unwrap();
    std::fs::write(
        lake.path().join("prices.parquet"),
        fixture::parquet_of(&batch),
    )
    .unwrap();
    std::fs::remove_file(lake.path().join("prices.csv")).unwrap();
    let config = Config::from_sources(
        "[inputs]\nprices = \"prices.parquet\"\n",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.path().to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap();
    tokenledger::pipeline::run(&config, fixture::date())
        .await
        .unwrap();
    assert_eq!(
        report(lake.path(), "finance_by_dimension.csv"),
        crate::metrics::FINANCE
    );
    let _ = DATE;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_output_price_leaves_only_requests_with_output_tokens_unpriced() {
    // An embedding model listed without an output price (as LiteLLM does).
    // e1 has no output tokens: 1000 * 0.0001 / 1000 = 0.0001, priced.
    // e2 has 10 output tokens: no price for them, so unpriced (not 0).
    let lake = tempfile::tempdir().unwrap();
    std::fs::write(
        lake.path().join("prices.csv"),
        "provider,model,input_usd_per_1k,output_usd_per_1k,valid_from\nopenai,text-embedding-3-small,0.0001,,2024-01-01\n",
    )
    .unwrap();
    let mut e1 = tokenledger::synth::LogRow::new(
        fixture::us("2026-03-08T09:00:00Z"),
        "e1",
        "openai",
        "text-embedding-3-small",
        1000,
        0,
    );
    e1.dept = Some("search".into());
    let mut e2 = e1.clone();
    e2.trace_id = "e2".into();
    e2.dept = Some("labs".into());
    e2.output_tokens = 10;
    let part = lake.path().join("requests/date=2026-03-08");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(
        part.join("p.parquet"),
        tokenledger::synth::to_parquet(&[e1, e2], 16).unwrap(),
    )
    .unwrap();
    let summary = tokenledger::pipeline::run(
        &Config::for_lake(&lake.path().to_string_lossy()).unwrap(),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(summary.manifest.pricing.unpriced_requests, 1);
    let finance = report(lake.path(), "finance_by_dimension.csv");
    let rows: Vec<&str> = finance.lines().skip(1).collect();
    assert_eq!(
        rows,
        [
            "2026-03-08,labs,(untagged),(untagged),openai,text-embedding-3-small,1,1000,10,,,,,1",
            "2026-03-08,search,(untagged),(untagged),openai,text-embedding-3-small,1,1000,0,0.000100,0.000100,0.000000,,0",
        ]
    );
}
