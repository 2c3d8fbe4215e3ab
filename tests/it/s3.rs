//! The same run against a real S3-protocol server over HTTP (s3s-fs on
//! loopback, signed requests, path-style): the same bytes as the local run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokenledger::config::{Config, Overrides};

use crate::fixture;

pub const ACCESS_KEY: &str = "AKIATOKENLEDGERTEST";
pub const SECRET_KEY: &str = "s3cr3t-never-in-logs-9f8e7d";
pub const BUCKET: &str = "finance-lake";

/// An S3 server on 127.0.0.1, storing buckets as directories, behind a
/// fault layer ([`Faults`]) that the reliability tests switch on.
pub struct S3Server {
    pub addr: SocketAddr,
    pub faults: Arc<Faults>,
    /// Where the buckets live (kept for the server's lifetime).
    _root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the fault layer did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passed to the server untouched.
    None,
    /// Answered `503 SlowDown` without reaching the server.
    SlowDown,
    /// Answered `500 InternalError` without reaching the server.
    Internal,
    /// Connection dropped before the server saw the request.
    ResetBefore,
    /// Served, then the connection dropped instead of the response.
    ResetAfter,
    /// Served after a pause longer than the client's timeout.
    Stall,
    /// Storage is down: the connection dropped.
    Down,
}

/// One request seen by the fault layer.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Fault,
    pub at: std::time::Instant,
}

/// Faults to inject, shared with the server task. Decisions come from a
/// seeded generator, so a failing test can be replayed.
pub struct Faults {
    /// Share of requests that fail, in thousandths.
    pub fail_per_mille: AtomicU32,
    /// Every request fails (connection dropped).
    pub down: AtomicBool,
    /// Go down at the first request whose path contains this text.
    pub down_at: Mutex<Option<String>>,
    /// Pause before each write (PUT, POST, DELETE), in milliseconds.
    pub write_delay_ms: AtomicU64,
    /// How long a stalled request waits before it is served.
    pub stall: Mutex<std::time::Duration>,
    rng: Mutex<StdRng>,
    pub seen: Mutex<Vec<Seen>>,
    /// Held while a conditional put is served.
    conditional: tokio::sync::Mutex<()>,
}

impl Faults {
    fn new(seed: u64) -> Faults {
        Faults {
            fail_per_mille: AtomicU32::new(0),
            down: AtomicBool::new(false),
            down_at: Mutex::new(None),
            write_delay_ms: AtomicU64::new(0),
            stall: Mutex::new(std::time::Duration::from_millis(1500)),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            seen: Mutex::new(Vec::new()),
            conditional: tokio::sync::Mutex::new(()),
        }
    }

    fn decide(&self, path: &str) -> Fault {
        if let Some(at) = self.down_at.lock().unwrap().as_deref()
            && path.contains(at)
        {
            self.down.store(true, Ordering::SeqCst);
        }
        if self.down.load(Ordering::SeqCst) {
            return Fault::Down;
        }
        let mut rng = self.rng.lock().unwrap();
        if rng.random_range(0..1000) >= self.fail_per_mille.load(Ordering::SeqCst) {
            return Fault::None;
        }
        match rng.random_range(0..20) {
            0..=7 => Fault::SlowDown,
            8..=10 => Fault::Internal,
            11..=14 => Fault::ResetBefore,
            15..=18 => Fault::ResetAfter,
            _ => Fault::Stall,
        }
    }

    /// The requests seen with `fault`.
    pub fn count(&self, fault: Fault) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.fault == fault)
            .count()
    }

    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Requests that wrote to a key ending with `suffix` and reached the server.
    pub fn writes_to(&self, suffix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.method == "PUT"
                    && s.path.ends_with(suffix)
                    && matches!(s.fault, Fault::None | Fault::ResetAfter | Fault::Stall)
            })
            .count()
    }
}

fn error_response(status: u16, code: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
    );
    let mut resp = s3s::HttpResponse::new(s3s::Body::from(body));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp
}

impl S3Server {
    pub async fn start() -> S3Server {
        Self::start_seeded(0).await
    }

