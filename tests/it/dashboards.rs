//! The dashboards on the fixture lake: hand-computed figures of the report
//! model (with two earlier days of rollups for the comparisons), golden
//! snapshots of the model and the pages, the report index, and both
//! dashboards opened in a real headless Chromium with hostile tag values.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;
use tokenledger::pipeline;
use tokenledger::synth::{LogRow, to_parquet};

use crate::fixture::{self, DATE};

/// Error rate above 5% fires for the day (1 of 13 = 7.69%) and for
/// anthropic/claude-sonnet (1 of 4 = 25%); openai and mistral have none.
pub const ALERTS: &str = "[alerts]\nerror_rate_max = 0.05\n";

pub fn config(dir: &Path, toml: &str) -> Config {
    Config::from_sources(
        toml,
        "test",
        &[],
        &Overrides {
            lake: Some(dir.to_string_lossy().to_string()),
            timezone: None,
            config_dir: None,
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn day_dir(lake: &Path) -> PathBuf {
    lake.join("reports").join(format!("date={DATE}"))
}

/// Copy the fixture day's rollups to `dates`, as if those days had run.
fn copy_rollups(lake: &Path, dates: &[&str]) {
    for kind in ["daily", "latency"] {
        let from = lake
            .join("rollups")
            .join(kind)
            .join(format!("date={DATE}"))
            .join("part-0.parquet");
        for d in dates {
            let to = lake.join("rollups").join(kind).join(format!("date={d}"));
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(&from, to.join("part-0.parquet")).unwrap();
        }
    }
}

/// Compare with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test",
            path.display()
        )
    });
    if expected != actual {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("golden")
            .join(name);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, actual).unwrap();
        panic!(
            "{} differs from the golden file; the new output is in {} (diff them; if the change is intended, rerun with UPDATE_GOLDEN=1)",
            name,
            out.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_model_matches_hand_computed_figures_and_its_snapshots() {
    let lake = fixture::lake();
    let cfg = config(lake.path(), ALERTS);
    pipeline::run(&cfg, fixture::date()).await.unwrap();
    // The Saturday before and the first of the month "ran" with the same
    // rows; the days between have no rollup.
    copy_rollups(lake.path(), &["2026-03-07", "2026-03-01"]);
    let summary = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    let r = &summary.report;

    // Alerts: the day's error rate and anthropic's.
    let alerts: Vec<String> = r
        .alerts
        .iter()
        .map(|a| format!("{}: {} {} ({})", a.scope, a.metric, a.value, a.threshold))
        .collect();
    assert_eq!(
        alerts,
        [
            "all models: error rate 7.69% (> 5.00%)",
            "anthropic/claude-sonnet: error rate 25.00% (> 5.00%)"
        ]
    );

    // Tiles against the 7 days before (03-01..03-07: two days with rollups,
    // each the fixture's 13 requests).
    let tile = |key: &str| r.ops.tiles.iter().find(|t| t.key == key).unwrap();
    assert_eq!(r.ops.trailing_days, 2);
    let t = tile("requests");
    assert_eq!(
        (t.value.as_str(), t.trailing.as_str(), t.change.as_str()),
        ("13", "13 / day", "+0.0%")
    );
    let t = tile("error_rate");
    assert_eq!(
        (
            t.value.as_str(),
            t.trailing.as_str(),
            t.change.as_str(),
            t.alert
        ),
        ("7.69%", "7.69%", "+0.00 pp", true)
    );
    // p95 of the day: 620 ms (metrics.rs). The two earlier days hold every
    // latency twice: 26 values, p95 at rank 0.95 * 25 = 23.75 between the
    // 24th (500) and 25th (800): 500 + 0.75 * 300 = 725.
    let t = tile("p95");
    assert_eq!(
        (
            t.value.as_str(),
            t.trailing.as_str(),
            t.change.as_str(),
            t.alert
        ),
        ("620 ms", "725 ms", "-14.5%", false)
    );
    assert_eq!(tile("review_pass_rate").value, "50.00%");

    // Hours: r7 and r13 at 16:00 (latencies 50 and 20: p95 = 20 + 0.95 * 30
    // = 48.5); r4, an error, alone at 13:00; nothing at 03:00.
    let hour = |label: &str| r.ops.hours.iter().find(|h| h.label == label).unwrap();
    assert_eq!(r.ops.hours.len(), 24);
    assert_eq!(
        (hour("16:00").requests, hour("16:00").p95_ms),
        (2, Some(48.5))
    );
    assert_eq!(
        (hour("13:00").requests, hour("13:00").error_rate),
        (1, Some(1.0))
    );
    assert_eq!(
        (hour("03:00").requests, hour("03:00").error_rate),
        (0, None)
    );

    // Finance: total 0.077882 (metrics.rs); the day before the same; month
    // to date 3 x 0.077882 = 0.233646 over 03-01, 03-07, 03-08.
    let f = &r.finance;
    assert_eq!(
        (f.total.as_str(), f.total_exact.as_str()),
        ("$0.08", "$0.077882")
    );
    assert_eq!(
        (f.day_before.as_str(), f.change_day_over_day.as_str()),
        ("$0.08", "+0.0%")
    );
    assert_eq!((f.month_to_date.as_str(), f.month_days), ("$0.23", 3));
    assert_eq!(
        f.month_days_missing,
        [
            "2026-03-02",
            "2026-03-03",
            "2026-03-04",
            "2026-03-05",
            "2026-03-06"
        ]
    );
    // By department: (untagged) 0.0507 + 0.0016 = 0.0523 (67.2% of 0.077882);
    // research 0.01325 + 0.01 = 0.02325 (29.9%) with mistral unpriced; ops
    // 0.000012 + 0.00195 + 0.00037 = 0.002332 (3.0%); the formula-looking
    // department a cache hit at $0.
    let depts: Vec<(&str, &str, &str, &str)> = f
        .by_dept
        .iter()
        .map(|s| {
            (
                s.label.as_str(),
                s.amount.as_str(),
                s.share.as_str(),
                s.unpriced_requests.as_str(),
            )
        })
        .collect();
    assert_eq!(
        depts,
        [
            ("(untagged)", "$0.05", "67.2%", "0"),
            ("research", "$0.02", "29.9%", "1"),
            ("ops", "$0.002332", "3.0%", "0"),
            ("=HYPERLINK(\"http://x\",\"y\")", "$0.00", "0.0%", "0"),
        ]
    );
    // Cost per 1k by model: anthropic 0.05265 over 12000 + 450 priced tokens
    // (the cache hit r5 excluded) = 0.0042289; openai 0.025232 over
    // 500 + 5 + 165 + 3800 + 2000 = 6470 tokens = 0.0038999. Per approved
    // answer: openai 0.025232 / 1 (r1); anthropic has no approved answer.
    let m = |model: &str| f.per_model.iter().find(|m| m.model == model).unwrap();
    assert_eq!(
        (
            m("claude-sonnet").cost_per_1k.as_str(),
            m("claude-sonnet").per_approved.as_str()
        ),
        ("$0.004229", "—")
    );
    assert_eq!(
        (
            m("gpt-4o").cost_per_1k.as_str(),
            m("gpt-4o").per_approved.as_str()
        ),
        ("$0.003900", "$0.03")
    );
    assert_eq!(
        (
            m("mistral-large").spend.as_str(),
            m("mistral-large").unpriced_requests.as_str()
        ),
        ("—", "1")
    );
    assert_eq!(m("gpt-4o").citation_rate, "70.0%");
    // Cache savings: r5's 0.0045.
    assert_eq!(f.cache_savings, "$0.0045");
    // The largest driver: untagged anthropic, 0.0507 of 0.077882 = 65.1%.
    assert_eq!(
        (f.drivers[0].spend.as_str(), f.drivers[0].share.as_str()),
        ("$0.05", "65.1%")
    );
    assert_eq!(f.drivers.len(), 8);
    // 30-day trend: 02-08..03-08, three days with a value.
    assert_eq!(f.trend.len(), 30);
    assert_eq!(f.trend.iter().filter(|p| p.amount.is_some()).count(), 3);

    // Data quality (see metrics.rs).
    let q = &r.quality;
    assert_eq!(
        (
            q.unpriced_total.as_str(),
            q.duplicates_dropped.as_str(),
            q.duplicate_conflicts.as_str()
        ),
        ("1", "4", "3")
    );
    assert_eq!(
        (q.token_violations.as_str(), q.late_rows.as_str(), q.clean),
        ("1", "1", false)
    );
    assert_eq!(q.logged_unconverted, [("GBP".to_string(), "1".to_string())]);

    // The manifest's headline, and the index built from it.
    assert_eq!(summary.manifest.headline.cost_usd, "0.077882");
    assert_eq!(summary.manifest.headline.alerts, 2);
    let index = std::fs::read_to_string(lake.path().join("reports/index.html")).unwrap();
    assert!(
        index.contains("<td>2026-03-08</td><td class=\"num\">13</td><td class=\"num\">$0.08</td>"),
        "{index}"
    );

    // Snapshots of the model and the stored pages.
    golden(
        "report.json",
        &(serde_json::to_string_pretty(r).unwrap() + "\n"),
    );
    for page in ["ops.html", "finance.html"] {
        golden(
            page,
            &std::fs::read_to_string(day_dir(lake.path()).join(page)).unwrap(),
        );
    }
    golden("index.html", &index);
    // Charts as images for mail, and no external asset in any page.
    for chart in [
        "requests-by-hour",
        "error-rate-by-hour",
        "p95-by-hour",
        "spend-trend",
        "spend-by-dept",
        "spend-by-project",
        "cost-per-1k-by-model",
        "quality-vs-cost",
    ] {
        let png = std::fs::read(
            day_dir(lake.path())
                .join("charts")
                .join(format!("{chart}.png")),
        )
        .unwrap();
        assert_eq!(&png[1..4], b"PNG", "{chart}");
    }
}

// ---- a real browser ------------------------------------------------------------

/// Chromium's binary: `TOKENLEDGER_CHROMIUM`, or the first of the usual names
/// on PATH. `.ci/run` installs Debian's `chromium`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("TOKENLEDGER_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no Chromium found: install it (Debian: apt-get install chromium) or set TOKENLEDGER_CHROMIUM"
    );
}

