//! Bad input gets a clear error naming the object, column or line, the right
//! exit code, and publishes nothing.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use mail_parser::MimeHeaders;
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

/// Nothing of the day: no report, no rollup. (A run may have built the
/// rollups of earlier days with logs, its anomaly baseline, before it found
/// the day's input unusable: those are whole days of their own.)
fn assert_nothing_published(dir: &Path) {
    assert!(!reports_dir(dir).exists(), "reports were published");
    for kind in ["daily", "latency"] {
        let day = dir.join(format!("rollups/{kind}/date={DATE}"));
        assert!(!day.exists(), "the {kind} rollup was published");
    }
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

/// What a corpus case must produce.
enum Want {
    /// Refused with this exit kind and these texts in the error (which name
    /// the object, line, column or field); nothing published.
    Refused(ExitKind, &'static [&'static str]),
    /// Published, the bad rows flagged: the check reads the outputs.
    Flagged(fn(&Path, &tokenledger::pipeline::RunSummary) -> Result<(), String>),
}

struct Case {
    name: &'static str,
    /// Damages the fixture lake; may return config TOML (`[lake]` is added).
    setup: fn(&Path) -> Option<String>,
    want: Want,
}

fn rows_with(change: impl Fn(&mut LogRow)) -> Vec<u8> {
    let mut rows = fixture::part_a();
    for r in rows.iter_mut().take(1) {
        change(r);
    }
    to_parquet(&rows, 4).unwrap()
}

fn csv_rows(dir: &Path, name: &str) -> Vec<csv::StringRecord> {
    let text = std::fs::read_to_string(reports_dir(dir).join(name)).unwrap();
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect()
}

fn dq_sum(dir: &Path, column: &str) -> i64 {
    let text = std::fs::read_to_string(reports_dir(dir).join("data_quality.csv")).unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let i = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == column)
        .unwrap();
    r.records()
        .map(|rec| rec.unwrap()[i].parse::<i64>().unwrap())
        .sum()
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

const HOSTILE: [&str; 3] = [
    "<script>alert('x')</script>",
    "=HYPERLINK(\"http://evil\")",
    "a,\"b\"\nc\u{202e}",
];