    pub async fn start_seeded(seed: u64) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let faults = Arc::new(Faults::new(seed));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let layer = Arc::clone(&faults);
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let faults = Arc::clone(&layer);
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let service = service.clone();
                        let faults = Arc::clone(&faults);
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().replace("%3D", "=");
                            let fault = faults.decide(&path);
                            faults.seen.lock().unwrap().push(Seen {
                                method: method.clone(),
                                path,
                                fault,
                                at: std::time::Instant::now(),
                            });
                            let delay = faults.write_delay_ms.load(Ordering::SeqCst);
                            if delay > 0 && method != "GET" && method != "HEAD" {
                                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                            }
                            let reset = || {
                                s3s::HttpError::new(Box::new(std::io::Error::other(
                                    "injected reset",
                                )))
                            };
                            // s3s-fs checks If-None-Match / If-Match, then writes:
                            // two conditional puts can both pass. S3 (and MinIO)
                            // decide them atomically; one at a time does here.
                            let conditional = req.headers().contains_key("if-none-match")
                                || req.headers().contains_key("if-match");
                            let _one_at_a_time = if conditional {
                                Some(faults.conditional.lock().await)
                            } else {
                                None
                            };
                            match fault {
                                Fault::None => service.call(req.map(s3s::Body::from)).await,
                                Fault::SlowDown => Ok(error_response(503, "SlowDown")),
                                Fault::Internal => Ok(error_response(500, "InternalError")),
                                Fault::ResetBefore | Fault::Down => Err(reset()),
                                Fault::ResetAfter => {
                                    let _ = service.call(req.map(s3s::Body::from)).await;
                                    Err(reset())
                                }
                                Fault::Stall => {
                                    let pause = *faults.stall.lock().unwrap();
                                    tokio::time::sleep(pause).await;
                                    service.call(req.map(s3s::Body::from)).await
                                }
                            }
                        }
                    },
                );
                let conn = http
                    .serve_connection(TokioIo::new(socket), svc)
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            addr,
            faults,
            _root: root,
            task,
        }
    }

    /// The directory holding the buckets (every stored object is a file).
    pub fn root(&self) -> &std::path::Path {
        self._root.path()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An object_store client for the bucket (for uploads and checks).
    pub fn client(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(self.endpoint())
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }

    /// Put every object of the fixture lake under `s3://BUCKET/<prefix>/`.
    pub async fn upload_fixture(&self, prefix: &str) {
        let store = self.client();
        for (key, bytes) in fixture::objects() {
            store
                .put(
                    &Path::from(format!("{prefix}/{key}")),
                    PutPayload::from(bytes),
                )
                .await
                .unwrap();
        }
    }

    /// A config for `s3://BUCKET/<prefix>` with credentials in secret files.
    pub fn config(&self, prefix: &str, secrets: &std::path::Path) -> Config {
        let toml = self.toml(prefix, secrets, "");
        Config::from_sources(&toml, "s3 test", &[], &Overrides::default()).unwrap()
    }

    /// The TOML of [`Self::config`], with `extra` sections appended.
    pub fn toml(&self, prefix: &str, secrets: &std::path::Path, extra: &str) -> String {
        std::fs::write(secrets.join("access_key_id"), format!("{ACCESS_KEY}\n")).unwrap();
        std::fs::write(secrets.join("secret_access_key"), SECRET_KEY).unwrap();
        format!(
            "[lake]\nroot = \"s3://{BUCKET}/{prefix}\"\n\
             [storage.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n\
             access_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n{extra}",
            self.endpoint(),
            secrets.join("access_key_id").display(),
            secrets.join("secret_access_key").display(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_s3_writes_the_same_bytes_as_a_local_run() {
    let server = S3Server::start().await;
    server.upload_fixture("lake").await;
    let store = server.client();
    let secrets = tempfile::tempdir().unwrap();
    let config = server.config("lake", secrets.path());
    let s3_run = tokenledger::pipeline::run(&config, fixture::date())
        .await
        .unwrap();

    let local = fixture::lake();
    let local_run = crate::metrics::run_fixture(local.path(), None).await;

    assert_eq!(
        s3_run.manifest.outputs, local_run.manifest.outputs,
        "same keys, sizes and digests"
    );
    for o in &s3_run.manifest.outputs {
        let got = store
            .get(&Path::from(format!("lake/{}", o.key)))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let want = std::fs::read(local.path().join(&o.key)).unwrap();
        assert_eq!(got.as_ref(), want.as_slice(), "{}", o.key);
    }
    let manifest = store
        .get(&Path::from("lake/reports/date=2026-03-08/manifest.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = String::from_utf8(manifest.to_vec()).unwrap();
    assert!(
        text.contains("\"requests/date=2026-03-08/part-a.parquet\""),
        "keys relative to the lake root"
    );
    assert!(
        !text.contains(SECRET_KEY) && !text.contains(ACCESS_KEY),
        "no credential in the manifest"
    );
    assert!(
        !format!("{config:?}").contains(SECRET_KEY),
        "no credential in Debug output"
    );
    assert_eq!(s3_run.requests, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_storage_error_naming_the_object() {
    let server = S3Server::start().await;
    server.upload_fixture("lake").await;
    let secrets = tempfile::tempdir().unwrap();
    let mut config = server.config("lake", secrets.path());
    // The right key pair first: the server accepts it (so the failure below
    // is the secret's, not a missing bucket's or anonymous access').
    let right = config.s3.clone();
    let stores = tokenledger::lake::Stores::new(right);
    assert_eq!(
        stores
            .list(&config.requests.join("date=2026-03-08"))
            .await
            .unwrap()
            .len(),
        3
    );
    let creds = config
        .s3
        .credentials
        .as_mut()
        .expect("the S3 test config carries a key pair");
    assert_ne!(creds.secret_access_key.expose(), "wrong-secret");
    creds.secret_access_key = tokenledger::lake::Secret::new("wrong-secret");
    let err = tokenledger::pipeline::run(&config, fixture::date())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), tokenledger::error::ExitKind::Runtime);
    assert!(
        matches!(err, tokenledger::error::Error::Storage { .. }),
        "{err:?}"
    );
    let text = tokenledger::error::render_chain(&err);
    // The first object touched is the day's lease: the error names it.
    assert!(
        text.contains("s3://finance-lake/lake/reports/date=2026-03-08/_lease.json"),
        "{text}"
    );
    assert!(text.contains("403 Forbidden"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}
