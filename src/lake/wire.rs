//! The day scan on the wire: how a coordinator hands one task's share of the
//! day ([`DayScanExec`] variant) to a worker, and how the worker opens it.
//!
//! A scan travels as what names its work, never as its data: the window,
//! the projection, the column mapping, the objects it reads (location, size,
//! etag, version, partition date, ordinal, rows) and each partition's row
//! groups, plus the trace-key set of a scan that keeps or drops duplicate
//! candidates. The worker reads those objects' footers itself, with its own
//! storage clients, on first use ([`RemoteInput`]), and refuses an object
//! whose row count no longer matches what the coordinator listed (the
//! object changed under the run). A scan that writes rows aside to local
//! files is refused: no node may depend on another's disk.
//!
//! The format is a magic, a JSON header and the keys as little-endian u64s.
//! It knows nothing of gRPC or of the distributed planner (`engine` does).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::error::{DataFusionError, Result as DfResult};
use serde::{Deserialize, Serialize};

use super::scan::{
    DayInput, DayScanExec, DayWindow, KeyFilter, KeySet, ScanCounters, ScanOptions, ScanPlan,
    Source, Unit,
};
use super::schema::{ColumnMapping, request_schema};
use super::{Location, ObjectInfo, Stores};

/// The format's name and version (part of the workers' `engine::version`).
pub const FORMAT: &str = "TLSCAN1";
/// What a wire scan starts with.
const MAGIC: &[u8; 8] = b"TLSCAN1\0";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    window: [i64; 2],
    batch_size: usize,
    projection: Vec<usize>,
    mapping: ColumnMapping,
    /// Whether the scan counts the rows it drops (the finance pass's).
    counting: bool,
    /// `Some(inside)`: the scan keeps only (`true`) or drops (`false`) the
    /// rows whose trace key is among the keys after the header.
    keys: Option<bool>,
    objects: Vec<Object>,
    /// Per partition: (index into `objects`, row groups).
    partitions: Vec<Vec<(usize, Vec<usize>)>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Object {
    location: String,
    size: u64,
    e_tag: Option<String>,
    version: Option<String>,
    partition_date: String,
    ordinal: u32,
    rows: u64,
}

fn wire_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Internal(format!("day scan on the wire: {}", message.into()))
}

/// Encode one scan node (a task's variant).
pub fn encode(node: &DayScanExec, buf: &mut Vec<u8>) -> DfResult<()> {
    let plan = node.plan();
    if plan.options.divert.is_some() {
        return Err(wire_error(
            "a scan that sets rows aside to local files cannot run on another node",
        ));
    }
    let Source::Open(input) = &plan.source else {
        return Err(wire_error("only a scan opened by this process can be sent"));
    };
    let mut objects: Vec<Object> = Vec::new();
    let mut index: std::collections::BTreeMap<usize, usize> = Default::default();
    let mut partitions = Vec::with_capacity(node.partitions().len());
    for units in node.partitions() {
        let mut mine = Vec::with_capacity(units.len());
        for unit in units {
            let at = *index.entry(unit.file).or_insert_with(|| {
                let f = &input.files()[unit.file];
                objects.push(Object {
                    location: f.info.location.as_str().to_string(),
                    size: f.info.size,
                    e_tag: f.info.e_tag.clone(),
                    version: f.info.version.clone(),
                    partition_date: f.partition_date.to_string(),
                    ordinal: f.ordinal,
                    rows: f.rows,
                });
                objects.len() - 1
            });
            mine.push((at, unit.row_groups.clone()));
        }
        partitions.push(mine);
    }
    let window = input.window();
    let header = Header {
        window: [window.start_ns, window.end_ns],
        batch_size: input.batch_size(),
        projection: plan.projection.clone(),
        mapping: input.mapping().clone(),
        counting: plan.options.counters.is_some(),
        keys: plan.options.keys.as_ref().map(|k| k.inside),
        objects,
        partitions,
    };
    let json = serde_json::to_vec(&header).map_err(|e| wire_error(e.to_string()))?;
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(json.len() as u64).to_le_bytes());
    buf.extend_from_slice(&json);
    if let Some(k) = &plan.options.keys {
        // Sorted: the same plan encodes to the same bytes.
        let mut keys: Vec<u64> = k.keys.iter().collect();
        keys.sort_unstable();
        for key in keys {
            buf.extend_from_slice(&key.to_le_bytes());
        }
    }
    Ok(())
}

