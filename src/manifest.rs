//! The run manifest (`reports/date=D/manifest.json`): what a run read, what it
//! kept and dropped and why, how it priced, and what it wrote, with sizes,
//! etags and digests; enough to replay the run and to trust its outputs.
//! It is written last: a day without a manifest is not finished. Pure data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fx::ChosenRate;
use crate::lake::DigestAlgo;
use crate::pricing::Resolution;

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub program: String,
    pub run_id: String,
    pub date: String,
    pub timezone: String,
    /// The report day as UTC instants `[start, end)`.
    pub window_start: String,
    pub window_end: String,
    pub seconds_in_day: i64,
    pub started_at: String,
    pub finished_at: String,
    pub config_digest: String,
    /// `preliminary` while rows of the day may still arrive (its lateness
    /// window, `run.late_days` days after its end, was open when the run
    /// started), else `final`.
    pub status: String,
    /// When the lateness window closes (UTC).
    pub final_after: String,
    /// Set when this publication restates an earlier one of the day (late
    /// rows arrived): what it replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restated_from: Option<Restated>,
    /// The day's figures at a glance (the report index lists them).
    pub headline: Headline,
    pub inputs: Inputs,
    pub rows: RowCounts,
    pub pricing: PricingFacts,
    pub fx: FxFacts,
    pub data_quality: DataQuality,
    /// Where the day's heavy queries ran.
    pub engine: EngineFacts,
    /// Every object this run published (the manifest excepted), with digests.
    pub outputs: Vec<OutputObject>,
}

/// Where a run's queries ran: `local`, or `distributed` over workers, with
/// the tasks the coordinator sent to each (every worker listed).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EngineFacts {
    pub mode: String,
    pub workers: Vec<String>,
    pub tasks_by_worker: BTreeMap<String, u64>,
}

impl EngineFacts {
    pub fn local() -> EngineFacts {
        EngineFacts {
            mode: "local".into(),
            workers: Vec::new(),
            tasks_by_worker: BTreeMap::new(),
        }
    }
}

/// The headline figures of a day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Headline {
    /// Requests kept (duplicates dropped).
    pub requests: u64,
    /// Priced spend in USD, the exact sum rounded once to 6 decimals; empty
    /// when nothing was priced.
    pub cost_usd: String,
    pub unpriced_requests: u64,
    /// Alert thresholds breached (`[alerts]`).
    pub alerts: u64,
    /// `ok`, or `failed` when a data-quality gate failed.
    pub data_quality: String,
}

/// What the report index needs of a published day's manifest.
/// The publication a restatement replaces: its run, when it was
/// published, its headline figures, and the input objects that were new or
/// changed since.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Restated {
    pub run_id: String,
    pub published_at: String,
    pub requests: u64,
    pub cost_usd: String,
    pub objects: Vec<String>,
}

/// What the report index and the settling of late rows need of a published
/// day's manifest.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Published {
    pub date: String,
    pub headline: Headline,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub timezone: String,
    /// Absent before manifest version 3.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub final_after: Option<String>,
    #[serde(default)]
    pub restated_from: Option<Restated>,
}

