//! Audit: `replay` a published day from its manifest, and `reprice` past
//! days with another price table. Both compute with [`super::compute`] and
//! write nothing.
//!
//! A replay reads exactly the objects the manifest lists (never a fresh
//! listing: a late file that arrived since must not change the answer),
//! verifies each against the size, etag and digest recorded, recomputes, and
//! compares every output with the digest the manifest recorded; for a CSV that
//! differs it names the cells. A reprice computes each day with the new price
//! table from the inputs its manifest lists and compares the cost by provider
//! and model with the day's published rollup.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;

use super::{Selection, compute};
use crate::config::Config;
use crate::error::{Error, Problems, Result};
use crate::lake::{Location, Stores, partition_dir};
use crate::manifest::sha256;
use crate::reconcile::invoices::{Adapter, Format};

/// One output of a replayed day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputCheck {
    pub key: String,
    /// `None` when byte-identical; else what differs.
    pub difference: Option<String>,
}

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub date: Option<NaiveDate>,
    /// Input objects verified.
    pub inputs: usize,
    /// Inputs that are not what the run read (size, etag, digest), or gone.
    pub changed_inputs: Vec<String>,
    /// The config's digest differs from the run's.
    pub config_changed: Option<String>,
    pub outputs: Vec<OutputCheck>,
}

impl ReplayReport {
    /// Every output byte-identical to what the manifest recorded (changed
    /// inputs are reported either way: a price table that gained rows for
    /// later days changes no figure of this one).
    pub fn identical(&self) -> bool {
        self.outputs.iter().all(|o| o.difference.is_none())
    }
}

fn bad(manifest: &Location, what: impl Into<String>) -> Error {
    Error::Replay {
        problems: Problems(vec![format!("{manifest}: {}", what.into())]),
    }
}

fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// `date=YYYY-MM-DD` in a key.
fn date_in(key: &str) -> Option<NaiveDate> {
    key.split('/')
        .find_map(|seg| seg.strip_prefix("date="))
        .and_then(crate::fx::parse_iso_date)
}

/// The adapter a recorded invoice object is read with: the configured source
/// holding it (its provider and filters), else the bare adapter it was read with.
fn adapter_for(config: &Config, loc: &Location, recorded: &str) -> Option<Adapter> {
    config
        .reconcile
        .sources
        .iter()
        .find(|(src, a)| {
            a.format.name() == recorded
                && (loc == src
                    || loc
                        .as_str()
                        .starts_with(&format!("{}/", src.as_str().trim_end_matches('/'))))
        })
        .map(|(_, a)| a.clone())
        .or_else(|| Format::parse(recorded).map(Adapter::new))
}

