//! The run manifest (`reports/date=D/manifest.json`): what a run read, what it
//! kept and dropped and why, how it priced, and what it wrote, with sizes,
//! etags and digests; enough to replay the run and to trust its outputs.
//! It is written last: a day without a manifest is not finished. Pure data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fx::ChosenRate;
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
    /// The day's figures at a glance (the report index lists them).
    pub headline: Headline,
    pub inputs: Inputs,
    pub rows: RowCounts,
    pub pricing: PricingFacts,
    pub fx: FxFacts,
    pub data_quality: DataQuality,
    /// Every object this run published (the manifest excepted), with digests.
    pub outputs: Vec<OutputObject>,
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
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Published {
    pub date: String,
    pub headline: Headline,
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
    /// Digest of the content, for tables read whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The partition a request-log object was listed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The adapter an invoice object was read with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
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
    /// The rollups of earlier days read (comparisons, month to date).
    pub history: Vec<InputObject>,
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