impl Published {
    /// Read the index fields of a manifest; `what` names it in errors.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Published, String> {
        serde_json::from_slice(bytes)
            .map_err(|e| format!("{what}: not a tokenledger manifest with a headline: {e}"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InputObject {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version: Option<String>,
    /// Rows in the object (request logs) or data rows (tables).
    pub rows: u64,
    /// SHA-256 of the content of a table read whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// BLAKE3 of the content of a request object of a local lake (replay
    /// and settling compare those by content, since a local etag changes
    /// with a copy or restore). Manifests before version 4 recorded
    /// SHA-256 here instead; both are still read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// The partition a request-log object was listed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The adapter an invoice object was read with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

pub use crate::lake::SkipKind;

/// An object whose bytes repeat an earlier object's.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DuplicateObject {
    pub key: String,
    pub same_as: String,
}

/// An object listed among the inputs and not read, with the reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SkippedObject {
    pub key: String,
    pub kind: SkipKind,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// The partitions listed for the day (SPEC 1.1 lateness).
    pub partitions: Vec<String>,
    pub requests: Vec<InputObject>,
    pub prices: InputObject,
    /// None when the lake has no FX table (only USD converts).
    pub fx: Option<InputObject>,
    /// Every invoice object read (all of them, not only the month's lines).
    pub invoices: Vec<InputObject>,
    /// Invoice rows the adapters left out (taxes, other services), by reason.
    pub invoice_rows_skipped: std::collections::BTreeMap<String, u64>,
    /// Invoice objects byte-identical to an earlier one: read and counted
    /// (never dropped silently), and named on every line they feed.
    pub invoice_duplicates: Vec<DuplicateObject>,
    /// The rollups of earlier days read (comparisons, month to date).
    pub history: Vec<InputObject>,
    /// Every listed object that was not read (request partitions, invoice
    /// prefixes and sources), with the reason.
    pub skipped: Vec<SkippedObject>,
}

/// Where every listed row went: `listed = outside_window + null_ts +
/// rejected + in_day`, and `in_day = kept + duplicates_dropped`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowCounts {
    pub listed: u64,
    pub outside_window: u64,
    pub null_ts: u64,
    /// Rows of the day with a null in a required column, by column.
    pub rejected: BTreeMap<String, u64>,
    pub in_day: u64,
    pub duplicates_dropped: u64,
    pub duplicate_conflicts: u64,
    pub kept: u64,
    /// Rows of the day found in a later partition than their UTC date.
    pub late_rows: u64,
    /// Rows of the day found in an earlier partition than their UTC date.
    pub early_rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PricingFacts {
    pub priced_requests: u64,
    pub unpriced_requests: u64,
    /// How each logged (provider, model) found its price rows.
    pub models: Vec<Resolution>,
    /// Price rows used today that moved 10x or more from or to a
    /// neighbouring version (probably a typo in the price source).
    pub price_jumps: Vec<crate::pricing::Jump>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FxFacts {
    pub rates: Vec<ChosenRate>,
    /// Logged costs that could not be converted, by currency (`(none)` for
    /// rows without a currency).
    pub unconverted_requests: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataQuality {
    /// `ok` or `failed` (a gate in `quality` was exceeded).
    pub status: String,
    pub problems: Vec<String>,
    pub token_invariant_violations: u64,
    pub total_tokens_mismatch: u64,
    pub logged_cost_invalid: u64,
    pub citation_rate_invalid: u64,
    pub unpriced_share: f64,
    pub rejected_share: f64,
    /// Optional columns none of the day's objects has (their metrics are
    /// empty or `(untagged)`): `column (read from source)`.
    pub absent_columns: Vec<String>,
    /// Examples of rejected rows (object key and reason).
    pub rejected_examples: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutputObject {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serializes");
        out.push(b'\n');
        out
    }
}

/// The manifest version this program writes: 2 added `inputs.skipped`;
/// 4 records a local lake's request objects by `blake3` (before: `sha256`).
pub const MANIFEST_VERSION: u32 = 4;

/// The manifest versions this program can replay.
pub const MANIFEST_VERSIONS: &[u64] = &[1, 2, 3, 4];

/// A request-log object as a manifest recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub version: Option<String>,
    /// The partition it was listed under (`date=YYYY-MM-DD`), when recorded.
    pub partition: Option<String>,
    /// The content digest (`blake3:<hex>`, or `sha256:<hex>` before
    /// manifest version 4), recorded for objects of a local lake (whose
    /// etags follow inode and mtime, so a copy or restore changes them).
    pub content: Option<String>,
}

/// A table read whole, as a manifest recorded it: its key and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTable {
    pub key: String,
    pub sha256: String,
    /// The adapter an invoice object was read with.
    pub adapter: Option<String>,
}

/// An output object as a manifest recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOutput {
    pub key: String,
    pub sha256: String,
}

/// What a replay needs of a published manifest, every field checked: a
/// manifest that cannot say what was read and what was written cannot be
/// replayed, so nothing here is optional that a run always writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub manifest_version: u64,
    pub date: chrono::NaiveDate,
    pub timezone: chrono_tz::Tz,
    pub config_digest: String,
    pub requests: Vec<RecordedRequest>,
    pub prices: RecordedTable,
    pub fx: Option<RecordedTable>,
    pub invoices: Vec<RecordedTable>,
    pub history: Vec<RecordedTable>,
    /// Objects listed and not read (version 2; none recorded in version 1,
    /// whose pages did not list them).
    pub skipped: Vec<SkippedObject>,
    pub outputs: Vec<RecordedOutput>,
    /// The day's status and what it restated (version 3): a replay renders
    /// the pages as published, not as the day stands now.
    pub status: Option<String>,
    pub final_after: Option<chrono::DateTime<chrono::Utc>>,
    pub restated_from: Option<Restated>,
}

