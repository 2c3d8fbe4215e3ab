//! The keys seen more than once: `sql/dup_keys.sql`'s
//! `GROUP BY _trace_key HAVING count(*) > 1`, planned as one operator.
//!
//! DataFusion plans that query as a hash aggregate of every key with its
//! count: a day of N distinct keys is a hash table of N groups, each row a
//! probe of it, its group values and its counts at random places in
//! memory (the final aggregate took 0.83 s of a 5M-row day's 1.6 s of CPU in
//! the keys pass, ~170 ns a row; a key is ~32 bytes there). The answer needs
//! less: which keys repeat, not how often. [`RepeatedKeysExec`] keeps each
//! key once in one of 256 buckets (8 bytes a row, appended in order), and
//! at the end sorts each bucket (a few thousand keys, in cache) and emits
//! the keys that occur twice or more. Under memory pressure it writes its
//! buckets to spill files through the runtime's disk manager and reads each
//! bucket's share back at the end, one group of buckets at a time.
//!
//! [`RepeatedKeysRule`], a physical optimizer rule, puts it in place of the
//! plan DataFusion makes for that exact query shape (a `count` of a
//! constant grouped by one `UInt64` column, filtered on `count > 1` and
//! projected to the key) and leaves every other plan alone; the hash
//! repartition under the aggregate stays, so a distributed plan shuffles
//! as before and each task finds the repeats of its share of keys.
//!
//! Pure query machinery: it knows no table, file or column name of the lake.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Schema, SchemaRef, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::disk_manager::DiskManager;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::{Distribution, EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

/// Buckets a partition's keys are kept in: 2^8.
const BUCKET_BITS: u32 = 8;
const BUCKETS: usize = 1 << BUCKET_BITS;
/// Buckets per spill file: a spill writes 16 files, and the end reads one
/// group's files back at a time.
const GROUP: usize = 16;
const GROUPS: usize = BUCKETS / GROUP;
/// Keys a bucket starts with room for (8 KB).
const START: usize = 1024;

/// The bucket of a key: the top bits of a multiplicative hash, so that keys
/// that are not themselves hashes spread as well.
fn bucket_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BUCKET_BITS)) as usize
}

/// The keys of `input`'s column `key` (`UInt64`) that occur in more than
/// one row of a partition, each once; a null occurring twice or more is
/// one null row. Each partition of the input must hold all rows of its
/// keys (hash partitioned on the key, or a single partition).
pub struct RepeatedKeysExec {
    input: Arc<dyn ExecutionPlan>,
    key: usize,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for RepeatedKeysExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepeatedKeysExec")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RepeatedKeysExec {
    pub fn try_new(input: Arc<dyn ExecutionPlan>, key: usize) -> DfResult<Self> {
        let input_schema = input.schema();
        let field = input_schema.fields().get(key).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "RepeatedKeysExec: no column {key} in an input of {} columns",
                input_schema.fields().len()
            ))
        })?;
        if field.data_type() != &DataType::UInt64 {
            return Err(DataFusionError::Plan(format!(
                "RepeatedKeysExec: key column {} is {}, not UInt64",
                field.name(),
                field.data_type()
            )));
        }
        let schema = Arc::new(Schema::new(vec![Arc::clone(field)]));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(RepeatedKeysExec {
            input,
            key,
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The key column's index in the input.
    pub fn key(&self) -> usize {
        self.key
    }
}

impl DisplayAs for RepeatedKeysExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "RepeatedKeysExec: key={}@{}",
            self.schema.field(0).name(),
            self.key
        )
    }
}

