//! Every metric on the hand-computed fixture (see `fixture.rs` for each row's
//! arithmetic). Kept requests: r1 r2 r3 r4 r5 r6 r7 r8 r9 r10 r13 r14 r17 = 13.
//! Dropped duplicates: r7's copy, t8's earlier record, t9's smaller record,
//! t10's part-a record = 4, three of them conflicting.
//! Latencies kept, sorted: 5 10 20 50 70 90 100 150 200 300 400 500 800
//! (quantile_cont: p50 = x[6] = 100; p95 at 11.4 = 500 + 0.4*300 = 620;
//! p99 at 11.88 = 500 + 0.88*300 = 764).

use std::collections::BTreeMap;

use arrow::array::AsArray;
use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;
use tokenledger::pipeline;

use crate::fixture::{self, DATE, report};

pub const OPS_DAILY: &str = "\
date,requests,qps_avg,qps_peak,error_rate,latency_p50_ms,latency_p95_ms,latency_p99_ms,cache_hit_rate,citation_rate_mean,human_reviewed,human_review_pass_rate,duplicates_dropped,duplicate_conflicts
2026-03-08,13,0.000150462962963,0.0333333333333,0.0769230769231,100,620,764,0.0769230769231,0.7,2,0.5,4,3
";

// anthropic: r4 r5 r8 r9 (10 70 400 800: p50 70+0.5*330 = 235, p95 at 2.85
// = 400+0.85*400 = 740, p99 at 2.97 = 788); openai: r1 r2 r3 r7 r10 r13 r14
// r17 (5 20 50 90 100 150 200 300: p50 95, p95 at 6.65 = 265, p99 at 6.93 = 293).
pub const OPS_BY_MODEL: &str = "\
date,provider,model,requests,qps_avg,qps_peak,error_rate,latency_p50_ms,latency_p95_ms,latency_p99_ms,cache_hit_rate,citation_rate_mean,human_reviewed,human_review_pass_rate,duplicates_dropped,duplicate_conflicts
2026-03-08,anthropic,claude-sonnet,4,0.0000462962962963,0.0166666666667,0.25,235,740,788,0.25,,0,,2,2
2026-03-08,mistral,mistral-large,1,0.0000115740740741,0.0166666666667,0,500,500,500,0,,0,,0,0
2026-03-08,openai,gpt-4o,8,0.0000925925925926,0.0333333333333,0,95,265,293,0,0.7,2,0.5,2,1
";

// cost_per_1k_usd = 1000 * cost / (input + output) of priced non-cache-hit
// requests: 50.7/12000 = 0.004225; 1.6/500 = 0.0032; 12.5e-3/5 = 0.0025;
// 1.95/450 = 0.0043333; 0.37/165 = 0.0022424; 13.25/3800 = 0.0034868;
// 10/2000 = 0.005. r14 comes from the late file, which has neither tags nor
// logged costs: (untagged), no logged cost. research/alpha/chat/openai is
// r1 r2 r7: 0.0075 + 0.00475 + 0.001 = 0.01325, logged r1 0.0075 + r2 0.005
// EUR * 1.10 = 0.013. r3 is GBP without a rate: its group has no logged cost.
pub const FINANCE: &str = "\
date,dept,project,task,provider,model,requests,input_tokens,output_tokens,cost_usd,cost_per_1k_usd,cache_savings_usd,logged_cost_usd,unpriced_requests
2026-03-08,(untagged),(untagged),(untagged),anthropic,claude-sonnet,1,10000,2000,0.050700,0.004225,0.000000,,0
2026-03-08,(untagged),(untagged),(untagged),openai,gpt-4o,1,400,100,0.001600,0.003200,0.000000,,0
2026-03-08,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",beta,(untagged),anthropic,claude-sonnet,1,500,200,0.000000,,0.004500,0.000000,0
2026-03-08,ops,delta,classify,openai,gpt-4o,1,5,0,0.000012,0.002500,0.000000,,0
2026-03-08,ops,gamma,chat,anthropic,claude-sonnet,2,400,50,0.001950,0.004333,0.000000,0.001400,0
2026-03-08,ops,gamma,chat,openai,gpt-4o,2,150,15,0.000370,0.002242,0.000000,,0
2026-03-08,research,alpha,chat,mistral,mistral-large,1,100,50,,,,0.000300,1
2026-03-08,research,alpha,chat,openai,gpt-4o,3,3100,700,0.013250,0.003487,0.000000,0.013000,0
2026-03-08,research,beta,summarize,openai,gpt-4o,1,1000,1000,0.010000,0.005000,0.000000,,0
";

