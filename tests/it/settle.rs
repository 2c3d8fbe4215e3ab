//! Late rows restate their day: a run re-checks the `late_days` days before
//! its own, republishes one whose inputs grew and whose figures moved (with
//! `restated_from`, its rollups, the index and the next finance letter
//! saying so), and rewrites nothing when nothing moved.

use mail_parser::MessageParser;
use tokenledger::pipeline;
use tokenledger::synth::{LogRow, to_parquet};

use crate::dashboards::config;
use crate::fixture::{self, report};

fn manifest(lake: &std::path::Path, date: &str) -> serde_json::Value {
    let bytes = std::fs::read(lake.join(format!("reports/date={date}/manifest.json"))).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn manifest_bytes(lake: &std::path::Path, date: &str) -> Vec<u8> {
    std::fs::read(lake.join(format!("reports/date={date}/manifest.json"))).unwrap()
}

/// One row of a day in an object of the next day's partition.
fn late_object(lake: &std::path::Path, partition: &str, name: &str, ts: &str, trace: &str) {
    let row = LogRow::new(fixture::us(ts), trace, "openai", "gpt-4o", 1000, 500);
    let dir = lake.join(format!("requests/date={partition}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), to_parquet(&[row], 1024).unwrap()).unwrap();
}

/// The fixture day (13 requests, $0.077882) is published; then a row of it
/// lands in the next day's partition (late, as SPEC 2 allows): 23:30 UTC,
/// gpt-4o at the afternoon price, 1000 input at 0.002/1K + 500 output at
/// 0.008/1K = $0.006000. The next day's run restates it: 14 requests,
/// $0.083882, +$0.006000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_row_restates_its_day_and_nothing_else_is_rewritten() {
    let lake = fixture::lake();
    let toml = crate::mail::mail_toml(1, "security = \"plain\"")
        .replace("transport = \"smtp\"", "transport = \"outbox\"");
    let cfg = config(lake.path(), &toml);
    let first = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!((first.requests, first.cost_usd.as_str()), (13, "0.077882"));
    let m = manifest(lake.path(), "2026-03-08");
    // 2026-03-08 lies long before this run: its window (1 day) has closed.
    assert_eq!(m["status"], "final");
    assert_eq!(m["final_after"], "2026-03-10T00:00:00Z");
    assert!(m.get("restated_from").is_none());

    late_object(
        lake.path(),
        "2026-03-09",
        "late-2.parquet",
        "2026-03-08T23:30:00Z",
        "t-late",
    );
    let next = fixture::date().succ_opt().unwrap();
    let second = pipeline::run(&cfg, next).await.unwrap();
    assert_eq!(second.restated.len(), 1, "{:?}", second.restated);
    let r = &second.restated[0];
    assert_eq!(r.date, fixture::date());
    assert_eq!(r.replaced_run, first.run_id);
    assert_eq!((r.requests_before, r.requests_after), (13, 14));
    assert_eq!(
        (r.cost_before.as_str(), r.cost_after.as_str()),
        ("0.077882", "0.083882")
    );
    assert_eq!(
        r.objects,
        vec!["requests/date=2026-03-09/late-2.parquet".to_string()]
    );

    // The day republished: manifest, figures, pages, rollup.
    let m = manifest(lake.path(), "2026-03-08");
    assert_eq!(m["run_id"], second.run_id.as_str());
    assert_eq!(m["restated_from"]["run_id"], first.run_id.as_str());
    assert_eq!(m["restated_from"]["cost_usd"], "0.077882");
    assert_eq!(m["restated_from"]["requests"], 13);
    assert_eq!(m["headline"]["cost_usd"], "0.083882");
    let ops = report(lake.path(), "ops_daily.csv");
    assert!(
        ops.lines().nth(1).unwrap().starts_with("2026-03-08,14,"),
        "{ops}"
    );
    let finance = report(lake.path(), "finance.html");
    assert!(
        finance.contains(&format!(
            "Restated: replaces the report of run {}",
            first.run_id
        )) && finance.contains("spend $0.077882 → $0.083882 (+$0.006000)"),
        "{finance}"
    );
    let file = std::fs::File::open(
        lake.path()
            .join("rollups/daily/date=2026-03-08/part-0.parquet"),
    )
    .unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = std::sync::Arc::clone(reader.schema());
    let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
    let rows = tokenledger::queries::rows::decode_from("rollup", &schema, &batches).unwrap();
    let totals = tokenledger::history::totals_of(&rows);
    assert_eq!(
        totals.requests, 14,
        "the rollup follows: month to date and baselines"
    );

    // The index and the next day's finance letter say so.
    let index = std::fs::read_to_string(lake.path().join("reports/index.html")).unwrap();
    assert!(index.contains("final, restated +$0.006000"), "{index}");
    let eml = std::fs::read(lake.path().join("outbox/date=2026-03-09/finance.eml")).unwrap();
    let letter = MessageParser::default().parse(&eml).unwrap();
    let text = letter.body_text(0).unwrap();
    assert!(
        text.contains("restated: 2026-03-08 +$0.006000 (requests 13 → 14"),
        "{text}"
    );

    // A rerun finds nothing new for the 8th: nothing rewritten.
    let before = manifest_bytes(lake.path(), "2026-03-08");
    let again = pipeline::run(&cfg, next).await.unwrap();
    assert!(again.restated.is_empty());
    assert_eq!(manifest_bytes(lake.path(), "2026-03-08"), before);

    // An object with no row of the 8th (only the 9th's, as the 9th's
    // partition fills during the 9th): its footer's ts statistics rule it
    // out, so the 8th is not even recomputed, and nothing is rewritten.
    late_object(
        lake.path(),
        "2026-03-09",
        "more.parquet",
        "2026-03-09T10:00:00Z",
        "t-ninth",
    );
    let third = pipeline::run(&cfg, next).await.unwrap();
    assert!(third.restated.is_empty());
    assert_eq!(manifest_bytes(lake.path(), "2026-03-08"), before);
    assert_eq!(third.requests, second.requests + 1);
}
