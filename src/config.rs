//! Configuration in two steps: raw TOML (serde, `deny_unknown_fields`
//! everywhere, so a typo is an error, not a silent default), then validation
//! into [`Config`], which reports every problem at once.
//!
//! Sources, later ones winning: built-in defaults, the TOML file, environment
//! variables `TOKENLEDGER_<SECTION>__<KEY>` (e.g. `TOKENLEDGER_RUN__TIMEZONE`),
//! command-line flags. Secrets never live in the file: S3 credentials come from
//! the standard AWS environment or from files named here (Kubernetes secrets).
//! This module reads the config file and secret files; it touches no storage.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Problems, Result};
use crate::lake::schema::{Col, ColumnMapping, IntTsUnit, Preset};
use crate::lake::{Location, S3Credentials, S3Options, Secret};
use crate::pricing::{AliasRule, AliasRules, ModelPattern};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "TOKENLEDGER_";
/// Variables with the prefix that are not config keys.
const ENV_RESERVED: [&str; 3] = [
    "TOKENLEDGER_CONFIG",
    "TOKENLEDGER_LOG",
    "TOKENLEDGER_EXPLAIN",
];

/// Default `run.duplicate_bucket_keys`: a bucket of 65536 trace ids (~140K
/// candidate rows, the whole of a 10M-row day's at 0.5% duplicates)
/// resolves with a working set well under 100 MiB; each bucket costs
/// ~0.05 s of planning and files whatever its size, so smaller buckets
/// only add time (4096 made a 10M-row day's duplicates pass 0.9-1.1 s
/// against 0.5-0.7 s at 16384, and 16384 0.60-0.66 s against 0.45-0.53 s
/// here). Days with more candidates are split, at most into
/// `lake::scan::MAX_BUCKETS`.
pub const DEFAULT_BUCKET_KEYS: usize = 65536;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub lake: RawLake,
    #[serde(default)]
    pub inputs: RawInputs,
    #[serde(default)]
    pub outputs: RawOutputs,
    #[serde(default)]
    pub run: RawRun,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub columns: RawColumns,
    #[serde(default)]
    pub pricing: RawPricing,
    #[serde(default)]
    pub quality: RawQuality,
    #[serde(default)]
    pub report: RawReport,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub mail: RawMail,
    #[serde(default)]
    pub reconcile: RawReconcile,
    #[serde(default)]
    pub anomaly: RawAnomaly,
    #[serde(default)]
    pub lease: RawLease,
    #[serde(default)]
    pub focus: RawFocus,
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    #[serde(default)]
    pub engine: crate::engine::RawEngine,
}

pub use crate::budget::{RawBudget, RawBudgetMonth, RawUsd};

pub use crate::anomaly::RawAnomaly;
pub use crate::reconcile::settings::{
    RawInvoiceSource, RawModelRule, RawReconcile, ReconcileConfig,
};
pub use crate::report::focus::{RawFocus, RawFocusAccount};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Where the stored reports can be read (links in mail), e.g.
    /// `https://reports.example.com/llm/reports/`.
    pub public_base_url: Option<String>,
}

pub use crate::report::alerts::{RawAlerts, RawModelThresholds};

