//! Replay and reprice on the fixture lake: an auditor replays a day and gets
//! byte-identical outputs, or is told which input changed and which cells
//! moved; a reprice with the real LiteLLM price history shows what it would
//! do, publishing nothing.

use tokenledger::lake::Location;
use tokenledger::pipeline::audit;
use tokenledger::synth::to_parquet;

use crate::cli::{code, text, tokenledger};
use crate::fixture::{self, DATE, report};
use crate::metrics::run_fixture;

const MANIFEST: &str = "reports/date=2026-03-08/manifest.json";

fn config(lake: &std::path::Path) -> tokenledger::config::Config {
    tokenledger::config::Config::for_lake(&lake.to_string_lossy()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_byte_identical_until_an_input_changes() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let cfg = config(lake.path());
    let manifest = Location::parse(MANIFEST, Some(&cfg.lake)).unwrap();
    let r = audit::replay(&cfg, &manifest).await.unwrap();
    // 4 request objects, the price and FX tables, 3 invoice objects, and
    // the two rollups of 7 March (built by the run from the logs).
    assert_eq!(r.inputs, 11);
    assert!(r.changed_inputs.is_empty(), "{:?}", r.changed_inputs);
    assert_eq!(r.outputs.len(), 23);
    assert!(r.identical(), "{:?}", r.outputs);

    // A file that arrives later in a listed partition is not read by a replay.
    std::fs::write(
        lake.path()
            .join("requests/date=2026-03-08/late-arrival.parquet"),
        to_parquet(&fixture::part_b(), 1024).unwrap(),
    )
    .unwrap();
    assert!(audit::replay(&cfg, &manifest).await.unwrap().identical());

    // part-b rewritten without t9's losing record: the replay names the
    // object, and the cells that moved (one duplicate fewer).
    let part_b = lake.path().join("requests/date=2026-03-08/part-b.parquet");
    let before = std::fs::metadata(&part_b).unwrap().len();
    let rows: Vec<_> = fixture::part_b()
        .into_iter()
        .filter(|r| !(r.trace_id == "t9" && r.output_tokens == 10))
        .collect();
    std::fs::write(&part_b, to_parquet(&rows, 1024).unwrap()).unwrap();
    let after = std::fs::metadata(&part_b).unwrap().len();
    let r = audit::replay(&cfg, &manifest).await.unwrap();
    assert!(!r.identical());
    assert_eq!(r.changed_inputs.len(), 1, "{:?}", r.changed_inputs);
    assert!(
        r.changed_inputs[0].starts_with(&format!(
            "requests/date=2026-03-08/part-b.parquet: size {before} -> {after}"
        )),
        "{:?}",
        r.changed_inputs
    );
    let ops = r
        .outputs
        .iter()
        .find(|o| o.key.ends_with("/ops_daily.csv"))
        .unwrap();
    let d = ops.difference.as_deref().unwrap();
    assert!(
        d.contains("line 2 duplicates_dropped: published `4`, replayed `3`"),
        "{d}"
    );
    let finance = r
        .outputs
        .iter()
        .find(|o| o.key.ends_with("/finance_by_dimension.csv"))
        .unwrap();
    assert_eq!(
        finance.difference, None,
        "the kept rows and money did not change"
    );

    // The CLI says so with exit code 7; nothing was written by the replay.
    let published = report(lake.path(), "ops_daily.csv");
    let out = tokenledger(
        &[
            "replay",
            "--lake",
            &lake.path().to_string_lossy(),
            "--manifest",
            MANIFEST,
        ],
        &[],
    );
    let (stdout, _) = text(&out);
    assert_eq!(code(&out), 7, "{stdout}");
    assert!(
        stdout.contains("input changed: requests/date=2026-03-08/part-b.parquet"),
        "{stdout}"
    );
    assert!(stdout.contains("result: DIFFERS"), "{stdout}");
    assert_eq!(report(lake.path(), "ops_daily.csv"), published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_exits_0_on_an_untouched_day() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let out = tokenledger(
        &[
            "replay",
            "--lake",
            &lake.path().to_string_lossy(),
            "--manifest",
            MANIFEST,
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("outputs: 23 of 23 byte-identical"),
        "{stdout}"
    );
    assert!(stdout.contains("result: byte-identical\n"), "{stdout}");

    // An FX rate for a later date changes the FX table, not the day: the
    // replay names the changed input and still answers byte-identical.
    let fx = lake.path().join("fx.csv");
    let mut rates = std::fs::read_to_string(&fx).unwrap();
    rates.push_str("2026-04-01,EUR,1.30\n");
    std::fs::write(&fx, rates).unwrap();
    let out = tokenledger(
        &[
            "replay",
            "--lake",
            &lake.path().to_string_lossy(),
            "--manifest",
            MANIFEST,
        ],
        &[],
    );
    let (stdout, _) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}");
    assert!(
        stdout.contains("  input changed: fx.csv: content changed (sha256:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("result: byte-identical (1 input(s) changed since the run, no output did)"),
        "{stdout}"
    );
}

// The real LiteLLM history prices openai/gpt-4o at 0.0025 / 0.01 per 1K
// (cache read 0.00125) on 2026-03-08, for the whole day: the fixture's
// gpt-4o tokens are 3555 uncached input, 1150 cache read and 1815 output
// (see focus_costs.csv in reconcile.rs): 0.0088875 + 0.0014375 + 0.01815 =
// 0.028475, against 0.025232 published (part of the day had the fixture's
// cheaper noon price). It has no `anthropic/claude-sonnet` nor
// `mistral/mistral-large`: those stay or become unpriced.
const REPRICED: &str = "\
date,provider,model,cost_before_usd,cost_after_usd,delta_usd,delta_pct,unpriced_before,unpriced_after
2026-03-08,anthropic,claude-sonnet,0.052650,,,,0,4
2026-03-08,mistral,mistral-large,,,,,1,1
2026-03-08,openai,gpt-4o,0.025232,0.028475,0.003243,12.8527266963,0,0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprice_with_the_real_litellm_history_is_a_dry_run() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let history = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/litellm_price_history_2025-02_2026-07.csv"
    );
    let published = std::fs::read(
        lake.path()
            .join("rollups/daily/date=2026-03-08/part-0.parquet"),
    )
    .unwrap();
    let out_csv = lake.path().join("reprice.csv");
    let out = tokenledger(
        &[
            "reprice",
            "--lake",
            &lake.path().to_string_lossy(),
            "--from",
            DATE,
            "--to",
            DATE,
            "--prices",
            history,
            "--out",
            &out_csv.to_string_lossy(),
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(&out_csv).unwrap(), REPRICED);
    assert!(stdout.starts_with(REPRICED), "{stdout}");
    assert!(
        stdout.contains(
            "total 2026-03-08..2026-03-08: before 0.077882 USD, after 0.028475 USD, delta -0.049407 USD; unpriced requests before 1, after 5"
        ),
        "{stdout}"
    );
    // Nothing was published.
    assert_eq!(
        std::fs::read(
            lake.path()
                .join("rollups/daily/date=2026-03-08/part-0.parquet")
        )
        .unwrap(),
        published
    );
    assert!(report(lake.path(), "finance_by_dimension.csv").contains("0.050700"));
}