/// The algorithm's prefix (`sha256:`, `blake3:`) and 64 lower-case hex
/// digits (both digests are 256 bits).
fn is_digest(s: &str, algo: DigestAlgo) -> bool {
    s.strip_prefix(algo.prefix()).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Reads fields of a JSON object, collecting every problem with its path.
struct Fields<'a> {
    problems: &'a mut Vec<String>,
}

impl Fields<'_> {
    fn field<'v>(
        &mut self,
        v: &'v serde_json::Value,
        path: &str,
        name: &str,
    ) -> Option<&'v serde_json::Value> {
        match v.get(name) {
            Some(x) => Some(x),
            None => {
                self.problems
                    .push(format!("`{}`: missing", join(path, name)));
                None
            }
        }
    }

    fn string(&mut self, v: &serde_json::Value, path: &str, name: &str) -> Option<String> {
        match self.field(v, path, name)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            other => {
                self.problems.push(format!(
                    "`{}`: expected a non-empty string, found {}",
                    join(path, name),
                    kind(other)
                ));
                None
            }
        }
    }

    /// A string or null; absent counts as null.
    fn optional_string(&mut self, v: &serde_json::Value, path: &str, name: &str) -> Option<String> {
        match v.get(name) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problems.push(format!(
                    "`{}`: expected a string or null, found {}",
                    join(path, name),
                    kind(other)
                ));
                None
            }
        }
    }

    fn digest(&mut self, v: &serde_json::Value, path: &str) -> Option<String> {
        self.digest_of(v, path, DigestAlgo::Sha256)
    }

    /// The digest in field `sha256` or `blake3`, checked to be one.
    fn digest_of(&mut self, v: &serde_json::Value, path: &str, algo: DigestAlgo) -> Option<String> {
        let d = self.string(v, path, algo.field())?;
        if is_digest(&d, algo) {
            Some(d)
        } else {
            self.problems.push(format!(
                "`{}`: expected `{}` and 64 hex digits, found `{d}`",
                join(path, algo.field()),
                algo.prefix()
            ));
            None
        }
    }

    fn array<'v>(
        &mut self,
        v: &'v serde_json::Value,
        path: &str,
        name: &str,
    ) -> &'v [serde_json::Value] {
        match self.field(v, path, name) {
            Some(serde_json::Value::Array(a)) => a,
            Some(other) => {
                self.problems.push(format!(
                    "`{}`: expected an array, found {}",
                    join(path, name),
                    kind(other)
                ));
                &[]
            }
            None => &[],
        }
    }

    fn table(&mut self, v: &serde_json::Value, path: &str, adapter: bool) -> Option<RecordedTable> {
        if !v.is_object() {
            self.problems
                .push(format!("`{path}`: expected an object, found {}", kind(v)));
            return None;
        }
        let key = self.string(v, path, "key");
        let sha256 = self.digest(v, path);
        let adapter = if adapter {
            Some(self.string(v, path, "adapter")?)
        } else {
            None
        };
        Some(RecordedTable {
            key: key?,
            sha256: sha256?,
            adapter,
        })
    }

    /// `inputs.requests`: every object the day read.
    fn requests(&mut self, inputs: &serde_json::Value) -> Vec<RecordedRequest> {
        let f = self;
        let mut requests = Vec::new();
        let listed = f.array(inputs, "inputs", "requests");
        if listed.is_empty() && inputs.get("requests").is_some_and(|r| r.is_array()) {
            f.problems
                .push("`inputs.requests`: empty: a published day read at least one object".into());
        }
        for (i, o) in listed.iter().enumerate() {
            let path = format!("inputs.requests[{i}]");
            if !o.is_object() {
                f.problems
                    .push(format!("`{path}`: expected an object, found {}", kind(o)));
                continue;
            }
            let key = f.string(o, &path, "key");
            let size = match f.field(o, &path, "size") {
                Some(s) => {
                    let n = s.as_u64();
                    if n.is_none() {
                        f.problems.push(format!(
                            "`{path}.size`: expected a whole number, found {}",
                            kind(s)
                        ));
                    }
                    n
                }
                None => None,
            };
            let etag = f.optional_string(o, &path, "etag");
            let version = f.optional_string(o, &path, "version");
            let partition = f.optional_string(o, &path, "partition");
            // Recorded by BLAKE3 (version 4 on) or SHA-256 (before).
            let present = |algo: DigestAlgo| {
                o.get(algo.field())
                    .is_some_and(|d| !d.is_null())
                    .then_some(algo)
            };
            let content = present(DigestAlgo::Blake3)
                .or_else(|| present(DigestAlgo::Sha256))
                .and_then(|algo| f.digest_of(o, &path, algo));
            if let (Some(key), Some(size)) = (key, size) {
                requests.push(RecordedRequest {
                    key,
                    size,
                    etag,
                    version,
                    partition,
                    content,
                });
            }
        }
        requests
    }

    /// `inputs.skipped` (manifest version 2 on): objects listed and not read.
    fn skipped(&mut self, inputs: &serde_json::Value) -> Vec<SkippedObject> {
        let f = self;
        let mut skipped = Vec::new();
        for (i, o) in f.array(inputs, "inputs", "skipped").iter().enumerate() {
            let path = format!("inputs.skipped[{i}]");
            let key = f.string(o, &path, "key");
            let reason = f.string(o, &path, "reason");
            let kind = f.string(o, &path, "kind").and_then(|k| {
                let kind = SkipKind::parse(&k);
                if kind.is_none() {
                    f.problems.push(format!(
                        "`{path}.kind`: `{k}` is not hidden, no_source or not_parquet"
                    ));
                }
                kind
            });
            if let (Some(key), Some(kind), Some(reason)) = (key, kind, reason) {
                skipped.push(SkippedObject { key, kind, reason });
            }
        }
        skipped
    }

    /// `outputs`: every object the day wrote, each once, with its digest.
    fn outputs(&mut self, v: &serde_json::Value) -> Vec<RecordedOutput> {
        let f = self;
        let mut outputs: Vec<RecordedOutput> = Vec::new();
        let listed = f.array(v, "", "outputs");
        if listed.is_empty() && v.get("outputs").is_some_and(|o| o.is_array()) {
            f.problems
                .push("`outputs`: empty: a published day wrote at least one object".into());
        }
        for (i, o) in listed.iter().enumerate() {
            let path = format!("outputs[{i}]");
            if !o.is_object() {
                f.problems
                    .push(format!("`{path}`: expected an object, found {}", kind(o)));
                continue;
            }
            let key = f.string(o, &path, "key");
            let sha256 = f.digest(o, &path);
            if let (Some(key), Some(sha256)) = (key, sha256) {
                if outputs.iter().any(|x| x.key == key) {
                    f.problems
                        .push(format!("`{path}.key`: `{key}` is listed twice"));
                } else {
                    outputs.push(RecordedOutput { key, sha256 });
                }
            }
        }
        outputs
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The day's standing as recorded (manifest version 3): status, when it
/// turns final, and what a restatement replaced.
type RecordedStanding = (
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<Restated>,
);

fn standing(v: &serde_json::Value, problems: &mut Vec<String>) -> RecordedStanding {
    let status = match v.get("status") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s == "preliminary" || s == "final" => Some(s.clone()),
        Some(other) => {
            problems.push(format!(
                "`status`: expected \"preliminary\" or \"final\", found {other}"
            ));
            None
        }
    };
    let final_after = match v.get("final_after") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(t)) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.with_timezone(&chrono::Utc)),
            Err(e) => {
                problems.push(format!(
                    "`final_after`: `{t}` is not an RFC 3339 instant: {e}"
                ));
                None
            }
        },
        Some(other) => {
            problems.push(format!("`final_after`: expected a string, found {other}"));
            None
        }
    };
    let restated_from = match v.get("restated_from") {
        None | Some(serde_json::Value::Null) => None,
        Some(r) => match serde_json::from_value::<Restated>(r.clone()) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("`restated_from`: {e}"));
                None
            }
        },
    };
    (status, final_after, restated_from)
}