pub use crate::deliver::mail::{RawAudience, RawMail, RawShowback, RawSmtp};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLake {
    /// Lake root: a local path, `file://` or `s3://bucket/prefix` URL.
    pub root: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInputs {
    pub requests: Option<String>,
    pub prices: Option<String>,
    pub fx: Option<String>,
    pub invoices: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputs {
    pub reports: Option<String>,
    pub rollups: Option<String>,
    pub incidents: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    /// IANA time zone of the report day.
    pub timezone: Option<String>,
    /// Days after its day a row may still arrive (SPEC 2, lateness).
    pub late_days: Option<i64>,
    /// Worker threads and query partitions (default: available cores).
    pub threads: Option<i64>,
    /// Memory for query operators: `auto` (60% of the container's cgroup
    /// limit, unbounded without one), `off`, or a size such as `400MiB`.
    pub memory_limit: Option<String>,
    /// Where sorts, joins and the duplicate pass spill (default: the
    /// system temporary directory, `TMPDIR`).
    pub spill_dir: Option<PathBuf>,
    /// Duplicate trace ids resolved at once (default 65536): the
    /// duplicates pass holds one bucket of candidates at a time.
    pub duplicate_bucket_keys: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Seconds one request to object storage may take (default 30).
    pub timeout_secs: Option<u64>,
    /// Seconds to wait for a connection (default 5).
    pub connect_timeout_secs: Option<u64>,
    /// Retries of a failed request (5xx, 429, resets, timeouts; default 10).
    pub max_retries: Option<u32>,
    /// Seconds after which a request is not retried any more (default 120).
    pub retry_timeout_secs: Option<u64>,
    #[serde(default)]
    pub s3: RawS3,
}

pub use crate::lake::lease::RawLease;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: Option<bool>,
    pub virtual_hosted_style: Option<bool>,
    /// Files holding credentials (e.g. a mounted Kubernetes secret). Without
    /// them, the standard AWS environment variables and credential chain apply.
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumns {
    /// `default` (SPEC names) or `otel_genai`.
    pub preset: Option<String>,
    /// Unit of an integer `ts` column: s, ms, us or ns.
    pub ts_unit: Option<String>,
    // Per-column source overrides: the source column (or dotted struct path)
    // of each normalized column.
    pub ts: Option<String>,
    pub trace_id: Option<String>,
    pub dept: Option<String>,
    pub project: Option<String>,
    pub task: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub route: Option<String>,
    pub region: Option<String>,
    pub latency_ms: Option<String>,
    pub error: Option<String>,
    pub cache_hit: Option<String>,
    pub citation_rate: Option<String>,
    pub human_reviewed: Option<String>,
    pub human_approved: Option<String>,
    pub input_tokens: Option<String>,
    pub output_tokens: Option<String>,
    pub total_tokens: Option<String>,
    pub cache_read_input_tokens: Option<String>,
    pub cache_creation_input_tokens: Option<String>,
    pub reasoning_output_tokens: Option<String>,
    pub cost_per_1k: Option<String>,
    pub cost_actual: Option<String>,
    pub currency: Option<String>,
}

impl RawColumns {
    /// The per-column overrides given, as (normalized name, source).
    pub fn overrides(&self) -> Vec<(&'static str, &str)> {
        [
            ("ts", &self.ts),
            ("trace_id", &self.trace_id),
            ("dept", &self.dept),
            ("project", &self.project),
            ("task", &self.task),
            ("provider", &self.provider),
            ("model", &self.model),
            ("route", &self.route),
            ("region", &self.region),
            ("latency_ms", &self.latency_ms),
            ("error", &self.error),
            ("cache_hit", &self.cache_hit),
            ("citation_rate", &self.citation_rate),
            ("human_reviewed", &self.human_reviewed),
            ("human_approved", &self.human_approved),
            ("input_tokens", &self.input_tokens),
            ("output_tokens", &self.output_tokens),
            ("total_tokens", &self.total_tokens),
            ("cache_read_input_tokens", &self.cache_read_input_tokens),
            (
                "cache_creation_input_tokens",
                &self.cache_creation_input_tokens,
            ),
            ("reasoning_output_tokens", &self.reasoning_output_tokens),
            ("cost_per_1k", &self.cost_per_1k),
            ("cost_actual", &self.cost_actual),
            ("currency", &self.currency),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|v| (name, v)))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    #[serde(default)]
    pub aliases: Vec<RawAlias>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlias {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub model_regex: Option<String>,
    pub price_provider: Option<String>,
    pub price_model: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuality {
    /// Largest share of the day's requests that may be unpriced (0..1).
    pub max_unpriced_share: Option<f64>,
    /// Largest share of the day's rows that may be rejected for a null in a
    /// required column (0..1). Default 0: any rejected row fails the gate.
    pub max_rejected_share: Option<f64>,
}

/// Flags from the command line that override the config, and where the
/// config file lives.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub lake: Option<String>,
    pub timezone: Option<String>,
    /// `--workers`: worker URLs, comma-separated (replaces `[engine]`'s).
    pub workers: Option<String>,
    /// Directory of the config file: a relative `lake.root` there is relative
    /// to it (a relative `--lake` is relative to the working directory).
    pub config_dir: Option<PathBuf>,
}

/// The validated configuration of a run.
#[derive(Debug, Clone)]
pub struct Config {
    pub lake: Location,
    pub requests: Location,
    pub prices: Location,
    pub fx: Location,
    pub invoices: Location,
    pub reports: Location,
    pub rollups: Location,
    /// `incidents/date=D/<id>.json` (high-severity anomalies).
    pub incidents: Location,
    pub webhook: Option<Webhook>,
    pub timezone: chrono_tz::Tz,
    pub late_days: u32,
    pub threads: usize,
    /// Bytes of memory for query operators (`None`: unbounded).
    pub memory_limit: Option<u64>,
    /// Spill directory (`None`: the system temporary directory).
    pub spill_dir: Option<PathBuf>,
    /// Duplicate trace ids per bucket of the duplicates pass (changes its
    /// memory, never its numbers: not in the digest).
    pub duplicate_bucket_keys: usize,
    pub lease: LeaseSettings,
    pub s3: S3Options,
    pub columns: ColumnMapping,
    pub aliases: AliasRules,
    pub quality: QualityGates,
    /// Public address of `reports/` (links in mail).
    pub public_base_url: Option<url::Url>,
    pub alerts: crate::report::alerts::AlertRules,
    pub mail: crate::deliver::mail::MailConfig,
    pub reconcile: ReconcileConfig,
    /// Billing accounts of the FOCUS export.
    pub focus: crate::report::focus::Accounts,
    pub anomaly: crate::anomaly::Settings,
    /// `[[budgets]]`, in the order written.
    pub budgets: Vec<crate::budget::Budget>,
    /// Build missing rollups of the anomaly window before a run.
    pub backfill_missing: bool,
    /// Where the heavy queries run (`[engine]`, `--workers`).
    pub engine: crate::engine::EngineSettings,
    /// Digest of the effective configuration (no secrets), for the manifest.
    pub digest: String,
}

/// How the day lease behaves: defined beside the lease.
pub use crate::lake::lease::LeaseSettings;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityGates {
    pub max_unpriced_share: Option<f64>,
    pub max_rejected_share: f64,
}

impl Config {
    /// Load from an optional TOML file, the process environment and flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut overrides = overrides.clone();
        if let Some(path) = file {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            overrides.config_dir = Some(std::path::absolute(dir).map_err(|e| Error::Io {
                what: format!("reading config file {}", path.display()),
                source: e,
            })?);
        }
        let overrides = &overrides;
        let (text, name) = match file {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|e| match e.kind() {
                    // A wrong path is a usage error (exit 2), not an outage.
                    std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::InvalidData => {
                        Error::Usage(format!("config file {}: {e}", path.display()))
                    }
                    _ => Error::Io {
                        what: format!("reading config file {}", path.display()),
                        source: e,
                    },
                })?,
                path.display().to_string(),
            ),
            None => (String::new(), "defaults".to_string()),
        };
        Self::from_sources(&text, &name, &env, overrides)
    }

    /// Build from TOML text, environment pairs and flags (no process state).
    pub fn from_sources(
        toml_text: &str,
        source_name: &str,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Config> {
        let mut value: toml::Table = toml::from_str(toml_text).map_err(|e| {
            let mut p = Problems::new();
            p.push(e.to_string().trim_end().to_string());
            Error::config(source_name, p)
        })?;
        let applied = apply_env(&mut value, env).map_err(|p| Error::config(source_name, p))?;
        // serde stops at the first unknown key or mistyped value: take each
        // one out and try again, so one `check` names every problem, then
        // validate what remains.
        let mut problems = Problems::new();
        let raw = loop {
            match RawConfig::deserialize(toml::Value::Table(value.clone())) {
                Ok(raw) => break Some(raw),
                Err(e) => {
                    let mut msg = e.to_string().trim_end().to_string();
                    let removed = problems.len() < 100 && remove_offender(&mut value, &msg);
                    if !applied.is_empty() {
                        msg.push_str(&format!(
                            " (environment overrides applied: {})",
                            applied.join(", ")
                        ));
                    }
                    problems.push(msg);
                    if !removed {
                        break None;
                    }
                }
            }
        };
        match raw.map(|raw| raw.validate(overrides)) {
            Some(Ok(config)) if problems.is_empty() => Ok(config),
            Some(Err(more)) => {
                problems.extend(more);
                Err(Error::config(source_name, problems))
            }
            _ => Err(Error::config(source_name, problems)),
        }
    }
}

/// Take out of `table` the key a deserialization error `msg` names (toml
/// ends it with ``in `section.key` ``): an unknown key itself, or the key of
/// a mistyped value. False when the message names nothing removable (a
/// missing required key, a mistyped value in an array of tables):
/// reporting stops there.
fn remove_offender(table: &mut toml::Table, msg: &str) -> bool {
    let path: Vec<&str> = match msg.rsplit_once("\nin `") {
        Some((_, rest)) => match rest.strip_suffix('`') {
            Some(p) if !p.contains(['[', '"', '\'']) => p.split('.').collect(),
            _ => return false,
        },
        None => Vec::new(),
    };
    let unknown = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(k, _)| k);
    let (parent, key): (&[&str], &str) = match (unknown, path.split_last()) {
        (Some(k), _) => (&path, k),
        (None, Some((k, parent))) if !msg.starts_with("missing field") => (parent, k),
        _ => return false,
    };
    remove_at(table, parent, key, unknown.is_some())
}