pub const DATA_QUALITY: &str = "\
provider,model,requests,unpriced_requests,token_violations,total_tokens_mismatch,logged_cost_unconverted,logged_cost_invalid,citation_rate_invalid,duplicates_dropped,duplicate_conflicts
anthropic,claude-sonnet,4,0,0,0,0,0,0,2,2
mistral,mistral-large,1,1,0,0,0,0,0,0,0
openai,gpt-4o,8,0,1,1,1,0,0,2,1
";

pub async fn run_fixture(dir: &std::path::Path, tz: Option<&str>) -> pipeline::RunSummary {
    let config = Config::from_sources(
        "",
        "test",
        &[],
        &Overrides {
            lake: Some(dir.to_string_lossy().to_string()),
            timezone: tz.map(str::to_string),
            config_dir: None,
            ..Overrides::default()
        },
    )
    .unwrap();
    pipeline::run(&config, fixture::date()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_matches_the_hand_computed_values() {
    let lake = fixture::lake();
    let summary = run_fixture(lake.path(), None).await;
    assert_eq!(summary.outcome, ExitKind::Ok);
    assert_eq!(report(lake.path(), "ops_daily.csv"), OPS_DAILY);
    assert_eq!(report(lake.path(), "ops_by_model.csv"), OPS_BY_MODEL);
    assert_eq!(report(lake.path(), "finance_by_dimension.csv"), FINANCE);
    assert_eq!(report(lake.path(), "data_quality.csv"), DATA_QUALITY);
    // 0.0507 + 0.0016 + 0 + 0.0000125 + 0.00195 + 0.00037 + 0.01325 + 0.01
    // = 0.0778825 exactly, rounded once, half to even.
    assert_eq!(summary.cost_usd, "0.077882");
    assert_eq!(summary.requests, 13);
    // One day and no history: no baseline, no anomaly, SPEC 3's columns.
    assert_eq!(
        report(lake.path(), "anomalies.csv"),
        "date,dimension,key,metric,value,baseline,score,severity,likely_cause,change_pct,impact_usd,causes\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_accounts_for_every_row_and_input() {
    let lake = fixture::lake();
    let summary = run_fixture(lake.path(), None).await;
    let m: serde_json::Value = serde_json::from_str(&report(lake.path(), "manifest.json")).unwrap();
    let rows = &m["rows"];
    // 14 + 4 + 2 + 1 rows listed; r11 r12 r15 r16 outside the day.
    assert_eq!(rows["listed"], 21);
    assert_eq!(rows["outside_window"], 4);
    assert_eq!(rows["null_ts"], 0);
    assert_eq!(rows["in_day"], 17);
    assert_eq!(rows["duplicates_dropped"], 4);
    assert_eq!(rows["duplicate_conflicts"], 3);
    assert_eq!(rows["kept"], 13);
    assert_eq!(rows["late_rows"], 1);
    assert_eq!(rows["early_rows"], 0);
    assert_eq!(
        m["inputs"]["partitions"],
        serde_json::json!(["date=2026-03-07", "date=2026-03-08", "date=2026-03-09"])
    );
    let keys: Vec<&str> = m["inputs"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "requests/date=2026-03-07/old.parquet",
            "requests/date=2026-03-08/part-a.parquet",
            "requests/date=2026-03-08/part-b.parquet",
            "requests/date=2026-03-09/late.parquet"
        ],
        "_SUCCESS is not a data file"
    );
    for o in m["inputs"]["requests"].as_array().unwrap() {
        assert!(
            o["size"].as_u64().unwrap() > 0 && o["etag"].is_string(),
            "{o}"
        );
    }
    let prices_sha = tokenledger::manifest::sha256(fixture::PRICES.as_bytes());
    assert_eq!(m["inputs"]["prices"]["sha256"], prices_sha.as_str());
    assert_eq!(m["inputs"]["prices"]["rows"], 3);
    assert_eq!(
        m["fx"]["rates"][1],
        serde_json::json!({"currency": "EUR", "rate_date": "2026-03-06", "usd_per_unit": "1.1"})
    );
    assert_eq!(
        m["fx"]["unconverted_requests"],
        serde_json::json!({"GBP": 1})
    );
    assert_eq!(m["pricing"]["unpriced_requests"], 1);
    assert_eq!(m["pricing"]["priced_requests"], 12);
    let gpt = m["pricing"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "gpt-4o")
        .unwrap();
    assert_eq!(
        gpt["price_ids"].as_array().unwrap().len(),
        2,
        "both gpt-4o prices were in force that day"
    );
    assert_eq!(m["data_quality"]["token_invariant_violations"], 1);
    assert_eq!(m["data_quality"]["total_tokens_mismatch"], 1);
    assert_eq!(m["data_quality"]["status"], "ok");
    // Every output is listed with a digest of the bytes published.
    // 11 CSVs, 2 rollups, 2 dashboards, 8 chart images.
    let outputs = m["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 23);
    for o in outputs {
        let bytes = std::fs::read(lake.path().join(o["key"].as_str().unwrap())).unwrap();
        assert_eq!(o["sha256"], tokenledger::manifest::sha256(&bytes).as_str());
        assert_eq!(o["size"], bytes.len());
    }
    assert_eq!(summary.manifest.config_digest.len(), "sha256:".len() + 64);
    // The headline the report index lists.
    assert_eq!(
        m["headline"],
        serde_json::json!({"requests": 13, "cost_usd": "0.077882", "unpriced_requests": 1, "alerts": 0, "data_quality": "ok"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_hold_exact_money_and_the_latency_histogram() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let read = |rel: &str| {
        let bytes = bytes::Bytes::from(std::fs::read(lake.path().join(rel)).unwrap());
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect::<Vec<_>>()
    };
    let daily = read("rollups/daily/date=2026-03-08/part-0.parquet");
    let mut cost: i128 = 0;
    let mut requests = 0i64;
    for b in &daily {
        let c = b.column_by_name("cost_usd").unwrap();
        assert_eq!(
            c.data_type(),
            &arrow::datatypes::DataType::Decimal128(38, 23)
        );
        cost += c
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .iter()
            .flatten()
            .sum::<i128>();
        requests += b
            .column_by_name("requests")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .flatten()
            .sum::<i64>();
    }
    // 0.0778825 USD, unrounded.
    assert_eq!(cost, 778_825 * 10i128.pow(16));
    assert_eq!(requests, 13);

    let latency = read("rollups/latency/date=2026-03-08/part-0.parquet");
    let mut hist: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for b in &latency {
        let model = b.column_by_name("model").unwrap();
        let model = arrow::compute::cast(model, &arrow::datatypes::DataType::Utf8).unwrap();
        let model = model.as_string::<i32>();
        let lat = b
            .column_by_name("latency_ms")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        let n = b
            .column_by_name("requests")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            hist.insert(
                (model.value(i).to_string(), lat.value(i) as i64),
                n.value(i),
            );
        }
    }
    assert_eq!(hist.values().sum::<i64>(), 13);
    assert_eq!(
        hist[&("gpt-4o".to_string(), 90)],
        1,
        "t10's winner (90 ms), not its loser (80 ms)"
    );
    assert!(!hist.contains_key(&("gpt-4o".to_string(), 80)));
    assert_eq!(
        hist[&("claude-sonnet".to_string(), 800)],
        1,
        "t8's latest record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_york_dst_day_has_23_hours_and_its_own_rows() {
    // America/New_York, 2026-03-08: [05:00Z, 04:00Z next day), 82800 s.
    // In: r2 r3 r4 r5 r6 r7 r13 r8 r9 r10 r17 r14, plus r12 (03-09 00:00Z,
    // in the 03-08 partition: early) and r15 (03-09 01:00Z); r1 is not.
    let lake = fixture::lake();
    let summary = run_fixture(lake.path(), Some("America/New_York")).await;
    assert_eq!(summary.requests, 14);
    assert_eq!(summary.manifest.seconds_in_day, 82_800);
    assert_eq!(summary.manifest.window_start, "2026-03-08T05:00:00Z");
    assert_eq!(summary.manifest.window_end, "2026-03-09T04:00:00Z");
    assert_eq!(summary.manifest.rows.late_rows, 1);
    assert_eq!(summary.manifest.rows.early_rows, 1);
    assert_eq!(
        summary.manifest.inputs.partitions,
        [
            "date=2026-03-07",
            "date=2026-03-08",
            "date=2026-03-09",
            "date=2026-03-10"
        ]
    );
    let ops = report(lake.path(), "ops_daily.csv");
    let row: Vec<&str> = ops.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[1], "14");
    // 14 / 82800
    assert_eq!(row[2], "0.000169082125604");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_write_byte_identical_outputs() {
    let lake = fixture::lake();
    let first = run_fixture(lake.path(), None).await;
    let snapshot = |m: &tokenledger::manifest::Manifest| m.outputs.clone();
    let a = snapshot(&first.manifest);
    let before: Vec<Vec<u8>> = a
        .iter()
        .map(|o| std::fs::read(lake.path().join(&o.key)).unwrap())
        .collect();
    // A second run on another machine shape (one thread, a bounded query
    // pool: the outputs then run one at a time) gives the same bytes.
    let config = Config::from_sources(
        "[run]\nthreads = 1\nmemory_limit = \"256MiB\"\n",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.path().to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let second = pipeline::run(&config, fixture::date()).await.unwrap();
    assert_eq!(snapshot(&second.manifest), a);
    let after: Vec<Vec<u8>> = a
        .iter()
        .map(|o| std::fs::read(lake.path().join(&o.key)).unwrap())
        .collect();
    assert_eq!(before, after);
    assert_ne!(first.manifest.run_id, second.manifest.run_id);
    let _ = DATE;
}