/// Replay the day whose manifest is at `manifest`.
pub async fn replay(config: &Config, manifest: &Location) -> Result<ReplayReport> {
    let stores = Stores::new(config.s3.clone());
    let (_, bytes) = stores.get(manifest).await?;
    let m: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(manifest, format!("not a manifest: {e}")))?;
    let date = str_of(&m, "date")
        .and_then(crate::fx::parse_iso_date)
        .ok_or_else(|| bad(manifest, "no `date`"))?;
    let zone: chrono_tz::Tz = str_of(&m, "timezone")
        .and_then(|z| z.parse().ok())
        .ok_or_else(|| bad(manifest, "no valid `timezone`"))?;
    let mut config = config.clone();
    config.timezone = zone;
    let lake = config.lake.clone();
    let at = |key: &str| {
        Location::parse(key, Some(&lake)).map_err(|e| bad(manifest, format!("key {key}: {e}")))
    };
    let inputs = m
        .get("inputs")
        .ok_or_else(|| bad(manifest, "no `inputs`"))?;
    let mut report = ReplayReport {
        date: Some(date),
        ..ReplayReport::default()
    };
    if let Some(digest) = str_of(&m, "config_digest")
        && digest != config.digest
    {
        report.config_changed = Some(format!(
            "the run's config digest was {digest}, this config's is {}",
            config.digest
        ));
    }

    // Request objects: size, etag and version as listed.
    let mut requests = Vec::new();
    for o in inputs
        .get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key =
            str_of(o, "key").ok_or_else(|| bad(manifest, "a request object without `key`"))?;
        let loc = at(key)?;
        let partition = str_of(o, "partition")
            .and_then(date_in)
            .or_else(|| date_in(key))
            .unwrap_or(date);
        report.inputs += 1;
        match stores.head(&loc).await? {
            None => report.changed_inputs.push(format!("{key}: gone")),
            Some(now) => {
                let mut diffs = Vec::new();
                let size = o.get("size").and_then(Value::as_u64);
                if size != Some(now.size) {
                    diffs.push(format!(
                        "size {} -> {}",
                        size.map_or("?".into(), |s| s.to_string()),
                        now.size
                    ));
                }
                let etag = str_of(o, "etag");
                if etag.is_some() && etag != now.e_tag.as_deref() {
                    diffs.push(format!(
                        "etag {} -> {}",
                        etag.unwrap_or("-"),
                        now.e_tag.as_deref().unwrap_or("-")
                    ));
                }
                let version = str_of(o, "version");
                if version.is_some() && version != now.version.as_deref() {
                    diffs.push(format!(
                        "version {} -> {}",
                        version.unwrap_or("-"),
                        now.version.as_deref().unwrap_or("-")
                    ));
                }
                if !diffs.is_empty() {
                    report
                        .changed_inputs
                        .push(format!("{key}: {}", diffs.join(", ")));
                }
                requests.push((loc, partition));
            }
        }
    }
    // Whole-file inputs: their SHA-256 as read.
    let check_digest = async |o: &Value, report: &mut ReplayReport| -> Result<Option<Location>> {
        let key = str_of(o, "key").ok_or_else(|| bad(manifest, "an input object without `key`"))?;
        let loc = at(key)?;
        report.inputs += 1;
        match stores.get_opt_info(&loc).await? {
            None => {
                report.changed_inputs.push(format!("{key}: gone"));
                Ok(None)
            }
            Some((_, bytes)) => {
                let now = sha256(&bytes);
                if let Some(was) = str_of(o, "sha256")
                    && was != now
                {
                    report
                        .changed_inputs
                        .push(format!("{key}: content changed ({was} -> {now})"));
                }
                Ok(Some(loc))
            }
        }
    };
    let prices = match inputs.get("prices") {
        Some(o) => check_digest(o, &mut report).await?,
        None => return Err(bad(manifest, "no price table recorded")),
    };
    match inputs.get("fx") {
        Some(o) if !o.is_null() => {
            if let Some(loc) = check_digest(o, &mut report).await?
                && loc != config.fx
            {
                config.fx = loc;
            }
        }
        _ => {
            if stores.exists(&config.fx).await? {
                report
                    .changed_inputs
                    .push(format!("{}: absent at the run, present now", config.fx));
            }
        }
    }
    let mut invoices = Vec::new();
    for o in inputs
        .get("invoices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(loc) = check_digest(o, &mut report).await? {
            let recorded = str_of(o, "adapter").unwrap_or("normalized");
            let adapter = adapter_for(&config, &loc, recorded)
                .ok_or_else(|| bad(manifest, format!("unknown adapter `{recorded}`")))?;
            invoices.push((loc, adapter));
        }
    }
    let mut history = Vec::new();
    for o in inputs
        .get("history")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if check_digest(o, &mut report).await?.is_some()
            && let Some(d) = str_of(o, "key").and_then(date_in)
            && !history.contains(&d)
        {
            history.push(d);
        }
    }
    // Manifests written before rollups were recorded read the usual window.
    let history = inputs.get("history").map(|_| history);
    if requests.is_empty() {
        return Err(bad(
            manifest,
            "no request object can be read: nothing to replay",
        ));
    }

    let computed = compute(
        &config,
        date,
        &Selection {
            requests: Some(requests),
            invoices: Some(invoices),
            history,
            prices,
            run_id: None,
        },
    )
    .await?;
    let now: BTreeMap<String, &crate::deliver::Output> = computed
        .outputs
        .iter()
        .map(|o| (o.describe(&config.lake).key, o))
        .collect();
    for o in m
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(key), Some(was)) = (str_of(o, "key"), str_of(o, "sha256")) else {
            continue;
        };
        let difference = match now.get(key) {
            None => Some("not produced by the replay".to_string()),
            Some(out) if sha256(&out.bytes) == was => None,
            Some(out) => Some(differences(&stores, &at(key)?, was, &out.bytes).await?),
        };
        report.outputs.push(OutputCheck {
            key: key.to_string(),
            difference,
        });
    }
    Ok(report)
}