/// Remove `key` under the sections `parent`. An unknown key under an array
/// of tables (`[[budgets]]`, whose errors toml names without an index) is
/// taken out of each of its tables: no table of that kind may have it. A
/// mistyped value there is not (it would take the valid ones' too).
fn remove_at(table: &mut toml::Table, parent: &[&str], key: &str, unknown: bool) -> bool {
    let Some((first, rest)) = parent.split_first() else {
        return table.remove(key).is_some();
    };
    match table.get_mut(*first) {
        Some(toml::Value::Table(t)) => remove_at(t, rest, key, unknown),
        Some(toml::Value::Array(items)) if unknown => {
            let mut removed = false;
            for item in items {
                if let toml::Value::Table(t) = item {
                    removed |= remove_at(t, rest, key, unknown);
                }
            }
            removed
        }
        _ => false,
    }
}

/// Apply `TOKENLEDGER_SECTION__KEY=value` variables onto the TOML table.
/// Values are TOML scalars when they parse as one (`2`, `true`), else strings.
/// Returns the variables applied.
pub fn apply_env(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<String>, Problems> {
    let mut problems = Problems::new();
    let mut applied = Vec::new();
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_RESERVED.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let path: Vec<String> = key[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            problems.push(format!(
                "environment variable {key}: expected {ENV_PREFIX}<SECTION>__<KEY> (e.g. TOKENLEDGER_RUN__TIMEZONE)"
            ));
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table() && !v.is_array())
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        match set_path(table, &path, value) {
            Ok(()) => applied.push(key.clone()),
            Err(part) => problems.push(format!(
                "environment variable {key}: `{part}` is not a section"
            )),
        }
    }
    if problems.is_empty() {
        Ok(applied)
    } else {
        Err(problems)
    }
}

pub use crate::deliver::webhook::Webhook;

/// Set `path` (sections then key) in `table`; `Err(part)` names a path part
/// that exists but is not a section.
/// A size such as `512MiB`, `1.5GiB`, `400MB` or a number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// The memory limit of this process's cgroup: the smallest limit on its
/// cgroup and the cgroup's ancestors, v2 (`memory.max`) or v1
/// (`memory.limit_in_bytes`), found through `/proc/self/cgroup`.
pub fn cgroup_memory_limit() -> Option<u64> {
    let table = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroup_limit_in(&table, |p| std::fs::read_to_string(p).ok())
}

/// The CPU limit of this process's cgroup in thousandths of a core (a
/// Kubernetes `limits.cpu: 1500m` is 1500): the smallest quota on its cgroup
/// and the cgroup's ancestors, v2 (`cpu.max`: `quota period`, or `max`) or v1
/// (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, -1 for none).
pub fn cgroup_cpu_millis() -> Option<u64> {
    let table = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroup_cpu_in(&table, |p| std::fs::read_to_string(p).ok())
}