/// Run headless Chromium on `url` with `args`; (stdout, stderr).
fn browse(url: &str, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--log-level=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish on {url} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn file_url(p: &Path) -> String {
    url::Url::from_file_path(p).unwrap().to_string()
}

/// A page that loads `page` in a frame `WIDTH` px wide and writes what it
/// finds into a `<pre id="probe">` for `--dump-dom`: besides the page's
/// title, scripts and fetches, how far the page scrolls sideways
/// (`overflow`), every element whose content is cut off by `overflow:
/// hidden` or `clip` (`clipped`), and every scroll box that must scroll to
/// show its table (`wide`, named by its first header).
const PROBE: &str = r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>probe</title></head><body style="margin:0">
<iframe id="f" src="PAGE" style="width:WIDTHpx;height:900px;border:0"></iframe>
<script>
document.getElementById('f').addEventListener('load', function () {
  var d = this.contentDocument, w = this.contentWindow;
  var out = {
    title: d.title,
    scripts: d.scripts.length,
    images: d.images.length,
    svgs: d.querySelectorAll('svg').length,
    resources: w.performance.getEntriesByType('resource').map(function (e) { return e.name; }),
    overflow: d.documentElement.scrollWidth - d.documentElement.clientWidth,
    clipped: [],
    wide: [],
    text: d.body.innerText
  };
  d.querySelectorAll('body *').forEach(function (el) {
    var x = w.getComputedStyle(el).overflowX;
    if ((x === 'hidden' || x === 'clip') && el.scrollWidth > el.clientWidth + 1) {
      out.clipped.push(el.tagName.toLowerCase() + '.' + el.className + ': ' + (el.textContent || '').slice(0, 60));
    }
  });
  d.querySelectorAll('.scroll').forEach(function (el) {
    if (el.scrollWidth > el.clientWidth + 1) {
      var th = el.querySelector('th');
      out.wide.push((th ? th.textContent : '?') + ' (' + el.scrollWidth + ' px in ' + el.clientWidth + ')');
    }
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body></html>"#;

pub fn probe(dir: &Path, page: &str, width: u32) -> serde_json::Value {
    let probe_page = dir.join(format!("probe-{page}"));
    std::fs::write(
        &probe_page,
        PROBE
            .replace("PAGE", page)
            .replace("WIDTH", &width.to_string()),
    )
    .unwrap();
    let (dom, stderr) = browse(
        &file_url(&probe_page),
        &["--virtual-time-budget=10000", "--dump-dom"],
    );
    std::fs::remove_file(&probe_page).unwrap();
    // The pages log nothing to the console: any console line is a failure.
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console output from {page}: {console:?}"
    );
    let start = dom
        .find("<pre id=\"probe\">")
        .unwrap_or_else(|| panic!("no probe result for {page}: {dom}"));
    let json = &dom[start + "<pre id=\"probe\">".len()..];
    let json = &json[..json.find("</pre>").unwrap()];
    let json = json
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

/// Screenshot `page` at `width` into the target directory; check it is not blank.
fn screenshot(dir: &Path, page: &str, width: u32, name: &str) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join(name);
    let _ = std::fs::remove_file(&file);
    browse(
        &file_url(&dir.join(page)),
        &[
            &format!("--window-size={width},2000"),
            &format!("--screenshot={}", file.display()),
        ],
    );
    let img = image::open(&file)
        .unwrap_or_else(|e| panic!("screenshot {}: {e}", file.display()))
        .to_rgb8();
    assert_eq!(img.width(), width);
    let background = img.get_pixel(0, 0);
    let differing = img.pixels().filter(|p| *p != background).count();
    let share = differing as f64 / (img.width() * img.height()) as f64;
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        share > 0.05 && colours.len() > 50,
        "{} looks blank: {:.1}% ink, {} colours",
        file.display(),
        share * 100.0,
        colours.len()
    );
    file
}

const HOSTILE_DEPT: &str = "<script>document.title='pwned'</script>";
const HOSTILE_PROJECT: &str = "<img src=x onerror=\"document.title='pwned'\">";
const HOSTILE_TASK: &str = "=HYPERLINK(\"http://evil.example\",\"click\")";
const HOSTILE_MODEL: &str = "</td><b>m</b>";

/// Two more rows on the fixture day: a priced one with hostile tags, and an
/// unpriced one with a hostile model name.
fn add_hostile_rows(lake: &Path) {
    let mut a = LogRow::new(
        fixture::us("2026-03-08T20:00:00Z"),
        "t-hostile-1",
        "openai",
        "gpt-4o",
        1000,
        100,
    );
    a.dept = Some(HOSTILE_DEPT.into());
    a.project = Some(HOSTILE_PROJECT.into());
    a.task = Some(HOSTILE_TASK.into());
    a.latency_ms = Some(42.0);
    let mut b = LogRow::new(
        fixture::us("2026-03-08T21:00:00Z"),
        "t-hostile-2",
        "acme",
        HOSTILE_MODEL,
        10,
        10,
    );
    b.dept = Some(HOSTILE_DEPT.into());
    b.latency_ms = Some(43.0);
    let part = lake.join(format!("requests/date={DATE}/hostile.parquet"));
    std::fs::write(part, to_parquet(&[a, b], 16).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_dashboards_render_in_a_headless_browser_with_hostile_values_as_text() {
    let lake = fixture::lake();
    add_hostile_rows(lake.path());
    pipeline::run(&config(lake.path(), ALERTS), fixture::date())
        .await
        .unwrap();
    let dir = day_dir(lake.path());

    for (page, title, svgs) in [
        ("ops.html", "Operations · 2026-03-08 · tokenledger", 3),
        ("finance.html", "Finance · 2026-03-08 · tokenledger", 5),
    ] {
        let p = probe(&dir, page, 390);
        // No script ran and none was injected: the title is ours.
        assert_eq!(p["title"], title, "{page}: {p}");
        assert_eq!(p["scripts"], 0, "{page}");
        assert_eq!(p["images"], 0, "{page}: charts are inline SVG");
        assert_eq!(p["svgs"], svgs, "{page}");
        // Offline: nothing fetched besides the page itself.
        assert_eq!(p["resources"], serde_json::json!([]), "{page}");
        // Reads on a phone: nothing wider than a 390 px screen; wide tables
        // scroll inside their own box, and nothing is cut off.
        assert_eq!(p["overflow"], 0, "{page} scrolls sideways on a phone");
        assert_eq!(p["clipped"], serde_json::json!([]), "{page} at 390 px");
        // On a desktop (1280 px) every table fits its card: nothing to
        // scroll, nothing cut off at the right edge.
        let desk = probe(&dir, page, 1280);
        assert_eq!(desk["overflow"], 0, "{page} scrolls sideways at 1280 px");
        assert_eq!(desk["clipped"], serde_json::json!([]), "{page} at 1280 px");
        assert_eq!(
            desk["wide"],
            serde_json::json!([]),
            "{page}: tables wider than the page at 1280 px"
        );
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("alerts") || text.contains("alert"), "{page}");
        if page == "finance.html" {
            for hostile in [HOSTILE_DEPT, HOSTILE_PROJECT, HOSTILE_TASK] {
                assert!(
                    text.contains(hostile),
                    "{page} does not show {hostile} as text"
                );
            }
        } else {
            assert!(
                text.contains(HOSTILE_MODEL),
                "{page} does not show {HOSTILE_MODEL} as text"
            );
        }
    }
    let index = probe(&lake.path().join("reports"), "index.html", 390);
    assert_eq!(index["scripts"], 0);
    assert!(index["text"].as_str().unwrap().contains("2026-03-08"));

    for page in ["ops", "finance"] {
        screenshot(
            &dir,
            &format!("{page}.html"),
            1280,
            &format!("{page}-desktop.png"),
        );
        screenshot(
            &dir,
            &format!("{page}.html"),
            390,
            &format!("{page}-phone.png"),
        );
    }
}