impl ExecutionPlan for RepeatedKeysExec {
    fn name(&self) -> &str {
        "RepeatedKeysExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.input.output_partitioning().partition_count() <= 1 {
            return vec![Distribution::SinglePartition];
        }
        let name = self.schema.field(0).name();
        vec![Distribution::KeyPartitioned(vec![Arc::new(Column::new(
            name, self.key,
        ))])]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(RepeatedKeysExec::try_new(input, self.key)?)),
            Err(c) => Err(DataFusionError::Internal(format!(
                "RepeatedKeysExec takes one input, got {}",
                c.len()
            ))),
        }
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&ctx))?;
        let reservation = MemoryConsumer::new(format!("RepeatedKeysExec[{partition}]"))
            .with_can_spill(true)
            .register(ctx.memory_pool());
        let mut keys = Keys {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            started: false,
            nulls: 0,
            spills: Vec::new(),
            reservation,
            disk: Arc::clone(&ctx.runtime_env().disk_manager),
            spill_count: MetricBuilder::new(&self.metrics).spill_count(partition),
            spilled_bytes: MetricBuilder::new(&self.metrics).spilled_bytes(partition),
        };
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (key, schema, batch_size) = (
            self.key,
            Arc::clone(&self.schema),
            ctx.session_config().batch_size(),
        );
        let out_schema = Arc::clone(&schema);
        let body = async move {
            let mut input = input;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let _timer = baseline.elapsed_compute().timer();
                keys.add(batch.column(key).as_primitive::<UInt64Type>())?;
            }
            let timer = baseline.elapsed_compute().timer();
            let repeated = keys.finish().await?;
            timer.done();
            let batches = repeated
                .into_batches(&out_schema, batch_size)?
                .into_iter()
                // rows, batches and bytes, as EXPLAIN ANALYZE shows them
                .map(|b| Ok::<_, DataFusionError>(b.record_output(&baseline)))
                .collect::<Vec<_>>();
            baseline.done();
            Ok::<_, DataFusionError>(futures::stream::iter(batches))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(body).try_flatten(),
        )))
    }
}

/// One spill: a file per group of buckets, and where each bucket's keys
/// sit in its group's file (offset and count, in keys).
struct Spill {
    files: Vec<Arc<dyn datafusion::execution::SpillFile>>,
    segments: Vec<(usize, usize)>,
}

/// A partition's keys while its input is read.
struct Keys {
    buckets: Vec<Vec<u64>>,
    started: bool,
    nulls: u64,
    spills: Vec<Spill>,
    reservation: MemoryReservation,
    disk: Arc<DiskManager>,
    spill_count: Count,
    spilled_bytes: Count,
}

/// What a partition found: the repeated keys and whether a null repeats.
struct Repeated {
    keys: Vec<u64>,
    null: bool,
}

impl Repeated {
    fn into_batches(self, schema: &SchemaRef, batch_size: usize) -> DfResult<Vec<RecordBatch>> {
        let mut out: Vec<RecordBatch> = self
            .keys
            .chunks(batch_size.max(1))
            .map(|c| {
                RecordBatch::try_new(
                    Arc::clone(schema),
                    vec![Arc::new(UInt64Array::from(c.to_vec()))],
                )
            })
            .collect::<Result<_, _>>()?;
        if self.null {
            out.push(RecordBatch::try_new(
                Arc::clone(schema),
                vec![Arc::new(UInt64Array::from(vec![None::<u64>]))],
            )?);
        }
        Ok(out)
    }
}

impl Keys {
    fn held(&self) -> usize {
        self.buckets.iter().map(|b| b.capacity()).sum::<usize>() * size_of::<u64>()
    }

