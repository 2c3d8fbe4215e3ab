//! Where a day's heavy queries run: in this process, or on a cluster of
//! `tokenledger worker`s through datafusion-distributed.
//!
//! [`EngineSettings`] is the `[engine]` section (`workers`, `workers_dns`)
//! and its validation. [`Cluster::connect`] resolves the workers at the
//! start of a run and asks each for its version ([`version`]): a worker
//! that does not answer, or runs other code, stops the run before anything
//! is read. [`Cluster::session`] is the coordinating DataFusion session:
//! the distributed planner, the day scan's codec and task handlers (a scan
//! is split by row groups, one variant per task, `lake::wire`), and a
//! router that counts the tasks each worker was given (the manifest's
//! `engine.tasks_by_worker`). [`serve`] runs a worker until shutdown.
//!
//! It knows how plans travel, not what they compute: the flow of a day is
//! `pipeline::flow`'s, and it must not read inputs or write outputs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedExt, DistributedLeafExec,
    RouteTasksEvent, RouteTasksEventResponse, ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
    SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Problems, Result};
use crate::lake::Stores;
use crate::lake::scan::DayScanExec;
use crate::queries::repeated::RepeatedKeysExec;

/// `[engine]` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Worker URLs (`http://host:port`): a list, or one comma-separated
    /// string (as `TOKENLEDGER_ENGINE__WORKERS` gives it).
    pub workers: Option<RawWorkers>,
    /// `host:port` whose addresses are the workers, resolved at the start
    /// of each run (a Kubernetes headless Service).
    pub workers_dns: Option<String>,
    /// Seconds a worker has to answer at the start of a run (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// Seconds a connection to a worker may go without any sign of life
    /// (HTTP/2 pings, answered even while the worker computes) before the
    /// run gives up on it (default 60).
    pub idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawWorkers {
    List(Vec<String>),
    Text(String),
}

/// Where the heavy queries of a run go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSettings {
    pub workers: Vec<Url>,
    /// (host, port) of the workers' DNS name.
    pub workers_dns: Option<(String, u16)>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

impl EngineSettings {
    /// Local mode: no workers.
    pub fn local() -> EngineSettings {
        EngineSettings {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: IDLE_TIMEOUT,
            ..Default::default()
        }
    }

    /// Validate `[engine]`, every problem pushed to `problems`.
    pub fn validate(raw: &RawEngine, problems: &mut Problems) -> EngineSettings {
        let mut settings = EngineSettings::local();
        if let Some(secs) = raw.connect_timeout_secs {
            if secs == 0 {
                problems.push("engine.connect_timeout_secs: must be at least 1");
            }
            settings.connect_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = raw.idle_timeout_secs {
            if secs < 3 {
                problems.push("engine.idle_timeout_secs: must be at least 3");
            }
            settings.idle_timeout = Duration::from_secs(secs.max(3));
        }
        let texts: Vec<String> = match &raw.workers {
            None => Vec::new(),
            Some(RawWorkers::List(list)) => list.clone(),
            Some(RawWorkers::Text(text)) => split_list(text),
        };
        match parse_workers(&texts) {
            Ok(urls) => settings.workers = urls,
            Err(errs) => errs
                .into_iter()
                .for_each(|e| problems.push(format!("engine.workers: {e}"))),
        }
        if let Some(dns) = &raw.workers_dns {
            match parse_host_port(dns) {
                Ok(hp) => settings.workers_dns = Some(hp),
                Err(e) => problems.push(format!("engine.workers_dns: {e}")),
            }
            if !texts.is_empty() {
                problems.push("engine: give workers or workers_dns, not both");
            }
        }
        settings
    }

    pub fn is_distributed(&self) -> bool {
        !self.workers.is_empty() || self.workers_dns.is_some()
    }
}

/// `a, b,c` as `["a", "b", "c"]`.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Worker URLs: `http://` or `https://`, a host and a port, each once.
pub fn parse_workers(texts: &[String]) -> std::result::Result<Vec<Url>, Vec<String>> {
    let mut urls: Vec<Url> = Vec::new();
    let mut errs = Vec::new();
    for text in texts {
        match Url::parse(text) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some_and(|h| !h.is_empty())
                    && url.port_or_known_default().is_some()
                    && url.path() == "/" =>
            {
                if urls.contains(&url) {
                    errs.push(format!("`{text}` is given twice"));
                } else {
                    urls.push(url);
                }
            }
            Ok(_) => errs.push(format!(
                "`{text}`: expected http://host:port (a worker's address, no path)"
            )),
            Err(e) => errs.push(format!("`{text}` is not a URL: {e}")),
        }
    }
    if errs.is_empty() { Ok(urls) } else { Err(errs) }
}

