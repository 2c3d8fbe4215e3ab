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

fn config(lake: &std::path::Path, workers: Option<String>) -> Config {
    Config::from_sources(
        "",
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

    let workers = [
        TestWorker::start().await,
        TestWorker::start().await,
        TestWorker::start().await,
    ];
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