fn corpus() -> Vec<Case> {
    use ExitKind::*;
    let cases = vec![
        // --- request logs: files ---
        Case {
            name: "text instead of Parquet",
            setup: |d| {
                write(d, PART_A, b"not parquet");
                None
            },
            want: Want::Refused(InputData, &["part-a.parquet: not a readable Parquet file"]),
        },
        Case {
            name: "truncated Parquet",
            setup: |d| {
                let g = to_parquet(&fixture::part_a(), 4).unwrap();
                write(d, PART_A, &g[..g.len() - 9]);
                None
            },
            want: Want::Refused(InputData, &["part-a.parquet: not a readable Parquet file"]),
        },
        Case {
            name: "zero-byte Parquet",
            setup: |d| {
                write(d, PART_A, b"");
                None
            },
            want: Want::Refused(InputData, &["part-a.parquet: not a readable Parquet file"]),
        },
        Case {
            name: "Parquet magic with a garbage footer",
            setup: |d| {
                let mut g = to_parquet(&fixture::part_a(), 4).unwrap();
                let n = g.len();
                for b in &mut g[n - 40..n - 8] {
                    *b = 0x7f;
                }
                write(d, PART_A, &g);
                None
            },
            want: Want::Refused(InputData, &["part-a.parquet"]),
        },
        // --- request logs: schema ---
        Case {
            name: "missing required column",
            setup: |d| {
                write(d, PART_A, &part_a_with(|s, c| drop_col(s, c, "model")));
                None
            },
            want: Want::Refused(
                InputData,
                &["part-a.parquet: required column `model` (read from `model`) is missing"],
            ),
        },
        Case {
            name: "tokens as text",
            setup: |d| {
                write(
                    d,
                    PART_A,
                    &part_a_with(|s, c| text_col(s, c, "output_tokens", "12")),
                );
                None
            },
            want: Want::Refused(
                InputData,
                &[
                    "part-a.parquet: column `output_tokens` (for `output_tokens`) has type Utf8; expected an integer",
                ],
            ),
        },
        Case {
            name: "timestamp as text",
            setup: |d| {
                write(
                    d,
                    PART_A,
                    &part_a_with(|s, c| text_col(s, c, "ts", "2026-03-08T10:00:00Z")),
                );
                None
            },
            want: Want::Refused(
                InputData,
                &["part-a.parquet: column `ts` (for `ts`) has type Utf8; expected a timestamp"],
            ),
        },
        // --- request logs: values ---
        Case {
            name: "negative token counts",
            setup: |d| {
                write(d, PART_A, &rows_with(|r| r.output_tokens = -50));
                None
            },
            want: Want::Flagged(|d, s| {
                // The fixture has one violation already (metrics.rs).
                ensure(dq_sum(d, "token_violations") == 2, || {
                    format!("token_violations {}", dq_sum(d, "token_violations"))
                })?;
                ensure(
                    s.manifest.data_quality.token_invariant_violations == 2,
                    || "manifest".into(),
                )
            }),
        },
        Case {
            name: "negative logged cost",
            setup: |d| {
                // r1 logged 0.0075 USD; -0.0075 is no cost a gateway bills.
                write(d, PART_A, &rows_with(|r| r.cost_actual = Some(-0.0075)));
                None
            },
            want: Want::Flagged(|d, s| {
                ensure(dq_sum(d, "logged_cost_invalid") == 1, || {
                    format!("logged_cost_invalid {}", dq_sum(d, "logged_cost_invalid"))
                })?;
                ensure(s.manifest.data_quality.logged_cost_invalid == 1, || {
                    format!("manifest {}", s.manifest.data_quality.logged_cost_invalid)
                })?;
                // Left out of the logged cost, not summed as a credit:
                // research/alpha/chat/gpt-4o logged 0.013000 = r1's 0.0075
                // + r2's 0.0055; without r1, 0.005500.
                let lines = csv_rows(d, "finance_by_dimension.csv");
                let line = lines
                    .iter()
                    .find(|r| &r[1] == "research" && &r[2] == "alpha" && &r[5] == "gpt-4o")
                    .ok_or("no research/alpha/gpt-4o line")?;
                ensure(&line[12] == "0.005500", || format!("{line:?}"))
            }),
        },
        Case {
            name: "citation rate above 1",
            setup: |d| {
                write(d, PART_A, &rows_with(|r| r.citation_rate = Some(1.5)));
                None
            },
            want: Want::Flagged(|d, s| {
                ensure(dq_sum(d, "citation_rate_invalid") == 1, || {
                    format!(
                        "citation_rate_invalid {}",
                        dq_sum(d, "citation_rate_invalid")
                    )
                })?;
                ensure(s.manifest.data_quality.citation_rate_invalid == 1, || {
                    format!("manifest {}", s.manifest.data_quality.citation_rate_invalid)
                })?;
                // The mean of the valid rates alone: r2's 0.6 (was (0.8 + 0.6) / 2).
                let ops = csv_rows(d, "ops_daily.csv");
                ensure(&ops[0][9] == "0.6", || format!("{:?}", ops[0]))
            }),
        },
        Case {
            name: "absurd token count",
            setup: |d| {
                write(
                    d,
                    PART_A,
                    &rows_with(|r| r.input_tokens = 5_000_000_000_000),
                );
                None
            },
            want: Want::Flagged(|_, s| {
                let m = &s.manifest;
                ensure(m.rows.rejected.get("input_tokens") == Some(&1), || {
                    format!("{:?}", m.rows.rejected)
                })?;
                ensure(s.requests == 12, || format!("{} requests", s.requests))?;
                let ex = format!("{:?}", m.data_quality.rejected_examples);
                ensure(
                    ex.contains("`input_tokens` = 5000000000000") && ex.contains("part-a.parquet"),
                    || ex,
                )
            }),
        },
        Case {
            name: "uint64 token count of 2^63 and more",
            setup: |d| {
                // output_tokens as UINT_64 (as some writers log counts); r1's
                // is 2^63 + 5, which no signed 64-bit column can hold.
                let bytes = part_a_with(|s, mut cols| {
                    let i = s.index_of("output_tokens").unwrap();
                    let old = cols[i].as_primitive::<arrow::datatypes::Int64Type>();
                    let u: arrow::array::UInt64Array = old
                        .iter()
                        .enumerate()
                        .map(|(k, v)| {
                            if k == 0 {
                                Some((1u64 << 63) + 5)
                            } else {
                                v.map(|v| v as u64)
                            }
                        })
                        .collect();
                    cols[i] = Arc::new(u);
                    let mut fields: Vec<Field> =
                        s.fields().iter().map(|f| f.as_ref().clone()).collect();
                    fields[i] = Field::new("output_tokens", DataType::UInt64, false);
                    (fields, cols)
                });
                write(d, PART_A, &bytes);
                None
            },
            want: Want::Flagged(|_, s| {
                // Rejected and named like 5·10^9, not "corrupt statistics".
                let m = &s.manifest;
                ensure(m.rows.rejected.get("output_tokens") == Some(&1), || {
                    format!("{:?}", m.rows.rejected)
                })?;
                ensure(s.requests == 12, || format!("{} requests", s.requests))?;
                let ex = format!("{:?}", m.data_quality.rejected_examples);
                ensure(
                    ex.contains("part-a.parquet") && ex.contains("`output_tokens`"),
                    || ex,
                )
            }),
        },
        Case {
            name: "timestamp in the future",
            setup: |d| {
                write(
                    d,
                    PART_A,
                    &rows_with(|r| r.ts_us = fixture::us("2099-01-01T00:00:00Z")),
                );
                None
            },
            want: Want::Flagged(|_, s| {
                // Four rows of the fixture lie outside the day already.
                ensure(
                    s.manifest.rows.outside_window == 5 && s.requests == 12,
                    || format!("{:?}", s.manifest.rows),
                )
            }),
        },
        Case {
            name: "null in a required column",
            setup: |d| {
                write(d, PART_A, &part_a_with(|s, c| null_first(s, c, "provider")));
                None
            },
            want: Want::Flagged(|_, s| {
                ensure(
                    s.manifest.rows.rejected.get("provider") == Some(&1)
                        && s.outcome == ExitKind::DataQuality,
                    || format!("{:?} {:?}", s.manifest.rows.rejected, s.outcome),
                )
            }),
        },
        Case {
            name: "mapped tag field missing",
            setup: |_| Some("[columns]\ndept = \"tags.department\"\n".into()),
            want: Want::Refused(
                InputData,
                &[
                    "part-a.parquet: mapped column `tags.department` (columns.dept) is missing; expected a string",
                    "part-b.parquet: mapped column `tags.department` (columns.dept) is missing",
                ],
            ),
        },
        Case {
            name: "optional column in no object",
            setup: |d| {
                let without = |rows: Vec<LogRow>| {
                    let batch = to_batch(&rows);
                    let (fields, cols) = drop_col(
                        batch.schema().as_ref(),
                        batch.columns().to_vec(),
                        "citation_rate",
                    );
                    fixture::parquet_of(
                        &RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap(),
                    )
                };
                write(d, PART_A, &without(fixture::part_a()));
                write(
                    d,
                    "requests/date=2026-03-08/part-b.parquet",
                    &without(fixture::part_b()),
                );
                None
            },
            want: Want::Flagged(|d, s| {
                let absent = &s.manifest.data_quality.absent_columns;
                ensure(
                    absent
                        == &vec![
                            "`citation_rate` (read from `citation_rate`): in none of the day's 4 object(s)"
                                .to_string(),
                        ],
                    || format!("{absent:?}"),
                )?;
                let page = std::fs::read_to_string(reports_dir(d).join("finance.html")).unwrap();
                ensure(
                    page.contains("Columns in none of the day")
                        && page.contains("read from `citation_rate`"),
                    || "not on the finance page".into(),
                )
            }),
        },
        Case {
            name: "the same invoice export twice",
            setup: |d| {
                write(
                    d,
                    "invoices/normalized/2026-03_v2.csv",
                    fixture::INVOICES_NORMALIZED.as_bytes(),
                );
                None
            },
            want: Want::Flagged(|d, s| {
                let dups = &s.manifest.inputs.invoice_duplicates;
                ensure(
                    dups.len() == 1
                        && dups[0].key == "invoices/normalized/2026-03_v2.csv"
                        && dups[0].same_as == "invoices/normalized/2026-03.csv",
                    || format!("{dups:?}"),
                )?;
                // cohere's 0.50 now counts twice, and the line says why.
                let rows = csv_rows(d, "reconciliation.csv");
                let cohere = rows
                    .iter()
                    .find(|r| &r[1] == "cohere")
                    .ok_or("no cohere line")?;
                ensure(&cohere[4] == "1.000000", || format!("{cohere:?}"))?;
                ensure(
                    cohere[11].contains(
                        "invoice object invoices/normalized/2026-03_v2.csv is byte-identical to invoices/normalized/2026-03.csv: its lines are counted twice",
                    ),
                    || format!("{cohere:?}"),
                )
            }),
        },
        Case {
            name: "credentials in the storage endpoint URL",
            setup: |_| {
                Some(
                    "[storage.s3]\nendpoint = \"http://AKIAEXAMPLE:s3cr3tvalue@minio:9000\"\n"
                        .into(),
                )
            },
            want: Want::Refused(
                Usage,
                &["storage.s3.endpoint: `http://***@minio:9000`: credentials in a URL are refused"],
            ),
        },
        Case {
            name: "letter size limit too small",
            setup: |_| Some("[mail]\nmax_letter_bytes = 5\n".into()),
            want: Want::Refused(Usage, &["mail.max_letter_bytes: 5 is below 100000"]),
        },
        Case {
            name: "invoice object no source reads",
            setup: |d| {
                write(d, "invoices/credits/2026-03.json", b"{}");
                None
            },
            want: Want::Flagged(|d, s| {
                let skipped: Vec<(&str, &str)> = s
                    .manifest
                    .inputs
                    .skipped
                    .iter()
                    .map(|o| (o.key.as_str(), o.reason.as_str()))
                    .collect();
                ensure(
                    skipped.contains(&(
                        "invoices/credits/2026-03.json",
                        "no invoice source reads it (see [[reconcile.sources]])",
                    )),
                    || format!("{skipped:?}"),
                )?;
                let page = std::fs::read_to_string(reports_dir(d).join("finance.html")).unwrap();
                ensure(page.contains("invoices/credits/2026-03.json"), || {
                    "not on the finance page".into()
                })
            }),
        },
        Case {
            name: "invoices in SPEC 1.4's top-level layout",
            setup: |d| {
                std::fs::rename(
                    d.join("invoices/normalized/2026-03.csv"),
                    d.join("invoices/2026-03.csv"),
                )
                .unwrap();
                None
            },
            want: Want::Flagged(|_, s| {
                // Read by the normalized adapter: cohere's 0.50 is invoiced.
                let read: Vec<(&str, Option<&str>)> = s
                    .manifest
                    .inputs
                    .invoices
                    .iter()
                    .map(|o| (o.key.as_str(), o.adapter.as_deref()))
                    .collect();
                ensure(
                    read.contains(&("invoices/2026-03.csv", Some("normalized"))),
                    || format!("{read:?}"),
                )?;
                let cohere = s
                    .reconciliation
                    .day
                    .iter()
                    .find(|l| l.provider == "cohere")
                    .ok_or("no cohere line")?;
                ensure(cohere.invoiced_usd == Some(500_000), || {
                    format!("{cohere:?}")
                })
            }),
        },
        Case {
            name: "Spark staging folder and S3 folder markers",
            setup: |d| {
                let copy = to_parquet(&fixture::part_a(), 4).unwrap();
                write(
                    d,
                    "requests/date=2026-03-08/.spark-staging-7/part-0.parquet",
                    &copy,
                );
                write(d, "requests/date=2026-03-08/hour=03_$folder$", b"");
                None
            },
            want: Want::Flagged(|_, s| {
                let m = &s.manifest;
                ensure(s.requests == 13, || format!("{} requests", s.requests))?;
                let skipped: Vec<(&str, &str)> = m
                    .inputs
                    .skipped
                    .iter()
                    .map(|o| (o.key.as_str(), o.reason.as_str()))
                    .collect();
                ensure(
                    skipped.contains(&(
                        "requests/date=2026-03-08/.spark-staging-7/part-0.parquet",
                        "inside a hidden or temporary folder (name starts with `_` or `.`)",
                    )) && skipped
                        .contains(&("requests/date=2026-03-08/hour=03_$folder$", "folder marker")),
                    || format!("{skipped:?}"),
                )
            }),
        },
        Case {
            name: "Hive and Spark object names",
            setup: |d| {
                // part-a without a suffix (as Hive and Athena write it), an
                // uncommitted copy in a `_temporary/` folder, a text file.
                let part = d.join("requests/date=2026-03-08");
                std::fs::rename(part.join("part-a.parquet"), part.join("part-00000")).unwrap();
                write(
                    d,
                    "requests/date=2026-03-08/_temporary/0/task_1/part-00001.parquet",
                    &to_parquet(&fixture::part_a(), 4).unwrap(),
                );
                write(d, "requests/date=2026-03-08/notes.txt", b"hello");
                None
            },
            want: Want::Flagged(|d, s| {
                let m = &s.manifest;
                // Every row of part-a read, no row of the temporary copy.
                ensure(s.requests == 13 && m.rows.duplicates_dropped == 4, || {
                    format!("{} requests, {:?}", s.requests, m.rows)
                })?;
                ensure(
                    m.inputs
                        .requests
                        .iter()
                        .any(|o| o.key == "requests/date=2026-03-08/part-00000"),
                    || format!("{:?}", m.inputs.requests),
                )?;
                let skipped: Vec<(String, String)> = m
                    .inputs
                    .skipped
                    .iter()
                    .map(|o| (o.key.clone(), o.reason.clone()))
                    .collect();
                let want = [
                    ("requests/date=2026-03-08/_SUCCESS", "hidden or marker file"),
                    (
                        "requests/date=2026-03-08/_temporary/0/task_1/part-00001.parquet",
                        "inside a hidden or temporary folder",
                    ),
                    (
                        "requests/date=2026-03-08/notes.txt",
                        "not Parquet: no `PAR1` magic at the end of its 5 byte(s)",
                    ),
                ];
                ensure(
                    skipped.len() == 3
                        && want
                            .iter()
                            .zip(&skipped)
                            .all(|((k, r), (sk, sr))| k == sk && sr.starts_with(r)),
                    || format!("{skipped:?}"),
                )?;
                let page = std::fs::read_to_string(reports_dir(d).join("finance.html")).unwrap();
                ensure(
                    page.contains("Objects listed and not read")
                        && page.contains("requests/date=2026-03-08/notes.txt"),
                    || "the finance page does not name them".into(),
                )
            }),
        },
        Case {
            name: "empty and blank trace ids",
            setup: |d| {
                // r1 and r2 (t1, t2: one copy each) lose their trace ids: an
                // empty one and a blank one. Before, the two became one
                // request and a "duplicate".
                let mut rows = fixture::part_a();
                rows[0].trace_id = String::new();
                rows[1].trace_id = " \t".into();
                write(d, PART_A, &to_parquet(&rows, 4).unwrap());
                None
            },
            want: Want::Flagged(|_, s| {
                let m = &s.manifest;
                ensure(m.rows.rejected.get("trace_id") == Some(&2), || {
                    format!("{:?}", m.rows.rejected)
                })?;
                // 13 requests less the two; the 4 real duplicates unchanged.
                ensure(s.requests == 11 && m.rows.duplicates_dropped == 4, || {
                    format!("{} requests, {:?}", s.requests, m.rows)
                })?;
                ensure(s.outcome == ExitKind::DataQuality, || {
                    format!("{:?}", s.outcome)
                })?;
                let ex = format!("{:?}", m.data_quality.rejected_examples);
                ensure(ex.contains("empty or blank `trace_id`"), || ex)
            }),
        },
        Case {
            name: "unknown currency of a logged cost",
            setup: |d| {
                write(
                    d,
                    PART_A,
                    &rows_with(|r| {
                        r.cost_actual = Some(1.5);
                        r.currency = Some("XTS".into());
                    }),
                );
                None
            },
            // r3's GBP (no FX rate) is the fixture's one unconverted cost.
            want: Want::Flagged(|d, _| {
                ensure(dq_sum(d, "logged_cost_unconverted") == 2, || {
                    format!("{}", dq_sum(d, "logged_cost_unconverted"))
                })
            }),
        },
        Case {
            name: "empty day: no objects",
            setup: |d| {
                for f in ["part-a.parquet", "part-b.parquet"] {
                    std::fs::remove_file(d.join("requests/date=2026-03-08").join(f)).unwrap();
                }
                std::fs::remove_file(d.join("requests/date=2026-03-09/late.parquet")).unwrap();
                std::fs::remove_file(d.join("requests/date=2026-03-07/old.parquet")).unwrap();
                None
            },
            want: Want::Refused(InputData, &["no request rows for 2026-03-08 in UTC"]),
        },
        Case {
            name: "hostile tag values",
            setup: |d| {
                let mut rows = fixture::part_a();
                for (r, v) in rows.iter_mut().zip(HOSTILE) {
                    r.dept = Some(v.into());
                    r.project = Some(v.into());
                }
                write(d, PART_A, &to_parquet(&rows, 4).unwrap());
                None
            },
            want: Want::Flagged(|d, _| {
                // CSV: every value back exactly (formulas defused with a quote).
                let rows = csv_rows(d, "finance_by_dimension.csv");
                for v in HOSTILE {
                    let want = tokenledger::report::guard_formula(v).into_owned();
                    ensure(rows.iter().any(|r| r[1] == want), || {
                        format!("{v:?} not in finance_by_dimension.csv")
                    })?;
                }
                // HTML: text, never markup.
                for page in ["finance.html", "ops.html"] {
                    let html = std::fs::read_to_string(reports_dir(d).join(page)).unwrap();
                    ensure(!html.contains("<script>alert"), || {
                        format!("{page} has the script")
                    })?;
                }
                let finance = std::fs::read_to_string(reports_dir(d).join("finance.html")).unwrap();
                ensure(finance.contains("&lt;script&gt;alert("), || {
                    "finance.html does not show the value".into()
                })?;
                // FOCUS Tags: valid JSON holding the value.
                let focus = csv_rows(d, "focus_costs.csv");
                let text = std::fs::read_to_string(reports_dir(d).join("focus_costs.csv")).unwrap();
                let tags = csv::Reader::from_reader(text.as_bytes())
                    .headers()
                    .unwrap()
                    .iter()
                    .position(|h| h == "Tags")
                    .unwrap();
                let found = focus.iter().any(|r| {
                    serde_json::from_str::<serde_json::Value>(&r[tags])
                        .ok()
                        .and_then(|j| {
                            j.get("dept")
                                .and_then(|v| v.as_str())
                                .map(|s| s == HOSTILE[2])
                        })
                        .unwrap_or(false)
                });
                ensure(found, || {
                    "focus_costs.csv Tags do not hold the value as JSON".into()
                })
            }),
        },
        Case {
            name: "line break in a tag forging a mail line",
            setup: |d| {
                let mut rows = fixture::part_a();
                rows[0].dept = Some("research\nTotal spend: $0.00 (all approved)".into());
                write(d, PART_A, &to_parquet(&rows, 4).unwrap());
                Some(
                    "[mail]\ntransport = \"outbox\"\nfrom = \"tl <tl@example.com>\"\noutbox = \"outbox\"\n\
                     [[mail.audiences]]\nname = \"finance\"\nreport = \"finance\"\nto = [\"f@example.com\"]\n"
                        .into(),
                )
            },
            want: Want::Flagged(|d, _| {
                let dir = d.join("outbox/date=2026-03-08");
                let eml = std::fs::read_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_string_lossy().contains("finance"))
                    .ok_or("no finance letter in the outbox")?;
                let raw = std::fs::read(&eml).unwrap();
                let msg = mail_parser::MessageParser::default()
                    .parse(&raw)
                    .ok_or("not a MIME message")?;
                let text = msg.body_text(0).ok_or("no text part")?.into_owned();
                ensure(
                    !text
                        .lines()
                        .any(|l| l.starts_with("Total spend: $0.00 (all")),
                    || format!("a forged line in the text part:\n{text}"),
                )?;
                ensure(
                    text.contains("research\\nTotal spend: $0.00 (all approved)"),
                    || format!("the value is not shown escaped:\n{text}"),
                )
            }),
        },
        Case {
            name: "three thousand departments in one letter",
            setup: |d| {
                // 3,000 departments, one request each, at noon.
                let rows: Vec<LogRow> = (0..3000)
                    .map(|i| {
                        let mut r = fixture::part_a()[0].clone();
                        r.trace_id = format!("many-{i}");
                        r.dept = Some(format!("department-{i:04}"));
                        r.ts_us = fixture::us("2026-03-08T12:30:00Z");
                        r
                    })
                    .collect();
                write(
                    d,
                    "requests/date=2026-03-08/many.parquet",
                    &to_parquet(&rows, 1024).unwrap(),
                );
                Some(
                    "[mail]\ntransport = \"outbox\"\nfrom = \"tl <tl@example.com>\"\noutbox = \"outbox\"\nmax_letter_bytes = 1000000\n\
                     [[mail.audiences]]\nname = \"finance\"\nreport = \"finance\"\nto = [\"f@example.com\"]\n"
                        .into(),
                )
            },
            want: Want::Flagged(|d, _| {
                let dir = d.join("outbox/date=2026-03-08");
                let eml = std::fs::read_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_string_lossy().contains("finance"))
                    .ok_or("no finance letter in the outbox")?;
                let raw = std::fs::read(&eml).unwrap();
                ensure(raw.len() <= 1_000_000, || format!("{} bytes", raw.len()))?;
                let msg = mail_parser::MessageParser::default()
                    .parse(&raw)
                    .ok_or("not a MIME message")?;
                ensure(
                    msg.attachment_count() == 0
                        || msg
                            .attachments()
                            .all(|a| a.is_message() || a.content_id().is_some()),
                    || "CSV attachments kept".into(),
                )?;
                let text = msg.body_text(0).ok_or("no text part")?.into_owned();
                ensure(
                    text.contains("over the 1000000 byte limit (mail.max_letter_bytes): left out the CSV attachments")
                        && text.contains("departments (the 25 largest are shown"),
                    || text.chars().take(800).collect(),
                )?;
                // The "By department" section: the 25 largest.
                let depts = text
                    .lines()
                    .skip_while(|l| !l.starts_with("By department:"))
                    .skip(1)
                    .take_while(|l| l.starts_with("- "))
                    .count();
                ensure(depts == 25, || format!("{depts} departments in the text"))
            }),
        },
        Case {
            name: "huge tag string",
            setup: |d| {
                write(
                    d,
                    PART_A,
                    &rows_with(|r| r.project = Some("x".repeat(1 << 20))),
                );
                None
            },
            want: Want::Flagged(|d, _| {
                let rows = csv_rows(d, "finance_by_dimension.csv");
                ensure(rows.iter().any(|r| r[2].len() == 1 << 20), || {
                    "the 1 MiB value is not in the CSV".into()
                })?;
                let html = std::fs::read_to_string(reports_dir(d).join("finance.html")).unwrap();
                ensure(html.len() < 400_000, || {
                    format!(
                        "finance.html is {} bytes: long values must be shortened for display",
                        html.len()
                    )
                })?;
                ensure(html.contains("… (1048576 characters, #"), || {
                    "the shortened value is not shown with its length".into()
                })
            }),
        },
        // --- price table ---
        Case {
            name: "overlapping prices",
            setup: |d| {
                write(
                    d,
                    "prices.csv",
                    format!(
                        "{}openai,gpt-4o,0.003,0.012,,,2026-03-01,2026-03-09\n",
                        fixture::PRICES
                    )
                    .as_bytes(),
                );
                None
            },
            want: Want::Refused(Usage, &["prices.csv", "prices of openai/gpt-4o overlap"]),
        },
        Case {
            name: "price not a number",
            setup: |d| {
                write(
                    d,
                    "prices.csv",
                    format!(
                        "{}mistral,mistral-large,abc,0.006,,,2024-01-01,\n",
                        fixture::PRICES
                    )
                    .as_bytes(),
                );
                None
            },
            want: Want::Refused(Usage, &["prices.csv", "line 5", "abc"]),
        },
        Case {
            name: "negative price",
            setup: |d| {
                write(
                    d,
                    "prices.csv",
                    format!(
                        "{}mistral,mistral-large,-0.002,0.006,,,2024-01-01,\n",
                        fixture::PRICES
                    )
                    .as_bytes(),
                );
                None
            },
            want: Want::Refused(Usage, &["prices.csv", "line 5", "-0.002"]),
        },
        Case {
            name: "price table without a column",
            setup: |d| {
                write(d, "prices.csv", b"provider,model,input_usd_per_1k,valid_from,valid_to\nopenai,gpt-4o,0.0025,2024-01-01,\n");
                None
            },
            want: Want::Refused(Usage, &["prices.csv", "output_usd_per_1k"]),
        },
        // --- FX ---
        Case {
            name: "FX rate not a number",
            setup: |d| {
                write(
                    d,
                    "fx.csv",
                    format!("{}2026-03-07,EUR,one\n", fixture::FX).as_bytes(),
                );
                None
            },
            want: Want::Refused(Usage, &["fx.csv", "line 5", "one"]),
        },
        Case {
            name: "FX unknown currency code",
            setup: |d| {
                write(
                    d,
                    "fx.csv",
                    format!("{}2026-03-07,EURO,1.1\n", fixture::FX).as_bytes(),
                );
                None
            },
            want: Want::Refused(
                Usage,
                &["fx.csv", "line 5", "`EURO` is not a 3-letter ISO 4217 code"],
            ),
        },
        Case {
            name: "FX date malformed",
            setup: |d| {
                write(
                    d,
                    "fx.csv",
                    format!("{}07/03/2026,EUR,1.1\n", fixture::FX).as_bytes(),
                );
                None
            },
            want: Want::Refused(Usage, &["fx.csv", "line 5", "07/03/2026"]),
        },
        // --- invoices, one per adapter ---
        Case {
            name: "normalized invoice: amount not a number",
            setup: |d| {
                write(
                    d,
                    "invoices/normalized/2026-03.csv",
                    b"provider,date,model,amount,currency\nmistral,2026-03-08,,twenty,EUR\n",
                );
                None
            },
            want: Want::Refused(
                InputData,
                &["invoices/normalized/2026-03.csv line 2", "twenty"],
            ),
        },
        Case {
            name: "OpenAI costs: truncated JSON",
            setup: |d| {
                write(
                    d,
                    "invoices/openai/costs-2026-03.json",
                    &fixture::INVOICES_OPENAI.as_bytes()[..60],
                );
                None
            },
            want: Want::Refused(InputData, &["invoices/openai/costs-2026-03.json"]),
        },
        Case {
            name: "Anthropic cost report: amount as a number",
            setup: |d| {
                write(
                    d,
                    "invoices/anthropic/cost_report-2026-03-08.json",
                    fixture::INVOICES_ANTHROPIC
                        .replacen("\"amount\": \"1.32\"", "\"amount\": 1.32", 1)
                        .as_bytes(),
                );
                None
            },
            want: Want::Refused(
                InputData,
                &["invoices/anthropic/cost_report-2026-03-08.json", "1.32"],
            ),
        },
        Case {
            name: "AWS CUR: missing column",
            setup: |d| {
                write(d, "invoices/aws_cur/2026-03.csv", b"line_item_usage_start_date,line_item_unblended_cost\n2026-03-08T00:00:00Z,1.0\n");
                None
            },
            want: Want::Refused(InputData, &["invoices/aws_cur/2026-03.csv"]),
        },
        Case {
            name: "FOCUS: BilledCost not a number",
            setup: |d| {
                write(d, "invoices/focus/2026-03.csv", b"ChargePeriodStart,ChargePeriodEnd,BilledCost,BillingCurrency,ProviderName,ChargeCategory\n2026-03-08T00:00:00Z,2026-03-09T00:00:00Z,lots,USD,OpenAI,Usage\n");
                None
            },
            want: Want::Refused(
                InputData,
                &["invoices/focus/2026-03.csv line 2: BilledCost `lots` is not a decimal"],
            ),
        },
        // --- configuration ---
        Case {
            name: "config key typo",
            setup: |_| Some("[run]\ntimezon = \"UTC\"\n".into()),
            want: Want::Refused(Usage, &["unknown field `timezon`"]),
        },
        Case {
            name: "config section typo",
            setup: |_| Some("[anomalies]\nwindow_days = 28\n".into()),
            want: Want::Refused(Usage, &["unknown field `anomalies`"]),
        },
        Case {
            name: "config values wrong, every problem at once",
            setup: |_| {
                Some("[run]\ntimezone = \"Mars/Olympus\"\nlate_days = 99\nmemory_limit = \"lots\"\n[lease]\nstale_after_secs = 1\n".into())
            },
            want: Want::Refused(
                Usage,
                &[
                    "Mars/Olympus",
                    "run.late_days: 99",
                    "run.memory_limit: `lots`",
                    "lease.stale_after_secs: 1",
                ],
            ),
        },
    ];
    cases
}

