//! Distributed runs: the same day on 1, 2 and 3 `tokenledger worker`s,
//! in-process on real gRPC over 127.0.0.1, publishes the bytes of the local
//! run; workers that are unreachable, of another build, or killed mid-query
//! fail the run with nothing published, and a rerun succeeds.

use std::sync::Arc;

use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;
use tokenledger::lake::Stores;
use tokenledger::pipeline;

use crate::fixture;

/// A worker serving on an ephemeral port of 127.0.0.1.
pub struct TestWorker {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<tokenledger::error::Result<()>>,
}

impl TestWorker {
    pub async fn start() -> TestWorker {
        Self::start_as(tokenledger::engine::version()).await
    }

    /// A worker that reports `version` (another build's, in a test).
    pub async fn start_as(version: String) -> TestWorker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stores = Arc::new(Stores::new(Default::default()));
        let task = tokio::spawn(tokenledger::engine::serve_on(
            listener,
            stores,
            version,
            async move {
                let _ = stopped.await;
            },
        ));
        TestWorker {
            url,
            stop: Some(stop),
            task,
        }
    }

    /// Stop gracefully (what SIGTERM does) and wait for the server to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        task.await.unwrap().unwrap();
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_workers(n: usize) -> Vec<TestWorker> {
    let mut workers = Vec::with_capacity(n);
    for _ in 0..n {
        workers.push(TestWorker::start().await);
    }
    workers
}

/// `tokenledger gen`'s day (duplicates, late rows, prices, FX) under `dir`.
async fn generate(
    dir: &std::path::Path,
    date: chrono::NaiveDate,
    rows: usize,
    rows_per_file: usize,
    seed: u64,
) -> tokenledger::demo::GenOutcome {
    let lake = tokenledger::lake::Location::from_local_path(dir).unwrap();
    tokenledger::demo::gen_day(
        &lake,
        tokenledger::demo::GenOptions {
            rows,
            date,
            seed,
            rows_per_file,
        },
    )
    .await
    .unwrap()
}

fn config(lake: &std::path::Path, workers: Option<String>) -> Config {
    config_toml("", lake, workers)
}

/// [`config`] with settings of a config file.
fn config_toml(toml: &str, lake: &std::path::Path, workers: Option<String>) -> Config {
    Config::from_sources(
        toml,
        "test",
        &[],
        &Overrides {
            lake: Some(lake.to_string_lossy().to_string()),
            workers,
            ..Overrides::default()
        },
    )
    .unwrap()
}