/// The worker threads a CPU limit of `millis` thousandths of a core pays
/// for: rounded up (1500m runs 2 threads that share 1.5 cores), at least 1.
pub fn threads_for_cpu_millis(millis: u64) -> usize {
    usize::try_from(millis.div_ceil(1000))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// [`cgroup_memory_limit`] over a `/proc/self/cgroup` text and a file reader.
fn cgroup_limit_in(table: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let mut best: Option<u64> = None;
    for (dir, v2) in cgroup_dirs(table, "memory") {
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        if let Some(text) = read(&format!("{dir}/{file}"))
            && let Ok(limit) = text.trim().parse::<u64>() // "max": none
            && limit < (1 << 50)
        // v1 reports "none" as a huge number
        {
            best = Some(best.map_or(limit, |b| b.min(limit)));
        }
    }
    best
}

/// [`cgroup_cpu_millis`] over a `/proc/self/cgroup` text and a file reader.
fn cgroup_cpu_in(table: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let millis = |quota: &str, period: &str| -> Option<u64> {
        let quota: u64 = quota.trim().parse().ok()?; // "max" or -1: none
        let period: u64 = period.trim().parse().ok()?;
        (period > 0 && quota > 0).then(|| (quota * 1000).div_ceil(period))
    };
    let mut best: Option<u64> = None;
    for (dir, v2) in cgroup_dirs(table, "cpu") {
        let found = if v2 {
            read(&format!("{dir}/cpu.max")).and_then(|text| {
                let mut parts = text.split_whitespace();
                millis(parts.next()?, parts.next().unwrap_or("100000"))
            })
        } else {
            match (
                read(&format!("{dir}/cpu.cfs_quota_us")),
                read(&format!("{dir}/cpu.cfs_period_us")),
            ) {
                (Some(q), Some(p)) => millis(&q, &p),
                _ => None,
            }
        };
        if let Some(m) = found {
            best = Some(best.map_or(m, |b| b.min(m)));
        }
    }
    best
}

/// The directories holding this process's cgroup files for `controller`
/// and those of every ancestor, each with whether it is cgroup v2 (unified)
/// or v1 (mounted per controller under `/sys/fs/cgroup/<controller>`).
fn cgroup_dirs(table: &str, controller: &str) -> Vec<(String, bool)> {
    let mut leaves: Vec<(String, bool)> = Vec::new();
    for line in table.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let path = path.trim_end_matches('/');
        if controllers.is_empty() {
            leaves.push((format!("/sys/fs/cgroup{path}"), true));
        } else if controllers.split(',').any(|c| c == controller) {
            leaves.push((format!("/sys/fs/cgroup/{controller}{path}"), false));
        }
    }
    // Inside a container's cgroup namespace the root is the container's own.
    leaves.push(("/sys/fs/cgroup".into(), true));
    leaves.push((format!("/sys/fs/cgroup/{controller}"), false));
    let mut dirs = Vec::new();
    for (mut dir, v2) in leaves {
        let floor = if v2 {
            "/sys/fs/cgroup".len()
        } else {
            "/sys/fs/cgroup/".len() + controller.len()
        };
        loop {
            dirs.push((dir.clone(), v2));
            match dir.rfind('/') {
                Some(i) if i >= floor => dir.truncate(i),
                _ => break,
            }
        }
    }
    dirs
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (key, sections) = path.split_last().expect("path has a key");
    let mut cur = table;
    for part in sections {
        cur = cur
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| part.clone())?;
    }
    cur.insert(key.clone(), value);
    Ok(())
}

fn read_secret(path: &Path, field: &str, problems: &mut Problems) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Some(Secret::new(s.trim().to_string())),
        Ok(_) => {
            problems.push(format!("storage.s3.{field}: {} is empty", path.display()));
            None
        }
        Err(e) => {
            problems.push(format!(
                "storage.s3.{field}: cannot read {}: {e}",
                path.display()
            ));
            None
        }
    }
}

/// `[storage]`: S3 options, credentials from files, retries.
fn validate_storage(st: &RawStorage, p: &mut Problems) -> S3Options {
    let s3raw = &st.s3;
    let key = s3raw
        .access_key_id_file
        .as_deref()
        .and_then(|f| read_secret(f, "access_key_id_file", p));
    let secret = s3raw
        .secret_access_key_file
        .as_deref()
        .and_then(|f| read_secret(f, "secret_access_key_file", p));
    let token = s3raw
        .session_token_file
        .as_deref()
        .and_then(|f| read_secret(f, "session_token_file", p));
    let credentials = match (key, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        (None, None) => None,
        _ => {
            if s3raw.access_key_id_file.is_some() != s3raw.secret_access_key_file.is_some() {
                p.push("storage.s3: access_key_id_file and secret_access_key_file go together");
            }
            None
        }
    };
    if let Some(ep) = &s3raw.endpoint {
        let shown = crate::lake::redact_userinfo(ep);
        match url::Url::parse(ep) {
            Err(_) => p.push(format!(
                "storage.s3.endpoint: `{shown}` is not a URL (e.g. http://minio:9000)"
            )),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => p.push(format!(
                "storage.s3.endpoint: `{shown}`: credentials in a URL are refused; give them as access_key_id_file and secret_access_key_file"
            )),
            Ok(_) => {}
        }
    }
    let secs = |v: Option<u64>, default: u64, field: &str, p: &mut Problems| match v {
        Some(0) => {
            p.push(format!("storage.{field}: must be at least 1 second"));
            std::time::Duration::from_secs(default)
        }
        v => std::time::Duration::from_secs(v.unwrap_or(default)),
    };
    let retry = crate::lake::RetryPolicy {
        timeout: secs(st.timeout_secs, 30, "timeout_secs", p),
        connect_timeout: secs(st.connect_timeout_secs, 5, "connect_timeout_secs", p),
        max_retries: st.max_retries.unwrap_or(10),
        retry_timeout: secs(st.retry_timeout_secs, 120, "retry_timeout_secs", p),
    };
    if retry.max_retries > 100 {
        p.push(format!(
            "storage.max_retries: {} is out of range 0..=100",
            retry.max_retries
        ));
    }
    S3Options {
        endpoint: s3raw.endpoint.clone(),
        region: s3raw.region.clone(),
        allow_http: s3raw.allow_http.unwrap_or(false),
        virtual_hosted_style: s3raw.virtual_hosted_style.unwrap_or(false),
        credentials,
        retry,
    }
}