impl Recorded {
    /// Parse and check a manifest; every problem is named with its field
    /// path (`outputs[3].sha256: missing`), all of them at once.
    pub fn parse(bytes: &[u8]) -> Result<Recorded, Vec<String>> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| vec![format!("not JSON: {e}")])?;
        if !v.is_object() {
            return Err(vec![format!("expected a JSON object, found {}", kind(&v))]);
        }
        let mut problems = Vec::new();
        let mut f = Fields {
            problems: &mut problems,
        };
        let manifest_version = match f.field(&v, "", "manifest_version") {
            Some(n) => match n.as_u64() {
                Some(n) if MANIFEST_VERSIONS.contains(&n) => Some(n),
                _ => {
                    f.problems.push(format!(
                        "`manifest_version`: {n} is not a version this program knows (it knows {MANIFEST_VERSIONS:?})"
                    ));
                    None
                }
            },
            None => None,
        };
        let date = f.string(&v, "", "date").and_then(|d| {
            let parsed = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok();
            if parsed.is_none() {
                f.problems
                    .push(format!("`date`: expected YYYY-MM-DD, found `{d}`"));
            }
            parsed
        });
        let timezone = f.string(&v, "", "timezone").and_then(|z| {
            let parsed = z.parse::<chrono_tz::Tz>().ok();
            if parsed.is_none() {
                f.problems
                    .push(format!("`timezone`: `{z}` is not an IANA time zone"));
            }
            parsed
        });
        let config_digest = f.string(&v, "", "config_digest");
        let empty = serde_json::Value::Null;
        let inputs = match f.field(&v, "", "inputs") {
            Some(i) if i.is_object() => i,
            Some(other) => {
                f.problems.push(format!(
                    "`inputs`: expected an object, found {}",
                    kind(other)
                ));
                &empty
            }
            None => &empty,
        };
        let mut requests = Vec::new();
        let mut prices = None;
        let mut fx = None;
        let mut invoices = Vec::new();
        let mut history = Vec::new();
        let mut skipped = Vec::new();
        if inputs.is_object() {
            requests = f.requests(inputs);
            if let Some(p) = f.field(inputs, "inputs", "prices") {
                prices = f.table(p, "inputs.prices", false);
            }
            match f.field(inputs, "inputs", "fx") {
                Some(serde_json::Value::Null) | None => {}
                Some(o) => fx = f.table(o, "inputs.fx", false),
            }
            for (i, o) in f.array(inputs, "inputs", "invoices").iter().enumerate() {
                invoices.extend(f.table(o, &format!("inputs.invoices[{i}]"), true));
            }
            for (i, o) in f.array(inputs, "inputs", "history").iter().enumerate() {
                history.extend(f.table(o, &format!("inputs.history[{i}]"), false));
            }
            if manifest_version.is_none_or(|v| v >= 2) {
                skipped = f.skipped(inputs);
            }
        }
        let outputs = f.outputs(&v);
        let (status, final_after, restated_from) = standing(&v, &mut problems);
        match (
            manifest_version,
            date,
            timezone,
            config_digest,
            prices,
            problems.is_empty(),
        ) {
            (
                Some(manifest_version),
                Some(date),
                Some(timezone),
                Some(config_digest),
                Some(prices),
                true,
            ) => Ok(Recorded {
                manifest_version,
                date,
                timezone,
                config_digest,
                requests,
                prices,
                fx,
                invoices,
                history,
                skipped,
                outputs,
                status,
                final_after,
                restated_from,
            }),
            _ => Err(problems),
        }
    }
}