fn drop_col(s: &Schema, cols: Vec<ArrayRef>, name: &str) -> (Vec<Field>, Vec<ArrayRef>) {
    let keep: Vec<usize> = (0..cols.len())
        .filter(|&i| s.field(i).name() != name)
        .collect();
    (
        keep.iter().map(|&i| s.field(i).clone()).collect(),
        keep.iter().map(|&i| Arc::clone(&cols[i])).collect(),
    )
}

fn text_col(
    s: &Schema,
    mut cols: Vec<ArrayRef>,
    name: &str,
    value: &str,
) -> (Vec<Field>, Vec<ArrayRef>) {
    let i = s.index_of(name).unwrap();
    let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[i] = Field::new(name, DataType::Utf8, false);
    cols[i] = Arc::new(StringArray::from(vec![value; cols[i].len()]));
    (fields, cols)
}

fn null_first(s: &Schema, mut cols: Vec<ArrayRef>, name: &str) -> (Vec<Field>, Vec<ArrayRef>) {
    let i = s.index_of(name).unwrap();
    let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[i] = Field::new(name, DataType::Utf8, true);
    let old = cols[i].as_any().downcast_ref::<StringArray>().unwrap();
    let nulled: StringArray = old
        .iter()
        .enumerate()
        .map(|(j, v)| if j == 0 { None } else { v })
        .collect();
    cols[i] = Arc::new(nulled);
    (fields, cols)
}