/// `run.memory_limit`: `auto` (60% of the cgroup's limit), `off` or a size.
fn memory_limit(text: Option<&str>, p: &mut Problems) -> Option<u64> {
    match text.map(str::trim) {
        None | Some("auto") => cgroup_memory_limit().map(|limit| limit / 10 * 6),
        Some("off") => None,
        Some(text) => match parse_size(text) {
            Some(n) if n >= 32 << 20 => Some(n),
            Some(_) => {
                p.push(format!(
                    "run.memory_limit: `{text}` is below the 32MiB a day's queries need"
                ));
                None
            }
            None => {
                p.push(format!(
                    "run.memory_limit: `{text}` is not `auto`, `off` or a size such as `400MiB`"
                ));
                None
            }
        },
    }
}

/// `[columns]`: the preset, the integer timestamp unit, the overrides.
fn validate_columns(raw: &RawColumns, p: &mut Problems) -> ColumnMapping {
    let preset_name = raw.preset.as_deref().unwrap_or("default");
    let preset = Preset::parse(preset_name).unwrap_or_else(|| {
        p.push(format!(
            "columns.preset: `{preset_name}` is not a preset (default, otel_genai)"
        ));
        Preset::Default
    });
    let mut columns = ColumnMapping::preset(preset);
    if let Some(u) = &raw.ts_unit {
        match IntTsUnit::parse(u) {
            Some(unit) => columns.ts_unit = Some(unit),
            None => p.push(format!(
                "columns.ts_unit: `{u}` is not one of s, ms, us, ns"
            )),
        }
    }
    for (name, source) in raw.overrides() {
        let col = Col::from_name(name).expect("override names are column names");
        if source.trim().is_empty() {
            p.push(format!("columns.{name}: the source column name is empty"));
        } else {
            columns.map(col, source.trim().to_string());
        }
    }
    columns
}

/// `[[pricing.aliases]]`, in order.
fn validate_aliases(aliases: &[RawAlias], p: &mut Problems) -> Vec<AliasRule> {
    let mut rules = Vec::new();
    for (i, a) in aliases.iter().enumerate() {
        let at = format!("pricing.aliases[{i}]");
        let model = ModelPattern::validate(&at, &a.model, &a.model_regex, p);
        let price_model = match &a.price_model {
            Some(m) if !m.trim().is_empty() => Some(m.trim().to_string()),
            _ => {
                p.push(format!("{at}.price_model: required"));
                None
            }
        };
        if let (Some(model), Some(price_model)) = (model, price_model) {
            rules.push(AliasRule {
                provider: a.provider.clone(),
                model,
                price_provider: a.price_provider.clone(),
                price_model,
            });
        }
    }
    rules
}

/// `[quality]`: the data-quality gates.
fn validate_quality(raw: &RawQuality, p: &mut Problems) -> QualityGates {
    let share = |name: &str, v: Option<f64>, p: &mut Problems| -> Option<f64> {
        match v {
            Some(x) if (0.0..=1.0).contains(&x) => Some(x),
            Some(x) => {
                p.push(format!(
                    "quality.{name}: {x} is not a share between 0 and 1"
                ));
                None
            }
            None => None,
        }
    };
    QualityGates {
        max_unpriced_share: share("max_unpriced_share", raw.max_unpriced_share, p),
        max_rejected_share: share("max_rejected_share", raw.max_rejected_share, p).unwrap_or(0.0),
    }
}