/// What differs between the published object (if it is still the one the
/// manifest recorded) and the replayed bytes: cells for CSVs.
async fn differences(
    stores: &Stores,
    loc: &Location,
    recorded: &str,
    replayed: &[u8],
) -> Result<String> {
    let Some((_, stored)) = stores.get_opt_info(loc).await? else {
        return Ok("differs (the published object is gone; digests only)".into());
    };
    if sha256(&stored) != recorded {
        return Ok("differs (the published object was replaced since; digests only)".into());
    }
    if !loc.file_name().ends_with(".csv") {
        return Ok(format!(
            "differs ({} bytes published, {} replayed)",
            stored.len(),
            replayed.len()
        ));
    }
    Ok(csv_cells(&stored, replayed))
}

/// Cell by cell, rows by position (outputs are ordered): at most 20 named.
pub fn csv_cells(published: &[u8], replayed: &[u8]) -> String {
    let rows = |b: &[u8]| -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(b)
            .records()
            .filter_map(|r| r.ok())
            .map(|r| r.iter().map(str::to_string).collect())
            .collect()
    };
    let (a, b) = (rows(published), rows(replayed));
    let header = a.first().cloned().unwrap_or_default();
    let mut cells = Vec::new();
    let mut count = 0;
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => {
                for j in 0..x.len().max(y.len()) {
                    let (u, v) = (
                        x.get(j).map_or("", String::as_str),
                        y.get(j).map_or("", String::as_str),
                    );
                    if u != v {
                        count += 1;
                        if cells.len() < 20 {
                            let col = header
                                .get(j)
                                .map_or(format!("column {}", j + 1), String::clone);
                            cells.push(format!(
                                "line {} {col}: published `{u}`, replayed `{v}`",
                                i + 1
                            ));
                        }
                    }
                }
            }
            (Some(_), None) => {
                count += 1;
                cells.push(format!("line {}: published, not replayed", i + 1));
            }
            (None, Some(_)) => {
                count += 1;
                cells.push(format!("line {}: replayed, not published", i + 1));
            }
            (None, None) => {}
        }
    }
    format!("{count} cell(s) differ: {}", cells.join("; "))
}

/// One (day, provider, model) of a reprice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepriceLine {
    pub date: NaiveDate,
    pub provider: String,
    pub model: String,
    /// USD at 6 decimals, from the published rollup (`None`: none published
    /// or nothing priced).
    pub before: Option<i128>,
    pub after: Option<i128>,
    pub unpriced_before: i64,
    pub unpriced_after: i64,
}

/// Cost (6 decimals; `None` when nothing was priced) and unpriced requests
/// by (provider, model).
type CostByModel = BTreeMap<(String, String), (Option<i128>, i64)>;

/// Cost and unpriced requests by (provider, model) of a rollup.
fn by_model(batches: &[arrow::array::RecordBatch]) -> Result<CostByModel> {
    let usage = crate::reconcile::usage_of(batches)?;
    Ok(usage
        .into_iter()
        .map(|(k, u)| {
            let priced = u.requests > u.unpriced_requests;
            let cost = priced.then(|| {
                crate::money::rescale(u.cost, crate::reconcile::SCALE, crate::money::OUT_SCALE)
            });
            (k, (cost, u.unpriced_requests))
        })
        .collect())
}

