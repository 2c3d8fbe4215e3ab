//! The same run against a real S3-protocol server over HTTP (s3s-fs on
//! loopback, signed requests, path-style): the same bytes as the local run.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokenledger::config::{Config, Overrides};

use crate::fixture;

pub const ACCESS_KEY: &str = "AKIATOKENLEDGERTEST";
pub const SECRET_KEY: &str = "s3cr3t-never-in-logs-9f8e7d";
pub const BUCKET: &str = "finance-lake";

/// An S3 server on 127.0.0.1, storing buckets as directories.
pub struct S3Server {
    pub addr: SocketAddr,
    /// Where the buckets live (kept for the server's lifetime).
    _root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server {
            addr,
            _root: root,
            task,
        }
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

    /// A config for `s3://BUCKET/<prefix>` with credentials in secret files.
    pub fn config(&self, prefix: &str, secrets: &std::path::Path) -> Config {
        std::fs::write(secrets.join("access_key_id"), format!("{ACCESS_KEY}\n")).unwrap();
        std::fs::write(secrets.join("secret_access_key"), SECRET_KEY).unwrap();
        let toml = format!(
            "[lake]\nroot = \"s3://{BUCKET}/{prefix}\"\n\
             [storage.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = true\n\
             access_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            self.endpoint(),
            secrets.join("access_key_id").display(),
            secrets.join("secret_access_key").display(),
        );
        Config::from_sources(&toml, "s3 test", &[], &Overrides::default()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_s3_writes_the_same_bytes_as_a_local_run() {
    let server = S3Server::start().await;
    let store = server.client();
    for (key, bytes) in fixture::objects() {
        store
            .put(&Path::from(format!("lake/{key}")), PutPayload::from(bytes))
            .await
            .unwrap();
    }
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
    let secrets = tempfile::tempdir().unwrap();
    let mut config = server.config("lake", secrets.path());
    if let Some(c) = config.s3.credentials.as_mut() {
        c.secret_access_key = tokenledger::lake::Secret::new("wrong-secret");
    }
    let err = tokenledger::pipeline::run(&config, fixture::date())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), tokenledger::error::ExitKind::Runtime);
    let text = tokenledger::error::render_chain(&err);
    // The first object touched is the day's lease: the error names it.
    assert!(
        text.contains("s3://finance-lake/lake/reports/date=2026-03-08/_lease.json"),
        "{text}"
    );
    assert!(text.contains("403 Forbidden"), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
}