    fn add(&mut self, keys: &arrow::array::PrimitiveArray<UInt64Type>) -> DfResult<()> {
        if !self.started && !keys.is_empty() {
            self.started = true;
            for b in &mut self.buckets {
                b.reserve_exact(START);
            }
        }
        match keys.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for &k in keys.values() {
                    self.buckets[bucket_of(k)].push(k);
                }
            }
            Some(nulls) => {
                self.nulls += nulls.null_count() as u64;
                for (i, &k) in keys.values().iter().enumerate() {
                    if nulls.is_valid(i) {
                        self.buckets[bucket_of(k)].push(k);
                    }
                }
            }
        }
        if self.reservation.try_resize(self.held()).is_err() {
            self.spill()?;
        }
        Ok(())
    }

    /// Write every bucket to this spill's files and free them.
    fn spill(&mut self) -> DfResult<()> {
        let mut files = Vec::with_capacity(GROUPS);
        let mut segments = Vec::with_capacity(BUCKETS);
        let mut bytes = 0usize;
        for group in self.buckets.chunks_mut(GROUP) {
            let file = self.disk.create_tmp_file("RepeatedKeysExec")?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 16, file.open_writer()?);
            let mut at = 0usize;
            for bucket in group.iter_mut() {
                for k in bucket.iter() {
                    writer.write_all(&k.to_le_bytes())?;
                }
                segments.push((at, bucket.len()));
                at += bucket.len();
                *bucket = Vec::new();
            }
            writer
                .into_inner()
                .map_err(|e| DataFusionError::IoError(e.into_error()))?
                .finish()?;
            bytes += at * size_of::<u64>();
            files.push(file);
        }
        self.spills.push(Spill { files, segments });
        self.spill_count.add(1);
        self.spilled_bytes.add(bytes);
        self.reservation.resize(0);
        Ok(())
    }

    /// The repeated keys: each bucket (its spilled shares read back a group
    /// at a time) sorted, and every run of two or more equal keys taken once.
    async fn finish(mut self) -> DfResult<Repeated> {
        let mut keys = Vec::new();
        let mut table = Table::default();
        for g in 0..GROUPS {
            let mut spilled: Vec<Vec<u64>> = Vec::with_capacity(self.spills.len());
            for spill in &self.spills {
                spilled.push(read_keys(spill.files[g].as_ref()).await?);
            }
            let extra: usize = spilled.iter().map(Vec::len).sum::<usize>() * size_of::<u64>();
            self.reservation.try_grow(extra).map_err(|e| {
                DataFusionError::ResourcesExhausted(format!(
                    "RepeatedKeysExec: reading back {extra} bytes of spilled keys: {e}"
                ))
            })?;
            for b in g * GROUP..(g + 1) * GROUP {
                let mut bucket = std::mem::take(&mut self.buckets[b]);
                for (spill, file) in self.spills.iter().zip(&spilled) {
                    let (at, n) = spill.segments[b];
                    bucket.extend_from_slice(&file[at..at + n]);
                }
                let table_bytes = Table::bytes_for(bucket.len());
                self.reservation.try_grow(table_bytes).map_err(|e| {
                    DataFusionError::ResourcesExhausted(format!(
                        "RepeatedKeysExec: a table of {table_bytes} bytes for a bucket: {e}"
                    ))
                })?;
                table.repeats(&bucket, &mut keys);
                self.reservation.shrink(table_bytes);
            }
            self.reservation.shrink(extra);
        }
        // in key order, whatever order the rows came in
        keys.sort_unstable();
        Ok(Repeated {
            keys,
            null: self.nulls > 1,
        })
    }
}

/// An open-addressing set of one bucket's keys, reused bucket to bucket:
/// at most half full, so it stays in cache for a bucket of a few thousand
/// keys.
#[derive(Default)]
struct Table {
    /// Keys, 0 for an empty slot (the key 0 is counted apart).
    slots: Vec<u64>,
    /// Whether a slot's key was already taken as repeated.
    taken: Vec<bool>,
}

impl Table {
    fn capacity_for(keys: usize) -> usize {
        (keys * 2).next_power_of_two().max(16)
    }

    fn bytes_for(keys: usize) -> usize {
        Self::capacity_for(keys) * (size_of::<u64>() + size_of::<bool>())
    }