fn parse_host_port(text: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}`: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{text}`: `{port}` is not a port"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("`{text}`: expected host:port"));
    }
    Ok((host.to_string(), port))
}

/// What a worker reports and a coordinator requires: this build's version
/// and a digest of its SQL and scan wire format. Another build's worker
/// could decode the same plan into other numbers; it is refused instead.
pub fn version() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in crate::queries::FILES {
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    h.update(crate::lake::wire::FORMAT.as_bytes());
    h.update(REPEATED_KEYS);
    let digest = hex::encode(h.finalize());
    format!(
        "tokenledger {} sql {}",
        env!("CARGO_PKG_VERSION"),
        &digest[..12]
    )
}

/// The workers of one run, checked, and the tasks each was given.
#[derive(Debug, Clone)]
pub struct Cluster {
    urls: Vec<Url>,
    channels: Channels,
    tasks: Arc<Mutex<BTreeMap<String, u64>>>,
    next: Arc<AtomicUsize>,
}

impl Cluster {
    /// Resolve the workers (`workers_dns` now, at the start of the run) and
    /// check that each answers within the timeout and runs this [`version`].
    pub async fn connect(settings: &EngineSettings) -> Result<Cluster> {
        let mut urls = settings.workers.clone();
        if let Some((host, port)) = &settings.workers_dns {
            urls = tokio::time::timeout(settings.connect_timeout, resolve_dns(host, *port))
                .await
                .map_err(|_| Error::Worker {
                    url: format!("{host}:{port}"),
                    message: format!(
                        "engine.workers_dns did not resolve within {} s",
                        settings.connect_timeout.as_secs()
                    ),
                })??;
        }
        if urls.is_empty() {
            return Err(Error::Internal("no workers to connect to".into()));
        }
        let want = version();
        let channels = Channels::new(settings.connect_timeout, settings.idle_timeout);
        let checks = urls.iter().map(|url| {
            let want = want.clone();
            let channels = channels.clone();
            async move {
                let theirs = tokio::time::timeout(
                    settings.connect_timeout,
                    worker_version(&channels, url),
                )
                .await;
                match theirs {
                    Err(_) => Err(Error::Worker {
                        url: url.to_string(),
                        message: format!(
                            "no answer within {} s (is `tokenledger worker` running there, and reachable from here?)",
                            settings.connect_timeout.as_secs()
                        ),
                    }),
                    Ok(Err(e)) => Err(Error::Worker {
                        url: url.to_string(),
                        message: format!("unreachable: {}", root_message(&e)),
                    }),
                    Ok(Ok(v)) if v != want => Err(Error::Worker {
                        url: url.to_string(),
                        message: format!(
                            "runs `{v}`, this coordinator `{want}`: refused (a different build could compute other numbers; roll out one image)"
                        ),
                    }),
                    Ok(Ok(_)) => Ok(()),
                }
            }
        });
        for result in futures::future::join_all(checks).await {
            result?;
        }
        let tasks = urls.iter().map(|u| (u.to_string(), 0)).collect();
        Ok(Cluster {
            urls,
            channels,
            tasks: Arc::new(Mutex::new(tasks)),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn urls(&self) -> &[Url] {
        &self.urls
    }

    /// Tasks routed to each worker so far (every worker listed, 0 or more).
    pub fn tasks_by_worker(&self) -> BTreeMap<String, u64> {
        self.tasks.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The coordinating session: `base`'s settings, functions and runtime,
    /// with the distributed planner over these workers.
    pub fn session(&self, base: &SessionContext, stores: Arc<Stores>) -> SessionContext {
        let resolver = Workers(self.urls.clone());
        let router = self.clone();
        let state = SessionStateBuilder::new_from_existing(base.state())
            .with_distributed_worker_resolver(resolver)
            .with_distributed_channel_resolver(self.channels.clone())
            .with_distributed_planner()
            .with_distributed_user_codec(ScanCodec { stores })
            .with_distributed_desired_task_count_handler(scan_task_count(self.urls.len()))
            .with_distributed_scale_up_leaf_node_handler(scan_split)
            .with_distributed_route_tasks_handler(move |ev: RouteTasksEvent| router.route(ev))
            .build();
        SessionContext::new_with_state(state)
    }

    /// Round robin over the workers, counted.
    fn route(&self, ev: RouteTasksEvent) -> Option<DfResult<RouteTasksEventResponse>> {
        let n = self.urls.len();
        let start = self.next.fetch_add(ev.task_count, Ordering::Relaxed);
        let urls: Vec<Url> = (0..ev.task_count)
            .map(|i| self.urls[(start + i) % n].clone())
            .collect();
        if let Ok(mut tasks) = self.tasks.lock() {
            for u in &urls {
                *tasks.entry(u.to_string()).or_default() += 1;
            }
        }
        Some(Ok(RouteTasksEventResponse::new(urls)))
    }
}

/// The innermost message of an error chain (what a person can act on).
fn root_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn worker_version(channels: &Channels, url: &Url) -> DfResult<String> {
    use datafusion_distributed::{ChannelResolver, GetWorkerInfoRequest};
    let mut client = channels.get_worker_client_for_url(url).await?;
    Ok(client
        .get_worker_info(GetWorkerInfoRequest {})
        .await?
        .version)
}

/// How long a connection may show no sign of life by default.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// gRPC channels to workers, one per URL, that cannot hang: a bounded
/// connect, and HTTP/2 keep-alive pings (answered by a worker's connection
/// even while it computes) that close a connection whose peer went silent,
/// failing the queries on it instead of waiting for ever. Used by the
/// coordinator and by workers (for each other: shuffles).
#[derive(Clone)]
struct Channels {
    connect: Duration,
    idle: Duration,
    cache: Arc<Mutex<BTreeMap<String, datafusion_distributed::grpc::BoxCloneSyncChannel>>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("connect", &self.connect)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl Channels {
    fn new(connect: Duration, idle: Duration) -> Channels {
        Channels {
            connect,
            idle,
            cache: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    async fn channel(
        &self,
        url: &Url,
    ) -> DfResult<datafusion_distributed::grpc::BoxCloneSyncChannel> {
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(url.as_str()).cloned());
        if let Some(channel) = cached {
            return Ok(channel);
        }
        let ping = (self.idle / 3).max(Duration::from_secs(1));
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| DataFusionError::Configuration(format!("worker URL {url}: {e}")))?
            .connect_timeout(self.connect)
            .tcp_keepalive(Some(ping))
            .http2_keep_alive_interval(ping)
            .keep_alive_timeout(self.idle - ping)
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| {
                DataFusionError::Execution(format!(
                    "connecting to worker {url}: {}",
                    root_message(&e)
                ))
            })?;
        let channel = datafusion_distributed::grpc::BoxCloneSyncChannel::new(channel);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(url.to_string(), channel.clone());
        }
        Ok(channel)
    }
}

#[async_trait::async_trait]
impl datafusion_distributed::ChannelResolver for Channels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> DfResult<Box<dyn datafusion_distributed::WorkerChannel>> {
        Ok(datafusion_distributed::grpc::create_worker_client(
            self.channel(url).await?,
        ))
    }
}

async fn resolve_dns(host: &str, port: u16) -> Result<Vec<Url>> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::Worker {
            url: format!("{host}:{port}"),
            message: format!("engine.workers_dns does not resolve: {e}"),
        })?;
    let mut urls: Vec<Url> = addrs
        .map(|a| Url::parse(&format!("http://{a}")).expect("a socket address is a URL host"))
        .collect();
    urls.sort();
    urls.dedup();
    if urls.is_empty() {
        return Err(Error::Worker {
            url: format!("{host}:{port}"),
            message: "engine.workers_dns resolves to no address (no worker ready?)".into(),
        });
    }
    Ok(urls)
}

