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

use super::{Selection, compute};
use crate::config::Config;
use crate::error::{Error, Problems, Result};
use crate::lake::{Location, ObjectInfo, Stores, partition_dir};
use crate::manifest::{Recorded, RecordedRequest, RecordedTable, sha256};
use crate::reconcile::invoices::{Adapter, Format};
use chrono::NaiveDate;

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
    /// Input objects looked at.
    pub inputs: usize,
    /// Inputs that are not what the run read (size, etag, digest), or gone.
    pub changed_inputs: Vec<String>,
    /// Inputs that could not be compared with what the run read (the
    /// manifest recorded nothing that identifies their content): never
    /// counted as unchanged.
    pub unverified_inputs: Vec<String>,
    /// The config's digest differs from the run's.
    pub config_changed: Option<String>,
    /// Every output the manifest lists and every output the replay produced.
    pub outputs: Vec<OutputCheck>,
}

impl ReplayReport {
    /// At least one output was compared, and every output the manifest lists
    /// is byte-identical to what the replay produced, with none produced that
    /// it does not list. Changed inputs are reported either way (a price
    /// table that gained rows for later days changes no figure of this one).
    pub fn identical(&self) -> bool {
        !self.outputs.is_empty() && self.outputs.iter().all(|o| o.difference.is_none())
    }
}

fn bad(manifest: &Location, what: impl Into<String>) -> Error {
    Error::Replay {
        problems: Problems(vec![format!("{manifest}: {}", what.into())]),
    }
}

/// Read and check a published manifest: a manifest that is missing or
/// malformed in a field a replay relies on is an input error naming each
/// field.
async fn read_manifest(stores: &Stores, manifest: &Location) -> Result<Recorded> {
    let (_, bytes) = stores.get(manifest).await?;
    Recorded::parse(&bytes).map_err(|problems| Error::Replay {
        problems: Problems(
            problems
                .into_iter()
                .map(|p| format!("{manifest}: {p}"))
                .collect(),
        ),
    })
}

/// `date=YYYY-MM-DD` in a key.
fn date_in(key: &str) -> Option<NaiveDate> {
    key.split('/')
        .find_map(|seg| seg.strip_prefix("date="))
        .and_then(crate::fx::parse_iso_date)
}

