//! Bad input gets a clear error naming the object, column or line, the right
//! exit code, and publishes nothing.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tokenledger::config::Config;
use tokenledger::error::{Error, ExitKind, render_chain};
use tokenledger::synth::{LogRow, to_batch, to_parquet};

use crate::fixture::{self, DATE};

fn config(dir: &Path) -> Config {
    Config::for_lake(&dir.to_string_lossy()).unwrap()
}

async fn run(dir: &Path) -> Error {
    tokenledger::pipeline::run(&config(dir), fixture::date())
        .await
        .unwrap_err()
}

fn reports_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("reports").join(format!("date={DATE}"))
}

fn assert_nothing_published(dir: &Path) {
    assert!(!reports_dir(dir).exists(), "reports were published");
    assert!(!dir.join("rollups").exists(), "rollups were published");
}

fn write(dir: &Path, key: &str, bytes: &[u8]) {
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The fixture's part-a with one column removed or replaced.
fn part_a_with(change: impl Fn(&Schema, Vec<ArrayRef>) -> (Vec<Field>, Vec<ArrayRef>)) -> Vec<u8> {
    let batch = to_batch(&fixture::part_a());
    let (fields, cols) = change(batch.schema().as_ref(), batch.columns().to_vec());
    fixture::parquet_of(&RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap())
}

const PART_A: &str = "requests/date=2026-03-08/part-a.parquet";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_mistyped_columns_are_all_named_with_their_object() {
    let lake = fixture::lake();
    // part-a loses `provider`; part-b gets input_tokens as text.
    let without_provider = part_a_with(|s, cols| {
        let keep: Vec<usize> = (0..cols.len())
            .filter(|&i| s.field(i).name() != "provider")
            .collect();
        (
            keep.iter().map(|&i| s.field(i).clone()).collect(),
            keep.iter().map(|&i| Arc::clone(&cols[i])).collect(),
        )
    });
    write(lake.path(), PART_A, &without_provider);
    let b = to_batch(&fixture::part_b());
    let s = b.schema();
    let i = s.index_of("input_tokens").unwrap();
    let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[i] = Field::new("input_tokens", DataType::Utf8, false);
    let mut cols = b.columns().to_vec();
    cols[i] = Arc::new(StringArray::from(vec!["300"; b.num_rows()]));
    write(
        lake.path(),
        "requests/date=2026-03-08/part-b.parquet",
        &fixture::parquet_of(&RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()),
    );

    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::InputData);
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}/{PART_A}: required column `provider` (read from `provider`) is missing; expected a string", lake.path().display())),
        "{text}"
    );
    assert!(
        text.contains("part-b.parquet: column `input_tokens` (for `input_tokens`) has type Utf8; expected an integer"),
        "{text}"
    );
    assert!(text.contains("2 problem(s)"), "{text}");
    assert_nothing_published(lake.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_parquet_are_named() {
    let lake = fixture::lake();
    write(
        lake.path(),
        PART_A,
        b"this is not parquet at all, just text",
    );
    let good = to_parquet(&fixture::part_b(), 1024).unwrap();
    write(
        lake.path(),
        "requests/date=2026-03-08/part-b.parquet",
        &good[..good.len() / 2],
    );
    write(lake.path(), "requests/date=2026-03-08/empty.parquet", b"");
    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::InputData);
    let text = err.to_string();
    for name in ["part-a.parquet", "part-b.parquet", "empty.parquet"] {
        assert!(
            text.contains(&format!("{name}: not a readable Parquet file")),
            "{name} in {text}"
        );
    }
    assert_nothing_published(lake.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_data_pages_fail_the_scan_with_the_object_named() {
    let lake = fixture::lake();
    // A valid footer over damaged column data (uncompressed, so the damage
    // reaches the decoder rather than a checksum).
    let rows: Vec<LogRow> = fixture::part_a();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        &mut buf,
        tokenledger::synth::log_schema(),
        Some(props),
    )
    .unwrap();
    w.write(&to_batch(&rows)).unwrap();
    w.close().unwrap();
    for b in buf.iter_mut().skip(8).take(400) {
        *b = 0xFF;
    }
    write(lake.path(), PART_A, &buf);
    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::InputData, "{}", render_chain(&err));
    assert!(
        render_chain(&err).contains("part-a.parquet"),
        "{}",
        render_chain(&err)
    );
    assert_nothing_published(lake.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_day_is_an_input_error() {
    // No request objects at all.
    let lake = tempfile::tempdir().unwrap();
    write(lake.path(), "prices.csv", fixture::PRICES.as_bytes());
    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::InputData);
    let text = err.to_string();
    assert!(
        text.contains("no request rows for 2026-03-08 in UTC"),
        "{text}"
    );
    assert!(
        text.contains("date=2026-03-07, date=2026-03-08, date=2026-03-09"),
        "{text}"
    );
    assert_nothing_published(lake.path());

    // Objects, but no row of the day.
    write(
        lake.path(),
        "requests/date=2026-03-07/old.parquet",
        &fixture::old_file(),
    );
    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::InputData);
    assert!(
        err.to_string()
            .contains("1 row(s) in 1 object(s), none of them in [2026-03-08T00:00:00+00:00"),
        "{err}"
    );
    assert_nothing_published(lake.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_prices_are_a_config_error_naming_both_lines() {
    let lake = fixture::lake();
    let prices = format!(
        "{}openai,gpt-4o,0.003,0.012,,,2026-03-01,2026-03-09\n",
        fixture::PRICES
    );
    write(lake.path(), "prices.csv", prices.as_bytes());
    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::Usage);
    let text = err.to_string();
    assert!(text.contains("prices.csv"), "{text}");
    assert!(
        text.contains("line 2 and line 5: prices of openai/gpt-4o overlap"),
        "{text}"
    );
    assert!(
        text.contains("line 5 and line 3: prices of openai/gpt-4o overlap"),
        "{text}"
    );
    assert_nothing_published(lake.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rerun_leaves_the_published_day_intact() {
    let lake = fixture::lake();
    let first = crate::metrics::run_fixture(lake.path(), None).await;
    let before: Vec<Vec<u8>> = first
        .manifest
        .outputs
        .iter()
        .map(|o| std::fs::read(lake.path().join(&o.key)).unwrap())
        .collect();
    let manifest = std::fs::read(reports_dir(lake.path()).join("manifest.json")).unwrap();
    write(lake.path(), PART_A, b"garbage");
    let err = run(lake.path()).await;
    assert_eq!(err.kind(), ExitKind::InputData);
    let after: Vec<Vec<u8>> = first
        .manifest
        .outputs
        .iter()
        .map(|o| std::fs::read(lake.path().join(&o.key)).unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        std::fs::read(reports_dir(lake.path()).join("manifest.json")).unwrap(),
        manifest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_required_values_reject_the_row_and_fail_the_gate_but_publish() {
    let lake = fixture::lake();
    // r6 (the unpriced mistral row) loses its model: rejected, counted, named.
    let b = to_batch(&fixture::part_a());
    let s = b.schema();
    let i = s.index_of("model").unwrap();
    let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[i] = Field::new("model", DataType::Utf8, true);
    let mut cols = b.columns().to_vec();
    let models = cols[i].as_any().downcast_ref::<StringArray>().unwrap();
    let nulled: StringArray = models
        .iter()
        .map(|m| if m == Some("mistral-large") { None } else { m })
        .collect();
    cols[i] = Arc::new(nulled);
    write(
        lake.path(),
        PART_A,
        &fixture::parquet_of(&RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()),
    );
    let summary = tokenledger::pipeline::run(&config(lake.path()), fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.outcome, ExitKind::DataQuality);
    assert_eq!(summary.requests, 12);
    let m = &summary.manifest;
    assert_eq!(m.rows.rejected.get("model"), Some(&1));
    assert_eq!(m.data_quality.status, "failed");
    assert!(
        m.data_quality.problems[0].contains("1 rows of the day were rejected"),
        "{:?}",
        m.data_quality.problems
    );
    assert!(m.data_quality.rejected_examples["model"][0].contains("part-a.parquet"));
    assert!(
        reports_dir(lake.path()).join("manifest.json").exists(),
        "a failed gate still publishes"
    );
}