/// Every published object (key and digest) but the manifest.
fn outputs(s: &pipeline::RunSummary) -> Vec<(String, String)> {
    s.manifest
        .outputs
        .iter()
        .map(|o| (o.key.clone(), o.sha256.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_day_on_one_two_and_three_workers_has_the_local_bytes() {
    let lake = fixture::lake();
    let local = pipeline::run(&config(lake.path(), None), fixture::date())
        .await
        .unwrap();
    assert_eq!(local.manifest.engine.mode, "local");
    let expected = outputs(&local);
    assert!(
        expected
            .iter()
            .any(|(k, _)| k.ends_with("finance_by_dimension.csv"))
    );

    let workers = start_workers(3).await;
    for n in 1..=3 {
        let urls: Vec<String> = workers[..n].iter().map(|w| w.url.clone()).collect();
        let lake = fixture::lake();
        let run = pipeline::run(&config(lake.path(), Some(urls.join(","))), fixture::date())
            .await
            .unwrap_or_else(|e| panic!("{n} worker(s): {e}"));
        assert_eq!(outputs(&run), expected, "{n} worker(s)");
        assert_eq!(run.manifest.rows, local.manifest.rows, "{n} worker(s)");
        let engine = &run.manifest.engine;
        assert_eq!(engine.mode, "distributed");
        let listed: Vec<String> = urls.iter().map(|u| format!("{u}/")).collect();
        assert_eq!(engine.workers, listed);
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(
            engine.tasks_by_worker.keys().cloned().collect::<Vec<_>>(),
            sorted
        );
        for (url, tasks) in &engine.tasks_by_worker {
            assert!(*tasks > 0, "{n} worker(s): {url} ran no task: {engine:?}");
        }
    }
    for w in workers {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_worker_fails_the_run_before_anything_is_read() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let healthy = TestWorker::start().await;
    let lake = fixture::lake();
    let dead = format!("http://127.0.0.1:{port}");
    let err = pipeline::run(
        &config(lake.path(), Some(format!("{},{dead}", healthy.url))),
        fixture::date(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ExitKind::Runtime);
    let text = err.to_string();
    assert!(text.contains(&format!("worker {dead}/")), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(
        !fixture::report_exists(lake.path(), "manifest.json"),
        "nothing is published"
    );
    // The lease was released: the same day runs at once on the healthy one.
    let run = pipeline::run(
        &config(lake.path(), Some(healthy.url.clone())),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(run.manifest.engine.mode, "distributed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_another_build_is_refused() {
    let other = TestWorker::start_as("tokenledger 0.0.9 sql 000000000000".into()).await;
    let lake = fixture::lake();
    let err = pipeline::run(
        &config(lake.path(), Some(other.url.clone())),
        fixture::date(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ExitKind::Runtime);
    let text = err.to_string();
    assert!(
        text.contains("runs `tokenledger 0.0.9 sql 000000000000`") && text.contains("refused"),
        "{text}"
    );
    assert!(!fixture::report_exists(lake.path(), "manifest.json"));
}

/// A TCP proxy in front of a worker that cuts every connection it carries
/// (both directions, at once) once the coordinator has sent it more than
/// `cut_after` bytes: a worker dying while it runs a task.
struct Cutter {
    url: String,
    cut: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`Cutter`] does once triggered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Close every connection (the worker's process died).
    Drop,
    /// Keep the connections open and forward nothing more, either way (the
    /// worker's machine or network went silent: no reset ever comes).
    Freeze,
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cutter {
    async fn start(worker: &str, cut_after: u64, how: Cut) -> Cutter {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = worker.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let flag = Arc::clone(&cut);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let (sent, flag2, flag3) = (Arc::clone(&sent), Arc::clone(&flag), Arc::clone(&flag));
                        conns.spawn(async move {
                            let mut buf = vec![0u8; 16 * 1024];
                            loop {
                                let n = match cr.read(&mut buf).await { Ok(0) | Err(_) => return, Ok(n) => n };
                                if how == Cut::Freeze && flag2.load(Ordering::SeqCst) {
                                    // Swallowed: the peer hears nothing back.
                                    continue;
                                }
                                if sw.write_all(&buf[..n]).await.is_err() { return; }
                                if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > cut_after {
                                    flag2.store(true, Ordering::SeqCst);
                                }
                            }
                        });
                        conns.spawn(async move {
                            let mut buf = vec![0u8; 16 * 1024];
                            loop {
                                let n = match sr.read(&mut buf).await { Ok(0) | Err(_) => return, Ok(n) => n };
                                if how == Cut::Freeze && flag3.load(Ordering::SeqCst) {
                                    continue;
                                }
                                if cw.write_all(&buf[..n]).await.is_err() { return; }
                            }
                        });
                    }
                    () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {
                        if how == Cut::Drop && flag.load(Ordering::SeqCst) {
                            // The worker is gone: every connection dropped,
                            // and nothing listens any more.
                            conns.shutdown().await;
                            return;
                        }
                    }
                }
            }
        });
        Cutter { url, cut, task }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_query_fails_the_run_cleanly_and_a_rerun_has_the_same_bytes() {
    let lake = fixture::lake();
    let local = pipeline::run(&config(lake.path(), None), fixture::date())
        .await
        .unwrap();

    let a = TestWorker::start().await;
    let b = TestWorker::start().await;
    // The check at start sends a few hundred bytes; a task's plan, more.
    let doomed = Cutter::start(&b.url, 2_000, Cut::Drop).await;
    let lake = fixture::lake();
    let failed = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        pipeline::run(
            &config(lake.path(), Some(format!("{},{}", a.url, doomed.url))),
            fixture::date(),
        ),
    )
    .await
    .expect("a lost worker fails the run; it never hangs");
    let err = failed.unwrap_err();
    assert!(
        doomed.cut.load(std::sync::atomic::Ordering::SeqCst),
        "{err}"
    );
    assert_eq!(err.kind(), ExitKind::Runtime, "{err}");
    assert!(!fixture::report_exists(lake.path(), "manifest.json"));
    assert!(!fixture::report_exists(
        lake.path(),
        "finance_by_dimension.csv"
    ));
    // The lease is released: a rerun at once, on the live workers, succeeds
    // with the local bytes.
    let rerun = pipeline::run(
        &config(lake.path(), Some(format!("{},{}", a.url, b.url))),
        fixture::date(),
    )
    .await
    .unwrap();
    assert_eq!(outputs(&rerun), outputs(&local));
}

/// A generated 2M-row day (duplicates inside an object, across objects and
/// across the D/D+1 partitions; gpt-4o-mini's price cut at noon, so two
/// price versions that day; an unpriced model): on 2 and 3 workers, every
/// CSV and rollup has the local bytes, and the rows the workers' scans
/// dropped are counted as the local scan counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_2m_row_day_on_two_and_three_workers_has_the_local_bytes() {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let generated = generate(dir.path(), date, 2_000_000, 600_000, 11).await;
    assert!(generated.files >= 5, "{generated:?}");
    let prices = std::fs::read_to_string(dir.path().join("prices.csv")).unwrap();
    assert!(
        prices.contains("2026-10-31T12:00:00Z"),
        "a price change that day"
    );

    let local = pipeline::run(&config(dir.path(), None), date)
        .await
        .unwrap();
    let expected = outputs(&local);
    let rows = &local.manifest.rows;
    assert!(rows.duplicates_dropped > 1_000, "{rows:?}");
    // The duplicates resolved in one bucket or in sixteen (the default
    // makes three of this day's ~11K keys): the same bytes.
    for per_bucket in [100_000_000, 64] {
        let cfg = config_toml(
            &format!(
                "[run]
duplicate_bucket_keys = {per_bucket}
"
            ),
            dir.path(),
            None,
        );
        let run = pipeline::run(&cfg, date).await.unwrap();
        assert_eq!(outputs(&run), expected, "{per_bucket} keys a bucket");
        assert_eq!(&run.manifest.rows, rows, "{per_bucket} keys a bucket");
    }
    assert!(rows.late_rows > 1_000, "{rows:?}");
    assert!(local.manifest.headline.unpriced_requests > 0);
    let workers = start_workers(3).await;
    for n in [2, 3] {
        let urls: Vec<String> = workers[..n].iter().map(|w| w.url.clone()).collect();
        let run = pipeline::run(&config(dir.path(), Some(urls.join(","))), date)
            .await
            .unwrap_or_else(|e| panic!("{n} workers: {e}"));
        assert_eq!(outputs(&run), expected, "{n} workers");
        assert_eq!(&run.manifest.rows, rows, "{n} workers");
        let tasks = &run.manifest.engine.tasks_by_worker;
        assert_eq!(tasks.len(), n);
        assert!(tasks.values().all(|t| *t > 0), "{tasks:?}");
    }
}

/// As users run it: two `tokenledger worker` processes and `tokenledger run
/// --workers` publish the bytes of the local run; each worker stops on
/// SIGTERM with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_serve_the_binary_and_stop_on_sigterm() {
    use std::process::{Command, Stdio};
    let lake = fixture::lake();
    let local = pipeline::run(&config(lake.path(), None), fixture::date())
        .await
        .unwrap();

    let lake = fixture::lake();
    let dir = lake.path().to_string_lossy().to_string();
    let mut workers = Vec::new();
    let mut urls = Vec::new();
    for i in 0..2 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        // The first as the bare command (no config: storage from the
        // environment), the second with the job's lake.
        let mut args = vec!["worker", "--listen", &listen];
        if i == 1 {
            args.extend(["--lake", dir.as_str()]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_tokenledger"))
            .args(&args)
            .env_remove("TOKENLEDGER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "worker on {port} never listened"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        workers.push(child);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let date = fixture::date().to_string();
    let out = crate::cli::tokenledger(
        &[
            "run",
            "--lake",
            &dir,
            "--date",
            &date,
            "--workers",
            &urls.join(","),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(i32::from(local.outcome.code())),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&fixture::report(lake.path(), "manifest.json")).unwrap();
    let published: Vec<(String, String)> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_string(),
                o["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(published, outputs(&local));
    assert_eq!(manifest["engine"]["mode"], "distributed");
    let tasks = manifest["engine"]["tasks_by_worker"].as_object().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.values().all(|t| t.as_u64().unwrap() > 0), "{tasks:?}");

    for mut child in workers {
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let code = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker ignored SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(code, Some(0), "{err}");
        assert!(
            err.contains("worker listening") && err.contains("worker stopped"),
            "{err}"
        );
    }
}

/// `check` asks the configured workers too: one that answers is listed,
/// one that does not is a problem naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_workers_and_whether_they_answer() {
    let w = TestWorker::start().await;
    let lake = fixture::lake();
    let lines = pipeline::check(&config(lake.path(), Some(w.url.clone())))
        .await
        .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("engine: 1 worker(s) answer and run this build")),
        "{lines:?}"
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}");
    let err = pipeline::check(&config(lake.path(), Some(dead.clone())))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("worker {dead}/: unreachable")),
        "{err}"
    );
}

/// A worker that goes silent mid-query (no reset ever comes: a partitioned
/// network, a frozen machine) fails the run within `engine.idle_timeout_secs`
/// instead of hanging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_goes_silent_fails_the_run_within_the_idle_timeout() {
    let a = TestWorker::start().await;
    let b = TestWorker::start().await;
    let silent = Cutter::start(&b.url, 2_000, Cut::Freeze).await;
    let lake = fixture::lake();
    let config = config_toml(
        "[engine]\nidle_timeout_secs = 3\n",
        lake.path(),
        Some(format!("{},{}", a.url, silent.url)),
    );
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        pipeline::run(&config, fixture::date()),
    )
    .await
    .expect("a silent worker fails the run; it never hangs");
    let err = failed.unwrap_err();
    assert!(
        silent.cut.load(std::sync::atomic::Ordering::SeqCst),
        "{err}"
    );
    assert_eq!(err.kind(), ExitKind::Runtime, "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(!fixture::report_exists(lake.path(), "manifest.json"));
}

/// A day of fewer row groups than workers (one object of one row group, and
/// the late rows' object) still runs on every worker, some tasks empty,
/// with the local bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_fewer_row_groups_than_workers_runs_on_every_worker() {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let generated = generate(dir.path(), date, 5_000, 1_000_000, 5).await;
    assert_eq!(generated.files, 2, "one object on time, one late");
    let local = pipeline::run(&config(dir.path(), None), date)
        .await
        .unwrap();
    let workers = start_workers(3).await;
    let urls: Vec<String> = workers.iter().map(|w| w.url.clone()).collect();
    let run = pipeline::run(&config(dir.path(), Some(urls.join(","))), date)
        .await
        .unwrap();
    assert_eq!(outputs(&run), outputs(&local));
    let tasks = &run.manifest.engine.tasks_by_worker;
    assert_eq!(tasks.len(), 3);
    assert!(tasks.values().all(|t| *t > 0), "{tasks:?}");
}

/// A worker address that accepts connections but never answers (a hung
/// process) fails the start check within `engine.connect_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_never_answers_fails_the_start_within_the_connect_timeout() {
    // The kernel completes the handshakes; nothing ever reads or writes.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", mute.local_addr().unwrap());
    let lake = fixture::lake();
    let config = config_toml(
        "[engine]\nconnect_timeout_secs = 2\n",
        lake.path(),
        Some(url.clone()),
    );
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        pipeline::run(&config, fixture::date()),
    )
    .await
    .expect("the start check is bounded")
    .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(err.kind(), ExitKind::Runtime);
    let text = err.to_string();
    assert!(
        text.contains(&format!("worker {url}/: no answer within 2 s")),
        "{text}"
    );
    assert!(!fixture::report_exists(lake.path(), "manifest.json"));
    drop(mute);
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `backfill` and `reprice` over several days keep one day in flight per
/// worker: every worker runs tasks, and the rollups written and the lines
/// reported are those of local mode, in date order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_reprice_spread_their_days_over_the_workers() {
    let first = chrono::NaiveDate::from_ymd_opt(2026, 10, 20).unwrap();
    let last = first + chrono::Duration::days(3);
    let lakes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for lake in &lakes {
        for (i, date) in first.iter_days().take(4).enumerate() {
            generate(lake.path(), date, 20_000, 8_000, 100 + i as u64).await;
        }
    }
    let local = config(lakes[0].path(), None);
    let days = pipeline::backfill(&local, first, last, false, |_, _| {})
        .await
        .unwrap();
    assert_eq!(days.len(), 4);
    for (date, outcome) in &days {
        match outcome {
            pipeline::Backfilled::Built {
                tasks_by_worker, ..
            } => assert!(tasks_by_worker.is_empty(), "{date}: local mode"),
            other => panic!("{date}: {other:?}"),
        }
    }

    let workers = start_workers(2).await;
    let urls: Vec<String> = workers.iter().map(|w| w.url.clone()).collect();
    let distributed = config(lakes[1].path(), Some(urls.join(",")));
    assert_eq!(pipeline::days_in_flight(&distributed).await.unwrap(), 2);
    let mut seen = Vec::new();
    let days = pipeline::backfill(&distributed, first, last, false, |date, _| seen.push(date))
        .await
        .unwrap();
    let in_order: Vec<_> = first.iter_days().take(4).collect();
    assert_eq!(seen, in_order, "progress in date order");
    let mut tasks: std::collections::BTreeMap<String, u64> = Default::default();
    for (date, outcome) in &days {
        let pipeline::Backfilled::Built {
            tasks_by_worker, ..
        } = outcome
        else {
            panic!("{date}: {outcome:?}");
        };
        for (url, n) in tasks_by_worker {
            *tasks.entry(url.clone()).or_default() += n;
        }
    }
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(tasks.values().all(|n| *n > 0), "{tasks:?}");

    let rollups = [
        tree(&lakes[0].path().join("rollups")),
        tree(&lakes[1].path().join("rollups")),
    ];
    assert_eq!(rollups[0].len(), 8, "{:?}", rollups[0].keys());
    assert_eq!(
        rollups[0].keys().collect::<Vec<_>>(),
        rollups[1].keys().collect::<Vec<_>>()
    );
    for (key, bytes) in &rollups[0] {
        assert!(rollups[1][key] == *bytes, "{key} differs");
    }

    // Repriced with the lake's own table: the same lines either way.
    let prices =
        tokenledger::lake::Location::from_local_path(&lakes[1].path().join("prices.csv")).unwrap();
    let here = tokenledger::pipeline::audit::reprice(&local, first, last, &prices)
        .await
        .unwrap();
    let there = tokenledger::pipeline::audit::reprice(&distributed, first, last, &prices)
        .await
        .unwrap();
    assert!(here.len() >= 4, "{here:?}");
    assert_eq!(here, there);
    let dates: Vec<_> = there.iter().map(|l| l.date).collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "date order");
    for w in workers {
        w.stop().await;
    }
}