#[derive(Debug, Clone)]
struct Workers(Vec<Url>);

impl WorkerResolver for Workers {
    /// The workers; a lone worker twice. The planner runs a stage of one
    /// task in the coordinator, so with one worker nothing would leave this
    /// process: as two tasks (both routed to it) the stage runs there.
    fn get_urls(&self) -> DfResult<Vec<Url>> {
        Ok(match self.0.as_slice() {
            [one] => vec![one.clone(), one.clone()],
            all => all.to_vec(),
        })
    }
}

/// A task on every worker (the planner caps the count at the workers; a
/// day of fewer row groups than workers leaves some tasks empty, and a
/// stage of one task would run in the coordinator); a scan that writes
/// aside to local files stays on this node.
fn scan_task_count(
    workers: usize,
) -> impl for<'a> Fn(DesiredTaskCountEvent<'a>) -> Option<DfResult<DesiredTaskCountEventResponse>>
+ Send
+ Sync
+ 'static {
    move |ev: DesiredTaskCountEvent| {
        let scan = ev.plan.downcast_ref::<DayScanExec>()?;
        Some(Ok(if scan.distributable() {
            DesiredTaskCountEventResponse::desired(scan.row_groups().max(workers).max(2))
        } else {
            DesiredTaskCountEventResponse::maximum(1)
        }))
    }
}