/// The partition a recorded request object was listed under.
fn partition_of(o: &RecordedRequest, date: NaiveDate) -> NaiveDate {
    o.partition
        .as_deref()
        .and_then(date_in)
        .or_else(|| date_in(&o.key))
        .unwrap_or(date)
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

/// Compare a request object with what the manifest recorded: size, and
/// etag or version. Without an etag or version recorded, equal sizes do not
/// identify the content: the object is unverified. With a content digest
/// recorded and the digest of the object now (`content`: a local lake),
/// the content decides and the etag is not compared: a copied or restored
/// local lake has new etags for the same bytes.
fn compare_request(
    o: &RecordedRequest,
    now: &ObjectInfo,
    content: Option<&str>,
    report: &mut ReplayReport,
) {
    let mut diffs = Vec::new();
    if o.size != now.size {
        diffs.push(format!("size {} -> {}", o.size, now.size));
    }
    if let (Some(recorded), Some(content)) = (&o.content, content) {
        if recorded != content {
            diffs.push(format!("content {recorded} -> {content}"));
        }
        if !diffs.is_empty() {
            report
                .changed_inputs
                .push(format!("{}: {}", o.key, diffs.join(", ")));
        }
        return;
    }
    if let Some(etag) = &o.etag
        && Some(etag.as_str()) != now.e_tag.as_deref()
    {
        diffs.push(format!(
            "etag {etag} -> {}",
            now.e_tag.as_deref().unwrap_or("-")
        ));
    }
    if let Some(version) = &o.version
        && Some(version.as_str()) != now.version.as_deref()
    {
        diffs.push(format!(
            "version {version} -> {}",
            now.version.as_deref().unwrap_or("-")
        ));
    }
    if !diffs.is_empty() {
        report
            .changed_inputs
            .push(format!("{}: {}", o.key, diffs.join(", ")));
    } else if o.etag.is_none() && o.version.is_none() {
        report.unverified_inputs.push(format!(
            "{}: the manifest records neither etag nor version (size {} alone does not identify the content)",
            o.key, o.size
        ));
    }
}

/// Replay the day whose manifest is at `manifest`.
pub async fn replay(config: &Config, manifest: &Location) -> Result<ReplayReport> {
    let stores = Stores::new(config.s3.clone());
    let m = read_manifest(&stores, manifest).await?;
    let date = m.date;
    let mut config = config.clone();
    config.timezone = m.timezone;
    let lake = config.lake.clone();
    let at = |key: &str| {
        Location::parse(key, Some(&lake)).map_err(|e| bad(manifest, format!("key {key}: {e}")))
    };
    let mut report = ReplayReport {
        date: Some(date),
        ..ReplayReport::default()
    };
    if m.config_digest != config.digest {
        report.config_changed = Some(format!(
            "the run's config digest was {}, this config's is {}",
            m.config_digest, config.digest
        ));
    }

    // Request objects: size, etag and version as listed.
    let mut requests = Vec::new();
    for o in &m.requests {
        let loc = at(&o.key)?;
        report.inputs += 1;
        match stores.head(&loc).await? {
            None => report.changed_inputs.push(format!("{}: gone", o.key)),
            Some(now) => {
                let content = match (&o.content, loc.local_path()) {
                    (Some(recorded), Some(path)) => {
                        Some(crate::lake::file_digest_like(&path, recorded).await?)
                    }
                    _ => None,
                };
                compare_request(o, &now, content.as_deref(), &mut report);
                requests.push((loc, partition_of(o, date)));
            }
        }
    }
    // Whole-file inputs: their SHA-256 as read.
    let check_digest =
        async |o: &RecordedTable, report: &mut ReplayReport| -> Result<Option<Location>> {
            let loc = at(&o.key)?;
            report.inputs += 1;
            match stores.get_opt_info(&loc).await? {
                None => {
                    report.changed_inputs.push(format!("{}: gone", o.key));
                    Ok(None)
                }
                Some((_, bytes)) => {
                    let now = sha256(&bytes);
                    if now != o.sha256 {
                        report.changed_inputs.push(format!(
                            "{}: content changed ({} -> {now})",
                            o.key, o.sha256
                        ));
                    }
                    Ok(Some(loc))
                }
            }
        };
    let prices = check_digest(&m.prices, &mut report).await?;
    match &m.fx {
        Some(o) => {
            if let Some(loc) = check_digest(o, &mut report).await? {
                config.fx = loc;
            }
        }
        None => {
            if stores.exists(&config.fx).await? {
                report
                    .changed_inputs
                    .push(format!("{}: absent at the run, present now", config.fx));
            }
        }
    }
    let mut invoices = Vec::new();
    for o in &m.invoices {
        if let Some(loc) = check_digest(o, &mut report).await? {
            let recorded = o.adapter.as_deref().unwrap_or_default();
            let adapter = adapter_for(&config, &loc, recorded).ok_or_else(|| {
                bad(
                    manifest,
                    format!("`inputs.invoices` {}: unknown adapter `{recorded}`", o.key),
                )
            })?;
            invoices.push((loc, adapter));
        }
    }
    let mut history = Vec::new();
    for o in &m.history {
        if check_digest(o, &mut report).await?.is_some()
            && let Some(d) = date_in(&o.key)
            && !history.contains(&d)
        {
            history.push(d);
        }
    }
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
            history: Some(history),
            prices,
            run_id: None,
            skipped: Some(m.skipped.clone()),
            // The pages as published: preliminary or final then, and what
            // they restated.
            standing: crate::pipeline::settle::Standing::recorded(
                &crate::calendar::Day::new(m.date, m.timezone),
                config.late_days,
                &m,
            ),
        },
    )
    .await?;
    let mut produced: BTreeMap<String, &crate::deliver::Output> = computed
        .outputs
        .iter()
        .map(|o| (o.describe(&config.lake).key, o))
        .collect();
    for o in &m.outputs {
        let difference = match produced.remove(&o.key) {
            None => Some("listed in the manifest, not produced by the replay".to_string()),
            Some(out) if sha256(&out.bytes) == o.sha256 => None,
            Some(out) => Some(differences(&stores, &at(&o.key)?, &o.sha256, &out.bytes).await?),
        };
        report.outputs.push(OutputCheck {
            key: o.key.clone(),
            difference,
        });
    }
    for key in produced.into_keys() {
        report.outputs.push(OutputCheck {
            key,
            difference: Some("produced by the replay, not listed in the manifest".into()),
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
fn by_model(rows: &[crate::queries::rows::RollupDaily]) -> CostByModel {
    crate::reconcile::usage_of(rows)
        .into_iter()
        .map(|(k, u)| {
            let priced = u.requests > u.unpriced_requests;
            let cost = priced.then(|| {
                crate::money::rescale(u.cost, crate::reconcile::SCALE, crate::money::OUT_SCALE)
            });
            (k, (cost, u.unpriced_requests))
        })
        .collect()
}

/// What pricing `from..=to` with `prices` would change, against what was
/// published. Each day reads the inputs its manifest lists (or, without a
/// manifest, what a run would list now). Nothing is written. With workers,
/// [`super::days_in_flight`] days are computed at once; the lines come out
/// in date order either way.
pub async fn reprice(
    config: &Config,
    from: NaiveDate,
    to: NaiveDate,
    prices: &Location,
) -> Result<Vec<RepriceLine>> {
    use futures::{StreamExt, TryStreamExt};
    let stores = Stores::new(config.s3.clone());
    let dates: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
    let in_flight = if dates.len() > 1 {
        super::days_in_flight(config).await?
    } else {
        1
    };
    let days: Vec<Vec<RepriceLine>> = futures::stream::iter(dates)
        .map(|date| reprice_day(config, &stores, date, prices))
        .buffered(in_flight)
        .try_collect()
        .await?;
    Ok(days.into_iter().flatten().collect())
}

/// One day of [`reprice`]: its lines, by (provider, model).
async fn reprice_day(
    config: &Config,
    stores: &Stores,
    date: NaiveDate,
    prices: &Location,
) -> Result<Vec<RepriceLine>> {
    let reports = config.reports.join(&partition_dir(date));
    let mut sel = Selection {
        prices: Some(prices.clone()),
        // History does not change a day's cost.
        history: Some(Vec::new()),
        ..Selection::default()
    };
    let manifest = reports.join("manifest.json");
    if stores.exists(&manifest).await? {
        let m = read_manifest(stores, &manifest).await?;
        let mut requests = Vec::new();
        for o in &m.requests {
            let loc = Location::parse(&o.key, Some(&config.lake))
                .map_err(|e| bad(&manifest, format!("key {}: {e}", o.key)))?;
            requests.push((loc, partition_of(o, date)));
        }
        sel.requests = Some(requests);
    }
    let rollup = config
        .rollups
        .join("daily")
        .join(&partition_dir(date))
        .join("part-0.parquet");
    let before = match super::inputs::read_rollup(stores, &rollup, &mut Vec::new()).await? {
        Some((rows, _zone)) => by_model(&rows),
        None => BTreeMap::new(),
    };
    let computed = compute(config, date, &sel).await?;
    let after = by_model(&computed.results.rollup_daily.rows()?);
    let mut keys: Vec<&(String, String)> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .map(|k| {
            let (b, ub) = before.get(k).cloned().unwrap_or((None, 0));
            let (a, ua) = after.get(k).cloned().unwrap_or((None, 0));
            RepriceLine {
                date,
                provider: k.0.clone(),
                model: k.1.clone(),
                before: b,
                after: a,
                unpriced_before: ub,
                unpriced_after: ua,
            }
        })
        .collect())
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
