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

/// `tokenledger replay` of the fixture day's manifest, as an auditor runs it.
fn replay_cli(lake: &std::path::Path) -> std::process::Output {
    tokenledger(
        &[
            "replay",
            "--lake",
            &lake.to_string_lossy(),
            "--manifest",
            MANIFEST,
        ],
        &[],
    )
}

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
    let out = replay_cli(lake.path());
    let (stdout, _) = text(&out);
    assert_eq!(code(&out), 7, "{stdout}");
    assert!(
        stdout.contains("input changed: requests/date=2026-03-08/part-b.parquet"),
        "{stdout}"
    );
    assert!(stdout.contains("result: DIFFERS"), "{stdout}");
    assert_eq!(report(lake.path(), "ops_daily.csv"), published);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A local lake copied elsewhere (a restore, a colleague's copy) has new
/// inodes and mtimes, so new local etags for the same bytes: the replay
/// compares the request objects by the content digest the run recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_local_lake_replays_identical_by_content() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lake.path().join(MANIFEST)).unwrap()).unwrap();
    let requests = manifest["inputs"]["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 4);
    for r in requests {
        let key = r["key"].as_str().unwrap();
        let bytes = std::fs::read(lake.path().join(key)).unwrap();
        // BLAKE3, worked out here from the bytes (manifest version 4 on).
        let blake3 = format!("blake3:{}", blake3::hash(&bytes).to_hex());
        assert_eq!(r["blake3"], blake3.as_str(), "{key}");
        assert!(r.get("sha256").is_none(), "{key}: {r}");
    }
    let copy = tempfile::tempdir().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    copy_dir(lake.path(), copy.path());
    let etag = |dir: &std::path::Path| {
        let key = requests[0]["key"].as_str().unwrap();
        let m = std::fs::metadata(dir.join(key)).unwrap();
        (
            std::os::unix::fs::MetadataExt::ino(&m),
            m.modified().unwrap(),
        )
    };
    assert_ne!(
        etag(lake.path()),
        etag(copy.path()),
        "a copy has a new inode"
    );
    let out = replay_cli(copy.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("11 input object(s) checked, 0 changed, 0 unverified"),
        "{stdout}"
    );
    assert!(stdout.contains("result: byte-identical\n"), "{stdout}");

    // The content is compared, not assumed: a recorded digest that is not
    // the object's makes it changed, by either algorithm. A manifest from
    // before version 4 recorded SHA-256 and is still replayed by it.
    let path = copy.path().join(MANIFEST);
    let published: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let bytes_of = |r: &serde_json::Value| {
        std::fs::read(copy.path().join(r["key"].as_str().unwrap())).unwrap()
    };
    let replay_with = |m: &serde_json::Value| {
        std::fs::write(&path, serde_json::to_vec_pretty(m).unwrap()).unwrap();
        let out = replay_cli(copy.path());
        let (stdout, stderr) = text(&out);
        assert_eq!(code(&out), 0, "{stdout}{stderr}");
        stdout
    };
    let mut v3 = published.clone();
    v3["manifest_version"] = 3.into();
    for r in v3["inputs"]["requests"].as_array_mut().unwrap() {
        let sha = tokenledger::manifest::sha256(&bytes_of(r));
        let o = r.as_object_mut().unwrap();
        o.remove("blake3");
        o.insert("sha256".into(), sha.into());
    }
    let stdout = replay_with(&v3);
    assert!(
        stdout.contains("11 input object(s) checked, 0 changed, 0 unverified"),
        "{stdout}"
    );
    assert!(stdout.contains("result: byte-identical\n"), "{stdout}");
    let wrong = tokenledger::manifest::sha256(b"other bytes");
    v3["inputs"]["requests"][1]["sha256"] = wrong.as_str().into();
    let stdout = replay_with(&v3);
    let actual = tokenledger::manifest::sha256(&bytes_of(&v3["inputs"]["requests"][1]));
    assert!(
        stdout.contains(&format!("content {wrong} -> {actual}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("11 input object(s) checked, 1 changed, 0 unverified"),
        "{stdout}"
    );
    let mut v4 = published.clone();
    let wrong = format!("blake3:{}", blake3::hash(b"other bytes").to_hex());
    v4["inputs"]["requests"][2]["blake3"] = wrong.as_str().into();
    let stdout = replay_with(&v4);
    let actual = &published["inputs"]["requests"][2]["blake3"];
    assert!(
        stdout.contains(&format!("content {wrong} -> {}", actual.as_str().unwrap())),
        "{stdout}"
    );
    assert!(
        stdout.contains("result: byte-identical (1 input(s) changed since the run, no output did)"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_exits_0_on_an_untouched_day() {
    let lake = fixture::lake();
    run_fixture(lake.path(), None).await;
    let out = replay_cli(lake.path());
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
    let out = replay_cli(lake.path());
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

/// Replay the fixture day after `damage` rewrote its manifest; the CLI's
/// exit code and output.
fn replay_damaged(damage: impl FnOnce(&mut serde_json::Value)) -> (i32, String, String) {
    let lake = fixture::lake();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run_fixture(lake.path(), None));
    let path = lake.path().join(MANIFEST);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    damage(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let out = replay_cli(lake.path());
    let (stdout, stderr) = text(&out);
    (code(&out), stdout, stderr)
}

fn remove(m: &mut serde_json::Value, pointer: &str, field: &str) {
    m.pointer_mut(pointer)
        .and_then(serde_json::Value::as_object_mut)
        .unwrap_or_else(|| panic!("{pointer} in the manifest"))
        .remove(field)
        .unwrap_or_else(|| panic!("{pointer}/{field} in the manifest"));
}

#[test]
fn a_manifest_without_outputs_is_an_input_error_not_identical() {
    let (code, stdout, stderr) = replay_damaged(|m| remove(m, "", "outputs"));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(!stdout.contains("byte-identical"), "{stdout}");
    assert!(
        stderr.contains("reports/date=2026-03-08/manifest.json: `outputs`: missing"),
        "{stderr}"
    );

    let (code, stdout, stderr) =
        replay_damaged(|m| m["outputs"] = serde_json::Value::Array(Vec::new()));
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(!stdout.contains("byte-identical"), "{stdout}");
    assert!(stderr.contains("`outputs`: empty"), "{stderr}");
}

#[test]
fn a_manifest_missing_an_output_entry_differs() {
    let mut removed = String::new();
    let (code, stdout, stderr) = replay_damaged(|m| {
        let outputs = m["outputs"].as_array_mut().unwrap();
        let at = outputs
            .iter()
            .position(|o| o["key"].as_str().unwrap().ends_with("/ops_daily.csv"))
            .unwrap();
        removed = outputs.remove(at)["key"].as_str().unwrap().to_string();
    });
    assert_eq!(code, 7, "{stdout}{stderr}");
    assert_eq!(removed, "reports/date=2026-03-08/ops_daily.csv");
    assert!(
        stdout.contains("outputs: 22 of 23 byte-identical"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  differs: {removed}: produced by the replay, not listed in the manifest"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("result: DIFFERS"), "{stdout}");

    // The other way round: listed, never produced.
    let (code, stdout, _) = replay_damaged(|m| {
        let outputs = m["outputs"].as_array_mut().unwrap();
        let mut extra = outputs[0].clone();
        extra["key"] = "reports/date=2026-03-08/forged.csv".into();
        outputs.push(extra);
    });
    assert_eq!(code, 7, "{stdout}");
    assert!(
        stdout.contains(
            "  differs: reports/date=2026-03-08/forged.csv: listed in the manifest, not produced by the replay"
        ),
        "{stdout}"
    );
}

#[test]
fn a_manifest_with_damaged_fields_names_every_one() {
    let (code, stdout, stderr) = replay_damaged(|m| {
        remove(m, "/outputs/2", "sha256");
        m["outputs"][3]["sha256"] = "sha256:zz".into();
        remove(m, "/inputs/prices", "sha256");
        remove(m, "/inputs/requests/0", "key");
        m["inputs"]["requests"][1]["blake3"] = "sha256:00".into();
        remove(m, "/inputs", "history");
    });
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(!stdout.contains("byte-identical"), "{stdout}");
    for want in [
        "`outputs[2].sha256`: missing",
        "`outputs[3].sha256`: expected `sha256:` and 64 hex digits, found `sha256:zz`",
        "`inputs.prices.sha256`: missing",
        "`inputs.requests[0].key`: missing",
        "`inputs.requests[1].blake3`: expected `blake3:` and 64 hex digits, found `sha256:00`",
        "`inputs.history`: missing",
    ] {
        assert!(
            stderr.contains(&format!("reports/date=2026-03-08/manifest.json: {want}")),
            "{want}: {stderr}"
        );
    }
    assert!(stderr.contains("replay: 6 problem(s)"), "{stderr}");
}

#[test]
fn a_manifest_of_an_unknown_version_is_refused() {
    let (code, stdout, stderr) = replay_damaged(|m| m["manifest_version"] = 5.into());
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(!stdout.contains("byte-identical"), "{stdout}");
    assert!(
        stderr.contains(
            "`manifest_version`: 5 is not a version this program knows (it knows [1, 2, 3, 4])"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = replay_damaged(|m| remove(m, "", "manifest_version"));
    assert_eq!(code, 3);
    assert!(stderr.contains("`manifest_version`: missing"), "{stderr}");
}

#[test]
fn an_input_without_etag_or_version_is_unverified_never_unchanged() {
    let (code, stdout, stderr) = replay_damaged(|m| {
        m["inputs"]["requests"][1]["etag"] = serde_json::Value::Null;
        m["inputs"]["requests"][1]["version"] = serde_json::Value::Null;
        m["inputs"]["requests"][1]["blake3"] = serde_json::Value::Null;
    });
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("11 input object(s) checked, 0 changed, 1 unverified"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  input unverified: requests/date="),
        "{stdout}"
    );
    assert!(
        stdout.contains("result: byte-identical (1 input(s) could not be verified)"),
        "{stdout}"
    );
}