/// What pricing `from..=to` with `prices` would change, against what was
/// published. Each day reads the inputs its manifest lists (or, without a
/// manifest, what a run would list now). Nothing is written.
pub async fn reprice(
    config: &Config,
    from: NaiveDate,
    to: NaiveDate,
    prices: &Location,
) -> Result<Vec<RepriceLine>> {
    let stores = Stores::new(config.s3.clone());
    let mut out = Vec::new();
    for date in from.iter_days().take_while(|d| *d <= to) {
        let reports = config.reports.join(&partition_dir(date));
        let mut sel = Selection {
            prices: Some(prices.clone()),
            // History does not change a day's cost.
            history: Some(Vec::new()),
            ..Selection::default()
        };
        if let Some(bytes) = stores.get_opt(&reports.join("manifest.json")).await? {
            let m: Value = serde_json::from_slice(&bytes).map_err(|e| {
                bad(
                    &reports.join("manifest.json"),
                    format!("not a manifest: {e}"),
                )
            })?;
            let mut requests = Vec::new();
            for o in m
                .pointer("/inputs/requests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(key) = str_of(o, "key") {
                    let loc =
                        Location::parse(key, Some(&config.lake)).map_err(|e| bad(&reports, e))?;
                    let partition = str_of(o, "partition")
                        .and_then(date_in)
                        .or_else(|| date_in(key))
                        .unwrap_or(date);
                    requests.push((loc, partition));
                }
            }
            sel.requests = Some(requests);
        }
        let rollup = config
            .rollups
            .join("daily")
            .join(&partition_dir(date))
            .join("part-0.parquet");
        let before = match stores.get_opt(&rollup).await? {
            Some(bytes) => {
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .and_then(|b| b.build())
                        .map_err(|e| Error::CorruptInput {
                            key: rollup.to_string(),
                            message: e.to_string(),
                        })?;
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::CorruptInput {
                        key: rollup.to_string(),
                        message: e.to_string(),
                    })?;
                by_model(&batches)?
            }
            None => BTreeMap::new(),
        };
        let computed = compute(config, date, &sel).await?;
        let after = by_model(&computed.results.get("rollup_daily")?.1)?;
        let mut keys: Vec<&(String, String)> = before.keys().chain(after.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (b, ub) = before.get(k).cloned().unwrap_or((None, 0));
            let (a, ua) = after.get(k).cloned().unwrap_or((None, 0));
            out.push(RepriceLine {
                date,
                provider: k.0.clone(),
                model: k.1.clone(),
                before: b,
                after: a,
                unpriced_before: ub,
                unpriced_after: ua,
            });
        }
    }
    Ok(out)
}

/// Reprice lines as CSV: `date, provider, model, cost_before_usd,
/// cost_after_usd, delta_usd, delta_pct, unpriced_before, unpriced_after`.
pub fn reprice_csv(lines: &[RepriceLine]) -> Vec<u8> {
    let money = |v: Option<i128>| {
        v.map_or(String::new(), |v| {
            crate::money::format_scaled(v, crate::money::OUT_SCALE)
        })
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let _ = w.write_record([
        "date",
        "provider",
        "model",
        "cost_before_usd",
        "cost_after_usd",
        "delta_usd",
        "delta_pct",
        "unpriced_before",
        "unpriced_after",
    ]);
    for l in lines {
        let delta = match (l.before, l.after) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        };
        let pct = match (l.before, delta) {
            (Some(b), Some(d)) if b != 0 => crate::report::format_real(d as f64 * 100.0 / b as f64),
            _ => String::new(),
        };
        let _ = w.write_record([
            l.date.to_string(),
            crate::report::guard_formula(&l.provider).into_owned(),
            crate::report::guard_formula(&l.model).into_owned(),
            money(l.before),
            money(l.after),
            money(delta),
            pct,
            l.unpriced_before.to_string(),
            l.unpriced_after.to_string(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}
