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
    // 10x moves between versions are flagged: 249 on 130 models (counted
    // independently with Python over input and output prices), the two
    // known errors among them.
    let jumps = prices.jumps();
    assert_eq!(jumps.len(), 249);
    let models: std::collections::BTreeSet<(&str, &str)> = jumps
        .iter()
        .map(|j| (j.provider.as_str(), j.model.as_str()))
        .collect();
    assert_eq!(models.len(), 130);
    let texts: Vec<String> = jumps.iter().map(|j| j.to_string()).collect();
    assert!(texts.contains(&"gemini/gemini/gemini-2.0-flash: input price 0.15 -> 0.0001 per 1K at 2025-02-07T05:07:13+00:00 (line 1551 -> line 1552)".to_string()), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("bedrock_converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0: input price 0.003 -> 0.033 per 1K at 2025-10-07T04:09:08+00:00")));
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

fn litellm_json() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/litellm_model_prices_rocry_8442b93.json"
    )
    .to_string()
}

/// `prices import` of LiteLLM's real price file (2026-07-24) into the real
/// price history it was derived from: every known model's prices are as the
/// history's open rows have them (2,508 unchanged: counted independently with
/// Python's decimal module), 13 models are new, 463 entries have no
/// per-token price (images, audio seconds). A second import changes nothing.
#[test]
fn litellm_import_of_the_real_file_adds_only_what_is_new() {
    let lake = tempfile::tempdir().unwrap();
    std::fs::copy(litellm_history(), lake.path().join("prices.csv")).unwrap();
    let lake_arg = lake.path().to_string_lossy().to_string();
    let json = litellm_json();
    let args = [
        "prices",
        "import",
        "--lake",
        &lake_arg,
        "--litellm",
        &json,
        "--at",
        "2026-07-25T00:00:00Z",
    ];

    let dry: Vec<&str> = args.iter().copied().chain(["--dry-run"]).collect();
    let out = crate::cli::tokenledger(&dry, &[]);
    let (stdout, stderr) = crate::cli::text(&out);
    assert_eq!(crate::cli::code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "13 new, 0 changed, 2508 unchanged, 463 skipped (no per-token price); nothing written"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "new amazon_nova/amazon-nova/nova-micro-v1: input 0.000035, output 0.00014 per 1K"
        ),
        "{stdout}"
    );
    let before = std::fs::read(lake.path().join("prices.csv")).unwrap();

    let out = crate::cli::tokenledger(&args, &[]);
    let (stdout, _) = crate::cli::text(&out);
    assert_eq!(crate::cli::code(&out), 0, "{stdout}");
    let after = std::fs::read(lake.path().join("prices.csv")).unwrap();
    // Every row as it was, byte for byte (CRLF kept), then the 13 new ones.
    assert_eq!(&after[..before.len()], &before[..]);
    let added = std::str::from_utf8(&after[before.len()..]).unwrap();
    assert_eq!(added.lines().count(), 13, "{added}");
    assert!(
        added.contains("\r\nbedrock_converse,us.anthropic.claude-haiku-4-5-20251001-v1:0,chat,0.0011,0.0055,0.00011,0.001375,2026-07-25T00:00:00Z,,litellm:"),
        "{added}"
    );
    assert!(added.contains("\r\namazon_nova,amazon-nova/nova-micro-v1,chat,0.000035,0.00014,,,2026-07-25T00:00:00Z,,litellm:"), "{added}");

    // Idempotent: the same file again adds nothing.
    let out = crate::cli::tokenledger(&args, &[]);
    let (stdout, _) = crate::cli::text(&out);
    assert!(
        stdout.contains("0 new, 0 changed, 2521 unchanged"),
        "{stdout}"
    );
}

/// The same file against the history as it stood on 2025-02-07 01:00 UTC,
/// when gemini-2.0-flash was listed at 0.15 / 0.6 per 1K (1500x its real
/// price): the import refuses it and writes nothing, unless forced.
#[test]
fn litellm_import_refuses_tenfold_moves_of_known_prices() {
    let t = "2025-02-07T01:00:00Z";
    let history = std::fs::read_to_string(litellm_history()).unwrap();
    let mut lines = history.lines();
    let header = lines.next().unwrap();
    let mut snapshot = format!("{header}\n");
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let (from, to) = (cells[7], cells[8]);
        if from > t {
            continue;
        }
        let mut cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        if to.is_empty() || to > t {
            cells[8] = String::new();
        }
        snapshot.push_str(&cells.join(","));
        snapshot.push('\n');
    }
    let lake = tempfile::tempdir().unwrap();
    std::fs::write(lake.path().join("prices.csv"), &snapshot).unwrap();
    let lake_arg = lake.path().to_string_lossy().to_string();
    let json = litellm_json();
    let args = [
        "prices",
        "import",
        "--lake",
        &lake_arg,
        "--litellm",
        &json,
        "--at",
        "2026-07-25",
    ];
    let out = crate::cli::tokenledger(&args, &[]);
    let (stdout, stderr) = crate::cli::text(&out);
    assert_eq!(crate::cli::code(&out), 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("gemini/gemini/gemini-2.0-flash: input price would change 10x or more (0.15 -> 0.0001 per 1K)"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(lake.path().join("prices.csv")).unwrap(),
        snapshot
    );

    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    let out = crate::cli::tokenledger(&forced, &[]);
    let (stdout, stderr) = crate::cli::text(&out);
    assert_eq!(crate::cli::code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "forced: gemini/gemini/gemini-2.0-flash: input price would change 10x or more"
        ),
        "{stdout}"
    );
    let after = std::fs::read_to_string(lake.path().join("prices.csv")).unwrap();
    assert!(after.contains("gemini,gemini/gemini-2.0-flash,chat,0.15,0.6,,,2025-02-07T00:30:08Z,2026-07-25T00:00:00Z,9810af3f7f95\n"), "the 1500x row is closed");
    assert!(after.contains("\ngemini,gemini/gemini-2.0-flash,chat,0.0001,0.0004,0.000025,,2026-07-25T00:00:00Z,,litellm:"));
}

/// A run flags the price rows it used that moved 10x from a neighbouring
/// version (here gpt-4o's noon price typed with a misplaced decimal point).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_flags_the_tenfold_price_it_used() {
    let lake = fixture::lake();
    std::fs::write(
        lake.path().join("prices.csv"),
        fixture::PRICES.replace(
            "openai,gpt-4o,0.002,0.008,0.001,,2026-03-08T12:00:00Z,",
            "openai,gpt-4o,0.025,0.008,0.001,,2026-03-08T12:00:00Z,",
        ),
    )
    .unwrap();
    crate::metrics::run_fixture(lake.path(), None).await;
    let m: serde_json::Value = serde_json::from_str(&report(lake.path(), "manifest.json")).unwrap();
    let jumps = m["pricing"]["price_jumps"].as_array().unwrap();
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert_eq!(jumps[0]["model"], "gpt-4o");
    assert_eq!(jumps[0]["kind"], "input");
    assert_eq!(
        (jumps[0]["from"].as_str(), jumps[0]["to"].as_str()),
        (Some("0.0025"), Some("0.025"))
    );
    assert_eq!(jumps[0]["lines"], "line 2 -> line 3");
}