    /// Push onto `out` each key of `bucket` that occurs in it twice or
    /// more, once.
    fn repeats(&mut self, bucket: &[u64], out: &mut Vec<u64>) {
        let capacity = Self::capacity_for(bucket.len());
        self.slots.clear();
        self.slots.resize(capacity, 0);
        self.taken.clear();
        self.taken.resize(capacity, false);
        let (mask, shift) = (capacity - 1, 64 - capacity.trailing_zeros());
        let mut zeros = 0usize;
        for &k in bucket {
            if k == 0 {
                zeros += 1;
                continue;
            }
            // another multiplier than `bucket_of`'s, whose top bits are
            // the same in every key of a bucket
            let mut i = (k.wrapping_mul(0xFF51_AFD7_ED55_8CCD) >> shift) as usize;
            loop {
                let slot = self.slots[i];
                if slot == 0 {
                    self.slots[i] = k;
                    break;
                }
                if slot == k {
                    if !self.taken[i] {
                        self.taken[i] = true;
                        out.push(k);
                    }
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        if zeros > 1 {
            out.push(0);
        }
    }
}

/// A spill file's keys.
async fn read_keys(file: &dyn datafusion::execution::SpillFile) -> DfResult<Vec<u64>> {
    let mut stream = file.read_stream()?;
    let mut keys = Vec::with_capacity(file.size().unwrap_or(0) as usize / size_of::<u64>());
    let mut carry: Vec<u8> = Vec::with_capacity(size_of::<u64>());
    while let Some(chunk) = stream.next().await {
        let mut chunk: &[u8] = &chunk?;
        if !carry.is_empty() {
            let need = (size_of::<u64>() - carry.len()).min(chunk.len());
            carry.extend_from_slice(&chunk[..need]);
            chunk = &chunk[need..];
            if carry.len() == size_of::<u64>() {
                keys.push(u64::from_le_bytes(carry[..].try_into().map_err(|_| {
                    DataFusionError::Internal("a key of 8 bytes".into())
                })?));
                carry.clear();
            }
        }
        let whole = chunk.chunks_exact(size_of::<u64>());
        carry.extend_from_slice(whole.remainder());
        keys.extend(whole.map(|b| {
            let mut k = [0u8; 8];
            k.copy_from_slice(b);
            u64::from_le_bytes(k)
        }));
    }
    if !carry.is_empty() {
        return Err(DataFusionError::Internal(format!(
            "RepeatedKeysExec: a spill file ends {} bytes into a key",
            carry.len()
        )));
    }
    Ok(keys)
}

/// Puts [`RepeatedKeysExec`] where DataFusion planned `GROUP BY k HAVING
/// count(*) > 1` projected to `k`, for a `UInt64` `k`: a filter on
/// `count > 1` over a final aggregate of one `count` of a constant, over
/// (with more than one partition) a hash repartition on `k` over the
/// partial aggregate. The partial aggregate goes (the operator counts
/// raw rows); the repartition stays, now of the raw keys.
#[derive(Debug, Default)]
pub struct RepeatedKeysRule;

impl PhysicalOptimizerRule for RepeatedKeysRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match rewrite(&node)? {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "repeated_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The key column (in the aggregate's input) of an aggregate of exactly
/// one `count` of a non-null constant, unfiltered, grouped by one `UInt64`
/// column.
fn counted_key(agg: &AggregateExec) -> Option<usize> {
    let group = agg.group_expr();
    if !group.is_single() || group.expr().len() != 1 {
        return None;
    }
    let column = group.expr()[0].0.downcast_ref::<Column>()?;
    // the input's own schema (a final aggregate's `input_schema` is its
    // partial aggregate's input)
    let schema = agg.input().schema();
    if schema.fields().get(column.index())?.data_type() != &DataType::UInt64 {
        return None;
    }
    let [count] = agg.aggr_expr() else {
        return None;
    };
    let constant = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .is_some_and(|l| !l.value().is_null())
    };
    (count.fun().name() == "count"
        && !count.is_distinct()
        && count.expressions().iter().all(constant)
        && agg.filter_expr().iter().all(Option::is_none))
    .then_some(column.index())
}

/// Whether `filter` keeps the rows whose column 1 (the count) is above 1
/// and projects to column 0 (the key).
fn keeps_repeats(filter: &FilterExec) -> bool {
    let projected = filter.projection().as_deref() == Some(&[0][..]);
    let Some(gt) = filter.predicate().downcast_ref::<BinaryExpr>() else {
        return false;
    };
    let count = gt
        .left()
        .downcast_ref::<Column>()
        .is_some_and(|c| c.index() == 1);
    let one = gt
        .right()
        .downcast_ref::<Literal>()
        .is_some_and(|l| l.value() == &ScalarValue::Int64(Some(1)));
    projected && *gt.op() == Operator::Gt && count && one
}

fn rewrite(node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = node.downcast_ref::<FilterExec>() else {
        return Ok(None);
    };
    let Some(last) = filter.input().downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let Some(last_key) = counted_key(last).filter(|_| keeps_repeats(filter)) else {
        return Ok(None);
    };
    let input = last.input();
    let single = |plan: &Arc<dyn ExecutionPlan>| plan.output_partitioning().partition_count() == 1;
    // The rows themselves, with the key at `key`, partitioned so that each
    // partition holds all rows of its keys.
    let (rows, key): (Arc<dyn ExecutionPlan>, usize) = match last.mode() {
        AggregateMode::Single if single(input) => (Arc::clone(input), last_key),
        AggregateMode::SinglePartitioned => (Arc::clone(input), last_key),
        // a final aggregate's key is its partial aggregate's first column
        _ if last_key != 0 => return Ok(None),
        AggregateMode::Final => {
            // the partial aggregate, under a merge of its partitions if any
            let partial = match input.downcast_ref::<CoalescePartitionsExec>() {
                Some(merge) if merge.fetch().is_none() => merge.input(),
                Some(_) => return Ok(None),
                None => input,
            };
            let Some(partial) = partial.downcast_ref::<AggregateExec>() else {
                return Ok(None);
            };
            match (partial.mode(), counted_key(partial)) {
                (AggregateMode::Partial, Some(k)) if single(partial.input()) => {
                    (Arc::clone(partial.input()), k)
                }
                (AggregateMode::Partial, Some(k)) => (
                    Arc::new(CoalescePartitionsExec::new(Arc::clone(partial.input()))),
                    k,
                ),
                _ => return Ok(None),
            }
        }
        AggregateMode::FinalPartitioned => {
            let Some(shuffle) = input.downcast_ref::<RepartitionExec>() else {
                return Ok(None);
            };
            let Partitioning::Hash(on, n) = shuffle.partitioning() else {
                return Ok(None);
            };
            let on_key = matches!(on.as_slice(), [e] if e.downcast_ref::<Column>().is_some_and(|c| c.index() == 0));
            let Some(partial) = shuffle.input().downcast_ref::<AggregateExec>() else {
                return Ok(None);
            };
            match (on_key, partial.mode(), counted_key(partial)) {
                (true, AggregateMode::Partial, Some(k)) => {
                    let rows = partial.input();
                    let name = rows.schema().field(k).name().clone();
                    let by_key = Partitioning::Hash(vec![Arc::new(Column::new(&name, k))], *n);
                    (
                        Arc::new(RepartitionExec::try_new(Arc::clone(rows), by_key)?),
                        k,
                    )
                }
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(Arc::new(RepeatedKeysExec::try_new(rows, key)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use arrow::datatypes::Field;
    use datafusion::catalog::MemTable;
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::{SessionStateBuilder, SpillFile, SpillWriter};
    use datafusion::physical_plan::metrics::MetricValue;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use std::collections::BTreeMap;

    /// Keys of `rows` rows: every 7th key repeats (some three times), a
    /// few keys above 2^63 and two nulls.
    fn keys(rows: u64) -> Vec<Option<u64>> {
        let mut keys: Vec<Option<u64>> = (0..rows)
            .map(|i| {
                let k = match i {
                    _ if i % 7 == 3 => i - 1,
                    _ if i % 11 == 5 && i > 5 => i - 2,
                    _ => i,
                };
                Some(k.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ (k << 63))
            })
            .collect();
        keys.extend([None, Some(u64::MAX), Some(u64::MAX), None, Some(0)]);
        keys
    }

    /// The keys that occur twice or more, by counting them.
    fn counted(keys: &[Option<u64>]) -> Vec<Option<u64>> {
        let mut n: BTreeMap<Option<u64>, usize> = BTreeMap::new();
        for k in keys {
            *n.entry(*k).or_default() += 1;
        }
        n.into_iter()
            .filter(|(_, c)| *c > 1)
            .map(|(k, _)| k)
            .collect()
    }

    fn session(partitions: usize, pool: Option<usize>, rule: bool) -> SessionContext {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = pool {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
        }
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(partitions))
            .with_runtime_env(runtime.build_arc().expect("runtime"))
            .with_default_features();
        if rule {
            state = state.with_physical_optimizer_rule(Arc::new(RepeatedKeysRule));
        }
        SessionContext::new_with_state(state.build())
    }

    /// `keys` as table `requests` (`_trace_key`, and a text column), in
    /// `parts` partitions of batches of 8,192 rows.
    fn register(ctx: &SessionContext, keys: &[Option<u64>], parts: usize) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_trace_key", DataType::UInt64, true),
            Field::new("route", DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = keys
            .chunks(8192)
            .map(|c| {
                let routes: ArrayRef = Arc::new(arrow::array::StringArray::from(
                    c.iter()
                        .map(|k| k.map(|k| format!("r{}", k % 3)))
                        .collect::<Vec<_>>(),
                ));
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(UInt64Array::from(c.to_vec())), routes],
                )
                .expect("batch")
            })
            .collect();
        let mut partitions = vec![Vec::new(); parts];
        for (i, b) in batches.into_iter().enumerate() {
            partitions[i % parts].push(b);
        }
        let table = MemTable::try_new(schema, partitions).expect("table");
        ctx.register_table("requests", Arc::new(table))
            .expect("register");
    }

    /// The query's keys, sorted, and its physical plan as text.
    async fn run(
        ctx: &SessionContext,
        sql: &str,
    ) -> (Vec<Option<u64>>, String, Option<MetricsSet>) {
        let df = ctx.sql(sql).await.expect("plan");
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.expect("physical plan");
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task)
            .await
            .expect("run");
        let mut got: Vec<Option<u64>> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<UInt64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        got.sort_unstable();
        let mut metrics = None;
        let mut stack = vec![plan];
        while let Some(node) = stack.pop() {
            if node.name() == "RepeatedKeysExec" {
                metrics = node.metrics();
            }
            stack.extend(node.children().into_iter().cloned());
        }
        (got, text, metrics)
    }

    fn dup_keys() -> &'static str {
        crate::queries::file("dup_keys").expect("embedded").text
    }

    /// dup_keys.sql, in one partition and in several, with the rule and
    /// without: the same keys as counting them, the rule's plan with no
    /// aggregate left.
    #[tokio::test]
    async fn the_rule_plans_dup_keys_and_finds_what_counting_finds() {
        let keys = keys(60_000);
        let want = counted(&keys);
        assert!(want.len() > 8_000 && want.contains(&None) && want.contains(&Some(u64::MAX)));
        for parts in [1, 2, 4] {
            let plain = session(parts, None, false);
            register(&plain, &keys, 3);
            let (got, text, _) = run(&plain, dup_keys()).await;
            assert_eq!(got, want, "DataFusion's own plan, {parts} partitions");
            assert!(!text.contains("RepeatedKeysExec"), "{text}");

            let ruled = session(parts, None, true);
            register(&ruled, &keys, 3);
            let (got, text, metrics) = run(&ruled, dup_keys()).await;
            assert_eq!(got, want, "{parts} partitions:\n{text}");
            assert!(text.contains("RepeatedKeysExec"), "{text}");
            assert!(!text.contains("AggregateExec"), "{text}");
            let metrics = metrics.expect("metrics");
            assert_eq!(metrics.output_rows(), Some(want.len()));
            let (batches, bytes) = metrics.iter().fold((0, 0), |(n, b), m| match m.value() {
                MetricValue::OutputBatches(c) => (n + c.value(), b),
                MetricValue::OutputBytes(c) => (n, b + c.value()),
                _ => (n, b),
            });
            // one batch of 8,192 keys at most, and the null in one of its own
            assert!(batches > want.len() / 8192, "{metrics:?}");
            assert!(bytes >= want.len() * 8, "{metrics:?}");
            assert_eq!(metrics.spill_count(), Some(0));
        }
    }

    /// With a pool far smaller than the keys, the buckets spill and are
    /// read back: the same keys.
    #[tokio::test]
    async fn spilled_keys_are_all_read_back() {
        let keys = keys(300_000);
        let want = counted(&keys);
        let ctx = session(2, Some(1 << 20), true);
        register(&ctx, &keys, 2);
        let (got, text, metrics) = run(&ctx, dup_keys()).await;
        assert_eq!(got, want, "{text}");
        let metrics = metrics.expect("metrics");
        assert!(metrics.spill_count().unwrap_or(0) > 1, "{metrics:?}");
        assert!(
            metrics.spilled_bytes().unwrap_or(0) > 1_000_000,
            "{metrics:?}"
        );
    }

    /// Other queries keep DataFusion's plan.
    #[tokio::test]
    async fn other_shapes_are_left_alone() {
        let ctx = session(2, None, true);
        register(&ctx, &keys(1_000), 2);
        for sql in [
            "SELECT _trace_key FROM requests GROUP BY _trace_key HAVING count(*) > 2",
            "SELECT _trace_key FROM requests GROUP BY _trace_key HAVING count(route) > 1",
            "SELECT _trace_key, count(*) FROM requests GROUP BY _trace_key HAVING count(*) > 1",
            "SELECT route FROM requests GROUP BY route HAVING count(*) > 1",
            "SELECT _trace_key FROM requests GROUP BY _trace_key HAVING count(DISTINCT route) > 1",
            "SELECT _trace_key FROM requests GROUP BY _trace_key, route HAVING count(*) > 1",
        ] {
            let df = ctx.sql(sql).await.expect("plan");
            let plan = df.create_physical_plan().await.expect("physical plan");
            let text = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string();
            assert!(!text.contains("RepeatedKeysExec"), "{sql}:\n{text}");
        }
    }

    /// A bucket's repeats by hand: each once, 0 too, whatever the order.
    #[test]
    fn a_table_takes_each_repeat_once() {
        let mut table = Table::default();
        let mut out = Vec::new();
        table.repeats(
            &[5, 5, 5, 0, 7, 0, 9, u64::MAX, 9, u64::MAX, 1 << 63],
            &mut out,
        );
        assert_eq!(out, [5, 9, u64::MAX, 0]);
        out.clear();
        // reused for a smaller bucket: nothing of the last one left
        table.repeats(&[7, 8, 0], &mut out);
        assert!(out.is_empty(), "{out:?}");
        // forty keys twice each: all forty, in their first order
        let keys: Vec<u64> = (1..=40).chain(1..=40).collect();
        table.repeats(&keys, &mut out);
        assert_eq!(out, (1..=40).collect::<Vec<u64>>());
    }

    /// A spill file read back in chunks that split keys.
    struct Chunked(Vec<u8>, usize);

    impl SpillFile for Chunked {
        fn size(&self) -> Option<u64> {
            Some(self.0.len() as u64)
        }
        fn read_stream(
            &self,
        ) -> DfResult<std::pin::Pin<Box<dyn futures::Stream<Item = DfResult<bytes::Bytes>> + Send>>>
        {
            let chunks: Vec<DfResult<bytes::Bytes>> = self
                .0
                .chunks(self.1)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            Ok(Box::pin(futures::stream::iter(chunks)))
        }
        fn open_writer(&self) -> DfResult<Box<dyn SpillWriter>> {
            Err(DataFusionError::Internal("read only".into()))
        }
    }

    #[tokio::test]
    async fn keys_split_across_chunks_are_joined() {
        let keys: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x0123_4567_89AB_CDEF))
            .collect();
        let bytes: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
        for chunk in [1, 3, 8, 13, 4096] {
            let got = read_keys(&Chunked(bytes.clone(), chunk))
                .await
                .expect("read");
            assert_eq!(got, keys, "chunks of {chunk}");
        }
        let torn = Chunked(bytes[..bytes.len() - 3].to_vec(), 5);
        assert!(
            read_keys(&torn).await.is_err(),
            "a file ending inside a key"
        );
    }
}
