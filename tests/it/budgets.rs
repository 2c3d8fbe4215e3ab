//! Budgets end to end: `budgets.csv` with its figures worked out by hand
//! from the fixture's exact day total, the finance page's Budgets section
//! (table and burn-up charts), `[BUDGET]` letters over real SMTP with each
//! threshold alerted once a month (a rerun sends nothing new, a budget
//! changed mid-month alerts its new thresholds), a department's showback
//! letter with its own budget, and a time zone whose month starts at
//! another UTC instant.

use std::path::Path;

use mail_parser::{MessageParser, MimeHeaders};
use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;
use tokenledger::pipeline::{self, RunOptions};
use tokenledger::synth::{LogRow, to_parquet};

use crate::fixture::{self, DATE};
use crate::smtp::{Received, SmtpServer};

fn budgets_toml(all_usd: &str) -> String {
    format!(
        r#"
[[budgets]]
name = "all"
monthly_usd = "{all_usd}"

[[budgets]]
name = "research"
dept = "research"
monthly_usd = 1
"#
    )
}

fn config(lake: &Path, toml: &str) -> Config {
    crate::dashboards::config(lake, toml)
}

/// The fixture day's rollups copied to the first week of March but the
/// 4th, as if those days had run: seven days of March at the fixture's
/// exact total each (0.0778825), one day without a rollup.
async fn lake_with_a_week() -> tempfile::TempDir {
    let lake = fixture::lake();
    crate::metrics::run_fixture(lake.path(), None).await;
    let from = lake
        .path()
        .join(format!("rollups/daily/date={DATE}/part-0.parquet"));
    for day in ["01", "02", "03", "05", "06", "07"] {
        let to = lake
            .path()
            .join(format!("rollups/daily/date=2026-03-{day}/part-0.parquet"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, to).unwrap();
    }
    lake
}

fn subjects(received: &[Received]) -> Vec<String> {
    let mut s: Vec<String> = received
        .iter()
        .map(|r| {
            MessageParser::default()
                .parse(&r.data)
                .and_then(|m| m.subject().map(str::to_string))
                .unwrap()
        })
        .collect();
    s.sort();
    s
}

fn text_of(received: &[Received], subject_part: &str) -> String {
    received
        .iter()
        .map(|r| MessageParser::default().parse(&r.data).unwrap())
        .find(|m| m.subject().is_some_and(|s| s.contains(subject_part)))
        .unwrap_or_else(|| panic!("no letter with {subject_part:?}"))
        .body_text(0)
        .unwrap()
        .replace("\r\n", "\n")
}

fn alert_records(lake: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let root = lake.join("reports/budget-alerts/month=2026-03");
    for budget in std::fs::read_dir(&root).into_iter().flatten() {
        let budget = budget.unwrap();
        for f in std::fs::read_dir(budget.path()).unwrap() {
            out.push(format!(
                "{}/{}",
                budget.file_name().to_string_lossy(),
                f.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

/// Hand-computed (the fixture's day is 0.0778825 exactly; research's
/// 0.01325 + 0.01 = 0.02325 with one unpriced mistral request a day):
///
/// all: month to date 7 x 0.0778825 = 0.5451775, rounded once half to even
/// 0.545178 (a sum of rounded days would say 0.545174). Seven days of
/// history, all equal: level 0.0778825, no spread, too few past errors, so
/// ±10%. Forecast: the 4th (no rollup) and the 23 days after the 8th,
/// 24 x 0.0778825 = 1.86918; 0.5451775 + 1.86918 = 2.4143575 -> 2.414358;
/// low 0.545178 + 1.682262, high 0.545178 + 2.056098.
///
/// research: 7 x 0.02325 = 0.16275; + 24 x 0.02325 = 0.558: 0.72075;
/// low 0.16275 + 0.5022, high 0.16275 + 0.6138.
const BUDGETS_CSV: &str = "\
date,name,dept,project,provider,model,month,budget_usd,mtd_actual_usd,forecast_usd,forecast_low_usd,forecast_high_usd,forecast_share,status,mtd_unpriced_requests,days_elapsed,days_in_month,interval_basis,note
2026-03-08,all,,,,,2026-03,0.500000,0.545178,2.414358,2.227440,2.601276,4.828716,over,7,8,31,wide,\"little history (7 of 56 days, 0 past errors): interval widened; no rollup for 2026-03-04 (forecast, not in the actual)\"
2026-03-08,research,research,,,,2026-03,1.000000,0.162750,0.720750,0.664950,0.776550,0.72075,ok,7,8,31,wide,\"little history (7 of 56 days, 0 past errors): interval widened; no rollup for 2026-03-04 (forecast, not in the actual)\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_reported_alerted_once_a_month_and_shown_to_their_department() {
    let lake = lake_with_a_week().await;
    let server = SmtpServer::start();
    let mail = crate::mail::mail_toml(server.port, "security = \"plain\"");
    let cfg = config(lake.path(), &format!("{mail}{}", budgets_toml("0.5")));
    let s = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(s.outcome, ExitKind::Ok);
    assert_eq!(fixture::report(lake.path(), "budgets.csv"), BUDGETS_CSV);

    // The finance page: the table, one burn-up chart per budget.
    let page = fixture::report(lake.path(), "finance.html");
    assert!(page.contains("<h2 id=\"budgets\">Budgets</h2>"), "{page}");
    assert!(page.contains("<td>all</td><td>all spend</td><td>2026-03 (day 8 of 31)</td><td class=\"num\">$0.50</td><td class=\"num\">$0.55</td><td class=\"num\">109%</td><td class=\"num\">$2.41</td><td class=\"num\">$2.23 – $2.60</td><td class=\"num\">483%</td><td>over budget</td>"), "{page}");
    assert!(page.contains("aria-label=\"all: 2026-03 budget\""));
    assert!(page.contains("aria-label=\"research: 2026-03 budget\""));
    // Its month-to-date tile is the same exact sum.
    assert!(
        page.contains("<div class=\"label\">Month to date</div><div class=\"value\">$0.55</div>"),
        "{page}"
    );

    // Mail: the finance letter says [BUDGET] and lists the three crossings
    // of `all` (80% and 100% of the actual, the forecast); research crossed
    // nothing and its showback letter shows its budget.
    let received = server.received();
    let first = subjects(&received);
    assert!(
        first.contains(
            &"[ALERT] [BUDGET] LLM spend 2026-03-08: $0.08 (13 requests, 1 unpriced)".to_string()
        ),
        "{first:?}"
    );
    let fin = text_of(&received, "LLM spend 2026-03-08: ");
    assert!(
        fin.contains(
            "BUDGET ALERTS (3):\n\
        - all: month-to-date spend $0.55 reached 80% of the 2026-03 budget of $0.50\n\
        - all: month-to-date spend $0.55 reached 100% of the 2026-03 budget of $0.50\n\
        - all: month-end forecast $2.41 is over the 2026-03 budget of $0.50\n"
        ),
        "{fin}"
    );
    assert!(fin.contains("- research (dept=research): $0.16 of $1.00 (16%), forecast $0.72 ($0.66 to $0.78), on track"), "{fin}");
    let showback = text_of(&received, "for research");
    assert!(showback.contains("Budget research (dept=research, 2026-03): $0.16 of $1.00 (16%), forecast $0.72 ($0.66 to $0.78), on track"), "{showback}");
    assert!(!showback.contains("Budget all"), "{showback}");
    // budgets.csv is attached to the finance letter with the other exports.
    let letter = received
        .iter()
        .map(|r| MessageParser::default().parse(&r.data).unwrap())
        .find(|m| {
            m.subject()
                .is_some_and(|s| s.contains("LLM spend 2026-03-08: "))
        })
        .unwrap();
    let attached: Vec<String> = letter
        .attachments()
        .filter_map(|p| p.attachment_name().map(str::to_string))
        .collect();
    assert!(
        attached.contains(&format!("budgets-{DATE}.csv")),
        "{attached:?}"
    );
    assert_eq!(
        alert_records(lake.path()),
        [
            format!(
                "{}/actual-100pct-of-0.500000.json",
                crate::budgets::slug_of("all")
            ),
            format!(
                "{}/actual-80pct-of-0.500000.json",
                crate::budgets::slug_of("all")
            ),
            format!(
                "{}/forecast-100pct-of-0.500000.json",
                crate::budgets::slug_of("all")
            ),
        ]
    );

    // Rerun, letters sent again: every threshold was alerted this month.
    let opts = RunOptions {
        resend: true,
        ..RunOptions::default()
    };
    let before = server.received().len();
    pipeline::run_with(&cfg, fixture::date(), &opts)
        .await
        .unwrap();
    let again = server.received()[before..].to_vec();
    let subjects = subjects(&again);
    assert!(
        subjects.iter().all(|s| !s.contains("[BUDGET]")),
        "{subjects:?}"
    );
    assert!(!text_of(&again, "LLM spend 2026-03-08: ").contains("BUDGET ALERTS"));
    assert_eq!(alert_records(lake.path()).len(), 3);

    // The budget raised to 0.60 mid-month: 80% (0.48) is reached again at
    // the new amount, 100% is not, the forecast is still over: two alerts,
    // and the budget is at risk, not over.
    let cfg = config(lake.path(), &format!("{mail}{}", budgets_toml("0.6")));
    let before = server.received().len();
    pipeline::run_with(&cfg, fixture::date(), &opts)
        .await
        .unwrap();
    let raised = server.received()[before..].to_vec();
    let fin = text_of(&raised, "[BUDGET] LLM spend");
    assert!(
        fin.contains(
            "BUDGET ALERTS (2):\n\
        - all: month-to-date spend $0.55 reached 80% of the 2026-03 budget of $0.60\n\
        - all: month-end forecast $2.41 is over the 2026-03 budget of $0.60\n"
        ),
        "{fin}"
    );
    let csv = fixture::report(lake.path(), "budgets.csv");
    assert!(
        csv.contains("2026-03-08,all,,,,,2026-03,0.600000,0.545178,2.414358,"),
        "{csv}"
    );
    assert!(csv.contains(",at_risk,"), "{csv}");
    assert_eq!(alert_records(lake.path()).len(), 5);
}

/// The file-name-safe name of a budget in the alert records.
pub fn slug_of(name: &str) -> String {
    tokenledger::pipeline::dashboards::slug(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_budgets_a_day_has_no_budgets_csv_and_check_names_bad_budgets() {
    let lake = fixture::lake();
    crate::metrics::run_fixture(lake.path(), None).await;
    assert!(
        !lake
            .path()
            .join(format!("reports/date={DATE}/budgets.csv"))
            .exists()
    );
    let err = Config::from_sources(
        "[[budgets]]\nname = \"a\"\nmonthly_usd = 0\nscope = \"x\"\n[[budgets]]\nname = \"a\"\nmonthly_usd = 5\n",
        "test",
        &[],
        &Overrides {
            lake: Some(lake.path().to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap_err()
    .to_string();
    for want in [
        "unknown field `scope`",
        "budgets[0] (\"a\").monthly_usd: 0 is not a positive amount",
        "budgets[1] (\"a\").name: \"a\" is used by an earlier budget",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

/// One request of 1000 input and 1000 output tokens of gpt-4o at the
/// fixture's later price: 0.002 + 0.008 = $0.01.
fn request(ts: &str, trace: &str) -> LogRow {
    let mut r = LogRow::new(fixture::us(ts), trace, "openai", "gpt-4o", 1000, 1000);
    r.latency_ms = Some(100.0);
    r.dept = Some("research".into());
    r
}

fn budget_row(lake: &Path, date: &str) -> Vec<String> {
    let csv =
        std::fs::read_to_string(lake.join(format!("reports/date={date}/budgets.csv"))).unwrap();
    let line = csv.lines().nth(1).unwrap();
    line.split(',').map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_month_is_the_report_zones_month() {
    // Los Angeles is UTC-7 in late March: April starts there at
    // 2026-04-01T07:00Z. The request at 02:00Z on April 1st is March's there
    // and April's in UTC.
    let write = |dir: &Path| {
        for (key, bytes) in fixture::objects() {
            if key == "prices.csv" || key == "fx.csv" {
                let p = dir.join(&key);
                std::fs::write(p, bytes).unwrap();
            }
        }
        let parts = [
            ("2026-03-31", vec![request("2026-03-31T20:00:00Z", "b")]),
            (
                "2026-04-01",
                vec![
                    request("2026-04-01T02:00:00Z", "a"),
                    request("2026-04-01T12:00:00Z", "c"),
                ],
            ),
        ];
        for (day, rows) in parts {
            let p = dir.join(format!("requests/date={day}/part-0.parquet"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, to_parquet(&rows, 16).unwrap()).unwrap();
        }
    };
    let toml = "[[budgets]]\nname = \"all\"\nmonthly_usd = 1\n";
    let cfg = |dir: &Path, tz: &str| {
        Config::from_sources(
            toml,
            "test",
            &[],
            &Overrides {
                lake: Some(dir.to_string_lossy().to_string()),
                timezone: Some(tz.into()),
                config_dir: None,
                ..Overrides::default()
            },
        )
        .unwrap()
    };
    let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
    let la = tempfile::tempdir().unwrap();
    write(la.path());
    let la_cfg = cfg(la.path(), "America/Los_Angeles");
    pipeline::run(&la_cfg, day("2026-03-31")).await.unwrap();
    pipeline::run(&la_cfg, day("2026-04-01")).await.unwrap();
    // March 31st in LA holds b and a: $0.02 in March; April 1st holds c.
    let march = budget_row(la.path(), "2026-03-31");
    assert_eq!(
        (march[6].as_str(), march[8].as_str()),
        ("2026-03", "0.020000")
    );
    let april = budget_row(la.path(), "2026-04-01");
    assert_eq!(
        (april[6].as_str(), april[8].as_str(), april[15].as_str()),
        ("2026-04", "0.010000", "1")
    );

    let utc = tempfile::tempdir().unwrap();
    write(utc.path());
    let utc_cfg = cfg(utc.path(), "UTC");
    pipeline::run(&utc_cfg, day("2026-03-31")).await.unwrap();
    pipeline::run(&utc_cfg, day("2026-04-01")).await.unwrap();
    // In UTC, March 31st holds b alone, and April 1st a and c.
    assert_eq!(budget_row(utc.path(), "2026-03-31")[8], "0.010000");
    assert_eq!(budget_row(utc.path(), "2026-04-01")[8], "0.020000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_month_to_date_builds_the_months_missing_rollups_from_the_logs() {
    // Logs on March 1st (two requests) and 20th (one), no rollup yet; the
    // anomaly window is 7 days, so only budgets reach back to the 1st.
    let lake = tempfile::tempdir().unwrap();
    for (key, bytes) in fixture::objects() {
        if key == "prices.csv" || key == "fx.csv" {
            std::fs::write(lake.path().join(&key), bytes).unwrap();
        }
    }
    let parts = [
        (
            "2026-03-01",
            vec![
                request("2026-03-01T10:00:00Z", "a"),
                request("2026-03-01T11:00:00Z", "b"),
            ],
        ),
        ("2026-03-20", vec![request("2026-03-20T10:00:00Z", "c")]),
    ];
    for (day, rows) in parts {
        let p = lake
            .path()
            .join(format!("requests/date={day}/part-0.parquet"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, to_parquet(&rows, 16).unwrap()).unwrap();
    }
    let cfg = config(
        lake.path(),
        "[anomaly]\nwindow_days = 7\n[[budgets]]\nname = \"all\"\nmonthly_usd = 1\n",
    );
    let s = pipeline::run(&cfg, "2026-03-20".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(s.outcome, ExitKind::Ok);
    assert!(
        lake.path()
            .join("rollups/daily/date=2026-03-01/part-0.parquet")
            .exists()
    );
    let row = budget_row(lake.path(), "2026-03-20");
    // 0.01 on the 20th; on the 1st, before the fixture's price cut of the
    // 8th, 2 x (1000 x 0.0025 + 1000 x 0.01) / 1000 = 0.025. The days
    // between have no logs and no rollup: forecast, and named.
    assert_eq!(row[8], "0.035000");
    let csv =
        std::fs::read_to_string(lake.path().join("reports/date=2026-03-20/budgets.csv")).unwrap();
    assert!(
        csv.contains("no rollup for 2026-03-02, 2026-03-03"),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budgets_section_renders_in_a_headless_browser() {
    let lake = lake_with_a_week().await;
    let cfg = config(lake.path(), &budgets_toml("0.5"));
    pipeline::run(&cfg, fixture::date()).await.unwrap();
    let dir = lake.path().join(format!("reports/date={DATE}"));
    for width in [390, 1280] {
        let p = crate::dashboards::probe(&dir, "finance.html", width);
        // The five charts of the page and one burn-up per budget, inline.
        assert_eq!(p["svgs"], 7, "{p}");
        assert_eq!(p["scripts"], 0);
        assert_eq!(
            p["overflow"], 0,
            "finance.html scrolls sideways at {width} px"
        );
        assert_eq!(p["clipped"], serde_json::json!([]), "at {width} px");
        if width == 1280 {
            assert_eq!(
                p["wide"],
                serde_json::json!([]),
                "tables wider than the page"
            );
        }
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("Budgets"), "{text}");
        assert!(
            text.contains("over budget") && text.contains("on track"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_with_budgets_replays_identical_and_a_changed_rollup_is_named() {
    let lake = lake_with_a_week().await;
    let cfg = config(lake.path(), &budgets_toml("0.5"));
    pipeline::run(&cfg, fixture::date()).await.unwrap();
    let manifest = tokenledger::lake::Location::parse(
        &format!("reports/date={DATE}/manifest.json"),
        Some(&cfg.lake),
    )
    .unwrap();
    let r = pipeline::audit::replay(&cfg, &manifest).await.unwrap();
    assert!(r.identical(), "{:?}", r.outputs);
    assert!(
        r.outputs.iter().any(|o| o.key.ends_with("budgets.csv")),
        "{:?}",
        r.outputs
    );
    // An earlier day's rollup replaced: the replay names it, and the
    // budgets move with it.
    std::fs::copy(
        lake.path()
            .join("rollups/daily/date=2026-03-01/part-0.parquet"),
        lake.path()
            .join("rollups/daily/date=2026-03-02/part-0.parquet.tmp"),
    )
    .unwrap();
    std::fs::remove_file(
        lake.path()
            .join("rollups/daily/date=2026-03-02/part-0.parquet"),
    )
    .unwrap();
    let r = pipeline::audit::replay(&cfg, &manifest).await.unwrap();
    assert!(!r.identical());
    assert!(
        r.changed_inputs
            .iter()
            .any(|c| c.contains("date=2026-03-02")),
        "{:?}",
        r.changed_inputs
    );
}
