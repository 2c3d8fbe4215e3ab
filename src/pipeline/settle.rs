//! Late rows restate their day. A day's rows may land up to `run.late_days`
//! days after it (SPEC 2), after the nightly run reported it. Each run
//! therefore re-checks the `late_days` days before its own: where objects
//! in a day's partitions are new or changed since its manifest, the day is
//! recomputed, and if its figures moved it is republished as a restatement
//! (manifest `restated_from`: the run it replaces and its headline), with
//! its rollups, so the month to date and the anomaly baselines follow.
//! Nothing new, nothing recomputed; figures unchanged, nothing rewritten.
//! A day is `preliminary` while its lateness window is open and `final`
//! after; its pages say which.
//!
//! This module decides and orchestrates; computing and publishing are
//! `pipeline::compute` and `deliver::publish`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use tracing::{info, warn};

use super::{Selection, compute};
use crate::calendar::Day;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lake::{Location, Stores, partition_dir};
use crate::manifest::{Published, Recorded, Restated};

/// Whether a day's figures may still change, and what a publication
/// restates. Recorded in the manifest; a replay renders with the recorded
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// `preliminary` or `final`.
    pub status: &'static str,
    /// When the lateness window closes.
    pub final_after: DateTime<Utc>,
    pub restated_from: Option<Restated>,
}

impl Standing {
    /// The standing of `day` for a run starting at `now`.
    pub fn at(day: &Day, late_days: u32, now: DateTime<Utc>) -> Standing {
        let final_after = day.end + chrono::Duration::days(i64::from(late_days));
        Standing {
            status: if now < final_after {
                "preliminary"
            } else {
                "final"
            },
            final_after,
            restated_from: None,
        }
    }

    /// As a manifest recorded it (`None` fields: version 2 or older, whose
    /// pages said nothing of it).
    pub fn recorded(day: &Day, late_days: u32, r: &Recorded) -> Option<Standing> {
        let status = match r.status.as_deref()? {
            "final" => "final",
            _ => "preliminary",
        };
        Some(Standing {
            status,
            final_after: r
                .final_after
                .unwrap_or(day.end + chrono::Duration::days(i64::from(late_days))),
            restated_from: r.restated_from.clone(),
        })
    }

    /// The sentence the pages show under their title. `requests` and
    /// `cost_usd` are this publication's headline.
    pub fn note(&self, requests: u64, cost_usd: &str) -> String {
        let until = self.final_after.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut note = match self.status {
            "final" => format!("Final: the lateness window closed at {until}."),
            _ => format!(
                "Preliminary: rows of this day may still arrive until {until}; a later run restates the day if they do."
            ),
        };
        if let Some(r) = &self.restated_from {
            note.push_str(&format!(
                " Restated: replaces the report of run {} ({}): requests {} → {requests}, spend {} → {} ({}).",
                r.run_id,
                r.published_at,
                r.requests,
                usd_text(&r.cost_usd),
                usd_text(cost_usd),
                delta_text(&r.cost_usd, cost_usd)
            ));
        }
        note
    }
}

fn usd_text(cost: &str) -> String {
    if cost.is_empty() {
        "—".into()
    } else {
        format!("${cost}")
    }
}

/// `+$12.400000` / `-$0.000100`: the change between two 6-decimal costs.
pub fn delta_text(before: &str, after: &str) -> String {
    let parse = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap_or_default();
    let d = parse(after) - parse(before);
    let sign = if d.is_sign_negative() && !d.is_zero() {
        "-"
    } else {
        "+"
    };
    format!("{sign}${:.6}", d.abs())
}

/// A day this run restated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restatement {
    pub date: NaiveDate,
    pub replaced_run: String,
    pub requests_before: u64,
    pub requests_after: u64,
    pub cost_before: String,
    pub cost_after: String,
    /// The input objects new or changed since the replaced publication.
    pub objects: Vec<String>,
}

impl Restatement {
    /// `restated: 2026-10-30 +$12.400000 (requests 1,204 → 1,260)`.
    pub fn line(&self) -> String {
        format!(
            "restated: {} {} (requests {} → {}, spend {} → {}; replaces run {})",
            self.date,
            delta_text(&self.cost_before, &self.cost_after),
            self.requests_before,
            self.requests_after,
            usd_text(&self.cost_before),
            usd_text(&self.cost_after),
            self.replaced_run
        )
    }
}