/// Decode a scan sent by [`encode`]; it reads through `stores`.
pub fn decode(buf: &[u8], stores: Arc<Stores>) -> DfResult<DayScanExec> {
    let rest = buf
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| wire_error("not a tokenledger day scan of this version"))?;
    let (len, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| wire_error("truncated header length"))?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|e| wire_error(e.to_string()))?;
    if rest.len() < len {
        return Err(wire_error("truncated header"));
    }
    let (json, keys) = rest.split_at(len);
    let header: Header = serde_json::from_slice(json).map_err(|e| wire_error(e.to_string()))?;
    if keys.len() % 8 != 0 {
        return Err(wire_error("trace keys are not whole u64s"));
    }
    let key_filter = header.keys.map(|inside| KeyFilter {
        keys: Arc::new(
            keys.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
                .collect::<KeySet>(),
        ),
        inside,
    });
    let mut listed = Vec::with_capacity(header.objects.len());
    for o in &header.objects {
        let location = Location::parse(&o.location, None)
            .map_err(|e| wire_error(format!("object {}: {e}", o.location)))?;
        let date = NaiveDate::parse_from_str(&o.partition_date, "%Y-%m-%d")
            .map_err(|e| wire_error(format!("object {}: partition date: {e}", o.location)))?;
        let info = ObjectInfo {
            location,
            size: o.size,
            e_tag: o.e_tag.clone(),
            version: o.version.clone(),
        };
        listed.push((o.ordinal, info, date, o.rows));
    }
    let schema = Arc::new(
        request_schema()
            .project(&header.projection)
            .map_err(|e| wire_error(e.to_string()))?,
    );
    let remote = RemoteInput {
        stores,
        listed,
        mapping: header.mapping,
        window: DayWindow {
            start_ns: header.window[0],
            end_ns: header.window[1],
        },
        batch_size: header.batch_size,
        opened: tokio::sync::OnceCell::new(),
    };
    let plan = Arc::new(ScanPlan {
        source: Source::Remote(Arc::new(remote)),
        projection: header.projection,
        schema,
        options: ScanOptions {
            counters: header.counting.then(|| Arc::new(ScanCounters::default())),
            divert: None,
            keys: key_filter,
        },
    });
    let partitions = header
        .partitions
        .into_iter()
        .map(|units| {
            units
                .into_iter()
                .map(|(file, row_groups)| Unit { file, row_groups })
                .collect()
        })
        .collect();
    Ok(DayScanExec::new(plan, partitions))
}

/// A task's objects as the coordinator named them, opened on first use.
pub struct RemoteInput {
    stores: Arc<Stores>,
    /// (ordinal, object, partition date, rows the coordinator saw)
    listed: Vec<(u32, ObjectInfo, NaiveDate, u64)>,
    mapping: ColumnMapping,
    window: DayWindow,
    batch_size: usize,
    opened: tokio::sync::OnceCell<Arc<DayInput>>,
}

impl std::fmt::Debug for RemoteInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteInput")
            .field("objects", &self.listed.len())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl RemoteInput {
    /// The objects opened (footers read once per task, columns resolved);
    /// an object whose row count changed since it was listed is an error.
    pub(super) async fn open(&self) -> DfResult<Arc<DayInput>> {
        let input = self
            .opened
            .get_or_try_init(|| async {
                let numbered = self
                    .listed
                    .iter()
                    .map(|(ordinal, info, date, _)| (*ordinal, info.clone(), *date))
                    .collect();
                let input = DayInput::open_numbered(
                    Arc::clone(&self.stores),
                    numbered,
                    &self.mapping,
                    self.window,
                )
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
                .with_batch_size(self.batch_size);
                for ((_, info, _, rows), file) in self.listed.iter().zip(input.files()) {
                    if file.rows != *rows {
                        return Err(DataFusionError::External(Box::new(
                            crate::error::Error::CorruptInput {
                                key: info.location.to_string(),
                                message: format!(
                                    "holds {} rows, but {rows} when the run listed it: the object changed during the run",
                                    file.rows
                                ),
                            },
                        )));
                    }
                }
                Ok(Arc::new(input))
            })
            .await?;
        Ok(Arc::clone(input))
    }
}
