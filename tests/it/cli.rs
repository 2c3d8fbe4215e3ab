//! The binary as users and schedulers meet it: exit codes, messages on
//! stderr, environment overrides, and no secret in any output.

use std::path::Path;
use std::process::{Command, Output};

use crate::fixture::{self, DATE, report};

pub fn tokenledger(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenledger"));
    cmd.args(args)
        .env_remove("TOKENLEDGER_CONFIG")
        .env("TOKENLEDGER_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// stdout and stderr as text. Piped, stderr is JSON lines (one format per
/// stream: no plain `error:` line): the `error` of the final `finished`
/// event is appended decoded, as `error: <chain>`, for the assertions that
/// read its text.
pub fn text(o: &Output) -> (String, String) {
    let mut stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let decoded: Vec<String> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "finished")
        .filter_map(|v| v["error"].as_str().map(|e| format!("error: {e}")))
        .collect();
    for e in decoded {
        stderr.push('\n');
        stderr.push_str(&e);
    }
    (String::from_utf8_lossy(&o.stdout).into_owned(), stderr)
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn lake_arg(dir: &Path) -> String {
    dir.to_string_lossy().to_string()
}

#[test]
fn run_on_a_lake_in_the_default_layout() {
    let lake = fixture::lake();
    let out = tokenledger(
        &["run", "--lake", &lake_arg(lake.path()), "--date", DATE],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("report day 2026-03-08 (UTC): 13 requests, cost 0.077882 USD, 1 unpriced, 4 duplicates dropped"), "{stdout}");
    assert_eq!(
        report(lake.path(), "finance_by_dimension.csv"),
        crate::metrics::FINANCE
    );
    // Not a terminal: JSON log lines on stderr, with the stage events.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"message\":\"published\"")),
        "{stderr}"
    );
}

#[test]
fn environment_variables_override_the_config() {
    let lake = fixture::lake();
    let out = tokenledger(
        &["run", "--lake", &lake_arg(lake.path()), "--date", DATE],
        &[("TOKENLEDGER_RUN__TIMEZONE", "America/New_York")],
    );
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("report day 2026-03-08 (America/New_York): 14 requests"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn exit_codes_tell_usage_input_and_data_quality_apart() {
    // Usage: an unknown flag.
    let out = tokenledger(&["run", "--dat", DATE], &[]);
    assert_eq!(code(&out), 2);

    // Config: a typo in the file, named with the file.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[run]\ntimezon = \"UTC\"\n").unwrap();
    let out = tokenledger(
        &["run", "--config", cfg.to_str().unwrap(), "--date", DATE],
        &[],
    );
    assert_eq!(code(&out), 2);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("unknown field `timezon`"),
        "{stderr}"
    );

    // Input: an unreadable object; nothing published.
    let lake = fixture::lake();
    std::fs::write(
        lake.path().join("requests/date=2026-03-08/part-a.parquet"),
        b"nope",
    )
    .unwrap();
    let out = tokenledger(
        &["run", "--lake", &lake_arg(lake.path()), "--date", DATE],
        &[],
    );
    assert_eq!(code(&out), 3);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("error: input data cannot be used")
            && stderr.contains("part-a.parquet: not a readable Parquet file"),
        "{stderr}"
    );
    assert!(!lake.path().join("reports").exists());

    // Data quality: 1 of 13 requests unpriced (7.7%) over a 5% gate: published, exit 4.
    let lake = fixture::lake();
    let cfg = lake.path().join("tokenledger.toml");
    std::fs::write(
        &cfg,
        "[lake]\nroot = \".\"\n[quality]\nmax_unpriced_share = 0.05\n",
    )
    .unwrap();
    let out = tokenledger(
        &["run", "--config", cfg.to_str().unwrap(), "--date", DATE],
        &[],
    );
    assert_eq!(code(&out), 4, "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("data quality: 1 of 13 requests (7.6923%) are unpriced"),
        "{:?}",
        text(&out)
    );
    assert!(
        lake.path()
            .join("reports/date=2026-03-08/manifest.json")
            .exists()
    );
}

#[test]
fn check_validates_the_example_config() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tokenledger.toml");
    let out = tokenledger(&["check", "--config", cfg.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    let files = tokenledger::queries::FILES.len();
    assert!(
        stdout.contains(&format!(
            "ok: {files} SQL files parse and plan; the 13 outputs Rust reads match their row types"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("prices.csv (18 rows)"), "{stdout}");
}

#[test]
fn check_reports_every_problem_at_once() {
    let lake = tempfile::tempdir().unwrap();
    // Line 3 both has a bad price and overlaps line 2: both are named.
    std::fs::write(
        lake.path().join("prices.csv"),
        "provider,model,input_usd_per_1k,output_usd_per_1k,valid_from,valid_to\n\
         openai,gpt-4o,0.0025,0.01,2024-01-01,\n\
         openai,gpt-4o,0.0o2,0.008,2024-06-01,\n\
         openai,o1,-1,0.06,2024-01-01,\n\
         openai,o3,0.01,0.04,not-a-date,\n",
    )
    .unwrap();
    // A broken FX table does not hide the invoices' own problems.
    std::fs::write(
        lake.path().join("fx.csv"),
        "date,currency,usd_per_unit\n2026-03-06,EURO,1.1\n",
    )
    .unwrap();
    std::fs::create_dir_all(lake.path().join("invoices")).unwrap();
    std::fs::write(
        lake.path().join("invoices/2026-03.csv"),
        "provider,date,model,amount,currency,token_type\nopenai,2026-03-07,gpt-4o,ten,USD,\n",
    )
    .unwrap();
    // Two unknown keys in two sections and a mistyped value: all named.
    let cfg = lake.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[run]\ntimezon = \"UTC\"\nthreads = \"two\"\n[mail]\nfrm = \"x@y.z\"\n",
    )
    .unwrap();
    let out = tokenledger(&["check", "--config", &lake_arg(&cfg)], &[]);
    assert_eq!(code(&out), 2);
    let (_, stderr) = text(&out);
    for needle in [
        "unknown field `timezon`",
        "in `run.threads`",
        "unknown field `frm`",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }

    let out = tokenledger(&["check", "--lake", &lake_arg(lake.path())], &[]);
    assert_eq!(code(&out), 2);
    let (_, stderr) = text(&out);
    for needle in [
        "line 2 and line 3: prices of openai/gpt-4o overlap",
        "line 3: `input_usd_per_1k`: `0.0o2` is not a decimal number",
        "line 4: `input_usd_per_1k` is negative (-1)",
        "line 5: `valid_from`: `not-a-date` is not a timestamp",
        "line 2: currency `EURO` is not a 3-letter ISO 4217 code",
        "invoices/2026-03.csv line 2: amount: `ten` is not a decimal number",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
}

/// One format per stream: piped (JSON logs), every stderr line of a failing
/// command is a JSON object and the failure is in the `finished` event; with
/// `--log-format text` the plain `error:` line is there.
#[test]
fn json_logs_keep_stderr_all_json_even_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let args = ["run", "--config", missing.to_str().unwrap(), "--date", DATE];
    let out = tokenledger(&args, &[]);
    assert_eq!(code(&out), 2);
    let raw = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!raw.trim().is_empty());
    for line in raw.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(raw.contains("\"message\":\"finished\"") && raw.contains("missing.toml"));
    let mut text_args = args.to_vec();
    text_args.extend(["--log-format", "text"]);
    let out = tokenledger(&text_args, &[]);
    assert_eq!(code(&out), 2);
    let raw = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(raw.lines().any(|l| l.starts_with("error: ")), "{raw}");
}

/// Every configured secret (S3 keys, SMTP password) is grepped for in all
/// output: stdout and stderr at trace level (every crate's logs, retries
/// included) and every object the runs wrote, for a run that succeeds
/// through storage faults and one that fails on a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_any_output() {
    use object_store::{ObjectStoreExt, PutPayload};
    const SMTP_PASSWORD: &str = "smtp-pw-never-in-logs-31f4";
    let server = crate::s3::S3Server::start_seeded(5).await;
    let store = server.client();
    for (key, bytes) in fixture::objects() {
        store
            .put(
                &object_store::path::Path::from(format!("lake/{key}")),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
    }
    let smtp = crate::smtp::SmtpServer::start_with(Some(("ledger", SMTP_PASSWORD)), &[]);
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("smtp"), SMTP_PASSWORD).unwrap();
    let mail = crate::mail::mail_toml(
        smtp.port,
        &format!(
            "security = \"plain\"\nusername = \"ledger\"\npassword_file = \"{}\"",
            secrets.path().join("smtp").display()
        ),
    );
    let cfg = secrets.path().join("tokenledger.toml");
    std::fs::write(&cfg, server.toml("lake", secrets.path(), &mail)).unwrap();
    let cfg = cfg.to_string_lossy().to_string();
    let run = |cfg: String| {
        tokio::task::spawn_blocking(move || {
            tokenledger(
                &[
                    "run",
                    "--config",
                    &cfg,
                    "--date",
                    DATE,
                    "--log-format",
                    "json",
                    "--resend",
                ],
                &[("TOKENLEDGER_LOG", "trace")],
            )
        })
    };
    server
        .faults
        .fail_per_mille
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let ok = run(cfg.clone()).await.unwrap();
    server
        .faults
        .fail_per_mille
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let (stdout, stderr) = text(&ok);
    assert_eq!(code(&ok), 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("13 requests"), "{stdout}");
    assert_eq!(smtp.received().len(), 3);
    assert!(stderr.contains("\"message\":\"finished\""), "{stderr}");

    // A wrong SMTP password (the relay refuses it: exit 5), then a wrong
    // S3 secret (storage refuses it: exit 1).
    std::fs::write(secrets.path().join("smtp"), "wrong-smtp-secret-77").unwrap();
    let refused = run(cfg.clone()).await.unwrap();
    assert_eq!(code(&refused), 5, "{}", text(&refused).1);
    std::fs::write(
        secrets.path().join("secret_access_key"),
        "wrong-s3-secret-88",
    )
    .unwrap();
    let failed = run(cfg).await.unwrap();
    assert_eq!(code(&failed), 1, "{}", text(&failed).1);

    let mut all = vec![stdout, stderr];
    for o in [&refused, &failed] {
        all.extend([text(o).0, text(o).1]);
    }
    let mut objects = 0;
    for entry in walk(server.root()) {
        all.push(String::from_utf8_lossy(&std::fs::read(entry).unwrap()).into_owned());
        objects += 1;
    }
    assert!(objects > 40, "{objects} objects");
    for secret in [
        crate::s3::SECRET_KEY,
        crate::s3::ACCESS_KEY,
        SMTP_PASSWORD,
        "wrong-smtp-secret-77",
        "wrong-s3-secret-88",
    ] {
        for (i, text) in all.iter().enumerate() {
            assert!(!text.contains(secret), "{secret} leaked into output {i}");
        }
    }
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn demo_writes_a_lake_and_reports_on_its_last_day() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = tokenledger(&["demo", "--dir", demo.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("report day 2026-10-31 (UTC)"), "{stdout}");
    let finance =
        std::fs::read_to_string(demo.join("reports/date=2026-10-31/finance_by_dimension.csv"))
            .unwrap();
    // The demo is seeded: its last day is the same every time, to the row.
    assert_eq!(finance.lines().count(), 38, "{finance}");
    // The demo's deliberate mess shows up where it should.
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(demo.join("reports/date=2026-10-31/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        m["rows"],
        serde_json::json!({
            "listed": 22449, "outside_window": 15442, "null_ts": 0, "rejected": {},
            "in_day": 7007, "duplicates_dropped": 41, "duplicate_conflicts": 3,
            "kept": 6966, "late_rows": 7, "early_rows": 0
        })
    );
    // The accounting balances: listed = outside + null + rejected + in_day,
    // in_day = kept + dropped.
    assert_eq!(22449, 15442 + 7007);
    assert_eq!(7007, 6966 + 41);
    assert_eq!(m["pricing"]["priced_requests"], 6785);
    assert_eq!(m["pricing"]["unpriced_requests"], 181);
    assert_eq!(
        m["headline"],
        serde_json::json!({
            "requests": 6966, "cost_usd": "34.254150", "unpriced_requests": 181,
            "alerts": 2, "data_quality": "ok"
        })
    );
    // The deliberate invoice mistakes (demo.rs, `invoices_csv`): anthropic
    // billed 4% over usage on 15 October ...
    let line = |day: &str, file: &str, provider: &str| -> Vec<String> {
        let text =
            std::fs::read_to_string(demo.join(format!("reports/date={day}/{file}"))).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
            .filter(|rec: &Vec<String>| rec.iter().any(|c| c == provider))
            .collect();
        assert_eq!(rows.len(), 1, "{day} {file} {provider}: {text}");
        rows.into_iter().next().unwrap()
    };
    let over = line("2026-10-15", "reconciliation.csv", "anthropic");
    assert_eq!(&over[7], "mismatch", "{over:?}");
    let computed: f64 = over[3].parse().unwrap();
    let invoiced: f64 = over[4].parse().unwrap();
    assert!(
        (invoiced - computed * 1.04).abs() <= 0.005,
        "invoiced {invoiced} is not computed {computed} x 1.04 to the cent"
    );
    // ... bedrock's invoice for 20 October never came ...
    let unbilled = line("2026-10-20", "reconciliation.csv", "bedrock");
    assert_eq!(&unbilled[7], "missing_invoice", "{unbilled:?}");
    assert_eq!(&unbilled[3], "20.991063");
    // ... so the month to date on the 31st is short by about that day
    // (29 invoice lines, each rounded to the cent) ...
    let bedrock = line("2026-10-31", "reconciliation_mtd.csv", "bedrock");
    assert_eq!(
        (&bedrock[8][..], &bedrock[6][..], &bedrock[11][..]),
        ("mismatch", "-20.999971", "29")
    );
    assert!((-20.999971f64 + 20.991063).abs() <= 29.0 * 0.005);
    // ... and cohere billed $17.40 it was never used for.
    let cohere = line("2026-10-31", "reconciliation_mtd.csv", "cohere");
    assert_eq!(
        (&cohere[8][..], &cohere[5][..]),
        ("missing_usage", "17.400000")
    );
    assert_eq!(
        m["fx"]["rates"][1]["rate_date"], "2026-10-30",
        "Saturday uses Friday's EUR rate"
    );
    let mini = m["pricing"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "gpt-4o-mini")
        .unwrap();
    assert_eq!(
        mini["price_ids"].as_array().unwrap().len(),
        2,
        "the noon price cut"
    );
    assert!(demo.join("invoices/normalized/2026-10.csv").exists());
    // Every day of the month ran: the index lists them, the last day's
    // dashboards compare with them, and its mail waits in the outbox.
    let index = std::fs::read_to_string(demo.join("reports/index.html")).unwrap();
    assert_eq!(index.matches("/finance.html\">finance</a>").count(), 30);
    let report =
        std::fs::read_to_string(demo.join("reports/date=2026-10-31/finance.html")).unwrap();
    assert!(
        report.contains("30 day(s)"),
        "month to date over the month's rollups"
    );
    let mut eml: Vec<String> = std::fs::read_dir(demo.join("outbox/date=2026-10-31"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    eml.sort();
    assert_eq!(eml.len(), 3, "{eml:?}");
    assert!(
        stdout.contains("mail sent: ops, finance, showback-research-"),
        "{stdout}"
    );
    // Rerunning with the config the demo wrote gives the same bytes.
    let before =
        std::fs::read(demo.join("reports/date=2026-10-31/finance_by_dimension.csv")).unwrap();
    let out = tokenledger(
        &[
            "run",
            "--config",
            demo.join("tokenledger.toml").to_str().unwrap(),
            "--date",
            "2026-10-31",
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert!(text(&out).0.contains(
        "mail already sent (use --resend to send again): ops, finance, showback-research-"
    ));
    assert_eq!(
        std::fs::read(demo.join("reports/date=2026-10-31/finance_by_dimension.csv")).unwrap(),
        before
    );
}

#[test]
fn a_failed_mail_exits_5_and_resend_mails_again() {
    let lake = fixture::lake();
    let cfg = lake.path().join("mail.toml");
    let password = "hunter2-smtp-secret";
    let write = |port: u16| {
        let toml = crate::mail::mail_toml(
            port,
            "security = \"plain\"\nusername = \"ledger\"\npassword_env = \"TL_TEST_SMTP_PASSWORD\"",
        );
        std::fs::write(&cfg, toml).unwrap();
    };
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--lake",
            lake.path().to_str().unwrap(),
            "--date",
            DATE,
        ];
        args.extend_from_slice(extra);
        let out = tokenledger(&args, &[("TL_TEST_SMTP_PASSWORD", password)]);
        let (stdout, stderr) = text(&out);
        assert!(
            !stdout.contains(password) && !stderr.contains(password),
            "the SMTP password leaked"
        );
        (code(&out), stdout, stderr)
    };

    // Nothing listens: the reports are published, the run exits 5.
    write(crate::smtp::dead_port());
    let (status, stdout, stderr) = run(&[]);
    assert_eq!(status, 5, "{stdout}\n{stderr}");
    assert!(stdout.contains("mail NOT sent: ops"), "{stdout}");
    assert!(
        lake.path()
            .join(format!("reports/date={DATE}/manifest.json"))
            .is_file()
    );

    // The relay is back: the next run mails each audience once.
    let server = crate::smtp::SmtpServer::start_with(Some(("ledger", password)), &[]);
    write(server.port);
    let (status, stdout, _) = run(&[]);
    assert_eq!(status, 0, "{stdout}");
    assert_eq!(server.received().len(), 3);
    let (status, stdout, _) = run(&[]);
    assert_eq!(status, 0);
    assert!(stdout.contains("mail already sent"), "{stdout}");
    assert_eq!(server.received().len(), 3);
    let (status, stdout, _) = run(&["--resend"]);
    assert_eq!(status, 0);
    assert!(
        stdout.contains("mail sent: ops, finance, showback-research-"),
        "{stdout}"
    );
    assert_eq!(server.received().len(), 6);
}

/// `backfill` builds only the missing rollups, from the logs, and writes
/// nothing else. In the fixture lake: 6 March has no row (its only candidate
/// object holds a row of the 7th: "without logs"), the 7th two rows (old.parquet's and t11
/// from the 8th's partition), the 8th the
/// 13 kept requests, the 9th one row (late.parquet's 01:00 row).
#[test]
fn backfill_builds_missing_rollups_only() {
    let lake = fixture::lake();
    let args = [
        "backfill",
        "--lake",
        &lake_arg(lake.path()),
        "--from",
        "2026-03-06",
        "--to",
        "2026-03-09",
    ];
    let out = tokenledger(&args, &[]);
    let (stdout, stderr) = text(&out);
    // The 6th lies before the lake's first partition of its own: only the
    // 7th's partition (its late-row window) has objects, none with a row of
    // the 6th. A day without logs, as a run's history counts it, not exit 3.
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "backfill 2026-03-06..2026-03-09: 3 built, 0 present, 1 without logs, 0 failed"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("  2026-03-06: no logs"), "{stdout}");
    // Not a terminal: one JSON log line per day.
    assert_eq!(
        stderr.matches("\"message\":\"backfill\"").count(),
        4,
        "{stderr}"
    );
    assert!(
        stderr.contains("\"outcome\":\"built (13 requests)\""),
        "{stderr}"
    );
    assert!(
        !lake.path().join("reports").exists(),
        "only rollups are written"
    );
    for day in ["2026-03-07", "2026-03-08", "2026-03-09"] {
        for kind in ["daily", "latency"] {
            assert!(
                lake.path()
                    .join(format!("rollups/{kind}/date={day}/part-0.parquet"))
                    .exists()
            );
        }
    }
    // The same bytes a run writes.
    let other = fixture::lake();
    let run = tokenledger(
        &["run", "--lake", &lake_arg(other.path()), "--date", DATE],
        &[],
    );
    assert_eq!(code(&run), 0);
    let rollup = |dir: &Path| {
        std::fs::read(dir.join("rollups/daily/date=2026-03-08/part-0.parquet")).unwrap()
    };
    assert_eq!(rollup(lake.path()), rollup(other.path()));
    // A second backfill finds them present.
    let out = tokenledger(&args, &[]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("0 built, 3 present, 1 without logs, 0 failed"),
        "{stdout}"
    );
}

/// A price move of 10x in force on the days a backfill builds is warned
/// about once per run, not once per day.
#[test]
fn a_price_jump_is_warned_once_per_backfill() {
    let lake = fixture::lake();
    let prices = std::fs::read_to_string(lake.path().join("prices.csv"))
        .unwrap()
        .replace(
            "openai,gpt-4o,0.002,0.008,0.001,,2026-03-08T12:00:00Z,",
            "openai,gpt-4o,0.025,0.1,0.0125,,2026-03-08T12:00:00Z,",
        );
    std::fs::write(lake.path().join("prices.csv"), prices).unwrap();
    let out = tokenledger(
        &[
            "backfill",
            "--lake",
            &lake_arg(lake.path()),
            "--from",
            "2026-03-07",
            "--to",
            "2026-03-09",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    assert!(stdout.contains("3 built"), "{stdout}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("moved 10x or more"))
        .count();
    assert_eq!(warnings, 2, "{stderr}");
}

/// A wrong path is a usage error (exit 2, "fix the command"), not a runtime
/// failure that a scheduler retries; a missing lake is not created.
#[test]
fn a_missing_config_or_lake_and_a_lake_that_is_a_file_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = tokenledger(
        &[
            "run",
            "--config",
            &missing.to_string_lossy(),
            "--date",
            DATE,
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{stdout}{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");

    let nowhere = dir.path().join("no-such-lake");
    for cmd in [
        vec!["run", "--date", DATE],
        vec!["check"],
        vec!["backfill", "--from", DATE, "--to", DATE],
    ] {
        let mut args = cmd.clone();
        args.extend(["--lake", nowhere.to_str().unwrap()]);
        let out = tokenledger(&args, &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(code(&out), 2, "{cmd:?}: {stdout}{stderr}");
        assert!(stderr.contains("no such directory"), "{cmd:?}: {stderr}");
        assert!(!nowhere.exists(), "{cmd:?} created the lake");
    }

    let file = dir.path().join("lake.txt");
    std::fs::write(&file, "not a lake").unwrap();
    let out = tokenledger(
        &["run", "--lake", &file.to_string_lossy(), "--date", DATE],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{stdout}{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
}

/// Credentials in a lake URL are refused, and never echoed, even at trace.
#[test]
fn credentials_in_a_url_are_refused_and_never_printed() {
    let out = tokenledger(
        &[
            "run",
            "--lake",
            "s3://AKIAEXAMPLEKEY:wJalrXUtnFEMIsecret@bucket/x",
            "--date",
            DATE,
        ],
        &[("TOKENLEDGER_LOG", "trace")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{stdout}{stderr}");
    for secret in ["AKIAEXAMPLEKEY", "wJalrXUtnFEMIsecret"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}{stderr}"
        );
    }
    assert!(
        stderr.contains("s3://***@bucket/x") && stderr.contains("credentials in a URL are refused"),
        "{stderr}"
    );
}

/// `tokenledger run | head` and a stderr on a full device: the run finishes
/// with its own exit code, never a panic (101), and leaves no lease.
#[test]
fn a_closed_stdout_or_a_full_stderr_never_panics_nor_leaves_a_lease() {
    use std::process::Stdio;
    let lake = fixture::lake();
    let lease = lake.path().join("reports/date=2026-03-08/_lease.json");
    let args = ["run", "--lake", &lake_arg(lake.path()), "--date", DATE];
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .args(args)
        .env_remove("TOKENLEDGER_CONFIG")
        .env("TOKENLEDGER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the run prints anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!lease.exists());
    assert!(
        lake.path()
            .join("reports/date=2026-03-08/manifest.json")
            .exists()
    );

    // Every write to stderr fails (ENOSPC); stdout is closed too.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .args(args)
        .env_remove("TOKENLEDGER_CONFIG")
        .env("TOKENLEDGER_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(full))
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!lease.exists());
}

/// A one-off run in another zone does not overwrite the published day;
/// replacing it takes `--replace-zone`; and a month to date never mixes
/// rollups cut in different zones.
#[test]
fn a_day_published_in_one_zone_is_not_replaced_by_a_run_in_another() {
    let lake = fixture::lake();
    let dir = lake.path();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--lake", dir.to_str().unwrap(), "--date", DATE];
        args.extend(extra);
        tokenledger(&args, &[])
    };
    let out = run(&[]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    let rollup = dir.join("rollups/daily/date=2026-03-08/part-0.parquet");
    let (ops, daily) = (
        report(dir, "ops_daily.csv"),
        std::fs::read(&rollup).unwrap(),
    );

    let out = run(&["--tz", "Asia/Tokyo"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("2026-03-08 is published in UTC")
            && stderr.contains("this run is in Asia/Tokyo")
            && stderr.contains("--replace-zone"),
        "{stderr}"
    );
    assert_eq!(report(dir, "ops_daily.csv"), ops);
    assert_eq!(std::fs::read(&rollup).unwrap(), daily);

    let out = run(&["--tz", "Asia/Tokyo", "--replace-zone"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}{stderr}");
    let m: serde_json::Value = serde_json::from_str(&report(dir, "manifest.json")).unwrap();
    assert_eq!(m["timezone"], "Asia/Tokyo");
    // 7 March's rollup was cut in UTC (the first run built it): left out of
    // the Tokyo month to date, and said so.
    assert!(
        stderr.contains("a rollup cut in another time zone is left out"),
        "{stderr}"
    );
    let finance = report(dir, "finance.html");
    assert!(
        finance.contains("No usage data (rollup) for") && finance.contains("2026-03-07"),
        "the month to date names the day it left out"
    );
}