/// Re-check the `late_days` days before `date` and restate those whose
/// inputs grew or changed and whose figures moved. Days never published,
/// published in another zone, or held by another run are left (with a
/// warning where that hides late rows).
pub async fn settle(config: &Config, date: NaiveDate, run_id: &str) -> Result<Vec<Restatement>> {
    let stores = std::sync::Arc::new(Stores::new(config.s3.clone()));
    let mut out = Vec::new();
    for back in (1..=i64::from(config.late_days)).rev() {
        let day_date = date - chrono::Duration::days(back);
        if let Some(r) = settle_day(config, &stores, day_date, run_id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

async fn settle_day(
    config: &Config,
    stores: &std::sync::Arc<Stores>,
    date: NaiveDate,
    run_id: &str,
) -> Result<Option<Restatement>> {
    let day_dir = config.reports.join(&partition_dir(date));
    let manifest_loc = day_dir.join("manifest.json");
    let Some((_, bytes)) = stores.get_opt_info(&manifest_loc).await? else {
        return Ok(None);
    };
    let (published, recorded) = match (
        Published::from_json(&bytes, manifest_loc.as_str()),
        Recorded::parse(&bytes),
    ) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(e), _) => {
            warn!(date = %date, error = %e, "settle: the day's manifest is unreadable; late rows are not checked");
            return Ok(None);
        }
        (_, Err(problems)) => {
            warn!(date = %date, problems = %problems.join("; "), "settle: the day's manifest is unreadable; late rows are not checked");
            return Ok(None);
        }
    };
    if recorded.timezone != config.timezone {
        warn!(date = %date, published_zone = %recorded.timezone, zone = %config.timezone, "settle: the day is published in another time zone; late rows are not checked");
        return Ok(None);
    }
    let changed = changed_objects(config, stores, date, &recorded).await?;
    if changed.is_empty() {
        return Ok(None);
    }
    info!(date = %date, objects = changed.len(), "settle: inputs of an earlier day are new or changed; recomputing it");

    let lease = match crate::lake::lease::Lease::acquire(
        stores,
        &day_dir,
        &date.to_string(),
        run_id,
        crate::config::LeaseSettings {
            wait: std::time::Duration::ZERO,
            ..config.lease
        },
    )
    .await
    {
        Ok(lease) => lease,
        Err(e @ Error::LeaseHeld { .. }) => {
            warn!(date = %date, error = %e, "settle: another run holds the day; its late rows wait for the next run");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let result = restate(
        config, stores, date, run_id, &day_dir, &published, changed, &lease,
    )
    .await;
    match lease.release(stores).await {
        Ok(()) => result,
        Err(e) if result.is_err() => {
            warn!(error = %e, "the lease was not released; it goes stale");
            result
        }
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn restate(
    config: &Config,
    stores: &Stores,
    date: NaiveDate,
    run_id: &str,
    day_dir: &Location,
    published: &Published,
    changed: Vec<String>,
    lease: &crate::lake::lease::Lease,
) -> Result<Option<Restatement>> {
    crate::deliver::recover(stores, day_dir).await?;
    let day = Day::new(date, config.timezone);
    let replaced = Restated {
        run_id: published.run_id.clone(),
        published_at: published.finished_at.clone(),
        requests: published.headline.requests,
        cost_usd: published.headline.cost_usd.clone(),
        objects: changed.clone(),
    };
    let sel = Selection {
        run_id: Some(run_id.to_string()),
        standing: Some(Standing {
            restated_from: Some(replaced),
            ..Standing::at(&day, config.late_days, Utc::now())
        }),
        ..Selection::default()
    };
    let c = match compute(config, date, &sel).await {
        Ok(c) => c,
        Err(e @ (Error::Storage { .. } | Error::Io { .. } | Error::Internal(_))) => return Err(e),
        Err(e) => {
            warn!(date = %date, error = %e, "settle: the earlier day cannot be recomputed; it stays as published");
            return Ok(None);
        }
    };
    // Figures moved? Compare the data outputs (CSVs, rollups) with the
    // published ones; pages carry the restatement note and always differ.
    let mut moved = Vec::new();
    for o in &c.outputs {
        let key = o.location.as_str();
        if !(key.ends_with(".csv") || key.ends_with(".parquet")) {
            continue;
        }
        let now = stores.get_opt_info(&o.location).await?.map(|(_, b)| b);
        if now.as_deref() != Some(&o.bytes[..]) {
            moved.push(
                o.location
                    .relative_to(&config.lake)
                    .unwrap_or_else(|| key.to_string()),
            );
        }
    }
    if moved.is_empty() {
        info!(date = %date, objects = changed.len(), "settle: the new or changed objects hold no rows of the day; nothing rewritten");
        return Ok(None);
    }
    crate::deliver::publish(
        stores,
        &c.reports,
        run_id,
        &c.outputs,
        &c.manifest_out,
        || lease.verify(stores),
    )
    .await?;
    let r = Restatement {
        date,
        replaced_run: published.run_id.clone(),
        requests_before: published.headline.requests,
        requests_after: c.kept,
        cost_before: published.headline.cost_usd.clone(),
        cost_after: c.cost_usd.clone(),
        objects: changed,
    };
    warn!(date = %date, restatement = %r.line(), outputs_changed = moved.len(), "settle: late rows restated an earlier day");
    Ok(Some(r))
}

/// Objects that change `date` since its manifest: in the partitions that
/// can hold its rows, objects it neither read nor listed as skipped, or
/// whose size, etag or version (content, for a local object whose etag
/// moved) differ from what it read, and that can hold rows of the day; and
/// objects it read that are gone.
async fn changed_objects(
    config: &Config,
    stores: &std::sync::Arc<Stores>,
    date: NaiveDate,
    recorded: &Recorded,
) -> Result<Vec<String>> {
    let read: BTreeMap<&str, &crate::manifest::RecordedRequest> = recorded
        .requests
        .iter()
        .map(|r| (r.key.as_str(), r))
        .collect();
    let skipped: std::collections::BTreeSet<&str> =
        recorded.skipped.iter().map(|s| s.key.as_str()).collect();
    let day = Day::new(date, config.timezone);
    let mut candidates: Vec<(crate::lake::ObjectInfo, NaiveDate, String)> = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    for p in day.partitions(config.late_days) {
        let prefix = config.requests.join(&partition_dir(p));
        for info in stores.list(&prefix).await? {
            let key = info
                .location
                .relative_to(&config.lake)
                .unwrap_or_else(|| info.location.to_string());
            listed.insert(key.clone());
            // Markers and temporary files hold no rows.
            if crate::lake::hidden_reason(&info.location, &prefix).is_some() {
                continue;
            }
            match read.get(key.as_str()) {
                Some(r) => {
                    let meta =
                        r.size == info.size && (r.version.is_none() || r.version == info.version);
                    let same = match (&r.etag, &r.content, info.location.local_path()) {
                        // Same etag: unchanged (the cheap, common case).
                        (Some(etag), _, _) if Some(etag) == info.e_tag.as_ref() => meta,
                        // A local object recorded by content whose etag moved
                        // (a copied or restored lake): compare the content.
                        (_, Some(digest), Some(path)) if meta => {
                            crate::lake::file_digest_like(&path, digest).await? == *digest
                        }
                        (None, _, _) => meta,
                        _ => false,
                    };
                    if !same {
                        candidates.push((info, p, key));
                    }
                }
                None if skipped.contains(key.as_str()) => {}
                None => candidates.push((info, p, key)),
            }
        }
    }
    // An object the day read that is gone changes it for certain.
    let mut changed: Vec<String> = recorded
        .requests
        .iter()
        .filter(|r| !listed.contains(&r.key))
        .map(|r| r.key.clone())
        .collect();
    // A new or changed object matters only if it can hold rows of the day:
    // its footer's `ts` statistics say (objects of the next day's partition
    // written during that day, the nightly common case, cannot). An object
    // whose footer cannot be read or checked is kept: the recompute names it.
    for (info, partition, key) in candidates {
        let open = crate::lake::scan::DayInput::open_objects(
            std::sync::Arc::clone(stores),
            vec![(info, partition)],
            &config.columns,
            day.window(),
        )
        .await;
        match open {
            Ok(input) if !input.files().iter().any(|f| f.may_hold(day.window())) => {}
            _ => changed.push(key),
        }
    }
    changed.sort();
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_preliminary_until_its_lateness_window_closes() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 30).unwrap();
        let day = Day::new(date, chrono_tz::UTC);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // The nightly run at 02:00 the next day: one day of lateness left.
        let s = Standing::at(&day, 1, at("2026-10-31T02:00:00Z"));
        assert_eq!(s.status, "preliminary");
        assert_eq!(s.final_after, at("2026-11-01T00:00:00Z"));
        assert_eq!(
            Standing::at(&day, 1, at("2026-11-01T00:00:00Z")).status,
            "final"
        );
        assert_eq!(
            Standing::at(&day, 0, at("2026-10-31T00:00:00Z")).status,
            "final"
        );
        assert!(s.note(10, "1.000000").starts_with(
            "Preliminary: rows of this day may still arrive until 2026-11-01T00:00:00Z"
        ));
    }

    #[test]
    fn a_restatement_says_what_it_replaces_and_by_how_much() {
        let r = Restatement {
            date: NaiveDate::from_ymd_opt(2026, 10, 30).unwrap(),
            replaced_run: "20261031T020000Z-0a0b0c0d".into(),
            requests_before: 1204,
            requests_after: 1260,
            cost_before: "100.000000".into(),
            cost_after: "112.400000".into(),
            objects: vec!["requests/date=2026-10-31/late.parquet".into()],
        };
        assert_eq!(
            r.line(),
            "restated: 2026-10-30 +$12.400000 (requests 1204 → 1260, spend $100.000000 → $112.400000; replaces run 20261031T020000Z-0a0b0c0d)"
        );
        assert_eq!(delta_text("1.5", "1.25"), "-$0.250000");
        assert_eq!(delta_text("", "0.5"), "+$0.500000");
    }
}