impl RawConfig {
    /// Validate into a [`Config`], collecting every problem.
    pub fn validate(self, overrides: &Overrides) -> Result<Config, Problems> {
        let mut p = Problems::new();

        let lake = self.lake_root(overrides, &mut p);
        let mut loc = |field: &str, given: &Option<String>, default: &str| -> Option<Location> {
            let lake = lake.as_ref()?;
            let text = given.as_deref().unwrap_or(default);
            match Location::parse(text, Some(lake)) {
                Ok(l) => Some(l),
                Err(e) => {
                    p.push(format!("{field}: {e}"));
                    None
                }
            }
        };
        let requests = loc("inputs.requests", &self.inputs.requests, "requests");
        let prices = loc("inputs.prices", &self.inputs.prices, "prices.csv");
        let fx = loc("inputs.fx", &self.inputs.fx, "fx.csv");
        let invoices = loc("inputs.invoices", &self.inputs.invoices, "invoices");
        let reports = loc("outputs.reports", &self.outputs.reports, "reports");
        let rollups = loc("outputs.rollups", &self.outputs.rollups, "rollups");
        let incidents = loc("outputs.incidents", &self.outputs.incidents, "incidents");

        let (timezone, late_days, threads) = self.run_settings(overrides, &mut p);
        let s3 = validate_storage(&self.storage, &mut p);
        let memory_limit = memory_limit(self.run.memory_limit.as_deref(), &mut p);
        // Checked when a run creates its spill directory there (the path may
        // exist only in the container that runs the job).
        let spill_dir = self.run.spill_dir.clone();
        let duplicate_bucket_keys = match self
            .run
            .duplicate_bucket_keys
            .unwrap_or(DEFAULT_BUCKET_KEYS as i64)
        {
            n @ 1..=100_000_000 => n as usize,
            n => {
                p.push(format!(
                    "run.duplicate_bucket_keys: {n} is out of range 1..=100000000"
                ));
                DEFAULT_BUCKET_KEYS
            }
        };
        let lease = LeaseSettings::validate(&self.lease, &mut p);
        let engine = self.engine_settings(overrides, &mut p);

        let columns = validate_columns(&self.columns, &mut p);

        let rules = validate_aliases(&self.pricing.aliases, &mut p);

        let quality = validate_quality(&self.quality, &mut p);
        let public_base_url = self.report.public_base_url.as_deref().and_then(|u| {
            let u = if u.ends_with('/') {
                u.to_string()
            } else {
                format!("{u}/")
            };
            url::Url::parse(&u)
                .map_err(|e| p.push(format!("report.public_base_url: `{u}`: {e}")))
                .ok()
        });
        let alerts = crate::report::alerts::AlertRules::validate(&self.alerts, &mut p);
        let reconcile = match &invoices {
            Some(inv) => ReconcileConfig::validate(&self.reconcile, inv, &mut p),
            None => ReconcileConfig::default(),
        };
        let anomaly = crate::anomaly::Settings::validate(&self.anomaly, &mut p);
        let focus = crate::report::focus::Accounts::validate(&self.focus, &mut p);
        let budgets = crate::budget::validate(&self.budgets, &mut p);
        let webhook = Webhook::validate(
            self.anomaly.webhook_url.as_deref(),
            (
                self.anomaly.webhook_timeout_secs,
                self.anomaly.webhook_attempts,
                self.anomaly.webhook_budget_secs,
            ),
            &mut p,
        );
        let mail = match &lake {
            Some(lake) => crate::deliver::mail::MailConfig::validate(&self.mail, lake, &mut p),
            None => Default::default(),
        };

        if !p.is_empty() {
            return Err(p);
        }
        let (
            Some(lake),
            Some(requests),
            Some(prices),
            Some(fx),
            Some(invoices),
            Some(reports),
            Some(rollups),
            Some(timezone),
        ) = (
            lake, requests, prices, fx, invoices, reports, rollups, timezone,
        )
        else {
            return Err(p);
        };
        let mut config = Config {
            lake,
            requests,
            prices,
            fx,
            invoices,
            reports,
            rollups,
            timezone,
            late_days,
            threads,
            memory_limit,
            spill_dir,
            duplicate_bucket_keys,
            lease,
            s3,
            columns,
            aliases: AliasRules(rules),
            quality,
            public_base_url,
            alerts,
            mail,
            reconcile,
            focus,
            anomaly,
            budgets,
            backfill_missing: self.anomaly.backfill_missing.unwrap_or(true),
            engine,
            incidents: incidents.expect("the lake parsed, so did its paths"),
            webhook,
            digest: String::new(),
        };
        config.digest = config.compute_digest(&self.pricing, &self.reconcile);
        Ok(config)
    }

    /// `[engine]`, or `--workers` in its place.
    fn engine_settings(
        &self,
        overrides: &Overrides,
        p: &mut Problems,
    ) -> crate::engine::EngineSettings {
        let mut settings = crate::engine::EngineSettings::validate(&self.engine, p);
        if let Some(text) = &overrides.workers {
            match crate::engine::parse_workers(&crate::engine::split_list(text)) {
                Ok(urls) => {
                    settings.workers = urls;
                    settings.workers_dns = None;
                }
                Err(errs) => errs
                    .into_iter()
                    .for_each(|e| p.push(format!("--workers: {e}"))),
            }
        }
        settings
    }

    /// The lake root: `--lake`, or `lake.root` (relative to the config file).
    fn lake_root(&self, overrides: &Overrides, p: &mut Problems) -> Option<Location> {
        let root = match (&overrides.lake, &self.lake.root, &overrides.config_dir) {
            (Some(flag), _, _) => Some(Location::parse(flag, None)),
            (None, Some(text), Some(dir)) => Some(
                Location::from_local_path(dir).and_then(|base| Location::parse(text, Some(&base))),
            ),
            (None, Some(text), None) => Some(Location::parse(text, None)),
            (None, None, _) => None,
        };
        match root {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                p.push(format!("lake.root: {e}"));
                None
            }
            None => {
                p.push("lake.root: no lake given (pass --lake DIR|URL, set lake.root, or TOKENLEDGER_LAKE__ROOT)");
                None
            }
        }
    }

    /// `[run]`: the time zone (or `--tz`), late days and threads.
    fn run_settings(
        &self,
        overrides: &Overrides,
        p: &mut Problems,
    ) -> (Option<chrono_tz::Tz>, u32, usize) {
        let tz_text = overrides
            .timezone
            .clone()
            .or(self.run.timezone.clone())
            .unwrap_or_else(|| "UTC".into());
        let timezone = match tz_text.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                p.push(format!(
                    "run.timezone: `{tz_text}` is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)"
                ));
                None
            }
        };
        let late_days = match self.run.late_days.unwrap_or(1) {
            d @ 0..=31 => d as u32,
            d => {
                p.push(format!("run.late_days: {d} is out of range 0..=31"));
                1
            }
        };
        let threads = match self.run.threads {
            // The cores this process may use, and no more than its cgroup's
            // CPU limit pays for: a pod limited to 2 CPUs on a 64-core node
            // runs 2 threads, not 64 that the kernel throttles.
            None => {
                let cores = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2);
                cgroup_cpu_millis().map_or(cores, |m| cores.min(threads_for_cpu_millis(m)))
            }
            Some(n @ 1..=1024) => n as usize,
            Some(n) => {
                p.push(format!("run.threads: {n} is out of range 1..=1024"));
                1
            }
        };
        (timezone, late_days, threads)
    }
}