/// The scan split into one variant per task: disjoint row groups.
fn scan_split(ev: ScaleUpLeafNodeEvent) -> Option<DfResult<ScaleUpLeafNodeEventResponse>> {
    let scan = ev.plan.downcast_ref::<DayScanExec>()?;
    let variants = scan.split(ev.task_count)?;
    Some(
        DistributedLeafExec::try_new(
            Arc::clone(ev.plan),
            variants
                .into_iter()
                .map(|v| Arc::new(v) as Arc<dyn ExecutionPlan>),
        )
        .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// The day scan's codec: on a worker, decoded scans read through the
/// worker's own storage clients.
#[derive(Debug)]
struct ScanCodec {
    stores: Arc<Stores>,
}

/// How [`RepeatedKeysExec`] travels: this magic and its key column's index.
const REPEATED_KEYS: &[u8; 8] = b"TLREPK1\0";

impl PhysicalExtensionCodec for ScanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &datafusion::execution::TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(key) = buf.strip_prefix(REPEATED_KEYS.as_slice()) {
            let (Ok(key), [input]) = (<[u8; 4]>::try_from(key), inputs) else {
                return Err(DataFusionError::Internal(format!(
                    "a repeated-keys node of {} bytes with {} inputs",
                    buf.len(),
                    inputs.len()
                )));
            };
            return Ok(Arc::new(RepeatedKeysExec::try_new(
                Arc::clone(input),
                u32::from_le_bytes(key) as usize,
            )?));
        }
        if !inputs.is_empty() {
            return Err(DataFusionError::Internal(format!(
                "the day scan has no inputs; got {}",
                inputs.len()
            )));
        }
        Ok(Arc::new(crate::lake::wire::decode(
            buf,
            Arc::clone(&self.stores),
        )?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(repeated) = node.downcast_ref::<RepeatedKeysExec>() {
            let key = u32::try_from(repeated.key())
                .map_err(|e| DataFusionError::Internal(format!("key column index: {e}")))?;
            buf.extend_from_slice(REPEATED_KEYS);
            buf.extend_from_slice(&key.to_le_bytes());
            return Ok(());
        }
        let Some(scan) = node.downcast_ref::<DayScanExec>() else {
            return Err(DataFusionError::Internal(format!(
                "no codec for plan node {}",
                node.name()
            )));
        };
        crate::lake::wire::encode(scan, buf)
    }
}

/// Run `df` to completion and return its batches and the metrics of every
/// node of its plan, a distributed plan's gathered back from the workers
/// (one set per task; the caller sums what it reads).
pub async fn collect_with_metrics(
    df: datafusion::dataframe::DataFrame,
) -> DfResult<(
    Vec<arrow::array::RecordBatch>,
    Vec<datafusion::physical_plan::metrics::MetricsSet>,
)> {
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task_ctx).await?;
    let plan = datafusion_distributed::rewrite_distributed_plan_with_metrics(
        plan,
        datafusion_distributed::DistributedMetricsFormat::PerTask,
    )
    .await?;
    let mut sets = Vec::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        if let Some(m) = node.metrics() {
            sets.push(m);
        }
        stack.extend(node.children().into_iter().cloned());
    }
    Ok((batches, sets))
}