/// The bad-input corpus: each case on a fresh copy of the fixture lake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus() {
    let cases = corpus();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let lake = fixture::lake();
        let dir = lake.path();
        let extra = (case.setup)(dir);
        let config = match &extra {
            None => Ok(config(dir)),
            Some(toml) => Config::from_sources(
                &format!("[lake]\nroot = \"{}\"\n{toml}", dir.display()),
                "corpus",
                &[],
                &tokenledger::config::Overrides::default(),
            ),
        };
        let result = match config {
            Ok(c) => tokenledger::pipeline::run(&c, fixture::date()).await,
            Err(e) => Err(e),
        };
        let problem = match (&case.want, result) {
            (Want::Refused(kind, needles), Err(e)) => {
                let text = render_chain(&e);
                let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
                if e.kind() != *kind {
                    Some(format!("exit {:?}, expected {kind:?}: {text}", e.kind()))
                } else if !missing.is_empty() {
                    Some(format!("{missing:?} not in: {text}"))
                } else if reports_dir(dir).exists()
                    || dir.join(format!("rollups/daily/date={DATE}")).exists()
                {
                    Some("something was published".into())
                } else {
                    None
                }
            }
            (Want::Refused(kind, _), Ok(s)) => {
                Some(format!("expected {kind:?}, ran: {:?}", s.outcome))
            }
            (Want::Flagged(check), Ok(s)) => check(dir, &s).err(),
            (Want::Flagged(_), Err(e)) => {
                Some(format!("expected a flagged run: {}", render_chain(&e)))
            }
        };
        eprintln!(
            "{:<48} {}",
            case.name,
            if problem.is_none() { "ok" } else { "FAILED" }
        );
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
