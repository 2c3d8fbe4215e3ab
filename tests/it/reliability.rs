//! The job under the faults production brings: a throttling, resetting,
//! stalling or dead object store (the real S3 server behind a fault layer),
//! runs killed with SIGKILL at random points, and two runs of one day at
//! once. Each test states what must hold: the same bytes as a clean run,
//! nothing half-published, exactly one publisher.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng};
use tokenledger::config::{Config, Overrides};
use tokenledger::error::ExitKind;

use crate::fixture::{self, DATE};
use crate::s3::{Fault, S3Server};

const DAY_DIR: &str = "reports/date=2026-03-08";

async fn upload(store: &impl ObjectStore, prefix: &str, objects: &[(String, Vec<u8>)]) {
    for (key, bytes) in objects {
        store
            .put(
                &Path::from(format!("{prefix}/{key}")),
                PutPayload::from(bytes.clone()),
            )
            .await
            .unwrap();
    }
}

/// Every object under `prefix`, by key relative to it.
async fn snapshot(store: &impl ObjectStore, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        let key = m.location.as_ref()[prefix.len() + 1..].to_string();
        out.insert(key, bytes.to_vec());
    }
    out
}

/// The published outputs of a snapshot: everything the run wrote except the
/// manifest (it records the run's id and clock) and the inputs.
fn outputs(snap: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    snap.iter()
        .filter(|(k, _)| {
            (k.starts_with("reports/") || k.starts_with("rollups/"))
                && !k.ends_with("manifest.json")
                && !k.contains("_staging")
                && !k.contains("_lease")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Equal maps, or a panic naming the keys that differ (not their bytes).
#[track_caller]
fn assert_same(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let differ: Vec<&String> = got
        .keys()
        .chain(want.keys())
        .filter(|k| got.get(*k) != want.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: these objects differ: {differ:?}"
    );
}

/// The `outputs` list of the day's manifest (keys, sizes, digests).
fn manifest_outputs(snap: &BTreeMap<String, Vec<u8>>) -> serde_json::Value {
    let bytes = &snap[&format!("{DAY_DIR}/manifest.json")];
    let json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    json["outputs"].clone()
}

fn leftovers(snap: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    snap.keys()
        .filter(|k| k.contains("_staging") || k.contains("_lease"))
        .collect()
}

fn config(server: &S3Server, prefix: &str, secrets: &FsPath, extra: &str) -> Config {
    Config::from_sources(
        &server.toml(prefix, secrets, extra),
        "reliability test",
        &[],
        &Overrides::default(),
    )
    .unwrap()
}

/// Fast, bounded retries for tests that take storage down.
const SHORT_RETRIES: &str = "[storage]\ntimeout_secs = 1\nconnect_timeout_secs = 1\nmax_retries = 3\nretry_timeout_secs = 3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fifth_of_storage_requests_failing_the_outputs_are_byte_identical() {
    let secrets = tempfile::tempdir().unwrap();
    let clean = S3Server::start().await;
    upload(&clean.client(), "lake", &fixture::objects()).await;
    tokenledger::pipeline::run(&config(&clean, "lake", secrets.path(), ""), fixture::date())
        .await
        .unwrap();
    let want = snapshot(&clean.client(), "lake").await;

    // Another seed: TOKENLEDGER_FAULT_SEED=n cargo test with_a_fifth
    let seed = std::env::var("TOKENLEDGER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let faulty = S3Server::start_seeded(seed).await;
    upload(&faulty.client(), "lake", &fixture::objects()).await;
    faulty.faults.seen.lock().unwrap().clear(); // count the run's requests only
    faulty
        .faults
        .fail_per_mille
        .store(200, std::sync::atomic::Ordering::SeqCst);
    *faulty.faults.stall.lock().unwrap() = Duration::from_millis(1500);
    // A request stalled longer than the timeout is abandoned and retried.
    let cfg = config(
        &faulty,
        "lake",
        secrets.path(),
        "[storage]\ntimeout_secs = 1\nmax_retries = 15\nretry_timeout_secs = 60\n",
    );
    let summary = tokenledger::pipeline::run(&cfg, fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    faulty
        .faults
        .fail_per_mille
        .store(0, std::sync::atomic::Ordering::SeqCst);

    let f = &faulty.faults;
    let failed = f.requests() - f.count(Fault::None);
    eprintln!(
        "fault injection (seed {seed}): {} requests, {failed} failed ({:.1}%): {} SlowDown, {} InternalError, \
         {} reset before, {} reset after, {} stalled",
        f.requests(),
        100.0 * failed as f64 / f.requests() as f64,
        f.count(Fault::SlowDown),
        f.count(Fault::Internal),
        f.count(Fault::ResetBefore),
        f.count(Fault::ResetAfter),
        f.count(Fault::Stall),
    );
    assert!(failed >= 40, "only {failed} faults injected");
    let got = snapshot(&faulty.client(), "lake").await;
    for fault in [
        Fault::SlowDown,
        Fault::Internal,
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Stall,
    ] {
        assert!(f.count(fault) > 0, "no {fault:?} injected");
    }
    assert_same(&outputs(&got), &outputs(&want), "byte-identical outputs");
    assert_eq!(manifest_outputs(&got), manifest_outputs(&want));
    assert!(leftovers(&got).is_empty(), "{:?}", leftovers(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_storage_down_the_run_fails_and_publishes_nothing() {
    let secrets = tempfile::tempdir().unwrap();
    let server = S3Server::start().await;
    upload(&server.client(), "lake", &fixture::objects()).await;
    let cfg = config(&server, "lake", secrets.path(), SHORT_RETRIES);

    // Down from the start: a runtime failure naming the object, nothing written.
    server
        .faults
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let err = tokenledger::pipeline::run(&cfg, fixture::date())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExitKind::Runtime);
    let text = tokenledger::error::render_chain(&err);
    assert!(text.contains("_lease.json"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "retries are bounded"
    );
    server
        .faults
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let snap = snapshot(&server.client(), "lake").await;
    assert!(outputs(&snap).is_empty(), "{:?}", outputs(&snap).keys());

    // A day published, then new input and storage dying while the next run
    // stages its outputs: the published day stays exactly as it was.
    tokenledger::pipeline::run(&cfg, fixture::date())
        .await
        .unwrap();
    let published = snapshot(&server.client(), "lake").await;
    upload(
        &server.client(),
        "lake",
        &[(
            "requests/date=2026-03-08/part-c.parquet".into(),
            fixture::late_file(),
        )],
    )
    .await;
    *server.faults.down_at.lock().unwrap() = Some("_staging".into());
    let err = tokenledger::pipeline::run(&cfg, fixture::date())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExitKind::Runtime, "{err}");
    *server.faults.down_at.lock().unwrap() = None;
    server
        .faults
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let after = snapshot(&server.client(), "lake").await;
    assert_same(
        &outputs(&after),
        &outputs(&published),
        "the day is untouched",
    );
    assert_eq!(
        after[&format!("{DAY_DIR}/manifest.json")],
        published[&format!("{DAY_DIR}/manifest.json")]
    );

    // Storage back: the failed run could not release its lease (storage
    // was down), so the next run waits for it to go stale, takes it over,
    // and publishes the new day.
    let cfg = config(
        &server,
        "lake",
        secrets.path(),
        &format!("{SHORT_RETRIES}[lease]\nstale_after_secs = 8\nwait_secs = 20\n"),
    );
    let summary = tokenledger::pipeline::run(&cfg, fixture::date())
        .await
        .unwrap();
    assert_eq!(summary.outcome, ExitKind::Ok);
    let done = snapshot(&server.client(), "lake").await;
    assert_ne!(
        manifest_outputs(&done),
        manifest_outputs(&published),
        "the new input changed the day"
    );
    assert!(leftovers(&done).is_empty(), "{:?}", leftovers(&done));
}

fn child(config: &FsPath, log: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"));
    cmd.args(["run", "--config", &config.to_string_lossy(), "--date", DATE])
        .args(["--log-format", "json"])
        .env_remove("TOKENLEDGER_CONFIG")
        .env("TOKENLEDGER_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_runs_of_a_day_exactly_one_publishes() {
    let secrets = tempfile::tempdir().unwrap();
    let server = S3Server::start().await;
    upload(&server.client(), "lake", &fixture::objects()).await;
    let file = secrets.path().join("tokenledger.toml");
    std::fs::write(&file, server.toml("lake", secrets.path(), "")).unwrap();

    let a = child(&file, "info").spawn().unwrap();
    let b = child(&file, "info").spawn().unwrap();
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(codes, [0, 8], "{}\n---\n{}", stderr(&a), stderr(&b));
    let loser = if a.status.code() == Some(8) { &a } else { &b };
    let text = stderr(loser);
    assert!(text.contains("is leased to run"), "{text}");
    assert!(text.contains("\"exit_code\":8"), "{text}");

    // One manifest and one set of outputs written to their places.
    assert_eq!(
        server
            .faults
            .writes_to(&format!("lake/{DAY_DIR}/manifest.json")),
        1
    );
    assert_eq!(
        server
            .faults
            .writes_to(&format!("lake/{DAY_DIR}/ops_daily.csv")),
        1
    );
    let snap = snapshot(&server.client(), "lake").await;
    assert!(leftovers(&snap).is_empty(), "{:?}", leftovers(&snap));
}

/// Kill the job with SIGKILL at ten points of a run (half anywhere, half
/// while it publishes), each on a lake whose published day predates a new
/// input: after each kill the published day is either untouched or, past
/// the commit point, being installed; the next run then finishes it and
/// its outputs are byte-identical to a clean run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_ten_points_leaves_the_day_intact_and_the_rerun_is_identical() {
    let secrets = tempfile::tempdir().unwrap();
    let server = S3Server::start().await;
    let store = server.client();
    // Writes take 25 ms each, so publishing is a window worth aiming at.
    server
        .faults
        .write_delay_ms
        .store(25, std::sync::atomic::Ordering::SeqCst);
    let new_input = (
        "requests/date=2026-03-08/part-c.parquet".to_string(),
        fixture::late_file(),
    );

    // The day as published before the new input (copied into each lake),
    // and a clean run's outputs with it (what every rerun must produce).
    upload(&store, "before", &fixture::objects()).await;
    let before_cfg = config(&server, "before", secrets.path(), "");
    tokenledger::pipeline::run(&before_cfg, fixture::date())
        .await
        .unwrap();
    let before = snapshot(&store, "before").await;
    // The reference starts from the same published state as each killed
    // run (its rollups included), so its timing is theirs.
    let mut with_new: Vec<(String, Vec<u8>)> = before.clone().into_iter().collect();
    with_new.push(new_input.clone());
    upload(&store, "reference", &with_new).await;
    let file = secrets.path().join("reference.toml");
    std::fs::write(&file, server.toml("reference", secrets.path(), "")).unwrap();
    // Time a whole run as a child process, and when its publishing starts.
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking({
        let mut cmd = child(&file, "info");
        move || cmd.output().unwrap()
    })
    .await
    .unwrap();
    let whole = t0.elapsed();
    assert_eq!(out.status.code(), Some(0));
    let (staging_from, last) = {
        let seen = server.faults.seen.lock().unwrap();
        let ours = |p: &str| p.starts_with(&format!("/{}/reference/", crate::s3::BUCKET));
        let first = seen
            .iter()
            .find(|s| ours(&s.path) && s.path.contains("_staging") && s.at > t0)
            .map(|s| s.at - t0)
            .unwrap();
        let last = seen
            .iter()
            .filter(|s| ours(&s.path))
            .map(|s| s.at - t0)
            .max()
            .unwrap();
        (first, last)
    };
    let publishing = last - staging_from;
    let reference = outputs(&snapshot(&store, "reference").await);

    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut phases = Vec::new();
    for i in 0..10 {
        let prefix = format!("kill{i}");
        let mut objects: Vec<(String, Vec<u8>)> = before.clone().into_iter().collect();
        objects.push(new_input.clone());
        upload(&store, &prefix, &objects).await;
        let file = secrets.path().join(format!("{prefix}.toml"));
        std::fs::write(&file, server.toml(&prefix, secrets.path(), "")).unwrap();

        // Even kills at a random time of the whole run; odd ones at a
        // random time after the run's first staging write.
        let started = Instant::now();
        let mut proc = child(&file, "info").spawn().unwrap();
        if i % 2 == 0 {
            tokio::time::sleep(staging_from.mul_f64(rng.random_range(0.05..1.0))).await;
        } else {
            let marker = format!("/{}/{prefix}/", crate::s3::BUCKET);
            while !server
                .faults
                .seen
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.path.starts_with(&marker) && s.path.contains("_staging"))
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(publishing.mul_f64(rng.random_range(0.0..0.9))).await;
        }
        let at = started.elapsed();
        proc.kill().unwrap(); // SIGKILL
        let status = proc.wait().unwrap();

        let snap = snapshot(&store, &prefix).await;
        let committed = snap.keys().any(|k| k.ends_with("_commit.json"));
        let staged = snap.keys().any(|k| k.contains("_staging"));
        let now = outputs(&snap);
        let phase = if status.success() {
            "finished"
        } else if committed {
            "installing"
        } else if staged {
            "staging"
        } else if now == reference {
            "published" // installed; killed while filing, mailing or exiting
        } else {
            "computing"
        };
        phases.push(format!("{:.2}s:{phase}", at.as_secs_f64()));
        // Before the commit record the day is the old one; after the staging
        // is gone it is the new one, whole. Never a mix of the two.
        if matches!(phase, "computing" | "staging") {
            assert_same(
                &now,
                &outputs(&before),
                &format!("kill {i} at {at:?} ({phase}): the published day changed"),
            );
        }

        // The next run finishes: same bytes as the clean run.
        let cfg = config(&server, &prefix, secrets.path(), "");
        let summary = tokenledger::pipeline::run(&cfg, fixture::date())
            .await
            .unwrap();
        assert_eq!(summary.outcome, ExitKind::Ok);
        let snap = snapshot(&store, &prefix).await;
        assert_same(
            &outputs(&snap),
            &reference,
            &format!("rerun after kill {i} at {at:?}"),
        );
        assert!(leftovers(&snap).is_empty(), "{:?}", leftovers(&snap));
    }
    eprintln!(
        "run {:.2}s, publishing from {:.2}s for {:.2}s; kills: {}",
        whole.as_secs_f64(),
        staging_from.as_secs_f64(),
        publishing.as_secs_f64(),
        phases.join(" ")
    );
    let killed = phases.iter().filter(|p| !p.ends_with("finished")).count();
    assert!(killed >= 9, "runs finished before their kill: {phases:?}");
    let in_publish = phases
        .iter()
        .filter(|p| p.ends_with("staging") || p.ends_with("installing") || p.ends_with("published"))
        .count();
    assert!(
        in_publish >= 3,
        "too few kills while publishing: {phases:?}"
    );
}

/// The lease on its own, over the local store (a hard link is its
/// conditional create): a second taker waits for the holder or stops with
/// exit code 8; a lease not renewed for `stale_after` is taken over once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_makes_others_wait_or_stop_and_a_silent_one_is_taken_over() {
    use std::sync::Arc;
    use tokenledger::config::LeaseSettings;
    use tokenledger::lake::lease::Lease;
    use tokenledger::lake::{Location, S3Options, Stores};

    let dir = tempfile::tempdir().unwrap();
    let day = Location::from_local_path(&dir.path().join("reports/date=2026-03-08")).unwrap();
    let stores = Arc::new(Stores::new(S3Options::default()));
    let quick = LeaseSettings {
        stale_after: Duration::from_secs(60),
        wait: Duration::ZERO,
    };

    let a = Lease::acquire(&stores, &day, DATE, "run-a", quick)
        .await
        .unwrap();
    // No wait: exit 8 at once, naming the holder.
    let err = Lease::acquire(&stores, &day, DATE, "run-b", quick)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExitKind::Busy);
    assert!(err.to_string().contains("leased to run run-a"), "{err}");
    // With a wait: B gets the lease once A releases it.
    let waiting = {
        let stores = Arc::clone(&stores);
        let day = day.clone();
        tokio::spawn(async move {
            let patient = LeaseSettings {
                wait: Duration::from_secs(20),
                ..quick
            };
            Lease::acquire(&stores, &day, DATE, "run-b", patient).await
        })
    };
    // B is waiting, not done: for as long as A holds the lease, B has
    // neither taken it nor given up.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "B stopped waiting while A held the lease"
        );
        a.verify(&stores).await.unwrap();
    }
    let released_at = chrono::Utc::now();
    a.release(&stores).await.unwrap();
    let b = waiting.await.unwrap().unwrap();
    assert_eq!(b.run_id(), "run-b");
    b.verify(&stores).await.unwrap();
    // Stamped when taken, not when B started waiting: after a long wait the
    // lease must not look stale to the next run.
    let record = day.join("_lease.json").local_path().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let renewed: chrono::DateTime<chrono::Utc> =
        json["renewed_at"].as_str().unwrap().parse().unwrap();
    assert!(renewed >= released_at, "{renewed} < {released_at}");

    // B goes silent (its renewals stop, as when its pod is frozen on another
    // node; its next renewal is 15 s away): after stale_after, C takes over
    // and B's publish is fenced off.
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    json["renewed_at"] = "2026-03-08T00:00:00Z".into();
    json["host"] = "another-node".into();
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
    let c = Lease::acquire(&stores, &day, DATE, "run-c", quick)
        .await
        .unwrap();
    assert_eq!(c.run_id(), "run-c");
    // The takeover claim names the dead holder; a second taker finds C live.
    assert!(
        day.join("_lease.takeover.run-b")
            .local_path()
            .unwrap()
            .exists()
    );
    let err = Lease::acquire(&stores, &day, DATE, "run-d", quick)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("leased to run run-c"), "{err}");
    // The fence: B, woken up, finds the lease is no longer its own, and its
    // release leaves C's lease in place.
    let fenced = b.verify(&stores).await.unwrap_err();
    assert_eq!(fenced.kind(), ExitKind::Busy);
    assert!(
        matches!(&fenced, tokenledger::error::Error::LeaseLost { run_id, holder, .. }
            if run_id == "run-b" && holder == "run-c"),
        "{fenced:?}"
    );
    b.release(&stores).await.unwrap();
    c.verify(&stores).await.unwrap();
    c.release(&stores).await.unwrap();
    assert!(!record.exists());
    assert!(
        !day.join("_lease.takeover.run-b")
            .local_path()
            .unwrap()
            .exists()
    );
}