/// Run a worker on `listen` until `shutdown` completes; then stop taking
/// new work, let running tasks end, and return.
pub async fn serve(
    listen: SocketAddr,
    stores: Arc<Stores>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let worker = worker(stores, version());
    server_builder()
        .add_service(worker.into_worker_server())
        .serve_with_shutdown(listen, shutdown)
        .await
        .map_err(|e| Error::Worker {
            url: listen.to_string(),
            message: format!("serving: {}", root_message(&e)),
        })
}

/// Run a worker on an already bound listener (tests bind port 0 first),
/// reporting `version` (a test's worker of another build gives its own).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    stores: Arc<Stores>,
    version: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    server_builder()
        .add_service(worker(stores, version).into_worker_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Worker {
            url: addr,
            message: format!("serving: {}", root_message(&e)),
        })
}

/// A worker's server: it pings its peers too, so the tasks of a
/// coordinator that died are dropped instead of kept for ever.
fn server_builder() -> tonic::transport::Server {
    let ping = IDLE_TIMEOUT / 3;
    tonic::transport::Server::builder()
        .tcp_keepalive(Some(ping))
        .http2_keepalive_interval(Some(ping))
        .http2_keepalive_timeout(Some(IDLE_TIMEOUT - ping))
}

fn worker(stores: Arc<Stores>, version: String) -> Worker {
    Worker::from_session_builder(move |ctx: WorkerQueryContext| {
        let stores = Arc::clone(&stores);
        async move {
            let mut builder = ctx.builder;
            // Added to DataFusion's own functions (which the plans use too).
            builder
                .scalar_functions()
                .get_or_insert_with(Vec::new)
                .extend(crate::queries::functions::udfs().into_iter().map(Arc::new));
            builder
                .aggregate_functions()
                .get_or_insert_with(Vec::new)
                .extend(crate::queries::functions::udafs().into_iter().map(Arc::new));
            Ok(builder
                .with_distributed_user_codec(ScanCodec { stores })
                .with_distributed_channel_resolver(Channels::new(
                    Duration::from_secs(10),
                    IDLE_TIMEOUT,
                ))
                .build())
        }
    })
    .with_version(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RepeatedKeysExec` goes to a worker as its magic and key index and
    /// comes back over the decoded input; a damaged node is refused.
    #[test]
    fn the_codec_carries_the_repeated_keys_node() {
        use arrow::datatypes::{DataType, Field, Schema};
        use datafusion::physical_plan::empty::EmptyExec;
        use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
        let codec = ScanCodec {
            stores: Arc::new(Stores::new(crate::lake::S3Options::default())),
        };
        let input: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(Schema::new(vec![
            Field::new("route", DataType::Utf8, true),
            Field::new("_trace_key", DataType::UInt64, false),
        ]))));
        let node = Arc::new(RepeatedKeysExec::try_new(Arc::clone(&input), 1).unwrap());
        let mut buf = Vec::new();
        codec
            .try_encode(node, &mut buf, &DefaultPhysicalProtoConverter {})
            .unwrap();
        assert_eq!(&buf[..8], REPEATED_KEYS);
        let task = datafusion::execution::TaskContext::default();
        let back = codec
            .try_decode(
                &buf,
                std::slice::from_ref(&input),
                &task,
                &DefaultPhysicalProtoConverter {},
            )
            .unwrap();
        let back = back
            .downcast_ref::<RepeatedKeysExec>()
            .expect("a RepeatedKeysExec");
        assert_eq!(back.key(), 1);
        assert_eq!(back.schema().field(0).name(), "_trace_key");
        for (bytes, inputs) in [(&buf[..10], 1), (&buf[..], 0)] {
            let e = codec
                .try_decode(
                    bytes,
                    &vec![Arc::clone(&input); inputs],
                    &task,
                    &DefaultPhysicalProtoConverter {},
                )
                .unwrap_err();
            assert!(e.to_string().contains("repeated-keys node"), "{e}");
        }
    }

    fn settings(raw: RawEngine) -> (EngineSettings, Vec<String>) {
        let mut p = Problems::new();
        let s = EngineSettings::validate(&raw, &mut p);
        (s, p.0)
    }

    #[test]
    fn workers_are_a_list_or_a_comma_separated_string() {
        let (list, p) = settings(RawEngine {
            workers: Some(RawWorkers::List(vec![
                "http://10.0.0.1:50051".into(),
                "http://w2:50051".into(),
            ])),
            ..Default::default()
        });
        assert!(p.is_empty(), "{p:?}");
        let (text, p) = settings(RawEngine {
            workers: Some(RawWorkers::Text(
                " http://10.0.0.1:50051 ,http://w2:50051,".into(),
            )),
            ..Default::default()
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(list, text);
        assert_eq!(
            list.workers.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["http://10.0.0.1:50051/", "http://w2:50051/"]
        );
        assert!(list.is_distributed());
        assert!(!EngineSettings::local().is_distributed());
    }

    #[test]
    fn every_bad_engine_setting_is_named() {
        let (_, p) = settings(RawEngine {
            workers: Some(RawWorkers::List(vec![
                "grpc://w1:1".into(),
                "http://w2:50051/path".into(),
                "not a url".into(),
                "http://w3:50051".into(),
                "http://w3:50051".into(),
            ])),
            workers_dns: Some("tokenledger-worker".into()),
            connect_timeout_secs: Some(0),
            idle_timeout_secs: Some(1),
        });
        let text = p.join("\n");
        for expected in [
            "engine.connect_timeout_secs: must be at least 1",
            "engine.idle_timeout_secs: must be at least 3",
            "engine.workers: `grpc://w1:1`: expected http://host:port",
            "engine.workers: `http://w2:50051/path`: expected http://host:port",
            "engine.workers: `not a url` is not a URL",
            "engine.workers: `http://w3:50051` is given twice",
            "engine.workers_dns: `tokenledger-worker`: expected host:port",
            "engine: give workers or workers_dns, not both",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(p.len(), 8, "{text}");
        let (dns, p) = settings(RawEngine {
            workers_dns: Some("tokenledger-worker.jobs.svc:50051".into()),
            ..Default::default()
        });
        assert!(p.is_empty());
        assert_eq!(
            dns.workers_dns,
            Some(("tokenledger-worker.jobs.svc".to_string(), 50051))
        );
    }

    #[test]
    fn the_version_names_the_build_and_its_sql() {
        let v = version();
        assert!(
            v.starts_with(&format!("tokenledger {} sql ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        assert_eq!(v, version(), "stable");
        assert_eq!(
            v.len(),
            format!("tokenledger {} sql ", env!("CARGO_PKG_VERSION")).len() + 12
        );
    }

    #[tokio::test]
    async fn workers_dns_resolves_to_one_url_per_address() {
        let urls = resolve_dns("localhost", 50051).await.unwrap();
        assert!(!urls.is_empty());
        for u in &urls {
            assert_eq!(u.port(), Some(50051), "{u}");
            assert_eq!(u.scheme(), "http");
        }
        let err = resolve_dns("no-such-host.invalid", 50051)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("worker no-such-host.invalid:50051: engine.workers_dns"),
            "{err}"
        );
    }
}
