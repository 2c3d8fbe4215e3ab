//! Incidents end to end: a day whose spend jumps far above its history opens
//! one incident per event of high-severity anomalies, each POSTed to a real HTTP server
//! on loopback (which fails the first call: the webhook retries); a rerun
//! files no second record and makes no second call; a webhook that is down
//! exits 5 with everything else published, and the next run sends it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;
use tokenledger::pipeline;

use crate::fixture;

/// What the webhook server saw: (idempotency key, body).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook receiver on loopback; answers 503 to the first `fail` calls.
async fn receiver(fail: usize) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let calls = Arc::new(Mutex::new(0usize));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (s, calls) = (Arc::clone(&s), Arc::clone(&calls));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (s, calls) = (Arc::clone(&s), Arc::clone(&calls));
                    async move {
                        let key = req
                            .headers()
                            .get("idempotency-key")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = {
                            let mut c = calls.lock().unwrap();
                            *c += 1;
                            *c
                        };
                        let status = if n <= fail {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            s.lock()
                                .unwrap()
                                .push((key, String::from_utf8(body.to_vec()).unwrap()));
                            StatusCode::OK
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from("ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn config(lake: &std::path::Path, hook: &str) -> Config {
    let toml = format!(
        "[anomaly]\nmin_requests = 1\nmin_impact_usd = 0.001\nmin_change_impact_usd = 0.0\nwebhook_url = \"{hook}\"\nwebhook_attempts = 3\nwebhook_timeout_secs = 5\n"
    );
    Config::from_sources(
        &toml,
        "test",
        &[],
        &Overrides {
            lake: Some(lake.to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

/// The fixture lake, with three Sundays of history whose spend was that of
/// part-b alone (three requests, about $0.0021): the fixture's Sunday
/// ($0.0779, 13 requests) is a jump of some 3,600%.
async fn lake_with_history() -> tempfile::TempDir {
    let small = tempfile::tempdir().unwrap();
    for (key, bytes) in fixture::objects() {
        if key.contains("part-a")
            || key.contains("late")
            || key.contains("old")
            || key.starts_with("invoices")
        {
            continue;
        }
        let path = small.path().join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    crate::metrics::run_fixture(small.path(), None).await;
    let lake = fixture::lake();
    for day in ["2026-02-15", "2026-02-22", "2026-03-01"] {
        for kind in ["daily", "latency"] {
            let from = small
                .path()
                .join(format!("rollups/{kind}/date=2026-03-08/part-0.parquet"));
            let to = lake
                .path()
                .join(format!("rollups/{kind}/date={day}/part-0.parquet"));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        }
    }
    lake
}

fn records(lake: &std::path::Path, suffix: &str) -> Vec<String> {
    let dir = lake.join("incidents/date=2026-03-08");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| n.ends_with(suffix) && (suffix != ".json" || !n.ends_with(".webhook.json")));
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_anomalies_open_incidents_posted_once() {
    let lake = lake_with_history().await;
    let (addr, seen) = receiver(1).await;
    let cfg = config(lake.path(), &format!("http://{addr}/hooks/llm-cost"));
    let s = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(s.outcome, ExitKind::Ok);

    let anomalies = fixture::report(lake.path(), "anomalies.csv");
    let mut r = csv::Reader::from_reader(anomalies.as_bytes());
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (dim, key, metric, sev) = (col("dimension"), col("key"), col("metric"), col("severity"));
    let high_set: Vec<String> = r
        .records()
        .map(|rec| rec.unwrap())
        .filter(|rec| &rec[sev] == "high")
        .map(|rec| format!("{}/{}/{}", &rec[dim], &rec[key], &rec[metric]))
        .collect();
    // History: part-b alone (3 requests: openai 1, anthropic 2; $0.00209);
    // today 13 requests (openai 8, anthropic 4, mistral 1 unpriced),
    // $0.077882. Cost, tokens per request and requests jump at the total and
    // for both providers, at the provider and at the provider+model level:
    // 3 + 2 x 2 x 3 = 15 high anomalies. Mistral has no baseline (new
    // group), the departments' changes are below `high`.
    let mut want = Vec::new();
    for level in [
        "total/all",
        "provider/anthropic",
        "provider+model/anthropic/claude-sonnet",
        "provider/openai",
        "provider+model/openai/gpt-4o",
    ] {
        for metric in ["cost_usd", "tokens_per_request", "requests"] {
            want.push(format!("{level}/{metric}"));
        }
    }
    let mut got = high_set.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{anomalies}");
    // One incident per event, not per anomaly: the 15 high anomalies are
    // two events, one per model (no department moved enough to be one). The
    // total's change is 2/3 claude-sonnet's (r4 alone is $0.0507): neither
    // model explains it alone, both together do, and it joins the larger.
    let filed = records(lake.path(), ".json");
    assert_eq!(filed.len(), 2, "one incident per event: {filed:?}");
    assert_eq!(records(lake.path(), ".webhook.json").len(), 2);
    // The first POST got a 503 and was retried: each incident arrived once.
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let keys: std::collections::BTreeSet<&str> = calls.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 2);
    let posted: Vec<serde_json::Value> = calls
        .iter()
        .map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).unwrap())
        .collect();
    let lead = |key: &str| {
        posted
            .iter()
            .find(|v| v["key"] == key)
            .unwrap_or_else(|| panic!("no incident led by {key}: {posted:?}"))
    };
    let related = |v: &serde_json::Value| -> Vec<String> {
        let mut r: Vec<String> = v["related"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/{}",
                    r["dimension"].as_str().unwrap(),
                    r["key"].as_str().unwrap(),
                    r["metric"].as_str().unwrap()
                )
            })
            .collect();
        r.sort();
        r
    };
    let openai = lead("openai/gpt-4o");
    assert_eq!(openai["metric"], "cost_usd");
    assert_eq!(
        related(openai),
        [
            "provider+model/openai/gpt-4o/requests",
            "provider+model/openai/gpt-4o/tokens_per_request",
            "provider/openai/cost_usd",
            "provider/openai/requests",
            "provider/openai/tokens_per_request",
        ]
    );
    let total = lead("anthropic/claude-sonnet");
    assert_eq!(total["dimension"], "provider+model");
    assert_eq!(total["metric"], "cost_usd");
    assert_eq!(related(total).len(), 8, "{:?}", related(total));
    for r in [
        "total/all/cost_usd",
        "total/all/requests",
        "total/all/tokens_per_request",
    ] {
        assert!(related(total).iter().any(|x| x == r), "{r}");
    }
    // Every high anomaly is in exactly one incident.
    assert_eq!(
        2 + related(openai).len() + related(total).len(),
        high_set.len()
    );

    // The claude event's record: the group's costliest traces, the prices
    // in force, the causes, a suggestion and the RCA due a day later.
    assert_eq!(total["severity"], "high");
    assert_eq!(total["window_start"], "2026-03-08T00:00:00Z");
    let opened =
        chrono::DateTime::parse_from_rfc3339(total["opened_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(total["rca_due"].as_str().unwrap()).unwrap();
    assert_eq!(due - opened, chrono::Duration::hours(24));
    // r4 (0.0507) then t8 (0.00135) and t9 (0.0006): fixture.rs.
    let traces: Vec<(&str, &str)> = total["top_traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["trace_id"].as_str().unwrap(),
                t["cost_usd"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        &traces[..3],
        &[("t4", "0.050700"), ("t8", "0.001350"), ("t9", "0.000600")]
    );
    let price_ids: Vec<&str> = total["price_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price_id"].as_str().unwrap())
        .collect();
    assert_eq!(price_ids.len(), 1, "claude-sonnet's: {price_ids:?}");
    // r4's 12,000 tokens against part-b's few hundred: longer requests.
    assert_eq!(
        total["suggested_action"].as_str().unwrap(),
        "Requests grew longer: check prompt templates and context sizes"
    );
    assert_eq!(total["likely_cause"], "tokens per request");
    assert!(total["causes"].as_str().unwrap().contains("volume"));
    assert_eq!(total["models_before"].as_array().unwrap().len(), 1);
    let high = 2;

    // A rerun: no new record, no new call, the records unchanged.
    let before: Vec<Vec<u8>> = filed
        .iter()
        .map(|n| std::fs::read(lake.path().join("incidents/date=2026-03-08").join(n)).unwrap())
        .collect();
    let s = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(s.outcome, ExitKind::Ok);
    assert_eq!(seen.lock().unwrap().len(), high);
    let after: Vec<Vec<u8>> = filed
        .iter()
        .map(|n| std::fs::read(lake.path().join("incidents/date=2026-03-08").join(n)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_down_exits_5_and_the_next_run_sends() {
    let lake = lake_with_history().await;
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = pipeline::run(
        &config(lake.path(), &format!("http://{dead}/hook")),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, ExitKind::Delivery);
    let filed = records(lake.path(), ".json");
    assert!(!filed.is_empty());
    assert!(records(lake.path(), ".webhook.json").is_empty());
    assert!(
        lake.path()
            .join("reports/date=2026-03-08/manifest.json")
            .exists()
    );

    let (addr, seen) = receiver(0).await;
    let s = pipeline::run(
        &config(lake.path(), &format!("http://{addr}/hook")),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(s.outcome, ExitKind::Ok);
    assert_eq!(seen.lock().unwrap().len(), filed.len());
    assert_eq!(records(lake.path(), ".webhook.json").len(), filed.len());
}

/// No rollups at all, only logs: three earlier Sundays holding part-b's
/// traffic (shifted by whole weeks) and the fixture's Sunday. One `run` of
/// the Sunday builds the missing rollups of its window from the logs (the
/// days without logs are not scanned) and flags the jump, as the run over
/// copied rollups above does; the next run reads the rollups alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_builds_its_missing_baseline_and_flags_the_spike() {
    let lake = fixture::lake();
    for weeks in 1..=3i64 {
        let mut rows = fixture::part_b();
        for r in &mut rows {
            r.ts_us -= weeks * 7 * 86_400_000_000;
            // The earlier weeks were served by another route.
            r.route = Some("/v1/chat".into());
        }
        let day = fixture::date() - chrono::Duration::weeks(weeks);
        let path = lake
            .path()
            .join(format!("requests/date={day}/part-b.parquet"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, tokenledger::synth::to_parquet(&rows, 1024).unwrap()).unwrap();
    }
    let toml = "[anomaly]\nmin_requests = 1\nmin_impact_usd = 0.001\nmin_change_impact_usd = 0.0\n";
    let cfg = Config::from_sources(
        toml,
        "test",
        &[],
        &Overrides {
            lake: Some(lake.path().to_string_lossy().to_string()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let s = pipeline::run(&cfg, fixture::date()).await.unwrap();
    assert_eq!(s.outcome, ExitKind::Ok);

    let built = |day: &str| {
        lake.path()
            .join(format!("rollups/daily/date={day}/part-0.parquet"))
            .is_file()
    };
    for day in ["2026-02-15", "2026-02-22", "2026-03-01"] {
        assert!(built(day), "{day} was not built");
    }
    // 2026-03-07 has logs too (old.parquet); days without logs stay empty.
    assert!(built("2026-03-07"));
    assert!(!built("2026-02-20") && !built("2026-03-04"));

    let anomalies = fixture::report(lake.path(), "anomalies.csv");
    let total = anomalies
        .lines()
        .find(|l| l.contains(",total,all,cost_usd,"))
        .unwrap_or_else(|| panic!("the total's cost is not flagged:\n{anomalies}"));
    assert!(total.contains(",high,"), "{total}");

    // The total's incident shows the routing change. Before, over the
    // window's four days with logs: part-b's three weeks on /v1/chat and
    // 7 March's two gpt-4o requests (t16, t11) on no route; today, no route.
    // One event per model (the total joins claude's, which carries most of
    // its change): each incident shows its models' routes.
    let dir = lake.path().join("incidents/date=2026-03-08");
    let incidents: Vec<serde_json::Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".webhook.json"))
        .map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    assert!(
        incidents.iter().any(|v| v["related"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dimension"] == "total" && r["metric"] == "cost_usd")),
        "the total is in an incident"
    );
    let mut total = serde_json::json!({"routes_before": [], "routes_after": []});
    for v in &incidents {
        for key in ["routes_before", "routes_after"] {
            let list = total[key].as_array_mut().unwrap();
            list.extend(v[key].as_array().unwrap().iter().cloned());
        }
    }
    let mix = |key: &str| -> Vec<(String, String, f64)> {
        total[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["model"].as_str().unwrap().to_string(),
                    r["route"].as_str().unwrap().to_string(),
                    r["share"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let before = mix("routes_before");
    let gpt: Vec<(&str, f64)> = before
        .iter()
        .filter(|(m, _, _)| m == "openai/gpt-4o")
        .map(|(_, r, s)| (r.as_str(), *s))
        .collect();
    assert_eq!(gpt, [("", 0.4), ("/v1/chat", 0.6)], "{total}");
    for (m, r, s) in before.iter().filter(|(m, _, _)| m != "openai/gpt-4o") {
        assert_eq!((r.as_str(), *s), ("/v1/chat", 1.0), "{m}");
    }
    let after = mix("routes_after");
    assert!(!after.is_empty());
    for (m, r, s) in &after {
        assert_eq!((r.as_str(), *s), ("", 1.0), "{m}");
    }

    // The second run builds nothing and flags the same.
    let before = std::fs::metadata(
        lake.path()
            .join("rollups/daily/date=2026-02-15/part-0.parquet"),
    )
    .unwrap()
    .modified()
    .unwrap();
    pipeline::run(&cfg, fixture::date()).await.unwrap();
    let after = std::fs::metadata(
        lake.path()
            .join("rollups/daily/date=2026-02-15/part-0.parquet"),
    )
    .unwrap()
    .modified()
    .unwrap();
    assert_eq!(before, after);
    assert_eq!(fixture::report(lake.path(), "anomalies.csv"), anomalies);
}