impl Config {
    /// A digest of everything that can change the numbers (not secrets).
    fn compute_digest(&self, pricing: &RawPricing, reconcile: &RawReconcile) -> String {
        let mut view = serde_json::json!({
            "requests": self.requests.as_str(),
            "prices": self.prices.as_str(),
            "fx": self.fx.as_str(),
            "timezone": self.timezone.name(),
            "late_days": self.late_days,
            "columns": self.columns,
            "aliases": pricing.aliases,
            "quality": self.quality,
            "invoices": self.invoices.as_str(),
            "reconcile": reconcile,
            "anomaly": format!("{:?}", self.anomaly),
            "focus": format!("{:?}", self.focus),
        });
        if !self.budgets.is_empty() {
            // Only when there are budgets: a config without any keeps the
            // digest it had before budgets existed.
            view["budgets"] = serde_json::json!(format!("{:?}", self.budgets));
        }
        let mut h = Sha256::new();
        h.update(view.to_string().as_bytes());
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// A config for a lake in the default layout (convention over configuration).
    pub fn for_lake(lake: &str) -> Result<Config> {
        Self::from_sources(
            "",
            "defaults",
            &[],
            &Overrides {
                lake: Some(lake.to_string()),
                ..Overrides::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    /// A file reader over fixed (path, content) pairs: a cgroup tree.
    fn files(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |p: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == p)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn cgroup_limits_are_found_for_v1_and_v2_and_the_smallest_wins() {
        use super::cgroup_limit_in;
        // v2: the pod's limit on a parent is smaller than the container's.
        let v2 = "0::/kubepods/pod1/ctr\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/kubepods/pod1/ctr/memory.max",
                "1073741824\n",
            ),
            ("/sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n"),
            ("/sys/fs/cgroup/kubepods/memory.max", "max\n"),
        ]);
        assert_eq!(cgroup_limit_in(v2, read), Some(536870912));
        // v1 with the memory controller among others; no limit is "none".
        let v1 = "4:memory:/process_api/abc\n3:cpuset:/\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "536870912",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712",
            ),
        ]);
        assert_eq!(cgroup_limit_in(v1, read), Some(536870912));
        assert_eq!(cgroup_limit_in("0::/\n", files(&[])), None);
    }

    #[test]
    fn cgroup_cpu_limits_set_the_thread_count() {
        use super::{cgroup_cpu_in, threads_for_cpu_millis};
        // v2: `limits.cpu: 1500m` on the container; the pod's parent has none.
        let v2 = "0::/kubepods/pod1/ctr\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max",
                "150000 100000\n",
            ),
            ("/sys/fs/cgroup/kubepods/pod1/cpu.max", "max 100000\n"),
        ]);
        assert_eq!(cgroup_cpu_in(v2, read), Some(1500));
        assert_eq!(threads_for_cpu_millis(1500), 2);
        // v1: quota -1 is none; the parent's 2 cores win over none.
        let v1 = "5:cpu,cpuacct:/kubepods/pod1/ctr\n4:memory:/x\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/cpu/kubepods/pod1/ctr/cpu.cfs_quota_us",
                "-1",
            ),
            (
                "/sys/fs/cgroup/cpu/kubepods/pod1/ctr/cpu.cfs_period_us",
                "100000",
            ),
            (
                "/sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_quota_us",
                "200000",
            ),
            (
                "/sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_period_us",
                "100000",
            ),
        ]);
        assert_eq!(cgroup_cpu_in(v1, read), Some(2000));
        assert_eq!(threads_for_cpu_millis(2000), 2);
        // A quarter core still runs one thread; no limit anywhere is None.
        assert_eq!(threads_for_cpu_millis(250), 1);
        assert_eq!(
            cgroup_cpu_in("0::/\n", files(&[("/sys/fs/cgroup/cpu.max", "max 100000")])),
            None
        );
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        use super::parse_size;
        assert_eq!(parse_size("400MiB"), Some(400 << 20));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("512 MB"), Some(512_000_000));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("12XB"), None);
    }

    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(toml, "test.toml", &env, &Overrides::default())
    }

    #[test]
    fn every_problem_of_a_config_is_reported_at_once() {
        // Two unknown keys in two sections, a top-level one, a mistyped value
        // and a value only validation rejects: five problems, one error.
        let err = load(
            "bogus = 1\n[lake]\nroot = \"/l\"\n[run]\nthreads = \"x\"\ntimezone = \"Mars/Olympus\"\nlate = 2\n\
             [mail]\nfrm = \"a@b.c\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "unknown field `bogus`",
            "unknown field `frm`",
            "in `mail`",
            "unknown field `late`",
            "in `run.threads`",
            "run.timezone: `Mars/Olympus` is not an IANA time zone",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
        assert_eq!(err.matches("\n  - ").count(), 5, "{err}");
    }

    #[test]
    fn defaults_follow_the_lake_layout() {
        let c = load("[lake]\nroot = \"s3://b/lake\"\n", &[]).unwrap();
        assert_eq!(c.requests.as_str(), "s3://b/lake/requests");
        assert_eq!(c.prices.as_str(), "s3://b/lake/prices.csv");
        assert_eq!(c.reports.as_str(), "s3://b/lake/reports");
        assert_eq!(c.timezone, chrono_tz::UTC);
        assert_eq!(c.late_days, 1);
        assert_eq!(c.quality.max_rejected_share, 0.0);
    }

    #[test]
    fn inputs_can_live_elsewhere() {
        let c = load(
            "[lake]\nroot = \"/data/lake\"\n[inputs]\nprices = \"s3://finance/prices/v3.parquet\"\nrequests = \"raw/requests\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.prices.as_str(), "s3://finance/prices/v3.parquet");
        assert_eq!(c.requests.as_str(), "file:///data/lake/raw/requests");
    }

    #[test]
    fn a_relative_root_in_a_file_is_relative_to_the_file() {
        let env: Vec<(String, String)> = Vec::new();
        let over = Overrides {
            config_dir: Some(PathBuf::from("/etc/tokenledger")),
            ..Overrides::default()
        };
        let c = Config::from_sources("[lake]\nroot = \"lake\"\n", "x", &env, &over).unwrap();
        assert_eq!(c.lake.as_str(), "file:///etc/tokenledger/lake");
        let flag = Overrides {
            lake: Some("/data".into()),
            ..over
        };
        let c = Config::from_sources("[lake]\nroot = \"lake\"\n", "x", &env, &flag).unwrap();
        assert_eq!(c.lake.as_str(), "file:///data");
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tokenledger.toml");
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert!(
            c.lake.as_str().ends_with("/config/example-lake"),
            "{}",
            c.lake
        );
        assert_eq!(c.aliases.0.len(), 4);
        let t = c.aliases.resolve("google", "gemini-2.5-flash");
        assert_eq!(
            (t.provider.as_str(), t.model.as_str()),
            ("gemini", "gemini/gemini-2.5-flash")
        );
        let t = c.aliases.resolve("openai", "gpt-4o-2024-08-06");
        assert_eq!(t.model, "gpt-4o");
        let t = c
            .aliases
            .resolve("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(t.provider, "bedrock_converse");
    }

    #[test]
    fn environment_overrides_keys() {
        let c = load(
            "[lake]\nroot = \"/l\"\n[run]\ntimezone = \"UTC\"\n",
            &[
                ("TOKENLEDGER_RUN__TIMEZONE", "Europe/Berlin"),
                ("TOKENLEDGER_RUN__LATE_DAYS", "2"),
                ("TOKENLEDGER_CONFIG", "/ignored.toml"),
            ],
        )
        .unwrap();
        assert_eq!(c.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(c.late_days, 2);
    }

    #[test]
    fn a_typo_is_an_error_naming_the_field() {
        let err = load("[run]\ntimezon = \"UTC\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `timezon`"), "{err}");
        let err = load("[columns]\nmodle = \"m\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `modle`, expected one of"),
            "{err}"
        );
        let err = load(
            "[lake]\nroot=\"/l\"\n",
            &[("TOKENLEDGER_RUN__LATEDAYS", "2")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown field `latedays`") && err.contains("TOKENLEDGER_RUN__LATEDAYS"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load(
            "[lake]\nroot = \"gs://x\"\n[run]\ntimezone = \"Mars/Olympus\"\nlate_days = 99\n\
             [columns]\npreset = \"nope\"\nmodel = \" \"\n\
             [[pricing.aliases]]\nmodel = \"a\"\nmodel_regex = \"b\"\nprice_model = \"c\"\n\
             [[pricing.aliases]]\nmodel_regex = \"(\"\nprice_model = \"c\"\n\
             [quality]\nmax_unpriced_share = 2.0\n",
            &[],
        )
        .unwrap_err();
        let Error::Config { problems, .. } = &err else {
            panic!("{err}")
        };
        let all = problems.to_string();
        for needle in [
            "lake.root: `gs://x`: scheme `gs` is not supported",
            "run.timezone: `Mars/Olympus`",
            "run.late_days: 99",
            "columns.preset: `nope`",
            "columns.model: the source column name is empty",
            "pricing.aliases[0]: give exactly one of",
            "pricing.aliases[1].model_regex",
            "quality.max_unpriced_share: 2",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        assert_eq!(problems.len(), 8, "{all}");
        assert_eq!(err.kind(), crate::error::ExitKind::Usage);
    }

    #[test]
    fn otel_preset_and_overrides() {
        let c = load("[lake]\nroot=\"/l\"\n[columns]\npreset = \"otel_genai\"\nmodel = \"gen_ai.response.model\"\n", &[]).unwrap();
        assert_eq!(c.columns.source(Col::Model), "gen_ai.response.model");
        assert_eq!(c.columns.source(Col::Provider), "gen_ai.provider.name");
        assert_eq!(c.columns.ts_unit, Some(IntTsUnit::Ns));
    }

    #[test]
    fn secrets_come_from_files_and_stay_out_of_the_digest() {
        let dir = std::env::temp_dir().join(format!("tl-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k"), "AKIAEXAMPLE\n").unwrap();
        std::fs::write(dir.join("s"), "very-secret-value\n").unwrap();
        std::fs::write(dir.join("s2"), "another-secret-value\n").unwrap();
        let toml = |secret: &str, root: &str| {
            format!(
                "[lake]\nroot=\"{root}\"\n[storage.s3]\naccess_key_id_file=\"{0}/k\"\nsecret_access_key_file=\"{0}/{secret}\"\n",
                dir.display()
            )
        };
        let c = load(&toml("s", "s3://b"), &[]).unwrap();
        let creds = c.s3.credentials.as_ref().unwrap();
        assert_eq!(creds.secret_access_key.expose(), "very-secret-value");
        assert!(!format!("{c:?}").contains("very-secret-value"));
        // Another secret's content: the same digest (a key rotation does not
        // make every replay report a changed config) ...
        let rotated = load(&toml("s2", "s3://b"), &[]).unwrap();
        assert_eq!(
            rotated
                .s3
                .credentials
                .as_ref()
                .unwrap()
                .secret_access_key
                .expose(),
            "another-secret-value"
        );
        assert_eq!(rotated.digest, c.digest);
        // ... while a setting that is not secret changes it.
        let elsewhere = load(&toml("s", "s3://other"), &[]).unwrap();
        assert_ne!(elsewhere.digest, c.digest);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
